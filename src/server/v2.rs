//! A session speaking durus's own protocol (v2) with one Rust client: requests are
//! pipelined, each handled as its own future, and replies go out as they are ready.
//!
//! One poll loop reads frames, starts their handlers, collects finished replies and
//! pushed changes into the output buffer and writes it, so that a slow request (a
//! commit waiting for its sync, a large scan page) never holds up the others. The
//! loop stops reading while `max_in_flight` requests are pending or the output buffer
//! is full, which bounds the memory one connection can make the server hold.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use futures::io::{AsyncRead, AsyncWrite};
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{FutureExt, StreamExt};

use super::io::{Conn, Ended};
use super::options::Peer;
use super::shared::Shared;
use crate::error::{Error, Result};
use crate::protocol::v2::{self, Reply, Request};
use crate::record::{Changes, CommitRequest, Loaded, Oid, Record, Tid};
use crate::storage::Change;

/// Output bytes past which the session stops taking requests and pushes until the
/// client has read some.
const OUT_LIMIT: usize = 8 << 20;
/// The most transactions in one reply.
const MAX_TXS: usize = 10_000;
/// The most records in one scan page.
const MAX_SCAN: usize = 10_000;
/// Open scans per connection.
const MAX_SCANS: usize = 16;
/// Pinned snapshots per connection (a `Db` pins one per live transaction).
const MAX_PINS: usize = 4096;

type Scan = Arc<async_lock::Mutex<BoxStream<'static, Result<Loaded>>>>;

/// What a finished handler hands back: a reply frame, and maybe a scan to forget.
struct Done {
    frame: Vec<u8>,
    forget_scan: Option<u32>,
}

struct Session<'a, 'c, S> {
    conn: &'c mut Conn<S>,
    shared: &'a Shared,
    peer: &'a Peer,
    in_flight: FuturesUnordered<BoxFuture<'a, Result<Done>>>,
    out: Vec<u8>,
    written: usize,
    feed: Option<BoxStream<'static, Change>>,
    scans: HashMap<u32, Scan>,
    next_scan: u32,
    /// The snapshots this client pinned, each as often as it pinned it; they go with
    /// the session.
    pins: HashMap<Tid, Vec<crate::journal::SnapshotPin>>,
    pinned: usize,
    stopping: Option<Ended>,
    /// Resolves when the server shuts down (and wakes the session for it).
    stop: BoxFuture<'a, ()>,
    timer: async_io::Timer,
    /// When the frame now arriving must be complete.
    frame_deadline: Option<Instant>,
    /// When the client must have taken some output.
    write_deadline: Option<Instant>,
}

