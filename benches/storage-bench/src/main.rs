//! Storage benchmark: durus's journal beside SQLite and redb, measured in one run on
//! the same machine and disk, with the ratios and the targets they are held to.
//!
//! It first measures the disk's own `fdatasync` rate (a 4 KiB overwrite of a
//! preallocated file, and a 4 KiB append, each followed by `fdatasync`), then runs:
//!
//! - **W1** bulk load: 1,000,000 records of 100 bytes (key = u64 oid) in durable
//!   transactions of 10,000 (records/s), and the file size per record afterwards;
//!   durus also without index checkpoints (that store is dropped unclosed, for W4);
//! - **W2** 5,000 single-record durable commits by one writer (commits/s with the p50
//!   and p99 of one commit, and as a fraction of the fdatasync rate, probed again in the
//!   same rounds): durus's `Journal` with and without preallocation, the async
//!   `FileStorage`, and `Db::commit` of one object with default options (once more on a
//!   file that times its writes and syncs, to report the time a commit spends outside
//!   them); 3 runs, medians;
//! - **W3** 1,000,000 uniformly random loads from the W1 store after a reopen, on 1 and
//!   2 threads, with the p50 and p99 of one load: durus's synchronous `Journal`, the
//!   async paths through `FileStorage` (`Storage::load` and `load_at` one per call,
//!   `load_many` in batches of 100), a `Db` cache miss (`Transaction::get` of distinct
//!   keys, the same records stored as objects), SQLite and redb; plus "warm" runs of
//!   durus and redb after one untimed pass (redb caches pages itself); the median of 3
//!   runs with the engines interleaved;
//! - **W4** reopen of the W1 store plus the first load (median of several warm
//!   reopens): durus after an index checkpoint and with none (a full tail scan).
//! - **W5** concurrent durable commits (tasks, threads, processes).
//! - **OPS** (only with `--only OPS --python PATH`): `durus import` of a file of
//!   `--records` objects written by Python Durus 4.3 itself (records/s), then
//!   `durus info` and `durus census` on the imported journal.
//! - **WS** the storages side by side through the `Storage` trait: the journal,
//!   `SqliteStorage` and any `--storage SPEC`, beside plain SQLite used directly (W1,
//!   W2 with 1/8/32 writers, W3, W4; see `storages.rs`).
//! - **W5P** pack: the W1 records, reachable from the root through a two-level tree,
//!   overwritten twice, then `Journal::pack` (in a child process that reports its peak
//!   memory) beside redb's `compact()` and, with `--python`, Python Durus's
//!   `Connection.pack()`; sizes before and after against the live data; commits/s of a
//!   `Db` while `Db::pack` runs against without; peak memory of packs of 1M and 10M
//!   live objects.
//!
//! Peers: SQLite (rusqlite, WAL, synchronous=FULL) and redb (Durability::Immediate).
//! Every durable durus run has its syncs counted: the program exits non-zero if a run
//! made fewer syncs than write groups, so a missing fsync cannot look fast.
//!
//! The machine is small and may be shared, so: W1 and W2 run the engines interleaved in
//! rounds with the system's dirty pages flushed (`sync`) before each slice; W2, W3 and
//! W5 report medians of interleaved runs, W4 the median of reopens; the load average is
//! printed at both ends.
//!
//! Sizes scale down with `--records`, `--commits` and `--loads` for a smoke run, and
//! `--only W2|W3|W5|W5P` runs one workload (`--help` lists all options); files go to a temporary directory under
//! `target/bench-tmp` (a real disk, not tmpfs) that is removed at the end.

mod args;
mod commits;
mod data;
mod durus_db;
mod durus_engine;
mod lat;
mod ops;
mod pack;
mod processes;
mod reads;
mod redb_engine;
mod report;
mod sqlite_engine;
mod storages;
mod sys;
mod writes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use durus::journal::{JournalOptions, JournalStats};

use crate::args::Args;
use crate::durus_engine::JournalWriter;
use crate::redb_engine::RedbWriter;
use crate::report::{int, mib, ms, per_sec, rate, ratio_verdict, secs, time_verdict, Bound, Table, Verdict};
use crate::sqlite_engine::SqliteWriter;
use crate::sys::SyncProbe;
use crate::writes::{Finish, Writer};

