//! A storage that keeps every version of every record in memory.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{self, BoxFuture};
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};

use super::feed::{Change, Feed};
use super::{ScanIter, Storage, SyncStorage};
use crate::error::{Error, Result};
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Record, Tid, TxInfo};

/// An in-memory storage with the same semantics as the file storage (snapshots,
/// conflicts, oids never reused), for tests and for data that need not outlive the
/// process. Its calls never block, so it runs them inline.
///
/// Cloning is cheap and shares the data.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Mem>>,
    feed: Arc<Feed>,
}

#[derive(Default)]
struct Mem {
    /// Every version of each oid, oldest first.
    versions: HashMap<Oid, Vec<(Tid, Record)>>,
    last_tid: Tid,
    last_timestamp: u64,
    /// Next oid to hand out; 0 is the root and never handed out.
    next_oid: u64,
    log: Vec<(Tid, u64, Vec<Oid>)>,
    closed: bool,
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = crate::sync::lock(&self.inner);
        f.debug_struct("MemoryStorage")
            .field("objects", &g.versions.len())
            .field("last_tid", &g.last_tid)
            .field("closed", &g.closed)
            .finish_non_exhaustive()
    }
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Mem>> {
        // Every update below completes before anything can panic, so a poisoned lock
        // still guards consistent data.
        let g = crate::sync::lock(&self.inner);
        if g.closed {
            return Err(Error::Closed);
        }
        Ok(g)
    }
}

impl Mem {
    fn newest(&self, oid: Oid) -> Option<&(Tid, Record)> {
        self.versions.get(&oid).and_then(|v| v.last())
    }
}

impl SyncStorage for MemoryStorage {
    fn load(&self, oid: Oid) -> Result<Loaded> {
        let m = self.lock()?;
        let (tid, record) = m.newest(oid).ok_or(Error::NotFound { oid })?;
        Ok(Loaded {
            record: record.clone(),
            tid: *tid,
        })
    }

    fn load_at(&self, oid: Oid, snapshot: Tid) -> Result<Loaded> {
        let m = self.lock()?;
        if snapshot > m.last_tid {
            return Err(Error::snapshot_ahead(snapshot, m.last_tid));
        }
        let versions = m.versions.get(&oid).ok_or(Error::NotFound { oid })?;
        let visible = versions.partition_point(|(t, _)| *t <= snapshot);
        let (tid, record) = visible
            .checked_sub(1)
            .and_then(|i| versions.get(i))
            .ok_or(Error::NotFound { oid })?;
        Ok(Loaded {
            record: record.clone(),
            tid: *tid,
        })
    }

