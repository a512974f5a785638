//! Reading a tree: lookups and ordered scans, forwards and backwards.

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::{BTree, BTreeNode, Key, NodeRef, Objects, Ref, Value, ValueMerge};
use crate::error::Result;

/// The order of a [`BTree::scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Order {
    /// Smallest key first.
    Ascending,
    /// Largest key first.
    Descending,
}

/// A descent's result: the leaf that holds (or would hold) the key, its state, the path
/// of (branch, index of the child taken) pairs leading to it, and the leaf's exclusive
/// upper bound (the smallest separator above the key on the path; `None` for the last
/// leaf).
pub(super) type Descent<K, V, M> = (
    NodeRef<K, V, M>,
    Arc<BTreeNode<K, V, M>>,
    Vec<(NodeRef<K, V, M>, usize)>,
    Option<K>,
);

/// Descends from `node` to the leaf for `key`.
pub(super) async fn descend<K: Key, V: Value, M: ValueMerge<V>>(
    tx: &impl Objects,
    mut node: NodeRef<K, V, M>,
    key: &K,
) -> Result<Descent<K, V, M>> {
    let mut path = Vec::new();
    let mut upper = None;
    loop {
        let n = tx.get(node).await?;
        match &*n {
            BTreeNode::Leaf { .. } => return Ok((node, n, path, upper)),
            BTreeNode::Branch { keys, children, .. } => {
                let i = keys
                    .partition_point(|k| k <= key)
                    .min(children.len().saturating_sub(1));
                if let Some(u) = keys.get(i) {
                    upper = Some(u.clone());
                }
                path.push((node, i));
                let Some(&child) = children.get(i) else {
                    return Err(super::corrupt_tree(node));
                };
                node = child;
            }
        }
    }
}

impl<K: Key, V: Value, M: ValueMerge<V>> BTree<K, V, M> {
    /// The value under `key`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn get(tx: &impl Objects, tree: Ref<Self>, key: &K) -> Result<Option<V>> {
        let root = tx.get(tree).await?.root;
        let (_, leaf, _, _) = descend(tx, root, key).await?;
        if let BTreeNode::Leaf { keys, values } = &*leaf {
            if let Ok(i) = keys.binary_search(key) {
                return Ok(values.get(i).cloned());
            }
        }
        Ok(None)
    }

    /// Whether `key` has an entry (without cloning its value).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn contains_key(tx: &impl Objects, tree: Ref<Self>, key: &K) -> Result<bool> {
        let root = tx.get(tree).await?.root;
        let (_, leaf, _, _) = descend(tx, root, key).await?;
        Ok(matches!(&*leaf, BTreeNode::Leaf { keys, .. } if keys.binary_search(key).is_ok()))
    }

    /// The entry with the smallest key (Durus's `get_min_item`), `None` when empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn first(tx: &impl Objects, tree: Ref<Self>) -> Result<Option<(K, V)>> {
        Ok(Self::scan(tx, tree, .., Order::Ascending, 1).await?.pop())
    }

    /// The entry with the largest key (Durus's `get_max_item`), `None` when empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn last(tx: &impl Objects, tree: Ref<Self>) -> Result<Option<(K, V)>> {
        Ok(Self::scan(tx, tree, .., Order::Descending, 1).await?.pop())
    }

    /// The entries with keys in `range`, in ascending order.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn range(
        tx: &impl Objects,
        tree: Ref<Self>,
        range: impl RangeBounds<K>,
    ) -> Result<Vec<(K, V)>> {
        Self::scan(tx, tree, range, Order::Ascending, usize::MAX).await
    }

    /// At most `limit` entries with keys in `range`, in `order`: iteration from a key
    /// (`k..` ascending, `..=k` descending, as Durus's `items_from` and
    /// `items_backward_from`) a page at a time, or a whole range backwards
    /// (`usize::MAX`). It reads only the nodes those entries are in (and the path to
    /// them).
    ///
    /// ```
    /// use durus::object::Order;
    /// use durus::{BTree, Counter, Db, DbBuilder};
    ///
    /// # futures::executor::block_on(async {
    /// let db: Db<Counter> = DbBuilder::memory().open().await?;
    /// let mut tx = db.begin().await?;
    /// let tree = BTree::create(&mut tx).await?;
    /// BTree::insert_sorted(&mut tx, tree, ('a'..='z').map(|c| (c as u32, c))).await?;
    /// let page = BTree::scan(&tx, tree, ('x' as u32).., Order::Ascending, 2).await?;
    /// assert_eq!(page, [('x' as u32, 'x'), ('y' as u32, 'y')]);
    /// let back = BTree::scan(&tx, tree, ..('c' as u32), Order::Descending, 5).await?;
    /// assert_eq!(back, [('b' as u32, 'b'), ('a' as u32, 'a')]);
    /// # Ok::<(), durus::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn scan(
        tx: &impl Objects,
        tree: Ref<Self>,
        range: impl RangeBounds<K>,
        order: Order,
        limit: usize,
    ) -> Result<Vec<(K, V)>> {
        let root = tx.get(tree).await?.root;
        let mut out = Vec::new();
        // Depth-first; children are pushed so that they pop in the scan's order.
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            if out.len() >= limit {
                break;
            }
            let n = tx.get(node).await?;
            match &*n {
                BTreeNode::Leaf { keys, values } => {
                    let hits = keys.iter().zip(values).filter(|(k, _)| range.contains(*k));
                    let room = limit - out.len();
                    let take = |(k, v): (&K, &V)| (k.clone(), v.clone());
                    match order {
                        Order::Ascending => out.extend(hits.take(room).map(take)),
                        Order::Descending => out.extend(hits.rev().take(room).map(take)),
                    }
                }
                BTreeNode::Branch { keys, children, .. } => {
                    let at = stack.len();
                    for (i, c) in children.iter().enumerate().rev() {
                        // children[i] covers [keys[i-1], keys[i]).
                        let lo = i.checked_sub(1).and_then(|j| keys.get(j));
                        if overlaps(&range, lo, keys.get(i)) {
                            stack.push(*c);
                        }
                    }
                    if order == Order::Descending {
                        stack[at..].reverse();
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every entry, in key order.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn entries(tx: &impl Objects, tree: Ref<Self>) -> Result<Vec<(K, V)>> {
        Self::range(tx, tree, ..).await
    }
}

/// Whether a child covering `[lo, hi)` can hold keys in `range`.
fn overlaps<K: Ord>(range: &impl RangeBounds<K>, lo: Option<&K>, hi: Option<&K>) -> bool {
    let below_start = match (range.start_bound(), hi) {
        (Bound::Included(s) | Bound::Excluded(s), Some(h)) => h <= s,
        _ => false,
    };
    let above_end = match (range.end_bound(), lo) {
        (Bound::Included(e), Some(l)) => l > e,
        (Bound::Excluded(e), Some(l)) => l >= e,
        _ => false,
    };
    !below_start && !above_end
}
