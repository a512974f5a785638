//! W3: random loads after a reopen, on 1 and 2 threads: durus's synchronous `Journal`,
//! the async paths applications use (`Storage::load`, `load_at`, `load_many` through
//! `FileStorage`, and a `Db` cache miss), SQLite and redb. Every figure is the median of
//! `--tries` runs with the engines interleaved, with the p50 and p99 of one load.

use std::path::Path;
use std::time::Duration;

use crate::args::Args;
use crate::durus_db::{build_object_store, db_misses};
use crate::durus_engine::{self, LOAD_MANY_BATCH};
use crate::lat::{us, Figure, Samples};
use crate::report::{per_sec, print_ratio, ratio_verdict, Bound, Table, Verdict};
use crate::{redb_engine, sqlite_engine, Stores};

/// One W3 load run: the keys and thread count in, the wall time and sampled load times
/// out.
type LoadRun<'a> = &'a dyn Fn(&[u64], usize) -> (Duration, Samples);

const JOURNAL: usize = 0;
const LOAD: usize = 2;
const LOAD_AT: usize = 3;
const LOAD_MANY: usize = 4;
const DB_MISS: usize = 5;
const SQLITE: usize = 6;
const REDB: usize = 7;
const REDB_WARM: usize = 8;
const WARM: usize = 1;

pub fn w3_random_loads(args: &Args, s: &Stores, dir: &Path, keys: &[u64], verdicts: &mut Vec<Verdict>) {
    let objects = dir.join("w3-objects.durus");
    build_object_store(&objects, args.records, args.batch);
    let distinct = crate::data::distinct_keys(args.records, args.single_loads);
    println!(
        "\nW3 random loads after reopen: {} loads, uniform over {} keys (single async loads: {}; \
         Db cache misses: {} distinct keys of the same records stored as objects); median of {} \
         interleaved runs",
        crate::report::int(args.loads),
        crate::report::int(args.records),
        crate::report::int(args.single_loads),
        crate::report::int(distinct.len() as u64),
        args.tries
    );
    println!(
        "  (every run reopens the store; \"warm\": one untimed pass over the keys on that handle first;"
    );
    println!("   p50/p99 of one load, of one call of {LOAD_MANY_BATCH} for load_many)");
    let single = &keys[..(args.single_loads as usize).min(keys.len())];
    let runs: [(&str, LoadRun, &[u64]); 9] = [
        (
            "durus Journal::load (sync engine)",
            &|k, t| durus_engine::journal_loads(&s.durus, k, t, false),
            keys,
        ),
        (
            "durus Journal::load, warm",
            &|k, t| durus_engine::journal_loads(&s.durus, k, t, true),
            keys,
        ),
        (
            "durus FileStorage Storage::load (one per call)",
            &|k, t| durus_engine::storage_loads(&s.durus, k, t, false),
            single,
        ),
        (
            "durus FileStorage Storage::load_at (one per call)",
            &|k, t| durus_engine::storage_loads(&s.durus, k, t, true),
            single,
        ),
        (
            "durus FileStorage Storage::load_many (100/call)",
            &|k, t| durus_engine::storage_load_many(&s.durus, k, t),
            keys,
        ),
        (
            "durus Db cache miss (Transaction::get, defaults)",
            &|k, t| db_misses(&objects, k, t),
            &distinct,
        ),
        (
            "SQLite (prepared SELECT by key)",
            &|k, t| sqlite_engine::loads(&s.sqlite, k, t),
            keys,
        ),
        (
            "redb (read txn per thread, get)",
            &|k, t| redb_engine::loads(&s.redb, k, t, false),
            keys,
        ),
        (
            "redb, warm",
            &|k, t| redb_engine::loads(&s.redb, k, t, true),
            keys,
        ),
    ];
    // [row][threads - 1] -> one figure per try
    let mut all = vec![[Vec::new(), Vec::new()]; runs.len()];
    for _ in 0..args.tries {
        for (i, (_, run, k)) in runs.iter().enumerate() {
            for threads in [1, 2] {
                let (took, samples) = run(k, threads);
                all[i][threads - 1].push(Figure::of(k.len() as u64, took, &samples));
            }
        }
    }
    let f: Vec<[Figure; 2]> = all
        .iter()
        .map(|[one, two]| [Figure::median(one), Figure::median(two)])
        .collect();
    let mut t = Table::new(&[
        "engine",
        "loads/s 1 thread",
        "p50 µs",
        "p99 µs",
        "loads/s 2 threads",
        "p50 µs",
        "p99 µs",
        "2T/1T",
    ]);
    for ((name, _, _), [one, two]) in runs.iter().zip(&f) {
        t.row(vec![
            name.to_string(),
            per_sec(one.rate),
            us(one.p50_us),
            us(one.p99_us),
            per_sec(two.rate),
            us(two.p50_us),
            us(two.p99_us),
            format!("{:.2}", two.rate / one.rate),
        ]);
    }
    t.print();
    let rate = |row: usize, threads: usize| f[row][threads - 1].rate;
    print_ratio(
        "W3 durus Journal/SQLite 1 thread",
        rate(JOURNAL, 1),
        rate(SQLITE, 1),
    );
    print_ratio(
        "W3 durus Journal/SQLite 2 threads",
        rate(JOURNAL, 2),
        rate(SQLITE, 2),
    );
    print_ratio(
        "W3 warm durus Journal/warm redb 1 thread",
        rate(WARM, 1),
        rate(REDB_WARM, 1),
    );
    print_ratio(
        "W3 warm durus Journal/warm redb 2 threads",
        rate(WARM, 2),
        rate(REDB_WARM, 2),
    );
    let mut checks = vec![
        ratio_verdict(
            "W3 durus Journal/redb loads/s, 1 thread",
            rate(JOURNAL, 1),
            rate(REDB, 1),
            Bound::Above(1.0),
        ),
        ratio_verdict(
            "W3 durus Journal/redb loads/s, 2 threads",
            rate(JOURNAL, 2),
            rate(REDB, 2),
            Bound::Above(1.0),
        ),
    ];
    for (row, what) in [
        (LOAD, "Storage::load"),
        (LOAD_AT, "Storage::load_at"),
        (LOAD_MANY, "Storage::load_many"),
        (DB_MISS, "Db cache miss"),
    ] {
        checks.push(ratio_verdict(
            &format!("W3 {what}/Journal::load, 1 thread"),
            rate(row, 1),
            rate(JOURNAL, 1),
            Bound::AtLeast(0.5),
        ));
        checks.push(ratio_verdict(
            &format!("W3 {what}/redb, 2 threads"),
            rate(row, 2),
            rate(REDB, 2),
            Bound::Above(1.0),
        ));
    }
    for v in checks {
        v.print();
        verdicts.push(v);
    }
}
