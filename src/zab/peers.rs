//! The election connections between quorum members (ZooKeeper's `QuorumCnxManager`) and the
//! task that runs this server's `Election` over them.
//!
//! Owns: the election listener, one connection per peer, the last message for each peer, and the
//! election's timer. Must not touch: the election rules (`zab::election`), the log.
//!
//! ZooKeeper's connection rules, kept here so that ferrokeeper and ZooKeeper servers connect to
//! each other (PROTOCOL.md §4.2):
//! - whoever connects sends the handshake first and nothing comes back;
//! - only the connection opened by the larger sid survives: a server that connects to a larger
//!   sid closes after its handshake and waits to be called back; a server called by a smaller sid
//!   closes that connection and calls back;
//! - messages are a 4-byte length (1 to 512 KiB) and the bytes;
//! - each peer has a send queue of one message that a newer one replaces, and a fresh connection
//!   starts by sending the last message again (the peer may have lost it with the old one).
//!
//! Bounds: one connection and one connect attempt per peer, and servers outside the
//! configuration are forgotten once disconnected; at most `HANDSHAKES_MAX` incoming
//! connections still in their handshake; `EVENTS_MAX` events queued for the election task (a
//! peer's reader waits when it is full, which slows that peer's TCP stream down).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{debug, info, warn};

use crate::proto::election::{check_message_length, decode_handshake, Handshake, HandshakeProgress, ServerState};
use crate::proto::election::{HANDSHAKE_ADDRESS_MAX_BYTES, PROTOCOL_VERSION_V1};
use crate::zab::election::{Action, Election, Outcome, Vote};

/// Incoming connections that may be in their handshake at once (ZooKeeper's
/// `quorumCnxnThreadsSize` default).
const HANDSHAKES_MAX: usize = 20;
/// Events (messages, connection changes) queued for the election task.
const EVENTS_MAX: usize = 256;
/// Commands queued for the election task.
const COMMANDS_MAX: usize = 16;
/// The sid an observer without an id announces (`QuorumPeer.OBSERVER_ID`); such connections get
/// made-up negative ids, as in ZooKeeper.
const OBSERVER_ID: i64 = i64::MAX;

/// Where this server and its peers listen for election connections.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    /// This server's id (`myid`).
    pub my_sid: i64,
    /// The address the election listener binds.
    pub listen: SocketAddr,
    /// This server's election address as it announces it in its handshake (`host:port`).
    pub announce: String,
    /// The other members' election addresses (`host:port`), by sid.
    pub peers: BTreeMap<i64, String>,
    /// How long a connect or an incoming handshake may take (`zookeeper.cnxTimeout`, 5 s).
    pub connect_timeout: Duration,
}

/// What the server asks of its election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start a round with this server's last logged zxid and current epoch.
    Look {
        /// Highest zxid in the log.
        last_logged_zxid: i64,
        /// The `currentEpoch` file's value.
        current_epoch: i64,
    },
    /// The new leader fixed this epoch (answers to looking servers carry it).
    SetPeerEpoch(i64),
}

/// The election as the rest of the server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionStatus {
    /// This server's state.
    pub state: ServerState,
    /// The vote it stands by.
    pub vote: Vote,
    /// The round.
    pub logical_clock: i64,
    /// The last decision, if any round has ended.
    pub last_outcome: Option<Outcome>,
}