const PROBE_OVERWRITE: &str = "disk: 4 KiB overwrite at offset 0 + fdatasync";
const PROBE_APPEND: &str = "disk: 4 KiB append (file grows) + fdatasync";

/// The W1 stores, which W3 and W4 read.
struct Stores {
    durus: PathBuf,
    durus_no_checkpoint: PathBuf,
    sqlite: PathBuf,
    redb: PathBuf,
    /// `Journal::end_offset()` of the two durus stores.
    durus_end: u64,
    durus_no_checkpoint_end: u64,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(processes::CHILD_FLAG) {
        processes::child_main(&argv[2..]);
        return;
    }
    if argv.get(1).map(String::as_str) == Some(pack::BUILD_FLAG) {
        pack::build_main(&argv[2..]);
        return;
    }
    if argv.get(1).map(String::as_str) == Some(pack::CHILD_FLAG) {
        pack::child_main(&argv[2..]);
        return;
    }
    let args = Args::from_env();
    std::fs::create_dir_all(&args.dir).expect("create the benchmark parent directory");
    let tmp = tempfile::Builder::new()
        .prefix("storage-bench-")
        .tempdir_in(&args.dir)
        .expect("create the benchmark temporary directory");
    let dir = tmp.path();
    print_setup(&args, dir);
    match args.only.as_deref() {
        Some("W5") => {
            w5_concurrent_commits(&args, dir);
            return;
        }
        Some("W5P") => {
            let mut verdicts = Vec::new();
            pack::w5p(&args, dir, &mut verdicts);
            print_verdicts(&verdicts);
            return;
        }
        Some("OPS") => {
            ops::ops(&args, dir);
            return;
        }
        Some("WS") => {
            let mut verdicts = Vec::new();
            storages::ws(&args, dir, &mut verdicts);
            print_verdicts(&verdicts);
            return;
        }
        Some("W2") => {
            let mut verdicts = Vec::new();
            commits::w2_single_commits(&args, dir, &mut verdicts);
            return;
        }
        Some("W3") => {
            let mut verdicts = Vec::new();
            let stores = w1_bulk_load(&args, dir, &mut verdicts);
            let keys = data::random_keys(args.records, args.loads);
            reads::w3_random_loads(&args, &stores, dir, &keys, &mut verdicts);
            return;
        }
        _ => {}
    }
    measure_sync(&args, dir, "before W1");
    let mut verdicts = Vec::new();
    let stores = w1_bulk_load(&args, dir, &mut verdicts);
    print_sizes(&args, &stores);
    commits::w2_single_commits(&args, dir, &mut verdicts);
    measure_sync(&args, dir, "again after W2 (drift check)");
    let keys = data::random_keys(args.records, args.loads);
    reads::w3_random_loads(&args, &stores, dir, &keys, &mut verdicts);
    w4_reopen(&args, &stores, keys[0], &mut verdicts);
    w5_concurrent_commits(&args, dir);
    storages::ws(&args, dir, &mut verdicts);
    pack::w5p(&args, dir, &mut verdicts);
    print_verdicts(&verdicts);
}

fn print_verdicts(verdicts: &[Verdict]) {
    println!("\nload average at the end: {}", sys::load_average());
    println!("\nTargets (from the issue)");
    for v in verdicts {
        v.print();
    }
}

