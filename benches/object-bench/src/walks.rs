//! The durus side of W6: every row, each on a freshly opened `Db` with default options
//! (`Db::open`), so "cold" means an empty object cache (the page cache is warm unless
//! the row says it was dropped).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use durus::{Db, Oid, Ref, Transaction};
use tokio::runtime::Runtime;

use crate::model::{build, Node, Root};
use crate::stats::{Measure, Samples};

/// Tasks in the concurrent walks.
pub const TASKS: usize = 8;
/// Records per storage call of the crawl (Python Durus's `get_crawler` default).
pub const CRAWL_BATCH: usize = 100;

/// What one durus run measured.
#[derive(Default)]
pub struct Figures {
    pub build_s: f64,
    pub reopen_ms: f64,
    pub rows: HashMap<&'static str, Measure>,
    /// Storage loads during the second walk: what the shared cache did not hold.
    pub second_walk_loads: u64,
}

/// Walks depth-first from `start`, one `get` per object, timing every sampled one;
/// pushes what it visited onto `seen` when given.
async fn walk(
    tx: &Transaction<Root>,
    start: Vec<Ref<Node>>,
    samples: &mut Samples,
    mut seen: Option<&mut Vec<Ref<Node>>>,
) -> durus::Result<u64> {
    let mut stack = start;
    let mut count = 0;
    while let Some(r) = stack.pop() {
        let t = Samples::start(count);
        let node = tx.get(r).await?;
        samples.stop(t);
        count += 1;
        stack.extend(node.children.iter().rev().copied());
        if let Some(seen) = seen.as_deref_mut() {
            seen.push(r);
        }
    }
    Ok(count)
}

/// A cold walk by one task: the root's tree from the top.
async fn walk_one(db: &Db<Root>, seen: Option<&mut Vec<Ref<Node>>>) -> durus::Result<Measure> {
    let start = Instant::now();
    let tx = db.begin().await?;
    let top = tx.root().await?.tree.expect("the tree");
    let mut samples = Samples::default();
    let n = walk(&tx, vec![top], &mut samples, seen).await?;
    Ok(Measure::of(n, start.elapsed(), samples))
}

/// A cold walk by [`TASKS`] tasks on disjoint subtrees, each in its own transaction:
/// one task reads the top two levels, then the subtrees under the third are dealt out
/// round-robin.
async fn walk_many(db: &Db<Root>) -> durus::Result<Measure> {
    let start = Instant::now();
    let tx = db.begin().await?;
    let mut samples = Samples::default();
    let mut level = vec![tx.root().await?.tree.expect("the tree")];
    let mut count = 0;
    for _ in 0..2 {
        let mut next = Vec::new();
        for &r in &level {
            let t = Samples::start(count);
            let node = tx.get(r).await?;
            samples.stop(t);
            count += 1;
            next.extend(node.children.iter().copied());
        }
        level = next;
    }
    let mut shares: Vec<Vec<Ref<Node>>> = vec![Vec::new(); TASKS];
    for (i, r) in level.into_iter().enumerate() {
        shares[i % TASKS].push(r);
    }
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let db = db.clone();
            tokio::spawn(async move {
                let tx = db.begin().await?;
                let mut samples = Samples::default();
                let n = walk(&tx, share, &mut samples, None).await?;
                Ok::<_, durus::Error>((n, samples))
            })
        })
        .collect();
    for t in tasks {
        let (n, s) = t.await.expect("a walking task")?;
        count += n;
        samples.merge(s);
    }
    Ok(Measure::of(count, start.elapsed(), samples))
}

/// Drops the store's pages from the page cache, so that the next reads wait for the
/// disk. Linux only; elsewhere the row reads a warm page cache (and says so).
fn drop_page_cache(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        let f = std::fs::File::open(path).expect("open the store to drop its pages");
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
}

