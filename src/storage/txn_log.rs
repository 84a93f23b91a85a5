//! The transaction log on RocksDB: every txn, keyed by its zxid (8 bytes big-endian, so keys sort
//! in zxid order), with Zab's epochs beside it. This log is the commit point: a txn is acknowledged
//! only once the write batch holding it has been synced (`forceSync`), and it is the log Zab will
//! replicate, so it can be read from a zxid onward (DIFF) and truncated after a zxid (TRUNC).
//!
//! Values are the txn exactly as ZooKeeper logs it (`TxnHeader` + record, PROTOCOL.md §5.1), so
//! the bytes a follower receives in a PROPOSAL are the bytes stored here.
//!
//! The durable record of each batch is the log's own journal (`storage::journal`): a batch is
//! appended (and synced) there first, then written to RocksDB with RocksDB's WAL off, so nothing
//! is readable before it is durable. Opening the log replays the journal's valid records into
//! RocksDB (puts of the same keys and values, so replaying a txn RocksDB already holds changes
//! nothing); a torn journal tail (a batch never acknowledged) is dropped, as ZooKeeper drops a
//! torn log tail. The few other writes (epochs, purges, truncations, and a batch too large for a
//! journal record) go through RocksDB's WAL; a torn WAL tail is dropped on open too, while
//! corruption anywhere else, in the WAL or the journal, fails the open.
//!
//! Order on replay: RocksDB's WAL first (on open), then the journal. Journal records are only
//! puts, so they can run after the WAL's writes without undoing them, except for two cases the
//! log handles when it writes: a purge deletes old zxids, so replay skips records at or below the
//! purge point; a truncation deletes new ones, so before truncating, RocksDB is flushed and the
//! journal emptied (`checkpoint`).
//!
//! Integrity: the values carry no checksum of their own, because RocksDB already checksums every
//! byte on disk: each WAL record has a CRC32C (checked on recovery), each journal record a CRC32,
//! each SST block has a checksum
//! (checked on every read: `verify_checksums`, and `paranoid_checks` makes a mismatch an error
//! instead of a skipped block). What decodes wrong despite that (a bug, not the disk) is reported as
//! `LogError::Corrupt` with the zxid. A read that hits a bad block stops with
//! `LogError::Unreadable`, naming the last zxid read before it and RocksDB's message (which names
//! the SST file), never with a silently shorter log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use byteorder::{BigEndian, ByteOrder};
use bytes::{BufMut, Bytes, BytesMut};
use rocksdb::{ColumnFamilyDescriptor, DBRecoveryMode, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::journal::{self, Journal, JournalError};
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
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal is damaged before its end (not a torn tail).
    #[error(
        "transaction log {path} is damaged and will not be replayed in part: {source} \
         (readable through zxid {intact_through})"
    )]
    JournalDamaged {
        /// The log directory.
        path: PathBuf,
        /// The last zxid replayed before the damage (`none` when there was none).
        intact_through: String,
        /// What is damaged, and where.
        source: JournalError,
    },
    /// The log's own machinery failed (a missing column family, a helper thread that died).
    #[error("transaction log {path}: {reason}")]
    Internal {
        /// The log directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// The RocksDB-backed txn log.
pub struct TxnLog {
    db: Arc<DB>,
    path: PathBuf,
    /// Whether flushes and compactions write with direct IO (`open`).
    direct_io: bool,
    /// The journal, and the flush that frees its other file; held by whoever appends.
    journaled: Mutex<Journaled>,
}

/// The journal as the log uses it.
struct Journaled {
    journal: Journal,
    /// The flush of the txns family started when the active journal file was taken into use:
    /// once it has finished, the other file's records are all in SST files and it may be reused.
    flushing: Option<thread::JoinHandle<Result<(), LogError>>>,
    /// The record being built (kept for its capacity).
    record: BytesMut,
    /// Entries journaled but not yet in RocksDB (a journal record's payload format), inserted as
    /// one batch once `UNAPPLIED_TXNS_MAX` or `UNAPPLIED_BYTES_MAX` is reached and before anything
    /// reads, deletes or flushes the txns family or reuses a journal file (`apply_unapplied`).
    unapplied: BytesMut,
    /// Txns in `unapplied`.
    unapplied_txns: usize,
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
/// Journaled txns kept out of RocksDB until they are inserted together: one RocksDB write for a
/// batch of lone writes instead of one each. A lone create spent 10% of the server's CPU building
/// and writing its one-txn RocksDB batch (perf, README BENCHMARKS), on the path to its reply.
const UNAPPLIED_TXNS_MAX: usize = 256;
/// Bytes of journaled txns kept out of RocksDB at most (see `UNAPPLIED_TXNS_MAX`).
const UNAPPLIED_BYTES_MAX: usize = 1 << 20;

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
        let db = match DB::open_cf_descriptors(&options, dir, cfs) {
            Ok(db) => Arc::new(db),
            Err(source) if source.kind() == rocksdb::ErrorKind::Corruption => {
                return Err(LogError::Damaged {
                    path: dir.to_path_buf(),
                    wal_files: wal_files(dir),
                    intact_through: intact_through(dir).map_or("none".into(), |z| format!("{z:#x}")),
                    source,
                })
            }
            Err(source) => return Err(LogError::Db { path: dir.to_path_buf(), source }),
        };
        let path = dir.to_path_buf();
        let db_err = |source| LogError::Db { path: path.clone(), source };
        let cf = family(&db, &path, CF_TXNS)?;
        let purged = read_meta(&db, &path, PURGED_THROUGH_KEY)?.unwrap_or(i64::MIN);
        let mut last_replayed = None;
        let opened = Journal::open(dir, |file, offset, payload| {
            let mut batch = WriteBatch::default();
            for_each_entry(payload, |zxid, value| {
                if zxid > purged {
                    batch.put_cf(cf, key(zxid), value);
                }
                last_replayed = Some(zxid);
            })
            .map_err(|reason| JournalError::Damaged {
                path: file.to_path_buf(),
                offset,
                reason: format!("a record that passes its CRC check does not parse: {reason}"),
            })?;
            db.write_opt(batch, &unlogged()).map_err(db_err)
        });
        let (journal, replayed) = match opened {
            Ok(opened) => opened,
            Err(LogError::Journal(source @ JournalError::Damaged { .. })) => {
                return Err(LogError::JournalDamaged {
                    path,
                    intact_through: last_replayed.map_or("none".into(), |z| format!("{z:#x}")),
                    source,
                })
            }
            Err(e) => return Err(e),
        };
        if replayed > 0 {
            tracing::info!(dir = %dir.display(), records = replayed, "replayed the transaction log's journal");
        }
        let log = TxnLog {
            db,
            path,
            direct_io,
            journaled: Mutex::new(Journaled {
                journal,
                flushing: None,
                record: BytesMut::new(),
                unapplied: BytesMut::new(),
                unapplied_txns: 0,
            }),
        };
        if replayed > 0 {
            // The replayed records of the older file must reach SST files before it is reused.
            let flushing = log.start_flush()?;
            log.journaled().flushing = flushing;
        }
        Ok(log)
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

    fn journaled(&self) -> MutexGuard<'_, Journaled> {
        self.journaled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends txns in one atomic batch; with `sync` the call returns only once they are on disk.
    pub fn append(&self, txns: &[Txn], sync: bool) -> Result<(), LogError> {
        if txns.is_empty() {
            return Ok(()); // an empty journal record would read as the journal's end
        }
        let mut journaled = self.journaled();
        let Journaled { journal, flushing, record, unapplied, unapplied_txns } = &mut *journaled;
        // The record: [header] then, per txn, zxid (i64), length (u32) and the logged txn.
        record.clear();
        record.put_bytes(0, journal::RECORD_HEADER_BYTES);
        for txn in txns {
            record.put_i64(txn.header.zxid);
            let length_at = record.len();
            record.put_u32(0);
            txn.header.encode(record);
            txn.body.encode(record);
            let length = record.len() - length_at - 4;
            BigEndian::write_u32(&mut record[length_at..length_at + 4], length as u32);
        }
        let payload = &record[journal::RECORD_HEADER_BYTES..];
        if payload.len() > journal::PAYLOAD_BYTES_MAX {
            // Too large for one record (huge znodes): through RocksDB's WAL, which orders it with
            // the journal's records correctly (they never share a zxid).
            self.apply_unapplied(unapplied, unapplied_txns)?;
            let mut options = WriteOptions::default();
            options.set_sync(sync);
            return self.db.write_opt(self.batch_of(payload)?, &options).map_err(self.db_err());
        }
        if !journal.fits(payload.len()) {
            // The other file is reused once the flush started when this one was taken into use
            // has finished; a new flush then covers everything this file holds, so what it holds
            // must be in RocksDB first.
            self.apply_unapplied(unapplied, unapplied_txns)?;
            if let Some(flush) = flushing.take() {
                self.joined(flush)?;
            }
            journal.switch()?;
            *flushing = self.start_flush()?;
        }
        let at = journal.append(record, sync)?;
        let kept = unapplied.len();
        unapplied.extend_from_slice(&record[journal::RECORD_HEADER_BYTES..]);
        *unapplied_txns += txns.len();
        if unapplied.len() < UNAPPLIED_BYTES_MAX && *unapplied_txns < UNAPPLIED_TXNS_MAX {
            return Ok(());
        }
        let applied = self.apply_unapplied(unapplied, unapplied_txns);
        if applied.is_err() {
            // Not acknowledged, and its zxids will be reused: it must not come back on replay.
            // The txns before it were acknowledged and stay (in the journal, and here for the
            // next attempt).
            unapplied.truncate(kept);
            *unapplied_txns -= txns.len();
            if let Err(e) = journal.unappend(at) {
                tracing::warn!("could not take back a journal record whose txns were refused: {e}");
            }
        }
        applied
    }

    /// Inserts the journaled txns RocksDB does not hold yet, as one batch.
    fn apply_unapplied(&self, unapplied: &mut BytesMut, unapplied_txns: &mut usize) -> Result<(), LogError> {
        if unapplied.is_empty() {
            return Ok(());
        }
        self.db.write_opt(self.batch_of(unapplied)?, &unlogged()).map_err(self.db_err())?;
        unapplied.clear();
        *unapplied_txns = 0;
        Ok(())
    }

    /// Makes RocksDB hold every journaled txn, before the txns family is read or changed.
    fn applied(&self) -> Result<MutexGuard<'_, Journaled>, LogError> {
        let mut journaled = self.journaled();
        let Journaled { unapplied, unapplied_txns, .. } = &mut *journaled;
        self.apply_unapplied(unapplied, unapplied_txns)?;
        Ok(journaled)
    }

    /// The RocksDB batch of a journal record's payload.
    fn batch_of(&self, payload: &[u8]) -> Result<WriteBatch, LogError> {
        let cf = self.cf(CF_TXNS);
        let mut batch = WriteBatch::default();
        for_each_entry(payload, |zxid, value| batch.put_cf(cf, key(zxid), value))
            .map_err(|reason| LogError::Internal { path: self.path.clone(), reason })?;
        Ok(batch)
    }

    /// Starts flushing the txns family's memtables on a thread of its own (returned); when no
    /// thread can be started, flushes before returning.
    fn start_flush(&self) -> Result<Option<thread::JoinHandle<Result<(), LogError>>>, LogError> {
        let (db, path) = (self.db.clone(), self.path.clone());
        let spawned = thread::Builder::new().name("txn-log-flush".into()).spawn(move || {
            let cf = family(&db, &path, CF_TXNS)?;
            db.flush_cf(cf).map_err(|source| LogError::Db { path, source })
        });
        match spawned {
            Ok(handle) => Ok(Some(handle)),
            Err(_) => {
                self.db.flush_cf(self.cf(CF_TXNS)).map_err(self.db_err())?;
                Ok(None)
            }
        }
    }

    /// Waits for a flush started by `start_flush`.
    fn joined(&self, flush: thread::JoinHandle<Result<(), LogError>>) -> Result<(), LogError> {
        flush.join().unwrap_or_else(|_| {
            Err(LogError::Internal { path: self.path.clone(), reason: "the flush thread panicked".into() })
        })
    }

    /// Puts every txn the journal holds into SST files and empties the journal, so that no
    /// journal record is replayed over what follows.
    fn checkpoint(&self, journaled: &mut Journaled) -> Result<(), LogError> {
        let Journaled { unapplied, unapplied_txns, .. } = journaled;
        self.apply_unapplied(unapplied, unapplied_txns)?;
        if let Some(flush) = journaled.flushing.take() {
            self.joined(flush)?;
        }
        self.db.flush_cf(self.cf(CF_TXNS)).map_err(self.db_err())?;
        journaled.journal.reset()?;
        Ok(())
    }

    /// The highest zxid in the log.
    pub fn last_zxid(&self) -> Result<Option<i64>, LogError> {
        drop(self.applied()?);
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
        drop(self.applied()?);
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
        let mut journaled = self.journaled();
        self.checkpoint(&mut journaled)?;
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
        // Held until the range is deleted: a txn inserted after the delete would come back.
        let _applied = self.applied()?;
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
        drop(self.applied()?);
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
        drop(self.applied()?);
        let mut n = 0u64;
        for item in self.db.iterator_cf(self.cf(CF_TXNS), IteratorMode::Start) {
            item.map_err(self.db_err())?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes the memtables to SST files (tests use it to damage an SST; the server never needs it).
    pub fn flush(&self) -> Result<(), LogError> {
        drop(self.applied()?);
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
        read_meta(&self.db, &self.path, name)
    }

    /// The log directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TxnLog {
    /// Empties the journal (after a flush), so the next open has nothing to replay.
    fn drop(&mut self) {
        let mut journaled = self.journaled();
        if let Err(e) = self.checkpoint(&mut journaled) {
            tracing::debug!("the journal stays for the next open to replay: {e}");
        }
    }
}

/// Write options for the txns family: durable through the journal, not RocksDB's WAL.
fn unlogged() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.disable_wal(true);
    options
}

/// Calls `visit` with each (zxid, logged txn) of a journal record's payload.
fn for_each_entry(mut payload: &[u8], mut visit: impl FnMut(i64, &[u8])) -> Result<(), String> {
    while !payload.is_empty() {
        let Some((head, rest)) = payload.split_at_checked(12) else {
            return Err(format!("{} bytes left over after the last entry", payload.len()));
        };
        let zxid = BigEndian::read_i64(&head[..8]);
        let length = BigEndian::read_u32(&head[8..12]) as usize;
        let Some((value, rest)) = rest.split_at_checked(length) else {
            return Err(format!("entry for zxid {zxid:#x} claims {length} bytes, {} are left", rest.len()));
        };
        visit(zxid, value);
        payload = rest;
    }
    Ok(())
}

/// A column family of the log (both are created on open).
fn family<'a>(db: &'a DB, path: &Path, name: &str) -> Result<&'a rocksdb::ColumnFamily, LogError> {
    db.cf_handle(name)
        .ok_or_else(|| LogError::Internal { path: path.to_path_buf(), reason: format!("no column family {name}") })
}

