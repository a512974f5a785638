//! Per-oid async locks that serialise loading an oid into the cache with publishing a
//! committed state of it, so no task sees a torn or out-of-order cache entry.
//!
//! The map holds an entry only while some task holds or waits for that oid's lock: the
//! entry counts its users, and every way out (the guard dropped, or a waiting future
//! dropped before it got the lock) gives its count back.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::record::{Oid, OidMap};

type OidMutex = Arc<async_lock::Mutex<()>>;

/// How many parts the map is split into, by oid, so that tasks on different threads
/// locking different oids rarely meet on one mutex.
const PARTS: usize = 16;

type Part = Mutex<OidMap<(OidMutex, usize)>>;

/// A map of oid -> async mutex, holding entries only while they are in use.
#[derive(Default)]
pub(crate) struct LockMap {
    parts: [Part; PARTS],
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
        let mut map = self.locks.part(self.oid);
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
    fn part(&self, oid: Oid) -> MutexGuard<'_, OidMap<(OidMutex, usize)>> {
        // Runs of 16 oids share a part, as cache shards do. Updates to the map cannot
        // panic halfway, so a poisoned lock is still sound.
        crate::sync::lock(&self.parts[(oid.0 >> 4) as usize % PARTS])
    }

    fn claim(&self, oid: Oid) -> Claim<'_> {
        let mut map = self.part(oid);
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
        self.parts.iter().map(|p| crate::sync::lock(p).len()).sum()
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

    // Model check: tasks taking overlapping sets of oid locks in every interleaving of
    // their await points (and, in some runs, one of them dropped at any await point):
    // never two holders of one oid, no deadlock or lost wake-up (the scheduler reports a
    // task left waiting with nothing to wake it), and the map empty at the end.

    use std::cell::RefCell;
    use std::collections::HashMap as Map;

    use crate::model_check::{explore_all, explore_random, run, yield_now, Chooser};

    /// Who holds each oid's lock, as the tasks themselves record it.
    type Holders = RefCell<Map<Oid, usize>>;

    /// Marks `oids` held by `task` while alive; a task dropped in its critical section
    /// gives them back as its guards do.
    struct Holding<'a> {
        holders: &'a Holders,
        oids: Vec<Oid>,
    }

    impl Drop for Holding<'_> {
        fn drop(&mut self) {
            for o in &self.oids {
                self.holders.borrow_mut().remove(o);
            }
        }
    }

    async fn take(locks: &LockMap, holders: &Holders, task: usize, oids: Vec<Oid>) {
        let guards = locks.lock_many(oids.iter().copied()).await;
        let mut held = Holding {
            holders,
            oids: Vec::new(),
        };
        for &o in &oids {
            if let Some(other) = holders.borrow_mut().insert(o, task) {
                panic!("task {task} got {o} while task {other} holds it");
            }
            held.oids.push(o);
        }
        yield_now().await;
        drop(held);
        drop(guards);
    }

    fn lock_scenario(c: &mut dyn Chooser, sets: &[Vec<u64>], max_cancels: usize) -> Result<(), String> {
        let locks = LockMap::default();
        let holders = Holders::default();
        let report = run(c, max_cancels, 10_000, |s| {
            for (task, set) in sets.iter().enumerate() {
                let oids = set.iter().map(|&o| Oid(o)).collect();
                s.spawn(format!("task {task}"), true, take(&locks, &holders, task, oids));
            }
        })?;
        if locks.len() != 0 {
            return Err(format!(
                "{} lock entries left after {:?} were dropped",
                locks.len(),
                report.cancelled
            ));
        }
        Ok(())
    }

    #[test]
    fn every_interleaving_of_three_tasks_on_overlapping_oids() {
        let sets = [vec![1], vec![1, 2], vec![2, 1], vec![2]];
        let plain = explore_all(500_000, |c| lock_scenario(c, &sets, 0)).unwrap();
        let cancelled = explore_all(500_000, |c| lock_scenario(c, &sets, 1)).unwrap();
        assert!(plain > 10 && cancelled > plain, "{plain} / {cancelled} schedules");
        println!("model check: LockMap, {plain} schedules, {cancelled} with one task dropped");
    }

    #[test]
    fn random_interleavings_of_six_tasks_with_drops() {
        let sets = [
            vec![1, 2],
            vec![2, 3],
            vec![3, 1],
            vec![1],
            vec![2, 3, 1],
            vec![3],
        ];
        explore_random(0x10C5, 5_000, |c| lock_scenario(c, &sets, 2)).unwrap();
    }
}
