//! The write workloads (W1, W2), run interleaved: every engine writes a slice of its
//! transactions in turn, round after round, with the system's dirty pages flushed
//! before each slice. A slow spell of the (shared, virtual) disk then hits every engine
//! alike instead of whichever happened to run at that moment, and no engine pays for
//! writeback left over from another.

use std::time::{Duration, Instant};

use durus::journal::JournalStats;

use crate::lat::Samples;
use crate::sys::{settle, SyncProbe};

/// One engine's store, being written by durable transactions.
pub trait Writer {
    /// Commits the records with keys `from..to` as one durable transaction.
    fn commit(&mut self, from: u64, to: u64);
    /// Closes (or, where asked, just drops) the store.
    fn finish(self: Box<Self>) -> Finish;
}

/// What a writer reports when it is finished.
#[derive(Default)]
pub struct Finish {
    /// Time to close the store (zero when dropped without closing).
    pub close: Duration,
    /// durus's counters after the run (and the close), for sync accounting.
    pub stats: Option<JournalStats>,
    /// durus's logical journal size before closing.
    pub end_offset: Option<u64>,
}

/// Writes keys `1..=records` in transactions of `batch` keys through every writer, in
/// `rounds` interleaved rounds, and returns each writer's total commit time with the
/// time of every transaction.
pub fn interleaved(
    writers: &mut [Box<dyn Writer>],
    records: u64,
    batch: u64,
    rounds: u64,
) -> Vec<(Duration, Samples)> {
    let batches = records.div_ceil(batch);
    let per_round = batches.div_ceil(rounds.max(1));
    let mut times = vec![(Duration::ZERO, Samples::default()); writers.len()];
    let (mut first, mut round) = (0, 0);
    while first < batches {
        let last = (first + per_round).min(batches);
        // Rotate who goes first, so that no engine always follows the same one.
        for i in 0..writers.len() {
            let w = (i + round) % writers.len();
            settle();
            let start = Instant::now();
            for b in first..last {
                let from = 1 + b * batch;
                let t = Instant::now();
                writers[w].commit(from, (from + batch).min(records + 1));
                times[w].1.push(t.elapsed());
            }
            times[w].0 += start.elapsed();
        }
        first = last;
        round += 1;
    }
    times
}

/// The disk's bulk-write ceiling, run in the same rounds as the engines.
impl Writer for crate::sys::BandwidthProbe {
    fn commit(&mut self, from: u64, to: u64) {
        self.batch(to - from);
    }

    fn finish(self: Box<Self>) -> Finish {
        Finish::default()
    }
}

/// The disk's own write-and-fdatasync, run in the same rounds as the engines so that
/// commit rates can be compared with the sync rate of the very same moments.
impl Writer for SyncProbe {
    fn commit(&mut self, from: u64, to: u64) {
        for _ in from..to {
            self.step();
        }
    }

    fn finish(self: Box<Self>) -> Finish {
        Finish::default()
    }
}
