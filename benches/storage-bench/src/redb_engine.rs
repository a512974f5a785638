//! The same workloads on redb 2: one table of u64 keys to 100-byte values,
//! `Durability::Immediate` on every write transaction.

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, TableDefinition};

use crate::data::{digest, value};
use crate::sys::{parallel, timed};

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

/// W1: keys `1..=records` in transactions of `batch`. Returns load and close times.
pub fn bulk_load(path: &Path, records: u64, batch: u64) -> (Duration, Duration) {
    let db = Database::create(path).expect("create the redb database");
    let ((), load) = timed(|| {
        let mut k = 1;
        while k <= records {
            let to = (k + batch).min(records + 1);
            insert_range(&db, k, to);
            k = to;
        }
    });
    let ((), close) = timed(|| drop(db));
    (load, close)
}

/// W2: `commits` durable transactions of one insert each.
pub fn single_commits(path: &Path, commits: u64) -> Duration {
    let db = Database::create(path).expect("create the redb database");
    timed(|| {
        for k in 1..=commits {
            insert_range(&db, k, k + 1);
        }
    })
    .1
}

/// W3: one read transaction and table handle per thread, `get` per key.
pub fn loads(path: &Path, keys: &[u64], threads: usize) -> Duration {
    let db = Database::open(path).expect("open the redb database");
    parallel(keys, threads, |chunk| {
        let tx = db.begin_read().expect("begin a redb read transaction");
        let table = tx.open_table(TABLE).expect("open the redb table for reading");
        chunk
            .iter()
            .map(|&k| {
                digest(
                    table
                        .get(k)
                        .expect("redb get")
                        .expect("a loaded key exists")
                        .value(),
                )
            })
            .sum()
    })
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
