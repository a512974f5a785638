//! A persistent sorted map spread over many persistent nodes, for collections too large
//! to be one object.
//!
//! The map object ([`BTree`]) holds the root node's reference and the length; the nodes
//! ([`BTreeNode`]) hold up to [`MAX_KEYS`] entries (leaves) or children (branches).
//! Changing one key rewrites the leaf that holds it (plus the nodes a split touches, and
//! the map object when the length changes): O(log n) records, never the whole map.
//! Concurrent inserts into different leaves merge their length changes instead of
//! conflicting.

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Objects, Persistent, Ref};
use crate::error::Result;

/// Most entries in a leaf, or children in a branch, before it splits.
pub const MAX_KEYS: usize = 64;

/// What a B-tree key must be.
pub trait Key: Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Key for T {}

/// What a B-tree value must be.
pub trait Value: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Value for T {}

/// A persistent B-tree map. Create one with [`BTree::create`] and keep its `Ref`.
///
/// Every operation takes the transaction it runs in (anything that implements
/// [`Objects`], such as [`Transaction`](crate::Transaction)) and the tree's `Ref`.
///
/// ```
/// use durus::{BTree, Db, DbBuilder, Persistent, Ref};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Default, Serialize, Deserialize, Persistent)]
/// struct Index {
///     by_name: Option<Ref<BTree<String, u32>>>,
/// }
///
/// # futures::executor::block_on(async {
/// let db: Db<Index> = DbBuilder::memory().open().await?;
/// let mut tx = db.begin().await?;
/// let tree = BTree::create(&mut tx).await?;
/// tx.root_mut().await?.by_name = Some(tree);
/// for (i, name) in ["carol", "alice", "bob"].into_iter().enumerate() {
///     BTree::insert(&mut tx, tree, name.to_string(), i as u32).await?;
/// }
/// tx.commit().await?;
///
/// let tx = db.begin().await?;
/// let tree = tx.root().await?.by_name.expect("created above");
/// assert_eq!(BTree::get(&tx, tree, &"bob".to_string()).await?, Some(2));
/// let names: Vec<String> = BTree::entries(&tx, tree).await?.into_iter().map(|(k, _)| k).collect();
/// assert_eq!(names, ["alice", "bob", "carol"]);
/// # Ok::<(), durus::Error>(())
/// # }).unwrap();
/// ```
///
/// # Cancel safety
///
/// The reading functions (`len`, `is_empty`, `get`, `range`, `entries`) are
/// cancel-safe. The changing ones (`create`, `insert`, `remove`) change several nodes
/// one after another: if one of their futures is dropped before it completes, the
/// transaction may hold part of the change (a split half done), so drop that
/// transaction instead of committing it. What is stored is untouched until a commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BTree<K, V> {
    root: Ref<BTreeNode<K, V>>,
    len: u64,
}

/// One node of a [`BTree`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, V: Serialize",
    deserialize = "K: DeserializeOwned, V: DeserializeOwned"
))]
pub enum BTreeNode<K, V> {
    /// Entries, sorted by key.
    Leaf {
        /// The keys.
        keys: Vec<K>,
        /// The values, one per key.
        values: Vec<V>,
    },
    /// Children; `keys[i]` is the smallest key under `children[i + 1]`.
    Branch {
        /// Separator keys, one fewer than the children.
        keys: Vec<K>,
        /// The subtrees.
        children: Vec<Ref<BTreeNode<K, V>>>,
    },
}

impl<K: Key, V: Value> Persistent for BTree<K, V> {
    const TYPE_NAME: &'static str = "durus.BTree";

    /// Inserts and removals elsewhere in the tree only change the length: merge those.
    /// A root split on either side is a real conflict.
    fn resolve(committed: &Self, base: &Self, mine: &Self) -> Option<Self> {
        (committed.root == base.root && mine.root == base.root).then(|| BTree {
            root: base.root,
            len: committed.len.wrapping_add(mine.len.wrapping_sub(base.len)),
        })
    }
}

impl<K: Key, V: Value> Persistent for BTreeNode<K, V> {
    const TYPE_NAME: &'static str = "durus.BTreeNode";
}

type NodeRef<K, V> = Ref<BTreeNode<K, V>>;

impl<K: Key, V: Value> BTree<K, V> {
    /// Creates an empty tree in the transaction and returns its reference.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction: dropped before it completes, it may leave
    /// part of its change in the transaction, which must then not be committed (see
    /// [`BTree`]).
    pub async fn create(tx: &mut impl Objects) -> Result<Ref<BTree<K, V>>> {
        let root = tx
            .insert(BTreeNode::Leaf {
                keys: Vec::new(),
                values: Vec::new(),
            })
            .await?;
        tx.insert(BTree { root, len: 0 }).await
    }

