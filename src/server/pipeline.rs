//! The request pipeline's state between rounds: the `Core`, what makes its txns durable, the
//! snapshot in progress and the way out to every connection. A round feeds the core events, hands
//! the txns they produced to the log, advances a snapshot and sends the replies.
//!
//! Rounds run one at a time, under one lock (`PipelineLock`), by whoever holds it: the core task
//! (`net::run_core`) for everything that reaches it through its channel (requests while the
//! pipeline is busy, connects, disconnects, four-letter words, admin queries), its timers, the log
//! writer's progress and replication; and a connection's reader task for that connection's own
//! requests while the pipeline is idle: nothing outstanding, nothing queued for the core task,
//! no event of that connection still in the channel (so its requests keep their order). At one
//! request in flight that spares every request the hand-off between the two tasks (a channel
//! send, a wake-up, a second task poll and the core task's `select!` after the reply, which runs
//! between the reply and the thread's next wait: README, BENCHMARKS). A quorum member's
//! replication threads run their events the same way while no earlier one waits for the core
//! task (`replication::ZabInlet`).

use std::io::IoSlice;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::admin::commands;
use crate::admin::four_letter::{self, AdminState};
use crate::server::core::{ConnId, Core, IdMap, Now, Output};
use crate::server::net::{Clock, CoreEvent, Outbound, Queued};
use crate::server::replication::{TxnSink, Upstream, ZabEvent};
use crate::storage::{snapshot, Durability, SnapshotJob, SnapshotProgress};

/// The pipeline syncs a lone write itself (`LogWriter::append_here`) only while the last sync
/// took less than this.
const SYNC_HERE_MS_MAX: i64 = 2;
/// Queued bytes above which a connection is closed: only watch-event floods get here, since
/// requests stop being read at the high-water mark (`net`).
pub(crate) const OUTBOUND_LIMIT_BYTES: usize = 16 << 20;
/// Replication events handled in one round of the core task after the one that woke it.
const ZAB_EVENTS_PER_ROUND: usize = 1_024;
/// Most slices in one direct `writev` (an array on the stack; Linux allows 1,024).
const WRITEV_SLICES_MAX: usize = 64;
/// Rounds touching at most this many connections are written by the task running the round (a
/// getData at 32 x 1,000: 0.80-0.94M/s written directly, 0.55-0.81M/s through the writer
/// tasks); larger rounds go through the writer tasks (see `Dispatcher::dispatch`).
const DIRECT_WRITE_CONNS_MAX: usize = 64;
/// Nodes written per snapshot step between rounds: about 0.2 ms of the pipeline's time, so a
/// snapshot in progress adds little to any request's latency.
const SNAPSHOT_STEP_NODES: usize = 1024;
/// Nodes written per snapshot step at shutdown, when no request waits for the pipeline.
const SHUTDOWN_SNAPSHOT_STEP_NODES: usize = 65_536;

/// What the pipeline needs to make txns durable and take snapshots.
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

/// The pipeline, shared by the core task and the connections' reader tasks.
pub type PipelineLock = tokio::sync::Mutex<Pipeline>;

/// The pipeline's state (see the module documentation).
pub struct Pipeline {
    /// The deterministic core.
    pub core: Core,
    /// What the four-letter words and admin commands report besides the core.
    pub admin: AdminState,
    outbound: Dispatcher,
    persistence: Option<Persistence>,
    /// The log writer's progress, read after every sync.
    durability: Option<watch::Receiver<Durability>>,
    clock: Clock,
    outstanding_limit: usize,
    rng: u64,
    /// `txns_since_snapshot` at which the next snapshot starts.
    snapshot_at: u64,
    syncs_seen: u64,
    snapshot_job: Option<SnapshotJob>,
    /// The highest zxid handed to the log writer thread (not synced here) and not yet reported
    /// durable; the core task waits for the writer's progress only while there is one.
    awaited_zxid: Option<i64>,
    /// Wakes the core task after a reader's round it must follow up (txns handed to the writer
    /// thread, a snapshot started).
    nudge: Arc<Notify>,
    /// Set when the core task stops: no round runs after that.
    stopped: bool,
}

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

