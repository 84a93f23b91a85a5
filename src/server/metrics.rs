//! Server metrics under ZooKeeper's names (`ServerMetrics`, PROTOCOL.md §3.7), updated by the
//! pipeline and read by `mntr` (and, later, the Prometheus endpoint).
//!
//! Summaries keep count, sum, min and max, plus a bounded window of recent samples for the
//! percentiles (`mntr` prints them for the "advanced" ones, ZooKeeper's
//! `AvgMinMaxPercentileCounter`; Prometheus exports a median for every summary).

use std::collections::{BTreeMap, VecDeque};

/// How many recent samples percentile summaries keep.
const PERCENTILE_WINDOW: usize = 1024;

/// How many labels one summary set keeps. ZooKeeper's sets grow without bound (one per top-level
/// znode ever touched); past this many, samples under new labels are dropped and counted in
/// `SummarySet::dropped_samples`.
pub const SUMMARY_SET_KEYS_MAX: usize = 1024;

/// A summary metric: `avg_`, `min_`, `max_`, `cnt_`, `sum_` and, when `percentiles`, `p50_`,
/// `p95_`, `p99_`, `p999_`.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Samples recorded.
    pub count: u64,
    /// Sum of samples.
    pub sum: i64,
    /// Smallest sample (0 when none).
    pub min: i64,
    /// Largest sample (0 when none).
    pub max: i64,
    window: VecDeque<i64>,
    percentiles: bool,
}

impl Summary {
    fn with_percentiles() -> Summary {
        Summary { percentiles: true, ..Summary::default() }
    }