/// A running election: send it commands, watch its status; dropping it stops the election and
/// closes its connections.
#[derive(Debug)]
pub struct ElectionHandle {
    /// Commands to the election task.
    pub commands: mpsc::Sender<Command>,
    /// The latest status.
    pub status: watch::Receiver<ElectionStatus>,
    /// The address the listener bound (useful when `listen` had port 0).
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ElectionHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds the election listener and starts the election task (which waits for `Command::Look`).
pub async fn start(settings: PeerSettings, election: Election) -> std::io::Result<ElectionHandle> {
    let listener = TcpListener::bind(settings.listen).await?;
    let local_addr = listener.local_addr()?;
    info!(sid = settings.my_sid, address = %local_addr, "election listener started");
    let (commands_tx, commands_rx) = mpsc::channel(COMMANDS_MAX);
    let (events_tx, events_rx) = mpsc::channel(EVENTS_MAX);
    let status = status_of(&election, None);
    let (status_tx, status_rx) = watch::channel(status);
    let settings = Arc::new(settings);
    let manager = Manager {
        settings: settings.clone(),
        election,
        started: Instant::now(),
        peers: BTreeMap::new(),
        events_tx: events_tx.clone(),
        next_conn_id: 0,
        status_tx,
        last_outcome: None,
    };
    let task = tokio::spawn(async move {
        let accepting = tokio::spawn(accept_loop(listener, settings, events_tx));
        manager.run(commands_rx, events_rx).await;
        accepting.abort();
    });
    Ok(ElectionHandle {
        commands: commands_tx,
        status: status_rx,
        local_addr,
        task,
    })
}

fn status_of(election: &Election, last_outcome: Option<Outcome>) -> ElectionStatus {
    ElectionStatus {
        state: election.state(),
        vote: election.current_vote(),
        logical_clock: election.logical_clock(),
        last_outcome,
    }
}

/// What the connection tasks tell the election task.
#[derive(Debug)]
enum PeerEvent {
    /// A larger sid connected and sent its handshake: keep this connection.
    Incoming { sid: i64, stream: TcpStream },
    /// A smaller sid connected; its connection was closed and it is to be called back.
    CallBack { sid: i64, addresses: Vec<String> },
    /// An outgoing connect ended: with a connection to keep, or none (failed, or the peer's sid is
    /// larger and it will call back).
    Connected { sid: i64, stream: Option<TcpStream> },
    /// A message from a peer.
    Message { sid: i64, conn_id: u64, message: Bytes },
    /// A connection ended.
    Closed { sid: i64, conn_id: u64 },
}

/// A peer as the election task keeps it.
#[derive(Debug)]
struct Peer {
    /// The last message for this peer: replaced by newer ones, sent again on a new connection.
    latest: watch::Sender<Option<Bytes>>,
    /// The live connection: its id and the means to close it.
    connection: Option<(u64, oneshot::Sender<()>)>,
    connecting: bool,
    /// Where to call it: from the configuration, or from its handshake.
    address: Option<String>,
}

struct Manager {
    settings: Arc<PeerSettings>,
    election: Election,
    started: Instant,
    peers: BTreeMap<i64, Peer>,
    events_tx: mpsc::Sender<PeerEvent>,
    next_conn_id: u64,
    status_tx: watch::Sender<ElectionStatus>,
    last_outcome: Option<Outcome>,
}

impl Manager {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut events: mpsc::Receiver<PeerEvent>) {
        loop {
            let deadline = self
                .election
                .next_deadline_ms()
                .map(|ms| tokio::time::Instant::from_std(self.started + Duration::from_millis(ms)));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                Some(event) = events.recv() => self.event(event),
                _ = sleep_until(deadline) => {
                    let now = self.now_ms();
                    self.election.tick(now);
                }
            }
            self.act();
        }
        for peer in self.peers.values_mut() {
            peer.connection = None;
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Look {
                last_logged_zxid,
                current_epoch,
            } => {
                info!(
                    sid = self.settings.my_sid,
                    zxid = format_args!("0x{last_logged_zxid:x}"),
                    "new election: proposing myself"
                );
                let now = self.now_ms();
                self.election.look(now, last_logged_zxid, current_epoch);
            }
            Command::SetPeerEpoch(epoch) => self.election.set_peer_epoch(epoch),
        }
    }

    fn peer(&mut self, sid: i64) -> &mut Peer {
        let configured = self.settings.peers.get(&sid).cloned();
        self.peers.entry(sid).or_insert_with(|| Peer {
            latest: watch::channel(None).0,
            connection: None,
            connecting: false,
            address: configured,
        })
    }

    fn event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Incoming { sid, stream } => self.keep(sid, stream),
            PeerEvent::CallBack { sid, addresses } => {
                let peer = self.peer(sid);
                // It believes the old connection is gone; so must we.
                peer.connection = None;
                if peer.address.is_none() {
                    peer.address = addresses.into_iter().next();
                }
                self.connect(sid);
            }
            PeerEvent::Connected { sid, stream } => {
                self.peer(sid).connecting = false;
                if let Some(stream) = stream {
                    self.keep(sid, stream);
                }
            }
            PeerEvent::Message { sid, conn_id, message } => {
                let current = self.peers.get(&sid).and_then(|p| p.connection.as_ref()).map(|c| c.0);
                if current == Some(conn_id) {
                    let now = self.now_ms();
                    self.election.receive(now, sid, &message);
                }
            }
            PeerEvent::Closed { sid, conn_id } => {
                if let Some(peer) = self.peers.get_mut(&sid) {
                    if peer.connection.as_ref().is_some_and(|c| c.0 == conn_id) {
                        debug!(peer = sid, "election connection closed");
                        peer.connection = None;
                    }
                }
                // Servers outside the configuration (observers without an id, strays) are kept
                // only while connected, so a stream of them cannot grow the table.
                let gone = self.peers.get(&sid).is_some_and(|p| p.connection.is_none() && !p.connecting);
                if gone && !self.settings.peers.contains_key(&sid) {
                    self.peers.remove(&sid);
                }
            }
        }
    }

    /// Makes `stream` the connection to `sid`, closing any older one.
    fn keep(&mut self, sid: i64, stream: TcpStream) {
        self.next_conn_id += 1;
        let conn_id = self.next_conn_id;
        let events = self.events_tx.clone();
        let peer = self.peer(sid);
        let (close_tx, close_rx) = oneshot::channel();
        peer.connection = Some((conn_id, close_tx));
        let latest = peer.latest.subscribe();
        debug!(peer = sid, conn_id, "election connection up");
        tokio::spawn(serve_connection(sid, conn_id, stream, latest, events, close_rx));
    }

    /// Starts a connect to `sid` unless one is live or under way.
    fn connect(&mut self, sid: i64) {
        let settings = self.settings.clone();
        let events = self.events_tx.clone();
        let peer = self.peer(sid);
        if peer.connection.is_some() || peer.connecting {
            return;
        }
        let Some(address) = peer.address.clone() else {
            debug!(peer = sid, "no election address known for this server");
            return;
        };
        peer.connecting = true;
        tokio::spawn(async move {
            let stream = call(&settings, sid, &address).await;
            // The election task is gone when this fails: nothing is waiting for the result.
            let _ = events.send(PeerEvent::Connected { sid, stream }).await;
        });
    }

    fn act(&mut self) {
        for action in self.election.take_actions() {
            match action {
                Action::Send { to, notification } => {
                    let mut bytes = BytesMut::new();
                    notification.encode(&mut bytes);
                    self.peer(to).latest.send_replace(Some(bytes.freeze()));
                    self.connect(to);
                }
                Action::Decided(outcome) => {
                    info!(
                        sid = self.settings.my_sid,
                        state = outcome.state.as_str(),
                        leader = outcome.vote.leader,
                        zxid = format_args!("0x{:x}", outcome.vote.zxid),
                        round = outcome.vote.election_epoch,
                        took_ms = outcome.took_ms,
                        "{} - LEADER ELECTION TOOK - {} MS",
                        outcome.state.as_str().to_uppercase(),
                        outcome.took_ms
                    );
                    self.last_outcome = Some(outcome);
                }
            }
        }
        let status = status_of(&self.election, self.last_outcome);
        self.status_tx.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Connects to `sid` and sends the handshake; keeps the stream only when this server's sid is the
/// larger (`startConnection`).
async fn call(settings: &PeerSettings, sid: i64, address: &str) -> Option<TcpStream> {
    let connecting = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let handshake = Handshake {
            protocol_version: PROTOCOL_VERSION_V1,
            sid: settings.my_sid,
            addresses: vec![settings.announce.clone()],
        };
        let mut bytes = BytesMut::new();
        handshake.encode(&mut bytes);
        stream.write_all(&bytes).await?;
        Ok::<_, std::io::Error>(stream)
    };
    match tokio::time::timeout(settings.connect_timeout, connecting).await {
        Ok(Ok(stream)) if sid < settings.my_sid => Some(stream),
        Ok(Ok(_)) => {
            debug!(
                peer = sid,
                "larger sid: dropping my connection and waiting for it to call"
            );
            None
        }
        Ok(Err(error)) => {
            debug!(peer = sid, address, %error, "cannot open an election connection");
            None
        }
        Err(_) => {
            debug!(peer = sid, address, "election connect timed out");
            None
        }
    }
}

