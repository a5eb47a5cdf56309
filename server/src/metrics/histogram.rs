//! A lock-free latency histogram: fixed logarithmic buckets of atomic
//! counters, cheap enough to record every command, exposed to Prometheus as
//! a histogram and read back as percentiles (INFO, the dashboard).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric},
};

/// Upper bounds grow by √2 from 10 µs: the last finite one is 10 µs · 2^20
/// (about 10.5 s); anything slower lands in the +Inf bucket.
const FINITE_BUCKETS: usize = 41;
const BUCKETS: usize = FINITE_BUCKETS + 1;

/// The upper bound of bucket `i` in microseconds (+∞ for the last).
fn upper_bound_us(i: usize) -> f64 {
    if i >= FINITE_BUCKETS {
        f64::INFINITY
    } else {
        10.0 * 2f64.powf(i as f64 / 2.0)
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros <= 10 {
        return 0;
    }
    // Smallest i with 10·2^(i/2) >= micros.
    let i = (2.0 * (micros as f64 / 10.0).log2()).ceil() as usize;
    // Floating point can land one bucket low at exact bounds.
    if upper_bound_us(i.min(FINITE_BUCKETS)) < micros as f64 {
        (i + 1).min(FINITE_BUCKETS)
    } else {
        i.min(FINITE_BUCKETS)
    }
}

#[derive(Debug)]
struct Counts {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// A shared latency histogram; clones record into the same counters.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<Counts>);

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&self, micros: u64) {
        self.0.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.0.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            buckets: std::array::from_fn(|i| self.0.buckets[i].load(Ordering::Relaxed)),
            sum_us: self.0.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    buckets: [u64; BUCKETS],
    sum_us: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            buckets: [0; BUCKETS],
            sum_us: 0,
        }
    }
}

impl Snapshot {
    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of the observations in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// What was recorded between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// Adds another histogram's counts.
    pub fn add(&mut self, other: &Snapshot) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_us += other.sum_us;
    }

    /// The `q` quantile (0..=1) in microseconds, interpolated linearly inside
    /// its bucket as Prometheus's `histogram_quantile` does (0 when empty;
    /// the last finite bound for the +Inf bucket).
    pub fn quantile_us(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (seen + n) as f64 >= rank {
                if i >= FINITE_BUCKETS {
                    return upper_bound_us(FINITE_BUCKETS - 1);
                }
                let low = if i == 0 { 0.0 } else { upper_bound_us(i - 1) };
                let high = upper_bound_us(i);
                let within = (rank - seen as f64) / n as f64;
                return low + (high - low) * within.clamp(0.0, 1.0);
            }
            seen += n;
        }
        upper_bound_us(FINITE_BUCKETS - 1)
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot();
        let buckets: Vec<(f64, u64)> = snapshot
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let bound = upper_bound_us(i);
                // The encoder writes f64::MAX as +Inf; bounds are in seconds.
                let bound = if bound.is_finite() {
                    bound / 1e6
                } else {
                    f64::MAX
                };
                (bound, n)
            })
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            snapshot.sum_us as f64 / 1e6,
            snapshot.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values() {
        for micros in [0, 1, 10, 11, 14, 15, 100, 999, 1_000, 12_345, 10_485_760] {
            let i = bucket_of(micros);
            assert!(
                micros as f64 <= upper_bound_us(i),
                "{micros} above bucket {i}"
            );
            if i > 0 {
                assert!(
                    micros as f64 > upper_bound_us(i - 1),
                    "{micros} fits bucket {}",
                    i - 1
                );
            }
        }
        assert_eq!(bucket_of(u64::MAX / 4), FINITE_BUCKETS);
    }

    #[test]
    fn quantiles_follow_the_data() {
        let h = LatencyHistogram::default();
        for _ in 0..990 {
            h.record(100);
        }
        for _ in 0..10 {
            h.record(50_000);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        assert_eq!(s.sum_us(), 990 * 100 + 10 * 50_000);
        let p50 = s.quantile_us(0.5);
        assert!((70.0..=100.0).contains(&p50), "p50 {p50}");
        let p999 = s.quantile_us(0.999);
        assert!((35_000.0..=57_000.0).contains(&p999), "p99.9 {p999}");
        assert_eq!(Snapshot::default().quantile_us(0.5), 0.0);
    }

    #[test]
    fn differences_isolate_an_interval() {
        let h = LatencyHistogram::default();
        h.record(100);
        let before = h.snapshot();
        h.record(5_000);
        h.record(5_000);
        let delta = h.snapshot().since(&before);
        assert_eq!(delta.count(), 2);
        assert!(delta.quantile_us(0.5) > 3_000.0);
    }
}
