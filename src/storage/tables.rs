//! What the two SQL storages (`SqliteStorage`, `PostgresStorage`) share: the view a
//! handle keeps of the tables (what it knows, its pack point, its pins), the screening
//! of a commit request before it is written, and the refs column's encoding.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::journal::SnapshotPin;
use crate::record::{be_u64, Changes, CommitRequest, Committed, Oid, Tid, TxInfo};

/// What a handle knows, shared by its threads.
pub(crate) struct View {
    /// The last transaction this handle has seen (its own, or others' it caught up with).
    pub(crate) known: Tid,
    /// The oldest snapshot this handle serves: the pack point (raised by a pack of this
    /// handle as soon as it has chosen its point, so no pin can be taken behind it).
    pub(crate) history_from: Tid,
    /// Pinned snapshots and how many pins each has.
    pub(crate) pins: BTreeMap<u64, usize>,
    /// The last tid of the write group this handle is committing, `Tid::ZERO` if none.
    pub(crate) writing: Tid,
    pub(crate) closed: bool,
    /// Set by a failed commit of an engine that cannot tell what the failure left:
    /// writes are refused until the store is reopened.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) poisoned: Option<(String, Arc<std::io::Error>)>,
}

impl View {
    /// The view of a handle that has just read the newest tid and the pack point.
    pub(crate) fn new(known: Tid, history_from: Tid) -> Arc<Mutex<View>> {
        Arc::new(Mutex::new(View {
            known,
            history_from,
            pins: BTreeMap::new(),
            writing: Tid::ZERO,
            closed: false,
            poisoned: None,
        }))
    }

    /// The view, or [`Error::Closed`].
    pub(crate) fn open(view: &Mutex<View>) -> Result<MutexGuard<'_, View>> {
        let v = crate::sync::lock(view);
        if v.closed {
            return Err(Error::Closed);
        }
        Ok(v)
    }

    /// The newest tid known, refusing `since` after it (for `changes_since`).
    pub(crate) fn changes_upto(&self, since: Tid) -> Result<Tid> {
        if since > self.known {
            return Err(Error::snapshot_ahead(since, self.known));
        }
        Ok(self.known)
    }

    /// The newest tid known, refusing `after` before the pack point.
    pub(crate) fn check_history(&self, after: Tid) -> Result<Tid> {
        if after < self.history_from {
            return Err(Error::HistoryGone {
                oldest: self.history_from,
            });
        }
        Ok(self.known)
    }

    /// Takes in the newest tid and pack point read from the tables; returns the newest
    /// tid known. Tids of this handle's own group, still committing, are left to it:
    /// the `Db` hears of them from the commit, not as another process's.
    pub(crate) fn caught_up(&mut self, last: Tid, from: Tid) -> Tid {
        if last > self.writing {
            self.known = self.known.max(last);
        }
        self.history_from = self.history_from.max(from);
        self.known
    }
}

/// Runs a pack that wants the point `wanted` as `pack_at` does it, at the point chosen:
/// never later than the oldest pin, never before the current point. Unless `dry_run`,
/// the floor is raised to it at once, so no pin can be taken behind it, and lowered
/// again if the pack fails (which then deleted nothing).
pub(crate) fn pack_at(
    view: &Mutex<View>,
    wanted: Tid,
    dry_run: bool,
    pack_at: impl FnOnce(Tid) -> Result<crate::journal::PackReport>,
) -> Result<crate::journal::PackReport> {
    let (point, before) = {
        let mut v = View::open(view)?;
        let pinned = v.pins.keys().next().map_or(wanted, |&t| Tid(t));
        let point = wanted.min(pinned).max(v.history_from);
        let before = v.history_from;
        if !dry_run {
            v.history_from = point;
        }
        (point, before)
    };
    let r = pack_at(point);
    if r.is_err() && !dry_run {
        let mut v = crate::sync::lock(view);
        if v.history_from == point {
            v.history_from = before;
        }
    }
    r
}

