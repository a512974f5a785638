//! W8, the B-tree benchmark: `ENTRIES` `u64` keys (key i is `i * STRIDE`) in a
//! shuffled order with 100-byte values that do not compress, inserted into a
//! `durus::BTree` in transactions of `BATCH` through the public API with default options (`Db::open`); then a fresh `Db`
//! makes `GETS` random gets (cold: an empty object cache, the page cache warm) and the
//! same gets again (cached), and another fresh `Db` makes `SCANS` range scans of
//! `SCAN_LEN` entries, cold and again cached; last `Db::pack`. Python Durus 4.3's
//! `durus.btree.BTree` runs the same workload (`durus_w8.py` beside this crate) in the
//! same run. One round each: the 1M run is long, and the figures say so.
//!
//! ```text
//! cargo run --release -p durus-object-bench --bin w8 [-- --entries N --batch B
//!     --gets G --scans S --scan-len L --python PYTHON]
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use durus::journal::{Journal, JournalOptions, PackOptions};
use durus::{BTree, Db, Persistent, Ref};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Keys are `i * STRIDE`: spread over the `u64` range, and a scan of `L` entries from
/// entry `s` is the key range `s * STRIDE .. (s + L) * STRIDE`.
const STRIDE: u64 = 4_294_967_311;

type Tree = BTree<u64, ByteBuf>;

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "bench.W8Root")]
struct Root {
    tree: Option<Ref<Tree>>,
}

struct Args {
    entries: u64,
    batch: u64,
    gets: u64,
    scans: u64,
    scan_len: u64,
    python: String,
}

fn args() -> Args {
    let mut a = Args {
        entries: 1_000_000,
        batch: 10_000,
        gets: 100_000,
        scans: 20,
        scan_len: 10_000,
        python: "python3".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        let n = || -> u64 { v.replace('_', "").parse().unwrap_or_else(|_| panic!("{k} N")) };
        match k.as_str() {
            "--entries" => a.entries = n(),
            "--batch" => a.batch = n(),
            "--gets" => a.gets = n(),
            "--scans" => a.scans = n(),
            "--scan-len" => a.scan_len = n(),
            "--python" => a.python = v,
            other => panic!("unknown argument {other}"),
        }
    }
    a.scan_len = a.scan_len.min(a.entries);
    a
}

/// The value stored under entry `i`: 100 bytes that do not compress (splitmix64 of
/// `i`), as Python Durus compresses every record's state.
fn value(i: u64) -> Vec<u8> {
    let mut x = i;
    let mut out = Vec::with_capacity(104);
    while out.len() < 100 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(100);
    out
}

/// The figures of one side, by key (as the Python script prints them).
type Figures = HashMap<String, f64>;

/// The logical size of the journal (its end, without the preallocated space).
fn journal_end(path: &Path) -> durus::Result<u64> {
    let opts = JournalOptions {
        read_only: true,
        ..JournalOptions::default()
    };
    Ok(Journal::open(path, opts)?.end_offset())
}

