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
//!   4 count    { i64 nodes }   (the tree's size when the snapshot began, before the first node:
//!                               a loader sizes its tables once instead of regrowing them)
//!   0 end
//! u32 crc32 of every byte before it, then "FKEND001"
//! ```
//! A snapshot is written to `<name>.tmp`, synced, then renamed, so a crash never leaves a
//! half-written file under a valid name; the trailer makes validity checkable anyway.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::jute::{Decode, Encode};
use crate::proto::{Acl, StatPersisted};
use crate::tree::{DataTree, NodePreparer, PreparedNode, RestoreError, TreeRestorer};

const MAGIC: &[u8; 8] = b"FKSNAP01";
const END_MAGIC: &[u8; 8] = b"FKEND001";
const TAG_END: u8 = 0;
const TAG_SESSION: u8 = 1;
const TAG_ACL: u8 = 2;
const TAG_NODE: u8 = 3;
const TAG_COUNT: u8 = 4;
/// The smallest node record: tag, empty path, null data, acl id, Stat. Bounds a count hint by the
/// file size, so a crafted hint cannot make the loader reserve more than the file could hold.
const NODE_RECORD_BYTES_MIN: usize = 1 + 4 + 4 + 4 + 60;

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
    /// foldhash, not SipHash: every node's ACL is looked up here.
    acl_ids: HashMap<Arc<[Acl]>, i32, foldhash::fast::FixedState>,
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

    /// Records how many nodes the tree holds as the snapshot begins (call before the first node).
    pub fn node_count_hint(&mut self, nodes: usize) {
        self.out.put_u8(TAG_COUNT);
        self.out.put_i64(nodes as i64);
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
        let chunk = self.out.split();
        // The next chunk is about as big: one allocation for it now, instead of growing the buffer
        // by doubling, which copied every chunk several times on the pipeline's thread.
        self.out.reserve(chunk.len());
        chunk.freeze()
    }

    /// The end record (the writer adds the checksum trailer).
    pub fn finish(mut self) -> Bytes {
        self.out.put_u8(TAG_END);
        self.out.split().freeze()
    }
}

/// Bytes a snapshot writer writes between syncs. Left to the kernel, a snapshot of a million nodes
/// (~150 MB) went to the disk in one burst at the final sync, and every log sync queued behind it:
/// create at 32 x 1,000 beside those snapshots had a p99 of 30-82 ms in five runs; syncing every
/// MiB keeps little of the snapshot in the device's queue at once, and the same row measured
/// 15-20 ms in five of six runs (47 ms in one; 24.6 ms syncing every 4 MiB), throughput unchanged
/// (README, BENCHMARKS).
const SYNC_EVERY_BYTES: usize = 1 << 20;

/// Writes a snapshot file from encoded chunks; runs on a blocking thread, never a runtime worker.
pub struct SnapshotWriter {
    file: BufWriter<File>,
    /// Bytes written since the last sync (`SYNC_EVERY_BYTES`).
    unsynced: usize,
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
        Ok(SnapshotWriter { file: BufWriter::with_capacity(1 << 20, file), unsynced: 0, crc: crc32fast::Hasher::new(), tmp_path, final_path })
    }

    /// Appends encoded bytes.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        self.crc.update(chunk);
        let io = |source| SnapshotError::Io { path: self.tmp_path.clone(), source };
        self.file.write_all(chunk).map_err(io)?;
        self.unsynced += chunk.len();
        if self.unsynced >= SYNC_EVERY_BYTES {
            self.unsynced = 0;
            self.file.flush().map_err(io)?;
            self.file.get_ref().sync_data().map_err(io)?;
        }
        Ok(())
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
    encoder.node_count_hint(tree.node_count());
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

/// How much of a snapshot file is read at a time: little enough that a chunk is still in the
/// core's cache when it is decoded (a 4 MiB chunk was not: its decoding missed the cache on every
/// record, `perf`). Reading the whole file into one buffer cost a quarter of a 1,000,000-znode
/// restart in page faults (`perf`), and doubled peak memory.
const READ_CHUNK_BYTES: usize = 256 << 10;

