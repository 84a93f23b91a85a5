//! The request pipeline of a standalone server as one deterministic state machine:
//! prep → commit point → apply → reply (ZooKeeper: `PrepRequestProcessor` → `SyncRequestProcessor`
//! → `FinalRequestProcessor`). Events come in (`connect`, `request`, `disconnect`, `tick`), and
//! `Output`s (frames to send, connections to close) and txns to persist come out. Time is passed
//! in with every event; nothing here does IO.
//!
//! Ordering: writes (and syncs) enter one FIFO after prep, in zxid order. Entries leave it only
//! when every txn before them is durable (`persisted_through`), so the tree, and with it every read,
//! never shows a write that could still be lost. Reads do not enter that FIFO: like ZooKeeper's
//! quorum `CommitProcessor`, a read runs at once unless *its own session* has writes (or a sync)
//! still in the FIFO; then it waits in that session's queue and runs right after the reply of the
//! write before it. So a session's replies leave in request order, while one session's fsync
//! latency does not delay the reads of the others. Watch events caused by a txn are queued at
//! apply, before that txn's reply and before any read that sees the txn; a read registers its
//! watch and queues its reply in one step, so no event can overtake that reply.
//!
//! Owns: connections' protocol state (session binding, auth ids, counters), the tree, watches,
//! sessions, the pending overlay and the zxid counter.
//!
//! In the follower role (`Role::Follower`, driven by `node::quorum`) the same
//! pipeline forwards writes, createSession, closeSession and syncs to the leader (`Output::
//! Forward`), asks it about reconnecting sessions (`Output::Revalidate`), and applies the txns
//! the leader committed (`committed`), answering a local client when the txn is the head of its
//! session's forwarded writes (ZooKeeper's `CommitProcessor` matches by session and cxid). The
//! per-session order is the same: a session's reads wait behind its forwarded writes and syncs.
//! As a leader's pipeline it takes learners' forwarded requests
//! (`remote_request`), preps them into txns for the proposal step (`take_unpersisted`) and
//! applies them when the quorum commits them (`persisted_through`), with no local reply.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use crate::jute::{Decode, DecodeError, Encode};
use crate::proto::consts::{perms, STATE_SYNC_CONNECTED, XID_AUTH, XID_NOTIFICATION, XID_PING};
use crate::proto::frame::{finish_reply_frame, reply_frame, start_reply_frame, REPLY_RECORD_OFFSET};
use crate::proto::txn::{Txn, TxnBody, TxnHeader};
use crate::proto::{
    decode_multi, encode_children_response, encode_get_data_response, encode_multi_response, AddWatchRequest,
    AuthPacket, CheckVersionRequest, ClientInfo, ConnectRequest, ConnectResponse, Create2Response, CreateRequest,
    CreateResponse, CreateTtlRequest, DeleteRequest, ErrorCode, ErrorResponse, GetAclResponse,
    GetAllChildrenNumberResponse, GetEphemeralsResponse, Id, MultiOp, MultiResult, OpCode, PathRequest,
    PathWatchRequest, ReconfigRequest, ReplyHeader, RequestHeader, SetAclRequest, SetDataRequest, SetWatches,
    SetWatches2, StatResponse, WatchTypeRequest, WatcherEvent, WhoAmIResponse,
};
use crate::server::auth::{authenticate, check_acl, user_name};
use crate::server::metrics::{ids, java_length, java_length_utf8, read_stat_bytes, top_namespace, write_stat_bytes, ServerMetrics};
use crate::server::prep::{closing_session_paths, prep_write, txn_type, PendingOverlay, PrepSettings, WriteRequest};
use crate::session::{initial_session_id, session_password, SessionTracker};
use crate::tree::{ApplyResult, DataTree, Listing, Trigger};
use crate::watch::{Delivery, WatchManager, WatcherType};

mod slow;

/// Initial capacity of a read's reply frame: header plus a getData of ~100 bytes and its Stat.
const READ_REPLY_CAPACITY: usize = 256;
/// Bytes reserved per child when encoding a getChildren reply (length prefix plus a short name).
const CHILD_NAME_ESTIMATE_BYTES: usize = 16;

/// Identifies a client connection (and, as a watcher, its watches).
pub type ConnId = u64;

/// A map keyed by connection or session id. foldhash instead of std's SipHash: `conns` is looked
/// up several times per request, and SipHash was ~10% of a getData's instructions (README,
/// BENCHMARKS). The seed is random per map, as std's is.
pub type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The two clocks every event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// Wall clock, ms since the epoch: goes into txns (ctime/mtime).
    pub wall_ms: i64,
    /// Monotonic ms: session expiry and latencies.
    pub mono_ms: i64,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write this frame to the connection.
    Send(ConnId, Bytes),
    /// Close the connection once everything queued before is written.
    Close(ConnId),
    /// Follower role: send this client request to the leader (a REQUEST packet).
    Forward(Forward),
    /// Follower role: ask the leader whether this reconnecting session is still valid
    /// (REVALIDATE); the answer comes back through `Core::revalidated`.
    Revalidate {
        /// The session.
        session_id: i64,
        /// Its timeout.
        timeout_ms: i32,
    },
}

/// A client request a follower hands to its leader (`Learner.request`): REQUEST's data is
/// `session_id, cxid, op` then `record`, its auth info the connection's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The client's session.
    pub session_id: i64,
    /// The request's xid.
    pub cxid: i32,
    /// The opcode.
    pub op: i32,
    /// The request record exactly as the client sent it.
    pub record: Bytes,
    /// The connection's auth ids.
    pub authinfo: Vec<Id>,
}

/// Who decides what is written: this server alone, or the leader it follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// Prep, log and apply here (ZooKeeper's standalone pipeline).
    #[default]
    Standalone,
    /// Writes, session creation and syncs go to the leader; its committed txns come back through
    /// `committed` and are applied here, answering the local client that asked (ZooKeeper's
    /// `FollowerRequestProcessor` → `CommitProcessor` → `FinalRequestProcessor`). Sessions do
    /// not expire here and containers are not swept: the leader does both.
    Follower,
}

/// A forwarded write waiting for its txn to come back committed.
#[derive(Debug)]
struct ForwardedWrite {
    conn: ConnId,
    cxid: i32,
    op: OpCode,
    received_mono_ms: i64,
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// tickTime.
    pub tick_ms: i64,
    /// Session timeout bounds.
    pub min_session_timeout_ms: i32,
    /// Session timeout bounds.
    pub max_session_timeout_ms: i32,
    /// Server id in session ids (standalone: 1).
    pub server_id: u8,
    /// Prep settings.
    pub prep: PrepSettings,
    /// znode.container.maxNeverUsedIntervalMs.
    pub container_max_never_used_ms: i64,
    /// znode.container.maxPerMinute.
    pub container_max_per_minute: usize,
}

/// Per-connection counters, for `cons`/`stat`.
#[derive(Debug, Clone, Default)]
pub struct ConnStats {
    /// Packets received.
    pub packets_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Last op's short name.
    pub last_op: &'static str,
    /// Last client xid.
    pub last_cxid: i64,
    /// Last zxid replied.
    pub last_zxid: i64,
    /// Monotonic ms of the last reply.
    pub last_response_mono_ms: i64,
    /// Last latency ms.
    pub last_latency_ms: i64,
    /// Latency bounds and sum.
    pub min_latency_ms: i64,
    /// Max latency.
    pub max_latency_ms: i64,
    /// Sum of latencies.
    pub total_latency_ms: i64,
    /// Number of latencies summed.
    pub latency_count: i64,
}

impl ConnStats {
    fn reset(&mut self) {
        *self = ConnStats { last_op: "NA", last_cxid: -1, last_zxid: -1, ..ConnStats::default() };
    }
}

/// A client connection's protocol state.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Peer address.
    pub remote: SocketAddr,
    /// Bound session, 0 until the handshake.
    pub session_id: i64,
    /// Negotiated timeout.
    pub timeout_ms: i32,
    /// Identities (always starts with `ip:<address>`).
    pub auth_ids: Vec<Id>,
    /// The client sent no readOnly byte: its ConnectResponse has none either.
    pub old_client: bool,
    /// Closing: no further request is processed.
    pub closing: bool,
    /// When the session was established (wall ms).
    pub established_wall_ms: i64,
    /// Requests received but not yet answered.
    pub outstanding: u64,
    /// A new session's createSession txn is not applied yet: frames wait in `held`, as ZooKeeper
    /// reads nothing past the ConnectRequest until the session exists.
    pub awaiting_session: bool,
    /// Frames received while `awaiting_session`, processed in order once it is established.
    pub held: VecDeque<Bytes>,
    /// Counters.
    pub stats: ConnStats,
}