impl Pipeline {
    /// A pipeline around `core`; `upstream` is where a quorum member's messages for the rest of
    /// the ensemble go (a follower's leader, a leader's learners).
    pub fn new(
        core: Core,
        admin: AdminState,
        clock: Clock,
        outstanding_limit: usize,
        persistence: Option<Persistence>,
        upstream: Option<Upstream>,
    ) -> Pipeline {
        let durability = persistence.as_ref().map(|p| p.writer.durability());
        let mut rng = persistence.as_ref().map_or(1, |p| p.seed | 1);
        let snapshot_at = persistence.as_ref().map_or(u64::MAX, |p| {
            if p.snapshot_at_start {
                0
            } else {
                snapshot_threshold(p.snap_count, &mut rng)
            }
        });
        Pipeline {
            core,
            admin,
            outbound: Dispatcher {
                upstream,
                ..Dispatcher::default()
            },
            persistence,
            durability,
            clock,
            outstanding_limit: outstanding_limit.max(1),
            rng,
            snapshot_at,
            syncs_seen: 0,
            snapshot_job: None,
            awaited_zxid: None,
            nudge: Arc::new(Notify::new()),
            stopped: false,
        }
    }

    /// The current instant.
    pub fn now(&self) -> Now {
        self.clock.now()
    }

    /// What makes txns durable, if anything.
    pub fn persistence(&self) -> Option<&Persistence> {
        self.persistence.as_ref()
    }

    /// Below `globalOutstandingLimit`: the core task takes more events.
    pub fn takes_more(&self) -> bool {
        self.core.outstanding() < self.outstanding_limit
    }

    /// A snapshot is being written (the core task advances it at least every millisecond).
    pub fn snapshotting(&self) -> bool {
        self.snapshot_job.is_some()
    }

    /// The log writer's progress matters: txns handed to its thread are not durable yet. Lone
    /// writes synced by the round itself (`append_here`) do not wake the core task, nor does a
    /// quorum member's watch: a leader's commits come as `ZabEvent::Durable` (run by the leading
    /// thread itself when it can), and a follower's own syncs only feed the metrics, read at
    /// every tick.
    pub fn awaits_durability(&self) -> bool {
        match self.persistence.as_ref().map(|p| &p.writer) {
            Some(TxnSink::Log(_)) => self.awaited_zxid.is_some(),
            Some(_) | None => false,
        }
    }

    /// Notified when a reader's round needs the core task to look again (`awaits_durability`).
    pub fn nudge(&self) -> Arc<Notify> {
        self.nudge.clone()
    }

    /// One event from the core task's channel.
    pub fn handle_event(&mut self, event: CoreEvent, now: Now) {
        match event {
            CoreEvent::Connect {
                conn,
                remote,
                request,
                old_client,
                outbound: out,
            } => {
                // Under the lock, as the connect itself: its reader may run requests from here on.
                out.queued.events.fetch_sub(1, Ordering::AcqRel);
                self.outbound.conns.insert(
                    conn,
                    OutboundState {
                        out,
                        staged: Vec::new(),
                    },
                );
                self.core.connect(conn, remote, request, old_client, now);
            }
            CoreEvent::Requests { conn, frames } => {
                for frame in frames {
                    self.core.request(conn, frame, now);
                }
                // Its reader may run the connection's next requests itself from now on.
                if let Some(state) = self.outbound.conns.get(&conn) {
                    state.out.queued.events.fetch_sub(1, Ordering::AcqRel);
                }
            }
            CoreEvent::Disconnect { conn } => {
                // Replies not yet dispatched to it have nowhere to go: the peer is gone.
                self.outbound.conns.remove(&conn);
                self.core.disconnect(conn);
            }
            CoreEvent::FourLetter {
                word,
                remote,
                argument,
                reply,
            } => {
                let text = four_letter::run(word, argument, remote, &mut self.core, &mut self.admin, now);
                // The asker may have gone away; nothing to do then.
                let _ = reply.send(text);
            }
            CoreEvent::Admin { query, reply } => {
                // The HTTP handler may have timed out; nothing to do then.
                let _ = reply.send(commands::answer(query, &mut self.core, &mut self.admin, now));
            }
        }
        // Outputs of a round are dispatched together (`finish_round`); their order is kept per
        // connection. A four-letter word or admin query is answered at once, so nothing waits behind it.
    }

