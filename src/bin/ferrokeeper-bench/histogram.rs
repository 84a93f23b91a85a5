//! A fixed-size log-linear latency histogram (the HdrHistogram idea, without the crate): values in
//! nanoseconds, 64 linear sub-buckets per power of two, so any recorded value is reported within
//! 1/64 (≈1.6%) of itself. Memory is fixed (`BUCKETS` counters) whatever is recorded, so a long
//! run cannot grow it; values above `MAX_NS` are clamped into the top bucket and counted.

/// Sub-buckets per power of two (must be a power of two).
const SUB_BUCKETS: u64 = 64;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Largest value kept exactly in range: 2^40 ns ≈ 18 minutes.
pub const MAX_NS: u64 = (1 << 40) - 1;
/// Values below `SUB_BUCKETS` get one bucket each; each further power of two gets `SUB_BUCKETS`.
const BUCKETS: usize = (SUB_BUCKETS as usize) * (41 - SUB_BITS as usize + 1);

/// Latency counts in log-linear buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_ns: u128,
    max_ns: u64,
    clamped: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_ns: 0,
            max_ns: 0,
            clamped: 0,
        }
    }
}

/// Bucket of a value: exact below `SUB_BUCKETS`, then `SUB_BUCKETS` equal slices per octave.
fn bucket_of(value_ns: u64) -> usize {
    if value_ns < SUB_BUCKETS {
        return value_ns as usize;
    }
    let msb = 63 - value_ns.leading_zeros(); // >= SUB_BITS
    let shift = msb - SUB_BITS;
    let sub = (value_ns >> shift) - SUB_BUCKETS; // 0..SUB_BUCKETS
    ((shift as u64 + 1) * SUB_BUCKETS + sub) as usize
}

/// Highest value that falls in `bucket` (what percentiles report: never under-states latency).
fn bucket_high(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < SUB_BUCKETS {
        return bucket;
    }
    let shift = bucket / SUB_BUCKETS - 1;
    let sub = bucket % SUB_BUCKETS;
    ((SUB_BUCKETS + sub + 1) << shift) - 1
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, value_ns: u64) {
        let value_ns = if value_ns > MAX_NS {
            self.clamped += 1;
            MAX_NS
        } else {
            value_ns
        };
        self.counts[bucket_of(value_ns)] += 1;
        self.total += 1;
        self.sum_ns += u128::from(value_ns);
        self.max_ns = self.max_ns.max(value_ns);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
        self.clamped += other.clamped;
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Mean in ns (0 when empty).
    pub fn mean_ns(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            (self.sum_ns / u128::from(self.total)) as u64
        }
    }

    /// Largest recorded value.
    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The value at quantile `q` (0 < q <= 1): the upper edge of the bucket holding the
    /// ceil(q·n)-th smallest value, capped at the true maximum. 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        assert!(q > 0.0 && q <= 1.0, "quantile {q} out of (0, 1]");
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_high(bucket).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 0..64 {
            h.record(v);
        }
        assert_eq!(h.quantile_ns(0.5), 31);
        assert_eq!(h.quantile_ns(1.0), 63);
        assert_eq!(h.count(), 64);
    }

    #[test]
    fn buckets_are_contiguous_and_cover_their_values() {
        let mut previous_high = None;
        for bucket in 0..BUCKETS {
            let high = bucket_high(bucket);
            if let Some(p) = previous_high {
                assert_eq!(bucket_of(p + 1), bucket, "value {} starts bucket {bucket}", p + 1);
            }
            assert_eq!(bucket_of(high), bucket);
            previous_high = Some(high);
        }
        assert!(bucket_high(BUCKETS - 1) >= MAX_NS);
    }

    #[test]
    fn relative_error_is_under_two_percent() {
        for v in [64u64, 100, 1_000, 12_345, 999_999, 123_456_789, MAX_NS] {
            let high = bucket_high(bucket_of(v));
            assert!(high >= v);
            assert!((high - v) as f64 / v as f64 <= 1.0 / 64.0, "{v} -> {high}");
        }
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1_000);
        }
        let within = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64 <= 0.02;
        assert!(within(h.quantile_ns(0.5), 5_000_000), "{}", h.quantile_ns(0.5));
        assert!(within(h.quantile_ns(0.99), 9_900_000), "{}", h.quantile_ns(0.99));
        assert!(within(h.quantile_ns(0.999), 9_990_000), "{}", h.quantile_ns(0.999));
        assert_eq!(h.quantile_ns(1.0), 10_000_000);
        assert_eq!(h.mean_ns(), 5_000_500);
    }

    #[test]
    fn one_outlier_shows_only_at_the_top() {
        let mut h = Histogram::default();
        for _ in 0..999 {
            h.record(1_000);
        }
        h.record(1_000_000_000);
        assert!(h.quantile_ns(0.99) < 1_100);
        assert!(h.quantile_ns(0.999) < 1_100);
        assert_eq!(h.quantile_ns(1.0), 1_000_000_000);
    }

    #[test]
    fn merge_adds_counts_and_keeps_max() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(10);
        b.record(5_000);
        b.record(MAX_NS + 5);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max_ns(), MAX_NS);
        assert_eq!(a.clamped, 1);
        assert_eq!(a.quantile_ns(0.34), bucket_high(bucket_of(5_000)));
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::default();
        assert_eq!(h.quantile_ns(0.99), 0);
        assert_eq!(h.mean_ns(), 0);
    }
}