/// Serves a v2 client until it leaves, breaks the protocol or the server shuts down.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    conn: &mut Conn<S>,
    shared: &Shared,
    peer: &Peer,
) -> Ended {
    let mut s = Session {
        conn,
        shared,
        peer,
        in_flight: FuturesUnordered::new(),
        out: Vec::new(),
        written: 0,
        feed: None,
        scans: HashMap::new(),
        next_scan: 1,
        pins: HashMap::new(),
        pinned: 0,
        stopping: None,
        stop: Box::pin(shared.shutdown.wait()),
        timer: async_io::Timer::never(),
        frame_deadline: None,
        write_deadline: None,
    };
    futures::future::poll_fn(|cx| s.poll(cx)).await
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin + Send> Session<'a, '_, S> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        loop {
            let mut progress = false;
            if self.stopping.is_none() && self.stop.poll_unpin(cx).is_ready() {
                self.stopping = Some(Ended::Shutdown);
            }
            if let Err(e) = self.take_requests(cx, &mut progress) {
                return Poll::Ready(e);
            }
            while let Poll::Ready(Some(done)) = self.in_flight.poll_next_unpin(cx) {
                progress = true;
                match done {
                    Ok(d) => {
                        self.out.extend_from_slice(&d.frame);
                        if let Some(c) = d.forget_scan {
                            self.scans.remove(&c);
                        }
                    }
                    Err(e) => return Poll::Ready(Ended::Failed(e)),
                }
            }
            self.take_pushes(cx, &mut progress);
            match self.write_out(cx) {
                Ok(wrote) => progress |= wrote,
                Err(e) => return Poll::Ready(e),
            }
            if let Some(e) = self.check_deadlines(cx) {
                return Poll::Ready(e);
            }
            if self.stopping.is_some() && self.in_flight.is_empty() && self.out.is_empty() {
                return Poll::Ready(self.stopping.take().unwrap_or(Ended::Closed));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Reads and starts requests while there is room for them.
    fn take_requests(&mut self, cx: &mut Context<'_>, progress: &mut bool) -> std::result::Result<(), Ended> {
        let max_in_flight = self.shared.options.max_in_flight;
        while self.stopping.is_none() && self.in_flight.len() < max_in_flight && self.out.len() < OUT_LIMIT {
            let found = v2::split_frame(self.conn.input.data(), self.conn.max_frame)?;
            if let Some((frame, used)) = found {
                let req = v2::decode_request(&frame).map_err(Ended::Failed)?;
                let id = frame.id;
                self.conn.input.consume(used);
                self.frame_deadline = None;
                self.start(id, req);
                *progress = true;
                continue;
            }
            if !self.conn.input.data().is_empty() && self.frame_deadline.is_none() {
                self.frame_deadline = Some(Instant::now() + self.conn.timeout);
            }
            let Conn {
                input,
                stream,
                counters,
                ..
            } = &mut *self.conn;
            match input.poll_fill(cx, stream, &counters.bytes_received) {
                Poll::Ready(Ok(0)) => {
                    if !self.conn.input.data().is_empty() {
                        return Err(Ended::Failed(Error::Protocol {
                            reason: "the connection ended in the middle of a frame".into(),
                        }));
                    }
                    // The client is gone: nobody is left to answer.
                    return Err(Ended::Closed);
                }
                Poll::Ready(Ok(_)) => *progress = true,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => break,
            }
        }
        Ok(())
    }

    /// Moves pushed changes into the output, while there is room.
    fn take_pushes(&mut self, cx: &mut Context<'_>, progress: &mut bool) {
        let Some(feed) = self.feed.as_mut() else { return };
        while self.out.len() < OUT_LIMIT {
            match feed.poll_next_unpin(cx) {
                Poll::Ready(Some(change)) => {
                    *progress = true;
                    // A push that cannot be encoded (it cannot fail for sane sizes) is
                    // reported to the client as a gap instead.
                    let mut frame = Vec::new();
                    if v2::encode_reply(v2::PUSH_ID, &Reply::Pushed(change), &mut frame).is_ok() {
                        self.out.extend_from_slice(&frame);
                    }
                }
                Poll::Ready(None) => {
                    self.feed = None;
                    return;
                }
                Poll::Pending => return,
            }
        }
    }

    /// Writes what it can of the output; true if it wrote something.
    fn write_out(&mut self, cx: &mut Context<'_>) -> std::result::Result<bool, Ended> {
        let mut wrote = false;
        while self.written < self.out.len() {
            match Pin::new(&mut self.conn.stream).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Err(Ended::Failed(Error::Protocol {
                        reason: "the connection stopped taking replies".into(),
                    }))
                }
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    wrote = true;
                    self.write_deadline = None;
                    super::stats::add(&self.conn.counters.bytes_sent, n as u64);
                }
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => {
                    if self.write_deadline.is_none() {
                        self.write_deadline = Some(Instant::now() + self.conn.timeout);
                    }
                    return Ok(wrote);
                }
            }
        }
        if self.written > 0 {
            self.out.clear();
            self.written = 0;
        }
        match Pin::new(&mut self.conn.stream).poll_flush(cx) {
            Poll::Ready(Err(e)) => Err(e.into()),
            _ => Ok(wrote),
        }
    }

    fn check_deadlines(&mut self, cx: &mut Context<'_>) -> Option<Ended> {
        let next = match (self.frame_deadline, self.write_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        if Instant::now() >= next {
            let what = if self.write_deadline.is_some_and(|w| w <= next) {
                "the client did not take its replies"
            } else {
                "the rest of a frame did not arrive"
            };
            return Some(Ended::Failed(Error::Protocol {
                reason: format!("{what} within {:?}", self.conn.timeout),
            }));
        }
        self.timer.set_at(next);
        // Registers the waker for the deadline; it has not passed yet.
        let _ = std::future::Future::poll(Pin::new(&mut self.timer), cx);
        None
    }

    /// Starts the handler of one request.
    fn start(&mut self, id: u32, req: Request) {
        let shared = self.shared;
        shared.history.refresh();
        let reply = move |r: Reply| -> Result<Done> {
            let mut frame = Vec::new();
            v2::encode_reply(id, &r, &mut frame)?;
            Ok(Done {
                frame,
                forget_scan: None,
            })
        };
        let fut: BoxFuture<'a, Result<Done>> = match req {
            Request::Commit { req, want_records } => {
                // Started now, so that this connection's commits land in the order sent.
                let landing = shared.commit(req.clone(), self.peer);
                Box::pin(async move {
                    let r = match landing.await {
                        Ok(c) => Reply::Committed(c),
                        Err(Error::Conflict { oids }) if want_records => conflict(shared, &req, oids).await?,
                        Err(Error::Conflict { oids }) => Reply::Conflict {
                            last: shared.history.last(),
                            oids,
                            records: Vec::new(),
                        },
                        Err(e) => Reply::Error(e),
                    };
                    reply(r)
                })
            }
            Request::Subscribe => {
                if self.feed.is_none() {
                    self.feed = Some(shared.storage.changes());
                }
                Box::pin(async move { reply(Reply::Done) })
            }
            Request::ScanNext { cursor, max } => self.scan_next(id, cursor, max),
            Request::ScanClose { cursor } => {
                self.scans.remove(&cursor);
                Box::pin(async move { reply(Reply::Done) })
            }
            // Taken now, in the order sent: a request after the PIN (a PACK) finds it.
            Request::Pin { snapshot } => {
                let r = if self.pinned >= MAX_PINS {
                    Reply::Error(Error::Invalid(format!("more than {MAX_PINS} snapshots pinned")))
                } else {
                    match shared.storage.pin(snapshot) {
                        Ok(pin) => {
                            self.pins.entry(snapshot).or_default().push(pin);
                            self.pinned += 1;
                            Reply::Done
                        }
                        Err(e) => Reply::Error(e),
                    }
                };
                Box::pin(async move { reply(r) })
            }
            Request::Unpin { snapshot } => {
                if let Some(held) = self.pins.get_mut(&snapshot) {
                    held.pop();
                    self.pinned -= 1;
                    if held.is_empty() {
                        self.pins.remove(&snapshot);
                    }
                }
                Box::pin(async move { reply(Reply::Done) })
            }
            other => Box::pin(async move {
                let frame = match answer(shared, id, other).await {
                    Ok(f) => f,
                    Err(e) => {
                        let mut f = Vec::new();
                        v2::encode_reply(id, &Reply::Error(e), &mut f)?;
                        f
                    }
                };
                Ok(Done {
                    frame,
                    forget_scan: None,
                })
            }),
        };
        self.in_flight.push(fut);
    }

    fn scan_next(&mut self, id: u32, cursor: u32, max: u32) -> BoxFuture<'a, Result<Done>> {
        let (cursor, scan) = if cursor == 0 {
            if self.scans.len() >= MAX_SCANS {
                return error_reply(id, Error::Invalid(format!("more than {MAX_SCANS} scans open")));
            }
            let c = self.next_scan;
            self.next_scan = self.next_scan.wrapping_add(1).max(1);
            let scan: Scan = Arc::new(async_lock::Mutex::new(self.shared.storage.scan()));
            self.scans.insert(c, scan.clone());
            (c, scan)
        } else {
            match self.scans.get(&cursor) {
                Some(s) => (cursor, s.clone()),
                None => return error_reply(id, Error::Invalid(format!("no open scan {cursor}"))),
            }
        };
        let max = (max as usize).clamp(1, MAX_SCAN);
        let budget = self.shared.options.max_frame / 2;
        Box::pin(async move {
            let mut stream = scan.lock().await;
            let mut records = Vec::new();
            let mut bytes = 0;
            let mut done = false;
            while records.len() < max && bytes < budget {
                match stream.next().await {
                    Some(Ok(l)) => {
                        bytes += l.record.framed_len() + 16;
                        records.push(l);
                    }
                    Some(Err(e)) => return error_reply(id, e).await,
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            let mut frame = Vec::new();
            v2::encode_reply(
                id,
                &Reply::ScanPage {
                    cursor,
                    done,
                    records,
                },
                &mut frame,
            )?;
            Ok(Done {
                frame,
                forget_scan: done.then_some(cursor),
            })
        })
    }
}

