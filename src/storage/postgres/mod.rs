//! [`PostgresStorage`]: records in a PostgreSQL database (feature `postgres`), shared by
//! several processes on several machines with no durus server in between (the model of
//! ZODB's RelStorage).
//!
//! The engine, [`Postgres`], is a [`SyncStorage`]; [`Unblocked`] runs it on the blocking
//! pool with its group commit: a write group is one PostgreSQL transaction, so
//! concurrent committers of one process share one commit (and one WAL flush).
//!
//! What it keeps (see `sql.rs` for the tables): every version of every object, keyed by
//! oid and tid, with its refs in a column of their own; every transaction with its
//! timestamp; oids come from a sequence. So it serves snapshot loads, `transactions`,
//! `tid_at_time` and `changes_since` from the database, and packs by reachability
//! without decoding any data.
//!
//! Every process connected to the database may commit. A write group takes a
//! transaction-scoped advisory lock first, so writers (of every process) go one at a
//! time; inside the lock each member is validated against everything committed before
//! it, read set and write set, exactly as the journal validates, and the new tids follow
//! the newest one. The group is durable when PostgreSQL's `COMMIT` returns. A handle
//! learns what others committed when it is asked to catch up
//! ([`SyncStorage::refresh`], on every `Db::begin`): one cheap query for the newest tid,
//! whose news then reach the change feed, so every `Db`'s cache stays right. Between
//! those, a connection of its own `LISTEN`s for the notification every write group
//! sends, so others' commits reach the change feed as they happen (`listen.rs`).
//!
//! Connections come from a small pool. When the server restarts (or the network breaks)
//! the connections in use fail: a commit on one fails with [`Error::Disconnected`] (its
//! outcome is unknown if the connection broke during the `COMMIT`; the next catch-up
//! tells), a read is retried once on a new connection, and later calls connect again.

mod commit;
mod listen;
mod pack;
mod sql;

use std::sync::{Arc, Mutex, MutexGuard};

use super::tables::{self, View};
use super::{SyncStorage, Unblocked};
use crate::error::{Error, Result};
use crate::journal::{Durability, SnapshotPin};
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Tid, TxInfo};
use sql::Conn;

/// The PostgreSQL storage: [`Postgres`] on the blocking pool.
pub type PostgresStorage = Unblocked<Postgres>;

/// How long a connection attempt may take when the connection string does not say
/// (`connect_timeout`).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A bound past every stored tid (they are `bigint`s), for queries of whatever is
/// stored, however new.
const EVERY_TID: Tid = Tid(i64::MAX as u64);

/// How to open a PostgreSQL storage.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// [`Durability::Immediate`] (the default): a commit returns once PostgreSQL has
    /// flushed it (`synchronous_commit` as the server has it, on by default).
    /// [`Durability::Eventual`]: `synchronous_commit = off` for this handle's commits,
    /// which a crash of the database server may lose (never half of one).
    pub durability: Durability,
    /// Most idle connections kept for reuse (default 8); more are opened while more
    /// calls run at once.
    pub pool_size: usize,
    /// Whether the handle keeps a connection that `LISTEN`s for other processes'
    /// commits (default `true`), so that they reach its change feed as they happen.
    /// Without it they arrive with the next `Db::begin`, which asks the database
    /// either way.
    pub listen: bool,
    /// History-free (default `false`): keep only each object's current state, as
    /// RelStorage's history-free mode does, so the tables hold what is live without a
    /// pack. A commit deletes the versions it replaces. What it costs: no point in
    /// time can be read back (`begin_at`), and a transaction that reads an object
    /// changed since its snapshot fails with [`Error::Conflict`] (a read conflict,
    /// which `Db::transact` retries) instead of reading the older version. The first
    /// open of a database decides its mode; opening it with the other one is
    /// [`Error::Invalid`].
    pub history_free: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            durability: Durability::Immediate,
            pool_size: 8,
            listen: true,
            history_free: false,
        }
    }
}

impl PostgresOptions {
    /// These options with another durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// These options with another [`pool_size`](PostgresOptions::pool_size).
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// These options with [`history_free`](PostgresOptions::history_free) on or off.
    pub fn history_free(mut self, history_free: bool) -> Self {
        self.history_free = history_free;
        self
    }

    /// These options with [`listen`](PostgresOptions::listen) on or off.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }
}

