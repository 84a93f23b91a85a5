//! The transaction log on RocksDB: every txn, keyed by its zxid (8 bytes big-endian, so keys sort
//! in zxid order), with Zab's epochs beside it. This log is the commit point: a txn is acknowledged
//! only once the write batch holding it has been synced (`forceSync`), and it is the log Zab will
//! replicate, so it can be read from a zxid onward (DIFF) and truncated after a zxid (TRUNC).
//!
//! Values are the txn exactly as ZooKeeper logs it (`TxnHeader` + record, PROTOCOL.md §5.1), so
//! the bytes a follower receives in a PROPOSAL are the bytes stored here.
//!
//! RocksDB's own WAL is the durable record of each batch; a torn WAL tail (a batch that was never
//! acknowledged) is dropped on open, as ZooKeeper drops a torn log tail, while corruption anywhere
//! else fails the open with RocksDB's message.
//!
//! Integrity: the values carry no checksum of their own, because RocksDB already checksums every
//! byte on disk: each WAL record has a CRC32C (checked on recovery), each SST block has a checksum
//! (checked on every read: `verify_checksums`, and `paranoid_checks` makes a mismatch an error
//! instead of a skipped block). What decodes wrong despite that (a bug, not the disk) is reported as
//! `LogError::Corrupt` with the zxid. A read that hits a bad block stops with
//! `LogError::Unreadable`, naming the last zxid read before it and RocksDB's message (which names
//! the SST file), never with a silently shorter log.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use rocksdb::{ColumnFamilyDescriptor, DBRecoveryMode, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::jute::{Decode, Encode};
use crate::proto::txn::{Txn, TxnBody, TxnHeader};

const CF_TXNS: &str = "txns";
const CF_META: &str = "meta";
/// Meta key: every txn at or below this zxid was purged (after a snapshot made it unnecessary), so
/// a restart needs a snapshot at least this new.
const PURGED_THROUGH_KEY: &str = "purgedThroughZxid";

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// RocksDB refused (disk full, IO error, corruption found by RocksDB).
    #[error("transaction log {path}: {source}")]
    Db {
        /// The log directory.
        path: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// Reading the log failed part-way (RocksDB found a damaged block): the log cannot be trusted
    /// past `after_zxid`.
    #[error("transaction log {path}: cannot read the entries after zxid {after_zxid:#x}: {source}")]
    Unreadable {
        /// The log directory.
        path: PathBuf,
        /// The last zxid read intact (the start point when none was read).
        after_zxid: i64,
        /// RocksDB's error, naming the damaged file.
        source: rocksdb::Error,
    },
    /// RocksDB found damage before the end of its write-ahead log (or in its own files) when
    /// opening: a torn tail would have been dropped, so this is corruption inside the log.
    #[error(
        "transaction log {path} is damaged and will not be replayed in part: {source} \
         (write-ahead log files: {wal_files}; readable through zxid {intact_through})"
    )]
    Damaged {
        /// The log directory.
        path: PathBuf,
        /// The WAL files in it, where RocksDB reads the damage from.
        wal_files: String,
        /// The last zxid readable before the damage (`none` when not even that could be read).
        intact_through: String,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// An entry that does not decode: corruption RocksDB's checksums did not catch.
    #[error("transaction log {path}: entry for zxid {zxid:#x} is corrupt: {reason}")]
    Corrupt {
        /// The log directory.
        path: PathBuf,
        /// The entry's key.
        zxid: i64,
        /// What was wrong.
        reason: String,
    },
}

/// The RocksDB-backed txn log.
pub struct TxnLog {
    db: DB,
    path: PathBuf,
    /// Whether flushes and compactions write with direct IO (`open`).
    direct_io: bool,
}

fn key(zxid: i64) -> [u8; 8] {
    (zxid as u64).to_be_bytes()
}

