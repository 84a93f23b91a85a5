//! Snapshot files, `snapshot.<zxid>[.gz]` (PROTOCOL.md §5.3), and the SNAP sync stream (§4.9),
//! which is a snapshot body without the file header, seals and digest.
//!
//! Layout: `FileHeader{"ZKSN", 2, -1}`, sessions, the ACL cache, nodes in pre-order (root as
//! `""`), `"/"`, seal, `ZxidDigest`, seal. A seal is `i64 adler32(every byte before it)` followed
//! by the ustring `"/"` (`SnapStream.sealStream`). Writing follows `FileSnap.serialize`; reading
//! follows `FileSnap.deserialize` and `DataTree.deserialize`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{adler32, ZkFormatError};
use crate::jute::{encode_buffer, encode_str, Decode, DecodeError, Encode};
use crate::jute_record;
use crate::proto::{open_acl_unsafe, Acl, StatPersisted};
use crate::tree::digest::{node_digest, DIGEST_VERSION};
use crate::tree::DataTree;

/// `FileSnap.SNAP_MAGIC`, "ZKSN".
pub const SNAPSHOT_MAGIC: i32 = 0x5A4B_534E;
/// `FileSnap.VERSION`.
const SNAPSHOT_VERSION: i32 = 2;
/// `FileSnap.dbId`.
const SNAPSHOT_DBID: i64 = -1;
/// The string after the tree in a SNAP sync stream (`LearnerHandler`), checked by the learner.
pub const SNAP_SIGNATURE: &str = "BenWasHere";
/// The ACL cache index meaning world:anyone ALL, never stored in the cache
/// (`ReferenceCountedACLCache.OPEN_UNSAFE_ACL_ID`).
const OPEN_UNSAFE_ACL_ID: i64 = -1;
/// The gzip magic, first two bytes of a `.gz` snapshot (`SnapStream.isValidGZipStream`).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Encoded bytes are handed to the writer in chunks of about this size.
const WRITE_CHUNK_BYTES: usize = 64 * 1024;

jute_record! {
    /// The tree digest stored after a snapshot's first seal: the digest of the tree at `zxid`
    /// (the last txn applied when serialization began). `zxid == 0` means "no digest".
    #[derive(Copy)]
    pub struct ZxidDigest { pub zxid: i64, pub digest_version: i32, pub digest: i64 }
}

/// A decoded snapshot.
#[derive(Debug)]
pub struct Snapshot {
    /// The tree exactly as stored (`last_processed_zxid` is left 0: the caller knows the zxid
    /// from the file name).
    pub tree: DataTree,
    /// Sessions `(session id, timeout ms)`, sorted by id.
    pub sessions: Vec<(i64, i32)>,
    /// The stored digest, when the snapshot has one (ZooKeeper 3.6+ with digests enabled).
    pub digest: Option<ZxidDigest>,
}

/// `snapshot.<zxid>`, zxid in lowercase hex without padding, as ZooKeeper names snapshots.
pub fn snapshot_file_name(zxid: i64) -> String {
    format!("snapshot.{zxid:x}")
}

/// The checksum of `bytes` as `CheckedOutputStream` keeps it, plus the stream itself.
struct SealedWriter<'a, W: Write> {
    out: &'a mut W,
    adler: adler2::Adler32,
    pending: BytesMut,
}

