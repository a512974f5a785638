//! The `Storage` trait: the only interface the layers above use to reach stored records.
//!
//! A storage moves [`Record`]s by oid and knows nothing of the
//! types encoded in them. Every method is async and runtime-agnostic. Synchronous
//! engines implement [`SyncStorage`] and become async through the one generic adapter,
//! [`Unblocked`], which runs each call on the `blocking` thread pool so that no file
//! I/O ever runs on an executor thread.
//!
//! Implementations: [`MemoryStorage`] (in memory, for tests and caches),
//! [`FileStorage`] (the journal file, the embedded default) and, with the feature
//! `sqlite`, `SqliteStorage` (a SQLite file, module `sqlite`), and with the feature
//! `postgres`, `PostgresStorage` (a PostgreSQL database shared by several processes and
//! machines, module `postgres`). `docs/DESIGN.md` in the
//! repository describes how `Unblocked` turns concurrent commits into write groups
//! (group commit).

mod commit_queue;
mod feed;
mod file;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
mod spec;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod tables;
mod unblocked;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::journal::{BackupOptions, BackupReport, PackOptions, PackReport, SnapshotPin};
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Record, Tid, TxInfo};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[cfg(feature = "server")]
pub(crate) use feed::Feed;
pub use feed::{Change, FEED_CAPACITY};
pub use file::FileStorage;
pub use memory::MemoryStorage;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStorage};
pub use spec::StorageSpec;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStorage};
pub use unblocked::Unblocked;

/// Work that produces a commit's records (serde encoding and any filters), handed to
/// [`Storage::commit_encoded`] so that it runs off the caller's task.
pub type Encoder = Box<dyn FnOnce() -> Result<Vec<Record>> + Send>;

