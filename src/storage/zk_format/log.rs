//! Txn log files, `log.<zxid>` (PROTOCOL.md §5.2): a 16-byte `FileHeader`, then entries
//! `{i64 adler32(body), i32 len, body, u8 0x42}` where body = `TxnHeader` + txn record +
//! optional `TxnDigest`. Files are preallocated with zeros, so `len == 0` ends the data.
//!
//! Reading follows `FileTxnLog.FileTxnIterator` and `Util.readTxnBytes`: end of file, a zero
//! length, or an entry cut short (no room for its body, or no `0x42` after it) ends the file
//! quietly (a torn last write; the rest of the file is ignored); a complete entry whose checksum
//! does not match is an error.

use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes};

use super::{adler32, ZkFormatError};
pub use crate::proto::txn::TxnDigest;
use crate::proto::txn::{decode_entry, Txn};

/// `FileTxnLog.TXNLOG_MAGIC`, "ZKLG".
pub const LOG_MAGIC: i32 = 0x5A4B_4C47;
/// Size of the `FileHeader` (`int magic, int version, long dbid`).
const FILE_HEADER_LEN: usize = 16;
/// `TxnHeader` is 32 bytes; its zxid sits at bytes 12..20.
const TXN_HEADER_ZXID: std::ops::Range<usize> = 12..20;
/// The end-of-record marker after every entry.
const END_OF_RECORD: u8 = 0x42;

/// One decoded log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Byte offset of the entry (its checksum field) in the file.
    pub offset: u64,
    /// The txn.
    pub txn: Txn,
    /// The tree digest after this txn, when the log carries one.
    pub digest: Option<TxnDigest>,
}

/// A whole log file, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Entries in file order.
    pub entries: Vec<LogEntry>,
    /// Offset of an incomplete entry that ended the file early (a torn write), if any. Zero
    /// padding is not torn.
    pub torn_at: Option<u64>,
}

/// Reads and decodes the log file at `path`.
pub fn read_log_file(path: &Path) -> Result<LogFile, ZkFormatError> {
    let bytes = std::fs::read(path).map_err(|e| ZkFormatError::io(path, e))?;
    read_log_bytes(path, Bytes::from(bytes))
}

/// Decodes a log file's bytes; `path` only names the file in errors.
pub fn read_log_bytes(path: &Path, bytes: Bytes) -> Result<LogFile, ZkFormatError> {
    let mut reader = LogReader::new(path, bytes)?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        entries.push(entry);
    }
    Ok(LogFile {
        entries,
        torn_at: reader.torn_at,
    })
}

/// Iterates over the entries of one log file held in memory.
pub(super) struct LogReader {
    path: PathBuf,
    bytes: Bytes,
    pos: usize,
    done: bool,
    /// Set when an incomplete entry ended the file.
    pub(super) torn_at: Option<u64>,
}

impl LogReader {
    /// Checks the file header. An empty file (created, never written) has no entries.
    pub(super) fn new(path: &Path, bytes: Bytes) -> Result<LogReader, ZkFormatError> {
        let header_error = |reason: String| ZkFormatError::LogHeader {
            path: path.to_owned(),
            reason,
        };
        let done = bytes.is_empty();
        if !done {
            if bytes.len() < FILE_HEADER_LEN {
                return Err(header_error(format!(
                    "file has {} bytes, shorter than its header",
                    bytes.len()
                )));
            }
            let magic = (&bytes[..4]).get_i32();
            if magic != LOG_MAGIC {
                return Err(header_error(format!(
                    "magic {magic:#010x}, expected {LOG_MAGIC:#010x} (\"ZKLG\")"
                )));
            }
        }
        Ok(LogReader {
            path: path.to_owned(),
            bytes,
            pos: FILE_HEADER_LEN,
            done,
            torn_at: None,
        })
    }

    fn torn(&mut self, offset: usize) -> Result<Option<LogEntry>, ZkFormatError> {
        self.done = true;
        // Nothing but zeros left is preallocation, not a torn write.
        if self.bytes[offset..].iter().any(|&b| b != 0) {
            self.torn_at = Some(offset as u64);
        }
        Ok(None)
    }

