//! Pack of the PostgreSQL storage: drops the versions no snapshot from the pack point on
//! can read, by reachability through the refs column (no data is decoded).
//!
//! The pack point is the last transaction (or earlier, by [`Keep`]), and never later
//! than the oldest snapshot this handle has pinned. The walk runs in a repeatable-read
//! transaction, beside commits (of every process); only the last step takes the write
//! lock: it walks on from the refs committed meanwhile, then deletes, in one
//! transaction, every version at or before the point of an oid the walk did not reach,
//! every version older than the one visible at the point, and the transaction rows
//! before the point, and raises the pack point in `durus_meta` so that other processes
//! stop serving snapshots before it. Rows after the point are never touched, and their
//! refs are roots of the walk, so no kept transaction refers to a dropped object.
//! PostgreSQL makes the deletion atomic; its autovacuum reuses the space.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use super::sql::{self, Conn};
use super::Postgres;
use crate::error::{Error, Result};
use crate::journal::{Keep, PackOptions, PackPhase, PackReport};
use crate::record::{Oid, Tid};
use crate::storage::tables::{self, progress, Walk};

/// Oids the walk loads in one query (and visits between looks at `cancel`).
const STEP: usize = 256;

/// The walk's steps on this storage's tables.
trait Visit {
    fn roots_after(&mut self, c: &mut Conn, after: Tid, upto: Tid) -> Result<()>;
    fn run(&mut self, c: &mut Conn, point: Tid, opts: &PackOptions, cancel: &AtomicBool) -> Result<()>;
}

impl Visit for Walk {
    /// Adds the refs of every version after `after` (and at or before `upto`) as roots.
    fn roots_after(&mut self, c: &mut Conn, after: Tid, upto: Tid) -> Result<()> {
        let rows = c.query(
            "SELECT oid, tid, refs FROM durus_object WHERE tid > $1 AND tid <= $2",
            &[&(after.0 as i64), &(upto.0 as i64)],
        )?;
        for r in &rows {
            let (oid, tid) = (Oid(sql::int(r, 0)?), sql::tid(r, 1)?);
            let refs: &[u8] = r.try_get(2).map_err(sql::to_error)?;
            for o in tables::parse_refs(oid, tid, refs)? {
                self.push(o);
            }
        }
        Ok(())
    }

    /// Visits what is to visit, at `point`, a batch of oids per query.
    fn run(&mut self, c: &mut Conn, point: Tid, opts: &PackOptions, cancel: &AtomicBool) -> Result<()> {
        while !self.todo.is_empty() {
            if cancel.load(Ordering::Acquire) {
                return Err(Error::Cancelled);
            }
            let at = self.todo.len().saturating_sub(STEP);
            let batch = self.todo.split_off(at);
            let mut found = c.load_visible(&batch, point)?;
            let mut missing = Vec::new();
            for oid in batch {
                match found.remove(&oid) {
                    Some(l) => self.reached(l),
                    // The root of an empty store.
                    None if oid == Oid::ROOT => {}
                    None => missing.push(oid),
                }
            }
            if !missing.is_empty() {
                // Made after the point (kept as it is), or truly missing.
                let later: HashSet<Oid> = c.existing(&missing)?.into_iter().collect();
                for oid in missing.into_iter().filter(|o| !later.contains(o)) {
                    self.missing(oid);
                }
            }
            progress(opts, PackPhase::Marking, self.objects, self.object_bytes);
        }
        Ok(())
    }
}

/// Bytes of stored versions (data and refs): what a pack frees is measured in these.
fn stored_bytes(c: &mut Conn) -> Result<u64> {
    let rows = c.query(
        "SELECT COALESCE(SUM(length(data) + length(refs)), 0)::bigint FROM durus_object",
        &[],
    )?;
    sql::int(sql::one(&rows)?, 0)
}

/// The pack point `keep` asks for, given the last transaction.
fn wanted_point(c: &mut Conn, keep: Keep, last: Tid) -> Result<Tid> {
    Ok(match keep {
        Keep::Nothing => last,
        Keep::Transactions(n) => Tid(last.0.saturating_sub(n)),
        // The snapshot at the window's start: the window reads from it on.
        Keep::Duration(d) => c.tid_at(
            crate::clock::now_micros().saturating_sub(d.as_micros() as u64),
            last,
        )?,
    })
}

