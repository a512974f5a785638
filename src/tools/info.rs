//! [`info`]: a summary of a journal file, read without the write lock.

use std::path::Path;

use crate::error::{Error, Result};
use crate::journal::format::{FileHeader, DATA_START, ENTRY_HEADER};
use crate::journal::{Journal, JournalOptions};
use crate::record::Tid;

/// What [`info`] found in a journal.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreInfo {
    /// The file's format version (1, or 2 once packed).
    pub version: u32,
    /// The file's length on disk (preallocated filler included).
    pub file_bytes: u64,
    /// Where the journal's whole, written part ends.
    pub end: u64,
    /// Transactions in the file (a pack's copy of the kept objects counts as one).
    pub transactions: u64,
    /// Records in the file, every version of every object.
    pub records: u64,
    /// Index checkpoints in the file.
    pub checkpoints: u64,
    /// The last index checkpoint: its offset and the transaction it indexes up to (an
    /// open reads the index from it and scans only what follows).
    pub last_checkpoint: Option<(u64, Tid)>,
    /// The first transaction whose history the file holds, with its commit time
    /// (microseconds since the Unix epoch); `None` for an empty journal.
    pub first: Option<(Tid, u64)>,
    /// The last transaction and its commit time; `None` for an empty journal.
    pub last: Option<(Tid, u64)>,
    /// Objects: oids with a record.
    pub objects: u64,
    /// Objects reachable from the root.
    pub reachable: u64,
    /// Bytes of the reachable objects' newest records (framed).
    pub reachable_bytes: u64,
    /// About how many bytes a pack would free: the file's data less what the reachable
    /// objects' newest records take (a packed file also holds headers and an index).
    pub garbage_estimate: u64,
    /// Where a torn tail (a cut-off last write, which opening ignores) begins.
    pub torn_tail: Option<u64>,
}

/// Summarises the journal at `path`, reading it without the write lock (so beside a
/// writer too): it checks every block as [`Journal::verify_path`] does and walks the
/// references from the root as [`Journal::check_refs`] does.
///
/// # Errors
///
/// What opening a journal read-only or verifying it can fail with:
/// [`Error::Format`], [`Error::Version`], [`Error::Corrupt`] (damage, as
/// `durus verify` reports it), I/O errors.
pub fn info(path: impl AsRef<Path>) -> Result<StoreInfo> {
    let path = path.as_ref();
    let verified = Journal::verify_path(path)?;
    let j = Journal::open(
        path,
        JournalOptions {
            read_only: true,
            ..JournalOptions::default()
        },
    )?;
    let header = {
        use std::io::Read;
        let mut b = Vec::new();
        std::fs::File::open(path)?.take(DATA_START).read_to_end(&mut b)?;
        FileHeader::decode(&b)?.version
    };
    let txs = match j.transactions(Tid::ZERO) {
        Ok(t) => t,
        Err(Error::HistoryGone { oldest }) => j.transactions(Tid(oldest.0.saturating_sub(1)))?,
        Err(e) => return Err(e),
    };
    let refs = j.check_refs()?;
    let objects = j.oids()?.len() as u64;
    let live = refs.reachable_bytes + refs.reachable * ENTRY_HEADER as u64;
    let end = j.end_offset();
    let info = StoreInfo {
        version: header,
        file_bytes: std::fs::metadata(path)?.len(),
        end,
        transactions: verified.transactions,
        records: verified.records,
        checkpoints: verified.checkpoints,
        last_checkpoint: verified.last_checkpoint,
        first: txs.first().map(|t| (t.tid, t.timestamp)),
        last: txs.last().map(|t| (t.tid, t.timestamp)),
        objects,
        reachable: refs.reachable,
        reachable_bytes: refs.reachable_bytes,
        garbage_estimate: end.saturating_sub(DATA_START).saturating_sub(live),
        torn_tail: verified.torn_tail,
    };
    j.close()?;
    Ok(info)
}
