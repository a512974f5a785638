//! Concurrent changes to one leaf, merged key by key, and the rules for a value that
//! both transactions changed ([`ValueMerge`]).
//!
//! A leaf merge only ever sees a leaf whose place in the tree did not move: a split or
//! an unlinked leaf changes its parent, which the other transaction read on its way
//! down, and a changed read is a conflict before any merge is tried. So the merged leaf
//! covers the same keys as the base, and only its entries need merging.

use std::fmt;

use super::size::leaf_len;
use super::{BTreeNode, Key, Value, LEAF_BYTES, MAX_KEYS};
use crate::object::{Counter, Persistent};

/// How a [`BTree`](super::BTree) merges a value under one key that two concurrent
/// transactions both changed (the tree's third type parameter). Changes to different
/// keys of one leaf always merge; this decides only the both-changed case.
///
/// ```
/// use durus::object::{AddCounters, BTree, ValueMerge};
/// use durus::{Counter, Db, DbBuilder};
///
/// # futures::executor::block_on(async {
/// let db: Db<Counter> = DbBuilder::memory().open().await?;
/// let mut tx = db.begin().await?;
/// let hits = BTree::<String, Counter, AddCounters>::create_merging(&mut tx).await?;
/// hits.insert(&mut tx, "/".to_string(), Counter::new(0)).await?;
/// tx.commit().await?;
///
/// // Two transactions count a hit on the same key from the same snapshot.
/// let (mut a, mut b) = (db.begin().await?, db.begin().await?);
/// for tx in [&mut a, &mut b] {
///     let mut n = hits.get(tx, &"/".to_string()).await?.unwrap_or_default();
///     n.increment();
///     hits.insert(tx, "/".to_string(), n).await?;
/// }
/// a.commit().await?;
/// b.commit().await?; // merged, not a conflict
/// let n = hits.get(&db.begin().await?, &"/".to_string()).await?;
/// assert_eq!(n.map(|c| c.get()), Some(2));
/// # Ok::<(), durus::Error>(())
/// # }).unwrap();
/// ```
pub trait ValueMerge<V>: Clone + fmt::Debug + Send + Sync + 'static {
    /// Merges a value both sides changed: `committed` is what another transaction
    /// committed, `base` what this transaction started from, `mine` what it wants to
    /// write. `Some(merged)` commits `merged`; `None` is a conflict.
    fn merge(committed: &V, base: &V, mine: &V) -> Option<V>;
}

/// The default rule: a value both sides changed is a conflict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoMerge;

impl<V> ValueMerge<V> for NoMerge {
    fn merge(_: &V, _: &V, _: &V) -> Option<V> {
        None
    }
}

/// Values that are [`Counter`]s merge as counters do: both deltas are applied, so a
/// hot key counted by many transactions at once never conflicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddCounters;

impl ValueMerge<Counter> for AddCounters {
    fn merge(committed: &Counter, base: &Counter, mine: &Counter) -> Option<Counter> {
        Counter::resolve(committed, base, mine)
    }
}

/// The three-way merge of a leaf, key by key; `None` (a conflict) when the two sides
/// changed one key in a way that does not merge, when both added or both removed one
/// key (the tree's length, merged apart, would count it twice), when either side or the
/// merge empties the leaf (empty leaves are unlinked, which changes the parent only on
/// the side that emptied it), or when it would grow the leaf past the split bounds (a
/// split needs the parent too).
pub(super) fn merge_leaves<K: Key, V: Value, M: ValueMerge<V>>(
    committed: &BTreeNode<K, V, M>,
    base: &BTreeNode<K, V, M>,
    mine: &BTreeNode<K, V, M>,
) -> Option<BTreeNode<K, V, M>> {
    let (
        BTreeNode::Leaf { keys: ck, values: cv },
        BTreeNode::Leaf { keys: bk, values: bv },
        BTreeNode::Leaf { keys: mk, values: mv },
    ) = (committed, base, mine)
    else {
        return None;
    };
    // A side that emptied the leaf unlinked it from its parent (unless it is the root,
    // which a leaf cannot tell): merging the other side's additions into it would put
    // them where no lookup goes.
    if ck.is_empty() || mk.is_empty() {
        return None;
    }
    let (mut c, mut b, mut m) = (Side::new(ck, cv), Side::new(bk, bv), Side::new(mk, mv));
    let mut keys = Vec::with_capacity(ck.len().max(mk.len()));
    let mut values = Vec::with_capacity(keys.capacity());
    loop {
        let Some(key) = [c.key(), b.key(), m.key()].into_iter().flatten().min().cloned() else {
            break;
        };
        let kept = match (c.take(&key), b.take(&key), m.take(&key)) {
            (c, None, m) => match (c, m) {
                (Some(v), None) | (None, Some(v)) => Some(v.clone()),
                _ => return None,
            },
            (Some(c), Some(b), Some(m)) => Some(if same(c, b)? {
                m.clone()
            } else if same(m, b)? {
                c.clone()
            } else {
                M::merge(c, b, m)?
            }),
            // Removed by one side: only if the other left it as it was.
            (Some(other), Some(b), None) | (None, Some(b), Some(other)) => {
                if !same(other, b)? {
                    return None;
                }
                None
            }
            (None, Some(_), None) => return None,
        };
        if let Some(v) = kept {
            keys.push(key);
            values.push(v);
        }
    }
    if keys.is_empty() {
        return None;
    }
    if keys.len() > ck.len().max(mk.len())
        && (keys.len() > MAX_KEYS || leaf_len(&keys, &values).ok()? > LEAF_BYTES)
    {
        return None;
    }
    Some(BTreeNode::Leaf { keys, values })
}

