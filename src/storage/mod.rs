//! Durable storage: the txn log on RocksDB (`txn_log`), snapshot files (`snapshot`), restart
//! (newest valid snapshot + replay of the later log), and the log writer thread that makes txns
//! durable in groups and tells the pipeline how far they are.
//!
//! Data-dir layout:
//! ```text
//! <dataDir>/ferrokeeper/snapshots/snapshot.<zxid hex>   fuzzy snapshots (tree, sessions, ACLs)
//! <dataLogDir>/ferrokeeper/txnlog/                      RocksDB: txns keyed by zxid, epochs
//! ```
//! RocksDB runs on its own OS threads (the log writer and snapshot writer threads here), never on a
//! tokio worker. `zk_format` reads and writes Apache ZooKeeper's own on-disk formats (txn logs and
//! snapshots) for import, export and the Zab SNAP sync.

pub mod migrate;
pub mod snapshot;
pub mod txn_log;
pub mod zk_format;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::proto::txn::{Txn, TxnBody};
use crate::tree::DataTree;
use snapshot::SnapshotError;
use txn_log::{LogError, TxnLog};

/// Meta key: wall-clock ms the server was last known alive (written about once a second).
const LAST_ALIVE_KEY: &str = "lastAliveMs";

/// Why storage could not be opened or restored.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The log.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A snapshot.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The log does not reach back to the newest snapshot, or a txn does not follow its
    /// predecessor: refusing to start on a partial history.
    #[error("transaction log {path}: {reason}")]
    Gap {
        /// The log directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
}

/// Where storage lives for a data dir and log dir.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Snapshot directory.
    pub snapshot_dir: PathBuf,
    /// RocksDB directory.
    pub log_dir: PathBuf,
}

impl Layout {
    /// The layout under ZooKeeper's `dataDir` and `dataLogDir`.
    pub fn new(data_dir: &Path, data_log_dir: &Path) -> Layout {
        Layout {
            snapshot_dir: data_dir.join("ferrokeeper").join("snapshots"),
            log_dir: data_log_dir.join("ferrokeeper").join("txnlog"),
        }
    }

    /// Creates the directories.
    pub fn create_dirs(&self) -> Result<(), StorageError> {
        for dir in [&self.snapshot_dir, &self.log_dir] {
            std::fs::create_dir_all(dir).map_err(|source| StorageError::Dir { path: dir.clone(), source })?;
        }
        Ok(())
    }
}

/// The state restored at start-up.
#[derive(Debug)]
pub struct Restored {
    /// The tree with every logged txn applied.
    pub tree: DataTree,
    /// Live sessions `(id, timeout_ms)`.
    pub sessions: Vec<(i64, i32)>,
    /// Last zxid (0 for a new server).
    pub last_zxid: i64,
    /// Zxid of the snapshot used, if any.
    pub snapshot_zxid: Option<i64>,
    /// Txns replayed from the log.
    pub txns_replayed: u64,
    /// When the server was last known alive (wall ms), to expire sessions that timed out while
    /// it was down.
    pub last_alive_ms: Option<i64>,
}

