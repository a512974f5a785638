//! The workloads run against durus's `Db`, what applications use: durable commits of one
//! object (W2) and cache misses (W3), with default options.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durus::journal::io::{FileIo, OsFile};
use durus::journal::{Durability, Journal, JournalOptions, JournalStats};
use durus::record::{CommitRequest, Oid, Record};
use durus::storage::FileStorage;
use durus::{Db, DbBuilder, Ref};
use futures::executor::block_on;

use crate::data::{digest, value};
use crate::durus_engine::{insert_one, stats_between, Blob};
use crate::lat::{Samples, LOAD_STRIDE};
use crate::sys::{parallel, timed};
use crate::writes::{Finish, Writer};

/// Time spent in the file's writes and syncs, summed.
#[derive(Default)]
pub struct FileTimes {
    write_ns: AtomicU64,
    sync_ns: AtomicU64,
}

impl FileTimes {
    /// Writes and syncs together.
    pub fn write_and_sync(&self) -> Duration {
        Duration::from_nanos(self.write_ns.load(Ordering::Relaxed) + self.sync_ns.load(Ordering::Relaxed))
    }
}

/// The operating system's file, timing each write and sync (two clock reads a call).
struct TimedFile {
    file: OsFile,
    times: Arc<FileTimes>,
}

fn timed_call<T>(sum: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    sum.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

impl FileIo for TimedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.try_read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        timed_call(&self.times.write_ns, || self.file.write_all_at(buf, offset))
    }
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        timed_call(&self.times.write_ns, || self.file.set_len(len))
    }
    fn sync_data(&self) -> io::Result<()> {
        timed_call(&self.times.sync_ns, || self.file.sync_data())
    }
}

/// W2 through `Db`: each commit a transaction that inserts one object, with default
/// options (the same `FileStorage` and `DbOptions` as `Db::open(path)`); with `timed`,
/// on a file that times its writes and syncs, so the time outside them can be told.
pub struct DbWriter {
    db: Db<Blob>,
    fs: FileStorage,
    /// The journal's counters after opening (which commits the root).
    opened: JournalStats,
    times: Option<Arc<FileTimes>>,
}

impl DbWriter {
    /// Creates the database at `path`.
    pub fn create(path: &Path, timed: bool) -> DbWriter {
        let times = timed.then(|| Arc::new(FileTimes::default()));
        let fs = block_on(async {
            match &times {
                None => FileStorage::open(path, JournalOptions::default()).await,
                Some(times) => {
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(path)
                        .expect("create the durus file");
                    let io = TimedFile {
                        file: OsFile::new(file),
                        times: times.clone(),
                    };
                    FileStorage::open_io(Box::new(io), JournalOptions::default()).await
                }
            }
        })
        .expect("open a durus FileStorage");
        let db = block_on(DbBuilder::storage(fs.clone()).open()).expect("open a durus Db");
        let opened = fs.journal().stats();
        DbWriter {
            db,
            fs,
            opened,
            times,
        }
    }

    /// Write and sync time so far, for a timed writer.
    pub fn file_times(&self) -> Option<Arc<FileTimes>> {
        self.times.clone()
    }
}

impl Writer for DbWriter {
    fn commit(&mut self, from: u64, to: u64) {
        block_on(async {
            for k in from..to {
                insert_one(&self.db, k).await;
            }
        });
    }

    fn finish(self: Box<Self>) -> Finish {
        let end_offset = self.fs.journal().end_offset();
        let close = timed(|| block_on(self.db.close()).expect("close the durus Db")).1;
        Finish {
            close,
            stats: Some(stats_between(self.opened, self.fs.journal().stats())),
            end_offset: Some(end_offset),
        }
    }
}

/// Writes the W1 records again as `Blob` objects (untimed, not synced per
/// transaction), for the `Db` rows of W3: object `k` holds key `k`'s value.
pub fn build_object_store(path: &Path, records: u64, batch: u64) {
    let j = Journal::open(
        path,
        JournalOptions {
            durability: Durability::Eventual,
            ..JournalOptions::default()
        },
    )
    .expect("create the durus object store");
    let record = |oid: Oid, blob: &Blob| {
        let (data, refs) = durus::object::encode(blob).expect("encode a blob");
        Record::new(oid, data, refs)
    };
    let mut tid = j
        .commit(&CommitRequest {
            records: vec![record(Oid::ROOT, &Blob::default())],
            ..CommitRequest::default()
        })
        .expect("commit the root")
        .tid;
    let mut from = 1;
    while from <= records {
        let n = batch.min(records + 1 - from);
        let oids = j.new_oids(n).expect("allocate durus oids");
        assert_eq!(oids[0].0, from, "durus handed out oids out of key order");
        let records = oids
            .iter()
            .map(|&o| record(o, &Blob::new(value(o.0).to_vec())))
            .collect();
        tid = crate::durus_engine::commit_records(&j, tid, records);
        from += n;
    }
    j.close().expect("close the durus object store");
}

/// W3 through `Db`: `Transaction::get` of distinct keys (every one a cache miss), one
/// task per thread on one read-only `Db` with default options; a new transaction every
/// 1,000 reads, so its own memo of reads stays small.
pub fn db_misses(path: &Path, keys: &[u64], threads: usize) -> (Duration, Samples) {
    let db: Db<Blob> =
        block_on(Db::builder(path).read_only(true).open()).expect("open the durus Db read-only");
    parallel(keys, threads, |chunk, samples| {
        block_on(async {
            let mut sum = 0u64;
            let mut tx = db.begin().await.expect("begin");
            for (i, &k) in chunk.iter().enumerate() {
                if i % 1000 == 999 {
                    tx = db.begin().await.expect("begin");
                }
                let t = Samples::start(i as u64, LOAD_STRIDE);
                let blob = tx.get(Ref::<Blob>::from_oid(Oid(k))).await.expect("durus get");
                sum += digest(blob.bytes());
                samples.stop(t);
            }
            sum
        })
    })
}
