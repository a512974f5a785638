//! The change feed: every committed transaction, pushed to whoever subscribed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::stream::{BoxStream, Stream};
use futures::task::AtomicWaker;
use futures::StreamExt;

use crate::record::{Oid, Tid, TxInfo};

/// One event of a storage's change feed ([`Storage::changes`](super::Storage::changes)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A transaction was committed.
    Committed {
        /// Its id.
        tid: Tid,
        /// Its commit time, microseconds since the Unix epoch.
        timestamp: u64,
        /// The oids it wrote, ascending.
        oids: Vec<Oid>,
    },
    /// The subscriber fell behind and events were dropped rather than slow the
    /// committers down. Everything after `resume_after` may have been missed: ask
    /// [`Storage::changes_since`](super::Storage::changes_since) with it, then carry on
    /// reading the feed (which goes on with later commits).
    Lagged {
        /// The last transaction delivered before the gap.
        resume_after: Tid,
    },
}

/// How many events a subscriber may have waiting before it is told it lagged.
pub const FEED_CAPACITY: usize = 1024;

/// What a subscriber and the publisher share besides the queue: whether events were
/// dropped (and after which tid), and how to wake the subscriber to say so.
#[derive(Default)]
struct Lag {
    after: Mutex<Option<Tid>>,
    waker: AtomicWaker,
}

impl Lag {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Tid>> {
        // An `Option` is never left half-written, so a poisoned lock is still sound.
        crate::sync::lock(&self.after)
    }
}

struct Subscriber {
    tx: mpsc::Sender<Change>,
    lag: Arc<Lag>,
    /// The last tid delivered.
    last: Tid,
}

/// A subscription: the queued events first, then (once they are read) news of any gap.
struct Subscription {
    rx: mpsc::Receiver<Change>,
    lag: Arc<Lag>,
}

impl Stream for Subscription {
    type Item = Change;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        match self.rx.poll_next_unpin(cx) {
            Poll::Ready(Some(e)) => return Poll::Ready(Some(e)),
            Poll::Ready(None) | Poll::Pending => {}
        }
        // Register before looking, so a gap reported right after the look still wakes us.
        self.lag.waker.register(cx.waker());
        if let Some(resume_after) = self.lag.lock().take() {
            return Poll::Ready(Some(Change::Lagged { resume_after }));
        }
        match self.rx.poll_next_unpin(cx) {
            Poll::Ready(e) => Poll::Ready(e),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Fan-out of committed transactions to subscribers, never waiting for any of them.
#[derive(Default)]
pub(crate) struct Feed {
    subscribers: Mutex<Vec<Subscriber>>,
    /// The last tid announced. Announcing holds this lock throughout, so events go out
    /// in tid order whichever thread finds them.
    announced: Mutex<Tid>,
}

impl Feed {
    /// A feed that announces transactions after `tid`.
    pub(crate) fn starting_after(tid: Tid) -> Feed {
        Feed {
            subscribers: Mutex::default(),
            announced: Mutex::new(tid),
        }
    }

    /// Announces the transactions after the last one announced, up to `last`, as
    /// `fetch(after)` lists them. If they cannot be listed, subscribers are told they
    /// lagged, with the tid to resume after.
    pub(crate) fn announce_up_to(
        &self,
        last: Tid,
        fetch: impl FnOnce(Tid) -> crate::error::Result<Vec<TxInfo>>,
    ) {
        let mut at = crate::sync::lock(&self.announced);
        if last <= *at {
            return;
        }
        let nobody = crate::sync::lock(&self.subscribers).is_empty();
        if nobody {
            *at = last;
            return;
        }
        match fetch(*at) {
            Ok(txs) => {
                for tx in txs {
                    if tx.tid > *at && tx.tid <= last {
                        self.publish(tx.tid, tx.timestamp, &tx.oids);
                        *at = tx.tid;
                    }
                }
            }
            Err(_) => {
                let subs = crate::sync::lock(&self.subscribers);
                for s in subs.iter() {
                    let mut lag = s.lag.lock();
                    if lag.is_none() {
                        *lag = Some(*at);
                        s.lag.waker.wake();
                    }
                }
                *at = last;
            }
        }
    }

    /// A new subscription to the commits published from now on.
    pub(crate) fn subscribe(&self) -> BoxStream<'static, Change> {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        let lag = Arc::new(Lag::default());
        // The list only ever has whole entries pushed or removed, so a poisoned lock is
        // still sound.
        let mut subs = crate::sync::lock(&self.subscribers);
        // `last` is only reported after a delivery failed, and the first event always
        // fits in the empty queue, so it is set by then.
        subs.push(Subscriber {
            tx,
            lag: lag.clone(),
            last: Tid::ZERO,
        });
        Subscription { rx, lag }.boxed()
    }

    /// Tells every subscriber that events after `resume_after` may have been missed
    /// (a network client lost its connection, and with it the pushed events).
    #[cfg(feature = "server")]
    pub(crate) fn lagged(&self, resume_after: Tid) {
        let subs = crate::sync::lock(&self.subscribers);
        for s in subs.iter() {
            let mut lag = s.lag.lock();
            if lag.is_none() {
                *lag = Some(resume_after);
                s.lag.waker.wake();
            }
        }
    }

    /// Whether anyone subscribed (and has not gone away since the last publish).
    #[cfg(feature = "server")]
    pub(crate) fn has_subscribers(&self) -> bool {
        !crate::sync::lock(&self.subscribers).is_empty()
    }

    /// Tells every subscriber about a commit. For a subscriber whose queue is full the
    /// event is dropped, and so is every later one until it has read its queue and
    /// learnt of the gap (so nothing arrives out of order); subscribers that went away
    /// are forgotten.
    pub(crate) fn publish(&self, tid: Tid, timestamp: u64, oids: &[Oid]) {
        let mut subs = crate::sync::lock(&self.subscribers);
        subs.retain_mut(|s| {
            if s.lag.lock().is_some() {
                return !s.tx.is_closed();
            }
            let event = Change::Committed {
                tid,
                timestamp,
                oids: oids.to_vec(),
            };
            match s.tx.try_send(event) {
                Ok(()) => {
                    s.last = tid;
                    true
                }
                Err(e) if e.is_disconnected() => false,
                Err(_) => {
                    *s.lag.lock() = Some(s.last);
                    s.lag.waker.wake();
                    true
                }
            }
        });
    }
}
