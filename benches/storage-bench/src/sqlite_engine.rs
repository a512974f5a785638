//! The same workloads on SQLite (rusqlite, bundled): WAL journal mode, synchronous=FULL
//! for every durable write, an INTEGER PRIMARY KEY table of 100-byte blobs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::data::{digest, value};
use crate::lat::Samples;
use crate::sys::{file_size, parallel, sampled, timed};
use crate::writes::{Finish, Writer};

const SELECT: &str = "SELECT v FROM kv WHERE k = ?1";
const INSERT: &str = "INSERT INTO kv (k, v) VALUES (?1, ?2)";

/// Opens a connection in WAL mode with synchronous=FULL.
fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open the SQLite database");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("set SQLite journal_mode=WAL");
    assert_eq!(mode.to_lowercase(), "wal", "SQLite refused WAL mode");
    conn.execute_batch("PRAGMA synchronous=FULL")
        .expect("set SQLite synchronous=FULL");
    conn
}

fn create(path: &Path) -> Connection {
    let conn = open(path);
    conn.execute_batch("CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        .expect("create the SQLite table");
    conn
}

/// Inserts keys `from..to` in one transaction.
fn insert_range(conn: &mut Connection, from: u64, to: u64) {
    let tx = conn.transaction().expect("begin a SQLite transaction");
    {
        let mut st = tx.prepare_cached(INSERT).expect("prepare the SQLite insert");
        for k in from..to {
            st.execute(params![k as i64, &value(k)[..]])
                .expect("SQLite insert");
        }
    }
    tx.commit().expect("commit a SQLite transaction");
}

/// W1/W2: a SQLite database being written, one transaction per call.
pub struct SqliteWriter {
    conn: Connection,
}

impl SqliteWriter {
    /// Creates the database and its table at `path`.
    pub fn create(path: &Path) -> Box<dyn Writer> {
        Box::new(SqliteWriter { conn: create(path) })
    }
}

impl Writer for SqliteWriter {
    fn commit(&mut self, from: u64, to: u64) {
        insert_range(&mut self.conn, from, to);
    }

    fn finish(self: Box<Self>) -> Finish {
        // The last connection's close checkpoints the WAL into the database file.
        let close = timed(|| self.conn.close().map_err(|(_, e)| e).expect("close SQLite")).1;
        Finish {
            close,
            ..Finish::default()
        }
    }
}

/// W3: prepared SELECT by primary key, one connection per thread.
pub fn loads(path: &Path, keys: &[u64], threads: usize) -> (Duration, Samples) {
    parallel(keys, threads, |chunk, samples| {
        let conn = open(path);
        let mut st = conn.prepare_cached(SELECT).expect("prepare the SQLite select");
        sampled(chunk, samples, |k| {
            st.query_row([k as i64], |r| Ok(digest(r.get_ref(0)?.as_blob()?)))
                .expect("SQLite select")
        })
    })
}

/// W4: open the database and read `key`.
pub fn reopen(path: &Path, key: u64) -> Duration {
    let start = Instant::now();
    let conn = Connection::open(path).expect("reopen SQLite");
    let v: Option<Vec<u8>> = conn
        .query_row(SELECT, [key as i64], |r| r.get(0))
        .optional()
        .expect("SQLite first select");
    let elapsed = start.elapsed();
    assert_eq!(
        v.as_deref(),
        Some(&value(key)[..]),
        "SQLite returned a wrong value"
    );
    elapsed
}

/// Bytes on disk: the database file plus any WAL left beside it.
pub fn size(path: &Path) -> (u64, u64) {
    let mut wal = PathBuf::from(path);
    wal.as_mut_os_string().push("-wal");
    let (a, b) = (file_size(path), file_size(&wal));
    (a.0 + b.0, a.1 + b.1)
}

/// W5: `threads` threads, each with its own connection, committing `per_thread`
/// single-row durable transactions into one new database; returns the time taken.
pub fn concurrent_commits(path: &Path, threads: usize, per_thread: u64) -> Duration {
    create_empty(path);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            s.spawn(move || {
                let mut conn = open_writer(path);
                for i in 0..per_thread {
                    insert_one(&mut conn, 1 + t * per_thread + i);
                }
            });
        }
    });
    start.elapsed()
}

/// Creates the database and its table, and closes it.
pub fn create_empty(path: &Path) {
    drop(create(path));
}

/// A connection for one of several concurrent writers (threads or processes).
pub fn open_writer(path: &Path) -> Connection {
    let conn = open(path);
    // Writers queue on SQLite's lock instead of failing with SQLITE_BUSY.
    conn.busy_timeout(Duration::from_secs(60))
        .expect("set the SQLite busy timeout");
    conn
}

/// One durable transaction inserting key `k`.
pub fn insert_one(conn: &mut Connection, k: u64) {
    insert_range(conn, k, k + 1);
}
