//! One connection shared by many tasks: requests are written in the order they are
//! made, replies are matched to their requests by id, and no background task is
//! needed. Whichever waiting task is polled writes what is queued; one waiting task at
//! a time reads and hands out what has arrived (the reader). A reader or writer that
//! finishes or gives up while others wait wakes one of them to take over, so the
//! connection never stalls for want of a driver. That keeps the client independent of
//! any runtime. A request's first poll lets the other ready tasks run when others are
//! out, so that requests made together go out in one write.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use futures::AsyncReadExt;

use crate::error::{Error, Result};
use crate::protocol::v2::{self, Reply, Request};
use crate::protocol::PROTOCOL_V2;
use crate::record::{Loaded, OidHasher, OidMap, Tid};
use crate::server::io::Input;
use crate::server::BoxedStream;
use crate::storage::{Change, Feed};

/// The reading half of a connection and what it has read.
struct ReadSide {
    stream: ReadHalf<BoxedStream>,
    input: Input,
    /// Replies read and not yet handed out.
    replies: Vec<(u32, Reply)>,
}

/// The writing half and the bytes it is writing.
struct WriteSide {
    stream: WriteHalf<BoxedStream>,
    buf: Vec<u8>,
    pos: usize,
}

/// One connection (a "generation": a reconnect makes a new one).
pub(crate) struct Link {
    gen: u64,
    read: Mutex<ReadSide>,
    write: Mutex<WriteSide>,
}

enum Slot {
    Waiting(Option<Waker>),
    Ready(Result<Reply>),
}

/// What the tasks sharing a client share, behind one lock.
pub(crate) struct State {
    pub(crate) link: Option<Arc<Link>>,
    next_gen: u64,
    /// Frames waiting to be written on the current link.
    out: Vec<u8>,
    slots: HashMap<u32, Slot, BuildHasherDefault<OidHasher>>,
    next_id: u32,
    pub(crate) closed: bool,
    /// Tasks that drive the connection while waiting for pushed changes.
    drivers: Vec<Waker>,
    /// The task whose waker the socket's read side holds, if one does. Only it reads:
    /// the stream keeps one waker and wakes the one it replaces, so tasks that all
    /// tried to read would wake each other in turn, each with a read that finds
    /// nothing and a new registration.
    reader: Option<Waker>,
    /// The task whose waker the socket's write side holds, while queued bytes wait
    /// for room in it.
    writer: Option<Waker>,
    /// The newest tid any reply has mentioned.
    pub(crate) known_last: Tid,
    /// Committed records a conflict reply carried, newest as of `stash_as_of`.
    pub(crate) stash: OidMap<Loaded>,
    pub(crate) stash_as_of: Tid,
    /// Whether the server pushes changes on the current link.
    pub(crate) subscribed: bool,
    /// The last pushed transaction.
    pub(crate) pushed: Tid,
}

/// The shared core of a client.
pub(crate) struct Mux {
    state: Mutex<State>,
    pub(crate) feed: Feed,
    pub(crate) max_frame: usize,
    pub(crate) received: AtomicU64,
}

impl Mux {
    pub(crate) fn new(max_frame: usize) -> Mux {
        Mux {
            state: Mutex::new(State {
                link: None,
                next_gen: 1,
                out: Vec::new(),
                slots: HashMap::default(),
                next_id: 1,
                closed: false,
                drivers: Vec::new(),
                reader: None,
                writer: None,
                known_last: Tid::ZERO,
                stash: OidMap::default(),
                stash_as_of: Tid::ZERO,
                subscribed: false,
                pushed: Tid::ZERO,
            }),
            feed: Feed::default(),
            max_frame,
            received: AtomicU64::new(0),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // Every update below finishes before anything can panic, so a poisoned lock
        // still guards consistent state.
        crate::sync::lock(&self.state)
    }

    /// Makes `stream` (just connected) the current link, after the v2 handshake.
    pub(crate) async fn attach(&self, mut stream: BoxedStream) -> Result<()> {
        let mut hello = vec![b'V'];
        hello.extend_from_slice(&PROTOCOL_V2.to_be_bytes());
        stream.write_all(&hello).await?;
        stream.flush().await?;
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).await?;
        let v = u32::from_be_bytes(answer);
        if v != PROTOCOL_V2 {
            return Err(Error::Protocol {
                reason: format!("the server answered protocol version {v} to version {PROTOCOL_V2}"),
            });
        }
        let (r, w) = stream.split();
        let mut st = self.state();
        if st.closed {
            return Err(Error::Closed);
        }
        let gen = st.next_gen;
        st.next_gen += 1;
        st.link = Some(Arc::new(Link {
            gen,
            read: Mutex::new(ReadSide {
                stream: r,
                input: Input::new(),
                replies: Vec::new(),
            }),
            write: Mutex::new(WriteSide {
                stream: w,
                buf: Vec::new(),
                pos: 0,
            }),
        }));
        st.out.clear();
        st.reader = None;
        st.writer = None;
        st.subscribed = false;
        Ok(())
    }

