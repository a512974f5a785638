//! The persistent B-tree against `std::collections::BTreeMap`, with 100,000 keys, across
//! commits and a reopen: lookups, ranges both ways, pages of a scan, first and last, and
//! bulk inserts of sorted runs.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use common::{on_all_runtimes, Rng};
use durus::object::Order;
use durus::{BTree, Db, DbBuilder, Durability, Persistent, Ref, Transaction};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "test.TreeRoot")]
struct TreeRoot {
    tree: Option<Ref<BTree<u64, String>>>,
}

const KEYS: usize = 100_000;
const BATCH: usize = 10_000;

fn builder(path: &Path) -> DbBuilder<TreeRoot> {
    Db::builder(path).durability(Durability::Eventual)
}

async fn check_all(tx: &Transaction<TreeRoot>, tree: Ref<BTree<u64, String>>, model: &BTreeMap<u64, String>) {
    assert_eq!(BTree::len(tx, tree).await.unwrap(), model.len() as u64);
    let all = BTree::entries(tx, tree).await.unwrap();
    assert!(
        all.iter().map(|(k, v)| (k, v)).eq(model.iter()),
        "ordered iteration differs from the model"
    );
}

async fn check_ranges(
    tx: &Transaction<TreeRoot>,
    tree: Ref<BTree<u64, String>>,
    model: &BTreeMap<u64, String>,
    rng: &mut Rng,
) {
    for _ in 0..50 {
        let a = rng.u64(..1 << 20);
        let b = a + rng.u64(..1 << 16);
        let got = BTree::range(tx, tree, a..b).await.unwrap();
        let want: Vec<_> = model.range(a..b).map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(got, want, "range {a}..{b}");
        let got = BTree::range(tx, tree, (Bound::Excluded(a), Bound::Included(b)))
            .await
            .unwrap();
        let want: Vec<_> = model
            .range((Bound::Excluded(a), Bound::Included(b)))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        assert_eq!(got, want, "range ({a}, {b}]");
    }
    for _ in 0..50 {
        let a = rng.u64(..1 << 20);
        let b = a + rng.u64(..1 << 16);
        let got = BTree::scan(tx, tree, a..=b, Order::Descending, usize::MAX)
            .await
            .unwrap();
        let want: Vec<_> = model.range(a..=b).rev().map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(got, want, "{a}..={b} down");
        // A page from a key, each way.
        let n = rng.usize(..300);
        let got = BTree::scan(tx, tree, a.., Order::Ascending, n).await.unwrap();
        let want: Vec<_> = model.range(a..).take(n).map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(got, want, "{n} from {a} up");
        let got = BTree::scan(tx, tree, ..a, Order::Descending, n).await.unwrap();
        let want: Vec<_> = model
            .range(..a)
            .rev()
            .take(n)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        assert_eq!(got, want, "{n} below {a} down");
    }
    for _ in 0..200 {
        let k = rng.u64(..1 << 20);
        assert_eq!(BTree::get(tx, tree, &k).await.unwrap().as_ref(), model.get(&k));
        assert_eq!(
            BTree::contains_key(tx, tree, &k).await.unwrap(),
            model.contains_key(&k)
        );
    }
    let pair = |e: Option<(&u64, &String)>| e.map(|(k, v)| (*k, v.clone()));
    assert_eq!(
        BTree::first(tx, tree).await.unwrap(),
        pair(model.first_key_value())
    );
    assert_eq!(BTree::last(tx, tree).await.unwrap(), pair(model.last_key_value()));
}

