//! Durable storage: the txn log on RocksDB (`txn_log`), snapshot files (`snapshot`), restart
//! (newest valid snapshot + replay of the later log), and the log writer thread that makes txns
//! durable in groups and tells the pipeline how far they are.
//!
//! Data-dir layout:
//! ```text
//! <dataDir>/ferrokeeper/snapshots/snapshot.<zxid hex>   fuzzy snapshots (tree, sessions, ACLs)
//! <dataLogDir>/ferrokeeper/txnlog/                      RocksDB: txns keyed by zxid, epochs
//! <dataLogDir>/ferrokeeper/txnlog/journal.{0,1}         the txn log's write-ahead journal
//! ```
//! RocksDB runs on its own OS threads (the log writer and snapshot writer threads here), never on a
//! tokio worker. `zk_format` reads and writes Apache ZooKeeper's own on-disk formats (txn logs and
//! snapshots) for import, export and the Zab SNAP sync.

pub mod journal;
pub mod replica;
pub mod migrate;
pub mod snapshot;
pub mod txn_log;
pub mod zk_format;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

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
    /// The snapshot file used, if any.
    pub snapshot_path: Option<PathBuf>,
    /// Txns replayed from the log.
    pub txns_replayed: u64,
    /// When the server was last known alive (wall ms), to expire sessions that timed out while
    /// it was down.
    pub last_alive_ms: Option<i64>,
}