/// Loads the newest valid snapshot and replays the log after it. An invalid newest snapshot falls
/// back to an older one (logged); a log that cannot reach the snapshot, or a corrupt log entry,
/// stops the start with a message naming the file and zxid.
pub fn restore(layout: &Layout, log: &TxnLog, extended_types_enabled: bool) -> Result<Restored, StorageError> {
    let mut loaded = None;
    for (zxid, path) in snapshot::list(&layout.snapshot_dir) {
        match snapshot::load(&path, extended_types_enabled) {
            Ok(s) => {
                info!(snapshot = %path.display(), zxid = format_args!("{zxid:#x}"), nodes = s.tree.node_count(), "loaded snapshot");
                loaded = Some(s);
                break;
            }
            Err(e) => warn!("skipping snapshot: {e}"),
        }
    }
    let (mut tree, mut sessions, snapshot_zxid) = match loaded {
        Some(s) => (s.tree, s.sessions, Some(s.zxid)),
        None => (DataTree::new(extended_types_enabled), Vec::new(), None),
    };
    let start = snapshot_zxid.unwrap_or(0);
    let mut replayed = 0u64;
    let mut last_zxid = start;
    let mut gap = None;
    let mut triggers = Vec::new();
    log.read_after(start, |txn| {
        let zxid = txn.header.zxid;
        // Within an epoch, txns are consecutive; a new epoch restarts its counter at 1.
        let follows = zxid == last_zxid + 1 || ((zxid >> 32) > (last_zxid >> 32) && (zxid & 0xffff_ffff) == 1);
        if replayed == 0 && snapshot_zxid.is_some() && !follows && zxid > start + 1 {
            gap = Some(format!("the log starts at {zxid:#x} but the newest snapshot ends at {start:#x}"));
            return false;
        }
        if replayed > 0 && !follows {
            gap = Some(format!("txn {zxid:#x} does not follow {last_zxid:#x}"));
            return false;
        }
        match &txn.body {
            TxnBody::CreateSession { timeout_ms } => sessions.push((txn.header.client_id, *timeout_ms)),
            TxnBody::CloseSession { .. } => sessions.retain(|(id, _)| *id != txn.header.client_id),
            _ => {}
        }
        triggers.clear();
        tree.apply(&txn, &mut triggers);
        last_zxid = zxid;
        replayed += 1;
        true
    })?;
    if let Some(reason) = gap {
        return Err(StorageError::Gap { path: log.path().to_path_buf(), reason });
    }
    sessions.sort_unstable();
    sessions.dedup_by_key(|s| s.0);
    let last_alive_ms = log.meta(LAST_ALIVE_KEY)?;
    Ok(Restored { tree, sessions, last_zxid, snapshot_zxid, txns_replayed: replayed, last_alive_ms })
}

/// What the log writer has made durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durability {
    /// Every txn up to here is synced.
    pub durable_zxid: i64,
    /// Number of failed batches so far; batches submitted under an older count are discarded, so
    /// nothing prepped after a failure reaches the log before the pipeline has rewound.
    pub failures: u64,
    /// The last failure, for logs and operators.
    pub last_error: Option<String>,
}

enum LogCommand {
    Append { generation: u64, txns: Vec<Txn> },
    PurgeThrough(i64),
}

/// Handle of the log writer thread.
pub struct LogWriter {
    tx: mpsc::Sender<LogCommand>,
    durability: watch::Receiver<Durability>,
    thread: Option<thread::JoinHandle<TxnLog>>,
}

impl LogWriter {
    /// Starts the writer thread. `force_sync` is ZooKeeper's forceSync; `max_batch_txns` bounds
    /// one group commit (maxBatchSize).
    pub fn start(log: TxnLog, durable_zxid: i64, force_sync: bool, max_batch_txns: usize) -> LogWriter {
        let (tx, rx) = mpsc::channel::<LogCommand>();
        let (durability_tx, durability) = watch::channel(Durability { durable_zxid, ..Durability::default() });
        let thread = thread::Builder::new()
            .name("txn-log-writer".into())
            .spawn(move || writer_loop(log, rx, durability_tx, force_sync, max_batch_txns.max(1)))
            .ok();
        LogWriter { tx, durability, thread }
    }

    /// Queues txns prepped under failure count `generation`.
    pub fn submit(&self, generation: u64, txns: Vec<Txn>) {
        // The thread only stops when this handle is dropped.
        let _ = self.tx.send(LogCommand::Append { generation, txns });
    }

    /// Asks the writer to drop log entries up to `zxid` (after a snapshot made them unnecessary).
    pub fn purge_through(&self, zxid: i64) {
        let _ = self.tx.send(LogCommand::PurgeThrough(zxid));
    }

    /// Durability updates.
    pub fn durability(&self) -> watch::Receiver<Durability> {
        self.durability.clone()
    }

    /// Stops the thread after it has written what was queued; returns the log.
    pub fn stop(mut self) -> Option<TxnLog> {
        let thread = self.thread.take();
        drop(self);
        thread.and_then(|t| t.join().ok())
    }
}

