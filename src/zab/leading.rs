//! The leader's quorum port: the listener, a reader and a writer thread per learner, and the loop
//! that runs the `Leader` state machine over them and performs its actions against a
//! `LeaderStore` (ZooKeeper's `Leader.lead` loop with its `LearnerCnxAcceptor` and
//! `LearnerHandler`s).
//!
//! Owns: the learner sockets and their send queues, the half-tick timer, and the order in which
//! actions reach the store and the learners. Must not touch: what the store does with a txn.
//!
//! Threads, not tasks: the store writes to disk on the loop's thread, which must not be a runtime
//! worker. Bounds: at most `SEND_QUEUE_MAX` packets queued per learner (a learner that falls that
//! far behind is closed, as it could not keep up anyway); `LEARNERS_MAX` connections;
//! `INPUTS_MAX` inputs queued for the loop
//! (readers wait when it is full); a packet's data at most `data_max_bytes`.

use std::collections::BTreeMap;
use std::io::{IoSlice, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use crate::jute::Encode;
use crate::proto::quorum::{packet_type, QuorumPacket, RequestHead};
use crate::proto::{Id, OpCode};
use crate::proto::txn::Txn;
use crate::zab::follower::StoreError;
use crate::zab::leader::{Leader, LeaderAction, LeaderStart, LearnerId};
use crate::zab::learner::Proposal;
use crate::zab::packet_stream::PacketReader;

/// Packets queued for one learner before it counts as not keeping up.
pub const SEND_QUEUE_MAX: usize = 16_384;
/// Learner connections open at once (an ensemble has far fewer members; more is a misbehaving
/// peer or a scan of the quorum port).
pub const LEARNERS_MAX: usize = 256;
/// Inputs queued for the leader's loop.
pub const INPUTS_MAX: usize = 4_096;
/// Inputs handled before one log sync covers their proposals.
const BATCH_MAX: usize = 1_024;
/// Most packets in one straight write to a learner (`Driver::send_now`); the rest are queued.
const WRITEV_SLICES_MAX: usize = 64;
/// How long the acceptor backs off after a failed accept (out of descriptors and the like).
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Where a leader's state lives. Each call returns once its effect is as durable as it says.
pub trait LeaderStore {
    /// Durably records the accepted epoch.
    fn persist_accepted_epoch(&mut self, epoch: i64) -> Result<(), StoreError>;
    /// Durably records the current epoch.
    fn persist_current_epoch(&mut self, epoch: i64) -> Result<(), StoreError>;
    /// The SNAP stream (PROTOCOL.md §4.9) of the state as it is now.
    fn snapshot_stream(&mut self) -> Result<Bytes, StoreError>;
    /// Appends a proposal to the log (durable at the next `sync`) and keeps it until its commit.
    fn append(&mut self, proposal: Proposal) -> Result<(), StoreError>;
    /// Makes every appended proposal durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Applies the appended proposal with this zxid.
    fn commit(&mut self, zxid: i64) -> Result<(), StoreError>;
    /// A quorum acked NEWLEADER: the server may serve clients.
    fn established(&mut self, epoch: i64);
    /// A client request a learner forwarded (REQUEST: its head, then the request record), with
    /// the client's auth ids. Syncs never come here: the leader answers them itself.
    fn request(&mut self, head: RequestHead, record: Bytes, authinfo: Vec<Id>);
    /// Sessions a learner's clients keep alive (its ping reply), with their timeouts.
    fn touch(&mut self, sessions: Vec<(i64, i32)>);
    /// A learner asks whether a session may reconnect through it; the answer comes back as
    /// `LeaderInput::Revalidated`.
    fn revalidate(&mut self, learner: LearnerId, session_id: i64, timeout_ms: i32);
    /// Passes on together what the calls since the last `deliver` produced for the server
    /// (forwarded requests, touches, revalidations); called at the end of every round.
    fn deliver(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What the leader's loop takes in.
#[derive(Debug)]
pub enum LeaderInput {
    /// Propose this txn; its header's zxid is set to the next one.
    Propose(Box<Txn>),
    /// A learner connected (from the acceptor).
    Connected {
        /// Its id.
        id: LearnerId,
        /// The socket, for its writer.
        stream: TcpStream,
    },
    /// A packet from a learner (from its reader).
    Packet {
        /// The learner.
        id: LearnerId,
        /// The packet.
        packet: QuorumPacket,
    },
    /// A learner's connection ended (from its reader).
    Closed {
        /// The learner.
        id: LearnerId,
    },
    /// The answer to a learner's REVALIDATE (`LeaderStore::revalidate`).
    Revalidated {
        /// The learner that asked.
        learner: LearnerId,
        /// The session.
        session_id: i64,
        /// Whether it is still valid.
        valid: bool,
    },
}

/// The leader as others may look at it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderStatus {
    /// The new epoch, once fixed.
    pub epoch: i64,
    /// Whether a quorum acked NEWLEADER.
    pub established: bool,
    /// Sids of the learners in broadcast.
    pub synced_learners: Vec<i64>,
    /// Learners connected.
    pub learners: usize,
    /// The last zxid committed.
    pub last_committed: i64,
    /// Bytes of the proposals' data, last / min / max (ZooKeeper's `proposalStats`); none yet
    /// before the first proposal.
    pub proposal_sizes: Option<(usize, usize, usize)>,
    /// Forwarded syncs waiting for a commit (`pending_syncs`).
    pub pending_syncs: usize,
    /// Send-queue samples since whoever reads the status last took them (at most
    /// `QUEUE_SAMPLES_MAX`).
    pub queue_samples: Vec<QueueSample>,
}

/// One packet's trip through a learner's send queue, as ZooKeeper's `LearnerHandler` records it
/// per packet sent (`learner_handler_qp_size`, `learner_handler_qp_time_ms`, labelled by sid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSample {
    /// The learner's sid.
    pub sid: i64,
    /// Packets still queued for it when this one was taken.
    pub queued: i64,
    /// How long this one waited in the queue (ms).
    pub waited_ms: i64,
}

/// Samples waiting to be taken (from `LeaderStatus::queue_samples`); newer ones are dropped
/// beyond this until they are.
pub const QUEUE_SAMPLES_MAX: usize = 65_536;

/// Why leading ended.
#[derive(Debug, thiserror::Error)]
pub enum LeadError {
    /// The quorum port could not be bound.
    #[error("cannot listen on the quorum port: {0}")]
    Bind(std::io::Error),
    /// The state machine gave up leading.
    #[error("abdicated: {0}")]
    Abdicated(String),
    /// The store failed.
    #[error("leader store: {0}")]
    Store(#[from] StoreError),
    /// `stop` was set.
    #[error("stopped")]
    Stopped,
}

/// How the leader listens and waits.
#[derive(Clone, Debug)]
pub struct LeadingSettings {
    /// The quorum address to bind.
    pub listen: SocketAddr,
    /// `tickTime`; the loop wakes every half of it.
    pub tick: Duration,
    /// Largest packet data accepted from a learner.
    pub data_max_bytes: usize,
}

/// The sending side of a leader's inputs, and the receiving side `lead` takes.
pub fn inputs() -> (SyncSender<LeaderInput>, Receiver<LeaderInput>) {
    sync_channel(INPUTS_MAX)
}

/// Leads until the state machine abdicates, the store fails, or `stop` is set (looked at every
/// half tick). `inputs` carries proposals from the server and, through `sender`, what the
/// learners' threads read.
pub fn lead(
    settings: &LeadingSettings,
    start: LeaderStart,
    store: &mut dyn LeaderStore,
    (sender, inputs): (SyncSender<LeaderInput>, Receiver<LeaderInput>),
    status: &Mutex<LeaderStatus>,
    stop: &Arc<AtomicBool>,
) -> Result<(), LeadError> {
    let listener = TcpListener::bind(settings.listen).map_err(LeadError::Bind)?;
    // Accepts block (a learner is taken at once); the clean-up below wakes the acceptor by
    // connecting to it once `stop` is set.
    let local = listener.local_addr().map_err(LeadError::Bind)?;
    info!(address = %settings.listen, "leading: quorum port open");
    let acceptor = {
        let (sender, stop, data_max_bytes) = (sender.clone(), stop.clone(), settings.data_max_bytes);
        std::thread::spawn(move || accept_learners(listener, sender, &stop, data_max_bytes))
    };
    drop(sender);
    let mut driver = Driver {
        leader: Leader::new(start),
        writers: BTreeMap::new(),
        unsynced: None,
        proposal_sizes: None,
        samples: Arc::new(Mutex::new(Vec::new())),
        outgoing: BTreeMap::new(),
    };
    // Every way out of the loop (a stop, an abdication, a store failure) goes through the
    // clean-up below, which ends the acceptor and every learner's threads.
    let result = run_loop(&mut driver, store, &inputs, status, stop, settings.tick / 2);
    stop.store(true, Ordering::Relaxed);
    for (_, writer) in std::mem::take(&mut driver.writers) {
        writer.close();
    }
    let _ = TcpStream::connect_timeout(&local, Duration::from_secs(1));
    let _ = acceptor.join();
    result
}

fn run_loop(
    driver: &mut Driver,
    store: &mut dyn LeaderStore,
    inputs: &Receiver<LeaderInput>,
    status: &Mutex<LeaderStatus>,
    stop: &AtomicBool,
    half_tick: Duration,
) -> Result<(), LeadError> {
    let mut next_half_tick = Instant::now() + half_tick;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(LeadError::Stopped);
        }
        let input = inputs.recv_timeout(next_half_tick.saturating_duration_since(Instant::now()));
        match input {
            Ok(input) => {
                driver.input(input, store)?;
                // Group commit: take what is already queued, then sync once for all of it.
                for _ in 0..BATCH_MAX {
                    match inputs.try_recv() {
                        Ok(input) => driver.input(input, store)?,
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err(LeadError::Stopped),
        }
        if let Some(zxid) = driver.unsynced.take() {
            // The proposals go out before the leader's own sync, so the followers log them while
            // it does (ZooKeeper's leader also sends first, then logs): one sync's time, not two.
            driver.perform(store)?;
            store.sync()?;
            driver.leader.persisted_through(zxid);
        }
        if Instant::now() >= next_half_tick {
            next_half_tick += half_tick;
            driver.leader.half_tick();
        }
        driver.perform(store)?;
        let fresh = std::mem::take(&mut *driver.samples.lock().unwrap_or_else(|p| p.into_inner()));
        let mut shown = status.lock().unwrap_or_else(|p| p.into_inner());
        let mut queue_samples = std::mem::take(&mut shown.queue_samples);
        let room = QUEUE_SAMPLES_MAX.saturating_sub(queue_samples.len());
        queue_samples.extend(fresh.into_iter().take(room));
        *shown = LeaderStatus {
            epoch: driver.leader.epoch(),
            established: driver.leader.is_established(),
            synced_learners: driver.leader.synced_learners(),
            learners: driver.leader.learner_count(),
            last_committed: driver.leader.last_committed(),
            proposal_sizes: driver.proposal_sizes,
            pending_syncs: driver.leader.pending_syncs(),
            queue_samples,
        };
    }
}

struct Writer {
    queue: SyncSender<(Instant, Bytes)>,
    stream: TcpStream,
    /// Packets in `queue`.
    queued: Arc<AtomicUsize>,
    /// Packets put in `queue` and not yet written by the writer thread: while there are any, a
    /// packet must queue behind them; with none, it is written straight to the socket.
    unwritten: Arc<AtomicUsize>,
    /// The learner's sid once it said (0 before).
    sid: Arc<AtomicI64>,
}

impl Writer {
    fn close(self) {
        // Ends the reader (its read fails) and the writer thread (its queue is gone).
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

struct Driver {
    leader: Leader,
    writers: BTreeMap<LearnerId, Writer>,
    unsynced: Option<i64>,
    proposal_sizes: Option<(usize, usize, usize)>,
    /// Send-queue samples from the writer threads, moved into the status.
    samples: Arc<Mutex<Vec<QueueSample>>>,
    /// This round's packets per learner, sent at its end (`flush`).
    outgoing: BTreeMap<LearnerId, Vec<Bytes>>,
}

impl Driver {
    fn input(&mut self, input: LeaderInput, store: &mut dyn LeaderStore) -> Result<(), LeadError> {
        match input {
            LeaderInput::Propose(mut txn) => {
                if !self.leader.is_established() {
                    warn!("proposal before the leader is established; dropped");
                    return Ok(());
                }
                let zxid = self.leader.next_zxid();
                // The pipeline numbers its txns itself (it applies them by zxid at their commit):
                // a gap means the two disagree about the epoch or lost a txn.
                if txn.header.zxid != 0 && txn.header.zxid != zxid {
                    return Err(LeadError::Abdicated(format!(
                        "the pipeline proposed 0x{:x} where 0x{zxid:x} was next",
                        txn.header.zxid
                    )));
                }
                txn.header.zxid = zxid;
                let mut entry = BytesMut::new();
                txn.header.encode(&mut entry);
                txn.body.encode(&mut entry);
                let entry = entry.freeze();
                let size = entry.len();
                self.proposal_sizes = Some(match self.proposal_sizes {
                    Some((_, min, max)) => (size, min.min(size), max.max(size)),
                    None => (size, size, size),
                });
                store.append(Proposal {
                    txn: *txn,
                    digest: None,
                    bytes: entry.clone(),
                })?;
                self.unsynced = Some(zxid);
                self.leader.propose(zxid, entry);
            }
            LeaderInput::Connected { id, stream } => {
                let (queue, outgoing) = sync_channel::<(Instant, Bytes)>(SEND_QUEUE_MAX);
                let Ok(write_stream) = stream.try_clone() else {
                    return Ok(());
                };
                let (queued, sid) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicI64::new(0)));
                let unwritten = Arc::new(AtomicUsize::new(0));
                let sending = SendQueue {
                    packets: outgoing,
                    queued: queued.clone(),
                    unwritten: unwritten.clone(),
                    sid: sid.clone(),
                    samples: self.samples.clone(),
                };
                std::thread::spawn(move || write_packets(write_stream, sending));
                self.writers.insert(id, Writer { queue, stream, queued, unwritten, sid });
                self.leader.connected(id);
            }
            LeaderInput::Packet { id, packet } => {
                log_packet("from learner", id, &packet);
                self.leader.packet(id, packet)
            }
            LeaderInput::Closed { id } => {
                if let Some(writer) = self.writers.remove(&id) {
                    writer.close();
                }
                self.leader.disconnected(id);
            }
            LeaderInput::Revalidated { learner, session_id, valid } => {
                self.leader.revalidated(learner, session_id, valid)
            }
        }
        Ok(())
    }

    /// Queues a packet for `to`; a round's packets go out together at its end (`flush`).
    fn send(&mut self, to: LearnerId, bytes: Bytes) {
        if self.writers.contains_key(&to) {
            self.outgoing.entry(to).or_default().push(bytes);
        }
    }

    /// Sends each learner the packets of this round.
    fn flush(&mut self) {
        for (to, packets) in std::mem::take(&mut self.outgoing) {
            self.send_now(to, packets);
        }
    }

    /// Sends a learner's packets: with one write straight to the socket while its writer thread
    /// has nothing unwritten (this thread is the only one adding to it), sparing the wake-up of
    /// that thread; what the socket does not take, and everything while packets wait, through
    /// the writer thread. MSG_DONTWAIT for this call only (the writer's clone stays blocking); an
    /// error is left to the writer thread, which meets it on its next write.
    fn send_now(&mut self, to: LearnerId, mut packets: Vec<Bytes>) {
        let Some(writer) = self.writers.get(&to) else { return };
        let mut sid = writer.sid.load(Ordering::Relaxed);
        if sid == 0 {
            if let Some(learner_sid) = self.leader.learner_sid(to) {
                writer.sid.store(learner_sid, Ordering::Relaxed);
                sid = learner_sid;
            }
        }
        let mut start = 0;
        if writer.unwritten.load(Ordering::Acquire) == 0 {
            // On the stack: this runs for every learner after every round of the leading thread.
            let mut slices = [IoSlice::new(&[]); WRITEV_SLICES_MAX];
            let count = packets.len().min(WRITEV_SLICES_MAX);
            for (slot, packet) in slices.iter_mut().zip(&packets) {
                *slot = IoSlice::new(packet);
            }
            let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
            let mut control = rustix::net::SendAncillaryBuffer::default();
            if let Ok(mut written) = rustix::net::sendmsg(&writer.stream, &slices[..count], &mut control, flags) {
                while start < packets.len() && written >= packets[start].len() {
                    written -= packets[start].len();
                    start += 1;
                }
                if written > 0 {
                    packets[start] = packets[start].slice(written..);
                }
            }
            // Sampled as the writer thread samples what it takes: nothing queued, no wait.
            if sid != 0 && start > 0 {
                let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
                let room = QUEUE_SAMPLES_MAX.saturating_sub(samples.len());
                samples.extend((0..start.min(room)).map(|_| QueueSample { sid, queued: 0, waited_ms: 0 }));
            }
        }
        for bytes in packets.drain(start..) {
            writer.unwritten.fetch_add(1, Ordering::AcqRel);
            writer.queued.fetch_add(1, Ordering::AcqRel);
            if writer.queue.try_send((Instant::now(), bytes)).is_err() {
                warn!(learner = to, "learner is not keeping up with its packets; closing it");
                if let Some(writer) = self.writers.remove(&to) {
                    writer.close();
                }
                self.leader.disconnected(to);
                return;
            }
        }
    }

    fn perform(&mut self, store: &mut dyn LeaderStore) -> Result<(), LeadError> {
        let mut actions = self.leader.take_actions();
        while !actions.is_empty() {
            for action in actions {
                match action {
                    LeaderAction::Send { to, packet } => {
                        log_packet("to learner", to, &packet);
                        let mut out = BytesMut::with_capacity(packet.encoded_len());
                        packet.encode(&mut out);
                        self.send(to, out.freeze());
                    }
                    LeaderAction::SendSnapshot { to, zxid } => {
                        let stream = store.snapshot_stream()?;
                        let packet = QuorumPacket::new(packet_type::SNAP, zxid);
                        let mut out = BytesMut::with_capacity(packet.encoded_len() + stream.len());
                        packet.encode(&mut out);
                        out.extend_from_slice(&stream);
                        info!(
                            learner = to,
                            zxid = format_args!("0x{zxid:x}"),
                            bytes = stream.len(),
                            "sending a snapshot"
                        );
                        self.send(to, out.freeze());
                    }
                    LeaderAction::Close { learner, reason } => {
                        warn!(learner, reason, "closing a learner");
                        if let Some(writer) = self.writers.remove(&learner) {
                            writer.close();
                        }
                    }
                    LeaderAction::PersistAcceptedEpoch(epoch) => store.persist_accepted_epoch(epoch)?,
                    LeaderAction::PersistCurrentEpoch(epoch) => store.persist_current_epoch(epoch)?,
                    LeaderAction::Established { epoch } => {
                        info!(epoch, "established: a quorum acked NEWLEADER");
                        store.established(epoch);
                    }
                    LeaderAction::Commit(zxid) => store.commit(zxid)?,
                    LeaderAction::Abdicate { reason } => return Err(LeadError::Abdicated(reason)),
                    LeaderAction::Request { from, sid, mut data, authinfo } => match RequestHead::decode(&mut data) {
                        // ZooKeeper's leader answers a forwarded sync once the proposals
                        // outstanding now are committed (`Leader.processSync`).
                        Ok(head) if head.op == OpCode::Sync as i32 => self.leader.sync(from),
                        Ok(head) => store.request(head, data, authinfo),
                        Err(e) => warn!(learner = from, sid, "REQUEST without a request head ({e}); dropped"),
                    },
                    LeaderAction::Revalidate { from, session_id, timeout_ms } => {
                        store.revalidate(from, session_id, timeout_ms)
                    }
                    LeaderAction::Touch(sessions) => store.touch(sessions),
                }
            }
            actions = self.leader.take_actions();
        }
        self.flush();
        // After the packets: the pipeline's round may run on this thread.
        store.deliver()?;
        Ok(())
    }
}

fn log_packet(direction: &'static str, learner: LearnerId, packet: &QuorumPacket) {
    debug!(
        learner,
        packet = packet_type::name(packet.packet_type),
        zxid = format_args!("0x{:x}", packet.zxid),
        "{direction}"
    );
}

fn accept_learners(listener: TcpListener, inputs: SyncSender<LeaderInput>, stop: &AtomicBool, data_max_bytes: usize) {
    let mut next_id: LearnerId = 0;
    // Connections whose reader thread still runs; each costs two threads.
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        let (stream, remote) = match listener.accept() {
            Ok(_) if stop.load(Ordering::Relaxed) => return,
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "quorum port: accept failed");
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        if open.load(Ordering::Acquire) >= LEARNERS_MAX {
            warn!(%remote, "quorum port: {LEARNERS_MAX} learner connections open already; closing this one");
            continue;
        }
        next_id += 1;
        let id = next_id;
        let setup = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_nodelay(true))
            .and_then(|()| stream.try_clone());
        let Ok(read_stream) = setup else { continue };
        info!(learner = id, %remote, "learner connected");
        if inputs.send(LeaderInput::Connected { id, stream }).is_err() {
            return;
        }
        let (inputs, open) = (inputs.clone(), open.clone());
        open.fetch_add(1, Ordering::AcqRel);
        std::thread::spawn(move || {
            read_packets(id, read_stream, inputs, data_max_bytes);
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

fn read_packets(id: LearnerId, stream: TcpStream, inputs: SyncSender<LeaderInput>, data_max_bytes: usize) {
    let mut reader = PacketReader::new(stream, data_max_bytes);
    loop {
        match reader.next_packet() {
            Ok(packet) => {
                if inputs.send(LeaderInput::Packet { id, packet }).is_err() {
                    return;
                }
            }
            Err(e) => {
                debug!(learner = id, error = %e, "learner connection ended");
                // The loop may have ended already; then nobody needs to know.
                let _ = inputs.send(LeaderInput::Closed { id });
                return;
            }
        }
    }
}

/// Most bytes a writer gathers from its queue into one write.
pub(crate) const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Appends to `batch` what is already queued behind `first`, up to `WRITE_BATCH_BYTES`: one write
/// per burst (a commit round to every learner, a burst of acks) instead of one per packet.
pub(crate) fn gather(first: Bytes, queue: &Receiver<Bytes>, batch: &mut BytesMut) -> usize {
    batch.extend_from_slice(&first);
    let mut count = 1;
    while batch.len() < WRITE_BATCH_BYTES {
        match queue.try_recv() {
            Ok(more) => {
                batch.extend_from_slice(&more);
                count += 1;
            }
            Err(_) => break,
        }
    }
    count
}

/// A learner's send queue as its writer thread sees it.
struct SendQueue {
    packets: Receiver<(Instant, Bytes)>,
    queued: Arc<AtomicUsize>,
    unwritten: Arc<AtomicUsize>,
    sid: Arc<AtomicI64>,
    samples: Arc<Mutex<Vec<QueueSample>>>,
}

impl SendQueue {
    fn took(&self, enqueued: Instant, bytes: &Bytes, batch: &mut BytesMut, taken: &mut Vec<QueueSample>) {
        let left = self.queued.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        taken.push(QueueSample {
            sid: 0,
            queued: left as i64,
            waited_ms: enqueued.elapsed().as_millis() as i64,
        });
        batch.extend_from_slice(bytes);
    }
}

fn write_packets(mut stream: TcpStream, queue: SendQueue) {
    let mut batch = BytesMut::new();
    let mut taken = Vec::new();
    while let Ok((enqueued, first)) = queue.packets.recv() {
        // What is already queued goes out in the same write (up to `WRITE_BATCH_BYTES`).
        queue.took(enqueued, &first, &mut batch, &mut taken);
        while batch.len() < WRITE_BATCH_BYTES {
            match queue.packets.try_recv() {
                Ok((enqueued, more)) => queue.took(enqueued, &more, &mut batch, &mut taken),
                Err(_) => break,
            }
        }
        let count = taken.len();
        let sid = queue.sid.load(Ordering::Relaxed);
        if sid != 0 {
            let mut samples = queue.samples.lock().unwrap_or_else(|p| p.into_inner());
            let room = QUEUE_SAMPLES_MAX.saturating_sub(samples.len());
            samples.extend(taken.drain(..).take(room).map(|s| QueueSample { sid, ..s }));
        }
        taken.clear();
        if stream.write_all(&batch).is_err() {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        // Only now may a packet skip the queue: everything taken from it is written.
        queue.unwritten.fetch_sub(count, Ordering::AcqRel);
        batch.clear();
    }
}