/// An async store of records, shared by many tasks.
///
/// # Cancel safety
///
/// Dropping a returned future never leaves the storage inconsistent. A dropped
/// [`commit`](Storage::commit) may still have committed: once the write has started it
/// runs to completion off the caller's task, and the transaction is then visible to
/// everyone as usual. Check with [`changes_since`](Storage::changes_since) or by
/// reading if it matters.
pub trait Storage: Send + Sync + 'static {
    /// The newest record of `oid`, or [`Error::NotFound`](crate::Error::NotFound).
    fn load(&self, oid: Oid) -> BoxFuture<'_, Result<Loaded>>;

    /// The version of `oid` visible at `snapshot`: the newest one committed by a
    /// transaction at or before it.
    fn load_at(&self, oid: Oid, snapshot: Tid) -> BoxFuture<'_, Result<Loaded>>;

    /// Many records in one call, each at `snapshot` (or newest when `None`); `None` in
    /// the result where an oid has no record.
    fn load_many(&self, oids: Vec<Oid>, snapshot: Option<Tid>) -> BoxFuture<'_, Result<Vec<Option<Loaded>>>>;

    /// `n` fresh oids, never handed out before and never to be handed out again (not
    /// after a reopen, a crash or a pack).
    fn new_oids(&self, n: u64) -> BoxFuture<'_, Result<Vec<Oid>>>;

    /// Commits a transaction, failing with [`Error::Conflict`](crate::Error::Conflict)
    /// (naming the oids) if any oid it read or writes was committed after its snapshot.
    /// Commits are applied in the order the calls were made.
    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<Committed>>;

    /// Commits like [`commit`](Storage::commit), with the records that `encode`
    /// returns added to `req.records`. The storage runs `encode` off the caller's task,
    /// before the transaction is validated: the default runs it on the blocking pool;
    /// [`Unblocked`] runs it inside its commit writer job, so a small commit takes no
    /// extra thread hop. If `encode` fails (or panics), the commit fails with that
    /// error and nothing is written.
    fn commit_encoded(&self, req: CommitRequest, encode: Encoder) -> BoxFuture<'_, Result<Committed>> {
        Box::pin(async move {
            let records = blocking::unblock(move || run_encoder(encode)).await?;
            let mut req = req;
            req.records.extend(records);
            self.commit(req).await
        })
    }

    /// The oids changed by transactions after `since` (invalidations).
    fn changes_since(&self, since: Tid) -> BoxFuture<'_, Result<Changes>>;

    /// The id of the last committed transaction.
    fn last_tid(&self) -> BoxFuture<'_, Result<Tid>>;

    /// Catches up with transactions that other processes appended to a shared store
    /// (and announces them on the change feed); returns the last tid now known.
    /// `None` if nobody else can write to this storage, so there is nothing to catch
    /// up with and callers may skip the call's cost.
    fn catch_up(&self) -> BoxFuture<'_, Result<Option<Tid>>>;

    /// The transactions committed after `after`, oldest first, with their timestamps
    /// and the oids they wrote.
    fn transactions(&self, after: Tid) -> BoxFuture<'_, Result<Vec<TxInfo>>>;

    /// The last transaction committed at or before `timestamp` (microseconds since the
    /// Unix epoch), [`Tid::ZERO`] if none: the snapshot showing the database as it was
    /// at that moment.
    fn tid_at_time(&self, timestamp: u64) -> BoxFuture<'_, Result<Tid>>;

    /// Every current record, as of the moment the scan starts, in oid order.
    fn scan(&self) -> BoxStream<'static, Result<Loaded>>;

    /// A stream of the transactions committed from now on, in order (the change feed:
    /// cache busting, pushing updates to clients). A subscriber that falls more than
    /// [`FEED_CAPACITY`] events behind never slows committers down: it gets a
    /// [`Change::Lagged`] event saying from where to catch up. The stream ends when the
    /// storage is dropped.
    fn changes(&self) -> BoxStream<'static, Change>;

    /// Writes a consistent copy of the store to `dest` while commits go on (see
    /// [`Journal::backup_to`](crate::journal::Journal::backup_to)): it holds every
    /// transaction committed before the call, and is checked before it is put in place.
    ///
    /// # Cancel safety
    ///
    /// The copy runs on the blocking pool and finishes even if the future is dropped;
    /// `dest` then holds either the whole checked copy or what it held before.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`](crate::Error::Unsupported) for a storage with no file to
    /// copy (the default).
    fn backup(&self, dest: std::path::PathBuf) -> BoxFuture<'_, Result<BackupReport>> {
        self.backup_with(dest, BackupOptions::default())
    }

    /// Backs the store up to `dest` as `opts` say: a whole copy as
    /// [`backup`](Storage::backup) makes it, or only what is new appended to an earlier
    /// backup (see [`Journal::backup_with`](crate::journal::Journal::backup_with)).
    ///
    /// # Cancel safety
    ///
    /// The copy runs on the blocking pool and finishes even if the future is dropped;
    /// `dest` then holds either the whole checked backup or what it held before (for an
    /// incremental backup stopped by a crash: that and a torn tail, which the next one
    /// completes).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`](crate::Error::Unsupported) for a storage with no file to
    /// copy (the default); [`Error::NotPrefix`](crate::Error::NotPrefix) for an
    /// incremental backup onto a file that is not an earlier backup of this store.
    fn backup_with(
        &self,
        dest: std::path::PathBuf,
        opts: BackupOptions,
    ) -> BoxFuture<'_, Result<BackupReport>> {
        let _ = (dest, opts);
        Box::pin(futures::future::ready(Err(crate::Error::Unsupported {
            what: "backup".into(),
        })))
    }

    /// Keeps what `snapshot` reads readable while the returned pin lives, across packs:
    /// a transaction holds one so that a pack that runs meanwhile never changes what it
    /// sees (see [`Journal::pin`](crate::journal::Journal::pin)). Storages whose old
    /// versions never go away, or that cannot keep them, hand out
    /// [`SnapshotPin::none`] (the default).
    ///
    /// # Errors
    ///
    /// [`Error::HistoryGone`](crate::Error::HistoryGone) if a pack already dropped what
    /// `snapshot` reads; [`Error::SnapshotAhead`](crate::Error::SnapshotAhead) for a
    /// snapshot after the last transaction.
    fn pin(&self, snapshot: Tid) -> Result<SnapshotPin> {
        let _ = snapshot;
        Ok(SnapshotPin::none())
    }

    /// Drops what no snapshot from the pack point on can reach: old versions and
    /// objects unreachable from the root (see [`crate::journal::pack`]). Commits and
    /// reads go on while it runs; transactions holding a [`pin`](Storage::pin) read
    /// exactly what they read before.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future asks the pack to stop; it does so at its next step and
    /// leaves the store as it was (unless it was already putting the new file in
    /// place, which then completes). Either way no data is lost.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`](crate::Error::Unsupported) for a storage that cannot pack
    /// (the default); [`Error::DanglingRefs`](crate::Error::DanglingRefs) if reachable
    /// records refer to oids without a record and [`PackOptions::force`] is not set.
    fn pack(&self, opts: PackOptions) -> BoxFuture<'_, Result<PackReport>> {
        let _ = opts;
        Box::pin(futures::future::ready(Err(crate::Error::Unsupported {
            what: "pack".into(),
        })))
    }

    /// Flushes what needs flushing and closes; later calls fail with
    /// [`Error::Closed`](crate::Error::Closed).
    fn close(&self) -> BoxFuture<'_, Result<()>>;
}