/// W5: durable single-record commits from 1, 8, 32 and 128 concurrent writers: tasks on
/// one durus `FileStorage` (sharing syncs through group commit), threads on SQLite (a
/// connection each) and on redb.
fn w5_concurrent_commits(args: &Args, dir: &Path) {
    println!(
        "\nW5 concurrent durable single-record commits: {} commits per run, median of {} runs \
         (engines interleaved)",
        int(args.commits),
        args.w5_runs
    );
    let mut t = Table::new(&[
        "writers",
        "durus commits/s",
        "x 1 writer",
        "groups",
        "syncs",
        "SQLite commits/s",
        "redb commits/s",
        "durus/SQLite",
        "durus/redb",
    ]);
    let mut single = 0.0;
    for n in [1usize, 8, 32, 128] {
        let per = (args.commits / n as u64).max(1);
        let total = per * n as u64;
        let (mut durus_runs, mut sqlite_runs, mut redb_runs) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..args.w5_runs {
            let (took, s) =
                durus_engine::concurrent_commits(&dir.join(format!("w5-{n}-{run}.durus")), n, args.commits);
            durus_engine::check_syncs(&format!("W5 {n} committers"), &s, total);
            durus_runs.push((rate(s.commits, took), s));
            sys::settle();
            sqlite_runs.push(rate(
                total,
                sqlite_engine::concurrent_commits(&dir.join(format!("w5-{n}-{run}.sqlite")), n, per),
            ));
            sys::settle();
            redb_runs.push(rate(
                total,
                redb_engine::concurrent_commits(&dir.join(format!("w5-{n}-{run}.redb")), n, per),
            ));
            sys::settle();
        }
        durus_runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (durus, stats) = durus_runs.swap_remove(durus_runs.len() / 2);
        let (sqlite, redb) = (median(sqlite_runs), median(redb_runs));
        if n == 1 {
            single = durus;
        }
        t.row(vec![
            n.to_string(),
            per_sec(durus),
            format!("{:.1}", durus / single),
            int(stats.groups),
            int(stats.syncs),
            per_sec(sqlite),
            per_sec(redb),
            format!("{:.2}x", durus / sqlite),
            format!("{:.2}x", durus / redb),
        ]);
    }
    // Processes: durus in shared mode (no server) beside SQLite; redb opens a file
    // from one process only.
    const PROCESSES: usize = 4;
    let per = (args.commits / PROCESSES as u64).max(1);
    let total = per * PROCESSES as u64;
    let (mut durus_runs, mut sqlite_runs) = (Vec::new(), Vec::new());
    for run in 0..args.w5_runs {
        let (took, s) = processes::run(
            processes::Kind::Durus,
            &dir.join(format!("w5-procs-{run}.durus")),
            PROCESSES,
            per,
        );
        durus_engine::check_syncs("W5 4 processes", &s, total);
        durus_runs.push((rate(s.commits, took), s));
        sys::settle();
        let (took, _) = processes::run(
            processes::Kind::Sqlite,
            &dir.join(format!("w5-procs-{run}.sqlite")),
            PROCESSES,
            per,
        );
        sqlite_runs.push(rate(total, took));
        sys::settle();
    }
    durus_runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (durus, stats) = durus_runs.swap_remove(durus_runs.len() / 2);
    let sqlite = median(sqlite_runs);
    t.row(vec![
        format!("{PROCESSES} processes"),
        per_sec(durus),
        format!("{:.1}", durus / single),
        int(stats.groups),
        int(stats.syncs),
        per_sec(sqlite),
        "n/a".into(),
        format!("{:.2}x", durus / sqlite),
        "-".into(),
    ]);
    t.print();
}

/// The middle value (the upper middle of an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

fn print_setup(args: &Args, dir: &Path) {
    println!("durus storage benchmark: durus vs SQLite vs redb, one run, one disk");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "  cores: {cores}; load average at the start: {}",
        sys::load_average()
    );
    match sys::filesystem_of(dir) {
        Some((target, fstype, source)) => {
            println!(
                "  files: {} ({fstype} on {source}, mounted at {target})",
                dir.display()
            );
            if fstype == "tmpfs" || fstype == "ramfs" {
                println!("  WARNING: {fstype} has no real fsync; use --dir on a disk");
            }
        }
        None => println!("  files: {} (file system unknown)", dir.display()),
    }
    println!(
        "  sizes: records {}, batch {}, commits {}, loads {}, single loads {}, reopens {}",
        int(args.records),
        int(args.batch),
        int(args.commits),
        int(args.loads),
        int(args.single_loads),
        args.reopens
    );
}

fn measure_sync(args: &Args, dir: &Path, when: &str) {
    sys::settle();
    let overwrite = SyncProbe::overwrite(dir, "probe-overwrite").rate(args.sync_secs);
    sys::settle();
    let append = SyncProbe::append(dir, "probe-append").rate(args.sync_secs);
    println!(
        "\nMachine fdatasync rate, {when} ({} s per probe)",
        args.sync_secs
    );
    let mut t = Table::new(&["probe", "syncs/s", "ms/sync"]);
    for (name, r) in [(PROBE_OVERWRITE, overwrite), (PROBE_APPEND, append)] {
        t.row(vec![name.into(), per_sec(r), format!("{:.3}", 1e3 / r)]);
    }
    t.print();
}

