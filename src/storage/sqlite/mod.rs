//! [`SqliteStorage`]: records in a SQLite file (feature `sqlite`), for applications that
//! want their objects in a database file they already know how to copy, inspect and back
//! up.
//!
//! The engine, [`Sqlite`], is a [`SyncStorage`]; [`Unblocked`] runs it on the blocking
//! pool like the journal, with its group commit: a write group is one SQLite
//! transaction, so concurrent committers share one sync of the write-ahead log.
//!
//! What it keeps (see `sql.rs` for the tables): every version of every object, keyed by
//! oid and tid, with its refs in a column of their own; every transaction with its
//! timestamp; the oid allocation mark. So it serves snapshot loads, `transactions`,
//! `tid_at_time` and `changes_since` from the file, and packs by reachability without
//! decoding any data.
//!
//! Several processes (or several handles in one process) may use one file at once,
//! each opened with [`SqliteOptions::shared`]:
//! SQLite's own locks serialise the writers, each commit is validated inside the write
//! transaction against everything in the file (so a conflict with another process is
//! always seen), and each process reserves its own ranges of oids from the allocation
//! mark in the file. A handle notices what others committed when it is asked to catch up
//! ([`SyncStorage::refresh`], on every `Db::begin`): SQLite's `PRAGMA data_version`
//! tells it cheaply whether anyone else wrote.
//!
//! Durus 4.3's `SqliteStorage` taught three things to avoid: it handed out, after a
//! reopen, an oid already in use (its allocator lived in memory), its full scan failed,
//! and it kept no history. Here the allocation mark is raised durably before any oid of a
//! reservation is handed out, the scan is the generic batched one at one snapshot, and
//! history is kept until a pack.

mod commit;
mod pack;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use super::tables::{self, View};
use super::{SyncStorage, Unblocked};
use crate::error::{Error, Result};
use crate::journal::{Durability, SnapshotPin};
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Tid, TxInfo};
use sql::Sql;

/// The SQLite storage: [`Sqlite`] on the blocking pool.
pub type SqliteStorage = Unblocked<Sqlite>;

/// Most idle read connections kept for reuse.
const READERS_KEPT: usize = 8;

/// How to open a SQLite storage.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// [`Durability::Immediate`] (the default): `synchronous=FULL`, every commit synced
    /// before it returns. [`Durability::Eventual`]: `synchronous=NORMAL`, which in WAL
    /// mode survives a crash of the process but not of the machine.
    pub durability: Durability,
    /// How long a writer waits for another process's write transaction before failing
    /// with a busy error (default 30 s).
    pub busy_timeout: Duration,
    /// Whether other processes may use the file at the same time (default `false`).
    /// Either way a lock file next to it (`<path>.lock`) says who has it: a handle that
    /// does not share holds it exclusively, so no other process can open the file under
    /// it (and it can skip looking for their commits); shared handles hold it shared, and
    /// each `Db::begin` catches up with what the others committed.
    pub shared: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Immediate,
            busy_timeout: Duration::from_secs(30),
            shared: false,
        }
    }
}

impl SqliteOptions {
    /// These options with another durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// These options with [`shared`](SqliteOptions::shared) set.
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }
}

/// The synchronous SQLite engine behind [`SqliteStorage`] (see the
/// [module docs](self)). Thread-safe: one write connection, used by one writer at a
/// time, and a pool of read connections, so loads run in parallel with each other and
/// with a commit.
pub struct Sqlite {
    path: PathBuf,
    opts: SqliteOptions,
    /// The write connection; `None` once closed.
    writer: Mutex<Option<Writer>>,
    /// Idle read connections.
    readers: Mutex<Vec<Connection>>,
    /// The connection that watches `data_version` for other writers.
    watch: Mutex<Option<(Connection, i64)>>,
    view: Arc<Mutex<View>>,
    /// One pack at a time in this process.
    packing: Mutex<()>,
    /// The lock file, held (shared or exclusively) until close.
    lock: Mutex<Option<std::fs::File>>,
}

