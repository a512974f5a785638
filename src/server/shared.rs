//! What every connection of a server shares: the storage, the history (log and
//! record cache), the oid pool, the counters and the shutdown signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use event_listener::Event;

use super::history::{History, Invalidations};
use super::options::{Peer, ServerOptions};
use super::stats::{add, Counters};
use crate::error::{Error, Result};
use crate::record::{CommitRequest, Committed, Oid, Record, Tid};
use crate::storage::Storage;

/// Oids the server fetches from the storage at a time for its pool.
const OID_BATCH: u64 = 1024;

/// A framed record and the tid that committed it.
pub(crate) type Framed = (Tid, Arc<[u8]>);

/// Set once; wakes everyone waiting for it.
#[derive(Default)]
pub(crate) struct Shutdown {
    set: AtomicBool,
    event: Event,
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Resolves once the signal is set.
    pub(crate) async fn wait(&self) {
        loop {
            if self.is_set() {
                return;
            }
            let listener = self.event.listen();
            if self.is_set() {
                return;
            }
            listener.await;
        }
    }
}

/// The state of one server.
pub(crate) struct Shared {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) options: ServerOptions,
    pub(crate) counters: Arc<Counters>,
    pub(crate) history: History,
    /// Whether other processes append to the storage (a journal in shared mode), so
    /// that the server must catch up with them before answering.
    follows_others: bool,
    oid_pool: async_lock::Mutex<Vec<Oid>>,
    pub(crate) shutdown: Shutdown,
    /// Signalled whenever a connection ends.
    pub(crate) connection_ended: Event,
}

impl Shared {
    pub(crate) async fn new(storage: Arc<dyn Storage>, options: ServerOptions) -> Result<Shared> {
        // Subscribe before reading the last tid, so that no commit falls between.
        let feed = storage.changes();
        let follows_others = storage.catch_up().await?.is_some();
        let last = storage.last_tid().await?;
        let history = History::new(feed, last, options.cache_bytes);
        Ok(Shared {
            storage,
            options,
            counters: Arc::default(),
            history,
            follows_others,
            oid_pool: async_lock::Mutex::new(Vec::new()),
            shutdown: Shutdown::default(),
            connection_ended: Event::new(),
        })
    }

    /// Brings the history up to date with every commit acknowledged so far (and, on a
    /// shared storage, with what other processes appended).
    pub(crate) async fn catch_up(&self) -> Result<()> {
        if self.follows_others {
            self.storage.catch_up().await?;
        }
        self.history.refresh();
        Ok(())
    }

    /// `n` fresh oids from the pool.
    pub(crate) async fn new_oids(&self, n: usize) -> Result<Vec<Oid>> {
        let mut pool = self.oid_pool.lock().await;
        if pool.len() < n {
            let want = (n - pool.len()) as u64;
            let mut fresh = self.storage.new_oids(want.max(OID_BATCH)).await?;
            // Handed out lowest first: the pool is popped from the back.
            fresh.reverse();
            fresh.append(&mut pool);
            *pool = fresh;
        }
        let at = pool.len() - n;
        let mut out = pool.split_off(at);
        out.reverse();
        Ok(out)
    }