/// Encodes a txn as ZooKeeper logs it: header then record.
pub fn encode_txn(txn: &Txn) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    txn.header.encode(&mut out);
    txn.body.encode(&mut out);
    out.freeze()
}

/// Decodes a logged txn.
pub fn decode_txn(mut bytes: Bytes) -> Result<Txn, crate::jute::DecodeError> {
    let header = TxnHeader::decode(&mut bytes)?;
    let body = TxnBody::decode(header.txn_type, &mut bytes)?;
    Ok(Txn { header, body })
}

/// Block size of the O_DIRECT probe: the alignment the common filesystems and disks ask for.
const DIRECT_IO_BLOCK: usize = 4096;

/// Whether a file in `dir` can be written with O_DIRECT (creating `dir` if needed): opens a probe
/// file, writes one aligned block and removes it.
fn direct_io_works(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".direct-io-probe");
    let written = (|| -> std::io::Result<()> {
        let fd = rustix::fs::open(
            &path,
            OFlags::CREATE | OFlags::TRUNC | OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )?;
        // An aligned block inside a buffer twice its size, found without unsafe code.
        let buffer = vec![0u8; 2 * DIRECT_IO_BLOCK];
        let skip = buffer.as_ptr().align_offset(DIRECT_IO_BLOCK);
        let block = buffer.get(skip..skip + DIRECT_IO_BLOCK).ok_or(std::io::ErrorKind::InvalidInput)?;
        let n = rustix::io::write(&fd, block)?;
        if n != DIRECT_IO_BLOCK {
            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "short direct write"));
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path); // nothing to remove when the open failed
    written
}

/// Size of one memtable of the txns family.
const TXNS_MEMTABLE_BYTES: usize = 8 << 20;
/// Bound on the write-ahead log files kept (`max_total_wal_size`): a few memtables' worth.
const WAL_TOTAL_BYTES_MAX: u64 = 4 * TXNS_MEMTABLE_BYTES as u64;
/// The largest write RocksDB issues for a memtable flush or a compaction (its writer's buffer,
/// 1 MiB by default). A log sync queued behind a 1 MiB direct-IO write waits for all of it: on a
/// disk that writes ~110 MB/s (an 8 MiB flush took 73 ms), 93 of the 94 log syncs over 10 ms in
/// one 8 s setData run at 32 x 1,000 overlapped a flush, and the row's p99 was 30-40 ms. With
/// 64 KiB writes the same run had 2 syncs over 10 ms and a p99 of 9.4-10.5 ms, throughput
/// 5-10% higher; create's p99 went from 32-42 to 18-20 ms (README, BENCHMARKS).
const FLUSH_WRITE_BYTES_MAX: u64 = 64 << 10;

