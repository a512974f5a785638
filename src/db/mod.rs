//! `Db`: a storage, a shared cache of decoded committed states, and transactions.
//!
//! [`DbBuilder`] (in `builder.rs`) opens a `Db`; [`Transaction`] (in `transaction.rs`)
//! reads and writes; the cache and the per-oid locks are `cache.rs` and `locks.rs`, and
//! reading through them is `read.rs`.
//! `docs/DESIGN.md` in the repository follows a commit from `Transaction::commit` to the
//! disk and back into the cache.
//!
//! # How the cache stays right
//!
//! (Which objects the cache keeps, by CLOCK and frequency within an object count and
//! a byte budget, is `cache`'s business and never changes what a reader sees.)
//!
//! Every cache entry is the newest committed version of its oid known to this `Db`,
//! tagged with the tid that committed it. Loading an oid into the cache and publishing
//! a commit's new states both hold that oid's async lock (`locks`), and a load checks
//! the cache again once it has the lock, so N tasks missing the same oid cause one
//! storage load and a load can never put an older version over a newer one.
//!
//! New transactions take their snapshot from `cache_tid`, which only advances once
//! every commit up to it has been published into the cache. A transaction whose
//! snapshot is older than an entry reads the older version from the storage instead, so
//! nobody ever sees a state newer than their snapshot. When the cache may have missed a
//! commit (a commit future was dropped while the storage was writing, or the storage
//! reported a conflict), the next transaction first catches up with
//! [`Storage::transactions`] and evicts what changed. On a storage other processes
//! write to (a journal in shared mode), every new transaction first asks the storage
//! to catch up ([`Storage::catch_up`]) and does the same with what others committed.

mod builder;
mod cache;
mod locks;
mod read;
mod sketch;
mod tools;
mod transaction;

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use self::cache::{AnyState, Cache, Entry, State};
use self::locks::LockMap;
use crate::error::{Error, Result};
use crate::journal::JournalOptions;
use crate::object::{encode, Persistent, Ref};
use crate::record::{CommitRequest, Oid, Record, Tid};
use crate::storage::Storage;

pub use builder::DbBuilder;
pub use tools::ObjectInfo;
pub use transaction::Transaction;

/// Batches of at least this many states are encoded or decoded on the blocking pool;
/// smaller ones cost less than the hand-off and stay on the caller's task.
const OFFLOAD_AT: usize = 64;

/// Settings of a [`Db`], for [`DbBuilder::options`]. Usually the builder's own setters
/// are simpler; start from `DbOptions::default()` to set fields directly (the struct is
/// `#[non_exhaustive]`, so settings can be added without breaking anyone).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DbOptions {
    /// About how many decoded objects the shared cache keeps (Durus's `cache_size`).
    pub cache_size: usize,
    /// About how many bytes the shared cache keeps, counting each object's stored size
    /// plus about 128 bytes (ZODB's `cache_size_bytes`); whichever of the two bounds is
    /// reached first applies. An object larger than its cache shard's share of the
    /// budget (1/64 of it in a cache of over 16,384 objects) is not kept.
    pub cache_bytes: usize,
    /// Attempts [`Db::transact`] makes before it returns the last conflict.
    pub max_attempts: u32,
    /// Backoff before the second attempt of [`Db::transact`]; it doubles each time, with
    /// jitter, up to `max_backoff`.
    pub backoff: Duration,
    /// The longest backoff between attempts.
    pub max_backoff: Duration,
    /// How the journal file is opened, when the database is in one ([`Db::open`],
    /// [`Db::builder`]); other storages are opened by their own options.
    pub journal: JournalOptions,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            cache_size: 100_000,
            cache_bytes: 256 << 20,
            max_attempts: 20,
            backoff: Duration::from_micros(200),
            max_backoff: Duration::from_millis(50),
            journal: JournalOptions::default(),
        }
    }
}

