//! Commits and oid reservations of the SQLite storage.
//!
//! A write group is one `BEGIN IMMEDIATE` transaction: SQLite's write lock keeps every
//! other writer (another process too) out while the group is validated and written, so
//! the validation sees everything committed before it, exactly as the journal's does
//! under its writer lock. Each member is checked against the file (which already holds
//! the group's earlier members) and written only if it passes; one `COMMIT`, one sync
//! of the log, makes the whole group durable.

use rusqlite::{params, TransactionBehavior};

use super::sql::{self, Sql};
use super::{Sqlite, Writer};
use crate::error::{Error, Result};
use crate::record::{CommitRequest, Committed, Oid, Tid};
use crate::storage::tables::{self, Screened};

/// Oids reserved from the file at a time (at least what is asked for).
const RESERVE: u64 = 256;

/// Hands out `n` fresh oids, reserving more from the file's allocation mark (durably,
/// before any of them is handed out) when this handle's reservation runs out.
pub(super) fn new_oids(s: &Sqlite, n: u64) -> Result<Vec<Oid>> {
    let mut g = s.writer()?;
    let w = g.as_mut().ok_or(Error::Closed)?;
    if w.end_oid - w.next_oid < n {
        reserve(s, w, n.max(RESERVE))?;
    }
    Ok(hand_out(w, n))
}

/// Takes `n` oids from the reservation, which holds them.
fn hand_out(w: &mut Writer, n: u64) -> Vec<Oid> {
    let first = w.next_oid;
    w.next_oid += n;
    (first..w.next_oid).map(Oid).collect()
}

/// Hands out `n` oids from this handle's reservation if that needs no wait: the
/// write connection is free (no commit holds it) and enough oids are reserved.
pub(super) fn try_new_oids(s: &Sqlite, n: u64) -> Option<Result<Vec<Oid>>> {
    let mut g = s.writer.try_lock().ok()?;
    let w = g.as_mut()?;
    // A closed or poisoned handle answers on the slow path, with its error.
    if w.end_oid - w.next_oid < n || s.view().ok()?.poisoned.is_some() {
        return None;
    }
    Some(Ok(hand_out(w, n)))
}

/// Raises the allocation mark in the file by `n` and takes the range below it.
///
/// The raise is committed without a sync of its own: in WAL mode the log is one file
/// written in order, so the sync of any later commit (the first that could store one
/// of these oids, from this handle or another process) makes the raise durable with
/// it. A crash before that loses only a raise that no durable record depends on.
fn reserve(s: &Sqlite, w: &mut Writer, n: u64) -> Result<()> {
    let durable = s.durable();
    if durable {
        w.conn.pragma_update(None, "synchronous", "NORMAL").sql()?;
    }
    let r = reserve_in(s, w, n);
    if durable {
        // A handle that cannot put FULL back must not commit: poison it.
        if let Err(e) = w.conn.pragma_update(None, "synchronous", "FULL") {
            return Err(poison(s, "restoring synchronous=FULL", e));
        }
    }
    r
}

fn reserve_in(s: &Sqlite, w: &mut Writer, n: u64) -> Result<()> {
    let tx = w
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql()?;
    let first = (sql::meta(&tx, "next_oid")? as u64).max(1);
    let end = first
        .checked_add(n)
        .filter(|&e| e <= i64::MAX as u64)
        .ok_or(Error::Exhausted { what: "oids" })?;
    sql::set_meta(&tx, "next_oid", end as i64)?;
    if let Err(e) = tx.commit() {
        return Err(poison(s, "reserving oids", e));
    }
    w.next_oid = first;
    w.end_oid = end;
    Ok(())
}

/// Commits a group (see the module docs); one result per request.
pub(super) fn commit_many(s: &Sqlite, reqs: &[CommitRequest]) -> Vec<Result<Committed>> {
    let failed = |e: Error| reqs.iter().map(|_| Err(e.clone())).collect();
    let mut g = match s.writer() {
        Ok(g) => g,
        Err(e) => return failed(e),
    };
    let Some(w) = g.as_mut() else {
        return failed(Error::Closed);
    };
    match commit_group(s, w, reqs) {
        Ok(results) => results,
        Err(e) => failed(e),
    }
}

