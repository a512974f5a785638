//! Changing a tree: insert, remove, and bulk insert of a sorted run.

use std::cmp::Ordering;

use super::read::descend;
use super::size::entry_len;
use super::split::{carry_up, split};
use super::{corrupt_tree, BTree, BTreeNode, Key, Objects, Ref, Value, ValueMerge};
use crate::error::{Error, Result};

impl<K: Key, V: Value, M: ValueMerge<V>> BTree<K, V, M> {
    /// Inserts `value` under `key`, returning the value it replaced.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction: dropped before it completes, it may leave
    /// part of its change in the transaction, which must then not be committed (see
    /// [`BTree`]).
    pub async fn insert(tx: &mut impl Objects, tree: Ref<Self>, key: K, value: V) -> Result<Option<V>> {
        let root = tx.get(tree).await?.root;
        // The leaf's `Arc` must be gone before `get_mut`, or the node is copied.
        let (leaf_ref, _, path, _) = descend(&*tx, root, &key).await?;
        let hint = entry_len(&key, &value)?;
        let leaf = tx.get_mut(leaf_ref).await?;
        let BTreeNode::Leaf { keys, values } = &mut *leaf else {
            return Err(corrupt_tree(leaf_ref));
        };
        match keys.binary_search(&key) {
            Ok(i) => return Ok(Some(std::mem::replace(&mut values[i], value))),
            Err(i) => {
                keys.insert(i, key);
                values.insert(i, value);
            }
        }
        let pieces = split(leaf, hint)?;
        carry_up(tx, tree, path, leaf_ref, pieces).await?;
        tx.get_mut(tree).await?.len += 1;
        Ok(None)
    }

