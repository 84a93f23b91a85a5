//! A quorum member's life (ZooKeeper's `QuorumPeer.run`): look for a leader with the election,
//! then lead or follow it; serve clients only once synced (a leader once a quorum acked
//! NEWLEADER, a follower once the leader's UPTODATE came); when the role ends, stop serving,
//! rebuild the state from disk and look again.
//!
//! One tree: during discovery and sync the replication thread's `ReplicaStore` holds it; when
//! serving starts it is handed to the request pipeline (`Replica::hand_over`), which from then on
//! applies every commit. The log and the epochs stay with the replication thread, which makes
//! every txn durable before it acks (follower) or counts its own ack (leader). When the role
//! ends the pipeline stops (taking its shutdown snapshot) and the state is rebuilt from the
//! snapshots and the log, which hold everything the tree held.
//!
//! Owns: the election handle, the store between roles, and the channels of one role's period.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::{core_settings, create_data_dirs, persistence, NodeError, Serving, Signals};
use crate::admin::four_letter::{AdminState, MemberView, QuorumInfo};
use crate::config::{Config, LearnerType, QuorumAddress};
use crate::proto::election::ServerState;
use crate::proto::quorum::RequestHead;
use crate::proto::Id;
use crate::server::core::{Core, Forward, Role};
use crate::server::metrics::ids;
use crate::server::net::Clock;
use crate::server::replication::{LeaderInbox, TxnSink, Upstream, ZabEvent, ZabInlet, ZabLink};
use crate::storage::replica::ReplicaStore;
use crate::storage::{Durability, Layout, RECENT_SYNCS_MAX};
use crate::tree::DataTree;
use crate::zab::election::{Election, ElectionTimeouts};
use crate::zab::follower::{follow, outgoing, FollowerSettings, FollowerStore, StoreError};
use crate::zab::leader::LearnerId;
use crate::zab::leading::{inputs, lead, LeaderStatus, LeaderStore, LeadingSettings};
use crate::zab::learner::{LearnerStart, Proposal};
use crate::zab::peers::{self, Command, ElectionHandle, PeerSettings};
use crate::zab::quorum::QuorumVerifier;

