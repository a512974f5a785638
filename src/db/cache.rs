//! The shared cache of committed object states, one per `Db`, bounded by an object
//! count and a byte budget, and resistant to scans and loops.
//!
//! Every entry is the newest committed version of its oid that this process knows of,
//! tagged with the tid that committed it; the per-oid locks in `locks` and the publish
//! order in `Db` keep that true. A lookup takes one short, uncontended shard lock and
//! makes no syscall.
//!
//! # Which entries stay
//!
//! Plain LRU (or CLOCK, its approximation) keeps nothing when a walk cycles over a set
//! a little larger than the cache: each object is evicted just before it is needed
//! again. This cache chooses its victim by CLOCK (entries used since the hand last
//! passed are skipped) and then lets frequency decide, as TinyLFU does: a newcomer
//! replaces the victim only if it has been asked for more often (a count kept in a
//! small sketch while it is not cached) than the victim has been used (a count kept in
//! its slot). Otherwise the newcomer is not kept; its caller still gets the object,
//! from the storage. Under a repeated walk over 110% of the capacity the cache then
//! keeps a fixed 90% of the walk and hits on it every pass (`loop_resistance` below);
//! a one-time scan cannot push out what is used; and counts are halved after every
//! ten capacities' worth of misses, so a new working set takes over from an old one.
//! Nothing here affects correctness: an object that is not cached is read from the
//! storage.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::sketch::{Sketch, MAX_COUNT};
use crate::record::{Oid, OidMap, Tid};

/// A decoded state of some persistent type.
pub(crate) type AnyState = Arc<dyn Any + Send + Sync>;

/// What an entry holds: a decoded state, or the record's data not yet decoded (put
/// there by the crawler, which does not know the types).
#[derive(Clone)]
pub(crate) enum State {
    Typed(AnyState, &'static str),
    Raw(Arc<[u8]>),
}

/// One cached committed version.
#[derive(Clone)]
pub(crate) struct Entry {
    pub tid: Tid,
    pub state: State,
}

/// What the byte budget charges an entry beyond its stored size: the map slot, the
/// CLOCK ring, the state's allocation header and a small decoded value.
pub(crate) const ENTRY_OVERHEAD: usize = 128;

/// Set in [`Slot::uses`] by a lookup, cleared by the CLOCK hand.
const REFERENCED: u8 = 0x80;
/// The use count in [`Slot::uses`], saturating at [`MAX_COUNT`].
const COUNT: u8 = 0x0F;

struct Slot {
    entry: Entry,
    /// Bytes this entry counts against the budget.
    charge: usize,
    /// [`REFERENCED`] and the use count, written by lookups under the shard's read
    /// lock (only when they change, so hot entries stay shared in every core's cache).
    uses: AtomicU8,
}

impl Slot {
    fn count(&self) -> u8 {
        self.uses.load(Ordering::Relaxed) & COUNT
    }
}

struct Shard {
    map: OidMap<Slot>,
    /// Insertion order for the CLOCK hand; may hold oids no longer in `map`.
    ring: VecDeque<Oid>,
    /// How often oids not in `map` were asked for.
    sketch: Sketch,
    bytes: usize,
    /// Newcomers offered since the counts were last halved.
    since_aging: usize,
}

impl Shard {
    fn new(entries: usize) -> Shard {
        Shard {
            map: OidMap::default(),
            ring: VecDeque::new(),
            sketch: Sketch::new(entries),
            bytes: 0,
            since_aging: 0,
        }
    }
}

/// Most shards; small caches get fewer, so the bound stays close to what was asked.
const MAX_SHARDS: usize = 64;
/// Fewest objects per shard before the cache uses fewer shards.
const MIN_PER_SHARD: usize = 256;
/// Counts are halved after this many capacities' worth of misses in a shard.
const AGE_AFTER: usize = 10;

/// One shard per cache line pair, so threads working on different shards never
/// invalidate each other's lines; with its own count of lookups that missed.
#[repr(align(128))]
struct Padded {
    shard: RwLock<Shard>,
    misses: AtomicU64,
}

/// The shared cache.
///
/// Lookups take a shard's read lock only and touch no counter shared between shards,
/// so readers on several threads do not serialise on each other.
pub(crate) struct Cache {
    shards: Box<[Padded]>,
    per_shard: usize,
    per_shard_bytes: usize,
    /// The most entries a shard can hold (sizes its sketch and the aging period).
    entries: usize,
}

impl Cache {
    /// A cache that keeps about `capacity` objects and about `bytes` bytes (see
    /// [`ENTRY_OVERHEAD`]), whichever bound is reached first.
    pub(crate) fn new(capacity: usize, bytes: usize) -> Cache {
        let shards = Self::shard_count(capacity);
        let per_shard = capacity.div_ceil(shards).max(1);
        let per_shard_bytes = bytes.div_ceil(shards).max(1);
        // How many entries a shard can hold under the tighter of the two bounds.
        let entries = per_shard.min(per_shard_bytes / ENTRY_OVERHEAD).max(1);
        Cache {
            shards: (0..shards)
                .map(|_| Padded {
                    shard: RwLock::new(Shard::new(entries)),
                    misses: AtomicU64::new(0),
                })
                .collect(),
            per_shard,
            per_shard_bytes,
            entries,
        }
    }

