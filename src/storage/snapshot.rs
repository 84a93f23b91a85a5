//! ferrokeeper's snapshot files: the tree, the sessions and the ACLs at a zxid, written while the
//! server keeps serving (fuzzy, like ZooKeeper's: nodes are captured at some moment at or after the
//! snapshot's zxid, and replaying the log from that zxid makes the tree exact).
//!
//! File `snapshot.<zxid hex>` in the snapshot directory:
//! ```text
//! "FKSNAP01"  i64 zxid
//! records, each a tag byte:
//!   1 session  { i64 id, i32 timeout_ms }
//!   2 acl      { i32 acl_id, vector<ACL> }          (before the first node that uses it)
//!   3 node     { ustring path, buffer data, i32 acl_id, StatPersisted }   (pre-order)
//!   0 end
//! u32 crc32 of every byte before it, then "FKEND001"
//! ```
//! A snapshot is written to `<name>.tmp`, synced, then renamed, so a crash never leaves a
//! half-written file under a valid name; the trailer makes validity checkable anyway.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::jute::{Decode, Encode};
use crate::proto::{Acl, StatPersisted};
use crate::tree::DataTree;

const MAGIC: &[u8; 8] = b"FKSNAP01";
const END_MAGIC: &[u8; 8] = b"FKEND001";
const TAG_END: u8 = 0;
const TAG_SESSION: u8 = 1;
const TAG_ACL: u8 = 2;
const TAG_NODE: u8 = 3;

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Filesystem error.
    #[error("snapshot {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad content.
    #[error("snapshot {path} is invalid: {reason}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// The file name of the snapshot taken at `zxid`.
pub fn file_name(zxid: i64) -> String {
    format!("snapshot.{zxid:x}")
}

/// Snapshot files in `dir`, newest (highest zxid) first.
pub fn list(dir: &Path) -> Vec<(i64, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(i64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let zxid = i64::from_str_radix(name.strip_prefix("snapshot.")?, 16).ok()?;
            Some((zxid, e.path()))
        })
        .collect();
    found.sort_by_key(|s| std::cmp::Reverse(s.0));
    found
}

/// Encodes snapshot records; the core feeds it nodes in steps and hands the bytes to the writer.
#[derive(Debug, Default)]
pub struct SnapshotEncoder {
    acl_ids: HashMap<Arc<[Acl]>, i32>,
    out: BytesMut,
}

impl SnapshotEncoder {
    /// Starts a snapshot at `zxid` holding `sessions`.
    pub fn new(zxid: i64, sessions: &[(i64, i32)]) -> SnapshotEncoder {
        let mut encoder = SnapshotEncoder::default();
        encoder.out.put_slice(MAGIC);
        encoder.out.put_i64(zxid);
        for (id, timeout_ms) in sessions {
            encoder.out.put_u8(TAG_SESSION);
            encoder.out.put_i64(*id);
            encoder.out.put_i32(*timeout_ms);
        }
        encoder
    }

    /// Adds one node.
    pub fn node(&mut self, path: &str, data: Option<&[u8]>, acl: &[Acl], stat: &StatPersisted) {
        let next_id = self.acl_ids.len() as i32;
        let acl_id = match self.acl_ids.get(acl) {
            Some(&id) => id,
            None => {
                self.acl_ids.insert(Arc::from(acl), next_id);
                self.out.put_u8(TAG_ACL);
                self.out.put_i32(next_id);
                acl.to_vec().encode(&mut self.out);
                next_id
            }
        };
        self.out.put_u8(TAG_NODE);
        crate::jute::encode_str(path, &mut self.out);
        crate::jute::encode_buffer(data, &mut self.out);
        self.out.put_i32(acl_id);
        stat.encode(&mut self.out);
    }

    /// Bytes encoded since the last call.
    pub fn take(&mut self) -> Bytes {
        self.out.split().freeze()
    }

    /// The end record (the writer adds the checksum trailer).
    pub fn finish(mut self) -> Bytes {
        self.out.put_u8(TAG_END);
        self.out.split().freeze()
    }
}

/// Writes a snapshot file from encoded chunks; runs on a blocking thread, never a runtime worker.
pub struct SnapshotWriter {
    file: BufWriter<File>,
    crc: crc32fast::Hasher,
    tmp_path: PathBuf,
    final_path: PathBuf,
}

impl SnapshotWriter {
    /// Creates `<dir>/snapshot.<zxid>.tmp`.
    pub fn create(dir: &Path, zxid: i64) -> Result<SnapshotWriter, SnapshotError> {
        let final_path = dir.join(file_name(zxid));
        let tmp_path = dir.join(format!("{}.tmp", file_name(zxid)));
        let io = |source| SnapshotError::Io { path: tmp_path.clone(), source };
        fs::create_dir_all(dir).map_err(io)?;
        let file = File::create(&tmp_path).map_err(io)?;
        Ok(SnapshotWriter { file: BufWriter::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new(), tmp_path, final_path })
    }

