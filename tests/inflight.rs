//! A load racing with an in-flight commit of the same oid sees either the version its
//! snapshot allows (the old one) or, for a newer snapshot, the complete new one: never
//! a mix, and never a version its snapshot should not see.

mod common;

use std::sync::{Arc, Mutex};

use common::{on_all_runtimes, yield_now};
use durus::{Db, Durability, Persistent, Ref, Tid};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "inflight.Root")]
struct Root {
    big: Option<Ref<Big>>,
}

/// Every item equals `version`, so a torn or mixed state would show.
#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "inflight.Big")]
struct Big {
    version: u64,
    items: Vec<u64>,
}

const ITEMS: usize = 4_000;
const COMMITS: u64 = 25;
const READERS: usize = 3;

#[test]
fn loads_racing_commits_see_whole_versions_of_their_snapshot() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let db: Db<Root> = Db::builder(dir.path().join("race.durus"))
            .durability(Durability::Eventual)
            .open()
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        let big = tx
            .insert(Big {
                version: 0,
                items: vec![0; ITEMS],
            })
            .await
            .unwrap();
        tx.root_mut().await.unwrap().big = Some(big);
        let created = tx.commit().await.unwrap().tid;
        let committed = Arc::new(Mutex::new(vec![(created, 0u64)]));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

        let writer = {
            let (db, committed, done) = (db.clone(), committed.clone(), done.clone());
            async move {
                for v in 1..=COMMITS {
                    let mut tx = db.begin().await.unwrap();
                    let b = tx.get_mut(big).await.unwrap();
                    b.version = v;
                    b.items.iter_mut().for_each(|i| *i = v);
                    let tid = tx.commit().await.unwrap().tid;
                    committed.lock().unwrap().push((tid, v));
                    yield_now().await;
                }
                done.store(true, std::sync::atomic::Ordering::Release);
            }
        };
        let readers = (0..READERS).map(|_| {
            let (db, done) = (db.clone(), done.clone());
            async move {
                let mut seen: Vec<(Tid, u64)> = Vec::new();
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let tx = db.begin().await.unwrap();
                    let b = tx.get(big).await.unwrap();
                    assert!(
                        b.items.iter().all(|&i| i == b.version),
                        "a mixed state of version {}",
                        b.version
                    );
                    seen.push((tx.snapshot(), b.version));
                    yield_now().await;
                }
                seen
            }
        });
        let (_, seen) = futures::join!(writer, futures::future::join_all(readers));
        let committed = committed.lock().unwrap().clone();
        let mut checked = 0;
        for (snapshot, version) in seen.into_iter().flatten() {
            let want = committed
                .iter()
                .filter(|(t, _)| *t <= snapshot)
                .map(|(_, v)| *v)
                .max()
                .unwrap();
            assert_eq!(version, want, "snapshot {snapshot} saw version {version}");
            checked += 1;
        }
        assert!(checked > 0);
    });
}
