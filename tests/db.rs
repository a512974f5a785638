//! The object and db layers through the public API: persistent types, transactions,
//! snapshots, conflicts, conflict resolution, the shared cache, and whole-db tools.

mod common;

use std::sync::Arc;

use common::on_all_runtimes;
use common::storages::{Kind, Store};
use durus::record::Tid;
use durus::storage::MemoryStorage;
use durus::{Counter, Db, DbBuilder, Error, Oid, Persistent, Ref};
use futures::{FutureExt, TryStreamExt};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Persistent)]
#[durus(name = "test.Root")]
struct Root {
    name: String,
    items: Vec<Ref<Item>>,
    counter: Option<Ref<Counter>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Persistent)]
struct Item {
    n: u64,
    label: String,
    next: Option<Ref<Item>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "test.OtherRoot")]
struct OtherRoot {
    x: u8,
}

#[test]
fn store_change_and_reopen_a_graph() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.durus");
        let db: Db<Root> = Db::open(&path).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let b = tx
            .insert(Item {
                n: 2,
                label: "b".into(),
                next: None,
            })
            .await
            .unwrap();
        let a = tx
            .insert(Item {
                n: 1,
                label: "a".into(),
                next: Some(b),
            })
            .await
            .unwrap();
        {
            let root = tx.root_mut().await.unwrap();
            root.name = "graph".into();
            root.items = vec![a, b];
        }
        // Reads see the transaction's own writes.
        assert_eq!(tx.get(a).await.unwrap().next, Some(b));
        assert_eq!(tx.root().await.unwrap().items.len(), 2);
        tx.commit().await.unwrap();

        let mut tx = db.begin().await.unwrap();
        tx.update(b, |i| i.label.push('!')).await.unwrap();
        tx.commit().await.unwrap();
        // An aborted transaction leaves no trace.
        let mut tx = db.begin().await.unwrap();
        tx.get_mut(a).await.unwrap().n = 99;
        drop(tx);
        db.close().await.unwrap();

        let db: Db<Root> = Db::open(&path).await.unwrap();
        let tx = db.begin().await.unwrap();
        let root = tx.root().await.unwrap();
        assert_eq!(root.name, "graph");
        let a2 = tx.get(root.items[0]).await.unwrap();
        assert_eq!(a2.n, 1);
        assert_eq!(tx.get(a2.next.unwrap()).await.unwrap().label, "b!");
        // The record's refs list the Refs inside the state.
        let rec = db.storage().load(Oid::ROOT).await.unwrap().record;
        assert_eq!(rec.refs, vec![a.oid(), b.oid()]);
        db.close().await.unwrap();
    });
}

#[test]
fn types_are_checked() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("types.durus");
        let db: Db<Root> = Db::open(&path).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let item = tx
            .insert(Item {
                n: 1,
                label: String::new(),
                next: None,
            })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let tx = db.begin().await.unwrap();
        let wrong: Ref<OtherRoot> = Ref::from_oid(item.oid());
        match tx.get(wrong).await {
            Err(Error::WrongType { oid, expected, found }) => {
                assert_eq!(
                    (oid, expected.as_str(), found.as_str()),
                    (item.oid(), "test.OtherRoot", "Item")
                );
            }
            other => panic!("{other:?}"),
        }
        // Also when the object is not cached yet.
        let fresh: Db<Root> = DbBuilder::storage_arc(db.storage().clone()).open().await.unwrap();
        let tx = fresh.begin().await.unwrap();
        assert!(matches!(tx.get(wrong).await, Err(Error::WrongType { .. })));
        db.close().await.unwrap();
        match Db::<OtherRoot>::open(&path).await {
            Err(Error::WrongType { oid: Oid::ROOT, .. }) => {}
            other => panic!("opening with another root type: {:?}", other.err()),
        }
        // A closed database says so (a transaction pins its snapshot in the storage).
        assert!(matches!(db.begin().await, Err(Error::Closed)));
    });
}

