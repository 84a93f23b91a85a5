//! Errors of reading ZooKeeper's files. Every variant names the file, and the byte offset and/or
//! zxid where reading stopped, so an operator can find the damage with a hex dump.

use std::io;
use std::path::PathBuf;

/// Why a ZooKeeper data dir, snapshot or txn log could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZkFormatError {
    /// Opening, listing or reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The snapshot could not be decoded or failed its checks (magic, seal, tree structure).
    #[error("snapshot {path}: {reason} at byte {offset}")]
    Snapshot {
        /// The snapshot file.
        path: PathBuf,
        /// Offset in the (decompressed) snapshot stream.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A snapshot compression this build cannot read (`.snappy`).
    #[error("snapshot {path}: unsupported compression {method:?}")]
    UnsupportedCompression {
        /// The snapshot file.
        path: PathBuf,
        /// The file name suffix.
        method: String,
    },
    /// Snapshots exist but none of them could be read (ZooKeeper refuses to start the same way).
    /// Holds each candidate tried, newest first, with its error.
    #[error("no valid snapshot in {dir}: {}", tried.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    NoValidSnapshot {
        /// `<dataDir>/version-2`.
        dir: PathBuf,
        /// The failures, newest snapshot first.
        tried: Vec<ZkFormatError>,
    },
    /// Txn logs exist but there is no snapshot to start from (ZooKeeper refuses this too unless
    /// `zookeeper.snapshot.trust.empty=true`; see `LoadOptions::snapshot_trust_empty`).
    #[error("{dir} has txn logs but no snapshot; refusing to replay onto an empty tree")]
    NoSnapshot {
        /// `<dataDir>/version-2`.
        dir: PathBuf,
    },
    /// A txn log file does not start with the `ZKLG` header.
    #[error("txn log {path}: bad file header: {reason}")]
    LogHeader {
        /// The log file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A complete log entry whose Adler-32 does not match its bytes (ZooKeeper: "CRC check failed").
    #[error("txn log {path}: checksum mismatch in the entry at byte {offset} (zxid {})", fmt_zxid(*zxid))]
    LogChecksum {
        /// The log file.
        path: PathBuf,
        /// Offset of the entry's checksum field.
        offset: u64,
        /// The zxid read from the damaged entry's header, when it has one (it may itself be damaged).
        zxid: Option<i64>,
    },
    /// A log entry with a valid checksum that is not a txn ZooKeeper could have written.
    #[error("txn log {path}: undecodable entry at byte {offset} (zxid {}): {reason}", fmt_zxid(*zxid))]
    LogEntry {
        /// The log file.
        path: PathBuf,
        /// Offset of the entry's checksum field.
        offset: u64,
        /// The zxid from the entry's header, when it could be read.
        zxid: Option<i64>,
        /// What was wrong.
        reason: String,
    },
}

fn fmt_zxid(zxid: Option<i64>) -> String {
    zxid.map_or_else(|| "unknown".to_owned(), |z| format!("{z:#x}"))
}

impl ZkFormatError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> ZkFormatError {
        ZkFormatError::Io {
            path: path.into(),
            source,
        }
    }
}