/// Events a replication thread holds for the pipeline before it delivers them (the core task's
/// rounds take as many).
const HELD_EVENTS_MAX: usize = 1_024;
/// `zookeeper.cnxTimeout`: how long an election connect or handshake may take.
const ELECTION_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra bytes a quorum packet may have beyond `jute.maxbuffer` (ZooKeeper's `zookeeper.jute.maxbuffer.extrasize`).
const PACKET_EXTRA_BYTES: usize = 1024;

/// Runs this server as a member of the ensemble in `config` until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), NodeError> {
    let sid = read_myid(&config)?;
    let me = config
        .servers
        .get(&sid)
        .ok_or_else(|| NodeError::Quorum(format!("myid is {sid}, but there is no server.{sid} line")))?
        .clone();
    if me.learner_type == LearnerType::Observer || config.peer_type == LearnerType::Observer {
        return Err(NodeError::Quorum("observers are not supported yet; run this server as a participant".into()));
    }
    if config.init_limit_ticks.is_none() || config.sync_limit_ticks.is_none() {
        return Err(NodeError::Quorum("a quorum needs initLimit and syncLimit".into()));
    }
    let verifier = verifier(&config)?;
    let layout = create_data_dirs(&config)?;
    let started = Instant::now();
    let mut store = blocking({
        let (layout, extended) = (layout.clone(), config.extended_types_enabled);
        move || ReplicaStore::open(layout, extended).map_err(NodeError::from)
    })
    .await?;
    crate::storage::snapshot::remove_temporary_files(&layout.snapshot_dir);
    let (_, current_epoch) = store.epochs()?;
    let last_logged_zxid = store.last_logged_zxid()?;
    info!(
        sid,
        last_zxid = format_args!("{last_logged_zxid:#x}"),
        current_epoch,
        nodes = store.tree().node_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "data restored"
    );
    let election = Election::new(sid as i64, verifier.clone(), ElectionTimeouts::default(), last_logged_zxid, current_epoch);
    let address = me.addresses.first().ok_or_else(|| NodeError::Quorum(format!("server.{sid} has no address")))?;
    let listen_host = if config.quorum_listen_on_all_ips { "0.0.0.0" } else { address.host.as_str() };
    let election_listen = resolve(listen_host, address.election_port)?;
    let peers_settings = PeerSettings {
        my_sid: sid as i64,
        listen: election_listen,
        announce: host_port(&address.host, address.election_port),
        peers: config
            .servers
            .iter()
            .filter(|(&other, _)| other != sid)
            .filter_map(|(&other, spec)| spec.addresses.first().map(|a| (other as i64, host_port(&a.host, a.election_port))))
            .collect(),
        connect_timeout: ELECTION_CONNECT_TIMEOUT,
    };
    let mut election = peers::start(peers_settings, election)
        .await
        .map_err(|source| NodeError::Bind { address: election_listen.to_string(), source })?;
    let (stopping_tx, stopping) = watch::channel(false);
    let signals = Signals::new();
    tokio::spawn(async move {
        signals.wait().await;
        let _ = stopping_tx.send(true);
    });
    let member = Participant {
        config: &config,
        layout: &layout,
        sid,
        me: address.clone(),
        verifier,
        clock: Clock::new(),
        stopping,
    };
    info!(sid, members = config.servers.len(), "ferrokeeper {} quorum member: looking for a leader", env!("CARGO_PKG_VERSION"));
    loop {
        let outcome = match member.look(&mut election, &store).await? {
            Some(outcome) => outcome,
            None => break,
        };
        let looked = Instant::now();
        store = match outcome {
            (ServerState::Leading, _, took_ms) => member.lead(store, &election, took_ms).await?,
            (ServerState::Following, leader, took_ms) => member.follow(store, &election, leader, took_ms).await?,
            (state, _, _) => {
                warn!(?state, "the election ended in a state this server does not run; looking again");
                store
            }
        };
        if *member.stopping.borrow() {
            break;
        }
        // A role that ends at once (a leader that cannot be reached) must not spin elections.
        if looked.elapsed() < Duration::from_millis(config.tick_time_ms as u64) {
            tokio::time::sleep(Duration::from_millis(config.tick_time_ms as u64)).await;
        }
    }
    info!("stopped");
    Ok(())
}

/// `dataDir/myid`: this server's id.
fn read_myid(config: &Config) -> Result<u64, NodeError> {
    let path = config.data_dir.join("myid");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| NodeError::Quorum(format!("cannot read {}: {e} (a quorum member needs its id there)", path.display())))?;
    text.trim()
        .parse()
        .map_err(|_| NodeError::Quorum(format!("{}: {:?} is not a server id", path.display(), text.trim())))
}

/// The ensemble's quorum rule: majority, or hierarchical with `group.N`/`weight.N` lines.
fn verifier(config: &Config) -> Result<QuorumVerifier, NodeError> {
    let members = config.servers.values().map(|spec| crate::zab::quorum::Member {
        sid: spec.id as i64,
        participant: spec.learner_type == LearnerType::Participant,
        line: spec.to_string(),
    });
    if config.groups.is_empty() {
        return Ok(QuorumVerifier::majority(members, 0));
    }
    let groups: BTreeMap<i64, Vec<i64>> =
        config.groups.iter().map(|(&gid, sids)| (gid as i64, sids.iter().map(|&s| s as i64).collect())).collect();
    let weights: BTreeMap<i64, u64> = config.weights.iter().map(|(&sid, &w)| (sid as i64, w)).collect();
    QuorumVerifier::hierarchical(members, &groups, &weights, 0).map_err(|e| NodeError::Quorum(e.to_string()))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, NodeError> {
    let text = host_port(host, port);
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| NodeError::Quorum(format!("{text} does not resolve to an address")))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, NodeError> + Send + 'static) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Quorum(format!("a storage task failed: {e}")))?
}

/// What every role of this member shares.
struct Participant<'a> {
    config: &'a Config,
    layout: &'a Layout,
    sid: u64,
    me: QuorumAddress,
    verifier: QuorumVerifier,
    clock: Clock,
    stopping: watch::Receiver<bool>,
}