#[test]
fn btree_matches_a_btreemap_across_commits_and_reopen() {
    on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tree.durus");
        let db = builder(&path).open().await.unwrap();
        let mut rng = Rng::with_seed(rt.len() as u64);
        let mut model = BTreeMap::new();

        let mut tx = db.begin().await.unwrap();
        let tree = BTree::create(&mut tx).await.unwrap();
        tx.root_mut().await.unwrap().tree = Some(tree);
        tx.commit().await.unwrap();

        // Insert in batches, one commit each.
        for _ in 0..KEYS / BATCH {
            let mut tx = db.begin().await.unwrap();
            for _ in 0..BATCH {
                let k = rng.u64(..1 << 20);
                let v = format!("v{}", rng.u64(..1000));
                let old = BTree::insert(&mut tx, tree, k, v.clone()).await.unwrap();
                assert_eq!(old, model.insert(k, v));
            }
            tx.commit().await.unwrap();
        }
        // A sorted run over part of the key space, half of it new keys, in one call.
        let mut tx = db.begin().await.unwrap();
        let run: Vec<(u64, String)> = (0..20_000u64).map(|i| (i * 26, format!("s{i}"))).collect();
        let new = run.iter().filter(|(k, _)| !model.contains_key(k)).count() as u64;
        assert_eq!(
            BTree::insert_sorted(&mut tx, tree, run.clone()).await.unwrap(),
            new
        );
        model.extend(run);
        tx.commit().await.unwrap();
        assert!(model.len() > 90_000);
        let tx = db.begin().await.unwrap();
        check_all(&tx, tree, &model).await;
        check_ranges(&tx, tree, &model, &mut rng).await;
        drop(tx);

        // Changing one key rewrites O(log n) records, not the whole map.
        let before = db.storage().last_tid().await.unwrap();
        let existing = *model.keys().nth(12_345).unwrap();
        let mut tx = db.begin().await.unwrap();
        BTree::insert(&mut tx, tree, existing, "changed".into())
            .await
            .unwrap();
        let fresh = (0..)
            .map(|_| rng.u64(..1 << 20))
            .find(|k| !model.contains_key(k))
            .unwrap();
        BTree::insert(&mut tx, tree, fresh, "new".into()).await.unwrap();
        assert!(
            tx.write_count() <= 2 + 3,
            "{} objects written for two keys",
            tx.write_count()
        );
        tx.commit().await.unwrap();
        model.insert(existing, "changed".into());
        model.insert(fresh, "new".into());
        let changed = db.storage().changes_since(before).await.unwrap().oids.len();
        assert!(
            changed <= 5,
            "{changed} records written to change two keys of {}",
            model.len()
        );

        // Remove a third of the keys and update some, in two commits.
        let keys: Vec<u64> = model.keys().copied().collect();
        for chunk in keys.chunks(keys.len() / 2 + 1) {
            let mut tx = db.begin().await.unwrap();
            for (i, k) in chunk.iter().enumerate() {
                if i % 3 == 0 {
                    assert_eq!(BTree::remove(&mut tx, tree, k).await.unwrap(), model.remove(k));
                } else if i % 7 == 0 {
                    BTree::insert(&mut tx, tree, *k, "upd".into()).await.unwrap();
                    model.insert(*k, "upd".into());
                }
            }
            // Removing what is not there is a no-op.
            assert_eq!(BTree::remove(&mut tx, tree, &(1 << 30)).await.unwrap(), None);
            tx.commit().await.unwrap();
        }
        db.close().await.unwrap();

        let db = builder(&path).open().await.unwrap();
        let tx = db.begin().await.unwrap();
        let tree = tx.root().await.unwrap().tree.unwrap();
        check_all(&tx, tree, &model).await;
        check_ranges(&tx, tree, &model, &mut rng).await;
        drop(tx);

        // After the reopen, another run, reaching past the largest key.
        let mut tx = db.begin().await.unwrap();
        let run = (0..5_000u64).map(|i| ((1 << 20) - 2_500 + i * 3, format!("r{i}")));
        BTree::insert_sorted(&mut tx, tree, run.clone()).await.unwrap();
        model.extend(run);
        tx.commit().await.unwrap();
        let tx = db.begin().await.unwrap();
        check_all(&tx, tree, &model).await;
        check_ranges(&tx, tree, &model, &mut rng).await;
        drop(tx);

        // Empty it completely, then use it again.
        let mut tx = db.begin().await.unwrap();
        for k in model.keys() {
            assert!(BTree::remove(&mut tx, tree, k).await.unwrap().is_some());
        }
        assert!(BTree::is_empty(&tx, tree).await.unwrap());
        assert_eq!(BTree::first(&tx, tree).await.unwrap(), None);
        assert_eq!(BTree::last(&tx, tree).await.unwrap(), None);
        BTree::insert(&mut tx, tree, 5, "five".into()).await.unwrap();
        tx.commit().await.unwrap();
        let tx = db.begin().await.unwrap();
        assert_eq!(
            BTree::entries(&tx, tree).await.unwrap(),
            vec![(5, "five".to_string())]
        );
        db.close().await.unwrap();
    });
}

