//! Incremental backup: appending to an earlier backup only what the journal gained.
//!
//! A journal file is append-only: once written, the bytes of its blocks never change,
//! and only the two header slots are rewritten in place. A backup of it is those bytes
//! up to the end of the whole blocks, with the header as it was at that moment. So an
//! earlier backup of the *same file* is a byte prefix of the file as it is now, except
//! for its slots, and bringing it up to date means appending the bytes after its end
//! and then writing the new slots.
//!
//! What is checked before anything is written, so that a destination which is not such
//! a prefix is refused and left untouched:
//!
//! - its file header (magic, version, creation time, checksum) and pack record are the
//!   source's: the creation time names the file, and a pack writes a new file with a
//!   new one, so a backup of another store or of this store before a pack is told
//!   apart at once;
//! - it is no longer than the source's whole blocks, and every byte after the header
//!   region is the source's byte at the same offset (a whole comparison: it reads the
//!   backup and the source's prefix, but writes nothing; a repair that accepted a loss
//!   and then new commits can put other bytes at the same offsets, and a backup can be
//!   modified or damaged, and neither shows in the header).
//!
//! Any byte prefix passes, also one cut inside a block: appending the rest makes the
//! same copy. That is what makes an interrupted run harmless (below).
//!
//! The order of the writes keeps every state the destination can be left in usable:
//!
//! 1. the new bytes are appended after the old end and synced; the old slots name only
//!    what is before the old end, so if the run stops here (a crash, a kill) the
//!    destination opens as the earlier backup followed by a torn tail, which opening
//!    read-only ignores, repairing cuts, and the next incremental run completes;
//! 2. the two slots are written, each in its own 512-byte sector, and synced; each new
//!    slot describes bytes already synced, so either slot, old or new, is right;
//! 3. the whole result is verified as a fresh backup is.
//!
//! When a step fails with an error, the old slots are written back and the file is cut
//! to its old length, so the destination is again byte for byte the earlier backup.
//!
//! What this does not cover: a power loss during step 1 may keep the appended pages
//! that were not yet synced out of order, leaving a hole after the old end. The
//! bytes up to the old end are intact, but the destination can then read as damaged
//! after it (`durus repair --accept-loss` cuts it back to its whole blocks), and the
//! next incremental run refuses it (its bytes differ): take a full backup then.

use std::fs::OpenOptions as FsOpenOptions;
use std::path::Path;

use super::backup::{check_copy, copy_range, BackupPoint, BackupProgressFn, CHUNK};
use super::format::{FileHeader, DATA_START, SLOT_LEN, SLOT_OFFSETS};
use super::io::{FileIo, OsFile};
use super::{BackupOptions, BackupReport, Journal};
use crate::error::{Error, Result};

impl Journal {
    /// Backs this journal up to `dest` as `opts` say: a whole copy as
    /// [`backup_to`](Journal::backup_to) makes it, or, with
    /// [`incremental`](BackupOptions::incremental), only what is new appended to an
    /// earlier backup of this journal file at `dest` (see
    /// [`backup_incremental_into`](Journal::backup_incremental_into)). An incremental
    /// backup onto a missing or empty `dest` makes a whole copy.
    ///
    /// # Errors
    ///
    /// [`Error::NotPrefix`] if `dest` is not an earlier backup of this journal file
    /// (it is then left as it was); what [`backup_to`](Journal::backup_to) fails with.
    pub fn backup_with(&self, dest: impl AsRef<Path>, opts: &BackupOptions) -> Result<BackupReport> {
        let dest = dest.as_ref();
        let progress = opts.progress.as_ref();
        if !opts.incremental {
            return self.backup_whole(dest, progress);
        }
        self.check_open()?;
        self.check_not_self(dest)?;
        let file = match FsOpenOptions::new().read(true).write(true).open(dest) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.backup_whole(dest, progress),
            Err(e) => return Err(e.into()),
        };
        if file.metadata()?.len() == 0 {
            return self.backup_whole(dest, progress);
        }
        self.backup_incremental_with(&OsFile::new(file), progress)
    }

    /// Brings the earlier backup of this journal file in `out` up to date: checks that
    /// `out` is a prefix of this journal (its header, and every byte after the header
    /// region), appends what the journal gained since, syncs, writes the new header
    /// slots, syncs, and verifies the whole result as [`backup_into`](Journal::backup_into)
    /// does. The result is byte for byte the copy `backup_into` would write at the same
    /// moment. An empty `out` gets a whole copy. Commits wait only while the end and the
    /// header are read.
    ///
    /// If this fails with an error after writing began, `out` is put back as it was. If
    /// the process dies while appending, `out` holds the earlier backup with a torn
    /// tail: it opens as the earlier backup, and the next incremental backup finishes
    /// it.
    ///
    /// # Errors
    ///
    /// [`Error::NotPrefix`] (and `out` untouched) if `out` is not an earlier backup of
    /// this journal file: a backup of another store, of this one before a pack rewrote
    /// it, one longer than this journal, or one whose bytes differ from it; I/O errors;
    /// [`Error::Corrupt`] if the result does not check out.
    pub fn backup_incremental_into(&self, out: &dyn FileIo) -> Result<BackupReport> {
        self.backup_incremental_with(out, None)
    }

    /// [`backup_incremental_into`](Journal::backup_incremental_into), telling `progress`
    /// how it gets on (bytes compared, then appended).
    fn backup_incremental_with(
        &self,
        out: &dyn FileIo,
        progress: Option<&BackupProgressFn>,
    ) -> Result<BackupReport> {
        self.check_open()?;
        let old_len = out.len()?;
        if old_len == 0 {
            return self.backup_into_with(out, progress);
        }
        let point = self.backup_point()?;
        let mut old_head = vec![0u8; DATA_START as usize];
        check_prefix(out, old_len, &point, &mut old_head, progress)?;
        let written = point.end - old_len;
        if let Err(e) = append_then_slots(out, old_len, &point, progress) {
            // Put the earlier backup back; a failure here leaves at worst the state a
            // crash would (the old bytes, a tail after them, either slot), and the error
            // that stopped the backup is the one to report.
            let _ = restore(out, old_len, &old_head);
            return Err(e);
        }
        Ok(BackupReport {
            bytes: point.end,
            last_tid: point.last_tid,
            written,
        })
    }
}

