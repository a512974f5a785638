//! The workloads run against durus: the synchronous `Journal` engine and the async
//! `FileStorage` over it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durus::journal::{Journal, JournalOptions, JournalStats};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{FileStorage, Storage};
use durus::{Db, DbBuilder, Persistent};
use futures::executor::block_on;
use serde::{Deserialize, Serialize};

use crate::data::{digest, value};
use crate::lat::{Samples, LOAD_STRIDE};
use crate::sys::{parallel, sampled, timed};
use crate::writes::{Finish, Writer};

/// Records per `Storage::load_many` call in W3.
pub const LOAD_MANY_BATCH: usize = 100;

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

/// A request writing `oids`, which must start at key `from`: a fresh journal hands out
/// oids 1, 2, ... in order, and they double as the keys.
fn request(oids: &[Oid], from: u64, snapshot: Tid) -> CommitRequest {
    assert_eq!(
        oids.first().map(|o| o.0),
        Some(from),
        "durus handed out oids out of key order"
    );
    CommitRequest {
        snapshot,
        records: records_for(oids),
        ..CommitRequest::default()
    }
}

/// Commits `records` to `j` as one transaction from `snapshot`; returns its tid.
pub fn commit_records(j: &Journal, snapshot: Tid, records: Vec<Record>) -> Tid {
    j.commit(&CommitRequest {
        snapshot,
        records,
        ..CommitRequest::default()
    })
    .expect("durus commit")
    .tid
}

/// W1/W2 on the synchronous engine: oids allocated per commit, as an application would.
pub struct JournalWriter {
    j: Journal,
    tid: Tid,
    close: bool,
}

impl JournalWriter {
    /// Creates a journal at `path`; `close`: close it at the end (writing a checkpoint)
    /// rather than drop it.
    pub fn create(path: &Path, opts: JournalOptions, close: bool) -> Box<dyn Writer> {
        let j = Journal::open(path, opts).expect("create a durus journal");
        Box::new(JournalWriter {
            j,
            tid: Tid::ZERO,
            close,
        })
    }
}

impl Writer for JournalWriter {
    fn commit(&mut self, from: u64, to: u64) {
        let oids = self.j.new_oids(to - from).expect("allocate durus oids");
        self.tid = self
            .j
            .commit(&request(&oids, from, self.tid))
            .expect("durus commit")
            .tid;
    }

    fn finish(self: Box<Self>) -> Finish {
        let end_offset = self.j.end_offset();
        let close = if self.close {
            timed(|| self.j.close().expect("close the durus journal")).1
        } else {
            Duration::ZERO
        };
        Finish {
            close,
            stats: Some(self.j.stats()),
            end_offset: Some(end_offset),
        }
    }
}

/// W2 through the async `FileStorage`, each call driven by `block_on`.
pub struct StorageWriter {
    s: FileStorage,
    tid: Tid,
}

impl StorageWriter {
    /// Creates a journal at `path` with the default options, behind `FileStorage`.
    pub fn create(path: &Path) -> Box<dyn Writer> {
        let s =
            block_on(FileStorage::open(path, JournalOptions::default())).expect("create a durus FileStorage");
        Box::new(StorageWriter { s, tid: Tid::ZERO })
    }
}

impl Writer for StorageWriter {
    fn commit(&mut self, from: u64, to: u64) {
        self.tid = block_on(async {
            let oids = self.s.new_oids(to - from).await.expect("allocate durus oids");
            self.s
                .commit(request(&oids, from, self.tid))
                .await
                .expect("durus async commit")
                .tid
        });
    }

    fn finish(self: Box<Self>) -> Finish {
        let end_offset = self.s.journal().end_offset();
        let close = timed(|| block_on(self.s.close()).expect("close the durus FileStorage")).1;
        Finish {
            close,
            stats: Some(self.s.journal().stats()),
            end_offset: Some(end_offset),
        }
    }
}

/// W3 on the engine: `Journal::load` of every key, split over `threads` std threads
/// sharing one read-only journal through an `Arc`. `warm`: load every key once, untimed,
/// on the same handle first.
pub fn journal_loads(path: &Path, keys: &[u64], threads: usize, warm: bool) -> (Duration, Samples) {
    let j = Arc::new(Journal::open(path, read_only()).expect("open the durus journal read-only"));
    let load = |j: &Journal, k: u64| digest(&j.load(Oid(k)).expect("durus journal load").record.data);
    if warm {
        std::hint::black_box(sampled(keys, &mut Samples::default(), |k| load(&j, k)));
    }
    parallel(keys, threads, |chunk, samples| {
        sampled(chunk, samples, |k| load(&j, k))
    })
}

