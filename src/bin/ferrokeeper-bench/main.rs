//! `ferrokeeper-bench`: a load generator for any ZooKeeper-compatible server (ZooKeeper itself or
//! ferrokeeper). Many sessions, many requests in flight per session, latencies in a fixed-size
//! histogram, a progress line each second, one JSON line per result. Every phase is bounded by
//! time or count, every buffer by the window: the benchmark stops by itself.
//!
//! `scripts/bench.sh` drives it against both servers and builds the comparison table.

mod floor_log;
mod histogram;
mod null_ensemble;
mod null_server;
mod report;
mod wire;
mod workload;

use std::collections::VecDeque;
use std::io::{IsTerminal, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use clap::{Parser, Subcommand};
use ferrokeeper::jute::Decode;
use ferrokeeper::proto::consts::XID_NOTIFICATION;
use ferrokeeper::proto::ReplyHeader;
use floor_log::FloorLog;
use histogram::Histogram;
use report::{CpuSample, Outcome};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use wire::{encode_request, source_ip, Request, Session, WireError};
use workload::{Picker, Workload};

/// ZooKeeper's NodeExists (setup tolerates nodes left by an earlier run).
const NODE_EXISTS: i32 = -110;
/// A server that answers nothing for this long has failed the run.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Setup writes in flight at once.
const SETUP_WINDOW: usize = 500;

#[derive(Parser, Debug)]
#[command(version, about = "Load generator for ZooKeeper-compatible servers")]
struct Cli {
    /// Server address.
    #[arg(long, global = true, default_value = "127.0.0.1:2181")]
    server: SocketAddr,
    /// Label of the server in results ("zookeeper", "ferrokeeper", ...).
    #[arg(long, global = true, default_value = "server")]
    label: String,
    /// Pid of the server, to report its CPU use during the measured window.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Whether the server makes writes durable before answering (recorded in the results).
    #[arg(long, global = true, default_value_t = true, action = clap::ArgAction::Set)]
    durable: bool,
    /// Append result JSON lines to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Spread connections over this many 127.1.x.y source addresses (1 = 127.0.0.1 only).
    #[arg(long, global = true, default_value_t = 1)]
    source_ips: usize,
    /// Generator worker threads.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Request load: many sessions, a window of requests in flight.
    Load {
        /// Which requests.
        #[arg(value_enum)]
        workload: Workload,
        /// Label of the row ("throughput", "latency").
        #[arg(long, default_value = "throughput")]
        mode: String,
        /// Sessions.
        #[arg(long, default_value_t = 32)]
        sessions: usize,
        /// Requests in flight, summed over all sessions.
        #[arg(long, default_value_t = 1_000)]
        outstanding: usize,
        /// Unmeasured warm-up (JIT, caches).
        #[arg(long, default_value_t = 2.0)]
        warmup_secs: f64,
        /// Measured window (populate ignores it and runs to `count`).
        #[arg(long, default_value_t = 8.0)]
        secs: f64,
        /// Data bytes per create/setData.
        #[arg(long, default_value_t = 100)]
        data_bytes: usize,
        /// Keys the key workloads spread over.
        #[arg(long, default_value_t = 1_000)]
        keys: u64,
        /// Children of the node getChildren lists.
        #[arg(long, default_value_t = 1_000)]
        children: u64,
        /// Nodes populate creates; the create workload's cap on nodes per run.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Seed of the key choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Watch fan-out: `sessions` watchers on one node; time from setData to the last event.
    Watch {
        /// Watching sessions.
        #[arg(long, default_value_t = 1_000)]
        sessions: usize,
        /// Rounds (one setData each).
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Connection storm: `sessions` sessions connect at once.
    Connect {
        /// Sessions.
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
    },
    /// The machine's floor for the latency rows: round trips of a getData-sized frame, one in
    /// flight, through this generator's client code against a server that only echoes (a blocking
    /// thread in this process, on loopback). No ZooKeeper server can answer faster than this.
    RttFloor {
        /// Measured window.
        #[arg(long, default_value_t = 8.0)]
        secs: f64,
        /// Also append and fdatasync one record per round trip to a preallocated file in this
        /// directory before echoing (the floor of a durable write with one in flight).
        #[arg(long)]
        sync_dir: Option<PathBuf>,
    },
    /// The machine's floor for the watch fan-out: `sessions` connections read by this generator's
    /// watcher code, and a server that does nothing but write one event frame to each of them
    /// per round (blocking threads in this process, one per core, each writing to its share of
    /// the connections). No server can deliver the events faster than this on this machine.
    WatchFloor {
        /// Watching connections.
        #[arg(long, default_value_t = 1_000)]
        sessions: usize,
        /// Rounds.
        #[arg(long, default_value_t = 300)]
        rounds: usize,
        /// Writer threads (default: one per core).
        #[arg(long)]
        writers: Option<usize>,
        /// Start each round as a durable server must: a one-byte request over loopback, one
        /// record appended and fdatasynced to a preallocated file in this directory, then the
        /// events (the floor of a fan-out behind a durable setData).
        #[arg(long)]
        sync_dir: Option<PathBuf>,
    },
    /// The floor of the request rows: serve the client protocol on 127.0.0.1:`port` doing no
    /// work (no tree; replies of the real sizes), one blocking thread per connection, until
    /// killed. Drive it with `load` as any server; a row against it is the best any server
    /// process could do on this machine through this generator.
    NullServer {
        /// Port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Data bytes in each getData reply.
        #[arg(long, default_value_t = 100)]
        data_bytes: usize,
        /// Children in the getChildren reply.
        #[arg(long, default_value_t = 1_000)]
        children: u64,
        /// Append and fdatasync one record per write (create, setData, delete) to a
        /// preallocated file in this directory before answering it, as a durable server must.
        #[arg(long)]
        sync_dir: Option<PathBuf>,
        /// Where each connection's thread waits for its next request.
        #[arg(long, value_enum, default_value_t = null_server::Wait::Recv)]
        wait: null_server::Wait,
    },
    /// The floor of the ensemble rows: one member of a null ensemble (`null-server`s that
    /// replicate each write as a Zab quorum must: forwarded to the leader, proposed to every
    /// follower, synced to every member's log, committed on a majority's acks), until killed.
    /// The member whose `host` is `leader` leads.
    NullMember {
        /// This member's address (client and quorum ports on it; its last byte is its id).
        #[arg(long)]
        host: Ipv4Addr,
        /// Client port.
        #[arg(long)]
        port: u16,
        /// Quorum port (every member's).
        #[arg(long, default_value_t = 2888)]
        quorum_port: u16,
        /// The leader's address.
        #[arg(long)]
        leader: Ipv4Addr,
        /// Members in the ensemble.
        #[arg(long, default_value_t = 3)]
        members: usize,
        /// Where this member's log is synced.
        #[arg(long)]
        sync_dir: PathBuf,
        /// Data bytes in each getData reply.
        #[arg(long, default_value_t = 100)]
        data_bytes: usize,
        /// Children in the getChildren reply.
        #[arg(long, default_value_t = 1_000)]
        children: u64,
    },
    /// Time from `since_epoch_ms` (when the script killed an ensemble's leader) to the first
    /// acknowledged write through this server: a new session and a create of `path`.
    FirstWrite {
        /// Node to create (must not exist).
        #[arg(long, default_value = "/bench-failover")]
        path: String,
        /// Wall-clock ms since the epoch when the leader was killed.
        #[arg(long)]
        since_epoch_ms: u64,
        /// Give up after this long.
        #[arg(long, default_value_t = 120.0)]
        deadline_secs: f64,
    },
    /// Time from `since_epoch_ms` (when the script started the server) to the first served read.
    FirstRead {
        /// Node to read.
        #[arg(long, default_value = "/bench/big/0/0")]
        path: String,
        /// Wall-clock ms since the epoch when the server process was started.
        #[arg(long)]
        since_epoch_ms: u64,
        /// Give up after this long.
        #[arg(long, default_value_t = 600.0)]
        deadline_secs: f64,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if let Command::NullServer { port, data_bytes, children, sync_dir, wait } = &cli.command {
        null_server::serve(*port, *data_bytes, *children, sync_dir.as_deref(), *wait)?;
        return Ok(());
    }
    if let Command::NullMember {
        host,
        port,
        quorum_port,
        leader,
        members,
        sync_dir,
        data_bytes,
        children,
    } = &cli.command
    {
        null_ensemble::serve_member(&null_ensemble::MemberSpec {
            host: *host,
            port: *port,
            quorum_port: *quorum_port,
            leader: *leader,
            members: (*members).max(1),
            sync_dir,
            data_bytes: *data_bytes,
            children: *children,
        })?;
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(run(&cli))?;
    println!("{}", outcome.summary());
    if let Some(path) = &cli.json {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(file, "{}", outcome.to_json())?;
    }
    Ok(())
}

async fn run(cli: &Cli) -> Result<Outcome, WireError> {
    let mut outcome = match &cli.command {
        Command::Load {
            workload,
            mode,
            sessions,
            outstanding,
            warmup_secs,
            secs,
            data_bytes,
            keys,
            children,
            count,
            seed,
        } => {
            let spec = LoadSpec {
                workload: *workload,
                sessions: (*sessions).max(1),
                outstanding: (*outstanding).max(*sessions).max(1),
                warmup: Duration::from_secs_f64(*warmup_secs),
                window: Duration::from_secs_f64(*secs),
                data_bytes: *data_bytes,
                keys: (*keys).max(1),
                children: *children,
                count: *count,
                seed: *seed,
            };
            let mut outcome = run_load(cli, &spec).await?;
            outcome.mode = mode.clone();
            outcome
        }
        Command::Watch { sessions, rounds } => run_watch(cli, (*sessions).max(1), (*rounds).max(1)).await?,
        Command::Connect { sessions } => run_connect(cli, (*sessions).max(1)).await?,
        Command::RttFloor { secs, sync_dir } => {
            let log = sync_dir.as_deref().map(FloorLog::create).transpose()?;
            run_rtt_floor(Duration::from_secs_f64(*secs), log).await?
        }
        Command::WatchFloor {
            sessions,
            rounds,
            writers,
            sync_dir,
        } => {
            let writers = writers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let log = sync_dir.as_deref().map(FloorLog::create).transpose()?;
            run_watch_floor((*sessions).max(1), (*rounds).max(1), writers.max(1), log).await?
        }
        // Served by `main` before the runtime starts.
        Command::NullServer { .. } | Command::NullMember { .. } => {
            return Err(WireError::Protocol("null servers are not client commands".into()))
        }
        Command::FirstRead {
            path,
            since_epoch_ms,
            deadline_secs,
        } => run_first_read(cli, path, *since_epoch_ms, Duration::from_secs_f64(*deadline_secs)).await?,
        Command::FirstWrite {
            path,
            since_epoch_ms,
            deadline_secs,
        } => run_first_write(cli, path, *since_epoch_ms, Duration::from_secs_f64(*deadline_secs)).await?,
    };
    outcome.server = cli.label.clone();
    outcome.durable = cli.durable;
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------------
// Setup

/// Creates every path (parents first, in order), pipelined, tolerating NodeExists.
async fn create_all(session: &mut Session, paths: &[String], data: &[u8]) -> Result<(), WireError> {
    let mut out = BytesMut::with_capacity(SETUP_WINDOW * 160);
    for chunk in paths.chunks(SETUP_WINDOW) {
        for (i, path) in chunk.iter().enumerate() {
            encode_request(i as i32 + 1, &Request::Create { path, data }, &mut out);
        }
        session.writer.write_all(&out).await?;
        out.clear();
        let mut answered = 0;
        while answered < chunk.len() {
            let mut frame = tokio::time::timeout(READ_TIMEOUT, session.read_frame())
                .await
                .map_err(|_| WireError::Timeout(READ_TIMEOUT))??;
            let header = ReplyHeader::decode(&mut frame)?;
            if header.xid == XID_NOTIFICATION {
                continue;
            }
            if header.err != 0 && header.err != NODE_EXISTS {
                return Err(WireError::Protocol(format!(
                    "setup create {} failed: {}",
                    chunk[answered], header.err
                )));
            }
            answered += 1;
        }
    }
    Ok(())
}

async fn setup(cli: &Cli, spec: &LoadSpec) -> Result<(), WireError> {
    let mut session = Session::connect(cli.server, None, READ_TIMEOUT).await?;
    let mut paths = vec![workload::ROOT.to_string()];
    let data = vec![b'x'; spec.data_bytes];
    let mut path = String::new();
    match spec.workload {
        Workload::SetData | Workload::GetData | Workload::Exists | Workload::Mixed => {
            paths.push(workload::KEYS.into());
            for k in 0..spec.keys {
                workload::key_path(k, &mut path);
                paths.push(path.clone());
            }
        }
        Workload::GetChildren => {
            paths.push(workload::WIDE.into());
            paths.extend((0..spec.children).map(|c| format!("{}/child-{c:06}", workload::WIDE)));
        }
        Workload::Create => paths.push(workload::CREATED.into()),
        Workload::Populate => {
            paths.push(workload::BIG.into());
            let parents = spec.count.div_ceil(workload::FANOUT);
            paths.extend((0..parents).map(|p| format!("{}/{p}", workload::BIG)));
        }
    }
    create_all(&mut session, &paths, &data).await?;
    let _ = session.call(i32::MAX, &Request::CloseSession).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Request load

#[derive(Debug, Clone)]
struct LoadSpec {
    workload: Workload,
    sessions: usize,
    outstanding: usize,
    warmup: Duration,
    window: Duration,
    data_bytes: usize,
    keys: u64,
    children: u64,
    count: u64,
    seed: u64,
}

/// State every load session shares with the coordinator.
#[derive(Debug, Default)]
struct Shared {
    /// Stop sending; finish what is in flight.
    stop: AtomicBool,
    /// Completions count towards the result.
    measuring: AtomicBool,
    /// Completions so far (for the progress line).
    completed: AtomicU64,
    /// Next sequence number (create/populate node names).
    sequence: AtomicU64,
}

#[derive(Debug, Default)]
struct SessionResult {
    latency: Histogram,
    ops: u64,
    errors: u64,
}

/// One session's closed loop: keep `window` requests in flight, write them in batches, time each
/// from the write of its batch to its reply (replies come back in request order).
async fn load_session(
    mut session: Session,
    mut picker: Picker,
    window: usize,
    sequence_limit: Option<u64>,
    shared: Arc<Shared>,
) -> Result<SessionResult, WireError> {
    let mut result = SessionResult::default();
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut out = BytesMut::with_capacity(window * 200);
    let mut xid: i32 = 0;
    let mut exhausted = false;
    loop {
        if !shared.stop.load(Ordering::Relaxed) && !exhausted {
            let mut batch = 0;
            while in_flight.len() + batch < window {
                let sequence = match sequence_limit {
                    Some(limit) => {
                        let s = shared.sequence.fetch_add(1, Ordering::Relaxed);
                        if s >= limit {
                            exhausted = true;
                            break;
                        }
                        s
                    }
                    None => 0,
                };
                xid = xid.wrapping_add(1).max(1);
                picker.encode_next(xid, sequence, &mut out);
                batch += 1;
            }
            if batch > 0 {
                // The whole batch leaves with one write; each request's clock starts there.
                in_flight.extend(std::iter::repeat_n(Instant::now(), batch));
                session.writer.write_all(&out).await?;
                out.clear();
            }
        }
        if in_flight.is_empty() {
            break;
        }
        tokio::time::timeout(READ_TIMEOUT, session.fill())
            .await
            .map_err(|_| WireError::Timeout(READ_TIMEOUT))??;
        let now = Instant::now();
        let measuring = shared.measuring.load(Ordering::Relaxed);
        let mut completed = 0;
        while let Some(mut frame) = wire::next_frame(&mut session.read_buf)? {
            let header = ReplyHeader::decode(&mut frame)?;
            if header.xid < 0 {
                continue; // notification or ping
            }
            let Some(sent) = in_flight.pop_front() else {
                return Err(WireError::Protocol(format!(
                    "reply xid {} with nothing in flight",
                    header.xid
                )));
            };
            completed += 1;
            if measuring {
                result.latency.record(now.duration_since(sent).as_nanos() as u64);
                result.ops += 1;
                if header.err != 0 {
                    result.errors += 1;
                }
            }
        }
        shared.completed.fetch_add(completed, Ordering::Relaxed);
    }
    // Leave politely so the server does not keep the session until it expires.
    let _ = tokio::time::timeout(Duration::from_secs(5), session.call(i32::MAX, &Request::CloseSession)).await;
    Ok(result)
}

/// Connects `count` sessions, a bounded number at a time, from spread source addresses.
async fn connect_many(cli: &Cli, count: usize) -> Result<Vec<Session>, WireError> {
    let mut sessions = Vec::with_capacity(count);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0;
    while sessions.len() < count {
        while next < count && pending.len() < 256 {
            let (server, source) = (cli.server, source_for(cli, next));
            pending.spawn(async move { Session::connect(server, source, READ_TIMEOUT).await });
            next += 1;
        }
        match pending.join_next().await {
            Some(Ok(session)) => sessions.push(session?),
            Some(Err(e)) => return Err(WireError::Protocol(format!("connect task failed: {e}"))),
            None => break,
        }
    }
    Ok(sessions)
}

fn source_for(cli: &Cli, index: usize) -> Option<Ipv4Addr> {
    (cli.source_ips > 1).then(|| source_ip(index, cli.source_ips))
}

/// Prints a progress line each second until `done` is set.
fn spawn_progress(label: String, counter: Arc<Shared>, done: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let start = Instant::now();
        let mut last = 0;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.tick().await;
        while !done.load(Ordering::Relaxed) {
            ticker.tick().await;
            let completed = counter.completed.load(Ordering::Relaxed);
            let line = format!(
                "{label}: {:>4.0}s {:>10} done {:>9}/s",
                start.elapsed().as_secs_f64(),
                completed,
                completed - last
            );
            last = completed;
            if tty {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
        }
        if tty {
            eprintln!();
        }
    })
}

async fn run_load(cli: &Cli, spec: &LoadSpec) -> Result<Outcome, WireError> {
    setup(cli, spec).await?;
    let sessions = connect_many(cli, spec.sessions).await?;
    let shared = Arc::new(Shared::default());
    let populate = spec.workload == Workload::Populate;
    let sequence_limit = match spec.workload {
        Workload::Populate | Workload::Create => Some(spec.count),
        _ => None,
    };
    // The create workload names nodes per run, so repeated runs never collide.
    let run_id = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        % 1_000_000_000) as u32;
    if populate {
        shared.measuring.store(true, Ordering::Relaxed);
    }
    let mut tasks = Vec::with_capacity(sessions.len());
    for (i, session) in sessions.into_iter().enumerate() {
        // Spread the window: the first `outstanding % sessions` sessions take one more.
        let window = spec.outstanding / spec.sessions + usize::from(i < spec.outstanding % spec.sessions);
        let picker = Picker::new(
            spec.workload,
            spec.seed.wrapping_add(i as u64),
            spec.keys,
            spec.data_bytes,
            run_id,
        );
        tasks.push(tokio::spawn(load_session(
            session,
            picker,
            window,
            sequence_limit,
            shared.clone(),
        )));
    }
    let done = Arc::new(AtomicBool::new(false));
    let progress = spawn_progress(
        format!("{} {}", cli.label, spec.workload.name()),
        shared.clone(),
        done.clone(),
    );
    let cpu = || CpuSample::take(cli.server_pid);
    // Populate runs until its count is done, all of it measured; the others measure a window
    // after the warm-up and leave the drain of what is still in flight out of it.
    let (start, cpu_start) = if populate {
        (Instant::now(), cpu())
    } else {
        tokio::time::sleep(spec.warmup).await;
        shared.measuring.store(true, Ordering::Relaxed);
        let (start, cpu_start) = (Instant::now(), cpu());
        // The create workload may run out of its node budget before the window ends.
        let deadline = tokio::time::sleep(spec.window);
        tokio::pin!(deadline);
        let all_done = async {
            while !tasks.iter().all(|t| t.is_finished()) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! { _ = &mut deadline => {}, _ = all_done => {} }
        shared.measuring.store(false, Ordering::Relaxed);
        shared.stop.store(true, Ordering::Relaxed);
        (start, cpu_start)
    };
    let (mut elapsed, mut cpu_end) = (start.elapsed(), cpu());
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await);
    }
    if populate {
        (elapsed, cpu_end) = (start.elapsed(), cpu());
    }
    done.store(true, Ordering::Relaxed);
    let _ = progress.await;
    let mut outcome = Outcome {
        workload: spec.workload.name().into(),
        sessions: spec.sessions,
        outstanding: spec.outstanding,
        secs: elapsed.as_secs_f64(),
        ..Outcome::default()
    };
    cpu_start.fill(&cpu_end, &mut outcome);
    for result in results {
        let result = result.map_err(|e| WireError::Protocol(format!("session task failed: {e}")))??;
        outcome.latency.merge(&result.latency);
        outcome.ops += result.ops;
        outcome.errors += result.errors;
    }
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------------
// Watch fan-out

/// How the watchers of a round report their events: each notes its arrival time itself and
/// counts the round's events, and the last one wakes the controller. One wake-up per round instead
/// of one message per event: the generator reads a thousand sockets on the cores the server also
/// needs, so its own cost per event is part of every fan-out it measures.
struct FanoutClock {
    base: Instant,
    watchers: usize,
    fired: AtomicUsize,
    /// Latest arrival of the round, ns since `base`.
    last_ns: AtomicU64,
    /// Earliest arrival of the round, ns since `base`.
    first_ns: AtomicU64,
    all_fired: tokio::sync::Notify,
}

impl FanoutClock {
    fn new(watchers: usize) -> FanoutClock {
        FanoutClock {
            base: Instant::now(),
            watchers,
            fired: AtomicUsize::new(0),
            last_ns: AtomicU64::new(0),
            first_ns: AtomicU64::new(u64::MAX),
            all_fired: tokio::sync::Notify::new(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Starts a round; no watcher may fire before (it has not been told to arm yet, or its event
    /// has not been sent).
    fn reset(&self) {
        self.fired.store(0, Ordering::SeqCst);
        self.last_ns.store(0, Ordering::SeqCst);
        self.first_ns.store(u64::MAX, Ordering::SeqCst);
    }

    /// A watcher got its event; returns its arrival time (ns since `base`).
    fn fire(&self) -> u64 {
        let at = self.now_ns();
        self.last_ns.fetch_max(at, Ordering::SeqCst);
        self.first_ns.fetch_min(at, Ordering::SeqCst);
        if self.fired.fetch_add(1, Ordering::SeqCst) + 1 == self.watchers {
            self.all_fired.notify_one();
        }
        at
    }

    /// Waits until every watcher fired; the round's first and last arrivals.
    async fn wait_all(&self) -> Result<(u64, u64), WireError> {
        while self.fired.load(Ordering::SeqCst) < self.watchers {
            tokio::time::timeout(READ_TIMEOUT, self.all_fired.notified())
                .await
                .map_err(|_| WireError::Protocol("watchers stopped before their event".into()))?;
        }
        Ok((self.first_ns.load(Ordering::SeqCst), self.last_ns.load(Ordering::SeqCst)))
    }
}

/// Reads until a watch event arrives (skipping anything else).
async fn read_event(session: &mut Session) -> Result<(), WireError> {
    loop {
        let mut frame = tokio::time::timeout(READ_TIMEOUT, session.read_frame())
            .await
            .map_err(|_| WireError::Timeout(READ_TIMEOUT))??;
        if ReplyHeader::decode(&mut frame)?.xid == XID_NOTIFICATION {
            return Ok(());
        }
    }
}

/// Per round, when each event arrived (ns since the clock's base), per watcher.
type Arrivals = Vec<u64>;

async fn watcher(
    mut session: Session,
    rounds: usize,
    mut arm: tokio::sync::watch::Receiver<usize>,
    armed: mpsc::Sender<()>,
    clock: Arc<FanoutClock>,
) -> Result<Arrivals, WireError> {
    let mut arrivals = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Re-arm only when told, so no getData competes with the previous round's fan-out.
        if arm.wait_for(|r| *r >= round).await.is_err() {
            return Err(WireError::Protocol("controller gone".into()));
        }
        let (header, _) = session
            .call(
                round as i32 + 1,
                &Request::GetData {
                    path: workload::WATCHED,
                    watch: true,
                },
            )
            .await?;
        if header.err != 0 {
            return Err(WireError::Protocol(format!(
                "getData with watch failed: {}",
                header.err
            )));
        }
        let _ = armed.send(()).await;
        read_event(&mut session).await?;
        arrivals.push(clock.fire());
    }
    // Close only once every round is measured: closing as soon as its own last event came made
    // the last round race a thousand closeSession writes, and that round was always among the
    // slowest (the p99 of a few hundred rounds is one of the slowest few).
    let _ = arm.wait_for(|r| *r >= rounds).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), session.call(i32::MAX, &Request::CloseSession)).await;
    Ok(arrivals)
}

/// Histogram of every event's delay after its round started (`starts`, ns since the clock's base).
fn event_delays(arrivals: &[Arrivals], starts: &[u64]) -> Histogram {
    let mut per_event = Histogram::default();
    for watcher in arrivals {
        for (at, start) in watcher.iter().zip(starts) {
            per_event.record(at.saturating_sub(*start));
        }
    }
    per_event
}

/// A fan-out row: events delivered per second of fan-out time, the per-round time to the last
/// event as its latency, and every event's delay.
fn fanout_outcome(
    workload: &str,
    watchers: usize,
    rounds: usize,
    busy: Duration,
    fan_out: Histogram,
    per_event: &Histogram,
) -> Outcome {
    Outcome {
        workload: workload.into(),
        mode: "fanout".into(),
        sessions: watchers,
        outstanding: 1,
        ops: (watchers * rounds) as u64,
        secs: busy.as_secs_f64(),
        latency: fan_out,
        extra: vec![
            ("event_p50_us", per_event.quantile_ns(0.5) as f64 / 1e3),
            ("event_p99_us", per_event.quantile_ns(0.99) as f64 / 1e3),
        ],
        ..Outcome::default()
    }
}

async fn join_watchers(tasks: Vec<tokio::task::JoinHandle<Result<Arrivals, WireError>>>) -> Result<Vec<Arrivals>, WireError> {
    let mut arrivals = Vec::with_capacity(tasks.len());
    for task in tasks {
        arrivals.push(task.await.map_err(|e| WireError::Protocol(format!("watcher failed: {e}")))??);
    }
    Ok(arrivals)
}

async fn run_watch(cli: &Cli, watchers: usize, rounds: usize) -> Result<Outcome, WireError> {
    let mut control = Session::connect(cli.server, None, READ_TIMEOUT).await?;
    create_all(&mut control, &[workload::ROOT.into(), workload::WATCHED.into()], b"v").await?;
    let sessions = connect_many(cli, watchers).await?;
    let clock = Arc::new(FanoutClock::new(watchers));
    let (armed_tx, mut armed) = mpsc::channel(watchers);
    let (arm_tx, arm_rx) = tokio::sync::watch::channel(0usize);
    let mut tasks = Vec::with_capacity(watchers);
    for session in sessions {
        tasks.push(tokio::spawn(watcher(session, rounds, arm_rx.clone(), armed_tx.clone(), clock.clone())));
    }
    drop(armed_tx);
    let mut fan_out = Histogram::default();
    // The fan-out after setData's reply: without the log sync before it, which on this kind of
    // disk now and then takes 100 ms or more (README, BENCHMARKS).
    let mut after_answer = Histogram::default();
    let mut starts = Vec::with_capacity(rounds);
    let (start, cpu_start) = (Instant::now(), CpuSample::take(cli.server_pid));
    let mut busy = Duration::ZERO;
    for round in 0..rounds {
        clock.reset();
        let _ = arm_tx.send(round);
        for _ in 0..watchers {
            match tokio::time::timeout(READ_TIMEOUT, armed.recv()).await {
                Ok(Some(())) => {}
                _ => return Err(WireError::Protocol("watchers stopped before arming".into())),
            }
        }
        let set_at = clock.now_ns();
        let (header, _) = control
            .call(
                -100,
                &Request::SetData {
                    path: workload::WATCHED,
                    data: b"w",
                },
            )
            .await?;
        if header.err != 0 {
            return Err(WireError::Protocol(format!("setData failed: {}", header.err)));
        }
        let answered_at = clock.now_ns();
        let (first, last) = clock.wait_all().await?;
        starts.push(set_at);
        fan_out.record(last.saturating_sub(set_at));
        after_answer.record(last.saturating_sub(answered_at));
        busy += Duration::from_nanos(last.saturating_sub(set_at));
        eprintln!(
            "{} watch: round {}/{rounds} fan-out {:.2} ms (first event after {:.2} ms, setData answered after {:.2} ms)",
            cli.label,
            round + 1,
            last.saturating_sub(set_at) as f64 / 1e6,
            first.saturating_sub(set_at) as f64 / 1e6,
            answered_at.saturating_sub(set_at) as f64 / 1e6
        );
    }
    let (elapsed, cpu_end) = (start.elapsed(), CpuSample::take(cli.server_pid));
    let _ = arm_tx.send(rounds);
    let per_event = event_delays(&join_watchers(tasks).await?, &starts);
    let _ = control.call(i32::MAX, &Request::CloseSession).await;
    // Throughput here is events delivered per second of fan-out time; latency rows are the
    // setData-to-last-event time per round. CPU covers the whole phase (arming getData included)
    // and is averaged over its wall time.
    let mut outcome = fanout_outcome("watchFanout", watchers, rounds, busy, fan_out, &per_event);
    outcome.cpu_window_secs = Some(elapsed.as_secs_f64());
    outcome.extra.extend([
        ("after_answer_p50_us", after_answer.quantile_ns(0.5) as f64 / 1e3),
        ("after_answer_p99_us", after_answer.quantile_ns(0.99) as f64 / 1e3),
    ]);
    cpu_start.fill(&cpu_end, &mut outcome);
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------------
// Connection storm

async fn run_connect(cli: &Cli, count: usize) -> Result<Outcome, WireError> {
    let go = Arc::new(tokio::sync::Notify::new());
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let (server, source, go, ready) = (cli.server, source_for(cli, i), go.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let notified = go.notified();
            ready.add_permits(1);
            notified.await;
            let start = Instant::now();
            let session = Session::connect(server, source, READ_TIMEOUT).await;
            (start.elapsed(), session)
        }));
    }
    // Every task is parked on `go` before the storm starts.
    let _all = ready
        .acquire_many(count as u32)
        .await
        .map_err(|e| WireError::Protocol(e.to_string()))?;
    let (start, cpu_start) = (Instant::now(), CpuSample::take(cli.server_pid));
    go.notify_waiters();
    let mut latency = Histogram::default();
    let mut sessions = Vec::with_capacity(count);
    let mut errors = 0;
    for task in tasks {
        let (took, session) = task
            .await
            .map_err(|e| WireError::Protocol(format!("connect task failed: {e}")))?;
        match session {
            Ok(s) => {
                latency.record(took.as_nanos() as u64);
                sessions.push(s);
            }
            Err(e) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("connect failed: {e}");
                }
            }
        }
    }
    let (elapsed, cpu_end) = (start.elapsed(), CpuSample::take(cli.server_pid));
    eprintln!(
        "{} connect: {} sessions in {:.2}s; closing them",
        cli.label,
        sessions.len(),
        elapsed.as_secs_f64()
    );
    // Close every session (not timed) so the server is clean for whatever runs next.
    let mut closers = tokio::task::JoinSet::new();
    for mut session in sessions {
        closers.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), session.call(1, &Request::CloseSession)).await;
        });
    }
    while closers.join_next().await.is_some() {}
    let mut outcome = Outcome {
        workload: "connect".into(),
        mode: "storm".into(),
        sessions: count,
        outstanding: count,
        ops: latency.count(),
        secs: elapsed.as_secs_f64(),
        errors,
        latency,
        ..Outcome::default()
    };
    cpu_start.fill(&cpu_end, &mut outcome);
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------------
// Restart: first served read

