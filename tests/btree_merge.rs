//! Concurrent changes to one B-tree leaf merge key by key; a key both sides changed
//! merges only by the tree's `ValueMerge` rule (counters per key), and never loses a
//! change; `BTreeSet` against `std::collections::BTreeSet` across commits and a reopen.
//! Every test calls the trees through the method-style handle on their `Ref`.

mod common;

use std::collections::{BTreeMap, BTreeSet as StdSet};

use common::{on_all_runtimes, Rng};
use durus::object::{AddCounters, BTreeSet, Order};
use durus::{BTree, Counter, Db, DbBuilder, Durability, Persistent, Ref};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "test.MergeRoot")]
struct Root {
    tree: Option<Ref<BTree<u64, String>>>,
    hits: Option<Ref<BTree<String, Counter, AddCounters>>>,
    set: Option<BTreeSet<u64>>,
}

/// An in-memory database whose tree holds `keys` (each with the value "v"), committed.
async fn tree_of(keys: impl IntoIterator<Item = u64>) -> (Db<Root>, Ref<BTree<u64, String>>) {
    let db: Db<Root> = DbBuilder::memory().open().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let tree = BTree::create(&mut tx).await.unwrap();
    tree.insert_sorted(&mut tx, keys.into_iter().map(|k| (k, "v".to_string())))
        .await
        .unwrap();
    tx.root_mut().await.unwrap().tree = Some(tree);
    tx.commit().await.unwrap();
    (db, tree)
}

async fn entries(db: &Db<Root>, tree: Ref<BTree<u64, String>>) -> BTreeMap<u64, String> {
    let tx = db.begin().await.unwrap();
    let all: BTreeMap<u64, String> = tree.entries(&tx).await.unwrap().into_iter().collect();
    assert_eq!(
        tree.len(&tx).await.unwrap(),
        all.len() as u64,
        "the length counts every entry once"
    );
    all
}

#[test]
fn changes_to_different_keys_of_one_leaf_merge() {
    on_all_runtimes(|_| async {
        // Keys 0, 10, 20 and 30: one leaf, the tree's root.
        let (db, tree) = tree_of((0..4).map(|k| k * 10)).await;
        let mut a = db.begin().await.unwrap();
        let mut b = db.begin().await.unwrap();
        tree.insert(&mut a, 11, "a".into()).await.unwrap();
        tree.remove(&mut a, &20).await.unwrap();
        tree.insert(&mut b, 12, "b".into()).await.unwrap();
        tree.insert(&mut b, 30, "b".into()).await.unwrap();
        a.commit().await.unwrap();
        b.commit().await.unwrap();
        let want: BTreeMap<u64, String> = [(0, "v"), (10, "v"), (11, "a"), (12, "b"), (30, "b")]
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        assert_eq!(entries(&db, tree).await, want);
        assert!(
            db.stats().resolved_conflicts >= 2,
            "the leaf and the map object merged"
        );

        // The same inside a deeper tree: two keys between the same neighbours, in a
        // leaf with room for them (a bulk load fills leaves to the split bound, and a
        // split is a change of the parent, which conflicts).
        let (db, tree) = tree_of((0..5_000).map(|k| k * 10)).await;
        let mut tx = db.begin().await.unwrap();
        for k in 2_401..2_420 {
            tree.remove(&mut tx, &(k * 10)).await.unwrap();
        }
        tx.commit().await.unwrap();
        let mut a = db.begin().await.unwrap();
        let mut b = db.begin().await.unwrap();
        tree.insert(&mut a, 24_001, "a".into()).await.unwrap();
        tree.insert(&mut b, 24_002, "b".into()).await.unwrap();
        a.commit().await.unwrap();
        b.commit().await.unwrap();
        let all = entries(&db, tree).await;
        assert_eq!(all.len(), 5_000 - 19 + 2);
        assert_eq!((all[&24_001].as_str(), all[&24_002].as_str()), ("a", "b"));
    });
}