/// The synchronous PostgreSQL engine behind [`PostgresStorage`] (see the
/// [module docs](self)). Thread-safe: one write connection, used by one write group at
/// a time, and a pool of connections for everything else, so loads run in parallel
/// with each other and with a commit.
pub struct Postgres {
    config: postgres::Config,
    opts: PostgresOptions,
    /// The write connection; `None` until first needed and after it broke.
    writer: Mutex<Option<Conn>>,
    /// Idle connections.
    pool: Mutex<Vec<Conn>>,
    /// Oids reserved from the sequence and not handed out yet, ascending.
    reserved: Mutex<std::collections::BTreeSet<u64>>,
    view: Arc<Mutex<View>>,
    /// One pack at a time in this process.
    packing: Mutex<()>,
    /// The thread hearing other processes' commits, once watched.
    listener: Mutex<Option<listen::Listener>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = crate::sync::lock(&self.view);
        f.debug_struct("Postgres")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("known", &v.known)
            .field("history_from", &v.history_from)
            .field("closed", &v.closed)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Connects to the database `conninfo` names, creating durus's tables in it if
    /// needed. `conninfo` is a URL (`postgres://user:password@host:port/dbname`) or a
    /// libpq-style string of settings (`host=/run/postgresql dbname=app user=app`); a
    /// `host` that starts with `/` is the directory of the server's Unix socket.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a `conninfo` that does not parse,
    /// [`Error::Disconnected`] if the server cannot be reached (or refuses the login),
    /// [`Error::Version`] for tables made by a newer durus, [`Error::Format`] for
    /// tables of the same names that are not durus's, [`Error::Io`] for other failures
    /// PostgreSQL reports.
    ///
    /// # Threads
    ///
    /// This is the synchronous engine: it blocks, and the PostgreSQL client it uses
    /// runs a small runtime of its own, which must not be created or dropped on a
    /// thread that is driving an async runtime (tokio panics). From async code open
    /// [`PostgresStorage`] instead, which does all of that on the blocking pool.
    pub fn open(conninfo: &str, opts: PostgresOptions) -> Result<Postgres> {
        let mut config: postgres::Config = conninfo.parse().map_err(|e| {
            Error::Invalid(format!("a PostgreSQL connection string that does not parse: {e}"))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("durus");
        }
        // A host that does not answer fails the call instead of hanging it.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut conn = Conn::connect(&config, durable(&opts))?;
        conn.create_schema(opts.history_free)?;
        let (known, history_from) = conn.last_and_history()?;
        Ok(Postgres {
            config,
            opts,
            writer: Mutex::new(None),
            pool: Mutex::new(vec![conn]),
            reserved: Mutex::default(),
            view: View::new(known, history_from),
            packing: Mutex::new(()),
            listener: Mutex::new(None),
        })
    }

    /// The view, or [`Error::Closed`].
    fn view(&self) -> Result<MutexGuard<'_, View>> {
        View::open(&self.view)
    }

