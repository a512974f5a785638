//! Locking that survives a panic elsewhere.
//!
//! The rule, stated once: every `std::sync` lock in durus guards data that is only
//! changed by plain memory updates which cannot stop halfway in a way that matters (an
//! insert, a counter, a swap). A thread that panicked while holding such a lock
//! therefore left the data consistent, and later users may go on with it instead of
//! failing too. These helpers take the lock and ignore its poison flag accordingly;
//! code whose updates could be torn by a panic must not use them.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, going on if a panicking thread poisoned it (see the module docs).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes `l` for reading, going on if it was poisoned (see the module docs).
pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Takes `l` for writing, going on if it was poisoned (see the module docs).
pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