/// Counters of a [`Db`]'s work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DbStats {
    /// Calls that loaded from the storage (cache misses, batches of misses, and reads
    /// of versions older than the cached one).
    pub storage_loads: u64,
    /// Cache lookups that found no entry. (Hits are not counted: a shared counter on
    /// the hit path would make readers on different threads contend.)
    pub cache_misses: u64,
    /// Objects in the cache now.
    pub cached: usize,
    /// Bytes the cached objects count against [`DbOptions::cache_bytes`].
    pub cached_bytes: usize,
    /// Oid locks currently held or waited for.
    pub oid_locks: usize,
    /// Conflicts merged by [`Persistent::resolve`].
    pub resolved_conflicts: u64,
}

pub(crate) struct Inner {
    storage: Arc<dyn Storage>,
    cache: Cache,
    locks: LockMap,
    /// Snapshot for new transactions: every commit up to here is in the cache.
    cache_tid: AtomicU64,
    /// Published tids above `cache_tid`, waiting for the ones before them.
    published: Mutex<BTreeSet<u64>>,
    needs_resync: AtomicBool,
    resync_lock: async_lock::Mutex<()>,
    /// Oids ready to hand out, and the size of the last refill.
    oid_pool: async_lock::Mutex<(Vec<Oid>, u64)>,
    options: DbOptions,
    storage_loads: AtomicU64,
    resolved: AtomicU64,
}

/// A database: a [`Storage`] with a shared cache, whose root object is an `R`.
///
/// `Db` is cheap to clone and `Send + Sync`: give each task a clone, and run as many
/// transactions at once as you like.
pub struct Db<R> {
    inner: Arc<Inner>,
    _root: PhantomData<fn() -> R>,
}

