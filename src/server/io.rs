//! Reading whole requests and writing replies on one connection, with a size limit
//! and deadlines, over any `futures::io` stream.

use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::io::{AsyncRead, AsyncWrite};

use super::stats::{add, Counters};
use crate::error::{Error, Result};

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 64 << 10;

/// Buffered input of one connection: bytes read and not yet consumed.
pub(crate) struct Input {
    buf: Vec<u8>,
    /// Valid bytes are `buf[pos..filled]`.
    pos: usize,
    filled: usize,
}

impl Input {
    pub(crate) fn new() -> Input {
        Input {
            buf: Vec::new(),
            pos: 0,
            filled: 0,
        }
    }

    /// The bytes not consumed yet.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// Marks `n` bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.filled);
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        }
    }

    /// Reads once from `stream` into free space (cancel-safe: what was read is kept).
    /// `Ready(Ok(0))` is the end of the stream.
    pub(crate) fn poll_fill<S: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        received: &AtomicU64,
    ) -> Poll<io::Result<usize>> {
        if self.pos > 0 && self.buf.len() - self.filled < READ_CHUNK {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() - self.filled < READ_CHUNK {
            // Only the new part is zeroed, once; the buffer never shrinks below what a
            // frame needed, which is bounded by the frame limit.
            self.buf.resize(self.filled + READ_CHUNK, 0);
        }
        let n = futures::ready!(Pin::new(stream).poll_read(cx, &mut self.buf[self.filled..]))?;
        self.filled += n;
        add(received, n as u64);
        Poll::Ready(Ok(n))
    }
}

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The client closed the connection between requests, or said goodbye.
    Closed,
    /// The server is shutting down.
    Shutdown,
    /// The client broke the protocol, missed a deadline, or the stream failed.
    Failed(Error),
}

impl From<Error> for Ended {
    fn from(e: Error) -> Ended {
        Ended::Failed(e)
    }
}

impl From<io::Error> for Ended {
    fn from(e: io::Error) -> Ended {
        Ended::Failed(Error::from(e))
    }
}

/// One connection's stream and input buffer, for sessions that handle one request at
/// a time (v1).
pub(crate) struct Conn<S> {
    pub(crate) stream: S,
    pub(crate) input: Input,
    pub(crate) counters: Arc<Counters>,
    pub(crate) timeout: Duration,
    pub(crate) max_frame: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Reads until `parse` finds a whole item in the input, and consumes it. While no
    /// byte of the item has arrived the wait is unbounded if `idle` (a client may sit
    /// between requests as long as it likes); from then on the item must be complete
    /// within the timeout. `Ok(None)`: the stream ended before the item's first byte.
    pub(crate) async fn read<T>(
        &mut self,
        idle: bool,
        mut parse: impl FnMut(&[u8], usize) -> Result<Option<(T, usize)>>,
    ) -> std::result::Result<Option<T>, Ended> {
        let mut deadline = (!idle).then(|| Instant::now() + self.timeout);
        loop {
            if let Some((item, used)) = parse(self.input.data(), self.max_frame)? {
                self.input.consume(used);
                return Ok(Some(item));
            }
            if deadline.is_none() && !self.input.data().is_empty() {
                deadline = Some(Instant::now() + self.timeout);
            }
            let started = !self.input.data().is_empty();
            let fill = futures::future::poll_fn(|cx| {
                self.input
                    .poll_fill(cx, &mut self.stream, &self.counters.bytes_received)
            });
            let n = match deadline {
                None => fill.await?,
                Some(at) => match with_deadline(fill, at).await {
                    Some(r) => r?,
                    None => {
                        return Err(Ended::Failed(Error::Protocol {
                            reason: format!("the rest of a request did not arrive within {:?}", self.timeout),
                        }))
                    }
                },
            };
            if n == 0 {
                return match started {
                    false => Ok(None),
                    true => Err(Ended::Failed(Error::Protocol {
                        reason: "the connection ended in the middle of a request".into(),
                    })),
                };
            }
        }
    }

    /// Writes all of `bytes` and flushes, within the timeout.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), Ended> {
        if bytes.is_empty() {
            return Ok(());
        }
        let at = Instant::now() + self.timeout;
        let stream = &mut self.stream;
        let w = async {
            futures::AsyncWriteExt::write_all(stream, bytes).await?;
            futures::AsyncWriteExt::flush(stream).await
        };
        match with_deadline(w, at).await {
            Some(r) => r?,
            None => {
                return Err(Ended::Failed(Error::Protocol {
                    reason: format!("the client did not take a reply within {:?}", self.timeout),
                }))
            }
        }
        add(&self.counters.bytes_sent, bytes.len() as u64);
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Ends the connection so that the replies already written reach the client: the
    /// write side is shut (the client reads the replies, then the end), and whatever the
    /// client sends meanwhile (pipelined requests the server no longer takes) is read
    /// and dropped until it closes too, falls quiet for [`QUIET`], or `linger` passes.
    /// Closing with unread input instead makes the kernel reset the connection, and a
    /// reset can discard replies the client had not read yet: a commit would land
    /// unanswered. A client that is quiet has no request in flight, so it has read its
    /// replies and loses nothing to a reset.
    pub(crate) async fn close_gracefully(&mut self, linger: Duration) {
        let end = Instant::now() + linger;
        if with_deadline(futures::AsyncWriteExt::close(&mut self.stream), end)
            .await
            .is_none_or(|r| r.is_err())
        {
            return;
        }
        loop {
            self.input.consume(self.input.data().len());
            let fill = futures::future::poll_fn(|cx| {
                self.input
                    .poll_fill(cx, &mut self.stream, &self.counters.bytes_received)
            });
            match with_deadline(fill, end.min(Instant::now() + QUIET)).await {
                Some(Ok(n)) if n > 0 => continue,
                _ => return,
            }
        }
    }
}

/// How long a client closed for a shutdown may stay silent before the server closes
/// its side (see [`Conn::close_gracefully`]).
const QUIET: Duration = Duration::from_millis(100);

/// `fut`'s output, or `None` if `at` passes first.
pub(crate) async fn with_deadline<F: std::future::Future>(fut: F, at: Instant) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    // Most writes and reads under a deadline finish at once. A timer is registered with
    // the reactor (and wakes the reactor's thread to note it) only when one is needed.
    if let Poll::Ready(v) = futures::poll!(fut.as_mut()) {
        return Some(v);
    }
    let timer = async_io::Timer::at(at);
    match futures::future::select(fut, timer).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(_) => None,
    }
}
