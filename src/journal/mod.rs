//! The native file format: an append-only journal of transactions with an oid index.
//!
//! This layer is pure and synchronous: it knows nothing of async or of object types.
//! [`Journal`] is the engine; the storage layer makes it async by running its calls on
//! the blocking pool. The byte layout is documented in [`format`](mod@format); where a
//! journal ends and how damage is classified is decided in `scan`.
//!
//! By default one process writes a journal at a time (an OS advisory lock enforces it)
//! and any number may open it read-only. In shared mode ([`JournalOptions::shared`])
//! any number of processes read and write it with no server: a lock file is held only
//! while a process appends, and each process catches up with what the others appended
//! before it appends and whenever [`Journal::refresh`] is called.
//!
//! The engine's work is spread over one file per concern, each an `impl Journal` block:
//!
//! | file | what it holds |
//! |---|---|
//! | `options.rs` | [`Durability`], [`JournalOptions`], [`JournalStats`] |
//! | `state.rs` | the in-memory index and log readers use, and the writer's own state |
//! | `open.rs` | creating, opening, closing |
//! | `recovery.rs` | the one decision on a file's [`Condition`]: intact, torn tail or damaged |
//! | `read.rs` | [`load`](Journal::load), [`load_at`](Journal::load_at), [`load_many`](Journal::load_many), [`oids`](Journal::oids) |
//! | `history.rs` | [`transactions`](Journal::transactions), [`tid_at_time`](Journal::tid_at_time), [`changes_since`](Journal::changes_since) |
//! | `alloc.rs` | [`new_oids`](Journal::new_oids): oid reservations |
//! | `commit.rs` | planning, validating and encoding a write group |
//! | `append.rs` | writing and syncing a group; poisoning after a failure |
//! | `shared.rs` | shared mode: the lock file, catching up, [`refresh`](Journal::refresh) |
//! | `checkpoint.rs` | index checkpoints |
//! | `backup.rs` | [`backup_to`](Journal::backup_to): a consistent copy of a live journal |
//! | `backup_incremental.rs` | [`backup_with`](Journal::backup_with): appending what is new to an earlier backup |
//! | `pack/` | [`pack`](Journal::pack): online garbage collection by reachability |
//! | `generations.rs` | [`pin`](Journal::pin): files a pack replaced, kept for older snapshots |
//! | `repair.rs` | [`repair`](Journal::repair) and [`verify_path`](Journal::verify_path) |
//! | `format.rs`, `scan.rs`, `index.rs`, `verify.rs` | byte layouts, the block scanner, the checkpoint index, the full check |
//! | `io.rs`, `sim.rs` | the [`FileIo`] seam, and [`SimFile`](sim::SimFile) for fault and power-loss tests |

mod alloc;
mod append;
mod backup;
mod backup_incremental;
mod checkpoint;
mod commit;
pub mod format;
mod generations;
mod history;
pub(crate) mod index;
pub mod io;
mod open;
mod options;
pub mod pack;
mod read;
mod recovery;
mod repair;
pub(crate) mod scan;
mod shared;
pub mod sim;
mod state;
mod verify;

pub use backup::{BackupOptions, BackupProgressFn, BackupReport};
pub use generations::SnapshotPin;
pub(crate) use open::sync_dir;
pub use options::{Durability, JournalOptions, JournalStats};
pub use pack::{Keep, PackOptions, PackPhase, PackProgress, PackReport, RefsReport};
pub use recovery::Condition;
pub use repair::{Loss, RepairMode, RepairReport};
pub use verify::{verify, VerifyReport};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use self::io::{FileIo, OsFile};
use self::state::{State, Writer};
use crate::error::{Error, Result};
use crate::record::Tid;