fn a_read_only_transaction_keeps_its_snapshot(kind: Kind) {
    on_all_runtimes(|_| async move {
        let store = Store::new(kind);
        let db: Db<Root> = DbBuilder::storage_arc(store.open().await).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let items: Vec<_> = futures_collect(&mut tx, 5).await;
        tx.root_mut().await.unwrap().items = items.clone();
        tx.commit().await.unwrap();

        let reader = db.begin().await.unwrap();
        // Read some objects now, others only after the writers ran.
        assert_eq!(reader.get(items[0]).await.unwrap().n, 0);
        for round in 1..=10u64 {
            let mut w = db.begin().await.unwrap();
            for &r in &items {
                w.get_mut(r).await.unwrap().n = round;
            }
            w.root_mut().await.unwrap().name = format!("round {round}");
            w.commit().await.unwrap();
            // Interleave reads: always the old snapshot.
            for &r in &items {
                assert_eq!(reader.get(r).await.unwrap().n, 0);
            }
            assert_eq!(reader.root().await.unwrap().name, "");
        }
        // A read-only transaction never conflicts.
        reader.commit().await.unwrap();
        let now = db.begin().await.unwrap();
        assert_eq!(now.get(items[4]).await.unwrap().n, 10);
    });
}

async fn futures_collect(tx: &mut durus::Transaction<Root>, n: u64) -> Vec<Ref<Item>> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(
            tx.insert(Item {
                n: 0,
                label: format!("item {i}"),
                next: None,
            })
            .await
            .unwrap(),
        );
    }
    v
}

fn write_skew_is_rejected(kind: Kind) {
    on_all_runtimes(|_| async move {
        let store = Store::new(kind);
        let db: Db<Root> = DbBuilder::storage_arc(store.open().await).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let items = futures_collect(&mut tx, 2).await;
        tx.commit().await.unwrap();
        // Constraint: x.n + y.n <= 1. Each transaction checks it, then sets one of them.
        let mut t1 = db.begin().await.unwrap();
        let mut t2 = db.begin().await.unwrap();
        for t in [&t1, &t2] {
            let sum = t.get(items[0]).await.unwrap().n + t.get(items[1]).await.unwrap().n;
            assert_eq!(sum, 0);
        }
        t1.get_mut(items[0]).await.unwrap().n = 1;
        t2.get_mut(items[1]).await.unwrap().n = 1;
        t1.commit().await.unwrap();
        match t2.commit().await {
            Err(Error::Conflict { oids }) => assert_eq!(oids, vec![items[0].oid()]),
            other => panic!("write skew was allowed: {other:?}"),
        }
    });
}

fn counters_merge_instead_of_conflicting(kind: Kind) {
    on_all_runtimes(|_| async move {
        let store = Store::new(kind);
        let db: Db<Root> = DbBuilder::storage_arc(store.open().await).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let c = tx.insert(Counter::new(0)).await.unwrap();
        tx.root_mut().await.unwrap().counter = Some(c);
        tx.commit().await.unwrap();
        let mut txs = Vec::new();
        for _ in 0..3 {
            let mut tx = db.begin().await.unwrap();
            assert_eq!(tx.get(c).await.unwrap().get(), 0);
            tx.get_mut(c).await.unwrap().increment();
            txs.push(tx);
        }
        for tx in txs {
            tx.commit().await.unwrap();
        }
        assert_eq!(db.begin().await.unwrap().get(c).await.unwrap().get(), 3);
        assert_eq!(db.stats().resolved_conflicts, 2);
        // An object without a merge still conflicts.
        let mut a = db.begin().await.unwrap();
        let mut b = db.begin().await.unwrap();
        a.root_mut().await.unwrap().name = "a".into();
        b.root_mut().await.unwrap().name = "b".into();
        a.commit().await.unwrap();
        assert!(b.commit().await.unwrap_err().is_conflict());
    });
}

