//! The `/metrics` exposition of ZooKeeper's `PrometheusMetricsProvider` (PROTOCOL.md §7.2).
//!
//! Names are `mntr`'s without `zk_` and without the avg/min/max/cnt/sum spelling; gauges and counters
//! keep ZooKeeper's types (`GAUGE_NAMES`); every summary exports quantile 0.5 (plus 0.9 and 0.99 for
//! "advanced" ones), `_count` and `_sum`; labelled summary sets use the label `key`. The help text is
//! the name, as the provider registers it (`build(name, name)`).
//!
//! Samples are built as `prometheus` crate `MetricFamily` values (the crate also supplies the
//! `process_*` collector that stands in for simpleclient's JVM/process exports), then written in the
//! text format Prometheus simpleclient 0.9.0 writes, so a scrape diffs cleanly against a real
//! ZooKeeper: a trailing comma inside label braces (`{quantile="0.5",}`), values as Java doubles
//! (`5.0`, `6.7109337E7`), `NaN` quantiles for summaries without samples, no `_total` on counters.

use std::fmt::Write;

use prometheus::core::Collector;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary};

use crate::admin::monitor::{java_double, MetricKind, MonitorSnapshot, SummarySnapshot, PROMETHEUS_QUANTILES};

/// The content type simpleclient's servlet answers with (text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn family(name: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(name.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

/// ZooKeeper's metric families from one snapshot, in `mntr` order.
pub fn zookeeper_families(snapshot: &MonitorSnapshot) -> Vec<MetricFamily> {
    let mut out = Vec::with_capacity(snapshot.values.len() + snapshot.summaries.len() + snapshot.summary_sets.len());
    for (name, kind, value) in &snapshot.values {
        let Some(v) = value.as_f64() else { continue };
        let mut metric = Metric::default();
        let kind = match kind {
            MetricKind::MntrOnly => continue,
            MetricKind::Gauge => {
                let mut g = Gauge::default();
                g.set_value(v);
                metric.set_gauge(g);
                MetricType::GAUGE
            }
            MetricKind::Counter => {
                let mut c = Counter::default();
                c.set_value(v);
                metric.set_counter(c);
                MetricType::COUNTER
            }
        };
        out.push(family(name, kind, vec![metric]));
    }
    for s in &snapshot.summaries {
        out.push(family(s.name, MetricType::SUMMARY, vec![summary_metric(s, None)]));
    }
    for set in &snapshot.summary_sets {
        // Declared with no children until a label gets a sample, as simpleclient prints them.
        let metrics = set.members.iter().map(|(key, s)| summary_metric(s, Some(key))).collect();
        out.push(family(set.name, MetricType::SUMMARY, metrics));
    }
    out
}

/// One summary sample set: quantile 0.5 (plus 0.9 and 0.99 when advanced), `_count`, `_sum`, under the
/// label `key` when it is a member of a summary set.
fn summary_metric(s: &SummarySnapshot, key: Option<&str>) -> Metric {
    let n = if s.advanced { PROMETHEUS_QUANTILES.len() } else { 1 };
    let quantiles = PROMETHEUS_QUANTILES[..n]
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let mut quantile = Quantile::default();
            quantile.set_quantile(*q);
            quantile.set_value(s.prometheus_quantiles.map_or(f64::NAN, |qs| qs[i] as f64));
            quantile
        })
        .collect();
    let mut summary = Summary::default();
    summary.set_sample_count(s.count);
    summary.set_sample_sum(s.sum as f64);
    summary.set_quantile(quantiles);
    let mut metric = Metric::default();
    metric.set_summary(summary);
    if let Some(key) = key {
        let mut label = LabelPair::default();
        label.set_name("key".to_string());
        label.set_value(key.to_string());
        metric.set_label(vec![label]);
    }
    metric
}

/// `process_*` families for this process (the `prometheus` crate's process collector: CPU seconds,
/// open and max fds, virtual and resident memory, start time, threads), standing in for
/// simpleclient's `DefaultExports` when `metricsProvider.exportJvmInfo` is true.
pub fn process_families() -> Vec<MetricFamily> {
    prometheus::process_collector::ProcessCollector::for_self().collect()
}

fn write_labels(out: &mut String, labels: &[LabelPair], extra: Option<(&str, &str)>) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let pairs = labels.iter().map(|l| (l.name(), l.value())).chain(extra);
    for (name, value) in pairs {
        // simpleclient ends every label with a comma, the last one too.
        let _ = write!(out, "{name}=\"{}\",", escape_label_value(value));
    }
    out.push('}');
}

fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\"")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &[LabelPair], extra: Option<(&str, &str)>, v: f64) {
    out.push_str(name);
    out.push_str(suffix);
    write_labels(out, labels, extra);
    let _ = writeln!(out, " {}", go_double(v));
}

/// simpleclient's `doubleToGoString`: `+Inf`, `-Inf`, `NaN`, otherwise Java's `Double.toString`.
fn go_double(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        java_double(v)
    }
}

