//! What the server knows of recent transactions, kept current from the storage's
//! change feed: the log of recent commits (for invalidations and v2's change queries,
//! answered from memory) and the record cache (loads answered without file access).
//!
//! The feed is drained without waiting, at the start of every request: the storage
//! announces each commit on the feed before anyone hears it committed, so a request
//! that arrives after some commit was acknowledged always finds that commit here.
//!
//! The log covers the transactions in `(start, last]`, every one of them. A cache entry
//! is the newest version of its oid among those: it leaves as soon as the log shows a
//! newer commit of the oid, and goes in only if nothing the log shows since the version
//! was read is newer (see [`History::insert`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::cache::RecordCache;
use crate::record::{Oid, OidMap, Tid, TxInfo};
use crate::storage::Change;

/// Transactions and oids the log keeps at most (older ones are forgotten, and sessions
/// that last synced before them ask the storage instead).
const MAX_TXS: usize = 100_000;
const MAX_OIDS: usize = 1_000_000;

/// The log and the cache, behind one lock, and the feed subscription they follow.
pub(crate) struct History {
    state: Mutex<State>,
    feed: Mutex<BoxStream<'static, Change>>,
}

struct State {
    /// Nothing at or before `start` is in the log; `None` after a gap in the feed until
    /// the next transaction arrives.
    start: Option<Tid>,
    last: Tid,
    txs: VecDeque<TxInfo>,
    /// The newest transaction in the log that wrote each oid.
    last_write: OidMap<Tid>,
    oids_held: usize,
    cache: RecordCache,
    root_exists: bool,
    /// The newest pack point of a pack made through this server.
    pack_point: Tid,
}

/// The log's answer to "what changed after `seen`".
pub(crate) struct Invalidations {
    /// The oids, ascending.
    pub(crate) oids: Vec<Oid>,
    /// The last tid the answer covers.
    pub(crate) last: Tid,
}

impl History {
    /// Follows `feed`, which was subscribed to before `last` was read from the storage,
    /// so that nothing after `last` is missed.
    pub(crate) fn new(feed: BoxStream<'static, Change>, last: Tid, cache_bytes: usize) -> History {
        History {
            state: Mutex::new(State {
                start: Some(last),
                last,
                txs: VecDeque::new(),
                last_write: OidMap::default(),
                oids_held: 0,
                cache: RecordCache::new(cache_bytes),
                root_exists: false,
                pack_point: Tid::ZERO,
            }),
            feed: Mutex::new(feed),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update of the state completes without panicking, so a poisoned lock
        // still guards consistent data.
        crate::sync::lock(&self.state)
    }

    /// Takes in whatever the feed has ready, without waiting.
    pub(crate) fn refresh(&self) {
        // One drainer at a time; a second waits, and then finds applied whatever was
        // announced before it asked.
        let mut feed = crate::sync::lock(&self.feed);
        while let Some(Some(change)) = feed.next().now_or_never() {
            let mut st = self.state();
            match change {
                Change::Committed { tid, timestamp, oids } => st.apply(TxInfo { tid, timestamp, oids }),
                Change::Lagged { .. } => st.gap(),
            }
        }
    }

    /// The last tid the log has seen.
    pub(crate) fn last(&self) -> Tid {
        self.state().last
    }

    /// Whether the root has been seen committed.
    pub(crate) fn root_exists(&self) -> bool {
        self.state().root_exists
    }

    /// Notes that the root exists (a load found it, or a commit wrote it).
    pub(crate) fn set_root_exists(&self) {
        self.state().root_exists = true;
    }

    /// The oids written after `seen` by transactions other than `own`, if the log
    /// still reaches back to `seen`.
    pub(crate) fn invalidations(&self, seen: Tid, own: &[Tid]) -> Option<Invalidations> {
        let st = self.state();
        if st.start.is_none_or(|s| s > seen) {
            return None;
        }
        let mut oids: Vec<Oid> = st
            .after(seen)
            .filter(|tx| !own.contains(&tx.tid))
            .flat_map(|tx| tx.oids.iter().copied())
            .collect();
        oids.sort_unstable();
        oids.dedup();
        Some(Invalidations { oids, last: st.last })
    }

    /// At most `max` transactions after `after`, if the log reaches back to it; and
    /// whether more follow.
    pub(crate) fn transactions(&self, after: Tid, max: usize) -> Option<(Vec<TxInfo>, bool)> {
        let st = self.state();
        if st.start.is_none_or(|s| s > after) || after > st.last {
            return None;
        }
        let mut txs: Vec<TxInfo> = st.after(after).take(max + 1).cloned().collect();
        let more = txs.len() > max;
        txs.truncate(max);
        Some((txs, more))
    }

    /// After a pack at `point`: the cache may hold objects it dropped (unreachable
    /// ones), which must read as missing now, and the transactions before the point
    /// are gone from the storage, so the log must not answer for them either.
    pub(crate) fn packed(&self, point: Tid) {
        let mut st = self.state();
        st.cache.clear();
        st.pack_point = st.pack_point.max(point);
        while st.txs.front().is_some_and(|tx| tx.tid < point) {
            st.forget_oldest();
        }
        // The log answers from `start` on, as the storage does from the point on.
        if st.start.is_some_and(|s| s < point) {
            st.start = Some(point);
        }
    }

    /// The newest pack point of a pack made through this server: the history before
    /// it is gone, whatever the storage's handle may still remember of it.
    pub(crate) fn pack_point(&self) -> Tid {
        self.state().pack_point
    }

    /// The cached version of `oid`.
    pub(crate) fn cached(&self, oid: Oid) -> Option<(Tid, Arc<[u8]>)> {
        self.state().cache.get(oid)
    }

    /// Caches version `tid` of `oid`, read from the storage (or just committed) at a
    /// moment when the log had reached `known`: no version between `tid` and `known`
    /// can exist then (a later one would have been read instead, or this is the commit
    /// itself), so it is the newest unless the log has since shown a newer commit of
    /// the oid, which it can tell as long as it still reaches back to `known`.
    pub(crate) fn insert(&self, oid: Oid, tid: Tid, framed: Arc<[u8]>, known: Tid) {
        let mut st = self.state();
        let from = tid.max(known);
        if st.start.is_none_or(|s| s > from) {
            return;
        }
        if st.last_write.get(&oid).is_some_and(|&w| w > tid) {
            return;
        }
        st.cache.insert(oid, tid, framed);
    }
}

impl State {
    fn after(&self, tid: Tid) -> impl Iterator<Item = &TxInfo> + '_ {
        let from = self.txs.partition_point(|tx| tx.tid <= tid);
        self.txs.range(from..)
    }