/// Prints one sync-accounting row per durable durus run and exits if one is short.
fn sync_accounting(runs: &[(&str, JournalStats, u64)]) {
    let mut t = Table::new(&["durus run (durable)", "commits", "groups", "syncs", "MiB written"]);
    for (label, s, expected) in runs {
        durus_engine::check_syncs(label, s, *expected);
        t.row(vec![
            label.to_string(),
            int(s.commits),
            int(s.groups),
            int(s.syncs),
            mib(s.bytes_written),
        ]);
    }
    t.print();
}

/// Runs one interleaved write workload and finishes every writer.
fn run_writers(
    mut writers: Vec<Box<dyn Writer>>,
    args: &Args,
    records: u64,
    batch: u64,
) -> Vec<(Duration, Finish)> {
    let times = writes::interleaved(&mut writers, records, batch, args.rounds);
    times
        .into_iter()
        .map(|(total, _)| total)
        .zip(writers.into_iter().map(|w| w.finish()))
        .collect()
}

/// Bytes durus writes per W1 record: a 28-byte entry header, the 12-byte Durus record
/// header and the 100-byte value.
const DURUS_BYTES_PER_RECORD: usize = 28 + 12 + data::VALUE_LEN;

fn w1_bulk_load(args: &Args, dir: &Path, verdicts: &mut Vec<Verdict>) -> Stores {
    println!(
        "\nW1 bulk load: {} records of {} B in durable transactions of {} ({} interleaved rounds)",
        int(args.records),
        data::VALUE_LEN,
        int(args.batch),
        args.rounds
    );
    let mut stores = Stores {
        durus: dir.join("w1.durus"),
        durus_no_checkpoint: dir.join("w1-no-checkpoint.durus"),
        sqlite: dir.join("w1.sqlite"),
        redb: dir.join("w1.redb"),
        durus_end: 0,
        durus_no_checkpoint_end: 0,
    };
    let no_checkpoint = JournalOptions {
        checkpoint_every: None,
        ..JournalOptions::default()
    };
    let names = [
        "durus Journal (default options)",
        "durus Journal (checkpoint_every: None)",
        "SQLite (WAL, synchronous=FULL)",
        "redb (Durability::Immediate)",
        "disk: 140 B/record random, 1 write + fdatasync per batch",
    ];
    let writers = vec![
        JournalWriter::create(&stores.durus, JournalOptions::default(), true),
        // Dropped without close(): no checkpoint is ever written, for W4.
        JournalWriter::create(&stores.durus_no_checkpoint, no_checkpoint, false),
        SqliteWriter::create(&stores.sqlite),
        RedbWriter::create(&stores.redb),
        Box::new(sys::BandwidthProbe::new(
            dir,
            "w1-bandwidth-probe",
            DURUS_BYTES_PER_RECORD,
        )),
    ];
    let runs = run_writers(writers, args, args.records, args.batch);
    durus_engine::check_value(&stores.durus, 1);
    durus_engine::check_value(&stores.durus_no_checkpoint, args.records);

    let mut t = Table::new(&["engine", "records/s", "commit s", "close s"]);
    for (name, (took, fin)) in names.iter().zip(&runs) {
        t.row(vec![
            name.to_string(),
            per_sec(rate(args.records, *took)),
            secs(*took),
            secs(fin.close),
        ]);
    }
    t.print();
    let commits = args.records.div_ceil(args.batch);
    sync_accounting(&[
        (
            "W1 default options (incl. close)",
            durus_stats(&runs[0].1),
            commits,
        ),
        ("W1 checkpoint_every: None", durus_stats(&runs[1].1), commits),
    ]);
    let r: Vec<f64> = runs.iter().map(|(took, _)| rate(args.records, *took)).collect();
    report::print_ratio("W1 durus/redb records/s", r[0], r[3]);
    report::print_ratio("W1 durus (checkpoint_every: None)/SQLite", r[1], r[2]);
    report::print_ratio("W1 durus (checkpoint_every: None)/disk ceiling", r[1], r[4]);
    report::print_ratio("W1 disk ceiling at 140 B/record / SQLite", r[4], r[2]);
    let v = ratio_verdict("W1 durus/SQLite records/s", r[0], r[2], Bound::AtLeast(2.0));
    v.print();
    verdicts.push(v);
    stores.durus_end = runs[0].1.end_offset.expect("durus reports its end offset");
    stores.durus_no_checkpoint_end = runs[1].1.end_offset.expect("durus reports its end offset");
    stores
}

