//! W5P, pack: overwrite the W1 records twice, then pack (durus), `compact()` (redb) and
//! `Connection.pack()` (Python Durus 4.3, when a Python with it is given); then the
//! commit rate of an application's `Db` while a pack runs, and the peak memory of a
//! pack of 1M and 10M live objects.
//!
//! Every durus pack runs in a child process (this binary again, [`CHILD_FLAG`]), which
//! opens the journal, packs it and reports its own time and its `VmHWM` (peak resident
//! memory) before and after the pack, so the figures are the pack's and nothing else's.
//!
//! The records are reachable from the root through a two-level tree, as an application's
//! would be: the root refers to `records / FANOUT` nodes, each node to `FANOUT` leaves;
//! every leaf is a record of the W1 shape (its key's 100-byte value, no refs).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durus::journal::{Durability, Journal, JournalOptions, PackOptions, PackPhase, PackProgress};
use durus::record::{Oid, Record, Tid};
use durus::storage::FileStorage;
use durus::{Db, DbBuilder, Persistent, Ref};
use futures::executor::block_on;
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::args::Args;
use crate::data::{value, VALUE_LEN};
use crate::durus_engine::{commit_records, Blob};
use crate::lat::{us, Samples};
use crate::report::{int, mib, ratio_verdict, secs, Bound, Table, Verdict};
use crate::sys;

mod commits;

/// The first argument that makes the binary a pack child.
pub const CHILD_FLAG: &str = "--pack-child";
/// The first argument that makes the binary build a W5P store and stop (for profiling
/// a pack: `--pack-build PATH RECORDS [small]`, then `--pack-child` on a copy; `small`:
/// the memory run's small records).
pub const BUILD_FLAG: &str = "--pack-build";

/// `--pack-build PATH RECORDS [small]`: writes the W5P store and exits.
pub fn build_main(args: &[String]) {
    let (path, records, small) = match args {
        [path, records] => (path, records, false),
        [path, records, small] if small == "small" => (path, records, true),
        _ => {
            eprintln!("usage: {BUILD_FLAG} PATH RECORDS [small]");
            std::process::exit(2);
        }
    };
    let records: u64 = records.parse().expect("RECORDS");
    let (batch, passes, len, durability) = if small {
        (100_000, 2, SMALL_VALUE, Durability::Eventual)
    } else {
        (10_000, PASSES, VALUE_LEN, Durability::default())
    };
    let (t, _) = sys::timed(|| build_durus(Path::new(path), records, batch, passes, len, durability, RAW));
    println!("built {path}: fresh store {} MiB", mib(t.1));
}

/// Leaves per node of the tree the root reaches the records through.
const FANOUT: u64 = 1000;

/// A record's data and refs.
type Encoded = (Vec<u8>, Vec<Oid>);

/// Reads `path` once from start to end, in 8 MiB pieces.
fn warm_page_cache(path: &Path) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open the store to warm the page cache");
    let mut buf = vec![0u8; 8 << 20];
    while f.read(&mut buf).expect("read the store to warm the page cache") > 0 {}
}

/// How the stored tree's records are encoded: raw bytes for the engine, or objects a
/// `Db` can read.
#[derive(Clone, Copy)]
struct Shape {
    /// A leaf's record from its key, the write pass and the value length.
    leaf: fn(u64, u64, usize) -> Encoded,
    /// The root's record over the nodes.
    tree: fn(&[Oid]) -> Encoded,
    /// A node's record over its leaves.
    node: fn(&[Oid]) -> Encoded,
}

/// Records as the engine benchmarks store them.
const RAW: Shape = Shape {
    leaf: raw_leaf,
    tree: raw_node,
    node: raw_node,
};

/// Records a `Db` of the object layer reads.
const OBJECTS: Shape = Shape {
    leaf: object_leaf,
    tree: object_tree,
    node: object_node,
};

/// Times every leaf is written: once, then overwritten twice.
const PASSES: u64 = 3;