/// Writes families in the text format (0.0.4) as simpleclient 0.9.0 writes it.
pub fn encode_simpleclient(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(families.len() * 96);
    for f in families {
        let name = f.name();
        let kind = match f.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::SUMMARY => "summary",
            MetricType::HISTOGRAM => "histogram",
            MetricType::UNTYPED => "untyped",
        };
        let _ = writeln!(out, "# HELP {name} {}", escape_help(f.help()));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for m in f.get_metric() {
            let labels = m.get_label();
            match f.get_field_type() {
                MetricType::COUNTER => sample(&mut out, name, "", labels, None, m.get_counter().get_value()),
                MetricType::GAUGE => sample(&mut out, name, "", labels, None, m.get_gauge().get_value()),
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    for q in s.get_quantile() {
                        let quantile = java_double(q.quantile());
                        sample(&mut out, name, "", labels, Some(("quantile", &quantile)), q.value());
                    }
                    sample(&mut out, name, "_count", labels, None, s.sample_count() as f64);
                    sample(&mut out, name, "_sum", labels, None, s.sample_sum());
                }
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    for b in h.get_bucket() {
                        let le = go_double(b.upper_bound());
                        sample(
                            &mut out,
                            name,
                            "_bucket",
                            labels,
                            Some(("le", &le)),
                            b.cumulative_count() as f64,
                        );
                    }
                    sample(&mut out, name, "_count", labels, None, h.get_sample_count() as f64);
                    sample(&mut out, name, "_sum", labels, None, h.get_sample_sum());
                }
                // Neither ZooKeeper nor the process collector produces untyped families.
                MetricType::UNTYPED => {}
            }
        }
    }
    out
}

/// The whole `/metrics` body for a snapshot.
pub fn exposition(snapshot: &MonitorSnapshot, export_process: bool) -> String {
    let mut families = zookeeper_families(snapshot);
    if export_process {
        families.extend(process_families());
    }
    encode_simpleclient(&families)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::monitor::{MonitorValue, SummarySetSnapshot};

    #[test]
    fn writes_what_simpleclient_writes() {
        let snapshot = MonitorSnapshot {
            values: vec![
                ("version", MetricKind::MntrOnly, MonitorValue::Text("3.8.0".into())),
                ("znode_count", MetricKind::Gauge, MonitorValue::Int(5)),
                ("commit_count", MetricKind::Counter, MonitorValue::Int(67_109_337)),
            ],
            summaries: vec![SummarySnapshot {
                name: "readlatency",
                count: 3,
                sum: 6,
                min: 1,
                max: 3,
                avg: 2.0,
                advanced: true,
                percentiles: Some([2, 3, 3, 3]),
                prometheus_quantiles: Some([2, 3, 3]),
            }],
            summary_sets: vec![
                SummarySetSnapshot { name: "ack_latency", advanced: true, members: vec![] },
                SummarySetSnapshot {
                    name: "write_per_namespace",
                    advanced: false,
                    members: vec![(
                        "app".into(),
                        SummarySnapshot {
                            name: "write_per_namespace",
                            count: 2,
                            sum: 112,
                            min: 6,
                            max: 106,
                            avg: 56.0,
                            advanced: false,
                            percentiles: None,
                            prometheus_quantiles: Some([106, 106, 106]),
                        },
                    )],
                },
            ],
        };
        assert_eq!(
            exposition(&snapshot, false),
            "# HELP znode_count znode_count\n# TYPE znode_count gauge\nznode_count 5.0\n\
             # HELP commit_count commit_count\n# TYPE commit_count counter\ncommit_count 6.7109337E7\n\
             # HELP readlatency readlatency\n# TYPE readlatency summary\n\
             readlatency{quantile=\"0.5\",} 2.0\nreadlatency{quantile=\"0.9\",} 3.0\nreadlatency{quantile=\"0.99\",} 3.0\n\
             readlatency_count 3.0\nreadlatency_sum 6.0\n\
             # HELP ack_latency ack_latency\n# TYPE ack_latency summary\n\
             # HELP write_per_namespace write_per_namespace\n# TYPE write_per_namespace summary\n\
             write_per_namespace{key=\"app\",quantile=\"0.5\",} 106.0\n\
             write_per_namespace_count{key=\"app\",} 2.0\nwrite_per_namespace_sum{key=\"app\",} 112.0\n"
        );
        let mntr = snapshot.mntr_text(false);
        assert!(mntr.ends_with(
            "zk_avg_app_write_per_namespace\t56.0\nzk_min_app_write_per_namespace\t6\n\
             zk_max_app_write_per_namespace\t106\nzk_cnt_app_write_per_namespace\t2\n\
             zk_sum_app_write_per_namespace\t112\n"
        ));
        let dump = snapshot.mntr_text(true);
        assert!(dump.contains("zk_write_per_namespace{key=\"app\",quantile=\"0.5\"}\t106.0\n"));
        assert!(dump.contains("zk_write_per_namespace_count{key=\"app\"}\t2.0\n"));
    }

    #[test]
    fn empty_summaries_have_nan_quantiles() {
        let snapshot = MonitorSnapshot {
            values: vec![],
            summaries: vec![SummarySnapshot::empty("fsynctime", false)],
            summary_sets: vec![],
        };
        assert_eq!(
            exposition(&snapshot, false),
            "# HELP fsynctime fsynctime\n# TYPE fsynctime summary\nfsynctime{quantile=\"0.5\",} NaN\n\
             fsynctime_count 0.0\nfsynctime_sum 0.0\n"
        );
    }

    #[test]
    fn process_metrics_are_exported() {
        let text = encode_simpleclient(&process_families());
        for name in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_resident_memory_bytes",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from:\n{text}"
            );
        }
    }
}