/// Frame size of the floor's round trips: about a getData request (header, path, watch flag).
const RTT_FLOOR_FRAME_BYTES: usize = 40;

async fn run_rtt_floor(window: Duration, mut log: Option<FloorLog>) -> Result<Outcome, WireError> {
    use std::io::{Read, Write};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let workload = if log.is_some() { "durableRttFloor" } else { "rttFloor" };
    // The echo side: accepts one connection and answers every frame as it arrives (after its
    // log sync, when there is a log); it ends when the client closes.
    std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut frame = [0u8; RTT_FLOOR_FRAME_BYTES];
        loop {
            stream.read_exact(&mut frame)?;
            if let Some(log) = log.as_mut() {
                log.append_synced()?;
            }
            stream.write_all(&frame)?;
        }
    });
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut frame = [7u8; RTT_FLOOR_FRAME_BYTES];
    let mut latency = Histogram::default();
    let warmup_until = Instant::now() + Duration::from_millis(500);
    let mut started: Option<Instant> = None;
    let mut ops = 0u64;
    loop {
        let sent = Instant::now();
        stream.write_all(&frame).await?;
        stream.read_exact(&mut frame).await?;
        let now = Instant::now();
        match started {
            None if now >= warmup_until => started = Some(now),
            None => {}
            Some(start) if now.duration_since(start) >= window => break,
            Some(_) => {
                latency.record(now.duration_since(sent).as_nanos() as u64);
                ops += 1;
            }
        }
    }
    Ok(Outcome {
        workload: workload.into(),
        mode: "latency".into(),
        sessions: 1,
        outstanding: 1,
        ops,
        secs: window.as_secs_f64(),
        latency,
        ..Outcome::default()
    })
}