    /// Inserts a run of entries in ascending key order in one pass: each leaf the run
    /// falls into is merged with its part of the run once and split as often as it
    /// needs, so a run of `n` entries into `l` leaves costs `l` node copies, not `n`.
    /// Returns how many keys were new (the others had their values replaced).
    ///
    /// ```
    /// use durus::{BTree, Counter, Db, DbBuilder};
    ///
    /// # futures::executor::block_on(async {
    /// let db: Db<Counter> = DbBuilder::memory().open().await?;
    /// let mut tx = db.begin().await?;
    /// let tree = BTree::create(&mut tx).await?;
    /// BTree::insert(&mut tx, tree, 5, 0).await?;
    /// let new = BTree::insert_sorted(&mut tx, tree, (0..10_000).map(|k| (k, k * 2))).await?;
    /// assert_eq!(new, 9_999); // 5 was there already
    /// assert_eq!(BTree::get(&tx, tree, &5).await?, Some(10));
    /// assert_eq!(BTree::len(&tx, tree).await?, 10_000);
    /// // Out of order is refused, and nothing from the offending entry on is inserted.
    /// assert!(BTree::insert_sorted(&mut tx, tree, [(3, 0), (2, 0)]).await.is_err());
    /// # Ok::<(), durus::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if a key is not greater than the one before it (the entries
    /// before it may have been inserted: drop the transaction); otherwise as
    /// [`insert`](Self::insert).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction, as [`insert`](Self::insert).
    pub async fn insert_sorted(
        tx: &mut impl Objects,
        tree: Ref<Self>,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<u64> {
        let mut entries = entries.into_iter().peekable();
        let mut added = 0u64;
        let mut last: Option<K> = None;
        while let Some((first, _)) = entries.peek() {
            let root = tx.get(tree).await?.root;
            let (leaf_ref, _, path, upper) = descend(&*tx, root, first).await?;
            // This leaf's part of the run: every key below the leaf's upper bound.
            let mut run = Vec::new();
            while let Some((k, _)) = entries.peek() {
                if upper.as_ref().is_some_and(|u| k >= u) {
                    break;
                }
                if last.as_ref().is_some_and(|l| k <= l) {
                    return Err(Error::Invalid(
                        "BTree::insert_sorted: keys must be strictly ascending".into(),
                    ));
                }
                let Some(entry) = entries.next() else { break };
                last = Some(entry.0.clone());
                run.push(entry);
            }
            let leaf = tx.get_mut(leaf_ref).await?;
            let BTreeNode::Leaf { keys, values } = &mut *leaf else {
                return Err(corrupt_tree(leaf_ref));
            };
            added += merge(keys, values, run);
            let pieces = split(leaf, usize::MAX)?;
            carry_up(tx, tree, path, leaf_ref, pieces).await?;
        }
        tx.get_mut(tree).await?.len += added;
        Ok(added)
    }

    /// Removes `key`, returning its value. Leaves that become empty are unlinked and a
    /// root with one child is replaced by it; partly empty nodes are not merged.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction: dropped before it completes, it may leave
    /// part of its change in the transaction, which must then not be committed (see
    /// [`BTree`]).
    pub async fn remove(tx: &mut impl Objects, tree: Ref<Self>, key: &K) -> Result<Option<V>> {
        let root = tx.get(tree).await?.root;
        let (leaf_ref, leaf, mut path, _) = descend(&*tx, root, key).await?;
        let BTreeNode::Leaf { keys, .. } = &*leaf else {
            return Err(corrupt_tree(leaf_ref));
        };
        let found = keys.binary_search(key);
        drop(leaf);
        let Ok(i) = found else {
            return Ok(None);
        };
        let BTreeNode::Leaf { keys, values } = tx.get_mut(leaf_ref).await? else {
            return Err(corrupt_tree(leaf_ref));
        };
        keys.remove(i);
        let old = values.remove(i);
        let mut empty = keys.is_empty();
        // Unlink empty nodes upwards (never the root itself).
        while empty {
            let Some((parent_ref, i)) = path.pop() else { break };
            let BTreeNode::Branch { keys, children, .. } = tx.get_mut(parent_ref).await? else {
                return Err(corrupt_tree(parent_ref));
            };
            children.remove(i);
            if !keys.is_empty() {
                keys.remove(i.saturating_sub(1).min(keys.len() - 1));
            }
            empty = children.is_empty();
        }
        // Collapse a root with a single child.
        loop {
            let root_ref = tx.get(tree).await?.root;
            let root = tx.get(root_ref).await?;
            match &*root {
                BTreeNode::Branch { children, .. } if children.len() == 1 => {
                    tx.get_mut(tree).await?.root = children[0];
                }
                BTreeNode::Branch { children, .. } if children.is_empty() => {
                    let leaf = tx
                        .insert(BTreeNode::Leaf {
                            keys: Vec::new(),
                            values: Vec::new(),
                        })
                        .await?;
                    tx.get_mut(tree).await?.root = leaf;
                }
                _ => break,
            }
        }
        tx.get_mut(tree).await?.len -= 1;
        Ok(Some(old))
    }
}

/// Merges an ascending `run` into a leaf's sorted entries in one pass; a key already
/// there takes the run's value. Returns how many keys were new.
fn merge<K: Ord, V>(keys: &mut Vec<K>, values: &mut Vec<V>, run: Vec<(K, V)>) -> u64 {
    let mut old = std::mem::take(keys).into_iter().zip(std::mem::take(values));
    let mut run = run.into_iter();
    let (mut next_old, mut next_run) = (old.next(), run.next());
    let mut added = 0;
    loop {
        let (k, v) = match (next_old.take(), next_run.take()) {
            (Some(o), Some(r)) => match o.0.cmp(&r.0) {
                Ordering::Less => {
                    (next_old, next_run) = (old.next(), Some(r));
                    o
                }
                Ordering::Equal => {
                    (next_old, next_run) = (old.next(), run.next());
                    r
                }
                Ordering::Greater => {
                    added += 1;
                    (next_old, next_run) = (Some(o), run.next());
                    r
                }
            },
            (Some(o), None) => {
                next_old = old.next();
                o
            }
            (None, Some(r)) => {
                added += 1;
                next_run = run.next();
                r
            }
            (None, None) => break,
        };
        keys.push(k);
        values.push(v);
    }
    added
}
