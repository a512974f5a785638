//! The one adapter that makes a synchronous storage async: every call that may block
//! runs on the `blocking` thread pool; loads the engine can serve without waiting
//! ([`SyncStorage::try_load`]) are served on the caller's thread.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};

use futures::channel::oneshot;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::commit_queue::{CommitQueue, Pending, Pushed};
use super::feed::{Change, Feed};
use super::{run_encoder, Encoder, ScanIter, Storage, SyncStorage};
use crate::error::{Error, Result};
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Tid, TxInfo};

/// A [`SyncStorage`] made into a [`Storage`] by running each call on the `blocking`
/// thread pool, so executor threads never block on file I/O. It works under any async
/// runtime (tokio, smol, async-std, `futures::executor`) and starts none of its own.
///
/// A load first asks the engine to serve it without waiting
/// ([`SyncStorage::try_load`]: for the journal, when its bytes are in the page cache),
/// on the caller's thread; only a load that would wait is handed to the pool. A hand-off
/// costs tens of microseconds, a page-cache read about one.
///
/// Commits go through a queue drained by one writer job on the blocking pool (not by
/// the callers): whatever queues up while it writes and syncs one group becomes the next
/// group, so concurrent committers share syncs (group commit) and each still returns
/// only when its own transaction is durable.
///
/// Cloning is cheap and shares the engine.
pub struct Unblocked<S: SyncStorage> {
    inner: Arc<S>,
    commits: Arc<Mutex<CommitQueue>>,
    feed: Arc<Feed>,
    auto_pack: Arc<AutoPack>,
}

/// The background pack the engine asks for ([`SyncStorage::pack_due`]): at most one at
/// a time, stopped by `close`.
#[derive(Default)]
struct AutoPack {
    running: AtomicBool,
    cancel: AtomicBool,
}

impl<S: SyncStorage> std::fmt::Debug for Unblocked<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The engine need not be `Debug`; its type says which storage this is.
        f.debug_struct("Unblocked")
            .field("engine", &std::any::type_name::<S>())
            .finish_non_exhaustive()
    }
}

impl<S: SyncStorage> Clone for Unblocked<S> {
    fn clone(&self) -> Self {
        Unblocked {
            inner: self.inner.clone(),
            commits: self.commits.clone(),
            feed: self.feed.clone(),
            auto_pack: self.auto_pack.clone(),
        }
    }
}

/// The writer job: commits whatever is queued as one group, again and again, until the
/// queue is empty. Runs on the blocking pool and finishes its groups even if every
/// caller has gone away. It holds the engine only while committing a group (and answers
/// after letting go), so a caller that drops the storage after its commit returned
/// really closes the file.
fn write_groups<S: SyncStorage>(
    engine: &Weak<S>,
    queue: &Mutex<CommitQueue>,
    feed: &Feed,
    auto: &Arc<AutoPack>,
) {
    let _unwind = ReleaseOnPanic(queue);
    loop {
        let Some(batch) = lock_queue(queue).next_batch() else {
            return;
        };
        // Encoding here, on the writer's thread, keeps small commits off their callers'
        // tasks without a thread hop of their own.
        let mut reqs = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for Pending {
            mut req,
            encode,
            reply,
        } in batch
        {
            if let Some(encode) = encode {
                match run_encoder(encode) {
                    Ok(records) => req.records.extend(records),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                }
            }
            reqs.push(req);
            replies.push(reply);
        }
        let results = match engine.upgrade() {
            Some(engine) => {
                let results = engine.commit_many(&reqs);
                // Announce in commit order, before anyone hears back, so that a
                // committer that subscribed earlier sees its own commit on the feed.
                announce(&*engine, feed);
                if engine.pack_due() {
                    start_auto_pack(engine, auto);
                }
                results
            }
            None => reqs.iter().map(|_| Err(Error::Closed)).collect(),
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that stopped waiting (its future was dropped) needs no answer;
            // its transaction has landed all the same.
            let _ = reply.send(result);
        }
    }
}

