//! One snapshot of every metric ZooKeeper 3.8 reports, taken inside the core task, and the three
//! views of it: the `mntr` text (4lw), the AdminServer `monitor` command (JSON) and the Prometheus
//! exposition (`admin::prometheus`). Keeping one source means the three always agree on names.
//!
//! ZooKeeper's metrics provider decides the spelling (PROTOCOL.md §3.7, §7.2):
//! - default provider: summaries print as `avg_<n>`, `min_<n>`, `max_<n>`, `cnt_<n>`, `sum_<n>` (+
//!   `p50_ p95_ p99_ p999_` for "advanced" ones), integers as integers;
//! - Prometheus provider (`PrometheusMetricsProvider.dump`): every value is the double of its
//!   Prometheus sample, summaries print as `<n>{quantile="0.5"}`, `<n>_count`, `<n>_sum`.
//!
//! Taking a snapshot reads `/proc` for descriptor counts (as `mntr` always did) and sorts each
//! percentile window once; it never blocks on anything else.

use std::fmt::Write;

use crate::admin::four_letter::{java_double_4, proposal_sizes, AdminState, QuorumInfo};
use crate::server::core::{Core, Now};
use crate::server::metrics::{Summary, GAUGE_NAMES};

/// Quantiles the Prometheus provider exports for "advanced" summaries (basic ones: the first only).
pub const PROMETHEUS_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// One `mntr` value, typed as ZooKeeper types it (JSON numbers vs strings follow this).
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorValue {
    /// Java `Long`/`Integer`.
    Int(i64),
    /// Java `Double` (printed with `Double.toString`).
    Double(f64),
    /// Strings (`version`, `server_state`).
    Text(String),
}

impl MonitorValue {
    /// The value as Java's `String.valueOf` prints it.
    pub fn to_java_string(&self) -> String {
        match self {
            MonitorValue::Int(v) => v.to_string(),
            MonitorValue::Double(v) => java_double(*v),
            MonitorValue::Text(s) => s.clone(),
        }
    }

    /// The value as a Prometheus sample (a double); `None` for text.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MonitorValue::Int(v) => Some(*v as f64),
            MonitorValue::Double(v) => Some(*v),
            MonitorValue::Text(_) => None,
        }
    }
}

/// How a plain (non-summary) metric is typed in Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only `mntr` prints it (`version`, `server_state`).
    MntrOnly,
    /// A gauge (`ZooKeeperServer.registerMetrics`).
    Gauge,
    /// A counter (`ServerMetrics`).
    Counter,
}

/// A summary's state at snapshot time.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarySnapshot {
    /// ZooKeeper's metric name.
    pub name: &'static str,
    /// Samples.
    pub count: u64,
    /// Sum of samples.
    pub sum: i64,
    /// Smallest sample (0 when none).
    pub min: i64,
    /// Largest sample (0 when none).
    pub max: i64,
    /// Mean (0.0 when none).
    pub avg: f64,
    /// Has percentiles (`p50_`…, and Prometheus quantiles 0.9 and 0.99).
    pub advanced: bool,
    /// p50, p95, p99, p999 of the recent window (mntr's default spelling); `None` when empty.
    pub percentiles: Option<[i64; 4]>,
    /// The `PROMETHEUS_QUANTILES` of the recent window; `None` when empty (Prometheus prints NaN).
    pub prometheus_quantiles: Option<[i64; 3]>,
}

impl SummarySnapshot {
    /// The state of one summary.
    pub fn of(name: &'static str, s: &Summary) -> SummarySnapshot {
        SummarySnapshot {
            name,
            count: s.count,
            sum: s.sum,
            min: s.min,
            max: s.max,
            avg: s.avg(),
            advanced: s.is_advanced(),
            percentiles: if s.is_advanced() {
                s.quantiles([0.5, 0.95, 0.99, 0.999])
            } else {
                None
            },
            prometheus_quantiles: s.quantiles(PROMETHEUS_QUANTILES),
        }
    }

