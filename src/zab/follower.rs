//! The follower's connection to its leader: a thread that reads the leader's packets, runs them
//! through the `Learner` state machine and performs its actions against a `FollowerStore`
//! (ZooKeeper's `Follower.followLeader` loop).
//!
//! Owns: the quorum-port socket, its read buffer (packets are back to back with no outer length,
//! and a SNAP's snapshot stream follows its packet on the same stream), and the order in which
//! actions reach the store and the socket. Must not touch: what the store does with a txn.
//!
//! It is a thread, not a task: the store writes to disk (RocksDB, snapshot files), which must not
//! happen on a runtime worker, and one connection needs no more than one thread.
//!
//! Group commit: proposals are appended as they arrive, and synced once no further whole packet is
//! already buffered, so a burst of proposals costs one sync; each is acked after that sync.

use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use crate::jute::{DecodeError, Encode};
use crate::proto::quorum::{packet_type, QuorumPacket};
use crate::zab::learner::{Learner, LearnerAction, LearnerError, LearnerStart, Proposal};
use crate::zab::packet_stream::PacketReader;

/// Where the state a follower syncs lives: the tree, the sessions, the log and the epoch files.
/// Each call returns once its effect is as durable as it says.
pub trait FollowerStore {
    /// Durably records the accepted epoch.
    fn persist_accepted_epoch(&mut self, epoch: i64) -> Result<(), StoreError>;
    /// Durably records the current epoch.
    fn persist_current_epoch(&mut self, epoch: i64) -> Result<(), StoreError>;
    /// Replaces the whole state with this snapshot stream (PROTOCOL.md §4.9) as of `zxid`. It need
    /// not be durable until `take_snapshot`.
    fn load_snapshot(&mut self, stream: Bytes, zxid: i64) -> Result<(), StoreError>;
    /// Drops every txn after `zxid` from the log and rebuilds the state as of `zxid`.
    fn truncate(&mut self, zxid: i64) -> Result<(), StoreError>;
    /// Applies a txn that is not logged (the next `take_snapshot` covers it).
    fn apply_unlogged(&mut self, proposal: Proposal) -> Result<(), StoreError>;
    /// Makes the state as it is now durable, as a snapshot.
    fn take_snapshot(&mut self) -> Result<(), StoreError>;
    /// Appends a proposal to the log (durable at the next `sync`) and keeps it until its commit.
    fn append(&mut self, proposal: Proposal) -> Result<(), StoreError>;
    /// Makes every appended proposal durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Applies the appended proposal with this zxid.
    fn commit(&mut self, zxid: i64) -> Result<(), StoreError>;
    /// Passes on together what the calls since the last `deliver` produced for the server
    /// (commits, answers); called once the thread has handled every packet it has buffered.
    fn deliver(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The sessions touched since the last call, with their timeouts, for the ping reply.
    fn touched_sessions(&mut self) -> Vec<(i64, i32)>;
    /// Sync is complete; the server may serve clients from now on.
    fn serving(&mut self, epoch: i64);
    /// The leader answered the oldest sync this server forwarded (SYNC).
    fn sync_done(&mut self);
    /// The leader's answer to a REVALIDATE this server sent.
    fn revalidated(&mut self, session_id: i64, valid: bool);
}

/// How long a follower keeps trying to connect to its leader, `CONNECT_RETRY` apart: a newly
/// elected leader opens its quorum port only once it has read its state, so the first attempts
/// may be refused. ZooKeeper 3.8 retries every `leaderConnectDelayDuringRetryMs` (100 ms) until
/// `initLimit` runs out; this retries every 10 ms for 5 s, since a refused connect on the usual
/// LAN costs nothing and the follower usually loses the race to the leader's bind by well under
/// a millisecond (the 100 ms pause was a fifth of a failover).
const CONNECT_WINDOW: Duration = Duration::from_secs(5);
const CONNECT_RETRY: Duration = Duration::from_millis(10);

/// Packets queued for the leader, from the follower and from the request pipeline.
pub const OUTGOING_MAX: usize = 16_384;

/// The way to the leader: the request pipeline keeps one (for REQUEST and REVALIDATE), `follow`
/// takes both ends. A packet is whole encoded bytes.
pub fn outgoing() -> (Arc<ToLeader>, Receiver<Bytes>) {
    let (queue, packets) = sync_channel(OUTGOING_MAX);
    let to_leader = ToLeader { queue, queued: AtomicUsize::new(0), socket: Mutex::new(None) };
    (Arc::new(to_leader), packets)
}

/// Packets to the leader, from the follower thread (acks, pings) and from the request pipeline:
/// written straight to the socket while nothing waits in the writer thread's queue (the common
/// case: it spares an ack or a forwarded request the wake-up of that thread), the rest (and
/// whatever the socket does not take at once) through that queue, which keeps the stream's order
/// from then on.
#[derive(Debug)]
pub struct ToLeader {
    queue: SyncSender<Bytes>,
    /// Packets put in the queue and not yet written by the writer thread.
    queued: AtomicUsize,
    /// The connected socket, for straight writes (none before `follow` connects and after it
    /// ends); its lock makes the choice between a straight write and the queue one step.
    socket: Mutex<Option<TcpStream>>,
}

impl ToLeader {
    /// Sends one packet. With `wait`, waits while the queue is full (the follower thread: the
    /// writer drains it at the socket's pace); without, a packet that finds it full is dropped
    /// (the pipeline never waits on it), as is any packet once the writer has stopped.
    pub fn send(&self, mut packet: Bytes, wait: bool) -> Result<(), TrySendError<Bytes>> {
        {
            let socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(socket), 0) = (socket.as_ref(), self.queued.load(Ordering::Acquire)) {
                // MSG_DONTWAIT for this call only: the writer thread's clone stays blocking. An
                // error is left to the writer thread, which meets it on its next write.
                let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
                if let Ok(written) = rustix::net::send(socket, &packet, flags) {
                    if written == packet.len() {
                        return Ok(());
                    }
                    packet = packet.slice(written..);
                }
            }
            // Counted under the lock: from here on, every later packet queues behind this one.
            self.queued.fetch_add(1, Ordering::AcqRel);
        }
        let sent = if wait {
            self.queue.send(packet).map_err(|e| TrySendError::Disconnected(e.0))
        } else {
            self.queue.try_send(packet)
        };
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// The writer thread wrote `count` packets from the queue.
    fn written(&self, count: usize) {
        self.queued.fetch_sub(count, Ordering::AcqRel);
    }