/// Starts a pack on the blocking pool unless one is running or the storage is closing.
fn start_auto_pack<S: SyncStorage>(engine: Arc<S>, auto: &Arc<AutoPack>) {
    use std::sync::atomic::Ordering;
    if auto.cancel.load(Ordering::Acquire) || auto.running.swap(true, Ordering::AcqRel) {
        return;
    }
    let auto = auto.clone();
    blocking::unblock(move || {
        let r = engine.pack(&crate::journal::PackOptions::default(), &auto.cancel);
        match r {
            Ok(_) | Err(Error::Cancelled | Error::Closed) => {}
            Err(e) => engine.auto_pack_failed(&e),
        }
        auto.running.store(false, Ordering::Release);
    })
    .detach();
}

/// The queue; its updates cannot panic halfway, so a poisoned lock is still sound.
fn lock_queue(queue: &Mutex<CommitQueue>) -> std::sync::MutexGuard<'_, CommitQueue> {
    crate::sync::lock(queue)
}

/// Puts every transaction the engine knows of and the feed has not announced yet on
/// the feed: this process's commits and, in shared mode, other processes' commits
/// that were caught up with.
fn announce<S: SyncStorage + ?Sized>(engine: &S, feed: &Feed) {
    if let Ok(last) = engine.last_tid() {
        feed.announce_up_to(last, |after| engine.transactions(after));
    }
}

/// Catches up with other processes' transactions and puts them on the feed; the last
/// tid known.
fn catch_up<S: SyncStorage + ?Sized>(engine: &S, feed: &Feed) -> Result<Tid> {
    let tid = engine.refresh()?;
    announce(engine, feed);
    Ok(tid)
}

/// Should the engine panic, lets the next commit start a new writer job and tells
/// everyone waiting (see [`CommitQueue::abandon`]).
struct ReleaseOnPanic<'a>(&'a Mutex<CommitQueue>);

impl Drop for ReleaseOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock_queue(self.0).abandon();
        }
    }
}

impl<S: SyncStorage> Unblocked<S> {
    /// Wraps an engine.
    pub fn new(inner: S) -> Self {
        let feed = Arc::new(Feed::starting_after(inner.last_tid().unwrap_or(Tid::ZERO)));
        let inner = Arc::new(inner);
        // The engine's own thread calls this, so it may block; it holds the engine
        // weakly, so that the engine's news never keep it open.
        let engine = Arc::downgrade(&inner);
        let news_feed = feed.clone();
        inner.watch(Arc::new(move || {
            if let Some(engine) = engine.upgrade() {
                // A refresh that fails (the database went away) is tried again with
                // the next news or the next transaction.
                let _ = catch_up(&*engine, &news_feed);
            }
        }));
        Unblocked {
            inner,
            commits: Arc::default(),
            feed,
            auto_pack: Arc::default(),
        }
    }

    /// The engine, for synchronous use from a thread that may block.
    pub fn engine(&self) -> &Arc<S> {
        &self.inner
    }

    /// Queues a commit for the writer job, starting the job if it is not running.
    fn enqueue(&self, req: CommitRequest, encode: Option<Encoder>) -> BoxFuture<'static, Result<Committed>> {
        let (reply, rx) = oneshot::channel();
        let pushed = lock_queue(&self.commits).push(Pending { req, encode, reply });
        match pushed {
            Pushed::Closing(p) => {
                let _ = p.reply.send(Err(Error::Closed));
            }
            Pushed::Queued => {}
            Pushed::StartWriter => {
                let engine = Arc::downgrade(&self.inner);
                let queue = self.commits.clone();
                let feed = self.feed.clone();
                let auto = self.auto_pack.clone();
                blocking::unblock(move || write_groups(&engine, &queue, &feed, &auto)).detach();
            }
        }
        async move {
            rx.await.unwrap_or_else(|_| {
                Err(Error::Internal(
                    "the commit writer stopped without an answer".into(),
                ))
            })
        }
        .boxed()
    }

    /// Stops taking commits and resolves once every commit queued so far has been
    /// answered.
    fn drained(&self) -> BoxFuture<'static, ()> {
        let rx = lock_queue(&self.commits).close();
        // A writer job that died drops the sender, which ends the wait just the same.
        async move {
            if let Some(rx) = rx {
                let _ = rx.await;
            }
        }
        .boxed()
    }

    /// Runs `f` on the blocking pool with the engine.
    fn run<T, F>(&self, f: F) -> BoxFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&S) -> T + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking::unblock(move || f(&inner)).boxed()
    }
}

