//! The leader's quorum port: the listener, a writer thread per learner, and the loop that reads
//! the learners' packets, runs the `Leader` state machine over them and performs its actions
//! against a `LeaderStore` (ZooKeeper's `Leader.lead` loop with its `LearnerCnxAcceptor` and
//! `LearnerHandler`s).
//!
//! The loop's thread reads every learner's socket itself (`poll`, then `recv` without waiting),
//! so a learner's ACK or REQUEST wakes the thread that handles it, not a reader thread that would
//! hand it on (one thread wake-up less on every write's path); other threads' inputs (the
//! pipeline's proposals, new connections) come through a queue with a doorbell in the same poll.
//!
//! Owns: the learner sockets, their read buffers and send queues, the half-tick timer, and the
//! order in which actions reach the store and the learners. Must not touch: what the store does
//! with a txn.
//!
//! Threads, not tasks: the store writes to disk on the loop's thread, which must not be a runtime
//! worker. Bounds: at most `SEND_QUEUE_MAX` packets queued per learner (a learner that falls that
//! far behind is closed, as it could not keep up anyway); `LEARNERS_MAX` connections;
//! `INPUTS_MAX` inputs queued for the loop (senders wait when it is full); a packet's data at
//! most `data_max_bytes`; one read chunk per learner per round.

use std::collections::BTreeMap;
use std::io::{IoSlice, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SendError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};

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
        /// The socket.
        stream: TcpStream,
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
    /// Waiting for the learners' sockets failed.
    #[error("waiting for the learners: {0}")]
    Poll(std::io::Error),
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

/// Wakes the leading thread for an input sent while it waits: an eventfd in its poll set,
/// written only while the thread says it sleeps, so an input sent while it works costs no
/// system call.
struct Doorbell {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Doorbell {
    fn ring(&self) {
        // Pairs with the fence in `run_loop` between announcing the sleep and looking at the
        // queue a last time: either the loop sees the input, or this sees it sleeping.
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            // Fails only when the counter would overflow: a wake-up is pending then anyway.
            let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
        }
    }

    /// Takes the rings that woke the loop.
    fn clear(&self) {
        let mut count = [0u8; 8];
        // Non-blocking: nothing to take is fine.
        let _ = rustix::io::read(&self.fd, &mut count);
    }
}

/// The sending side of a leader's inputs (the acceptor, the request pipeline).
#[derive(Clone)]
pub struct InputSender {
    tx: SyncSender<LeaderInput>,
    bell: Arc<Doorbell>,
}

impl InputSender {
    /// Sends an input, waiting while the queue is full.
    pub fn send(&self, input: LeaderInput) -> Result<(), SendError<LeaderInput>> {
        self.tx.send(input)?;
        self.bell.ring();
        Ok(())
    }

    /// Sends an input if the queue has room.
    pub fn try_send(&self, input: LeaderInput) -> Result<(), TrySendError<LeaderInput>> {
        self.tx.try_send(input)?;
        self.bell.ring();
        Ok(())
    }
}

/// The leading loop's side of its inputs.
pub struct InputReceiver {
    rx: Receiver<LeaderInput>,
    bell: Arc<Doorbell>,
}

/// The sending side of a leader's inputs, and the receiving side `lead` takes.
pub fn inputs() -> std::io::Result<(InputSender, InputReceiver)> {
    let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    let bell = Arc::new(Doorbell { fd, sleeping: AtomicBool::new(false) });
    let (tx, rx) = sync_channel(INPUTS_MAX);
    Ok((InputSender { tx, bell: bell.clone() }, InputReceiver { rx, bell }))
}

/// Leads until the state machine abdicates, the store fails, or `stop` is set (looked at every
/// half tick). `inputs` carries proposals from the server and, through `sender`, what the
/// learners' threads read.
pub fn lead(
    settings: &LeadingSettings,
    start: LeaderStart,
    store: &mut dyn LeaderStore,
    (sender, inputs): (InputSender, InputReceiver),
    status: &Mutex<LeaderStatus>,
    stop: &Arc<AtomicBool>,
) -> Result<(), LeadError> {
    let listener = TcpListener::bind(settings.listen).map_err(LeadError::Bind)?;
    // Accepts block (a learner is taken at once); the clean-up below wakes the acceptor by
    // connecting to it once `stop` is set.
    let local = listener.local_addr().map_err(LeadError::Bind)?;
    info!(address = %settings.listen, "leading: quorum port open");
    let open = Arc::new(AtomicUsize::new(0));
    let acceptor = {
        let (sender, stop, open) = (sender.clone(), stop.clone(), open.clone());
        std::thread::spawn(move || accept_learners(listener, sender, &stop, &open))
    };
    drop(sender);
    let mut driver = Driver {
        leader: Leader::new(start),
        conns: BTreeMap::new(),
        unsynced: None,
        proposal_sizes: None,
        samples: Arc::new(Mutex::new(Vec::new())),
        outgoing: BTreeMap::new(),
        data_max_bytes: settings.data_max_bytes,
        open,
        readable: Vec::new(),
        unfinished: Vec::new(),
    };
    // Every way out of the loop (a stop, an abdication, a store failure) goes through the
    // clean-up below, which ends the acceptor and every learner's writer thread.
    let result = run_loop(&mut driver, store, &inputs, status, stop, settings.tick / 2);
    stop.store(true, Ordering::Relaxed);
    for (_, conn) in std::mem::take(&mut driver.conns) {
        conn.close();
    }
    let _ = TcpStream::connect_timeout(&local, Duration::from_secs(1));
    let _ = acceptor.join();
    result
}