    fn connected(&self, socket: Option<TcpStream>) {
        *self.socket.lock().unwrap_or_else(|p| p.into_inner()) = socket;
    }
}

/// A store operation that failed; the follower stops following.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The leader could not be reached or the connection broke.
    #[error("connection to the leader: {0}")]
    Io(#[from] std::io::Error),
    /// The leader sent bytes that are not a packet.
    #[error("bad packet from the leader: {0}")]
    Decode(#[from] DecodeError),
    /// The leader broke the protocol.
    #[error(transparent)]
    Protocol(#[from] LearnerError),
    /// The store failed.
    #[error("follower store: {0}")]
    Store(#[from] StoreError),
    /// `stop` was set.
    #[error("stopped")]
    Stopped,
}

/// How to reach the leader and how long to wait for it.
#[derive(Clone, Debug)]
pub struct FollowerSettings {
    /// The leader's quorum address (`host:port`).
    pub leader: String,
    /// Connect timeout, and the read timeout until NEWLEADER (`initLimit × tickTime`).
    pub init_limit: Duration,
    /// Read timeout from NEWLEADER on (`syncLimit × tickTime`).
    pub sync_limit: Duration,
    /// Largest packet data accepted (`jute.maxbuffer` plus its extra size).
    pub data_max_bytes: usize,
}

/// Follows the leader until the connection fails, the leader breaks the protocol, the store fails
/// or `stop` is set (checked at least once per read timeout). Packets for the leader go through
/// `outgoing` (see `ToLeader`): straight to the socket, or in order through a writer thread.
pub fn follow(
    settings: &FollowerSettings,
    start: LearnerStart,
    store: &mut dyn FollowerStore,
    outgoing: (Arc<ToLeader>, Receiver<Bytes>),
    stop: &AtomicBool,
) -> Result<(), FollowError> {
    let address =
        settings.leader.to_socket_addrs()?.next().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the leader's address resolves to nothing")
        })?;
    // As ZooKeeper's `Learner.connectToLeader`: a just elected leader may not listen yet.
    let (started, mut attempt) = (Instant::now(), 1);
    let stream = loop {
        match TcpStream::connect_timeout(&address, settings.init_limit) {
            Ok(stream) => break stream,
            Err(e) if started.elapsed() < CONNECT_WINDOW && !stop.load(Ordering::Relaxed) => {
                debug!(leader = %settings.leader, attempt, error = %e, "cannot connect to the leader yet");
                attempt += 1;
                std::thread::sleep(CONNECT_RETRY);
            }
            Err(e) => return Err(e.into()),
        }
    };
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(settings.init_limit))?;
    info!(leader = %settings.leader, "connected to the leader");
    let (to_leader, packets) = outgoing;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stream, done, to_leader) = (stream.try_clone()?, done.clone(), to_leader.clone());
        std::thread::spawn(move || write_packets(stream, packets, &to_leader, &done))
    };
    to_leader.connected(Some(stream.try_clone()?));
    let mut connection = Connection {
        reader: PacketReader::new(stream.try_clone()?, settings.data_max_bytes),
        socket: stream,
        to_leader,
        outgoing: BytesMut::new(),
    };
    let result = run_loop(settings, start, store, &mut connection, stop);
    // No straight writes from here on: what is still sent goes to the writer (and nowhere once
    // it has stopped). Ends the writer thread: it sees `done` once woken by the empty packet (or
    // within a poll when the queue is full, as it is writing then), or its write fails. Without
    // the wake-up, joining it held the next election back by up to `WRITER_POLL`.
    connection.to_leader.connected(None);
    done.store(true, Ordering::Relaxed);
    let _ = connection.to_leader.send(Bytes::new(), false);
    let _ = connection.socket.shutdown(Shutdown::Both);
    let _ = writer.join();
    result
}

