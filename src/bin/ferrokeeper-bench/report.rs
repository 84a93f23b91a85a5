//! What one benchmark invocation reports: a human line on stdout and one JSON object per line in
//! the results file, plus the CPU accounting that puts client and server CPU beside each figure
//! (the generator shares the machine's cores with the server under test).

use std::fmt::Write as _;

use crate::histogram::Histogram;

/// Linux `USER_HZ`: the unit of utime/stime in `/proc/<pid>/stat` (100 on every mainstream
/// kernel configuration; `getconf CLK_TCK` confirms it on the benchmark machine).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds of a process, from the text of `/proc/<pid>/stat`. The command
/// name may contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_proc_stat_cpu_secs(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime(14) stime(15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// CPU seconds used so far by `pid` ("self" for this process); `None` if it cannot be read.
pub fn process_cpu_secs(pid: &str) -> Option<f64> {
    parse_proc_stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Busy CPU seconds of the whole machine (every core; user, nice, system, irq, softirq, steal),
/// from the text of `/proc/stat`.
pub fn parse_machine_busy_secs(proc_stat: &str) -> Option<f64> {
    let line = proc_stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = ticks[..] else {
        return None;
    };
    Some((user + nice + system + irq + softirq + steal) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// Busy CPU seconds of the machine so far.
pub fn machine_busy_secs() -> Option<f64> {
    parse_machine_busy_secs(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// CPU seconds of (this generator, the server, the whole machine) so far, for windows.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    client: Option<f64>,
    server: Option<f64>,
    machine: Option<f64>,
}

impl CpuSample {
    /// Samples now; `server_pid` may be absent.
    pub fn take(server_pid: Option<u32>) -> CpuSample {
        CpuSample {
            client: process_cpu_secs("self"),
            server: server_pid.and_then(|p| process_cpu_secs(&p.to_string())),
            machine: machine_busy_secs(),
        }
    }

    /// Fills the CPU fields of `outcome` with what was used between `self` and `end`.
    pub fn fill(&self, end: &CpuSample, outcome: &mut Outcome) {
        let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        outcome.client_cpu_secs = delta(self.client, end.client);
        outcome.server_cpu_secs = delta(self.server, end.server);
        outcome.machine_cpu_secs = delta(self.machine, end.machine);
    }
}

/// One result row.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Which server (e.g. "zookeeper", "ferrokeeper").
    pub server: String,
    /// Workload name.
    pub workload: String,
    /// "throughput" (many requests in flight) or "latency" (one), or the special rows' names.
    pub mode: String,
    /// Sessions used.
    pub sessions: usize,
    /// Requests in flight, summed over sessions.
    pub outstanding: usize,
    /// Completed operations inside the measured window.
    pub ops: u64,
    /// Length of the measured window.
    pub secs: f64,
    /// Error replies (and failed connects) inside the window.
    pub errors: u64,
    /// Latencies inside the window.
    pub latency: Histogram,
    /// Generator CPU seconds during the window.
    pub client_cpu_secs: Option<f64>,
    /// Server CPU seconds during the window (all threads).
    pub server_cpu_secs: Option<f64>,
    /// Busy CPU seconds of the whole machine during the window: what is neither client nor
    /// server is other load sharing the cores (it is reported so a disturbed row can be spotted).
    pub machine_cpu_secs: Option<f64>,
    /// Wall time the CPU figures cover, when it is not `secs` (watch fan-out: the whole phase).
    pub cpu_window_secs: Option<f64>,
    /// Whether the server under test makes writes durable before answering.
    pub durable: bool,
    /// Extra numeric fields for special rows (e.g. `restart_ms`).
    pub extra: Vec<(&'static str, f64)>,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.3}")
    } else {
        "null".into()
    }
}

impl Outcome {
    /// Operations per second over the window.
    pub fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    fn us(&self, q: f64) -> f64 {
        self.latency.quantile_ns(q) as f64 / 1_000.0
    }

    /// CPU microseconds per completed operation for a CPU figure.
    fn cpu_us_per_op(&self, cpu_secs: Option<f64>) -> Option<f64> {
        let cpu = cpu_secs?;
        (self.ops > 0).then(|| cpu * 1e6 / self.ops as f64)
    }

    /// The JSON line (no trailing newline).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "{{\"server\":\"{}\",\"workload\":\"{}\",\"mode\":\"{}\",\"sessions\":{},\"outstanding\":{},\"ops\":{},\
             \"secs\":{},\"ops_per_sec\":{},\"errors\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"mean_us\":{},\
             \"max_us\":{},\"durable\":{}",
            escape(&self.server),
            escape(&self.workload),
            escape(&self.mode),
            self.sessions,
            self.outstanding,
            self.ops,
            number(self.secs),
            number(self.ops_per_sec()),
            self.errors,
            number(self.us(0.5)),
            number(self.us(0.99)),
            number(self.us(0.999)),
            number(self.latency.mean_ns() as f64 / 1_000.0),
            number(self.latency.max_ns() as f64 / 1_000.0),
            self.durable,
        );
        let window = self.cpu_window_secs.unwrap_or(self.secs).max(f64::MIN_POSITIVE);
        for (name, cpu) in [("client", self.client_cpu_secs), ("server", self.server_cpu_secs)] {
            let cores = cpu.map_or("null".into(), |c| number(c / window));
            let per_op = self.cpu_us_per_op(cpu).map_or("null".into(), number);
            let _ = write!(out, ",\"{name}_cpu_cores\":{cores},\"{name}_cpu_us_per_op\":{per_op}");
        }
        let other = match (self.machine_cpu_secs, self.client_cpu_secs, self.server_cpu_secs) {
            (Some(m), Some(c), Some(s)) => number(((m - c - s) / window).max(0.0)),
            _ => "null".into(),
        };
        let _ = write!(out, ",\"other_cpu_cores\":{other}");
        for (key, value) in &self.extra {
            let _ = write!(out, ",\"{}\":{}", escape(key), number(*value));
        }
        out.push('}');
        out
    }

    /// The human summary line.
    pub fn summary(&self) -> String {
        let window = self.cpu_window_secs.unwrap_or(self.secs).max(f64::MIN_POSITIVE);
        let cpu = |c: Option<f64>| c.map_or("?".into(), |c| format!("{:.2}", c / window));
        format!(
            "{:<11} {:<12} {:<10} {:>5}x{:<5} {:>11.0} ops/s  p50 {:>9.1}us  p99 {:>9.1}us  p99.9 {:>9.1}us  \
             errors {}  cpu cores: server {} client {} machine {}",
            self.server,
            self.workload,
            self.mode,
            self.sessions,
            self.outstanding,
            self.ops_per_sec(),
            self.us(0.5),
            self.us(0.99),
            self.us(0.999),
            self.errors,
            cpu(self.server_cpu_secs),
            cpu(self.client_cpu_secs),
            cpu(self.machine_cpu_secs),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_cpu_counts_from_the_last_parenthesis() {
        let stat = "1234 (java (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 30 0 100";
        assert_eq!(parse_proc_stat_cpu_secs(stat), Some(3.0));
        assert_eq!(parse_proc_stat_cpu_secs("garbage"), None);
        assert!(process_cpu_secs("self").is_some());
    }

    #[test]
    fn machine_busy_time_skips_idle_and_iowait() {
        let stat = "cpu  100 10 50 9000 500 5 5 30 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_machine_busy_secs(stat), Some(2.0));
        assert_eq!(parse_machine_busy_secs("intr 1 2 3"), None);
        assert!(machine_busy_secs().is_some());
    }

    #[test]
    fn json_line_has_rates_percentiles_and_cpu() {
        let mut latency = Histogram::default();
        for _ in 0..10 {
            latency.record(2_000);
        }
        let outcome = Outcome {
            server: "zk\"1".into(),
            workload: "getData".into(),
            mode: "throughput".into(),
            sessions: 32,
            outstanding: 1_000,
            ops: 10,
            secs: 2.0,
            latency,
            client_cpu_secs: Some(1.0),
            server_cpu_secs: None,
            machine_cpu_secs: Some(3.0),
            extra: vec![("restart_ms", 12.5)],
            ..Outcome::default()
        };
        let json = outcome.to_json();
        assert!(
            json.starts_with("{\"server\":\"zk\\\"1\",\"workload\":\"getData\""),
            "{json}"
        );
        assert!(json.contains("\"ops_per_sec\":5.000"), "{json}");
        assert!(json.contains("\"p50_us\":2.000"), "{json}");
        assert!(
            json.contains("\"client_cpu_cores\":0.500,\"client_cpu_us_per_op\":100000.000"),
            "{json}"
        );
        assert!(
            json.contains("\"server_cpu_cores\":null,\"server_cpu_us_per_op\":null"),
            "{json}"
        );
        assert!(json.ends_with(",\"restart_ms\":12.500}"), "{json}");
        assert!(!json.contains('\n'));
    }
}