impl<R> Clone for Db<R> {
    fn clone(&self) -> Self {
        Db {
            inner: self.inner.clone(),
            _root: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for Db<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Db")
            .field("root", &std::any::type_name::<R>())
            .field("snapshot", &Tid(inner.cache_tid.load(Ordering::Acquire)))
            .field("cached", &inner.cache.len())
            .field("cache_size", &inner.options.cache_size)
            .field("needs_resync", &inner.needs_resync.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl<R: Persistent + Default> Db<R> {
    /// Opens or creates the journal file at `path` (the embedded default) with default
    /// options, creating the root as `R::default()` if the file is new. The same as
    /// `Db::builder(path).open()`; [`Db::builder`] sets options, and [`DbBuilder`] opens
    /// databases in memory or on another storage.
    ///
    /// # Errors
    ///
    /// As [`DbBuilder::open`]: [`Error::Locked`] while another process writes the file,
    /// [`Error::Format`], [`Error::Version`] or [`Error::Corrupt`] for a file this build
    /// cannot read, [`Error::WrongType`] if the stored root is not an `R`.
    ///
    /// # Cancel safety
    ///
    /// As [`DbBuilder::open`]: dropping the future leaves the file consistent.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Db<R>> {
        Db::builder(path).open().await
    }

    /// A database on `storage`: the one constructor every way of opening ends in.
    async fn start(storage: Arc<dyn Storage>, options: DbOptions) -> Result<Db<R>> {
        let last = storage.last_tid().await?;
        let db = Db {
            inner: Arc::new(Inner {
                cache: Cache::new(options.cache_size, options.cache_bytes),
                storage,
                locks: LockMap::default(),
                cache_tid: AtomicU64::new(last.0),
                published: Mutex::new(BTreeSet::new()),
                needs_resync: AtomicBool::new(false),
                resync_lock: async_lock::Mutex::new(()),
                oid_pool: async_lock::Mutex::new((Vec::new(), 0)),
                options,
                storage_loads: AtomicU64::new(0),
                resolved: AtomicU64::new(0),
            }),
            _root: PhantomData,
        };
        db.ensure_root().await?;
        Ok(db)
    }

    /// Checks the root's type, creating it if the database is empty.
    async fn ensure_root(&self) -> Result<()> {
        for _ in 0..3 {
            let tx = self.begin().await?;
            match tx.get(Ref::<R>::root()).await {
                Ok(_) => return Ok(()),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            let mut tx = tx;
            tx.put(Ref::root(), R::default());
            match tx.commit().await {
                Ok(_) => return Ok(()),
                // Someone else created it first: check theirs.
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Internal(
            "the root object could neither be read nor created in three attempts".into(),
        ))
    }
}

impl<R: Persistent> Db<R> {
    /// Starts a transaction on a snapshot of everything committed so far (in shared
    /// mode, also by other processes: it catches up with them first).
    ///
    /// The transaction reads that snapshot plus its own writes, however long it lives and
    /// whatever others commit meanwhile; [`commit`](Transaction::commit) applies its
    /// writes, and dropping it abandons them.
    ///
    /// ```
    /// use durus::{Db, DbBuilder, Persistent};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Default, Serialize, Deserialize, Persistent)]
    /// struct Visits {
    ///     count: u64,
    /// }
    ///
    /// # futures::executor::block_on(async {
    /// let db: Db<Visits> = DbBuilder::memory().open().await?;
    /// let reader = db.begin().await?; // a snapshot before the change below
    ///
    /// let mut tx = db.begin().await?;
    /// tx.root_mut().await?.count += 1;
    /// tx.commit().await?;
    ///
    /// assert_eq!(reader.root().await?.count, 0); // its snapshot does not move
    /// assert_eq!(db.begin().await?.root().await?.count, 1);
    /// # Ok::<(), durus::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the database is closed; in shared mode, the errors of
    /// reading what other processes appended ([`Error::Io`], [`Error::Corrupt`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads. If it is dropped while catching up with the storage,
    /// the next `begin` does the catch-up again.
    pub async fn begin(&self) -> Result<Transaction<R>> {
        if let Some(last) = self.inner.storage.catch_up().await? {
            if last.0 > self.inner.cache_tid.load(Ordering::Acquire) {
                self.inner.needs_resync.store(true, Ordering::Release);
            }
        }
        if self.inner.needs_resync.load(Ordering::Acquire) {
            self.inner.resync().await?;
        }
        let snapshot = Tid(self.inner.cache_tid.load(Ordering::Acquire));
        match self.inner.storage.pin(snapshot) {
            Ok(pin) => Ok(Transaction::new(self.clone(), snapshot, pin)),
            // A pack moved past what this Db has caught up with (commits made around
            // it, not through this Db): catch up to the storage's present and pin that.
            Err(Error::HistoryGone { .. }) => {
                self.inner.needs_resync.store(true, Ordering::Release);
                self.inner.resync().await?;
                let snapshot = Tid(self.inner.cache_tid.load(Ordering::Acquire));
                let pin = self.inner.storage.pin(snapshot)?;
                Ok(Transaction::new(self.clone(), snapshot, pin))
            }
            Err(e) => Err(e),
        }
    }

    /// Starts a transaction on the database as it was right after transaction `tid`
    /// (the journal keeps every version). Reads see that past state; a commit succeeds
    /// only if nothing it read or writes has changed since, as for any transaction.
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotAhead`] if `tid` is after the last committed transaction;
    /// [`Error::HistoryGone`] if `tid` is before the point a pack kept history from;
    /// the errors of [`begin`](Db::begin).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`begin`](Db::begin).
    pub async fn begin_at(&self, tid: Tid) -> Result<Transaction<R>> {
        let now = self.begin().await?;
        if tid > now.snapshot() {
            return Err(Error::snapshot_ahead(tid, now.snapshot()));
        }
        let pin = self.inner.storage.pin(tid)?;
        Ok(Transaction::new(self.clone(), tid, pin))
    }

    /// Starts a transaction on the database as it was at `timestamp` (microseconds since
    /// the Unix epoch, as in [`Committed::timestamp`](crate::record::Committed)): the
    /// snapshot of the last transaction committed at or before then ([`Tid::ZERO`], the
    /// empty database, if none was).
    ///
    /// # Errors
    ///
    /// The errors of [`begin`](Db::begin), and of reading the storage's history.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`begin`](Db::begin).
    pub async fn begin_at_time(&self, timestamp: u64) -> Result<Transaction<R>> {
        let tid = self.inner.storage.tid_at_time(timestamp).await?;
        self.begin_at(tid).await
    }

    /// Runs `f` in a transaction and commits it; on a conflict, backs off and runs it
    /// again on a fresh snapshot, up to [`DbOptions::max_attempts`] times. Other errors
    /// are returned at once. `f` may run more than once, so it should have no effects
    /// outside the transaction.
    ///
    /// `f` returns a boxed future so that the whole call is `Send` and can run in a
    /// spawned task on any runtime:
    ///
    /// ```
    /// # use durus::{Counter, Db, Ref};
    /// # futures::executor::block_on(async {
    /// # let db: Db<Counter> = durus::DbBuilder::memory().open().await?;
    /// let hits = db
    ///     .transact(|tx| {
    ///         Box::pin(async move {
    ///             let c = tx.root_mut().await?;
    ///             c.increment();
    ///             Ok(c.get())
    ///         })
    ///     })
    ///     .await?;
    /// assert_eq!(hits, 1);
    /// # Ok::<(), durus::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// Backoff sleeps run on a thread of the `blocking` pool rather than any runtime's
    /// timer, so this works under every executor.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] if the last of [`DbOptions::max_attempts`] attempts still
    /// conflicted; any other error of `f` or of [`commit`](Transaction::commit) at once.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the attempt under way. If it was committing, that
    /// commit may still land, as for [`Transaction::commit`]; so a dropped `transact`
    /// has run `f`'s changes at most once, and possibly once.
    pub async fn transact<T, F>(&self, mut f: F) -> Result<T>
    where
        F: for<'t> FnMut(&'t mut Transaction<R>) -> BoxFuture<'t, Result<T>>,
    {
        let mut backoff = self.inner.options.backoff;
        let mut attempt = 1;
        loop {
            let mut tx = self.begin().await?;
            let r = match f(&mut tx).await {
                Ok(v) => tx.commit().await.map(|_| v),
                Err(e) => Err(e),
            };
            match r {
                Err(e) if e.is_conflict() && attempt < self.inner.options.max_attempts => {
                    attempt += 1;
                    sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(self.inner.options.max_backoff);
                }
                other => return other,
            }
        }
    }

    /// The change feed: every transaction committed from now on (see
    /// [`Storage::changes`]), with its tid, timestamp and the oids it wrote; in shared
    /// mode also those of other processes, as each `begin` catches up with them.
    ///
    /// ```
    /// use durus::{Change, Counter, Db, DbBuilder, Ref};
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let db: Db<Counter> = DbBuilder::memory().open().await?;
    /// let mut feed = db.changes();
    /// let mut tx = db.begin().await?;
    /// tx.root_mut().await?.increment();
    /// let done = tx.commit().await?;
    ///
    /// match feed.next().await {
    ///     Some(Change::Committed { tid, oids, .. }) => {
    ///         assert_eq!(tid, done.tid);
    ///         assert_eq!(oids, [Ref::<Counter>::root().oid()]);
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), durus::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn changes(&self) -> futures::stream::BoxStream<'static, crate::storage::Change> {
        self.inner.storage.changes()
    }

    /// Packs the storage: drops old versions and objects no longer reachable from the
    /// root, while this and other tasks go on reading and committing (see
    /// [`Storage::pack`]). Transactions begun before it keep reading exactly what they
    /// read before; [`PackOptions::keep`](crate::journal::PackOptions) keeps a window
    /// of history for [`begin_at`](Db::begin_at) and
    /// [`begin_at_time`](Db::begin_at_time).
    ///
    /// ```
    /// use durus::journal::PackOptions;
    /// use durus::{Counter, Db, Ref};
    ///
    /// # fn main() -> durus::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("counter.durus");
    /// futures::executor::block_on(async {
    ///     let db: Db<Counter> = Db::open(&path).await?;
    ///     for _ in 0..100 {
    ///         db.transact(|tx| Box::pin(async move {
    ///             tx.root_mut().await?.increment();
    ///             Ok(())
    ///         }))
    ///         .await?;
    ///     }
    ///     let report = db.pack(PackOptions::default()).await?;
    ///     assert_eq!(report.objects, 1); // the counter's newest version
    ///     assert!(report.freed() > 0);
    ///     assert_eq!(db.begin().await?.root().await?.get(), 100);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Storage::pack`]: [`Error::Unsupported`] for a storage that cannot pack (in
    /// memory, over the network), [`Error::Locked`] while another process sharing the
    /// file packs it, [`Error::DanglingRefs`] if reachable objects refer to oids
    /// that have no record.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the pack at its next step and leaves the storage as it
    /// was; nothing committed is ever lost.
    pub async fn pack(&self, opts: crate::journal::PackOptions) -> Result<crate::journal::PackReport> {
        self.inner.storage.pack(opts).await
    }

    /// The storage underneath.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// Counters of this database's work.
    pub fn stats(&self) -> DbStats {
        DbStats {
            storage_loads: self.inner.storage_loads.load(Ordering::Relaxed),
            cache_misses: self.inner.cache.misses(),
            cached: self.inner.cache.len(),
            cached_bytes: self.inner.cache.bytes(),
            oid_locks: self.inner.locks.len(),
            resolved_conflicts: self.inner.resolved.load(Ordering::Relaxed),
        }
    }

    /// Closes the storage. Commits already under way finish first (they land or fail,
    /// and their callers hear which); commits started after this fail with
    /// [`Error::Closed`], as do transactions still open when they next touch the
    /// storage. Returns an error if the storage cannot close cleanly, including when an
    /// earlier write or sync failed ([`Error::Poisoned`]): then some of this session's
    /// commits may not be on disk, though every acknowledged one is.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] after a failed write or sync earlier in this session;
    /// [`Error::Io`] if writing the journal's last checkpoint or trimming its
    /// preallocated space fails now. Closing again is not an error.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the storage refuses new commits even if the future is then dropped;
    /// commits already queued still land or fail on the storage's writer job. Whether the
    /// storage itself finished closing (its last checkpoint written) is then unknown; its
    /// file is released when the last handle is dropped. Await it to hear about a
    /// poisoned session.
    pub async fn close(&self) -> Result<()> {
        self.inner.storage.close().await
    }
}

/// Sleeps without any runtime's timer: a thread from the blocking pool sleeps instead.
async fn sleep(d: Duration) {
    blocking::unblock(move || std::thread::sleep(d)).await
}

/// `d` scaled by a pseudo-random factor in [0.5, 1.5), so retrying tasks spread out.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64())
}

impl Inner {
    /// A fresh oid, from a pool refilled from the storage in batches that double (up to
    /// 4,096) while the pool keeps running dry, so bulk inserts rarely wait on it.
    async fn new_oid(&self) -> Result<Oid> {
        let mut pool = self.oid_pool.lock().await;
        if pool.0.is_empty() {
            let batch = (pool.1 * 2).clamp(32, 4096);
            let mut fresh = self.storage.new_oids(batch).await?;
            fresh.reverse();
            *pool = (fresh, batch);
        }
        pool.0
            .pop()
            .ok_or_else(|| Error::Internal("the storage handed out no oids".into()))
    }

