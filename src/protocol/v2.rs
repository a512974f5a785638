//! Protocol version 2: durus's own protocol for Rust clients, negotiated by the Durus
//! handshake (`V` with version 2). Framed, pipelined, with snapshots, full commit
//! requests, conflict records and pushed changes. The byte layout of every frame is
//! documented in `docs/PROTOCOL.md`; this module is its implementation.
//!
//! Every frame is `length (u32) · kind (u8) · request id (u32) · body`, where the
//! length counts the bytes after itself. Replies carry the id of their request and may
//! come in any order; pushed changes carry id 0.

use super::wire::{bad, put_count, put_oids, put_record, put_u32, put_u64, Cursor};
use crate::error::{Error, Result};
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Tid, TxInfo};
use crate::storage::Change;

/// Bytes before a frame's body: length, kind and request id.
pub const HEADER: usize = 9;

/// The id pushed frames carry; requests never use it.
pub const PUSH_ID: u32 = 0;

/// Frame kinds. Requests are below 0x80, replies at or above.
pub mod kind {
    /// Request: one record, newest or at a snapshot.
    pub const LOAD: u8 = 0x01;
    /// Request: many records at one snapshot.
    pub const LOAD_MANY: u8 = 0x02;
    /// Request: fresh oids.
    pub const NEW_OIDS: u8 = 0x03;
    /// Request: commit a transaction.
    pub const COMMIT: u8 = 0x04;
    /// Request: the oids changed after a tid.
    pub const CHANGES_SINCE: u8 = 0x05;
    /// Request: the last committed tid.
    pub const LAST_TID: u8 = 0x06;
    /// Request: the transactions after a tid.
    pub const TRANSACTIONS: u8 = 0x07;
    /// Request: the snapshot at a moment.
    pub const TID_AT_TIME: u8 = 0x08;
    /// Request: the next page of a scan.
    pub const SCAN_NEXT: u8 = 0x09;
    /// Request: abandon a scan.
    pub const SCAN_CLOSE: u8 = 0x0A;
    /// Request: push every commit from now on.
    pub const SUBSCRIBE: u8 = 0x0B;
    /// Request: pack the storage.
    pub const PACK: u8 = 0x0C;
    /// Request: keep a snapshot readable across packs while the connection lasts.
    pub const PIN: u8 = 0x0D;
    /// Request: let a pinned snapshot go.
    pub const UNPIN: u8 = 0x0E;
    /// Reply: records.
    pub const RECORDS: u8 = 0x81;
    /// Reply: oids.
    pub const OIDS: u8 = 0x82;
    /// Reply: a commit landed.
    pub const COMMITTED: u8 = 0x83;
    /// Reply: a commit conflicted.
    pub const CONFLICT: u8 = 0x84;
    /// Reply: changed oids.
    pub const CHANGES: u8 = 0x85;
    /// Reply: a tid.
    pub const TID: u8 = 0x86;
    /// Reply: transactions.
    pub const TRANSACTIONS_REPLY: u8 = 0x87;
    /// Reply: a page of a scan.
    pub const SCAN_PAGE: u8 = 0x88;
    /// Reply: done, nothing to report.
    pub const DONE: u8 = 0x89;
    /// Reply: what a pack did.
    pub const PACKED: u8 = 0x8A;
    /// Reply: the request failed.
    pub const ERROR: u8 = 0x8F;
    /// Push: a transaction was committed.
    pub const PUSH_COMMITTED: u8 = 0x90;
    /// Push: pushed changes were dropped.
    pub const PUSH_LAGGED: u8 = 0x91;
}