/// Reads a snapshot body in chunks, keeping the running checksum.
struct ChunkedBody {
    file: File,
    /// Body bytes not read from the file yet.
    unread: u64,
    crc: crc32fast::Hasher,
    /// Read but not yet parsed.
    pending: Bytes,
    chunk_bytes: usize,
}

impl ChunkedBody {
    /// Reads at least one more chunk (or the rest); false at the end of the body.
    fn refill(&mut self) -> std::io::Result<bool> {
        if self.unread == 0 {
            return Ok(false);
        }
        let take = self.unread.min(self.chunk_bytes as u64) as usize;
        // The same buffer again when nothing else holds it (the usual case): what is left of it
        // moves to its front and the chunk is read in behind, into memory that is mapped and in
        // the caches already. A new buffer per chunk cost page faults and cache misses on every
        // byte of the file (`perf`).
        let mut next = match std::mem::take(&mut self.pending).try_into_mut() {
            Ok(mut unique) => {
                unique.reserve(take);
                unique
            }
            Err(shared) => {
                let mut copy = BytesMut::with_capacity(shared.len() + take);
                copy.extend_from_slice(&shared);
                copy
            }
        };
        let start = next.len();
        next.resize(start + take, 0);
        std::io::Read::read_exact(&mut self.file, &mut next[start..])?;
        self.crc.update(&next[start..]);
        self.unread -= take as u64;
        self.pending = next.freeze();
        Ok(true)
    }

