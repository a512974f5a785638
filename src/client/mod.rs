//! `ClientStorage`: the [`Storage`] trait over a connection to a durus server, so
//! that a [`Db`](crate::Db) works over the network exactly as over a file: snapshots
//! (reads at a tid, so read-only transactions never conflict), serializable commits
//! validated by the server, conflict resolution (the server sends the committed
//! records with a conflict, so a merge costs no extra round trip), the change feed
//! (pushed by the server), `begin_at`.
//!
//! ```no_run
//! use durus::client::ClientStorage;
//! use durus::{Counter, Db, DbBuilder};
//!
//! # fn main() -> durus::Result<()> {
//! futures::executor::block_on(async {
//!     let storage = ClientStorage::connect(&"127.0.0.1:2972".parse()?).await?;
//!     let db: Db<Counter> = DbBuilder::storage(storage).open().await?;
//!     db.transact(|tx| Box::pin(async move {
//!         tx.root_mut().await?.increment();
//!         Ok(())
//!     }))
//!     .await?;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! One `ClientStorage` multiplexes any number of tasks over one connection (requests
//! are pipelined and answered in any order, so a slow commit never holds up a load).
//! It needs no background task and no particular runtime. If the connection is lost,
//! the requests on it fail with [`Error::Disconnected`] (a commit's outcome is then
//! unknown) and the next call connects again; a `Db` on it catches up with everything
//! committed meanwhile before its next transaction, so its cache is never stale.

mod mux;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream};
use futures::{FutureExt, StreamExt};

use self::mux::Mux;
use crate::error::{Error, Result};
use crate::protocol::v2::{Reply, Request};
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Tid, TxInfo};
use crate::server::{Address, BoxedStream};
use crate::storage::{Change, Storage};

/// Opens a new stream to the server, for the first connection and every reconnect.
pub type Connector = Arc<dyn Fn() -> BoxFuture<'static, std::io::Result<BoxedStream>> + Send + Sync>;

/// Oids asked for per load request.
const LOAD_CHUNK: usize = 4096;
/// Records per scan page.
const SCAN_PAGE: u32 = 1024;
/// Transactions per request.
const TX_PAGE: u32 = 10_000;

/// Settings of a [`ClientStorage`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The largest reply accepted, in bytes; a larger one ends the connection.
    pub max_frame: usize,
    /// Ask the server to send the committed records of the oids a commit conflicts on,
    /// so that conflict resolution needs no extra round trip.
    pub conflict_records: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_frame: 1 << 30,
            conflict_records: true,
        }
    }
}

/// Counters of a [`ClientStorage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Connections made (the first and every reconnect).
    pub connects: u64,
    /// Loads answered from the records a conflict reply carried.
    pub merge_records_used: u64,
    /// Bytes received from the server.
    pub bytes_received: u64,
}

/// A [`Storage`] on a durus server, over protocol version 2. Cheap to clone; clones
/// share the connection.
#[derive(Clone)]
pub struct ClientStorage {
    inner: Arc<Inner>,
}

struct Inner {
    mux: Arc<Mux>,
    connector: Connector,
    connecting: async_lock::Mutex<()>,
    options: ClientOptions,
    connects: std::sync::atomic::AtomicU64,
    merge_records_used: std::sync::atomic::AtomicU64,
    /// The newest pack point this client heard of (from its own packs and from
    /// `HistoryGone` answers): snapshots before it are not pinned but refused.
    history_from: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ClientStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStorage")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ClientStorage {
    /// Connects to the server at `address` (`host:port` or `unix:PATH`), reconnecting
    /// there whenever the connection is lost.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the connection attempt.
    pub async fn connect(address: &Address) -> Result<ClientStorage> {
        ClientStorage::with_connector(connector(address.clone()), ClientOptions::default()).await
    }