    /// The `(key, value)` pairs `mntr` prints for this summary. `label`: the member's key in a
    /// summary set (the default provider names it `avg_<label>_<name>`; the Prometheus provider
    /// prints it as the label `key`).
    fn push_entries(&self, label: Option<&str>, prometheus: bool, out: &mut Vec<(String, MonitorValue)>) {
        let name = self.name;
        if prometheus {
            let key = label.map_or(String::new(), |k| format!("key=\"{k}\""));
            let braces = |extra: &str| {
                let inner = [key.as_str(), extra].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(",");
                if inner.is_empty() {
                    String::new()
                } else {
                    format!("{{{inner}}}")
                }
            };
            let quantiles = if self.advanced {
                &PROMETHEUS_QUANTILES[..]
            } else {
                &PROMETHEUS_QUANTILES[..1]
            };
            for (i, q) in quantiles.iter().enumerate() {
                let v = self.prometheus_quantiles.map_or(f64::NAN, |qs| qs[i] as f64);
                out.push((format!("{name}{}", braces(&format!("quantile=\"{q}\""))), MonitorValue::Double(v)));
            }
            out.push((format!("{name}_count{}", braces("")), MonitorValue::Double(self.count as f64)));
            out.push((format!("{name}_sum{}", braces("")), MonitorValue::Double(self.sum as f64)));
        } else {
            let full = match label {
                Some(k) => format!("{k}_{name}"),
                None => name.to_string(),
            };
            let avg = java_double_4(self.avg).parse().unwrap_or(self.avg);
            out.push((format!("avg_{full}"), MonitorValue::Double(avg)));
            out.push((format!("min_{full}"), MonitorValue::Int(self.min)));
            out.push((format!("max_{full}"), MonitorValue::Int(self.max)));
            out.push((format!("cnt_{full}"), MonitorValue::Int(self.count as i64)));
            out.push((format!("sum_{full}"), MonitorValue::Int(self.sum)));
            if self.advanced {
                let p = self.percentiles.unwrap_or([0; 4]);
                for (prefix, v) in ["p50", "p95", "p99", "p999"].iter().zip(p) {
                    out.push((format!("{prefix}_{full}"), MonitorValue::Int(v)));
                }
            }
        }
    }

    /// A summary without samples (test fixtures).
    #[cfg(test)]
    pub(crate) fn empty(name: &'static str, advanced: bool) -> SummarySnapshot {
        SummarySnapshot {
            name,
            count: 0,
            sum: 0,
            min: 0,
            max: 0,
            avg: 0.0,
            advanced,
            percentiles: None,
            prometheus_quantiles: None,
        }
    }
}

/// Everything `mntr` reports, at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSnapshot {
    /// Plain metrics in ZooKeeper's `mntr` order.
    pub values: Vec<(&'static str, MetricKind, MonitorValue)>,
    /// Summaries (basic first, then advanced, each in name order).
    pub summaries: Vec<SummarySnapshot>,
    /// Labelled summary sets, in name order; Prometheus declares them even when no label has a sample.
    pub summary_sets: Vec<SummarySetSnapshot>,
}

/// A labelled summary set's state at snapshot time.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarySetSnapshot {
    /// ZooKeeper's metric name.
    pub name: &'static str,
    /// Members keep percentiles.
    pub advanced: bool,
    /// Each label (in label order) with its summary (named after the set).
    pub members: Vec<(String, SummarySnapshot)>,
}

fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64)
}