    fn shard_count(capacity: usize) -> usize {
        let n = (capacity / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        // A power of two, so a shard's blocks can be numbered with shifts.
        1 << n.ilog2()
    }

    /// Which shard holds `oid`, and its key there. Shards take runs of 16 consecutive
    /// oids in turn, so a range of oids (as a store hands them out) spreads evenly over
    /// the shards, and a shard's share of a range stays within a run of its share of
    /// the capacity. The key squeezes out the shard's bits so that a shard's table stays
    /// dense: with the locality-keeping oid hash, neighbours then sit next to each
    /// other in memory.
    fn locate(&self, oid: Oid) -> (usize, Oid) {
        const BLOCK_BITS: u32 = 4;
        let shards = self.shards.len() as u64;
        let block = oid.0 >> BLOCK_BITS;
        let shard = (block & (shards - 1)) as usize;
        let key = ((block >> shards.trailing_zeros()) << BLOCK_BITS) | (oid.0 & ((1 << BLOCK_BITS) - 1));
        (shard, Oid(key))
    }

    // Shard updates cannot panic halfway, so a poisoned lock still guards sound data.
    fn read(&self, oid: Oid) -> (RwLockReadGuard<'_, Shard>, Oid) {
        let (i, key) = self.locate(oid);
        (crate::sync::read(&self.shards[i].shard), key)
    }

    fn write(&self, oid: Oid) -> (RwLockWriteGuard<'_, Shard>, Oid) {
        let (i, key) = self.locate(oid);
        (crate::sync::write(&self.shards[i].shard), key)
    }

    /// The cached version of `oid`, marking it recently used.
    pub(crate) fn get(&self, oid: Oid) -> Option<Entry> {
        let (i, key) = self.locate(oid);
        let s = crate::sync::read(&self.shards[i].shard);
        match s.map.get(&key) {
            Some(slot) => {
                let uses = slot.uses.load(Ordering::Relaxed);
                let count = (uses & COUNT).saturating_add(1).min(MAX_COUNT);
                let now = REFERENCED | count;
                if now != uses {
                    slot.uses.store(now, Ordering::Relaxed);
                }
                Some(slot.entry.clone())
            }
            None => {
                self.shards[i].misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Whether `oid` has an entry (without counting a hit or miss).
    pub(crate) fn contains(&self, oid: Oid) -> bool {
        let (s, key) = self.read(oid);
        s.map.contains_key(&key)
    }

    /// Offers `entry` for `oid`, whose stored record is `size` bytes. A version of an
    /// oid already cached is always replaced; a new oid is kept if there is room, or if
    /// it has been asked for more often than the entry it would evict has been used.
    pub(crate) fn insert(&self, oid: Oid, entry: Entry, size: usize) {
        let charge = size.saturating_add(ENTRY_OVERHEAD);
        let (mut s, key) = self.write(oid);
        let shard = &mut *s;
        if let Some(slot) = shard.map.get_mut(&key) {
            if charge > self.per_shard_bytes {
                // The new version does not fit at all; the old one must not stay.
                shard.bytes -= slot.charge;
                shard.map.remove(&key);
                return;
            }
            shard.bytes = shard.bytes - slot.charge + charge;
            slot.entry = entry;
            slot.charge = charge;
            *slot.uses.get_mut() |= REFERENCED;
            self.trim_bytes(shard, key);
            return;
        }
        shard.since_aging += 1;
        if shard.since_aging >= AGE_AFTER * self.entries {
            age(shard);
        }
        if charge > self.per_shard_bytes {
            // Larger than its shard's whole budget: read from the storage each time.
            return;
        }
        // The newcomer's history matters only against a victim; a shard with room takes
        // it without looking (the sketch is the one random memory access here).
        let mut asked = 0;
        let mut looked = false;
        while shard.map.len() >= self.per_shard || shard.bytes + charge > self.per_shard_bytes {
            let Some((victim, used)) = next_victim(shard) else {
                break;
            };
            if !looked {
                asked = shard.sketch.estimate(key);
                looked = true;
            }
            if asked <= used {
                // The newcomer has no more history than what it would replace: keep the
                // victim (under the hand, so the next newcomer faces it too) and count
                // the newcomer's miss.
                shard.ring.push_front(victim);
                shard.sketch.increment(key);
                return;
            }
            if let Some(slot) = shard.map.remove(&victim) {
                shard.bytes -= slot.charge;
                shard.sketch.remember(victim, used);
            }
        }
        shard.map.insert(
            key,
            Slot {
                entry,
                charge,
                uses: AtomicU8::new(asked),
            },
        );
        shard.bytes += charge;
        shard.ring.push_back(key);
        if shard.ring.len() > 2 * shard.map.len() + 16 {
            // Removals leave stale oids in the ring; rebuild it now and then.
            let map = &shard.map;
            shard.ring.retain(|o| map.contains_key(o));
        }
    }

    /// Evicts (by CLOCK, ignoring counts) until the shard is within its byte budget,
    /// sparing `keep`: a replaced version grew (and fits the budget by itself).
    fn trim_bytes(&self, shard: &mut Shard, keep: Oid) {
        let mut spared = 0;
        while shard.bytes > self.per_shard_bytes && spared < 2 {
            let Some((victim, used)) = next_victim(shard) else {
                return;
            };
            if victim == keep {
                shard.ring.push_back(victim);
                spared += 1;
                continue;
            }
            if let Some(slot) = shard.map.remove(&victim) {
                shard.bytes -= slot.charge;
                shard.sketch.remember(victim, used);
            }
        }
    }

    /// Replaces a raw entry by its decoded state, if the entry is still that version.
    pub(crate) fn upgrade(&self, oid: Oid, tid: Tid, state: AnyState, type_name: &'static str) {
        let (mut s, key) = self.write(oid);
        if let Some(slot) = s.map.get_mut(&key) {
            if slot.entry.tid == tid && matches!(slot.entry.state, State::Raw(_)) {
                slot.entry.state = State::Typed(state, type_name);
            }
        }
    }

    /// Drops `oid`'s entry if it is older than `tid` (a version `tid` replaced).
    pub(crate) fn remove_older(&self, oid: Oid, tid: Tid) {
        let (mut s, key) = self.write(oid);
        if s.map.get(&key).is_some_and(|slot| slot.entry.tid < tid) {
            if let Some(slot) = s.map.remove(&key) {
                s.bytes -= slot.charge;
            }
        }
    }

    /// Drops every entry (when the changes since the cache was last right can no longer
    /// be listed, as after a pack that dropped their history).
    pub(crate) fn clear(&self) {
        for p in self.shards.iter() {
            let mut s = crate::sync::write(&p.shard);
            s.map.clear();
            s.ring.clear();
            s.bytes = 0;
        }
    }

    /// Number of cached objects.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| crate::sync::read(&s.shard).map.len())
            .sum()
    }

    /// Bytes charged against the budget by the cached objects.
    pub(crate) fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| crate::sync::read(&s.shard).bytes)
            .sum()
    }

    /// Lookups that found no entry.
    pub(crate) fn misses(&self) -> u64 {
        self.shards.iter().map(|s| s.misses.load(Ordering::Relaxed)).sum()
    }

    /// The configured capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }
}

/// The CLOCK hand: takes the first entry not used since the hand last passed it off the
/// ring (clearing the mark of those it passes), with its use count; `None` if the shard
/// holds nothing.
fn next_victim(shard: &mut Shard) -> Option<(Oid, u8)> {
    while let Some(oid) = shard.ring.pop_front() {
        let Some(slot) = shard.map.get_mut(&oid) else {
            continue;
        };
        let uses = slot.uses.get_mut();
        if *uses & REFERENCED != 0 {
            *uses &= !REFERENCED;
            shard.ring.push_back(oid);
            continue;
        }
        return Some((oid, slot.count()));
    }
    None
}

/// Halves every count in the shard, so that old popularity fades.
fn age(shard: &mut Shard) {
    shard.since_aging = 0;
    shard.sketch.age();
    for slot in shard.map.values_mut() {
        let uses = slot.uses.get_mut();
        *uses = (*uses & REFERENCED) | ((*uses & COUNT) >> 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(n: u8) -> Entry {
        raw_at(1, n)
    }

    fn raw_at(tid: u64, n: u8) -> Entry {
        Entry {
            tid: Tid(tid),
            state: State::Raw(Arc::from(vec![n])),
        }
    }

    const NO_BYTE_LIMIT: usize = usize::MAX / 2;

    #[test]
    fn bounded_and_keeps_what_is_used() {
        let c = Cache::new(160, NO_BYTE_LIMIT);
        for i in 0..160u64 {
            c.insert(Oid(i), raw(1), 1);
        }
        // Touch the first half, then add more: the untouched half goes first. (A
        // newcomer displaces an entry only once it has been asked for more often than
        // that entry was used, so the newcomers are offered twice, as two misses would.)
        for i in 0..80u64 {
            assert!(c.get(Oid(i)).is_some());
        }
        for _ in 0..2 {
            for i in 160..240u64 {
                c.insert(Oid(i), raw(2), 1);
            }
        }
        assert!(c.len() <= c.capacity());
        let kept_hot = (0..80u64).filter(|&i| c.contains(Oid(i))).count();
        let kept_cold = (80..160u64).filter(|&i| c.contains(Oid(i))).count();
        assert!(kept_hot > kept_cold, "{kept_hot} hot vs {kept_cold} cold");
        assert!(
            (160..240u64).filter(|&i| c.contains(Oid(i))).count() > kept_cold,
            "newcomers asked for twice replace entries never used"
        );
        for i in 0..100_000u64 {
            c.insert(Oid(i), raw(3), 1);
            assert!(c.len() <= c.capacity());
        }
        // Only versions older than the given tid go.
        let present: Vec<Oid> = (0..100_000u64).map(Oid).filter(|&o| c.contains(o)).collect();
        assert!(present.len() >= 100, "{} cached", present.len());
        for (k, &oid) in present.iter().enumerate() {
            c.insert(oid, raw_at(2, 4), 1);
            c.remove_older(oid, Tid(2));
            assert!(c.contains(oid), "a version as new as the tid stays");
            if k % 3 == 0 {
                c.remove_older(oid, Tid(3));
                assert!(!c.contains(oid), "an older version goes");
            }
        }
        assert!(c.len() <= c.capacity());
    }

    /// Walks `0..n` cyclically `passes` times, loading (inserting) each miss; returns
    /// the hit ratio of the passes after the first two.
    fn cyclic_hit_ratio(c: &Cache, n: u64, passes: u64) -> f64 {
        let (mut hits, mut lookups) = (0u64, 0u64);
        for pass in 0..passes {
            for i in 0..n {
                let hit = c.get(Oid(i)).is_some();
                if !hit {
                    c.insert(Oid(i), raw(1), 100);
                }
                if pass >= 2 {
                    lookups += 1;
                    hits += hit as u64;
                }
            }
        }
        hits as f64 / lookups as f64
    }

    // The bound of the issue: a working set 10% larger than the cache keeps at least
    // half of its hits under a repeated walk (CLOCK or LRU keep none).
    #[test]
    fn loop_resistance() {
        for capacity in [1_000usize, 100_000] {
            let c = Cache::new(capacity, NO_BYTE_LIMIT);
            let n = (capacity as u64 * 11).div_ceil(10);
            let ratio = cyclic_hit_ratio(&c, n, 8);
            println!("capacity {capacity}, cyclic walk over {n}: hit ratio {ratio:.3}");
            assert!(
                ratio >= 0.5,
                "capacity {capacity}: hit ratio {ratio:.3} over a walk of 110%"
            );
            // The same under the byte budget instead of the object count.
            let per = 100 + ENTRY_OVERHEAD;
            let c = Cache::new(usize::MAX / 2, capacity * per);
            let ratio = cyclic_hit_ratio(&c, n, 8);
            println!("{capacity} objects' bytes, cyclic walk over {n}: hit ratio {ratio:.3}");
            assert!(ratio >= 0.5, "{capacity} objects' bytes: hit ratio {ratio:.3}");
            assert!(c.bytes() <= capacity * per + per, "{} bytes", c.bytes());
        }
        // A walk of as many objects as the cache holds is served from the cache from
        // its second pass on, but for the few a shard has over its share.
        let c = Cache::new(100_000, NO_BYTE_LIMIT);
        let ratio = cyclic_hit_ratio(&c, 100_001, 4);
        assert!(ratio >= 0.99, "hit ratio {ratio:.4} walking 100,001 objects");
    }

    #[test]
    fn a_scan_does_not_push_out_what_is_used() {
        let c = Cache::new(1_000, NO_BYTE_LIMIT);
        let hot = 0..700u64;
        let mut scan = 1_000_000u64;
        let mut hot_hits = 0;
        for round in 0..10 {
            for i in hot.clone() {
                let hit = c.get(Oid(i)).is_some();
                if !hit {
                    c.insert(Oid(i), raw(1), 1);
                }
                if round >= 5 {
                    hot_hits += hit as u64;
                }
            }
            // Between rounds, a one-time scan of twice the capacity.
            for _ in 0..2_000 {
                if c.get(Oid(scan)).is_none() {
                    c.insert(Oid(scan), raw(2), 1);
                }
                scan += 1;
            }
        }
        let ratio = hot_hits as f64 / (5 * 700) as f64;
        println!("hot set hit ratio between scans: {ratio:.3}");
        assert!(ratio >= 0.9, "hot set hit ratio {ratio:.3} between scans");
    }

    #[test]
    fn a_new_working_set_takes_over() {
        let c = Cache::new(1_000, NO_BYTE_LIMIT);
        let walk = |range: std::ops::Range<u64>, passes: usize| {
            let mut hits = 0;
            for _ in 0..passes {
                for i in range.clone() {
                    match c.get(Oid(i)) {
                        Some(_) => hits += 1,
                        None => c.insert(Oid(i), raw(1), 1),
                    }
                }
            }
            hits as f64 / (passes as u64 * (range.end - range.start)) as f64
        };
        walk(0..800, 20);
        // The old set is no longer used; the new one is, over and over.
        walk(10_000..10_800, 40);
        let late = walk(10_000..10_800, 5);
        println!("new working set hit ratio: {late:.3}");
        assert!(late >= 0.9, "new working set hit ratio {late:.3}");
    }

    #[test]
    fn the_byte_budget_bounds_the_cache() {
        let budget = 64 * (1_000 + ENTRY_OVERHEAD);
        for capacity in [200, 100_000] {
            let c = Cache::new(capacity, budget);
            for i in 0..10_000u64 {
                c.insert(Oid(i), raw(1), 1_000);
                assert!(c.bytes() <= budget, "{} bytes", c.bytes());
            }
            assert!(c.len() <= 64, "{} entries", c.len());
        }
        // One shard: a replaced version that grew stays, and others make room for it.
        let c = Cache::new(200, budget);
        for i in 0..100u64 {
            c.insert(Oid(i), raw(1), 1_000);
        }
        let kept: Vec<Oid> = (0..100u64).map(Oid).filter(|&o| c.contains(o)).collect();
        assert_eq!(kept.len(), 64);
        c.insert(kept[0], raw_at(2, 1), 20_000);
        assert!(c.contains(kept[0]));
        assert!(c.bytes() <= budget, "{} bytes", c.bytes());
        assert!(c.len() < 64);
        // Too large for the whole budget: not kept, as a new oid or as a new version.
        c.insert(Oid(99_999), raw(1), 1 << 30);
        assert!(!c.contains(Oid(99_999)));
        c.insert(kept[0], raw_at(3, 1), 1 << 30);
        assert!(
            !c.contains(kept[0]),
            "an old version never stays in place of a new one"
        );
        assert!(c.bytes() <= budget);
    }
}
