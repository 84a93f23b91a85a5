//! The thin tokio layer around `core`: a listener, a reader and a writer task per connection, and
//! one task that owns the `Core` and feeds it events in arrival order.
//!
//! Hand-offs: a reader sends every complete frame it has buffered as one event; the core task
//! handles what is queued, then writes each connection's replies of that round with one
//! `writev` straight to the socket when nothing is queued for it (the common case), so a request
//! crosses two tasks, not three. Only what the socket does not take goes to the writer task,
//! which keeps the connection's bytes in order from then on; so do rounds that touch many
//! connections (a watch fan-out), which the writer tasks spread over the runtime's workers.
//!
//! Bounds: the channel into the core holds at most `globalOutstandingLimit` requests (readers
//! wait when it is full, which stops reading from sockets, as ZooKeeper does); each connection's
//! outbound queue is bounded, and a client that does not read its replies is disconnected rather
//! than buffered forever; frames are capped at `jute.maxbuffer`; connections per client address
//! are capped at `maxClientCnxns`; a connection that never completes its handshake is closed after
//! `nio.sessionlessCnxnTimeout`.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, info, warn};

use crate::admin::commands::{self, AdminAnswer, AdminQuery};
use crate::admin::four_letter::{self, AdminState};
use crate::config::Config;
use crate::jute::Decode;
use crate::proto::frame::{check_frame, four_letter_word, FrameCheck};
use crate::proto::{decode_read_only_flag, ConnectRequest};
use crate::server::core::{ConnId, Core, IdMap, Now, Output};
use crate::server::replication::{TxnSink, Upstream, ZabEvent, ZabLink};
use crate::storage::{snapshot, Durability, SnapshotJob, SnapshotProgress};

/// The pipeline syncs a lone write itself (`LogWriter::append_here`) only while the last sync
/// took less than this.
const SYNC_HERE_MS_MAX: i64 = 2;
/// Frames a connection may have queued for writing before it counts as not reading.
const OUTBOUND_QUEUE_FRAMES: usize = 16_384;
/// Queued reply bytes above which a connection's requests are no longer read (back-pressure).
const OUTBOUND_HIGH_WATER_BYTES: usize = 1 << 20;
/// Queued bytes above which a connection is closed: only watch-event floods get here, since
/// requests stop being read at the high-water mark.
const OUTBOUND_LIMIT_BYTES: usize = 16 << 20;
/// Largest batch of queued frames written with one syscall.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Most frames a reader hands to the core task in one event (bounds the batch the core takes
/// past `globalOutstandingLimit`).
const FRAMES_PER_EVENT_MAX: usize = 64;
/// Replication events handled in one round of the core task after the one that woke it.
const ZAB_EVENTS_PER_ROUND: usize = 1_024;
/// Most slices in one `writev` of the core task (an array on the stack; Linux allows 1,024).
const WRITEV_SLICES_MAX: usize = 64;
/// Bytes a reader asks the socket for at a time.
const READ_CHUNK_BYTES: usize = 8 * 1024;
/// Rounds touching at most this many connections are written by the core task itself (a
/// getData at 32 x 1,000: 0.80-0.94M/s written directly, 0.55-0.81M/s through the writer
/// tasks); larger rounds go through the writer tasks (see `Dispatcher::dispatch`).
const DIRECT_WRITE_CONNS_MAX: usize = 64;

/// Something a connection task tells the core task.
#[derive(Debug)]
pub enum CoreEvent {
    /// Handshake read.
    Connect {
        /// Connection.
        conn: ConnId,
        /// Peer.
        remote: SocketAddr,
        /// The request.
        request: ConnectRequest,
        /// No readOnly byte.
        old_client: bool,
        /// Where the connection's frames go.
        outbound: Outbound,
    },
    /// Request frames, in arrival order (at most `FRAMES_PER_EVENT_MAX`).
    Requests {
        /// Connection.
        conn: ConnId,
        /// Each: header and record.
        frames: Vec<Bytes>,
    },
    /// Connection gone.
    Disconnect {
        /// Connection.
        conn: ConnId,
    },
    /// A four-letter word; the text comes back on `reply`.
    FourLetter {
        /// The word.
        word: &'static str,
        /// Peer (for `cons`).
        remote: SocketAddr,
        /// `stmk`'s argument.
        argument: Option<i64>,
        /// Answer.
        reply: oneshot::Sender<String>,
    },
    /// An AdminServer command or a metrics snapshot for the HTTP endpoints (`admin::http`).
    Admin {
        /// The question.
        query: AdminQuery,
        /// Answer.
        reply: oneshot::Sender<AdminAnswer>,
    },
}

