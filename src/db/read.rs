//! Reading through the cache: a hit is served from it, a miss takes the oid's lock,
//! checks again, and loads the newest version into it; a snapshot older than the cached
//! version reads its own version from the storage.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::stream::{FuturesOrdered, StreamExt};

use super::cache::{AnyState, Entry, State};
use super::{Inner, OFFLOAD_AT};
use crate::error::{Error, Result};
use crate::object::{decode, Persistent};
use crate::record::{Loaded, Oid, OidMap, Tid};

/// A newest version fetched by `load_many`: the oid, its state, the tid that committed
/// it and its stored size.
type Fetched<T> = (Oid, Arc<T>, Tid, usize);

impl Inner {
    /// Loads `oid` as a `T` at `snapshot`: from the cache when its entry is visible at
    /// the snapshot, else from the storage (filling the cache with the newest version).
    pub(super) async fn load<T: Persistent>(&self, oid: Oid, snapshot: Tid) -> Result<(Arc<T>, Tid)> {
        if let Some(hit) = self.cached::<T>(oid, snapshot)? {
            return Ok(hit);
        }
        let newest = {
            let _g = self.locks.lock(oid).await;
            if let Some(hit) = self.cached::<T>(oid, snapshot)? {
                return Ok(hit);
            }
            self.storage_loads.fetch_add(1, Ordering::Relaxed);
            let Loaded { record, tid } = self.storage.load(oid).await?;
            let state = Arc::new(decode::<T>(oid, &record.data)?);
            self.cache.insert(
                oid,
                Entry {
                    tid,
                    state: State::Typed(state.clone(), T::TYPE_NAME),
                },
                record.data.len(),
            );
            (state, tid)
        };
        if newest.1 <= snapshot {
            return Ok(newest);
        }
        self.load_old(oid, snapshot).await
    }

    /// Loads many oids as `T`s at `snapshot`, fetching the cache misses with one storage
    /// call per chunk. Chunks are fetched a few at a time and decoded on the blocking
    /// pool, so reading the file and decoding overlap.
    pub(super) async fn load_many<T: Persistent>(&self, oids: &[Oid], snapshot: Tid) -> Result<Vec<Arc<T>>> {
        const CHUNK: usize = 1024;
        const IN_FLIGHT: usize = 3;
        let mut out: Vec<Option<Arc<T>>> = Vec::with_capacity(oids.len());
        let mut missing = Vec::new();
        // The newest versions fetched here: the cache may decline to keep some of them.
        let mut fetched: OidMap<(Arc<T>, Tid)> = OidMap::default();
        for &oid in oids {
            match self.cached::<T>(oid, snapshot)? {
                Some((t, _)) => out.push(Some(t)),
                None => {
                    out.push(None);
                    missing.push(oid);
                }
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            let _guards = self.locks.lock_many(missing.iter().copied()).await;
            // Double-check under the locks; fetch only what is still missing.
            let mut fetch = Vec::with_capacity(missing.len());
            for &oid in &missing {
                if !self.cache.contains(oid) {
                    fetch.push(oid);
                }
            }
            // A few chunks in flight at once, consumed in order. (A plain loop rather than
            // stream combinators with closures keeps this future provably `Send`.)
            let mut chunks = fetch.chunks(CHUNK);
            let mut pending = FuturesOrdered::new();
            for c in chunks.by_ref().take(IN_FLIGHT) {
                pending.push_back(self.fetch_decoded::<T>(c.to_vec()));
            }
            while let Some(done) = pending.next().await {
                for (oid, state, tid, size) in done? {
                    self.cache.insert(
                        oid,
                        Entry {
                            tid,
                            state: State::Typed(state.clone(), T::TYPE_NAME),
                        },
                        size,
                    );
                    fetched.insert(oid, (state, tid));
                }
                if let Some(c) = chunks.next() {
                    pending.push_back(self.fetch_decoded::<T>(c.to_vec()));
                }
            }
        }
        // Fill from what was fetched, else from the cache (an oid another task loaded
        // while this one waited for its lock); snapshots older than the newest version
        // read it from the storage.
        let mut result = Vec::with_capacity(out.len());
        for (i, o) in out.into_iter().enumerate() {
            let oid = oids[i];
            match o {
                Some(t) => result.push(t),
                None => match fetched.get(&oid) {
                    Some((t, tid)) if *tid <= snapshot => result.push(t.clone()),
                    Some(_) => result.push(self.load_old::<T>(oid, snapshot).await?.0),
                    None => match self.cached::<T>(oid, snapshot)? {
                        Some((t, _)) => result.push(t),
                        None => result.push(self.load_old::<T>(oid, snapshot).await?.0),
                    },
                },
            }
        }
        Ok(result)
    }

    /// Loads the newest versions of `chunk` and decodes them (on the blocking pool when
    /// there are many); each with its tid and stored size.
    async fn fetch_decoded<T: Persistent>(&self, chunk: Vec<Oid>) -> Result<Vec<Fetched<T>>> {
        self.storage_loads.fetch_add(1, Ordering::Relaxed);
        let loaded = self.storage.load_many(chunk.clone(), None).await?;
        let many = chunk.len() >= OFFLOAD_AT;
        let decode_all = move || -> Result<Vec<Fetched<T>>> {
            chunk
                .into_iter()
                .zip(loaded)
                .map(|(oid, l)| {
                    let Loaded { record, tid } = l.ok_or(Error::NotFound { oid })?;
                    let state = Arc::new(decode::<T>(oid, &record.data)?);
                    Ok((oid, state, tid, record.data.len()))
                })
                .collect()
        };
        if many {
            blocking::unblock(decode_all).await
        } else {
            decode_all()
        }
    }

    /// Reads a version older than the cached one straight from the storage.
    async fn load_old<T: Persistent>(&self, oid: Oid, snapshot: Tid) -> Result<(Arc<T>, Tid)> {
        self.storage_loads.fetch_add(1, Ordering::Relaxed);
        let Loaded { record, tid } = self.storage.load_at(oid, snapshot).await?;
        Ok((Arc::new(decode::<T>(oid, &record.data)?), tid))
    }

    /// The cached state of `oid` if it is visible at `snapshot`; `Ok(None)` on a miss or
    /// when the snapshot needs an older version.
    fn cached<T: Persistent>(&self, oid: Oid, snapshot: Tid) -> Result<Option<(Arc<T>, Tid)>> {
        let Some(e) = self.cache.get(oid) else {
            return Ok(None);
        };
        if e.tid > snapshot {
            return Ok(None);
        }
        match e.state {
            State::Typed(any, name) => match any.downcast::<T>() {
                Ok(t) => Ok(Some((t, e.tid))),
                Err(_) => Err(Error::WrongType {
                    oid,
                    expected: T::TYPE_NAME.into(),
                    found: name.into(),
                }),
            },
            State::Raw(data) => {
                let t = Arc::new(decode::<T>(oid, &data)?);
                let any: AnyState = t.clone();
                self.cache.upgrade(oid, e.tid, any, T::TYPE_NAME);
                Ok(Some((t, e.tid)))
            }
        }
    }
}
