//! How often the cache has seen oids it does not hold: a small count-min sketch of
//! 4-bit counters, one per cache shard, that the admission policy in `cache` reads.
//!
//! Counts are estimates: two oids may share a counter, which can only make an oid look
//! more frequent than it is, never less. Counters saturate at [`MAX_COUNT`] and are
//! halved now and then ([`Sketch::age`]), so that the past fades and a new working set
//! can win over an old one.

use crate::record::Oid;

/// The highest count a counter (or a cache entry's use count) reaches.
pub(crate) const MAX_COUNT: u8 = 15;

/// Counters indexed by two hashes of the oid; an oid's count is the smaller of its two.
pub(crate) struct Sketch {
    counters: Box<[u8]>,
    mask: usize,
}

impl Sketch {
    /// A sketch sized for a shard of about `entries` objects: eight counters per entry
    /// (a few bytes beside an entry's hundreds), so that the many oids a scan brings
    /// between two agings rarely add up to the count of an object really in use.
    pub(crate) fn new(entries: usize) -> Sketch {
        let len = (entries.max(16) * 8).next_power_of_two();
        Sketch {
            counters: vec![0; len].into_boxed_slice(),
            mask: len - 1,
        }
    }

    fn slots(&self, oid: Oid) -> [usize; 2] {
        // A multiplicative mix: neighbouring oids land far apart.
        let h = oid.0.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        [(h >> 40) as usize & self.mask, (h >> 12) as usize & self.mask]
    }

    /// How often `oid` was counted (an overestimate when it shares counters).
    pub(crate) fn estimate(&self, oid: Oid) -> u8 {
        let [a, b] = self.slots(oid);
        self.counters[a].min(self.counters[b])
    }

    /// Counts one more sighting of `oid`. Only the counters at the minimum move
    /// (conservative update), which keeps shared counters from inflating each other.
    pub(crate) fn increment(&mut self, oid: Oid) {
        let [a, b] = self.slots(oid);
        let low = self.counters[a].min(self.counters[b]);
        if low >= MAX_COUNT {
            return;
        }
        for i in [a, b] {
            if self.counters[i] == low {
                self.counters[i] = low + 1;
            }
        }
    }

    /// Remembers that `oid` had been used `count` times when it left the cache, so that
    /// coming back it competes with that history.
    pub(crate) fn remember(&mut self, oid: Oid, count: u8) {
        let count = count.min(MAX_COUNT);
        for i in self.slots(oid) {
            self.counters[i] = self.counters[i].max(count);
        }
    }

    /// Halves every counter.
    pub(crate) fn age(&mut self) {
        for c in self.counters.iter_mut() {
            *c >>= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_fade_and_never_undercount() {
        let mut s = Sketch::new(1000);
        for oid in 0..1000u64 {
            for _ in 0..(oid % 5) {
                s.increment(Oid(oid));
            }
        }
        for oid in 0..1000u64 {
            assert!(s.estimate(Oid(oid)) as u64 >= oid % 5, "oid {oid} undercounted");
        }
        let exact = (0..1000u64)
            .filter(|&o| s.estimate(Oid(o)) as u64 == o % 5)
            .count();
        assert!(exact > 950, "only {exact} of 1000 counted exactly");
        for _ in 0..100 {
            s.increment(Oid(7));
        }
        assert_eq!(s.estimate(Oid(7)), MAX_COUNT);
        s.age();
        assert_eq!(s.estimate(Oid(7)), MAX_COUNT / 2);
        s.remember(Oid(7), 12);
        assert_eq!(s.estimate(Oid(7)), 12);
        s.remember(Oid(7), 3);
        assert_eq!(s.estimate(Oid(7)), 12, "remembering keeps the larger count");
    }
}
