//! The one error type every layer of durus returns.

use std::path::PathBuf;
use std::sync::Arc;

use crate::record::Oid;

/// Result alias used throughout durus.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in durus, as variants a caller can match on.
///
/// `Error` is `Clone` so that one failure (a failed sync, say) can be handed to every
/// task that was waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object with this oid exists (at the snapshot that was asked for).
    #[error("object {oid} not found")]
    NotFound {
        /// The oid that was asked for.
        oid: Oid,
    },
    /// The transaction read or wrote objects that another transaction committed after
    /// its snapshot.
    #[error("conflict on {} object(s): {}", oids.len(), fmt_oids(oids))]
    Conflict {
        /// The oids that were changed by others, in ascending order.
        oids: Vec<Oid>,
    },
    /// Bytes on disk (or handed to a parser) are not what durus wrote.
    #[error("corrupt data at offset {offset}: {reason}")]
    Corrupt {
        /// Byte offset of the damaged structure in the file (or input).
        offset: u64,
        /// What was wrong there.
        reason: String,
    },
    /// Another process holds the write lock of this file.
    #[error("{} is locked by another process", path.display())]
    Locked {
        /// The file that is locked.
        path: PathBuf,
    },
    /// The file is not a durus journal.
    #[error("not a durus journal: {reason}")]
    Format {
        /// Why the file was refused.
        reason: String,
    },
    /// The file was written by a newer format version than this build understands.
    #[error("journal format version {found} is newer than the supported version {supported}")]
    Version {
        /// The version found in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// The storage or database was closed.
    #[error("storage is closed")]
    Closed,
    /// The storage was opened read-only and a write was attempted.
    #[error("storage is read-only")]
    ReadOnly,
    /// An earlier write or sync failed, so the storage refuses further writes until it
    /// is reopened (data that was not synced is never treated as safe).
    #[error("storage is poisoned by an earlier write failure ({cause}); reopen it")]
    Poisoned {
        /// The failure that poisoned the storage.
        cause: String,
    },
    /// An object was loaded as a different type than the one stored.
    #[error("object {oid} is a {found}, not a {expected}")]
    WrongType {
        /// The object.
        oid: Oid,
        /// The type name asked for.
        expected: String,
        /// The type name stored.
        found: String,
    },
    /// A value could not be encoded, or stored bytes could not be decoded, as its type.
    #[error("cannot encode or decode {type_name}: {reason}")]
    Codec {
        /// The type involved (empty when unknown).
        type_name: String,
        /// What serde reported.
        reason: String,
    },
    /// The caller passed something that cannot be done (an unallocated oid, a snapshot
    /// from the future, a duplicate record).
    #[error("invalid request: {0}")]
    Invalid(String),
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

    /// True for [`Error::Conflict`]: the transaction may succeed if retried.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
}

fn fmt_oids(oids: &[Oid]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = oids.iter().take(SHOWN).map(|o| o.to_string()).collect();
    if oids.len() > SHOWN {
        s.push(format!("... {} more", oids.len() - SHOWN));
    }
    s.join(", ")
}
