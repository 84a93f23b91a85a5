//! Wiring: builds the pipeline from the configuration, binds the client port, runs the tasks and
//! owns shutdown (SIGTERM/SIGINT stop accepting, stop the pipeline, and return). A quorum
//! member's election, leading and following are wired in `quorum`.

mod quorum;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::admin::four_letter::AdminState;
use crate::config::Config;
use crate::server::auth::AuthSettings;
use crate::server::core::{Core, CoreSettings};
use crate::server::core::Now;
use crate::server::net::{conn_limits, run_core, run_listener, Clock, ZabInputs};
use crate::server::pipeline::{Persistence, Pipeline};
use crate::server::replication::ZabLink;
use crate::storage::txn_log::TxnLog;
use crate::storage::{restore, Layout, LogWriter};
use crate::server::prep::PrepSettings;
use crate::server::replication::TxnSink;

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The client port could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// Address.
        address: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Storage could not be opened or the data could not be restored.
    #[error("cannot start from the data directory: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The quorum part of the configuration cannot be run.
    #[error("{0}")]
    Quorum(String),
}

/// The pipeline settings a configuration implies; `server_id` goes into session ids.
pub fn core_settings(config: &Config, server_id: u8) -> CoreSettings {
    CoreSettings {
        tick_ms: config.tick_time_ms as i64,
        min_session_timeout_ms: config.min_session_timeout_ms.min(i32::MAX as u32) as i32,
        max_session_timeout_ms: config.max_session_timeout_ms.min(i32::MAX as u32) as i32,
        server_id,
        prep: PrepSettings {
            auth: AuthSettings { super_digest: config.super_digest.clone(), skip_acl: config.skip_acl },
            extended_types_enabled: config.extended_types_enabled,
            reconfig_enabled: config.reconfig_enabled,
        },
        container_max_never_used_ms: config.container_max_never_used_interval_ms as i64,
        container_max_per_minute: config.container_max_per_minute as usize,
    }
}

/// The client address to bind.
pub fn client_address(config: &Config) -> String {
    let host = config.client_port_address.clone().unwrap_or_else(|| "0.0.0.0".into());
    let port = config.client_port.unwrap_or(2181);
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The kernel's cap on a listen backlog (`net.core.somaxconn`); 4,096 on current Linux.
fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(4096)
}

/// Binds the client port with a listen backlog of `somaxconn` instead of tokio's 1,024: in a
/// connection storm, every SYN the accept queue cannot hold is retried by the client after a
/// second (the benchmark's 10,000-session storm counted 3,102 such overflows).
async fn bind_client_port(address: &str) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // As std's TcpListener::bind does: a restarted server can rebind while old sockets linger.
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(somaxconn()),
            Err(e) => last_error = Some(e),
        }
    }
    let nothing = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "address resolves to nothing");
    Err(last_error.unwrap_or_else(nothing))
}

/// Runs the server until SIGTERM or SIGINT: standalone, or as a quorum member when the
/// configuration has `server.N` lines for one (`quorum`).
pub async fn run(config: Config) -> Result<(), NodeError> {
    if config.is_quorum() {
        return quorum::run(config).await;
    }
    run_standalone(config).await
}

/// Creates the data directories.
fn create_data_dirs(config: &Config) -> Result<Layout, NodeError> {
    for dir in [&config.data_dir, &config.data_log_dir] {
        std::fs::create_dir_all(dir).map_err(|source| NodeError::DataDir { path: dir.display().to_string(), source })?;
    }
    let layout = Layout::new(&config.data_dir, &config.data_log_dir);
    layout.create_dirs()?;
    Ok(layout)
}

async fn run_standalone(config: Config) -> Result<(), NodeError> {
    let clock = Clock::new();
    let started = std::time::Instant::now();
    let layout = create_data_dirs(&config)?;
    let (log, restored, snapshot_modified_secs) = tokio::task::spawn_blocking({
        let layout = layout.clone();
        let extended = config.extended_types_enabled;
        move || -> Result<_, crate::storage::StorageError> {
            let log = TxnLog::open(&layout.log_dir)?;
            let restored = restore(&layout, &log, extended)?;
            crate::storage::snapshot::remove_temporary_files(&layout.snapshot_dir);
            let snapshot_modified_secs = restored.snapshot_path.as_deref().and_then(modified_secs);
            Ok((log, restored, snapshot_modified_secs))
        }
    })
    .await
    .map_err(|e| NodeError::DataDir { path: layout.log_dir.display().to_string(), source: std::io::Error::other(e) })??;
    info!(
        last_zxid = format_args!("{:#x}", restored.last_zxid),
        nodes = restored.tree.node_count(),
        sessions = restored.sessions.len(),
        txns_replayed = restored.txns_replayed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "data restored"
    );
    let now = clock.now();
    // Standalone servers use server id 1 in session ids (`createSessionTrackerServerId`).
    let core = Core::restored(
        core_settings(&config, 1),
        restored.tree,
        &restored.sessions,
        restored.last_zxid,
        restored.last_alive_ms,
        now,
    );
    let writer = LogWriter::start(log, restored.last_zxid, config.force_sync, config.max_batch_size.max(1) as usize);
    let persistence = persistence(&config, &layout, TxnSink::Log(writer), restored.snapshot_zxid != Some(restored.last_zxid), now);
    let mut admin = AdminState::new(config.clone());
    admin.last_snapshot = restored.snapshot_zxid.zip(snapshot_modified_secs);
    let serving = Serving::start(&config, core, admin, persistence, None, clock, started).await?;
    // Listen for signals before announcing that the server serves: a SIGTERM sent by whoever
    // waits for that line must stop the server cleanly, not kill it with the default action.
    let signals = Signals::new();
    info!(address = %serving.local, data_dir = %config.data_dir.display(), "ferrokeeper {} serving clients (standalone)", env!("CARGO_PKG_VERSION"));
    signals.wait().await;
    info!("shutting down");
    if let Some(persistence) = serving.stop().await {
        // Let the log writer finish what it was handed, then close RocksDB.
        let _ = tokio::task::spawn_blocking(move || persistence.writer.stop()).await;
    }
    info!("stopped");
    Ok(())
}