    /// Number of entries.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn len(tx: &impl Objects, tree: Ref<Self>) -> Result<u64> {
        Ok(tx.get(tree).await?.len)
    }

    /// Whether the tree is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn is_empty(tx: &impl Objects, tree: Ref<Self>) -> Result<bool> {
        Ok(Self::len(tx, tree).await? == 0)
    }

    /// The leaf that holds (or would hold) `key`, with the path of (branch, child
    /// index) pairs leading to it.
    async fn descend(
        tx: &impl Objects,
        mut node: NodeRef<K, V>,
        key: &K,
    ) -> Result<(NodeRef<K, V>, Arc<BTreeNode<K, V>>, Vec<(NodeRef<K, V>, usize)>)> {
        let mut path = Vec::new();
        loop {
            let n = tx.get(node).await?;
            match &*n {
                BTreeNode::Leaf { .. } => return Ok((node, n, path)),
                BTreeNode::Branch { keys, children } => {
                    let i = keys.partition_point(|k| k <= key);
                    path.push((node, i));
                    node = children[i.min(children.len() - 1)];
                }
            }
        }
    }

    /// The value under `key`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn get(tx: &impl Objects, tree: Ref<Self>, key: &K) -> Result<Option<V>> {
        let root = tx.get(tree).await?.root;
        let (_, leaf, _) = Self::descend(tx, root, key).await?;
        if let BTreeNode::Leaf { keys, values } = &*leaf {
            if let Ok(i) = keys.binary_search(key) {
                return Ok(Some(values[i].clone()));
            }
        }
        Ok(None)
    }

    /// Inserts `value` under `key`, returning the value it replaced.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction: dropped before it completes, it may leave
    /// part of its change in the transaction, which must then not be committed (see
    /// [`BTree`]).
    pub async fn insert(tx: &mut impl Objects, tree: Ref<Self>, key: K, value: V) -> Result<Option<V>> {
        let root = tx.get(tree).await?.root;
        let (leaf_ref, _, mut path) = Self::descend(&*tx, root, &key).await?;
        let leaf = tx.get_mut(leaf_ref).await?;
        let BTreeNode::Leaf { keys, values } = leaf else {
            return Err(corrupt_tree(leaf_ref));
        };
        match keys.binary_search(&key) {
            Ok(i) => return Ok(Some(std::mem::replace(&mut values[i], value))),
            Err(i) => {
                keys.insert(i, key);
                values.insert(i, value);
            }
        }
        let mut split = split_if_full(leaf);
        // Carry splits up the path.
        let mut child = leaf_ref;
        while let Some((sep, right_node)) = split.take() {
            let right = tx.insert(right_node).await?;
            match path.pop() {
                Some((parent_ref, i)) => {
                    let parent = tx.get_mut(parent_ref).await?;
                    let BTreeNode::Branch { keys, children } = parent else {
                        return Err(corrupt_tree(parent_ref));
                    };
                    keys.insert(i, sep);
                    children.insert(i + 1, right);
                    split = split_if_full(parent);
                    child = parent_ref;
                }
                None => {
                    let new_root = tx
                        .insert(BTreeNode::Branch {
                            keys: vec![sep],
                            children: vec![child, right],
                        })
                        .await?;
                    tx.get_mut(tree).await?.root = new_root;
                }
            }
        }
        tx.get_mut(tree).await?.len += 1;
        Ok(None)
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
        let (leaf_ref, leaf, mut path) = Self::descend(&*tx, root, key).await?;
        let BTreeNode::Leaf { keys, .. } = &*leaf else {
            return Err(corrupt_tree(leaf_ref));
        };
        let Ok(i) = keys.binary_search(key) else {
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
            let BTreeNode::Branch { keys, children } = tx.get_mut(parent_ref).await? else {
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

    /// The entries with keys in `range`, in order.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn range(
        tx: &impl Objects,
        tree: Ref<Self>,
        range: impl RangeBounds<K>,
    ) -> Result<Vec<(K, V)>> {
        let root = tx.get(tree).await?.root;
        let mut out = Vec::new();
        // Depth-first, children pushed in reverse so they pop in key order.
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            let n = tx.get(node).await?;
            match &*n {
                BTreeNode::Leaf { keys, values } => {
                    for (k, v) in keys.iter().zip(values) {
                        if range.contains(k) {
                            out.push((k.clone(), v.clone()));
                        }
                    }
                }
                BTreeNode::Branch { keys, children } => {
                    for (i, c) in children.iter().enumerate().rev() {
                        // children[i] covers [keys[i-1], keys[i]).
                        let lo = if i == 0 { None } else { keys.get(i - 1) };
                        let hi = keys.get(i);
                        if overlaps(&range, lo, hi) {
                            stack.push(*c);
                        }
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

/// Splits a node that has grown past [`MAX_KEYS`], returning the separator and the new
/// right half.
fn split_if_full<K: Key, V: Value>(node: &mut BTreeNode<K, V>) -> Option<(K, BTreeNode<K, V>)> {
    match node {
        BTreeNode::Leaf { keys, values } if keys.len() > MAX_KEYS => {
            let mid = keys.len() / 2;
            let rk = keys.split_off(mid);
            let rv = values.split_off(mid);
            Some((rk[0].clone(), BTreeNode::Leaf { keys: rk, values: rv }))
        }
        BTreeNode::Branch { keys, children } if children.len() > MAX_KEYS => {
            let mid = keys.len() / 2;
            let mut rk = keys.split_off(mid);
            let sep = rk.remove(0);
            let rc = children.split_off(mid + 1);
            Some((
                sep,
                BTreeNode::Branch {
                    keys: rk,
                    children: rc,
                },
            ))
        }
        _ => None,
    }
}

fn corrupt_tree<K, V>(at: NodeRef<K, V>) -> crate::Error {
    crate::Error::CorruptObject {
        oid: at.oid(),
        reason: "the B-tree node is not the kind its parent expects".into(),
    }
}
