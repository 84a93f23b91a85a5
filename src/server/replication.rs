//! What the request pipeline (`pipeline`, run by `net::run_core` and the threads below) exchanges
//! with the threads that replicate (`zab::leading`, `zab::follower`, wired by `node::quorum`):
//! where its txns go to become durable (`TxnSink`), what those threads tell it (`ZabEvent`, through
//! a `ZabInlet`), and where a follower's forwarded requests and a leader's answers go (`Upstream`).
//!
//! Owns: the channels' ends and the encoding of the two packets a follower's pipeline sends its
//! leader (REQUEST, REVALIDATE). Must not touch: the tree (the pipeline's) or the sockets (the
//! threads').
//!
//! Bounds: `ZabEvent`s travel in a bounded channel the core task always drains (or are run by the
//! thread that has them, `ZabInlet`); the leader's
//! inputs are bounded by `zab::leading::INPUTS_MAX`, and the core task never blocks on them (a
//! forwarding thread does, see `LeaderInbox`); the follower's packets by
//! `zab::follower::OUTGOING_MAX`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, watch};
use tracing::warn;

use crate::jute::Encode;
use crate::proto::quorum::{packet_type, QuorumPacket, RequestHead};
use crate::proto::txn::Txn;
use crate::server::core::Forward;
use crate::server::pipeline::{Pipeline, PipelineLock};
use crate::storage::txn_log::TxnLog;
use crate::storage::{Durability, LogWriter};
use crate::zab::leader::LearnerId;
use crate::zab::follower::ToLeader;
use crate::zab::leading::{InputSender, LeaderInput};

/// `ZabEvent`s queued for the core task.
pub const ZAB_EVENTS_MAX: usize = 4_096;

/// A replication thread's way into the request pipeline, for one role's period. The thread runs
/// its events through the pipeline itself (`Pipeline::run_zab_events`) when the pipeline is
/// serving, nobody else is running a round, and none of the events sent to the core task before
/// is still waiting there (so events keep their order); otherwise it sends them to the core
/// task. At one request in flight that spares a write two thread hand-offs: the leader's
/// forwarded REQUEST is prepped on the leading thread, whose proposal then lands in its own
/// queue, and the follower's COMMIT is applied and answered on the follower thread.
pub struct ZabInlet {
    events: tokio::sync::mpsc::Sender<ZabEvent>,
    /// Events sent to the core task and not yet handled by it; taken down under the pipeline's
    /// lock (`taken`), so zero there means every earlier event has been run.
    in_channel: AtomicUsize,
    /// The pipeline, once serving started (`serve`).
    pipeline: OnceLock<Arc<PipelineLock>>,
}

impl ZabInlet {
    /// An inlet and the core task's end of its channel.
    pub fn new() -> (Arc<ZabInlet>, tokio::sync::mpsc::Receiver<ZabEvent>) {
        let (events, rx) = tokio::sync::mpsc::channel(ZAB_EVENTS_MAX);
        let inlet = ZabInlet { events, in_channel: AtomicUsize::new(0), pipeline: OnceLock::new() };
        (Arc::new(inlet), rx)
    }

    /// Serving started: events may be run through `pipeline` from now on.
    pub fn serve(&self, pipeline: Arc<PipelineLock>) {
        // Set once per period; a second pipeline would be a wiring error, and the first stays.
        let _ = self.pipeline.set(pipeline);
    }

    /// Delivers `events`, in order, run here or through the core task's channel (waiting while
    /// it is full: the core task always drains it). Only from a thread that is not a runtime
    /// worker. An error: the pipeline has stopped, and the events are dropped.
    pub fn deliver(&self, mut events: Vec<ZabEvent>) -> Result<(), PipelineGone> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(pipeline) = self.pipeline.get() {
            if self.in_channel.load(Ordering::Acquire) == 0 && Pipeline::run_zab_events(pipeline, &mut events, &self.in_channel) {
                return Ok(());
            }
        }
        for event in events {
            // Counted before it is sent: the core task may take it before `send` returns.
            self.in_channel.fetch_add(1, Ordering::AcqRel);
            if self.events.blocking_send(event).is_err() {
                self.in_channel.fetch_sub(1, Ordering::AcqRel);
                return Err(PipelineGone);
            }
        }
        Ok(())
    }

    /// The core task handled `count` events from its channel (under the pipeline's lock).
    pub fn taken(&self, count: usize) {
        self.in_channel.fetch_sub(count, Ordering::AcqRel);
    }
}

/// The request pipeline has stopped: nothing takes replication's events any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request pipeline has stopped")]
pub struct PipelineGone;