    /// A connection's requests, run by its reader task: only while the pipeline is idle (nothing
    /// outstanding, nothing of this connection in the core task's channel) and the core task is
    /// not running a round; false (and `frames` untouched) otherwise, for the channel.
    pub(crate) fn run_requests(
        lock: &PipelineLock,
        conn: ConnId,
        frames: &mut Vec<Bytes>,
        queued: &Queued,
        channel_empty: impl Fn() -> bool,
    ) -> bool {
        if !channel_empty() {
            return false;
        }
        let Ok(mut pipeline) = lock.try_lock() else {
            return false;
        };
        // Read under the lock, which the core task holds while it takes this connection's
        // events: zero means every earlier request of the connection is in the core already.
        if pipeline.stopped || pipeline.core.outstanding() > 0 || queued.events.load(Ordering::Acquire) > 0 {
            return false;
        }
        let now = pipeline.now();
        for frame in frames.drain(..) {
            pipeline.core.request(conn, frame, now);
        }
        pipeline.finish_own_round(channel_empty());
        true
    }

    /// A replication thread's events (`ZabInlet::deliver`), run by that thread: only while the
    /// pipeline serves, no round is running and none of the events sent to the core task before
    /// is still waiting (`in_channel`, taken down under this lock); false (and `events`
    /// untouched) otherwise, for the channel.
    pub(crate) fn run_zab_events(lock: &PipelineLock, events: &mut Vec<ZabEvent>, in_channel: &AtomicUsize) -> bool {
        let Ok(mut pipeline) = lock.try_lock() else {
            return false;
        };
        if pipeline.stopped || in_channel.load(Ordering::Acquire) > 0 {
            return false;
        }
        let now = pipeline.now();
        for event in events.drain(..) {
            pipeline.handle_zab_event(event, now);
        }
        // Only a standalone server syncs a lone write in the round (`finish_round`), and it has
        // no replication threads.
        pipeline.finish_own_round(false);
        true
    }

    /// Ends a round run by a task or thread other than the core task, and wakes the core task
    /// when the round left it something to wait on that it does not know of.
    fn finish_own_round(&mut self, channel_empty: bool) {
        let follow_ups = |p: &Pipeline| (p.awaits_durability(), p.snapshotting());
        let before = follow_ups(self);
        self.finish_round(channel_empty);
        let after = follow_ups(self);
        if (after.0 && !before.0) || (after.1 && !before.1) {
            self.nudge.notify_one();
        }
    }

    /// Replication's events: the one that woke the core task and what is queued behind it.
    /// Returns how many it handled.
    pub fn handle_zab_events(&mut self, first: ZabEvent, rx: &mut tokio::sync::mpsc::Receiver<ZabEvent>, now: Now) -> usize {
        self.handle_zab_event(first, now);
        // As for client events: what is already queued (a burst of commits on a follower, of
        // forwarded requests on a leader) is handled before dispatching, so its replies share a
        // write per connection and its txns one hand-off to the leading thread.
        let mut handled = 1;
        for _ in 0..ZAB_EVENTS_PER_ROUND {
            let Ok(event) = rx.try_recv() else { break };
            self.handle_zab_event(event, now);
            handled += 1;
        }
        handled
    }