impl<W: Write> SealedWriter<'_, W> {
    fn flush_pending(&mut self) -> io::Result<()> {
        self.adler.write_slice(&self.pending);
        self.out.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    fn maybe_flush(&mut self) -> io::Result<()> {
        if self.pending.len() >= WRITE_CHUNK_BYTES {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Writes a seal: the checksum of everything so far, then `"/"` (both covered by later seals).
    fn seal(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        self.pending.put_i64(i64::from(self.adler.checksum()));
        encode_str("/", &mut self.pending);
        self.flush_pending()
    }
}

/// Writes `tree` and `sessions` as a ZooKeeper snapshot taken at `zxid` (what goes in
/// `snapshot_file_name(zxid)`): header, sessions, ACL cache, nodes, seal, digest, seal. The
/// stored digest is the tree's digest at `zxid` (a fresh, zxid-0 tree gets the "empty" digest
/// ZooKeeper writes before its first txn). ZooKeeper 3.8 loads the result; the bytes differ from
/// a file ZooKeeper would write only in the order of sessions, ACL indexes and siblings (it uses
/// hash order).
pub fn write_snapshot(tree: &DataTree, sessions: &[(i64, i32)], zxid: i64, out: &mut impl Write) -> io::Result<()> {
    let mut writer = SealedWriter {
        out,
        adler: adler2::Adler32::new(),
        pending: BytesMut::new(),
    };
    SNAPSHOT_MAGIC.encode(&mut writer.pending);
    SNAPSHOT_VERSION.encode(&mut writer.pending);
    SNAPSHOT_DBID.encode(&mut writer.pending);
    let digest = write_body(tree, sessions, &mut writer)?;
    writer.seal()?;
    let zxid_digest = if zxid == 0 {
        ZxidDigest {
            zxid: 0,
            digest_version: DIGEST_VERSION,
            digest: 0,
        }
    } else {
        ZxidDigest {
            zxid,
            digest_version: DIGEST_VERSION,
            digest,
        }
    };
    zxid_digest.encode(&mut writer.pending);
    writer.seal()?;
    writer.out.flush()
}

/// Writes the SNAP sync stream that follows a `SNAP` quorum packet (PROTOCOL.md §4.9): sessions,
/// ACL cache, nodes, `"/"`, then the `"BenWasHere"` signature. No header, seals or digest.
pub fn write_snap_stream_body(tree: &DataTree, sessions: &[(i64, i32)], out: &mut impl Write) -> io::Result<()> {
    let mut writer = SealedWriter {
        out,
        adler: adler2::Adler32::new(),
        pending: BytesMut::new(),
    };
    write_body(tree, sessions, &mut writer)?;
    encode_str(SNAP_SIGNATURE, &mut writer.pending);
    writer.flush_pending()?;
    writer.out.flush()
}

/// Writes a snapshot into `<data_dir>/version-2/snapshot.<zxid>` (creating the directory), via a
/// temporary file that is synced and renamed into place, so a crash never leaves a partial
/// `snapshot.*` behind. Returns the file's path.
pub fn write_snapshot_file(
    data_dir: &Path,
    tree: &DataTree,
    sessions: &[(i64, i32)],
    zxid: i64,
) -> io::Result<PathBuf> {
    let dir = data_dir.join("version-2");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(snapshot_file_name(zxid));
    // Not named `snapshot.*`, so ZooKeeper never mistakes it for a snapshot.
    let tmp = dir.join(format!(".{}.partial", snapshot_file_name(zxid)));
    {
        let file = std::fs::File::create(&tmp)?;
        let mut out = io::BufWriter::new(file);
        write_snapshot(tree, sessions, zxid, &mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(path)
}

/// Sessions, ACL cache, nodes and the `"/"` terminator (`SerializeUtils.serializeSnapshot`,
/// `DataTree.serialize`). Returns the tree digest, computed in the same pass.
fn write_body<W: Write>(tree: &DataTree, sessions: &[(i64, i32)], writer: &mut SealedWriter<'_, W>) -> io::Result<i64> {
    let mut sorted_sessions = sessions.to_vec();
    sorted_sessions.sort_unstable();
    (sorted_sessions.len() as i32).encode(&mut writer.pending);
    for (session_id, timeout_ms) in &sorted_sessions {
        session_id.encode(&mut writer.pending);
        timeout_ms.encode(&mut writer.pending);
    }
    // ACL cache: indexes from 1 in order of first use; world:anyone ALL is -1, as ZooKeeper
    // stores its own nodes' ACL (any reader maps -1 back to that list).
    let open = open_acl_unsafe();
    let mut acl_index: HashMap<Vec<Acl>, i64> = HashMap::new();
    let mut acl_lists: Vec<Vec<Acl>> = Vec::new();
    tree.visit_preorder(|_, _, acl, _| {
        if acl != open.as_slice() && !acl_index.contains_key(acl) {
            acl_lists.push(acl.to_vec());
            acl_index.insert(acl.to_vec(), acl_lists.len() as i64);
        }
    });
    (acl_lists.len() as i32).encode(&mut writer.pending);
    for (i, list) in acl_lists.iter().enumerate() {
        (i as i64 + 1).encode(&mut writer.pending);
        list.encode(&mut writer.pending);
    }
    let mut digest: u64 = 0;
    let mut result = Ok(());
    tree.visit_preorder(|path, data, acl, stat| {
        if result.is_err() {
            return;
        }
        digest = digest.wrapping_add(node_digest(path, data, stat));
        // The root is stored as "" (DataTree keeps it under that key).
        encode_str(if path == "/" { "" } else { path }, &mut writer.pending);
        encode_buffer(data, &mut writer.pending);
        acl_index
            .get(acl)
            .copied()
            .unwrap_or(OPEN_UNSAFE_ACL_ID)
            .encode(&mut writer.pending);
        stat.encode(&mut writer.pending);
        result = writer.maybe_flush();
    });
    result?;
    encode_str("/", &mut writer.pending);
    Ok(digest as i64)
}

/// Reads a snapshot file, `.gz` included. `.snappy` is `UnsupportedCompression`.
pub fn read_snapshot_file(path: &Path, extended_types_enabled: bool) -> Result<Snapshot, ZkFormatError> {
    let raw = std::fs::read(path).map_err(|e| ZkFormatError::io(path, e))?;
    let bytes = match compression_of(path) {
        Compression::None => raw,
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| ZkFormatError::Snapshot {
                    path: path.to_owned(),
                    offset: out.len() as u64,
                    reason: format!("gzip: {e}"),
                })?;
            out
        }
        Compression::Snappy => {
            return Err(ZkFormatError::UnsupportedCompression {
                path: path.to_owned(),
                method: "snappy".into(),
            })
        }
    };
    read_snapshot_bytes(path, Bytes::from(bytes), extended_types_enabled)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
    Snappy,
}

/// `SnapStream.getStreamMode`: by the last dot-separated part of the name.
pub(super) fn compression_of(path: &Path) -> Compression {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    match name.rsplit('.').next() {
        Some("gz") if name.contains('.') => Compression::Gzip,
        Some("snappy") if name.contains('.') => Compression::Snappy,
        _ => Compression::None,
    }
}

/// `SnapStream.isValidSnapshot`, the cheap test used to pick candidates: an uncompressed file is
/// at least 10 bytes and ends with the seal's `"/"` (`00 00 00 01 2f`); a gzip file starts with
/// the gzip magic. Snappy files are taken as candidates (and then refused as unsupported).
pub(super) fn looks_valid(path: &Path) -> io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    Ok(match compression_of(path) {
        Compression::None => {
            let mut tail = [0u8; 5];
            len >= 10 && {
                file.seek(SeekFrom::End(-5))?;
                file.read_exact(&mut tail)?;
                tail == [0, 0, 0, 1, b'/']
            }
        }
        Compression::Gzip => {
            let mut magic = [0u8; 2];
            len >= 2 && {
                file.read_exact(&mut magic)?;
                magic == GZIP_MAGIC
            }
        }
        Compression::Snappy => true,
    })
}

/// Decodes a snapshot held in memory (already decompressed); `path` only names it in errors.
pub fn read_snapshot_bytes(path: &Path, bytes: Bytes, extended_types_enabled: bool) -> Result<Snapshot, ZkFormatError> {
    let total = bytes.len();
    let mut input = bytes.clone();
    let fail = |input: &Bytes, reason: String| ZkFormatError::Snapshot {
        path: path.to_owned(),
        offset: (total - input.len()) as u64,
        reason,
    };
    let magic = i32::decode(&mut input).map_err(|e| fail(&input, format!("file header: {e}")))?;
    if magic != SNAPSHOT_MAGIC {
        return Err(fail(
            &input,
            format!("magic {magic:#010x}, expected {SNAPSHOT_MAGIC:#010x} (\"ZKSN\")"),
        ));
    }
    // Version and dbid are not checked by ZooKeeper either.
    input.advance(input.len().min(12));
    let (tree, sessions) = decode_body(&mut input, extended_types_enabled).map_err(|reason| fail(&input, reason))?;
    check_seal(&bytes, &mut input).map_err(|reason| fail(&input, reason))?;
    // Snapshots written before digests existed (or with digests off) end here.
    let digest = if input.is_empty() {
        None
    } else {
        let digest = decode_zxid_digest(&mut input).map_err(|reason| fail(&input, reason))?;
        check_seal(&bytes, &mut input).map_err(|reason| fail(&input, reason))?;
        digest
    };
    Ok(Snapshot { tree, sessions, digest })
}

/// Reads a seal and compares it with the Adler-32 of everything before it.
fn check_seal(whole: &Bytes, input: &mut Bytes) -> Result<(), String> {
    let sealed_len = whole.len() - input.len();
    let stored = i64::decode(input).map_err(|e| format!("seal: {e}"))?;
    let computed = i64::from(adler32(&whole[..sealed_len]));
    if stored != computed {
        return Err(format!(
            "seal checksum {stored:#x} does not match {computed:#x} (corrupt snapshot)"
        ));
    }
    String::decode(input).map_err(|e| format!("seal: {e}"))?;
    Ok(())
}

/// `ZxidDigest.deserialize`: digest versions below 2 stored the digest as a hex string. A zxid of
/// 0 is the "empty" digest. A digest cut short reads as none, as upstream's EOF handling does.
fn decode_zxid_digest(input: &mut Bytes) -> Result<Option<ZxidDigest>, String> {
    let Ok(zxid) = i64::decode(input) else { return Ok(None) };
    let Ok(digest_version) = i32::decode(input) else {
        return Ok(None);
    };
    let digest = if digest_version < 2 {
        let Ok(hex) = String::decode(input) else {
            return Ok(None);
        };
        i64::from_str_radix(&hex, 16).map_err(|_| format!("digest {hex:?} is not hex"))?
    } else {
        let Ok(digest) = i64::decode(input) else {
            return Ok(None);
        };
        digest
    };
    Ok((zxid != 0).then_some(ZxidDigest {
        zxid,
        digest_version,
        digest,
    }))
}

/// Reads a SNAP sync stream (PROTOCOL.md §4.9) up to and including the signature, leaving any
/// following bytes in `input`. The learner side of `write_snap_stream_body`.
pub fn read_snap_stream_body(
    input: &mut Bytes,
    extended_types_enabled: bool,
) -> Result<(DataTree, Vec<(i64, i32)>), DecodeError> {
    let (tree, sessions) = decode_body(input, extended_types_enabled).map_err(DecodeError::Invalid)?;
    let signature = String::decode(input)?;
    if signature != SNAP_SIGNATURE {
        return Err(DecodeError::Invalid(format!(
            "SNAP signature {signature:?}, expected {SNAP_SIGNATURE:?}"
        )));
    }
    Ok((tree, sessions))
}

/// Sessions, ACL cache and nodes up to the `"/"` terminator. Errors are reasons; the caller
/// adds the file and offset.
fn decode_body(input: &mut Bytes, extended_types_enabled: bool) -> Result<(DataTree, Vec<(i64, i32)>), String> {
    let session_count = decode_count(input, "session count")?;
    let mut sessions = HashMap::new();
    for _ in 0..session_count {
        let session_id = i64::decode(input).map_err(|e| format!("session: {e}"))?;
        let timeout_ms = i32::decode(input).map_err(|e| format!("session: {e}"))?;
        sessions.insert(session_id, timeout_ms);
    }
    let mut sessions: Vec<(i64, i32)> = sessions.into_iter().collect();
    sessions.sort_unstable();

    let acl_count = decode_count(input, "ACL cache size")?;
    let mut acl_cache: HashMap<i64, Vec<Acl>> = HashMap::new();
    for _ in 0..acl_count {
        let index = i64::decode(input).map_err(|e| format!("ACL cache: {e}"))?;
        // A null list is refused upstream too ("missing acls").
        let count = decode_count(input, "ACL list length")?;
        let mut list = Vec::new();
        for _ in 0..count {
            list.push(Acl::decode(input).map_err(|e| format!("ACL cache entry {index}: {e}"))?);
        }
        acl_cache.insert(index, list);
    }

    let mut tree = DataTree::new(extended_types_enabled);
    let open = open_acl_unsafe();
    loop {
        let path = String::decode(input).map_err(|e| format!("node path: {e}"))?;
        if path == "/" {
            break;
        }
        let data = Option::<Bytes>::decode(input).map_err(|e| format!("node {path:?} data: {e}"))?;
        let acl_ref = i64::decode(input).map_err(|e| format!("node {path:?} ACL: {e}"))?;
        let stat = StatPersisted::decode(input).map_err(|e| format!("node {path:?} stat: {e}"))?;
        let acl = match acl_ref {
            OPEN_UNSAFE_ACL_ID => &open,
            index => acl_cache
                .get(&index)
                .ok_or_else(|| format!("node {path:?} uses ACL index {index}, not in the cache"))?,
        };
        if !path.is_empty() && !path.starts_with('/') {
            return Err(format!("node path {path:?} does not start with '/'"));
        }
        tree.restore_node(&path, data.as_deref(), acl, stat)
            .map_err(|code| format!("node {path:?} cannot be restored ({code:?}; snapshot not in pre-order?)"))?;
    }
    Ok((tree, sessions))
}

/// A count that must be ≥ 0 (ZooKeeper would loop zero times on a negative one; a negative count
/// only comes from damage, so it is refused here).
fn decode_count(input: &mut Bytes, what: &str) -> Result<usize, String> {
    let count = i32::decode(input).map_err(|e| format!("{what}: {e}"))?;
    usize::try_from(count).map_err(|_| format!("{what} {count} is negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh tree written at zxid 0 is the 457-byte `snapshot.0` a fresh ZooKeeper writes
    /// (PROTOCOL.md §5.3 [obs]): same size, and it reads back.
    #[test]
    fn fresh_tree_snapshot_has_zookeepers_size() {
        let tree = DataTree::new(false);
        let mut out = Vec::new();
        write_snapshot(&tree, &[], 0, &mut out).unwrap();
        assert_eq!(out.len(), 457);
        assert!(out.ends_with(&[0, 0, 0, 1, b'/']));
        let back = read_snapshot_bytes(Path::new("snapshot.0"), Bytes::from(out), false).unwrap();
        assert_eq!(back.digest, None);
        assert!(back.sessions.is_empty());
    }

    #[test]
    fn snap_stream_round_trips() {
        let tree = DataTree::new(false);
        let mut out = Vec::new();
        write_snap_stream_body(&tree, &[(7, 3000)], &mut out).unwrap();
        out.extend_from_slice(b"next");
        let mut input = Bytes::from(out);
        let (back, sessions) = read_snap_stream_body(&mut input, false).unwrap();
        assert_eq!(sessions, vec![(7, 3000)]);
        assert_eq!(&input[..], b"next");
        assert_eq!(back.stat("/zookeeper/config"), tree.stat("/zookeeper/config"));
    }

    #[test]
    fn names() {
        assert_eq!(snapshot_file_name(0x1_0000_002a), "snapshot.10000002a");
        assert_eq!(compression_of(Path::new("snapshot.5.gz")), Compression::Gzip);
        assert_eq!(compression_of(Path::new("snapshot.5.snappy")), Compression::Snappy);
        assert_eq!(compression_of(Path::new("snapshot.5")), Compression::None);
    }
}