#[test]
fn concurrent_misses_of_one_oid_load_it_once() {
    on_all_runtimes(|_| async {
        let storage = MemoryStorage::new();
        let db: Db<Root> = DbBuilder::storage(storage.clone()).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let item = tx
            .insert(Item {
                n: 7,
                label: "x".into(),
                next: None,
            })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // A second Db on the same storage starts with a cold cache.
        let cold: Db<Root> = DbBuilder::storage(storage).open().await.unwrap();
        let before = cold.stats().storage_loads;
        let tx = Arc::new(cold.begin().await.unwrap());
        let loads = (0..64).map(|_| {
            let tx = tx.clone();
            async move { tx.get(item).await.unwrap().n }
        });
        let got = futures::future::join_all(loads).await;
        assert!(got.iter().all(|&n| n == 7));
        assert_eq!(cold.stats().storage_loads - before, 1);
        assert_eq!(cold.stats().oid_locks, 0);
    });
}

#[test]
fn dropped_loads_leave_no_locks_behind() {
    on_all_runtimes(|_| async {
        let storage = MemoryStorage::new();
        let db: Db<Root> = DbBuilder::storage(storage.clone()).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let items = futures_collect(&mut tx, 10).await;
        tx.commit().await.unwrap();
        let cold: Db<Root> = DbBuilder::storage(storage).open().await.unwrap();
        let tx = cold.begin().await.unwrap();
        for i in 0..1000 {
            let mut f = Box::pin(tx.get(items[i % 10]));
            // Poll once or not at all, then drop it mid-flight.
            if i % 2 == 0 {
                let _ = (&mut f).now_or_never();
            }
            drop(f);
        }
        assert_eq!(cold.stats().oid_locks, 0);
        // And the cache is still right.
        assert_eq!(tx.get(items[3]).await.unwrap().label, "item 3");
    });
}

#[test]
fn the_cache_is_bounded() {
    on_all_runtimes(|_| async {
        let db: Db<Root> = DbBuilder::storage(MemoryStorage::new())
            .cache_size(100)
            .open()
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        let items = futures_collect(&mut tx, 1000).await;
        tx.commit().await.unwrap();
        let tx = db.begin().await.unwrap();
        for (i, r) in items.iter().enumerate() {
            assert_eq!(tx.get(*r).await.unwrap().label, format!("item {i}"));
        }
        assert!(db.stats().cached <= 112, "{:?}", db.stats());
    });
}

#[test]
fn census_objects_and_crawl() {
    on_all_runtimes(|_| async {
        let (_file, storage) = common::mem_file_storage().await;
        let db: Db<Root> = DbBuilder::storage(storage.clone()).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let mut chain = Vec::new();
        for i in 0..50 {
            // Pairs: every odd item points at the even one before it.
            let next = if i % 2 == 1 { chain.last().copied() } else { None };
            chain.push(
                tx.insert(Item {
                    n: i,
                    label: String::new(),
                    next,
                })
                .await
                .unwrap(),
            );
        }
        let c = tx.insert(Counter::new(5)).await.unwrap();
        tx.root_mut().await.unwrap().items = chain.iter().copied().skip(1).step_by(2).collect();
        tx.root_mut().await.unwrap().counter = Some(c);
        let _unreachable = tx
            .insert(Item {
                n: 0,
                label: "orphan".into(),
                next: None,
            })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let census = db.census().await.unwrap();
        assert_eq!(census.get("Item"), Some(&51));
        assert_eq!(census.get("durus.Counter"), Some(&1));
        assert_eq!(census.get("test.Root"), Some(&1));
        let all: Vec<_> = db.objects().try_collect().await.unwrap();
        assert_eq!(all.len(), 53);
        assert!(all.windows(2).all(|w| w[0].oid < w[1].oid));

        let cold: Db<Root> = DbBuilder::storage(storage).open().await.unwrap();
        let visited = cold.crawl(Oid::ROOT, 8, None).await.unwrap();
        assert_eq!(visited, 52, "the root, 50 items and the counter");
        let loads = cold.stats().storage_loads;
        assert!(
            loads <= 10,
            "{loads} storage calls for 52 objects in batches of 8"
        );
        // Everything reachable is now served from the cache.
        let tx = cold.begin().await.unwrap();
        for r in &chain {
            tx.get(*r).await.unwrap();
        }
        assert_eq!(cold.stats().storage_loads, loads);
    });
}