    /// Decodes one item with `parse`, reading more of the file while the item runs past what is
    /// buffered. `Ok(None)`: the body ended in the middle of the item.
    fn next<T>(
        &mut self,
        mut parse: impl FnMut(&mut Bytes) -> Result<T, crate::jute::DecodeError>,
    ) -> std::io::Result<Result<T, crate::jute::DecodeError>> {
        loop {
            let mut attempt = self.pending.clone();
            match parse(&mut attempt) {
                Err(crate::jute::DecodeError::Truncated { .. }) if self.unread > 0 => {
                    self.refill()?;
                }
                Ok(item) => {
                    self.pending = attempt;
                    return Ok(Ok(item));
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// Decodes one node record (the bulk of a snapshot) straight from the buffer and hands it to
    /// `restore`, reading more of the file while it runs past what is buffered. The record's
    /// path and data are borrowed, not split off as `Bytes` and copied into a `String`: those
    /// reference counts and the path's allocation were about a tenth of a 1,000,000-znode restart
    /// (`perf`: `bytes::shared_clone` 9.2%).
    fn next_node<R>(
        &mut self,
        mut restore: impl FnMut(&str, Option<&[u8]>, i32, StatPersisted) -> R,
    ) -> std::io::Result<Result<R, crate::jute::DecodeError>> {
        loop {
            let mut input: &[u8] = &self.pending;
            match decode_node(&mut input) {
                Ok((path, data, acl_id, stat)) => {
                    let consumed = self.pending.len() - input.len();
                    let restored = restore(&path, data, acl_id, stat);
                    self.pending.advance(consumed);
                    return Ok(Ok(restored));
                }
                Err(crate::jute::DecodeError::Truncated { .. }) if self.unread > 0 => {}
                Err(e) => return Ok(Err(e)),
            }
            self.refill()?;
        }
    }

    /// Reads the rest of the body and says whether the checksum matches `stored`.
    fn checksum_matches(mut self, stored: u32) -> std::io::Result<bool> {
        while self.refill()? {
            self.pending = Bytes::new();
        }
        Ok(self.crc.finalize() == stored)
    }
}

/// One record of a snapshot body other than a node (`decode_node`).
enum Record {
    End,
    Session(i64, i32),
    Acl(i32, Vec<Acl>),
    Count(i64),
}

fn decode_record(input: &mut Bytes) -> Result<Record, crate::jute::DecodeError> {
    if input.is_empty() {
        return Err(crate::jute::DecodeError::Truncated { needed: 1, remaining: 0 });
    }
    Ok(match input.get_u8() {
        TAG_END => Record::End,
        TAG_SESSION => Record::Session(i64::decode(input)?, i32::decode(input)?),
        TAG_ACL => Record::Acl(i32::decode(input)?, Vec::decode(input)?),
        TAG_COUNT => Record::Count(i64::decode(input)?),
        other => return Err(crate::jute::DecodeError::Invalid(format!("unknown record tag {other}"))),
    })
}

/// A node record, borrowed from `input`: the tag, then path (`ustring`), data (`buffer`, null kept
/// distinct), ACL id and persisted Stat, in the order the writer puts them.
type NodeRecord<'a> = (std::borrow::Cow<'a, str>, Option<&'a [u8]>, i32, StatPersisted);

fn decode_node<'a>(input: &mut &'a [u8]) -> Result<NodeRecord<'a>, crate::jute::DecodeError> {
    use crate::jute::borrowed::{buffer, int, take, ustring};
    match take(input, 1)? {
        [TAG_NODE] => {}
        _ => return Err(crate::jute::DecodeError::Invalid("not a node record".into())),
    }
    Ok((ustring(input)?, buffer(input)?, int(input)?, StatPersisted::decode_borrowed(input)?))
}

/// Reads and verifies one snapshot file. The file is read in chunks and checked against its
/// checksum as it goes; a file whose checksum does not match is refused as such, whatever else is
/// wrong with it.
pub fn load(path: &Path, extended_types_enabled: bool) -> Result<LoadedSnapshot, SnapshotError> {
    load_in_chunks(path, extended_types_enabled, READ_CHUNK_BYTES)
}

fn load_in_chunks(path: &Path, extended_types_enabled: bool, chunk_bytes: usize) -> Result<LoadedSnapshot, SnapshotError> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |source: std::io::Error| SnapshotError::Io { path: path.to_path_buf(), source };
    let invalid = |reason: String| SnapshotError::Invalid { path: path.to_path_buf(), reason };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let header_len = (MAGIC.len() + 8) as u64;
    if file_len < header_len + 1 + 12 {
        return Err(invalid("not a ferrokeeper snapshot".into()));
    }
    let mut trailer = [0u8; 12];
    file.seek(SeekFrom::End(-12)).map_err(io)?;
    file.read_exact(&mut trailer).map_err(io)?;
    if &trailer[4..] != END_MAGIC {
        return Err(invalid("incomplete (no trailer)".into()));
    }
    let stored = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let body_len = (file_len - 12) as usize;
    let mut body = ChunkedBody { file, unread: body_len as u64, crc: crc32fast::Hasher::new(), pending: Bytes::new(), chunk_bytes };
    while body.pending.len() < header_len as usize && body.refill().map_err(io)? {}
    if body.pending.len() < header_len as usize || &body.pending[..MAGIC.len()] != MAGIC {
        return Err(invalid("not a ferrokeeper snapshot".into()));
    }
    body.pending.advance(MAGIC.len());
    let zxid = body.pending.get_i64();
    let mut tree = DataTree::new(extended_types_enabled);
    let mut sessions = Vec::new();
    let mut restorer = TreeRestorer::new(extended_types_enabled);
    let preparer = NodePreparer::new(extended_types_enabled);
    let (batches_tx, batches) = std::sync::mpsc::sync_channel(BATCHES_AHEAD);
    let (spares_tx, spares) = std::sync::mpsc::sync_channel(BATCHES_AHEAD + 2);
    let (problem, read) = std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("snapshot-reader".into())
            .spawn_scoped(scope, move || read_records(body, preparer, batches_tx, spares, stored))
            .map_err(io)?;
        let problem = build(&mut tree, &mut sessions, &mut restorer, batches, spares_tx, body_len);
        Ok::<_, SnapshotError>((problem, reader.join()))
    })?;
    match read {
        Err(_) => Err(invalid("the thread reading it failed".into())),
        Ok(Err(e)) => Err(io(e)),
        Ok(Ok(false)) => Err(invalid("checksum mismatch".into())),
        Ok(Ok(true)) => match problem {
            Some(problem) => Err(invalid(problem)),
            None => {
                restorer.finish(&mut tree);
                tree.last_processed_zxid = zxid;
                Ok(LoadedSnapshot { zxid, tree, sessions })
            }
        },
    }
}

