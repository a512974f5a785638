//! Pack of the SQLite storage: drops the versions no snapshot from the pack point on can
//! read, by reachability through the refs column (no data is decoded).
//!
//! The pack point is the last transaction (or earlier, by [`Keep`]), and never later
//! than the oldest snapshot this handle has pinned, so a running transaction never
//! notices. The walk runs in a read transaction, beside commits; only the last step
//! takes the write lock: it walks on from the refs committed meanwhile, then deletes, in
//! one SQLite transaction, every version at or before the point of an oid the walk did
//! not reach, every version older than the one visible at the point, and the
//! transaction rows before the point. Rows after the point are never touched, and their
//! refs are roots of the walk, so no kept transaction refers to a dropped object. A
//! crash at any moment leaves the file as it was or packed: SQLite makes the deletion
//! atomic. Freed pages are reused by later commits; the file does not shrink (a
//! `VACUUM` would hold the write lock for as long as it copies the whole file).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::sql::{self, Sql};
use super::Sqlite;
use crate::error::{Error, Result};
use crate::journal::{Keep, PackOptions, PackPhase, PackReport};
use crate::record::{Oid, Tid};
use crate::storage::tables::{self, progress, Walk};

/// Oids the walk visits between looks at `cancel`.
const STEP: usize = 256;
/// The walk's steps on this storage's tables.
trait Visit {
    fn roots_after(&mut self, conn: &Connection, after: Tid, upto: Tid) -> Result<()>;
    fn run(&mut self, conn: &Connection, point: Tid, opts: &PackOptions, cancel: &AtomicBool) -> Result<()>;
}

impl Visit for Walk {
    /// Adds the refs of every version after `after` (and at or before `upto`) as roots:
    /// the versions the transaction rows in that range list.
    fn roots_after(&mut self, conn: &Connection, after: Tid, upto: Tid) -> Result<()> {
        let mut refs_of = conn
            .prepare_cached("SELECT refs FROM durus_object WHERE oid = ?1 AND tid = ?2")
            .sql()?;
        for (tid, _, oids) in sql::transactions(conn, after, upto)? {
            for oid in oids {
                let refs: Option<Vec<u8>> = refs_of
                    .query_row(params![oid.0 as i64, tid.0 as i64], |r| r.get(0))
                    .optional()
                    .sql()?;
                // The version is gone only if a pack (of another process, at a later
                // point) dropped it, so nothing after that point refers through it.
                let Some(refs) = refs else { continue };
                for r in crate::storage::tables::parse_refs(oid, tid, &refs)? {
                    self.push(r);
                }
            }
        }
        Ok(())
    }

    /// Visits what is to visit, at `point`; `upto` bounds the rows that count as
    /// existing (those the walk's transaction can see).
    fn run(&mut self, conn: &Connection, point: Tid, opts: &PackOptions, cancel: &AtomicBool) -> Result<()> {
        let mut steps = 0usize;
        while let Some(oid) = self.todo.pop() {
            steps += 1;
            if steps.is_multiple_of(STEP) {
                if cancel.load(Ordering::Acquire) {
                    return Err(Error::Cancelled);
                }
                progress(opts, PackPhase::Marking, self.objects, self.object_bytes);
            }
            match sql::load_visible(conn, oid, point)? {
                Some(l) => self.reached(l),
                // Made after the point (kept as it is), or the root of an empty store.
                None if oid == Oid::ROOT || exists(conn, oid)? => {}
                None => self.missing(oid),
            }
        }
        Ok(())
    }
}

fn exists(conn: &Connection, oid: Oid) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM durus_object WHERE oid = ?1 LIMIT 1")
        .and_then(|mut s| s.exists([oid.0 as i64]))
        .sql()
}

/// Bytes of stored versions (data and refs): what a pack frees is measured in these.
fn stored_bytes(conn: &Connection) -> Result<u64> {
    let n: Option<i64> = conn
        .query_row(
            "SELECT SUM(length(data) + length(refs)) FROM durus_object",
            [],
            |r| r.get(0),
        )
        .sql()?;
    Ok(n.unwrap_or(0) as u64)
}

/// The pack point `keep` asks for, given the last transaction.
fn wanted_point(conn: &Connection, keep: Keep, last: Tid) -> Result<Tid> {
    Ok(match keep {
        Keep::Nothing => last,
        Keep::Transactions(n) => Tid(last.0.saturating_sub(n)),
        Keep::Duration(d) => {
            let since = crate::clock::now_micros().saturating_sub(d.as_micros() as u64);
            // The snapshot at the window's start: the window reads from it on.
            let t: Option<i64> = conn
                .query_row(
                    "SELECT MAX(tid) FROM durus_tx WHERE ts <= ?1 AND tid <= ?2",
                    params![since.min(i64::MAX as u64) as i64, last.0 as i64],
                    |r| r.get(0),
                )
                .sql()?;
            Tid(t.unwrap_or(0) as u64)
        }
    })
}