async fn accept_loop(listener: TcpListener, settings: Arc<PeerSettings>, events: mpsc::Sender<PeerEvent>) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    let mut observer_ids = -1i64;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "election listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            warn!(%remote, "election listener: too many connections in their handshake; closing this one");
            continue;
        };
        let settings = settings.clone();
        let events = events.clone();
        let observer_id = observer_ids;
        observer_ids -= 1;
        tokio::spawn(async move {
            let _permit = permit;
            let read = tokio::time::timeout(settings.connect_timeout, read_handshake(stream)).await;
            let (mut stream, handshake) = match read {
                Ok(Ok(read)) => read,
                Ok(Err(error)) => {
                    warn!(%remote, %error, "election connection: bad handshake; closing it");
                    return;
                }
                Err(_) => {
                    warn!(%remote, "election connection: no handshake in time; closing it");
                    return;
                }
            };
            let sid = if handshake.sid == OBSERVER_ID {
                observer_id
            } else {
                handshake.sid
            };
            if sid < settings.my_sid {
                // This server wins the challenge: close, and call back (`handleConnection`).
                let _ = stream.shutdown().await;
                drop(stream);
                let _ = events
                    .send(PeerEvent::CallBack {
                        sid,
                        addresses: handshake.addresses,
                    })
                    .await;
            } else if sid == settings.my_sid {
                warn!(%remote, "election connection from a server with my own id; closing it");
            } else {
                let _ = stream.set_nodelay(true);
                let _ = events.send(PeerEvent::Incoming { sid, stream }).await;
            }
        });
    }
}