#[test]
fn one_key_changed_by_both_sides_is_a_conflict_without_a_merge_rule() {
    on_all_runtimes(|_| async {
        let (db, tree) = tree_of([0, 10, 20]).await;
        type Change = fn(u64) -> (u64, Option<&'static str>);
        // (key, Some(value) to insert or None to remove) for each side.
        let clashes: [(Change, Change); 4] = [
            (|_| (10, Some("a")), |_| (10, Some("b"))),
            (|_| (15, Some("a")), |_| (15, Some("b"))),
            (|_| (20, None), |_| (20, None)),
            (|_| (20, None), |_| (20, Some("b"))),
        ];
        for (i, (first, second)) in clashes.into_iter().enumerate() {
            let before = entries(&db, tree).await;
            let mut a = db.begin().await.unwrap();
            let mut b = db.begin().await.unwrap();
            for (tx, change) in [(&mut a, first), (&mut b, second)] {
                match change(0) {
                    (k, Some(v)) => drop(tree.insert(tx, k, v.to_string()).await.unwrap()),
                    (k, None) => drop(tree.remove(tx, &k).await.unwrap()),
                }
            }
            a.commit().await.unwrap();
            let after_a = entries(&db, tree).await;
            assert_ne!(after_a, before, "case {i}: the first commit changed something");
            let err = b.commit().await.expect_err("the second side conflicts");
            assert!(err.is_conflict(), "case {i}: {err}");
            assert_eq!(
                entries(&db, tree).await,
                after_a,
                "case {i}: nothing of the loser stored"
            );
            // Put the tree back for the next case.
            let mut tx = db.begin().await.unwrap();
            for k in after_a.keys() {
                tree.remove(&mut tx, k).await.unwrap();
            }
            for (k, v) in &before {
                tree.insert(&mut tx, *k, v.clone()).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
    });
}

#[test]
fn a_split_beside_a_concurrent_insert_never_loses_either() {
    on_all_runtimes(|_| async {
        // One side fills the leaf until it splits (its parent changes); the other adds
        // one key to the same leaf. Whatever commits is all there.
        for seed in 0..8u64 {
            let (db, tree) = tree_of((0..400).map(|k| k * 1_000)).await;
            let mut rng = Rng::with_seed(seed);
            let at = rng.u64(1..399) * 1_000;
            let mut a = db.begin().await.unwrap();
            let mut b = db.begin().await.unwrap();
            let mut want = entries(&db, tree).await;
            for k in 1..200 {
                tree.insert(&mut a, at + k, "a".into()).await.unwrap();
                want.insert(at + k, "a".into());
            }
            tree.insert(&mut b, at + 500, "b".into()).await.unwrap();
            a.commit().await.unwrap();
            match b.commit().await {
                Ok(_) => drop(want.insert(at + 500, "b".into())),
                Err(e) => assert!(e.is_conflict(), "{e}"),
            }
            assert_eq!(entries(&db, tree).await, want, "seed {seed}");
        }
    });
}

#[test]
fn emptying_a_leaf_beside_an_insert_into_it_never_loses_the_insert() {
    on_all_runtimes(|_| async {
        // One side removes every key of some leaves (which unlinks them from their
        // parent); the other, committed first, adds a key to one of those leaves.
        let (db, tree) = tree_of((0..5_000).map(|k| k * 10)).await;
        let mut want = entries(&db, tree).await;
        let mut a = db.begin().await.unwrap();
        let mut b = db.begin().await.unwrap();
        for k in (1_000..=30_000).step_by(10) {
            tree.remove(&mut a, &k).await.unwrap();
        }
        tree.insert(&mut b, 20_005, "b".into()).await.unwrap();
        b.commit().await.unwrap();
        want.insert(20_005, "b".into());
        match a.commit().await {
            Ok(_) => want.retain(|k, _| !(1_000..=30_000).contains(k) || k % 10 != 0),
            Err(e) => assert!(e.is_conflict(), "{e}"),
        }
        assert_eq!(entries(&db, tree).await, want);
    });
}

/// Random changes of one transaction from `base`: its final value of every key it
/// touched (`None`: removed).
async fn random_changes(
    tx: &mut durus::Transaction<Root>,
    tree: Ref<BTree<u64, String>>,
    base: &BTreeMap<u64, String>,
    rng: &mut Rng,
    tag: &str,
) -> BTreeMap<u64, Option<String>> {
    let mut view = base.clone();
    let mut touched = BTreeMap::new();
    // Keys in a narrow band, so that both sides often touch the same leaves.
    let band = rng.u64(0..20) * 500;
    for i in 0..rng.usize(1..40) {
        let k = band + rng.u64(0..600);
        if rng.u8(..6) == 0 {
            // A run of removals that may empty whole leaves (which unlinks them).
            let gone: Vec<u64> = view.range(k..k + 150).map(|(k, _)| *k).collect();
            for k in gone {
                tree.remove(tx, &k).await.unwrap();
                view.remove(&k);
                touched.insert(k, None);
            }
        } else if rng.bool() || !view.contains_key(&k) {
            let v = format!("{tag}{i}");
            tree.insert(tx, k, v.clone()).await.unwrap();
            view.insert(k, v.clone());
            touched.insert(k, Some(v));
        } else {
            tree.remove(tx, &k).await.unwrap();
            view.remove(&k);
            touched.insert(k, None);
        }
    }
    touched
}

#[test]
fn random_concurrent_changes_merge_or_conflict_and_never_lose_one() {
    on_all_runtimes(|_| async {
        let mut merged = 0;
        for seed in 0..64u64 {
            let mut rng = Rng::with_seed(seed);
            let keys: Vec<u64> = (0..rng.u64(200..3_000)).map(|_| rng.u64(0..10_000)).collect();
            let (db, tree) = tree_of(keys.iter().copied().collect::<StdSet<_>>()).await;
            let base = entries(&db, tree).await;
            let mut a = db.begin().await.unwrap();
            let mut b = db.begin().await.unwrap();
            let from_a = random_changes(&mut a, tree, &base, &mut rng, "a").await;
            let from_b = random_changes(&mut b, tree, &base, &mut rng, "b").await;
            a.commit().await.unwrap();
            let mut want = base.clone();
            let apply = |want: &mut BTreeMap<u64, String>, changes: &BTreeMap<u64, Option<String>>| {
                for (k, v) in changes {
                    match v {
                        Some(v) => drop(want.insert(*k, v.clone())),
                        None => drop(want.remove(k)),
                    }
                }
            };
            apply(&mut want, &from_a);
            match b.commit().await {
                Ok(_) => {
                    merged += 1;
                    apply(&mut want, &from_b);
                }
                Err(e) => assert!(e.is_conflict(), "seed {seed}: {e}"),
            }
            assert_eq!(entries(&db, tree).await, want, "seed {seed}");
        }
        assert!(merged > 0, "no pair of transactions merged in 64 tries");
    });
}

#[test]
fn a_hot_counter_key_merges_across_many_transactions() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let db: Db<Root> = Db::builder(dir.path().join("hits.durus"))
            .durability(Durability::Eventual)
            .open()
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        let hits = BTree::<String, Counter, AddCounters>::create_merging(&mut tx)
            .await
            .unwrap();
        hits.insert(&mut tx, "/".into(), Counter::new(100)).await.unwrap();
        tx.root_mut().await.unwrap().hits = Some(hits);
        tx.commit().await.unwrap();

        // Sixteen transactions from one snapshot: each counts twice on the hot key and
        // once on a page of its own.
        let mut txs = Vec::new();
        for i in 0..16 {
            let mut tx = db.begin().await.unwrap();
            let mut n = hits.get(&tx, &"/".into()).await.unwrap().unwrap();
            n.add(2);
            hits.insert(&mut tx, "/".into(), n).await.unwrap();
            hits.insert(&mut tx, format!("/page/{i}"), Counter::new(1))
                .await
                .unwrap();
            txs.push(tx);
        }
        for tx in txs {
            tx.commit().await.unwrap();
        }
        let tx = db.begin().await.unwrap();
        assert_eq!(
            hits.get(&tx, &"/".into()).await.unwrap().map(|c| c.get()),
            Some(132)
        );
        assert_eq!(hits.len(&tx).await.unwrap(), 17);
        drop(tx);
        db.close().await.unwrap();

        // Merged values are what is stored.
        let db: Db<Root> = Db::builder(dir.path().join("hits.durus")).open().await.unwrap();
        let tx = db.begin().await.unwrap();
        let hits = tx.root().await.unwrap().hits.unwrap();
        assert_eq!(
            hits.get(&tx, &"/".into()).await.unwrap().map(|c| c.get()),
            Some(132)
        );
        assert_eq!(
            hits.first(&tx).await.unwrap().map(|(k, _)| k),
            Some("/".to_string())
        );
    });
}