    /// Queues a request on the current link; `None` if there is no link.
    pub(crate) fn register(self: &Arc<Self>, req: &Request) -> Result<Option<Pending>> {
        let mut st = self.state();
        if st.closed {
            return Err(Error::Closed);
        }
        let Some(link) = st.link.clone() else {
            return Ok(None);
        };
        let mut id = st.next_id;
        while id == v2::PUSH_ID || st.slots.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        st.next_id = id.wrapping_add(1);
        v2::encode_request(id, req, &mut st.out)?;
        st.slots.insert(id, Slot::Waiting(None));
        Ok(Some(Pending {
            mux: self.clone(),
            link,
            id,
            finished: false,
            yielded: false,
            waker: None,
        }))
    }

    /// Ends the link `gen` (if it is still the current one): every request on it fails
    /// with `Disconnected`, and feed subscribers learn they may have missed events.
    pub(crate) fn break_link(&self, gen: u64, reason: &str) {
        let mut st = self.state();
        if st.link.as_ref().is_none_or(|l| l.gen != gen) {
            return;
        }
        log::debug!("connection to the server lost: {reason}");
        st.link = None;
        st.out.clear();
        st.reader = None;
        st.writer = None;
        // Only requests still waiting fail: a reply that arrived before the end (the
        // server answers what it took before it closes) stays for its task to take.
        for slot in st.slots.values_mut() {
            if matches!(slot, Slot::Waiting(_)) {
                if let Slot::Waiting(Some(w)) = std::mem::replace(
                    slot,
                    Slot::Ready(Err(Error::Disconnected {
                        reason: reason.to_string(),
                    })),
                ) {
                    w.wake();
                }
            }
        }
        if st.subscribed {
            self.feed.lagged(st.pushed);
        }
        st.subscribed = false;
        for w in st.drivers.drain(..) {
            w.wake();
        }
    }

    /// Wakes one task that waits, so that it takes over driving the connection.
    fn hand_off(st: &mut State, except: u32) {
        for (id, slot) in st.slots.iter_mut() {
            if *id == except {
                continue;
            }
            if let Slot::Waiting(w) = slot {
                if let Some(w) = w.take() {
                    w.wake();
                    return;
                }
            }
        }
        if let Some(w) = st.drivers.pop() {
            w.wake();
        }
    }

