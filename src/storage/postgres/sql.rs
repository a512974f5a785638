//! The SQL side of [`PostgresStorage`](super::PostgresStorage): the schema, connections
//! with their prepared statements, error mapping, and the queries loads and history use.
//!
//! Tables (created by the first open, under an advisory lock so that processes opening
//! a fresh database at once do not trip over each other):
//!
//! | table | rows | key |
//! |---|---|---|
//! | `durus_meta` | `format` (1), `next_oid` (the allocation mark: every oid below it was handed out or reserved), `history_from` (the pack point), `history_free` (1 if only current states are kept) | `key` |
//! | `durus_tx` | one per transaction: its commit timestamp (µs since the Unix epoch); in a history-free database also the oids it wrote (8 bytes each), which the object rows no longer tell | `tid` |
//! | `durus_object` | one per stored version: its data and its refs (8 bytes each, big-endian, so pack reads them without decoding the data) | `(oid, tid)`, and an index on `(tid, oid)` for history queries |
//!
//! and the sequence `durus_oid_seq`, from which oids are reserved. Oids, tids and
//! timestamps are `bigint`s; the sequence ends at `i64::MAX`, so the casts below never
//! wrap for a stored value.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::error::{Error, Result};
use crate::record::{Loaded, Oid, Record, Tid};

/// The schema version this build reads and writes.
pub(super) const FORMAT: i64 = 1;

/// The advisory lock that serialises writers (commits, oid marks, the end of a pack)
/// across every process using the database: "durus" in ASCII.
pub(super) const WRITE_LOCK: i64 = 0x0064_7572_7573;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS durus_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS durus_tx (tid BIGINT PRIMARY KEY, ts BIGINT NOT NULL, oids BYTEA);
CREATE TABLE IF NOT EXISTS durus_object (
    oid BIGINT NOT NULL,
    tid BIGINT NOT NULL,
    data BYTEA NOT NULL,
    refs BYTEA NOT NULL,
    PRIMARY KEY (oid, tid)
);
CREATE INDEX IF NOT EXISTS durus_object_by_tid ON durus_object (tid, oid);
CREATE SEQUENCE IF NOT EXISTS durus_oid_seq MINVALUE 1 START WITH 1;
INSERT INTO durus_meta (key, value) VALUES ('format', 1), ('next_oid', 1), ('history_from', 0)
    ON CONFLICT (key) DO NOTHING;
";