/// Error codes of an [`kind::ERROR`] reply.
pub mod code {
    /// [`Error::NotFound`](crate::Error::NotFound).
    pub const NOT_FOUND: u8 = 1;
    /// [`Error::Invalid`](crate::Error::Invalid).
    pub const INVALID: u8 = 2;
    /// [`Error::Closed`](crate::Error::Closed).
    pub const CLOSED: u8 = 3;
    /// [`Error::ReadOnly`](crate::Error::ReadOnly).
    pub const READ_ONLY: u8 = 4;
    /// [`Error::Poisoned`](crate::Error::Poisoned).
    pub const POISONED: u8 = 5;
    /// [`Error::Corrupt`](crate::Error::Corrupt).
    pub const CORRUPT: u8 = 6;
    /// Anything else ([`Error::Remote`](crate::Error::Remote) on the client).
    pub const OTHER: u8 = 7;
    /// [`Error::NotAllocated`](crate::Error::NotAllocated).
    pub const NOT_ALLOCATED: u8 = 8;
    /// [`Error::DuplicateWrite`](crate::Error::DuplicateWrite).
    pub const DUPLICATE_WRITE: u8 = 9;
    /// [`Error::Unsupported`](crate::Error::Unsupported).
    pub const UNSUPPORTED: u8 = 10;
    /// [`Error::DanglingRefs`](crate::Error::DanglingRefs).
    pub const DANGLING_REFS: u8 = 11;
    /// [`Error::HistoryGone`](crate::Error::HistoryGone).
    pub const HISTORY_GONE: u8 = 12;
}

/// The snapshot field's value for "the newest version".
const NEWEST: u64 = u64::MAX;

/// A request from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The record of `oid` at `snapshot` (newest when `None`).
    Load {
        /// The oid.
        oid: Oid,
        /// The snapshot, or newest.
        snapshot: Option<Tid>,
    },
    /// The records of `oids` at `snapshot` (newest when `None`).
    LoadMany {
        /// The oids.
        oids: Vec<Oid>,
        /// The snapshot, or newest.
        snapshot: Option<Tid>,
    },
    /// `n` fresh oids.
    NewOids {
        /// How many.
        n: u32,
    },
    /// Commit `req`; on a conflict, send the newest records of the conflicting oids
    /// the request writes if `want_records`.
    Commit {
        /// The transaction.
        req: CommitRequest,
        /// Whether a conflict reply should carry records to merge with.
        want_records: bool,
    },
    /// The oids changed after `since`.
    ChangesSince {
        /// The tid.
        since: Tid,
    },
    /// The last committed tid (after catching up, on a shared storage).
    LastTid,
    /// At most `max` transactions after `after`.
    Transactions {
        /// The tid.
        after: Tid,
        /// The most to send in one reply.
        max: u32,
    },
    /// The snapshot at `timestamp` (microseconds since the Unix epoch).
    TidAtTime {
        /// The moment.
        timestamp: u64,
    },
    /// The next at most `max` records of scan `cursor` (0 starts a new scan).
    ScanNext {
        /// The scan, or 0.
        cursor: u32,
        /// The most records to send.
        max: u32,
    },
    /// Abandons scan `cursor`.
    ScanClose {
        /// The scan.
        cursor: u32,
    },
    /// Push every transaction committed from now on.
    Subscribe,
    /// Pack the storage as [`Storage::pack`](crate::storage::Storage::pack) does with
    /// these options (the progress callback stays on the server).
    Pack {
        /// What to keep besides the current state.
        keep: crate::journal::Keep,
        /// Only report what a pack would do.
        dry_run: bool,
        /// Pack even with dangling references.
        force: bool,
    },
    /// Keep the versions visible at `snapshot` readable across packs, until an
    /// [`Unpin`](Request::Unpin) of it or the end of the connection.
    Pin {
        /// The snapshot.
        snapshot: Tid,
    },
    /// Let one pin of `snapshot` go.
    Unpin {
        /// The snapshot.
        snapshot: Tid,
    },
}