/// Node records the reading thread hands the tree builder at a time: few hand-offs per record,
/// and the builder starts soon.
const BATCH_NODES: usize = 1024;
/// Messages the reading thread may be ahead of the builder; with `BATCH_NODES`, bounds the nodes
/// prepared but not yet in the tree.
const BATCHES_AHEAD: usize = 4;

/// What the reading thread hands the tree builder, in file order.
enum Batch {
    /// Prepared node records.
    Nodes(Vec<PreparedNode>),
    /// A session, ACL or count record.
    Record(Record),
    /// The end record, at the end of the body.
    End,
    /// The first problem found in the records; nothing follows it.
    Problem(String),
}

/// The reading thread's half of `load`: reads, checksums and decodes the body, prepares the node
/// records (`NodePreparer`: the half of a restore that needs no tree) and sends every record to
/// the builder, in file order, up to the end record or the first problem. Node batches come back
/// empty through `spares` to be filled again: the same few buffers pass between the threads,
/// staying in the caches. Then reads whatever is left of the body (all of it when the builder
/// stopped at a problem of its own) and says whether the checksum matches `stored`.
fn read_records(
    mut body: ChunkedBody,
    mut preparer: NodePreparer,
    batches: SyncSender<Batch>,
    spares: Receiver<Vec<PreparedNode>>,
    stored: u32,
) -> std::io::Result<bool> {
    let mut nodes = Vec::with_capacity(BATCH_NODES);
    // ACL ids defined so far: a node naming another is refused here, where its path is known.
    // Most nodes name the ACL of the node before them: that id is checked once.
    let mut acl_ids = std::collections::HashSet::new();
    let mut acl_id_seen = None;
    // Sends the nodes gathered so far, if any, then `next`; false when the builder has stopped.
    let send = move |nodes: &mut Vec<PreparedNode>, next: Option<Batch>| {
        if !nodes.is_empty() {
            let spare = spares.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH_NODES));
            if batches.send(Batch::Nodes(std::mem::replace(nodes, spare))).is_err() {
                return false;
            }
        }
        next.is_none_or(|next| batches.send(next).is_ok())
    };
    let last = loop {
        if nodes.len() >= BATCH_NODES && !send(&mut nodes, None) {
            // The builder stopped at a problem: only the checksum is left to tell.
            return body.checksum_matches(stored);
        }
        if body.pending.is_empty() && !body.refill()? {
            break Batch::Problem("no end record".into());
        }
        if body.pending.first() == Some(&TAG_NODE) {
            let prepared = body.next_node(|path, data, acl_id, stat| {
                if acl_id_seen != Some(acl_id) {
                    if !acl_ids.contains(&acl_id) {
                        return Err(format!("{path}: {}", RestoreError::UnknownAcl(acl_id)));
                    }
                    acl_id_seen = Some(acl_id);
                }
                preparer.prepare(path, data, acl_id, stat).map_err(|e| format!("{path}: {e}"))
            })?;
            match prepared {
                Ok(Ok(node)) => {
                    nodes.push(node);
                    continue;
                }
                Ok(Err(problem)) => break Batch::Problem(problem),
                Err(e) => break Batch::Problem(e.to_string()),
            }
        }
        match body.next(decode_record)? {
            Ok(Record::End) if body.pending.is_empty() && body.unread == 0 => break Batch::End,
            Ok(Record::End) => break Batch::Problem("data after the end record".into()),
            Ok(record) => {
                if let Record::Acl(id, _) = record {
                    acl_ids.insert(id);
                }
                if !send(&mut nodes, Some(Batch::Record(record))) {
                    return body.checksum_matches(stored);
                }
            }
            Err(e) => break Batch::Problem(e.to_string()),
        }
    };
    // A builder that stopped already has its problem; the checksum is still to be told.
    send(&mut nodes, Some(last));
    drop(send);
    body.checksum_matches(stored)
}