/// One connection and the statements prepared on it.
pub(super) struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Conn {
    /// Connects with `config`; `durable` keeps `synchronous_commit` on (PostgreSQL's
    /// default), else it is turned off for this connection's transactions.
    pub(super) fn connect(config: &postgres::Config, durable: bool) -> Result<Conn> {
        let mut client = config.connect(NoTls).map_err(|e| lost(&e))?;
        if !durable {
            client
                .batch_execute("SET synchronous_commit = off")
                .map_err(to_error)?;
        }
        Ok(Conn {
            client,
            prepared: HashMap::new(),
        })
    }

    /// Creates the schema if needed and checks its format, and that the database keeps
    /// history exactly when `history_free` says it does not (the first open decides).
    pub(super) fn create_schema(&mut self, history_free: bool) -> Result<()> {
        let free = self.transaction("BEGIN", |c| {
            c.lock_writers()?;
            c.batch(SCHEMA)?;
            // Tables made before the oid lists existed lack the column. Only then is it
            // added: an ALTER locks the table against everyone, a pack's walk included.
            let has_oids = c.query(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                 AND table_name = 'durus_tx' AND column_name = 'oids'",
                &[],
            )?;
            if has_oids.is_empty() {
                c.batch("ALTER TABLE durus_tx ADD COLUMN oids BYTEA")?;
            }
            c.execute(
                "INSERT INTO durus_meta (key, value) VALUES ('history_free', $1)
                 ON CONFLICT (key) DO NOTHING",
                &[&i64::from(history_free)],
            )?;
            c.meta("history_free")
        })?;
        if (free != 0) != history_free {
            return Err(Error::Invalid(if history_free {
                "the database keeps history: open it without PostgresOptions::history_free".into()
            } else {
                "the database is history-free: open it with PostgresOptions::history_free(true)".into()
            }));
        }
        let format = self.meta("format").map_err(|e| match e {
            Error::Disconnected { .. } => e,
            other => Error::Format {
                reason: format!("the database's durus_meta is not durus's: {other}"),
            },
        })?;
        if format != FORMAT {
            return Err(Error::Version {
                found: u32::try_from(format).unwrap_or(u32::MAX),
                supported: FORMAT as u32,
            });
        }
        Ok(())
    }

    /// Whether the connection is known to be gone.
    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(to_error)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    /// Runs a query (prepared once per connection).
    pub(super) fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let s = self.statement(sql)?;
        self.client.query(&s, params).map_err(to_error)
    }

    /// Runs a statement (prepared once per connection); the number of rows it touched.
    pub(super) fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let s = self.statement(sql)?;
        self.client.execute(&s, params).map_err(to_error)
    }

    /// Runs SQL without parameters (`BEGIN`, `COMMIT`, ...).
    pub(super) fn batch(&mut self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).map_err(to_error)
    }

    /// Runs `f` inside a transaction opened by `begin`, committing if it succeeds and
    /// rolling back if it fails.
    pub(super) fn transaction<T>(
        &mut self,
        begin: &str,
        f: impl FnOnce(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        self.batch(begin)?;
        match f(self) {
            Ok(t) => {
                self.batch("COMMIT")?;
                Ok(t)
            }
            Err(e) => {
                // A connection that is gone has rolled back by itself.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Takes the write lock until the end of the current transaction.
    pub(super) fn lock_writers(&mut self) -> Result<()> {
        self.query("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        Ok(())
    }

    /// One value of `durus_meta`.
    pub(super) fn meta(&mut self, key: &str) -> Result<i64> {
        let rows = self.query("SELECT value FROM durus_meta WHERE key = $1", &[&key])?;
        match rows.first() {
            Some(r) => Ok(r.try_get(0).map_err(to_error)?),
            None => Err(Error::Format {
                reason: format!("the database has no durus_meta row {key:?}"),
            }),
        }
    }

    /// Sets one value of `durus_meta`.
    pub(super) fn set_meta(&mut self, key: &str, value: i64) -> Result<()> {
        self.execute("UPDATE durus_meta SET value = $2 WHERE key = $1", &[&key, &value])?;
        Ok(())
    }

    /// The newest transaction and the pack point, in one statement.
    pub(super) fn last_and_history(&mut self) -> Result<(Tid, Tid)> {
        let rows = self.query(
            "SELECT COALESCE((SELECT MAX(tid) FROM durus_tx), 0),
                    COALESCE((SELECT value FROM durus_meta WHERE key = 'history_from'), 0)",
            &[],
        )?;
        let row = one(&rows)?;
        Ok((tid(row, 0)?, tid(row, 1)?))
    }

    /// The newest transaction and its timestamp (zeros for an empty store).
    pub(super) fn last_tx(&mut self) -> Result<(Tid, u64)> {
        let rows = self.query("SELECT tid, ts FROM durus_tx ORDER BY tid DESC LIMIT 1", &[])?;
        match rows.first() {
            Some(r) => Ok((tid(r, 0)?, int(r, 1)?)),
            None => Ok((Tid::ZERO, 0)),
        }
    }

    /// The timestamp of transaction `tid`, 0 if there is no such row.
    pub(super) fn timestamp_of(&mut self, t: Tid) -> Result<u64> {
        let rows = self.query("SELECT ts FROM durus_tx WHERE tid = $1", &[&(t.0 as i64)])?;
        rows.first().map_or(Ok(0), |r| int(r, 0))
    }

    /// The last transaction at or before `timestamp` and `upto`.
    pub(super) fn tid_at(&mut self, timestamp: u64, upto: Tid) -> Result<Tid> {
        let ts = timestamp.min(i64::MAX as u64) as i64;
        let rows = self.query(
            "SELECT COALESCE(MAX(tid), 0) FROM durus_tx WHERE ts <= $1 AND tid <= $2",
            &[&ts, &(upto.0 as i64)],
        )?;
        tid(one(&rows)?, 0)
    }

    /// The versions of `oids` visible at `at` (the newest with a tid at or before it),
    /// by oid.
    pub(super) fn load_visible(&mut self, oids: &[Oid], at: Tid) -> Result<HashMap<Oid, Loaded>> {
        let keys: Vec<i64> = oids.iter().map(|o| o.0 as i64).collect();
        let rows = self.query(
            "SELECT DISTINCT ON (oid) oid, tid, data, refs FROM durus_object
             WHERE oid = ANY($1) AND tid <= $2 ORDER BY oid, tid DESC",
            &[&keys, &(at.0 as i64)],
        )?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            let oid = Oid(int(r, 0)?);
            let tid = tid(r, 1)?;
            let data: Vec<u8> = r.try_get(2).map_err(to_error)?;
            let refs: &[u8] = r.try_get(3).map_err(to_error)?;
            let refs = crate::storage::tables::parse_refs(oid, tid, refs)?;
            out.insert(
                oid,
                Loaded {
                    record: Record { oid, data, refs },
                    tid,
                },
            );
        }
        Ok(out)
    }

    /// Which of `checks` (an oid and the tid after which a write to it counts) a
    /// transaction wrote.
    pub(super) fn changed_after(&mut self, checks: &[(Oid, Tid)]) -> Result<Vec<Oid>> {
        let oids: Vec<i64> = checks.iter().map(|c| c.0 .0 as i64).collect();
        let afters: Vec<i64> = checks.iter().map(|c| c.1 .0 as i64).collect();
        let rows = self.query(
            "SELECT DISTINCT c.oid FROM unnest($1::bigint[], $2::bigint[]) AS c(oid, after)
             WHERE EXISTS (SELECT 1 FROM durus_object o WHERE o.oid = c.oid AND o.tid > c.after)",
            &[&oids, &afters],
        )?;
        rows.iter().map(|r| int(r, 0).map(Oid)).collect()
    }

    /// Which of `oids` have any stored version.
    pub(super) fn existing(&mut self, oids: &[Oid]) -> Result<Vec<Oid>> {
        let keys: Vec<i64> = oids.iter().map(|o| o.0 as i64).collect();
        let rows = self.query(
            "SELECT DISTINCT oid FROM durus_object WHERE oid = ANY($1)",
            &[&keys],
        )?;
        rows.iter().map(|r| int(r, 0).map(Oid)).collect()
    }

    /// The transactions in `(after, upto]`, oldest first: tid, timestamp and the oids
    /// each wrote, ascending.
    pub(super) fn transactions(&mut self, after: Tid, upto: Tid) -> Result<Vec<(Tid, u64, Vec<Oid>)>> {
        let rows = self.query(
            "SELECT t.tid, t.ts, o.oid FROM durus_tx t LEFT JOIN durus_object o ON o.tid = t.tid
             WHERE t.tid > $1 AND t.tid <= $2 ORDER BY t.tid, o.oid",
            &[&(after.0 as i64), &(upto.0 as i64)],
        )?;
        let mut out: Vec<(Tid, u64, Vec<Oid>)> = Vec::new();
        for r in &rows {
            let t = tid(r, 0)?;
            let oid: Option<i64> = r.try_get(2).map_err(to_error)?;
            if out.last().is_none_or(|l| l.0 != t) {
                out.push((t, int(r, 1)?, Vec::new()));
            }
            if let (Some(oid), Some(last)) = (oid, out.last_mut()) {
                last.2.push(Oid(oid as u64));
            }
        }
        Ok(out)
    }

    /// The transactions in `(after, upto]` of a history-free database, oldest first,
    /// from the oids each transaction row lists.
    pub(super) fn transactions_listed(&mut self, after: Tid, upto: Tid) -> Result<Vec<(Tid, u64, Vec<Oid>)>> {
        let rows = self.query(
            "SELECT tid, ts, oids FROM durus_tx WHERE tid > $1 AND tid <= $2 ORDER BY tid",
            &[&(after.0 as i64), &(upto.0 as i64)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let t = tid(r, 0)?;
            let oids: Option<&[u8]> = r.try_get(2).map_err(to_error)?;
            let oids = crate::storage::tables::parse_written(t, oids.unwrap_or_default())?;
            out.push((t, int(r, 1)?, oids));
        }
        Ok(out)
    }

    /// Every oid with a version at or before `upto`, ascending.
    pub(super) fn oids(&mut self, upto: Tid) -> Result<Vec<Oid>> {
        let rows = self.query(
            "SELECT DISTINCT oid FROM durus_object WHERE tid <= $1 ORDER BY oid",
            &[&(upto.0 as i64)],
        )?;
        rows.iter().map(|r| int(r, 0).map(Oid)).collect()
    }
}

/// The only row of an aggregate query.
pub(super) fn one(rows: &[Row]) -> Result<&Row> {
    rows.first()
        .ok_or_else(|| Error::Internal("an aggregate query returned no row".into()))
}

/// Column `i` of `row`, a non-negative `bigint`.
pub(super) fn int(row: &Row, i: usize) -> Result<u64> {
    let v: i64 = row.try_get(i).map_err(to_error)?;
    Ok(v.max(0) as u64)
}

/// Column `i` of `row`, a tid.
pub(super) fn tid(row: &Row, i: usize) -> Result<Tid> {
    int(row, i).map(Tid)
}

/// Whether `e` says the connection (or the server behind it) is gone, rather than that
/// a statement failed.
fn is_lost(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        return c.starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW;
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// What went wrong, with PostgreSQL's own message and code where there is one.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// A failure to reach the server at all: the database is not there (yet, or any more).
fn lost(e: &postgres::Error) -> Error {
    Error::Disconnected {
        reason: format!("cannot connect to PostgreSQL: {}", describe(e)),
    }
}

/// Turns the client's errors into durus's: a lost connection is
/// [`Error::Disconnected`], a full disk stays recognisable ([`Error::io_kind`]),
/// anything else is an I/O error carrying PostgreSQL's message.
pub(super) fn to_error(e: postgres::Error) -> Error {
    use postgres::error::SqlState;
    use std::io::ErrorKind as K;
    if is_lost(&e) {
        return Error::Disconnected {
            reason: format!("the connection to PostgreSQL was lost: {}", describe(&e)),
        };
    }
    let kind = match e.code() {
        Some(c) if *c == SqlState::DISK_FULL => K::StorageFull,
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => K::PermissionDenied,
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => K::ResourceBusy,
        _ => K::Other,
    };
    Error::from(std::io::Error::new(kind, format!("postgres: {}", describe(&e))))
}