#[test]
fn btreeset_matches_a_std_set_across_commits_and_reopen() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.durus");
        let open = || Db::<Root>::builder(&path).durability(Durability::Eventual).open();
        let db = open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let set = BTreeSet::create(&mut tx).await.unwrap();
        tx.root_mut().await.unwrap().set = Some(set);
        assert_eq!(
            set.insert_sorted(&mut tx, (0..2_000).map(|k| k * 3))
                .await
                .unwrap(),
            2_000
        );
        tx.commit().await.unwrap();
        let mut model: StdSet<u64> = (0..2_000).map(|k| k * 3).collect();

        let mut rng = Rng::with_seed(7);
        let mut tx = db.begin().await.unwrap();
        for op in 0..6_000 {
            let k = rng.u64(..7_000);
            match rng.u8(..4) {
                0 | 1 => assert_eq!(set.insert(&mut tx, k).await.unwrap(), model.insert(k)),
                2 => assert_eq!(set.remove(&mut tx, &k).await.unwrap(), model.remove(&k)),
                _ => assert_eq!(set.contains(&tx, &k).await.unwrap(), model.contains(&k)),
            }
            if op % 500 == 499 {
                tx.commit().await.unwrap();
                tx = db.begin().await.unwrap();
            }
        }
        tx.commit().await.unwrap();
        db.close().await.unwrap();

        let db = open().await.unwrap();
        let tx = db.begin().await.unwrap();
        let set = tx.root().await.unwrap().set.expect("stored in the root");
        assert_eq!(set.len(&tx).await.unwrap(), model.len() as u64);
        assert_eq!(
            set.elements(&tx).await.unwrap(),
            model.iter().copied().collect::<Vec<_>>()
        );
        assert_eq!(set.first(&tx).await.unwrap(), model.first().copied());
        assert_eq!(set.last(&tx).await.unwrap(), model.last().copied());
        for _ in 0..50 {
            let (lo, hi) = (rng.u64(..7_000), rng.u64(..7_000));
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let want: Vec<u64> = model.range(lo..hi).copied().collect();
            assert_eq!(set.range(&tx, lo..hi).await.unwrap(), want);
            let back: Vec<u64> = model.range(..=hi).rev().take(20).copied().collect();
            assert_eq!(set.scan(&tx, ..=hi, Order::Descending, 20).await.unwrap(), back);
        }
    });
}