/// The event frame the fan-out floor writes: what a server sends for a setData on the watched
/// node (reply header with xid -1, then the WatcherEvent).
fn event_frame() -> Vec<u8> {
    use ferrokeeper::jute::Encode;
    use ferrokeeper::proto::consts::{event_type::NODE_DATA_CHANGED, STATE_SYNC_CONNECTED};
    use ferrokeeper::proto::WatcherEvent;
    let mut body = BytesMut::new();
    ReplyHeader { xid: XID_NOTIFICATION, zxid: -1, err: 0 }.encode(&mut body);
    WatcherEvent { event_type: NODE_DATA_CHANGED, state: STATE_SYNC_CONNECTED, path: workload::WATCHED.into() }
        .encode(&mut body);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

async fn run_watch_floor(watchers: usize, rounds: usize, writers: usize, log: Option<FloorLog>) -> Result<Outcome, WireError> {
    use std::io::{Read, Write};
    use tokio::io::AsyncReadExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let workload = if log.is_some() { "durableWatchFloor" } else { "watchFloor" };
    // The server side: accepts every connection, deals them out to the writer threads, then each
    // writer sends one event to each of its connections whenever told to.
    let (go_txs, go_rxs): (Vec<_>, Vec<_>) = (0..writers).map(|_| std::sync::mpsc::sync_channel::<()>(1)).unzip();
    // With a log, the rounds are started by a request over loopback: its thread syncs one log
    // record, tells the writers, then answers.
    let (mut trigger, go_txs) = match log {
        None => (None, go_txs),
        Some(mut log) => {
            let trigger_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let trigger_address = trigger_listener.local_addr()?;
            std::thread::spawn(move || -> std::io::Result<()> {
                let (mut stream, _) = trigger_listener.accept()?;
                stream.set_nodelay(true)?;
                let mut request = [0u8; 1];
                while stream.read_exact(&mut request).is_ok() {
                    log.append_synced()?;
                    for go in &go_txs {
                        if go.send(()).is_err() {
                            return Ok(());
                        }
                    }
                    stream.write_all(&request)?;
                }
                Ok(())
            });
            let stream = tokio::net::TcpStream::connect(trigger_address).await?;
            stream.set_nodelay(true)?;
            (Some(stream), Vec::new())
        }
    };
    let frame = Arc::new(event_frame());
    std::thread::spawn(move || -> std::io::Result<()> {
        let mut shares: Vec<Vec<std::net::TcpStream>> = (0..writers).map(|_| Vec::new()).collect();
        for i in 0..watchers {
            let (stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            shares[i % writers].push(stream);
        }
        for (mut share, go) in shares.into_iter().zip(go_rxs) {
            let frame = frame.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                while go.recv().is_ok() {
                    for stream in &mut share {
                        stream.write_all(&frame)?;
                    }
                }
                Ok(())
            });
        }
        Ok(())
    });
    let clock = Arc::new(FanoutClock::new(watchers));
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let mut session = Session { session_id: 0, reader, writer, read_buf: BytesMut::with_capacity(64 * 1024) };
        let clock = clock.clone();
        // What `watcher` does once armed: read the event, note its arrival.
        tasks.push(tokio::spawn(async move {
            let mut arrivals = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                read_event(&mut session).await?;
                arrivals.push(clock.fire());
            }
            Ok::<_, WireError>(arrivals)
        }));
    }
    let mut fan_out = Histogram::default();
    let mut busy = Duration::ZERO;
    let mut starts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // A pause like the re-arming between the real rounds, so each round starts idle.
        tokio::time::sleep(Duration::from_millis(2)).await;
        clock.reset();
        let set_at = clock.now_ns();
        if let Some(stream) = trigger.as_mut() {
            stream.write_all(&[1]).await?;
        }
        for go in &go_txs {
            go.send(()).map_err(|_| WireError::Protocol("floor writer stopped".into()))?;
        }
        let (_, last) = clock.wait_all().await?;
        if let Some(stream) = trigger.as_mut() {
            stream.read_exact(&mut [0u8; 1]).await?;
        }
        starts.push(set_at);
        fan_out.record(last.saturating_sub(set_at));
        busy += Duration::from_nanos(last.saturating_sub(set_at));
    }
    drop(go_txs);
    drop(trigger);
    let per_event = event_delays(&join_watchers(tasks).await?, &starts);
    Ok(fanout_outcome(workload, watchers, rounds, busy, fan_out, &per_event))
}