/// The value of `key` in write pass `pass` (pass 0 is W1's value).
fn pass_value(key: u64, pass: u64, len: usize) -> Vec<u8> {
    let mut v = value(key.wrapping_add(pass << 40)).to_vec();
    v.resize(len, 0xA5);
    v
}

/// Writes `records` leaves (oids 1..=records, key = oid) `passes` times in transactions
/// of `batch`, with values of `len` bytes, then the tree that makes them reachable from
/// the root; `durability` for every commit. Returns the logical end after the first
/// pass without the tree, and the file size after the first pass and the tree, closed
/// (a fresh store of the live data), then goes on with the other passes.
fn build_durus(
    path: &Path,
    records: u64,
    batch: u64,
    passes: u64,
    len: usize,
    durability: Durability,
    shape: Shape,
) -> (u64, u64) {
    let Shape { leaf, tree, node } = shape;
    let opts = JournalOptions {
        durability,
        ..JournalOptions::default()
    };
    let mut j = Journal::open(path, opts.clone()).expect("create the durus pack store");
    let mut fresh = 0;
    let mut tid = Tid::ZERO;
    let mut first_pass_end = 0;
    for pass in 0..passes {
        let mut from = 1;
        while from <= records {
            let n = batch.min(records + 1 - from);
            let oids: Vec<Oid> = if pass == 0 {
                let oids = j.new_oids(n).expect("allocate durus oids");
                assert_eq!(oids[0].0, from, "durus handed out oids out of key order");
                oids
            } else {
                (from..from + n).map(Oid).collect()
            };
            let records = oids
                .iter()
                .map(|&o| {
                    let (data, refs) = leaf(o.0, pass, len);
                    Record::new(o, data, refs)
                })
                .collect();
            tid = commit_records(&j, tid, records);
            from += n;
        }
        if pass == 0 {
            first_pass_end = j.end_offset();
            // The tree, in one transaction: nodes of FANOUT leaves, the root over them.
            let nodes = j.new_oids(records.div_ceil(FANOUT)).expect("allocate node oids");
            let mut recs: Vec<Record> = nodes
                .iter()
                .enumerate()
                .map(|(i, &o)| {
                    let lo = 1 + i as u64 * FANOUT;
                    let hi = (lo + FANOUT).min(records + 1);
                    let leaves: Vec<Oid> = (lo..hi).map(Oid).collect();
                    let (data, refs) = node(&leaves);
                    Record::new(o, data, refs)
                })
                .collect();
            let (data, refs) = tree(&nodes);
            recs.push(Record::new(Oid::ROOT, data, refs));
            tid = commit_records(&j, tid, recs);
            j.close().expect("close the fresh durus store");
            fresh = sys::file_size(path).0;
            j = Journal::open(path, opts.clone()).expect("reopen the durus pack store");
        }
    }
    j.close().expect("close the durus pack store");
    (first_pass_end, fresh)
}

/// Raw records (the storage benchmark's shape): leaves hold their value, nodes nothing
/// but their refs.
fn raw_leaf(key: u64, pass: u64, len: usize) -> Encoded {
    (pass_value(key, pass, len), Vec::new())
}

fn raw_node(kids: &[Oid]) -> Encoded {
    (Vec::new(), kids.to_vec())
}

/// The root of the `Db` store of the commit-rate run.
#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "bench.Tree")]
pub struct Tree {
    nodes: Vec<Ref<Node>>,
}

/// A node of the `Db` store: `FANOUT` blobs.
#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "bench.Node")]
pub struct Node {
    blobs: Vec<Ref<Blob>>,
}

fn object_leaf(key: u64, pass: u64, len: usize) -> Encoded {
    durus::object::encode(&Blob::new(pass_value(key, pass, len))).expect("encode a blob")
}

fn object_node(kids: &[Oid]) -> Encoded {
    let n = Node {
        blobs: kids.iter().map(|&o| Ref::from_oid(o)).collect(),
    };
    durus::object::encode(&n).expect("encode a node")
}

