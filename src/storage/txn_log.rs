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

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use rocksdb::{ColumnFamilyDescriptor, DBRecoveryMode, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::jute::{Decode, Encode};
use crate::proto::txn::{Txn, TxnBody, TxnHeader};

const CF_TXNS: &str = "txns";
const CF_META: &str = "meta";

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

/// Size of one memtable of the txns family.
const TXNS_MEMTABLE_BYTES: usize = 8 << 20;

impl TxnLog {
    /// Opens (creating if needed) the log in `dir`.
    pub fn open(dir: &Path) -> Result<TxnLog, LogError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // A batch whose WAL record is incomplete was never acknowledged: drop it, as ZooKeeper
        // drops a torn log tail. Corruption before the tail still fails the open.
        options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        options.set_max_open_files(256);
        options.set_keep_log_file_num(4);
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
        let db = DB::open_cf_descriptors(&options, dir, cfs)
            .map_err(|source| LogError::Db { path: dir.to_path_buf(), source })?;
        Ok(TxnLog { db, path: dir.to_path_buf() })
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
        let iter = self.db.iterator_cf(self.cf(CF_TXNS), IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(self.db_err())?;
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

    /// Removes every txn at or below `zxid` (purge after a snapshot made them unnecessary).
    pub fn purge_through(&self, zxid: i64) -> Result<(), LogError> {
        let cf = self.cf(CF_TXNS);
        self.db.delete_range_cf(cf, key(0), key(zxid.saturating_add(1))).map_err(self.db_err())
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
