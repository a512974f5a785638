//! WS, the storages side by side: the journal (`FileStorage`), `SqliteStorage` and any
//! store given with `--storage SPEC` (a `postgres://` URL, a server), each through the
//! async `Storage` trait a `Db` uses and opened from its spec with default options
//! (durable commits), beside plain SQLite (rusqlite, WAL, synchronous=FULL) used
//! directly with the same records:
//!
//! - W1 bulk load of `--records` records in transactions of `--batch` (records/s);
//! - W2 durable single-record commits by 1, 8 and 32 writers (tasks on one storage;
//!   threads with a connection each on plain SQLite), `--commits` in all;
//! - W3 `--single-loads` random loads, one `Storage::load` at a time on one task, after
//!   a reopen;
//! - W4 reopen and the first load (median of `--reopens`).
//!
//! The overhead of durus's SQLite layer over plain SQLite is printed as a ratio and
//! held to the target (within 1.5x, so at least 0.67x the rate) for W1 and W2.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use durus::journal::JournalOptions;
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{Storage, StorageSpec};
use futures::executor::block_on;

use crate::args::Args;
use crate::data::{random_keys, value};
use crate::report::{int, ms, per_sec, rate, ratio_verdict, Bound, Table, Verdict};
use crate::sqlite_engine::{self, SqliteWriter};
use crate::sys::{self, warm_median};

/// The writer counts of W2.
const WRITERS: [usize; 3] = [1, 8, 32];
/// The target: durus's SQLite layer within 1.5x of plain SQLite.
const WITHIN: f64 = 1.0 / 1.5;

/// One storage under test: a name for the tables and how to name a store of it.
struct Lane {
    name: String,
    /// The spec of the store called `file` (in the benchmark directory for the file
    /// kinds; the same remote store for the others).
    spec: Box<dyn Fn(&str) -> StorageSpec>,
    /// Whether the spec names a file created fresh per store (else one remote store
    /// that holds every run's records).
    local: bool,
    /// Whether this is the lane held to the target against plain SQLite.
    sqlite: bool,
}

fn lanes(args: &Args, dir: &Path) -> Vec<Lane> {
    let at = |ext: &'static str, kind: fn(std::path::PathBuf) -> StorageSpec| {
        let dir = dir.to_path_buf();
        Box::new(move |file: &str| kind(dir.join(format!("ws-{file}.{ext}"))))
            as Box<dyn Fn(&str) -> StorageSpec>
    };
    let mut out = vec![
        Lane {
            name: "durus journal".into(),
            spec: at("durus", StorageSpec::File),
            local: true,
            sqlite: false,
        },
        Lane {
            name: "durus SqliteStorage".into(),
            spec: at("sqlite", StorageSpec::Sqlite),
            local: true,
            sqlite: true,
        },
    ];
    for s in &args.storages {
        let spec: StorageSpec = s.parse().unwrap_or_else(|e| panic!("--storage {s}: {e}"));
        out.push(Lane {
            name: format!("durus {s}"),
            spec: Box::new(move |_| spec.clone()),
            local: false,
            sqlite: false,
        });
    }
    out
}

fn open(spec: &StorageSpec) -> Arc<dyn Storage> {
    block_on(spec.open(&JournalOptions::default())).unwrap_or_else(|e| panic!("open {spec:?}: {e}"))
}

/// Commits `records` fresh records in transactions of `batch`; returns the oids
/// written, in order (each record's value is `value(oid)`).
async fn load(s: &dyn Storage, records: u64, batch: u64) -> Vec<Oid> {
    let mut snapshot = s.last_tid().await.expect("last tid");
    let mut all = Vec::with_capacity(records as usize);
    let mut left = records;
    while left > 0 {
        let n = left.min(batch);
        let oids = s.new_oids(n).await.expect("new oids");
        let req = CommitRequest {
            snapshot,
            records: oids
                .iter()
                .map(|&o| Record::new(o, value(o.0).to_vec(), vec![]))
                .collect(),
            ..CommitRequest::default()
        };
        snapshot = s.commit(req).await.expect("bulk commit").tid;
        all.extend(oids);
        left -= n;
    }
    all
}

/// `writers` tasks, each committing `per` single-record transactions.
async fn commits(s: &dyn Storage, writers: usize, per: u64) {
    let snapshot: Tid = s.last_tid().await.expect("last tid");
    let tasks = (0..writers).map(|_| async move {
        for _ in 0..per {
            let oids = s.new_oids(1).await.expect("new oid");
            let req = CommitRequest {
                snapshot,
                records: vec![Record::new(oids[0], value(oids[0].0).to_vec(), vec![])],
                ..CommitRequest::default()
            };
            s.commit(req).await.expect("single commit");
        }
    });
    futures::future::join_all(tasks).await;
}

/// One load per call, checking each value.
async fn loads(s: &dyn Storage, oids: &[Oid]) {
    for &oid in oids {
        let got = s.load(oid).await.expect("load");
        assert_eq!(got.record.data, value(oid.0), "a wrong value for {oid}");
    }
}