/// Where the pipeline's txns become durable.
pub enum TxnSink {
    /// This server's own log (standalone): durable once synced.
    Log(LogWriter),
    /// A leader's proposals: durable once a quorum acked them (the leading thread reports the
    /// commits through `durability`).
    Leader {
        /// Proposals to the leading thread.
        inbox: LeaderInbox,
        /// Commits, as `durable_zxid`, and the leader's own log syncs.
        durability: watch::Receiver<Durability>,
        /// The log, for autopurge.
        log: Arc<TxnLog>,
    },
    /// A follower's pipeline makes no txns of its own; its log syncs are reported for the metrics.
    Follower {
        /// The follower's own log syncs.
        durability: watch::Receiver<Durability>,
        /// The log, for autopurge.
        log: Arc<TxnLog>,
    },
}

impl TxnSink {
    /// Hands over txns prepped under failure count `generation`.
    pub fn submit(&self, generation: u64, txns: Vec<Txn>) {
        match self {
            TxnSink::Log(writer) => writer.submit(generation, txns),
            TxnSink::Leader { inbox, .. } => {
                inbox.send_all(txns.into_iter().map(|txn| LeaderInput::Propose(Box::new(txn))).collect());
            }
            TxnSink::Follower { .. } => {
                warn!(txns = txns.len(), "a follower's pipeline prepped txns of its own; dropped");
            }
        }
    }

    /// Writes and syncs txns on the calling thread when this sink is an idle log writer
    /// (`LogWriter::append_here`); otherwise hands them back.
    pub fn append_here(&self, generation: u64, txns: Vec<Txn>) -> Result<(), Vec<Txn>> {
        match self {
            TxnSink::Log(writer) => writer.append_here(generation, txns),
            TxnSink::Leader { .. } | TxnSink::Follower { .. } => Err(txns),
        }
    }

    /// Drops log entries up to `zxid` (a snapshot made them unnecessary).
    pub fn purge_through(&self, zxid: i64) {
        match self {
            TxnSink::Log(writer) => writer.purge_through(zxid),
            TxnSink::Leader { log, .. } | TxnSink::Follower { log, .. } => {
                if let Err(e) = log.purge_through(zxid) {
                    warn!("cannot purge the log through {zxid:#x}: {e}");
                }
            }
        }
    }

    /// Durability updates.
    pub fn durability(&self) -> watch::Receiver<Durability> {
        match self {
            TxnSink::Log(writer) => writer.durability(),
            TxnSink::Leader { durability, .. } | TxnSink::Follower { durability, .. } => durability.clone(),
        }
    }

    /// Stops the log writer, if this sink has one, after what it was handed is written.
    pub fn stop(self) {
        if let TxnSink::Log(writer) = self {
            writer.stop();
        }
    }
}

/// The pipeline's way into the leading thread's inputs. The pipeline must never wait on that
/// bounded queue (the leading thread waits on the pipeline for snapshots): inputs go straight in
/// while there is room and nothing waits before them, otherwise to a forwarding thread that does
/// the waiting; what it holds is bounded by the pipeline's outstanding requests. The straight way
/// spares every write a wake-up of that thread (one thread hop of a write's path).
#[derive(Clone)]
pub struct LeaderInbox {
    tx: std::sync::mpsc::Sender<Vec<LeaderInput>>,
    inputs: InputSender,
    /// Batches handed to the forwarding thread and not yet passed on; while there are any,
    /// later inputs queue behind them, so the leading thread sees every input in order.
    forwarding: Arc<AtomicUsize>,
}

impl LeaderInbox {
    /// Starts the forwarding thread into `inputs`; it ends when every inbox is dropped or the
    /// leading thread has stopped taking inputs.
    pub fn start(inputs: InputSender) -> LeaderInbox {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<LeaderInput>>();
        let forwarding = Arc::new(AtomicUsize::new(0));
        let (thread_inputs, thread_forwarding) = (inputs.clone(), forwarding.clone());
        std::thread::spawn(move || {
            for batch in rx {
                for input in batch {
                    if thread_inputs.send(input).is_err() {
                        return;
                    }
                }
                thread_forwarding.fetch_sub(1, Ordering::AcqRel);
            }
        });
        LeaderInbox { tx, inputs, forwarding }
    }

    /// Queues an input for the leading thread (dropped once it has stopped).
    pub fn send(&self, input: LeaderInput) {
        self.send_all(vec![input]);
    }

