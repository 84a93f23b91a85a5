//! The `ferrokeeper` command: reads a ZooKeeper `zoo.cfg` and runs the server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferrokeeper::config::{system_properties_from_jvm_flags, Config};

/// mimalloc instead of glibc malloc: buffers are allocated on one runtime worker and freed on
/// another, and glibc's arena lock showed up at 7.3% of the server's samples under load (README,
/// BENCHMARKS); mimalloc's thread-local free lists avoid that lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A wire-compatible, drop-in replacement for Apache ZooKeeper 3.8.
///
/// Reads ZooKeeper's own zoo.cfg. JVM-style settings (-Dzookeeper.x=y) are also taken from the
/// JVMFLAGS and SERVER_JVMFLAGS environment variables, as zkServer.sh passes them. With no
/// config file it serves clients on port 2181 with data under ./data.
#[derive(Parser, Debug)]
#[command(name = "ferrokeeper", version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Path to a ZooKeeper zoo.cfg.
    config: Option<PathBuf>,
    /// Log level or tracing filter (overrides zoo.cfg `log.level`; RUST_LOG overrides both).
    #[arg(long)]
    log_level: Option<String>,
    /// Log format: text or json (overrides zoo.cfg `log.format`).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Import an Apache ZooKeeper 3.x data dir (snapshots and txn logs) into an empty
    /// ferrokeeper data dir: same tree, Stats, ACLs, sessions and zxid.
    Import {
        /// ZooKeeper's dataDir (holding version-2/snapshot.*).
        #[arg(long)]
        from: PathBuf,
        /// ZooKeeper's dataLogDir (holding version-2/log.*), if not the dataDir.
        #[arg(long)]
        from_log_dir: Option<PathBuf>,
        /// ferrokeeper's dataDir.
        #[arg(long)]
        to: PathBuf,
        /// ferrokeeper's dataLogDir, if not the dataDir.
        #[arg(long)]
        to_log_dir: Option<PathBuf>,
        /// Decode TTL nodes (ZooKeeper's extendedTypesEnabled).
        #[arg(long)]
        extended_types: bool,
    },
    /// Export a (stopped) ferrokeeper's state as a ZooKeeper snapshot: <to>/version-2/snapshot.<zxid>.
    Export {
        /// ferrokeeper's dataDir.
        #[arg(long)]
        from: PathBuf,
        /// ferrokeeper's dataLogDir, if not the dataDir.
        #[arg(long)]
        from_log_dir: Option<PathBuf>,
        /// Directory to become ZooKeeper's dataDir.
        #[arg(long)]
        to: PathBuf,
        /// Decode TTL nodes (ZooKeeper's extendedTypesEnabled).
        #[arg(long)]
        extended_types: bool,
    },
    /// Summarise a (stopped) ferrokeeper's transaction log: the zxids it holds and how far it was
    /// purged, e.g. to check autopurge (ZooKeeper's zkTxnLogToolkit plays this part there).
    LogSummary {
        /// ferrokeeper's dataLogDir (the dataDir unless zoo.cfg sets dataLogDir).
        #[arg(long)]
        data_log_dir: PathBuf,
    },
}

fn log_summary(data_log_dir: &std::path::Path) -> ExitCode {
    use ferrokeeper::storage::txn_log::TxnLog;
    use ferrokeeper::storage::Layout;
    let layout = Layout::new(data_log_dir, data_log_dir);
    if !layout.log_dir.is_dir() {
        eprintln!("ferrokeeper: no transaction log in {}", layout.log_dir.display());
        return ExitCode::FAILURE;
    }
    let summary = TxnLog::open(&layout.log_dir)
        .and_then(|log| Ok((log.first_zxid()?, log.last_zxid()?, log.count()?, log.purged_through()?)));
    match summary {
        Ok((first, last, count, purged)) => {
            let hex = |z: Option<i64>| z.map_or("none".to_string(), |z| format!("{z:#x}"));
            println!(
                "txns={count} first_zxid={} last_zxid={} purged_through={}",
                hex(first),
                hex(last),
                hex(purged)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrokeeper: {e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(command: Command) -> ExitCode {
    use ferrokeeper::storage::migrate::{export_zookeeper, import_zookeeper};
    use ferrokeeper::storage::Layout;
    let result = match command {
        Command::LogSummary { data_log_dir } => return log_summary(&data_log_dir),
        Command::Import { from, from_log_dir, to, to_log_dir, extended_types } => {
            let layout = Layout::new(&to, to_log_dir.as_deref().unwrap_or(&to));
            import_zookeeper(&from, from_log_dir.as_deref().unwrap_or(&from), &layout, extended_types)
        }
        Command::Export { from, from_log_dir, to, extended_types } => {
            let layout = Layout::new(&from, from_log_dir.as_deref().unwrap_or(&from));
            export_zookeeper(&layout, &to, extended_types)
        }
    };
    match result {
        Ok(summary) => {
            for warning in &summary.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{} nodes, {} sessions, zxid {:#x} written to {}",
                summary.nodes,
                summary.sessions,
                summary.zxid,
                summary.written.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrokeeper: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts logging: RUST_LOG, else `--log-level`, else zoo.cfg `log.level`; JSON lines or text.
fn init_logging(level: &str, format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = cli.command {
        init_logging("warn", "text");
        return migrate(command);
    }
    let flags = [std::env::var("JVMFLAGS").unwrap_or_default(), std::env::var("SERVER_JVMFLAGS").unwrap_or_default()].join(" ");
    let props = system_properties_from_jvm_flags(&flags);
    let loaded = match &cli.config {
        Some(path) => Config::load_with_system_properties(path, &props),
        None => Config::default_with_system_properties(&props),
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ferrokeeper: {e}");
            return ExitCode::from(2);
        }
    };
    let level = cli.log_level.as_deref().unwrap_or(&loaded.config.log_level);
    let format = cli.log_format.as_deref().unwrap_or(&loaded.config.log_format);
    init_logging(level, format);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrokeeper: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ferrokeeper::node::run(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrokeeper: {e}");
            ExitCode::FAILURE
        }
    }
}
