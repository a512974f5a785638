//! [`backup`]: a full, verified copy of a journal file, as `durus backup` makes it.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::journal::format::MAGIC;
use crate::journal::{BackupOptions, BackupReport};
use crate::tools::census::open_read_only;

/// Backs the journal at `path` up to `dest` with [`Journal::backup_with`] (a
/// consistent copy, verified; a whole one renamed into place, or with
/// [`incremental`](BackupOptions::incremental) only what is new appended to an earlier
/// backup), opening it read-only so that a writer (another process, or a server) may go
/// on committing.
///
/// `dest` may be missing or an earlier backup (a durus journal), which a whole copy
/// replaces; anything else there is left alone.
///
/// [`Journal::backup_with`]: crate::journal::Journal::backup_with
///
/// # Errors
///
/// [`Error::Invalid`] if `dest` is a directory, a file that is not a durus journal, or
/// the source itself; [`Error::NotPrefix`] for an incremental backup onto a journal that
/// is not an earlier backup of this one; what opening the source and
/// [`Journal::backup_with`] can fail with.
pub fn backup(path: impl AsRef<Path>, dest: impl AsRef<Path>, opts: &BackupOptions) -> Result<BackupReport> {
    let dest = dest.as_ref();
    check_dest(dest)?;
    let j = open_read_only(path.as_ref())?;
    let made = j.backup_with(dest, opts);
    j.close()?;
    made
}

/// Refuses a `dest` that a copy must not replace.
fn check_dest(dest: &Path) -> Result<()> {
    let meta = match std::fs::metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if meta.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is a directory; name the backup file",
            dest.display()
        )));
    }
    let mut head = [0u8; 8];
    let is_journal = std::fs::File::open(dest)?
        .read_exact(&mut head)
        .is_ok_and(|()| head == MAGIC);
    if is_journal || meta.len() == 0 {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{} exists and is not a durus journal; not replacing it (remove it or name another file)",
        dest.display()
    )))
}