    /// Appends encoded bytes.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        self.crc.update(chunk);
        self.file.write_all(chunk).map_err(|source| SnapshotError::Io { path: self.tmp_path.clone(), source })
    }

    /// Writes the trailer, syncs, and renames into place. Returns the final path.
    pub fn commit(mut self) -> Result<PathBuf, SnapshotError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        let crc = self.crc.clone().finalize();
        self.file.write_all(&crc.to_be_bytes()).map_err(io(&self.tmp_path))?;
        self.file.write_all(END_MAGIC).map_err(io(&self.tmp_path))?;
        let file = self.file.into_inner().map_err(|e| SnapshotError::Io { path: self.tmp_path.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io(&self.tmp_path))?;
        fs::rename(&self.tmp_path, &self.final_path).map_err(io(&self.final_path))?;
        if let Some(dir) = self.final_path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        }
        Ok(self.final_path)
    }

    /// Gives up: removes the temporary file.
    pub fn abort(self) {
        drop(self.file);
        let _ = fs::remove_file(&self.tmp_path);
    }
}

/// Writes a whole snapshot of `tree` at `zxid` into `dir` in one go (import, tools and tests; the
/// server writes its snapshots in steps with `SnapshotEncoder` while it keeps serving).
pub fn write(dir: &Path, tree: &DataTree, sessions: &[(i64, i32)], zxid: i64) -> Result<PathBuf, SnapshotError> {
    let mut encoder = SnapshotEncoder::new(zxid, sessions);
    let mut writer = SnapshotWriter::create(dir, zxid)?;
    let mut cursor = crate::tree::SnapshotCursor::default();
    loop {
        let done = cursor.step(tree, 65_536, |p, d, a, s| encoder.node(p, d, a, s));
        writer.write(&encoder.take())?;
        if done {
            break;
        }
    }
    writer.write(&encoder.finish())?;
    writer.commit()
}

/// A snapshot read back.
#[derive(Debug)]
pub struct LoadedSnapshot {
    /// The zxid it was started at (log replay resumes after it).
    pub zxid: i64,
    /// The tree.
    pub tree: DataTree,
    /// Sessions `(id, timeout_ms)`.
    pub sessions: Vec<(i64, i32)>,
}

/// Reads and verifies one snapshot file.
pub fn load(path: &Path, extended_types_enabled: bool) -> Result<LoadedSnapshot, SnapshotError> {
    let invalid = |reason: String| SnapshotError::Invalid { path: path.to_path_buf(), reason };
    let raw = fs::read(path).map_err(|source| SnapshotError::Io { path: path.to_path_buf(), source })?;
    if raw.len() < MAGIC.len() + 8 + 1 + 4 + END_MAGIC.len() || &raw[..8] != MAGIC {
        return Err(invalid("not a ferrokeeper snapshot".into()));
    }
    let (body, trailer) = raw.split_at(raw.len() - 12);
    if &trailer[4..] != END_MAGIC {
        return Err(invalid("incomplete (no trailer)".into()));
    }
    let stored = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32fast::hash(body) != stored {
        return Err(invalid("checksum mismatch".into()));
    }
    let body_len = body.len();
    let mut input = Bytes::from(raw).slice(8..body_len);
    let zxid = input.get_i64();
    let mut tree = DataTree::new(extended_types_enabled);
    let mut sessions = Vec::new();
    let mut acls: HashMap<i32, Vec<Acl>> = HashMap::new();
    let decode_err = |e: crate::jute::DecodeError| invalid(e.to_string());
    loop {
        if input.is_empty() {
            return Err(invalid("missing end record".into()));
        }
        match input.get_u8() {
            TAG_END => break,
            TAG_SESSION => {
                let id = i64::decode(&mut input).map_err(decode_err)?;
                let timeout = i32::decode(&mut input).map_err(decode_err)?;
                sessions.push((id, timeout));
            }
            TAG_ACL => {
                let id = i32::decode(&mut input).map_err(decode_err)?;
                acls.insert(id, Vec::decode(&mut input).map_err(decode_err)?);
            }
            TAG_NODE => {
                let path = String::decode(&mut input).map_err(decode_err)?;
                let data = Option::<Bytes>::decode(&mut input).map_err(decode_err)?;
                let acl_id = i32::decode(&mut input).map_err(decode_err)?;
                let stat = StatPersisted::decode(&mut input).map_err(decode_err)?;
                let acl = acls.get(&acl_id).ok_or_else(|| invalid(format!("{path}: unknown acl {acl_id}")))?;
                tree.restore_node(&path, data.as_deref(), acl, stat)
                    .map_err(|e| invalid(format!("{path}: cannot restore ({e:?})")))?;
            }
            other => return Err(invalid(format!("unknown record tag {other}"))),
        }
    }
    tree.last_processed_zxid = zxid;
    Ok(LoadedSnapshot { zxid, tree, sessions })
}