/// A connection's way out: its socket, for direct writes by the core task, and the queue of its
/// writer task, with a count of queued bytes shared with that writer.
#[derive(Debug, Clone)]
pub struct Outbound {
    stream: Arc<OwnedWriteHalf>,
    tx: mpsc::Sender<Bytes>,
    queued: Arc<QueuedBytes>,
}

/// The core task's side of a connection: its `Outbound` and the frames of the current round.
#[derive(Debug)]
struct OutboundState {
    out: Outbound,
    staged: Vec<Bytes>,
}

/// Bytes queued for a connection, and a wake-up for a reader waiting for them to drain.
#[derive(Debug, Default)]
struct QueuedBytes {
    bytes: AtomicUsize,
    drained: Notify,
}

/// Clocks for the core: wall time for txns, monotonic time since start for expiry.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock { start: Instant::now() }
    }

    /// The current instant for the core.
    pub fn now(&self) -> Now {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Now { wall_ms, mono_ms: self.start.elapsed().as_millis() as i64 }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// What the core task needs to make txns durable and take snapshots.
pub struct Persistence {
    /// Where txns become durable: the log writer thread, or the quorum.
    pub writer: TxnSink,
    /// Where snapshots go.
    pub snapshot_dir: PathBuf,
    /// ZooKeeper's snapCount: a snapshot after snapCount/2 + random(snapCount/2) txns.
    pub snap_count: u64,
    /// autopurge.snapRetainCount.
    pub snap_retain_count: usize,
    /// autopurge.purgeInterval (None = never purge, ZooKeeper's default).
    pub purge_interval: Option<Duration>,
    /// Seed for the snapshot jitter.
    pub seed: u64,
    /// Take a snapshot as soon as the server runs, as ZooKeeper does after loading its data
    /// (`ZooKeeperServer.loadData`); false when the newest snapshot already holds the whole state.
    pub snapshot_at_start: bool,
    /// `fsync.warningthresholdms`: a slower log sync is logged and counted.
    pub fsync_warning_threshold_ms: i64,
}

/// Nodes written per snapshot step between events: about 0.2 ms of the pipeline's time, so a
/// snapshot in progress adds little to any request's latency.
const SNAPSHOT_STEP_NODES: usize = 1024;

fn next_random(state: &mut u64) -> u64 {
    // xorshift64*: the snapshot jitter only needs to differ between servers and snapshots.
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn snapshot_threshold(snap_count: u64, rng: &mut u64) -> u64 {
    let half = (snap_count / 2).max(1);
    half + next_random(rng) % half
}

/// Waits until the log writer reports progress (`durability_reached` reads it).
async fn durability_changed(rx: &mut Option<watch::Receiver<Durability>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The writer is gone (shutdown): nothing more will become durable.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// A snapshot in progress advances between events, at least every millisecond. An async fn, so
/// the rounds without a snapshot (the select! builds every branch's future) never touch the timer.
async fn snapshot_pause() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Runs the core task until `shutdown` fires. Returns the persistence handle so the caller can
/// stop the log writer after the last txn was handed over.
#[allow(clippy::too_many_arguments)]
pub async fn run_core(
    mut core: Core,
    mut admin: AdminState,
    mut events: mpsc::Receiver<CoreEvent>,
    clock: Clock,
    container_check_interval: Duration,
    outstanding_limit: usize,
    persistence: Option<Persistence>,
    zab: Option<ZabLink>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Persistence> {
    let mut outbound = Dispatcher::default();
    let (mut zab_events, local_sessions) = match zab {
        Some(ZabLink { events, upstream, local_sessions }) => {
            outbound.upstream = Some(upstream);
            (Some(events), Some(local_sessions))
        }
        None => (None, None),
    };
    let tick = Duration::from_millis((core.settings.tick_ms / 2).max(1) as u64);
    let mut tick_timer = tokio::time::interval(tick);
    tick_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Like ZooKeeper's ContainerManager, the first check comes one interval after start.
    let container_period = container_check_interval.max(Duration::from_millis(10));
    let mut container_timer = tokio::time::interval_at(tokio::time::Instant::now() + container_period, container_period);
    container_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let purge_every = persistence.as_ref().and_then(|p| p.purge_interval).unwrap_or(Duration::from_secs(3600));
    let purging = persistence.as_ref().is_some_and(|p| p.purge_interval.is_some());
    // Like ZooKeeper's DatadirCleanupManager (timer delay 0), the first purge runs at start-up,
    // here before anything else, so it never races the start-up snapshot; then every interval.
    if let (true, Some(p)) = (purging, &persistence) {
        purge(p).await;
    }
    let mut purge_timer = tokio::time::interval_at(tokio::time::Instant::now() + purge_every, purge_every);
    let mut durability = persistence.as_ref().map(|p| p.writer.durability());
    let mut rng = persistence.as_ref().map_or(1, |p| p.seed | 1);
    let mut snapshot_at = persistence.as_ref().map_or(u64::MAX, |p| {
        if p.snapshot_at_start {
            0
        } else {
            snapshot_threshold(p.snap_count, &mut rng)
        }
    });
    let mut syncs_seen = 0u64;
    let mut snapshot_job: Option<SnapshotJob> = None;
    let outstanding_limit = outstanding_limit.max(1);
    loop {
        tokio::select! {
            // Back-pressure: with globalOutstandingLimit requests in the pipeline, stop taking more.
            event = events.recv(), if core.outstanding() < outstanding_limit => {
                let Some(event) = event else { break };
                // One clock read for the whole drained batch (it was 3% of samples read per event).
                let now = clock.now();
                handle_event(&mut core, &mut admin, &mut outbound, event, now);
                // Drain what is already queued before dispatching, to batch outputs.
                let mut budget = 256;
                while budget > 0 && core.outstanding() < outstanding_limit {
                    let Ok(event) = events.try_recv() else { break };
                    handle_event(&mut core, &mut admin, &mut outbound, event, now);
                    budget -= 1;
                }
            }
            () = durability_changed(&mut durability) => {
                let threshold_ms = persistence.as_ref().map_or(i64::MAX, |p| p.fsync_warning_threshold_ms);
                if let Some(rx) = &mut durability {
                    durability_reached(&mut core, rx, &mut syncs_seen, threshold_ms, clock.now());
                }
            }
            Some(event) = zab_event(&mut zab_events) => {
                let now = clock.now();
                handle_zab_event(&mut core, &outbound, event, now);
                // As for client events: what is already queued (a burst of commits on a follower,
                // of forwarded requests on a leader) is handled before dispatching, so its replies
                // share a write per connection and its txns one hand-off to the leading thread.
                if let Some(rx) = &mut zab_events {
                    for _ in 0..ZAB_EVENTS_PER_ROUND {
                        let Ok(event) = rx.try_recv() else { break };
                        handle_zab_event(&mut core, &outbound, event, now);
                    }
                }
            }
            _ = tick_timer.tick() => {
                core.tick(clock.now());
                take_queue_samples(&mut core, &admin);
                if let Some(local) = &local_sessions {
                    *local.lock().unwrap_or_else(|p| p.into_inner()) = core.local_sessions();
                }
            }
            _ = container_timer.tick() => core.check_containers(clock.now()),
            _ = purge_timer.tick(), if purging => {
                if let Some(p) = &persistence {
                    purge(p).await;
                }
            }
            () = snapshot_pause(), if snapshot_job.is_some() => {}
            _ = shutdown.changed() => break,
        }
        if let Some(p) = &persistence {
            // Bounded: every round takes at least one txn, and answering them preps no more txns
            // than the requests already in the pipeline.
            loop {
                let txns = core.take_unpersisted();
                if txns.is_empty() {
                    break;
                }
                // With nothing else in the pipeline, nothing could be done while a lone txn syncs
                // but answer requests that have not arrived yet: it is synced here, sparing two
                // thread wake-ups (the log writer's, then this task's), a fifth of a lone write's
                // latency (README, BENCHMARKS). A batch goes to the writer thread, so the next one is
                // prepped while it syncs. A request arriving meanwhile waits for the sync,
                // as a read behind a sync does in ZooKeeper's standalone pipeline. Only while the
                // disk syncs quickly: after a slow sync, writes go to the writer thread again until
                // one is quick, so a stalling disk does not stall the reads of other sessions.
                let alone = events.is_empty()
                    && txns.len() == 1
                    && core.outstanding() <= 1
                    && durability.as_ref().is_some_and(|rx| {
                        rx.borrow().recent_sync_ms.back().is_none_or(|&ms| ms < SYNC_HERE_MS_MAX)
                    });
                let written_here = if alone {
                    p.writer.append_here(core.log_generation(), txns)
                } else {
                    Err(txns)
                };
                match written_here {
                    Ok(()) => {
                        if let Some(rx) = &mut durability {
                            durability_reached(&mut core, rx, &mut syncs_seen, p.fsync_warning_threshold_ms, clock.now());
                        }
                    }
                    Err(txns) => {
                        p.writer.submit(core.log_generation(), txns);
                        break;
                    }
                }
            }
            if core.txns_since_snapshot() >= snapshot_at {
                // ZooKeeper's `SyncRequestProcessor`: when the count is reached while the previous
                // snapshot is still being written, this one is skipped and the count starts over,
                // so a server that writes faster than it snapshots does not snapshot back to back.
                let zxid = core.last_processed_zxid();
                if snapshot_job.is_some() {
                    warn!(zxid = format_args!("{zxid:#x}"), "too busy to snap, skipping");
                } else {
                    match SnapshotJob::start(&p.snapshot_dir, zxid, &core.sessions.sessions()) {
                        Ok(job) => {
                            info!(zxid = format_args!("{zxid:#x}"), "snapshot started");
                            snapshot_job = Some(job);
                        }
                        Err(e) => warn!("cannot start a snapshot: {e}"),
                    }
                }
                core.snapshot_started();
                snapshot_at = snapshot_threshold(p.snap_count, &mut rng);
            }
            if let Some(job) = &mut snapshot_job {
                match job.step(&core.tree, SNAPSHOT_STEP_NODES) {
                    SnapshotProgress::Running => {}
                    SnapshotProgress::Finished {
                        zxid,
                        nodes,
                        path,
                        elapsed,
                        modified_secs,
                    } => {
                        core.metrics.observe(crate::server::metrics::ids::SNAPSHOTTIME, elapsed.as_millis() as i64);
                        admin.last_snapshot = Some((zxid, modified_secs));
                        info!(zxid = format_args!("{zxid:#x}"), nodes, file = %path.display(), elapsed_ms = elapsed.as_millis() as u64, "snapshot written");
                        snapshot_job = None;
                    }
                    SnapshotProgress::Failed(e) => {
                        warn!("snapshot failed (the log still holds every txn): {e}");
                        snapshot_job = None;
                    }
                }
            }
        }
        outbound.dispatch(&mut core);
    }
    info!("request pipeline stopped");
    if let Some(p) = &persistence {
        let txns = core.take_unpersisted();
        if !txns.is_empty() {
            p.writer.submit(core.log_generation(), txns);
        }
        if snapshot_job.is_some() || core.txns_since_snapshot() > 0 {
            snapshot_at_shutdown(&core, p, snapshot_job.take()).await;
        }
    }
    persistence
}

/// What the log writer made durable (or failed to) reaches the pipeline: sync durations into the
/// metrics, then the txns' requests are answered (or refused after a failure).
fn durability_reached(
    core: &mut Core,
    rx: &mut watch::Receiver<Durability>,
    syncs_seen: &mut u64,
    threshold_ms: i64,
    now: Now,
) {
    // Read in place (not cloned: its sync history is 256 entries) and released before the
    // replies are made, so the writer never waits for them to publish its next batch.
    let (durable_zxid, failures) = {
        let d = rx.borrow_and_update();
        for sync_ms in d.syncs_since(*syncs_seen) {
            core.metrics.observe(crate::server::metrics::ids::FSYNCTIME, sync_ms);
            if sync_ms > threshold_ms {
                core.stats.fsync_threshold_exceed_count += 1;
                warn!("syncing the transaction log took {sync_ms} ms, above fsync.warningthresholdms ({threshold_ms} ms): write latency suffers");
            }
        }
        *syncs_seen = d.syncs;
        (d.durable_zxid, d.failures)
    };
    core.persisted_through(durable_zxid, now);
    if failures > core.log_generation() {
        // The log writer has logged the cause (once per episode); refuse quietly here.
        core.persist_failed(failures, now);
    }
}

/// Nodes written per snapshot step at shutdown, when no request waits for the pipeline.
const SHUTDOWN_SNAPSHOT_STEP_NODES: usize = 65_536;

/// Snapshots the tree as the pipeline stops, so the next start loads it instead of replaying every
/// txn since the last periodic snapshot (up to snapCount of them). ZooKeeper does not do this: its
/// next start replays the log. A crash (kill -9) skips it and loses nothing: the log holds every
/// txn, and a snapshot cut short is never renamed into place.
async fn snapshot_at_shutdown(core: &Core, p: &Persistence, running: Option<SnapshotJob>) {
    let zxid = core.last_processed_zxid();
    let mut job = match running {
        // Started at the current state: finishing it is the snapshot wanted.
        Some(job) if core.txns_since_snapshot() == 0 => job,
        older => {
            // An unfinished snapshot of an older state (its file is never renamed into place).
            drop(older);
            match SnapshotJob::start(&p.snapshot_dir, zxid, &core.sessions.sessions()) {
                Ok(job) => job,
                Err(e) => {
                    warn!("cannot take the shutdown snapshot (the log holds every txn): {e}");
                    return;
                }
            }
        }
    };
    loop {
        match job.step(&core.tree, SHUTDOWN_SNAPSHOT_STEP_NODES) {
            SnapshotProgress::Running => tokio::time::sleep(Duration::from_millis(1)).await,
            SnapshotProgress::Finished { nodes, path, elapsed, .. } => {
                info!(zxid = format_args!("{zxid:#x}"), nodes, file = %path.display(), elapsed_ms = elapsed.as_millis() as u64, "shutdown snapshot written");
                return;
            }
            SnapshotProgress::Failed(e) => {
                warn!("shutdown snapshot failed (the log holds every txn): {e}");
                return;
            }
        }
    }
}

/// autopurge: keeps the newest `snapRetainCount` snapshots and drops the log before the oldest kept.
async fn purge(p: &Persistence) {
    let dir = p.snapshot_dir.clone();
    let retain = p.snap_retain_count;
    match tokio::task::spawn_blocking(move || snapshot::purge(&dir, retain)).await {
        Ok(Some(oldest_kept)) => {
            info!(
                retained = retain,
                oldest_kept = format_args!("{oldest_kept:#x}"),
                "purged snapshots and the log before the oldest kept"
            );
            p.writer.purge_through(oldest_kept);
        }
        Ok(None) => {}
        Err(e) => warn!("the purge task failed: {e}"),
    }
}

/// A leader's learner send-queue samples, into `learner_handler_qp_size` / `_time_ms` by sid.
fn take_queue_samples(core: &mut Core, admin: &AdminState) {
    let Some(status) = admin.quorum.as_ref().and_then(|q| q.leader.as_ref()) else { return };
    let samples = std::mem::take(&mut status.lock().unwrap_or_else(|p| p.into_inner()).queue_samples);
    let mut key = String::new();
    let mut key_sid = 0;
    for sample in samples {
        if key.is_empty() || key_sid != sample.sid {
            key = sample.sid.to_string();
            key_sid = sample.sid;
        }
        core.metrics.observe_in_set("learner_handler_qp_size", &key, sample.queued);
        core.metrics.observe_in_set("learner_handler_qp_time_ms", &key, sample.waited_ms);
    }
}

async fn zab_event(rx: &mut Option<mpsc::Receiver<ZabEvent>>) -> Option<ZabEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn handle_zab_event(core: &mut Core, outbound: &Dispatcher, event: ZabEvent, now: Now) {
    match event {
        ZabEvent::Committed(txn) => core.committed(*txn, now),
        ZabEvent::SyncDone => core.sync_done(now),
        ZabEvent::Revalidated { session_id, valid } => core.revalidated(session_id, valid, now),
        ZabEvent::Request(request) => core.remote_request(request, now),
        ZabEvent::Touch(sessions) => core.touch_sessions(&sessions, now),
        ZabEvent::Revalidate { learner, session_id } => {
            let valid = core.revalidate(session_id, now);
            if let Some(upstream) = &outbound.upstream {
                upstream.revalidated(learner, session_id, valid);
            }
        }
        ZabEvent::Snapshot { zxid, reply } => {
            // Every commit through `zxid` was reported before this request: apply them first.
            core.persisted_through(zxid, now);
            let answer = if core.last_processed_zxid() == zxid {
                let mut out = Vec::new();
                crate::storage::zk_format::write_snap_stream_body(&core.tree, &core.sessions.sessions(), &mut out)
                    .map(|()| Bytes::from(out))
                    .map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "the pipeline's tree is at {:#x}, the snapshot asked for is at {zxid:#x}",
                    core.last_processed_zxid()
                ))
            };
            // The leading thread may have stopped waiting; nothing to do then.
            let _ = reply.send(answer);
        }
    }
}

fn handle_event(core: &mut Core, admin: &mut AdminState, outbound: &mut Dispatcher, event: CoreEvent, now: Now) {
    match event {
        CoreEvent::Connect { conn, remote, request, old_client, outbound: out } => {
            outbound.conns.insert(conn, OutboundState { out, staged: Vec::new() });
            core.connect(conn, remote, request, old_client, now);
        }
        CoreEvent::Requests { conn, frames } => {
            for frame in frames {
                core.request(conn, frame, now);
            }
        }
        CoreEvent::Disconnect { conn } => {
            // Replies not yet dispatched to it have nowhere to go: the peer is gone.
            outbound.conns.remove(&conn);
            core.disconnect(conn);
        }
        CoreEvent::FourLetter { word, remote, argument, reply } => {
            let text = four_letter::run(word, argument, remote, core, admin, now);
            // The asker may have gone away; nothing to do then.
            let _ = reply.send(text);
        }
        CoreEvent::Admin { query, reply } => {
            // The HTTP handler may have timed out; nothing to do then.
            let _ = reply.send(commands::answer(query, core, admin, now));
        }
    }
    // Outputs of a round are dispatched together (`run_core`); their order is kept per connection.
    // A four-letter word or admin query is answered at once, so nothing waits behind it.
}

/// Routes the core's outputs to connections, one `writev` per connection per round.
#[derive(Default)]
struct Dispatcher {
    conns: IdMap<ConnId, OutboundState>,
    /// Connections with staged frames this round, in first-output order.
    touched: Vec<ConnId>,
    /// Where a follower's forwarded requests go.
    upstream: Option<Upstream>,
}

impl Dispatcher {
    fn dispatch(&mut self, core: &mut Core) {
        for output in core.drain_outputs() {
            match output {
                Output::Send(conn, frame) => {
                    let Some(state) = self.conns.get_mut(&conn) else { continue };
                    if state.staged.is_empty() {
                        self.touched.push(conn);
                    }
                    state.staged.push(frame);
                }
                Output::Forward(request) => match &self.upstream {
                    Some(upstream) => upstream.forward(request),
                    None => warn!("a forwarded request without a leader to go to; dropped"),
                },
                Output::Revalidate { session_id, timeout_ms } => match &self.upstream {
                    Some(upstream) => upstream.revalidate(session_id, timeout_ms),
                    None => warn!("a revalidation without a leader to go to; dropped"),
                },
                // The writer drains what is queued, then shuts the socket down when its sender is dropped.
                Output::Close(conn) => {
                    if let Some(mut state) = self.conns.remove(&conn) {
                        flush(conn, &mut state, true);
                    }
                }
            }
        }
        // A round that touches many connections (a watch fan-out) is handed to their writer tasks,
        // which the runtime spreads over its workers: written serially here, 1,000 events kept
        // this task from taking new requests for 18-25 ms (each loopback write also runs the
        // receiver's TCP path and wake-up); handed off, the round took 0.3-0.7 ms of this task.
        let direct = self.touched.len() <= DIRECT_WRITE_CONNS_MAX;
        for conn in std::mem::take(&mut self.touched) {
            let Some(state) = self.conns.get_mut(&conn) else { continue };
            if !flush(conn, state, direct) {
                // Dropping the sender makes the writer stop; the reader then reports the disconnect.
                self.conns.remove(&conn);
            }
        }
    }
}

/// Sends a connection's staged frames: straight to the socket while nothing is queued for its
/// writer, the rest to the writer. False when the client is not reading and must be dropped.
fn flush(conn: ConnId, state: &mut OutboundState, direct: bool) -> bool {
    if state.staged.is_empty() {
        return true;
    }
    let out = &state.out;
    let mut frames = std::mem::take(&mut state.staged);
    let mut start = 0;
    // Zero queued bytes: the writer has written everything it was given, so a direct write
    // cannot overtake anything. Only this task adds to the count.
    while direct && start < frames.len() && out.queued.bytes.load(Ordering::Acquire) == 0 {
        let end = frames.len().min(start + WRITEV_SLICES_MAX);
        let mut slices = [IoSlice::new(&[]); WRITEV_SLICES_MAX];
        for (slot, frame) in slices.iter_mut().zip(&frames[start..end]) {
            *slot = IoSlice::new(frame);
        }
        // A full socket buffer (or an error, which the reader will see) leaves the rest to the writer.
        let mut written = out.stream.try_write_vectored(&slices[..end - start]).unwrap_or(0);
        while start < end && written >= frames[start].len() {
            written -= frames[start].len();
            start += 1;
        }
        if start < end {
            if written > 0 {
                frames[start] = frames[start].slice(written..);
            }
            break;
        }
    }
    let mut ok = true;
    for frame in frames.drain(start..) {
        let len = frame.len();
        let queued = out.queued.bytes.fetch_add(len, Ordering::AcqRel) + len;
        if queued > OUTBOUND_LIMIT_BYTES || out.tx.try_send(frame).is_err() {
            warn!(conn, queued, "closing connection: client is not reading its replies");
            ok = false;
            break;
        }
    }
    // Keep the allocation for the next round.
    frames.clear();
    state.staged = frames;
    ok
}

/// Counts connections per client address (`maxClientCnxns`).
#[derive(Debug, Default)]
struct ConnectionCounts {
    by_ip: Mutex<HashMap<IpAddr, u32>>,
}

struct CountGuard {
    counts: Arc<ConnectionCounts>,
    ip: IpAddr,
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        let mut by_ip = self.counts.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Limits each connection task works with.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// jute.maxbuffer.
    pub max_frame_bytes: usize,
    /// maxClientCnxns (0 = unlimited).
    pub max_client_cnxns: u32,
    /// nio.sessionlessCnxnTimeout.
    pub handshake_timeout: Duration,
}

/// Accepts connections until `shutdown` fires.
pub async fn run_listener(
    listener: TcpListener,
    events: mpsc::Sender<CoreEvent>,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let counts = Arc::new(ConnectionCounts::default());
    let next_conn = Arc::new(AtomicU64::new(1));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = remote.ip();
        {
            let mut by_ip = counts.by_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = by_ip.entry(ip).or_insert(0);
            if limits.max_client_cnxns > 0 && *n >= limits.max_client_cnxns {
                warn!(
                    "too many connections from {ip} - max is {}; closing the new one",
                    limits.max_client_cnxns
                );
                continue;
            }
            *n += 1;
        }
        let guard = CountGuard { counts: counts.clone(), ip };
        let _ = stream.set_nodelay(true);
        let conn = next_conn.fetch_add(1, Ordering::Relaxed);
        let events = events.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            serve_connection(conn, stream, remote, events, limits).await;
            drop(guard);
        });
    }
}

