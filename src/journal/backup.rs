//! Online backup: a consistent copy of a live journal, right by construction.
//!
//! A raw byte copy (`cp`) of a journal that is being written can catch one write half
//! done and a later one whole, which reads as damage in the middle. A backup instead
//! learns from the engine where the whole, written part of the journal ends (under the
//! writer's lock, together with the header it must be copied with), copies only up to
//! there, and checks the copy before putting it in place.

use std::fmt;
use std::fs::OpenOptions as FsOpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::DATA_START;
use super::io::{FileIo, OsFile};
use super::open::sync_dir;
use super::Journal;
use crate::error::{Error, Result};
use crate::record::Tid;

/// What [`Journal::backup_to`] copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// Bytes in the copy.
    pub bytes: u64,
    /// The last transaction the copy holds: every transaction committed before the
    /// backup started, and maybe some committed while it ran.
    pub last_tid: Tid,
    /// Bytes this backup wrote: the whole copy, or for an
    /// [incremental](BackupOptions::incremental) one only what it appended (the header
    /// slots aside).
    pub written: u64,
}

/// A callback told how a backup is getting on: bytes copied (or, for an incremental
/// backup, compared or appended) so far, and how many there are in all.
pub type BackupProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// How [`Journal::backup_with`] makes its copy.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct BackupOptions {
    /// Append only what is new to an earlier backup of the same journal file at the
    /// destination, instead of writing a whole copy (see
    /// [`Journal::backup_incremental_into`]). A missing or empty destination gets a
    /// whole copy.
    pub incremental: bool,
    /// Called after each piece of the copy with the progress so far.
    pub progress: Option<BackupProgressFn>,
}

impl BackupOptions {
    /// Options for an incremental backup.
    pub fn incremental() -> BackupOptions {
        BackupOptions {
            incremental: true,
            ..BackupOptions::default()
        }
    }
}

impl fmt::Debug for BackupOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupOptions")
            .field("incremental", &self.incremental)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Largest piece copied per read and write.
pub(super) const CHUNK: usize = 1 << 20;

impl Journal {
    /// Writes a consistent copy of this journal to `dest` while commits go on: the copy
    /// holds every transaction committed before the call (and perhaps some committed
    /// during it), verifies clean, and opens like the original. The copy is written
    /// under a temporary name, synced, checked, and renamed into place, so `dest` never
    /// holds a partial copy. Commits wait only while the end and the header are read,
    /// not during the copy.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if `dest` is this journal's own file; I/O errors of the copy;
    /// [`Error::Corrupt`] if the copy does not check out (which means the source reads
    /// back differently than it was written: its disk is failing).
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_whole(dest.as_ref(), None)
    }

    /// [`backup_to`](Journal::backup_to), telling `progress` how it gets on.
    pub(super) fn backup_whole(
        &self,
        dest: &Path,
        progress: Option<&BackupProgressFn>,
    ) -> Result<BackupReport> {
        self.check_open()?;
        self.check_not_self(dest)?;
        let mut tmp = dest.as_os_str().to_owned();
        tmp.push(format!(".backup-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let made = FsOpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(Error::from)
            .and_then(|f| self.backup_into_with(&OsFile::new(f), progress));
        let report = match made {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, dest)?;
        sync_dir(dest)?;
        Ok(report)
    }

    /// Refuses a `dest` that is this journal's own file.
    pub(super) fn check_not_self(&self, dest: &Path) -> Result<()> {
        if let (Some(own), Ok(there)) = (&self.path, dest.canonicalize()) {
            if own.canonicalize().is_ok_and(|own| own == there) {
                return Err(Error::Invalid(format!(
                    "cannot back {} up onto itself",
                    dest.display()
                )));
            }
        }
        Ok(())
    }

    /// Writes a consistent copy of this journal into `out` (any [`FileIo`], whose old
    /// contents are replaced), syncs it and checks it, as
    /// [`backup_to`](Journal::backup_to) does before renaming its copy into place.
    pub fn backup_into(&self, out: &dyn FileIo) -> Result<BackupReport> {
        self.backup_into_with(out, None)
    }

    /// [`backup_into`](Journal::backup_into), telling `progress` how it gets on.
    pub(super) fn backup_into_with(
        &self,
        out: &dyn FileIo,
        progress: Option<&BackupProgressFn>,
    ) -> Result<BackupReport> {
        self.check_open()?;
        let BackupPoint {
            head,
            end,
            last_tid,
            file,
        } = self.backup_point()?;
        out.set_len(0)?;
        out.write_all_at(&head, 0)?;
        copy_range(&*file, out, DATA_START, end, progress)?;
        out.sync_data()?;
        check_copy(out, end)?;
        Ok(BackupReport {
            bytes: end,
            last_tid,
            written: end,
        })
    }

    /// The header region and the end of the whole blocks, read together while nobody
    /// can append or rewrite a slot, and the last tid they hold. The bytes before the
    /// end never change afterwards.
    pub(super) fn backup_point(&self) -> Result<BackupPoint> {
        let mut w = self.lock_writer();
        // Shared mode: other processes append and write slots only under the append
        // lock, and taking it also catches up with what they appended.
        let _appending = if self.opts.read_only {
            None
        } else {
            Some(self.lock_appends(&mut w)?)
        };
        let mut head = vec![0u8; DATA_START as usize];
        self.file().read_exact_at(&mut head, 0)?;
        if self.opts.read_only {
            // Another process may be writing. A slot names only what was written
            // before it, so catching up after reading the header reaches at least as
            // far as the header promises.
            self.catch_up_to_synced()?;
        }
        let st = self.read_state();
        Ok(BackupPoint {
            head,
            end: st.end,
            last_tid: Tid(st.last_tid),
            file: st.file.clone(),
        })
    }
}

/// What a backup copies: the header region, the end of the whole blocks, the last tid
/// before that end, and the file generation they were read from.
pub(super) struct BackupPoint {
    pub head: Vec<u8>,
    pub end: u64,
    pub last_tid: Tid,
    pub file: Arc<dyn FileIo>,
}

/// Checks the whole copy in `out` (every checksum, as [`verify`](super::verify())
/// does) and that it is an intact journal ending exactly at `end`.
pub(super) fn check_copy(out: &dyn FileIo, end: u64) -> Result<()> {
    let report = super::verify(out)?;
    if report.torn_tail.is_some() || report.end != end {
        return Err(Error::corrupt(
            report.end,
            format!(
                "the backup copy of {end} bytes reads back as ending at {} (torn tail: {:?})",
                report.end, report.torn_tail
            ),
        ));
    }
    Ok(())
}

/// Copies the bytes `from..end` of `file` to the same offsets of `out`, a piece at a
/// time, telling `progress` after each (out of `end`).
pub(super) fn copy_range(
    file: &dyn FileIo,
    out: &dyn FileIo,
    from: u64,
    end: u64,
    progress: Option<&BackupProgressFn>,
) -> Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = from;
    while at < end {
        let n = ((end - at) as usize).min(CHUNK);
        file.read_exact_at(&mut buf[..n], at)?;
        out.write_all_at(&buf[..n], at)?;
        at += n as u64;
        if let Some(p) = progress {
            p(at, end);
        }
    }
    Ok(())
}
