//! The SQL side of [`SqliteStorage`](super::SqliteStorage): the schema, opening a
//! connection with its pragmas, error mapping, and the queries loads and history use.
//!
//! Tables (all created by the first open; a file made by another program is refused):
//!
//! | table | rows | key |
//! |---|---|---|
//! | `durus_meta` | `format` (2), `next_oid` (the allocation mark: every oid below it was handed out or reserved), `history_from` (the pack point) | `key` |
//! | `durus_tx` | one per transaction: its commit timestamp (µs since the Unix epoch) and the oids it wrote (8 bytes each, big-endian, ascending), which history queries read | `tid` |
//! | `durus_object` | one per stored version: its data and its refs (8 bytes each, big-endian, so pack reads them without decoding the data) | `(oid, tid)` |
//!
//! The oids a transaction wrote sit in its `durus_tx` row rather than in an index of
//! `durus_object` by tid (format 1 had one): a commit then updates one B-tree per
//! record instead of two, which made bulk loads half as fast as plain SQLite's. A
//! format 1 file is upgraded when it is opened.
//!
//! Oids, tids and timestamps are stored as SQLite integers (signed 64 bits); the
//! allocator never hands out an oid past `i64::MAX`, so the casts below never wrap for
//! a stored value.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::error::{Error, Result};
use crate::record::{Loaded, Oid, Record, Tid};

/// The schema version this build reads and writes.
pub(super) const FORMAT: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS durus_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS durus_tx (
    tid INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    oids BLOB NOT NULL DEFAULT x''
);
CREATE TABLE IF NOT EXISTS durus_object (
    oid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    data BLOB NOT NULL,
    refs BLOB NOT NULL,
    PRIMARY KEY (oid, tid)
) WITHOUT ROWID;
INSERT OR IGNORE INTO durus_meta (key, value) VALUES ('format', 2), ('next_oid', 1), ('history_from', 0);
";

/// Turns SQLite's errors into durus's: a full disk stays recognisable
/// ([`Error::io_kind`]), a busy database is `ResourceBusy`, a damaged file is
/// [`Error::Corrupt`].
pub(super) trait Sql<T> {
    /// The result with a durus error.
    fn sql(self) -> Result<T>;
}

impl<T> Sql<T> for rusqlite::Result<T> {
    fn sql(self) -> Result<T> {
        self.map_err(to_error)
    }
}

pub(super) fn to_error(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    use std::io::ErrorKind as K;
    let kind = match e.sqlite_error_code() {
        Some(C::DatabaseCorrupt | C::NotADatabase) => {
            return Error::corrupt(0, format!("sqlite: {e}"));
        }
        Some(C::DiskFull) => K::StorageFull,
        Some(C::DatabaseBusy | C::DatabaseLocked) => K::ResourceBusy,
        Some(C::PermissionDenied | C::ReadOnly) => K::PermissionDenied,
        Some(C::CannotOpen) => K::NotFound,
        _ => K::Other,
    };
    Error::from(std::io::Error::new(kind, format!("sqlite: {e}")))
}

/// Opens a connection to the file with the pragmas every connection needs, creating
/// the schema (and switching the file to WAL) if `create` is set.
pub(super) fn connect(path: &Path, durable: bool, busy: Duration, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).sql()?;
    conn.busy_timeout(busy).sql()?;
    if create {
        // WAL: readers never block the writer nor it them, and a commit is one append
        // to the log. The mode is a property of the file, kept across opens.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .sql()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Invalid(format!(
                "SQLite refused WAL mode for {} (it stays in {mode} mode)",
                path.display()
            )));
        }
    }
    // FULL syncs the log at every commit: a commit that returned survives power loss.
    // NORMAL (in WAL mode) survives a crash of the process, not of the machine.
    let sync = if durable { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", sync).sql()?;
    if create {
        conn.execute_batch(SCHEMA).sql()?;
        let mut format = meta(&conn, "format")?;
        if format == 1 {
            upgrade_from_1(&conn)?;
            format = meta(&conn, "format")?;
        }
        if format != FORMAT {
            return Err(Error::Version {
                found: u32::try_from(format).unwrap_or(u32::MAX),
                supported: FORMAT as u32,
            });
        }
    }
    Ok(conn)
}

/// Upgrades a format 1 file: lists each transaction's oids in its `durus_tx` row, from
/// the index by tid, then drops that index; in one transaction, under the write lock.
fn upgrade_from_1(conn: &Connection) -> Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate).sql()?;
    // Another process may have upgraded it while this one waited for the lock.
    if meta(&tx, "format")? != 1 {
        return tx.commit().sql();
    }
    tx.execute_batch("ALTER TABLE durus_tx ADD COLUMN oids BLOB NOT NULL DEFAULT x''")
        .sql()?;
    let mut lists: Vec<(i64, Vec<u8>)> = Vec::new();
    {
        let mut st = tx
            .prepare("SELECT tid, oid FROM durus_object ORDER BY tid, oid")
            .sql()?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .sql()?;
        for row in rows {
            let (tid, oid) = row.sql()?;
            if lists.last().is_none_or(|l| l.0 != tid) {
                lists.push((tid, Vec::new()));
            }
            if let Some(l) = lists.last_mut() {
                l.1.extend_from_slice(&(oid as u64).to_be_bytes());
            }
        }
    }
    {
        let mut st = tx.prepare("UPDATE durus_tx SET oids = ?2 WHERE tid = ?1").sql()?;
        for (tid, oids) in &lists {
            st.execute(params![tid, oids]).sql()?;
        }
    }
    tx.execute_batch("DROP INDEX IF EXISTS durus_object_by_tid")
        .sql()?;
    set_meta(&tx, "format", 2)?;
    tx.commit().sql()
}