/// A reply (or a push) from the server.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Records, one per oid asked for (`None`: no such record at that snapshot).
    Records(Vec<Option<Loaded>>),
    /// Fresh oids.
    Oids(Vec<Oid>),
    /// The commit landed.
    Committed(Committed),
    /// The commit conflicted on `oids`; nothing of it was stored. `records` holds the
    /// newest committed versions of the conflicting oids the request wrote (if asked
    /// for), all as of `last`, the last tid the server knew when it answered.
    Conflict {
        /// The server's last tid when it answered.
        last: Tid,
        /// The conflicting oids, ascending.
        oids: Vec<Oid>,
        /// Committed versions to merge with.
        records: Vec<Loaded>,
    },
    /// Changed oids.
    Changes(Changes),
    /// A tid.
    Tid(Tid),
    /// Transactions, oldest first; `more` if the reply stopped at its limit.
    Transactions {
        /// The transactions.
        txs: Vec<TxInfo>,
        /// Whether more follow.
        more: bool,
    },
    /// A page of scan `cursor`; `done` once the scan is over (the cursor is then gone).
    ScanPage {
        /// The scan.
        cursor: u32,
        /// Whether this is the last page.
        done: bool,
        /// The records, in oid order.
        records: Vec<Loaded>,
    },
    /// Done.
    Done,
    /// What a pack did (or, for a dry run, would do).
    Packed(crate::journal::PackReport),
    /// The request failed.
    Error(Error),
    /// Pushed: a change of the feed.
    Pushed(Change),
}

/// One frame found in a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its kind (see [`kind`]).
    pub kind: u8,
    /// The request id.
    pub id: u32,
    /// Its body.
    pub body: &'a [u8],
}