    fn handle_zab_event(&mut self, event: ZabEvent, now: Now) {
        let core = &mut self.core;
        match event {
            ZabEvent::Durable => self.durability_reached(now),
            ZabEvent::Committed(txn) => core.committed(*txn, now),
            ZabEvent::SyncDone => core.sync_done(now),
            ZabEvent::Revalidated { session_id, valid } => core.revalidated(session_id, valid, now),
            ZabEvent::Request(request) => core.remote_request(request, now),
            ZabEvent::Touch(sessions) => core.touch_sessions(&sessions, now),
            ZabEvent::Revalidate { learner, session_id } => {
                let valid = core.revalidate(session_id, now);
                if let Some(upstream) = &self.outbound.upstream {
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

    /// The session tick: expiries, and a leader's learner queue samples.
    pub fn tick(&mut self, local_sessions: Option<&Mutex<Vec<(i64, i32)>>>, now: Now) {
        if !matches!(self.persistence.as_ref().map(|p| &p.writer), Some(TxnSink::Log(_)) | None) {
            // A quorum member's log syncs since the last look, into the metrics.
            self.durability_reached(now);
        }
        self.core.tick(now);
        self.take_queue_samples();
        if let Some(local) = local_sessions {
            *local.lock().unwrap_or_else(|p| p.into_inner()) = self.core.local_sessions();
        }
    }

    /// A leader's learner send-queue samples, into `learner_handler_qp_size` / `_time_ms` by sid.
    fn take_queue_samples(&mut self) {
        let Some(status) = self.admin.quorum.as_ref().and_then(|q| q.leader.as_ref()) else {
            return;
        };
        let samples = std::mem::take(&mut status.lock().unwrap_or_else(|p| p.into_inner()).queue_samples);
        let mut key = String::new();
        let mut key_sid = 0;
        for sample in samples {
            if key.is_empty() || key_sid != sample.sid {
                key = sample.sid.to_string();
                key_sid = sample.sid;
            }
            self.core
                .metrics
                .observe_in_set("learner_handler_qp_size", &key, sample.queued);
            self.core
                .metrics
                .observe_in_set("learner_handler_qp_time_ms", &key, sample.waited_ms);
        }
    }

    /// What the log writer made durable (or failed to) reaches the pipeline: sync durations into
    /// the metrics, then the txns' requests are answered (or refused after a failure).
    pub fn durability_reached(&mut self, now: Now) {
        let Some(rx) = &mut self.durability else { return };
        let threshold_ms = self
            .persistence
            .as_ref()
            .map_or(i64::MAX, |p| p.fsync_warning_threshold_ms);
        let core = &mut self.core;
        // Read in place (not cloned: its sync history is 256 entries) and released before the
        // replies are made, so the writer never waits for them to publish its next batch.
        let (durable_zxid, failures) = {
            let d = rx.borrow_and_update();
            for sync_ms in d.syncs_since(self.syncs_seen) {
                core.metrics.observe(crate::server::metrics::ids::FSYNCTIME, sync_ms);
                if sync_ms > threshold_ms {
                    core.stats.fsync_threshold_exceed_count += 1;
                    warn!("syncing the transaction log took {sync_ms} ms, above fsync.warningthresholdms ({threshold_ms} ms): write latency suffers");
                }
            }
            self.syncs_seen = d.syncs;
            (d.durable_zxid, d.failures)
        };
        if self.awaited_zxid.is_some_and(|zxid| zxid <= durable_zxid) {
            self.awaited_zxid = None;
        }
        core.persisted_through(durable_zxid, now);
        if failures > core.log_generation() {
            // The log writer has logged the cause (once per episode); refuse quietly here.
            core.persist_failed(failures, now);
        }
    }

    /// Ends a round: the txns it produced go to the log, a snapshot starts or advances, and the
    /// replies go out. `channel_empty`: nothing waits in the core task's channel.
    pub fn finish_round(&mut self, channel_empty: bool) {
        // Bounded: every round takes at least one txn, and answering them preps no more txns
        // than the requests already in the pipeline.
        while let Some(p) = &self.persistence {
            let txns = self.core.take_unpersisted();
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
            let alone = channel_empty
                && txns.len() == 1
                && self.core.outstanding() <= 1
                && self.durability.as_ref().is_some_and(|rx| {
                    rx.borrow()
                        .recent_sync_ms
                        .back()
                        .is_none_or(|&ms| ms < SYNC_HERE_MS_MAX)
                });
            let written_here = if alone {
                p.writer.append_here(self.core.log_generation(), txns)
            } else {
                Err(txns)
            };
            match written_here {
                Ok(()) => {
                    let now = self.clock.now();
                    self.durability_reached(now);
                }
                Err(txns) => {
                    let last = txns.last().map(|txn| txn.header.zxid);
                    self.awaited_zxid = self.awaited_zxid.max(last);
                    p.writer.submit(self.core.log_generation(), txns);
                    break;
                }
            }
        }
        self.advance_snapshot();
        self.outbound.dispatch(&mut self.core);
    }

    fn advance_snapshot(&mut self) {
        let Some(p) = &self.persistence else { return };
        if self.core.txns_since_snapshot() >= self.snapshot_at {
            // ZooKeeper's `SyncRequestProcessor`: when the count is reached while the previous
            // snapshot is still being written, this one is skipped and the count starts over,
            // so a server that writes faster than it snapshots does not snapshot back to back.
            let zxid = self.core.last_processed_zxid();
            if self.snapshot_job.is_some() {
                warn!(zxid = format_args!("{zxid:#x}"), "too busy to snap, skipping");
            } else {
                match SnapshotJob::start(&p.snapshot_dir, zxid, &self.core.sessions.sessions()) {
                    Ok(job) => {
                        info!(zxid = format_args!("{zxid:#x}"), "snapshot started");
                        self.snapshot_job = Some(job);
                    }
                    Err(e) => warn!("cannot start a snapshot: {e}"),
                }
            }
            self.core.snapshot_started();
            self.snapshot_at = snapshot_threshold(p.snap_count, &mut self.rng);
        }
        if let Some(job) = &mut self.snapshot_job {
            match job.step(&self.core.tree, SNAPSHOT_STEP_NODES) {
                SnapshotProgress::Running => {}
                SnapshotProgress::Finished {
                    zxid,
                    nodes,
                    path,
                    elapsed,
                    modified_secs,
                } => {
                    self.core
                        .metrics
                        .observe(crate::server::metrics::ids::SNAPSHOTTIME, elapsed.as_millis() as i64);
                    self.admin.last_snapshot = Some((zxid, modified_secs));
                    info!(zxid = format_args!("{zxid:#x}"), nodes, file = %path.display(), elapsed_ms = elapsed.as_millis() as u64, "snapshot written");
                    self.snapshot_job = None;
                }
                SnapshotProgress::Failed(e) => {
                    warn!("snapshot failed (the log still holds every txn): {e}");
                    self.snapshot_job = None;
                }
            }
        }
    }

    /// autopurge: keeps the newest `snapRetainCount` snapshots and drops the log before the
    /// oldest kept.
    pub async fn purge(&self) {
        let Some(p) = &self.persistence else { return };
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

    /// Stops the pipeline: no round runs after this. Hands the last txns to the log, takes the
    /// shutdown snapshot, and returns the persistence handle so the caller can stop the log
    /// writer after the last txn was handed over.
    pub async fn stop(&mut self) -> Option<Persistence> {
        self.stopped = true;
        info!("request pipeline stopped");
        if let Some(p) = &self.persistence {
            let txns = self.core.take_unpersisted();
            if !txns.is_empty() {
                p.writer.submit(self.core.log_generation(), txns);
            }
            if self.snapshot_job.is_some() || self.core.txns_since_snapshot() > 0 {
                self.snapshot_at_shutdown().await;
            }
        }
        self.persistence.take()
    }

    /// Snapshots the tree as the pipeline stops, so the next start loads it instead of replaying
    /// every txn since the last periodic snapshot (up to snapCount of them). ZooKeeper does not do
    /// this: its next start replays the log. A crash (kill -9) skips it and loses nothing: the log
    /// holds every txn, and a snapshot cut short is never renamed into place.
    async fn snapshot_at_shutdown(&mut self) {
        let Some(p) = &self.persistence else { return };
        let zxid = self.core.last_processed_zxid();
        let mut job = match self.snapshot_job.take() {
            // Started at the current state: finishing it is the snapshot wanted.
            Some(job) if self.core.txns_since_snapshot() == 0 => job,
            older => {
                // An unfinished snapshot of an older state (its file is never renamed into place).
                drop(older);
                match SnapshotJob::start(&p.snapshot_dir, zxid, &self.core.sessions.sessions()) {
                    Ok(job) => job,
                    Err(e) => {
                        warn!("cannot take the shutdown snapshot (the log holds every txn): {e}");
                        return;
                    }
                }
            }
        };
        loop {
            match job.step(&self.core.tree, SHUTDOWN_SNAPSHOT_STEP_NODES) {
                SnapshotProgress::Running => tokio::time::sleep(Duration::from_millis(1)).await,
                SnapshotProgress::Finished {
                    nodes, path, elapsed, ..
                } => {
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
}

/// The pipeline's side of a connection: its `Outbound` and the frames of the current round.
#[derive(Debug)]
struct OutboundState {
    out: Outbound,
    staged: Vec<Bytes>,
}

/// Routes the core's outputs to connections, one `writev` per connection per round.
#[derive(Default)]
struct Dispatcher {
    conns: IdMap<ConnId, OutboundState>,
    /// Connections with staged frames this round, in first-output order.
    touched: Vec<ConnId>,
    /// Where a follower's forwarded requests go.
    upstream: Option<Upstream>,
    /// A follower's packets for its leader in this round (forwarded requests, revalidations).
    to_leader: BytesMut,
}

impl Dispatcher {
    fn dispatch(&mut self, core: &mut Core) {
        for output in core.drain_outputs() {
            match output {
                Output::Send(conn, frame) => {
                    let Some(state) = self.conns.get_mut(&conn) else {
                        continue;
                    };
                    if state.staged.is_empty() {
                        self.touched.push(conn);
                    }
                    state.staged.push(frame);
                }
                Output::Forward(request) => match &self.upstream {
                    Some(upstream) => upstream.forward(request, &mut self.to_leader),
                    None => warn!("a forwarded request without a leader to go to; dropped"),
                },
                Output::Revalidate { session_id, timeout_ms } => match &self.upstream {
                    Some(upstream) => upstream.revalidate(session_id, timeout_ms, &mut self.to_leader),
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
        // A follower's packets for the leader of this round, with one write.
        if let (Some(upstream), false) = (&self.upstream, self.to_leader.is_empty()) {
            upstream.send_to_leader(self.to_leader.split().freeze());
        }
        // A round that touches many connections (a watch fan-out) is handed to their writer tasks,
        // which the runtime spreads over its workers: written serially here, 1,000 events kept
        // the pipeline from taking new requests for 18-25 ms (each loopback write also runs the
        // receiver's TCP path and wake-up); handed off, the round took 0.3-0.7 ms of this task.
        let direct = self.touched.len() <= DIRECT_WRITE_CONNS_MAX;
        for conn in std::mem::take(&mut self.touched) {
            let Some(state) = self.conns.get_mut(&conn) else {
                continue;
            };
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
    // cannot overtake anything. Only the pipeline adds to the count.
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