/// What [`SyncStorage::watch`] calls when other processes may have committed.
pub type News = Arc<dyn Fn() + Send + Sync>;

/// A synchronous storage engine. [`Unblocked`] turns any `SyncStorage` into a
/// [`Storage`]; the methods mean the same as there.
pub trait SyncStorage: Send + Sync + 'static {
    /// See [`Storage::load`].
    fn load(&self, oid: Oid) -> Result<Loaded>;
    /// See [`Storage::load_at`].
    fn load_at(&self, oid: Oid, snapshot: Tid) -> Result<Loaded>;
    /// See [`Storage::load_many`].
    fn load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Result<Vec<Option<Loaded>>>;
    /// [`load`](SyncStorage::load) if it needs no wait (for the disk, or for a lock
    /// held by a writer); `None` if it would wait. [`Unblocked`] calls it on the caller's
    /// thread and goes to the blocking pool only on `None`, so it must never block: an
    /// engine that cannot tell keeps the default, which always says `None`.
    fn try_load(&self, oid: Oid) -> Option<Result<Loaded>> {
        let _ = oid;
        None
    }
    /// [`load_at`](SyncStorage::load_at) without waiting, as
    /// [`try_load`](SyncStorage::try_load).
    fn try_load_at(&self, oid: Oid, snapshot: Tid) -> Option<Result<Loaded>> {
        let _ = (oid, snapshot);
        None
    }
    /// [`load_many`](SyncStorage::load_many) without waiting, as
    /// [`try_load`](SyncStorage::try_load).
    fn try_load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Option<Result<Vec<Option<Loaded>>>> {
        let _ = (oids, snapshot);
        None
    }
    /// See [`Storage::new_oids`].
    fn new_oids(&self, n: u64) -> Result<Vec<Oid>>;
    /// [`new_oids`](SyncStorage::new_oids) if it needs no wait (the oids are reserved
    /// already and no writer holds the lock), as [`try_load`](SyncStorage::try_load);
    /// `None` by default.
    fn try_new_oids(&self, n: u64) -> Option<Result<Vec<Oid>>> {
        let _ = n;
        None
    }
    /// See [`Storage::commit`].
    fn commit(&self, req: &CommitRequest) -> Result<Committed>;
    /// Commits several requests, in order, each validated against everything committed
    /// before it (including the earlier ones here); one result per request. Engines that
    /// can make them durable together (group commit) override this; the default commits
    /// them one by one.
    fn commit_many(&self, reqs: &[CommitRequest]) -> Vec<Result<Committed>> {
        reqs.iter().map(|r| self.commit(r)).collect()
    }
    /// See [`Storage::changes_since`].
    fn changes_since(&self, since: Tid) -> Result<Changes>;
    /// See [`Storage::last_tid`].
    fn last_tid(&self) -> Result<Tid>;
    /// Whether other processes may append to this store, so that
    /// [`refresh`](SyncStorage::refresh) has work to do.
    fn others_may_append(&self) -> bool {
        false
    }
    /// Catches up with other processes' transactions; returns the last tid known.
    fn refresh(&self) -> Result<Tid> {
        self.last_tid()
    }
    /// Asks the engine to call `news` whenever other processes may have committed, from
    /// a thread of its own (which may block), so that their commits reach the change
    /// feed without waiting for the next [`refresh`](SyncStorage::refresh).
    /// [`Unblocked`] calls it once, right after wrapping the engine, with a `news` that
    /// refreshes and announces. Engines that cannot hear of others' commits keep the
    /// default, which does nothing: their news arrive with the next refresh.
    fn watch(&self, news: News) {
        let _ = news;
    }
    /// See [`Storage::transactions`].
    fn transactions(&self, after: Tid) -> Result<Vec<TxInfo>>;
    /// See [`Storage::tid_at_time`].
    fn tid_at_time(&self, timestamp: u64) -> Result<Tid>;
    /// Every oid that has a record, ascending.
    fn oids(&self) -> Result<Vec<Oid>>;
    /// See [`Storage::backup_with`]; unsupported by default.
    fn backup_to(&self, dest: &std::path::Path, opts: &BackupOptions) -> Result<BackupReport> {
        let _ = (dest, opts);
        Err(crate::Error::Unsupported {
            what: "backup".into(),
        })
    }
    /// See [`Storage::pin`]; [`SnapshotPin::none`] by default.
    fn pin(&self, snapshot: Tid) -> Result<SnapshotPin> {
        let _ = snapshot;
        Ok(SnapshotPin::none())
    }
    /// Whether the engine wants [`Unblocked`] to start a pack in the background now
    /// (see [`JournalOptions::auto_pack`](crate::journal::JournalOptions::auto_pack));
    /// asked after every write group. `false` by default.
    fn pack_due(&self) -> bool {
        false
    }
    /// Counts (and lets the engine report) a background pack that failed; nothing by
    /// default.
    fn auto_pack_failed(&self, error: &crate::Error) {
        let _ = error;
    }
    /// See [`Storage::pack`]; stops with [`Error::Cancelled`](crate::Error::Cancelled)
    /// soon after `cancel` is set. Unsupported by default.
    fn pack(&self, opts: &PackOptions, cancel: &AtomicBool) -> Result<PackReport> {
        let _ = (opts, cancel);
        Err(crate::Error::Unsupported { what: "pack".into() })
    }
    /// See [`Storage::close`].
    fn close(&self) -> Result<()>;
}