    /// The next entry, or `None` at the end of the file's data.
    pub(super) fn next_entry(&mut self) -> Result<Option<LogEntry>, ZkFormatError> {
        if self.done {
            return Ok(None);
        }
        let start = self.pos;
        let rest = &self.bytes[start..];
        if rest.len() < 12 {
            return self.torn(start);
        }
        let mut fields = &rest[..12];
        let checksum = fields.get_i64();
        let len = fields.get_i32();
        if len == 0 {
            // Preallocated zeros: the end of this file's data.
            return self.torn(start);
        }
        if len < 0 {
            return Err(self.entry_error(start, None, format!("negative entry length {len}")));
        }
        let len = len as usize;
        // Body plus the end-of-record byte must be there; otherwise the last write was torn.
        if rest.len() - 12 < len + 1 {
            return self.torn(start);
        }
        let body = self.bytes.slice(start + 12..start + 12 + len);
        if rest[12 + len] != END_OF_RECORD {
            return self.torn(start);
        }
        let zxid = body.get(TXN_HEADER_ZXID).map(|mut b| b.get_i64());
        // The checksum covers the body only and is stored zero-extended (PROTOCOL.md §5.2 [obs]).
        if checksum != i64::from(adler32(&body)) {
            return Err(ZkFormatError::LogChecksum {
                path: self.path.clone(),
                offset: start as u64,
                zxid,
            });
        }
        self.pos = start + 12 + len + 1;
        let (txn, digest) = decode_entry(body).map_err(|reason| self.entry_error(start, zxid, reason))?;
        Ok(Some(LogEntry {
            offset: start as u64,
            txn,
            digest,
        }))
    }

    fn entry_error(&self, offset: usize, zxid: Option<i64>, reason: String) -> ZkFormatError {
        ZkFormatError::LogEntry {
            path: self.path.clone(),
            offset: offset as u64,
            zxid,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;
    use crate::jute::Encode;
    use crate::proto::txn::{TxnBody, TxnHeader};

    /// The first entry of a real `log.1` (PROTOCOL.md §5.2 worked example).
    fn golden_log() -> Vec<u8> {
        let hex = "5a4b4c47000000020000000000000000\
                   00000000bf3f0a3600000030\
                   010000927e0c0000000000000000000000000001000001a2049ede7bfffffff6\
                   00002710\
                   000000020000000051c6d660\
                   42";
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn reads_the_golden_entry_and_zero_padding() {
        let mut raw = golden_log();
        raw.extend_from_slice(&[0; 100]);
        let log = read_log_bytes(Path::new("log.1"), Bytes::from(raw)).unwrap();
        assert_eq!(log.torn_at, None);
        assert_eq!(log.entries.len(), 1);
        let entry = &log.entries[0];
        assert_eq!(entry.offset, 16);
        assert_eq!(entry.txn.header.zxid, 1);
        assert_eq!(entry.txn.body, TxnBody::CreateSession { timeout_ms: 10000 });
        assert_eq!(
            entry.digest,
            Some(TxnDigest {
                version: 2,
                tree_digest: 0x51c6_d660
            })
        );
    }

    #[test]
    fn missing_end_of_record_is_a_torn_tail() {
        let mut raw = golden_log();
        *raw.last_mut().unwrap() = 0;
        let log = read_log_bytes(Path::new("log.1"), Bytes::from(raw)).unwrap();
        assert!(log.entries.is_empty());
        assert_eq!(log.torn_at, Some(16));
    }

    #[test]
    fn flipped_body_byte_is_a_checksum_error_naming_the_zxid() {
        let mut raw = golden_log();
        raw[16 + 12 + 30] ^= 0xff; // inside the TxnHeader's type field
        let err = read_log_bytes(Path::new("log.1"), Bytes::from(raw)).unwrap_err();
        assert!(
            matches!(
                err,
                ZkFormatError::LogChecksum {
                    offset: 16,
                    zxid: Some(1),
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("log.1") && err.to_string().contains("zxid 0x1"),
            "{err}"
        );
    }

    #[test]
    fn bad_magic_is_a_header_error() {
        let mut raw = golden_log();
        raw[0] = b'X';
        assert!(matches!(
            read_log_bytes(Path::new("log.1"), Bytes::from(raw)),
            Err(ZkFormatError::LogHeader { .. })
        ));
    }

    #[test]
    fn entries_without_digest_decode() {
        let mut body = BytesMut::new();
        TxnHeader {
            client_id: 1,
            cxid: 2,
            zxid: 3,
            time: 4,
            txn_type: -1,
        }
        .encode(&mut body);
        TxnBody::Error { err: -110 }.encode(&mut body);
        let mut raw = BytesMut::from(&golden_log()[..16]);
        raw.put_i64(i64::from(adler32(&body)));
        raw.put_i32(body.len() as i32);
        raw.put_slice(&body);
        raw.put_u8(0x42);
        let log = read_log_bytes(Path::new("log.3"), raw.freeze()).unwrap();
        assert_eq!(log.entries[0].digest, None);
        assert_eq!(log.entries[0].txn.body, TxnBody::Error { err: -110 });
    }
}
