//! Importing a Python Durus 4.3 database file into a new journal.
//!
//! [`import_durus`] reads a Durus file in either of its formats, `SHELF-1` (Durus's
//! default `FileStorage`, packed or not) and `DFS20` (`FileStorage2`), and writes a
//! new journal holding the newest record of every oid, byte for byte as Durus stored
//! it (the pickles and the refs untouched), under the same oids, with the allocator
//! past the highest one. Served by [`Server`](crate::server::Server) (`durus serve`),
//! the journal answers Python Durus clients exactly as the original file did.
//!
//! Durus's record framing is durus's own ([`Record`]), so records are copied, not
//! converted. Old versions are not copied: the journal starts its history at the
//! import. The journal is written under a temporary name (`<dest>.importing`), synced
//! and renamed into place, so `dest` never holds part of an import, and a failed
//! import leaves nothing behind.
//!
//! ```no_run
//! use durus::import::{import_durus, ImportOptions};
//!
//! let report = import_durus("old.durus", "new.durus", &ImportOptions::default())?;
//! println!("{} objects, highest oid {:?}", report.objects, report.max_oid);
//! # Ok::<(), durus::Error>(())
//! ```

mod dfs20;
mod scan;
mod shelf;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::journal::{Durability, Journal, JournalOptions};
use crate::record::{CommitRequest, Oid, Record};

use self::scan::{Location, Reader, Scan};

/// The two file formats of Python Durus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurusFormat {
    /// `SHELF-1`: `durus.file_storage.FileStorage`, the default since Durus 3.8.
    Shelf,
    /// `DFS20`: `durus.file_storage2.FileStorage2`, the default before.
    FileStorage2,
}

impl DurusFormat {
    /// The name Durus's files carry at their start: `SHELF-1` or `DFS20`.
    pub fn name(self) -> &'static str {
        match self {
            DurusFormat::Shelf => "SHELF-1",
            DurusFormat::FileStorage2 => "DFS20",
        }
    }

    /// Tells the format from a file's first bytes, if it is a Durus file.
    pub fn detect(head: &[u8]) -> Option<DurusFormat> {
        if head.starts_with(shelf::PREFIX) {
            Some(DurusFormat::Shelf)
        } else if head.starts_with(dfs20::MAGIC) {
            Some(DurusFormat::FileStorage2)
        } else {
            None
        }
    }
}

impl fmt::Display for DurusFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The end of a source file that is not a whole transaction: what a crash while Durus
/// was committing leaves (Durus does not sync its commits by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Where it starts: the end of the last whole transaction.
    pub offset: u64,
    /// Its length, to the end of the file.
    pub bytes: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// How far an import has got, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportProgress {
    /// What it is doing.
    pub phase: ImportPhase,
    /// Bytes of the source read so far in this phase (of [`ImportProgress::total`]).
    pub bytes: u64,
    /// Bytes this phase reads in all: the source's length while reading its framing,
    /// the newest records' bytes while writing.
    pub total: u64,
    /// Records read (scanning) or objects written (writing) so far.
    pub records: u64,
}

/// The phases of an import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportPhase {
    /// Reading the source's framing to find the newest record of every oid.
    Scanning,
    /// Copying those records into the journal.
    Writing,
}

/// A progress callback.
pub type ImportProgressFn = Arc<dyn Fn(&ImportProgress) + Send + Sync>;

/// How to import.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Refuse a source with a torn last transaction ([`Error::Corrupt`] at its
    /// offset) instead of leaving it out.
    pub refuse_torn: bool,
    /// Called as the import proceeds (at most every few thousand records).
    pub progress: Option<ImportProgressFn>,
}

impl fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportOptions")
            .field("refuse_torn", &self.refuse_torn)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What [`import_durus`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// The source's format.
    pub format: DurusFormat,
    /// The source's length.
    pub source_bytes: u64,
    /// Whole transactions in the source (a shelf's first one, which a pack writes,
    /// included).
    pub source_transactions: u64,
    /// Records in the source, every version of every oid.
    pub source_records: u64,
    /// Objects written: one per oid, its newest record.
    pub objects: u64,
    /// Bytes of those records (framed).
    pub object_bytes: u64,
    /// The highest oid written (the journal hands out oids after it), if any.
    pub max_oid: Option<Oid>,
    /// Whether the source holds the root object (oid 0), which Durus clients need.
    pub has_root: bool,
    /// The source's torn last transaction, left out of the import.
    pub torn: Option<TornTail>,
    /// The journal's length.
    pub journal_bytes: u64,
}

/// Records per journal transaction written by an import, at most.
const BATCH_RECORDS: usize = 20_000;
/// Record bytes per journal transaction written by an import, about.
const BATCH_BYTES: u64 = 8 << 20;