/// The group in one SQLite transaction. An SQL error fails (and rolls back) the whole
/// group; a member that does not validate fails alone.
fn commit_group(s: &Sqlite, w: &mut Writer, reqs: &[CommitRequest]) -> Result<Vec<Result<Committed>>> {
    let (local_next, local_end) = (w.next_oid, w.end_oid);
    let tx = w
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql()?;
    let next_oid = (sql::meta(&tx, "next_oid")? as u64).max(1);
    let mut last = sql::max_tid(&tx)?;
    let mut last_ts = sql::timestamp_of(&tx, last)?;
    let mut results = Vec::with_capacity(reqs.len());
    let mut wrote = false;
    for req in reqs {
        let unissued = |o: Oid| (local_next..local_end).contains(&o.0);
        let changed = |checks: &[(Oid, Tid)]| changed_since(&tx, checks);
        let done = match tables::screen(req, next_oid, (last, last_ts), unissued, changed)? {
            Screened::Answer(r) => {
                results.push(r);
                continue;
            }
            Screened::Write(done) => done,
        };
        write(&tx, done.tid, done.timestamp, req)?;
        wrote = true;
        (last, last_ts) = (done.tid, done.timestamp);
        results.push(Ok(done));
    }
    if wrote {
        // While the COMMIT runs, a refresh that sees these tids leaves them to us: the
        // Db hears of them from this commit, not as another process's.
        crate::sync::lock(&s.view).writing = last;
        let r = tx.commit();
        let mut v = crate::sync::lock(&s.view);
        v.writing = Tid::ZERO;
        if let Err(e) = r {
            drop(v);
            return Err(poison(s, "committing a write group", e));
        }
        v.known = v.known.max(last);
    } else {
        drop(tx);
        let mut v = s.view()?;
        v.known = v.known.max(last);
    }
    Ok(results)
}

/// Checks at most this many oids with one point query each; more are checked in one
/// pass over what was stored since the snapshot (when that is not much more).
const POINT_CHECKS: usize = 32;

/// Which of the oids to check were written after their tid. A few oids are looked up
/// one by one (a point query on the primary key each). For many, with a recent
/// snapshot, the versions stored since are read in one query and every oid is checked
/// against them, instead of one query per oid (a bulk load of 10,000 fresh oids asked
/// 10,000 times); a snapshot far behind is checked one oid at a time all the same.
fn changed_since(tx: &rusqlite::Transaction<'_>, checks: &[(Oid, Tid)]) -> Result<Vec<Oid>> {
    let Some(from) = checks.iter().map(|c| c.1).min() else {
        return Ok(Vec::new());
    };
    let mut hit = Vec::new();
    let recent = match checks.len() <= POINT_CHECKS {
        true => None,
        false => sql::changes_after(tx, from, checks.len().saturating_mul(4))?,
    };
    match recent {
        Some(recent) => {
            hit.extend(
                checks
                    .iter()
                    .filter(|(oid, after)| recent.get(oid).is_some_and(|newest| newest > after))
                    .map(|c| c.0),
            );
        }
        None => {
            for &(oid, after) in checks {
                if sql::changed_after(tx, oid, after)? {
                    hit.push(oid);
                }
            }
        }
    }
    Ok(hit)
}

/// Inserts one transaction's rows.
fn write(tx: &rusqlite::Transaction<'_>, tid: Tid, timestamp: u64, req: &CommitRequest) -> Result<()> {
    tx.prepare_cached("INSERT INTO durus_tx (tid, ts, oids) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| {
            st.execute(params![
                tid.0 as i64,
                timestamp.min(i64::MAX as u64) as i64,
                tables::written_blob(req)
            ])
        })
        .sql()?;
    let mut chunks = req.records.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut st = tx.prepare_cached(insert_rows()).sql()?;
        for chunk in chunks.by_ref() {
            for (i, r) in chunk.iter().enumerate() {
                bind_row(&mut st, 4 * i + 1, tid, r)?;
            }
            st.raw_execute().sql()?;
        }
    }
    let mut st = tx
        .prepare_cached("INSERT INTO durus_object (oid, tid, data, refs) VALUES (?1, ?2, ?3, ?4)")
        .sql()?;
    for r in chunks.remainder() {
        bind_row(&mut st, 1, tid, r)?;
        st.raw_execute().sql()?;
    }
    Ok(())
}

/// Rows one statement inserts in a large commit: a statement's own cost (SQLite runs
/// its program once per execution) is then shared by this many records.
const ROWS_PER_INSERT: usize = 32;

/// The `INSERT` of [`ROWS_PER_INSERT`] rows.
fn insert_rows() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let rows = vec!["(?, ?, ?, ?)"; ROWS_PER_INSERT].join(", ");
        format!("INSERT INTO durus_object (oid, tid, data, refs) VALUES {rows}")
    })
}

/// Binds one record's row to the parameters from `first` on.
fn bind_row(
    st: &mut rusqlite::CachedStatement<'_>,
    first: usize,
    tid: Tid,
    r: &crate::record::Record,
) -> Result<()> {
    st.raw_bind_parameter(first, r.oid.0 as i64).sql()?;
    st.raw_bind_parameter(first + 1, tid.0 as i64).sql()?;
    st.raw_bind_parameter(first + 2, r.data.as_slice()).sql()?;
    st.raw_bind_parameter(first + 3, tables::refs_blob(&r.refs)).sql()
}

/// A failed `COMMIT`: SQLite rolled the transaction back or could not say whether its
/// log reached the disk. Like the journal after a failed sync, the handle refuses
/// further writes until it is reopened, and the error says what happened.
fn poison(s: &Sqlite, during: &str, e: rusqlite::Error) -> Error {
    let io = match sql::to_error(e) {
        Error::Io(io) => io,
        other => std::sync::Arc::new(std::io::Error::other(other.to_string())),
    };
    crate::sync::lock(&s.view).poisoned = Some((during.to_string(), io.clone()));
    Error::Poisoned {
        during: during.to_string(),
        source: io,
    }
}
