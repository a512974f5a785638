//! Committing: validating each request of a write group against everything before it,
//! and encoding the group's transactions into the bytes one positioned write appends.

use super::format::{encode_entry, BlockHeader, BlockKind, BLOCK_HEADER, ENTRY_HEADER, TRAILER};
use super::index::Loc;
use super::state::State;
use super::Journal;
use crate::clock::now_micros;
use crate::error::{Error, Result};
use crate::record::{CommitRequest, Committed, Oid, OidMap, Tid};
use std::sync::atomic::Ordering;

/// A write group being assembled: its bytes, and what its earlier members wrote.
struct Group {
    /// Oids written by earlier members: where their entry goes, and its tid.
    written: OidMap<(Loc, u64)>,
    last_tid: u64,
    last_timestamp: u64,
    bytes: Vec<u8>,
}

/// One member of a write group that passed validation.
struct Planned {
    tid: u64,
    timestamp: u64,
    entries: Vec<(Oid, Loc)>,
}

impl Journal {
    /// Commits `req` as one transaction: checks that nothing it read or writes was
    /// committed after its snapshot, appends it in one positioned write, and syncs
    /// (under [`Durability::Immediate`](super::Durability::Immediate)) before returning.
    ///
    /// A request with no records only validates its reads and returns the current tid.
    pub fn commit(&self, req: &CommitRequest) -> Result<Committed> {
        self.commit_many(std::slice::from_ref(req))
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("commit_many gave no result for a commit".into())))
    }

    /// Commits several transactions as one write group (group commit): each is
    /// validated in order against everything committed before it, including the earlier
    /// members of this group; those that pass are appended together in one positioned
    /// write and made durable by one sync. Returns one result per request, in order.
    ///
    /// A request with no records only validates its reads against what is committed and
    /// returns the last committed tid.
    pub fn commit_many(&self, reqs: &[CommitRequest]) -> Vec<Result<Committed>> {
        let mut w = self.lock_writer();
        let appending = match self.check_writable().and_then(|()| self.lock_appends(&mut w)) {
            Ok(g) => g,
            Err(e) => return reqs.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<Option<Result<Committed>>> = reqs.iter().map(|_| None).collect();
        let (bytes, at, planned) = {
            let st = self.read_state();
            let at = w.torn_tail.unwrap_or(st.end);
            let mut group = Group {
                written: OidMap::default(),
                last_tid: st.last_tid,
                last_timestamp: st.last_timestamp,
                bytes: Vec::new(),
            };
            let mut planned = Vec::new();
            for (i, req) in reqs.iter().enumerate() {
                match self.plan(&st, &mut group, at, req) {
                    Ok(Some(p)) => planned.push((i, p)),
                    Ok(None) => {
                        results[i] = Some(Ok(Committed {
                            tid: Tid(st.last_tid),
                            timestamp: st.last_timestamp,
                        }))
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            (group.bytes, at, planned)
        };
        if !planned.is_empty() {
            // Other processes may append as soon as the bytes are written: the sync, the
            // slow part, runs after the lock is released, so their appends and syncs
            // overlap with ours. Their readers only go as far as synced data (see
            // `mark_synced`), and a sync makes every earlier byte of the file durable, so
            // nobody builds on a transaction that may yet vanish.
            let appended = self
                .write_group(&mut w, at, &bytes, BlockKind::Transaction)
                .and_then(|()| {
                    drop(appending);
                    self.finish_group(at + bytes.len() as u64)
                });
            match appended {
                Err(e) => {
                    for (i, _) in &planned {
                        results[*i] = Some(Err(e.clone()));
                    }
                }
                Ok(()) => {
                    let mut st = self.write_state();
                    for (i, p) in &planned {
                        for &(oid, loc) in &p.entries {
                            st.overlay.set(oid, loc, p.tid);
                        }
                        st.last_tid = p.tid;
                        st.last_timestamp = p.timestamp;
                        st.push_log(p.tid, p.timestamp, p.entries.iter().map(|e| e.0).collect());
                        results[*i] = Some(Ok(Committed {
                            tid: Tid(p.tid),
                            timestamp: p.timestamp,
                        }));
                    }
                    st.end = at + bytes.len() as u64;
                    drop(st);
                    self.commits.fetch_add(planned.len() as u64, Ordering::Relaxed);
                    if let Some(every) = self.opts.checkpoint_every {
                        // At least twice the last checkpoint's size apart, so checkpoints of
                        // a large index cost a bounded fraction of what is appended. The
                        // commits above are durable whatever happens here: a failure only
                        // poisons the journal for later writes.
                        if w.since_checkpoint >= every.max(2 * w.last_checkpoint_len) {
                            let _ = self
                                .lock_appends(&mut w)
                                .and_then(|_again| self.write_checkpoint(&mut w));
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(Error::Internal("a request of a write group got no result".into())))
            })
            .collect()
    }

    /// Validates `req` against the committed state and the earlier members of `group`
    /// and, if it writes anything, encodes it onto the group's bytes. `Ok(None)`: valid,
    /// but nothing to write.
    fn plan(&self, st: &State, group: &mut Group, at: u64, req: &CommitRequest) -> Result<Option<Planned>> {
        let written = req.validate(st.reserved_oid, Tid(st.last_tid))?;
        let conflicts = if req.records.is_empty() {
            req.conflicts(&written, |oid, after| st.changed_after(&*st.file, oid, after.0))?
        } else {
            req.conflicts(&written, |oid, after| match group.written.get(&oid) {
                Some(&(_, tid)) => Ok(tid > after.0),
                None => st.changed_after(&*st.file, oid, after.0),
            })?
        };
        if !conflicts.is_empty() {
            return Err(Error::Conflict { oids: conflicts });
        }
        if req.records.is_empty() {
            return Ok(None);
        }
        let tid = group.last_tid.checked_add(1).ok_or(Error::Exhausted {
            what: "transaction ids",
        })?;
        let timestamp = now_micros().max(group.last_timestamp);
        let start = group.bytes.len();
        let r = self.encode_transaction(st, group, at, start, tid, timestamp, req);
        match r {
            Ok(entries) => {
                for &(oid, loc) in &entries {
                    group.written.insert(oid, (loc, tid));
                }
                group.last_tid = tid;
                group.last_timestamp = timestamp;
                Ok(Some(Planned {
                    tid,
                    timestamp,
                    entries,
                }))
            }
            Err(e) => {
                // Leave the group's bytes as they were before this transaction.
                group.bytes.truncate(start);
                Err(e)
            }
        }
    }

    /// Appends the transaction block for `req` to `group.bytes` (which start at file
    /// offset `at`); returns where each record's entry will be.
    #[allow(clippy::too_many_arguments)]
    fn encode_transaction(
        &self,
        st: &State,
        group: &mut Group,
        at: u64,
        start: usize,
        tid: u64,
        timestamp: u64,
        req: &CommitRequest,
    ) -> Result<Vec<(Oid, Loc)>> {
        let bytes = &mut group.bytes;
        bytes.reserve(
            BLOCK_HEADER
                + TRAILER
                + req
                    .records
                    .iter()
                    .map(|r| ENTRY_HEADER + r.framed_len())
                    .sum::<usize>(),
        );
        bytes.resize(start + BLOCK_HEADER, 0);
        let mut entries = Vec::with_capacity(req.records.len());
        for r in &req.records {
            let prev = match group.written.get(&r.oid) {
                Some(&(loc, _)) => Some(loc),
                None => st.locate(&*st.file, r.oid)?.map(|(l, _)| l),
            };
            let before = bytes.len();
            encode_entry(bytes, tid, prev.map(|l| (l.offset, l.len)), r)?;
            let loc = Loc {
                offset: at + before as u64,
                len: (bytes.len() - before) as u32,
            };
            entries.push((r.oid, loc));
        }
        let h = BlockHeader {
            kind: BlockKind::Transaction,
            len: (bytes.len() - start + TRAILER) as u64,
            tid,
            timestamp,
            group_start: at,
            next_oid: st.reserved_oid,
            count: req.records.len() as u64,
            aux: 0,
        };
        bytes[start..start + BLOCK_HEADER].copy_from_slice(&h.encode());
        let crc = crc32fast::hash(&bytes[start..]);
        bytes.extend_from_slice(&crc.to_be_bytes());
        Ok(entries)
    }
}
