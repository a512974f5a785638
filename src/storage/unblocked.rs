//! The one adapter that makes a synchronous storage async: every call runs on the
//! `blocking` thread pool.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::{ScanIter, Storage, SyncStorage};
use crate::error::Result;
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Tid};

/// A [`SyncStorage`] made into a [`Storage`] by running each call on the `blocking`
/// thread pool, so executor threads never block on file I/O. It works under any async
/// runtime (tokio, smol, async-std, `futures::executor`) and starts none of its own.
///
/// Cloning is cheap and shares the engine.
pub struct Unblocked<S: SyncStorage> {
    inner: Arc<S>,
}

impl<S: SyncStorage> Clone for Unblocked<S> {
    fn clone(&self) -> Self {
        Unblocked {
            inner: self.inner.clone(),
        }
    }
}

impl<S: SyncStorage> Unblocked<S> {
    /// Wraps an engine.
    pub fn new(inner: S) -> Self {
        Unblocked {
            inner: Arc::new(inner),
        }
    }

    /// The engine, for synchronous use from a thread that may block.
    pub fn engine(&self) -> &Arc<S> {
        &self.inner
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
        self.run(move |s| s.load(oid))
    }

    fn load_at(&self, oid: Oid, snapshot: Tid) -> BoxFuture<'_, Result<Loaded>> {
        self.run(move |s| s.load_at(oid, snapshot))
    }

    fn load_many(&self, oids: Vec<Oid>, snapshot: Option<Tid>) -> BoxFuture<'_, Result<Vec<Option<Loaded>>>> {
        self.run(move |s| s.load_many(&oids, snapshot))
    }

    fn new_oids(&self, n: u64) -> BoxFuture<'_, Result<Vec<Oid>>> {
        self.run(move |s| s.new_oids(n))
    }

    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<Committed>> {
        self.run(move |s| s.commit(&req))
    }

    fn changes_since(&self, since: Tid) -> BoxFuture<'_, Result<Changes>> {
        self.run(move |s| s.changes_since(since))
    }

    fn last_tid(&self) -> BoxFuture<'_, Result<Tid>> {
        self.run(|s| s.last_tid())
    }

    fn scan(&self) -> BoxStream<'static, Result<Loaded>> {
        blocking::Unblock::new(ScanIter::new(self.inner.clone())).boxed()
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        self.run(|s| s.close())
    }
}
