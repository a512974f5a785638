//! The shared cache through the public API: no cliff when the working set is a little
//! larger than the cache, and the byte budget holds.

mod common;

use common::on_all_runtimes;
use durus::storage::MemoryStorage;
use durus::{Db, DbBuilder, Persistent, Ref};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "test.Thing")]
struct Thing {
    n: u64,
    text: String,
}

/// Stores `n` things, each with `pad` bytes of text, and returns their refs.
async fn things(db: &Db<Thing>, n: u64, pad: usize) -> Vec<Ref<Thing>> {
    let mut tx = db.begin().await.unwrap();
    let mut refs = Vec::new();
    for i in 0..n {
        refs.push(
            tx.insert(Thing {
                n: i,
                text: "x".repeat(pad),
            })
            .await
            .unwrap(),
        );
    }
    tx.commit().await.unwrap();
    refs
}

/// Reads every ref in order, `passes` times, each pass a new transaction (so every read
/// goes to the shared cache); returns the share of the reads after the first two passes
/// that the cache served.
async fn cyclic_hit_ratio(db: &Db<Thing>, refs: &[Ref<Thing>], passes: u64) -> f64 {
    let mut reads = 0;
    let mut loads_before = 0;
    for pass in 0..passes {
        if pass == 2 {
            loads_before = db.stats().storage_loads;
        }
        let tx = db.begin().await.unwrap();
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(tx.get(*r).await.unwrap().n, i as u64);
            if pass >= 2 {
                reads += 1;
            }
        }
    }
    let misses = db.stats().storage_loads - loads_before;
    1.0 - misses as f64 / reads as f64
}

#[test]
fn a_walk_over_110_percent_of_the_cache_keeps_at_least_half_its_hits() {
    on_all_runtimes(|rt| async move {
        // Bounded by the object count.
        let db: Db<Thing> = DbBuilder::storage(MemoryStorage::new())
            .cache_size(1_000)
            .open()
            .await
            .unwrap();
        let refs = things(&db, 1_100, 10).await;
        let ratio = cyclic_hit_ratio(&db, &refs, 8).await;
        assert!(
            ratio >= 0.5,
            "{rt}: hit ratio {ratio:.3} walking 1,100 objects in a cache of 1,000"
        );
        assert!(db.stats().cached <= 1_000, "{:?}", db.stats());

        // Bounded by bytes: room for about 1,000 of these objects.
        let stored = durus::object::encode(&Thing {
            n: 1_000,
            text: "x".repeat(200),
        })
        .unwrap()
        .0
        .len();
        let budget = 1_000 * (stored + 128);
        let db: Db<Thing> = DbBuilder::storage(MemoryStorage::new())
            .cache_bytes(budget)
            .open()
            .await
            .unwrap();
        let refs = things(&db, 1_100, 200).await;
        let ratio = cyclic_hit_ratio(&db, &refs, 8).await;
        assert!(
            ratio >= 0.5,
            "{rt}: hit ratio {ratio:.3} walking 110% of the byte budget"
        );
        let stats = db.stats();
        assert!(stats.cached_bytes <= budget, "{stats:?} over {budget} bytes");
        assert!(stats.cached < 1_100, "{stats:?}");
    });
}

#[test]
fn objects_larger_than_the_budget_are_read_but_not_kept() {
    on_all_runtimes(|_| async {
        let db: Db<Thing> = DbBuilder::storage(MemoryStorage::new())
            .cache_bytes(10_000)
            .open()
            .await
            .unwrap();
        let big = things(&db, 3, 20_000).await;
        let tx = db.begin().await.unwrap();
        for r in &big {
            assert_eq!(tx.get(*r).await.unwrap().text.len(), 20_000);
        }
        assert!(db.stats().cached_bytes <= 10_000, "{:?}", db.stats());
    });
}