fn object_tree(kids: &[Oid]) -> Encoded {
    let t = Tree {
        nodes: kids.iter().map(|&o| Ref::from_oid(o)).collect(),
    };
    durus::object::encode(&t).expect("encode the tree")
}

/// What a pack child reports.
#[derive(Clone, Copy, Debug, Default)]
struct ChildPack {
    took: Duration,
    marking: Duration,
    copying: Duration,
    switching: Duration,
    objects: u64,
    object_bytes: u64,
    bytes_before: u64,
    bytes_after: u64,
    file_before: u64,
    file_after: u64,
    /// `VmHWM` after opening the journal, and after the pack, in KiB.
    hwm_open_kib: u64,
    hwm_after_kib: u64,
}

/// Packs the journal at `path` in a child process.
fn pack_in_child(path: &Path) -> ChildPack {
    let exe = std::env::current_exe().expect("find the benchmark binary");
    let mut c = Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a pack child");
    let mut line = String::new();
    BufReader::new(c.stdout.take().expect("child stdout"))
        .read_line(&mut line)
        .expect("read from the pack child");
    let status = c.wait().expect("wait for the pack child");
    assert!(status.success(), "the pack child failed: {status}");
    let n: Vec<f64> = line
        .trim()
        .strip_prefix("packed")
        .unwrap_or_else(|| panic!("the pack child said {line:?}"))
        .split_whitespace()
        .map(|x| x.parse().expect("a pack child's figure"))
        .collect();
    let d = Duration::from_secs_f64;
    ChildPack {
        took: d(n[0]),
        marking: d(n[1]),
        copying: d(n[2]),
        switching: d(n[3]),
        objects: n[4] as u64,
        object_bytes: n[5] as u64,
        bytes_before: n[6] as u64,
        bytes_after: n[7] as u64,
        file_before: n[8] as u64,
        file_after: n[9] as u64,
        hwm_open_kib: n[10] as u64,
        hwm_after_kib: n[11] as u64,
    }
}

/// `VmHWM` of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The child's side: `--pack-child PATH`: open with default options, pack, report.
pub fn child_main(args: &[String]) {
    let [path] = args else {
        eprintln!("usage: {CHILD_FLAG} PATH");
        std::process::exit(2);
    };
    let path = PathBuf::from(path);
    let file_before = sys::file_size(&path).0;
    let j = Journal::open(&path, JournalOptions::default()).expect("open the journal to pack");
    let hwm_open = vm_hwm_kib();
    let marks: Arc<Mutex<Vec<(PackPhase, Instant)>>> = Arc::default();
    let m = marks.clone();
    let opts = PackOptions {
        progress: Some(Arc::new(move |p: &PackProgress| {
            let mut m = m.lock().unwrap();
            if m.last().map(|l| l.0) != Some(p.phase) {
                m.push((p.phase, Instant::now()));
            }
        })),
        ..PackOptions::default()
    };
    let start = Instant::now();
    let report = j.pack(&opts, &AtomicBool::new(false)).expect("pack");
    let took = start.elapsed();
    let hwm_after = vm_hwm_kib();
    let file_after = sys::file_size(&path).0;
    j.close().expect("close the packed journal");
    let marks = marks.lock().unwrap();
    let at = |phase| marks.iter().find(|m| m.0 == phase).map(|m| m.1);
    let end = start + took;
    let copy_at = at(PackPhase::Copying).unwrap_or(end);
    let switch_at = at(PackPhase::Switching).unwrap_or(end);
    println!(
        "packed {} {} {} {} {} {} {} {} {} {} {} {}",
        took.as_secs_f64(),
        (copy_at - start).as_secs_f64(),
        (switch_at - copy_at).as_secs_f64(),
        (end - switch_at).as_secs_f64(),
        report.objects,
        report.object_bytes,
        report.bytes_before,
        report.bytes_after,
        file_before,
        file_after,
        hwm_open,
        hwm_after,
    );
}

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("kv");

