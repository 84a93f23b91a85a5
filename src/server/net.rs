//! The thin tokio layer around `core`: a listener, a reader and a writer task per connection, and
//! one task that runs the request pipeline (`pipeline`) for the events it is sent, in arrival order.
//!
//! Hand-offs: a reader sends every complete frame it has buffered as one event (or, while the
//! pipeline is idle, runs them through it itself); the core task handles what is queued, then
//! writes each connection's replies of that round with one `writev` straight to the socket when
//! nothing is queued for it (the common case), so a request crosses at most two tasks, not
//! three. Only what the socket does not take goes to the writer task, which keeps the
//! connection's bytes in order from then on; so do rounds that touch many connections (a watch
//! fan-out), which the writer tasks spread over the runtime's workers.
//!
//! Bounds: the channel into the core holds at most `globalOutstandingLimit` requests (readers
//! wait when it is full, which stops reading from sockets, as ZooKeeper does); each connection's
//! outbound queue is bounded, and a client that does not read its replies is disconnected rather
//! than buffered forever; frames are capped at `jute.maxbuffer`; connections per client address
//! are capped at `maxClientCnxns`; a connection that never completes its handshake is closed after
//! `nio.sessionlessCnxnTimeout`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, warn};

use crate::admin::commands::{AdminAnswer, AdminQuery};
use crate::config::Config;
use crate::jute::Decode;
use crate::proto::frame::{check_frame, four_letter_word, FrameCheck};
use crate::proto::{decode_read_only_flag, ConnectRequest};
use crate::server::core::{ConnId, Now};
use crate::server::pipeline::{Persistence, Pipeline, PipelineLock};
use crate::server::replication::{ZabEvent, ZabInlet};
use crate::storage::Durability;

/// Frames a connection may have queued for writing before it counts as not reading.
const OUTBOUND_QUEUE_FRAMES: usize = 16_384;
/// Queued reply bytes above which a connection's requests are no longer read (back-pressure).
const OUTBOUND_HIGH_WATER_BYTES: usize = 1 << 20;
/// Largest batch of queued frames written with one syscall.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Most frames a reader hands to the core task in one event (bounds the batch the core takes
/// past `globalOutstandingLimit`).
const FRAMES_PER_EVENT_MAX: usize = 64;
/// Bytes a reader asks the socket for at a time.
const READ_CHUNK_BYTES: usize = 8 * 1024;

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
    pub(crate) stream: Arc<OwnedWriteHalf>,
    pub(crate) tx: mpsc::Sender<Bytes>,
    pub(crate) queued: Arc<Queued>,
}

/// What waits for a connection: reply bytes queued for its writer task (with a wake-up for its
/// reader waiting for them to drain) and its events in the core task's channel.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    pub(crate) bytes: AtomicUsize,
    drained: Notify,
    /// The connection's connect and request events sent to the core task and not yet taken by
    /// it (`Pipeline::handle_event`); its reader runs requests itself only when this is zero.
    pub(crate) events: AtomicUsize,
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

async fn zab_event(rx: &mut Option<mpsc::Receiver<ZabEvent>>) -> Option<ZabEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What woke the core task.
enum Wake {
    Event(CoreEvent),
    Durability,
    Zab(ZabEvent),
    Tick,
    Containers,
    Purge,
    Snapshot,
    Nudge,
}

/// Replication's side of the core task: its events, and the sessions connected here (a
/// follower's ping reply), refreshed every tick.
pub struct ZabInputs {
    /// Events from the replication threads.
    pub events: mpsc::Receiver<ZabEvent>,
    /// Their side of `events`, told how many this task took.
    pub inlet: Arc<ZabInlet>,
    /// Sessions with a connection here.
    pub local_sessions: Arc<Mutex<Vec<(i64, i32)>>>,
}