impl TxnLog {
    /// Opens (creating if needed) the log in `dir`.
    pub fn open(dir: &Path) -> Result<TxnLog, LogError> {
        // Memtable flushes (and compactions) write their files with direct IO: through the page
        // cache, a flush left megabytes of dirty pages that the next log sync had to wait for.
        // With 8 MiB memtables at 32 x 1,000 setData that was a flush every ~100 ms, and 91 of 93
        // log syncs over 4 ms overlapped one; with direct IO 3-4 syncs a run were over 4 ms, and
        // setData's p99 went from 9.0-9.4 to 5.7-5.8 ms (README, BENCHMARKS). A filesystem that
        // refuses O_DIRECT would make every flush fail, so it is probed first.
        let direct_io = match direct_io_works(dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(
                    dir = %dir.display(),
                    "the transaction log's flushes go through the page cache: direct IO is not available here ({e})"
                );
                false
            }
        };
        Self::reopen(dir, direct_io)
    }

    /// Opens the log in `dir` as `open` would, with direct IO decided already: a reopen after a
    /// write error keeps the first open's choice (a full disk would fail the probe) and logs
    /// nothing about it again.
    pub(super) fn reopen(dir: &Path, direct_io: bool) -> Result<TxnLog, LogError> {
        let mut options = Self::options();
        options.set_use_direct_io_for_flush_and_compaction(direct_io);
        // Memtables hold txns until they are flushed to SST files; RocksDB's default (two of 64 MiB)
        // was a fifth of the server's memory with 1,000,000 znodes. The log is read back only at
        // start-up and by followers catching up, so small memtables cost nothing that matters.
        let mut txns_options = Options::default();
        txns_options.set_write_buffer_size(TXNS_MEMTABLE_BYTES);
        txns_options.set_max_write_buffer_number(2);
        let cfs = [
            ColumnFamilyDescriptor::new(CF_TXNS, txns_options),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ];
        match DB::open_cf_descriptors(&options, dir, cfs) {
            Ok(db) => Ok(TxnLog {
                db,
                path: dir.to_path_buf(),
                direct_io,
            }),
            Err(source) if source.kind() == rocksdb::ErrorKind::Corruption => Err(LogError::Damaged {
                path: dir.to_path_buf(),
                wal_files: wal_files(dir),
                intact_through: intact_through(dir).map_or("none".into(), |z| format!("{z:#x}")),
                source,
            }),
            Err(source) => Err(LogError::Db {
                path: dir.to_path_buf(),
                source,
            }),
        }
    }

    fn options() -> Options {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // A batch whose WAL record is incomplete was never acknowledged: drop it, as ZooKeeper
        // drops a torn log tail. Corruption before the tail still fails the open.
        options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        // A checksum mismatch found while reading or compacting is an error, not a skipped block.
        options.set_paranoid_checks(true);
        options.set_max_open_files(256);
        options.set_keep_log_file_num(4);
        // A WAL file is deleted only once every column family's memtable holding its writes is
        // flushed. The meta family is written rarely (a few keys), so without a bound it pinned
        // every WAL file since the start: the txns were kept twice on disk and every restart read
        // them all again. Past this total RocksDB flushes the family holding the oldest file.
        options.set_max_total_wal_size(WAL_TOTAL_BYTES_MAX);
        options.set_writable_file_max_buffer_size(FLUSH_WRITE_BYTES_MAX);
        options
    }

    /// Whether flushes and compactions write with direct IO.
    pub(super) fn direct_io(&self) -> bool {
        self.direct_io
    }

    fn db_err(&self) -> impl Fn(rocksdb::Error) -> LogError + '_ {
        move |source| LogError::Db { path: self.path.clone(), source }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Both families are created on open, so they always exist.
        self.db.cf_handle(name).unwrap_or_else(|| panic!("column family {name} missing"))
    }

    /// Appends txns in one atomic batch; with `sync` the call returns only once they are on disk.
    pub fn append(&self, txns: &[Txn], sync: bool) -> Result<(), LogError> {
        let cf = self.cf(CF_TXNS);
        let mut batch = WriteBatch::default();
        for txn in txns {
            batch.put_cf(cf, key(txn.header.zxid), encode_txn(txn));
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(batch, &options).map_err(self.db_err())
    }

    /// The highest zxid in the log.
    pub fn last_zxid(&self) -> Result<Option<i64>, LogError> {
        let mut iter = self.db.iterator_cf(self.cf(CF_TXNS), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(Ok((k, _))) => Ok(Some(zxid_of(&k))),
            Some(Err(source)) => Err(LogError::Db { path: self.path.clone(), source }),
        }
    }

    /// Calls `visit` for every txn with a zxid above `after`, in zxid order; stops early when it
    /// returns false.
    pub fn read_after(&self, after: i64, mut visit: impl FnMut(Txn) -> bool) -> Result<(), LogError> {
        let start = key(after.saturating_add(1));
        let mut read_options = rocksdb::ReadOptions::default();
        read_options.set_verify_checksums(true);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_TXNS),
            read_options,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut last_read = after;
        for item in iter {
            let (k, v) = item.map_err(|source| LogError::Unreadable {
                path: self.path.clone(),
                after_zxid: last_read,
                source,
            })?;
            let zxid = zxid_of(&k);
            let txn = decode_txn(Bytes::copy_from_slice(&v))
                .map_err(|e| LogError::Corrupt { path: self.path.clone(), zxid, reason: e.to_string() })?;
            if txn.header.zxid != zxid {
                return Err(LogError::Corrupt {
                    path: self.path.clone(),
                    zxid,
                    reason: format!("entry holds zxid {:#x}", txn.header.zxid),
                });
            }
            last_read = zxid;
            if !visit(txn) {
                break;
            }
        }
        Ok(())
    }

    /// Removes every txn above `zxid` (Zab's TRUNC; also used to drop txns of a failed batch).
    pub fn truncate_after(&self, zxid: i64) -> Result<(), LogError> {
        let cf = self.cf(CF_TXNS);
        self.db.delete_range_cf(cf, key(zxid.saturating_add(1)), key(i64::MAX)).map_err(self.db_err())?;
        self.db.flush_wal(true).map_err(self.db_err())
    }

    /// Removes every txn at or below `zxid` (purge after a snapshot made them unnecessary), and
    /// records that it did, in the same batch, so a restart can tell a purged log from a whole one.
    pub fn purge_through(&self, zxid: i64) -> Result<(), LogError> {
        let purged = self.purged_through()?.unwrap_or(0);
        if zxid <= purged {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_TXNS), key(0), key(zxid.saturating_add(1)));
        batch.put_cf(self.cf(CF_META), PURGED_THROUGH_KEY.as_bytes(), zxid.to_be_bytes());
        self.db.write(batch).map_err(self.db_err())
    }

    /// The zxid the log was purged through, if it ever was.
    pub fn purged_through(&self) -> Result<Option<i64>, LogError> {
        self.meta(PURGED_THROUGH_KEY)
    }

    /// The lowest zxid in the log.
    pub fn first_zxid(&self) -> Result<Option<i64>, LogError> {
        let mut iter = self.db.iterator_cf(self.cf(CF_TXNS), IteratorMode::Start);
        match iter.next() {
            None => Ok(None),
            Some(Ok((k, _))) => Ok(Some(zxid_of(&k))),
            Some(Err(source)) => Err(LogError::Db {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Number of txns in the log (reads the whole log: for tools and tests).
    pub fn count(&self) -> Result<u64, LogError> {
        let mut n = 0u64;
        for item in self.db.iterator_cf(self.cf(CF_TXNS), IteratorMode::Start) {
            item.map_err(self.db_err())?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes the memtables to SST files (tests use it to damage an SST; the server never needs it).
    pub fn flush(&self) -> Result<(), LogError> {
        self.db.flush_cf(self.cf(CF_TXNS)).map_err(self.db_err())?;
        self.db.flush_cf(self.cf(CF_META)).map_err(self.db_err())
    }

    /// Stores a number under `name` in the meta family (epochs), synced.
    pub fn set_meta(&self, name: &str, value: i64) -> Result<(), LogError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), name.as_bytes(), value.to_be_bytes());
        self.db.write_opt(batch, &options).map_err(self.db_err())
    }

    /// Stores a number without waiting for the disk (hints such as the last-alive time).
    pub fn set_meta_unsynced(&self, name: &str, value: i64) -> Result<(), LogError> {
        self.db.put_cf(self.cf(CF_META), name.as_bytes(), value.to_be_bytes()).map_err(self.db_err())
    }

    /// Reads a number stored with `set_meta`.
    pub fn meta(&self, name: &str) -> Result<Option<i64>, LogError> {
        let value = self.db.get_cf(self.cf(CF_META), name.as_bytes()).map_err(self.db_err())?;
        Ok(value.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map(i64::from_be_bytes))
    }

    /// The log directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The write-ahead log files in a RocksDB directory, for error messages.
fn wal_files(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// After a failed open: the last zxid a read-only open recovers when it stops at the first damaged
/// WAL record (RocksDB's point-in-time recovery), without writing anything. Only for the message.
fn intact_through(dir: &Path) -> Option<i64> {
    let mut options = TxnLog::options();
    options.create_if_missing(false);
    options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    let db = DB::open_cf_for_read_only(&options, dir, [CF_TXNS, CF_META], false).ok()?;
    let cf = db.cf_handle(CF_TXNS)?;
    let mut iter = db.iterator_cf(cf, IteratorMode::End);
    match iter.next() {
        Some(Ok((k, _))) => Some(zxid_of(&k)),
        _ => None,
    }
}

fn zxid_of(key: &[u8]) -> i64 {
    let mut raw = [0u8; 8];
    let n = key.len().min(8);
    raw[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(raw) as i64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::open_acl_unsafe;

    fn txn(zxid: i64) -> Txn {
        Txn {
            header: TxnHeader { client_id: 1, cxid: 2, zxid, time: 3, txn_type: 1 },
            body: TxnBody::Create {
                path: format!("/n{zxid}"),
                data: Some(Bytes::from_static(b"x")),
                acl: open_acl_unsafe(),
                ephemeral: false,
                parent_cversion: zxid as i32,
            },
        }
    }

    fn zxids(log: &TxnLog, after: i64) -> Vec<i64> {
        let mut out = Vec::new();
        log.read_after(after, |t| {
            out.push(t.header.zxid);
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn append_read_truncate_purge_and_reopen() {
        let dir = tempdir();
        {
            let log = TxnLog::open(&dir).unwrap();
            assert_eq!(log.last_zxid().unwrap(), None);
            log.append(&(1..=5).map(txn).collect::<Vec<_>>(), true).unwrap();
            log.append(&[txn(0x1_0000_0001)], true).unwrap();
            assert_eq!(log.last_zxid().unwrap(), Some(0x1_0000_0001));
            assert_eq!(zxids(&log, 3), vec![4, 5, 0x1_0000_0001]);
            log.truncate_after(4).unwrap();
            assert_eq!(zxids(&log, 0), vec![1, 2, 3, 4]);
            log.purge_through(2).unwrap();
            log.set_meta("acceptedEpoch", 7).unwrap();
        }
        let log = TxnLog::open(&dir).unwrap();
        assert_eq!(zxids(&log, 0), vec![3, 4]);
        assert_eq!(log.meta("acceptedEpoch").unwrap(), Some(7));
        let mut first = None;
        log.read_after(0, |t| {
            first = Some(t);
            false
        })
        .unwrap();
        assert_eq!(first, Some(txn(3)));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Flushed txns (written to SST files, with direct IO where the probe allowed it) read back
    /// after a reopen, on the disk and on tmpfs alike.
    #[test]
    fn flushed_txns_survive_a_reopen_wherever_the_log_is() {
        let mut dirs = vec![tempdir()];
        if Path::new("/dev/shm").is_dir() {
            dirs.push(Path::new("/dev/shm").join(tempdir().file_name().unwrap()));
        }
        for dir in dirs {
            {
                let log = TxnLog::open(&dir).unwrap();
                log.append(&(1..=300).map(txn).collect::<Vec<_>>(), true).unwrap();
                log.db.flush_cf(log.cf(CF_TXNS)).unwrap();
                log.append(&[txn(301)], true).unwrap();
            }
            assert!(!dir.join(".direct-io-probe").exists());
            let log = TxnLog::open(&dir).unwrap();
            assert_eq!(zxids(&log, 0), (1..=301).collect::<Vec<_>>(), "{}", dir.display());
            drop(log);
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    fn the_direct_io_probe_reports_a_directory_it_cannot_write() {
        let file = tempdir();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"not a directory").unwrap();
        assert!(direct_io_works(&file).is_err());
        std::fs::remove_file(&file).ok();
    }

    pub(crate) fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferrokeeper-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