/// Runs WS and adds its targets to `verdicts`.
pub fn ws(args: &Args, dir: &Path, verdicts: &mut Vec<Verdict>) {
    let lanes = lanes(args, dir);
    println!(
        "\nWS storages through the Storage trait, beside plain SQLite: W1 {} records in \
         transactions of {}, W2 {} durable single-record commits, W3 {} loads on one task, \
         W4 reopen (median of {})",
        int(args.records),
        int(args.batch),
        int(args.commits),
        int(args.single_loads),
        args.reopens
    );

    // W1, and the stores W3 and W4 read.
    let mut w1 = Table::new(&["storage", "records/s", "x plain SQLite"]);
    let plain_path = dir.join("ws-plain.sqlite");
    let plain = {
        let mut w = SqliteWriter::create(&plain_path);
        let start = Instant::now();
        let mut from = 1;
        while from <= args.records {
            let to = (from + args.batch).min(args.records + 1);
            w.commit(from, to);
            from = to;
        }
        let took = start.elapsed();
        w.finish();
        rate(args.records, took)
    };
    sys::settle();
    let mut loaded = Vec::new();
    for lane in &lanes {
        let spec = (lane.spec)("w1");
        let s = open(&spec);
        let start = Instant::now();
        let oids = block_on(load(&*s, args.records, args.batch));
        let r = rate(args.records, start.elapsed());
        block_on(s.close()).expect("close after W1");
        w1.row(vec![lane.name.clone(), per_sec(r), format!("{:.2}", r / plain)]);
        if lane.sqlite {
            verdicts.push(ratio_verdict(
                "WS W1 SqliteStorage / plain SQLite",
                r,
                plain,
                Bound::AtLeast(WITHIN),
            ));
        }
        loaded.push((spec, oids));
        sys::settle();
    }
    w1.row(vec!["plain SQLite".into(), per_sec(plain), "1.00".into()]);
    println!("\nWS W1 bulk load");
    w1.print();

    // W2.
    let mut header = vec!["writers".to_string()];
    header.extend(lanes.iter().map(|l| format!("{} /s", l.name)));
    header.extend(["plain SQLite /s".to_string(), "SqliteStorage / plain".to_string()]);
    let mut w2 = Table::new(&header.iter().map(String::as_str).collect::<Vec<_>>());
    for n in WRITERS {
        let per = (args.commits / n as u64).max(1);
        let total = per * n as u64;
        let mut row = vec![n.to_string()];
        let mut sqlite_storage = 0.0;
        for lane in &lanes {
            let name = if lane.local {
                format!("w2-{n}")
            } else {
                "w1".into()
            };
            let s = open(&(lane.spec)(&name));
            let start = Instant::now();
            block_on(commits(&*s, n, per));
            let r = rate(total, start.elapsed());
            block_on(s.close()).expect("close after W2");
            if lane.sqlite {
                sqlite_storage = r;
            }
            row.push(per_sec(r));
            sys::settle();
        }
        let p = rate(
            total,
            sqlite_engine::concurrent_commits(&dir.join(format!("ws-w2-{n}-plain.sqlite")), n, per),
        );
        row.extend([per_sec(p), format!("{:.2}x", sqlite_storage / p)]);
        verdicts.push(ratio_verdict(
            &format!("WS W2 {n} writers SqliteStorage / plain SQLite"),
            sqlite_storage,
            p,
            Bound::AtLeast(WITHIN),
        ));
        w2.row(row);
        sys::settle();
    }
    println!("\nWS W2 durable single-record commits");
    w2.print();

    // W3 and W4 on the W1 stores.
    let keys = random_keys(args.records, args.single_loads);
    let mut w3 = Table::new(&["storage", "loads/s (1 task)", "reopen + first load, ms"]);
    for (lane, (spec, oids)) in lanes.iter().zip(&loaded) {
        let picked: Vec<Oid> = keys.iter().map(|&k| oids[(k - 1) as usize]).collect();
        let s = open(spec);
        let start = Instant::now();
        block_on(loads(&*s, &picked));
        let r = rate(picked.len() as u64, start.elapsed());
        block_on(s.close()).expect("close after W3");
        let first = picked[0];
        let reopen = warm_median(args.reopens, || {
            let start = Instant::now();
            let s = open(spec);
            block_on(loads(&*s, &[first]));
            let took = start.elapsed();
            block_on(s.close()).expect("close after W4");
            took
        });
        w3.row(vec![lane.name.clone(), per_sec(r), ms(reopen)]);
    }
    let (took, _) = sqlite_engine::loads(&plain_path, &keys, 1);
    let reopen = warm_median(args.reopens, || sqlite_engine::reopen(&plain_path, keys[0]));
    w3.row(vec![
        "plain SQLite".into(),
        per_sec(rate(keys.len() as u64, took)),
        ms(reopen),
    ]);
    println!("\nWS W3 random loads and W4 reopen");
    w3.print();
}