    /// Connects through `connector` (called again for every reconnect), e.g. to hand
    /// over streams of another runtime through a compatibility layer.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the connection attempt.
    pub async fn with_connector(connector: Connector, options: ClientOptions) -> Result<ClientStorage> {
        let c = ClientStorage {
            inner: Arc::new(Inner {
                mux: Arc::new(Mux::new(options.max_frame)),
                connector,
                connecting: async_lock::Mutex::new(()),
                options,
                connects: Default::default(),
                merge_records_used: Default::default(),
                history_from: Default::default(),
            }),
        };
        c.ensure_link().await?;
        Ok(c)
    }

    /// Counters of this client.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            connects: self.inner.connects.load(Ordering::Relaxed),
            merge_records_used: self.inner.merge_records_used.load(Ordering::Relaxed),
            bytes_received: self.inner.mux.received.load(Ordering::Relaxed),
        }
    }

    async fn ensure_link(&self) -> Result<()> {
        let _one = self.inner.connecting.lock().await;
        {
            let st = self.inner.mux.state();
            if st.closed {
                return Err(Error::Closed);
            }
            if st.link.is_some() {
                return Ok(());
            }
        }
        mux::reconnect(&self.inner.mux, (self.inner.connector)()).await?;
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
        if self.inner.mux.feed.has_subscribers() {
            self.subscribe_link()?;
        }
        Ok(())
    }

    /// Asks the server for pushed changes on the current link (the reply needs no
    /// waiting for: pushes follow it).
    fn subscribe_link(&self) -> Result<()> {
        let mut st = self.inner.mux.state();
        if st.subscribed || st.link.is_none() {
            return Ok(());
        }
        st.subscribed = true;
        drop(st);
        if let Some(p) = self.inner.mux.register(&Request::Subscribe)? {
            // The request is queued; whoever drives the connection next sends it.
            drop(p);
        }
        Ok(())
    }

    /// Sends `req` now if connected (so that requests go out in call order), else
    /// after connecting; resolves to the reply. A request that only reads (or hands
    /// out oids, which may be lost but never reused) is sent once more if the
    /// connection was lost before its answer came; a commit or a scan step is not.
    fn call(&self, req: Request) -> BoxFuture<'static, Result<Reply>> {
        let queued = self.inner.mux.register(&req);
        let this = self.clone();
        let retry = !matches!(
            req,
            Request::Commit { .. }
                | Request::ScanNext { .. }
                | Request::ScanClose { .. }
                | Request::Subscribe
                | Request::Pack { .. }
                | Request::Pin { .. }
                | Request::Unpin { .. }
        );
        async move {
            let first = match queued? {
                Some(p) => p.await,
                None => this.send(&req).await,
            };
            let reply = match first {
                Err(Error::Disconnected { .. }) if retry => this.send(&req).await?,
                other => other?,
            };
            match reply {
                Reply::Error(e) => {
                    if let Error::HistoryGone { oldest } = &e {
                        this.heard_pack_point(*oldest);
                    }
                    Err(e)
                }
                Reply::Packed(r) => {
                    if !r.dry_run {
                        this.heard_pack_point(r.history_from);
                    }
                    Ok(Reply::Packed(r))
                }
                r => Ok(r),
            }
        }
        .boxed()
    }

    fn heard_pack_point(&self, point: Tid) {
        self.inner
            .history_from
            .fetch_max(point.0, std::sync::atomic::Ordering::AcqRel);
    }

    /// Connects if needed, sends `req` and waits for its reply.
    async fn send(&self, req: &Request) -> Result<Reply> {
        self.ensure_link().await?;
        match self.inner.mux.register(req)? {
            Some(p) => p.await,
            None => Err(Error::Disconnected {
                reason: "the connection was lost again at once".into(),
            }),
        }
    }

    fn records(
        &self,
        oids: Vec<Oid>,
        snapshot: Option<Tid>,
    ) -> BoxFuture<'static, Result<Vec<Option<Loaded>>>> {
        let chunks: Vec<_> = oids
            .chunks(LOAD_CHUNK)
            .map(|c| {
                self.call(Request::LoadMany {
                    oids: c.to_vec(),
                    snapshot,
                })
            })
            .collect();
        async move {
            let mut out = Vec::with_capacity(oids.len());
            for r in futures::future::try_join_all(chunks).await? {
                match r {
                    Reply::Records(rs) => out.extend(rs),
                    other => return Err(unexpected("records", &other)),
                }
            }
            if out.len() != oids.len() {
                return Err(Error::Protocol {
                    reason: format!("asked for {} records, got {}", oids.len(), out.len()),
                });
            }
            Ok(out)
        }
        .boxed()
    }

    fn one(&self, oid: Oid, snapshot: Option<Tid>) -> BoxFuture<'static, Result<Loaded>> {
        let reply = self.call(Request::Load { oid, snapshot });
        async move {
            match reply.await? {
                Reply::Records(mut rs) if rs.len() == 1 => rs.pop().flatten().ok_or(Error::NotFound { oid }),
                other => Err(unexpected("one record", &other)),
            }
        }
        .boxed()
    }

    /// The record a conflict reply carried for `oid`, if nothing newer than what that
    /// reply knew has been heard of since (so it is still the newest this client can
    /// know of). Used once.
    fn stashed(&self, oid: Oid) -> Option<Loaded> {
        let mut st = self.inner.mux.state();
        // A closed client answers nothing, not even from what it holds.
        if st.stash.is_empty() || st.closed {
            return None;
        }
        if st.known_last != st.stash_as_of {
            st.stash.clear();
            return None;
        }
        let l = st.stash.remove(&oid)?;
        self.inner.merge_records_used.fetch_add(1, Ordering::Relaxed);
        Some(l)
    }
}