/// Checks that `out` (of `old_len` bytes) is a prefix of the journal at `point`, reading
/// its header region into `old_head`.
fn check_prefix(
    out: &dyn FileIo,
    old_len: u64,
    point: &BackupPoint,
    old_head: &mut [u8],
    progress: Option<&BackupProgressFn>,
) -> Result<()> {
    if old_len < DATA_START {
        return Err(not_prefix(format!(
            "it is {old_len} bytes long, shorter than a journal's header region ({DATA_START} bytes)"
        )));
    }
    out.read_exact_at(old_head, 0)?;
    let theirs =
        FileHeader::decode(old_head).map_err(|e| not_prefix(format!("it is not a durus journal ({e})")))?;
    let ours = FileHeader::decode(&point.head)?;
    if theirs.created != ours.created {
        return Err(not_prefix(format!(
            "it is a copy of a journal file created at {} (microseconds since the epoch), \
             this one was created at {}: a backup of another store, or of this store \
             before a pack rewrote it",
            theirs.created, ours.created
        )));
    }
    if let Some(at) = first_difference(old_head, &point.head, 0) {
        return Err(not_prefix(format!("its header differs at offset {at}")));
    }
    if old_len > point.end {
        return Err(not_prefix(format!(
            "it is {old_len} bytes long, but this journal's whole blocks end at {}",
            point.end
        )));
    }
    let mut theirs = vec![0u8; CHUNK];
    let mut ours = vec![0u8; CHUNK];
    let mut at = DATA_START;
    while at < old_len {
        let n = ((old_len - at) as usize).min(CHUNK);
        out.read_exact_at(&mut theirs[..n], at)?;
        point.file.read_exact_at(&mut ours[..n], at)?;
        if let Some(d) = first_difference(&theirs[..n], &ours[..n], at) {
            return Err(not_prefix(format!(
                "its byte at offset {d} differs from this journal's"
            )));
        }
        at += n as u64;
        if let Some(p) = progress {
            p(at, point.end);
        }
    }
    Ok(())
}

/// The offset (counting from `base`) of the first byte where `a` and `b` differ, slots
/// aside (they are rewritten in place, so they may differ in a prefix).
fn first_difference(a: &[u8], b: &[u8], base: u64) -> Option<u64> {
    let in_slot = |o: u64| {
        SLOT_OFFSETS
            .iter()
            .any(|&s| (s..s + SLOT_LEN as u64).contains(&o))
    };
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| (base + i as u64, x, y))
        .find(|&(o, x, y)| x != y && !in_slot(o))
        .map(|(o, _, _)| o)
}

/// Steps 1 to 3 of the module docs: append and sync, write the slots and sync, verify.
fn append_then_slots(
    out: &dyn FileIo,
    old_len: u64,
    point: &BackupPoint,
    progress: Option<&BackupProgressFn>,
) -> Result<()> {
    copy_range(&*point.file, out, old_len, point.end, progress)?;
    out.sync_data()?;
    write_slots(out, &point.head)?;
    out.sync_data()?;
    check_copy(out, point.end)
}

/// Writes the two slots of the header region `head`, one at a time.
fn write_slots(out: &dyn FileIo, head: &[u8]) -> Result<()> {
    for s in SLOT_OFFSETS {
        let s = s as usize;
        out.write_all_at(&head[s..s + SLOT_LEN], s as u64)?;
    }
    Ok(())
}

/// Puts the earlier backup back: its slots, and its length.
fn restore(out: &dyn FileIo, old_len: u64, old_head: &[u8]) -> Result<()> {
    write_slots(out, old_head)?;
    out.set_len(old_len)?;
    out.sync_data()?;
    Ok(())
}

fn not_prefix(reason: String) -> Error {
    Error::NotPrefix { reason }
}
