//! W6, the object benchmark: build a tree of 100,000 persistent objects (an integer, 64
//! bytes and a list of child references, fan-out 10) under the root and commit it;
//! reopen; traverse every object through its references (cold); then read them from
//! the cache with 1 and 2 threads. The same workload runs on Python Durus 4.3 in the
//! same run (`durus_w6.py` beside this crate, through `python3`), and the ratios are
//! printed.
//!
//! ```text
//! cargo run --release -p durus-object-bench [-- --objects N --fanout F --python python3]
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use durus::{Db, DbBuilder, Persistent, Ref, Transaction};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "w6.Root")]
struct Root {
    tree: Option<Ref<Node>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "w6.Node")]
struct Node {
    n: u64,
    /// Stored as a CBOR byte string, as Durus stores a `bytes`.
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    children: Vec<Ref<Node>>,
}

struct Args {
    objects: u64,
    fanout: u64,
    python: String,
}

fn args() -> Args {
    let mut a = Args {
        objects: 100_000,
        fanout: 10,
        python: "python3".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--objects" => a.objects = v.parse().expect("--objects N"),
            "--fanout" => a.fanout = v.parse().expect("--fanout F"),
            "--python" => a.python = v,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn builder(path: &Path, objects: u64) -> DbBuilder<Root> {
    Db::builder(path).cache_size(objects as usize * 2)
}

/// Builds the tree breadth-first in one transaction; returns the number of objects.
async fn build(db: &Db<Root>, objects: u64, fanout: u64) -> durus::Result<u64> {
    let mut tx = db.begin().await?;
    let payload = vec![b'x'; 64];
    // Oids first, so each node is inserted once with its final children.
    let mut refs: Vec<Ref<Node>> = Vec::with_capacity(objects as usize);
    for i in 0..objects {
        refs.push(
            tx.insert(Node {
                n: i,
                payload: payload.clone(),
                children: Vec::new(),
            })
            .await?,
        );
    }
    for (i, &r) in refs.iter().enumerate() {
        let first = i as u64 * fanout + 1;
        if first >= objects {
            break;
        }
        let kids: Vec<Ref<Node>> = (first..(first + fanout).min(objects))
            .map(|c| refs[c as usize])
            .collect();
        tx.get_mut(r).await?.children = kids;
    }
    tx.root_mut().await?.tree = Some(refs[0]);
    tx.commit().await?;
    Ok(objects)
}

/// Visits every node through its references, a level at a time.
async fn traverse(tx: &Transaction<Root>) -> durus::Result<u64> {
    let mut level = vec![tx.root().await?.tree.expect("tree")];
    let mut count = 0;
    while !level.is_empty() {
        let nodes = tx.get_many(&level).await?;
        count += nodes.len() as u64;
        level = nodes.iter().flat_map(|n| n.children.iter().copied()).collect();
    }
    Ok(count)
}

/// Cached reads per second on `threads` threads. With `fresh_tx`, every round is a new
/// transaction, so every read goes through the shared cache; otherwise one transaction
/// per thread reads every object each round, and repeats are served by the
/// transaction's own memo of what it read.
fn cached_reads(db: &Db<Root>, refs: Arc<Vec<Ref<Node>>>, threads: usize, fresh_tx: bool) -> f64 {
    let rounds = 10;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            let refs = refs.clone();
            std::thread::spawn(move || {
                futures::executor::block_on(async {
                    let mut tx = db.begin().await.expect("begin");
                    let mut sum = 0u64;
                    // Each thread starts at its own place in the list, as independent
                    // tasks would, and reads every object once per round.
                    let start = t * refs.len() / threads;
                    for _ in 0..rounds {
                        if fresh_tx {
                            tx = db.begin().await.expect("begin");
                        }
                        for &r in refs[start..].iter().chain(&refs[..start]) {
                            sum = sum.wrapping_add(tx.get(r).await.expect("get").n);
                        }
                    }
                    sum
                })
            })
        })
        .collect();
    for h in handles {
        std::hint::black_box(h.join().expect("reader"));
    }
    (threads * rounds) as f64 * refs.len() as f64 / start.elapsed().as_secs_f64()
}

fn run_python(python: &str, dir: &Path, objects: u64, fanout: u64) -> Option<HashMap<String, f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("durus_w6.py");
    let mut all: HashMap<String, Vec<f64>> = HashMap::new();
    for i in 0..RUNS {
        let out = Command::new(python)
            .arg(&script)
            .arg(dir.join(format!("w6-python-{i}.durus")))
            .arg(objects.to_string())
            .arg(fanout.to_string())
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "Python Durus run failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = l.split_once(' ') {
                if let Ok(v) = v.parse() {
                    all.entry(k.to_string()).or_default().push(v);
                }
            }
        }
    }
    Some(all.into_iter().map(|(k, v)| (k, median(v))).collect())
}

/// One build, reopen and traversal: seconds to build and commit, milliseconds to
/// reopen, seconds of cold traversal, every ref (for the cached-read runs) and the open
/// database.
type Run = (f64, f64, f64, Vec<Ref<Node>>, Db<Root>);