/// The same writes on redb (`Durability::Immediate`, transactions of `batch`); returns
/// the file size after the first pass.
fn build_redb(path: &Path, records: u64, batch: u64) -> (Database, u64) {
    let db = Database::create(path).expect("create the redb database");
    let mut first = 0;
    for pass in 0..PASSES {
        let mut from = 1;
        while from <= records {
            let to = (from + batch).min(records + 1);
            let mut tx = db.begin_write().expect("begin a redb write transaction");
            tx.set_durability(redb::Durability::Immediate);
            {
                let mut table = tx.open_table(TABLE).expect("open the redb table");
                for k in from..to {
                    table
                        .insert(k, &pass_value(k, pass, VALUE_LEN)[..])
                        .expect("redb insert");
                }
            }
            tx.commit().expect("commit a redb transaction");
            from = to;
        }
        if pass == 0 {
            first = sys::file_size(path).0;
        }
    }
    (db, first)
}

/// One redb run: build, then time `compact()`.
struct RedbPack {
    took: Duration,
    fresh: u64,
    before: u64,
    after: u64,
}

fn redb_run(path: &Path, records: u64, batch: u64) -> RedbPack {
    let (mut db, fresh) = build_redb(path, records, batch);
    let before = sys::file_size(path).0;
    sys::settle();
    let start = Instant::now();
    db.compact().expect("redb compact");
    let took = start.elapsed();
    drop(db);
    let after = sys::file_size(path).0;
    // Check one value of the last pass, outside the timing.
    let db = Database::open(path).expect("reopen redb");
    let tx = db.begin_read().expect("redb read");
    let t = tx.open_table(TABLE).expect("redb table");
    let got = t.get(records).expect("redb get").map(|g| g.value().to_vec());
    assert_eq!(
        got,
        Some(pass_value(records, PASSES - 1, VALUE_LEN)),
        "redb lost a value"
    );
    RedbPack {
        took,
        fresh,
        before,
        after,
    }
}

/// One Python Durus run (build, then time `Connection.pack()`), through the script
/// beside this crate's sources; once per benchmark, as its build takes minutes.
struct PythonPack {
    took: Duration,
    before: u64,
    after: u64,
}

fn python_run(python: &Path, path: &Path, records: u64, batch: u64) -> Option<PythonPack> {
    let text = python_script(python, path, records, batch, PASSES)?;
    let line = text.lines().find_map(|l| l.strip_prefix("packed "))?;
    let n: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    Some(PythonPack {
        took: Duration::from_secs_f64(n[0]),
        before: n[1] as u64,
        after: n[2] as u64,
    })
}