/// Reads a number stored in the meta family.
fn read_meta(db: &DB, path: &Path, name: &str) -> Result<Option<i64>, LogError> {
    let cf = family(db, path, CF_META)?;
    let value = db.get_cf(cf, name.as_bytes()).map_err(|source| LogError::Db { path: path.to_path_buf(), source })?;
    Ok(value.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map(i64::from_be_bytes))
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

    /// A txn carrying `bytes` of data under `path`.
    fn sized_txn(zxid: i64, path: &str, bytes: usize) -> Txn {
        let mut t = txn(zxid);
        if let TxnBody::Create { path: p, data, .. } = &mut t.body {
            *p = path.to_string();
            *data = Some(Bytes::from(vec![b'd'; bytes]));
        }
        t
    }

    /// What a crash leaves: a copy of the log directory's files taken while the log is open and
    /// RocksDB is idle (memtables unflushed, as a SIGKILL would leave them).
    fn crash_copy(log: &TxnLog, keep_journal: bool) -> PathBuf {
        if let Some(flush) = log.journaled().flushing.take() {
            log.joined(flush).unwrap();
        }
        let busy = |name: &str| log.db.property_int_value(name).unwrap().unwrap_or(0) > 0;
        while busy("rocksdb.num-running-flushes") || busy("rocksdb.num-running-compactions") {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let copy = tempdir();
        std::fs::create_dir_all(&copy).unwrap();
        for entry in std::fs::read_dir(log.path()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("journal.") && !keep_journal || name == "LOCK" {
                continue;
            }
            std::fs::copy(entry.path(), copy.join(name)).unwrap();
        }
        copy
    }

    /// Lone appends reach RocksDB in batches (`UNAPPLIED_TXNS_MAX`): until then every read sees
    /// them, a purge removes them for good, and a crash loses none (the journal holds them).
    #[test]
    fn lone_appends_not_yet_in_rocksdb_are_read_purged_and_survive_a_crash() {
        let dir = tempdir();
        let log = TxnLog::open(&dir).unwrap();
        let lone = UNAPPLIED_TXNS_MAX as i64 + 44;
        for zxid in 1..=lone {
            log.append(&[txn(zxid)], true).unwrap();
        }
        assert_eq!(log.journaled().unapplied_txns, 44, "the last lone appends wait for a batch");
        // The purge reaches the txns still waiting: none of them may come back later.
        log.purge_through(lone - 30).unwrap();
        for zxid in lone + 1..=lone + 10 {
            log.append(&[txn(zxid)], true).unwrap();
        }
        let expected: Vec<i64> = (lone - 29..=lone + 10).collect();
        let crashed = crash_copy(&log, true);
        assert_eq!(zxids(&log, 0), expected);
        assert_eq!(log.last_zxid().unwrap(), Some(lone + 10));
        assert_eq!(log.first_zxid().unwrap(), Some(lone - 29));
        assert_eq!(log.count().unwrap(), expected.len() as u64);
        drop(log);
        let reopened = TxnLog::open(&crashed).unwrap();
        assert_eq!(zxids(&reopened, 0), expected);
        drop(reopened);
        std::fs::remove_dir_all(&crashed).ok();
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Synced txns come back after a crash from the journal, across a switch of its files, and
    /// neither purged nor truncated txns come back with them.
    #[test]
    fn synced_txns_survive_a_crash_through_the_journal() {
        let dir = tempdir();
        let log = TxnLog::open(&dir).unwrap();
        log.append(&(1..=5).map(|z| sized_txn(z, "/truncated", 10)).collect::<Vec<_>>(), true).unwrap();
        log.truncate_after(3).unwrap();
        // An empty batch writes nothing (an empty record would hide every later one on replay).
        log.append(&[], true).unwrap();
        // 40 batches of 640 KiB: more than one journal file (16 MiB), so the files switch.
        let mut zxid = 3;
        for _ in 0..40 {
            let batch: Vec<Txn> = (zxid + 1..=zxid + 10).map(|z| sized_txn(z, "/kept", 64 << 10)).collect();
            log.append(&batch, true).unwrap();
            zxid += 10;
        }
        // Purged txns are still in the journal's older file: replay must skip them.
        log.purge_through(13).unwrap();
        let expected: Vec<i64> = (14..=zxid).collect();
        assert_eq!(zxids(&log, 0), expected);

        let crashed = crash_copy(&log, true);
        let without_journal = crash_copy(&log, false);
        drop(log);
        let reopened = TxnLog::open(&crashed).unwrap();
        assert_eq!(zxids(&reopened, 0), expected);
        let mut paths = Vec::new();
        reopened
            .read_after(3, |t| {
                if let TxnBody::Create { path, .. } = t.body {
                    paths.push(path);
                }
                true
            })
            .unwrap();
        assert!(paths.iter().all(|p| p == "/kept"), "a truncated txn came back");
        // Appends after the replay go on where the journal ended, and survive another crash.
        reopened.append(&[sized_txn(zxid + 1, "/kept", 10)], true).unwrap();
        let again = crash_copy(&reopened, true);
        drop(reopened);
        assert_eq!(zxids(&TxnLog::open(&again).unwrap(), 0), (14..=zxid + 1).collect::<Vec<_>>());
        // The test proves something: without the journal, the txns RocksDB had not flushed are gone.
        let lost = zxids(&TxnLog::open(&without_journal).unwrap(), 0);
        assert!(lost.len() < expected.len(), "every txn was in RocksDB's files already");
        for d in [dir, crashed, without_journal, again] {
            std::fs::remove_dir_all(&d).ok();
        }
    }

    /// A clean close leaves nothing to replay: RocksDB holds every txn in its files.
    #[test]
    fn a_clean_close_empties_the_journal() {
        let dir = tempdir();
        {
            let log = TxnLog::open(&dir).unwrap();
            log.append(&(1..=20).map(txn).collect::<Vec<_>>(), true).unwrap();
        }
        let mut records = 0;
        let (_, replayed) = Journal::open::<JournalError>(&dir, |_, _, _| {
            records += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((records, replayed), (0, 0));
        assert_eq!(zxids(&TxnLog::open(&dir).unwrap(), 0), (1..=20).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).ok();
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
