//! The shared cache of committed object states, one per `Db`, bounded, evicting the
//! least recently used (by the CLOCK approximation).
//!
//! Every entry is the newest committed version of its oid that this process knows of,
//! tagged with the tid that committed it; the per-oid locks in `locks` and the publish
//! order in `Db` keep that true. A lookup takes one short, uncontended shard lock and
//! makes no syscall.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::record::{Oid, Tid};

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

/// Oids are dense integers: a multiplicative hash spreads them well at a fraction of
/// SipHash's cost.
#[derive(Default)]
pub(crate) struct OidHasher(u64);

impl Hasher for OidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type OidMap<V> = HashMap<Oid, V, BuildHasherDefault<OidHasher>>;

struct Slot {
    entry: Entry,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: OidMap<Slot>,
    /// Insertion order for the CLOCK sweep; may hold oids no longer in `map`.
    ring: VecDeque<Oid>,
}

const SHARDS: usize = 16;

/// The shared cache.
pub(crate) struct Cache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Cache {
    /// A cache that keeps about `capacity` objects.
    pub(crate) fn new(capacity: usize) -> Cache {
        Cache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, oid: Oid) -> MutexGuard<'_, Shard> {
        let i = (oid.0 as usize) % SHARDS;
        // Shard updates cannot panic halfway, so a poisoned lock is still sound.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached version of `oid`, marking it recently used.
    pub(crate) fn get(&self, oid: Oid) -> Option<Entry> {
        let mut s = self.shard(oid);
        match s.map.get_mut(&oid) {
            Some(slot) => {
                slot.referenced = true;
                self.hits.fetch_add(1, Ordering::Relaxed);
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
        self.shard(oid).map.contains_key(&oid)
    }

    /// Stores `entry` for `oid`, evicting another entry if the shard is full.
    pub(crate) fn insert(&self, oid: Oid, entry: Entry) {
        let mut s = self.shard(oid);
        let shard = &mut *s;
        if let Some(slot) = shard.map.get_mut(&oid) {
            slot.entry = entry;
            slot.referenced = true;
            return;
        }
        while shard.map.len() >= self.per_shard {
            let Some(victim) = shard.ring.pop_front() else {
                break;
            };
            match shard.map.get_mut(&victim) {
                None => {}
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    shard.ring.push_back(victim);
                }
                Some(_) => {
                    shard.map.remove(&victim);
                }
            }
        }
        shard.map.insert(
            oid,
            Slot {
                entry,
                referenced: false,
            },
        );
        shard.ring.push_back(oid);
        if shard.ring.len() > 2 * shard.map.len() + 16 {
            // Removals leave stale oids in the ring; rebuild it now and then.
            let map = &shard.map;
            shard.ring.retain(|o| map.contains_key(o));
        }
    }

    /// Replaces a raw entry by its decoded state, if the entry is still that version.
    pub(crate) fn upgrade(&self, oid: Oid, tid: Tid, state: AnyState, type_name: &'static str) {
        let mut s = self.shard(oid);
        if let Some(slot) = s.map.get_mut(&oid) {
            if slot.entry.tid == tid && matches!(slot.entry.state, State::Raw(_)) {
                slot.entry.state = State::Typed(state, type_name);
            }
        }
    }

    /// Drops `oid`'s entry.
    pub(crate) fn remove(&self, oid: Oid) {
        self.shard(oid).map.remove(&oid);
    }

    /// Number of cached objects.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    /// Lookups that found an entry, and lookups that did not.
    pub(crate) fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// The configured capacity.
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard * SHARDS
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
                c.remove(Oid(i));
            }
        }
        assert!(c.len() <= c.capacity());
    }
}