/// The state the replication thread hands to the request pipeline when serving starts.
struct HandOver {
    tree: DataTree,
    sessions: Vec<(i64, i32)>,
    zxid: i64,
    epoch: i64,
}

impl Participant<'_> {
    /// One election round; `None` once the server is stopping.
    /// One election round: the state decided, the leader and how long it took (ms); `None`
    /// once the server is stopping.
    async fn look(&self, election: &mut ElectionHandle, store: &ReplicaStore) -> Result<Option<(ServerState, i64, u64)>, NodeError> {
        let last_logged_zxid = store.last_logged_zxid()?;
        let (_, current_epoch) = store.epochs()?;
        let previous = election.status.borrow_and_update().last_outcome;
        if election.commands.send(Command::Look { last_logged_zxid, current_epoch }).await.is_err() {
            return Err(NodeError::Quorum("the election task has stopped".into()));
        }
        let mut stopping = self.stopping.clone();
        let decided = tokio::select! {
            status = election.status.wait_for(|s| {
                s.state != ServerState::Looking && s.last_outcome.is_some() && s.last_outcome != previous
            }) => status.map(|s| *s).ok(),
            _ = stopping.wait_for(|stop| *stop) => return Ok(None),
        };
        let Some(outcome) = decided.and_then(|s| s.last_outcome) else {
            return Err(NodeError::Quorum("the election task has stopped".into()));
        };
        let state = match outcome.state {
            ServerState::Leading => "LEADING",
            ServerState::Following => "FOLLOWING",
            ServerState::Observing => "OBSERVING",
            ServerState::Looking => "LOOKING",
        };
        // ZooKeeper's line, which operators grep for.
        info!(leader = outcome.vote.leader, zxid = format_args!("{:#x}", outcome.vote.zxid), "{state} - LEADER ELECTION TOOK - {} MS", outcome.took_ms);
        Ok(Some((outcome.state, outcome.vote.leader, outcome.took_ms)))
    }

    fn core(&self, handed: HandOver, role: Role) -> Core {
        let now = self.clock.now();
        // The server id is the top byte of the session ids this server makes.
        let mut core = Core::restored(core_settings(self.config, self.sid as u8), handed.tree, &handed.sessions, handed.zxid, None, now);
        core.set_role(role);
        // As ZooKeeper's `QuorumPeer.initConfigInZKDatabase`: clients read the ensemble's
        // configuration at /zookeeper/config (getConfig), version -1, mzxid 0.
        let config = self.verifier.config_string();
        let _ = core.tree.set_data("/zookeeper/config", Some(config.as_bytes()), -1, 0, now.wall_ms, &mut Vec::new());
        core
    }

    fn admin(&self, server_state: &'static str, info: QuorumInfo) -> AdminState {
        let mut admin = AdminState::new(self.config.clone());
        admin.server_state = server_state;
        admin.quorum = Some(info);
        admin.last_snapshot = crate::storage::snapshot::list(&self.layout.snapshot_dir)
            .into_iter()
            .next_back()
            .and_then(|(zxid, path)| super::modified_secs(&path).map(|secs| (zxid, secs)));
        admin
    }

    /// The ensemble as this member's admin commands show it while it serves under `leader_sid`.
    fn quorum_info(&self, leader_sid: i64, epoch: i64, leader: Option<Arc<Mutex<LeaderStatus>>>) -> QuorumInfo {
        let members = self
            .config
            .servers
            .values()
            .filter_map(|spec| {
                let address = spec.addresses.first()?;
                let client_address = match (&spec.client_address, spec.id == self.sid) {
                    (Some(client), _) => client.to_string(),
                    (None, true) => super::client_address(self.config),
                    (None, false) => String::new(),
                };
                Some(MemberView {
                    sid: spec.id as i64,
                    quorum_address: host_port(&address.host, address.quorum_port),
                    election_address: host_port(&address.host, address.election_port),
                    client_address,
                    learner_type: spec.learner_type.as_str(),
                })
            })
            .collect();
        QuorumInfo {
            my_sid: self.sid as i64,
            leader_sid,
            epoch,
            quorum_size: self.verifier.voters().count(),
            members,
            leader,
        }
    }

    fn limits(&self) -> (u64, u64, Duration) {
        let tick = Duration::from_millis(self.config.tick_time_ms as u64);
        let init = u64::from(self.config.init_limit_ticks.unwrap_or(10));
        let sync = u64::from(self.config.sync_limit_ticks.unwrap_or(5));
        (init, sync, tick)
    }

    fn data_max_bytes(&self) -> usize {
        self.config.jute_max_buffer_bytes as usize + PACKET_EXTRA_BYTES
    }

    /// Leads until the role ends or the server stops; returns the store rebuilt from disk.
    async fn lead(&self, store: ReplicaStore, election: &ElectionHandle, election_ms: u64) -> Result<ReplicaStore, NodeError> {
        let (init_ticks, sync_ticks, tick) = self.limits();
        let start = store.leader_start(self.sid as i64, self.verifier.clone(), init_ticks, sync_ticks)?;
        let listen_host = if self.config.quorum_listen_on_all_ips { "0.0.0.0" } else { self.me.host.as_str() };
        let settings = LeadingSettings {
            listen: resolve(listen_host, self.me.quorum_port)?,
            tick,
            data_max_bytes: self.data_max_bytes(),
        };
        let (sender, receiver) = inputs().map_err(|e| NodeError::Quorum(format!("cannot make the leading thread's input queue: {e}")))?;
        let inbox = LeaderInbox::start(sender.clone());
        let status = Arc::new(Mutex::new(LeaderStatus::default()));
        let shown_status = status.clone();
        let period = Period::new(store);
        let (mut replica, stop) = (period.replica, period.stop.clone());
        let thread_stop = stop.clone();
        let done = spawn_role("leader", move || {
            let result = lead(&settings, start, &mut replica, (sender, receiver), &status, &thread_stop);
            (result.map_err(|e| e.to_string()).err(), replica)
        });
        let log = period.log.clone();
        let sink = |durability| TxnSink::Leader { inbox: inbox.clone(), durability, log };
        let upstream = Upstream::Leader(inbox.clone());
        let channels = (period.handover, period.events, period.inlet, period.durability, period.local_sessions);
        let sid = self.sid as i64;
        let info = move |epoch| self.quorum_info(sid, epoch, Some(shown_status));
        self.serve_period(channels, done, stop, election, "leader", sink, upstream, info, move |core, epoch, _| {
            core.metrics.observe(ids::ELECTION_TIME, election_ms as i64);
            core.start_epoch(epoch)
        })
        .await
    }

    /// Follows `leader` until the role ends or the server stops; returns the store rebuilt from disk.
    async fn follow(
        &self,
        store: ReplicaStore,
        election: &ElectionHandle,
        leader: i64,
        election_ms: u64,
    ) -> Result<ReplicaStore, NodeError> {
        let Some(address) = u64::try_from(leader).ok().and_then(|l| self.config.servers.get(&l)).and_then(|s| s.addresses.first()) else {
            warn!(leader, "the elected leader is not in the configuration; looking again");
            return Ok(store);
        };
        let (init_ticks, sync_ticks, tick) = self.limits();
        let settings = FollowerSettings {
            leader: host_port(&address.host, address.quorum_port),
            init_limit: tick * init_ticks as u32,
            sync_limit: tick * sync_ticks as u32,
            data_max_bytes: self.data_max_bytes(),
        };
        let start = LearnerStart {
            my_sid: self.sid as i64,
            config_version: 0,
            accepted_epoch: store.epochs()?.0,
            current_epoch: store.epochs()?.1,
            last_logged_zxid: store.last_logged_zxid()?,
        };
        let (queue, packets) = outgoing();
        let period = Period::new(store);
        let (mut replica, stop) = (period.replica, period.stop.clone());
        let thread_stop = stop.clone();
        let thread_queue = queue.clone();
        let done = spawn_role("follower", move || {
            let result = follow(&settings, start, &mut replica, (thread_queue, packets), &thread_stop);
            (result.map_err(|e| e.to_string()).err(), replica)
        });
        let log = period.log.clone();
        let sink = |durability| TxnSink::Follower { durability, log };
        let upstream = Upstream::Follower(queue);
        let channels = (period.handover, period.events, period.inlet, period.durability, period.local_sessions);
        let info = move |epoch| self.quorum_info(leader, epoch, None);
        self.serve_period(channels, done, stop, election, "follower", sink, upstream, info, move |core, _, synced_ms| {
            core.metrics.observe(ids::ELECTION_TIME, election_ms as i64);
            core.metrics.observe(ids::FOLLOWER_SYNC_TIME, synced_ms);
        })
        .await
    }

    /// Waits for the replication thread to hand the state over, serves clients from then on,
    /// and, once the thread ends or the server stops, stops serving and rebuilds the store.
    #[allow(clippy::too_many_arguments)]
    async fn serve_period(
        &self,
        (handover, events, inlet, durability, local_sessions): Channels,
        mut done: oneshot::Receiver<(Option<String>, Replica)>,
        stop: Arc<AtomicBool>,
        election: &ElectionHandle,
        server_state: &'static str,
        sink: impl FnOnce(watch::Receiver<Durability>) -> TxnSink,
        upstream: Upstream,
        info: impl FnOnce(i64) -> QuorumInfo,
        prepare: impl FnOnce(&mut Core, i64, i64),
    ) -> Result<ReplicaStore, NodeError> {
        let period_started = Instant::now();
        let mut stopping = self.stopping.clone();
        let role = if server_state == "follower" { Role::Follower } else { Role::Standalone };
        let mut serving = None;
        // The thread's result, once it ended (a oneshot must not be polled again after that).
        let mut ended = None;
        tokio::select! {
            handed = handover => {
                if let Ok(handed) = handed {
                    let _ = election.commands.send(Command::SetPeerEpoch(handed.epoch)).await;
                    let epoch = handed.epoch;
                    let mut core = self.core(handed, role);
                    let synced_ms = period_started.elapsed().as_millis() as i64;
                    info!(epoch, synced_ms, "synced as {server_state}");
                    prepare(&mut core, epoch, synced_ms);
                    let now = self.clock.now();
                    let persistence = persistence(self.config, self.layout, sink(durability), false, now);
                    let link = ZabLink { events, inlet, upstream, local_sessions };
                    let started = Instant::now();
                    match Serving::start(self.config, core, self.admin(server_state, info(epoch)), persistence, Some(link), self.clock, started).await {
                        Ok(s) => {
                            info!(address = %s.local, epoch, "serving clients as {server_state}");
                            serving = Some(s);
                        }
                        Err(e) => warn!("cannot serve clients: {e}"),
                    }
                }
            }
            result = &mut done => ended = Some(result),
            _ = stopping.wait_for(|stop| *stop) => {}
        }
        if serving.is_some() && ended.is_none() {
            tokio::select! {
                result = &mut done => ended = Some(result),
                _ = stopping.wait_for(|stop| *stop) => {}
            }
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(serving) = serving {
            info!("{server_state} role ending: closing client connections");
            serving.stop().await;
        }
        let result = match ended {
            Some(result) => result,
            None => done.await,
        };
        let (error, replica) =
            result.map_err(|_| NodeError::Quorum(format!("the {server_state} thread ended without its store")))?;
        match error {
            Some(e) if !*self.stopping.borrow() => warn!("no longer {server_state}: {e}"),
            _ => info!("no longer {server_state}"),
        }
        let mut store = replica.store;
        blocking(move || {
            store.reload()?;
            Ok(store)
        })
        .await
    }
}