struct Writer {
    conn: Connection,
    /// Oids reserved in the file and not handed out yet: `next..end`.
    next_oid: u64,
    end_oid: u64,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = crate::sync::lock(&self.view);
        f.debug_struct("Sqlite")
            .field("path", &self.path)
            .field("known", &v.known)
            .field("history_from", &v.history_from)
            .field("closed", &v.closed)
            .finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens the SQLite file at `path`, creating it (and its tables) if needed, and
    /// switches it to WAL mode.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another process holds the file in a way this open cannot
    /// share (see [`SqliteOptions::shared`]), [`Error::Version`] for a file made by a
    /// newer durus, [`Error::Format`] for a
    /// SQLite file with tables of the same names that are not durus's,
    /// [`Error::Corrupt`] for a file that is not a SQLite database, [`Error::Io`].
    pub fn open(path: impl Into<PathBuf>, opts: SqliteOptions) -> Result<Sqlite> {
        let path = path.into();
        let lock = lock_file(&path, opts.shared)?;
        let conn = sql::connect(&path, durable(&opts), opts.busy_timeout, true)?;
        let known = sql::max_tid(&conn)?;
        let history_from = Tid(sql::meta(&conn, "history_from")? as u64);
        let watch = sql::connect(&path, durable(&opts), opts.busy_timeout, false)?;
        let version = data_version(&watch)?;
        Ok(Sqlite {
            path,
            opts,
            writer: Mutex::new(Some(Writer {
                conn,
                next_oid: 0,
                end_oid: 0,
            })),
            readers: Mutex::new(Vec::new()),
            watch: Mutex::new(Some((watch, version))),
            view: View::new(known, history_from),
            packing: Mutex::new(()),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The view, or [`Error::Closed`].
    fn view(&self) -> Result<MutexGuard<'_, View>> {
        View::open(&self.view)
    }

    /// Whether commits sync (`synchronous=FULL`).
    fn durable(&self) -> bool {
        durable(&self.opts)
    }

    /// The write connection, or [`Error::Closed`] / [`Error::Poisoned`].
    fn writer(&self) -> Result<MutexGuard<'_, Option<Writer>>> {
        let w = crate::sync::lock(&self.writer);
        let v = self.view()?;
        if let Some((during, source)) = &v.poisoned {
            return Err(Error::Poisoned {
                during: during.clone(),
                source: source.clone(),
            });
        }
        drop(v);
        if w.is_none() {
            return Err(Error::Closed);
        }
        Ok(w)
    }

    /// Runs `f` with an idle read connection (opening one if none is idle).
    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        drop(self.view()?);
        let idle = crate::sync::lock(&self.readers).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => sql::connect(&self.path, durable(&self.opts), self.opts.busy_timeout, false)?,
        };
        let r = f(&mut conn);
        let mut idle = crate::sync::lock(&self.readers);
        if idle.len() < READERS_KEPT && !crate::sync::lock(&self.view).closed {
            idle.push(conn);
        }
        r
    }

    /// Loads at `at` inside one read transaction, after checking that `at` is served:
    /// not ahead of what this handle knows, and not before a pack point (this handle's
    /// or, read in the same transaction, another process's).
    fn load_in(&self, conn: &mut Connection, oids: &[Oid], at: Option<Tid>) -> Result<Vec<Option<Loaded>>> {
        let (known, from) = {
            let v = self.view()?;
            (v.known, v.history_from)
        };
        let tx = conn.transaction().sql()?;
        let Some(at) = at else {
            return oids
                .iter()
                .map(|&oid| sql::load_visible(&tx, oid, known))
                .collect();
        };
        if at > known {
            return Err(Error::snapshot_ahead(at, known));
        }
        let from = from.max(Tid(sql::meta(&tx, "history_from")? as u64));
        oids.iter()
            .map(|&oid| {
                if at >= from {
                    return sql::load_visible(&tx, oid, at);
                }
                // Before the pack point only a version that was already the newest
                // then, and still is at the point, is known to be the one visible.
                match sql::load_visible(&tx, oid, from)? {
                    Some(l) if l.tid <= at => Ok(Some(l)),
                    _ => Err(Error::HistoryGone { oldest: from }),
                }
            })
            .collect()
    }
}

/// Takes `<path>.lock`: shared, or exclusively for a handle that does not share.
fn lock_file(path: &Path, shared: bool) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&name)?;
    let locked = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

fn durable(opts: &SqliteOptions) -> bool {
    opts.durability == Durability::Immediate
}

/// SQLite's count of changes made by other connections to the file.
fn data_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).sql()
}

