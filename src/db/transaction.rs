//! Transactions: a snapshot, a read set and a write set.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::cache::AnyState;
use super::{to_record, Db, RecordSizes};
use crate::error::{Error, Result};
use crate::journal::SnapshotPin;
use crate::object::{decode, Persistent, Ref};
use crate::record::{CommitRequest, Committed, Oid, Record, Tid};
use crate::storage::Encoder;

/// Every oid this transaction read, with the state it saw (None: it did not exist, or
/// the read failed). Later reads of the same oid are served from here: the snapshot
/// never changes, so neither does the answer.
type ReadSet =
    HashMap<Oid, Option<(AnyState, &'static str)>, std::hash::BuildHasherDefault<crate::record::OidHasher>>;

/// A state this transaction will write, with the state it started from (for merging
/// conflicts).
struct Write<T> {
    state: Arc<T>,
    /// The committed state this write was based on, when it was read first.
    base: Option<Arc<T>>,
}

/// The type-erased operations commit needs on a write.
trait AnyWrite: Send + Sync {
    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync);
    fn as_any(&self) -> &(dyn Any + Send + Sync);
    fn type_name(&self) -> &'static str;
    fn record(&self, oid: Oid) -> Result<Record>;
    fn state(&self) -> AnyState;
    /// A handle on the same states (cheap: they are shared), for encoding elsewhere.
    fn share(&self) -> Box<dyn AnyWrite>;
    /// Merges with `committed` (record data of the version committed since), if the
    /// type can and this write has a base; the merged write's new base is `committed`.
    fn resolve(&self, oid: Oid, committed: &[u8]) -> Result<Option<Box<dyn AnyWrite>>>;
}