/// The pipeline's ends of a period's channels: the hand-over, the events (and the threads' way
/// into the pipeline they come through), the durability reports and the local sessions a
/// follower reports in its pings.
type Channels = (
    oneshot::Receiver<HandOver>,
    mpsc::Receiver<ZabEvent>,
    Arc<ZabInlet>,
    watch::Receiver<Durability>,
    Arc<Mutex<Vec<(i64, i32)>>>,
);

/// The channels of one role's period and the store wrapped for its thread.
struct Period {
    replica: Replica,
    handover: oneshot::Receiver<HandOver>,
    events: mpsc::Receiver<ZabEvent>,
    inlet: Arc<ZabInlet>,
    durability: watch::Receiver<Durability>,
    stop: Arc<AtomicBool>,
    log: Arc<crate::storage::txn_log::TxnLog>,
    local_sessions: Arc<Mutex<Vec<(i64, i32)>>>,
}

impl Period {
    fn new(store: ReplicaStore) -> Period {
        let (inlet, events) = ZabInlet::new();
        let (handover_tx, handover) = oneshot::channel();
        let zxid = store.last_processed_zxid();
        let (durability_tx, durability) = watch::channel(Durability { durable_zxid: zxid, ..Durability::default() });
        let log = store.log().clone();
        let local_sessions = Arc::new(Mutex::new(Vec::new()));
        Period {
            replica: Replica {
                store,
                inlet: inlet.clone(),
                held: Vec::new(),
                committed: false,
                on_serving: Some(handover_tx),
                handed_over: false,
                durability: durability_tx,
                last_committed: zxid,
                local_sessions: local_sessions.clone(),
            },
            handover,
            events,
            inlet,
            durability,
            stop: Arc::new(AtomicBool::new(false)),
            log,
            local_sessions,
        }
    }
}

