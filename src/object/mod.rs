//! Persistent types, typed references and the codec that turns them into records.
//!
//! This layer knows nothing of files or sockets: it maps a value of a [`Persistent`]
//! type to a record's data and refs and back (the layout is in `codec.rs`; the layers
//! are described in `docs/DESIGN.md` in the repository).

mod btree;
mod codec;
mod counter;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::record::Oid;

pub use btree::{
    AddCounters, BTree, BTreeNode, BTreeSet, Key, NoMerge, Order, Value, ValueMerge, LEAF_BYTES, MAX_KEYS,
};
pub use codec::{decode, encode, peek_type_name};
pub use counter::Counter;

/// A type whose values durus can store: any serde type with a stable type name.
///
/// Derive it with `#[derive(Persistent)]` (optionally `#[durus(name = "app.Thing")]`),
/// or implement it by hand to add conflict resolution:
///
/// ```
/// use durus::object::Persistent;
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct HitCount(u64);
///
/// impl Persistent for HitCount {
///     const TYPE_NAME: &'static str = "app.HitCount";
///     fn resolve(committed: &Self, base: &Self, mine: &Self) -> Option<Self> {
///         // Two increments commute: apply both deltas.
///         Some(HitCount(committed.0 + (mine.0 - base.0)))
///     }
/// }
/// ```
pub trait Persistent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The name stored with every record of this type (as Durus stores the class
    /// name). Keep it stable: renaming the Rust type is fine, changing this is not.
    const TYPE_NAME: &'static str;

    /// Merges a write-write conflict, as Durus's `_p_resolve`: `committed` is the
    /// state another transaction committed after this one's snapshot, `base` the state
    /// this transaction started from, `mine` the state it wants to write. Returning
    /// `Some(merged)` commits `merged` instead of failing; the default never merges.
    fn resolve(committed: &Self, base: &Self, mine: &Self) -> Option<Self> {
        let _ = (committed, base, mine);
        None
    }
}

#[cfg(feature = "derive")]
pub use durus_derive::Persistent;

/// Reading and writing objects inside a transaction: what persistent collections (such
/// as [`BTree`]) need from the layer above. [`Transaction`](crate::Transaction)
/// implements it.
///
/// # Cancel safety
///
/// Each method's future is as cancel-safe as the transaction's own method of that
/// name: a dropped `get`, `get_mut` or `insert` leaves the transaction usable and adds
/// nothing to what it writes. An implementation must keep that promise.
pub trait Objects: Send + Sync {
    /// Reads an object at the transaction's snapshot (or its own write).
    fn get<T: Persistent>(
        &self,
        r: Ref<T>,
    ) -> impl std::future::Future<Output = crate::Result<std::sync::Arc<T>>> + Send;
    /// An object to change, copied into the transaction on first use.
    fn get_mut<T: Persistent>(
        &mut self,
        r: Ref<T>,
    ) -> impl std::future::Future<Output = crate::Result<&mut T>> + Send;
    /// Adds a new object.
    fn insert<T: Persistent>(
        &mut self,
        value: T,
    ) -> impl std::future::Future<Output = crate::Result<Ref<T>>> + Send;
}

/// A typed reference to a persistent object: an oid that remembers what type it points
/// at. It serializes as the bare oid, and the codec lists every `Ref` in a state as the
/// record's refs, however deeply it is nested.
pub struct Ref<T> {
    oid: Oid,
    _type: PhantomData<fn() -> T>,
}

impl<T> Ref<T> {
    /// A reference to `oid`. Nothing checks that `oid` holds a `T` until it is loaded.
    pub const fn from_oid(oid: Oid) -> Ref<T> {
        Ref {
            oid,
            _type: PhantomData,
        }
    }

    /// The root object's reference.
    pub const fn root() -> Ref<T> {
        Ref::from_oid(Oid::ROOT)
    }

    /// The oid referred to.
    pub fn oid(&self) -> Oid {
        self.oid
    }
}

impl<T> Clone for Ref<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ref<T> {}
impl<T> PartialEq for Ref<T> {
    fn eq(&self, other: &Self) -> bool {
        self.oid == other.oid
    }
}
impl<T> Eq for Ref<T> {}
impl<T> PartialOrd for Ref<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Ref<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.oid.cmp(&other.oid)
    }
}
impl<T> Hash for Ref<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.oid.hash(state)
    }
}
impl<T> fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ref({})", self.oid)
    }
}

/// The newtype name `Ref`s serialize under.
const REF_NAME: &str = "durus.Ref";

impl<T> Serialize for Ref<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        codec::note_ref(self.oid);
        s.serialize_newtype_struct(REF_NAME, &self.oid.0)
    }
}

impl<'de, T> Deserialize<'de> for Ref<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "durus.Ref")]
        struct Raw(u64);
        let Raw(oid) = Raw::deserialize(d)?;
        Ok(Ref::from_oid(Oid(oid)))
    }
}