    fn apply(&mut self, tx: TxInfo) {
        if self.start.is_some() && tx.tid <= self.last {
            return;
        }
        if self.start.is_none() {
            // The first transaction after a gap: the log starts again just before it.
            self.start = Some(Tid(tx.tid.0.saturating_sub(1)));
        }
        for &oid in &tx.oids {
            self.last_write.insert(oid, tx.tid);
            self.cache.remove_older(oid, tx.tid);
            if oid == Oid::ROOT {
                self.root_exists = true;
            }
        }
        self.last = tx.tid;
        self.oids_held += tx.oids.len();
        self.txs.push_back(tx);
        while self.txs.len() > MAX_TXS || self.oids_held > MAX_OIDS {
            if !self.forget_oldest() {
                break;
            }
        }
    }

    /// Drops the oldest transaction of the log (false if there is none): the log then
    /// starts at it.
    fn forget_oldest(&mut self) -> bool {
        let Some(old) = self.txs.pop_front() else {
            return false;
        };
        self.oids_held -= old.oids.len();
        for oid in &old.oids {
            if self.last_write.get(oid) == Some(&old.tid) {
                self.last_write.remove(oid);
            }
        }
        self.start = Some(old.tid);
        true
    }

    /// Events were dropped: nothing cached can be trusted, and the log is unknown until
    /// the next transaction arrives.
    fn gap(&mut self) {
        self.start = None;
        self.txs.clear();
        self.last_write.clear();
        self.oids_held = 0;
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStorage, Storage};

    fn framed(n: u8) -> Arc<[u8]> {
        vec![n; 4].into()
    }

    #[test]
    fn invalidations_skip_own_commits_and_stale_versions_stay_out() {
        futures::executor::block_on(async {
            let s = MemoryStorage::new();
            let h = History::new(s.changes(), Tid::ZERO, 1 << 20);
            let oids = s.new_oids(3).await.unwrap();
            let c = |oid: Oid, snap: u64| crate::record::CommitRequest {
                snapshot: Tid(snap),
                records: vec![crate::record::Record::new(oid, vec![1], vec![])],
                ..Default::default()
            };
            s.commit(c(oids[0], 0)).await.unwrap();
            s.commit(c(oids[1], 1)).await.unwrap();
            h.refresh();
            assert_eq!(h.last(), Tid(2));
            let inv = h.invalidations(Tid::ZERO, &[Tid(1)]).unwrap();
            assert_eq!(inv.oids, vec![oids[1]]);
            assert_eq!(inv.last, Tid(2));
            // A version read before a newer commit the log has shown stays out.
            h.insert(oids[0], Tid(1), framed(1), Tid(1));
            assert_eq!(h.cached(oids[0]).unwrap().0, Tid(1));
            s.commit(c(oids[0], 2)).await.unwrap();
            h.refresh();
            assert!(h.cached(oids[0]).is_none(), "a newer commit evicts");
            h.insert(oids[0], Tid(1), framed(1), Tid(2));
            assert!(h.cached(oids[0]).is_none(), "a stale version is refused");
            h.insert(oids[0], Tid(3), framed(3), Tid(3));
            assert_eq!(h.cached(oids[0]).unwrap().0, Tid(3));
            assert_eq!(h.transactions(Tid(1), 1).unwrap().0[0].tid, Tid(2));
            assert!(h.transactions(Tid(1), 1).unwrap().1);
        });
    }
}
