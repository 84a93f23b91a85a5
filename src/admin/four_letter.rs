//! Four-letter words, in ZooKeeper 3.8's output formats (PROTOCOL.md §3; `FourLetterCommands`,
//! `ServerStats.toString`, `ServerCnxn.dumpConnectionInfo`, `ZooKeeperServer.dumpConf`).
//! Reads server state; the only mutations are the counters `srst`/`crst` reset and the trace mask.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::admin::monitor::MonitorSnapshot;
use crate::config::{Config, PROMETHEUS_METRICS_PROVIDER_CLASS_NAME};
use crate::server::core::{Conn, Core, Now};

/// The version string the server reports; starts with the ZooKeeper version it is compatible with.
pub fn version_string() -> String {
    format!("3.8.0-ferrokeeper-{}, built on 1970-01-01 00:00 UTC", env!("CARGO_PKG_VERSION"))
}

/// State the admin commands keep between calls.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The configuration, for `conf`, `envi` and the whitelist.
    pub config: Config,
    /// `gtmk`/`stmk` trace mask (ZooTrace's default).
    pub trace_mask: i64,
    /// Monotonic ms at start, for uptime.
    pub started_mono_ms: i64,
    /// Wall-clock ms at start.
    pub started_wall_ms: i64,
    /// The newest snapshot loaded or written: zxid and file modification time in seconds
    /// (`last_snapshot`, ZooKeeper's `FileSnap.lastSnapshotInfo`).
    pub last_snapshot: Option<(i64, i64)>,
    /// `standalone`, `leader` or `follower` (srvr's Mode, mntr's server_state).
    pub server_state: &'static str,
    /// What a quorum member shows about its ensemble; `None` when standalone.
    pub quorum: Option<QuorumInfo>,
}

/// A quorum member's view of its ensemble, for `srvr`, `mntr` and the admin commands.
#[derive(Debug, Clone)]
pub struct QuorumInfo {
    /// This server's id.
    pub my_sid: i64,
    /// The leader's id.
    pub leader_sid: i64,
    /// The epoch of this role.
    pub epoch: i64,
    /// Voting members (`quorum_size`).
    pub quorum_size: usize,
    /// Every member: sid, quorum address, election address, client address ("" when unknown
    /// here) and learner type, as `voting_view` lists them.
    pub members: Vec<MemberView>,
    /// On a leader, the leading thread's status (learners, synced followers, proposal sizes).
    pub leader: Option<std::sync::Arc<std::sync::Mutex<crate::zab::leading::LeaderStatus>>>,
}

/// One member of the ensemble as the admin commands show it.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// Its id.
    pub sid: i64,
    /// `host:quorumPort`.
    pub quorum_address: String,
    /// `host:electionPort`.
    pub election_address: String,
    /// `host:clientPort`, or "" when this server does not know it.
    pub client_address: String,
    /// `participant` or `observer`.
    pub learner_type: &'static str,
}