async fn read_handshake(mut stream: TcpStream) -> std::io::Result<(TcpStream, Handshake)> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match decode_handshake(&buf) {
            Ok(HandshakeProgress::Done(handshake, used)) => {
                // Only the bytes the decoder asked for were read, so the peer's first message is
                // still unread in the socket.
                debug_assert_eq!(used, buf.len());
                return Ok((stream, handshake));
            }
            Ok(HandshakeProgress::NeedBytes(total)) => {
                debug_assert!(total <= 20 + HANDSHAKE_ADDRESS_MAX_BYTES);
                let start = buf.len();
                buf.resize(total, 0);
                stream.read_exact(&mut buf[start..]).await?;
            }
            Err(error) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string())),
        }
    }
}

/// Runs one election connection until it breaks, the peer is replaced, or the election stops.
async fn serve_connection(
    sid: i64,
    conn_id: u64,
    stream: TcpStream,
    latest: watch::Receiver<Option<Bytes>>,
    events: mpsc::Sender<PeerEvent>,
    close: oneshot::Receiver<()>,
) {
    let (reader, writer) = stream.into_split();
    let mut reading = tokio::spawn(read_messages(sid, conn_id, reader, events.clone()));
    tokio::select! {
        result = write_messages(writer, latest) => {
            if let Err(error) = result {
                debug!(peer = sid, %error, "election connection: write failed");
            }
        }
        _ = close => {}
        _ = &mut reading => {}
    }
    reading.abort();
    // The election task may be gone (stopping); then nobody needs to know.
    let _ = events.send(PeerEvent::Closed { sid, conn_id }).await;
}

async fn write_messages(mut writer: OwnedWriteHalf, mut latest: watch::Receiver<Option<Bytes>>) -> std::io::Result<()> {
    // The current value is the last message for this peer, sent or not: send it (again) first.
    loop {
        let message = latest.borrow_and_update().clone();
        if let Some(message) = message {
            let mut framed = BytesMut::with_capacity(4 + message.len());
            framed.extend_from_slice(&(message.len() as i32).to_be_bytes());
            framed.extend_from_slice(&message);
            writer.write_all(&framed).await?;
        }
        if latest.changed().await.is_err() {
            return Ok(());
        }
    }
}

async fn read_messages(sid: i64, conn_id: u64, mut reader: OwnedReadHalf, events: mpsc::Sender<PeerEvent>) {
    loop {
        let length = match reader.read_i32().await {
            Ok(length) => length,
            Err(_) => return,
        };
        let length = match check_message_length(length) {
            Ok(length) => length,
            Err(error) => {
                warn!(peer = sid, %error, "election connection: bad message length; closing it");
                return;
            }
        };
        let mut message = vec![0; length];
        if reader.read_exact(&mut message).await.is_err() {
            return;
        }
        let event = PeerEvent::Message {
            sid,
            conn_id,
            message: Bytes::from(message),
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