/// Pins `snapshot` in `view` (see [`SyncStorage::pin`](super::SyncStorage::pin)).
pub(crate) fn pin(view: &Arc<Mutex<View>>, snapshot: Tid) -> Result<SnapshotPin> {
    let mut v = View::open(view)?;
    if snapshot > v.known {
        return Err(Error::snapshot_ahead(snapshot, v.known));
    }
    if snapshot < v.history_from {
        return Err(Error::HistoryGone {
            oldest: v.history_from,
        });
    }
    *v.pins.entry(snapshot.0).or_default() += 1;
    drop(v);
    let view = view.clone();
    Ok(SnapshotPin::on_release(move || {
        let mut v = crate::sync::lock(&view);
        if let Some(n) = v.pins.get_mut(&snapshot.0) {
            *n -= 1;
            if *n == 0 {
                v.pins.remove(&snapshot.0);
            }
        }
    }))
}

/// The rows of the transactions table as [`TxInfo`]s.
pub(crate) fn tx_infos(rows: Vec<(Tid, u64, Vec<Oid>)>) -> Vec<TxInfo> {
    rows.into_iter()
        .map(|(tid, timestamp, oids)| TxInfo { tid, timestamp, oids })
        .collect()
}

/// The oids the transactions `txs` wrote, as the changes up to `known`.
pub(crate) fn changes(txs: Vec<TxInfo>, known: Tid) -> Changes {
    let mut oids: Vec<Oid> = txs.into_iter().flat_map(|t| t.oids).collect();
    oids.sort_unstable();
    oids.dedup();
    Changes { tid: known, oids }
}

/// What to do with one member of a write group.
pub(crate) enum Screened {
    /// Answer it with this, writing nothing.
    Answer(Result<Committed>),
    /// Write it as this transaction.
    Write(Committed),
}

/// Screens `req` as the journal does, against the tables as they are under the write
/// lock: `next_oid` is the allocation mark, `last` and `last_ts` the newest
/// transaction; `unissued` says whether this handle reserved an oid without handing it
/// out; `changed` returns which of the oids to check (each with the tid after which a
/// write counts) a transaction wrote.
pub(crate) fn screen(
    req: &CommitRequest,
    next_oid: u64,
    (last, last_ts): (Tid, u64),
    unissued: impl Fn(Oid) -> bool,
    changed: impl FnOnce(&[(Oid, Tid)]) -> Result<Vec<Oid>>,
) -> Result<Screened> {
    let written = match req.validate(next_oid, last) {
        Ok(w) => w,
        Err(e) => return Ok(Screened::Answer(Err(e))),
    };
    // Reserved by this handle but not handed out yet: made up by the caller.
    if let Some(&oid) = written.iter().find(|&&o| unissued(o)) {
        return Ok(Screened::Answer(Err(Error::NotAllocated { oid })));
    }
    let checks: Vec<(Oid, Tid)> = req
        .reads
        .iter()
        .chain(&written)
        .map(|&o| (o, req.checked_after(o)))
        .collect();
    let hit: std::collections::HashSet<Oid> = changed(&checks)?.into_iter().collect();
    let conflicts = req.conflicts(&written, |oid, _| Ok(hit.contains(&oid)))?;
    if !conflicts.is_empty() {
        return Ok(Screened::Answer(Err(Error::Conflict { oids: conflicts })));
    }
    if req.records.is_empty() {
        return Ok(Screened::Answer(Ok(Committed {
            tid: last,
            timestamp: last_ts,
        })));
    }
    Ok(Screened::Write(Committed {
        tid: last.next(),
        timestamp: crate::clock::now_micros().max(last_ts),
    }))
}

/// The refs column of a record: 8 bytes per oid, big-endian.
pub(crate) fn refs_blob(refs: &[Oid]) -> Vec<u8> {
    refs.iter().flat_map(|o| o.to_bytes()).collect()
}

/// Reads a refs column back; a length that is not a multiple of 8 is damage.
pub(crate) fn parse_refs(oid: Oid, tid: Tid, blob: &[u8]) -> Result<Vec<Oid>> {
    oids_in(blob, || format!("the refs of oid {oid} at tid {tid}"))
}

