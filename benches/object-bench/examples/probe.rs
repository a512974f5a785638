#[path = "../src/model.rs"]
mod model;
use durus::{Db, Ref};
use model::{build, Node, Root};
fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w6.durus");
        {
            let db: Db<Root> = Db::open(&path).await.unwrap();
            build(&db, 100_000, 10).await.unwrap();
            db.close().await.unwrap();
        }
        let t0 = std::time::Instant::now();
        let mut total = 0u64;
        let mut walks = 0;
        while t0.elapsed().as_secs_f64() < 8.0 {
            let db: Db<Root> = Db::open(&path).await.unwrap();
            let s = std::time::Instant::now();
            let tx = db.begin().await.unwrap();
            let mut stack: Vec<Ref<Node>> = vec![tx.root().await.unwrap().tree.unwrap()];
            let mut n = 0u64;
            while let Some(r) = stack.pop() {
                let node = tx.get(r).await.unwrap();
                n += 1;
                stack.extend(node.children.iter().rev().copied());
            }
            drop(tx);
            let e = s.elapsed();
            total += n;
            walks += 1;
            eprintln!("walk {walks}: {:.0} objects/s", n as f64 / e.as_secs_f64());
            db.close().await.unwrap();
        }
        eprintln!("{total}");
    });
}
