//! A persistent sorted map spread over many persistent nodes, for collections too large
//! to be one object.
//!
//! The map object ([`BTree`]) holds the root node's reference and the length; the nodes
//! ([`BTreeNode`]) are leaves of entries and branches of children. A leaf splits when an
//! insert takes it past [`LEAF_BYTES`] of encoded entries (or [`MAX_KEYS`] entries), a
//! branch past [`MAX_KEYS`] children. Changing one key rewrites the leaf that holds it
//! (plus the nodes a split touches, and the map object when the length changes):
//! O(log n) records, never the whole map. Concurrent inserts into different leaves merge
//! their length changes instead of conflicting.
//!
//! Concurrent changes to different keys of one leaf merge too, key by key; a key both
//! sides changed merges by the tree's [`ValueMerge`] rule (by default it conflicts;
//! [`AddCounters`] adds [`Counter`](crate::Counter) deltas).
//!
//! One job a file: this one has the types and their conflict rules, `read.rs` the
//! lookups and ordered scans, `write.rs` inserts, removals and bulk inserts, `split.rs`
//! how an overfull node is cut and the cut carried up, `size.rs` entry sizes,
//! `merge.rs` the leaf merge, `handle.rs` the method-style calls on a tree's `Ref`,
//! `set.rs` the [`BTreeSet`] over the same nodes.
//!
//! The nodes' stored form is the one durus 0.1 wrote (a CBOR map `Leaf { keys, values }`
//! or `Branch { keys, children }` under the type name `durus.BTreeNode`): only the
//! split rule changed, so trees written before read and grow as before.

mod handle;
mod merge;
mod read;
mod set;
mod size;
mod split;
mod write;

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use merge::{AddCounters, NoMerge, ValueMerge};
pub use read::Order;
pub use set::BTreeSet;

use super::{Objects, Persistent, Ref};
use crate::error::Result;

/// Most entries in a leaf, or children in a branch, before it splits.
pub const MAX_KEYS: usize = 64;

/// Most bytes of encoded entries (each key's and value's CBOR) a leaf holds before an
/// insert splits it. Chosen from the W8 benchmark (see the README): a transaction
/// rewrites every leaf it touches, so small leaves write less per change, while
/// leaves much smaller than this add branch writes and loads per lookup.
pub const LEAF_BYTES: usize = 2048;

/// What a B-tree key must be.
pub trait Key: Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Key for T {}

/// What a B-tree value must be.
pub trait Value: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Value for T {}

/// A persistent B-tree map. Create one with [`BTree::create`] and keep its `Ref`.
///
/// Every operation takes the transaction it runs in (anything that implements
/// [`Objects`], such as [`Transaction`](crate::Transaction)), either called on the
/// tree's `Ref` (`tree.get(&tx, &key)`) or as a function of the type
/// (`BTree::get(&tx, tree, &key)`); both are the same code.
///
/// `M` is how a value that two concurrent transactions both changed is merged
/// ([`ValueMerge`]; by default it is a conflict). Changes to different keys merge
/// whatever `M` is.
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
///     tree.insert(&mut tx, name.to_string(), i as u32).await?;
/// }
/// tx.commit().await?;
///
/// let tx = db.begin().await?;
/// let tree = tx.root().await?.by_name.expect("created above");
/// assert_eq!(tree.get(&tx, &"bob".to_string()).await?, Some(2));
/// assert_eq!(BTree::get(&tx, tree, &"bob".to_string()).await?, Some(2));
/// let names: Vec<String> = tree.entries(&tx).await?.into_iter().map(|(k, _)| k).collect();
/// assert_eq!(names, ["alice", "bob", "carol"]);
/// # Ok::<(), durus::Error>(())
/// # }).unwrap();
/// ```
///
/// # Cancel safety
///
/// The reading functions (`len`, `is_empty`, `get`, `contains_key`, `first`, `last`,
/// `range`, `scan`, `entries`) are cancel-safe. The changing ones
/// (`create`, `insert`, `insert_sorted`, `remove`) change several nodes
/// one after another: if one of their futures is dropped before it completes, the
/// transaction may hold part of the change (a split half done), so drop that
/// transaction instead of committing it. What is stored is untouched until a commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BTree<K, V, M = NoMerge> {
    root: Ref<BTreeNode<K, V, M>>,
    len: u64,
}

/// One node of a [`BTree`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, V: Serialize",
    deserialize = "K: DeserializeOwned, V: DeserializeOwned"
))]
pub enum BTreeNode<K, V, M = NoMerge> {
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
        children: Vec<Ref<BTreeNode<K, V, M>>>,
        /// Ties the tree's merge rule to its nodes; not stored.
        #[serde(skip)]
        #[doc(hidden)]
        merge: PhantomData<fn() -> M>,
    },
}

impl<K: Key, V: Value, M: ValueMerge<V>> Persistent for BTree<K, V, M> {
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

impl<K: Key, V: Value, M: ValueMerge<V>> Persistent for BTreeNode<K, V, M> {
    const TYPE_NAME: &'static str = "durus.BTreeNode";

    /// Two leaves merge key by key (see [`ValueMerge`]); branches changed on both sides
    /// are a conflict.
    fn resolve(committed: &Self, base: &Self, mine: &Self) -> Option<Self> {
        merge::merge_leaves(committed, base, mine)
    }
}

type NodeRef<K, V, M = NoMerge> = Ref<BTreeNode<K, V, M>>;

impl<K: Key, V: Value> BTree<K, V> {
    /// Creates an empty tree in the transaction and returns its reference.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction: dropped before it completes, it may leave
    /// part of its change in the transaction, which must then not be committed (see
    /// [`BTree`]).
    pub async fn create(tx: &mut impl Objects) -> Result<Ref<BTree<K, V>>> {
        Self::create_merging(tx).await
    }
}

impl<K: Key, V: Value, M: ValueMerge<V>> BTree<K, V, M> {
    /// Creates an empty tree whose values merge by `M` (see [`ValueMerge`]); the type
    /// must be named, as in `BTree::<String, Counter, AddCounters>::create_merging`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction, as [`create`](BTree::create).
    pub async fn create_merging(tx: &mut impl Objects) -> Result<Ref<Self>> {
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
}

fn corrupt_tree<K, V, M>(at: NodeRef<K, V, M>) -> crate::Error {
    crate::Error::CorruptObject {
        oid: at.oid(),
        reason: "a B-tree node of the wrong kind, or with separators not matching its children".into(),
    }
}