/// One side's entries, consumed in key order.
struct Side<'a, K, V> {
    keys: &'a [K],
    values: &'a [V],
    at: usize,
}

impl<'a, K: Ord, V> Side<'a, K, V> {
    fn new(keys: &'a [K], values: &'a [V]) -> Self {
        Side { keys, values, at: 0 }
    }

    fn key(&self) -> Option<&'a K> {
        self.keys.get(self.at)
    }

    /// The value under `key` if it is this side's next key (and steps past it).
    fn take(&mut self, key: &K) -> Option<&'a V> {
        if self.key() != Some(key) {
            return None;
        }
        self.at += 1;
        self.values.get(self.at - 1)
    }
}

/// Whether two values are the same, by their stored form (values need not be `Eq`);
/// `None` if one cannot be encoded, which makes the merge a conflict.
fn same<V: Value>(a: &V, b: &V) -> Option<bool> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    ciborium::into_writer(a, &mut x).ok()?;
    ciborium::into_writer(b, &mut y).ok()?;
    Some(x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Leaf = BTreeNode<u32, u32>;

    fn leaf(entries: &[(u32, u32)]) -> Leaf {
        BTreeNode::Leaf {
            keys: entries.iter().map(|e| e.0).collect(),
            values: entries.iter().map(|e| e.1).collect(),
        }
    }

    fn entries<M>(n: &BTreeNode<u32, u32, M>) -> Vec<(u32, u32)> {
        match n {
            BTreeNode::Leaf { keys, values } => keys.iter().copied().zip(values.iter().copied()).collect(),
            BTreeNode::Branch { .. } => panic!("a branch"),
        }
    }

    #[test]
    fn changes_to_different_keys_merge() {
        let base = leaf(&[(1, 10), (3, 30), (5, 50)]);
        // Committed: 2 added, 3 changed. Mine: 4 added, 5 removed.
        let committed = leaf(&[(1, 10), (2, 20), (3, 31), (5, 50)]);
        let mine = leaf(&[(1, 10), (3, 30), (4, 40)]);
        let merged = merge_leaves(&committed, &base, &mine).unwrap();
        assert_eq!(entries(&merged), [(1, 10), (2, 20), (3, 31), (4, 40)]);
    }

    #[test]
    fn clashes_on_one_key_do_not_merge_without_a_rule() {
        let base = leaf(&[(1, 10), (3, 30)]);
        let cases = [
            // Both changed 3 (even to the same value: a counter would need both).
            (leaf(&[(1, 10), (3, 31)]), leaf(&[(1, 10), (3, 31)])),
            // Both added 2.
            (
                leaf(&[(1, 10), (2, 1), (3, 30)]),
                leaf(&[(1, 10), (2, 2), (3, 30)]),
            ),
            // Both removed 3.
            (leaf(&[(1, 10)]), leaf(&[(1, 10)])),
            // One removed 3, the other changed it.
            (leaf(&[(1, 10)]), leaf(&[(1, 10), (3, 32)])),
            // Together they empty the leaf.
            (leaf(&[(3, 30)]), leaf(&[(1, 10)])),
            // One side emptied it (and unlinked it), the other added to it.
            (leaf(&[]), leaf(&[(1, 10), (2, 20), (3, 30)])),
        ];
        for (i, (committed, mine)) in cases.iter().enumerate() {
            assert!(merge_leaves(committed, &base, mine).is_none(), "case {i}");
            assert!(merge_leaves(mine, &base, committed).is_none(), "case {i} swapped");
        }
    }

    #[test]
    fn a_merge_that_would_overfill_the_leaf_is_a_conflict() {
        let base: Leaf = leaf(&[(0, 0)]);
        let half: Vec<(u32, u32)> = (0..=MAX_KEYS as u32 / 2 + 1).map(|k| (2 * k, 0)).collect();
        let other: Vec<(u32, u32)> = std::iter::once((0, 0))
            .chain((0..MAX_KEYS as u32 / 2 + 1).map(|k| (2 * k + 1, 0)))
            .collect();
        assert!(merge_leaves(&leaf(&half), &base, &leaf(&other)).is_none());
    }

    #[test]
    fn counters_under_one_key_add_their_deltas() {
        let leaf = |v: i64| BTreeNode::<u32, Counter, AddCounters>::Leaf {
            keys: vec![7],
            values: vec![Counter::new(v)],
        };
        let merged = merge_leaves(&leaf(13), &leaf(10), &leaf(12)).unwrap();
        let BTreeNode::Leaf { values, .. } = merged else {
            panic!("a branch")
        };
        assert_eq!(values[0].get(), 15);
        // Without the rule the same change is a conflict.
        let plain = |v: i64| BTreeNode::<u32, Counter>::Leaf {
            keys: vec![7],
            values: vec![Counter::new(v)],
        };
        assert!(merge_leaves(&plain(13), &plain(10), &plain(12)).is_none());
    }
}
