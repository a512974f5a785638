//! Storage benchmark: durus's journal beside SQLite and redb, measured in one run on
//! the same machine and disk.
//!
//! It first measures the disk's own `fdatasync` rate (a 4 KiB overwrite of a
//! preallocated file, and a 4 KiB append, each followed by `fdatasync`), then runs:
//!
//! - **W1** bulk load: 1,000,000 records of 100 bytes (key = u64 oid) in durable
//!   transactions of 10,000 (records/s), and the file size per record afterwards;
//! - **W2** 5,000 single-record durable commits by one writer (commits/s, and as a
//!   fraction of the fdatasync rate), durus with and without preallocation;
//! - **W3** 1,000,000 uniformly random loads from the W1 store after a reopen, on 1 and
//!   2 threads: durus's synchronous `Journal`, the async `FileStorage` (`load_many` in
//!   batches of 100, and single `load` calls on a smaller count), SQLite and redb;
//! - **W4** reopen of the W1 store plus the first load (median of several warm
//!   reopens): durus after an index checkpoint and with none (a full tail scan).
//!
//! Peers: SQLite (rusqlite, WAL, synchronous=FULL) and redb (Durability::Immediate).
//! Every durable durus run has its syncs counted: the program exits non-zero if a run
//! made fewer syncs than write groups, so a missing fsync cannot look fast.
//!
//! Sizes scale down with `--records`, `--commits` and `--loads` for a smoke run; files
//! go to a temporary directory under `target/bench-tmp` (a real disk, not tmpfs).

mod args;
mod data;
mod durus_engine;
mod redb_engine;
mod report;
mod sqlite_engine;
mod sys;

use std::path::{Path, PathBuf};
use std::time::Duration;

use durus::journal::{JournalOptions, JournalStats};

use crate::args::Args;
use crate::report::{int, mib, ms, per_sec, rate, ratio_verdict, secs, time_verdict, Bound, Table, Verdict};

/// The disk's own sync rates, measured by this program.
struct SyncRates {
    overwrite: f64,
    append: f64,
}

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
    let args = Args::from_env();
    std::fs::create_dir_all(&args.dir).expect("create the benchmark parent directory");
    let tmp = tempfile::Builder::new()
        .prefix("storage-bench-")
        .tempdir_in(&args.dir)
        .expect("create the benchmark temporary directory");
    let dir = tmp.path();
    print_setup(&args, dir);
    let sync = measure_sync(&args, dir, "before W1");
    let mut verdicts = Vec::new();
    let stores = w1_bulk_load(&args, dir, &mut verdicts);
    print_sizes(&args, &stores);
    w2_single_commits(&args, dir, &sync, &mut verdicts);
    measure_sync(&args, dir, "again after W2 (drift check)");
    let keys = data::random_keys(args.records, args.loads);
    w3_random_loads(&args, &stores, &keys, &mut verdicts);
    w4_reopen(&args, &stores, keys[0], &mut verdicts);
    println!("\nTargets");
    for v in &verdicts {
        v.print();
    }
}

