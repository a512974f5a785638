//! A session speaking the Durus protocol (v1) with one Python Durus client.
//!
//! Durus's server keeps, per client, the set of oids other clients committed since
//! this one last synced; it answers `L` of such an oid with `I` and hands the set over
//! on `S` and `C`. Here the same set is computed from the server's log: everything
//! committed after the session's sync point (`seen`) by transactions other than its
//! own. Commits are validated on the server, not trusted to the client: a commit
//! conflicts if anything it writes, or anything the client loaded since its last sync,
//! was committed by someone else after that sync point.

use futures::io::{AsyncRead, AsyncWrite};

use super::io::{Conn, Ended};
use super::options::Peer;
use super::shared::{Framed, Shared};
use crate::error::Error;
use crate::protocol::v1::{self, Request};
use crate::protocol::{PROTOCOL_V1, STATUS_INVALID, STATUS_KEYERROR};
use crate::record::{CommitRequest, Oid, Tid};

/// Oids loaded since the last sync that a session remembers as its commit's reads;
/// past this, further loads are not checked (memory per connection stays bounded).
const MAX_LOADED: usize = 100_000;

/// Records loaded per storage call (and written per flush) in a bulk load.
const BULK_CHUNK: usize = 256;

type Outcome<T = ()> = std::result::Result<T, Ended>;

struct Session<'a> {
    shared: &'a Shared,
    peer: &'a Peer,
    /// Every commit by others up to here has been reported to the client.
    seen: Tid,
    /// This session's own commits after `seen`, with the oids each wrote.
    own: Vec<(Tid, Vec<Oid>)>,
    /// Oids the client loaded since its last sync.
    loaded: Vec<Oid>,
    out: Vec<u8>,
}

/// Serves a Durus client until it leaves, breaks the protocol or the server shuts
/// down; `first` is a request already read.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    shared: &Shared,
    peer: &Peer,
    first: Option<Request>,
) -> Ended {
    let mut s = match shared.catch_up().await {
        Ok(()) => Session {
            shared,
            peer,
            seen: shared.history.last(),
            own: Vec::new(),
            loaded: Vec::new(),
            out: Vec::new(),
        },
        Err(e) => return Ended::Failed(e),
    };
    let mut next = first;
    loop {
        let req = match next.take() {
            Some(r) => r,
            None => match read_request(conn, shared).await {
                Ok(Some(r)) => r,
                Ok(None) => return Ended::Closed,
                Err(e) => return e,
            },
        };
        if let Err(e) = s.handle(conn, req).await {
            return e;
        }
    }
}

/// The next request, or `None` at the end of the stream; a shutdown ends the wait.
async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    shared: &Shared,
) -> Outcome<Option<Request>> {
    let read = std::pin::pin!(conn.read(true, v1::decode_request));
    let stop = std::pin::pin!(shared.shutdown.wait());
    match futures::future::select(read, stop).await {
        futures::future::Either::Left((r, _)) => r,
        futures::future::Either::Right(_) => Err(Ended::Shutdown),
    }
}

