//! The shared cache of committed object states, one per `Db`, bounded, evicting the
//! least recently used (by the CLOCK approximation).
//!
//! Every entry is the newest committed version of its oid that this process knows of,
//! tagged with the tid that committed it; the per-oid locks in `locks` and the publish
//! order in `Db` keep that true. A lookup takes one short, uncontended shard lock and
//! makes no syscall.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

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

struct Slot {
    entry: Entry,
    /// Set by lookups under the shard's read lock, cleared by the CLOCK sweep.
    referenced: AtomicBool,
}

#[derive(Default)]
struct Shard {
    map: OidMap<Slot>,
    /// Insertion order for the CLOCK sweep; may hold oids no longer in `map`.
    ring: VecDeque<Oid>,
}

/// Most shards; small caches get fewer, so the bound stays close to what was asked.
const MAX_SHARDS: usize = 64;
/// Fewest objects per shard before the cache uses fewer shards.
const MIN_PER_SHARD: usize = 256;

/// One shard per cache line pair, so threads working on different shards never
/// invalidate each other's lines.
#[derive(Default)]
#[repr(align(128))]
struct Padded(RwLock<Shard>);

/// The shared cache.
///
/// Lookups take a shard's read lock only and touch no shared counter, so readers on
/// several threads do not serialise on each other.
pub(crate) struct Cache {
    shards: Box<[Padded]>,
    per_shard: usize,
    misses: AtomicU64,
}

impl Cache {
    /// A cache that keeps about `capacity` objects.
    pub(crate) fn new(capacity: usize) -> Cache {
        Cache {
            shards: (0..Self::shard_count(capacity))
                .map(|_| Padded::default())
                .collect(),
            per_shard: capacity.div_ceil(Self::shard_count(capacity)).max(1),
            misses: AtomicU64::new(0),
        }
    }

    fn shard_count(capacity: usize) -> usize {
        let n = (capacity / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        // A power of two, so a shard's blocks can be numbered with shifts.
        1 << n.ilog2()
    }

    /// Which shard holds `oid`, and its key there. Shards hold runs of 1,024
    /// consecutive oids, so a walk over neighbouring oids stays in one shard, and the
    /// key squeezes out the shard's bits so that a shard's table stays dense: with the
    /// locality-keeping oid hash, neighbours then sit next to each other in memory.
    fn locate(&self, oid: Oid) -> (usize, Oid) {
        const BLOCK_BITS: u32 = 10;
        let shards = self.shards.len() as u64;
        let block = oid.0 >> BLOCK_BITS;
        let shard = (block & (shards - 1)) as usize;
        let key = ((block >> shards.trailing_zeros()) << BLOCK_BITS) | (oid.0 & ((1 << BLOCK_BITS) - 1));
        (shard, Oid(key))
    }

    // Shard updates cannot panic halfway, so a poisoned lock still guards sound data.
    fn read(&self, oid: Oid) -> (RwLockReadGuard<'_, Shard>, Oid) {
        let (i, key) = self.locate(oid);
        (self.shards[i].0.read().unwrap_or_else(|p| p.into_inner()), key)
    }

    fn write(&self, oid: Oid) -> (RwLockWriteGuard<'_, Shard>, Oid) {
        let (i, key) = self.locate(oid);
        (self.shards[i].0.write().unwrap_or_else(|p| p.into_inner()), key)
    }

    /// The cached version of `oid`, marking it recently used.
    pub(crate) fn get(&self, oid: Oid) -> Option<Entry> {
        let (s, key) = self.read(oid);
        match s.map.get(&key) {
            Some(slot) => {
                // Only write the flag when it changes, so hot entries stay shared in
                // every core's cache.
                if !slot.referenced.load(Ordering::Relaxed) {
                    slot.referenced.store(true, Ordering::Relaxed);
                }
                Some(slot.entry.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Whether `oid` has an entry (without counting a hit or miss).
    pub(crate) fn contains(&self, oid: Oid) -> bool {
        let (s, key) = self.read(oid);
        s.map.contains_key(&key)
    }

    /// Stores `entry` for `oid`, evicting another entry if the shard is full.
    pub(crate) fn insert(&self, oid: Oid, entry: Entry) {
        let (mut s, key) = self.write(oid);
        let shard = &mut *s;
        if let Some(slot) = shard.map.get_mut(&key) {
            slot.entry = entry;
            *slot.referenced.get_mut() = true;
            return;
        }
        while shard.map.len() >= self.per_shard {
            let Some(victim) = shard.ring.pop_front() else {
                break;
            };
            match shard.map.get_mut(&victim) {
                None => {}
                Some(slot) if slot.referenced.load(Ordering::Relaxed) => {
                    *slot.referenced.get_mut() = false;
                    shard.ring.push_back(victim);
                }
                Some(_) => {
                    shard.map.remove(&victim);
                }
            }
        }
        shard.map.insert(
            key,
            Slot {
                entry,
                referenced: AtomicBool::new(false),
            },
        );
        shard.ring.push_back(key);
        if shard.ring.len() > 2 * shard.map.len() + 16 {
            // Removals leave stale oids in the ring; rebuild it now and then.
            let map = &shard.map;
            shard.ring.retain(|o| map.contains_key(o));
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
            s.map.remove(&key);
        }
    }

    /// Number of cached objects.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.read().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    /// Lookups that found no entry.
    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The configured capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(n: u8) -> Entry {
        Entry {
            tid: Tid(1),
            state: State::Raw(Arc::from(vec![n])),
        }
    }

    #[test]
    fn bounded_and_keeps_what_is_used() {
        let c = Cache::new(160);
        for i in 0..160u64 {
            c.insert(Oid(i), raw(1));
        }
        // Touch the first half, then add more: the untouched half goes first.
        for i in 0..80u64 {
            assert!(c.get(Oid(i)).is_some());
        }
        for i in 160..240u64 {
            c.insert(Oid(i), raw(2));
        }
        assert!(c.len() <= c.capacity());
        let kept_hot = (0..80u64).filter(|&i| c.contains(Oid(i))).count();
        let kept_cold = (80..160u64).filter(|&i| c.contains(Oid(i))).count();
        assert!(kept_hot > kept_cold, "{kept_hot} hot vs {kept_cold} cold");
        for i in 0..100_000u64 {
            c.insert(Oid(i), raw(3));
            if i % 3 == 0 {
                // Only versions older than the given tid go.
                c.remove_older(Oid(i), Tid(1));
                assert!(c.contains(Oid(i)));
                c.remove_older(Oid(i), Tid(2));
                assert!(!c.contains(Oid(i)));
            }
        }
        assert!(c.len() <= c.capacity());
    }
}