/// Imports the Python Durus database file `source` into a new journal at `dest`.
///
/// # Errors
///
/// - [`Error::NotDurus`] if `source` is not a Durus database file (neither format's
///   magic); nothing is written.
/// - [`Error::Invalid`] if `dest` exists.
/// - [`Error::Corrupt`] if the source's framing is damaged anywhere but at its end, or
///   a record is not framed as Durus frames records, or (with
///   [`ImportOptions::refuse_torn`]) the source ends in a torn transaction.
/// - I/O errors reading the source or writing the journal.
///
/// On any error `dest` is left as it was (absent), and the temporary file removed.
pub fn import_durus(
    source: impl AsRef<Path>,
    dest: impl AsRef<Path>,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let (source, dest) = (source.as_ref(), dest.as_ref());
    let mut r = Reader::new(File::open(source)?)?;
    let mut head = [0u8; 8];
    let n = head.len().min(usize::try_from(r.len()).unwrap_or(head.len()));
    let format = match r.read(&mut head[..n])? {
        Ok(()) => DurusFormat::detect(&head[..n]),
        Err(_) => None,
    };
    let Some(format) = format else {
        return Err(not_durus(source, &head[..n]));
    };
    if dest.exists() {
        return Err(Error::Invalid(format!(
            "{} exists; an import writes a new journal",
            dest.display()
        )));
    }
    let scan = scan_source(&mut r, format, opts)?;
    if let (Some(t), true) = (&scan.torn, opts.refuse_torn) {
        return Err(Error::corrupt(
            t.offset,
            format!("the source ends in a torn transaction: {}", t.reason),
        ));
    }
    let tmp = temp_path(dest);
    remove_if_there(&tmp)?;
    let written = write_journal(&mut r, &scan, &tmp, opts).and_then(|report| {
        std::fs::rename(&tmp, dest)?;
        crate::journal::sync_dir(dest)?;
        Ok(report)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads the source's framing.
fn scan_source(r: &mut Reader, format: DurusFormat, opts: &ImportOptions) -> Result<Scan> {
    let total = r.len();
    let mut last = 0u64;
    let mut progress = |bytes: u64, records: u64| {
        if let Some(p) = &opts.progress {
            if records >= last + 4096 || bytes == total {
                last = records;
                p(&ImportProgress {
                    phase: ImportPhase::Scanning,
                    bytes,
                    total,
                    records,
                });
            }
        }
    };
    match format {
        DurusFormat::Shelf => shelf::scan(r, &mut progress),
        DurusFormat::FileStorage2 => dfs20::scan(r, &mut progress),
    }
}

/// Writes the newest records into a new journal at `path` and closes it.
fn write_journal(r: &mut Reader, scan: &Scan, path: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    let mut newest: Vec<(u64, Location)> = scan.newest.iter().map(|(&o, &l)| (o, l)).collect();
    // In file order, so the source is read forward.
    newest.sort_unstable_by_key(|(_, l)| l.offset);
    let total: u64 = newest.iter().map(|(_, l)| l.len).sum();
    let max_oid = newest.iter().map(|&(o, _)| o).max().map(Oid);
    let j = Journal::open(
        path,
        JournalOptions {
            durability: Durability::Eventual,
            // One checkpoint, on close: the import is written in one go.
            checkpoint_every: None,
            ..JournalOptions::default()
        },
    )?;
    let copied = copy_records(r, &j, &newest, max_oid, total, opts);
    let closed = j.close();
    copied?;
    closed?;
    Ok(ImportReport {
        format: scan.format,
        source_bytes: scan.len,
        source_transactions: scan.transactions,
        source_records: scan.records,
        objects: newest.len() as u64,
        object_bytes: total,
        max_oid,
        has_root: scan.newest.contains_key(&Oid::ROOT.0),
        torn: scan.torn.clone(),
        journal_bytes: std::fs::metadata(path)?.len(),
    })
}

/// Commits `newest` (in batches) into `j`, checking each record's framing.
fn copy_records(
    r: &mut Reader,
    j: &Journal,
    newest: &[(u64, Location)],
    max_oid: Option<Oid>,
    total: u64,
    opts: &ImportOptions,
) -> Result<()> {
    if let Some(max) = max_oid {
        j.allocate_through(max)?;
    }
    let (mut done, mut bytes) = (0u64, 0u64);
    for batch in batches(newest) {
        let mut records = Vec::with_capacity(batch.len());
        for &(oid, loc) in batch {
            let framed = r.read_at(loc.offset, loc.len)?;
            let rec = Record::decode(&framed).map_err(|e| at_offset(e, loc.offset))?;
            if rec.oid.0 != oid {
                return Err(Error::corrupt(
                    loc.offset,
                    format!("a record of oid {} filed under oid {oid}", rec.oid),
                ));
            }
            records.push(rec);
            bytes += loc.len;
        }
        done += records.len() as u64;
        j.commit(&CommitRequest {
            snapshot: j.last_tid()?,
            records,
            ..CommitRequest::default()
        })?;
        if let Some(p) = &opts.progress {
            p(&ImportProgress {
                phase: ImportPhase::Writing,
                bytes,
                total,
                records: done,
            });
        }
    }
    Ok(())
}

/// Splits `newest` into journal transactions of bounded size.
fn batches(newest: &[(u64, Location)]) -> impl Iterator<Item = &[(u64, Location)]> {
    let mut rest = newest;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0u64;
        let mut n = 0;
        while n < rest.len() && n < BATCH_RECORDS && (n == 0 || bytes < BATCH_BYTES) {
            bytes += rest[n].1.len;
            n += 1;
        }
        let (now, later) = rest.split_at(n);
        rest = later;
        Some(now)
    })
}

/// A record's framing error, moved from the record's own offsets to the file's.
fn at_offset(e: Error, base: u64) -> Error {
    match e {
        Error::Corrupt { offset, reason } => Error::Corrupt {
            offset: base + offset,
            reason: format!("a Durus record: {reason}"),
        },
        e => e,
    }
}

/// The error for a source that is neither Durus format.
fn not_durus(path: &Path, head: &[u8]) -> Error {
    let what = if head.is_empty() {
        "it is empty".to_string()
    } else if head == crate::journal::format::MAGIC {
        "it is a durus journal already".to_string()
    } else {
        format!(
            "it begins with \"{}\", not SHELF-1 (FileStorage) or DFS20 (FileStorage2)",
            head.escape_ascii()
        )
    };
    Error::NotDurus {
        reason: format!("{}: {what}", path.display()),
    }
}

/// `<dest>.importing`.
fn temp_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".importing");
    PathBuf::from(s)
}

fn remove_if_there(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