    fn load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Result<Vec<Option<Loaded>>> {
        oids.iter()
            .map(|&oid| {
                let r = match snapshot {
                    Some(s) => SyncStorage::load_at(self, oid, s),
                    None => SyncStorage::load(self, oid),
                };
                match r {
                    Ok(l) => Ok(Some(l)),
                    Err(Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .collect()
    }

    fn new_oids(&self, n: u64) -> Result<Vec<Oid>> {
        let mut m = self.lock()?;
        let first = m.next_oid.max(1);
        let end = first.checked_add(n).ok_or(Error::Exhausted { what: "oids" })?;
        m.next_oid = end;
        Ok((first..end).map(Oid).collect())
    }

    fn commit(&self, req: &CommitRequest) -> Result<Committed> {
        let mut m = self.lock()?;
        let written = req.validate(m.next_oid.max(1), m.last_tid)?;
        let conflicts: BTreeSet<Oid> = req
            .reads
            .iter()
            .chain(written.iter())
            .copied()
            .filter(|&oid| m.newest(oid).is_some_and(|(t, _)| *t > req.checked_after(oid)))
            .collect();
        if !conflicts.is_empty() {
            return Err(Error::Conflict {
                oids: conflicts.into_iter().collect(),
            });
        }
        if req.records.is_empty() {
            return Ok(Committed {
                tid: m.last_tid,
                timestamp: m.last_timestamp,
            });
        }
        let tid = m.last_tid.next();
        let timestamp = crate::clock::now_micros().max(m.last_timestamp);
        for r in &req.records {
            m.versions.entry(r.oid).or_default().push((tid, r.clone()));
        }
        // Announced under the lock, so the feed sees commits in order.
        self.feed.publish(tid, timestamp, &written);
        m.log.push((tid, timestamp, written));
        m.last_tid = tid;
        m.last_timestamp = timestamp;
        Ok(Committed { tid, timestamp })
    }

    fn changes_since(&self, since: Tid) -> Result<Changes> {
        let m = self.lock()?;
        if since > m.last_tid {
            return Err(Error::snapshot_ahead(since, m.last_tid));
        }
        let start = m.log.partition_point(|(t, _, _)| *t <= since);
        let oids: BTreeSet<Oid> = m.log[start..]
            .iter()
            .flat_map(|(_, _, o)| o.iter().copied())
            .collect();
        Ok(Changes {
            tid: m.last_tid,
            oids: oids.into_iter().collect(),
        })
    }

    fn last_tid(&self) -> Result<Tid> {
        Ok(self.lock()?.last_tid)
    }

    fn transactions(&self, after: Tid) -> Result<Vec<TxInfo>> {
        let m = self.lock()?;
        let start = m.log.partition_point(|(t, _, _)| *t <= after);
        Ok(m.log[start..]
            .iter()
            .map(|(tid, timestamp, oids)| TxInfo {
                tid: *tid,
                timestamp: *timestamp,
                oids: oids.clone(),
            })
            .collect())
    }

    fn tid_at_time(&self, timestamp: u64) -> Result<Tid> {
        let m = self.lock()?;
        let n = m.log.partition_point(|(_, ts, _)| *ts <= timestamp);
        Ok(n.checked_sub(1).map_or(Tid::ZERO, |i| m.log[i].0))
    }

    fn oids(&self) -> Result<Vec<Oid>> {
        let m = self.lock()?;
        let mut oids: Vec<Oid> = m.versions.keys().copied().collect();
        oids.sort_unstable();
        Ok(oids)
    }

    fn close(&self) -> Result<()> {
        let mut g = crate::sync::lock(&self.inner);
        g.closed = true;
        Ok(())
    }
}

impl Storage for MemoryStorage {
    fn load(&self, oid: Oid) -> BoxFuture<'_, Result<Loaded>> {
        future::ready(SyncStorage::load(self, oid)).boxed()
    }
    fn load_at(&self, oid: Oid, snapshot: Tid) -> BoxFuture<'_, Result<Loaded>> {
        future::ready(SyncStorage::load_at(self, oid, snapshot)).boxed()
    }
    fn load_many(&self, oids: Vec<Oid>, snapshot: Option<Tid>) -> BoxFuture<'_, Result<Vec<Option<Loaded>>>> {
        future::ready(SyncStorage::load_many(self, &oids, snapshot)).boxed()
    }
    fn new_oids(&self, n: u64) -> BoxFuture<'_, Result<Vec<Oid>>> {
        future::ready(SyncStorage::new_oids(self, n)).boxed()
    }
    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<Committed>> {
        future::ready(SyncStorage::commit(self, &req)).boxed()
    }
    fn changes_since(&self, since: Tid) -> BoxFuture<'_, Result<Changes>> {
        future::ready(SyncStorage::changes_since(self, since)).boxed()
    }
    fn last_tid(&self) -> BoxFuture<'_, Result<Tid>> {
        future::ready(SyncStorage::last_tid(self)).boxed()
    }
    fn catch_up(&self) -> BoxFuture<'_, Result<Option<Tid>>> {
        future::ready(Ok(None)).boxed()
    }
    fn transactions(&self, after: Tid) -> BoxFuture<'_, Result<Vec<TxInfo>>> {
        future::ready(SyncStorage::transactions(self, after)).boxed()
    }
    fn tid_at_time(&self, timestamp: u64) -> BoxFuture<'_, Result<Tid>> {
        future::ready(SyncStorage::tid_at_time(self, timestamp)).boxed()
    }
    fn scan(&self) -> BoxStream<'static, Result<Loaded>> {
        stream::iter(ScanIter::new(Arc::new(self.clone()))).boxed()
    }
    fn changes(&self) -> BoxStream<'static, Change> {
        self.feed.subscribe()
    }
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        future::ready(SyncStorage::close(self)).boxed()
    }
}
