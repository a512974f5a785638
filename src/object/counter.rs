//! A counter that never conflicts with another counter update.

use serde::{Deserialize, Serialize};

use super::Persistent;

/// A persistent integer counter whose concurrent updates merge instead of conflicting:
/// when two transactions change it from the same starting value, the second commit adds
/// its delta to what the first committed (as Durus's conflict-resolving counters do).
///
/// Three transactions that each read a counter at 0, add 1 and commit in turn all
/// succeed, and the counter reads 3:
///
/// ```
/// use durus::{Counter, Db, DbBuilder};
///
/// # futures::executor::block_on(async {
/// let db: Db<Counter> = DbBuilder::memory().open().await?;
/// let mut txs = Vec::new();
/// for _ in 0..3 {
///     let mut tx = db.begin().await?; // all three start from 0
///     tx.root_mut().await?.increment();
///     txs.push(tx);
/// }
/// for tx in txs {
///     tx.commit().await?; // no conflict: the increments merge
/// }
/// assert_eq!(db.begin().await?.root().await?.get(), 3);
/// # Ok::<(), durus::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Counter(i64);

impl Counter {
    /// A counter at `value`.
    pub fn new(value: i64) -> Counter {
        Counter(value)
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0
    }

    /// Adds `delta` (wrapping on overflow, so a merge can never panic).
    pub fn add(&mut self, delta: i64) {
        self.0 = self.0.wrapping_add(delta);
    }

    /// Adds one.
    pub fn increment(&mut self) {
        self.add(1)
    }
}

impl Persistent for Counter {
    const TYPE_NAME: &'static str = "durus.Counter";

    fn resolve(committed: &Self, base: &Self, mine: &Self) -> Option<Self> {
        Some(Counter(committed.0.wrapping_add(mine.0.wrapping_sub(base.0))))
    }
}