/// Packs (see the module docs).
pub(super) fn pack(s: &Postgres, opts: &PackOptions, cancel: &AtomicBool) -> Result<PackReport> {
    let _one = crate::sync::lock(&s.packing);
    crate::storage::SyncStorage::refresh(s)?;
    let known = s.view()?.known;
    let wanted = s.read(|c| wanted_point(c, opts.keep, known))?;
    tables::pack_at(&s.view, wanted, opts.dry_run, |point| {
        walk_and_delete(s, point, opts, cancel)
    })
}

fn walk_and_delete(s: &Postgres, point: Tid, opts: &PackOptions, cancel: &AtomicBool) -> Result<PackReport> {
    // The walk, beside commits, in one repeatable-read transaction.
    let (mut walk, seen, bytes_before) = s.read(|c| {
        c.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", |c| {
            let seen = c.last_tx()?.0;
            let mut walk = Walk::default();
            walk.push(Oid::ROOT);
            walk.roots_after(c, point, seen)?;
            walk.run(c, point, opts, cancel)?;
            Ok((walk, seen, stored_bytes(c)?))
        })
    })?;
    let mut report = walk.report(point, seen, bytes_before, opts)?;
    if opts.dry_run {
        report.bytes_after = bytes_before.saturating_sub(s.read(|c| droppable(c, point, &walk.marked))?);
        return Ok(report);
    }
    if cancel.load(Ordering::Acquire) {
        return Err(Error::Cancelled);
    }
    progress(opts, PackPhase::Switching, walk.objects, bytes_before);
    // The last step, under the write lock.
    let last = s.write(|c| {
        c.transaction("BEGIN", |c| {
            c.lock_writers()?;
            let last = c.last_tx()?.0;
            walk.roots_after(c, seen, last)?;
            let never = AtomicBool::new(false);
            let dangling_before = walk.dangling_count;
            walk.run(c, point, opts, &never)?;
            if walk.dangling_count > dangling_before && !opts.force {
                return Err(walk.dangling_error());
            }
            delete(c, point, &walk.marked)?;
            report.bytes_after = stored_bytes(c)?;
            Ok(last)
        })
    })?;
    report.objects = walk.objects;
    report.object_bytes = walk.object_bytes;
    report.transactions = last.0.saturating_sub(point.0);
    report.dangling = walk.dangling_count;
    let mut v = s.view()?;
    v.known = v.known.max(last);
    Ok(report)
}

/// The deletions of a pack at `point` keeping `marked`, and the new pack point.
fn delete(c: &mut Conn, point: Tid, marked: &HashSet<u64>) -> Result<()> {
    let keep: Vec<i64> = marked.iter().map(|&o| o as i64).collect();
    let p = point.0 as i64;
    c.batch("CREATE TEMP TABLE IF NOT EXISTS durus_keep (oid BIGINT PRIMARY KEY) ON COMMIT DELETE ROWS")?;
    c.execute(
        "INSERT INTO durus_keep (oid) SELECT unnest($1::bigint[])",
        &[&keep],
    )?;
    c.execute(
        "DELETE FROM durus_object o WHERE o.tid <= $1
         AND NOT EXISTS (SELECT 1 FROM durus_keep k WHERE k.oid = o.oid)",
        &[&p],
    )?;
    c.execute(
        "DELETE FROM durus_object o WHERE o.tid < $1 AND EXISTS (
             SELECT 1 FROM durus_object n WHERE n.oid = o.oid AND n.tid > o.tid AND n.tid <= $1)",
        &[&p],
    )?;
    c.execute("DELETE FROM durus_tx WHERE tid < $1", &[&p])?;
    let from = c.meta("history_from")?.max(p);
    c.set_meta("history_from", from)
}

/// Bytes a pack at `point` would drop, for a dry run.
fn droppable(c: &mut Conn, point: Tid, marked: &HashSet<u64>) -> Result<u64> {
    let rows = c.query(
        "SELECT oid, length(data) + length(refs),
                tid < (SELECT MAX(n.tid) FROM durus_object n WHERE n.oid = o.oid AND n.tid <= $1)
         FROM durus_object o WHERE tid <= $1",
        &[&(point.0 as i64)],
    )?;
    let mut n = 0u64;
    for r in &rows {
        let oid = sql::int(r, 0)?;
        let len: i32 = r.try_get(1).map_err(sql::to_error)?;
        let older: bool = r.try_get(2).map_err(sql::to_error)?;
        if older || !marked.contains(&oid) {
            n += len.max(0) as u64;
        }
    }
    Ok(n)
}
