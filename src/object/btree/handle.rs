//! The method-style calls on a tree's `Ref`: `tree.get(&tx, &key)` reads as the
//! collection it is, where `BTree::get(&tx, tree, &key)` reads as a function of three
//! arguments. Each is the function of [`BTree`] of the same name.

use std::ops::RangeBounds;

use super::{BTree, Key, Objects, Order, Ref, Value, ValueMerge};
use crate::error::Result;

impl<K: Key, V: Value, M: ValueMerge<V>> Ref<BTree<K, V, M>> {
    /// Number of entries ([`BTree::len`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn len(self, tx: &impl Objects) -> Result<u64> {
        BTree::<K, V, M>::len(tx, self).await
    }

    /// Whether the tree is empty ([`BTree::is_empty`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn is_empty(self, tx: &impl Objects) -> Result<bool> {
        BTree::<K, V, M>::is_empty(tx, self).await
    }

    /// The value under `key` ([`BTree::get`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn get(self, tx: &impl Objects, key: &K) -> Result<Option<V>> {
        BTree::<K, V, M>::get(tx, self, key).await
    }

    /// Whether `key` has an entry ([`BTree::contains_key`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn contains_key(self, tx: &impl Objects, key: &K) -> Result<bool> {
        BTree::<K, V, M>::contains_key(tx, self, key).await
    }

    /// The entry with the smallest key ([`BTree::first`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn first(self, tx: &impl Objects) -> Result<Option<(K, V)>> {
        BTree::<K, V, M>::first(tx, self).await
    }

    /// The entry with the largest key ([`BTree::last`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn last(self, tx: &impl Objects) -> Result<Option<(K, V)>> {
        BTree::<K, V, M>::last(tx, self).await
    }

    /// The entries with keys in `range`, ascending ([`BTree::range`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn range(self, tx: &impl Objects, range: impl RangeBounds<K>) -> Result<Vec<(K, V)>> {
        BTree::<K, V, M>::range(tx, self, range).await
    }

    /// At most `limit` entries in `range`, in `order` ([`BTree::scan`]).
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
    ) -> Result<Vec<(K, V)>> {
        BTree::<K, V, M>::scan(tx, self, range, order, limit).await
    }

    /// Every entry, in key order ([`BTree::entries`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn entries(self, tx: &impl Objects) -> Result<Vec<(K, V)>> {
        BTree::<K, V, M>::entries(tx, self).await
    }

    /// Inserts `value` under `key`, returning the value it replaced ([`BTree::insert`]).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction (see [`BTree`]).
    pub async fn insert(self, tx: &mut impl Objects, key: K, value: V) -> Result<Option<V>> {
        BTree::<K, V, M>::insert(tx, self, key, value).await
    }

    /// Inserts an ascending run in one pass ([`BTree::insert_sorted`]).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction (see [`BTree`]).
    pub async fn insert_sorted(
        self,
        tx: &mut impl Objects,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<u64> {
        BTree::<K, V, M>::insert_sorted(tx, self, entries).await
    }

    /// Removes `key`, returning its value ([`BTree::remove`]).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe for the transaction (see [`BTree`]).
    pub async fn remove(self, tx: &mut impl Objects, key: &K) -> Result<Option<V>> {
        BTree::<K, V, M>::remove(tx, self, key).await
    }
}