    /// Writes what is queued and reads what has arrived, as far as the socket allows
    /// without waiting; true if anything moved. Errors end the link.
    /// `may_read` says whether the task polling may read (see [`State::may_read`]).
    pub(crate) fn drive(&self, link: &Link, cx: &mut Context<'_>, may_read: bool) -> bool {
        let mut progress = false;
        if let Ok(mut w) = link.write.try_lock() {
            match self.drive_write(&mut w, cx) {
                Ok(p) => progress |= p,
                Err(e) => {
                    drop(w);
                    self.break_link(link.gen, &why(&e));
                    return true;
                }
            }
        }
        if !may_read {
            return progress;
        }
        if let Ok(mut r) = link.read.try_lock() {
            let read = self.drive_read(&mut r, cx);
            // What arrived is handed out under one lock, however many replies it is.
            let mut st = self.state();
            let mut wake = Vec::new();
            for (id, reply) in r.replies.drain(..) {
                wake.extend(Mux::deliver(&self.feed, &mut st, id, reply));
            }
            match read {
                Ok(p) => {
                    // It read until the stream had nothing more, so the stream now
                    // holds this task's waker.
                    if st.reader.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                        st.reader = Some(cx.waker().clone());
                    }
                    drop(st);
                    wake.into_iter().for_each(Waker::wake);
                    progress |= p
                }
                Err(e) => {
                    drop(st);
                    drop(r);
                    wake.into_iter().for_each(Waker::wake);
                    self.break_link(link.gen, &why(&e));
                    return true;
                }
            }
        }
        progress
    }

    fn drive_write(&self, w: &mut WriteSide, cx: &mut Context<'_>) -> Result<bool> {
        let mut progress = false;
        loop {
            if w.pos == w.buf.len() {
                w.buf.clear();
                w.pos = 0;
                let mut st = self.state();
                std::mem::swap(&mut w.buf, &mut st.out);
                if w.buf.is_empty() {
                    st.writer = None;
                    drop(st);
                    if let Poll::Ready(r) = Pin::new(&mut w.stream).poll_flush(cx) {
                        r?;
                    }
                    return Ok(progress);
                }
            }
            let WriteSide { stream, buf, pos } = w;
            match Pin::new(stream).poll_write(cx, &buf[*pos..]) {
                Poll::Ready(Ok(0)) => {
                    return Err(Error::Disconnected {
                        reason: "the server stopped taking requests".into(),
                    })
                }
                Poll::Ready(Ok(n)) => {
                    *pos += n;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => {
                    let mut st = self.state();
                    if st.writer.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                        st.writer = Some(cx.waker().clone());
                    }
                    return Ok(progress);
                }
            }
        }
    }

    fn drive_read(&self, r: &mut ReadSide, cx: &mut Context<'_>) -> Result<bool> {
        let mut progress = false;
        loop {
            while let Some((frame, used)) = v2::split_frame(r.input.data(), self.max_frame)? {
                let reply = v2::decode_reply(&frame)?;
                let id = frame.id;
                r.input.consume(used);
                r.replies.push((id, reply));
                progress = true;
            }
            let ReadSide { stream, input, .. } = r;
            match input.poll_fill(cx, stream, &self.received) {
                Poll::Ready(Ok(0)) => {
                    return Err(Error::Disconnected {
                        reason: "the server closed the connection".into(),
                    })
                }
                Poll::Ready(Ok(_)) => progress = true,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => return Ok(progress),
            }
        }
    }

    /// Hands a reply to its request (or a push to the feed); returns the task to wake.
    fn deliver(feed: &Feed, st: &mut State, id: u32, reply: Reply) -> Option<Waker> {
        if let Some(t) = mentioned_tid(&reply) {
            st.known_last = st.known_last.max(t);
        }
        if id == v2::PUSH_ID {
            if let Reply::Pushed(change) = reply {
                match change {
                    Change::Committed { tid, timestamp, oids } => {
                        st.pushed = st.pushed.max(tid);
                        feed.publish(tid, timestamp, &oids);
                    }
                    Change::Lagged { resume_after } => feed.lagged(resume_after),
                }
            }
            return None;
        }
        // A reply nobody waits for any more (its future was dropped) is dropped too.
        let slot = st.slots.get_mut(&id)?;
        match std::mem::replace(slot, Slot::Ready(Ok(reply))) {
            Slot::Waiting(w) => w,
            Slot::Ready(_) => None,
        }
    }

    /// Registers a task waiting for pushed changes as a driver: the current link, and
    /// whether the task may read it.
    pub(crate) fn wait_as_driver(&self, waker: &Waker) -> Option<(Arc<Link>, bool)> {
        let mut st = self.state();
        if !st.drivers.iter().any(|w| w.will_wake(waker)) {
            st.drivers.push(waker.clone());
        }
        let may_read = st.may_read(waker);
        st.link.clone().map(|l| (l, may_read))
    }

    /// Forgets a driver that stopped waiting.
    pub(crate) fn forget_driver(&self, waker: &Waker) {
        let mut st = self.state();
        st.drivers.retain(|w| !w.will_wake(waker));
        st.leave(Some(waker));
        Mux::hand_off(&mut st, v2::PUSH_ID);
    }
}