#[test]
fn get_many_fetches_misses_in_one_call_and_keeps_snapshots() {
    on_all_runtimes(|_| async {
        let storage = MemoryStorage::new();
        let db: Db<Root> = DbBuilder::storage(storage.clone()).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let items = futures_collect(&mut tx, 40).await;
        tx.commit().await.unwrap();
        let cold: Db<Root> = DbBuilder::storage(storage).open().await.unwrap();
        let old = cold.begin().await.unwrap();
        // A newer commit through the same Db: the old transaction must not see it.
        let mut w = cold.begin().await.unwrap();
        w.get_mut(items[3]).await.unwrap().n = 33;
        w.commit().await.unwrap();
        let before = cold.stats().storage_loads;
        let got = old.get_many(&items).await.unwrap();
        assert_eq!(got.iter().map(|i| i.n).collect::<Vec<_>>(), vec![0; 40]);
        assert!(cold.stats().storage_loads - before <= 3, "{:?}", cold.stats());
        let mut new = cold.begin().await.unwrap();
        new.get_mut(items[5]).await.unwrap().n = 55;
        let got = new.get_many(&items[..8]).await.unwrap();
        assert_eq!((got[3].n, got[5].n), (33, 55), "snapshot plus own writes");
        let missing = [Ref::<Item>::from_oid(Oid(1 << 40))];
        assert!(matches!(
            new.get_many(&missing).await,
            Err(Error::NotFound { .. })
        ));
    });
}

#[test]
fn db_and_transactions_can_move_between_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn sendable<T: Send + Sync>() {}
    shareable::<Db<Root>>();
    sendable::<durus::Transaction<Root>>();
    shareable::<Ref<Item>>();
}

#[test]
fn a_transaction_can_start_in_the_past() {
    on_all_runtimes(|_| async {
        let (_file, storage) = common::mem_file_storage().await;
        let db: Db<Root> = DbBuilder::storage(storage).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let item = tx
            .insert(Item {
                n: 0,
                label: "v0".into(),
                next: None,
            })
            .await
            .unwrap();
        let mut tids = vec![tx.commit().await.unwrap().tid];
        for v in 1..5u64 {
            let mut tx = db.begin().await.unwrap();
            tx.get_mut(item).await.unwrap().n = v;
            tids.push(tx.commit().await.unwrap().tid);
        }
        for (v, &t) in tids.iter().enumerate() {
            let past = db.begin_at(t).await.unwrap();
            assert_eq!(past.get(item).await.unwrap().n, v as u64, "as of {t}");
        }
        // Before the item existed, it is not found.
        let before = db.begin_at(Tid(tids[0].0 - 1)).await.unwrap();
        assert!(matches!(before.get(item).await, Err(Error::NotFound { .. })));
        assert!(matches!(
            db.begin_at(Tid(tids[4].0 + 1)).await,
            Err(Error::SnapshotAhead { .. })
        ));
        // Writing from the past conflicts with what changed since.
        let mut old = db.begin_at(tids[1]).await.unwrap();
        old.get_mut(item).await.unwrap().n = 99;
        assert!(old.commit().await.unwrap_err().is_conflict());
    });
}

// The snapshot and conflict tests, once per storage kind (memory, the journal file,
// SQLite).
crate::storage_tests! {
    a_read_only_transaction_keeps_its_snapshot => super::a_read_only_transaction_keeps_its_snapshot;
    write_skew_is_rejected => super::write_skew_is_rejected;
    counters_merge_instead_of_conflicting => super::counters_merge_instead_of_conflicting;
}