impl QuorumInfo {
    /// `peer_state`: ZooKeeper's `getDetailedPeerState` once in broadcast.
    pub fn peer_state(&self) -> &'static str {
        if self.leader.is_some() {
            "leading - broadcast"
        } else {
            "following - broadcast"
        }
    }

    /// The leading thread's status, on a leader.
    pub fn leader_status(&self) -> Option<crate::zab::leading::LeaderStatus> {
        self.leader.as_ref().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl AdminState {
    /// Admin state for a server configured by `config`.
    pub fn new(config: Config) -> AdminState {
        AdminState {
            config,
            trace_mask: 306,
            started_mono_ms: 0,
            started_wall_ms: 0,
            last_snapshot: None,
            server_state: "standalone",
            quorum: None,
        }
    }

    /// Whether ZooKeeper's Prometheus provider is configured: it changes `mntr`'s spelling.
    pub fn prometheus_enabled(&self) -> bool {
        self.config.metrics_provider_class_name == PROMETHEUS_METRICS_PROVIDER_CLASS_NAME
    }
}

/// Runs one command and returns the text to write before closing the connection.
pub fn run(word: &str, argument: Option<i64>, remote: SocketAddr, core: &mut Core, admin: &mut AdminState, now: Now) -> String {
    if word == "telnet close" {
        return String::new();
    }
    if !admin.config.four_letter_word_whitelist.allows(word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    match word {
        "ruok" => "imok".into(),
        "srvr" => server_stats(core, admin, None),
        "stat" => server_stats(core, admin, Some(remote)),
        "conf" => conf(&admin.config),
        "cons" => {
            let mut out = String::new();
            for (id, conn) in sorted_conns(core) {
                let _ = id;
                connection_line(&mut out, conn, true);
            }
            let _ = writeln!(out, " /{remote}[0](queued=0,recved=1,sent=0)");
            out.push('\n');
            out
        }
        "crst" => {
            core.reset_connection_stats();
            "Connection stats reset.\n".into()
        }
        "srst" => {
            core.stats.reset();
            core.metrics.reset();
            "Server stats reset.\n".into()
        }
        "dump" => dump(core, now),
        "envi" => environment(),
        "mntr" => MonitorSnapshot::take(core, admin, now, true).mntr_text(admin.prometheus_enabled()),
        "wchs" => {
            let (connections, paths, watches) = core.watches.data_summary();
            format!("{connections} connections watching {paths} paths\nTotal watches:{watches}\n")
        }
        "wchc" => {
            let mut out = String::new();
            for (watcher, paths) in core.watches.data_by_watcher() {
                let session = core.conns.get(&watcher).map_or(0, |c| c.session_id);
                let _ = writeln!(out, "0x{session:x}");
                for path in paths {
                    let _ = writeln!(out, "\t{path}");
                }
            }
            out.push('\n');
            out
        }
        "wchp" => {
            let mut out = String::new();
            for (path, watchers) in core.watches.data_by_path() {
                let _ = writeln!(out, "{path}");
                for watcher in watchers {
                    let session = core.conns.get(&watcher).map_or(0, |c| c.session_id);
                    let _ = writeln!(out, "\t0x{session:x}");
                }
            }
            out.push('\n');
            out
        }
        "dirs" => {
            let (data, log) = dir_sizes(&admin.config);
            format!("datadir_size: {data}\nlogdir_size: {log}\n")
        }
        "isro" => "rw".into(),
        "gtmk" => admin.trace_mask.to_string(),
        "stmk" => {
            admin.trace_mask = argument.unwrap_or(admin.trace_mask);
            admin.trace_mask.to_string()
        }
        // Tree digests are not recorded yet; ZooKeeper prints nothing when it has none.
        "hash" => String::new(),
        _ => String::new(),
    }
}

pub(crate) fn sorted_conns(core: &Core) -> Vec<(u64, &Conn)> {
    let mut conns: Vec<(u64, &Conn)> = core.conns.iter().map(|(id, c)| (*id, c)).collect();
    conns.sort_by_key(|(id, _)| *id);
    conns
}

/// Java's `Double.toString` of a value rounded HALF_UP to 4 decimals (`ServerStats`).
pub(crate) fn java_double_4(value: f64) -> String {
    let rounded = (value * 10_000.0).round() / 10_000.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.1}")
    } else {
        let s = format!("{rounded:.4}");
        s.trim_end_matches('0').to_owned()
    }
}

pub(crate) fn avg_latency(total: i64, count: i64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total as f64 / count as f64
    }
}

fn connection_line(out: &mut String, conn: &Conn, full: bool) {
    let s = &conn.stats;
    let _ = write!(
        out,
        " /{}[1](queued={},recved={},sent={}",
        conn.remote, conn.outstanding, s.packets_received, s.packets_sent
    );
    if full && conn.session_id != 0 {
        let _ = write!(
            out,
            ",sid=0x{:x},lop={},est={},to={}",
            conn.session_id, s.last_op, conn.established_wall_ms, conn.timeout_ms
        );
        if s.last_cxid >= 0 {
            let _ = write!(out, ",lcxid=0x{:x}", s.last_cxid);
        }
        let avg = avg_latency(s.total_latency_ms, s.latency_count) as i64;
        let _ = write!(
            out,
            ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            s.last_zxid,
            // ZooKeeper prints the raw clock value of the last response, not the time since.
            s.last_response_mono_ms,
            s.last_latency_ms,
            s.min_latency_ms,
            avg,
            s.max_latency_ms
        );
    }
    out.push_str(")\n");
}

