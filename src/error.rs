//! The one error type every layer of durus returns.

use std::path::PathBuf;
use std::sync::Arc;

use crate::record::{Oid, Tid};

/// Result alias used throughout durus.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in durus, as variants a caller can match on.
///
/// Each variant says when it happens and what to do about it. `Error` is `Clone` so
/// that one failure (a failed sync, say) can be handed to every task that was waiting
/// on it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object with this oid exists (at the snapshot that was asked for).
    ///
    /// Happens when a `Ref` points at an object that was never committed, or at a
    /// snapshot from before the object was created. Usually a logic error in the
    /// caller; a transaction that hits it can still commit what it did.
    #[error("object {oid} not found")]
    NotFound {
        /// The oid that was asked for.
        oid: Oid,
    },
    /// The transaction read or wrote objects that another transaction committed after
    /// its snapshot. Nothing was written; run the transaction again on a new snapshot
    /// (`Db::transact` does so with backoff).
    #[error("conflict on {} object(s): {}", oids.len(), fmt_oids(oids))]
    Conflict {
        /// The oids that were changed by others, in ascending order.
        oids: Vec<Oid>,
    },
    /// Bytes on disk (or handed to a parser) are not what durus wrote: damage that
    /// recovery may not cut away silently. The file is refused as it is; `durus verify`
    /// tells more, and `durus repair` says what it can do about it.
    #[error("corrupt data at offset {offset}: {reason}")]
    Corrupt {
        /// Byte offset of the damaged structure in the file (or input).
        offset: u64,
        /// What was wrong there.
        reason: String,
    },
    /// A stored object is inconsistent with the objects around it (for example a
    /// B-tree node of the wrong kind): the records are intact, their contents are not.
    #[error("object {oid} is damaged: {reason}")]
    CorruptObject {
        /// The damaged object.
        oid: Oid,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process holds the write lock of this file. Wait for it to close the
    /// file, or open it read-only (or both in shared mode).
    #[error("{} is locked by another process", path.display())]
    Locked {
        /// The file that is locked.
        path: PathBuf,
    },
    /// The file is not a durus journal (wrong magic, or empty when opened read-only).
    #[error("not a durus journal: {reason}")]
    Format {
        /// Why the file was refused.
        reason: String,
    },
    /// A file given as a Python Durus database (to
    /// [`import_durus`](crate::import::import_durus)) is not one: it begins with
    /// neither Durus format's magic. Nothing was written.
    #[error("not a Python Durus database: {reason}")]
    NotDurus {
        /// What the file is instead.
        reason: String,
    },
    /// The file was written by a newer format version than this build understands.
    /// Upgrade durus to read it.
    #[error("journal format version {found} is newer than the supported version {supported}")]
    Version {
        /// The version found in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// An operating-system I/O error. [`Error::io_kind`] tells which (a full disk, a
    /// missing file, a permission).
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// The storage or database was closed. Open it again.
    #[error("storage is closed")]
    Closed,
    /// The storage was opened read-only and a write was attempted.
    #[error("storage is read-only")]
    ReadOnly,
    /// An earlier write or sync failed, so the storage refuses further writes until it
    /// is reopened: data that was not synced is never treated as safe (a failed fsync
    /// is never retried). Every commit acknowledged before the failure is durable;
    /// reopening recovers the file. [`Error::io_kind`] tells what failed (for example
    /// `StorageFull` from ENOSPC, or an EIO from the disk).
    #[error("storage is poisoned by an earlier failure while {during} ({source}); reopen it")]
    Poisoned {
        /// What the storage was doing when the failure happened.
        during: String,
        /// The operating system's error.
        source: Arc<std::io::Error>,
    },
    /// An object was loaded as a different type than the one stored: a `Ref<T>` names
    /// the wrong `T`, or the type's `TYPE_NAME` changed.
    #[error("object {oid} is a {found}, not a {expected}")]
    WrongType {
        /// The object.
        oid: Oid,
        /// The type name asked for.
        expected: String,
        /// The type name stored.
        found: String,
    },
    /// A value could not be encoded, or stored bytes could not be decoded, as its type
    /// (serde reported an error, often a changed struct definition).
    #[error("cannot encode or decode {type_name}: {reason}")]
    Codec {
        /// The type involved (empty when unknown).
        type_name: String,
        /// What serde reported.
        reason: String,
    },
    /// A snapshot or transaction id named by the caller lies after the last committed
    /// transaction. Take snapshots from `Db::begin` or `last_tid`.
    #[error("snapshot {asked} is after the last transaction {last}")]
    SnapshotAhead {
        /// The tid asked for.
        asked: Tid,
        /// The last committed tid.
        last: Tid,
    },
    /// The operation was abandoned because its caller stopped waiting (a dropped
    /// pack future); it left the store as it was.
    #[error("cancelled")]
    Cancelled,
    /// The versions asked for were removed by a pack: a snapshot or a time before the
    /// oldest transaction the store still has the history of. A transaction that began
    /// before a pack keeps reading its versions while it lives; a new one on such an old
    /// snapshot cannot be served. Begin again on a newer snapshot.
    #[error("the history before transaction {oldest} was packed away")]
    HistoryGone {
        /// The oldest snapshot the store can still read (the pack point).
        oldest: Tid,
    },
    /// A pack was refused: it found references to oids that have no record (named,
    /// up to 100 of them), which a pack would leave dangling for good. Pass
    /// `PackOptions::force` to pack anyway. (`Journal::check_refs` finds the same
    /// references without packing.)
    #[error("{count} dangling references: reachable records refer to oids that have no record (oids {})", oid_list(.oids, *.count))]
    DanglingRefs {
        /// How many references to missing oids were found.
        count: u64,
        /// Some of the missing oids.
        oids: Vec<Oid>,
    },
    /// A commit wrote an oid that was never handed out by `new_oids` (a made-up oid):
    /// oids must come from the storage so that they are never used twice.
    #[error("oid {oid} was never allocated")]
    NotAllocated {
        /// The oid written.
        oid: Oid,
    },
    /// A commit wrote the same oid twice.
    #[error("oid {oid} written twice in one commit")]
    DuplicateWrite {
        /// The oid written twice.
        oid: Oid,
    },
    /// A value is too large for the format: a record's data of 4 GiB or more, a type
    /// name over 255 bytes, a journal entry over 4 GiB.
    #[error("{what} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size in bytes.
        size: u64,
        /// The largest size allowed.
        limit: u64,
    },
    /// An id space is used up (oids or transaction ids): 2^64 of them. Not expected in
    /// practice; a file that claims it is probably damaged.
    #[error("{what} are exhausted")]
    Exhausted {
        /// Which ids ran out.
        what: &'static str,
    },
    /// The storage cannot do this at all (a backup of a storage that has no file, say).
    #[error("{what} is not supported by this storage")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
    /// The caller asked for something that cannot be done, described in the message.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An incremental backup was asked for onto a file that is not an earlier backup of
    /// the same journal file (see
    /// [`Journal::backup_incremental_into`](crate::journal::Journal::backup_incremental_into));
    /// the file was left as it was.
    #[error("not an earlier backup of this journal: {reason}; take a full backup instead")]
    NotPrefix {
        /// How it differs.
        reason: String,
    },
    /// Bytes received from a network peer break the wire protocol (a malformed frame, a
    /// length past the limit, an unknown command). The connection that carried them is
    /// closed; nothing of the request was applied.
    #[error("protocol error: {reason}")]
    Protocol {
        /// What was wrong with the bytes.
        reason: String,
    },
    /// The connection to a storage server (or to the PostgreSQL database of a
    /// `PostgresStorage`) was lost before the answer arrived, or could not be made. For a
    /// commit the outcome is unknown: it may have landed. The storage reconnects on the
    /// next call; check with `changes_since` or by reading if a commit's fate matters.
    #[error("disconnected from the server: {reason}")]
    Disconnected {
        /// Why the connection ended.
        reason: String,
    },
    /// The storage server answered with an error this build has no variant for.
    #[error("the server reported: {message}")]
    Remote {
        /// The server's description of the failure.
        message: String,
    },
    /// Something inside durus failed that should not fail (a worker stopped without an
    /// answer, user code panicked inside an encoder). The operation did not complete;
    /// please report it if it is not explained by a panic of your own code.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl Error {
    /// Shorthand for a [`Error::Corrupt`] at `offset`.
    pub(crate) fn corrupt(offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            offset,
            reason: reason.into(),
        }
    }

    /// The [`Error::SnapshotAhead`] for `asked` beyond `last`.
    pub(crate) fn snapshot_ahead(asked: Tid, last: Tid) -> Self {
        Error::SnapshotAhead { asked, last }
    }

    /// True for [`Error::Conflict`]: the transaction may succeed if retried.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// The kind of the operating system's error behind an [`Error::Io`] or
    /// [`Error::Poisoned`], so that a full disk can be told from a failing one.
    ///
    /// ```
    /// let e = durus::Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull));
    /// assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull));
    /// assert_eq!(durus::Error::Closed.io_kind(), None);
    /// ```
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io(e) | Error::Poisoned { source: e, .. } => Some(e.kind()),
            _ => None,
        }
    }
}

fn fmt_oids(oids: &[Oid]) -> String {
    oid_list(oids, oids.len() as u64)
}

/// The first few of `oids`, which are some of `total`.
fn oid_list(oids: &[Oid], total: u64) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = oids.iter().take(SHOWN).map(|o| o.to_string()).collect();
    let shown = s.len() as u64;
    if total > shown {
        s.push(format!("... {} more", total - shown));
    }
    s.join(", ")
}