/// Deletes all but the newest `retain` snapshots (at least one is always kept). Returns the zxid
/// of the oldest snapshot kept, below which the log is no longer needed. Temporary files are left
/// alone: one may be a snapshot being written right now (`remove_temporary_files` clears the
/// leftovers of a crash at start-up).
pub fn purge(dir: &Path, retain: usize) -> Option<i64> {
    let snapshots = list(dir);
    for (_, path) in snapshots.iter().skip(retain.max(1)) {
        let _ = fs::remove_file(path);
    }
    snapshots.iter().take(retain.max(1)).next_back().map(|(zxid, _)| *zxid)
}

/// Removes `*.tmp` files: snapshots a crash interrupted. Only before snapshots are taken.
pub fn remove_temporary_files(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::open_acl_unsafe;
    use crate::proto::txn::{Txn, TxnBody, TxnHeader};
    use crate::tree::SnapshotCursor;

    fn tree_with_nodes() -> DataTree {
        let mut tree = DataTree::new(true);
        let mut t = Vec::new();
        let mut zxid = 0;
        let mut apply = |tree: &mut DataTree, body: TxnBody| {
            zxid += 1;
            tree.apply(&Txn { header: TxnHeader { client_id: 9, zxid, time: 100 + zxid, ..Default::default() }, body }, &mut t);
        };
        for i in 0..50 {
            apply(&mut tree, TxnBody::Create { path: format!("/n{i}"), data: Some(Bytes::from(vec![i as u8; i])), acl: open_acl_unsafe(), ephemeral: i % 7 == 0, parent_cversion: -1 });
            apply(&mut tree, TxnBody::Create { path: format!("/n{i}/c"), data: None, acl: vec![Acl { perms: 1, id: crate::proto::Id { scheme: "digest".into(), id: "u:x".into() } }], ephemeral: false, parent_cversion: -1 });
        }
        apply(&mut tree, TxnBody::CreateTtl { path: "/ttl".into(), data: None, acl: open_acl_unsafe(), parent_cversion: -1, ttl_ms: 99 });
        tree
    }

    fn snapshot(tree: &DataTree, dir: &Path, zxid: i64, step: usize) -> PathBuf {
        let mut encoder = SnapshotEncoder::new(zxid, &[(9, 4000), (10, 6000)]);
        let mut writer = SnapshotWriter::create(dir, zxid).unwrap();
        let mut cursor = SnapshotCursor::default();
        while !cursor.step(tree, step, |p, d, a, s| encoder.node(p, d, a, s)) {
            writer.write(&encoder.take()).unwrap();
        }
        writer.write(&encoder.take()).unwrap();
        writer.write(&encoder.finish()).unwrap();
        writer.commit().unwrap()
    }

    #[test]
    fn round_trip_in_small_steps() {
        let dir = crate::storage::txn_log::tests::tempdir();
        let tree = tree_with_nodes();
        let path = snapshot(&tree, &dir, 0x1234, 7);
        assert!(path.ends_with("snapshot.1234"));
        let loaded = load(&path, true).unwrap();
        assert_eq!(loaded.zxid, 0x1234);
        assert_eq!(loaded.sessions, vec![(9, 4000), (10, 6000)]);
        let mut a = Vec::new();
        let mut b = Vec::new();
        tree.visit_preorder(|p, d, acl, s| a.push((p.to_owned(), d.map(<[u8]>::to_vec), acl.to_vec(), *s)));
        loaded.tree.visit_preorder(|p, d, acl, s| b.push((p.to_owned(), d.map(<[u8]>::to_vec), acl.to_vec(), *s)));
        assert_eq!(a, b);
        assert_eq!(loaded.tree.ephemerals_of(9), tree.ephemerals_of(9));
        assert_eq!(loaded.tree.node_count(), tree.node_count());
        loaded.tree.check_invariants().unwrap();
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn damaged_snapshots_are_refused_not_loaded() {
        let dir = crate::storage::txn_log::tests::tempdir();
        let path = snapshot(&tree_with_nodes(), &dir, 5, 1000);
        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x40;
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(load(&path, true), Err(SnapshotError::Invalid { .. })));
        fs::write(&path, &good[..good.len() - 20]).unwrap();
        assert!(matches!(load(&path, true), Err(SnapshotError::Invalid { .. })));
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn purge_keeps_the_newest() {
        let dir = crate::storage::txn_log::tests::tempdir();
        let tree = tree_with_nodes();
        for zxid in [1, 5, 9, 20] {
            snapshot(&tree, &dir, zxid, 100);
        }
        fs::write(dir.join("snapshot.30.tmp"), b"x").unwrap();
        assert_eq!(purge(&dir, 3), Some(5));
        assert_eq!(list(&dir).iter().map(|s| s.0).collect::<Vec<_>>(), vec![20, 9, 5]);
        assert!(
            dir.join("snapshot.30.tmp").exists(),
            "purge must not touch a snapshot being written"
        );
        remove_temporary_files(&dir);
        assert!(!dir.join("snapshot.30.tmp").exists());
        fs::remove_dir_all(&dir).ok();
    }
}