fn server_stats(core: &Core, admin: &AdminState, stat_caller: Option<SocketAddr>) -> String {
    let mut out = format!("Zookeeper version: {}\n", version_string());
    if let Some(remote) = stat_caller {
        out.push_str("Clients:\n");
        for (_, conn) in sorted_conns(core) {
            connection_line(&mut out, conn, false);
        }
        let _ = writeln!(out, " /{remote}[0](queued=0,recved=1,sent=0)");
        out.push('\n');
    }
    let st = &core.stats;
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{}/{}",
        st.min_latency_ms,
        java_double_4(avg_latency(st.total_latency_ms, st.latency_count)),
        st.max_latency_ms
    );
    let _ = writeln!(out, "Received: {}", st.packets_received);
    let _ = writeln!(out, "Sent: {}", st.packets_sent);
    let _ = writeln!(out, "Connections: {}", core.conns.len() + 1);
    let _ = writeln!(out, "Outstanding: {}", core.outstanding());
    let _ = writeln!(out, "Zxid: 0x{:x}", core.last_processed_zxid());
    let _ = writeln!(out, "Mode: {}", admin.server_state);
    let _ = writeln!(out, "Node count: {}", core.tree.node_count());
    if let Some(status) = admin.quorum.as_ref().and_then(QuorumInfo::leader_status) {
        let (last, min, max) = proposal_sizes(&status);
        let _ = writeln!(out, "Proposal sizes last/min/max: {last}/{min}/{max}");
    }
    out
}

/// A leader's proposal sizes, last / min / max, -1 each before the first (`BufferStats`).
pub fn proposal_sizes(status: &crate::zab::leading::LeaderStatus) -> (i64, i64, i64) {
    status.proposal_sizes.map_or((-1, -1, -1), |(last, min, max)| (last as i64, min as i64, max as i64))
}

pub(crate) fn version_dir(dir: &Path) -> PathBuf {
    dir.join("version-2")
}