/// Finds the frame at the start of `buf`: `Ok(Some((frame, bytes used)))`, `Ok(None)`
/// while it is incomplete, or an error for a length under the header or over
/// `max_frame`. Checks the length as soon as its 4 bytes are there, so a peer
/// announcing 4 GiB is refused before anything is buffered for it.
pub fn split_frame(buf: &[u8], max_frame: usize) -> Result<Option<(Frame<'_>, usize)>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = crate::record::be_u32(buf) as usize;
    if len < HEADER - 4 {
        return Err(bad(format!("frame length {len} is shorter than its header")));
    }
    if len > max_frame {
        return Err(bad(format!(
            "frame of {len} bytes exceeds the {max_frame}-byte frame limit"
        )));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let frame = Frame {
        kind: buf[4],
        id: crate::record::be_u32(&buf[5..9]),
        body: &buf[HEADER..4 + len],
    };
    Ok(Some((frame, 4 + len)))
}

/// Starts a frame in `out`; returns where it starts, for [`finish_frame`].
pub fn start_frame(out: &mut Vec<u8>, kind: u8, id: u32) -> usize {
    let start = out.len();
    put_u32(out, 0);
    out.push(kind);
    put_u32(out, id);
    start
}

/// Fills in the length of the frame begun at `start`.
pub fn finish_frame(out: &mut [u8], start: usize) -> Result<()> {
    let len = out.len() - start - 4;
    let len = u32::try_from(len).map_err(|_| bad(format!("frame of {len} bytes is too large")))?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn put_snapshot(out: &mut Vec<u8>, s: Option<Tid>) {
    put_u64(out, s.map_or(NEWEST, |t| t.0));
}

fn snapshot(c: &mut Cursor<'_>) -> Result<Option<Tid>> {
    let s = c.u64("snapshot")?;
    Ok((s != NEWEST).then_some(Tid(s)))
}

/// Appends a request frame.
pub fn encode_request(id: u32, req: &Request, out: &mut Vec<u8>) -> Result<()> {
    let k = match req {
        Request::Load { .. } => kind::LOAD,
        Request::LoadMany { .. } => kind::LOAD_MANY,
        Request::NewOids { .. } => kind::NEW_OIDS,
        Request::Commit { .. } => kind::COMMIT,
        Request::ChangesSince { .. } => kind::CHANGES_SINCE,
        Request::LastTid => kind::LAST_TID,
        Request::Transactions { .. } => kind::TRANSACTIONS,
        Request::TidAtTime { .. } => kind::TID_AT_TIME,
        Request::ScanNext { .. } => kind::SCAN_NEXT,
        Request::ScanClose { .. } => kind::SCAN_CLOSE,
        Request::Subscribe => kind::SUBSCRIBE,
        Request::Pack { .. } => kind::PACK,
        Request::Pin { .. } => kind::PIN,
        Request::Unpin { .. } => kind::UNPIN,
    };
    let start = start_frame(out, k, id);
    match req {
        Request::Load { oid, snapshot } => {
            put_u64(out, oid.0);
            put_snapshot(out, *snapshot);
        }
        Request::LoadMany { oids, snapshot } => {
            put_snapshot(out, *snapshot);
            put_count(out, oids.len(), "oids")?;
            put_oids(out, oids);
        }
        Request::NewOids { n } => put_u32(out, *n),
        Request::Commit { req, want_records } => {
            out.push(u8::from(*want_records));
            put_u64(out, req.snapshot.0);
            put_count(out, req.reads.len(), "reads")?;
            put_oids(out, &req.reads);
            put_count(out, req.rebased.len(), "rebased")?;
            for (o, t) in &req.rebased {
                put_u64(out, o.0);
                put_u64(out, t.0);
            }
            put_count(out, req.records.len(), "records")?;
            for r in &req.records {
                put_record(out, r)?;
            }
        }
        Request::ChangesSince { since } => put_u64(out, since.0),
        Request::LastTid | Request::Subscribe => {}
        Request::Transactions { after, max } => {
            put_u64(out, after.0);
            put_u32(out, *max);
        }
        Request::TidAtTime { timestamp } => put_u64(out, *timestamp),
        Request::ScanNext { cursor, max } => {
            put_u32(out, *cursor);
            put_u32(out, *max);
        }
        Request::ScanClose { cursor } => put_u32(out, *cursor),
        Request::Pack { keep, dry_run, force } => super::v2_pack::put_request(out, *keep, *dry_run, *force),
        Request::Pin { snapshot } | Request::Unpin { snapshot } => put_u64(out, snapshot.0),
    }
    finish_frame(out, start)
}

/// Decodes a request frame.
pub fn decode_request(f: &Frame<'_>) -> Result<Request> {
    let mut c = Cursor::new(f.body);
    let r = match f.kind {
        kind::LOAD => {
            let oid = c.oid("oid")?;
            Request::Load {
                oid,
                snapshot: snapshot(&mut c)?,
            }
        }
        kind::LOAD_MANY => {
            let snapshot = snapshot(&mut c)?;
            let n = c.count(8, "oids")?;
            Request::LoadMany {
                oids: c.oids(n, "oids")?,
                snapshot,
            }
        }
        kind::NEW_OIDS => Request::NewOids { n: c.u32("count")? },
        kind::COMMIT => {
            let flags = c.u8("flags")?;
            if flags > 1 {
                return Err(bad(format!("unknown commit flags {flags:#x}")));
            }
            let snapshot = c.tid("snapshot")?;
            let n = c.count(8, "reads")?;
            let reads = c.oids(n, "reads")?;
            let n = c.count(16, "rebased")?;
            let mut rebased = Vec::with_capacity(n);
            for _ in 0..n {
                rebased.push((c.oid("rebased oid")?, c.tid("rebased tid")?));
            }
            let n = c.count(4 + crate::record::RECORD_HEADER, "records")?;
            let mut records = Vec::with_capacity(n);
            for _ in 0..n {
                records.push(c.record("record")?);
            }
            Request::Commit {
                req: CommitRequest {
                    snapshot,
                    records,
                    reads,
                    rebased,
                },
                want_records: flags == 1,
            }
        }
        kind::CHANGES_SINCE => Request::ChangesSince { since: c.tid("tid")? },
        kind::LAST_TID => Request::LastTid,
        kind::TRANSACTIONS => Request::Transactions {
            after: c.tid("tid")?,
            max: c.u32("max")?,
        },
        kind::TID_AT_TIME => Request::TidAtTime {
            timestamp: c.u64("timestamp")?,
        },
        kind::SCAN_NEXT => Request::ScanNext {
            cursor: c.u32("cursor")?,
            max: c.u32("max")?,
        },
        kind::SCAN_CLOSE => Request::ScanClose {
            cursor: c.u32("cursor")?,
        },
        kind::SUBSCRIBE => Request::Subscribe,
        kind::PACK => super::v2_pack::request(&mut c)?,
        kind::PIN => Request::Pin {
            snapshot: c.tid("snapshot")?,
        },
        kind::UNPIN => Request::Unpin {
            snapshot: c.tid("snapshot")?,
        },
        other => return Err(bad(format!("unknown request kind {other:#04x}"))),
    };
    c.finish("request")?;
    Ok(r)
}

/// Appends one entry of a records reply for a record that is there, from its framed
/// bytes (the server keeps records framed).
pub fn put_found(out: &mut Vec<u8>, tid: Tid, framed: &[u8]) -> Result<()> {
    out.push(super::STATUS_OKAY);
    put_u64(out, tid.0);
    put_count(out, framed.len(), "record")?;
    out.extend_from_slice(framed);
    Ok(())
}

/// Appends one entry of a records reply for a record that is not there.
pub fn put_missing(out: &mut Vec<u8>) {
    out.push(super::STATUS_KEYERROR);
}

fn put_loaded(out: &mut Vec<u8>, l: &Loaded) -> Result<()> {
    put_u64(out, l.tid.0);
    put_record(out, &l.record)
}

fn loaded(c: &mut Cursor<'_>) -> Result<Loaded> {
    let tid = c.tid("tid")?;
    Ok(Loaded {
        record: c.record("record")?,
        tid,
    })
}

fn put_tx(out: &mut Vec<u8>, tx: &TxInfo) -> Result<()> {
    put_u64(out, tx.tid.0);
    put_u64(out, tx.timestamp);
    put_count(out, tx.oids.len(), "oids")?;
    put_oids(out, &tx.oids);
    Ok(())
}

fn tx(c: &mut Cursor<'_>) -> Result<TxInfo> {
    let tid = c.tid("tid")?;
    let timestamp = c.u64("timestamp")?;
    let n = c.count(8, "oids")?;
    Ok(TxInfo {
        tid,
        timestamp,
        oids: c.oids(n, "oids")?,
    })
}

/// Appends a reply frame (or, for [`Reply::Pushed`], a push frame; `id` is then
/// ignored).
pub fn encode_reply(id: u32, reply: &Reply, out: &mut Vec<u8>) -> Result<()> {
    let (k, id) = match reply {
        Reply::Records(_) => (kind::RECORDS, id),
        Reply::Oids(_) => (kind::OIDS, id),
        Reply::Committed(_) => (kind::COMMITTED, id),
        Reply::Conflict { .. } => (kind::CONFLICT, id),
        Reply::Changes(_) => (kind::CHANGES, id),
        Reply::Tid(_) => (kind::TID, id),
        Reply::Transactions { .. } => (kind::TRANSACTIONS_REPLY, id),
        Reply::ScanPage { .. } => (kind::SCAN_PAGE, id),
        Reply::Done => (kind::DONE, id),
        Reply::Packed(_) => (kind::PACKED, id),
        Reply::Error(_) => (kind::ERROR, id),
        Reply::Pushed(Change::Committed { .. }) => (kind::PUSH_COMMITTED, PUSH_ID),
        Reply::Pushed(Change::Lagged { .. }) => (kind::PUSH_LAGGED, PUSH_ID),
    };
    let start = start_frame(out, k, id);
    match reply {
        Reply::Records(rs) => {
            put_count(out, rs.len(), "records")?;
            for r in rs {
                match r {
                    Some(l) => {
                        out.push(super::STATUS_OKAY);
                        put_loaded(out, l)?;
                    }
                    None => put_missing(out),
                }
            }
        }
        Reply::Oids(oids) => {
            put_count(out, oids.len(), "oids")?;
            put_oids(out, oids);
        }
        Reply::Committed(c) => {
            put_u64(out, c.tid.0);
            put_u64(out, c.timestamp);
        }
        Reply::Conflict { last, oids, records } => {
            put_u64(out, last.0);
            put_count(out, oids.len(), "oids")?;
            put_oids(out, oids);
            put_count(out, records.len(), "records")?;
            for l in records {
                put_loaded(out, l)?;
            }
        }
        Reply::Changes(ch) => {
            put_u64(out, ch.tid.0);
            put_count(out, ch.oids.len(), "oids")?;
            put_oids(out, &ch.oids);
        }
        Reply::Tid(t) => put_u64(out, t.0),
        Reply::Transactions { txs, more } => {
            out.push(u8::from(*more));
            put_count(out, txs.len(), "transactions")?;
            for t in txs {
                put_tx(out, t)?;
            }
        }
        Reply::ScanPage {
            cursor,
            done,
            records,
        } => {
            put_u32(out, *cursor);
            out.push(u8::from(*done));
            put_count(out, records.len(), "records")?;
            for l in records {
                put_loaded(out, l)?;
            }
        }
        Reply::Done => {}
        Reply::Packed(r) => super::v2_pack::put_report(out, r),
        Reply::Error(e) => super::v2_error::put_error(out, e)?,
        Reply::Pushed(Change::Committed { tid, timestamp, oids }) => put_tx(
            out,
            &TxInfo {
                tid: *tid,
                timestamp: *timestamp,
                oids: oids.clone(),
            },
        )?,
        Reply::Pushed(Change::Lagged { resume_after }) => put_u64(out, resume_after.0),
    }
    finish_frame(out, start)
}

/// A `flag` field: 0 or 1.
pub(super) fn flag(c: &mut Cursor<'_>, what: &str) -> Result<bool> {
    match c.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(bad(format!("{what}: {other} is not a flag"))),
    }
}

/// Decodes a reply or push frame.
pub fn decode_reply(f: &Frame<'_>) -> Result<Reply> {
    let mut c = Cursor::new(f.body);
    let r = match f.kind {
        kind::RECORDS => {
            let n = c.count(1, "records")?;
            let mut rs = Vec::with_capacity(n);
            for _ in 0..n {
                match c.u8("status")? {
                    super::STATUS_OKAY => rs.push(Some(loaded(&mut c)?)),
                    super::STATUS_KEYERROR => rs.push(None),
                    other => return Err(bad(format!("unknown record status {other:#04x}"))),
                }
            }
            Reply::Records(rs)
        }
        kind::OIDS => {
            let n = c.count(8, "oids")?;
            Reply::Oids(c.oids(n, "oids")?)
        }
        kind::COMMITTED => Reply::Committed(Committed {
            tid: c.tid("tid")?,
            timestamp: c.u64("timestamp")?,
        }),
        kind::CONFLICT => {
            let last = c.tid("last tid")?;
            let n = c.count(8, "oids")?;
            let oids = c.oids(n, "oids")?;
            let n = c.count(12 + crate::record::RECORD_HEADER, "records")?;
            let mut records = Vec::with_capacity(n);
            for _ in 0..n {
                records.push(loaded(&mut c)?);
            }
            Reply::Conflict { last, oids, records }
        }
        kind::CHANGES => {
            let tid = c.tid("tid")?;
            let n = c.count(8, "oids")?;
            Reply::Changes(Changes {
                tid,
                oids: c.oids(n, "oids")?,
            })
        }
        kind::TID => Reply::Tid(c.tid("tid")?),
        kind::TRANSACTIONS_REPLY => {
            let more = flag(&mut c, "more")?;
            let n = c.count(20, "transactions")?;
            let mut txs = Vec::with_capacity(n);
            for _ in 0..n {
                txs.push(tx(&mut c)?);
            }
            Reply::Transactions { txs, more }
        }
        kind::SCAN_PAGE => {
            let cursor = c.u32("cursor")?;
            let done = flag(&mut c, "done")?;
            let n = c.count(12 + crate::record::RECORD_HEADER, "records")?;
            let mut records = Vec::with_capacity(n);
            for _ in 0..n {
                records.push(loaded(&mut c)?);
            }
            Reply::ScanPage {
                cursor,
                done,
                records,
            }
        }
        kind::DONE => Reply::Done,
        kind::PACKED => Reply::Packed(super::v2_pack::report(&mut c)?),
        kind::ERROR => Reply::Error(super::v2_error::error(&mut c)?),
        kind::PUSH_COMMITTED => {
            let t = tx(&mut c)?;
            Reply::Pushed(Change::Committed {
                tid: t.tid,
                timestamp: t.timestamp,
                oids: t.oids,
            })
        }
        kind::PUSH_LAGGED => Reply::Pushed(Change::Lagged {
            resume_after: c.tid("tid")?,
        }),
        other => return Err(bad(format!("unknown reply kind {other:#04x}"))),
    };
    c.finish("reply")?;
    Ok(r)
}