    /// `n` oids for a Durus client: while the database has no root, the first is the
    /// root's oid 0, which a Durus `Connection` uses to create the root (every client
    /// that asks before one of them commits it gets 0; the first commit of the root
    /// wins, the others conflict, so no two objects ever share it). After that, fresh
    /// oids from the storage, which never hands out 0 and never reuses one.
    pub(crate) async fn durus_oids(&self, n: usize) -> Result<Vec<Oid>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let root_missing = !self.history.root_exists() && !self.root_stored().await?;
        if root_missing {
            let mut oids = vec![Oid::ROOT];
            oids.extend(self.new_oids(n - 1).await?);
            return Ok(oids);
        }
        self.new_oids(n).await
    }

    async fn root_stored(&self) -> Result<bool> {
        match self.storage.load(Oid::ROOT).await {
            Ok(_) => {
                self.history.set_root_exists();
                Ok(true)
            }
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The oids written after `seen` by transactions other than `own`, and the last
    /// tid that covers: from the log, or from the storage if the log no longer reaches
    /// back that far.
    pub(crate) async fn invalidations(&self, seen: Tid, own: &[Tid]) -> Result<Invalidations> {
        self.catch_up().await?;
        if let Some(inv) = self.history.invalidations(seen, own) {
            return Ok(inv);
        }
        let txs = self.storage.transactions(seen).await?;
        let last = txs.last().map_or(seen, |t| t.tid);
        let mut oids: Vec<Oid> = txs
            .into_iter()
            .filter(|t| !own.contains(&t.tid))
            .flat_map(|t| t.oids)
            .collect();
        oids.sort_unstable();
        oids.dedup();
        Ok(Invalidations { oids, last })
    }

    /// Packs the storage for a client (v1's `P`, v2's PACK), counting it; after a pack
    /// the record cache forgets what it held, dropped objects among it.
    pub(crate) async fn pack(&self, opts: crate::journal::PackOptions) -> Result<crate::journal::PackReport> {
        let dry_run = opts.dry_run;
        match self.storage.pack(opts).await {
            Ok(r) => {
                if !dry_run {
                    self.history.packed(r.history_from);
                    add(&self.counters.packs, 1);
                }
                Ok(r)
            }
            Err(e) => {
                add(&self.counters.packs_refused, 1);
                Err(e)
            }
        }
    }

    /// The newest versions of `oids` (None where there is none): from the cache where
    /// it has them, the rest with one storage call, which then go into the cache.
    pub(crate) async fn load_newest(&self, oids: &[Oid]) -> Result<Vec<Option<Framed>>> {
        add(&self.counters.loads, oids.len() as u64);
        let mut out = Vec::with_capacity(oids.len());
        let mut missing = Vec::new();
        for (i, &oid) in oids.iter().enumerate() {
            let hit = self.history.cached(oid);
            if hit.is_none() {
                missing.push(i);
            }
            out.push(hit);
        }
        add(&self.counters.cache_hits, (oids.len() - missing.len()) as u64);
        if missing.is_empty() {
            return Ok(out);
        }
        let known = self.history.last();
        let want: Vec<Oid> = missing.iter().map(|&i| oids[i]).collect();
        let loaded = if want.len() == 1 {
            match self.storage.load(want[0]).await {
                Ok(l) => vec![Some(l)],
                Err(Error::NotFound { .. }) => vec![None],
                Err(e) => return Err(e),
            }
        } else {
            self.storage.load_many(want, None).await?
        };
        for (i, l) in missing.into_iter().zip(loaded) {
            if let Some(l) = l {
                let framed: Arc<[u8]> = l.record.encode()?.into();
                if l.record.oid == Oid::ROOT {
                    self.history.set_root_exists();
                }
                self.history.insert(l.record.oid, l.tid, framed.clone(), known);
                out[i] = Some((l.tid, framed));
            }
        }
        Ok(out)
    }

    /// Starts a commit through the storage's commit path (group commit for the file
    /// storage) at once, so that commits are applied in the order this is called;
    /// the returned future counts it, logs it if slow, and caches what was written.
    pub(crate) fn commit(
        &self,
        req: CommitRequest,
        peer: &Peer,
    ) -> futures::future::BoxFuture<'_, Result<Committed>> {
        let started = Instant::now();
        let writes_root = req.records.iter().any(|r| r.oid == Oid::ROOT);
        let records: Vec<Record> = if self.options.cache_bytes > 0 {
            req.records.clone()
        } else {
            Vec::new()
        };
        let landing = self.storage.commit(req);
        let peer = peer.to_string();
        Box::pin(async move {
            let result = landing.await;
            let took = started.elapsed();
            if took > self.options.slow_commit {
                add(&self.counters.slow_commits, 1);
                log::warn!("{peer}: slow commit, {took:?}");
            }
            match &result {
                Ok(c) => {
                    add(&self.counters.commits, 1);
                    if writes_root {
                        self.history.set_root_exists();
                    }
                    for r in records {
                        if let Ok(framed) = r.encode() {
                            self.history.insert(r.oid, c.tid, framed.into(), c.tid);
                        }
                    }
                }
                Err(Error::Conflict { .. }) => add(&self.counters.conflicts, 1),
                Err(_) => {}
            }
            result
        })
    }
}
