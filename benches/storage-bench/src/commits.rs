//! W2: single-record durable commits by one writer, every engine interleaved in rounds
//! with the disk's own write+fdatasync probes; `--w2-runs` runs, medians reported, with
//! the p50 and p99 of one commit.

use std::path::Path;

use durus::journal::JournalOptions;

use crate::args::Args;
use crate::durus_db::DbWriter;
use crate::durus_engine::{JournalWriter, StorageWriter};
use crate::lat::{us, Figure};
use crate::redb_engine::RedbWriter;
use crate::report::{per_sec, ratio_verdict, Bound, Table, Verdict};
use crate::sqlite_engine::SqliteWriter;
use crate::sys::SyncProbe;
use crate::writes::{self, Writer};
use crate::{durus_stats, median, sync_accounting, PROBE_APPEND, PROBE_OVERWRITE};

const NAMES: [&str; 9] = [
    "durus Journal (preallocate 4 MiB, default)",
    "durus Journal (preallocate: 0)",
    "durus FileStorage (async, default options)",
    "durus Db::commit, 1 object (default options)",
    "durus Db::commit, file calls timed",
    "SQLite (WAL, synchronous=FULL)",
    "redb (Durability::Immediate)",
    PROBE_OVERWRITE,
    PROBE_APPEND,
];
const DB: usize = 3;
const DB_TIMED: usize = 4;
const SQLITE: usize = 5;
const REDB: usize = 6;
const OVERWRITE: usize = 7;
const APPEND: usize = 8;

/// One W2 run in fresh files: each writer's figure, and for the timed `Db` writer the
/// mean time per commit spent in its file's writes and syncs.
fn one_run(args: &Args, dir: &Path, run: u64) -> (Vec<Figure>, f64) {
    let n = args.commits;
    let no_prealloc = JournalOptions {
        preallocate: 0,
        ..JournalOptions::default()
    };
    let file = |name: &str| dir.join(format!("w2-{run}-{name}"));
    let timed = DbWriter::create(&file("db-timed.durus"), true);
    let times = timed.file_times().expect("the timed writer's file times");
    let writers: Vec<Box<dyn Writer>> = vec![
        JournalWriter::create(&file("prealloc.durus"), JournalOptions::default(), false),
        JournalWriter::create(&file("no-prealloc.durus"), no_prealloc, false),
        StorageWriter::create(&file("async.durus")),
        Box::new(DbWriter::create(&file("db.durus"), false)),
        Box::new(timed),
        SqliteWriter::create(&file("w2.sqlite")),
        RedbWriter::create(&file("w2.redb")),
        Box::new(SyncProbe::overwrite(dir, &format!("w2-{run}-probe-overwrite"))),
        Box::new(SyncProbe::append(dir, &format!("w2-{run}-probe-append"))),
    ];
    let mut writers = writers;
    // Only the commits' file time: opening committed the root, and closing writes a
    // checkpoint.
    let before = times.write_and_sync();
    let took = writes::interleaved(&mut writers, n, 1, args.rounds);
    let in_file = (times.write_and_sync() - before).as_secs_f64() / n as f64;
    let runs: Vec<_> = took
        .into_iter()
        .zip(writers.into_iter().map(|w| w.finish()))
        .map(|((d, s), fin)| (d, s, fin))
        .collect();
    sync_accounting(&[
        (
            &format!("W2 run {run} preallocate 4 MiB"),
            durus_stats(&runs[0].2),
            n,
        ),
        (
            &format!("W2 run {run} preallocate: 0"),
            durus_stats(&runs[1].2),
            n,
        ),
        (
            &format!("W2 run {run} FileStorage (incl. close)"),
            durus_stats(&runs[2].2),
            n,
        ),
        (
            &format!("W2 run {run} Db::commit (incl. close)"),
            durus_stats(&runs[DB].2),
            n,
        ),
        (
            &format!("W2 run {run} Db::commit, timed (incl. close)"),
            durus_stats(&runs[DB_TIMED].2),
            n,
        ),
    ]);
    let figures = runs
        .iter()
        .map(|(took, samples, _)| Figure::of(n, *took, samples))
        .collect();
    (figures, in_file)
}

pub fn w2_single_commits(args: &Args, dir: &Path, verdicts: &mut Vec<Verdict>) {
    println!(
        "\nW2 single-record durable commits: {} commits, one writer; {} runs of {} interleaved \
         rounds (with the disk probes), medians",
        crate::report::int(args.commits),
        args.w2_runs,
        args.rounds
    );
    let mut all: Vec<Vec<Figure>> = vec![Vec::new(); NAMES.len()];
    let mut in_file = Vec::new();
    let mut fractions: Vec<Vec<f64>> = vec![Vec::new(); NAMES.len()];
    for run in 0..args.w2_runs {
        let (figures, file) = one_run(args, dir, run);
        for (i, f) in figures.iter().enumerate() {
            all[i].push(*f);
            // Fractions of the probes' rates in the same rounds, then their median.
            fractions[i].push(f.rate / figures[OVERWRITE].rate);
        }
        in_file.push(file);
    }
    let f: Vec<Figure> = all.iter().map(|runs| Figure::median(runs)).collect();
    println!("  (fractions are of the overwrite+fdatasync probe's rate in the same rounds)");
    let mut t = Table::new(&[
        "engine",
        "commits/s",
        "p50 µs",
        "p99 µs",
        "of overwrite+fdatasync/s",
    ]);
    for (i, name) in NAMES.iter().enumerate() {
        t.row(vec![
            name.to_string(),
            per_sec(f[i].rate),
            us(f[i].p50_us),
            us(f[i].p99_us),
            format!("{:.0}%", 100.0 * median(fractions[i].clone())),
        ]);
    }
    t.print();
    let per_commit = 1e6 / f[DB_TIMED].rate;
    let file = median(in_file) * 1e6;
    println!(
        "  Db::commit (timed file): {per_commit:.1} µs per commit, of which {file:.1} µs in the \
         file's writes and fdatasyncs and {:.1} µs outside them",
        per_commit - file
    );
    println!(
        "  append probe in the same rounds: {} syncs/s",
        per_sec(f[APPEND].rate)
    );
    crate::report::print_ratio(
        "W2 durus preallocate 4 MiB / preallocate: 0",
        f[0].rate,
        f[1].rate,
    );
    crate::report::print_ratio("W2 durus FileStorage/SQLite commits/s", f[2].rate, f[SQLITE].rate);
    for v in [
        ratio_verdict(
            "W2 durus Journal/SQLite commits/s",
            f[0].rate,
            f[SQLITE].rate,
            Bound::Above(1.0),
        ),
        ratio_verdict(
            "W2 durus Journal/redb commits/s",
            f[0].rate,
            f[REDB].rate,
            Bound::Above(1.0),
        ),
        ratio_verdict(
            "W2 durus Db::commit/SQLite commits/s",
            f[DB].rate,
            f[SQLITE].rate,
            Bound::AtLeast(1.2),
        ),
        ratio_verdict(
            "W2 durus Db::commit/redb commits/s",
            f[DB].rate,
            f[REDB].rate,
            Bound::Above(1.0),
        ),
    ] {
        v.print();
        verdicts.push(v);
    }
}