fn print_setup(args: &Args, dir: &Path) {
    println!("durus storage benchmark: durus vs SQLite vs redb, one run, one disk");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("  cores: {cores}");
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

fn measure_sync(args: &Args, dir: &Path, when: &str) -> SyncRates {
    sys::settle();
    let overwrite = sys::fdatasync_overwrite_rate(dir, args.sync_secs);
    sys::settle();
    let append = sys::fdatasync_append_rate(dir, args.sync_secs);
    println!(
        "\nMachine fdatasync rate, {when} ({} s per probe)",
        args.sync_secs
    );
    let mut t = Table::new(&["probe", "syncs/s", "ms/sync"]);
    for (name, r) in [
        ("4 KiB overwrite at offset 0 + fdatasync", overwrite),
        ("4 KiB append (file grows) + fdatasync", append),
    ] {
        t.row(vec![name.into(), per_sec(r), format!("{:.3}", 1e3 / r)]);
    }
    t.print();
    SyncRates { overwrite, append }
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

fn w1_bulk_load(args: &Args, dir: &Path, verdicts: &mut Vec<Verdict>) -> Stores {
    println!(
        "\nW1 bulk load: {} records of {} B in durable transactions of {}",
        int(args.records),
        data::VALUE_LEN,
        int(args.batch)
    );
    let stores = Stores {
        durus: dir.join("w1.durus"),
        durus_no_checkpoint: dir.join("w1-no-checkpoint.durus"),
        sqlite: dir.join("w1.sqlite"),
        redb: dir.join("w1.redb"),
        durus_end: 0,
        durus_no_checkpoint_end: 0,
    };
    sys::settle();
    let d = durus_engine::bulk_load(
        &stores.durus,
        JournalOptions::default(),
        args.records,
        args.batch,
        true,
    );
    assert_eq!(
        d.last_oid, args.records,
        "durus handed out oids other than 1..=records"
    );
    let no_checkpoint = JournalOptions {
        checkpoint_every: None,
        ..JournalOptions::default()
    };
    // Dropped without close(): no checkpoint is ever written, for W4.
    sys::settle();
    let n = durus_engine::bulk_load(
        &stores.durus_no_checkpoint,
        no_checkpoint,
        args.records,
        args.batch,
        false,
    );
    sys::settle();
    let (sq_load, sq_close) = sqlite_engine::bulk_load(&stores.sqlite, args.records, args.batch);
    sys::settle();
    let (rd_load, rd_close) = redb_engine::bulk_load(&stores.redb, args.records, args.batch);
    for (path, key) in [(&stores.durus, 1), (&stores.durus_no_checkpoint, args.records)] {
        durus_engine::check_value(path, key);
    }

    let rows = [
        ("durus Journal (default options, close)", d.load, d.close),
        ("durus Journal (checkpoint_every: None)", n.load, n.close),
        ("SQLite (WAL, synchronous=FULL)", sq_load, sq_close),
        ("redb (Durability::Immediate)", rd_load, rd_close),
    ];
    let mut t = Table::new(&["engine", "records/s", "load s", "close s"]);
    for (name, load, close) in rows {
        t.row(vec![
            name.into(),
            per_sec(rate(args.records, load)),
            secs(load),
            secs(close),
        ]);
    }
    t.print();
    let commits = args.records.div_ceil(args.batch);
    sync_accounting(&[
        ("W1 default options (incl. close)", d.stats, commits),
        ("W1 checkpoint_every: None", n.stats, commits),
    ]);
    let (dr, sr, rr) = (
        rate(args.records, d.load),
        rate(args.records, sq_load),
        rate(args.records, rd_load),
    );
    report::print_ratio("W1 durus/redb records/s", dr, rr);
    verdicts.push(ratio_verdict(
        "W1 durus/SQLite records/s",
        dr,
        sr,
        Bound::AtLeast(2.0),
    ));
    verdicts.last().expect("just pushed").print();
    Stores {
        durus_end: d.end_offset,
        durus_no_checkpoint_end: n.end_offset,
        ..stores
    }
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

fn w2_single_commits(args: &Args, dir: &Path, sync: &SyncRates, verdicts: &mut Vec<Verdict>) {
    println!(
        "\nW2 single-record durable commits: {} commits, one writer",
        int(args.commits)
    );
    let n = args.commits;
    let prealloc = JournalOptions::default();
    let no_prealloc = JournalOptions {
        preallocate: 0,
        ..JournalOptions::default()
    };
    sys::settle();
    let (d_pre, s_pre) = durus_engine::single_commits(&dir.join("w2-prealloc.durus"), prealloc, n);
    sys::settle();
    let (d_none, s_none) = durus_engine::single_commits(&dir.join("w2-no-prealloc.durus"), no_prealloc, n);
    sys::settle();
    let (d_async, s_async) = durus_engine::single_commits_async(&dir.join("w2-async.durus"), n);
    sys::settle();
    let sq = sqlite_engine::single_commits(&dir.join("w2.sqlite"), n);
    sys::settle();
    let rd = redb_engine::single_commits(&dir.join("w2.redb"), n);

    let rows = [
        ("durus Journal (preallocate 4 MiB, default)", d_pre),
        ("durus Journal (preallocate: 0)", d_none),
        ("durus FileStorage (async, default options)", d_async),
        ("SQLite (WAL, synchronous=FULL)", sq),
        ("redb (Durability::Immediate)", rd),
    ];
    println!("  (fractions are of the fdatasync rates measured before W1)");
    let mut t = Table::new(&[
        "engine",
        "commits/s",
        "time s",
        "of overwrite fdatasync/s",
        "of append fdatasync/s",
    ]);
    for (name, took) in rows {
        let r = rate(n, took);
        let pct = |of: f64| format!("{:.0}%", 100.0 * r / of);
        t.row(vec![
            name.into(),
            per_sec(r),
            secs(took),
            pct(sync.overwrite),
            pct(sync.append),
        ]);
    }
    t.print();
    sync_accounting(&[
        ("W2 preallocate 4 MiB", s_pre, n),
        ("W2 preallocate: 0", s_none, n),
        ("W2 FileStorage", s_async, n),
    ]);
    let (dr, sr, rr) = (rate(n, d_pre), rate(n, sq), rate(n, rd));
    report::print_ratio("W2 durus preallocate 4 MiB / preallocate: 0", dr, rate(n, d_none));
    report::print_ratio("W2 durus FileStorage/SQLite commits/s", rate(n, d_async), sr);
    for v in [
        ratio_verdict("W2 durus/SQLite commits/s", dr, sr, Bound::Above(1.0)),
        ratio_verdict("W2 durus/redb commits/s", dr, rr, Bound::Above(1.0)),
    ] {
        v.print();
        verdicts.push(v);
    }
}

/// One W3 load run: the keys and thread count in, the wall time out.
type LoadRun<'a> = &'a dyn Fn(&[u64], usize) -> Duration;

fn w3_random_loads(args: &Args, s: &Stores, keys: &[u64], verdicts: &mut Vec<Verdict>) {
    println!(
        "\nW3 random loads after reopen: {} loads, uniform over {} keys (single async loads: {})",
        int(args.loads),
        int(args.records),
        int(args.single_loads)
    );
    let single = &keys[..(args.single_loads as usize).min(keys.len())];
    let runs: [(&str, LoadRun, &[u64]); 5] = [
        (
            "durus Journal::load",
            &|k, t| durus_engine::journal_loads(&s.durus, k, t),
            keys,
        ),
        (
            "durus FileStorage load_many (100/call)",
            &|k, t| durus_engine::storage_load_many(&s.durus, k, t),
            keys,
        ),
        (
            "durus FileStorage load (one per call)",
            &|k, t| durus_engine::storage_loads(&s.durus, k, t),
            single,
        ),
        (
            "SQLite (prepared SELECT by key)",
            &|k, t| sqlite_engine::loads(&s.sqlite, k, t),
            keys,
        ),
        (
            "redb (read txn per thread, get)",
            &|k, t| redb_engine::loads(&s.redb, k, t),
            keys,
        ),
    ];
    let mut t = Table::new(&["engine", "loads/s 1 thread", "loads/s 2 threads", "2T/1T"]);
    let mut rates = Vec::new();
    for (name, run, k) in runs {
        let one = rate(k.len() as u64, run(k, 1));
        let two = rate(k.len() as u64, run(k, 2));
        t.row(vec![
            name.into(),
            per_sec(one),
            per_sec(two),
            format!("{:.2}", two / one),
        ]);
        rates.push((one, two));
    }
    t.print();
    let (journal, many, sqlite, redb) = (rates[0], rates[1], rates[3], rates[4]);
    report::print_ratio("W3 durus Journal/SQLite 1 thread", journal.0, sqlite.0);
    report::print_ratio("W3 durus Journal/SQLite 2 threads", journal.1, sqlite.1);
    report::print_ratio("W3 durus FileStorage load_many/redb 1 thread", many.0, redb.0);
    report::print_ratio("W3 durus FileStorage load_many/redb 2 threads", many.1, redb.1);
    for v in [
        ratio_verdict(
            "W3 durus Journal/redb loads/s, 1 thread",
            journal.0,
            redb.0,
            Bound::Above(1.0),
        ),
        ratio_verdict(
            "W3 durus Journal/redb loads/s, 2 threads",
            journal.1,
            redb.1,
            Bound::Above(1.0),
        ),
    ] {
        v.print();
        verdicts.push(v);
    }
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