impl Session<'_> {
    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        req: Request,
    ) -> Outcome {
        self.out.clear();
        match req {
            Request::Version(v) => {
                v1::encode_version(PROTOCOL_V1, &mut self.out);
                conn.write(&self.out).await?;
                if v != PROTOCOL_V1 {
                    return Err(Ended::Failed(Error::Protocol {
                        reason: format!("client asked for protocol {v} in a version 1 session"),
                    }));
                }
            }
            Request::NewOid => self.new_oids(conn, 1).await?,
            Request::NewOids(n) => self.new_oids(conn, n as usize).await?,
            Request::Load(oid) => {
                self.shared.catch_up().await?;
                let loaded = self.shared.load_newest(&[oid]).await?;
                let first = loaded.into_iter().next().flatten();
                let answer = self.answer(oid, first).await?;
                self.put_answer(oid, answer, true)?;
                conn.write(&self.out).await?;
            }
            Request::BulkLoad(oids) => {
                self.shared.catch_up().await?;
                for chunk in oids.chunks(BULK_CHUNK) {
                    self.out.clear();
                    let loaded = self.shared.load_newest(chunk).await?;
                    for (&oid, l) in chunk.iter().zip(loaded) {
                        let answer = self.answer(oid, l).await?;
                        self.put_answer(oid, answer, false)?;
                    }
                    conn.write(&self.out).await?;
                }
            }
            Request::Commit => self.commit(conn).await?,
            Request::Sync => {
                self.sync().await?;
                conn.write(&self.out).await?;
                self.loaded.clear();
            }
            Request::Pack => {
                // Durus answers `O` once its pack has started or finished; this one
                // answers when the pack is done (commits of every connection go on
                // meanwhile). A status other than `O` makes a Durus client raise
                // ProtocolError from `pack()` and keeps its connection usable.
                match self.shared.pack(crate::journal::PackOptions::default()).await {
                    Ok(r) => {
                        log::info!(
                            "{}: packed: {} objects kept, {} transactions carried over, {} of {} bytes freed",
                            self.peer,
                            r.objects,
                            r.transactions,
                            r.freed(),
                            r.bytes_before
                        );
                        conn.write(&[crate::protocol::STATUS_OKAY]).await?;
                    }
                    Err(e) => {
                        log::warn!("{}: pack requested and not done: {e}; answered K", self.peer);
                        conn.write(&[STATUS_KEYERROR]).await?;
                    }
                }
            }
            Request::Quit => {
                if self.peer.is_local() {
                    log::info!("{}: quit requested; shutting down", self.peer);
                    self.shared.shutdown.trigger();
                    return Err(Ended::Shutdown);
                }
                log::warn!(
                    "{}: quit refused (only local clients may shut the server down)",
                    self.peer
                );
                return Err(Ended::Closed);
            }
            Request::Close => return Err(Ended::Closed),
        }
        Ok(())
    }

    async fn new_oids<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>, n: usize) -> Outcome {
        let oids = self.shared.durus_oids(n).await?;
        for o in oids {
            self.out.extend_from_slice(&o.to_bytes());
        }
        conn.write(&self.out).await
    }

    /// The newest own commit of `oid` since the sync point.
    fn own_write(&self, oid: Oid) -> Option<Tid> {
        self.own
            .iter()
            .filter(|(_, oids)| oids.binary_search(&oid).is_ok())
            .map(|(t, _)| *t)
            .max()
    }

    /// What to answer for a load of `oid` that found `loaded`: `Ok(None)` for "no such
    /// record", else the record, or `I` (as `Some(None)`) if another client committed it
    /// after this one's sync point.
    async fn answer(&self, oid: Oid, loaded: Option<Framed>) -> Outcome<Option<Option<Framed>>> {
        let Some((tid, framed)) = loaded else {
            return Ok(None);
        };
        let own = self.own_write(oid);
        if own.is_some_and(|t| t > tid) {
            // The cache cannot have missed our own newer commit, but a session must
            // always read its own writes: ask the storage itself.
            return match self.shared.storage.load(oid).await {
                Ok(l) => Ok(Some(Some((l.tid, l.record.encode()?.into())))),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        if tid > self.seen && own != Some(tid) {
            return Ok(Some(None));
        }
        Ok(Some(Some((tid, framed))))
    }

    fn put_answer(&mut self, oid: Oid, answer: Option<Option<Framed>>, remember: bool) -> Outcome {
        match answer {
            None => self.out.push(STATUS_KEYERROR),
            Some(None) => self.out.push(STATUS_INVALID),
            Some(Some((_, framed))) => {
                v1::encode_framed(&framed, &mut self.out)?;
                if remember && self.loaded.len() < MAX_LOADED {
                    self.loaded.push(oid);
                }
            }
        }
        Ok(())
    }

    /// Appends the invalidations since the sync point to the output and moves the sync
    /// point; returns the old one.
    async fn sync(&mut self) -> Outcome<Tid> {
        let own: Vec<Tid> = self.own.iter().map(|(t, _)| *t).collect();
        let inv = self.shared.invalidations(self.seen, &own).await?;
        v1::encode_invalidations(&inv.oids, &mut self.out)?;
        let before = self.seen;
        self.seen = self.seen.max(inv.last);
        Ok(before)
    }

    async fn commit<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) -> Outcome {
        // What this session itself wrote since the sync point is checked from its own
        // commit on, not from the sync point (which is older).
        let mut rebased: Vec<(Oid, Tid)> = Vec::new();
        for (t, oids) in &self.own {
            for &o in oids {
                match rebased.iter_mut().find(|(r, _)| *r == o) {
                    Some(r) => r.1 = r.1.max(*t),
                    None => rebased.push((o, *t)),
                }
            }
        }
        let snapshot = self.sync().await?;
        conn.write(&self.out).await?;
        let seen = self.seen;
        self.own.retain(|(t, _)| *t > seen);
        let reads = std::mem::take(&mut self.loaded);
        let body = conn
            .read(false, |buf, max| {
                let Some(n) = v1::decode_commit_length(buf, max)? else {
                    return Ok(None);
                };
                if buf.len() < 4 + n {
                    return Ok(None);
                }
                Ok(Some((buf[4..4 + n].to_vec(), 4 + n)))
            })
            .await?;
        let Some(body) = body else {
            return Err(Ended::Failed(Error::Protocol {
                reason: "the connection ended before the commit body".into(),
            }));
        };
        if body.is_empty() {
            // The client found a conflict itself and abandoned the commit.
            return Ok(());
        }
        let records = v1::decode_commit_body(&body)?;
        drop(body);
        let written: Vec<Oid> = {
            let mut w: Vec<Oid> = records.iter().map(|r| r.oid).collect();
            w.sort_unstable();
            w
        };
        let req = CommitRequest {
            snapshot,
            records,
            reads,
            rebased,
        };
        match self.shared.commit(req, self.peer).await {
            Ok(c) => {
                self.own.push((c.tid, written));
                conn.write(&[crate::protocol::STATUS_OKAY]).await
            }
            Err(Error::Conflict { oids }) => {
                log::debug!("{}: commit conflicts on {} oid(s)", self.peer, oids.len());
                conn.write(&[STATUS_INVALID]).await
            }
            // A body the storage refuses as such (a made-up oid, one written twice) is
            // the client breaking the protocol: counted and logged as such.
            Err(
                e @ (Error::Invalid(_)
                | Error::NotAllocated { .. }
                | Error::DuplicateWrite { .. }
                | Error::SnapshotAhead { .. }),
            ) => Err(Ended::Failed(Error::Protocol {
                reason: format!("commit refused: {e}"),
            })),
            Err(e) => Err(e.into()),
        }
    }
}