fn now_wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn writer_loop(
    log: TxnLog,
    rx: mpsc::Receiver<LogCommand>,
    durability: watch::Sender<Durability>,
    force_sync: bool,
    max_batch_txns: usize,
) -> TxnLog {
    let mut generation = 0u64;
    let mut durable_zxid = durability.borrow().durable_zxid;
    let mut pending: Vec<Txn> = Vec::new();
    let mut last_alive_written = 0i64;
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(command) => Some(command),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut commands: Vec<LogCommand> = first.into_iter().collect();
        // Group commit: everything already queued goes into the same synced batch.
        while pending.len() < max_batch_txns {
            match rx.try_recv() {
                Ok(command) => commands.push(command),
                Err(_) => break,
            }
            if let Some(LogCommand::Append { txns, .. }) = commands.last() {
                if pending.len() + txns.len() >= max_batch_txns {
                    break;
                }
            }
        }
        let mut purge = None;
        for command in commands {
            match command {
                LogCommand::Append { generation: g, txns } if g == generation => pending.extend(txns),
                LogCommand::Append { .. } => {} // prepped before a failure the pipeline has not seen yet
                LogCommand::PurgeThrough(zxid) => purge = Some(zxid),
            }
        }
        if !pending.is_empty() {
            let last = pending.last().map_or(durable_zxid, |t| t.header.zxid);
            match log.append(&pending, force_sync) {
                Ok(()) => {
                    durable_zxid = last;
                    durability.send_modify(|d| d.durable_zxid = last);
                }
                Err(e) => {
                    error!("refusing writes: could not persist txns {:#x}..={last:#x}: {e}", pending[0].header.zxid);
                    generation += 1;
                    // Whatever part of the batch may have reached the disk is not acknowledged:
                    // remove it so the zxids can be reused.
                    if let Err(e) = log.truncate_after(durable_zxid) {
                        error!("could not drop the failed batch from the log: {e}");
                    }
                    durability.send_modify(|d| {
                        d.failures = generation;
                        d.last_error = Some(e.to_string());
                    });
                }
            }
            pending.clear();
        }
        if let Some(zxid) = purge {
            if let Err(e) = log.purge_through(zxid.min(durable_zxid)) {
                warn!("could not purge the log through {zxid:#x}: {e}");
            }
        }
        let now = now_wall_ms();
        if now - last_alive_written >= 1000 {
            // Not synced: it only bounds how long sessions may have lived while the server was down.
            if log.set_meta_unsynced(LAST_ALIVE_KEY, now).is_ok() {
                last_alive_written = now;
            }
        }
    }
    let _ = log.set_meta_unsynced(LAST_ALIVE_KEY, now_wall_ms());
    log
}

/// A snapshot being written: the core task feeds it nodes between events (`step`), a writer thread
/// writes and syncs the file, so writes are never stopped for a snapshot.
pub struct SnapshotJob {
    zxid: i64,
    cursor: crate::tree::SnapshotCursor,
    encoder: snapshot::SnapshotEncoder,
    chunks: mpsc::SyncSender<Option<bytes::Bytes>>,
    held: Option<bytes::Bytes>,
    writer: Option<thread::JoinHandle<Result<PathBuf, SnapshotError>>>,
    done: bool,
    counted: bool,
    committing: bool,
    started: std::time::Instant,
}

/// How a snapshot step went.
#[derive(Debug)]
pub enum SnapshotProgress {
    /// More to do.
    Running,
    /// The file is committed.
    Finished {
        /// Zxid of the snapshot.
        zxid: i64,
        /// Nodes written.
        nodes: u64,
        /// The file.
        path: PathBuf,
        /// How long it took.
        elapsed: Duration,
    },
    /// The snapshot failed; the log still holds everything.
    Failed(String),
}

