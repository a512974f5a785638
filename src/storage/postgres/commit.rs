//! Commits and oid reservations of the PostgreSQL storage.
//!
//! A write group is one PostgreSQL transaction (read committed) that first takes the
//! advisory write lock: every other writer, of any process, waits for it, so each
//! statement after the lock sees everything committed before the group, exactly as the
//! journal's validation sees everything under its writer lock. Each member is checked
//! against the database (which already holds the group's earlier members) and written
//! only if it passes; one `COMMIT` makes the whole group durable.
//!
//! Oids come from the sequence `durus_oid_seq`, a batch at a time. Sequences are not
//! transactional and PostgreSQL does not flush a bare `nextval` to its log, so the
//! reservation also raises the allocation mark in `durus_meta` in the same transaction:
//! its `COMMIT` flushes the sequence's advance too (`synchronous_commit` on for it, also
//! under [`Durability::Eventual`](crate::journal::Durability::Eventual)), and no oid is
//! handed out before that, so none is handed out twice, not after a crash of the server
//! either.

use super::sql::{self, Conn};
use super::{listen, Postgres};
use crate::error::{Error, Result};
use crate::record::{CommitRequest, Committed, Oid, Tid};
use crate::storage::tables::{self, Screened};

/// Oids reserved from the sequence at a time (at least what is asked for).
const RESERVE: u64 = 256;

/// Hands out `n` fresh oids, reserving more from the sequence when this handle's
/// reservation runs out.
pub(super) fn new_oids(s: &Postgres, n: u64) -> Result<Vec<Oid>> {
    let mut reserved = crate::sync::lock(&s.reserved);
    drop(s.view()?);
    if (reserved.len() as u64) < n {
        let more = n.max(RESERVE);
        let got = s.read(|c| reserve(c, more))?;
        reserved.extend(got);
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        match reserved.pop_first() {
            Some(o) => out.push(Oid(o)),
            None => return Err(Error::Internal("an oid reservation came up short".into())),
        }
    }
    Ok(out)
}

/// Takes `n` values of the sequence and raises the allocation mark past them.
fn reserve(c: &mut Conn, n: u64) -> Result<Vec<u64>> {
    let n = i64::try_from(n).map_err(|_| Error::Exhausted { what: "oids" })?;
    c.transaction("BEGIN", |c| {
        // Flushed at COMMIT also under `Durability::Eventual`: an oid must never come
        // back after a crash of the server, whatever commits it lost.
        c.batch("SET LOCAL synchronous_commit = on")?;
        let rows = c
            .query(
                "SELECT nextval('durus_oid_seq') FROM generate_series(1, $1::bigint)",
                &[&n],
            )
            .map_err(|e| match e {
                // The sequence ends at i64::MAX.
                Error::Io(io) if io.to_string().contains("2200H") => Error::Exhausted { what: "oids" },
                other => other,
            })?;
        let got: Vec<u64> = rows.iter().map(|r| sql::int(r, 0)).collect::<Result<_>>()?;
        let end = got.iter().max().map_or(1, |&m| m.saturating_add(1)) as i64;
        c.execute(
            "UPDATE durus_meta SET value = GREATEST(value, $1) WHERE key = 'next_oid'",
            &[&end],
        )?;
        Ok(got)
    })
}

/// Commits a group (see the module docs); one result per request.
pub(super) fn commit_many(s: &Postgres, reqs: &[CommitRequest]) -> Vec<Result<Committed>> {
    let result = s.write(|c| {
        let r = c.transaction("BEGIN", |c| commit_group(s, c, reqs));
        // Whatever happened, this handle's group is no longer being written.
        let mut v = crate::sync::lock(&s.view);
        v.writing = Tid::ZERO;
        let (results, last) = r?;
        v.known = v.known.max(last);
        Ok(results)
    });
    match result {
        Ok(results) => results,
        Err(e) => reqs.iter().map(|_| Err(e.clone())).collect(),
    }
}

/// The group inside its transaction, after the write lock. An SQL error fails (and
/// rolls back) the whole group; a member that does not validate fails alone. Returns
/// the results and the newest tid seen.
fn commit_group(s: &Postgres, c: &mut Conn, reqs: &[CommitRequest]) -> Result<(Vec<Result<Committed>>, Tid)> {
    c.lock_writers()?;
    let next_oid = (c.meta("next_oid")?.max(1)) as u64;
    let (mut last, mut last_ts) = c.last_tx()?;
    let mut results = Vec::with_capacity(reqs.len());
    for req in reqs {
        let unissued = |o: Oid| crate::sync::lock(&s.reserved).contains(&o.0);
        let done = match tables::screen(req, next_oid, (last, last_ts), unissued, |checks| {
            c.changed_after(checks)
        })? {
            Screened::Answer(r) => {
                results.push(r);
                continue;
            }
            Screened::Write(done) => done,
        };
        write(c, done.tid, done.timestamp, req, s.opts.history_free)?;
        (last, last_ts) = (done.tid, done.timestamp);
        // While the COMMIT runs, a refresh that sees these tids leaves them to us: the
        // Db hears of them from this commit, not as another process's.
        crate::sync::lock(&s.view).writing = last;
        results.push(Ok(done));
    }
    if results.iter().any(|r| r.is_ok()) {
        // Delivered to every listening handle when the group commits (see `listen.rs`).
        c.query(
            "SELECT pg_notify($1, $2)",
            &[&listen::CHANNEL, &last.0.to_string()],
        )?;
    }
    Ok((results, last))
}

/// Inserts one transaction's rows; `history_free` also lists its oids in its
/// transaction row and deletes the versions it replaces.
fn write(c: &mut Conn, tid: Tid, timestamp: u64, req: &CommitRequest, history_free: bool) -> Result<()> {
    let t = tid.0 as i64;
    let ts = timestamp.min(i64::MAX as u64) as i64;
    if history_free {
        let listed = tables::written_blob(req);
        c.execute(
            "INSERT INTO durus_tx (tid, ts, oids) VALUES ($1, $2, $3)",
            &[&t, &ts, &listed],
        )?;
    } else {
        c.execute("INSERT INTO durus_tx (tid, ts) VALUES ($1, $2)", &[&t, &ts])?;
    }
    let oids: Vec<i64> = req.records.iter().map(|r| r.oid.0 as i64).collect();
    let data: Vec<&[u8]> = req.records.iter().map(|r| r.data.as_slice()).collect();
    let refs: Vec<Vec<u8>> = req.records.iter().map(|r| tables::refs_blob(&r.refs)).collect();
    c.execute(
        "INSERT INTO durus_object (oid, tid, data, refs)
         SELECT o, $2, d, r FROM unnest($1::bigint[], $3::bytea[], $4::bytea[]) AS w(o, d, r)",
        &[&oids, &t, &data, &refs],
    )?;
    if history_free {
        // In this same transaction: a reader sees the old version or the new one.
        c.execute(
            "DELETE FROM durus_object WHERE oid = ANY($1) AND tid < $2",
            &[&oids, &t],
        )?;
    }
    Ok(())
}
