//! Cutting an overfull node into pieces, and carrying the new pieces up the path.

use std::marker::PhantomData;

use super::size::leaf_len;
use super::{
    corrupt_tree, BTree, BTreeNode, Key, NodeRef, Objects, Ref, Value, ValueMerge, LEAF_BYTES, MAX_KEYS,
};
use crate::error::Result;

/// The pieces cut off a node, each with its separator (the smallest key under it), in
/// key order; the node itself keeps the first piece.
pub(super) type Pieces<K, V, M> = Vec<(K, BTreeNode<K, V, M>)>;

/// How many pieces a leaf must become: at most [`MAX_KEYS`] entries and (for a leaf of
/// two entries or more) at most [`LEAF_BYTES`] of entries each. `entry_hint` is the size
/// of the entry just inserted: while the leaf's length times it stays within the bound,
/// the leaf is not measured (so a single insert costs one entry's size, not the
/// leaf's); `usize::MAX` always measures.
fn leaf_pieces<K: Key, V: Value>(keys: &[K], values: &[V], entry_hint: usize) -> Result<usize> {
    let n = keys.len();
    let by_count = n.div_ceil(MAX_KEYS).max(1);
    if n < 2 || n.saturating_mul(entry_hint) <= LEAF_BYTES {
        return Ok(by_count);
    }
    let by_size = leaf_len(keys, values)?.div_ceil(LEAF_BYTES);
    Ok(by_count.max(by_size).min(n))
}

/// Cuts `node` into even pieces if it is overfull (see [`leaf_pieces`]; a branch by its
/// children).
pub(super) fn split<K: Key, V: Value, M: ValueMerge<V>>(
    node: &mut BTreeNode<K, V, M>,
    entry_hint: usize,
) -> Result<Pieces<K, V, M>> {
    let mut out = Vec::new();
    match node {
        BTreeNode::Leaf { keys, values } => {
            let n = keys.len();
            let pieces = leaf_pieces(keys, values, entry_hint)?;
            for j in (1..pieces).rev() {
                let at = j * n / pieces;
                let rk = keys.split_off(at);
                let rv = values.split_off(at);
                out.push((rk[0].clone(), BTreeNode::Leaf { keys: rk, values: rv }));
            }
        }
        BTreeNode::Branch { keys, children, .. } => {
            let m = children.len();
            let pieces = m.div_ceil(MAX_KEYS).max(1);
            for j in (1..pieces).rev() {
                let at = j * m / pieces;
                let rc = children.split_off(at);
                let mut rk = keys.split_off(at - 1);
                let sep = rk.remove(0);
                out.push((
                    sep,
                    BTreeNode::Branch {
                        keys: rk,
                        children: rc,
                        merge: PhantomData,
                    },
                ));
            }
        }
    }
    out.reverse();
    Ok(out)
}

/// Stores `pieces` cut off `child` and links them in after it: into its parent (the
/// last of `path`, which holds `child` at the index given), splitting the parent in
/// turn if it overflows, up to a new root when the root itself was cut.
pub(super) async fn carry_up<K: Key, V: Value, M: ValueMerge<V>>(
    tx: &mut impl Objects,
    tree: Ref<BTree<K, V, M>>,
    mut path: Vec<(NodeRef<K, V, M>, usize)>,
    mut child: NodeRef<K, V, M>,
    mut pieces: Pieces<K, V, M>,
) -> Result<()> {
    while !pieces.is_empty() {
        let mut seps = Vec::with_capacity(pieces.len());
        let mut refs = Vec::with_capacity(pieces.len());
        for (sep, node) in pieces {
            seps.push(sep);
            refs.push(tx.insert(node).await?);
        }
        match path.pop() {
            Some((parent_ref, i)) => {
                let parent = tx.get_mut(parent_ref).await?;
                let BTreeNode::Branch { keys, children, .. } = parent else {
                    return Err(corrupt_tree(parent_ref));
                };
                // A stored branch is trusted only as far as this: one fewer separator
                // than children, and the child taken among them.
                if keys.len() + 1 != children.len() || i >= children.len() {
                    return Err(corrupt_tree(parent_ref));
                }
                keys.splice(i..i, seps);
                children.splice(i + 1..i + 1, refs);
                pieces = split(parent, usize::MAX)?;
                child = parent_ref;
            }
            None => {
                let mut children = Vec::with_capacity(refs.len() + 1);
                children.push(child);
                children.extend(refs);
                let mut root = BTreeNode::Branch {
                    keys: seps,
                    children,
                    merge: PhantomData,
                };
                pieces = split(&mut root, usize::MAX)?;
                child = tx.insert(root).await?;
                tx.get_mut(tree).await?.root = child;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::btree::size::leaf_len;

    #[test]
    fn a_full_leaf_written_by_the_count_rule_splits_into_pieces_within_the_bound() {
        // 64 entries of about 110 bytes: what durus 0.1 kept in one leaf.
        let keys: Vec<u64> = (0..64).collect();
        let values: Vec<String> = (0..64).map(|i| format!("{i:>105}")).collect();
        let mut node: BTreeNode<u64, String> = BTreeNode::Leaf { keys, values };
        let pieces = split(&mut node, usize::MAX).unwrap();
        assert!(pieces.len() >= 3, "{} pieces", pieces.len());
        let mut all = vec![node];
        all.extend(pieces.iter().map(|(_, n)| n.clone()));
        let mut next = 0;
        for (i, n) in all.iter().enumerate() {
            let BTreeNode::Leaf { keys, values } = n else {
                panic!("a branch")
            };
            assert!(leaf_len(keys, values).unwrap() <= LEAF_BYTES);
            assert_eq!(keys[0], next, "piece {i} starts where the last ended");
            if i > 0 {
                assert_eq!(pieces[i - 1].0, keys[0], "the separator is the piece's first key");
            }
            next = keys[keys.len() - 1] + 1;
        }
        assert_eq!(next, 64);
        // A small leaf stays whole.
        let mut small: BTreeNode<u64, String> = BTreeNode::Leaf {
            keys: vec![1u64, 2],
            values: vec!["a".to_string(), "b".to_string()],
        };
        assert!(split(&mut small, 3).unwrap().is_empty());
    }

    #[test]
    fn an_overfull_branch_splits_by_children() {
        let children: Vec<NodeRef<u64, u64>> = (0..200).map(|i| Ref::from_oid(crate::Oid(i))).collect();
        let keys: Vec<u64> = (1..200).collect();
        let mut node: BTreeNode<u64, u64> = BTreeNode::Branch {
            keys,
            children,
            merge: PhantomData,
        };
        let pieces = split(&mut node, usize::MAX).unwrap();
        assert_eq!(pieces.len(), 3);
        let mut all = vec![(0, node)];
        all.extend(pieces);
        let mut next = 0;
        for (sep, n) in &all {
            let BTreeNode::Branch { keys, children, .. } = n else {
                panic!("a leaf")
            };
            assert!(children.len() <= MAX_KEYS && keys.len() + 1 == children.len());
            assert_eq!((*sep, children[0].oid().0), (next, next));
            next = children[children.len() - 1].oid().0 + 1;
        }
        assert_eq!(next, 200);
    }
}