    /// Runs `f` with the write connection (connecting if there is none). A connection
    /// that broke is dropped, so the next call connects again.
    fn write<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let mut g = crate::sync::lock(&self.writer);
        drop(self.view()?);
        let conn = match g.as_mut() {
            Some(c) => c,
            None => g.insert(Conn::connect(&self.config, durable(&self.opts))?),
        };
        let r = f(conn);
        if matches!(r, Err(Error::Disconnected { .. })) || conn.is_closed() {
            *g = None;
            // The server went away: the idle connections are as dead as this one.
            crate::sync::lock(&self.pool).clear();
        }
        r
    }

    /// Runs `f` with an idle connection (opening one if none is idle). If the
    /// connection turns out to be broken, `f` runs once more on a new one: reads
    /// change nothing, so running one twice is harmless.
    fn read<T>(&self, mut f: impl FnMut(&mut Conn) -> Result<T>) -> Result<T> {
        drop(self.view()?);
        let idle = crate::sync::lock(&self.pool).pop();
        let pooled = idle.is_some();
        let mut conn = match idle {
            Some(c) => c,
            None => Conn::connect(&self.config, durable(&self.opts))?,
        };
        let mut r = f(&mut conn);
        if pooled && matches!(r, Err(Error::Disconnected { .. })) {
            crate::sync::lock(&self.pool).clear();
            conn = Conn::connect(&self.config, durable(&self.opts))?;
            r = f(&mut conn);
        }
        if !conn.is_closed() && !matches!(r, Err(Error::Disconnected { .. })) {
            let mut idle = crate::sync::lock(&self.pool);
            if idle.len() < self.opts.pool_size && !crate::sync::lock(&self.view).closed {
                idle.push(conn);
            }
        }
        r
    }

    /// Loads at `at` (the newest known when `None`), after checking that `at` is
    /// served: not ahead of what this handle knows, and not before a pack point (this
    /// handle's or, read in the same transaction, another process's).
    fn load_in(&self, conn: &mut Conn, oids: &[Oid], at: Option<Tid>) -> Result<Vec<Option<Loaded>>> {
        let (known, from) = {
            let v = self.view()?;
            (v.known, v.history_from)
        };
        if let Some(at) = at.filter(|&at| at > known) {
            return Err(Error::snapshot_ahead(at, known));
        }
        if self.opts.history_free {
            return self.load_current(conn, oids, at.unwrap_or(known), from);
        }
        let Some(at) = at else {
            let mut found = conn.load_visible(oids, known)?;
            return Ok(oids.iter().map(|o| found.remove(o)).collect());
        };
        conn.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", |c| {
            let from = from.max(Tid(c.meta("history_from")?.max(0) as u64));
            if at >= from {
                let mut found = c.load_visible(oids, at)?;
                return Ok(oids.iter().map(|o| found.remove(o)).collect());
            }
            // Before the pack point only a version that was already the newest then,
            // and still is at the point, is known to be the one visible.
            let mut found = c.load_visible(oids, from)?;
            oids.iter()
                .map(|o| match found.remove(o) {
                    Some(l) if l.tid <= at => Ok(Some(l)),
                    _ => Err(Error::HistoryGone { oldest: from }),
                })
                .collect()
        })
    }

    /// Loads at `at` from a history-free database: an object's only version is the one
    /// visible at `at` if it is not newer; if it is, the version `at` saw is gone and
    /// the read conflicts. A missing object is missing, unless `at` is before the pack
    /// point `from` (a pack may have dropped it).
    fn load_current(&self, conn: &mut Conn, oids: &[Oid], at: Tid, from: Tid) -> Result<Vec<Option<Loaded>>> {
        let mut found = conn.load_visible(oids, EVERY_TID)?;
        let mut out = Vec::with_capacity(oids.len());
        let mut newer = Vec::new();
        for &oid in oids {
            match found.remove(&oid) {
                Some(l) if l.tid <= at => out.push(Some(l)),
                Some(_) => newer.push(oid),
                None if at < from => return Err(Error::HistoryGone { oldest: from }),
                None => out.push(None),
            }
        }
        if newer.is_empty() {
            return Ok(out);
        }
        newer.sort_unstable();
        newer.dedup();
        Err(Error::Conflict { oids: newer })
    }
}

fn durable(opts: &PostgresOptions) -> bool {
    opts.durability == Durability::Immediate
}

impl SyncStorage for Postgres {
    fn load(&self, oid: Oid) -> Result<Loaded> {
        tables::found(self.read(|c| self.load_in(c, &[oid], None))?, oid)
    }

    fn load_at(&self, oid: Oid, snapshot: Tid) -> Result<Loaded> {
        tables::found(self.read(|c| self.load_in(c, &[oid], Some(snapshot)))?, oid)
    }

    fn load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Result<Vec<Option<Loaded>>> {
        self.read(|c| self.load_in(c, oids, snapshot))
    }

    fn new_oids(&self, n: u64) -> Result<Vec<Oid>> {
        commit::new_oids(self, n)
    }