/// Builds the tree in a fresh file at `path` and measures every row.
pub fn run(rt: &Runtime, path: &Path, objects: u64, fanout: u64) -> durus::Result<Figures> {
    let mut f = Figures::default();
    rt.block_on(async {
        let db: Db<Root> = Db::open(path).await?;
        let t = Instant::now();
        build(&db, objects, fanout).await?;
        f.build_s = t.elapsed().as_secs_f64();
        db.close().await?;
        Ok::<_, durus::Error>(())
    })?;
    let n = objects;

    // Cold, then again on the same Db (and its shared cache).
    let mut refs = Vec::with_capacity(n as usize);
    let db = rt.block_on(async {
        let t = Instant::now();
        let db: Db<Root> = Db::open(path).await?;
        f.reopen_ms = t.elapsed().as_secs_f64() * 1e3;
        let cold = rt.spawn({
            let db = db.clone();
            async move { walk_one(&db, None).await }
        });
        f.rows
            .insert("cold_walk_1", cold.await.expect("the walking task")?);
        let loads = db.stats().storage_loads;
        let second = walk_one(&db, Some(&mut refs)).await?;
        f.second_walk_loads = db.stats().storage_loads - loads;
        f.rows.insert("second_walk", second);
        Ok::<_, durus::Error>(db)
    })?;
    assert_eq!(refs.len() as u64, n, "the walk reached every object");
    let refs = Arc::new(refs);
    f.rows
        .insert("cached_reads_1", cached_reads(&db, refs.clone(), 1));
    f.rows
        .insert("cached_reads_2", cached_reads(&db, refs.clone(), 2));
    rt.block_on(db.close())?;

    let fresh = |rt: &Runtime| rt.block_on(Db::<Root>::open(path));
    let db = fresh(rt)?;
    f.rows.insert("cold_walk_8", rt.block_on(walk_many(&db))?);
    rt.block_on(db.close())?;

    let db = fresh(rt)?;
    let crawl = rt.block_on(async {
        let start = Instant::now();
        db.crawl(Oid::ROOT, CRAWL_BATCH, None).await?;
        let walked = walk_one(&db, None).await?;
        Ok::<_, durus::Error>(Measure {
            rate: n as f64 / start.elapsed().as_secs_f64(),
            ..walked
        })
    })?;
    f.rows.insert("crawl_walk", crawl);
    rt.block_on(db.close())?;

    let mut shuffled = refs.to_vec();
    fastrand::Rng::with_seed(6).shuffle(&mut shuffled);
    let db = fresh(rt)?;
    let random = rt.block_on(async {
        let tx = db.begin().await?;
        let mut samples = Samples::default();
        let start = Instant::now();
        for (i, &r) in shuffled.iter().enumerate() {
            let t = Samples::start(i as u64);
            std::hint::black_box(tx.get(r).await?.n);
            samples.stop(t);
        }
        Ok::<_, durus::Error>(Measure::of(n, start.elapsed(), samples))
    })?;
    f.rows.insert("random_reads", random);
    rt.block_on(db.close())?;

    for (row, many) in [("dropped_walk_1", false), ("dropped_walk_8", true)] {
        let db = fresh(rt)?;
        if drop_page_cache(path) {
            let m = if many {
                rt.block_on(walk_many(&db))?
            } else {
                rt.block_on(walk_one(&db, None))?
            };
            f.rows.insert(row, m);
        }
        rt.block_on(db.close())?;
    }
    Ok(f)
}

/// Cached reads per second on `threads` threads, each a new transaction every round,
/// so that every read goes through the shared cache.
fn cached_reads(db: &Db<Root>, refs: Arc<Vec<Ref<Node>>>, threads: usize) -> Measure {
    let rounds = 10;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            let refs = refs.clone();
            std::thread::spawn(move || {
                futures::executor::block_on(async {
                    let mut sum = 0u64;
                    let mut samples = Samples::default();
                    // Each thread starts at its own place in the list.
                    let from = t * refs.len() / threads;
                    let mut i = 0;
                    for _ in 0..rounds {
                        let tx = db.begin().await.expect("begin");
                        for &r in refs[from..].iter().chain(&refs[..from]) {
                            let t = Samples::start(i);
                            sum = sum.wrapping_add(tx.get(r).await.expect("get").n);
                            samples.stop(t);
                            i += 1;
                        }
                    }
                    std::hint::black_box(sum);
                    samples
                })
            })
        })
        .collect();
    let mut samples = Samples::default();
    for h in handles {
        samples.merge(h.join().expect("reader"));
    }
    let total = (threads * rounds) as u64 * refs.len() as u64;
    let mut m = Measure::of(total, start.elapsed(), samples);
    // Per thread, as the figure is quoted.
    m.rate /= threads as f64;
    m
}