/// Runs the core task until `shutdown` fires: rounds of the pipeline for what reaches it through
/// `events`, the log writer's progress, replication and the timers. Returns the persistence handle
/// so the caller can stop the log writer after the last txn was handed over.
pub async fn run_core(
    pipeline: Arc<PipelineLock>,
    mut events: mpsc::Receiver<CoreEvent>,
    container_check_interval: Duration,
    zab: Option<ZabInputs>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Persistence> {
    let (mut zab_events, inlet, local_sessions) = match zab {
        Some(ZabInputs { events, inlet, local_sessions }) => (Some(events), Some(inlet), Some(local_sessions)),
        None => (None, None, None),
    };
    let (tick_ms, purge_interval, mut durability, nudge) = {
        let p = pipeline.lock().await;
        let persistence = p.persistence();
        (
            p.core.settings.tick_ms,
            persistence.and_then(|p| p.purge_interval),
            persistence.map(|p| p.writer.durability()),
            p.nudge(),
        )
    };
    let tick = Duration::from_millis((tick_ms / 2).max(1) as u64);
    let mut tick_timer = tokio::time::interval(tick);
    tick_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Like ZooKeeper's ContainerManager, the first check comes one interval after start.
    let container_period = container_check_interval.max(Duration::from_millis(10));
    let mut container_timer = tokio::time::interval_at(tokio::time::Instant::now() + container_period, container_period);
    container_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let purge_every = purge_interval.unwrap_or(Duration::from_secs(3600));
    let purging = purge_interval.is_some();
    // Like ZooKeeper's DatadirCleanupManager (timer delay 0), the first purge runs at start-up,
    // here before anything else, so it never races the start-up snapshot; then every interval.
    if purging {
        pipeline.lock().await.purge().await;
    }
    // From here on the replication threads may run their events themselves.
    if let Some(inlet) = &inlet {
        inlet.serve(pipeline.clone());
    }
    let mut purge_timer = tokio::time::interval_at(tokio::time::Instant::now() + purge_every, purge_every);
    let mut takes_more = true;
    let mut snapshotting = false;
    let mut awaits_durability = true;
    loop {
        let wake = tokio::select! {
            // Back-pressure: with globalOutstandingLimit requests in the pipeline, stop taking more.
            event = events.recv(), if takes_more => match event {
                Some(event) => Wake::Event(event),
                None => break,
            },
            () = durability_changed(&mut durability), if awaits_durability => Wake::Durability,
            () = nudge.notified() => Wake::Nudge,
            Some(event) = zab_event(&mut zab_events) => Wake::Zab(event),
            _ = tick_timer.tick() => Wake::Tick,
            _ = container_timer.tick() => Wake::Containers,
            _ = purge_timer.tick(), if purging => Wake::Purge,
            () = snapshot_pause(), if snapshotting => Wake::Snapshot,
            _ = shutdown.changed() => break,
        };
        let mut p = pipeline.lock().await;
        // One clock read for the whole round (it was 3% of samples read per event).
        let now = p.now();
        match wake {
            Wake::Event(event) => {
                p.handle_event(event, now);
                // Drain what is already queued before dispatching, to batch outputs.
                let mut budget = 256;
                while budget > 0 && p.takes_more() {
                    let Ok(event) = events.try_recv() else { break };
                    p.handle_event(event, now);
                    budget -= 1;
                }
            }
            Wake::Durability => p.durability_reached(now),
            Wake::Zab(event) => {
                if let (Some(rx), Some(inlet)) = (&mut zab_events, &inlet) {
                    // Under the lock: a replication thread runs its next events itself only
                    // once none of its earlier ones waits here.
                    inlet.taken(p.handle_zab_events(event, rx, now));
                }
            }
            Wake::Tick => p.tick(local_sessions.as_deref(), now),
            Wake::Containers => p.core.check_containers(now),
            Wake::Purge => p.purge().await,
            Wake::Snapshot | Wake::Nudge => {}
        }
        p.finish_round(events.is_empty());
        // Read for the next select!: a reader's round in between changes them only when the
        // pipeline was idle (it takes at most one event's frames past the limit), and nudges
        // this task when it hands txns to the writer thread or starts a snapshot.
        takes_more = p.takes_more();
        snapshotting = p.snapshotting();
        awaits_durability = p.awaits_durability();
    }
    pipeline.lock().await.stop().await
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
    pipeline: Arc<PipelineLock>,
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
        let pipeline = pipeline.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            serve_connection(conn, stream, remote, events, &pipeline, limits).await;
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
    pipeline: &PipelineLock,
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
    let queued = Arc::new(Queued::default());
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
    // Counted before it is sent: the core task may take it before `send` returns.
    queued.events.fetch_add(1, Ordering::AcqRel);
    if events.send(CoreEvent::Connect { conn, remote, request, old_client, outbound }).await.is_err() {
        return;
    }
    let channel_empty = || events.capacity() == events.max_capacity();
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
            // While the pipeline is idle this task runs them itself (`pipeline` module).
            if Pipeline::run_requests(pipeline, conn, &mut frames, &queued, channel_empty) {
                continue;
            }
            let batch = std::mem::replace(&mut frames, Vec::with_capacity(8));
            queued.events.fetch_add(1, Ordering::AcqRel);
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

async fn write_loop(stream: &TcpStream, mut rx: mpsc::Receiver<Bytes>, queued: &Queued) {
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