/// How often the packet writer looks at the `done` flag while its queue is empty.
const WRITER_POLL: Duration = Duration::from_millis(100);

fn write_packets(mut stream: TcpStream, packets: Receiver<Bytes>, to_leader: &ToLeader, done: &AtomicBool) {
    let mut batch = BytesMut::new();
    while !done.load(Ordering::Relaxed) {
        match packets.recv_timeout(WRITER_POLL) {
            Ok(first) => {
                batch.clear();
                let count = crate::zab::leading::gather(first, &packets, &mut batch);
                if stream.write_all(&batch).is_err() {
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                // Only now may a packet skip the queue: everything taken from it is written.
                to_leader.written(count);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn run_loop(
    settings: &FollowerSettings,
    start: LearnerStart,
    store: &mut dyn FollowerStore,
    connection: &mut Connection,
    stop: &AtomicBool,
) -> Result<(), FollowError> {
    let mut learner = Learner::new(start);
    // The last proposal appended but not yet synced.
    let mut unsynced = None;
    connection.perform(&mut learner, store, &mut unsynced)?;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(FollowError::Stopped);
        }
        // A whole packet already buffered is taken as it is (decoded once); a bad one is met
        // again by `next_packet` below, after the burst's commits and sync, as any other.
        let packet = match connection.reader.buffered_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) | Err(_) => {
                // A burst is handled: its commits reach the server together, before the sync.
                store.deliver()?;
                if let Some(zxid) = unsynced {
                    store.sync()?;
                    unsynced = None;
                    learner.persisted_through(zxid);
                    connection.perform(&mut learner, store, &mut unsynced)?;
                }
                match connection.reader.next_packet() {
                    Ok(packet) => packet,
                    Err(FollowError::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        return Err(FollowError::Io(std::io::Error::new(
                            e.kind(),
                            "the leader sent nothing within the limit",
                        )));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let newleader = packet.packet_type == packet_type::NEWLEADER;
        learner.packet(packet)?;
        if newleader {
            connection.socket.set_read_timeout(Some(settings.sync_limit))?;
        }
        connection.perform(&mut learner, store, &mut unsynced)?;
    }
}

struct Connection {
    reader: PacketReader,
    socket: TcpStream,
    to_leader: Arc<ToLeader>,
    /// Packets of the current `perform`, sent together at its end (`flush`).
    outgoing: BytesMut,
}

impl Connection {
    fn send(&mut self, packet: &QuorumPacket) {
        packet.encode(&mut self.outgoing);
    }

    /// Sends what this round queued (the acks of a synced burst in one write).
    fn flush(&mut self) -> Result<(), FollowError> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        // Waits while the queue is full: the writer drains it at the socket's pace.
        if self.to_leader.send(self.outgoing.split().freeze(), true).is_err() {
            let stopped = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the packet writer has stopped");
            return Err(stopped.into());
        }
        Ok(())
    }

    /// Performs the learner's actions in order (and those they lead to).
    fn perform(
        &mut self,
        learner: &mut Learner,
        store: &mut dyn FollowerStore,
        unsynced: &mut Option<i64>,
    ) -> Result<(), FollowError> {
        let mut actions = learner.take_actions();
        while !actions.is_empty() {
            for action in actions {
                match action {
                    LearnerAction::Send(packet) => self.send(&packet),
                    LearnerAction::PersistAcceptedEpoch(epoch) => store.persist_accepted_epoch(epoch)?,
                    LearnerAction::PersistCurrentEpoch(epoch) => store.persist_current_epoch(epoch)?,
                    LearnerAction::LoadSnapshot { zxid } => {
                        // What is queued goes out before this thread waits for the stream.
                        self.flush()?;
                        let stream = self.reader.snapshot_stream()?;
                        info!(
                            zxid = format_args!("0x{zxid:x}"),
                            bytes = stream.len(),
                            "snapshot from the leader read"
                        );
                        store.load_snapshot(stream, zxid)?;
                        learner.snapshot_loaded(zxid);
                    }
                    LearnerAction::Truncate { zxid } => {
                        warn!(
                            zxid = format_args!("0x{zxid:x}"),
                            "truncating the log to get in sync with the leader"
                        );
                        store.truncate(zxid)?;
                    }
                    LearnerAction::ApplyUnlogged(proposal) => store.apply_unlogged(*proposal)?,
                    LearnerAction::TakeSnapshot => store.take_snapshot()?,
                    LearnerAction::Log(proposal) => {
                        let zxid = proposal.zxid();
                        store.append(*proposal)?;
                        *unsynced = Some(zxid);
                    }
                    LearnerAction::Commit(zxid) => store.commit(zxid)?,
                    LearnerAction::Ping { zxid } => {
                        let touched = store.touched_sessions();
                        let mut data = BytesMut::with_capacity(touched.len() * 12);
                        for (session_id, timeout_ms) in touched {
                            data.extend_from_slice(&session_id.to_be_bytes());
                            data.extend_from_slice(&timeout_ms.to_be_bytes());
                        }
                        self.send(&QuorumPacket::with_data(packet_type::PING, zxid, data.freeze()));
                    }
                    LearnerAction::Serving { epoch } => {
                        info!(
                            epoch,
                            mode = learner.sync_mode().map(|m| m.as_str()),
                            "synced with the leader; serving"
                        );
                        store.serving(epoch);
                    }
                    LearnerAction::SyncDone => store.sync_done(),
                    LearnerAction::Revalidated { session_id, valid } => store.revalidated(session_id, valid),
                }
            }
            actions = learner.take_actions();
        }
        // The NEWLEADER ack waits for the disk: sync now rather than when the stream goes quiet.
        if let (Some(zxid), "synchronization") = (*unsynced, learner.zab_state()) {
            store.sync()?;
            *unsynced = None;
            learner.persisted_through(zxid);
            let actions = learner.take_actions();
            for action in actions {
                match action {
                    LearnerAction::Send(packet) => self.send(&packet),
                    other => unreachable!("a sync only releases acks, not {other:?}"),
                }
            }
        }
        self.flush()
    }
}
