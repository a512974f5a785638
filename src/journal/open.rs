//! Creating, opening and closing a journal: file locks, the opening scan (recovery of a
//! torn tail), and what close leaves behind.

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::format::{FileHeader, PackRecord, Slot, DATA_START};
use super::io::{FileIo, OsFile};
use super::recovery::{read_slots, survey, Condition, ScanFrom};
use super::state::{State, Writer};
use super::{lock_error, Journal, JournalOptions};
use crate::clock::now_micros;
use crate::error::{Error, Result};

impl Journal {
    /// Opens (or creates) the journal at `path`.
    ///
    /// A writable open takes an exclusive advisory lock on the file and fails with
    /// [`Error::Locked`] if another process holds it.
    pub fn open(path: impl AsRef<Path>, opts: JournalOptions) -> Result<Journal> {
        let path = path.as_ref();
        if !opts.read_only && opts.create && !path.exists() {
            create_file(path)?;
        }
        let file = FsOpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .open(path)?;
        let locked = match (opts.read_only, opts.shared) {
            (true, _) => Ok(()),
            // Shared writers hold the file's lock shared, so an exclusive writer (or
            // `repair`) cannot open it under them, nor they under it.
            (false, true) => file.try_lock_shared(),
            (false, false) => file.try_lock(),
        };
        locked.map_err(|e| lock_error(path, e))?;
        if !opts.read_only {
            // A pack that did not finish left its file behind; holding the journal's
            // lock (in shared mode, the pack lock), nobody else can be writing it now.
            let packer = if opts.shared {
                super::pack::pack_lock(path).ok()
            } else {
                None
            };
            if !opts.shared || packer.is_some() {
                match std::fs::remove_file(super::pack::packing_path(path)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
        }
        let lock = if opts.read_only {
            None
        } else {
            Some(file.try_clone()?)
        };
        let id = file_id(&file)?;
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let append_lock = if opts.shared && !opts.read_only {
            let f = FsOpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)?;
            Some(OsFile::new(f))
        } else if opts.read_only {
            // A reader of a file shared by writers follows only what they have synced.
            File::open(&lock_path).ok().map(OsFile::new)
        } else {
            None
        };
        // The opening scan runs under the append lock, so that it sees no append in
        // progress and its verdict on the tail holds.
        if let Some(l) = &append_lock {
            l.file().lock()?;
        }
        let opened = Journal::open_io(Box::new(OsFile::new(file)), opts);
        if let Some(l) = &append_lock {
            let _ = l.file().unlock();
        }
        let mut j = opened?;
        j.path = Some(path.to_path_buf());
        {
            let mut w = crate::sync::lock(&j.writer);
            w.lock = lock;
            w.file_id = id;
        }
        j.append_lock = append_lock;
        Ok(j)
    }

    /// Opens a journal on any [`FileIo`] (an in-memory file, a fault-injecting one). An
    /// empty (0-byte) writable file is initialised. No lock is taken: the caller owns the file
    /// (in shared mode, the caller must keep appends of different handles apart).
    pub fn open_io(io: Box<dyn FileIo>, opts: JournalOptions) -> Result<Journal> {
        let io: Arc<dyn FileIo> = Arc::from(io);
        let mut file_len = io.len()?;
        // Only an empty file is a new journal: a short one that is not has lost its
        // header, and initialising it would silently throw its contents away.
        if file_len == 0 {
            if opts.read_only {
                return Err(Error::Format {
                    reason: "the file is empty".into(),
                });
            }
            io.write_all_at(&FileHeader::new(now_micros()).encode_region(), 0)?;
            io.sync_data()?;
            file_len = DATA_START;
        }
        let (st, writer, condition) = load_file(io, file_len)?;
        Ok(Journal {
            path: None,
            opts,
            state: RwLock::new(st),
            writer: Mutex::new(writer),
            poisoned: OnceLock::new(),
            closed: AtomicBool::new(false),
            generations: Default::default(),
            packing: Mutex::new(()),
            append_lock: None,
            opened_as: condition,
            commits: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            since_pack: AtomicU64::new(0),
            packs: AtomicU64::new(0),
            auto_pack_failures: AtomicU64::new(0),
        })
    }

    /// Writes a checkpoint if anything was appended since the last one, gives back the
    /// preallocated space past the end, and closes the journal: every later call fails
    /// with [`Error::Closed`].
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if a write or sync of this session failed: the journal is
    /// closed all the same, but some of the session's writes may not be on disk (every
    /// acknowledged commit is).
    pub fn close(&self) -> Result<()> {
        let mut w = self.lock_writer();
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let r = match self.poisoned.get() {
            Some(e) => Err(e.clone()),
            None if self.opts.read_only => Ok(()),
            None => self.finish_writing(&mut w),
        };
        self.closed.store(true, Ordering::Release);
        if let Some(f) = &w.lock {
            // Another process may open the file for writing as soon as this returns.
            let _ = f.unlock();
        }
        r
    }

    fn finish_writing(&self, w: &mut Writer) -> Result<()> {
        let _appending = self.lock_appends(w)?;
        if w.since_checkpoint > 0 {
            self.write_checkpoint(w)?;
        }
        // Trim our own filled space (a torn tail found at open is left for repair or
        // the next writer, since nothing was written over it).
        let end = self.read_state().end;
        let file = self.file();
        if w.torn_tail.is_none() && file.len()? > end {
            file.set_len(end)
                .map_err(|e| self.poison(e, "trimming preallocated space"))?;
            self.sync()
                .map_err(|e| self.poison(e, "syncing the trimmed journal"))?;
        }
        Ok(())
    }
}

/// Reads a journal file of `file_len` bytes into the readers' state and what its writer
/// needs to go on, refusing damage (anything but a torn tail). Opening uses it, and so
/// does a shared-mode process that finds another process's pack put a new file in place.
pub(super) fn load_file(io: Arc<dyn FileIo>, file_len: u64) -> Result<(State, Writer, Condition)> {
    let head = read_slots(&*io, file_len)?;
    if let Some(e) = head.damage.as_ref().and_then(Condition::to_error) {
        return Err(e);
    }
    let base = head.base.clone();
    let mut st = State::from_checkpoint(io.clone(), base.clone());
    st.history = head.pack.unwrap_or_default();
    let survey = survey(&*io, file_len, &head, ScanFrom::Checkpoint, |b| {
        st.apply_block(b.header, b.entries);
        Ok(())
    })?;
    if let Some(e) = survey.condition.to_error() {
        return Err(e);
    }
    let start = survey.start;
    st.end = survey.end;
    // What follows the end (a torn write, preallocated space, leftovers of an older
    // torn write) is cut off before the next append, so it can never be mistaken for
    // data later.
    let torn_tail = survey.spare.then_some(survey.end);
    // Never hand out an id the header knows was used, even if the transactions that
    // used it were lost (after a repair that accepted the loss).
    st.last_tid = st.last_tid.max(head.mark.last_tid);
    st.reserved_oid = st.reserved_oid.max(head.mark.next_oid);
    // This process has no range of its own yet: its first allocation reserves one past
    // every oid anyone has reserved.
    st.next_oid = st.reserved_oid;
    st.own_until = st.reserved_oid;
    let end = st.end;
    let writer = Writer {
        prealloc_end: if torn_tail.is_some() { end } else { file_len },
        torn_tail,
        // Without a checkpoint, any data at all is worth checkpointing on close.
        since_checkpoint: if base.is_some() || end == DATA_START {
            end - start
        } else {
            u64::MAX
        },
        slots: head.slots,
        handed_out: 0,
        lock: None,
        file_id: None,
        last_checkpoint_len: base.as_ref().map_or(0, |b| b.block_len),
    };
    Ok((st, writer, survey.condition))
}

/// Reads and checks the file header of a file of `file_len` bytes and decodes its two
/// checkpoint slots and (in a packed file) its pack record.
pub(super) fn read_head(
    io: &dyn FileIo,
    file_len: u64,
) -> Result<(FileHeader, [Option<Slot>; 2], Option<PackRecord>)> {
    let mut head = vec![0u8; file_len.min(DATA_START) as usize];
    io.read_exact_at(&mut head, 0)?;
    let header = FileHeader::decode(&head)?;
    if file_len < DATA_START {
        return Err(Error::corrupt(file_len, "file header region cut short"));
    }
    let pack = PackRecord::decode_region(&head, header.version)?;
    Ok((header, Slot::decode_both(&head), pack))
}

/// Which file (device, inode) `path` names now; `None` where the platform cannot tell
/// (then a pack by another process is never followed, and shared mode cannot pack).
pub(super) fn path_id(path: &Path) -> Result<Option<(u64, u64)>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Some((m.dev(), m.ino())))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}

/// Which file (device, inode) an open file is.
pub(super) fn file_id(file: &File) -> Result<Option<(u64, u64)>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(Some((m.dev(), m.ino())))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(None)
    }
}

/// Makes a directory entry durable after a file was created or renamed in it.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates a journal file atomically: the header is written and synced under a
/// temporary name, then linked into place, so no one ever sees a half-made file.
fn create_file(path: &Path) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".creating-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    {
        let f = FsOpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let io = OsFile::new(f);
        io.write_all_at(&FileHeader::new(now_micros()).encode_region(), 0)?;
        io.sync_data()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(path),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}