fn max_fds() -> i64 {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl MonitorSnapshot {
    /// Reads every metric from the core. `asked_by_4lw`: the 4lw connection asking counts as an alive
    /// connection in ZooKeeper (it is a `ServerCnxn`); an HTTP request is not.
    pub fn take(core: &Core, admin: &AdminState, now: Now, asked_by_4lw: bool) -> MonitorSnapshot {
        use crate::server::metrics::COUNTER_NAMES;
        use MonitorValue::{Double, Int, Text};
        let st = &core.stats;
        let m = &core.metrics;
        let no_response = st.packets_sent == 0;
        let avg_latency = if st.latency_count == 0 {
            0.0
        } else {
            st.total_latency_ms as f64 / st.latency_count as f64
        };
        let mut values = Vec::with_capacity(COUNTER_NAMES.len() + 3 + QUORUM_GAUGE_NAMES.len());
        let quorum = admin.quorum.as_ref();
        let leader = quorum.and_then(QuorumInfo::leader_status);
        let (last_proposal, min_proposal, max_proposal) = leader.as_ref().map_or((-1, -1, -1), proposal_sizes);
        // A quorum member adds `peer_state` after `server_state` and its quorum gauges (a
        // follower only `quorum_size`) among the others; ZooKeeper's order is its hash map's.
        let quorum_names: &[&'static str] = match (quorum, &leader) {
            (Some(_), Some(_)) => &QUORUM_GAUGE_NAMES,
            (Some(_), None) => &["quorum_size"],
            (None, _) => &[],
        };
        let names = COUNTER_NAMES.iter().copied().flat_map(|name| {
            let after: &[&'static str] = match name {
                "server_state" if quorum.is_some() => &["peer_state"],
                "non_mtls_local_conn_count" => quorum_names,
                _ => &[],
            };
            std::iter::once(name).chain(after.iter().copied())
        });
        for name in names {
            let value = match name {
                "peer_state" => Text(quorum.map_or("", QuorumInfo::peer_state).into()),
                "quorum_size" => Int(quorum.map_or(0, |q| q.quorum_size as i64)),
                "learners" => Int(leader.as_ref().map_or(0, |l| l.learners as i64)),
                "synced_followers" => Int(leader.as_ref().map_or(0, |l| l.synced_learners.len() as i64)),
                "pending_syncs" => Int(leader.as_ref().map_or(0, |l| l.pending_syncs as i64)),
                "leader_uptime" => Int(now.mono_ms - admin.started_mono_ms),
                "last_proposal_size" => Int(last_proposal),
                "min_proposal_size" => Int(min_proposal),
                "max_proposal_size" => Int(max_proposal),
                // No observers or non-voting followers yet.
                "synced_non_voting_followers" | "synced_observers" => Int(0),
                "version" => Text(crate::admin::four_letter::version_string()),
                "server_state" => Text(admin.server_state.into()),
                "ephemerals_count" => Int(core.tree.ephemeral_count() as i64),
                // ZooKeeper counts the connection asking, too.
                "num_alive_connections" => Int(core.conns.len() as i64 + i64::from(asked_by_4lw)),
                "outstanding_requests" => Int(core.outstanding() as i64),
                "znode_count" => Int(core.tree.node_count() as i64),
                "global_sessions" => Int(core.sessions.len() as i64),
                "local_sessions" => Int(0),
                "packets_sent" => Int(st.packets_sent as i64),
                "packets_received" => Int(st.packets_received as i64),
                "watch_count" => Int(core.watches.watch_count() as i64),
                "auth_failed_count" => Int(st.auth_failed_count as i64),
                "approximate_data_size" => Int(core.tree.approximate_data_size() as i64),
                "open_file_descriptor_count" => Int(open_fds()),
                "max_file_descriptor_count" => Int(max_fds()),
                "uptime" => Int(now.mono_ms - admin.started_mono_ms),
                "connection_drop_probability" => Double(0.0),
                "last_client_response_size" => Int(if no_response { -1 } else { st.last_response_size }),
                "min_client_response_size" => Int(if no_response { -1 } else { st.min_response_size }),
                "max_client_response_size" => Int(if no_response { -1 } else { st.max_response_size }),
                "outstanding_changes_queued" => Int(core.outstanding_changes() as i64),
                other => Int(m.counter(other)),
            };
            values.push((name, kind_of(name), value));
            if name == "num_alive_connections" {
                // ZooKeeper's request latency gauges (ms); avg is rounded like `ServerStats`.
                let avg = java_double_4(avg_latency).parse().unwrap_or(avg_latency);
                values.push(("avg_latency", MetricKind::Gauge, Double(avg)));
                values.push(("max_latency", MetricKind::Gauge, Int(st.max_latency_ms)));
                values.push(("min_latency", MetricKind::Gauge, Int(st.min_latency_ms)));
            }
        }
        let mut summaries: Vec<SummarySnapshot> = m.summaries().map(|(name, s)| SummarySnapshot::of(name, s)).collect();
        summaries.sort_by_key(|s| (s.advanced, s.name));
        MonitorSnapshot {
            values,
            summaries,
            summary_sets: m
                .summary_sets()
                .map(|(name, set)| SummarySetSnapshot {
                    name,
                    advanced: set.is_advanced(),
                    members: set.members().into_iter().map(|(k, s)| (k.to_string(), SummarySnapshot::of(name, s))).collect(),
                })
                .collect(),
        }
    }

    /// The `(key, value)` pairs `mntr` and the `monitor` command print, in order, for the default
    /// provider (`prometheus == false`) or the Prometheus provider.
    pub fn entries(&self, prometheus: bool) -> Vec<(String, MonitorValue)> {
        let mut out = Vec::with_capacity(self.values.len() + self.summaries.len() * 9);
        for (name, kind, value) in &self.values {
            let value = match (prometheus, kind) {
                // Provider samples are doubles; only the two fixed lines keep their own type.
                (true, MetricKind::Gauge | MetricKind::Counter) => MonitorValue::Double(value.as_f64().unwrap_or(0.0)),
                _ => value.clone(),
            };
            out.push((name.to_string(), value));
        }
        for s in &self.summaries {
            s.push_entries(None, prometheus, &mut out);
        }
        // Basic sets before advanced ones, as ZooKeeper's default provider dumps them.
        let mut sets: Vec<&SummarySetSnapshot> = self.summary_sets.iter().collect();
        sets.sort_by_key(|set| (set.advanced, set.name));
        for set in sets {
            for (label, s) in &set.members {
                s.push_entries(Some(label), prometheus, &mut out);
            }
        }
        out
    }

    /// The `mntr` 4lw text: `zk_<key>\t<value>\n` per entry.
    pub fn mntr_text(&self, prometheus: bool) -> String {
        let mut out = String::new();
        for (key, value) in self.entries(prometheus) {
            let _ = writeln!(out, "zk_{key}\t{}", value.to_java_string());
        }
        out
    }
}

/// The gauges a leader adds (`QuorumZooKeeperServer`, `LeaderZooKeeperServer.registerMetrics`).
const QUORUM_GAUGE_NAMES: [&str; 10] = [
    "learners",
    "synced_followers",
    "synced_non_voting_followers",
    "synced_observers",
    "pending_syncs",
    "leader_uptime",
    "last_proposal_size",
    "min_proposal_size",
    "max_proposal_size",
    "quorum_size",
];

fn kind_of(name: &str) -> MetricKind {
    if name == "version" || name == "server_state" || name == "peer_state" {
        MetricKind::MntrOnly
    } else if GAUGE_NAMES.contains(&name) || QUORUM_GAUGE_NAMES.contains(&name) {
        MetricKind::Gauge
    } else {
        MetricKind::Counter
    }
}

/// Java's `Double.toString`: `5.0`, `0.6667`, `6.7109337E7`, `1.0E-4`, `NaN`, `Infinity`.
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let abs = v.abs();
    if (1e-3..1e7).contains(&abs) {
        // Shortest representation that round-trips, with at least one decimal.
        let s = format!("{v}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // Computerized scientific notation: one digit before the point, at least one after.
        let s = format!("{v:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exponent}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(java_double(5.0), "5.0");
        assert_eq!(java_double(0.6667), "0.6667");
        assert_eq!(java_double(67_109_337.0), "6.7109337E7");
        assert_eq!(java_double(10_000_000.0), "1.0E7");
        assert_eq!(java_double(9_999_999.0), "9999999.0");
        assert_eq!(java_double(0.0001), "1.0E-4");
        assert_eq!(java_double(-2.5), "-2.5");
        assert_eq!(java_double(f64::NAN), "NaN");
        assert_eq!(java_double(0.0), "0.0");
    }

    fn sample() -> MonitorSnapshot {
        MonitorSnapshot {
            values: vec![
                ("version", MetricKind::MntrOnly, MonitorValue::Text("3.8.0".into())),
                ("znode_count", MetricKind::Gauge, MonitorValue::Int(5)),
                ("avg_latency", MetricKind::Gauge, MonitorValue::Double(0.5)),
            ],
            summaries: vec![
                SummarySnapshot::empty("fsynctime", false),
                SummarySnapshot {
                    name: "readlatency",
                    count: 3,
                    sum: 6,
                    min: 1,
                    max: 3,
                    avg: 2.0,
                    advanced: true,
                    percentiles: Some([2, 3, 3, 3]),
                    prometheus_quantiles: Some([2, 3, 3]),
                },
            ],
            summary_sets: vec![],
        }
    }

    #[test]
    fn default_provider_spelling() {
        let text = sample().mntr_text(false);
        assert_eq!(
            text,
            "zk_version\t3.8.0\nzk_znode_count\t5\nzk_avg_latency\t0.5\n\
             zk_avg_fsynctime\t0.0\nzk_min_fsynctime\t0\nzk_max_fsynctime\t0\nzk_cnt_fsynctime\t0\nzk_sum_fsynctime\t0\n\
             zk_avg_readlatency\t2.0\nzk_min_readlatency\t1\nzk_max_readlatency\t3\nzk_cnt_readlatency\t3\nzk_sum_readlatency\t6\n\
             zk_p50_readlatency\t2\nzk_p95_readlatency\t3\nzk_p99_readlatency\t3\nzk_p999_readlatency\t3\n"
        );
    }

    #[test]
    fn prometheus_provider_spelling() {
        let text = sample().mntr_text(true);
        assert_eq!(
            text,
            "zk_version\t3.8.0\nzk_znode_count\t5.0\nzk_avg_latency\t0.5\n\
             zk_fsynctime{quantile=\"0.5\"}\tNaN\nzk_fsynctime_count\t0.0\nzk_fsynctime_sum\t0.0\n\
             zk_readlatency{quantile=\"0.5\"}\t2.0\nzk_readlatency{quantile=\"0.9\"}\t3.0\n\
             zk_readlatency{quantile=\"0.99\"}\t3.0\nzk_readlatency_count\t3.0\nzk_readlatency_sum\t6.0\n"
        );
    }
}

#[cfg(test)]
mod reference_tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::Config;
    use crate::node::core_settings;

    /// The default-provider keys equal the real ZooKeeper 3.8.0's (the file the admin compat suite
    /// re-checks against the real server).
    #[test]
    fn mntr_keys_match_the_real_zookeeper() {
        let reference: BTreeSet<&str> = include_str!("../../compat-tests/admin/mntr_keys_zookeeper_3.8.0.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let config = Config::default_with_system_properties(&[])
            .expect("default config")
            .config;
        let core = Core::new(core_settings(&config, 1), 0);
        let admin = AdminState::new(config);
        let snapshot = MonitorSnapshot::take(&core, &admin, Now::default(), true);
        let keys: Vec<String> = snapshot
            .entries(false)
            .into_iter()
            .map(|(k, _)| format!("zk_{k}"))
            .collect();
        let ours: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
        assert_eq!(ours.len(), keys.len(), "duplicate keys");
        let missing: Vec<_> = reference.difference(&ours).collect();
        let extra: Vec<_> = ours.difference(&reference).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "missing {missing:?}, extra {extra:?}"
        );
    }
}