/// Bytes in regular files below `dir` (walked with an explicit stack, at most 100,000 entries).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    let mut budget = 100_000;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.filter_map(Result::ok) {
            budget -= 1;
            if budget == 0 {
                return total;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// (data dir, log dir) sizes. When both are the same directory, ZooKeeper reports it twice.
pub(crate) fn dir_sizes(config: &Config) -> (u64, u64) {
    (dir_size(&config.data_dir), dir_size(&config.data_log_dir))
}

fn conf(config: &Config) -> String {
    let (data_size, log_size) = dir_sizes(config);
    let mut out = String::new();
    let _ = writeln!(out, "clientPort={}", config.client_port.unwrap_or(0));
    let _ = writeln!(out, "secureClientPort=-1");
    let _ = writeln!(out, "dataDir={}", version_dir(&config.data_dir).display());
    let _ = writeln!(out, "dataDirSize={data_size}");
    let _ = writeln!(out, "dataLogDir={}", version_dir(&config.data_log_dir).display());
    let _ = writeln!(out, "dataLogSize={log_size}");
    let _ = writeln!(out, "tickTime={}", config.tick_time_ms);
    let _ = writeln!(out, "maxClientCnxns={}", config.max_client_cnxns);
    let _ = writeln!(out, "minSessionTimeout={}", config.min_session_timeout_ms);
    let _ = writeln!(out, "maxSessionTimeout={}", config.max_session_timeout_ms);
    let backlog = config.client_port_listen_backlog.map_or(-1, |b| b as i64);
    let _ = writeln!(out, "clientPortListenBacklog={backlog}");
    let _ = writeln!(out, "serverId=0");
    out
}

fn dump(core: &Core, now: Now) -> String {
    // Expiry times are monotonic; show them as wall-clock dates the way ZooKeeper prints them.
    let date = |mono_ms: i64| java_date(now.wall_ms + (mono_ms - now.mono_ms));
    let mut out = String::from("SessionTracker dump:\n");
    let buckets = core.sessions.buckets();
    let _ = writeln!(out, "Session Sets ({})/({}):", buckets.len(), core.sessions.len());
    for (expires_at_mono, ids) in &buckets {
        let _ = writeln!(out, "{} expire at {}:", ids.len(), date(*expires_at_mono));
        for id in ids {
            let _ = writeln!(out, "\t0x{id:x}");
        }
    }
    out.push_str("ephemeral nodes dump:\n");
    let mut sessions: Vec<_> = core.tree.ephemerals().iter().collect();
    sessions.sort_by_key(|(id, _)| **id);
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", sessions.len());
    for (id, paths) in sessions {
        let _ = writeln!(out, "0x{id:x}:");
        for path in paths {
            let _ = writeln!(out, "\t{path}");
        }
    }
    out.push_str("Connections dump:\n");
    let conns = sorted_conns(core);
    let _ = writeln!(out, "Connections Sets ({})/({}):", usize::from(!conns.is_empty()), conns.len());
    if !conns.is_empty() {
        let _ = writeln!(out, "{} expire at {}:", conns.len(), date(now.mono_ms));
        for (_, conn) in conns {
            let _ = writeln!(out, "\tip: /{} sessionId: 0x{:x}", conn.remote, conn.session_id);
        }
    }
    out
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn memory_mb() -> (u64, u64) {
    // (resident, total) in MiB from /proc; 0 where unavailable.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_kb = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (rss_kb / 1024, total_kb / 1024)
}

/// The `envi` keys and values, in ZooKeeper's order (`EnvCommand`, `Environment.list`).
pub(crate) fn environment_entries() -> Vec<(&'static str, String)> {
    let (rss_mb, total_mb) = memory_mb();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        other => other,
    };
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let exe = std::env::current_exe().map(|d| d.display().to_string()).unwrap_or_default();
    let entries: Vec<(&str, String)> = vec![
        ("zookeeper.version", version_string()),
        ("host.name", read_trimmed("/proc/sys/kernel/hostname")),
        ("java.version", "n/a (ferrokeeper is not a JVM)".into()),
        ("java.vendor", "n/a".into()),
        ("java.home", "n/a".into()),
        ("java.class.path", exe),
        ("java.library.path", "n/a".into()),
        ("java.io.tmpdir", std::env::temp_dir().display().to_string()),
        ("java.compiler", "<NA>".into()),
        ("os.name", "Linux".into()),
        ("os.arch", arch.into()),
        ("os.version", read_trimmed("/proc/sys/kernel/osrelease")),
        ("user.name", std::env::var("USER").unwrap_or_default()),
        ("user.home", std::env::var("HOME").unwrap_or_default()),
        ("user.dir", cwd),
        ("os.memory.free", format!("{}MB", total_mb.saturating_sub(rss_mb))),
        ("os.memory.max", format!("{total_mb}MB")),
        ("os.memory.total", format!("{rss_mb}MB")),
    ];
    entries
}

fn environment() -> String {
    let mut out = String::from("Environment:\n");
    for (k, v) in environment_entries() {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

/// `java.util.Date.toString()` in UTC: `Mon Nov 23 05:49:34 UTC 2026`.
pub fn java_date(epoch_ms: i64) -> String {
    let secs = epoch_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_like_java() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(1_795_412_974_000), "Mon Nov 23 05:49:34 UTC 2026");
    }

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(java_double_4(0.0), "0.0");
        assert_eq!(java_double_4(20.0 / 7.0), "2.8571");
        assert_eq!(java_double_4(1.5), "1.5");
    }
}