/// Per attempt: a session that cannot be created or a write that gets no answer within this is
/// given up and tried again (a follower of a dead leader holds both until it notices).
const FAILOVER_ATTEMPT: Duration = Duration::from_secs(2);

async fn run_first_write(cli: &Cli, path: &str, since_epoch_ms: u64, deadline: Duration) -> Result<Outcome, WireError> {
    let give_up = Instant::now() + deadline;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        if let Ok(mut session) = Session::connect(cli.server, None, FAILOVER_ATTEMPT).await {
            let created = tokio::time::timeout(FAILOVER_ATTEMPT, session.call(1, &Request::Create { path, data: b"failover" })).await;
            if let Ok(Ok((header, _))) = created {
                if header.err == 0 || header.err == NODE_EXISTS {
                    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                    let failover_ms = now_ms.saturating_sub(since_epoch_ms) as f64;
                    let _ = session.call(2, &Request::CloseSession).await;
                    return Ok(Outcome {
                        workload: "failover".into(),
                        mode: "firstWrite".into(),
                        sessions: 1,
                        outstanding: 1,
                        ops: 1,
                        extra: vec![("failover_ms", failover_ms), ("attempts", attempts as f64)],
                        ..Outcome::default()
                    });
                }
            }
        }
        if Instant::now() >= give_up {
            return Err(WireError::Timeout(deadline));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn run_first_read(cli: &Cli, path: &str, since_epoch_ms: u64, deadline: Duration) -> Result<Outcome, WireError> {
    let give_up = Instant::now() + deadline;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        if let Ok(mut session) = Session::connect(cli.server, None, Duration::from_secs(2)).await {
            if let Ok(Ok((header, _))) = tokio::time::timeout(
                Duration::from_secs(60),
                session.call(1, &Request::GetData { path, watch: false }),
            )
            .await
            {
                if header.err == 0 {
                    let now_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    let restart_ms = now_ms.saturating_sub(since_epoch_ms) as f64;
                    let _ = session.call(2, &Request::CloseSession).await;
                    return Ok(Outcome {
                        workload: "restart".into(),
                        mode: "firstRead".into(),
                        sessions: 1,
                        outstanding: 1,
                        ops: 1,
                        extra: vec![("restart_ms", restart_ms), ("attempts", attempts as f64)],
                        ..Outcome::default()
                    });
                }
            }
        }
        if Instant::now() >= give_up {
            return Err(WireError::Timeout(deadline));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