async fn load(path: &Path, order: &[u64], batch: u64, f: &mut Figures) -> durus::Result<()> {
    let db: Db<Root> = Db::open(path).await?;
    let mut tx = db.begin().await?;
    let tree = Tree::create(&mut tx).await?;
    tx.root_mut().await?.tree = Some(tree);
    tx.commit().await?;
    db.close().await?;
    let before = journal_end(path)?;
    let db: Db<Root> = Db::open(path).await?;
    let start = Instant::now();
    for chunk in order.chunks(batch as usize) {
        let mut tx = db.begin().await?;
        for &i in chunk {
            Tree::insert(&mut tx, tree, i * STRIDE, ByteBuf::from(value(i))).await?;
        }
        tx.commit().await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    db.close().await?;
    let end = journal_end(path)?;
    f.insert("inserts_per_s".into(), order.len() as f64 / elapsed);
    f.insert("bytes_written".into(), (end - before) as f64);
    f.insert("file_after_load".into(), end as f64);
    Ok(())
}

/// What a read pass does: gets of these entries, or scans of `len` entries from these.
enum Reads<'a> {
    Gets(&'a [u64]),
    Scans(&'a [u64], u64),
}

/// Two passes of `reads` on a fresh `Db` (cold, then cached), each in its own
/// transaction: entries per second.
async fn passes(path: &Path, reads: Reads<'_>) -> durus::Result<[f64; 2]> {
    let db: Db<Root> = Db::open(path).await?;
    let mut rates = [0.0; 2];
    for rate in &mut rates {
        let tx = db.begin().await?;
        let tree = tx.root().await?.tree.expect("the tree was created by the load");
        let start = Instant::now();
        let entries = match reads {
            Reads::Gets(keys) => {
                for &i in keys {
                    let got = Tree::get(&tx, tree, &(i * STRIDE)).await?;
                    assert!(
                        got.map(ByteBuf::into_vec) == Some(value(i)),
                        "wrong value for entry {i}"
                    );
                }
                keys.len() as u64
            }
            Reads::Scans(starts, len) => {
                for &s in starts {
                    let got = Tree::range(&tx, tree, s * STRIDE..(s + len) * STRIDE).await?;
                    assert_eq!(got.len() as u64, len, "scan from entry {s}");
                }
                starts.len() as u64 * len
            }
        };
        *rate = entries as f64 / start.elapsed().as_secs_f64();
    }
    db.close().await?;
    Ok(rates)
}

fn run_durus(path: &Path, a: &Args, order: &[u64], keys: &[u64], starts: &[u64]) -> durus::Result<Figures> {
    let rt = tokio::runtime::Builder::new_multi_thread().build()?;
    let mut f = Figures::new();
    rt.block_on(async {
        load(path, order, a.batch, &mut f).await?;
        let [cold, cached] = passes(path, Reads::Gets(keys)).await?;
        f.insert("gets_cold".into(), cold);
        f.insert("gets_cached".into(), cached);
        let [cold, cached] = passes(path, Reads::Scans(starts, a.scan_len)).await?;
        f.insert("scan_cold".into(), cold);
        f.insert("scan_cached".into(), cached);
        let db: Db<Root> = Db::open(path).await?;
        let start = Instant::now();
        let report = db.pack(PackOptions::default()).await?;
        f.insert("pack_s".into(), start.elapsed().as_secs_f64());
        f.insert("file_after_pack".into(), report.bytes_after as f64);
        db.close().await
    })?;
    Ok(f)
}

fn run_python(python: &str, path: &Path, a: &Args, seed: u64) -> Option<Figures> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("durus_w8.py");
    let nums = [a.entries, a.batch, a.gets, a.scans, a.scan_len, seed];
    let out = Command::new(python)
        .arg(&script)
        .arg(path)
        .args(nums.map(|n| n.to_string()))
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            eprintln!(
                "Python Durus run failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Err(e) => {
            eprintln!("could not run {python}: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let pairs = text.lines().filter_map(|l| l.split_once(' '));
    Some(
        pairs
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect(),
    )
}

fn main() -> durus::Result<()> {
    let a = args();
    let dir = tempfile::tempdir_in(".").or_else(|_| tempfile::tempdir())?;
    let mut rng = fastrand::Rng::with_seed(8);
    let mut order: Vec<u64> = (0..a.entries).collect();
    rng.shuffle(&mut order);
    let keys: Vec<u64> = (0..a.gets).map(|_| rng.u64(..a.entries)).collect();
    let starts: Vec<u64> = (0..a.scans).map(|_| rng.u64(..=a.entries - a.scan_len)).collect();
    println!(
        "W8: {} u64 keys in random order, 100-byte values, {} per transaction; {} random gets, \
         {} scans of {} entries; durus with default options on tokio; one round",
        a.entries, a.batch, a.gets, a.scans, a.scan_len
    );
    println!("load average at the start: {}", load_average());
    let durus = run_durus(&dir.path().join("w8.durus"), &a, &order, &keys, &starts)?;
    // Shown now too: the Python run that follows takes far longer.
    report(&a, &durus, None);
    let python = run_python(&a.python, &dir.path().join("w8-python.durus"), &a, 8);
    println!("load average at the end: {}", load_average());
    report(&a, &durus, python.as_ref());
    Ok(())
}

/// Rows: key, label, how to show the figure.
const ROWS: [(&str, &str, Show); 9] = [
    ("inserts_per_s", "inserts/s", Show::Rate),
    ("bytes_written", "bytes written per entry (load)", Show::PerEntry),
    ("file_after_load", "file after the load, MB (no pack)", Show::Mb),
    ("file_after_pack", "file after Db::pack / pack(), MB", Show::Mb),
    ("pack_s", "pack (s)", Show::Seconds),
    ("gets_cold", "random gets/s after reopen, cold", Show::Rate),
    ("gets_cached", "random gets/s, second pass", Show::Rate),
    ("scan_cold", "range scan entries/s, cold", Show::Rate),
    ("scan_cached", "range scan entries/s, cached", Show::Rate),
];

#[derive(Clone, Copy)]
enum Show {
    Rate,
    PerEntry,
    Mb,
    Seconds,
}

fn report(a: &Args, durus: &Figures, python: Option<&Figures>) {
    println!(
        "\n  {:<36} {:>12} {:>14}   durus/Python",
        "", "durus", "Python Durus"
    );
    for (key, label, show) in ROWS {
        let fmt = |v: f64| match show {
            Show::Rate => format!("{v:.0}"),
            Show::PerEntry => format!("{:.1}", v / a.entries as f64),
            Show::Mb => format!("{:.1}", v / 1e6),
            Show::Seconds => format!("{v:.2}"),
        };
        let d = durus.get(key).copied().unwrap_or(f64::NAN);
        let p = python.and_then(|p| p.get(key).copied());
        println!(
            "  {label:<36} {:>12} {:>14}   {}",
            fmt(d),
            p.map_or("-".into(), fmt),
            p.map_or(String::new(), |p| format!("{:.2}x", d / p))
        );
    }
}

/// The 1, 5 and 15 minute load averages, to tell a quiet machine from a busy one.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