/// The builder's half of `load`: links the reading thread's records into `tree` in file order,
/// handing emptied node batches back through `spares`. `None` when it reached the end record;
/// otherwise the first problem (the reading thread's or the tree's).
fn build(
    tree: &mut DataTree,
    sessions: &mut Vec<(i64, i32)>,
    restorer: &mut TreeRestorer,
    batches: Receiver<Batch>,
    spares: SyncSender<Vec<PreparedNode>>,
    body_len: usize,
) -> Option<String> {
    for batch in batches.iter() {
        match batch {
            Batch::Nodes(mut nodes) => {
                for node in nodes.drain(..) {
                    if let Err(e) = restorer.restore(tree, node) {
                        return Some(format!("{}: {e}", restorer.refused_path()));
                    }
                }
                // Dropped when the reading thread has spares enough.
                let _ = spares.try_send(nodes);
            }
            Batch::Record(Record::Session(id, timeout_ms)) => sessions.push((id, timeout_ms)),
            Batch::Record(Record::Acl(id, acl)) => restorer.acl(tree, id, &acl),
            Batch::Record(Record::Count(nodes)) => {
                let bound = body_len / NODE_RECORD_BYTES_MIN;
                tree.reserve(usize::try_from(nodes).unwrap_or(0).min(bound));
            }
            Batch::Record(Record::End) => return Some("data after the end record".into()),
            Batch::End => return None,
            Batch::Problem(problem) => return Some(problem),
        }
    }
    // The reading thread ended without a last message: it failed, and says how when joined.
    Some("the snapshot ended early".into())
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
        // Chunks smaller than a record: every record straddles reads.
        let loaded = load_in_chunks(&path, true, 7).unwrap();
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
        let reason = |r: Result<LoadedSnapshot, SnapshotError>| match r {
            Err(SnapshotError::Invalid { reason, .. }) => reason,
            other => panic!("loaded a damaged snapshot: {:?}", other.map(|l| l.zxid)),
        };
        assert_eq!(reason(load(&path, true)), "checksum mismatch");
        assert_eq!(reason(load_in_chunks(&path, true, 5)), "checksum mismatch");
        // A length field turned huge: the parse fails first, the checksum still names the cause.
        let mut huge = good.clone();
        huge[8 + 8 + 1 + 8 + 4 + 1..][..4].copy_from_slice(&0x7fff_0000i32.to_be_bytes());
        fs::write(&path, &huge).unwrap();
        assert_eq!(reason(load(&path, true)), "checksum mismatch");
        fs::write(&path, &good[..good.len() - 20]).unwrap();
        assert_eq!(reason(load(&path, true)), "incomplete (no trailer)");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_node_the_tree_refuses_is_named_and_stops_the_load() {
        let dir = crate::storage::txn_log::tests::tempdir();
        let world = open_acl_unsafe();
        let stat = StatPersisted { czxid: 1, mzxid: 1, pzxid: 1, ..StatPersisted::default() };
        let write = |orphan_at: usize| {
            let mut encoder = SnapshotEncoder::new(7, &[]);
            let mut writer = SnapshotWriter::create(&dir, 7).unwrap();
            encoder.node("", None, &world, &stat);
            // Far more records than the reading thread may hold ahead of the builder.
            for i in 0..20_000 {
                let path = if i == orphan_at { "/no/parent".to_string() } else { format!("/n{i}") };
                encoder.node(&path, Some(b"x"), &world, &stat);
            }
            writer.write(&encoder.finish()).unwrap();
            writer.commit().unwrap()
        };
        for orphan_at in [0, 10_000, 19_999] {
            let path = write(orphan_at);
            match load(&path, false) {
                Err(SnapshotError::Invalid { reason, .. }) => assert_eq!(reason, "/no/parent: cannot restore (NoNode)"),
                other => panic!("loaded a snapshot with an orphan: {:?}", other.map(|l| l.zxid)),
            }
            // The same file with a byte changed after the orphan: the checksum names the damage.
            let mut damaged = fs::read(&path).unwrap();
            let at = damaged.len() - 40;
            damaged[at] ^= 1;
            fs::write(&path, &damaged).unwrap();
            match load(&path, false) {
                Err(SnapshotError::Invalid { reason, .. }) => assert_eq!(reason, "checksum mismatch"),
                other => panic!("loaded a damaged snapshot: {:?}", other.map(|l| l.zxid)),
            }
        }
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