    fn commit(&self, req: &CommitRequest) -> Result<Committed> {
        self.commit_many(std::slice::from_ref(req))
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("a commit group gave no answer".into())))
    }

    fn commit_many(&self, reqs: &[CommitRequest]) -> Vec<Result<Committed>> {
        commit::commit_many(self, reqs)
    }

    fn changes_since(&self, since: Tid) -> Result<Changes> {
        let known = self.view()?.changes_upto(since)?;
        Ok(tables::changes(self.transactions(since)?, known))
    }

    fn last_tid(&self) -> Result<Tid> {
        Ok(self.view()?.known)
    }

    fn others_may_append(&self) -> bool {
        true
    }

    fn watch(&self, news: crate::storage::News) {
        if !self.opts.listen {
            return;
        }
        match listen::Listener::start(self.config.clone(), self.view.clone(), news) {
            Ok(l) => *crate::sync::lock(&self.listener) = Some(l),
            // Without the thread the news arrive with the next refresh, as with
            // `listen` off.
            Err(e) => log::warn!("durus: cannot start listening for PostgreSQL commits: {e}"),
        }
    }

    fn refresh(&self) -> Result<Tid> {
        let (last, from) = self.read(|c| c.last_and_history())?;
        Ok(self.view()?.caught_up(last, from))
    }

    fn transactions(&self, after: Tid) -> Result<Vec<TxInfo>> {
        let known = self.view()?.check_history(after)?;
        let free = self.opts.history_free;
        Ok(tables::tx_infos(self.read(|c| {
            if free {
                c.transactions_listed(after, known)
            } else {
                c.transactions(after, known)
            }
        })?))
    }

    fn tid_at_time(&self, timestamp: u64) -> Result<Tid> {
        let (known, from) = {
            let v = self.view()?;
            (v.known, v.history_from)
        };
        self.read(|c| {
            if from > Tid::ZERO && timestamp < c.timestamp_of(from)? {
                return Err(Error::HistoryGone { oldest: from });
            }
            c.tid_at(timestamp, known)
        })
    }

    fn oids(&self) -> Result<Vec<Oid>> {
        // A history-free database may hold an object only in a version newer than what
        // this handle knows; it exists all the same.
        let upto = match self.opts.history_free {
            true => EVERY_TID,
            false => self.view()?.known,
        };
        self.read(|c| c.oids(upto))
    }

    fn pin(&self, snapshot: Tid) -> Result<SnapshotPin> {
        tables::pin(&self.view, snapshot)
    }

    fn pack(
        &self,
        opts: &crate::journal::PackOptions,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<crate::journal::PackReport> {
        pack::pack(self, opts, cancel)
    }

    fn close(&self) -> Result<()> {
        let listener = crate::sync::lock(&self.listener).take();
        if let Some(l) = listener {
            l.stop_and_wait();
        }
        let writer = crate::sync::lock(&self.writer).take();
        crate::sync::lock(&self.view).closed = true;
        let idle = std::mem::take(&mut *crate::sync::lock(&self.pool));
        crate::sync::lock(&self.reserved).clear();
        // Dropping a client ends its session politely; there is nothing to flush.
        drop((writer, idle));
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The client ends a session on a runtime of its own, which must not start on a
        // thread that drives an async runtime, and the last handle may well be dropped
        // on one: the sessions are ended on a thread of their own.
        let mut conns = std::mem::take(&mut *crate::sync::lock(&self.pool));
        conns.extend(crate::sync::lock(&self.writer).take());
        if !conns.is_empty() {
            let ended = std::thread::Builder::new()
                .name("durus-postgres-drop".into())
                .spawn(move || drop(conns));
            // Without a thread the sessions end when the server notices the sockets
            // closing, which is all the client would do too; the process is out of
            // threads and there is nothing better to do here.
            if let Err(e) = ended {
                log::warn!("durus: cannot end PostgreSQL sessions on a thread of their own: {e}");
            }
        }
    }
}

impl Unblocked<Postgres> {
    /// Connects to the PostgreSQL database `conninfo` names (see [`Postgres::open`]).
    ///
    /// ```no_run
    /// use durus::storage::{PostgresOptions, PostgresStorage};
    /// use durus::{Counter, Db, DbBuilder};
    ///
    /// # fn main() -> durus::Result<()> {
    /// futures::executor::block_on(async {
    ///     let url = "postgres://app@db.example.com/hits";
    ///     let storage = PostgresStorage::open(url, PostgresOptions::default()).await?;
    ///     let db: Db<Counter> = DbBuilder::storage(storage).open().await?;
    ///     let mut tx = db.begin().await?;
    ///     tx.root_mut().await?.increment();
    ///     tx.commit().await?;
    ///     db.close().await
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Postgres::open`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not stop a connection already being made on the
    /// blocking pool; it is closed again when that job finishes.
    pub async fn open(conninfo: &str, opts: PostgresOptions) -> Result<PostgresStorage> {
        let conninfo = conninfo.to_string();
        blocking::unblock(move || Postgres::open(&conninfo, opts))
            .await
            .map(Unblocked::new)
    }
}