impl SyncStorage for Sqlite {
    fn load(&self, oid: Oid) -> Result<Loaded> {
        tables::found(self.read(|c| self.load_in(c, &[oid], None))?, oid)
    }

    fn load_at(&self, oid: Oid, snapshot: Tid) -> Result<Loaded> {
        tables::found(self.read(|c| self.load_in(c, &[oid], Some(snapshot)))?, oid)
    }

    fn load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Result<Vec<Option<Loaded>>> {
        self.read(|c| self.load_in(c, oids, snapshot))
    }

    fn try_new_oids(&self, n: u64) -> Option<Result<Vec<Oid>>> {
        commit::try_new_oids(self, n)
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
        self.opts.shared
    }

    fn refresh(&self) -> Result<Tid> {
        let mut g = crate::sync::lock(&self.watch);
        let Some((conn, seen)) = g.as_mut() else {
            return Err(Error::Closed);
        };
        let now = data_version(conn)?;
        if now == *seen {
            return self.last_tid();
        }
        let (last, from) = {
            let tx = conn.transaction().sql()?;
            (sql::max_tid(&tx)?, Tid(sql::meta(&tx, "history_from")? as u64))
        };
        *seen = now;
        Ok(self.view()?.caught_up(last, from))
    }

    fn transactions(&self, after: Tid) -> Result<Vec<TxInfo>> {
        let known = self.view()?.check_history(after)?;
        Ok(tables::tx_infos(
            self.read(|c| sql::transactions(c, after, known))?,
        ))
    }

    fn tid_at_time(&self, timestamp: u64) -> Result<Tid> {
        let (known, from) = {
            let v = self.view()?;
            (v.known, v.history_from)
        };
        self.read(|c| {
            if from > Tid::ZERO && timestamp < sql::timestamp_of(c, from)? {
                return Err(Error::HistoryGone { oldest: from });
            }
            let t: Option<i64> = c
                .prepare_cached("SELECT MAX(tid) FROM durus_tx WHERE ts <= ?1 AND tid <= ?2")
                .and_then(|mut s| {
                    s.query_row(
                        rusqlite::params![timestamp.min(i64::MAX as u64) as i64, known.0 as i64],
                        |r| r.get(0),
                    )
                })
                .sql()?;
            Ok(Tid(t.unwrap_or(0) as u64))
        })
    }

    fn oids(&self) -> Result<Vec<Oid>> {
        let known = self.view()?.known;
        self.read(|c| {
            let mut s = c
                .prepare_cached("SELECT DISTINCT oid FROM durus_object WHERE tid <= ?1 ORDER BY oid")
                .sql()?;
            let rows = s.query_map([known.0 as i64], |r| r.get::<_, i64>(0)).sql()?;
            rows.map(|r| r.map(|o| Oid(o as u64)).sql()).collect()
        })
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
        let writer = crate::sync::lock(&self.writer).take();
        crate::sync::lock(&self.view).closed = true;
        crate::sync::lock(&self.readers).clear();
        crate::sync::lock(&self.watch).take();
        let lock = crate::sync::lock(&self.lock).take();
        let Some(w) = writer else {
            return Ok(());
        };
        // Folds the log back into the file, so the file alone is the database; another
        // process still reading keeps it from truncating, which is not an error.
        let _ = w
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        let closed = w.conn.close().map_err(|(_, e)| sql::to_error(e));
        // Released after the connections, so the next opener finds the file quiet.
        drop(lock);
        closed
    }
}

impl Unblocked<Sqlite> {
    /// Opens or creates the SQLite storage at `path` (see [`Sqlite::open`]).
    ///
    /// ```
    /// use durus::storage::{SqliteOptions, SqliteStorage};
    /// use durus::{Counter, Db, DbBuilder};
    ///
    /// # fn main() -> durus::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// futures::executor::block_on(async {
    ///     let storage = SqliteStorage::open(dir.path().join("hits.sqlite"), SqliteOptions::default()).await?;
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
    /// As [`Sqlite::open`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not stop an open already running on the blocking pool;
    /// what it opened is closed again when that job finishes.
    pub async fn open(path: impl Into<PathBuf>, opts: SqliteOptions) -> Result<SqliteStorage> {
        let path = path.into();
        blocking::unblock(move || Sqlite::open(path, opts))
            .await
            .map(Unblocked::new)
    }
}