/// Loads the newest valid snapshot and replays the log after it. An invalid newest snapshot falls
/// back to an older one (logged) when the log still holds every txn since that older one and
/// reaches at least as far as the invalid one did; otherwise, or when a log entry is corrupt or
/// missing, the start stops with a message naming the file and the zxid, never a partial tree.
pub fn restore(layout: &Layout, log: &TxnLog, extended_types_enabled: bool) -> Result<Restored, StorageError> {
    let snapshots = snapshot::list(&layout.snapshot_dir);
    let mut loaded = None;
    // The newest snapshot file that could not be used, with why: the log must make up for it.
    let mut newest_invalid: Option<(i64, SnapshotError)> = None;
    for (zxid, path) in &snapshots {
        match snapshot::load(path, extended_types_enabled) {
            Ok(s) => {
                info!(snapshot = %path.display(), zxid = format_args!("{zxid:#x}"), nodes = s.tree.node_count(), "loaded snapshot");
                loaded = Some((s, path.clone()));
                break;
            }
            Err(e) => {
                warn!("skipping snapshot: {e}");
                if newest_invalid.is_none() {
                    newest_invalid = Some((*zxid, e));
                }
            }
        }
    }
    let (mut tree, mut sessions, snapshot_zxid, snapshot_path) = match loaded {
        Some((s, path)) => (s.tree, s.sessions, Some(s.zxid), Some(path)),
        None => (DataTree::new(extended_types_enabled), Vec::new(), None, None),
    };
    let start = snapshot_zxid.unwrap_or(0);
    let base = || match snapshot_zxid {
        Some(z) => format!("the newest usable snapshot ends at {z:#x}"),
        None => "there is no usable snapshot".to_string(),
    };
    let gap = |reason: String| StorageError::Gap {
        path: log.path().to_path_buf(),
        reason,
    };
    if let Some(purged) = log.purged_through()? {
        if purged > start {
            let invalid = newest_invalid
                .as_ref()
                .map_or(String::new(), |(_, e)| format!(" ({e})"));
            return Err(gap(format!(
                "txns up to {purged:#x} were purged, but {}{invalid}",
                base()
            )));
        }
    }
    let mut replayed = 0u64;
    let mut last_zxid = start;
    let mut broken = None;
    let mut triggers = Vec::new();
    log.read_after(start, |txn| {
        let zxid = txn.header.zxid;
        // Within an epoch, txns are consecutive; a new epoch restarts its counter at 1.
        let follows = zxid == last_zxid + 1 || ((zxid >> 32) > (last_zxid >> 32) && (zxid & 0xffff_ffff) == 1);
        if replayed == 0 && !follows {
            broken = Some(format!("the log continues at {zxid:#x} but {} ({start:#x})", base()));
            return false;
        }
        if !follows {
            broken = Some(format!("txn {zxid:#x} does not follow {last_zxid:#x}"));
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
    if let Some(reason) = broken {
        return Err(gap(reason));
    }
    if let Some((zxid, e)) = newest_invalid {
        if last_zxid < zxid {
            return Err(gap(format!(
                "{e}; {} and the log after it reaches only {last_zxid:#x}, short of that snapshot's {zxid:#x}",
                base()
            )));
        }
        warn!("restored from an older snapshot and the log instead (through {last_zxid:#x})");
    }
    sessions.sort_unstable();
    sessions.dedup_by_key(|s| s.0);
    let last_alive_ms = log.meta(LAST_ALIVE_KEY)?;
    Ok(Restored {
        tree,
        sessions,
        last_zxid,
        snapshot_zxid,
        snapshot_path,
        txns_replayed: replayed,
        last_alive_ms,
    })
}

/// How many recent sync durations `Durability` carries for the metrics.
pub const RECENT_SYNCS_MAX: usize = 256;

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
    /// Synced batches so far (ZooKeeper's `fsynctime` samples); with `forceSync=no` none.
    pub syncs: u64,
    /// How long the most recent synced batches took (write + sync, ms), oldest first, at most
    /// `RECENT_SYNCS_MAX`: the reader takes the last `syncs - syncs_it_has_seen` of them.
    pub recent_sync_ms: std::collections::VecDeque<i64>,
}

impl Durability {
    /// The sync durations recorded after the first `seen` syncs (as many as are still kept).
    pub fn syncs_since(&self, seen: u64) -> impl Iterator<Item = i64> + '_ {
        let new = self.syncs.saturating_sub(seen).min(self.recent_sync_ms.len() as u64) as usize;
        self.recent_sync_ms
            .iter()
            .skip(self.recent_sync_ms.len() - new)
            .copied()
    }
}

enum LogCommand {
    Append { generation: u64, txns: Vec<Txn> },
    PurgeThrough(i64),
}

/// Handle of the log writer thread.
pub struct LogWriter {
    tx: mpsc::Sender<LogCommand>,
    durability: watch::Receiver<Durability>,
    /// The log and what its writer keeps, shared with the writer thread: whoever holds the lock
    /// writes (the thread, or the pipeline through `append_here`).
    state: Arc<Mutex<WriterState>>,
    /// Commands sent to the thread that it has not finished yet.
    queued: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<Option<TxnLog>>>,
}

impl LogWriter {
    /// Starts the writer thread. `force_sync` is ZooKeeper's forceSync; `max_batch_txns` bounds
    /// one group commit (maxBatchSize).
    pub fn start(log: TxnLog, durable_zxid: i64, force_sync: bool, max_batch_txns: usize) -> LogWriter {
        let (tx, rx) = mpsc::channel::<LogCommand>();
        let (durability_tx, durability) = watch::channel(Durability { durable_zxid, ..Durability::default() });
        let state = Arc::new(Mutex::new(WriterState {
            log: WriterLog {
                path: log.path().to_path_buf(),
                direct_io: log.direct_io(),
                log: Some(log),
                damaged: false,
                last_reopen: None,
            },
            generation: 0,
            durable_zxid,
            pending: Vec::new(),
            last_alive_written: 0,
            refused_batches: 0,
            durability: durability_tx,
            force_sync,
        }));
        let queued = Arc::new(AtomicUsize::new(0));
        let (thread_state, thread_queued) = (state.clone(), queued.clone());
        let max_batch_txns = max_batch_txns.max(1);
        let thread = thread::Builder::new()
            .name("txn-log-writer".into())
            .spawn(move || writer_loop(&thread_state, &thread_queued, rx, max_batch_txns))
            .ok();
        LogWriter { tx, durability, state, queued, thread }
    }

    /// Queues txns prepped under failure count `generation`.
    pub fn submit(&self, generation: u64, txns: Vec<Txn>) {
        self.send(LogCommand::Append { generation, txns });
    }

    /// Writes and syncs txns prepped under failure count `generation` on the calling thread,
    /// when the writer thread has nothing queued and is not writing; otherwise hands them back.
    /// The caller must be the only one submitting, so nothing it submitted can be overtaken.
    ///
    /// For a pipeline that holds nothing but these txns: it could do nothing else while they
    /// sync, and doing it here spares two thread wake-ups (the writer's, then the pipeline's).
    pub fn append_here(&self, generation: u64, txns: Vec<Txn>) -> Result<(), Vec<Txn>> {
        if self.queued.load(Ordering::Acquire) != 0 {
            return Err(txns);
        }
        let Ok(mut state) = self.state.try_lock() else { return Err(txns) };
        state.handle(vec![LogCommand::Append { generation, txns }]);
        Ok(())
    }

    /// Asks the writer to drop log entries up to `zxid` (after a snapshot made them unnecessary).
    pub fn purge_through(&self, zxid: i64) {
        self.send(LogCommand::PurgeThrough(zxid));
    }

    fn send(&self, command: LogCommand) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        // The thread only stops when this handle is dropped.
        if self.tx.send(command).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Durability updates.
    pub fn durability(&self) -> watch::Receiver<Durability> {
        self.durability.clone()
    }

    /// Stops the thread after it has written what was queued; returns the log (none if the disk
    /// failed and the log could not be reopened since).
    pub fn stop(mut self) -> Option<TxnLog> {
        let thread = self.thread.take();
        drop(self);
        thread.and_then(|t| t.join().ok()).flatten()
    }
}

fn now_wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Least time between two attempts to reopen a log RocksDB has stopped writing to.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// The log as the writer thread holds it, and how it recovers from a failed write.
///
/// After a failed batch (disk full, IO error) RocksDB may have stopped accepting writes (its
/// "background error" state, left only by `DB::Resume`, which the C API does not offer) and part of
/// the batch may be in its WAL. Nothing more is appended until the log is `repair`ed: the failed
/// batch's txns are removed (`truncate_after` the durable zxid), reopening RocksDB first if it
/// refuses that, at most once per `REOPEN_INTERVAL`. Their zxids are reused by the next writes, so
/// a refused txn must never come back on replay.
struct WriterLog {
    log: Option<TxnLog>,
    path: PathBuf,
    /// The first open's direct IO choice, kept by every reopen.
    direct_io: bool,
    damaged: bool,
    last_reopen: Option<std::time::Instant>,
}

impl WriterLog {
    /// Makes the log writable again after a failure; an error means it still is not.
    fn repair(&mut self, durable_zxid: i64) -> Result<(), String> {
        if !self.damaged {
            return Ok(());
        }
        if let Some(log) = &self.log {
            if log.truncate_after(durable_zxid).is_ok() {
                self.damaged = false;
                return Ok(());
            }
        }
        if self.last_reopen.is_some_and(|t| t.elapsed() < REOPEN_INTERVAL) {
            return Err("the transaction log has not recovered from the last write error yet".into());
        }
        self.last_reopen = Some(std::time::Instant::now());
        // Close RocksDB before opening it again (it holds a lock on the directory).
        drop(self.log.take());
        let log = TxnLog::reopen(&self.path, self.direct_io).map_err(|e| e.to_string())?;
        let truncated = log.truncate_after(durable_zxid).map_err(|e| e.to_string());
        self.log = Some(log);
        truncated?;
        info!(
            durable_zxid = format_args!("{durable_zxid:#x}"),
            "reopened the transaction log after a write error"
        );
        self.damaged = false;
        Ok(())
    }
}

/// The log writer's state: the log, the failure count and what the pipeline is told.
struct WriterState {
    log: WriterLog,
    generation: u64,
    durable_zxid: i64,
    pending: Vec<Txn>,
    last_alive_written: i64,
    /// Batches refused since the log last accepted one: the first is logged as an error, the
    /// rest only counted, so a full disk gives one clear line rather than one per write.
    refused_batches: u64,
    durability: watch::Sender<Durability>,
    force_sync: bool,
}

impl WriterState {
    /// Writes the appends among `commands` in one synced batch, then purges and keeps the
    /// last-alive time fresh; with no commands (an idle wake-up) only the latter two.
    fn handle(&mut self, commands: Vec<LogCommand>) {
        let mut purge = None;
        for command in commands {
            match command {
                LogCommand::Append { generation: g, txns } if g == self.generation => self.pending.extend(txns),
                LogCommand::Append { .. } => {} // prepped before a failure the pipeline has not seen yet
                LogCommand::PurgeThrough(zxid) => purge = Some(zxid),
            }
        }
        let log = &mut self.log;
        let pending_was_empty = self.pending.is_empty();
        if !self.pending.is_empty() {
            let first_zxid = self.pending[0].header.zxid;
            let last = self.pending.last().map_or(self.durable_zxid, |t| t.header.zxid);
            // fsynctime: the append alone (write + sync), not a repair before it.
            let mut sync_ms = 0;
            let written = log.repair(self.durable_zxid).and_then(|()| match &log.log {
                Some(l) => {
                    let started = std::time::Instant::now();
                    let appended = l.append(&self.pending, self.force_sync).map_err(|e| e.to_string());
                    sync_ms = started.elapsed().as_millis() as i64;
                    appended
                }
                None => Err("the transaction log is closed after a write error".into()),
            });
            match written {
                Ok(()) => {
                    self.durable_zxid = last;
                    if self.refused_batches > 0 {
                        info!(refused_batches = self.refused_batches, "the transaction log accepts writes again");
                        self.refused_batches = 0;
                    }
                    let force_sync = self.force_sync;
                    self.durability.send_modify(|d| {
                        d.durable_zxid = last;
                        if force_sync {
                            d.syncs += 1;
                            if d.recent_sync_ms.len() == RECENT_SYNCS_MAX {
                                d.recent_sync_ms.pop_front();
                            }
                            d.recent_sync_ms.push_back(sync_ms);
                        }
                    });
                }
                Err(e) => {
                    if self.refused_batches == 0 {
                        error!(
                            "refusing writes until the transaction log accepts them again: could not persist txns {first_zxid:#x}..={last:#x}: {e}"
                        );
                    } else {
                        debug!("still refusing writes: txns {first_zxid:#x}..={last:#x}: {e}");
                    }
                    self.refused_batches += 1;
                    self.generation += 1;
                    // Whatever part of the batch may have reached the disk is not acknowledged:
                    // remove it (now, or before the next append) so the zxids can be reused.
                    log.damaged = true;
                    let _ = log.repair(self.durable_zxid);
                    let generation = self.generation;
                    self.durability.send_modify(|d| {
                        d.failures = generation;
                        d.last_error = Some(e);
                    });
                }
            }
            self.pending.clear();
        }
        if pending_was_empty && log.damaged {
            // Idle after a failure: try to recover now, so the next write finds the log ready.
            let _ = log.repair(self.durable_zxid);
        }
        if let (Some(zxid), false, Some(l)) = (purge, log.damaged, &log.log) {
            if let Err(e) = l.purge_through(zxid.min(self.durable_zxid)) {
                warn!("could not purge the log through {zxid:#x}: {e}");
            }
        }
        let now = now_wall_ms();
        if now - self.last_alive_written >= 1000 && !log.damaged {
            // Not synced: it only bounds how long sessions may have lived while the server was down.
            if log
                .log
                .as_ref()
                .is_some_and(|l| l.set_meta_unsynced(LAST_ALIVE_KEY, now).is_ok())
            {
                self.last_alive_written = now;
            }
        }
    }
}

fn lock(state: &Mutex<WriterState>) -> std::sync::MutexGuard<'_, WriterState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn writer_loop(
    state: &Mutex<WriterState>,
    queued: &AtomicUsize,
    rx: mpsc::Receiver<LogCommand>,
    max_batch_txns: usize,
) -> Option<TxnLog> {
    loop {
        // While the log is damaged, wake up often enough to notice the disk accepting writes.
        let wait = if lock(state).log.damaged {
            REOPEN_INTERVAL
        } else {
            Duration::from_secs(1)
        };
        let first = match rx.recv_timeout(wait) {
            Ok(command) => Some(command),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut commands: Vec<LogCommand> = first.into_iter().collect();
        let txns_in = |command: &LogCommand| match command {
            LogCommand::Append { txns, .. } => txns.len(),
            LogCommand::PurgeThrough(_) => 0,
        };
        // Group commit: what is already queued goes into the same synced batch, up to maxBatchSize.
        let mut batch_txns: usize = commands.iter().map(txns_in).sum();
        while batch_txns < max_batch_txns {
            let Ok(command) = rx.try_recv() else { break };
            batch_txns += txns_in(&command);
            commands.push(command);
        }
        let taken = commands.len();
        lock(state).handle(commands);
        queued.fetch_sub(taken, Ordering::AcqRel);
    }
    let mut state = lock(state);
    if let Some(l) = &state.log.log {
        if !state.log.damaged {
            let _ = l.set_meta_unsynced(LAST_ALIVE_KEY, now_wall_ms());
        }
    }
    state.log.log.take()
}

/// Lowers the calling thread's CPU priority to the lowest (nice 19). The snapshot writer spends
/// most of its time in the kernel copying the file into the page cache (up to 39% of the server's
/// samples in a profile under create load); on a small machine that CPU must not be taken from the
/// request pipeline. Snapshots are background work with no deadline: the log holds every txn until
/// one completes.
fn lower_thread_priority() {
    // On Linux, "process" 0 is the calling thread: threads have nice values of their own.
    if let Err(e) = rustix::process::setpriority_process(None, 19) {
        debug!("could not lower the snapshot writer's priority: {e}");
    }
}

/// A snapshot being written: the core task feeds it nodes between events (`step`), a writer thread
/// writes and syncs the file, so writes are never stopped for a snapshot.
pub struct SnapshotJob {
    zxid: i64,
    cursor: crate::tree::SnapshotCursor,
    encoder: snapshot::SnapshotEncoder,
    chunks: mpsc::SyncSender<Option<bytes::Bytes>>,
    held: Option<bytes::Bytes>,
    writer: Option<thread::JoinHandle<Result<(PathBuf, i64), SnapshotError>>>,
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
        /// The file's modification time (seconds since the epoch).
        modified_secs: i64,
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
                lower_thread_priority();
                while let Ok(chunk) = rx.recv() {
                    match chunk {
                        Some(bytes) => {
                            if let Err(e) = file.write(&bytes) {
                                file.abort();
                                return Err(e);
                            }
                        }
                        None => {
                            let path = file.commit()?;
                            // ZooKeeper reports the file's modification time (last_snapshot).
                            let modified_secs = std::fs::metadata(&path)
                                .and_then(|m| m.modified())
                                .ok()
                                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                                .map_or(-1, |d| d.as_secs() as i64);
                            return Ok((path, modified_secs));
                        }
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
            Some(Ok(Ok((path, modified_secs)))) => SnapshotProgress::Finished {
                zxid: self.zxid,
                nodes: self.cursor.visited(),
                path,
                elapsed: self.started.elapsed(),
                modified_secs,
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
        // Each synced batch reports how long it took (fsynctime).
        let d = durability.borrow().clone();
        assert!(d.syncs >= 1 && d.syncs <= 2, "{d:?}");
        assert_eq!(d.syncs_since(0).count() as u64, d.syncs);
        assert_eq!(d.syncs_since(d.syncs).count(), 0);
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
    fn append_here_writes_on_the_callers_thread_only_when_the_writer_has_nothing_queued() {
        let dir = txn_log::tests::tempdir();
        let layout = Layout::new(&dir, &dir);
        layout.create_dirs().unwrap();
        let writer = LogWriter::start(TxnLog::open(&layout.log_dir).unwrap(), 0, true, 1000);
        let session = |zxid| txn(zxid, TxnBody::CreateSession { timeout_ms: 5000 });
        // The thread is idle but for its once-a-second wake-up, and it may still be finishing the
        // last command it took (it counts a command done after releasing the state).
        let append_once_idle = |generation: u64, mut txns: Vec<Txn>| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match writer.append_here(generation, txns) {
                    Ok(()) => return,
                    Err(back) if std::time::Instant::now() < deadline => txns = back,
                    Err(_) => panic!("the writer thread never became idle"),
                }
                thread::sleep(Duration::from_millis(1));
            }
        };
        // Written and synced before the call returns.
        append_once_idle(0, vec![session(1)]);
        let d = writer.durability().borrow().clone();
        assert_eq!((d.durable_zxid, d.syncs, d.recent_sync_ms.len()), (1, 1, 1));
        // While the thread holds a command it has not written, the txns come back to be queued
        // behind it: they must not overtake it.
        let guard = lock(&writer.state);
        writer.submit(0, vec![session(2)]);
        let back = writer.append_here(0, vec![session(3)]).unwrap_err();
        assert_eq!(back.len(), 1);
        drop(guard);
        writer.submit(0, back);
        let mut durability = writer.durability();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            while durability.borrow().durable_zxid < 3 {
                durability.changed().await.unwrap();
            }
        });
        // Txns prepped under an older failure count are dropped, here as on the thread.
        append_once_idle(7, vec![session(4)]);
        assert_eq!(writer.durability().borrow().durable_zxid, 3);
        append_once_idle(0, vec![session(4)]);
        assert_eq!(writer.durability().borrow().durable_zxid, 4);
        let log = writer.stop().unwrap();
        let mut zxids = Vec::new();
        log.read_after(0, |t| {
            zxids.push(t.header.zxid);
            true
        })
        .unwrap();
        assert_eq!(zxids, vec![1, 2, 3, 4]);
        drop(log);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn syncs_since_returns_only_the_unseen_durations() {
        let mut d = Durability::default();
        for ms in 0..(RECENT_SYNCS_MAX as i64 + 10) {
            d.syncs += 1;
            if d.recent_sync_ms.len() == RECENT_SYNCS_MAX {
                d.recent_sync_ms.pop_front();
            }
            d.recent_sync_ms.push_back(ms);
        }
        let last = RECENT_SYNCS_MAX as i64 + 9;
        assert_eq!(d.syncs_since(d.syncs - 2).collect::<Vec<_>>(), vec![last - 1, last]);
        // A reader that fell further behind than the window gets what is kept.
        assert_eq!(d.syncs_since(0).count(), RECENT_SYNCS_MAX);
        assert_eq!(d.syncs_since(0).next(), Some(10));
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
