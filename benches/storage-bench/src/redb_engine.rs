//! The same workloads on redb 2: one table of u64 keys to 100-byte values,
//! `Durability::Immediate` on every write transaction.

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, TableDefinition};

use crate::data::{digest, value};
use crate::lat::Samples;
use crate::sys::{parallel, sampled, timed};
use crate::writes::{Finish, Writer};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("kv");

/// Inserts keys `from..to` in one durable write transaction.
fn insert_range(db: &Database, from: u64, to: u64) {
    let mut tx = db.begin_write().expect("begin a redb write transaction");
    tx.set_durability(redb::Durability::Immediate);
    {
        let mut table = tx.open_table(TABLE).expect("open the redb table");
        for k in from..to {
            table.insert(k, &value(k)[..]).expect("redb insert");
        }
    }
    tx.commit().expect("commit a redb transaction");
}

/// W1/W2: a redb database being written, one durable write transaction per call.
pub struct RedbWriter {
    db: Database,
}

impl RedbWriter {
    /// Creates the database at `path`.
    pub fn create(path: &Path) -> Box<dyn Writer> {
        let db = Database::create(path).expect("create the redb database");
        Box::new(RedbWriter { db })
    }
}

impl Writer for RedbWriter {
    fn commit(&mut self, from: u64, to: u64) {
        insert_range(&self.db, from, to);
    }

    fn finish(self: Box<Self>) -> Finish {
        Finish {
            close: timed(|| drop(self.db)).1,
            ..Finish::default()
        }
    }
}

/// Gets every key in `chunk` through one read transaction of its own.
fn get_all(db: &Database, chunk: &[u64], samples: &mut Samples) -> u64 {
    let tx = db.begin_read().expect("begin a redb read transaction");
    let table = tx.open_table(TABLE).expect("open the redb table for reading");
    sampled(chunk, samples, |k| {
        digest(
            table
                .get(k)
                .expect("redb get")
                .expect("a loaded key exists")
                .value(),
        )
    })
}

/// W3: one read transaction and table handle per thread, `get` per key. `warm`: get
/// every key once, untimed, on the same database handle first (filling redb's cache).
pub fn loads(path: &Path, keys: &[u64], threads: usize, warm: bool) -> (Duration, Samples) {
    let db = Database::open(path).expect("open the redb database");
    if warm {
        std::hint::black_box(get_all(&db, keys, &mut Samples::default()));
    }
    parallel(keys, threads, |chunk, samples| get_all(&db, chunk, samples))
}

/// W4: open the database and read `key`.
pub fn reopen(path: &Path, key: u64) -> Duration {
    let start = Instant::now();
    let db = Database::open(path).expect("reopen redb");
    let tx = db.begin_read().expect("begin a redb read transaction");
    let table = tx.open_table(TABLE).expect("open the redb table");
    let v = table
        .get(key)
        .expect("redb first get")
        .map(|g| g.value().to_vec());
    let elapsed = start.elapsed();
    assert_eq!(v.as_deref(), Some(&value(key)[..]), "redb returned a wrong value");
    elapsed
}

/// W5: `threads` threads committing `per_thread` single-record durable write
/// transactions into one new database (redb runs one writer at a time); returns the
/// time taken.
pub fn concurrent_commits(path: &Path, threads: usize, per_thread: u64) -> Duration {
    let db = Database::create(path).expect("create the redb database");
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            let db = &db;
            s.spawn(move || {
                for i in 0..per_thread {
                    let k = 1 + t * per_thread + i;
                    insert_range(db, k, k + 1);
                }
            });
        }
    });
    start.elapsed()
}