fn run_loop(
    driver: &mut Driver,
    store: &mut dyn LeaderStore,
    inputs: &InputReceiver,
    status: &Mutex<LeaderStatus>,
    stop: &AtomicBool,
    half_tick: Duration,
) -> Result<(), LeadError> {
    let mut next_half_tick = Instant::now() + half_tick;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(LeadError::Stopped);
        }
        // Wait (until the half tick) only with nothing to do: no input queued and no learner
        // packet buffered. The learners' sockets are polled every round, waiting or not, so a
        // stream of proposals never keeps their acks unread.
        let mut first = None;
        let mut wait = !driver.has_buffered_packets();
        if wait {
            inputs.bell.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            match inputs.rx.try_recv() {
                Ok(input) => {
                    inputs.bell.sleeping.store(false, Ordering::SeqCst);
                    first = Some(input);
                    wait = false;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(LeadError::Stopped),
            }
        }
        driver.poll(&inputs.bell, wait.then_some(next_half_tick))?;
        // Group commit: what is queued and what the learners sent, then one sync for all of it.
        if let Some(input) = first {
            driver.input(input, store)?;
        }
        for _ in 0..BATCH_MAX {
            match inputs.rx.try_recv() {
                Ok(input) => driver.input(input, store)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(LeadError::Stopped),
            }
        }
        driver.read_learners();
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

/// A learner's connection: its socket (polled here), its read buffer and its writer thread.
struct Connection {
    queue: SyncSender<(Instant, Bytes)>,
    stream: TcpStream,
    reader: PacketReader,
    /// Packets in `queue`.
    queued: Arc<AtomicUsize>,
    /// Packets put in `queue` and not yet written by the writer thread: while there are any, a
    /// packet must queue behind them; with none, it is written straight to the socket.
    unwritten: Arc<AtomicUsize>,
    /// The learner's sid once it said (0 before).
    sid: Arc<AtomicI64>,
}

impl Connection {
    fn close(self) {
        // Ends the writer thread (its write fails, or its queue is gone).
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Most learner packets handled from one learner in one round before the others' turn.
const PACKETS_PER_ROUND_MAX: usize = 4_096;

struct Driver {
    leader: Leader,
    conns: BTreeMap<LearnerId, Connection>,
    unsynced: Option<i64>,
    proposal_sizes: Option<(usize, usize, usize)>,
    /// Send-queue samples from the writer threads, moved into the status.
    samples: Arc<Mutex<Vec<QueueSample>>>,
    /// This round's packets per learner, sent at its end (`flush`).
    outgoing: BTreeMap<LearnerId, Vec<Bytes>>,
    /// Largest packet data accepted from a learner.
    data_max_bytes: usize,
    /// Learner connections open, shared with the acceptor (`LEARNERS_MAX`).
    open: Arc<AtomicUsize>,
    /// Learners whose sockets the last poll found readable (or closed).
    readable: Vec<LearnerId>,
    /// Learners whose packets were left in their buffers by `PACKETS_PER_ROUND_MAX`.
    unfinished: Vec<LearnerId>,
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
                let (Ok(write_stream), Ok(read_stream)) = (stream.try_clone(), stream.try_clone()) else {
                    self.open.fetch_sub(1, Ordering::AcqRel);
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
                let reader = PacketReader::new(read_stream, self.data_max_bytes);
                self.conns.insert(id, Connection { queue, stream, reader, queued, unwritten, sid });
                self.leader.connected(id);
            }
            LeaderInput::Revalidated { learner, session_id, valid } => {
                self.leader.revalidated(learner, session_id, valid)
            }
        }
        Ok(())
    }

    /// Whether a learner's read buffer may still hold whole packets (left for the next round by
    /// `PACKETS_PER_ROUND_MAX`).
    fn has_buffered_packets(&self) -> bool {
        !self.unfinished.is_empty()
    }

    /// Polls the doorbell and every learner's socket, waiting until `until` (not at all without
    /// it), and notes which learners have bytes (or a closed connection) to read.
    fn poll(&mut self, bell: &Doorbell, until: Option<Instant>) -> Result<(), LeadError> {
        let timeout = match until {
            // A wait too long for a Timespec cannot happen (it is at most a half tick).
            Some(until) => Timespec::try_from(until.saturating_duration_since(Instant::now())).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 }),
            None => Timespec { tv_sec: 0, tv_nsec: 0 },
        };
        let mut fds = Vec::with_capacity(1 + self.conns.len());
        fds.push(PollFd::new(&bell.fd, PollFlags::IN));
        fds.extend(self.conns.values().map(|conn| PollFd::new(&conn.stream, PollFlags::IN)));
        let polled = poll(&mut fds, Some(&timeout));
        bell.sleeping.store(false, Ordering::SeqCst);
        match polled {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(LeadError::Poll(e.into())),
        }
        if !fds[0].revents().is_empty() {
            bell.clear();
        }
        self.readable.clear();
        for (id, fd) in self.conns.keys().zip(&fds[1..]) {
            if !fd.revents().is_empty() {
                self.readable.push(*id);
            }
        }
        Ok(())
    }

    /// Runs the packets the learners sent through the state machine: what their read buffers
    /// hold, and one read from each socket the last poll found readable. A learner whose
    /// connection ended or who sent what is not a packet is dropped.
    fn read_learners(&mut self) {
        let readable = std::mem::take(&mut self.readable);
        let mut ids = std::mem::take(&mut self.unfinished);
        ids.extend(readable.iter().filter(|id| !ids.contains(id)).copied().collect::<Vec<_>>());
        for id in ids {
            let mut may_read = readable.contains(&id);
            let mut handled = 0;
            while handled < PACKETS_PER_ROUND_MAX {
                let Some(conn) = self.conns.get_mut(&id) else { break };
                let packet = match conn.reader.buffered_packet() {
                    Ok(Some(packet)) => packet,
                    // One read per learner per round, only once its buffer holds no whole packet;
                    // what the socket holds beyond it is read after the next poll.
                    Ok(None) if may_read => {
                        may_read = false;
                        match conn.reader.fill_ready() {
                            Ok(()) => continue,
                            Err(e) => {
                                debug!(learner = id, error = %e, "learner connection ended");
                                self.drop_learner(id);
                                break;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!(learner = id, error = %e, "closing a learner that sent what is not a packet");
                        self.drop_learner(id);
                        break;
                    }
                };
                log_packet("from learner", id, &packet);
                self.leader.packet(id, packet);
                handled += 1;
                if handled == PACKETS_PER_ROUND_MAX {
                    self.unfinished.push(id);
                }
            }
        }
        // Keep the allocation.
        self.readable = readable;
        self.readable.clear();
    }

    /// Closes a learner's connection and tells the state machine it is gone.
    fn drop_learner(&mut self, id: LearnerId) {
        if let Some(conn) = self.conns.remove(&id) {
            conn.close();
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
        self.leader.disconnected(id);
    }

    /// Queues a packet for `to`; a round's packets go out together at its end (`flush`).
    fn send(&mut self, to: LearnerId, bytes: Bytes) {
        if self.conns.contains_key(&to) {
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
        let Some(writer) = self.conns.get(&to) else { return };
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
                self.drop_learner(to);
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
                        self.drop_learner(learner);
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

fn accept_learners(listener: TcpListener, inputs: InputSender, stop: &AtomicBool, open: &AtomicUsize) {
    let mut next_id: LearnerId = 0;
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
        // Connections the leading loop holds (it takes the count down as it drops them).
        if open.load(Ordering::Acquire) >= LEARNERS_MAX {
            warn!(%remote, "quorum port: {LEARNERS_MAX} learner connections open already; closing this one");
            continue;
        }
        next_id += 1;
        let id = next_id;
        // Blocking: the writer thread writes with blocking writes; the leading loop reads with
        // MSG_DONTWAIT.
        if stream.set_nonblocking(false).and_then(|()| stream.set_nodelay(true)).is_err() {
            continue;
        }
        info!(learner = id, %remote, "learner connected");
        open.fetch_add(1, Ordering::AcqRel);
        if inputs.send(LeaderInput::Connected { id, stream }).is_err() {
            return;
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