/// A connector for `address`.
pub fn connector(address: Address) -> Connector {
    Arc::new(move || {
        let address = address.clone();
        async move {
            match address {
                Address::Tcp(a) => {
                    let s = async_net::TcpStream::connect(a.as_str()).await?;
                    s.set_nodelay(true)?;
                    Ok(BoxedStream(Box::new(s)))
                }
                #[cfg(unix)]
                Address::Unix(p) => Ok(BoxedStream(Box::new(
                    async_net::unix::UnixStream::connect(p).await?,
                ))),
                #[cfg(not(unix))]
                Address::Unix(_) => Err(std::io::Error::other("Unix sockets need a Unix system")),
            }
        }
        .boxed()
    })
}

fn unexpected(wanted: &str, got: &Reply) -> Error {
    Error::Protocol {
        reason: format!("expected {wanted}, the server answered {got:?}"),
    }
}

impl Storage for ClientStorage {
    fn load(&self, oid: Oid) -> BoxFuture<'_, Result<Loaded>> {
        if let Some(l) = self.stashed(oid) {
            return futures::future::ready(Ok(l)).boxed();
        }
        self.one(oid, None)
    }

    fn load_at(&self, oid: Oid, snapshot: Tid) -> BoxFuture<'_, Result<Loaded>> {
        self.one(oid, Some(snapshot))
    }

    fn load_many(&self, oids: Vec<Oid>, snapshot: Option<Tid>) -> BoxFuture<'_, Result<Vec<Option<Loaded>>>> {
        self.records(oids, snapshot)
    }

    fn new_oids(&self, n: u64) -> BoxFuture<'_, Result<Vec<Oid>>> {
        let n32 = u32::try_from(n);
        let this = self.clone();
        async move {
            let n = n32.map_err(|_| Error::Invalid(format!("{n} oids at once is too many")))?;
            match this.call(Request::NewOids { n }).await? {
                Reply::Oids(o) if o.len() == n as usize => Ok(o),
                other => Err(unexpected("oids", &other)),
            }
        }
        .boxed()
    }

    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<Committed>> {
        let reply = self.call(Request::Commit {
            req,
            want_records: self.inner.options.conflict_records,
        });
        let mux = self.inner.mux.clone();
        async move {
            match reply.await? {
                Reply::Committed(c) => Ok(c),
                Reply::Conflict { last, oids, records } => {
                    if !records.is_empty() {
                        let mut st = mux.state();
                        if st.stash_as_of != last {
                            st.stash.clear();
                            st.stash_as_of = last;
                        }
                        for l in records {
                            st.stash.insert(l.record.oid, l);
                        }
                    }
                    Err(Error::Conflict { oids })
                }
                other => Err(unexpected("a commit result", &other)),
            }
        }
        .boxed()
    }

    fn changes_since(&self, since: Tid) -> BoxFuture<'_, Result<Changes>> {
        let reply = self.call(Request::ChangesSince { since });
        async move {
            match reply.await? {
                Reply::Changes(c) => Ok(c),
                other => Err(unexpected("changes", &other)),
            }
        }
        .boxed()
    }

    fn last_tid(&self) -> BoxFuture<'_, Result<Tid>> {
        let reply = self.call(Request::LastTid);
        async move {
            match reply.await? {
                Reply::Tid(t) => Ok(t),
                other => Err(unexpected("a tid", &other)),
            }
        }
        .boxed()
    }

    /// Others commit through the same server, so there is always something to catch
    /// up with: this asks the server for its last tid (one round trip).
    fn catch_up(&self) -> BoxFuture<'_, Result<Option<Tid>>> {
        let t = self.last_tid();
        async move { t.await.map(Some) }.boxed()
    }

    fn transactions(&self, after: Tid) -> BoxFuture<'_, Result<Vec<TxInfo>>> {
        let this = self.clone();
        async move {
            let mut out: Vec<TxInfo> = Vec::new();
            let mut from = after;
            loop {
                match this
                    .call(Request::Transactions {
                        after: from,
                        max: TX_PAGE,
                    })
                    .await?
                {
                    Reply::Transactions { txs, more } => {
                        let last = txs.last().map(|t| t.tid);
                        out.extend(txs);
                        match last {
                            Some(t) if more => from = t,
                            _ => return Ok(out),
                        }
                    }
                    other => return Err(unexpected("transactions", &other)),
                }
            }
        }
        .boxed()
    }

    fn tid_at_time(&self, timestamp: u64) -> BoxFuture<'_, Result<Tid>> {
        let reply = self.call(Request::TidAtTime { timestamp });
        async move {
            match reply.await? {
                Reply::Tid(t) => Ok(t),
                other => Err(unexpected("a tid", &other)),
            }
        }
        .boxed()
    }

    fn scan(&self) -> BoxStream<'static, Result<Loaded>> {
        let this = self.clone();
        let state = (this, 0u32, Vec::<Loaded>::new().into_iter(), false);
        futures::stream::unfold(Some(state), |s| async move {
            let (this, cursor, mut ready, done) = s?;
            if let Some(l) = ready.next() {
                return Some((Ok(l), Some((this, cursor, ready, done))));
            }
            if done {
                return None;
            }
            match this
                .call(Request::ScanNext {
                    cursor,
                    max: SCAN_PAGE,
                })
                .await
            {
                Ok(Reply::ScanPage {
                    cursor,
                    done,
                    records,
                }) => {
                    let mut ready = records.into_iter();
                    let first = ready.next()?;
                    Some((Ok(first), Some((this, cursor, ready, done))))
                }
                Ok(other) => Some((Err(unexpected("a scan page", &other)), None)),
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }

    /// Pins `snapshot` on the server (protocol version 2's PIN), so that a pack there,
    /// by this client or another, keeps its versions while the pin lives. The request is
    /// queued at once, ahead of this client's later requests, and not waited for; the
    /// pin lasts while the connection does (after a reconnect, a pack may take the
    /// snapshot, and its reads then fail with
    /// [`Error::HistoryGone`](crate::Error::HistoryGone)), as it does if a pack by
    /// another client came first. A snapshot before a pack point this client has heard
    /// of (its own packs, such errors) is refused with that error at once. Dropping
    /// the pin queues an UNPIN.
    fn pin(&self, snapshot: Tid) -> Result<crate::journal::SnapshotPin> {
        let from = Tid(self.inner.history_from.load(std::sync::atomic::Ordering::Acquire));
        if snapshot < from {
            return Err(Error::HistoryGone { oldest: from });
        }
        // Without a connection now there is nothing to pin on; the next request connects.
        let Some(pending) = self.inner.mux.register(&Request::Pin { snapshot })? else {
            return Ok(crate::journal::SnapshotPin::none());
        };
        // The answer is not needed: the frame stays queued and goes out ahead of the
        // next request, which is what orders it before a pack.
        drop(pending);
        let mux = Arc::downgrade(&self.inner.mux);
        Ok(crate::journal::SnapshotPin::on_release(move || {
            if let Some(mux) = mux.upgrade() {
                // A closed client or a lost link has no pins left to let go.
                if let Ok(Some(pending)) = mux.register(&Request::Unpin { snapshot }) {
                    drop(pending);
                }
            }
        }))
    }

    /// Packs the server's storage (protocol version 2's PACK). The options' progress
    /// callback is not called: the progress stays on the server.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops waiting for the answer, not the pack on the server.
    fn pack(&self, opts: crate::journal::PackOptions) -> BoxFuture<'_, Result<crate::journal::PackReport>> {
        let reply = self.call(Request::Pack {
            keep: opts.keep,
            dry_run: opts.dry_run,
            force: opts.force,
        });
        async move {
            match reply.await? {
                Reply::Packed(r) => Ok(r),
                other => Err(unexpected("a pack report", &other)),
            }
        }
        .boxed()
    }

    fn changes(&self) -> BoxStream<'static, Change> {
        let sub = self.inner.mux.feed.subscribe();
        // Subscribing is queued on the link now; with no link, the next connect does it.
        let _ = self.subscribe_link();
        Pushed {
            sub,
            client: self.clone(),
            waker: None,
            reconnect: None,
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        let mux = self.inner.mux.clone();
        async move {
            let gen_link = {
                let mut st = mux.state();
                st.closed = true;
                st.stash.clear();
                st.link.take()
            };
            drop(gen_link);
            Ok(())
        }
        .boxed()
    }
}