impl State {
    /// Whether the task `waker` wakes may read the socket: nobody else holds the
    /// reader role.
    fn may_read(&self, waker: &Waker) -> bool {
        self.reader.as_ref().is_none_or(|w| w.will_wake(waker))
    }

    /// A task `waker` wakes stops waiting: true if the connection needs another task
    /// to drive it now (this one read or wrote for the others, or nobody reads yet).
    /// Otherwise the reader goes on, and waking a task would only cost a poll.
    fn leave(&mut self, waker: Option<&Waker>) -> bool {
        let mut was_driver = self.reader.is_none();
        if let Some(waker) = waker {
            if self.writer.as_ref().is_some_and(|w| w.will_wake(waker)) {
                self.writer = None;
                was_driver = true;
            }
            if self.reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
                self.reader = None;
                was_driver = true;
            }
        }
        was_driver
    }
}

/// The tid a reply reports as known to the server, if any.
fn mentioned_tid(reply: &Reply) -> Option<Tid> {
    match reply {
        Reply::Committed(c) => Some(c.tid),
        Reply::Conflict { last, .. } => Some(*last),
        Reply::Changes(c) => Some(c.tid),
        Reply::Tid(t) => Some(*t),
        Reply::Transactions { txs, .. } => txs.last().map(|t| t.tid),
        Reply::Pushed(Change::Committed { tid, .. }) => Some(*tid),
        _ => None,
    }
}

/// A request on its way: resolves to its reply (or the link's failure).
pub(crate) struct Pending {
    mux: Arc<Mux>,
    link: Arc<Link>,
    id: u32,
    finished: bool,
    /// Whether its first wait let the other ready tasks run first (see `poll`).
    yielded: bool,
    /// The waker of its last poll: a task that leaves gives up the reader role.
    waker: Option<Waker>,
}

impl std::future::Future for Pending {
    type Output = Result<Reply>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Reply>> {
        let this = &mut *self;
        if this.waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            this.waker = Some(cx.waker().clone());
        }
        loop {
            let may_read = {
                let mut st = this.mux.state();
                match st.slots.remove(&this.id) {
                    Some(Slot::Waiting(_)) => {
                        st.slots.insert(this.id, Slot::Waiting(Some(cx.waker().clone())));
                    }
                    Some(Slot::Ready(r)) => {
                        if st.leave(Some(cx.waker())) {
                            Mux::hand_off(&mut st, this.id);
                        }
                        drop(st);
                        this.finished = true;
                        return Poll::Ready(r);
                    }
                    None => {
                        drop(st);
                        this.finished = true;
                        return Poll::Ready(Err(Error::Disconnected {
                            reason: "the request was lost with its connection".into(),
                        }));
                    }
                }
                if !this.yielded && st.slots.len() > 1 {
                    // Other requests are out, so other tasks are likely ready to queue
                    // theirs (the replies that woke them came in one read): letting
                    // them run first sends all of them in one write instead of one
                    // write each.
                    this.yielded = true;
                    drop(st);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                st.may_read(cx.waker())
            };
            if !this.mux.drive(&this.link, cx, may_read) {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut st = self.mux.state();
        st.slots.remove(&self.id);
        if st.leave(self.waker.as_ref()) {
            Mux::hand_off(&mut st, self.id);
        }
    }
}

/// Connects through `connect` and attaches the stream.
pub(crate) async fn reconnect<F>(mux: &Mux, connect: F) -> Result<()>
where
    F: std::future::Future<Output = std::io::Result<BoxedStream>>,
{
    let stream = connect.await.map_err(|e| Error::Disconnected {
        reason: format!("cannot connect: {e}"),
    })?;
    mux.attach(stream).await
}

/// Why a link broke, for the `Disconnected` error of the requests on it (without
/// wrapping a `Disconnected` in another).
fn why(e: &Error) -> String {
    match e {
        Error::Disconnected { reason } => reason.clone(),
        other => other.to_string(),
    }
}