/// Packs (see the module docs).
pub(super) fn pack(s: &Sqlite, opts: &PackOptions, cancel: &AtomicBool) -> Result<PackReport> {
    let _one = crate::sync::lock(&s.packing);
    drop(s.writer()?); // refuses a closed or poisoned handle before any work
    crate::storage::SyncStorage::refresh(s)?;
    let known = s.view()?.known;
    let wanted = s.read(|c| wanted_point(c, opts.keep, known))?;
    tables::pack_at(&s.view, wanted, opts.dry_run, |point| {
        walk_and_delete(s, point, opts, cancel)
    })
}

fn walk_and_delete(s: &Sqlite, point: Tid, opts: &PackOptions, cancel: &AtomicBool) -> Result<PackReport> {
    // The walk, beside commits, in one read transaction.
    let (mut walk, seen, bytes_before) = s.read(|c| {
        let tx = c.transaction().sql()?;
        let seen = sql::max_tid(&tx)?;
        let mut walk = Walk::default();
        walk.push(Oid::ROOT);
        walk.roots_after(&tx, point, seen)?;
        walk.run(&tx, point, opts, cancel)?;
        Ok((walk, seen, stored_bytes(&tx)?))
    })?;
    let mut report = walk.report(point, seen, bytes_before, opts)?;
    if opts.dry_run {
        report.bytes_after = bytes_before.saturating_sub(droppable(s, point, &walk.marked)?);
        return Ok(report);
    }
    if cancel.load(Ordering::Acquire) {
        return Err(Error::Cancelled);
    }
    progress(opts, PackPhase::Switching, walk.objects, bytes_before);
    // The last step, under the write lock.
    let mut g = s.writer()?;
    let w = g.as_mut().ok_or(Error::Closed)?;
    let tx = w
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql()?;
    let last = sql::max_tid(&tx)?;
    walk.roots_after(&tx, seen, last)?;
    let never = AtomicBool::new(false);
    walk.run(&tx, point, opts, &never)?;
    if walk.dangling_count > report.dangling && !opts.force {
        return Err(walk.dangling_error());
    }
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS durus_keep (oid INTEGER PRIMARY KEY); DELETE FROM durus_keep;",
    )
    .sql()?;
    {
        let mut ins = tx
            .prepare_cached("INSERT INTO durus_keep (oid) VALUES (?1)")
            .sql()?;
        for &oid in &walk.marked {
            ins.execute([oid as i64]).sql()?;
        }
    }
    let p = point.0 as i64;
    tx.execute(
        "DELETE FROM durus_object WHERE tid <= ?1 AND oid NOT IN (SELECT oid FROM durus_keep)",
        [p],
    )
    .sql()?;
    tx.execute(
        "DELETE FROM durus_object WHERE tid < ?1 AND EXISTS (
             SELECT 1 FROM durus_object AS n
             WHERE n.oid = durus_object.oid AND n.tid > durus_object.tid AND n.tid <= ?1)",
        [p],
    )
    .sql()?;
    tx.execute("DELETE FROM durus_tx WHERE tid < ?1", [p]).sql()?;
    let from = sql::meta(&tx, "history_from")?.max(p);
    sql::set_meta(&tx, "history_from", from)?;
    tx.execute("DELETE FROM durus_keep", []).sql()?;
    report.bytes_after = stored_bytes(&tx)?;
    report.objects = walk.objects;
    report.object_bytes = walk.object_bytes;
    report.transactions = last.0.saturating_sub(point.0);
    report.dangling = walk.dangling_count;
    tx.commit().sql()?;
    drop(g);
    let mut v = s.view()?;
    v.known = v.known.max(last);
    Ok(report)
}

/// Bytes a pack at `point` would drop, for a dry run.
fn droppable(s: &Sqlite, point: Tid, marked: &HashSet<u64>) -> Result<u64> {
    s.read(|c| {
        let mut st = c
            .prepare_cached(
                "SELECT oid, length(data) + length(refs),
                        tid < (SELECT MAX(n.tid) FROM durus_object AS n
                               WHERE n.oid = durus_object.oid AND n.tid <= ?1)
                 FROM durus_object WHERE tid <= ?1",
            )
            .sql()?;
        let rows = st
            .query_map([point.0 as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, bool>(2)?))
            })
            .sql()?;
        let mut n = 0u64;
        for row in rows {
            let (oid, len, older) = row.sql()?;
            if older || !marked.contains(&(oid as u64)) {
                n += len as u64;
            }
        }
        Ok(n)
    })
}