/// Runs a role's blocking loop on a thread of its own (it writes to disk); its result comes back
/// on the receiver.
fn spawn_role(
    name: &'static str,
    run: impl FnOnce() -> (Option<String>, Replica) + Send + 'static,
) -> oneshot::Receiver<(Option<String>, Replica)> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
        let _ = tx.send(run());
    });
    if let Err(e) = spawned {
        warn!("cannot start the {name} thread: {e}");
    }
    rx
}

/// The store as a leading or following thread sees it: the `ReplicaStore` until serving starts,
/// then the log and epochs still, with the tree handed to the request pipeline and every commit,
/// request and answer sent to it.
struct Replica {
    store: ReplicaStore,
    /// The way into the request pipeline, and the events held for it until the thread has
    /// handled what it has buffered (`deliver`).
    inlet: Arc<ZabInlet>,
    held: Vec<ZabEvent>,
    /// A leader's commits reported through `durability` since the last `deliver`.
    committed: bool,
    on_serving: Option<oneshot::Sender<HandOver>>,
    handed_over: bool,
    durability: watch::Sender<Durability>,
    last_committed: i64,
    local_sessions: Arc<Mutex<Vec<(i64, i32)>>>,
}

fn pipeline_gone() -> StoreError {
    StoreError("the request pipeline has stopped".into())
}

