//! Apache ZooKeeper's own on-disk formats (PROTOCOL.md §5): reading a ZooKeeper 3.x data dir
//! (newest valid snapshot + txn log replay) into a `DataTree`, and writing a `DataTree` back as a
//! ZooKeeper snapshot or as the body of a Zab SNAP sync (§4.9).
//!
//! Owns: the byte layouts of `snapshot.<zxid>[.gz]` and `log.<zxid>` files, their Adler-32 seals,
//! ZooKeeper's rules for choosing a snapshot and the logs to replay, and replay tolerance over
//! fuzzy snapshots. Used by `ferrokeeper import` / `export` and, later, by the SNAP sync.
//! Must not touch: RocksDB or ferrokeeper's own storage; sockets. IO is `std::fs`/`std::io` only,
//! and only in `load_data_dir*`, `read_snapshot_file`, `read_log_file` and `write_snapshot_file`;
//! every other function works on bytes or `Write`.
//!
//! Invariants: no input file can make this module panic; every failure is a `ZkFormatError`
//! naming the file and the byte offset and/or zxid. Whole files are read into memory (a snapshot
//! is no larger than the tree it becomes).
//!
//! Main entry points:
//! - [`load_data_dir`] / [`load_data_dir_with`]: ZooKeeper `dataDir` + `dataLogDir` → [`ZkImage`].
//! - [`write_snapshot`] / [`write_snapshot_file`] / [`snapshot_file_name`]: tree → `snapshot.<zxid>`.
//! - [`write_snap_stream_body`] / [`read_snap_stream_body`]: tree ↔ SNAP sync stream.

mod data_dir;
mod error;
mod log;
mod snapshot;

pub use data_dir::{load_data_dir, load_data_dir_with, LoadOptions, ZkImage};
pub use error::ZkFormatError;
pub use log::{read_log_bytes, read_log_file, LogEntry, LogFile, TxnDigest, LOG_MAGIC};
pub use snapshot::{
    read_snap_stream_body, read_snapshot_bytes, read_snapshot_file, snapshot_file_name, write_snap_stream_body,
    write_snapshot, write_snapshot_file, Snapshot, ZxidDigest, SNAPSHOT_MAGIC, SNAP_SIGNATURE,
};

/// Adler-32 as `java.util.zip.Adler32` computes it: the checksum of log entries and snapshot seals.
fn adler32(bytes: &[u8]) -> u32 {
    let mut adler = adler2::Adler32::new();
    adler.write_slice(bytes);
    adler.checksum()
}

/// The zxid in a ZooKeeper file name (`Util.getZxidFromName`): `<prefix>.<hex>[.<anything>]`.
fn zxid_from_name(name: &str, prefix: &str) -> Option<i64> {
    let mut parts = name.split('.');
    if parts.next() != Some(prefix) {
        return None;
    }
    i64::from_str_radix(parts.next()?, 16).ok()
}

#[cfg(test)]
mod tests;