/// One value of `durus_meta`.
pub(super) fn meta(conn: &Connection, key: &str) -> Result<i64> {
    conn.prepare_cached("SELECT value FROM durus_meta WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)))
        .optional()
        .sql()?
        .ok_or_else(|| Error::Format {
            reason: format!("the SQLite file has no durus_meta row {key:?}"),
        })
}

/// Sets one value of `durus_meta`.
pub(super) fn set_meta(conn: &Connection, key: &str, value: i64) -> Result<()> {
    conn.prepare_cached("UPDATE durus_meta SET value = ?2 WHERE key = ?1")
        .and_then(|mut s| s.execute(params![key, value]))
        .sql()?;
    Ok(())
}

/// The newest transaction in the file.
pub(super) fn max_tid(conn: &Connection) -> Result<Tid> {
    let t: Option<i64> = conn
        .prepare_cached("SELECT MAX(tid) FROM durus_tx")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .sql()?;
    Ok(Tid(t.unwrap_or(0) as u64))
}

/// The timestamp of transaction `tid`, 0 if the file has no such row.
pub(super) fn timestamp_of(conn: &Connection, tid: Tid) -> Result<u64> {
    let t: Option<i64> = conn
        .prepare_cached("SELECT ts FROM durus_tx WHERE tid = ?1")
        .and_then(|mut s| s.query_row([tid.0 as i64], |r| r.get(0)).optional())
        .sql()?;
    Ok(t.unwrap_or(0) as u64)
}

/// The version of `oid` visible at `at` (the newest with a tid at or before it).
pub(super) fn load_visible(conn: &Connection, oid: Oid, at: Tid) -> Result<Option<Loaded>> {
    let row: Option<(i64, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT tid, data, refs FROM durus_object WHERE oid = ?1 AND tid <= ?2
             ORDER BY tid DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![oid.0 as i64, at.0 as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .sql()?;
    let Some((tid, data, refs)) = row else {
        return Ok(None);
    };
    let tid = Tid(tid as u64);
    let refs = crate::storage::tables::parse_refs(oid, tid, &refs)?;
    Ok(Some(Loaded {
        record: Record { oid, data, refs },
        tid,
    }))
}

/// The newest tid of every oid stored after `after`, read from the transaction rows
/// after it; `None` if they list more than `limit` oids (a snapshot that old is
/// checked one oid at a time instead, [`changed_after`]).
pub(super) fn changes_after(
    conn: &Connection,
    after: Tid,
    limit: usize,
) -> Result<Option<std::collections::HashMap<Oid, Tid>>> {
    let mut st = conn
        .prepare_cached("SELECT tid, oids FROM durus_tx WHERE tid > ?1 ORDER BY tid")
        .sql()?;
    let mut rows = st.query(params![after.0 as i64]).sql()?;
    let mut out = std::collections::HashMap::new();
    let mut seen = 0usize;
    while let Some(row) = rows.next().sql()? {
        let tid = Tid(row.get::<_, i64>(0).sql()? as u64);
        let oids = crate::storage::tables::parse_written(tid, &row.get::<_, Vec<u8>>(1).sql()?)?;
        seen = seen.saturating_add(oids.len());
        if seen > limit {
            return Ok(None);
        }
        // Ascending tids: a later row's tid is the newer one.
        for oid in oids {
            out.insert(oid, tid);
        }
    }
    Ok(Some(out))
}

/// Whether a transaction after `after` wrote `oid`.
pub(super) fn changed_after(conn: &Connection, oid: Oid, after: Tid) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM durus_object WHERE oid = ?1 AND tid > ?2 LIMIT 1")
        .and_then(|mut s| s.exists(params![oid.0 as i64, after.0 as i64]))
        .sql()
}

/// The transactions in `(after, upto]`, oldest first: tid, timestamp and the oids
/// each wrote, ascending.
pub(super) fn transactions(conn: &Connection, after: Tid, upto: Tid) -> Result<Vec<(Tid, u64, Vec<Oid>)>> {
    let mut st = conn
        .prepare_cached("SELECT tid, ts, oids FROM durus_tx WHERE tid > ?1 AND tid <= ?2 ORDER BY tid")
        .sql()?;
    let mut rows = st.query(params![after.0 as i64, upto.0 as i64]).sql()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().sql()? {
        let tid = Tid(row.get::<_, i64>(0).sql()? as u64);
        let ts = row.get::<_, i64>(1).sql()?.max(0) as u64;
        let oids = crate::storage::tables::parse_written(tid, &row.get::<_, Vec<u8>>(2).sql()?)?;
        out.push((tid, ts, oids));
    }
    Ok(out)
}