/// Runs the Python Durus script beside this crate's sources (`durus_pack.py`: write
/// `records` leaves under the root in commits of `batch`, `passes` times, then pack; with
/// `passes` 0 write once and stop); its stdout, or `None` (with a warning) if it failed.
pub fn python_script(python: &Path, path: &Path, records: u64, batch: u64, passes: u64) -> Option<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/durus_pack.py");
    let out = Command::new(python)
        .arg(script)
        .arg(path)
        .arg(records.to_string())
        .arg(batch.to_string())
        .arg(FANOUT.to_string())
        .arg(passes.to_string())
        .output()
        .expect("run the Python Durus script");
    if !out.status.success() {
        eprintln!(
            "warning: the Python Durus script failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median_by<T: Clone>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs[runs.len() / 2].clone()
}

fn median_f(xs: Vec<f64>) -> f64 {
    crate::median(xs)
}

fn median_d(xs: Vec<Duration>) -> Duration {
    Duration::from_secs_f64(median_f(xs.iter().map(Duration::as_secs_f64).collect()))
}

/// W5P: pack time and sizes beside redb (and Python Durus), the commit rate while a
/// pack runs, and the peak memory of a pack.
pub fn w5p(args: &Args, dir: &Path, verdicts: &mut Vec<Verdict>) {
    let (records, batch, runs) = (args.records, args.batch, args.pack_runs);
    println!(
        "\nW5P pack: {} records of {} B written, then overwritten twice, in durable \
         transactions of {}; then pack (durus), compact() (redb){}; median of {} interleaved runs",
        int(records),
        VALUE_LEN,
        int(batch),
        if args.python.is_some() {
            ", Connection.pack() (Python Durus 4.3)"
        } else {
            ""
        },
        runs
    );
    let mut durus_runs = Vec::new();
    let mut redb_runs = Vec::new();
    let mut python_runs = Vec::new();
    let mut fresh_durus = (0, 0);
    for run in 0..runs {
        let path = dir.join(format!("w5p-{run}.durus"));
        fresh_durus = build_durus(
            &path,
            records,
            batch,
            PASSES,
            VALUE_LEN,
            Durability::default(),
            RAW,
        );
        sys::settle();
        let p = pack_in_child(&path);
        durus_engine_check(&path, records);
        let _ = std::fs::remove_file(&path);
        durus_runs.push(p);
        sys::settle();
        let rpath = dir.join(format!("w5p-{run}.redb"));
        redb_runs.push(redb_run(&rpath, records, batch));
        let _ = std::fs::remove_file(&rpath);
        // Python Durus once: its build of the same data takes minutes.
        if let (Some(py), 0) = (&args.python, run) {
            sys::settle();
            let ppath = dir.join(format!("w5p-{run}.pydurus"));
            if let Some(p) = python_run(py, &ppath, records, batch) {
                python_runs.push(p);
            }
            for ext in ["", ".lock", ".pack", ".prepack"] {
                let _ = std::fs::remove_file(format!("{}{ext}", ppath.display()));
            }
        }
        sys::settle();
    }
    let d = median_by(durus_runs.clone(), |p| p.took.as_secs_f64());
    let r_took = median_d(redb_runs.iter().map(|r| r.took).collect());
    let r = &redb_runs[redb_runs.len() / 2];
    let mut t = Table::new(&[
        "engine",
        "pack s",
        "runs (s)",
        "file MiB before",
        "file MiB after (closed)",
        "live MiB",
        "after/live",
    ]);
    let list = |xs: Vec<Duration>| {
        xs.iter()
            .map(|x| format!("{:.2}", x.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    t.row(vec![
        "durus Journal::pack (default options)".into(),
        secs(d.took),
        list(durus_runs.iter().map(|p| p.took).collect()),
        mib(d.file_before),
        mib(d.bytes_after),
        mib(d.object_bytes),
        format!("{:.3}", d.bytes_after as f64 / d.object_bytes as f64),
    ]);
    t.row(vec![
        "redb compact() (Durability::Immediate)".into(),
        secs(r_took),
        list(redb_runs.iter().map(|p| p.took).collect()),
        mib(r.before),
        mib(r.after),
        mib(r.fresh),
        format!("{:.3}", r.after as f64 / r.fresh as f64),
    ]);
    if !python_runs.is_empty() {
        let p_took = median_d(python_runs.iter().map(|p| p.took).collect());
        let p = &python_runs[python_runs.len() / 2];
        t.row(vec![
            "Python Durus 4.3 Connection.pack()".into(),
            secs(p_took),
            list(python_runs.iter().map(|p| p.took).collect()),
            mib(p.before),
            mib(p.after),
            "".into(),
            "".into(),
        ]);
    }
    t.print();
    println!(
        "  durus: logical {} MiB -> {} MiB; {} objects kept ({} MiB of records as stored: \
         28 B entry header, 12 B record header, value); the leaves alone, written once, \
         end at {} MiB",
        mib(d.bytes_before),
        mib(d.bytes_after),
        int(d.objects),
        mib(d.object_bytes),
        mib(fresh_durus.0)
    );
    println!(
        "  durus: a fresh store of the live data (first pass and the tree, closed, with its \
         checkpoint) is {} MiB; the packed file, closed, is {:.3}x that",
        mib(fresh_durus.1),
        d.bytes_after as f64 / fresh_durus.1 as f64
    );
    println!(
        "  durus: the packed file, still open, is {} MiB: {} MiB of filler ahead for the \
         next commits (JournalOptions::preallocate), trimmed at close",
        mib(d.file_after),
        mib(d.file_after - d.bytes_after)
    );
    println!(
        "  durus phases (median run): marking + copying kept versions {} s, copying \
         transactions after the point {} s, switch (sync, read back, rename) {} s",
        secs(d.marking),
        secs(d.copying),
        secs(d.switching)
    );
    println!(
        "  redb: live data = its file after the first pass, {} MiB",
        mib(r.fresh)
    );
    println!(
        "  peak RSS of the durus pack child: {} MiB after open, {} MiB at the end",
        mib(d.hwm_open_kib << 10),
        mib(d.hwm_after_kib << 10)
    );
    for v in [
        crate::report::time_verdict("W5P durus pack time", d.took, Duration::from_secs(1)),
        ratio_verdict(
            "W5P durus pack speed / redb compact()",
            r_took.as_secs_f64(),
            d.took.as_secs_f64(),
            Bound::Above(1.0),
        ),
        Verdict {
            what: "W5P durus file after pack (closed) / live records".into(),
            target: "<= 1.10x".into(),
            measured: format!("{:.3}x", d.bytes_after as f64 / d.object_bytes as f64),
            met: (d.bytes_after as f64) <= 1.10 * d.object_bytes as f64,
        },
    ] {
        v.print();
        verdicts.push(v);
    }
    commits::w5p_commits_while_packing(args, dir, verdicts);
    w5p_memory(args, dir);
}

/// Checks the packed store: the last leaf holds its last value.
fn durus_engine_check(path: &Path, records: u64) {
    let j = Journal::open(path, crate::durus_engine::read_only()).expect("open the packed store");
    let got = j.load(Oid(records)).expect("load from the packed store");
    assert_eq!(
        got.record.data,
        pass_value(records, PASSES - 1, VALUE_LEN),
        "the packed store returned a wrong value"
    );
}

/// Peak RSS of a pack of `records` live objects and of `rss_records` small ones, each
/// packed in a child process.
fn w5p_memory(args: &Args, dir: &Path) {
    println!(
        "\nW5P peak memory of a pack (child process, VmHWM from /proc/self/status): the \
         W5P store, and {} leaves of {} B written twice (transactions of 100,000, \
         Durability::Eventual)",
        int(args.rss_records),
        SMALL_VALUE
    );
    let mut t = Table::new(&[
        "store",
        "live objects",
        "file MiB before",
        "file MiB after",
        "pack s",
        "VmHWM MiB after open",
        "VmHWM MiB after pack",
        "pack's own MiB",
    ]);
    let sizes = [
        (args.records, VALUE_LEN, args.batch, PASSES, Durability::default()),
        (args.rss_records, SMALL_VALUE, 100_000, 2, Durability::Eventual),
    ];
    for (n, len, batch, passes, durability) in sizes {
        let path = dir.join(format!("w5p-rss-{n}.durus"));
        build_durus(&path, n, batch, passes, len, durability, RAW);
        sys::settle();
        let p = pack_in_child(&path);
        let _ = std::fs::remove_file(&path);
        t.row(vec![
            format!("{} x {len} B, {passes} versions", int(n)),
            int(p.objects),
            mib(p.file_before),
            mib(p.file_after),
            secs(p.took),
            mib(p.hwm_open_kib << 10),
            mib(p.hwm_after_kib << 10),
            mib((p.hwm_after_kib.saturating_sub(p.hwm_open_kib)) << 10),
        ]);
    }
    t.print();
}

/// Value bytes of the leaves of the 10M-object memory run.
const SMALL_VALUE: usize = 16;
