//! What the request pipeline's task (`net::run_core`) exchanges with the threads that replicate
//! (`zab::leading`, `zab::follower`, wired by `node::quorum`): where its txns go to become
//! durable (`TxnSink`), what those threads tell it (`ZabEvent`), and where a follower's
//! forwarded requests and a leader's answers go (`Upstream`).
//!
//! Owns: the channels' ends and the encoding of the two packets a follower's pipeline sends its
//! leader (REQUEST, REVALIDATE). Must not touch: the tree (the pipeline's) or the sockets (the
//! threads').
//!
//! Bounds: `ZabEvent`s travel in a bounded channel the core task always drains; the leader's
//! inputs are bounded by `zab::leading::INPUTS_MAX`, and the core task never blocks on them (a
//! forwarding thread does, see `LeaderInbox`); the follower's packets by
//! `zab::follower::OUTGOING_MAX`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, watch};
use tracing::warn;

use crate::jute::Encode;
use crate::proto::quorum::{packet_type, QuorumPacket, RequestHead};
use crate::proto::txn::Txn;
use crate::server::core::Forward;
use crate::storage::txn_log::TxnLog;
use crate::storage::{Durability, LogWriter};
use crate::zab::leader::LearnerId;
use crate::zab::follower::ToLeader;
use crate::zab::leading::LeaderInput;

/// `ZabEvent`s queued for the core task.
pub const ZAB_EVENTS_MAX: usize = 4_096;

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
    inputs: SyncSender<LeaderInput>,
    /// Batches handed to the forwarding thread and not yet passed on; while there are any,
    /// later inputs queue behind them, so the leading thread sees every input in order.
    forwarding: Arc<AtomicUsize>,
}

impl LeaderInbox {
    /// Starts the forwarding thread into `inputs`; it ends when every inbox is dropped or the
    /// leading thread has stopped taking inputs.
    pub fn start(inputs: SyncSender<LeaderInput>) -> LeaderInbox {
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