/// The change feed of a client: pushed events, and while waiting for them, a hand in
/// driving the connection (nobody else may be reading it) and in reconnecting when it
/// was lost (pushes resume once connected again, after a `Lagged` event).
struct Pushed {
    sub: BoxStream<'static, Change>,
    client: ClientStorage,
    waker: Option<std::task::Waker>,
    reconnect: Option<BoxFuture<'static, ()>>,
}

impl Stream for Pushed {
    type Item = Change;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        loop {
            if let Poll::Ready(c) = self.sub.poll_next_unpin(cx) {
                return Poll::Ready(c);
            }
            if let Some(r) = self.reconnect.as_mut() {
                match r.poll_unpin(cx) {
                    Poll::Ready(()) => self.reconnect = None,
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                self.waker = Some(cx.waker().clone());
            }
            let Some((link, may_read)) = self.client.inner.mux.wait_as_driver(cx.waker()) else {
                if self.client.inner.mux.state().closed {
                    return Poll::Ready(None);
                }
                let client = self.client.clone();
                self.reconnect = Some(Box::pin(async move {
                    if client.ensure_link().await.is_err() {
                        // The server is not back yet: try again in a while.
                        async_io::Timer::after(std::time::Duration::from_millis(200)).await;
                    }
                }));
                continue;
            };
            if !self.client.inner.mux.drive(&link, cx, may_read) {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Pushed {
    fn drop(&mut self) {
        // A driver that leaves must not leave the connection without one.
        if let Some(w) = &self.waker {
            self.client.inner.mux.forget_driver(w);
        }
    }
}
