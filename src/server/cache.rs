//! A bounded map of framed records by oid, with CLOCK eviction. It only stores and
//! forgets: which entries may go in, and when they must leave, is decided by
//! [`History`](super::history::History), which owns it.

use std::sync::Arc;

use crate::record::{Oid, OidMap, Tid};

struct Entry {
    tid: Tid,
    framed: Arc<[u8]>,
    referenced: bool,
    slot: usize,
}

/// Framed records by oid, at most `budget` bytes of them.
pub(crate) struct RecordCache {
    map: OidMap<Entry>,
    /// The clock: oids in insertion slots; a slot whose oid's entry names another slot
    /// (or none) is free.
    ring: Vec<Oid>,
    hand: usize,
    bytes: usize,
    budget: usize,
}

/// What an entry costs beyond its bytes (map entry, ring slot).
const OVERHEAD: usize = 64;

impl RecordCache {
    pub(crate) fn new(budget: usize) -> RecordCache {
        RecordCache {
            map: OidMap::default(),
            ring: Vec::new(),
            hand: 0,
            bytes: 0,
            budget,
        }
    }

    /// The cached version of `oid`.
    pub(crate) fn get(&mut self, oid: Oid) -> Option<(Tid, Arc<[u8]>)> {
        let e = self.map.get_mut(&oid)?;
        e.referenced = true;
        Some((e.tid, e.framed.clone()))
    }

    /// Stores `oid`'s version `tid` unless a newer one is cached.
    pub(crate) fn insert(&mut self, oid: Oid, tid: Tid, framed: Arc<[u8]>) {
        let cost = framed.len() + OVERHEAD;
        if cost > self.budget / 4 {
            return;
        }
        if let Some(e) = self.map.get_mut(&oid) {
            if e.tid >= tid {
                return;
            }
            self.bytes = self.bytes - (e.framed.len() + OVERHEAD) + cost;
            e.tid = tid;
            e.framed = framed;
            e.referenced = true;
        } else {
            self.bytes += cost;
            let slot = self.free_slot(oid);
            self.map.insert(
                oid,
                Entry {
                    tid,
                    framed,
                    referenced: false,
                    slot,
                },
            );
        }
        while self.bytes > self.budget {
            if !self.evict_one() {
                break;
            }
        }
    }

    /// Forgets `oid` if its cached version is older than `tid`.
    pub(crate) fn remove_older(&mut self, oid: Oid, tid: Tid) {
        if self.map.get(&oid).is_some_and(|e| e.tid < tid) {
            self.remove(oid);
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.ring.clear();
        self.hand = 0;
        self.bytes = 0;
    }

    fn remove(&mut self, oid: Oid) {
        if let Some(e) = self.map.remove(&oid) {
            self.bytes -= e.framed.len() + OVERHEAD;
        }
    }

    fn owns(&self, slot: usize) -> bool {
        self.map.get(&self.ring[slot]).is_some_and(|e| e.slot == slot)
    }

    /// A ring slot for `oid`: the next free one the hand passes, else a new one.
    fn free_slot(&mut self, oid: Oid) -> usize {
        if self.ring.len() > 2 * self.map.len() + 16 {
            // Many slots were freed by removals: compact, so the ring stays near the
            // size of the map.
            let map = &mut self.map;
            let mut ring = Vec::with_capacity(map.len() + 1);
            for (o, e) in map.iter_mut() {
                e.slot = ring.len();
                ring.push(*o);
            }
            self.ring = ring;
            self.hand = 0;
        }
        self.ring.push(oid);
        self.ring.len() - 1
    }

    /// Evicts the first unreferenced entry the hand finds, clearing references as it
    /// passes. False if the cache is empty.
    fn evict_one(&mut self) -> bool {
        if self.map.is_empty() {
            return false;
        }
        loop {
            if self.hand >= self.ring.len() {
                self.hand = 0;
            }
            let slot = self.hand;
            self.hand += 1;
            if !self.owns(slot) {
                continue;
            }
            let oid = self.ring[slot];
            let Some(e) = self.map.get_mut(&oid) else { continue };
            if e.referenced {
                e.referenced = false;
                continue;
            }
            self.remove(oid);
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: usize) -> Arc<[u8]> {
        vec![7u8; n].into()
    }

    #[test]
    fn newer_versions_win_and_the_budget_holds() {
        let mut c = RecordCache::new(100 * (100 + OVERHEAD));
        c.insert(Oid(1), Tid(5), rec(10));
        c.insert(Oid(1), Tid(3), rec(20));
        assert_eq!(c.get(Oid(1)).unwrap().0, Tid(5));
        c.remove_older(Oid(1), Tid(5));
        assert!(c.get(Oid(1)).is_some());
        c.remove_older(Oid(1), Tid(6));
        assert!(c.get(Oid(1)).is_none());
        for i in 0..1000 {
            c.insert(Oid(i), Tid(1), rec(100));
            assert!(c.bytes <= c.budget);
            // A hot entry survives the churn.
            c.insert(Oid(5000), Tid(1), rec(100));
            let _ = c.get(Oid(5000));
        }
        assert!(c.get(Oid(5000)).is_some());
        assert!(c.map.len() <= 100);
        assert!(c.ring.len() <= 2 * c.map.len() + 17);
    }
}