fn error_reply<'a>(id: u32, e: Error) -> BoxFuture<'a, Result<Done>> {
    async move {
        let mut frame = Vec::new();
        v2::encode_reply(id, &Reply::Error(e), &mut frame)?;
        Ok(Done {
            frame,
            forget_scan: None,
        })
    }
    .boxed()
}

/// The conflict reply with the newest records of the conflicting oids the commit
/// wrote (as many as fit in half a frame), for the client to merge with.
async fn conflict(shared: &Shared, req: &CommitRequest, oids: Vec<Oid>) -> Result<Reply> {
    let last = shared.history.last();
    let written: Vec<Oid> = oids
        .iter()
        .copied()
        .filter(|o| req.records.iter().any(|r| r.oid == *o))
        .collect();
    let loaded = shared.load_newest(&written).await?;
    let budget = shared.options.max_frame / 2;
    let mut bytes = 0;
    let mut records = Vec::new();
    for (tid, framed) in loaded.into_iter().flatten() {
        bytes += framed.len() + 16;
        if bytes > budget {
            break;
        }
        records.push(Loaded {
            record: Record::decode(&framed)?,
            tid,
        });
    }
    Ok(Reply::Conflict { last, oids, records })
}

/// The reply frame for a request that needs nothing of the session.
async fn answer(shared: &Shared, id: u32, req: Request) -> Result<Vec<u8>> {
    shared.catch_up().await?;
    let mut frame = Vec::new();
    let reply = match req {
        Request::Load { oid, snapshot } => return records(shared, id, &[oid], snapshot).await,
        Request::LoadMany { oids, snapshot } => return records(shared, id, &oids, snapshot).await,
        Request::NewOids { n } => {
            let n = n as usize;
            if n > shared.options.max_frame / 8 {
                return Err(Error::Invalid(format!("{n} oids do not fit in one reply")));
            }
            Reply::Oids(shared.new_oids(n).await?)
        }
        Request::ChangesSince { since } => {
            let last = shared.history.last();
            if since <= last {
                let inv = shared.invalidations(since, &[]).await?;
                Reply::Changes(Changes {
                    tid: inv.last,
                    oids: inv.oids,
                })
            } else {
                Reply::Changes(shared.storage.changes_since(since).await?)
            }
        }
        Request::LastTid => Reply::Tid(shared.history.last()),
        Request::Transactions { after, max } => {
            let oldest = shared.history.pack_point();
            if after < oldest {
                return Err(Error::HistoryGone { oldest });
            }
            let max = (max as usize).clamp(1, MAX_TXS);
            let (txs, more) = match shared.history.transactions(after, max) {
                Some(t) => t,
                None => {
                    let mut txs = shared.storage.transactions(after).await?;
                    let more = txs.len() > max;
                    txs.truncate(max);
                    (txs, more)
                }
            };
            Reply::Transactions { txs, more }
        }
        Request::TidAtTime { timestamp } => {
            let t = shared.storage.tid_at_time(timestamp).await?;
            // A moment before the pack point, as `transactions` above.
            let oldest = shared.history.pack_point();
            if t < oldest {
                return Err(Error::HistoryGone { oldest });
            }
            Reply::Tid(t)
        }
        // As a v1 `P`: any client may pack; commits of every connection go on meanwhile.
        Request::Pack { keep, dry_run, force } => {
            let opts = crate::journal::PackOptions {
                keep,
                dry_run,
                force,
                ..Default::default()
            };
            Reply::Packed(shared.pack(opts).await?)
        }
        Request::Commit { .. }
        | Request::Subscribe
        | Request::ScanNext { .. }
        | Request::ScanClose { .. }
        | Request::Pin { .. }
        | Request::Unpin { .. } => return Err(Error::Invalid("handled by the session".into())),
    };
    v2::encode_reply(id, &reply, &mut frame)?;
    Ok(frame)
}