/// What the core task needs to persist through `sink`; `snapshot_at_start` as ZooKeeper does
/// after loading, unless the newest snapshot already is the whole state.
fn persistence(config: &Config, layout: &Layout, sink: TxnSink, snapshot_at_start: bool, now: Now) -> Persistence {
    Persistence {
        writer: sink,
        snapshot_dir: layout.snapshot_dir.clone(),
        snap_count: u64::from(config.snap_count.max(2)),
        snap_retain_count: config.autopurge_snap_retain_count.max(3) as usize,
        purge_interval: (config.autopurge_purge_interval_hours > 0)
            .then(|| Duration::from_secs(u64::from(config.autopurge_purge_interval_hours) * 3600)),
        seed: now.wall_ms as u64 ^ u64::from(std::process::id()),
        snapshot_at_start,
        fsync_warning_threshold_ms: config.fsync_warning_threshold_ms.min(i64::MAX as u64) as i64,
    }
}

/// The client-facing tasks of a serving server: the core task, the client listener and the
/// HTTP endpoints. A quorum member runs them only while it leads or follows.
struct Serving {
    local: SocketAddr,
    shutdown: watch::Sender<bool>,
    core_task: tokio::task::JoinHandle<Option<Persistence>>,
    listener_task: tokio::task::JoinHandle<()>,
    http_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Serving {
    /// Binds the client port and the HTTP endpoints and starts the tasks.
    async fn start(
        config: &Config,
        mut core: Core,
        mut admin: AdminState,
        persistence: Persistence,
        zab: Option<ZabLink>,
        clock: Clock,
        started: std::time::Instant,
    ) -> Result<Serving, NodeError> {
        let address = client_address(config);
        let listener =
            bind_client_port(&address).await.map_err(|source| NodeError::Bind { address: address.clone(), source })?;
        let local: SocketAddr = listener.local_addr().map_err(|source| NodeError::Bind { address: address.clone(), source })?;
        let now = clock.now();
        core.slow_request_threshold_ms = config.slow_request_threshold_ms.min(i64::MAX as u64) as i64;
        core.metrics.observe(crate::server::metrics::ids::DBINITTIME, started.elapsed().as_millis() as i64);
        admin.started_mono_ms = now.mono_ms;
        admin.started_wall_ms = now.wall_ms;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let limit = config.global_outstanding_limit.max(1) as usize;
        let (events_tx, events_rx) = mpsc::channel(limit);
        let container_interval = Duration::from_millis(config.container_check_interval_ms as u64);
        let (upstream, zab) = match zab {
            Some(ZabLink { events, inlet, upstream, local_sessions }) => {
                (Some(upstream), Some(ZabInputs { events, inlet, local_sessions }))
            }
            None => (None, None),
        };
        let pipeline = Arc::new(tokio::sync::Mutex::new(Pipeline::new(core, admin, clock, limit, Some(persistence), upstream)));
        let core_task = tokio::spawn(run_core(pipeline.clone(), events_rx, container_interval, zab, shutdown_rx.clone()));
        // ---- observability endpoints (admin::http) ----
        let http_tasks = match crate::admin::http::spawn_endpoints(config, &events_tx, &shutdown_rx).await {
            Ok(tasks) => tasks,
            Err((address, source)) => {
                let _ = shutdown.send(true);
                let _ = core_task.await;
                return Err(NodeError::Bind { address, source });
            }
        };
        let listener_task = tokio::spawn(run_listener(listener, events_tx, pipeline, conn_limits(config), shutdown_rx));
        Ok(Serving { local, shutdown, core_task, listener_task, http_tasks })
    }

    /// Stops accepting, closes every client connection and stops the core task (after its
    /// shutdown snapshot); returns what it persisted through.
    async fn stop(self) -> Option<Persistence> {
        let _ = self.shutdown.send(true);
        let _ = self.listener_task.await;
        for task in self.http_tasks {
            let _ = task.await;
        }
        self.core_task.await.ok().flatten()
    }
}

/// A file's modification time in seconds since the epoch.
fn modified_secs(path: &std::path::Path) -> Option<i64> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// SIGTERM and SIGINT, registered as soon as this exists.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn wait(self) {
        match (self.term, self.int) {
            (Some(mut term), Some(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