/// Server-wide counters (`ServerStats`).
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    /// Packets received.
    pub packets_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Latency bounds and sum over replied requests.
    pub min_latency_ms: i64,
    /// Max.
    pub max_latency_ms: i64,
    /// Sum.
    pub total_latency_ms: i64,
    /// Count.
    pub latency_count: i64,
    /// Failed auth attempts.
    pub auth_failed_count: u64,
    /// Bytes received (frames).
    pub bytes_received: u64,
    /// Size of the last response frame (-1 before any).
    pub last_response_size: i64,
    /// Smallest response frame.
    pub min_response_size: i64,
    /// Largest response frame.
    pub max_response_size: i64,
    /// Log syncs slower than `fsync.warningthresholdms` (not reset by `srst`, as in ZooKeeper).
    pub fsync_threshold_exceed_count: u64,
}

impl ServerStats {
    fn record_latency(&mut self, latency_ms: i64) {
        if self.latency_count == 0 || latency_ms < self.min_latency_ms {
            self.min_latency_ms = latency_ms;
        }
        self.max_latency_ms = self.max_latency_ms.max(latency_ms);
        self.total_latency_ms += latency_ms;
        self.latency_count += 1;
    }

    fn record_response_size(&mut self, size: i64) {
        if self.packets_sent <= 1 || size < self.min_response_size {
            self.min_response_size = size;
        }
        self.max_response_size = self.max_response_size.max(size);
        self.last_response_size = size;
    }

    /// Resets to zero (`srst`).
    pub fn reset(&mut self) {
        *self = ServerStats {
            fsync_threshold_exceed_count: self.fsync_threshold_exceed_count,
            ..ServerStats::default()
        };
    }
}

/// Who is waiting for a txn's outcome.
#[derive(Debug, Clone)]
enum Origin {
    /// A client request on a connection.
    Client { conn: ConnId, xid: i32, op: OpCode, received_mono_ms: i64 },
    /// A new session's createSession; the ConnectResponse goes to `conn`.
    Connect { conn: ConnId },
    /// Session expiry or the container manager.
    Internal,
    /// Leader role: a request a learner forwarded; that learner answers its client when the
    /// txn reaches it committed.
    Remote,
}

/// A read request waiting to run.
#[derive(Debug)]
struct ReadRequest {
    conn: ConnId,
    xid: i32,
    op: OpCode,
    body: Bytes,
    received_mono_ms: i64,
}

/// An entry of the global FIFO.
#[derive(Debug)]
enum Pending {
    Txn { origin: Origin, txn: Txn },
    /// A read ordered behind every txn before it (sync; its session's queue holds a marker).
    Read { session_id: i64, read: ReadRequest },
}

/// An entry of a session's queue, which exists only while the session has entries in the FIFO.
#[derive(Debug)]
enum SessionEntry {
    /// One of the session's entries in the global FIFO, in order; removed when that entry leaves.
    InFifo,
    /// A read that arrived after the entries before it, run once they have left.
    Read(ReadRequest),
}

impl Origin {
    /// The session whose FIFO entry this is, for a client's own request.
    fn client_session(&self, txn: &Txn) -> Option<i64> {
        match self {
            Origin::Client { .. } => Some(txn.header.client_id),
            Origin::Connect { .. } | Origin::Internal | Origin::Remote => None,
        }
    }
}

impl Pending {
    fn zxid(&self) -> Option<i64> {
        match self {
            Pending::Txn { txn, .. } => Some(txn.header.zxid),
            Pending::Read { .. } => None,
        }
    }
}

/// The standalone pipeline.
pub struct Core {
    /// The data tree.
    pub tree: DataTree,
    /// Watch tables.
    pub watches: WatchManager,
    /// Session table.
    pub sessions: SessionTracker,
    /// Connections by id.
    pub conns: IdMap<ConnId, Conn>,
    /// Server-wide counters.
    pub stats: ServerStats,
    /// Metrics under ZooKeeper's names (`mntr`).
    pub metrics: ServerMetrics,
    /// Settings.
    pub settings: CoreSettings,
    /// Requests answered slower than this (ms) are logged with op and path; 0 = off
    /// (`slowRequestThresholdMs`, set by `node`).
    pub slow_request_threshold_ms: i64,
    overlay: PendingOverlay,
    session_conn: IdMap<i64, ConnId>,
    last_zxid: i64,
    durable_zxid: i64,
    queue: VecDeque<Pending>,
    /// Per-session order for sessions with entries in `queue` (see the module doc). A queue
    /// always starts with `InFifo`; it is dropped when it empties.
    session_queues: IdMap<i64, VecDeque<SessionEntry>>,
    /// Reads waiting in `session_queues` (they count as outstanding, for back-pressure).
    waiting_reads: usize,
    unpersisted: Vec<Txn>,
    persist_immediately: bool,
    outputs: Vec<Output>,
    deliveries: Vec<Delivery>,
    /// The time of the event being handled.
    now: Now,
    /// Failures of the log seen so far (txns are submitted under this count).
    log_generation: u64,
    /// Held frames of connections whose session was just established, to process next.
    released: Vec<(ConnId, Bytes)>,
    /// Txns applied since the last snapshot started.
    txns_since_snapshot: u64,
    role: Role,
    /// Follower role: forwarded writes per session, in request order.
    forwarded: IdMap<i64, VecDeque<ForwardedWrite>>,
    /// Follower role: connections waiting for their createSession to commit, by session.
    pending_connects: IdMap<i64, ConnId>,
    /// Follower role: reconnecting connections waiting for the leader's REVALIDATE answer.
    pending_revalidations: IdMap<i64, ConnId>,
    /// Follower role: forwarded syncs, oldest first (the leader answers them in order).
    pending_syncs: VecDeque<(i64, ReadRequest)>,
}

impl Core {
    /// A fresh server. `clock_ms` seeds the session id counter (`initial_session_id`).
    pub fn new(settings: CoreSettings, clock_ms: i64) -> Core {
        let first_session_id = initial_session_id(settings.server_id, clock_ms);
        Core {
            tree: DataTree::new(settings.prep.extended_types_enabled),
            watches: WatchManager::default(),
            sessions: SessionTracker::new(settings.tick_ms, first_session_id),
            conns: IdMap::default(),
            stats: ServerStats::default(),
            metrics: ServerMetrics::default(),
            settings,
            slow_request_threshold_ms: 0,
            overlay: PendingOverlay::default(),
            session_conn: IdMap::default(),
            last_zxid: 0,
            durable_zxid: 0,
            queue: VecDeque::new(),
            session_queues: IdMap::default(),
            waiting_reads: 0,
            unpersisted: Vec::new(),
            persist_immediately: true,
            outputs: Vec::new(),
            deliveries: Vec::new(),
            now: Now::default(),
            log_generation: 0,
            released: Vec::new(),
            txns_since_snapshot: 0,
            role: Role::Standalone,
            forwarded: IdMap::default(),
            pending_connects: IdMap::default(),
            pending_revalidations: IdMap::default(),
            pending_syncs: VecDeque::new(),
        }
    }

    /// A server restarting from storage: the restored tree and sessions, counting from
    /// `last_zxid`, with txns made durable by a log writer (`take_unpersisted` /
    /// `persisted_through`). Sessions get the rest of their timeout, judged from when the server
    /// was last alive; those that ran out while it was down expire at the first tick.
    pub fn restored(
        settings: CoreSettings,
        tree: DataTree,
        sessions: &[(i64, i32)],
        last_zxid: i64,
        last_alive_wall_ms: Option<i64>,
        now: Now,
    ) -> Core {
        let mut core = Core::new(settings, now.wall_ms);
        core.tree = tree;
        core.last_zxid = last_zxid;
        core.durable_zxid = last_zxid;
        core.persist_immediately = false;
        core.now = now;
        let down_ms = last_alive_wall_ms.map_or(0, |alive| (now.wall_ms - alive).max(0));
        for &(session_id, timeout_ms) in sessions {
            // Registering "down_ms ago" leaves exactly the remaining time (possibly none).
            core.sessions.add(session_id, timeout_ms, now.mono_ms - down_ms);
        }
        core
    }

    /// The failure count txns are being submitted under.
    pub fn log_generation(&self) -> u64 {
        self.log_generation
    }

    /// Txns applied since the last snapshot started.
    pub fn txns_since_snapshot(&self) -> u64 {
        self.txns_since_snapshot
    }

    /// The snapshot count starts over (a snapshot started, or was skipped as too busy).
    pub fn snapshot_started(&mut self) {
        self.txns_since_snapshot = 0;
    }