enum ReadError {
    Closed,
    Fatal(String),
}

/// Reads what the socket has (at least one byte) into `buf`. Through `AsyncRead`, which forgets the
/// socket's readiness after a read that left room in the buffer: the next read waits for epoll
/// instead of trying the socket again (`try_read_buf` would, and get EAGAIN: one wasted system
/// call per request at one request in flight).
async fn read_some<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> Result<(), ReadError> {
    buf.reserve(READ_CHUNK_BYTES);
    match reader.read_buf(buf).await {
        Ok(0) => Err(ReadError::Closed),
        Ok(_) => Ok(()),
        Err(e) => Err(ReadError::Fatal(e.to_string())),
    }
}

async fn fill<R: AsyncRead + Unpin>(stream: &mut R, buf: &mut BytesMut, want: usize) -> Result<(), ReadError> {
    while buf.len() < want {
        read_some(stream, buf).await?;
    }
    Ok(())
}

/// Moves the complete frames at the front of `buf` (bodies, without length prefixes) to `frames`,
/// at most `FRAMES_PER_EVENT_MAX`.
fn split_frames(buf: &mut BytesMut, max: usize, frames: &mut Vec<Bytes>) -> Result<(), ReadError> {
    while frames.len() < FRAMES_PER_EVENT_MAX {
        match check_frame(buf, max) {
            FrameCheck::Complete(len) => {
                buf.advance(4);
                frames.push(buf.split_to(len).freeze());
            }
            FrameCheck::BadLength(len) => return Err(ReadError::Fatal(format!("Len error {len}"))),
            FrameCheck::Incomplete => break,
        }
    }
    Ok(())
}