/// Runs an encoder, turning a panic (in some type's `Serialize`) into an error, so that
/// it fails only its own commit.
fn run_encoder(encode: Encoder) -> Result<Vec<Record>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(encode)).unwrap_or_else(|_| {
        Err(crate::error::Error::Internal(
            "encoding the commit's records panicked (in a type's Serialize)".into(),
        ))
    })
}

/// How many records a scan reads per step.
const SCAN_BATCH: usize = 256;

/// Walks every oid that has a record, at one snapshot, in batches.
struct ScanIter<S: SyncStorage + ?Sized> {
    storage: std::sync::Arc<S>,
    /// Fixed on the first step (on the thread that drives the scan, not at creation).
    plan: Option<(Tid, std::vec::IntoIter<Oid>)>,
    ready: std::vec::IntoIter<Loaded>,
    done: bool,
}

impl<S: SyncStorage + ?Sized> ScanIter<S> {
    fn new(storage: std::sync::Arc<S>) -> Self {
        ScanIter {
            storage,
            plan: None,
            ready: Vec::new().into_iter(),
            done: false,
        }
    }

    fn step(&mut self) -> Result<bool> {
        if self.plan.is_none() {
            let tid = self.storage.last_tid()?;
            self.plan = Some((tid, self.storage.oids()?.into_iter()));
        }
        let Some((tid, oids)) = self.plan.as_mut() else {
            return Ok(false);
        };
        let batch: Vec<Oid> = oids.by_ref().take(SCAN_BATCH).collect();
        if batch.is_empty() {
            return Ok(false);
        }
        let loaded = self.storage.load_many(&batch, Some(*tid))?;
        self.ready = loaded.into_iter().flatten().collect::<Vec<_>>().into_iter();
        Ok(true)
    }
}

impl<S: SyncStorage + ?Sized> Iterator for ScanIter<S> {
    type Item = Result<Loaded>;

    fn next(&mut self) -> Option<Result<Loaded>> {
        loop {
            if let Some(l) = self.ready.next() {
                return Some(Ok(l));
            }
            if self.done {
                return None;
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