impl Replica {
    fn hand_over(&mut self, epoch: i64) {
        let (tree, sessions, zxid) = self.store.hand_over();
        self.last_committed = zxid;
        self.handed_over = true;
        if let Some(tx) = self.on_serving.take() {
            // The period may be ending already; then nobody serves.
            let _ = tx.send(HandOver { tree, sessions, zxid, epoch });
        }
    }

    /// Holds an event for the pipeline until the thread's `deliver` (or until a round's worth
    /// is held), so a burst of commits or forwarded requests makes one round.
    fn hold(&mut self, event: ZabEvent) -> Result<(), StoreError> {
        self.held.push(event);
        if self.held.len() >= HELD_EVENTS_MAX {
            return self.deliver_held();
        }
        Ok(())
    }

    /// Runs the held events through the pipeline, or sends them to its core task
    /// (`ZabInlet::deliver`).
    fn deliver_held(&mut self) -> Result<(), StoreError> {
        let held = std::mem::take(&mut self.held);
        self.inlet.deliver(held).map_err(|_| pipeline_gone())
    }

    fn timed_sync(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        FollowerStore::sync(&mut self.store)?;
        let ms = started.elapsed().as_millis() as i64;
        self.durability.send_modify(|d| {
            d.syncs += 1;
            d.recent_sync_ms.push_back(ms);
            if d.recent_sync_ms.len() > RECENT_SYNCS_MAX {
                d.recent_sync_ms.pop_front();
            }
        });
        Ok(())
    }
}

