//! W5P's second part: the commit rate of an application's `Db` (default options) with
//! and without a `Db::pack` running beside it, interleaved, with commit latencies.

use super::*;

/// Commits/s of one committer (a `Db` with default options under
/// `futures::executor::block_on`, each transaction overwriting one random leaf) without
/// a pack and while `Db::pack` runs, interleaved, `pack_runs` times.
pub fn w5p_commits_while_packing(args: &Args, dir: &Path, verdicts: &mut Vec<Verdict>) {
    let records = args.records;
    let path = dir.join("w5p-commits.durus");
    build_durus(
        &path,
        records,
        args.batch,
        2,
        VALUE_LEN,
        Durability::Eventual,
        OBJECTS,
    );
    sys::settle();
    println!(
        "\nW5P commits while packing: one task overwriting one random object per durable \
         commit through Db (default options, futures::executor), on a store of {} live \
         objects; without a pack for {} s, and while Db::pack runs; {} interleaved runs",
        int(records),
        args.pack_base_secs,
        args.pack_runs
    );
    // A pack reads the whole file, which leaves it in the page cache: warm it first, so
    // that the windows without a pack do not pay cold reads the ones with it do not.
    warm_page_cache(&path);
    let (base, during) = block_on(async {
        let fs = FileStorage::open(path.clone(), JournalOptions::default())
            .await
            .expect("open the durus file storage");
        let db: Db<Tree> = DbBuilder::storage(fs.clone()).open().await.expect("open the Db");
        let mut base = Vec::new();
        let mut during = Vec::new();
        for run in 0..args.pack_runs {
            let order = if run % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for packing in order {
                let w = commit_window(&db, records, run, packing, args.pack_base_secs).await;
                if packing {
                    during.push(w);
                } else {
                    base.push(w);
                }
            }
        }
        db.close().await.expect("close the Db");
        (base, during)
    });
    let _ = std::fs::remove_file(&path);
    let rate = |w: &Vec<Window>| {
        median_f(
            w.iter()
                .map(|w| w.commits as f64 / w.took.as_secs_f64())
                .collect(),
        )
    };
    let q = |w: &Vec<Window>, q: f64| median_f(w.iter().map(|w| w.lat.quantile_us(q)).collect());
    let max = |w: &Vec<Window>| median_f(w.iter().map(|w| w.lat.quantile_us(1.0)).collect());
    let (rb, rd) = (rate(&base), rate(&during));
    let mut t = Table::new(&[
        "committer",
        "commits/s",
        "runs",
        "p50 µs",
        "p99 µs",
        "max µs",
        "window s",
    ]);
    for (name, w, r) in [
        ("without a pack", &base, rb),
        ("while Db::pack runs", &during, rd),
    ] {
        t.row(vec![
            name.into(),
            int(r.round() as u64),
            w.iter()
                .map(|w| int((w.commits as f64 / w.took.as_secs_f64()).round() as u64))
                .collect::<Vec<_>>()
                .join(" / "),
            us(q(w, 0.5)),
            us(q(w, 0.99)),
            us(max(w)),
            w.iter()
                .map(|w| format!("{:.2}", w.took.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" / "),
        ]);
    }
    t.print();
    let worst = during.iter().map(|w| w.lat.quantile_us(1.0)).fold(0.0, f64::max);
    println!(
        "  longest commit while packing, over all runs: {} µs; packs kept {} objects",
        us(worst),
        int(during.last().map_or(0, |w| w.objects))
    );
    let v = ratio_verdict(
        "W5P commits/s while packing / without",
        rd,
        rb,
        Bound::AtLeast(0.5),
    );
    v.print();
    verdicts.push(v);
}

/// One measuring window of the committer.
struct Window {
    commits: u64,
    took: Duration,
    lat: Samples,
    objects: u64,
}

/// Runs the committer for `secs` seconds, or, with `packing`, for as long as one
/// `Db::pack` takes (started together).
async fn commit_window(db: &Db<Tree>, records: u64, run: u64, packing: bool, secs: f64) -> Window {
    let done = AtomicBool::new(false);
    let mut rng = fastrand::Rng::with_seed(0x5EED ^ run ^ u64::from(packing) << 8);
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let committer = async {
        let mut lat = Samples::default();
        let mut commits = 0u64;
        loop {
            if packing {
                if done.load(Ordering::Acquire) {
                    break;
                }
            } else if start.elapsed() >= limit {
                break;
            }
            let k = rng.u64(1..=records);
            let t = Instant::now();
            let mut tx = db.begin().await.expect("begin");
            tx.put(Ref::<Blob>::from_oid(Oid(k)), Blob::new(value(k).to_vec()));
            tx.commit().await.expect("commit while packing");
            lat.push(t.elapsed());
            commits += 1;
        }
        (commits, lat)
    };
    let packer = async {
        if !packing {
            return 0;
        }
        let r = db.pack(PackOptions::default()).await.expect("Db::pack");
        done.store(true, Ordering::Release);
        r.objects
    };
    let ((commits, lat), objects) = futures::future::join(committer, packer).await;
    Window {
        commits,
        took: start.elapsed(),
        lat,
        objects,
    }
}