    /// Queues inputs, in order: straight into the leading thread's queue while it has room and
    /// the forwarding thread holds nothing, the rest through the forwarding thread.
    pub fn send_all(&self, inputs: Vec<LeaderInput>) {
        let mut inputs = inputs.into_iter();
        let rest: Vec<LeaderInput> = if self.forwarding.load(Ordering::Acquire) == 0 {
            loop {
                let Some(input) = inputs.next() else { return };
                match self.inputs.try_send(input) {
                    Ok(()) => {}
                    Err(TrySendError::Full(input)) => break std::iter::once(input).chain(inputs).collect(),
                    // The leading thread has stopped taking inputs.
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        } else {
            inputs.collect()
        };
        if rest.is_empty() {
            return;
        }
        self.forwarding.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(rest).is_err() {
            self.forwarding.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What the replication threads tell the core task.
#[derive(Debug)]
pub enum ZabEvent {
    /// Follower: the leader committed this txn.
    Committed(Box<Txn>),
    /// Follower: the leader answered the oldest forwarded sync.
    SyncDone,
    /// Follower: the leader's answer to a REVALIDATE.
    Revalidated {
        /// The session.
        session_id: i64,
        /// Whether it may reconnect here.
        valid: bool,
    },
    /// Leader: commits (and the leader's own log syncs) were reported through the sink's
    /// `durability` watch; the pipeline reads it (`Pipeline::durability_reached`).
    Durable,
    /// Leader: a learner forwarded this client request.
    Request(Forward),
    /// Leader: sessions a learner's clients keep alive.
    Touch(Vec<(i64, i32)>),
    /// Leader: a learner asks whether a session may reconnect through it.
    Revalidate {
        /// The learner.
        learner: LearnerId,
        /// The session.
        session_id: i64,
    },
    /// Leader: the SNAP stream of the tree as of `zxid` (the last commit, which the core task
    /// applies first if it has not yet), for a learner's sync.
    Snapshot {
        /// The zxid the stream must be as of.
        zxid: i64,
        /// The stream, or why it could not be made.
        reply: oneshot::Sender<Result<Bytes, String>>,
    },
}

/// Where the pipeline's messages for the rest of the ensemble go.
#[derive(Clone)]
pub enum Upstream {
    /// A leader's answers to its learners (REVALIDATE).
    Leader(LeaderInbox),
    /// A follower's packets to its leader (REQUEST, REVALIDATE).
    Follower(Arc<ToLeader>),
}

/// The core task's side of the replication: events in, messages out, and the local sessions
/// a follower reports in its pings.
pub struct ZabLink {
    /// Events from the replication threads.
    pub events: tokio::sync::mpsc::Receiver<ZabEvent>,
    /// The threads' side of `events`, told when the pipeline serves and what the core task took.
    pub inlet: Arc<ZabInlet>,
    /// Where messages go.
    pub upstream: Upstream,
    /// Sessions with a connection here, refreshed every tick (a follower's ping reply).
    pub local_sessions: Arc<Mutex<Vec<(i64, i32)>>>,
}

impl Upstream {
    /// Follower: adds a client's request for the leader to `out` (`Learner.request`: REQUEST
    /// with zxid -1, data = session, cxid, type, record, and the connection's auth ids); a
    /// round's packets go out together (`send_to_leader`).
    pub fn forward(&self, request: Forward, out: &mut BytesMut) {
        let Forward { session_id, cxid, op, record, authinfo } = request;
        let mut data = BytesMut::with_capacity(RequestHead::LEN + record.len());
        RequestHead { session_id, cxid, op }.encode(&mut data);
        data.extend_from_slice(&record);
        let packet = QuorumPacket {
            packet_type: packet_type::REQUEST,
            zxid: -1,
            data: Some(data.freeze()),
            authinfo: Some(authinfo),
        };
        self.for_leader(&packet, out);
    }

    /// Follower: adds to `out` a question to the leader whether a reconnecting session is valid
    /// (`Learner.validateSession`).
    pub fn revalidate(&self, session_id: i64, timeout_ms: i32, out: &mut BytesMut) {
        let mut data = BytesMut::with_capacity(12);
        data.extend_from_slice(&session_id.to_be_bytes());
        data.extend_from_slice(&timeout_ms.to_be_bytes());
        self.for_leader(&QuorumPacket::with_data(packet_type::REVALIDATE, -1, data.freeze()), out);
    }

    /// Leader: answers a learner's REVALIDATE.
    pub fn revalidated(&self, learner: LearnerId, session_id: i64, valid: bool) {
        match self {
            Upstream::Leader(inbox) => inbox.send(LeaderInput::Revalidated { learner, session_id, valid }),
            Upstream::Follower(_) => warn!("a REVALIDATE answer on a follower; dropped"),
        }
    }

    fn for_leader(&self, packet: &QuorumPacket, out: &mut BytesMut) {
        match self {
            Upstream::Follower(_) => packet.encode(out),
            Upstream::Leader(_) => {
                warn!(packet = packet_type::name(packet.packet_type), "a leader's pipeline has no leader to send to; dropped");
            }
        }
    }

    /// Follower: sends the packets `forward` and `revalidate` added, with one write.
    pub fn send_to_leader(&self, packets: Bytes) {
        let Upstream::Follower(to_leader) = self else { return };
        match to_leader.send(packets, false) {
            Ok(()) => {}
            // The clients' requests then get no answer; their sessions time out or reconnect.
            Err(TrySendError::Full(_)) => warn!("the queue to the leader is full; client requests are dropped"),
            // Following has ended; this pipeline is about to stop.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::four_letter::AdminState;
    use crate::config::Config;
    use crate::server::core::{Core, CoreSettings};
    use crate::server::net::Clock;

    fn pipeline() -> Arc<PipelineLock> {
        let settings = CoreSettings {
            tick_ms: 500,
            min_session_timeout_ms: 1000,
            max_session_timeout_ms: 60000,
            server_id: 1,
            prep: Default::default(),
            container_max_never_used_ms: 0,
            container_max_per_minute: 10000,
        };
        let core = Core::new(settings, 0);
        let admin = AdminState::new(Config::default());
        Arc::new(tokio::sync::Mutex::new(Pipeline::new(core, admin, Clock::new(), 100, None, None)))
    }

    /// A snapshot request, whose answer shows whether (and when) the pipeline ran it.
    fn snapshot_event() -> (ZabEvent, oneshot::Receiver<Result<Bytes, String>>) {
        let (reply, answer) = oneshot::channel();
        (ZabEvent::Snapshot { zxid: 0, reply }, answer)
    }

    /// The core task's round: takes what its channel holds, under the lock.
    fn core_task_round(pipeline: &PipelineLock, inlet: &ZabInlet, rx: &mut tokio::sync::mpsc::Receiver<ZabEvent>) -> usize {
        let mut p = pipeline.try_lock().unwrap();
        let first = rx.try_recv().unwrap();
        let now = p.now();
        let handled = p.handle_zab_events(first, rx, now);
        inlet.taken(handled);
        handled
    }

    #[test]
    fn events_run_on_the_delivering_thread_only_when_nothing_before_them_waits_for_the_core_task() {
        let (inlet, mut rx) = ZabInlet::new();
        let pipeline = pipeline();
        // Not serving yet: through the channel.
        let (event, mut first) = snapshot_event();
        inlet.deliver(vec![event]).unwrap();
        assert!(first.try_recv().is_err(), "run before the pipeline served");
        inlet.serve(pipeline.clone());
        // Serving, but an earlier event waits in the channel: behind it, not past it.
        let (event, mut second) = snapshot_event();
        inlet.deliver(vec![event]).unwrap();
        assert!(second.try_recv().is_err(), "overtook an event waiting for the core task");
        assert_eq!(core_task_round(&pipeline, &inlet, &mut rx), 2);
        assert!(first.try_recv().unwrap().is_ok());
        assert!(second.try_recv().unwrap().is_ok());
        // Nothing waits and nobody holds the pipeline: run here, at once.
        let (event, mut third) = snapshot_event();
        inlet.deliver(vec![event]).unwrap();
        assert!(third.try_recv().unwrap().is_ok(), "not run by the delivering thread");
        assert!(rx.try_recv().is_err());
        // A round in progress elsewhere: through the channel again.
        let held = pipeline.try_lock().unwrap();
        let (event, mut fourth) = snapshot_event();
        inlet.deliver(vec![event]).unwrap();
        drop(held);
        assert!(fourth.try_recv().is_err());
        assert_eq!(core_task_round(&pipeline, &inlet, &mut rx), 1);
        assert!(fourth.try_recv().unwrap().is_ok());
    }

    #[test]
    fn a_stopped_pipeline_takes_no_events() {
        let (inlet, rx) = ZabInlet::new();
        inlet.serve(pipeline());
        drop(rx);
        // The core task has gone (its receiver with it) while nothing waited: refused.
        let (event, _answer) = snapshot_event();
        let tokio_rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let pipeline = inlet.pipeline.get().unwrap().clone();
        tokio_rt.block_on(async { pipeline.lock().await.stop().await });
        assert_eq!(inlet.deliver(vec![event]), Err(PipelineGone));
    }
}
