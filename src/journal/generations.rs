//! Files a pack replaced, kept while transactions still read from them.
//!
//! A pack writes a new file that keeps only the versions visible from its pack point
//! on. A transaction whose snapshot is older may need a version the new file dropped,
//! so the old file (and its index) is kept open as a *retired generation* for as long
//! as some pinned snapshot is older than the pack point. Snapshots are pinned by
//! [`Journal::pin`]; the last pin's drop releases the old file.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::state::State;
use super::Journal;
use crate::error::{Error, Result};
use crate::record::Tid;

/// Keeps the versions visible at one snapshot readable while it lives, also across a
/// pack (see [`Journal::pin`]). Dropping it lets a pack's old file go once no older
/// snapshot needs it.
pub struct SnapshotPin {
    held: Option<(Arc<Generations>, u64)>,
    /// For other storages: what to run when the pin goes (see [`SnapshotPin::on_release`]).
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl SnapshotPin {
    /// A pin that holds nothing: for storages whose old versions never go away, or
    /// that cannot keep them.
    pub fn none() -> SnapshotPin {
        SnapshotPin {
            held: None,
            release: None,
        }
    }

    /// A pin of another storage, which keeps its own count of pinned snapshots:
    /// `release` runs once, when the pin is dropped (on the dropping thread, so it must
    /// not block).
    pub fn on_release(release: impl FnOnce() + Send + Sync + 'static) -> SnapshotPin {
        SnapshotPin {
            held: None,
            release: Some(Box::new(release)),
        }
    }
}

impl fmt::Debug for SnapshotPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotPin")
            .field("snapshot", &self.held.as_ref().map(|(_, t)| Tid(*t)))
            .finish()
    }
}

impl Drop for SnapshotPin {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
        if let Some((gens, tid)) = self.held.take() {
            let released = gens.unpin(tid);
            // Closing a large unlinked file can take the file system a while; do it
            // where waiting is allowed.
            if !released.is_empty() {
                blocking::unblock(move || drop(released)).detach();
            }
        }
    }
}

/// The pinned snapshots and the retired generations they keep.
#[derive(Default)]
pub(super) struct Generations {
    inner: Mutex<Gens>,
    /// How many retired generations are kept, so that loads need not take the lock
    /// to learn there are none (the usual case).
    kept: AtomicUsize,
}

#[derive(Default)]
struct Gens {
    /// Pinned snapshot tid → how many pins.
    pins: BTreeMap<u64, usize>,
    /// Oldest first.
    retired: Vec<Retired>,
}

/// A file a pack replaced, with the index that reads it.
struct Retired {
    /// The pack point of the pack that replaced it: snapshots before this need it.
    until: u64,
    state: Arc<State>,
}

impl Journal {
    /// Pins `snapshot`: while the returned pin lives, reads at that snapshot see exactly
    /// the versions they saw before, even after a pack removed them from the current
    /// file (the pack's old file stays open until the last older pin is dropped).
    ///
    /// # Errors
    ///
    /// [`Error::HistoryGone`] if a pack already removed that snapshot's history and
    /// no pinned snapshot kept it; [`Error::SnapshotAhead`] after the last transaction.
    pub fn pin(&self, snapshot: Tid) -> Result<SnapshotPin> {
        self.check_open()?;
        let mut g = crate::sync::lock(&self.generations.inner);
        let (from, last) = {
            let st = self.read_state();
            (st.history.history_from, st.last_tid)
        };
        if snapshot.0 > last {
            return Err(Error::snapshot_ahead(snapshot, Tid(last)));
        }
        if snapshot.0 < from && !g.retired.iter().any(|r| r.covers(snapshot.0)) {
            return Err(Error::HistoryGone { oldest: Tid(from) });
        }
        *g.pins.entry(snapshot.0).or_default() += 1;
        Ok(SnapshotPin {
            held: Some((self.generations.clone(), snapshot.0)),
            release: None,
        })
    }

    /// The oldest snapshot reads can be served at now: the pack point of the current
    /// file, or of an older file a pinned snapshot still keeps open.
    pub fn oldest_snapshot(&self) -> Tid {
        let g = crate::sync::lock(&self.generations.inner);
        let from = self.read_state().history.history_from;
        Tid(g
            .retired
            .first()
            .map_or(from, |r| r.state.history.history_from.min(from)))
    }
}

impl Retired {
    fn covers(&self, snapshot: u64) -> bool {
        self.state.history.history_from <= snapshot && snapshot < self.until
    }
}

impl Generations {
    /// The retired generation that reads `snapshot`, if one is kept. With `wait` false,
    /// gives up (`Err(())`) rather than wait for the lock.
    pub(super) fn covering(&self, snapshot: u64, wait: bool) -> std::result::Result<Option<Arc<State>>, ()> {
        if !self.any_kept() {
            return Ok(None);
        }
        let g = if wait {
            crate::sync::lock(&self.inner)
        } else {
            match self.inner.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Err(()),
            }
        };
        Ok(g.retired
            .iter()
            .find(|r| r.covers(snapshot))
            .map(|r| r.state.clone()))
    }

    /// Whether any replaced file is kept.
    pub(super) fn any_kept(&self) -> bool {
        self.kept.load(Ordering::Acquire) > 0
    }

    /// Runs `switch`, which replaces the journal's state and returns the old one and
    /// the first snapshot it is not needed for (one past the last tid it holds), and
    /// keeps the old one while a pinned snapshot before that still needs it. Pins wait
    /// meanwhile, so that none is refused for a file it could still have kept.
    pub(super) fn retire(&self, switch: impl FnOnce() -> (State, u64)) {
        let released = {
            let mut g = crate::sync::lock(&self.inner);
            // Counted before the switch is seen, so that no load that sees the new
            // state misses the old one.
            self.kept.store(g.retired.len() + 1, Ordering::Release);
            let (old, until) = switch();
            g.retired.push(Retired {
                until,
                state: Arc::new(old),
            });
            self.prune(&mut g)
        };
        if !released.is_empty() {
            blocking::unblock(move || drop(released)).detach();
        }
    }

    /// Drops one pin of `tid`; returns the generations no pin needs any more.
    fn unpin(&self, tid: u64) -> Vec<Arc<State>> {
        let mut g = crate::sync::lock(&self.inner);
        if let Some(n) = g.pins.get_mut(&tid) {
            *n -= 1;
            if *n == 0 {
                g.pins.remove(&tid);
            }
        }
        self.prune(&mut g)
    }

    fn prune(&self, g: &mut Gens) -> Vec<Arc<State>> {
        let gone = g.prune();
        self.kept.store(g.retired.len(), Ordering::Release);
        gone
    }
}

impl Gens {
    fn prune(&mut self) -> Vec<Arc<State>> {
        let oldest_pin = self.pins.keys().next().copied();
        let (keep, gone): (Vec<Retired>, Vec<Retired>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|r| oldest_pin.is_some_and(|p| p < r.until));
        self.retired = keep;
        gone.into_iter().map(|r| r.state).collect()
    }
}