    /// Records one sample.
    pub fn add(&mut self, value: i64) {
        if self.count == 0 || value < self.min {
            self.min = value;
        }
        if self.count == 0 || value > self.max {
            self.max = value;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
        // Every summary keeps the window: `mntr` prints percentiles only for the advanced ones,
        // but the Prometheus provider exports a 0.5 quantile for all of them.
        if self.window.len() == PERCENTILE_WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(value);
    }

    /// Mean, 0.0 when empty.
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The `q` quantile (0..=1) of the recent window, 0 when empty.
    pub fn quantile(&self, q: f64) -> i64 {
        if self.window.is_empty() {
            return 0;
        }
        let mut sorted: Vec<i64> = self.window.iter().copied().collect();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// Whether this summary keeps percentiles (ZooKeeper's `SummaryLevel.ADVANCED`).
    pub fn is_advanced(&self) -> bool {
        self.percentiles
    }

    /// Whether the percentile window holds any sample (Prometheus prints `NaN` quantiles otherwise).
    pub fn has_window(&self) -> bool {
        !self.window.is_empty()
    }

    /// Several quantiles of the recent window with one sort; `None` when the window is empty.
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> Option<[i64; N]> {
        if self.window.is_empty() {
            return None;
        }
        let mut sorted: Vec<i64> = self.window.iter().copied().collect();
        sorted.sort_unstable();
        let mut out = [0; N];
        for (slot, q) in out.iter_mut().zip(qs) {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            *slot = sorted[rank - 1];
        }
        Some(out)
    }

    fn reset(&mut self) {
        *self = Summary { percentiles: self.percentiles, ..Summary::default() };
    }
}

/// A labelled summary set (ZooKeeper's `AvgMinMaxCounterSet`): one summary per label, created by its
/// first sample, kept (zeroed) by a reset.
#[derive(Debug, Clone, Default)]
pub struct SummarySet {
    members: hashbrown::HashMap<Box<str>, Summary, foldhash::fast::FixedState>,
    advanced: bool,
    /// Samples dropped because the set already held `SUMMARY_SET_KEYS_MAX` labels.
    pub dropped_samples: u64,
}

impl SummarySet {
    fn new(advanced: bool) -> SummarySet {
        SummarySet { advanced, ..SummarySet::default() }
    }

    /// Records one sample under `key`.
    pub fn add(&mut self, key: &str, value: i64) {
        if let Some(summary) = self.members.get_mut(key) {
            summary.add(value);
            return;
        }
        if self.members.len() >= SUMMARY_SET_KEYS_MAX {
            self.dropped_samples += 1;
            return;
        }
        let mut summary = if self.advanced { Summary::with_percentiles() } else { Summary::default() };
        summary.add(value);
        self.members.insert(key.into(), summary);
    }

    /// Whether members keep percentiles.
    pub fn is_advanced(&self) -> bool {
        self.advanced
    }

    /// Every label with its summary, in label order.
    pub fn members(&self) -> Vec<(&str, &Summary)> {
        let mut members: Vec<(&str, &Summary)> = self.members.iter().map(|(k, s)| (&**k, s)).collect();
        members.sort_unstable_by_key(|(k, _)| *k);
        members
    }

    fn reset(&mut self) {
        for summary in self.members.values_mut() {
            summary.reset();
        }
        self.dropped_samples = 0;
    }
}

/// The top-level namespace of a path, as ZooKeeper's `PathUtils.getTopNamespace` finds it: `app`
/// for `/app/x`; `None` for `/`.
pub fn top_namespace(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let top = rest.split('/').next().unwrap_or("");
    if top.is_empty() {
        // Java's split drops trailing empty strings, so "/" has no namespace but "//a" has "".
        return if rest.trim_matches('/').is_empty() { None } else { Some("") };
    }
    Some(top)
}

/// Bytes a read of `path` returning `payload_bytes` counts in `read_per_namespace`
/// (`DataTree.updateReadStat`: path length in UTF-16 units, payload, and a Stat's 68 bytes).
pub fn read_stat_bytes(path: &str, payload_bytes: usize) -> i64 {
    (java_length(path) + payload_bytes + STAT_OVERHEAD_BYTES) as i64
}

/// Bytes a write counts in `write_per_namespace` (`DataTree.updateWriteStat`: path length plus data).
pub fn write_stat_bytes(path: &str, data_bytes: usize) -> i64 {
    (java_length(path) + data_bytes) as i64
}

/// Size of a Stat as `DataTree.STAT_OVERHEAD_BYTES` counts it: six longs and five ints.
const STAT_OVERHEAD_BYTES: usize = 6 * 8 + 5 * 4;

/// A string's length as Java's `String.length` counts it (UTF-16 units).
pub fn java_length(s: &str) -> usize {
    java_length_utf8(s.as_bytes())
}

/// `java_length` of a string given as its UTF-8 bytes: one unit per character, two for one outside
/// the Basic Multilingual Plane (a 4-byte sequence, lead byte 0xF0 and up).
pub fn java_length_utf8(bytes: &[u8]) -> usize {
    if bytes.is_ascii() {
        bytes.len()
    } else {
        bytes.iter().map(|&b| usize::from(b & 0xC0 != 0x80) + usize::from(b >= 0xF0)).sum()
    }
}

/// Counters and gauges ZooKeeper 3.8 reports, in its `mntr` order after the fixed first lines.
/// Those ferrokeeper does not measure (JVM, Netty, TLS, quorum internals on a standalone server)
/// stay 0, as they are on an idle ZooKeeper.
pub const COUNTER_NAMES: [&str; 70] = [
    "version",
    "server_state",
    "ephemerals_count",
    "num_alive_connections",
    "outstanding_requests",
    "znode_count",
    "global_sessions",
    "non_mtls_remote_conn_count",
    "last_client_response_size",
    "packets_sent",
    "packets_received",
    "max_client_response_size",
    "connection_drop_probability",
    "watch_count",
    "auth_failed_count",
    "max_file_descriptor_count",
    "approximate_data_size",
    "open_file_descriptor_count",
    "local_sessions",
    "uptime",
    "outstanding_tls_handshake",
    "min_client_response_size",
    "non_mtls_local_conn_count",
    "proposal_count",
    "watch_bytes",
    "outstanding_changes_removed",
    "throttled_ops",
    "stale_requests_dropped",
    "large_requests_rejected",
    "insecure_admin_count",
    "connection_rejected",
    "cnxn_closed_without_zk_server_running",
    "sessionless_connections_expired",
    "looking_count",
    "dead_watchers_queued",
    "stale_requests",
    "connection_drop_count",
    "learner_proposal_received_count",
    "digest_mismatches_count",
    "dead_watchers_cleared",
    "response_packet_cache_hits",
    "bytes_received_count",
    "add_dead_watcher_stall_time",
    "request_throttle_wait_count",
    "requests_not_forwarded_to_commit_processor",
    "response_packet_cache_misses",
    "ensemble_auth_success",
    "prep_processor_request_queued",
    "learner_commit_received_count",
    "stale_replies",
    "connection_request_count",
    "response_bytes",
    "ensemble_auth_fail",
    "diff_count",
    "response_packet_get_children_cache_misses",
    "connection_revalidate_count",
    "quit_leading_due_to_disloyal_voter",
    "snap_count",
    "unrecoverable_error_count",
    "unsuccessful_handshake",
    "commit_count",
    "stale_sessions_expired",
    "response_packet_get_children_cache_hits",
    "sync_processor_request_queued",
    "outstanding_changes_queued",
    "request_commit_queued",
    "ensemble_auth_skip",
    "skip_learner_request_to_next_processor_count",
    "tls_handshake_exceeded",
    "revalidate_count",
];

/// The names ZooKeeper registers as gauges (`ZooKeeperServer.registerMetrics`); the Prometheus provider
/// exports them with `# TYPE <name> gauge`. Every other name in `COUNTER_NAMES` but `version` and
/// `server_state` (which only `mntr` prints) is a counter there.
pub const GAUGE_NAMES: [&str; 24] = [
    "approximate_data_size",
    "auth_failed_count",
    "avg_latency",
    "connection_drop_probability",
    "ephemerals_count",
    "global_sessions",
    "last_client_response_size",
    "local_sessions",
    "max_client_response_size",
    "max_file_descriptor_count",
    "max_latency",
    "min_client_response_size",
    "min_latency",
    "non_mtls_local_conn_count",
    "non_mtls_remote_conn_count",
    "num_alive_connections",
    "open_file_descriptor_count",
    "outstanding_requests",
    "outstanding_tls_handshake",
    "packets_received",
    "packets_sent",
    "uptime",
    "watch_count",
    "znode_count",
];

/// Labelled summary sets (`AvgMinMaxCounterSet` / `AvgMinMaxPercentileCounterSet`): `mntr` prints them
/// only once a label has a sample; Prometheus declares them (label `key`) even when empty. The bool
/// says whether the set is "advanced" (has percentiles).
pub const SUMMARY_SET_NAMES: [(&str, bool); 5] = [
    ("ack_latency", true),
    ("learner_handler_qp_size", false),
    ("learner_handler_qp_time_ms", true),
    ("read_per_namespace", false),
    ("write_per_namespace", false),
];

/// Summaries printed with avg/min/max/cnt/sum.
pub const BASIC_SUMMARY_NAMES: [&str; 41] = [
    "commit_commit_proc_req_queued",
    "commit_process_time",
    "concurrent_request_processing_in_commit_processor",
    "connection_token_deficit",
    "dbinittime",
    "election_time",
    "follower_sync_time",
    "fsynctime",
    "inflight_diff_count",
    "inflight_snap_count",
    "leader_unavailable_time",
    "learner_request_processor_queue_size",
    "netty_queued_buffer_capacity",
    "node_changed_watch_count",
    "node_children_watch_count",
    "node_created_watch_count",
    "node_deleted_watch_count",
    "observer_sync_time",
    "pending_session_queue_size",
    "prep_process_time",
    "prep_processor_queue_size",
    "proposal_process_time",
    "read_commit_proc_issued",
    "read_commit_proc_req_queued",
    "reads_after_write_in_session_queue",
    "reads_issued_from_session_queue",
    "requests_in_session_queue",
    "session_queues_drained",
    "snapshottime",
    "socket_closing_time",
    "startup_snap_load_time",
    "startup_txns_load_time",
    "startup_txns_loaded",
    "sync_process_time",
    "sync_processor_batch_size",
    "sync_processor_queue_size",
    "time_waiting_empty_pool_in_commit_processor_read_ms",
    "unavailable_time",
    "write_batch_time_in_commit_processor",
    "write_commit_proc_issued",
    "write_commit_proc_req_queued",
];

/// Summaries printed with the percentiles as well.
pub const ADVANCED_SUMMARY_NAMES: [&str; 23] = [
    "close_session_prep_time",
    "commit_propagation_latency",
    "dead_watchers_cleaner_latency",
    "jvm_pause_time_ms",
    "local_write_committed_time_ms",
    "om_commit_process_time_ms",
    "om_proposal_process_time_ms",
    "prep_processor_queue_time_ms",
    "propagation_latency",
    "proposal_ack_creation_latency",
    "proposal_latency",
    "quorum_ack_latency",
    "read_commitproc_time_ms",
    "read_final_proc_time_ms",
    "readlatency",
    "request_throttle_queue_time_ms",
    "server_write_committed_time_ms",
    "sync_processor_queue_and_flush_time_ms",
    "sync_processor_queue_flush_time_ms",
    "sync_processor_queue_time_ms",
    "updatelatency",
    "write_commitproc_time_ms",
    "write_final_proc_time_ms",
];

/// Position of `name` in `names`; panics (at compile time when used in a `const`) if absent.
const fn index_of(names: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < names.len() {
        if str_eq(names[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("unknown metric name");
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A counter, resolved to its slot once: `Counter::named` in a `const` makes an unknown name a
/// compile error, and `inc` is an array index instead of a string-keyed map lookup (that lookup
/// was ~2.7% of the server's instructions under getData load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(usize);

impl Counter {
    /// The counter called `name` (one of `COUNTER_NAMES`).
    pub const fn named(name: &str) -> Counter {
        Counter(index_of(&COUNTER_NAMES, name))
    }
}

/// A summary, resolved to its slot once (see `Counter`). Slots are `BASIC_SUMMARY_NAMES` then
/// `ADVANCED_SUMMARY_NAMES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryId(usize);

impl SummaryId {
    /// The summary called `name` (one of the basic or advanced summary names).
    pub const fn named(name: &str) -> SummaryId {
        let mut i = 0;
        while i < BASIC_SUMMARY_NAMES.len() {
            if str_eq(BASIC_SUMMARY_NAMES[i], name) {
                return SummaryId(i);
            }
            i += 1;
        }
        SummaryId(BASIC_SUMMARY_NAMES.len() + index_of(&ADVANCED_SUMMARY_NAMES, name))
    }

    fn name(self) -> &'static str {
        match self.0.checked_sub(BASIC_SUMMARY_NAMES.len()) {
            None => BASIC_SUMMARY_NAMES[self.0],
            Some(i) => ADVANCED_SUMMARY_NAMES[i],
        }
    }
}

/// The metrics the pipeline updates, resolved at compile time.
pub mod ids {
    use super::{Counter, SummaryId};

    /// `bytes_received_count`.
    pub const BYTES_RECEIVED_COUNT: Counter = Counter::named("bytes_received_count");
    /// `commit_count`.
    pub const COMMIT_COUNT: Counter = Counter::named("commit_count");
    /// `connection_request_count`.
    pub const CONNECTION_REQUEST_COUNT: Counter = Counter::named("connection_request_count");
    /// `non_mtls_local_conn_count`.
    pub const NON_MTLS_LOCAL_CONN_COUNT: Counter = Counter::named("non_mtls_local_conn_count");
    /// `non_mtls_remote_conn_count`.
    pub const NON_MTLS_REMOTE_CONN_COUNT: Counter = Counter::named("non_mtls_remote_conn_count");
    /// `response_bytes`.
    pub const RESPONSE_BYTES: Counter = Counter::named("response_bytes");
    /// `stale_sessions_expired`.
    pub const STALE_SESSIONS_EXPIRED: Counter = Counter::named("stale_sessions_expired");
    /// `unsuccessful_handshake`.
    pub const UNSUCCESSFUL_HANDSHAKE: Counter = Counter::named("unsuccessful_handshake");
    /// `dbinittime`.
    pub const DBINITTIME: SummaryId = SummaryId::named("dbinittime");
    /// `node_changed_watch_count`.
    pub const NODE_CHANGED_WATCH_COUNT: SummaryId = SummaryId::named("node_changed_watch_count");
    /// `node_children_watch_count`.
    pub const NODE_CHILDREN_WATCH_COUNT: SummaryId = SummaryId::named("node_children_watch_count");
    /// `node_created_watch_count`.
    pub const NODE_CREATED_WATCH_COUNT: SummaryId = SummaryId::named("node_created_watch_count");
    /// `node_deleted_watch_count`.
    pub const NODE_DELETED_WATCH_COUNT: SummaryId = SummaryId::named("node_deleted_watch_count");
    /// `readlatency`.
    pub const READLATENCY: SummaryId = SummaryId::named("readlatency");
    /// `snapshottime`.
    pub const SNAPSHOTTIME: SummaryId = SummaryId::named("snapshottime");
    /// `fsynctime`.
    pub const FSYNCTIME: SummaryId = SummaryId::named("fsynctime");
    /// `updatelatency`.
    pub const UPDATELATENCY: SummaryId = SummaryId::named("updatelatency");
    /// `election_time`: ms from looking to the decision, once per role.
    pub const ELECTION_TIME: SummaryId = SummaryId::named("election_time");
    /// `follower_sync_time`: ms a follower took from connecting to its leader to being synced.
    pub const FOLLOWER_SYNC_TIME: SummaryId = SummaryId::named("follower_sync_time");
}

/// Everything the pipeline counts: one slot per name, indexed by `Counter` / `SummaryId`.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    counters: [i64; COUNTER_NAMES.len()],
    summaries: Vec<Summary>,
    summary_sets: BTreeMap<&'static str, SummarySet>,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        let mut summaries = Vec::with_capacity(BASIC_SUMMARY_NAMES.len() + ADVANCED_SUMMARY_NAMES.len());
        summaries.extend(BASIC_SUMMARY_NAMES.iter().map(|_| Summary::default()));
        summaries.extend(ADVANCED_SUMMARY_NAMES.iter().map(|_| Summary::with_percentiles()));
        let summary_sets = SUMMARY_SET_NAMES.iter().map(|(name, advanced)| (*name, SummarySet::new(*advanced))).collect();
        ServerMetrics { counters: [0; COUNTER_NAMES.len()], summaries, summary_sets }
    }
}

impl ServerMetrics {
    /// Adds to a counter.
    pub fn inc(&mut self, counter: Counter, by: i64) {
        self.counters[counter.0] += by;
    }

    /// A counter's value by name (0 for names ferrokeeper does not count).
    pub fn counter(&self, name: &str) -> i64 {
        COUNTER_NAMES.iter().position(|n| *n == name).map_or(0, |i| self.counters[i])
    }

    /// Records a sample of a summary.
    pub fn observe(&mut self, summary: SummaryId, value: i64) {
        self.summaries[summary.0].add(value);
    }

    /// Records a sample under `key` in a summary set.
    pub fn observe_in_set(&mut self, name: &'static str, key: &str, value: i64) {
        match self.summary_sets.get_mut(name) {
            Some(set) => set.add(key, value),
            None => debug_assert!(false, "unknown summary set {name}"),
        }
    }

    /// Every summary set with its name, in name order.
    pub fn summary_sets(&self) -> impl Iterator<Item = (&'static str, &SummarySet)> {
        self.summary_sets.iter().map(|(name, set)| (*name, set))
    }

    /// Every summary with its name, in name order.
    pub fn summaries(&self) -> impl Iterator<Item = (&'static str, &Summary)> {
        let mut all: Vec<(&'static str, &Summary)> =
            self.summaries.iter().enumerate().map(|(i, s)| (SummaryId(i).name(), s)).collect();
        all.sort_unstable_by_key(|(name, _)| *name);
        all.into_iter()
    }

    /// A summary by name.
    pub fn summary(&self, name: &str) -> Option<&Summary> {
        (0..self.summaries.len()).find(|&i| SummaryId(i).name() == name).map(|i| &self.summaries[i])
    }

    /// Zeroes everything (`srst`).
    pub fn reset(&mut self) {
        self.counters = [0; COUNTER_NAMES.len()];
        for summary in &mut self.summaries {
            summary.reset();
        }
        for set in self.summary_sets.values_mut() {
            set.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_length_counts_utf16_units_from_utf8_bytes() {
        for s in ["", "child-7", "é", "✓ok", "a😀b", "😀😀", "\u{10FFFF}"] {
            let utf16 = s.encode_utf16().count();
            assert_eq!(java_length(s), utf16, "{s:?}");
            assert_eq!(java_length_utf8(s.as_bytes()), utf16, "{s:?}");
        }
    }

    #[test]
    fn summaries_track_bounds_and_percentiles() {
        let mut m = ServerMetrics::default();
        for v in 1..=100 {
            m.observe(ids::READLATENCY, v);
        }
        let s = m.summary("readlatency").unwrap();
        assert_eq!((s.count, s.min, s.max, s.sum), (100, 1, 100, 5050));
        assert_eq!(s.quantile(0.5), 50);
        assert_eq!(s.quantile(0.99), 99);
        m.reset();
        assert_eq!(m.summary("readlatency").unwrap().count, 0);
    }

    #[test]
    fn top_namespace_follows_java_split() {
        assert_eq!(top_namespace("/"), None);
        assert_eq!(top_namespace("/app"), Some("app"));
        assert_eq!(top_namespace("/app/x/y"), Some("app"));
        assert_eq!(top_namespace("/zookeeper/config"), Some("zookeeper"));
        assert_eq!(top_namespace("//a"), Some(""));
        assert_eq!(top_namespace("relative"), None);
    }

    #[test]
    fn summary_sets_keep_labels_through_reset_and_stay_bounded() {
        let mut m = ServerMetrics::default();
        m.observe_in_set("write_per_namespace", "app", write_stat_bytes("/app/a", 100));
        m.observe_in_set("write_per_namespace", "app", write_stat_bytes("/app/b", 0));
        m.observe_in_set("read_per_namespace", "db", read_stat_bytes("/db", 3));
        let (_, writes) = m.summary_sets().find(|(n, _)| *n == "write_per_namespace").unwrap();
        let members = writes.members();
        assert_eq!(members.len(), 1);
        assert_eq!((members[0].0, members[0].1.count, members[0].1.sum), ("app", 2, 106 + 6));
        let (_, reads) = m.summary_sets().find(|(n, _)| *n == "read_per_namespace").unwrap();
        assert_eq!(reads.members()[0].1.sum, 3 + 3 + 68);
        m.reset();
        let (_, writes) = m.summary_sets().find(|(n, _)| *n == "write_per_namespace").unwrap();
        assert_eq!(writes.members().len(), 1, "a reset keeps the label, zeroed");
        assert_eq!(writes.members()[0].1.count, 0);
        for i in 0..SUMMARY_SET_KEYS_MAX + 10 {
            m.observe_in_set("read_per_namespace", &format!("n{i}"), 1);
        }
        let (_, reads) = m.summary_sets().find(|(n, _)| *n == "read_per_namespace").unwrap();
        assert_eq!(reads.members().len(), SUMMARY_SET_KEYS_MAX);
        assert_eq!(reads.dropped_samples, 11);
    }

    #[test]
    fn every_name_is_known_once() {
        let mut all: Vec<&str> = COUNTER_NAMES.to_vec();
        all.extend(BASIC_SUMMARY_NAMES);
        all.extend(ADVANCED_SUMMARY_NAMES);
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn resolved_ids_name_their_slot() {
        assert_eq!(SummaryId::named("dbinittime").name(), "dbinittime");
        assert_eq!(SummaryId::named("updatelatency").name(), "updatelatency");
        let mut m = ServerMetrics::default();
        m.inc(ids::COMMIT_COUNT, 3);
        assert_eq!(m.counter("commit_count"), 3);
        assert_eq!(m.counter("fsync_threshold_exceed_count"), 0);
        let names: Vec<&str> = m.summaries().map(|(name, _)| name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), BASIC_SUMMARY_NAMES.len() + ADVANCED_SUMMARY_NAMES.len());
    }
}
