//! The workloads run against durus: the synchronous `Journal` engine and the async
//! `FileStorage` over it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durus::journal::{Journal, JournalOptions, JournalStats};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{FileStorage, Storage};
use futures::executor::block_on;

use crate::data::{digest, value};
use crate::sys::{parallel, timed};

/// Records per `Storage::load_many` call in W3.
pub const LOAD_MANY_BATCH: usize = 100;

/// What a bulk load did.
pub struct Bulk {
    /// Time of the commits.
    pub load: Duration,
    /// Time of `close()` (the final index checkpoint), zero when not closed.
    pub close: Duration,
    /// Counters after the load (and the close, if any).
    pub stats: JournalStats,
    /// The journal's logical size.
    pub end_offset: u64,
    /// The last oid handed out.
    pub last_oid: u64,
}

/// Options for a read-only open.
pub fn read_only() -> JournalOptions {
    JournalOptions {
        read_only: true,
        ..JournalOptions::default()
    }
}

/// One record per oid, each holding that oid's value.
fn records_for(oids: &[Oid]) -> Vec<Record> {
    oids.iter()
        .map(|&o| Record::new(o, value(o.0).to_vec(), vec![]))
        .collect()
}

/// W1: `records` records in commits of `batch`, oids allocated per commit as an
/// application would. Closes the journal (writing a checkpoint) only if `close`.
pub fn bulk_load(path: &Path, opts: JournalOptions, records: u64, batch: u64, close: bool) -> Bulk {
    let j = Journal::open(path, opts).expect("open the durus journal for the bulk load");
    let ((tid, last_oid), load) = timed(|| {
        let (mut tid, mut last_oid, mut left) = (Tid::ZERO, 0, records);
        while left > 0 {
            let n = left.min(batch);
            let oids = j.new_oids(n).expect("allocate oids for a bulk commit");
            last_oid = oids.last().map_or(last_oid, |o| o.0);
            let req = CommitRequest {
                snapshot: tid,
                records: records_for(&oids),
                ..CommitRequest::default()
            };
            tid = j.commit(&req).expect("durus bulk commit").tid;
            left -= n;
        }
        (tid, last_oid)
    });
    assert_eq!(tid.0, records.div_ceil(batch), "one transaction per batch");
    let end_offset = j.end_offset();
    let ((), close) = if close {
        timed(|| j.close().expect("close the durus journal after the bulk load"))
    } else {
        ((), Duration::ZERO)
    };
    Bulk {
        load,
        close,
        stats: j.stats(),
        end_offset,
        last_oid,
    }
}

/// W2 on the engine: `commits` durable commits of one fresh record each.
pub fn single_commits(path: &Path, opts: JournalOptions, commits: u64) -> (Duration, JournalStats) {
    let j = Journal::open(path, opts).expect("open the durus journal for single commits");
    let ((), elapsed) = timed(|| {
        let mut tid = Tid::ZERO;
        for _ in 0..commits {
            let oids = j.new_oids(1).expect("allocate an oid");
            let req = CommitRequest {
                snapshot: tid,
                records: records_for(&oids),
                ..CommitRequest::default()
            };
            tid = j.commit(&req).expect("durus single commit").tid;
        }
    });
    let stats = j.stats();
    drop(j);
    (elapsed, stats)
}

/// W2 through the async `FileStorage`, driven by `block_on`.
pub fn single_commits_async(path: &Path, commits: u64) -> (Duration, JournalStats) {
    let s = block_on(FileStorage::open(path, JournalOptions::default())).expect("open the durus FileStorage");
    let ((), elapsed) = timed(|| {
        block_on(async {
            let mut tid = Tid::ZERO;
            for _ in 0..commits {
                let oids = s.new_oids(1).await.expect("allocate an oid");
                let req = CommitRequest {
                    snapshot: tid,
                    records: records_for(&oids),
                    ..CommitRequest::default()
                };
                tid = s.commit(req).await.expect("durus async single commit").tid;
            }
        })
    });
    (elapsed, s.journal().stats())
}

/// W3 on the engine: `Journal::load` of every key, split over `threads` std threads
/// sharing one read-only journal through an `Arc`.
pub fn journal_loads(path: &Path, keys: &[u64], threads: usize) -> Duration {
    let j = Arc::new(Journal::open(path, read_only()).expect("open the durus journal read-only"));
    parallel(keys, threads, |chunk| {
        let j = Arc::clone(&j);
        chunk
            .iter()
            .map(|&k| digest(&j.load(Oid(k)).expect("durus journal load").record.data))
            .sum()
    })
}

/// W3 through `FileStorage`: `Storage::load_many` in batches, each thread driving its
/// own `block_on`.
pub fn storage_load_many(path: &Path, keys: &[u64], threads: usize) -> Duration {
    let s = block_on(FileStorage::open(path, read_only())).expect("open the durus FileStorage read-only");
    parallel(keys, threads, |chunk| {
        block_on(async {
            let mut sum = 0;
            for batch in chunk.chunks(LOAD_MANY_BATCH) {
                let oids = batch.iter().map(|&k| Oid(k)).collect();
                for loaded in s.load_many(oids, None).await.expect("durus load_many") {
                    sum += digest(&loaded.expect("a loaded key exists").record.data);
                }
            }
            sum
        })
    })
}

/// W3 through `FileStorage`: one `Storage::load` call per key.
pub fn storage_loads(path: &Path, keys: &[u64], threads: usize) -> Duration {
    let s = block_on(FileStorage::open(path, read_only())).expect("open the durus FileStorage read-only");
    parallel(keys, threads, |chunk| {
        block_on(async {
            let mut sum = 0;
            for &k in chunk {
                sum += digest(&s.load(Oid(k)).await.expect("durus storage load").record.data);
            }
            sum
        })
    })
}

/// W4: open the journal with `opts` and load `key`; the journal is dropped (never
/// closed, so nothing is written) after the clock stops.
pub fn reopen(path: &Path, opts: &JournalOptions, key: u64) -> Duration {
    let start = Instant::now();
    let j = Journal::open(path, opts.clone()).expect("reopen the durus journal");
    let loaded = j.load(Oid(key)).expect("first load after reopen");
    let elapsed = start.elapsed();
    assert_eq!(
        loaded.record.data,
        value(key),
        "the reopened journal returned a wrong value"
    );
    elapsed
}

/// Checks one loaded value byte for byte (outside any timing).
pub fn check_value(path: &Path, key: u64) {
    let j = Journal::open(path, read_only()).expect("open the durus journal to check a value");
    let loaded = j.load(Oid(key)).expect("load a value to check it");
    assert_eq!(
        loaded.record.data,
        value(key),
        "durus returned a wrong value for {key}"
    );
}

/// Fails the run unless every write group of a durable run was followed by a sync and
/// every commit was counted, so that a missing fsync cannot pass for speed.
pub fn check_syncs(label: &str, stats: &JournalStats, commits: u64) {
    let mut problems = Vec::new();
    if stats.commits != commits {
        problems.push(format!("counted {} commits, expected {commits}", stats.commits));
    }
    if stats.syncs < stats.groups {
        problems.push(format!(
            "made {} syncs for {} write groups: a durable commit returned without fdatasync",
            stats.syncs, stats.groups
        ));
    }
    if stats.groups < stats.commits.min(1) {
        problems.push("committed without writing a group".to_string());
    }
    if !problems.is_empty() {
        eprintln!("FATAL: durable durus run \"{label}\": {}", problems.join("; "));
        std::process::exit(1);
    }
}