/// A records reply: from the cache where a cached version is the one visible at the
/// snapshot, the rest from the storage.
async fn records(shared: &Shared, id: u32, oids: &[Oid], snapshot: Option<Tid>) -> Result<Vec<u8>> {
    let found: Vec<Option<(Tid, Arc<[u8]>)>> = match snapshot {
        None => shared.load_newest(oids).await?,
        Some(s) => {
            let last = shared.history.last();
            let mut found = Vec::with_capacity(oids.len());
            let mut old = Vec::new();
            for (i, &oid) in oids.iter().enumerate() {
                // The newest version is the one visible at `s` if it is not newer than
                // `s` and the history has seen every commit up to `s`.
                match shared.history.cached(oid) {
                    Some((t, f)) if t <= s && s <= last => found.push(Some((t, f))),
                    _ => {
                        found.push(None);
                        old.push(i);
                    }
                }
            }
            if !old.is_empty() {
                let want: Vec<Oid> = old.iter().map(|&i| oids[i]).collect();
                let loaded = if want.len() == 1 {
                    match shared.storage.load_at(want[0], s).await {
                        Ok(l) => vec![Some(l)],
                        Err(Error::NotFound { .. }) => vec![None],
                        Err(e) => return Err(e),
                    }
                } else {
                    shared.storage.load_many(want, Some(s)).await?
                };
                for (i, l) in old.into_iter().zip(loaded) {
                    if let Some(l) = l {
                        found[i] = Some((l.tid, l.record.encode()?.into()));
                    }
                }
            }
            super::stats::add(&shared.counters.loads, oids.len() as u64);
            found
        }
    };
    let mut frame = Vec::new();
    let start = v2::start_frame(&mut frame, v2::kind::RECORDS, id);
    frame.extend_from_slice(&(found.len() as u32).to_be_bytes());
    for f in &found {
        match f {
            Some((tid, framed)) => v2::put_found(&mut frame, *tid, framed)?,
            None => v2::put_missing(&mut frame),
        }
    }
    v2::finish_frame(&mut frame, start)?;
    Ok(frame)
}
