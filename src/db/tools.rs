//! Whole-database tools: iterate all objects, census, and a cache-warming crawler.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::cache::{Entry, State};
use super::Db;
use crate::error::Result;
use crate::object::{peek_type_name, Persistent};
use crate::record::{Oid, Tid};

/// One stored object, as seen by [`Db::objects`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// Its oid.
    pub oid: Oid,
    /// The stored type name.
    pub type_name: String,
    /// The transaction that committed this version.
    pub tid: Tid,
    /// Size of the encoded state in bytes.
    pub size: usize,
    /// The oids it refers to.
    pub refs: Vec<Oid>,
}

impl<R: Persistent> Db<R> {
    /// Every object in the database (its newest version), in oid order.
    pub fn objects(&self) -> BoxStream<'static, Result<ObjectInfo>> {
        self.inner
            .storage
            .scan()
            .map(|r| {
                r.and_then(|l| {
                    Ok(ObjectInfo {
                        oid: l.record.oid,
                        type_name: peek_type_name(&l.record.data)?.to_string(),
                        tid: l.tid,
                        size: l.record.data.len(),
                        refs: l.record.refs,
                    })
                })
            })
            .boxed()
    }

    /// How many objects of each type name the database holds.
    ///
    /// # Errors
    ///
    /// The storage's errors while scanning; [`Error::Codec`](crate::Error::Codec) for a
    /// record whose type name cannot be read.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn census(&self) -> Result<BTreeMap<String, u64>> {
        self.objects()
            .try_fold(BTreeMap::new(), |mut m, o| async move {
                *m.entry(o.type_name).or_insert(0) += 1;
                Ok(m)
            })
            .await
    }

    /// Loads the objects reachable from `start` breadth-first, `batch` at a time with
    /// one storage call per batch, into the cache (at most `limit` of them, or as many as
    /// the cache holds), so that later reads hit the cache (Durus's `get_crawler`).
    /// Returns how many objects it visited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping it stops the crawl; what it put in the cache stays there,
    /// each entry whole, and the oid locks it held are released.
    pub async fn crawl(&self, start: Oid, batch: usize, limit: Option<usize>) -> Result<usize> {
        let inner = &self.inner;
        let limit = limit.unwrap_or(usize::MAX).min(inner.cache.capacity());
        let batch = batch.max(1);
        let mut seen: HashSet<Oid> = HashSet::from([start]);
        let mut queue: VecDeque<Oid> = VecDeque::from([start]);
        let mut visited = 0;
        while !queue.is_empty() && visited < limit {
            let n = batch.min(queue.len()).min(limit - visited);
            let oids: Vec<Oid> = queue.drain(..n).collect();
            // One storage call per batch. Hold the batch's locks so a commit publishing
            // one of them cannot be overwritten by the older version this may return.
            let guards = inner.locks.lock_many(oids.iter().copied()).await;
            inner
                .storage_loads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let loaded = inner.storage.load_many(oids, None).await?;
            for l in loaded.into_iter().flatten() {
                if !inner.cache.contains(l.record.oid) {
                    let size = l.record.data.len();
                    inner.cache.insert(
                        l.record.oid,
                        Entry {
                            tid: l.tid,
                            state: State::Raw(Arc::from(l.record.data)),
                        },
                        size,
                    );
                }
                for r in l.record.refs {
                    if seen.insert(r) {
                        queue.push_back(r);
                    }
                }
            }
            drop(guards);
            visited += n;
        }
        Ok(visited)
    }
}
