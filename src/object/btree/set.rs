//! [`BTreeSet`]: a persistent sorted set, a handle over the nodes of a `BTree<K, ()>`.

use std::fmt;
use std::ops::RangeBounds;

use serde::{Deserialize, Serialize};

use super::{BTree, Key, Objects, Order, Ref};
use crate::error::Result;

/// A persistent sorted set of keys, for sets too large to be one object: a
/// [`BTree`] whose values are `()`, so it shares the map's nodes, splits, scans and
/// conflict rules (concurrent inserts of different keys merge). The set itself is a
/// small handle that stores as the tree's reference: keep it in a persistent object
/// as it is.
///
/// ```
/// use durus::object::BTreeSet;
/// use durus::{Db, DbBuilder, Persistent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Default, Serialize, Deserialize, Persistent)]
/// struct Root {
///     tags: Option<BTreeSet<String>>,
/// }
///
/// # futures::executor::block_on(async {
/// let db: Db<Root> = DbBuilder::memory().open().await?;
/// let mut tx = db.begin().await?;
/// let tags = BTreeSet::create(&mut tx).await?;
/// tx.root_mut().await?.tags = Some(tags);
/// for t in ["rust", "db", "rust"] {
///     tags.insert(&mut tx, t.to_string()).await?;
/// }
/// tx.commit().await?;
///
/// let tx = db.begin().await?;
/// let tags = tx.root().await?.tags.expect("created above");
/// assert!(tags.contains(&tx, &"db".to_string()).await?);
/// assert_eq!(tags.len(&tx).await?, 2);
/// assert_eq!(tags.elements(&tx).await?, ["db", "rust"]);
/// # Ok::<(), durus::Error>(())
/// # }).unwrap();
/// ```
///
/// # Cancel safety
///
/// As [`BTree`]'s: the reading methods are cancel-safe; a dropped `insert`,
/// `insert_sorted` or `remove` may leave part of its change in the transaction,
/// which must then be dropped instead of committed.
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct BTreeSet<K> {
    tree: Ref<BTree<K, ()>>,
}

impl<K> Clone for BTreeSet<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for BTreeSet<K> {}
impl<K> PartialEq for BTreeSet<K> {
    fn eq(&self, other: &Self) -> bool {
        self.tree == other.tree
    }
}
impl<K> Eq for BTreeSet<K> {}
impl<K> fmt::Debug for BTreeSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BTreeSet({})", self.tree.oid())
    }
}

impl<K: Key> BTreeSet<K> {
    /// Creates an empty set in the transaction.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction (see above).
    pub async fn create(tx: &mut impl Objects) -> Result<BTreeSet<K>> {
        Ok(BTreeSet::from_tree(BTree::create(tx).await?))
    }

    /// The set whose members are the keys of `tree`.
    pub fn from_tree(tree: Ref<BTree<K, ()>>) -> BTreeSet<K> {
        BTreeSet { tree }
    }

    /// The tree underneath.
    pub fn tree(self) -> Ref<BTree<K, ()>> {
        self.tree
    }

    /// Number of members, in O(1).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn len(self, tx: &impl Objects) -> Result<u64> {
        self.tree.len(tx).await
    }

    /// Whether the set is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn is_empty(self, tx: &impl Objects) -> Result<bool> {
        self.tree.is_empty(tx).await
    }

    /// Whether `key` is a member.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn contains(self, tx: &impl Objects, key: &K) -> Result<bool> {
        self.tree.contains_key(tx, key).await
    }

    /// Adds `key`; true if it was not a member before.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction (see above).
    pub async fn insert(self, tx: &mut impl Objects, key: K) -> Result<bool> {
        Ok(self.tree.insert(tx, key, ()).await?.is_none())
    }

    /// Adds an ascending run of keys in one pass ([`BTree::insert_sorted`]); returns
    /// how many were not members before.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction (see above).
    pub async fn insert_sorted(
        self,
        tx: &mut impl Objects,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<u64> {
        self.tree
            .insert_sorted(tx, keys.into_iter().map(|k| (k, ())))
            .await
    }

    /// Removes `key`; true if it was a member.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction (see above).
    pub async fn remove(self, tx: &mut impl Objects, key: &K) -> Result<bool> {
        Ok(self.tree.remove(tx, key).await?.is_some())
    }

    /// The smallest member.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn first(self, tx: &impl Objects) -> Result<Option<K>> {
        Ok(self.tree.first(tx).await?.map(|(k, ())| k))
    }

    /// The largest member.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn last(self, tx: &impl Objects) -> Result<Option<K>> {
        Ok(self.tree.last(tx).await?.map(|(k, ())| k))
    }

    /// The members in `range`, ascending.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn range(self, tx: &impl Objects, range: impl RangeBounds<K>) -> Result<Vec<K>> {
        Ok(keys(self.tree.range(tx, range).await?))
    }

    /// At most `limit` members in `range`, in `order` ([`BTree::scan`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn scan(
        self,
        tx: &impl Objects,
        range: impl RangeBounds<K>,
        order: Order,
        limit: usize,
    ) -> Result<Vec<K>> {
        Ok(keys(self.tree.scan(tx, range, order, limit).await?))
    }

    /// Every member, ascending.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn elements(self, tx: &impl Objects) -> Result<Vec<K>> {
        Ok(keys(self.tree.entries(tx).await?))
    }
}

fn keys<K>(entries: Vec<(K, ())>) -> Vec<K> {
    entries.into_iter().map(|(k, ())| k).collect()
}