    /// The log failed to persist a batch (`failures` failures so far). Everything prepped after
    /// the durable point is refused: clients get an error for their writes, new sessions are
    /// closed, nothing of it was applied. The zxid counter rewinds to the durable point, so the
    /// next writes reuse those zxids once the disk accepts writes again.
    pub fn persist_failed(&mut self, failures: u64, now: Now) {
        self.now = now;
        self.log_generation = failures;
        self.unpersisted.clear();
        // Apply and answer everything that is durable, then walk the rest in order so every
        // connection's replies stay in request order: reads are answered, writes refused.
        self.drain();
        while let Some(pending) = self.queue.pop_front() {
            match pending {
                Pending::Txn { origin, txn } => {
                    let session = origin.client_session(&txn);
                    self.refuse(origin, txn);
                    if let Some(session_id) = session {
                        self.left_fifo(session_id);
                    }
                }
                Pending::Read { session_id, read } => {
                    self.answer_read(read);
                    self.left_fifo(session_id);
                }
            }
        }
        debug_assert!(self.session_queues.is_empty() && self.waiting_reads == 0);
        self.overlay = PendingOverlay::default();
        self.last_zxid = self.durable_zxid;
        self.drain();
    }

    fn refuse(&mut self, origin: Origin, txn: Txn) {
        let session_id = txn.header.client_id;
        match origin {
            Origin::Connect { conn } => {
                self.sessions.remove(session_id);
                self.session_conn.remove(&session_id);
                self.close(conn);
            }
            // The learner's client times out and retries; the leader steps down on a log failure.
            Origin::Remote => {}
            Origin::Internal => {
                // An expiry that could not be logged is retried at the next tick.
                if let TxnBody::CloseSession { .. } = txn.body {
                    self.sessions.reopen(session_id, self.now.mono_ms);
                }
            }
            Origin::Client { conn, xid, op, received_mono_ms } => {
                if op == OpCode::CloseSession {
                    self.sessions.reopen(session_id, self.now.mono_ms);
                }
                let zxid = self.tree.last_processed_zxid;
                let frame = reply_frame(&ReplyHeader { xid, zxid, err: ErrorCode::SystemError.code() }, |_| {});
                self.finish_reply(conn, op, xid, zxid, received_mono_ms, frame);
            }
        }
    }

    /// Outputs produced since the last call, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Outputs produced since the last call, in order, keeping the buffer's allocation.
    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    /// Requests in flight (`Outstanding`): the FIFO plus reads waiting for their session.
    pub fn outstanding(&self) -> usize {
        self.queue.len() + self.waiting_reads
    }

    /// Last applied zxid.
    pub fn last_processed_zxid(&self) -> i64 {
        self.tree.last_processed_zxid
    }

    /// Pending overlay size.
    pub fn outstanding_changes(&self) -> usize {
        self.overlay.len()
    }