/// The oid list a transaction row keeps of what the transaction wrote: the oids of
/// its records, ascending, 8 bytes each, big-endian.
pub(crate) fn written_blob(req: &crate::record::CommitRequest) -> Vec<u8> {
    let mut oids: Vec<Oid> = req.records.iter().map(|r| r.oid).collect();
    oids.sort_unstable();
    refs_blob(&oids)
}

/// Reads transaction `tid`'s oid list back (see [`written_blob`]).
pub(crate) fn parse_written(tid: Tid, blob: &[u8]) -> Result<Vec<Oid>> {
    oids_in(blob, || format!("the oid list of transaction {tid}"))
}

/// 8-byte big-endian oids; a length that is not a multiple of 8 is damage of `what`.
fn oids_in(blob: &[u8], what: impl FnOnce() -> String) -> Result<Vec<Oid>> {
    if !blob.len().is_multiple_of(8) {
        return Err(Error::corrupt(
            0,
            format!("{} is {} bytes, not a multiple of 8", what(), blob.len()),
        ));
    }
    Ok(blob.chunks_exact(8).map(|c| Oid(be_u64(c))).collect())
}

/// Most missing oids a pack names in [`Error::DanglingRefs`].
const NAMED: usize = 100;

/// The state of a pack's walk through the refs: what is marked, what is still to visit,
/// what was found missing.
#[derive(Default)]
pub(crate) struct Walk {
    pub(crate) marked: std::collections::HashSet<u64>,
    pub(crate) todo: Vec<Oid>,
    pub(crate) objects: u64,
    pub(crate) object_bytes: u64,
    pub(crate) dangling: Vec<Oid>,
    pub(crate) dangling_count: u64,
}

impl Walk {
    /// Marks `oid` to be visited, unless it already is.
    pub(crate) fn push(&mut self, oid: Oid) {
        if self.marked.insert(oid.0) {
            self.todo.push(oid);
        }
    }

    /// Counts a version the walk reached and marks what it refers to.
    pub(crate) fn reached(&mut self, l: crate::record::Loaded) {
        self.objects += 1;
        self.object_bytes += (l.record.data.len() + 8 * l.record.refs.len()) as u64;
        for r in l.record.refs {
            self.push(r);
        }
    }

    /// Counts a reachable oid that has no record.
    pub(crate) fn missing(&mut self, oid: Oid) {
        self.dangling_count += 1;
        if self.dangling.len() < NAMED {
            self.dangling.push(oid);
        }
    }

    /// The error for the dangling refs found.
    pub(crate) fn dangling_error(&self) -> Error {
        Error::DanglingRefs {
            count: self.dangling_count,
            oids: self.dangling.clone(),
        }
    }

    /// The report of a pack whose walk this was, from the pack point through `seen`
    /// over `bytes_before` stored (nothing freed yet); [`Error::DanglingRefs`] if the
    /// walk found dangling refs and `opts` does not force the pack.
    pub(crate) fn report(
        &self,
        point: Tid,
        seen: Tid,
        bytes_before: u64,
        opts: &crate::journal::PackOptions,
    ) -> Result<crate::journal::PackReport> {
        if self.dangling_count > 0 && !opts.force {
            return Err(self.dangling_error());
        }
        Ok(crate::journal::PackReport {
            dry_run: opts.dry_run,
            history_from: point,
            objects: self.objects,
            object_bytes: self.object_bytes,
            transactions: seen.0.saturating_sub(point.0),
            bytes_before,
            bytes_after: bytes_before,
            dangling: self.dangling_count,
        })
    }
}

/// Tells `opts`'s progress callback, if any, how far a pack is.
pub(crate) fn progress(
    opts: &crate::journal::PackOptions,
    phase: crate::journal::PackPhase,
    objects: u64,
    bytes: u64,
) {
    if let Some(p) = &opts.progress {
        p(&crate::journal::PackProgress {
            phase,
            objects,
            bytes,
        });
    }
}

/// The one record a load of `oid` found, or [`Error::NotFound`].
pub(crate) fn found(loaded: Vec<Option<crate::record::Loaded>>, oid: Oid) -> Result<crate::record::Loaded> {
    loaded.into_iter().next().flatten().ok_or(Error::NotFound { oid })
}
