//! Per-operation times (sampled) and medians of runs.

use std::time::{Duration, Instant};

/// Every `STRIDE`-th operation is timed: enough samples for a p99, and the clock
/// reads do not slow the cached walks (about 100 ns an object) down much.
pub const STRIDE: u64 = 8;

/// The sampled times of one row's operations, in nanoseconds.
#[derive(Default)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    /// A clock start if operation `i` is one of the sampled ones.
    pub fn start(i: u64) -> Option<Instant> {
        i.is_multiple_of(STRIDE).then(Instant::now)
    }

    /// Records the time since `started`, if it was sampled.
    pub fn stop(&mut self, started: Option<Instant>) {
        if let Some(t) = started {
            self.0.push(t.elapsed().as_nanos() as u64);
        }
    }

    /// Adds another task's samples.
    pub fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// The `q` quantile (0.5, 0.99), or zero with no samples.
    pub fn quantile(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((q * self.0.len() as f64) as usize).min(self.0.len() - 1);
        self.0[i] as f64
    }
}

/// One row's figure: objects per second and the p50 and p99 of one object's time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measure {
    pub rate: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
}

impl Measure {
    /// `count` operations in `took`, with their sampled times.
    pub fn of(count: u64, took: Duration, mut samples: Samples) -> Measure {
        Measure {
            rate: count as f64 / took.as_secs_f64().max(1e-9),
            p50_ns: samples.quantile(0.5),
            p99_ns: samples.quantile(0.99),
        }
    }

    /// The median of each figure over several runs.
    pub fn median(runs: &[Measure]) -> Measure {
        Measure {
            rate: median(runs.iter().map(|m| m.rate).collect()),
            p50_ns: median(runs.iter().map(|m| m.p50_ns).collect()),
            p99_ns: median(runs.iter().map(|m| m.p99_ns).collect()),
        }
    }
}

/// The middle value (the upper middle of an even count); zero for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