impl<T: Persistent> AnyWrite for Write<T> {
    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
    fn type_name(&self) -> &'static str {
        T::TYPE_NAME
    }
    fn record(&self, oid: Oid) -> Result<Record> {
        to_record(oid, &*self.state)
    }
    fn state(&self) -> AnyState {
        self.state.clone()
    }
    fn share(&self) -> Box<dyn AnyWrite> {
        Box::new(Write {
            state: self.state.clone(),
            base: self.base.clone(),
        })
    }
    fn resolve(&self, oid: Oid, committed: &[u8]) -> Result<Option<Box<dyn AnyWrite>>> {
        let Some(base) = &self.base else { return Ok(None) };
        let committed = match decode::<T>(oid, committed) {
            Ok(c) => Arc::new(c),
            // Replaced by another type: nothing to merge.
            Err(Error::WrongType { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(T::resolve(&committed, base, &self.state).map(|merged| {
            Box::new(Write {
                state: Arc::new(merged),
                base: Some(committed),
            }) as Box<dyn AnyWrite>
        }))
    }
}

/// A transaction: reads see the snapshot it began on plus its own writes; `commit`
/// applies its writes all together or not at all. Dropping it aborts it.
///
/// Commits are serializable: a commit fails with [`Error::Conflict`] if anything the
/// transaction read or wrote was committed by someone else after its snapshot (unless
/// every such object merged the conflict, see [`Persistent::resolve`]). A transaction
/// that writes nothing never conflicts.
pub struct Transaction<R> {
    db: Db<R>,
    snapshot: Tid,
    /// Behind a lock so that `get` can take `&self` and reads can run concurrently.
    reads: Mutex<ReadSet>,
    writes: BTreeMap<Oid, Box<dyn AnyWrite>>,
    /// Keeps the versions of `snapshot` readable if a pack runs meanwhile.
    _pin: SnapshotPin,
}

impl<R> std::fmt::Debug for Transaction<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("snapshot", &self.snapshot)
            .field("reads", &crate::sync::lock(&self.reads).len())
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl<R: Persistent> Transaction<R> {
    pub(super) fn new(db: Db<R>, snapshot: Tid, pin: SnapshotPin) -> Transaction<R> {
        Transaction {
            db,
            snapshot,
            reads: Mutex::default(),
            writes: BTreeMap::new(),
            _pin: pin,
        }
    }

    /// The transaction id this transaction's snapshot was taken at.
    pub fn snapshot(&self) -> Tid {
        self.snapshot
    }

    /// Reads an object: this transaction's own write of it, or its committed state as
    /// of the snapshot. Cheap when cached: the state is shared, not copied.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no object with this oid existed at the snapshot;
    /// [`Error::WrongType`] if it is not a `T`; [`Error::Codec`] if its stored state no
    /// longer decodes as a `T` (a changed struct definition); the storage's errors
    /// ([`Error::Closed`], [`Error::Io`], [`Error::Corrupt`]) on a cache miss.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the transaction stays usable, and a later read of the same object
    /// loads it again. The object counts as read for the commit's conflict check.
    pub async fn get<T: Persistent>(&self, r: Ref<T>) -> Result<Arc<T>> {
        let oid = r.oid();
        if let Some(w) = self.writes.get(&oid) {
            return downcast_write::<T>(oid, &**w).map(|w| w.state.clone());
        }
        if let Some(seen) = self.read_cell().entry(oid).or_insert(None) {
            return downcast_state::<T>(oid, seen);
        }
        let t = self.db.inner.load::<T>(oid, self.snapshot).await?.0;
        let state: AnyState = t.clone();
        self.read_cell().insert(oid, Some((state, T::TYPE_NAME)));
        Ok(t)
    }

    /// Reads many objects of one type at once; every one that is not cached is fetched
    /// from the storage in one call (per 1,024), which makes walking a large graph level
    /// by level far cheaper than one `get` at a time.
    ///
    /// # Errors
    ///
    /// As [`get`](Transaction::get), for the first object that fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`get`](Transaction::get).
    pub async fn get_many<T: Persistent>(&self, refs: &[Ref<T>]) -> Result<Vec<Arc<T>>> {
        let mut out: Vec<Option<Arc<T>>> = Vec::with_capacity(refs.len());
        let mut need = Vec::new();
        {
            let mut reads = self.read_cell();
            for r in refs {
                let oid = r.oid();
                if let Some(w) = self.writes.get(&oid) {
                    out.push(Some(downcast_write::<T>(oid, &**w)?.state.clone()));
                } else if let Some(seen) = reads.entry(oid).or_insert(None) {
                    out.push(Some(downcast_state::<T>(oid, seen)?));
                } else {
                    out.push(None);
                    need.push(oid);
                }
            }
        }
        let loaded = self.db.inner.load_many::<T>(&need, self.snapshot).await?;
        {
            let mut reads = self.read_cell();
            for (oid, t) in need.iter().zip(&loaded) {
                let state: AnyState = t.clone();
                reads.insert(*oid, Some((state, T::TYPE_NAME)));
            }
        }
        let mut loaded = loaded.into_iter();
        out.into_iter()
            .zip(refs)
            .map(|(o, r)| match o {
                Some(t) => Ok(t),
                // `load_many` returns one state per oid asked for, in order.
                None => loaded.next().ok_or(Error::NotFound { oid: r.oid() }),
            })
            .collect()
    }

    fn read_cell(&self) -> MutexGuard<'_, ReadSet> {
        // Inserting into a set cannot leave it half-changed, so a poisoned lock is sound.
        crate::sync::lock(&self.reads)
    }

    /// The root object.
    ///
    /// # Errors
    ///
    /// As [`get`](Transaction::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`get`](Transaction::get).
    pub async fn root(&self) -> Result<Arc<R>> {
        self.get(Ref::<R>::root()).await
    }

    /// The root object, to change.
    ///
    /// # Errors
    ///
    /// As [`get_mut`](Transaction::get_mut).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`get_mut`](Transaction::get_mut).
    pub async fn root_mut(&mut self) -> Result<&mut R> {
        self.get_mut(Ref::<R>::root()).await
    }

    /// An object to change. The first call copies the state into this transaction
    /// (copy-on-write); the change is written at commit, so it cannot be forgotten.
    ///
    /// ```
    /// use durus::{Db, DbBuilder, Persistent, Ref};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Default, Serialize, Deserialize, Persistent)]
    /// struct Shop {
    ///     items: Vec<Ref<Item>>,
    /// }
    ///
    /// #[derive(Clone, Serialize, Deserialize, Persistent)]
    /// struct Item {
    ///     stock: u32,
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let db: Db<Shop> = DbBuilder::memory().open().await?;
    /// let mut tx = db.begin().await?;
    /// let item = tx.insert(Item { stock: 3 }).await?;
    /// tx.root_mut().await?.items.push(item);
    /// tx.commit().await?;
    ///
    /// let mut tx = db.begin().await?;
    /// tx.get_mut(item).await?.stock -= 1; // no `put` needed: the change is kept
    /// tx.commit().await?;
    /// assert_eq!(db.begin().await?.get(item).await?.stock, 2);
    /// # Ok::<(), durus::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Transaction::get) on first use; [`Error::WrongType`] if this
    /// transaction already wrote the object as another type.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if it is dropped before it returns, the object is not in the write
    /// set and the transaction stays usable.
    pub async fn get_mut<T: Persistent>(&mut self, r: Ref<T>) -> Result<&mut T> {
        let oid = r.oid();
        if !self.writes.contains_key(&oid) {
            let base = self.get(r).await?;
            self.writes.insert(
                oid,
                Box::new(Write {
                    state: base.clone(),
                    base: Some(base),
                }),
            );
        }
        let w = self.writes.get_mut(&oid).ok_or(Error::NotFound { oid })?;
        let found = w.type_name();
        let w = w
            .as_any_mut()
            .downcast_mut::<Write<T>>()
            .ok_or_else(|| Error::WrongType {
                oid,
                expected: T::TYPE_NAME.into(),
                found: found.into(),
            })?;
        Ok(Arc::make_mut(&mut w.state))
    }

    /// Changes an object with `f`; shorthand for [`get_mut`](Self::get_mut).
    ///
    /// # Errors
    ///
    /// As [`get_mut`](Transaction::get_mut).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `f` runs only once the object is loaded, after the last await.
    pub async fn update<T: Persistent, U>(&mut self, r: Ref<T>, f: impl FnOnce(&mut T) -> U) -> Result<U> {
        Ok(f(self.get_mut(r).await?))
    }

    /// Replaces an object's state without reading it first.
    pub fn put<T: Persistent>(&mut self, r: Ref<T>, value: T) {
        self.writes.insert(
            r.oid(),
            Box::new(Write {
                state: Arc::new(value),
                base: None,
            }),
        );
    }

    /// Adds a new object, returning its reference at once. It is stored at commit.
    ///
    /// The reference can be stored in other objects of the same transaction right
    /// away; it names an oid that no other object has ever had or will have.
    ///
    /// ```
    /// use durus::{Db, DbBuilder, Persistent, Ref};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Default, Serialize, Deserialize, Persistent)]
    /// struct Family {
    ///     eldest: Option<Ref<Person>>,
    /// }
    ///
    /// #[derive(Clone, Serialize, Deserialize, Persistent)]
    /// struct Person {
    ///     name: String,
    ///     parent: Option<Ref<Person>>,
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let db: Db<Family> = DbBuilder::memory().open().await?;
    /// let mut tx = db.begin().await?;
    /// let ann = tx.insert(Person { name: "Ann".into(), parent: None }).await?;
    /// let bo = tx.insert(Person { name: "Bo".into(), parent: Some(ann) }).await?;
    /// tx.root_mut().await?.eldest = Some(ann);
    /// tx.commit().await?;
    ///
    /// let tx = db.begin().await?;
    /// let parent = tx.get(bo).await?.parent.expect("Bo has a parent");
    /// assert_eq!(tx.get(parent).await?.name, "Ann");
    /// # Ok::<(), durus::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The storage's errors when it hands out oids ([`Error::Closed`],
    /// [`Error::ReadOnly`], [`Error::Io`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if it is dropped, the object is not added. An oid the storage
    /// handed out for it may go unused; oids are never reused, so that costs nothing.
    pub async fn insert<T: Persistent>(&mut self, value: T) -> Result<Ref<T>> {
        let oid = self.db.inner.new_oid().await?;
        self.put(Ref::from_oid(oid), value);
        Ok(Ref::from_oid(oid))
    }

    /// How many objects this transaction will write.
    pub fn write_count(&self) -> usize {
        self.writes.len()
    }

    /// Commits: validates against everything committed since the snapshot, merges what
    /// conflict resolution can merge, and writes. When it returns `Ok` the transaction is
    /// durable (under the storage's durability mode) and visible to new transactions.
    /// A transaction that wrote nothing commits at once, without touching the storage:
    /// it returns its snapshot's tid and a timestamp of 0.
    ///
    /// # Errors
    ///
    /// - [`Error::Conflict`] (naming the oids) if an object it read or wrote was
    ///   committed by someone else after its snapshot and could not be merged: nothing
    ///   was written; run it again on a new snapshot ([`Db::transact`] does that).
    /// - [`Error::Io`] if writing or syncing this commit failed, [`Error::Poisoned`]
    ///   for every commit after such a failure: the commit may or may not be on disk,
    ///   and the storage takes no more writes; reopen the database.
    /// - [`Error::Closed`], [`Error::ReadOnly`]; [`Error::Codec`] if a state cannot be
    ///   encoded; [`Error::TooLarge`] for a state over the format's limits.
    ///
    /// # Cancel safety
    ///
    /// If the returned future is dropped after the storage began writing, the commit
    /// may still land; it is then visible to later transactions as usual.
    pub async fn commit(mut self) -> Result<Committed> {
        if self.writes.is_empty() {
            return Ok(Committed {
                tid: self.snapshot,
                timestamp: 0,
            });
        }
        let mut rebased: Vec<(Oid, Tid)> = Vec::new();
        let reads: Vec<Oid> = std::mem::take(&mut *self.read_cell()).into_keys().collect();
        // Hold the written oids' locks through every attempt: merges then see the final
        // committed state, and no other task of this Db can slip in between.
        let inner = self.db.inner.clone();
        let _guards = inner.locks.lock_many(self.writes.keys().copied()).await;
        // Each merge round follows a commit by another writer that is not this Db, so a
        // handful of rounds settles all but pathological contention.
        const MAX_MERGES: usize = 16;
        let mut last_conflict = Vec::new();
        for _ in 0..MAX_MERGES {
            let (records, encoder, sizes) = self.encode_writes().await?;
            let states = self
                .writes
                .iter()
                .map(|(&oid, w)| (oid, w.state(), w.type_name()))
                .collect();
            let req = CommitRequest {
                snapshot: self.snapshot,
                records,
                reads: reads.clone(),
                rebased: rebased.clone(),
            };
            match inner.commit_locked(req, encoder, states, sizes).await {
                Err(Error::Conflict { oids }) => {
                    if !self.merge(&oids, &mut rebased).await? {
                        return Err(Error::Conflict { oids });
                    }
                    last_conflict = oids;
                }
                other => return other,
            }
        }
        // Others kept committing these objects faster than the merges settled: a
        // conflict like any other, for the caller (or `Db::transact`) to retry.
        Err(Error::Conflict { oids: last_conflict })
    }

    /// Encodes every write into a record, never on the caller's task: a few writes are
    /// handed to the storage as an [`Encoder`] (run by its commit writer, which needs no
    /// extra thread hop); many are encoded here in parallel chunks on the blocking pool.
    /// The sizes of the records, in write order, are set once they are encoded (for
    /// the cache's byte budget).
    async fn encode_writes(&self) -> Result<(Vec<Record>, Option<Encoder>, RecordSizes)> {
        let shared: Vec<(Oid, Box<dyn AnyWrite>)> =
            self.writes.iter().map(|(&oid, w)| (oid, w.share())).collect();
        let sizes = RecordSizes::default();
        if self.writes.len() < super::OFFLOAD_AT {
            let noted = sizes.clone();
            let encode: Encoder = Box::new(move || {
                let records: Vec<Record> = shared
                    .iter()
                    .map(|(oid, w)| w.record(*oid))
                    .collect::<Result<_>>()?;
                let _ = noted.set(records.iter().map(|r| r.data.len()).collect());
                Ok(records)
            });
            return Ok((Vec::new(), Some(encode), sizes));
        }
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let per = self.writes.len().div_ceil(workers).max(super::OFFLOAD_AT);
        let mut jobs = Vec::new();
        let mut rest = shared.into_iter();
        loop {
            let chunk: Vec<_> = rest.by_ref().take(per).collect();
            if chunk.is_empty() {
                break;
            }
            jobs.push(blocking::unblock(move || {
                chunk
                    .iter()
                    .map(|(oid, w)| w.record(*oid))
                    .collect::<Result<Vec<Record>>>()
            }));
        }
        let parts = futures::future::try_join_all(jobs).await?;
        let records: Vec<Record> = parts.into_iter().flatten().collect();
        let _ = sizes.set(records.iter().map(|r| r.data.len()).collect());
        Ok((records, None, sizes))
    }

    /// Tries to merge every conflicting oid; false if any cannot be merged.
    async fn merge(&mut self, oids: &[Oid], rebased: &mut Vec<(Oid, Tid)>) -> Result<bool> {
        let mut merged = Vec::with_capacity(oids.len());
        for &oid in oids {
            let Some(w) = self.writes.get(&oid) else {
                return Ok(false);
            };
            let committed = match self.db.inner.storage.load(oid).await {
                Ok(l) => l,
                Err(Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e),
            };
            match w.resolve(oid, &committed.record.data)? {
                Some(m) => merged.push((oid, m, committed.tid)),
                None => return Ok(false),
            }
        }
        for (oid, m, tid) in merged {
            self.writes.insert(oid, m);
            rebased.retain(|(o, _)| *o != oid);
            rebased.push((oid, tid));
            self.db
                .inner
                .resolved
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(true)
    }

    /// Abandons the transaction (as dropping it does).
    pub fn abort(self) {}
}

fn downcast_state<T: Persistent>(oid: Oid, seen: &(AnyState, &'static str)) -> Result<Arc<T>> {
    seen.0.clone().downcast::<T>().map_err(|_| Error::WrongType {
        oid,
        expected: T::TYPE_NAME.into(),
        found: seen.1.into(),
    })
}

fn downcast_write<T: Persistent>(oid: Oid, w: &dyn AnyWrite) -> Result<&Write<T>> {
    w.as_any()
        .downcast_ref::<Write<T>>()
        .ok_or_else(|| Error::WrongType {
            oid,
            expected: T::TYPE_NAME.into(),
            found: w.type_name().into(),
        })
}

impl<R: Persistent> crate::object::Objects for Transaction<R> {
    fn get<T: Persistent>(&self, r: Ref<T>) -> impl std::future::Future<Output = Result<Arc<T>>> + Send {
        Transaction::get(self, r)
    }
    fn get_mut<T: Persistent>(
        &mut self,
        r: Ref<T>,
    ) -> impl std::future::Future<Output = Result<&mut T>> + Send {
        Transaction::get_mut(self, r)
    }
    fn insert<T: Persistent>(
        &mut self,
        value: T,
    ) -> impl std::future::Future<Output = Result<Ref<T>>> + Send {
        Transaction::insert(self, value)
    }
}
