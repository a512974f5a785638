//! Latency: per-operation times (every operation, or a sample of them) and their
//! percentiles.

use std::time::{Duration, Instant};

/// Loads time one call in `LOAD_STRIDE`: enough samples for a p99 of a million loads,
/// and the clock reads cost the fastest loads (under a microsecond) little.
pub const LOAD_STRIDE: u64 = 8;

/// Sampled operation times, in nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<u64>);

impl Samples {
    /// A clock start if operation `i` is sampled at `stride`.
    pub fn start(i: u64, stride: u64) -> Option<Instant> {
        i.is_multiple_of(stride).then(Instant::now)
    }

    /// Records the time since `started`, if it was sampled.
    pub fn stop(&mut self, started: Option<Instant>) {
        if let Some(t) = started {
            self.push(t.elapsed());
        }
    }

    /// Records one operation's time.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_nanos() as u64);
    }

    /// Adds another thread's samples.
    pub fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// The `q` quantile in microseconds (0.5, 0.99); zero with no samples.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let i = ((q * v.len() as f64) as usize).min(v.len() - 1);
        v[i] as f64 / 1e3
    }
}

/// A rate with the p50 and p99 of one operation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figure {
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Figure {
    /// `count` operations in `took`, with their sampled times.
    pub fn of(count: u64, took: Duration, samples: &Samples) -> Figure {
        Figure {
            rate: count as f64 / took.as_secs_f64().max(1e-9),
            p50_us: samples.quantile_us(0.5),
            p99_us: samples.quantile_us(0.99),
        }
    }

    /// The median of each part over several runs.
    pub fn median(runs: &[Figure]) -> Figure {
        let m = |f: fn(&Figure) -> f64| crate::median(runs.iter().map(f).collect());
        Figure {
            rate: m(|f| f.rate),
            p50_us: m(|f| f.p50_us),
            p99_us: m(|f| f.p99_us),
        }
    }
}

/// Microseconds for a table cell.
pub fn us(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