    /// Records that `tid`'s states are in the cache, advancing the snapshot for new
    /// transactions over every tid published without gaps.
    fn mark_published(&self, tid: Tid) {
        let mut p = crate::sync::lock(&self.published);
        p.insert(tid.0);
        let mut at = self.cache_tid.load(Ordering::Acquire);
        while p.remove(&(at + 1)) {
            at += 1;
        }
        p.retain(|&t| t > at);
        self.cache_tid.store(at, Ordering::Release);
    }

    /// Catches the cache up with the storage: evicts every oid changed since
    /// `cache_tid` and moves `cache_tid` to the storage's last transaction.
    async fn resync(&self) -> Result<()> {
        let _one = self.resync_lock.lock().await;
        if !self.needs_resync.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        // Until this catch-up is done, the next transaction must do it again: when the
        // storage fails it, and when this future is dropped at one of its awaits.
        let mut armed = ResyncOnDrop(Some(&self.needs_resync));
        let from = Tid(self.cache_tid.load(Ordering::Acquire));
        let txs = match self.storage.transactions(from).await {
            Ok(txs) => txs,
            // A pack dropped the list of what changed since `from`: nothing cached can
            // be trusted to be the newest, so start over from the storage's present.
            Err(Error::HistoryGone { .. }) => {
                let last = self.storage.last_tid().await?;
                self.cache.clear();
                let mut p = crate::sync::lock(&self.published);
                let at = self.cache_tid.load(Ordering::Acquire).max(last.0);
                p.retain(|&t| t > at);
                self.cache_tid.store(at, Ordering::Release);
                armed.0 = None;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let reached = txs.last().map_or(from, |tx| tx.tid).max(from);
        // Each oid once, with the newest transaction that wrote it.
        let mut newest: std::collections::BTreeMap<Oid, Tid> = std::collections::BTreeMap::new();
        for tx in txs {
            for oid in tx.oids {
                newest.insert(oid, tx.tid);
            }
        }
        for (oid, tid) in newest {
            // Taking the lock waits for a commit of this oid that is still publishing;
            // an entry this Db published at `tid` or later stays.
            let _g = self.locks.lock(oid).await;
            self.cache.remove_older(oid, tid);
        }
        let mut p = crate::sync::lock(&self.published);
        let at = self.cache_tid.load(Ordering::Acquire).max(reached.0);
        p.retain(|&t| t > at);
        let mut at = at;
        while p.remove(&(at + 1)) {
            at += 1;
        }
        self.cache_tid.store(at, Ordering::Release);
        armed.0 = None;
        Ok(())
    }

    /// Commits records through the storage and publishes them into the cache. The
    /// caller holds the locks of every written oid (see `locks`), so nobody can load an
    /// older version of them over the published one.
    async fn commit_locked(
        &self,
        req: CommitRequest,
        encode: Option<crate::storage::Encoder>,
        states: Vec<(Oid, AnyState, &'static str)>,
        sizes: RecordSizes,
    ) -> Result<crate::record::Committed> {
        // If this future is dropped while the storage commits, the commit may still land
        // without being published here; make the next transaction catch up.
        let mut armed = ResyncOnDrop(Some(&self.needs_resync));
        let r = match encode {
            Some(encode) => self.storage.commit_encoded(req, encode).await,
            None => self.storage.commit(req).await,
        };
        armed.0 = None;
        match r {
            Ok(c) => {
                let sizes = sizes.get().map_or(&[][..], |v| &v[..]);
                for (i, (oid, state, name)) in states.into_iter().enumerate() {
                    self.cache.insert(
                        oid,
                        Entry {
                            tid: c.tid,
                            state: State::Typed(state, name),
                        },
                        sizes.get(i).copied().unwrap_or(0),
                    );
                }
                self.mark_published(c.tid);
                Ok(c)
            }
            Err(e) => {
                if e.is_conflict() {
                    // Another writer got there first; if it was not this Db (or its
                    // commit future was dropped), the cache has not seen it yet.
                    self.needs_resync.store(true, Ordering::Release);
                }
                Err(e)
            }
        }
    }
}

/// The sizes of a commit's encoded records, in write order, set by whoever encodes them
/// (the storage's commit writer, for a small commit).
type RecordSizes = Arc<std::sync::OnceLock<Vec<usize>>>;

struct ResyncOnDrop<'a>(Option<&'a AtomicBool>);

impl Drop for ResyncOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.0 {
            flag.store(true, Ordering::Release);
        }
    }
}

/// Encodes a state into a record for `oid`.
fn to_record<T: Persistent>(oid: Oid, value: &T) -> Result<Record> {
    let (data, refs) = encode(value)?;
    Ok(Record::new(oid, data, refs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        fastrand::seed(7);
        let d = Duration::from_millis(10);
        let draws: Vec<Duration> = (0..1000).map(|_| jitter(d)).collect();
        assert!(draws.iter().all(|j| *j >= d / 2 && *j < d * 3 / 2));
        let (lo, hi) = (draws.iter().min(), draws.iter().max());
        assert!(
            hi.zip(lo).is_some_and(|(h, l)| *h - *l > d / 2),
            "the draws spread out"
        );
    }
}