    fn send(&mut self, conn_id: ConnId, frame: Bytes) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.stats.packets_sent += 1;
            self.stats.packets_sent += 1;
            self.stats.record_response_size(frame.len() as i64);
            self.metrics.inc(ids::RESPONSE_BYTES, frame.len() as i64);
            self.outputs.push(Output::Send(conn_id, frame));
        }
    }

    fn close(&mut self, conn_id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            if !conn.closing {
                conn.closing = true;
                self.outputs.push(Output::Close(conn_id));
            }
        }
    }

    /// A new TCP connection sent its ConnectRequest. `old_client`: no readOnly byte followed it.
    pub fn connect(&mut self, conn_id: ConnId, remote: SocketAddr, req: ConnectRequest, old_client: bool, now: Now) {
        self.now = now;
        self.stats.packets_received += 1;
        self.metrics.inc(ids::CONNECTION_REQUEST_COUNT, 1);
        if remote.ip().is_loopback() {
            self.metrics.inc(ids::NON_MTLS_LOCAL_CONN_COUNT, 1);
        } else {
            self.metrics.inc(ids::NON_MTLS_REMOTE_CONN_COUNT, 1);
        }
        let ip = remote.ip().to_string();
        self.conns.insert(
            conn_id,
            Conn {
                remote,
                session_id: 0,
                timeout_ms: 0,
                auth_ids: vec![Id { scheme: "ip".into(), id: ip }],
                old_client,
                closing: false,
                established_wall_ms: now.wall_ms,
                outstanding: 0,
                awaiting_session: false,
                held: VecDeque::new(),
                stats: ConnStats { packets_received: 1, last_op: "NA", last_cxid: -1, last_zxid: -1, ..Default::default() },
            },
        );
        if req.last_zxid_seen > self.tree.last_processed_zxid {
            info!(
                remote = %remote,
                "refusing session request: client has seen zxid {:#x}, our last zxid is {:#x}; client must try another server",
                req.last_zxid_seen, self.tree.last_processed_zxid
            );
            self.close(conn_id);
            return;
        }
        let timeout_ms = req.time_out.clamp(self.settings.min_session_timeout_ms, self.settings.max_session_timeout_ms);
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.timeout_ms = timeout_ms;
        }
        if req.session_id == 0 && self.role == Role::Follower {
            // The leader creates the session (`Learner.request` of createSession); the
            // ConnectResponse waits for its commit.
            let session_id = self.sessions.next_id();
            self.bind(conn_id, session_id);
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.awaiting_session = true;
            }
            self.pending_connects.insert(session_id, conn_id);
            let mut record = BytesMut::with_capacity(4);
            timeout_ms.encode(&mut record);
            let forward = Forward {
                session_id,
                cxid: 0,
                op: OpCode::CreateSession as i32,
                record: record.freeze(),
                authinfo: Vec::new(),
            };
            self.outputs.push(Output::Forward(forward));
            return;
        }
        if req.session_id == 0 {
            let session_id = self.sessions.next_id();
            self.sessions.add(session_id, timeout_ms, now.mono_ms);
            self.bind(conn_id, session_id);
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.awaiting_session = true;
            }
            let header = self.next_header(session_id, 0, now, OpCode::CreateSession as i32);
            let txn = Txn { header, body: TxnBody::CreateSession { timeout_ms } };
            self.enqueue_txn(Origin::Connect { conn: conn_id }, txn);
            self.drain();
            return;
        }
        // Reconnect: any other connection of this session is closed first, as ZooKeeper does.
        let session_id = req.session_id;
        if let Some(&other) = self.session_conn.get(&session_id) {
            if other != conn_id {
                debug!(session = format_args!("{session_id:#x}"), "closing previous connection of reconnecting session");
                self.close(other);
                self.unbind(other);
            }
        }
        if self.role == Role::Follower && req.passwd[..] == session_password(session_id)[..] {
            // Only the leader knows whether the session lives (`Learner.validateSession`).
            self.pending_revalidations.insert(session_id, conn_id);
            self.outputs.push(Output::Revalidate { session_id, timeout_ms });
            return;
        }
        let valid = req.passwd[..] == session_password(session_id)[..] && self.sessions.touch(session_id, now.mono_ms);
        if valid {
            self.bind(conn_id, session_id);
        } else {
            self.metrics.inc(ids::UNSUCCESSFUL_HANDSHAKE, 1);
            info!(session = format_args!("{session_id:#x}"), remote = %remote, "session expired or password wrong; refusing reconnect");
        }
        self.send_connect_response(conn_id, valid);
    }

    fn bind(&mut self, conn_id: ConnId, session_id: i64) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.session_id = session_id;
        }
        self.session_conn.insert(session_id, conn_id);
    }

    fn unbind(&mut self, conn_id: ConnId) {
        if let Some(conn) = self.conns.get(&conn_id) {
            if self.session_conn.get(&conn.session_id) == Some(&conn_id) {
                self.session_conn.remove(&conn.session_id);
            }
        }
    }

    fn send_connect_response(&mut self, conn_id: ConnId, valid: bool) {
        let Some(conn) = self.conns.get(&conn_id) else { return };
        let response = if valid {
            ConnectResponse {
                protocol_version: 0,
                time_out: conn.timeout_ms,
                session_id: conn.session_id,
                passwd: Bytes::copy_from_slice(&session_password(conn.session_id)),
            }
        } else {
            ConnectResponse { protocol_version: 0, time_out: 0, session_id: 0, passwd: Bytes::from_static(&[0; 16]) }
        };
        let mut out = BytesMut::with_capacity(48);
        out.extend_from_slice(&[0; 4]);
        response.encode(&mut out);
        if !conn.old_client {
            false.encode(&mut out);
        }
        let len = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        let (session_id, remote, timeout_ms) = (conn.session_id, conn.remote, conn.timeout_ms);
        self.send(conn_id, out.freeze());
        if valid {
            info!(session = format_args!("{session_id:#x}"), remote = %remote, timeout_ms, "session established");
        } else {
            self.close(conn_id);
        }
    }

    /// The connection went away (peer closed, error, or we closed it).
    pub fn disconnect(&mut self, conn_id: ConnId) {
        self.unbind(conn_id);
        self.watches.remove_watcher(conn_id);
        self.conns.remove(&conn_id);
    }

    fn next_header(&mut self, session_id: i64, cxid: i32, now: Now, txn_type: i32) -> TxnHeader {
        self.last_zxid += 1;
        TxnHeader { client_id: session_id, cxid, zxid: self.last_zxid, time: now.wall_ms, txn_type }
    }

    fn enqueue_txn(&mut self, origin: Origin, txn: Txn) {
        self.unpersisted.push(txn.clone());
        if let Some(session_id) = origin.client_session(&txn) {
            self.session_queues.entry(session_id).or_default().push_back(SessionEntry::InFifo);
        }
        self.queue.push_back(Pending::Txn { origin, txn });
    }

    /// A read of `session_id`: runs now unless the session has entries in the FIFO, else waits
    /// for them in the session's queue.
    fn read_or_wait(&mut self, session_id: i64, read: ReadRequest) {
        match self.session_queues.get_mut(&session_id) {
            Some(queue) => {
                queue.push_back(SessionEntry::Read(read));
                self.waiting_reads += 1;
            }
            None => self.answer_read(read),
        }
    }

    /// An entry of `session_id` left the FIFO (applied, answered or refused, its reply queued):
    /// runs the reads that waited for it, up to the session's next entry in the FIFO.
    fn left_fifo(&mut self, session_id: i64) {
        // Taken out of the map while its reads run (running a read never queues anything).
        let Some(mut queue) = self.session_queues.remove(&session_id) else {
            debug_assert!(false, "no session queue for {session_id:#x}");
            return;
        };
        let front = queue.pop_front();
        debug_assert!(matches!(front, Some(SessionEntry::InFifo)), "session queue out of step");
        while let Some(SessionEntry::Read(_)) = queue.front() {
            let Some(SessionEntry::Read(read)) = queue.pop_front() else { break };
            self.waiting_reads -= 1;
            self.answer_read(read);
        }
        if !queue.is_empty() {
            self.session_queues.insert(session_id, queue);
        }
    }

    /// Txns prepped since the last call, for the log writer (when persistence is not immediate).
    pub fn take_unpersisted(&mut self) -> Vec<Txn> {
        std::mem::take(&mut self.unpersisted)
    }

    /// The log made every txn up to `zxid` durable: apply and answer what may now leave.
    pub fn persisted_through(&mut self, zxid: i64, now: Now) {
        self.now = now;
        self.durable_zxid = self.durable_zxid.max(zxid);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            self.drain_queue();
            if self.released.is_empty() {
                break;
            }
            for (conn, frame) in std::mem::take(&mut self.released) {
                self.handle_request(conn, frame);
            }
        }
    }

    fn drain_queue(&mut self) {
        if self.persist_immediately {
            self.unpersisted.clear();
            self.durable_zxid = self.last_zxid;
        }
        while let Some(front) = self.queue.front() {
            if front.zxid().is_some_and(|z| z > self.durable_zxid) {
                break;
            }
            let Some(pending) = self.queue.pop_front() else { break };
            match pending {
                Pending::Txn { origin, txn } => {
                    let session = origin.client_session(&txn);
                    self.apply_and_reply(origin, txn);
                    if let Some(session_id) = session {
                        self.left_fifo(session_id);
                    }
                }
                Pending::Read { session_id, read } => {
                    self.answer_read(read);
                    self.left_fifo(session_id);
                }
            }
        }
    }

    /// One request frame (header + record, no length prefix) from a connection with a session.
    pub fn request(&mut self, conn_id: ConnId, frame: Bytes, now: Now) {
        self.now = now;
        self.handle_request(conn_id, frame);
        self.drain();
    }

    /// Most frames a connection may send before its session exists (the Java client pipelines
    /// auth packets and setWatches behind its ConnectRequest).
    const HELD_FRAMES_MAX: usize = 4096;

    fn handle_request(&mut self, conn_id: ConnId, mut frame: Bytes) {
        let now = self.now;
        let frame_len = frame.len();
        let Some(conn) = self.conns.get_mut(&conn_id) else { return };
        if conn.closing {
            return;
        }
        if conn.awaiting_session {
            if conn.held.len() >= Self::HELD_FRAMES_MAX {
                warn!(remote = %conn.remote, "closing connection: too many requests before its session was established");
                self.close(conn_id);
            } else {
                conn.held.push_back(frame);
            }
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += frame_len as u64 + 4;
        self.metrics.inc(ids::BYTES_RECEIVED_COUNT, frame_len as i64 + 4);
        conn.stats.packets_received += 1;
        let session_id = conn.session_id;
        let header = match RequestHeader::decode(&mut frame) {
            Ok(h) => h,
            Err(e) => {
                warn!(remote = %conn.remote, "closing connection: undecodable request header: {e}");
                self.close(conn_id);
                return;
            }
        };
        if session_id == 0 {
            self.close(conn_id);
            return;
        }
        self.sessions.touch(session_id, now.mono_ms);
        let Some(op) = OpCode::from_i32(header.op).filter(|op| !matches!(op, OpCode::Notification | OpCode::Error))
        else {
            warn!(remote = %conn.remote, "closing connection: unknown opcode {}", header.op);
            let frame = reply_frame(&ReplyHeader { xid: header.xid, zxid: -1, err: ErrorCode::Unimplemented.code() }, |_| {});
            self.send(conn_id, frame);
            self.close(conn_id);
            return;
        };
        conn.outstanding += 1;
        match op {
            OpCode::Auth => self.handle_auth(conn_id, header.xid, frame),
            OpCode::Sasl => {
                // No SASL provider is configured, as in a default ZooKeeper.
                self.stats.auth_failed_count += 1;
                let reply = ReplyHeader { xid: header.xid, zxid: 0, err: ErrorCode::AuthFailed.code() };
                self.send(conn_id, reply_frame(&reply, |_| {}));
                self.close(conn_id);
            }
            op if self.role == Role::Follower && (op.is_write() || op == OpCode::CloseSession) => {
                self.forward_write(conn_id, session_id, header.xid, op, frame, now);
            }
            OpCode::Sync if self.role == Role::Follower => {
                let read = ReadRequest {
                    conn: conn_id,
                    xid: header.xid,
                    op,
                    body: frame.clone(),
                    received_mono_ms: now.mono_ms,
                };
                self.session_queues
                    .entry(session_id)
                    .or_default()
                    .push_back(SessionEntry::InFifo);
                self.pending_syncs.push_back((session_id, read));
                let authinfo = self.auth_ids(conn_id).to_vec();
                let forward = Forward {
                    session_id,
                    cxid: header.xid,
                    op: op as i32,
                    record: frame,
                    authinfo,
                };
                self.outputs.push(Output::Forward(forward));
            }
            OpCode::CloseSession => {
                self.sessions.set_closing(session_id);
                let paths_to_delete = closing_session_paths(session_id, &self.tree, &self.overlay);
                let header = self.next_header(session_id, header.xid, now, OpCode::CloseSession as i32);
                let origin = Origin::Client { conn: conn_id, xid: header.cxid, op, received_mono_ms: now.mono_ms };
                self.enqueue_txn(origin, Txn { header, body: TxnBody::CloseSession { paths_to_delete } });
            }
            op if op.is_write() => self.prep_client_write(conn_id, session_id, header.xid, op, frame, now),
            op => {
                let received_mono_ms = now.mono_ms;
                let read = ReadRequest { conn: conn_id, xid: header.xid, op, body: frame, received_mono_ms };
                if op == OpCode::Sync {
                    // sync orders like a write (as `CommitProcessor` treats it): its reply leaves
                    // after every txn prepped before it, and the session's later reads wait for it.
                    self.session_queues.entry(session_id).or_default().push_back(SessionEntry::InFifo);
                    self.queue.push_back(Pending::Read { session_id, read });
                } else {
                    self.read_or_wait(session_id, read);
                }
            }
        }
    }

    fn handle_auth(&mut self, conn_id: ConnId, xid: i32, mut body: Bytes) {
        let Some(conn) = self.conns.get(&conn_id) else { return };
        let result = AuthPacket::decode(&mut body).map_err(|_| ErrorCode::AuthFailed).and_then(|packet| {
            authenticate(&packet.scheme, &packet.auth, &conn.remote.ip().to_string(), &self.settings.prep.auth)
        });
        // The auth reply is sent at once, outside the FIFO (`ZooKeeperServer.processPacket`).
        match result {
            Ok(ids) => {
                if let Some(conn) = self.conns.get_mut(&conn_id) {
                    conn.outstanding = conn.outstanding.saturating_sub(1);
                    for id in ids {
                        if !conn.auth_ids.contains(&id) {
                            conn.auth_ids.push(id);
                        }
                    }
                }
                self.send(conn_id, reply_frame(&ReplyHeader { xid: XID_AUTH.min(xid), zxid: 0, err: 0 }, |_| {}));
            }
            Err(err) => {
                self.stats.auth_failed_count += 1;
                warn!(remote = %conn.remote, "auth failed; closing connection");
                self.send(conn_id, reply_frame(&ReplyHeader { xid, zxid: 0, err: err.code() }, |_| {}));
                self.close(conn_id);
            }
        }
    }

    fn decode_write(op: OpCode, body: &mut Bytes) -> Result<WriteRequest, DecodeError> {
        Ok(match op {
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer => {
                WriteRequest::Create(op as i32, CreateRequest::decode(body)?)
            }
            OpCode::CreateTtl => {
                let r = CreateTtlRequest::decode(body)?;
                WriteRequest::CreateTtl(CreateRequest { path: r.path, data: r.data, acl: r.acl, flags: r.flags }, r.ttl)
            }
            OpCode::Delete => WriteRequest::Delete(DeleteRequest::decode(body)?),
            OpCode::SetData => WriteRequest::SetData(SetDataRequest::decode(body)?),
            OpCode::SetAcl => {
                let r = SetAclRequest::decode(body)?;
                WriteRequest::SetAcl(r.path, r.acl, r.version)
            }
            OpCode::Check => WriteRequest::Check(CheckVersionRequest::decode(body)?),
            OpCode::Multi => {
                let ops = decode_multi(body)?;
                if ops.iter().any(MultiOp::is_read) {
                    return Err(DecodeError::Invalid("read op in multi".into()));
                }
                WriteRequest::Multi(ops)
            }
            OpCode::Reconfig => {
                ReconfigRequest::decode(body)?;
                WriteRequest::Reconfig
            }
            _ => return Err(DecodeError::Invalid(format!("{op:?} is not a write"))),
        })
    }

    fn prep_client_write(&mut self, conn_id: ConnId, session_id: i64, xid: i32, op: OpCode, body: Bytes, now: Now) {
        let auth_ids = self.conns.get(&conn_id).map(|c| c.auth_ids.clone()).unwrap_or_default();
        let txn = self.prep_txn(session_id, xid, op, body, &auth_ids, now);
        let origin = Origin::Client { conn: conn_id, xid, op, received_mono_ms: now.mono_ms };
        self.enqueue_txn(origin, txn);
    }

    /// A write request's txn. Every write gets its zxid first; any failure after that is logged
    /// as an error txn (PROTOCOL.md §2.12), malformed bodies included (MarshallingError).
    fn prep_txn(&mut self, session_id: i64, xid: i32, op: OpCode, mut body: Bytes, auth_ids: &[Id], now: Now) -> Txn {
        let mut header = self.next_header(session_id, xid, now, op as i32);
        let body = match Self::decode_write(op, &mut body) {
            Ok(request) => {
                match prep_write(&request, session_id, auth_ids, header.zxid, &self.tree, &mut self.overlay, &self.settings.prep) {
                    Ok(txn_body) => {
                        header.txn_type = txn_type(&request, &txn_body);
                        txn_body
                    }
                    Err(err) => TxnBody::Error { err: err.code() },
                }
            }
            Err(e) => {
                warn!(op = ?op, "undecodable request body: {e}");
                TxnBody::Error { err: ErrorCode::MarshallingError.code() }
            }
        };
        if let TxnBody::Error { .. } = body {
            header.txn_type = -1;
        }
        Txn { header, body }
    }

    fn apply_and_reply(&mut self, origin: Origin, txn: Txn) {
        self.txns_since_snapshot += 1;
        let mut triggers = Vec::new();
        let result = self.tree.apply(&txn, &mut triggers);
        self.overlay.applied_through(txn.header.zxid);
        match &txn.body {
            // Replay or a session created elsewhere: register it now.
            TxnBody::CreateSession { timeout_ms } if self.sessions.get(txn.header.client_id).is_none() => {
                self.sessions.add(txn.header.client_id, *timeout_ms, 0);
            }
            TxnBody::CloseSession { .. } => self.sessions.remove(txn.header.client_id),
            _ => {}
        }
        self.record_writes(&triggers);
        self.watches.trigger(&triggers, &mut self.deliveries);
        let deliveries = std::mem::take(&mut self.deliveries);
        self.observe_watch_fanout(&deliveries);
        self.metrics.inc(ids::COMMIT_COUNT, 1);
        // Every watcher of one change gets the same bytes: encode each event once and share the
        // buffer (a fan-out to 1,000 watchers encoded 1,000 identical frames).
        let mut last: Option<(i32, &str, Bytes)> = None;
        for delivery in &deliveries {
            let frame = match &last {
                Some((event_type, path, frame)) if *event_type == delivery.event_type && *path == delivery.path => {
                    frame.clone()
                }
                _ => {
                    let frame = notification_frame(delivery);
                    last = Some((delivery.event_type, &delivery.path, frame.clone()));
                    frame
                }
            };
            self.send(delivery.watcher, frame);
        }
        drop(last);
        // Keep the allocation for the next txn.
        let mut deliveries = deliveries;
        deliveries.clear();
        self.deliveries = deliveries;
        let zxid = self.tree.last_processed_zxid;
        match origin {
            Origin::Connect { conn } => {
                self.send_connect_response(conn, true);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.awaiting_session = false;
                    let held: Vec<Bytes> = c.held.drain(..).collect();
                    self.released.extend(held.into_iter().map(|frame| (conn, frame)));
                }
            }
            Origin::Remote => {}
            Origin::Internal => {
                if let TxnBody::CloseSession { .. } = txn.body {
                    // Expired: the client learns by the connection closing (`FinalRequestProcessor`).
                    if let Some(conn) = self.session_conn.remove(&txn.header.client_id) {
                        self.close(conn);
                    }
                    if self.role == Role::Follower {
                        // Closed through another server or expired by the leader: this one cannot tell.
                        debug!(session = format_args!("{:#x}", txn.header.client_id), "session closed by the leader");
                    } else {
                        info!(session = format_args!("{:#x}", txn.header.client_id), "session expired");
                    }
                }
            }
            Origin::Client { conn, xid, op, received_mono_ms } => {
                let err = match &result {
                    ApplyResult::Failed(code) => *code,
                    _ => ErrorCode::Ok,
                };
                let header = ReplyHeader { xid, zxid, err: err.code() };
                let frame = match (&result, op) {
                    // A multi reports its failure per op; the outer err is 0 (PROTOCOL.md §2.9).
                    (ApplyResult::Multi(results), _) => {
                        let results = multi_results(&txn.body, results);
                        reply_frame(&ReplyHeader { err: 0, ..header }, |out| encode_multi_response(&results, out))
                    }
                    (ApplyResult::Failed(ErrorCode::MarshallingError), OpCode::Multi) => reply_frame(&header, |_| {}),
                    (ApplyResult::Failed(_), _) => reply_frame(&header, |_| {}),
                    (ApplyResult::Created(_), OpCode::Create) => {
                        reply_frame(&header, |out| CreateResponse { path: created_path(&txn.body) }.encode(out))
                    }
                    (ApplyResult::Created(stat), _) => reply_frame(&header, |out| {
                        Create2Response { path: created_path(&txn.body), stat: *stat }.encode(out)
                    }),
                    (ApplyResult::Stat(stat), _) => reply_frame(&header, |out| StatResponse { stat: *stat }.encode(out)),
                    (ApplyResult::Done, OpCode::Check) => {
                        // ZooKeeper never answers a top-level check (NPE); we answer with the Stat.
                        let stat = match &txn.body {
                            TxnBody::Check { path, .. } => self.tree.stat(path).unwrap_or_default(),
                            _ => Default::default(),
                        };
                        reply_frame(&header, |out| StatResponse { stat }.encode(out))
                    }
                    (ApplyResult::Done, _) => reply_frame(&header, |_| {}),
                };
                self.finish_reply(conn, op, xid, zxid, received_mono_ms, frame);
                self.log_if_slow(conn, op, received_mono_ms, || slow::txn_path(&txn.body));
                if op == OpCode::CloseSession {
                    self.session_conn.remove(&txn.header.client_id);
                    info!(session = format_args!("{:#x}", txn.header.client_id), "session closed by client");
                    self.close(conn);
                }
            }
        }
    }

    fn finish_reply(&mut self, conn_id: ConnId, op: OpCode, xid: i32, zxid: i64, received_mono_ms: i64, frame: Bytes) {
        let now_mono = self.now.mono_ms;
        let latency = (now_mono - received_mono_ms).max(0);
        self.stats.record_latency(latency);
        if op.is_write() {
            self.metrics.observe(ids::UPDATELATENCY, latency);
        } else if op != OpCode::Ping {
            self.metrics.observe(ids::READLATENCY, latency);
        }
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.outstanding = conn.outstanding.saturating_sub(1);
            let s = &mut conn.stats;
            s.last_op = op.lop();
            if xid >= 0 {
                s.last_cxid = xid as i64;
            }
            s.last_zxid = zxid;
            s.last_response_mono_ms = now_mono;
            s.last_latency_ms = latency;
            if s.latency_count == 0 || latency < s.min_latency_ms {
                s.min_latency_ms = latency;
            }
            s.max_latency_ms = s.max_latency_ms.max(latency);
            s.total_latency_ms += latency;
            s.latency_count += 1;
        }
        self.send(conn_id, frame);
    }

    fn answer_read(&mut self, read: ReadRequest) {
        let ReadRequest { conn: conn_id, xid, op, mut body, received_mono_ms } = read;
        if !self.conns.contains_key(&conn_id) {
            return;
        }
        let zxid = self.tree.last_processed_zxid;
        let request = body.clone();
        // The record is encoded straight into the frame; the header goes in once the outcome is known.
        let mut out = BytesMut::with_capacity(READ_REPLY_CAPACITY);
        start_reply_frame(&mut out);
        let header = match self.execute_read(conn_id, op, &mut body, &mut out) {
            Ok(()) => ReplyHeader { xid: if op == OpCode::Ping { XID_PING } else { xid }, zxid, err: 0 },
            Err(err) => {
                out.truncate(REPLY_RECORD_OFFSET);
                ReplyHeader { xid, zxid, err: err.code() }
            }
        };
        let frame = finish_reply_frame(out, &header);
        self.finish_reply(conn_id, op, xid, zxid, received_mono_ms, frame);
        self.log_if_slow(conn_id, op, received_mono_ms, || slow::request_path(op, &request));
    }

    /// Logs a request answered slower than `slow_request_threshold_ms`; `path` runs only then.
    fn log_if_slow(&self, conn_id: ConnId, op: OpCode, received_mono_ms: i64, path: impl FnOnce() -> String) {
        let latency_ms = self.now.mono_ms - received_mono_ms;
        if self.slow_request_threshold_ms <= 0 || latency_ms <= self.slow_request_threshold_ms || op == OpCode::Ping {
            return;
        }
        let session = self.conns.get(&conn_id).map_or(0, |c| c.session_id);
        warn!(op = op.lop(), path = %path(), latency_ms, session = format_args!("{session:#x}"), "slow request");
    }

    fn auth_ids(&self, conn_id: ConnId) -> &[Id] {
        self.conns.get(&conn_id).map(|c| c.auth_ids.as_slice()).unwrap_or(&[])
    }

    /// Runs a read (or a session/watch op) and appends the encoded response record to `out`.
    fn execute_read(
        &mut self,
        conn_id: ConnId,
        op: OpCode,
        body: &mut Bytes,
        out: &mut BytesMut,
    ) -> Result<(), ErrorCode> {
        let marshalling = |_: DecodeError| ErrorCode::MarshallingError;
        let auth = &self.settings.prep.auth;
        match op {
            OpCode::Ping | OpCode::Sync if op == OpCode::Ping => {}
            OpCode::Sync => PathRequest::decode(body).map_err(marshalling)?.encode(out),
            OpCode::Exists => {
                let req = PathWatchRequest::decode(body).map_err(marshalling)?;
                if req.path.contains('\0') {
                    return Err(ErrorCode::BadArguments);
                }
                // exists registers its watch whether or not the node exists.
                if req.watch {
                    self.watches.add_data_watch(&req.path, conn_id);
                }
                let stat = self.tree.stat(&req.path).ok_or(ErrorCode::NoNode)?;
                record_read(&mut self.metrics, &req.path, 0);
                StatResponse { stat }.encode(out);
            }
            OpCode::GetData => {
                let req = PathWatchRequest::decode(body).map_err(marshalling)?;
                let node = self.tree.read(&req.path).ok_or(ErrorCode::NoNode)?;
                check_acl(node.acl(), perms::READ, self.auth_ids(conn_id), auth)?;
                encode_get_data_response(node.data(), &node.stat(), out);
                let data_bytes = node.data().map_or(0, <[u8]>::len);
                if req.watch {
                    self.watches.add_data_watch(&req.path, conn_id);
                }
                record_read(&mut self.metrics, &req.path, data_bytes);
            }
            OpCode::GetChildren | OpCode::GetChildren2 => {
                let req = PathWatchRequest::decode(body).map_err(marshalling)?;
                let node = self.tree.read(&req.path).ok_or(ErrorCode::NoNode)?;
                check_acl(node.acl(), perms::READ, self.auth_ids(conn_id), auth)?;
                let stat = node.stat();
                let stat = (op == OpCode::GetChildren2).then_some(&stat);
                let name_units = match node.listing() {
                    // A big node listed before, its children unchanged since: copy the encoding.
                    Some(listing) => {
                        out.extend_from_slice(&listing.encoded);
                        listing.name_units
                    }
                    None => {
                        // Names go from the tree straight into the reply (no Vec<String>).
                        let names = node.child_names();
                        out.reserve(names.len() * CHILD_NAME_ESTIMATE_BYTES + 4 + 68);
                        // read_per_namespace counts the names' lengths; summed while encoding, in one walk.
                        let mut name_units = 0;
                        let names = names.inspect(|name| name_units += java_length_utf8(name));
                        let start = out.len();
                        encode_children_response(names, None, out);
                        if node.listing_worth_keeping() {
                            let listing = Listing { encoded: out[start..].to_vec(), name_units };
                            let id = node.id();
                            self.tree.keep_listing(id, listing);
                        }
                        name_units
                    }
                };
                if let Some(stat) = stat {
                    stat.encode(out);
                }
                if req.watch {
                    self.watches.add_child_watch(&req.path, conn_id);
                }
                record_read(&mut self.metrics, &req.path, name_units);
            }
            OpCode::GetAcl => {
                let req = PathRequest::decode(body).map_err(marshalling)?;
                let (acl, stat) = self.tree.get_acl(&req.path).ok_or(ErrorCode::NoNode)?;
                let ids = self.auth_ids(conn_id);
                check_acl(&acl, perms::READ | perms::ADMIN, ids, auth)?;
                let mut acl = acl.to_vec();
                if check_acl(&acl, perms::ADMIN, ids, auth).is_err() {
                    // Without ADMIN, digest hashes are masked (`FinalRequestProcessor` getACL).
                    for entry in acl.iter_mut().filter(|a| a.id.scheme == "digest") {
                        let user = entry.id.id.split(':').next().unwrap_or("").to_owned();
                        entry.id.id = format!("{user}:x");
                    }
                }
                GetAclResponse { acl, stat }.encode(out);
            }
            OpCode::GetAllChildrenNumber => {
                let req = PathRequest::decode(body).map_err(marshalling)?;
                let info = self.tree.node_info(&req.path).ok_or(ErrorCode::NoNode)?;
                check_acl(&info.acl, perms::READ, self.auth_ids(conn_id), auth)?;
                let total_number = self.tree.count_descendants(&req.path).ok_or(ErrorCode::NoNode)?;
                GetAllChildrenNumberResponse { total_number }.encode(out);
            }
            OpCode::GetEphemerals => {
                let req = PathRequest::decode(body).map_err(marshalling)?;
                let session_id = self.conns.get(&conn_id).map_or(0, |c| c.session_id);
                let prefix = req.path.trim();
                let ephemerals = self
                    .tree
                    .ephemerals_of(session_id)
                    .into_iter()
                    .filter(|p| prefix.is_empty() || prefix == "/" || p.starts_with(req.path.as_str()))
                    .collect();
                GetEphemeralsResponse { ephemerals }.encode(out);
            }
            OpCode::SetWatches => {
                let req = SetWatches::decode(body).map_err(marshalling)?;
                self.set_watches(conn_id, req.relative_zxid, &req.data_watches, &req.exist_watches, &req.child_watches, &[], &[]);
            }
            OpCode::SetWatches2 => {
                let req = SetWatches2::decode(body).map_err(marshalling)?;
                self.set_watches(
                    conn_id,
                    req.relative_zxid,
                    &req.data_watches,
                    &req.exist_watches,
                    &req.child_watches,
                    &req.persistent_watches,
                    &req.persistent_recursive_watches,
                );
            }
            OpCode::AddWatch => {
                let req = AddWatchRequest::decode(body).map_err(marshalling)?;
                let recursive = match req.mode {
                    0 => false,
                    1 => true,
                    _ => return Err(ErrorCode::MarshallingError),
                };
                self.watches.add_persistent_watch(&req.path, conn_id, recursive);
                ErrorResponse { err: 0 }.encode(out);
            }
            OpCode::CheckWatches | OpCode::RemoveWatches => {
                let req = WatchTypeRequest::decode(body).map_err(marshalling)?;
                let watcher_type = WatcherType::from_i32(req.watcher_type).ok_or(ErrorCode::MarshallingError)?;
                let found = if op == OpCode::CheckWatches {
                    self.watches.check_watches(&req.path, conn_id, watcher_type)
                } else {
                    self.watches.remove_watches(&req.path, conn_id, watcher_type)
                };
                if !found {
                    return Err(ErrorCode::NoWatcher);
                }
            }
            OpCode::WhoAmI => {
                let client_info = self
                    .auth_ids(conn_id)
                    .iter()
                    .map(|id| ClientInfo { auth_scheme: id.scheme.clone(), user: user_name(id) })
                    .collect();
                WhoAmIResponse { client_info }.encode(out);
            }
            OpCode::MultiRead => {
                let ops = decode_multi(body).map_err(marshalling)?;
                if !ops.iter().all(MultiOp::is_read) {
                    return Err(ErrorCode::MarshallingError);
                }
                let mut results = Vec::with_capacity(ops.len());
                for op in &ops {
                    let result = self.multi_read_op(conn_id, op, auth);
                    let (MultiOp::GetChildren(r) | MultiOp::GetData(r)) = op else { unreachable!("all reads") };
                    match &result {
                        MultiResult::GetData(data, _) => record_read(&mut self.metrics, &r.path, data.as_ref().map_or(0, |d| d.len())),
                        MultiResult::GetChildren(children) => {
                            record_read(&mut self.metrics, &r.path, children.iter().map(|c| java_length(c)).sum())
                        }
                        _ => {}
                    }
                    results.push(result);
                }
                encode_multi_response(&results, out);
            }
            _ => return Err(ErrorCode::Unimplemented),
        }
        Ok(())
    }

    fn multi_read_op(&self, conn_id: ConnId, op: &MultiOp, auth: &crate::server::auth::AuthSettings) -> MultiResult {
        let path = match op {
            MultiOp::GetChildren(r) | MultiOp::GetData(r) => &r.path,
            _ => return MultiResult::Error(ErrorCode::MarshallingError.code()),
        };
        let Some(info) = self.tree.node_info(path) else { return MultiResult::Error(ErrorCode::NoNode.code()) };
        if let Err(err) = check_acl(&info.acl, perms::READ, self.auth_ids(conn_id), auth) {
            return MultiResult::Error(err.code());
        }
        match op {
            MultiOp::GetChildren(_) => match self.tree.children(path) {
                Some((children, _)) => MultiResult::GetChildren(children),
                None => MultiResult::Error(ErrorCode::NoNode.code()),
            },
            _ => match self.tree.get_data(path) {
                Some((data, stat)) => MultiResult::GetData(data, stat),
                None => MultiResult::Error(ErrorCode::NoNode.code()),
            },
        }
    }

    /// `DataTree.setWatches`: re-arms watches after a reconnect, firing what was missed since
    /// `relative_zxid` (PROTOCOL.md §2.10). Fired events go out before the reply.
    #[allow(clippy::too_many_arguments)]
    fn set_watches(
        &mut self,
        conn_id: ConnId,
        relative_zxid: i64,
        data: &[String],
        exist: &[String],
        child: &[String],
        persistent: &[String],
        recursive: &[String],
    ) {
        use crate::proto::consts::event_type::*;
        let mut fire = Vec::new();
        for path in data {
            match self.tree.stat(path) {
                None => fire.push((NODE_DELETED, path)),
                Some(stat) if stat.mzxid > relative_zxid => fire.push((NODE_DATA_CHANGED, path)),
                Some(_) => self.watches.add_data_watch(path, conn_id),
            }
        }
        for path in exist {
            match self.tree.stat(path) {
                Some(_) => fire.push((NODE_CREATED, path)),
                None => self.watches.add_data_watch(path, conn_id),
            }
        }
        for path in child {
            match self.tree.stat(path) {
                None => fire.push((NODE_DELETED, path)),
                Some(stat) if stat.pzxid > relative_zxid => fire.push((NODE_CHILDREN_CHANGED, path)),
                Some(_) => self.watches.add_child_watch(path, conn_id),
            }
        }
        for path in persistent {
            self.watches.add_persistent_watch(path, conn_id, false);
        }
        for path in recursive {
            self.watches.add_persistent_watch(path, conn_id, true);
        }
        for (event_type, path) in fire {
            let frame = notification_frame(&Delivery { watcher: conn_id, event_type, path: path.clone() });
            self.send(conn_id, frame);
        }
    }

    /// Periodic work: expires sessions whose deadline passed (each becomes a closeSession txn).
    pub fn tick(&mut self, now: Now) {
        self.now = now;
        // A follower's sessions are expired by the leader, which tells it with closeSession txns.
        let expired = if self.role == Role::Follower { Vec::new() } else { self.sessions.expire(now.mono_ms) };
        for session_id in expired {
            self.metrics.inc(ids::STALE_SESSIONS_EXPIRED, 1);
            let paths_to_delete = closing_session_paths(session_id, &self.tree, &self.overlay);
            let header = self.next_header(session_id, 0, now, OpCode::CloseSession as i32);
            self.enqueue_txn(Origin::Internal, Txn { header, body: TxnBody::CloseSession { paths_to_delete } });
        }
        self.drain();
    }

    /// The container manager's pass: deletes empty used containers and expired TTL nodes, at most
    /// `container_max_per_minute` per pass (`ContainerManager`).
    pub fn check_containers(&mut self, now: Now) {
        self.now = now;
        if self.role == Role::Follower {
            // The leader sweeps them; its deleteContainer txns arrive committed.
            return;
        }
        let candidates = self.tree.expired_containers_and_ttls(now.wall_ms, self.settings.container_max_never_used_ms);
        for path in candidates.into_iter().take(self.settings.container_max_per_minute.max(1)) {
            let mut header = self.next_header(0, 0, now, OpCode::DeleteContainer as i32);
            let request = WriteRequest::DeleteContainer(path);
            let body = match prep_write(&request, 0, &[], header.zxid, &self.tree, &mut self.overlay, &self.settings.prep) {
                Ok(body) => body,
                Err(err) => {
                    header.txn_type = -1;
                    TxnBody::Error { err: err.code() }
                }
            };
            self.enqueue_txn(Origin::Internal, Txn { header, body });
        }
        self.drain();
    }


    /// Makes this pipeline a follower's (`Role::Follower`) or a standalone server's.
    pub fn set_role(&mut self, role: Role) {
        self.role = role;
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    fn forward_write(&mut self, conn_id: ConnId, session_id: i64, cxid: i32, op: OpCode, record: Bytes, now: Now) {
        if op == OpCode::CloseSession {
            self.sessions.set_closing(session_id);
        }
        self.session_queues
            .entry(session_id)
            .or_default()
            .push_back(SessionEntry::InFifo);
        self.forwarded.entry(session_id).or_default().push_back(ForwardedWrite {
            conn: conn_id,
            cxid,
            op,
            received_mono_ms: now.mono_ms,
        });
        let authinfo = self.auth_ids(conn_id).to_vec();
        self.outputs.push(Output::Forward(Forward {
            session_id,
            cxid,
            op: op as i32,
            record,
            authinfo,
        }));
    }

    /// Follower role: the leader committed this txn. Applied at once; when it is the answer to a
    /// request of a local session (the head of its forwarded writes, by cxid) or a local
    /// connection's createSession, that client gets its reply, and the reads that waited behind
    /// it run.
    pub fn committed(&mut self, txn: Txn, now: Now) {
        self.now = now;
        let session_id = txn.header.client_id;
        self.last_zxid = self.last_zxid.max(txn.header.zxid);
        self.durable_zxid = self.durable_zxid.max(txn.header.zxid);
        let connect = match &txn.body {
            TxnBody::CreateSession { .. } => self.pending_connects.remove(&session_id),
            _ => None,
        };
        let mut from_local_request = false;
        let origin = if let Some(conn) = connect {
            Origin::Connect { conn }
        } else {
            let head = self.forwarded.get_mut(&session_id).and_then(|queue| {
                if queue.front().is_some_and(|w| w.cxid == txn.header.cxid) {
                    queue.pop_front()
                } else {
                    None
                }
            });
            if self.forwarded.get(&session_id).is_some_and(VecDeque::is_empty) {
                self.forwarded.remove(&session_id);
            }
            match head {
                Some(w) => {
                    from_local_request = true;
                    Origin::Client {
                        conn: w.conn,
                        xid: w.cxid,
                        op: w.op,
                        received_mono_ms: w.received_mono_ms,
                    }
                }
                None => Origin::Internal,
            }
        };
        self.apply_and_reply(origin, txn);
        if from_local_request {
            self.left_fifo(session_id);
        }
        self.drain();
    }

    /// Follower role: the leader answered the oldest forwarded sync (SYNC): every txn committed
    /// before it has been delivered, so its reply may go.
    pub fn sync_done(&mut self, now: Now) {
        self.now = now;
        let Some((session_id, read)) = self.pending_syncs.pop_front() else {
            warn!("SYNC from the leader with no sync pending");
            return;
        };
        self.answer_read(read);
        self.left_fifo(session_id);
        self.drain();
    }

    /// Follower role: the leader's answer to a REVALIDATE.
    pub fn revalidated(&mut self, session_id: i64, valid: bool, now: Now) {
        self.now = now;
        let Some(conn_id) = self.pending_revalidations.remove(&session_id) else {
            return;
        };
        if valid {
            let timeout_ms = self.conns.get(&conn_id).map_or(0, |c| c.timeout_ms);
            if self.sessions.get(session_id).is_none() {
                self.sessions.add(session_id, timeout_ms, now.mono_ms);
            }
            self.bind(conn_id, session_id);
        } else {
            self.metrics.inc(ids::UNSUCCESSFUL_HANDSHAKE, 1);
        }
        self.send_connect_response(conn_id, valid);
    }

    /// Leader role: a request a learner forwarded (REQUEST): prepped like a local client's, with
    /// the client's auth ids, into a txn that `take_unpersisted` hands to the proposal step; it
    /// applies when `persisted_through` reports its commit (the quorum's, for a leader). A
    /// createSession registers the session here, the leader being the one that expires it.
    pub fn remote_request(&mut self, request: Forward, now: Now) {
        self.now = now;
        let Forward { session_id, cxid, op, record, authinfo } = request;
        let Some(op) = OpCode::from_i32(op) else {
            warn!(op, "forwarded request with an unknown opcode; dropped");
            return;
        };
        match op {
            OpCode::CreateSession => {
                let Ok(requested) = i32::decode(&mut record.clone()) else {
                    warn!(session = format_args!("{session_id:#x}"), "forwarded createSession without a timeout; dropped");
                    return;
                };
                // A learner has clamped it already; the leader does not clamp again (PROTOCOL.md §4.10).
                self.sessions.add(session_id, requested, now.mono_ms);
                let header = self.next_header(session_id, cxid, now, OpCode::CreateSession as i32);
                self.enqueue_txn(Origin::Remote, Txn { header, body: TxnBody::CreateSession { timeout_ms: requested } });
            }
            OpCode::CloseSession => {
                self.sessions.set_closing(session_id);
                let paths_to_delete = closing_session_paths(session_id, &self.tree, &self.overlay);
                let header = self.next_header(session_id, cxid, now, OpCode::CloseSession as i32);
                self.enqueue_txn(Origin::Remote, Txn { header, body: TxnBody::CloseSession { paths_to_delete } });
            }
            op if op.is_write() => {
                let txn = self.prep_txn(session_id, cxid, op, record, &authinfo, now);
                self.enqueue_txn(Origin::Remote, txn);
            }
            other => {
                warn!(op = ?other, "forwarded request that is not a write; dropped");
                return;
            }
        }
        self.drain();
    }

    /// Leader role: sessions a learner's clients kept alive (its ping reply).
    pub fn touch_sessions(&mut self, sessions: &[(i64, i32)], now: Now) {
        for &(session_id, _) in sessions {
            self.sessions.touch(session_id, now.mono_ms);
        }
    }

    /// Leader role: whether a session reconnecting to a learner is still valid (REVALIDATE).
    pub fn revalidate(&mut self, session_id: i64, now: Now) -> bool {
        self.sessions.touch(session_id, now.mono_ms)
    }

    /// Leader role: the new epoch; the next txn is its first (`epoch << 32 | 1`).
    pub fn start_epoch(&mut self, epoch: i64) {
        self.last_zxid = self.last_zxid.max(epoch << 32);
    }

    /// Sessions with a connection here, with their timeouts: what a follower reports to the
    /// leader in its ping replies so they do not expire.
    pub fn local_sessions(&self) -> Vec<(i64, i32)> {
        let mut sessions: Vec<(i64, i32)> = self
            .session_conn
            .iter()
            .filter_map(|(&session_id, conn)| self.conns.get(conn).map(|c| (session_id, c.timeout_ms)))
            .collect();
        sessions.sort_unstable();
        sessions
    }

    /// `write_per_namespace` (`DataTree.updateWriteStat`): every node created, deleted or given data,
    /// session-close and container deletions included. The data size is the node's after the whole
    /// txn, which differs from ZooKeeper's only for a multi that creates a node and then sets it.
    fn record_writes(&mut self, triggers: &[Trigger]) {
        for trigger in triggers {
            let (path, data_bytes) = match trigger {
                Trigger::Deleted(path) => (path, 0),
                Trigger::Created(path) | Trigger::DataChanged(path) => {
                    (path, self.tree.stat(path).map_or(0, |stat| stat.data_length.max(0) as usize))
                }
            };
            if let Some(namespace) = top_namespace(path) {
                self.metrics.observe_in_set("write_per_namespace", namespace, write_stat_bytes(path, data_bytes));
            }
        }
    }

    fn observe_watch_fanout(&mut self, deliveries: &[Delivery]) {
        use crate::proto::consts::event_type::*;
        for (event_type, name) in [
            (NODE_CREATED, ids::NODE_CREATED_WATCH_COUNT),
            (NODE_DELETED, ids::NODE_DELETED_WATCH_COUNT),
            (NODE_DATA_CHANGED, ids::NODE_CHANGED_WATCH_COUNT),
            (NODE_CHILDREN_CHANGED, ids::NODE_CHILDREN_WATCH_COUNT),
        ] {
            let n = deliveries.iter().filter(|d| d.event_type == event_type).count();
            if n > 0 {
                self.metrics.observe(name, n as i64);
            }
        }
    }

    /// Resets every connection's counters (`crst`).
    pub fn reset_connection_stats(&mut self) {
        for conn in self.conns.values_mut() {
            conn.stats.reset();
        }
    }
}