/// W3 through `FileStorage`: `Storage::load_many` in batches, each thread driving its
/// own `block_on`; every call is timed (a sample is one call of [`LOAD_MANY_BATCH`]).
pub fn storage_load_many(path: &Path, keys: &[u64], threads: usize) -> (Duration, Samples) {
    let s = block_on(FileStorage::open(path, read_only())).expect("open the durus FileStorage read-only");
    parallel(keys, threads, |chunk, samples| {
        block_on(async {
            let mut sum = 0;
            for batch in chunk.chunks(LOAD_MANY_BATCH) {
                let oids = batch.iter().map(|&k| Oid(k)).collect();
                let t = Instant::now();
                let loaded = s.load_many(oids, None).await.expect("durus load_many");
                samples.push(t.elapsed());
                for l in loaded {
                    sum += digest(&l.expect("a loaded key exists").record.data);
                }
            }
            sum
        })
    })
}

/// W3 through `FileStorage`: one `Storage::load` call per key, or `Storage::load_at`
/// at the newest snapshot when `at` is set.
pub fn storage_loads(path: &Path, keys: &[u64], threads: usize, at: bool) -> (Duration, Samples) {
    let s = block_on(FileStorage::open(path, read_only())).expect("open the durus FileStorage read-only");
    let snapshot = s.journal().last_tid().expect("the store's last tid");
    parallel(keys, threads, |chunk, samples| {
        block_on(async {
            let mut sum = 0u64;
            for (i, &k) in chunk.iter().enumerate() {
                let t = Samples::start(i as u64, LOAD_STRIDE);
                let loaded = if at {
                    s.load_at(Oid(k), snapshot).await
                } else {
                    s.load(Oid(k)).await
                };
                sum += digest(&loaded.expect("durus storage load").record.data);
                samples.stop(t);
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

/// The logical size of the journal at `path`, from a read-only open.
pub fn end_offset(path: &Path) -> u64 {
    Journal::open(path, read_only())
        .expect("open the durus journal read-only")
        .end_offset()
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

/// One small object, what W5's committers write.
#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "bench.Blob")]
pub struct Blob {
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

impl Blob {
    /// A blob holding `bytes`.
    pub fn new(bytes: Vec<u8>) -> Blob {
        Blob { bytes }
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One durable transaction through `db` that inserts a single new object.
pub async fn insert_one(db: &Db<Blob>, k: u64) {
    let mut tx = db.begin().await.expect("begin a durus transaction");
    tx.insert(Blob {
        bytes: value(k).to_vec(),
    })
    .await
    .expect("insert into durus");
    tx.commit().await.expect("durus commit");
}

/// The journal's counters between two readings.
pub fn stats_between(before: JournalStats, after: JournalStats) -> JournalStats {
    JournalStats {
        commits: after.commits - before.commits,
        groups: after.groups - before.groups,
        syncs: after.syncs - before.syncs,
        bytes_written: after.bytes_written - before.bytes_written,
        packs: after.packs - before.packs,
        auto_pack_failures: after.auto_pack_failures - before.auto_pack_failures,
    }
}

/// Durable single-record transactions from `committers` concurrent tasks on one `Db`
/// (sharing appends and syncs through group commit), `total` in all; returns the
/// time taken and the journal's counters for the run.
pub fn concurrent_commits(path: &Path, committers: usize, total: u64) -> (Duration, JournalStats) {
    block_on(async {
        let fs = FileStorage::open(path.to_path_buf(), JournalOptions::default())
            .await
            .expect("open a durus file storage");
        let db: Db<Blob> = DbBuilder::storage(fs.clone())
            .open()
            .await
            .expect("open a durus Db");
        let per = (total / committers as u64).max(1);
        let before = fs.journal().stats();
        let start = Instant::now();
        let tasks = (0..committers as u64).map(|t| {
            let db = db.clone();
            async move {
                for i in 0..per {
                    insert_one(&db, t * per + i).await;
                }
            }
        });
        futures::future::join_all(tasks).await;
        let took = start.elapsed();
        let run = stats_between(before, fs.journal().stats());
        db.close().await.expect("close the durus Db");
        (took, run)
    })
}