/// The journal engine: a synchronous, thread-safe handle on one journal file.
///
/// Loads run in parallel from many threads; commits are serialised.
///
/// ```
/// use durus::journal::{Journal, JournalOptions};
/// use durus::record::{CommitRequest, Record};
///
/// # let dir = tempfile::tempdir()?;
/// let j = Journal::open(dir.path().join("j.durus"), JournalOptions::default())?;
/// let oid = j.new_oids(1)?[0];
/// let done = j.commit(&CommitRequest {
///     snapshot: j.last_tid()?,
///     records: vec![Record::new(oid, b"hello".to_vec(), vec![])],
///     ..Default::default()
/// })?;
/// assert_eq!(j.load(oid)?.tid, done.tid);
/// j.close()?;
/// # Ok::<(), durus::Error>(())
/// ```
pub struct Journal {
    path: Option<PathBuf>,
    opts: JournalOptions,
    state: RwLock<State>,
    writer: Mutex<Writer>,
    /// The first failed write or sync of this session; every later write is refused.
    poisoned: OnceLock<Error>,
    closed: AtomicBool,
    /// Pinned snapshots, and the files packs replaced that they still read.
    generations: Arc<generations::Generations>,
    /// Held by a running pack: one at a time.
    packing: Mutex<()>,
    /// Shared mode: the lock file, locked only while this process appends.
    append_lock: Option<OsFile>,
    /// What opening found the file's condition to be (never damage: that fails).
    opened_as: Condition,
    commits: AtomicU64,
    groups: AtomicU64,
    syncs: AtomicU64,
    bytes_written: AtomicU64,
    /// Transaction bytes appended since the journal was opened or a pack started.
    since_pack: AtomicU64,
    packs: AtomicU64,
    auto_pack_failures: AtomicU64,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.read_state();
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("last_tid", &st.last_tid)
            .field("end", &st.end)
            .field("read_only", &self.opts.read_only)
            .field("shared", &self.opts.shared)
            .field("poisoned", &self.poisoned.get().is_some())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// The path this journal was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The options it was opened with.
    pub fn options(&self) -> &JournalOptions {
        &self.opts
    }

    /// The last committed transaction id.
    pub fn last_tid(&self) -> Result<Tid> {
        self.check_open()?;
        Ok(Tid(self.read_state().last_tid))
    }

    /// The condition opening found the file in: [`Condition::Intact`], or
    /// [`Condition::TornTail`] with where the torn bytes begin (cut off before the next
    /// append). Opening a damaged file fails instead.
    pub fn condition_at_open(&self) -> &Condition {
        &self.opened_as
    }

    /// Counters of the work done since open.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            commits: self.commits.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            packs: self.packs.load(Ordering::Relaxed),
            auto_pack_failures: self.auto_pack_failures.load(Ordering::Relaxed),
        }
    }

    /// Whether [`JournalOptions::auto_pack`]'s amount has been appended since the
    /// journal was opened or last packed (a pack in progress resets it when it starts).
    pub fn pack_due(&self) -> bool {
        self.opts
            .auto_pack
            .is_some_and(|after| !self.opts.read_only && self.since_pack.load(Ordering::Relaxed) >= after)
    }

    /// Counts a failed automatic pack (see [`JournalOptions::auto_pack`]).
    pub fn note_auto_pack_failure(&self) {
        self.auto_pack_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Offset just past the last block: the logical size of the journal.
    pub fn end_offset(&self) -> u64 {
        self.read_state().end
    }

    /// Whether other processes may append to this journal while it is open: shared
    /// mode, or a read-only open (of a file someone else may be writing). Then
    /// [`refresh`](Journal::refresh) has work to do.
    pub fn others_may_append(&self) -> bool {
        self.opts.shared || self.opts.read_only
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        crate::sync::read(&self.state)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        crate::sync::write(&self.state)
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        crate::sync::lock(&self.writer)
    }

    /// The file of the journal's current generation. Writers may hold on to it while
    /// they hold the writer lock (a pack switches files only under it); readers take
    /// the file together with the index they look up in, from the same state.
    fn file(&self) -> Arc<dyn FileIo> {
        self.read_state().file.clone()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        if let Some(e) = self.poisoned.get() {
            return Err(e.clone());
        }
        Ok(())
    }
}

/// Maps a failed `try_lock` of `path`'s file to [`Error::Locked`] (someone holds it) or
/// the I/O error.
fn lock_error(path: &Path, e: std::fs::TryLockError) -> Error {
    match e {
        std::fs::TryLockError::WouldBlock => Error::Locked {
            path: path.to_path_buf(),
        },
        std::fs::TryLockError::Error(e) => e.into(),
    }
}