/// A new in-memory database with a tree of `keys` (inserted one by one in that order,
/// each with `value`), committed.
async fn memory_tree(
    keys: impl Iterator<Item = u64>,
    value: &str,
) -> (Db<TreeRoot>, Ref<BTree<u64, String>>) {
    let db: Db<TreeRoot> = DbBuilder::memory().open().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let tree = BTree::create(&mut tx).await.unwrap();
    for k in keys {
        BTree::insert(&mut tx, tree, k, value.to_string()).await.unwrap();
    }
    tx.commit().await.unwrap();
    (db, tree)
}

#[test]
fn concurrent_inserts_into_different_leaves_merge() {
    on_all_runtimes(|_| async {
        let (db, tree) = memory_tree((0..1000u64).map(|k| k * 10), "").await;
        let mut a = db.begin().await.unwrap();
        let mut b = db.begin().await.unwrap();
        BTree::insert(&mut a, tree, 5, "a".into()).await.unwrap();
        BTree::insert(&mut b, tree, 9_995, "b".into()).await.unwrap();
        a.commit().await.unwrap();
        b.commit().await.unwrap();
        let tx = db.begin().await.unwrap();
        assert_eq!(BTree::len(&tx, tree).await.unwrap(), 1002);
        assert_eq!(BTree::get(&tx, tree, &9_995).await.unwrap().as_deref(), Some("b"));
        assert_eq!(BTree::get(&tx, tree, &5).await.unwrap().as_deref(), Some("a"));
    });
}

#[test]
fn a_sorted_run_builds_a_whole_tree_and_refuses_disorder() {
    on_all_runtimes(|_| async {
        let (db, tree) = memory_tree(std::iter::empty(), "").await;
        let mut tx = db.begin().await.unwrap();
        let run = (0..50_000u64).map(|k| (k * 2, format!("{k:>40}")));
        assert_eq!(BTree::insert_sorted(&mut tx, tree, run).await.unwrap(), 50_000);
        // One pass: about one node written per leaf's worth of entries, none twice.
        let per_leaf = durus::object::LEAF_BYTES / 45;
        assert!(
            tx.write_count() < 2 * 50_000 / per_leaf + 10,
            "{} objects written for 50,000 sorted entries",
            tx.write_count()
        );
        tx.commit().await.unwrap();
        let tx = db.begin().await.unwrap();
        assert_eq!(BTree::len(&tx, tree).await.unwrap(), 50_000);
        let all = BTree::entries(&tx, tree).await.unwrap();
        assert!(all.iter().enumerate().all(|(i, (k, _))| *k == i as u64 * 2));
        assert_eq!(BTree::get(&tx, tree, &777).await.unwrap(), None);
        assert_eq!(
            BTree::get(&tx, tree, &778).await.unwrap(),
            Some(format!("{:>40}", 389))
        );
        drop(tx);
        let mut tx = db.begin().await.unwrap();
        for bad in [
            vec![(5, String::new()), (5, String::new())],
            vec![(9, String::new()), (1, String::new())],
        ] {
            match BTree::insert_sorted(&mut tx, tree, bad).await {
                Err(durus::Error::Invalid(_)) => {}
                other => panic!("out of order run: {other:?}"),
            }
        }
    });
}

#[test]
fn big_entries_make_small_leaves() {
    on_all_runtimes(|_| async {
        let (db, tree) = memory_tree((0..2_000u64).map(|k| k * 7 % 2_000), &"x".repeat(500)).await;
        // A change writes one leaf of at most LEAF_BYTES of entries, not 64 entries.
        let mut tx = db.begin().await.unwrap();
        BTree::insert(&mut tx, tree, 1_000, "y".repeat(500))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let before = db.storage().last_tid().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        BTree::insert(&mut tx, tree, 1_001, "z".repeat(500))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let changes = db.storage().changes_since(before).await.unwrap();
        assert_eq!(changes.oids.len(), 1, "only the leaf changes");
        let leaf = db.storage().load(changes.oids[0]).await.unwrap();
        assert!(
            leaf.record.data.len() <= durus::object::LEAF_BYTES + 600,
            "a leaf of {} bytes",
            leaf.record.data.len()
        );
    });
}
