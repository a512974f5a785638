//! The persistent B-tree against `std::collections::BTreeMap`, with 100,000 keys, across
//! commits and a reopen.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use common::{on_all_runtimes, Rng};
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
    for _ in 0..200 {
        let k = rng.u64(..1 << 20);
        assert_eq!(BTree::get(tx, tree, &k).await.unwrap().as_ref(), model.get(&k));
    }
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

        // Empty it completely, then use it again.
        let mut tx = db.begin().await.unwrap();
        for k in model.keys() {
            assert!(BTree::remove(&mut tx, tree, k).await.unwrap().is_some());
        }
        assert!(BTree::is_empty(&tx, tree).await.unwrap());
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

#[test]
fn concurrent_inserts_into_different_leaves_merge() {
    on_all_runtimes(|_| async {
        let db: Db<TreeRoot> = DbBuilder::memory().open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let tree = BTree::create(&mut tx).await.unwrap();
        for k in 0..1000u64 {
            BTree::insert(&mut tx, tree, k * 10, String::new()).await.unwrap();
        }
        tx.commit().await.unwrap();
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