impl SnapshotJob {
    /// Starts a snapshot of the state at `zxid` with `sessions` into `dir`.
    pub fn start(dir: &Path, zxid: i64, sessions: &[(i64, i32)]) -> Result<SnapshotJob, SnapshotError> {
        let mut file = snapshot::SnapshotWriter::create(dir, zxid)?;
        let (chunks, rx) = mpsc::sync_channel::<Option<bytes::Bytes>>(8);
        let writer = thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                while let Ok(chunk) = rx.recv() {
                    match chunk {
                        Some(bytes) => {
                            if let Err(e) = file.write(&bytes) {
                                file.abort();
                                return Err(e);
                            }
                        }
                        None => return file.commit(),
                    }
                }
                file.abort();
                Err(SnapshotError::Invalid { path: PathBuf::new(), reason: "abandoned".into() })
            })
            .map_err(|source| SnapshotError::Io { path: dir.to_path_buf(), source })?;
        Ok(SnapshotJob {
            zxid,
            cursor: crate::tree::SnapshotCursor::default(),
            encoder: snapshot::SnapshotEncoder::new(zxid, sessions),
            chunks,
            held: None,
            writer: Some(writer),
            done: false,
            counted: false,
            committing: false,
            started: std::time::Instant::now(),
        })
    }

    /// Writes up to `max_nodes` more nodes (fewer if the writer is behind). Never blocks.
    pub fn step(&mut self, tree: &DataTree, max_nodes: usize) -> SnapshotProgress {
        if self.committing {
            // The writer is syncing and renaming; collect its result once it is done.
            if self.writer.as_ref().is_some_and(|w| !w.is_finished()) {
                return SnapshotProgress::Running;
            }
            return self.join();
        }
        if let Some(chunk) = self.held.take() {
            match self.chunks.try_send(Some(chunk)) {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(Some(chunk))) => {
                    self.held = Some(chunk);
                    return SnapshotProgress::Running;
                }
                Err(_) => return self.join(),
            }
        }
        if !self.done {
            if !self.counted {
                self.encoder.node_count_hint(tree.node_count());
                self.counted = true;
            }
            let encoder = &mut self.encoder;
            self.done = self.cursor.step(tree, max_nodes, |p, d, a, s| encoder.node(p, d, a, s));
            let chunk = self.encoder.take();
            if self.done {
                let end = std::mem::take(&mut self.encoder).finish();
                let mut all = bytes::BytesMut::from(&chunk[..]);
                all.extend_from_slice(&end);
                self.held = Some(all.freeze());
            } else {
                self.held = Some(chunk);
            }
            return SnapshotProgress::Running;
        }
        // Everything is handed over: tell the writer to commit.
        match self.chunks.try_send(None) {
            Ok(()) => self.committing = true,
            Err(mpsc::TrySendError::Full(_)) => {}
            Err(mpsc::TrySendError::Disconnected(_)) => return self.join(),
        }
        SnapshotProgress::Running
    }

    fn join(&mut self) -> SnapshotProgress {
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(Ok(path))) => SnapshotProgress::Finished {
                zxid: self.zxid,
                nodes: self.cursor.visited(),
                path,
                elapsed: self.started.elapsed(),
            },
            Some(Ok(Err(e))) => SnapshotProgress::Failed(e.to_string()),
            _ => SnapshotProgress::Failed("snapshot writer thread died".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::proto::open_acl_unsafe;
    use crate::proto::txn::TxnHeader;

    fn txn(zxid: i64, body: TxnBody) -> Txn {
        let txn_type = match body {
            TxnBody::CreateSession { .. } => -10,
            TxnBody::CloseSession { .. } => -11,
            _ => 1,
        };
        Txn { header: TxnHeader { client_id: 3, cxid: 0, zxid, time: 1, txn_type }, body }
    }

    #[test]
    fn writer_makes_txns_durable_and_restore_replays_them() {
        let dir = txn_log::tests::tempdir();
        let layout = Layout::new(&dir, &dir);
        layout.create_dirs().unwrap();
        let writer = LogWriter::start(TxnLog::open(&layout.log_dir).unwrap(), 0, true, 1000);
        let mut durability = writer.durability();
        writer.submit(0, vec![txn(1, TxnBody::CreateSession { timeout_ms: 5000 })]);
        writer.submit(
            0,
            vec![txn(
                2,
                TxnBody::Create { path: "/a".into(), data: Some(Bytes::from_static(b"v")), acl: open_acl_unsafe(), ephemeral: true, parent_cversion: 1 },
            )],
        );
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            while durability.borrow().durable_zxid < 2 {
                durability.changed().await.unwrap();
            }
        });
        let log = writer.stop().unwrap();
        let restored = restore(&layout, &log, false).unwrap();
        assert_eq!(restored.last_zxid, 2);
        assert_eq!(restored.sessions, vec![(3, 5000)]);
        assert_eq!(restored.tree.ephemerals_of(3), vec!["/a"]);
        assert!(restored.last_alive_ms.is_some());
        drop(log);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_gap_after_the_snapshot_stops_the_start() {
        let dir = txn_log::tests::tempdir();
        let layout = Layout::new(&dir, &dir);
        layout.create_dirs().unwrap();
        let log = TxnLog::open(&layout.log_dir).unwrap();
        log.append(&[txn(1, TxnBody::CreateSession { timeout_ms: 1 }), txn(3, TxnBody::CreateSession { timeout_ms: 1 })], true).unwrap();
        let err = restore(&layout, &log, false).unwrap_err();
        assert!(err.to_string().contains("0x3 does not follow 0x1"), "{err}");
        drop(log);
        std::fs::remove_dir_all(&dir).ok();
    }
}