/// Builds, reopens and traverses once in a fresh file.
fn build_and_traverse(a: &Args, path: &Path) -> durus::Result<Run> {
    futures::executor::block_on(async {
        let db = builder(path, a.objects).open().await?;
        let t = Instant::now();
        build(&db, a.objects, a.fanout).await?;
        let build_s = t.elapsed().as_secs_f64();
        db.close().await?;
        drop(db);

        let t = Instant::now();
        let db = builder(path, a.objects).open().await?;
        let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let tx = db.begin().await?;
        let n = traverse(&tx).await?;
        let cold_s = t.elapsed().as_secs_f64();
        assert_eq!(n, a.objects, "traversal reached every object");
        let mut refs = Vec::with_capacity(n as usize);
        let mut level = vec![tx.root().await?.tree.expect("tree")];
        while !level.is_empty() {
            refs.extend(level.iter().copied());
            level = tx
                .get_many(&level)
                .await?
                .iter()
                .flat_map(|n| n.children.clone())
                .collect();
        }
        Ok((build_s, reopen_ms, cold_s, refs, db))
    })
}

/// The median of some figures.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How many times each side runs; medians are reported, because a single run of either
/// side varies by a third on a shared machine.
const RUNS: usize = 3;

fn main() -> durus::Result<()> {
    let a = args();
    let dir = tempfile::tempdir_in(".").or_else(|_| tempfile::tempdir())?;
    println!(
        "W6: tree of {} objects (u64, 64 bytes, child refs, fan-out {}); medians of {RUNS} runs per side",
        a.objects, a.fanout
    );
    let mut runs = Vec::new();
    for i in 0..RUNS {
        runs.push(build_and_traverse(&a, &dir.path().join(format!("w6-{i}.durus")))?);
    }
    let build_s = median(runs.iter().map(|r| r.0).collect());
    let reopen_ms = median(runs.iter().map(|r| r.1).collect());
    let cold_s = median(runs.iter().map(|r| r.2).collect());
    let (_, _, _, refs, db) = runs.pop().expect("at least one run");
    drop(runs);
    let refs = Arc::new(refs);
    let cached1 = cached_reads(&db, refs.clone(), 1, true);
    let cached2 = cached_reads(&db, refs.clone(), 2, true);
    let memo1 = cached_reads(&db, refs.clone(), 1, false);
    let memo2 = cached_reads(&db, refs.clone(), 2, false);
    futures::executor::block_on(db.close())?;

    let py = run_python(&a.python, dir.path(), a.objects, a.fanout);
    let get = |k: &str| py.as_ref().and_then(|m| m.get(k).copied());
    let n = a.objects as f64;
    println!();
    println!(
        "{:<34} {:>14} {:>16} {:>10}",
        "figure", "durus (Rust)", "Python Durus 4.3", "ratio"
    );
    let row = |name: &str, ours: f64, theirs: Option<f64>, higher_better: bool, unit: &str| {
        let ratio = theirs.map(|t| if higher_better { ours / t } else { t / ours });
        println!(
            "{:<34} {:>14} {:>16} {:>10}",
            name,
            format!("{ours:.3}{unit}"),
            theirs.map_or("n/a".into(), |t| format!("{t:.3}{unit}")),
            ratio.map_or("n/a".into(), |r| format!("{r:.1}x"))
        );
        ratio
    };
    let r_build = row("build + commit (s)", build_s, get("build_commit_s"), false, "");
    println!("{:<34} {:>14}", "reopen (ms)", format!("{reopen_ms:.2}"));
    let cold_rate = n / cold_s;
    let r_cold = row(
        "cold traversal (objects/s)",
        cold_rate,
        get("cold_traverse_s").map(|s| n / s),
        true,
        "",
    );
    row(
        "cached reads, 1 thread (objects/s)",
        cached1,
        get("cached_reads_per_s"),
        true,
        "",
    );
    println!(
        "{:<34} {:>14}",
        "  per thread, 2 threads",
        format!("{:.0}", cached2 / 2.0)
    );
    println!(
        "{:<34} {:>14}",
        "repeat reads in one tx, 1 thread",
        format!("{memo1:.0}")
    );
    println!(
        "{:<34} {:>14}",
        "  per thread, 2 threads",
        format!("{:.0}", memo2 / 2.0)
    );
    println!("(cached reads: a new transaction each round, so every read goes to the shared cache;");
    println!(" repeat reads: one transaction per thread, repeats served by its own read memo)");
    println!();
    println!(
        "targets: cold traversal >= 20x Durus, build+commit >= 10x, cached reads > 5M objects/s per thread"
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if let (Some(c), Some(b)) = (r_cold, r_build) {
        println!("  cold traversal {:.1}x: {}", c, verdict(c >= 20.0));
        println!("  build+commit   {:.1}x: {}", b, verdict(b >= 10.0));
    }
    println!(
        "  cached reads   {:.2}M/s (1 thread), {:.2}M/s per thread (2 threads): {}",
        cached1 / 1e6,
        cached2 / 2e6,
        verdict(cached1 > 5e6 && cached2 / 2.0 > 5e6)
    );
    Ok(())
}