fn durus_stats(f: &Finish) -> JournalStats {
    f.stats.expect("a durus writer reports its counters")
}

fn print_sizes(args: &Args, s: &Stores) {
    println!(
        "\nFile size after W1 ({} records of {} B)",
        int(args.records),
        data::VALUE_LEN
    );
    let per = |bytes: u64| format!("{:.1}", bytes as f64 / args.records as f64);
    let mut t = Table::new(&[
        "store",
        "logical MiB",
        "file MiB",
        "allocated MiB",
        "B/record logical",
        "B/record file",
    ]);
    let durus = |name: &str, path: &Path, end: u64| {
        let (len, alloc) = sys::file_size(path);
        vec![name.into(), mib(end), mib(len), mib(alloc), per(end), per(len)]
    };
    t.row(durus(
        "durus (end_offset; with checkpoint)",
        &s.durus,
        s.durus_end,
    ));
    t.row(durus(
        "durus (end_offset; no checkpoint)",
        &s.durus_no_checkpoint,
        s.durus_no_checkpoint_end,
    ));
    let peer = |name: &str, (len, alloc): (u64, u64)| {
        vec![name.into(), mib(len), mib(len), mib(alloc), per(len), per(len)]
    };
    t.row(peer("SQLite (db + wal)", sqlite_engine::size(&s.sqlite)));
    t.row(peer("redb", sys::file_size(&s.redb)));
    t.print();
}

fn w4_reopen(args: &Args, s: &Stores, key: u64, verdicts: &mut Vec<Verdict>) {
    println!(
        "\nW4 reopen + first load of the {}-record store (median of {} after a warm-up)",
        int(args.records),
        args.reopens
    );
    let no_checkpoint = JournalOptions {
        checkpoint_every: None,
        ..JournalOptions::default()
    };
    let n = args.reopens;
    let with_cp = sys::warm_median(n, || {
        durus_engine::reopen(&s.durus, &JournalOptions::default(), key)
    });
    let without = sys::warm_median(n, || {
        durus_engine::reopen(&s.durus_no_checkpoint, &no_checkpoint, key)
    });
    assert_eq!(
        durus_engine::end_offset(&s.durus_no_checkpoint),
        s.durus_no_checkpoint_end,
        "the no-checkpoint store grew while reopening it: something wrote a checkpoint"
    );
    let sq = sys::warm_median(n, || sqlite_engine::reopen(&s.sqlite, key));
    let rd = sys::warm_median(n, || redb_engine::reopen(&s.redb, key));
    let mut t = Table::new(&["engine", "median ms"]);
    for (name, d) in [
        ("durus Journal (after index checkpoint)", with_cp),
        ("durus Journal (no checkpoint: full scan)", without),
        ("SQLite", sq),
        ("redb", rd),
    ] {
        t.row(vec![name.into(), ms(d)]);
    }
    t.print();
    report::print_ratio(
        "W4 durus (checkpoint)/SQLite time",
        with_cp.as_secs_f64(),
        sq.as_secs_f64(),
    );
    report::print_ratio(
        "W4 durus (checkpoint)/redb time",
        with_cp.as_secs_f64(),
        rd.as_secs_f64(),
    );
    for v in [
        time_verdict(
            "W4 durus reopen after checkpoint",
            with_cp,
            Duration::from_millis(1),
        ),
        time_verdict(
            "W4 durus reopen with no checkpoint",
            without,
            Duration::from_millis(300),
        ),
    ] {
        v.print();
        verdicts.push(v);
    }
}