/// Reads one complete frame body (without the length prefix).
async fn read_frame<R: AsyncRead + Unpin>(stream: &mut R, buf: &mut BytesMut, max: usize) -> Result<Bytes, ReadError> {
    loop {
        match check_frame(buf, max) {
            FrameCheck::Complete(len) => {
                buf.advance(4);
                return Ok(buf.split_to(len).freeze());
            }
            FrameCheck::BadLength(len) => return Err(ReadError::Fatal(format!("Len error {len}"))),
            FrameCheck::Incomplete => read_some(stream, buf).await?,
        }
    }
}

/// Writes all of `data`, waiting while the socket buffer is full.
async fn write_all(stream: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends FIN after everything written so far (the socket itself closes when its last handle goes).
fn shutdown_write(stream: &TcpStream) {
    // The peer may be gone already; nothing to do then.
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
}

async fn serve_connection(
    conn: ConnId,
    mut stream: TcpStream,
    remote: SocketAddr,
    events: mpsc::Sender<CoreEvent>,
    limits: ConnLimits,
) {
    let mut buf = BytesMut::with_capacity(4096);
    // Handshake phase: a four-letter word or a ConnectRequest, within the sessionless timeout.
    let handshake = tokio::time::timeout(limits.handshake_timeout, async {
        fill(&mut stream, &mut buf, 4).await?;
        let first = [buf[0], buf[1], buf[2], buf[3]];
        if let Some(word) = four_letter_word(first) {
            buf.advance(4);
            let argument = if word == "stmk" {
                fill(&mut stream, &mut buf, 8).await?;
                Some(buf.get_i64())
            } else {
                None
            };
            return Ok(Err((word, argument)));
        }
        read_frame(&mut stream, &mut buf, limits.max_frame_bytes).await.map(Ok)
    })
    .await;
    let connect_frame = match handshake {
        Err(_) => {
            debug!(%remote, "closing connection: no handshake within the sessionless timeout");
            return;
        }
        Ok(Err(ReadError::Closed)) => return,
        Ok(Err(ReadError::Fatal(e))) => {
            warn!(%remote, "closing connection during handshake: {e}");
            return;
        }
        Ok(Ok(Err((word, argument)))) => {
            let (reply, answer) = oneshot::channel();
            if events.send(CoreEvent::FourLetter { word, remote, argument, reply }).await.is_ok() {
                if let Ok(text) = answer.await {
                    // The asker may have gone away; nothing to do then.
                    let _ = write_all(&stream, text.as_bytes()).await;
                }
            }
            shutdown_write(&stream);
            return;
        }
        Ok(Ok(Ok(frame))) => frame,
    };
    let mut body = connect_frame;
    let request = match ConnectRequest::decode(&mut body) {
        Ok(r) => r,
        Err(e) => {
            warn!(%remote, "closing connection: bad ConnectRequest: {e}");
            return;
        }
    };
    let old_client = decode_read_only_flag(&mut body).is_none();
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE_FRAMES);
    let queued = Arc::new(QueuedBytes::default());
    let (writer_done_tx, mut writer_done) = oneshot::channel::<()>();
    let writer_queued = queued.clone();
    // The write half is shared by the writer task and the core task (direct writes, `flush`).
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(writer);
    let writer_stream = writer.clone();
    let writer_task = tokio::spawn(async move {
        write_loop(writer_stream.as_ref().as_ref(), rx, &writer_queued).await;
        drop(writer_done_tx);
    });
    let outbound = Outbound { stream: writer, tx, queued: queued.clone() };
    if events.send(CoreEvent::Connect { conn, remote, request, old_client, outbound }).await.is_err() {
        return;
    }
    let mut frames = Vec::new();
    loop {
        // Back-pressure: while too many reply bytes wait for this client, read no more requests.
        loop {
            let drained = queued.drained.notified();
            if queued.bytes.load(Ordering::Acquire) <= OUTBOUND_HIGH_WATER_BYTES {
                break;
            }
            tokio::select! {
                _ = drained => {}
                _ = &mut writer_done => break,
            }
        }
        // Every complete frame already buffered goes to the core in one event.
        if let Err(ReadError::Fatal(e)) = split_frames(&mut buf, limits.max_frame_bytes, &mut frames) {
            warn!(%remote, "closing connection: {e}");
            break;
        }
        if !frames.is_empty() {
            let batch = std::mem::replace(&mut frames, Vec::with_capacity(8));
            if events.send(CoreEvent::Requests { conn, frames: batch }).await.is_err() {
                break;
            }
            continue;
        }
        let read = tokio::select! {
            read = read_some(&mut reader, &mut buf) => read,
            // The writer ended (we closed the connection): stop reading too.
            _ = &mut writer_done => break,
        };
        match read {
            Ok(()) => {}
            Err(ReadError::Closed) => break,
            Err(ReadError::Fatal(e)) => {
                warn!(%remote, "closing connection: {e}");
                break;
            }
        }
    }
    let _ = events.send(CoreEvent::Disconnect { conn }).await;
    writer_task.abort();
}

async fn write_loop(stream: &TcpStream, mut rx: mpsc::Receiver<Bytes>, queued: &QueuedBytes) {
    let mut batch = BytesMut::new();
    while let Some(frame) = rx.recv().await {
        batch.extend_from_slice(&frame);
        while batch.len() < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        if write_all(stream, &batch).await.is_err() {
            return;
        }
        queued.bytes.fetch_sub(batch.len(), Ordering::AcqRel);
        queued.drained.notify_one();
        batch.clear();
    }
    shutdown_write(stream);
}

/// Limits derived from the config.
pub fn conn_limits(config: &Config) -> ConnLimits {
    ConnLimits {
        max_frame_bytes: config.jute_max_buffer_bytes as usize,
        max_client_cnxns: config.max_client_cnxns,
        handshake_timeout: Duration::from_millis(config.nio_sessionless_cnxn_timeout_ms as u64),
    }
}