impl FollowerStore for Replica {
    fn persist_accepted_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        FollowerStore::persist_accepted_epoch(&mut self.store, epoch)
    }

    fn persist_current_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        FollowerStore::persist_current_epoch(&mut self.store, epoch)
    }

    fn load_snapshot(&mut self, stream: Bytes, zxid: i64) -> Result<(), StoreError> {
        self.store.load_snapshot(stream, zxid)
    }

    fn truncate(&mut self, zxid: i64) -> Result<(), StoreError> {
        self.store.truncate(zxid)
    }

    fn apply_unlogged(&mut self, proposal: Proposal) -> Result<(), StoreError> {
        self.store.apply_unlogged(proposal)
    }

    fn take_snapshot(&mut self) -> Result<(), StoreError> {
        self.store.take_snapshot()
    }

    fn append(&mut self, proposal: Proposal) -> Result<(), StoreError> {
        FollowerStore::append(&mut self.store, proposal)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.timed_sync()
    }

    fn commit(&mut self, zxid: i64) -> Result<(), StoreError> {
        if !self.handed_over {
            return FollowerStore::commit(&mut self.store, zxid);
        }
        let txn = self.store.take_committed(zxid)?;
        self.hold(ZabEvent::Committed(Box::new(txn)))
    }

    fn deliver(&mut self) -> Result<(), StoreError> {
        self.deliver_held()
    }

    fn touched_sessions(&mut self) -> Vec<(i64, i32)> {
        self.local_sessions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn serving(&mut self, epoch: i64) {
        self.store.serving(epoch);
        self.hand_over(epoch);
    }

    fn sync_done(&mut self) {
        if self.hold(ZabEvent::SyncDone).is_err() {
            warn!("a SYNC answer with no request pipeline to take it");
        }
    }

    fn revalidated(&mut self, session_id: i64, valid: bool) {
        if self.hold(ZabEvent::Revalidated { session_id, valid }).is_err() {
            warn!("a REVALIDATE answer with no request pipeline to take it");
        }
    }
}

impl LeaderStore for Replica {
    fn persist_accepted_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        FollowerStore::persist_accepted_epoch(&mut self.store, epoch)
    }

    fn persist_current_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        FollowerStore::persist_current_epoch(&mut self.store, epoch)
    }

    fn snapshot_stream(&mut self) -> Result<Bytes, StoreError> {
        if !self.handed_over {
            return self.store.snapshot_stream();
        }
        let (reply, answer) = oneshot::channel();
        self.hold(ZabEvent::Snapshot { zxid: self.last_committed, reply })?;
        self.deliver_held()?;
        answer.blocking_recv().map_err(|_| pipeline_gone())?.map_err(StoreError)
    }

    fn append(&mut self, proposal: Proposal) -> Result<(), StoreError> {
        FollowerStore::append(&mut self.store, proposal)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.timed_sync()
    }

    fn commit(&mut self, zxid: i64) -> Result<(), StoreError> {
        if !self.handed_over {
            self.last_committed = zxid;
            return FollowerStore::commit(&mut self.store, zxid);
        }
        self.store.take_committed(zxid)?;
        self.last_committed = zxid;
        // The pipeline applies its own txns, in zxid order, as their commits are reported (at
        // the end of this round, `deliver`).
        self.durability.send_modify(|d| d.durable_zxid = d.durable_zxid.max(zxid));
        self.committed = true;
        Ok(())
    }

    fn deliver(&mut self) -> Result<(), StoreError> {
        if std::mem::take(&mut self.committed) {
            self.held.push(ZabEvent::Durable);
        }
        self.deliver_held()
    }

    fn established(&mut self, epoch: i64) {
        self.store.established(epoch);
        self.hand_over(epoch);
    }

    fn request(&mut self, head: RequestHead, record: Bytes, authinfo: Vec<Id>) {
        let request = Forward {
            session_id: head.session_id,
            cxid: head.cxid,
            op: head.op,
            record,
            authinfo,
        };
        if self.hold(ZabEvent::Request(request)).is_err() {
            warn!("a forwarded request with no request pipeline to take it; dropped");
        }
    }

    fn touch(&mut self, sessions: Vec<(i64, i32)>) {
        if !sessions.is_empty() && self.handed_over {
            let _ = self.hold(ZabEvent::Touch(sessions));
        }
    }

    fn revalidate(&mut self, learner: LearnerId, session_id: i64, _timeout_ms: i32) {
        if self.hold(ZabEvent::Revalidate { learner, session_id }).is_err() {
            warn!("a revalidation with no request pipeline to answer it");
        }
    }
}
