//! Per-oid async locks that serialise loading an oid into the cache with publishing a
//! committed state of it, so no task sees a torn or out-of-order cache entry.
//!
//! The map holds an entry only while some task holds or waits for that oid's lock: the
//! entry counts its users, and every way out (the guard dropped, or a waiting future
//! dropped before it got the lock) gives its count back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::record::Oid;

type OidMutex = Arc<async_lock::Mutex<()>>;

/// A map of oid -> async mutex, holding entries only while they are in use.
#[derive(Default)]
pub(crate) struct LockMap {
    map: Mutex<HashMap<Oid, (OidMutex, usize)>>,
}

/// A user's claim on one oid's entry; giving it back removes the entry when it was the
/// last. Held by both waiting and owning tasks, so cancellation cannot leak entries.
struct Claim<'a> {
    locks: &'a LockMap,
    oid: Oid,
    mutex: OidMutex,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.lock_map();
        if let Some((_, users)) = map.get_mut(&self.oid) {
            *users -= 1;
            if *users == 0 {
                map.remove(&self.oid);
            }
        }
    }
}

/// Holds one oid's lock; dropping it releases the lock.
pub(crate) struct OidGuard<'a> {
    // Field order matters: the lock is released before the claim is given back.
    _guard: async_lock::MutexGuardArc<()>,
    _claim: Claim<'a>,
}

impl LockMap {
    fn lock_map(&self) -> MutexGuard<'_, HashMap<Oid, (OidMutex, usize)>> {
        // Updates to the map cannot panic halfway, so a poisoned lock is still sound.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim(&self, oid: Oid) -> Claim<'_> {
        let mut map = self.lock_map();
        let (mutex, users) = map.entry(oid).or_insert_with(|| (Arc::default(), 0));
        *users += 1;
        Claim {
            locks: self,
            oid,
            mutex: mutex.clone(),
        }
    }

    /// Waits for `oid`'s lock. Dropping the returned future while it waits leaves no
    /// trace in the map.
    pub(crate) async fn lock(&self, oid: Oid) -> OidGuard<'_> {
        let claim = self.claim(oid);
        let guard = claim.mutex.lock_arc().await;
        OidGuard {
            _guard: guard,
            _claim: claim,
        }
    }

    /// Takes the locks of many oids, in ascending order so that two tasks locking
    /// overlapping sets cannot deadlock.
    pub(crate) async fn lock_many(&self, oids: impl IntoIterator<Item = Oid>) -> Vec<OidGuard<'_>> {
        let mut sorted: Vec<Oid> = oids.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut guards = Vec::with_capacity(sorted.len());
        for oid in sorted {
            guards.push(self.lock(oid).await);
        }
        guards
    }

    /// How many oids have entries (for tests of the no-leak property).
    pub(crate) fn len(&self) -> usize {
        self.lock_map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn dropped_waiters_and_guards_leave_the_map_empty() {
        futures::executor::block_on(async {
            let locks = LockMap::default();
            let held = locks.lock(Oid(1)).await;
            let mut waiting = Vec::new();
            for i in 0..1000u64 {
                let mut f = Box::pin(locks.lock(Oid(1 + i % 3)));
                // Oid 1 is held, so those waiters stay pending; the others get the lock
                // and hold it until dropped.
                let got = (&mut f).now_or_never();
                waiting.push((f, got));
            }
            assert!(locks.len() >= 1);
            drop(waiting);
            assert_eq!(locks.len(), 1, "only the held lock remains");
            drop(held);
            assert_eq!(locks.len(), 0);
            let g = locks.lock_many([Oid(5), Oid(3), Oid(5)]).await;
            assert_eq!(g.len(), 2);
            drop(g);
            assert_eq!(locks.len(), 0);
        });
    }
}