fn created_path(body: &TxnBody) -> String {
    match body {
        TxnBody::Create { path, .. } | TxnBody::CreateContainer { path, .. } | TxnBody::CreateTtl { path, .. } => {
            path.clone()
        }
        _ => String::new(),
    }
}

/// Builds the per-op results of a multi reply from the txn and the apply results. Container and
/// TTL creates answer with a create2-typed result; plain creates with the path only.
fn multi_results(body: &TxnBody, results: &[ApplyResult]) -> Vec<MultiResult> {
    let TxnBody::Multi(subs) = body else { return Vec::new() };
    subs.iter()
        .zip(results)
        .map(|((_, sub), result)| match (sub, result) {
            (_, ApplyResult::Failed(code)) => MultiResult::Error(code.code()),
            (TxnBody::Create { path, .. }, _) => MultiResult::Create(path.clone()),
            (TxnBody::CreateContainer { path, .. } | TxnBody::CreateTtl { path, .. }, ApplyResult::Created(stat)) => {
                MultiResult::Create2(path.clone(), *stat)
            }
            (TxnBody::Delete { .. }, _) => MultiResult::Delete,
            (TxnBody::SetData { .. }, ApplyResult::Stat(stat)) => MultiResult::SetData(*stat),
            (TxnBody::Check { .. }, _) => MultiResult::Check,
            _ => MultiResult::Error(ErrorCode::RuntimeInconsistency.code()),
        })
        .collect()
}

fn notification_frame(delivery: &Delivery) -> Bytes {
    reply_frame(&ReplyHeader { xid: XID_NOTIFICATION, zxid: -1, err: 0 }, |out| {
        WatcherEvent { event_type: delivery.event_type, state: STATE_SYNC_CONNECTED, path: delivery.path.clone() }
            .encode(out)
    })
}

/// `read_per_namespace` (`DataTree.updateReadStat`): exists, getData and getChildren that succeed.
fn record_read(metrics: &mut ServerMetrics, path: &str, payload_bytes: usize) {
    if let Some(namespace) = top_namespace(path) {
        metrics.observe_in_set("read_per_namespace", namespace, read_stat_bytes(path, payload_bytes));
    }
}

#[cfg(test)]
mod tests;
