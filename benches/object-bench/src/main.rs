//! W6, the object benchmark: a tree of persistent objects (an integer, 64 bytes and a
//! list of child references, fan-out 10) built under the root and committed, then read
//! back through the public API with default options (`Db::open`): walked depth-first
//! with one `get` per object, cold (a freshly opened `Db`) by one task and by 8 tasks
//! on disjoint subtrees, again on the same `Db` (its shared cache), after a crawl, in
//! random order, and with the file dropped from the page cache. The same workload runs
//! on Python Durus 4.3 (`durus_w6.py` beside this crate) in the same rounds, durus and
//! Python interleaved, at 50,000 and 100,000 objects; medians of 3 rounds.
//!
//! Every row reports objects per second and the p50 and p99 of one object's read
//! (every 8th one timed).
//!
//! ```text
//! cargo run --release -p durus-object-bench [-- --objects N[,N..] --fanout F --python PYTHON --rounds R]
//! ```

mod model;
mod python;
mod stats;
mod walks;

use std::collections::HashMap;

use crate::stats::{median, Measure};

struct Args {
    sizes: Vec<u64>,
    fanout: u64,
    python: String,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        sizes: vec![50_000, 100_000],
        fanout: 10,
        python: "python3".into(),
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--objects" => {
                a.sizes = v
                    .split(',')
                    .map(|s| s.replace('_', "").parse().expect("--objects N[,N..]"))
                    .collect()
            }
            "--fanout" => a.fanout = v.parse().expect("--fanout F"),
            "--python" => a.python = v,
            "--rounds" => a.rounds = v.parse().expect("--rounds R"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The rows, in print order: key, label, whether Python Durus runs it.
const ROWS: [(&str, &str, bool); 9] = [
    ("cold_walk_1", "cold walk, 1 task", true),
    ("cold_walk_8", "cold walk, 8 tasks (disjoint subtrees)", false),
    ("second_walk", "second walk, same Db", true),
    ("crawl_walk", "crawl (batches of 100) then walk", true),
    ("random_reads", "cold random reads, 1 task", true),
    ("dropped_walk_1", "cold walk, page cache dropped, 1 task", true),
    ("dropped_walk_8", "cold walk, page cache dropped, 8 tasks", false),
    (
        "cached_reads_1",
        "cached reads, 1 thread (new tx per pass)",
        false,
    ),
    ("cached_reads_2", "cached reads, 2 threads, per thread", false),
];

/// Every round's figures for one size.
#[derive(Default)]
struct Collected {
    durus: Vec<walks::Figures>,
    python: Vec<python::Figures>,
}

fn main() -> durus::Result<()> {
    let a = args();
    let dir = tempfile::tempdir_in(".").or_else(|_| tempfile::tempdir())?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()?;
    println!(
        "W6: trees of {:?} objects (u64, 64 bytes, child refs, fan-out {}); durus with default \
         options on tokio ({workers} worker threads); medians of {} rounds, durus and Python \
         Durus interleaved",
        a.sizes, a.fanout, a.rounds
    );
    println!("load average at the start: {}", load_average());
    let mut all: HashMap<u64, Collected> = HashMap::new();
    for round in 0..a.rounds {
        for &n in &a.sizes {
            let c = all.entry(n).or_default();
            let path = dir.path().join(format!("w6-{n}-{round}.durus"));
            c.durus.push(walks::run(&rt, &path, n, a.fanout)?);
            std::fs::remove_file(&path)?;
            let py = dir.path().join(format!("w6-python-{n}-{round}.durus"));
            if let Some(f) = python::run(&a.python, &py, n, a.fanout) {
                c.python.push(f);
            }
            let _ = std::fs::remove_file(&py);
        }
    }
    for &n in &a.sizes {
        report(n, &all[&n]);
    }
    println!("\nload average at the end: {}", load_average());
    Ok(())
}

fn report(n: u64, c: &Collected) {
    let durus = |key: &str| {
        Measure::median(
            &c.durus
                .iter()
                .filter_map(|f| f.rows.get(key).copied())
                .collect::<Vec<_>>(),
        )
    };
    let python = |key: &str| {
        let runs: Vec<Measure> = c.python.iter().filter_map(|f| f.rows.get(key).copied()).collect();
        (!runs.is_empty()).then(|| Measure::median(&runs))
    };
    println!(
        "\n{n} objects ({} durus rounds, {} Python rounds)",
        c.durus.len(),
        c.python.len()
    );
    let build = median(c.durus.iter().map(|f| f.build_s).collect());
    let py_build = (!c.python.is_empty()).then(|| median(c.python.iter().map(|f| f.build_s).collect()));
    let reopen = median(c.durus.iter().map(|f| f.reopen_ms).collect());
    let py_reopen = (!c.python.is_empty()).then(|| median(c.python.iter().map(|f| f.reopen_ms).collect()));
    println!("  {:<44} {:>10} {:>12}   ratio", "", "durus", "Python Durus");
    println!(
        "  {:<44} {:>10.3} {:>12}   {}",
        "build + commit (s)",
        build,
        py_build.map_or("n/a".into(), |p| format!("{p:.3}")),
        py_build.map_or("".into(), |p| format!("{:.1}x", p / build))
    );
    println!(
        "  {:<44} {:>10.2} {:>12}",
        "reopen (ms)",
        reopen,
        py_reopen.map_or("n/a".into(), |p| format!("{p:.2}"))
    );
    println!(
        "  {:<44} {:>12} {:>9} {:>9}   {:>12} {:>9} {:>9}   {:>7}",
        "objects/s, p50 and p99 of one object (µs)", "durus", "p50", "p99", "Python", "p50", "p99", "ratio"
    );
    let us = |ns: f64| format!("{:.2}", ns / 1e3);
    for (key, label, on_python) in ROWS {
        let d = durus(key);
        if d.rate == 0.0 {
            println!("  {label:<44} {:>12}", "not run");
            continue;
        }
        let p = if on_python { python(key) } else { None };
        println!(
            "  {:<44} {:>12} {:>9} {:>9}   {:>12} {:>9} {:>9}   {:>7}",
            label,
            format!("{:.0}", d.rate),
            us(d.p50_ns),
            us(d.p99_ns),
            p.map_or("-".into(), |p| format!("{:.0}", p.rate)),
            p.map_or("-".into(), |p| us(p.p50_ns)),
            p.map_or("-".into(), |p| us(p.p99_ns)),
            p.map_or("".into(), |p| format!("{:.1}x", d.rate / p.rate)),
        );
    }
    let loads = median(c.durus.iter().map(|f| f.second_walk_loads as f64).collect());
    println!(
        "  second walk: {loads:.0} storage loads for {n} objects ({:.2}% served by the shared cache)",
        100.0 * (1.0 - loads / n as f64)
    );
    let (one, eight) = (durus("cold_walk_1").rate, durus("cold_walk_8").rate);
    let cached = durus("cached_reads_1").rate;
    println!("  targets:");
    println!(
        "    cold walk, 8 tasks / 1 task: {:.2}x (target >= 4x): {}",
        eight / one,
        verdict(eight / one >= 4.0)
    );
    if let Some(p) = python("cold_walk_1") {
        println!(
            "    cold walk, 1 task / Python Durus: {:.1}x (target >= 10x): {}",
            one / p.rate,
            verdict(one / p.rate >= 10.0)
        );
    }
    let second = durus("second_walk").rate;
    println!(
        "    second walk at cached speed: {:.0} objects/s, {:.2}x the cached reads' rate, {:.2}% hits",
        second,
        second / cached,
        100.0 * (1.0 - loads / n as f64)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// The 1, 5 and 15 minute load averages, to tell a quiet machine from a busy one.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