impl<S: SyncStorage> Storage for Unblocked<S> {
    fn load(&self, oid: Oid) -> BoxFuture<'_, Result<Loaded>> {
        async move {
            match self.inner.try_load(oid) {
                Some(done) => done,
                None => self.run(move |s| s.load(oid)).await,
            }
        }
        .boxed()
    }

    fn load_at(&self, oid: Oid, snapshot: Tid) -> BoxFuture<'_, Result<Loaded>> {
        async move {
            match self.inner.try_load_at(oid, snapshot) {
                Some(done) => done,
                None => self.run(move |s| s.load_at(oid, snapshot)).await,
            }
        }
        .boxed()
    }

    fn load_many(&self, oids: Vec<Oid>, snapshot: Option<Tid>) -> BoxFuture<'_, Result<Vec<Option<Loaded>>>> {
        async move {
            match self.inner.try_load_many(&oids, snapshot) {
                Some(done) => done,
                None => self.run(move |s| s.load_many(&oids, snapshot)).await,
            }
        }
        .boxed()
    }

    fn new_oids(&self, n: u64) -> BoxFuture<'_, Result<Vec<Oid>>> {
        match self.inner.try_new_oids(n) {
            Some(done) => futures::future::ready(done).boxed(),
            None => self.run(move |s| s.new_oids(n)),
        }
    }

    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<Committed>> {
        self.enqueue(req, None)
    }

    fn commit_encoded(&self, req: CommitRequest, encode: Encoder) -> BoxFuture<'_, Result<Committed>> {
        self.enqueue(req, Some(encode))
    }

    fn changes_since(&self, since: Tid) -> BoxFuture<'_, Result<Changes>> {
        self.run(move |s| s.changes_since(since))
    }

    fn last_tid(&self) -> BoxFuture<'_, Result<Tid>> {
        self.run(|s| s.last_tid())
    }

    fn catch_up(&self) -> BoxFuture<'_, Result<Option<Tid>>> {
        if !self.inner.others_may_append() {
            return futures::future::ready(Ok(None)).boxed();
        }
        let feed = self.feed.clone();
        self.run(move |s| catch_up(s, &feed).map(Some))
    }

    fn transactions(&self, after: Tid) -> BoxFuture<'_, Result<Vec<TxInfo>>> {
        self.run(move |s| s.transactions(after))
    }

    fn tid_at_time(&self, timestamp: u64) -> BoxFuture<'_, Result<Tid>> {
        self.run(move |s| s.tid_at_time(timestamp))
    }

    fn scan(&self) -> BoxStream<'static, Result<Loaded>> {
        blocking::Unblock::new(ScanIter::new(self.inner.clone())).boxed()
    }

    fn changes(&self) -> BoxStream<'static, Change> {
        self.feed.subscribe()
    }

    fn backup_with(
        &self,
        dest: std::path::PathBuf,
        opts: crate::journal::BackupOptions,
    ) -> BoxFuture<'_, Result<crate::journal::BackupReport>> {
        self.run(move |s| s.backup_to(&dest, &opts))
    }

    fn pin(&self, snapshot: Tid) -> Result<crate::journal::SnapshotPin> {
        self.inner.pin(snapshot)
    }

    fn pack(&self, opts: crate::journal::PackOptions) -> BoxFuture<'_, Result<crate::journal::PackReport>> {
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = CancelOnDrop(cancel.clone());
        let job = self.run(move |s| s.pack(&opts, &cancel));
        async move {
            let r = job.await;
            drop(stop);
            r
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        // Commits already queued land (or fail) before the engine closes; commits
        // queued after this point fail with `Closed`.
        let drained = self.drained();
        let inner = self.inner.clone();
        // A background pack stops at its next step rather than hold the file open.
        self.auto_pack
            .cancel
            .store(true, std::sync::atomic::Ordering::Release);
        async move {
            drained.await;
            blocking::unblock(move || inner.close()).await
        }
        .boxed()
    }
}

/// Asks a job on the blocking pool to stop when its future is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}
