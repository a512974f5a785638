//! The native file format: an append-only journal of transactions with an oid index.
//!
//! This layer is pure and synchronous: it knows nothing of async or of object types.
//! [`Journal`] is the engine; the storage layer makes it async by running its calls on
//! the blocking pool. The byte layout is documented in [`format`](mod@format); where a journal ends
//! and how damage is classified is decided in [`scan`].
//!
//! By default one process writes a journal at a time (an OS advisory lock enforces it)
//! and any number may open it read-only. In shared mode ([`JournalOptions::shared`])
//! any number of processes read and write it with no server: a lock file is held only
//! while a process appends, and each process catches up with what the others appended
//! before it appends and whenever [`Journal::refresh`] is called.

pub mod format;
pub mod index;
pub mod io;
pub mod scan;
pub mod sim;
mod verify;

pub use verify::{verify, VerifyReport};

use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions as FsOpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use self::format::{
    decode_entry, encode_entry, fill, BlockHeader, BlockKind, FileHeader, Slot, BLOCK_HEADER, DATA_START,
    ENTRY_HEADER, INDEX_ENTRY, SLOT_LEN, SLOT_OFFSETS, TRAILER,
};
use self::index::{BaseIndex, Loc, Overlay};
use self::io::{FileIo, OsFile};
use self::scan::{Scanner, Step};
use crate::error::{Error, Result};
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, OidMap, Record, Tid, TxInfo};

/// How far a commit goes before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// A commit returns after its bytes are on stable storage (`fdatasync`). Survives
    /// process crashes and power loss. The default.
    #[default]
    Immediate,
    /// A commit returns after its bytes are handed to the operating system, without a
    /// sync. Survives a crash of the process but not of the machine; after a power loss
    /// the file may need [`Journal::repair`]. For bulk loads and tests.
    Eventual,
}

/// How to open a journal.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// Sync policy for commits.
    pub durability: Durability,
    /// Open without the write lock; every write fails with [`Error::ReadOnly`].
    pub read_only: bool,
    /// Share the file with other processes that open it in shared mode, with no server.
    ///
    /// Instead of holding the file's write lock for as long as it is open, a process
    /// takes the lock of a lock file next to it (`<path>.lock`, an OS advisory lock)
    /// only while it appends. Under that lock it first reads what other processes
    /// appended, so conflicts with their commits are found exactly; between commits,
    /// [`Journal::refresh`] catches up. A process killed while appending releases the
    /// lock with its death; its partial append is ignored by readers and cut off by the
    /// next writer. Opening in exclusive mode fails with [`Error::Locked`] while shared
    /// writers have the file open, and the other way round.
    pub shared: bool,
    /// Create the file if it does not exist (ignored when read-only).
    pub create: bool,
    /// Grow the file with filler this many bytes at a time ahead of the data, so that a
    /// commit's sync does not also have to make a new file size durable. 0 turns it off.
    pub preallocate: u64,
    /// Write an index checkpoint after this many bytes have been appended since the last
    /// one (and at least twice the last checkpoint's size; always on close), bounding
    /// the work of the next open after a crash. `None`: only on close.
    pub checkpoint_every: Option<u64>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            durability: Durability::Immediate,
            read_only: false,
            shared: false,
            create: true,
            preallocate: 4 << 20,
            checkpoint_every: Some(256 << 20),
        }
    }
}

/// Counters of the work a journal has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Transactions committed.
    pub commits: u64,
    /// Write groups appended (each one positioned write, followed by one sync when
    /// durable).
    pub groups: u64,
    /// Sync calls made to the operating system.
    pub syncs: u64,
    /// Bytes written (including preallocation).
    pub bytes_written: u64,
}

/// What [`Journal::repair`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// Offset the file was truncated at, if it had a torn tail.
    pub truncated_at: Option<u64>,
    /// Bytes removed.
    pub removed: u64,
    /// The last transaction id kept.
    pub last_tid: Tid,
}

/// How many changed oids the in-memory change log keeps before older transactions have
/// to be read back from the file to answer [`Journal::changes_since`].
const CHANGE_LOG_LIMIT: usize = 1 << 20;
/// Entries per checkpoint index page.
const PAGE_ENTRIES: u64 = 4096;
/// Oids reserved ahead of use at least, so that most allocations need no write. The
/// reservation grows with what this process has handed out (up to
/// `OID_RESERVE_AHEAD_MAX`), so a busy allocator writes rarely and a process that
/// allocates little leaves only a small gap in the oid space behind it.
const OID_RESERVE_AHEAD: u64 = 64;
const OID_RESERVE_AHEAD_MAX: u64 = 1 << 16;

/// A write group being assembled: its bytes, and what its earlier members wrote.
struct Group {
    /// Oids written by earlier members: where their entry goes, and its tid.
    written: OidMap<(Loc, u64)>,
    last_tid: u64,
    last_timestamp: u64,
    bytes: Vec<u8>,
}

/// One member of a write group that passed validation.
struct Planned {
    tid: u64,
    timestamp: u64,
    entries: Vec<(Oid, Loc)>,
}

/// Everything readers need, behind one read-write lock held only for memory lookups
/// (and, at worst, the first read of a checkpoint index page).
struct State {
    overlay: Overlay,
    base: Option<Arc<BaseIndex>>,
    last_tid: u64,
    last_timestamp: u64,
    /// Offset where the next block goes.
    end: u64,
    /// Next oid to hand out in this process.
    next_oid: u64,
    /// The end of this process's reserved range: `next_oid..own_until` are ours.
    own_until: u64,
    /// Every oid below this is durably recorded as handed out (by any process).
    reserved_oid: u64,
    /// Transactions since `log_from` (tid, timestamp, oids), for change queries.
    log: VecDeque<(u64, u64, Box<[Oid]>)>,
    log_oids: usize,
    log_from: u64,
}

/// State only the writer touches.
struct Writer {
    /// The file is zero-filled up to here.
    prealloc_end: u64,
    /// A torn tail at this offset must be cut off before the next append.
    torn_tail: Option<u64>,
    since_checkpoint: u64,
    /// Size of the last checkpoint written (or found on open).
    last_checkpoint_len: u64,
    slots: [Option<Slot>; 2],
    /// Oids this process has handed out (sizes the reservations).
    handed_out: u64,
}

/// The journal engine: a synchronous, thread-safe handle on one journal file.
///
/// Loads run in parallel from many threads; commits are serialised.
pub struct Journal {
    io: Box<dyn FileIo>,
    path: Option<PathBuf>,
    opts: JournalOptions,
    state: RwLock<State>,
    writer: Mutex<Writer>,
    poisoned: OnceLock<String>,
    closed: AtomicBool,
    /// A handle on the locked file description, to release the file's lock on close.
    lock: Option<File>,
    /// Shared mode: the lock file, locked only while this process appends.
    append_lock: Option<OsFile>,
    commits: AtomicU64,
    groups: AtomicU64,
    syncs: AtomicU64,
    bytes_written: AtomicU64,
}

/// Releases the lock file's lock when an append (or a failed attempt) is over.
struct AppendGuard<'a>(Option<&'a File>);

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.0 {
            let _ = f.unlock();
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn eof_as_corrupt(e: std::io::Error, offset: u64, what: &str) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Error::corrupt(offset, format!("{what} extends past the end of the file"))
    } else {
        e.into()
    }
}

/// Makes a directory entry durable after a file was created or renamed in it.
fn sync_dir(path: &Path) -> Result<()> {
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
        match locked {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let lock = if opts.read_only {
            None
        } else {
            Some(file.try_clone()?)
        };
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
        j.lock = lock;
        j.append_lock = append_lock;
        Ok(j)
    }

    /// Opens a journal on any [`FileIo`] (an in-memory file, a fault-injecting one). An
    /// empty writable file is initialised. No lock is taken: the caller owns the file
    /// (in shared mode, the caller must keep appends of different handles apart).
    pub fn open_io(io: Box<dyn FileIo>, opts: JournalOptions) -> Result<Journal> {
        let mut file_len = io.len()?;
        let mut head = vec![0u8; (file_len.min(DATA_START)) as usize];
        io.read_exact_at(&mut head, 0)?;
        if file_len < DATA_START && head.iter().all(|&b| b == 0) {
            if opts.read_only {
                return Err(Error::Format {
                    reason: "the file is empty".into(),
                });
            }
            let region = FileHeader::new(now_micros()).encode_region();
            io.write_all_at(&region, 0)?;
            io.sync_data()?;
            head = region;
            file_len = DATA_START;
        }
        FileHeader::decode(&head)?;
        if file_len < DATA_START {
            return Err(Error::corrupt(file_len, "file header region cut short"));
        }
        let slots = [
            Slot::decode(&head[SLOT_OFFSETS[0] as usize..SLOT_OFFSETS[0] as usize + SLOT_LEN]),
            Slot::decode(&head[SLOT_OFFSETS[1] as usize..SLOT_OFFSETS[1] as usize + SLOT_LEN]),
        ];
        let base = Self::load_checkpoint(&*io, file_len, &slots)?;
        let (start, mut st) = match &base {
            Some(b) => (
                b.block_offset + b.block_len,
                State {
                    overlay: Overlay::default(),
                    last_tid: b.header.tid,
                    last_timestamp: b.header.timestamp,
                    end: 0,
                    next_oid: 0,
                    own_until: 0,
                    reserved_oid: b.header.next_oid.max(1),
                    log: VecDeque::new(),
                    log_oids: 0,
                    log_from: b.header.tid,
                    base: Some(b.clone()),
                },
            ),
            None => (
                DATA_START,
                State {
                    overlay: Overlay::default(),
                    base: None,
                    last_tid: 0,
                    last_timestamp: 0,
                    end: 0,
                    next_oid: 0,
                    own_until: 0,
                    reserved_oid: 1,
                    log: VecDeque::new(),
                    log_oids: 0,
                    log_from: 0,
                },
            ),
        };
        let mut torn_tail = None;
        let mut scanner = Scanner::new(&*io, file_len, start, st.last_tid);
        loop {
            match scanner.next_step()? {
                Step::Block { header, entries, .. } => st.apply_block(&header, &entries),
                Step::End { offset, .. } => {
                    st.end = offset;
                    if file_len > offset {
                        // Zeros mark the end, but a zeroed stretch in the middle of a
                        // journal must not silently hide what follows it.
                        if let Some(later) = scan::later_damage(&*io, file_len, offset)? {
                            return Err(Error::corrupt(
                                offset,
                                format!("the journal reads as ending here, but an intact block follows at {later}"),
                            ));
                        }
                        // Whatever follows (preallocated zeros, leftovers of an older torn
                        // write) is cut off before the next append, so it can never be
                        // mistaken for data later.
                        torn_tail = Some(offset);
                    }
                    break;
                }
                Step::Torn { offset, .. } => {
                    st.end = offset;
                    torn_tail = Some(offset);
                    break;
                }
            }
        }
        drop(scanner);
        // This process has no range of its own yet: its first allocation reserves one
        // past every oid anyone has reserved.
        st.next_oid = st.reserved_oid;
        st.own_until = st.reserved_oid;
        let end = st.end;
        let prealloc_end = if torn_tail.is_some() { end } else { file_len };
        Ok(Journal {
            io,
            path: None,
            opts,
            state: RwLock::new(st),
            writer: Mutex::new(Writer {
                prealloc_end,
                torn_tail,
                // Without a checkpoint, any data at all is worth checkpointing on close.
                since_checkpoint: if base.is_some() || end == DATA_START {
                    end - start
                } else {
                    u64::MAX
                },
                slots,
                handed_out: 0,
                last_checkpoint_len: base.as_ref().map_or(0, |b| b.block_len),
            }),
            poisoned: OnceLock::new(),
            closed: AtomicBool::new(false),
            lock: None,
            append_lock: None,
            commits: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        })
    }

    /// Reads the checkpoint named by the newest valid slot; falls back to the other slot,
    /// then to none (a full scan), if a checkpoint does not verify.
    fn load_checkpoint(
        io: &dyn FileIo,
        file_len: u64,
        slots: &[Option<Slot>; 2],
    ) -> Result<Option<Arc<BaseIndex>>> {
        let mut order: Vec<Slot> = slots.iter().flatten().copied().collect();
        order.sort_by_key(|s| std::cmp::Reverse(s.seq));
        for s in order {
            if s.offset < DATA_START || s.len > file_len || s.offset > file_len - s.len {
                continue;
            }
            let mut hb = [0u8; BLOCK_HEADER];
            io.read_exact_at(&mut hb, s.offset)?;
            let Ok(h) = BlockHeader::decode(&hb) else { continue };
            if h.kind != BlockKind::Checkpoint || h.len != s.len {
                continue;
            }
            let Some(pages) = scan::checkpoint_pages(&h) else {
                continue;
            };
            let mut head = vec![0u8; BLOCK_HEADER + 4 * pages as usize];
            io.read_exact_at(&mut head, s.offset)?;
            let mut tr = [0u8; TRAILER];
            io.read_exact_at(&mut tr, s.offset + s.len - TRAILER as u64)?;
            if crc32fast::hash(&head) != u32::from_be_bytes(tr) {
                continue;
            }
            return Ok(Some(Arc::new(BaseIndex::new(s.offset, h, &head[BLOCK_HEADER..]))));
        }
        Ok(None)
    }

    /// The path this journal was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The options it was opened with.
    pub fn options(&self) -> &JournalOptions {
        &self.opts
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // State is only changed by plain memory updates that cannot panic halfway, so
        // a poisoned lock still guards consistent data.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
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
        if let Some(cause) = self.poisoned.get() {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        Ok(())
    }

    /// Marks the journal unwritable after a failed write or sync and returns the error.
    fn poison(&self, e: std::io::Error, during: &str) -> Error {
        let _ = self.poisoned.set(format!("{during}: {e}"));
        e.into()
    }

    fn sync(&self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.io.sync_data()
    }

    /// Shared mode: takes the lock file's lock (waiting for another process's append to
    /// finish) and catches up with everything appended before it. A no-op otherwise.
    fn lock_appends(&self, w: &mut Writer) -> Result<AppendGuard<'_>> {
        if !self.opts.shared {
            return Ok(AppendGuard(None));
        }
        let guard = match &self.append_lock {
            Some(f) => {
                f.file().lock()?;
                AppendGuard(Some(f.file()))
            }
            None => AppendGuard(None),
        };
        self.catch_up(w, true)?;
        Ok(guard)
    }

    /// Reads the blocks other processes appended after this process's known end, and
    /// folds them into the index. With `locked` (this process holds the append lock, so
    /// nobody is appending) the tail's state is authoritative: damage after the end is
    /// a killed writer's partial append, to be cut off before the next append.
    fn catch_up(&self, w: &mut Writer, locked: bool) -> Result<()> {
        let (start, last_tid) = {
            let st = self.read_state();
            (st.end, st.last_tid)
        };
        let file_len = self.io.len()?;
        // Without the lock, read only what a writer has made durable.
        let limit = match (locked, self.synced_hint()) {
            (false, Some(h)) => file_len.min(h),
            _ => file_len,
        };
        let mut blocks = Vec::new();
        let mut sc = Scanner::following(&*self.io, limit, start, last_tid);
        // Where the readable part ends, and whether filler follows it.
        let (end, filler) = loop {
            match sc.next_step() {
                Ok(Step::Block { header, entries, .. }) => blocks.push((header, entries)),
                Ok(Step::End { offset, filler }) => break (offset, filler),
                Ok(Step::Torn { offset, .. }) => break (offset, false),
                // Without the lock, the file may shrink under the scan: a writer cut off
                // a torn tail or gave back preallocated space. Both lie past the end.
                Err(Error::Io(e)) if !locked && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    break (sc.position(), false)
                }
                Err(e) => return Err(e),
            }
        };
        drop(sc);
        if !blocks.is_empty() {
            let mut st = self.write_state();
            for (h, e) in &blocks {
                st.apply_block(h, e);
            }
            st.end = end;
        }
        if locked {
            // Filler past the end was preallocated by a writer and may be written over;
            // anything else (a killed writer's partial append, zeros of an old file) is
            // cut off before the next append.
            w.torn_tail = None;
            w.prealloc_end = end;
            if filler {
                w.prealloc_end = file_len;
            } else if file_len > end {
                w.torn_tail = Some(end);
            }
        }
        Ok(())
    }

    /// Catches up with transactions other processes appended (shared mode, or a
    /// read-only journal another process writes) and returns the last tid now known.
    /// Loads and commits never see past what was caught up. A no-op for an exclusive
    /// writer, which appends everything itself.
    pub fn refresh(&self) -> Result<Tid> {
        self.check_open()?;
        if self.follows_others() {
            let mut w = self.lock_writer();
            self.catch_up(&mut w, false)?;
        }
        Ok(Tid(self.read_state().last_tid))
    }

    /// Whether other processes may append to this journal while it is open: shared
    /// mode, or a read-only open (of a file someone else may be writing).
    pub fn follows_others(&self) -> bool {
        self.opts.shared || self.opts.read_only
    }

    /// The transactions after `after`, oldest first, each with its timestamp and the
    /// oids it wrote. Recent ones come from memory; older ones are read from the file.
    pub fn transactions(&self, after: Tid) -> Result<Vec<TxInfo>> {
        self.check_open()?;
        let end = {
            let st = self.read_state();
            if after.0 >= st.log_from {
                let newer = st.log.iter().rev().take_while(|(t, _, _)| *t > after.0).count();
                return Ok(st
                    .log
                    .iter()
                    .skip(st.log.len() - newer)
                    .map(|(t, ts, oids)| {
                        let mut oids = oids.to_vec();
                        oids.sort_unstable();
                        TxInfo {
                            tid: Tid(*t),
                            timestamp: *ts,
                            oids,
                        }
                    })
                    .collect());
            }
            st.end
        };
        let mut out = Vec::new();
        self.scan_history(end, |header, entries| {
            if header.tid > after.0 {
                let mut oids: Vec<Oid> = entries.iter().map(|e| e.oid).collect();
                oids.sort_unstable();
                out.push(TxInfo {
                    tid: Tid(header.tid),
                    timestamp: header.timestamp,
                    oids,
                });
            }
            true
        })?;
        Ok(out)
    }

    /// Reads the transactions of the file from its start up to `end`, handing each to
    /// `f` until it returns false. History older than the in-memory log lies before the
    /// checkpoint the journal was opened from, which opening did not read: if it does
    /// not read whole up to `end`, that is corruption, never a shorter answer.
    fn scan_history(
        &self,
        end: u64,
        mut f: impl FnMut(&BlockHeader, &[scan::ScannedEntry]) -> bool,
    ) -> Result<()> {
        let mut sc = Scanner::new(&*self.io, end, DATA_START, 0);
        loop {
            match sc.next_step()? {
                Step::Block { header, entries, .. } => {
                    if header.kind == BlockKind::Transaction && !f(&header, &entries) {
                        return Ok(());
                    }
                }
                Step::End { offset, .. } | Step::Torn { offset, .. } if offset < end => {
                    return Err(Error::corrupt(
                        offset,
                        "the journal's history ends before the point it was opened from",
                    ))
                }
                Step::End { .. } | Step::Torn { .. } => return Ok(()),
            }
        }
    }

    /// The last transaction committed at or before `timestamp` (microseconds since the
    /// Unix epoch), or [`Tid::ZERO`] if there is none: the state of the database at
    /// that moment is the snapshot at this tid.
    pub fn tid_at_time(&self, timestamp: u64) -> Result<Tid> {
        self.check_open()?;
        let end = {
            let st = self.read_state();
            // Timestamps never decrease, so the log can be searched in halves.
            let newer = st.log.partition_point(|(_, ts, _)| *ts <= timestamp);
            if newer > 0 {
                return Ok(Tid(st.log[newer - 1].0));
            }
            if st.log_from == 0 {
                return Ok(Tid::ZERO);
            }
            st.end
        };
        let mut found = Tid::ZERO;
        self.scan_history(end, |header, _| {
            if header.timestamp > timestamp {
                return false;
            }
            found = Tid(header.tid);
            true
        })?;
        Ok(found)
    }

    /// The last committed transaction id.
    pub fn last_tid(&self) -> Result<Tid> {
        self.check_open()?;
        Ok(Tid(self.read_state().last_tid))
    }

    /// Counters of the work done since open.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            commits: self.commits.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
        }
    }

    /// Offset just past the last block: the logical size of the journal.
    pub fn end_offset(&self) -> u64 {
        self.read_state().end
    }

    /// Every oid that has a record, ascending (for whole-database scans).
    pub fn oids(&self) -> Result<Vec<Oid>> {
        self.check_open()?;
        let (mut oids, base) = {
            let st = self.read_state();
            (st.overlay.oids().collect::<Vec<_>>(), st.base.clone())
        };
        if let Some(b) = base {
            oids.extend(b.oids(&*self.io)?);
        }
        oids.sort_unstable();
        oids.dedup();
        Ok(oids)
    }

    /// Reads and verifies the entry at `loc`, expecting `oid`.
    fn read_entry(&self, oid: Oid, loc: Loc, end: u64) -> Result<(Loaded, u64, u32)> {
        if loc.offset < DATA_START || loc.len as u64 > end || loc.offset > end - loc.len as u64 {
            return Err(Error::corrupt(
                loc.offset,
                format!("index entry for {oid} points outside the journal"),
            ));
        }
        let mut buf = vec![0u8; loc.len as usize];
        self.io
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|e| eof_as_corrupt(e, loc.offset, "record entry"))?;
        parse_entry(oid, loc, &buf)
    }

    /// Loads the newest record of `oid`.
    pub fn load(&self, oid: Oid) -> Result<Loaded> {
        self.check_open()?;
        let (loc, end) = {
            let st = self.read_state();
            (st.locate(&*self.io, oid)?.map(|(l, _)| l), st.end)
        };
        let loc = loc.ok_or(Error::NotFound { oid })?;
        Ok(self.read_entry(oid, loc, end)?.0)
    }

    /// Loads the version of `oid` visible at `snapshot`: the newest committed by a
    /// transaction at or before it.
    pub fn load_at(&self, oid: Oid, snapshot: Tid) -> Result<Loaded> {
        self.check_open()?;
        let (found, end, last) = {
            let st = self.read_state();
            (st.locate(&*self.io, oid)?, st.end, st.last_tid)
        };
        if snapshot.0 > last {
            return Err(Error::Invalid(format!(
                "snapshot {snapshot} is after the last transaction {last}"
            )));
        }
        let (mut loc, _) = found.ok_or(Error::NotFound { oid })?;
        loop {
            let (loaded, prev_offset, prev_len) = self.read_entry(oid, loc, end)?;
            if loaded.tid <= snapshot {
                return Ok(loaded);
            }
            if prev_offset == 0 {
                return Err(Error::NotFound { oid });
            }
            if prev_offset >= loc.offset {
                return Err(Error::corrupt(loc.offset, "back pointer does not point back"));
            }
            loc = Loc {
                offset: prev_offset,
                len: prev_len,
            };
        }
    }

    /// Loads many oids, each at `snapshot` (or newest); `None` where one does not exist.
    ///
    /// Records that lie close together in the file are fetched with one positioned read
    /// per run (up to 1 MiB), so loading a batch costs a few syscalls, not one each.
    pub fn load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Result<Vec<Option<Loaded>>> {
        self.check_open()?;
        const GAP: u64 = 4096;
        const RUN: u64 = 1 << 20;
        let mut out: Vec<Option<Loaded>> = vec![None; oids.len()];
        // (index in `oids`, where its newest entry is)
        let mut wanted: Vec<(usize, Loc)> = Vec::with_capacity(oids.len());
        let end = {
            let st = self.read_state();
            if let Some(s) = snapshot {
                if s.0 > st.last_tid {
                    return Err(Error::Invalid(format!(
                        "snapshot {s} is after the last transaction {}",
                        st.last_tid
                    )));
                }
            }
            for (i, &oid) in oids.iter().enumerate() {
                if let Some((loc, _)) = st.locate(&*self.io, oid)? {
                    wanted.push((i, loc));
                }
            }
            st.end
        };
        wanted.sort_unstable_by_key(|(_, l)| l.offset);
        let mut older = Vec::new();
        let mut k = 0;
        while k < wanted.len() {
            // Grow a run of entries that are near each other.
            let start = wanted[k].1.offset;
            let mut stop = start + wanted[k].1.len as u64;
            let mut j = k + 1;
            while j < wanted.len() {
                let l = wanted[j].1;
                let l_end = l.offset + l.len as u64;
                if l.offset > stop + GAP || l_end - start > RUN {
                    break;
                }
                stop = stop.max(l_end);
                j += 1;
            }
            if start < DATA_START || stop > end {
                return Err(Error::corrupt(start, "index entries point outside the journal"));
            }
            let mut buf = vec![0u8; (stop - start) as usize];
            self.io
                .read_exact_at(&mut buf, start)
                .map_err(|e| eof_as_corrupt(e, start, "record entries"))?;
            for &(i, loc) in &wanted[k..j] {
                let at = (loc.offset - start) as usize;
                let (loaded, _, _) = parse_entry(oids[i], loc, &buf[at..at + loc.len as usize])?;
                match snapshot {
                    Some(s) if loaded.tid > s => older.push(i),
                    _ => out[i] = Some(loaded),
                }
            }
            k = j;
        }
        // Versions older than the newest follow back pointers one by one.
        if let Some(s) = snapshot {
            for i in older {
                out[i] = match self.load_at(oids[i], s) {
                    Ok(l) => Some(l),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
            }
        }
        Ok(out)
    }

    /// Hands out `n` oids that were never handed out before and never will be again,
    /// across reopens and crashes: the reservation is made durable before they return.
    pub fn new_oids(&self, n: u64) -> Result<Vec<Oid>> {
        let mut w = self.lock_writer();
        self.check_writable()?;
        {
            let mut st = self.write_state();
            let first = st.next_oid;
            let end = first
                .checked_add(n)
                .ok_or_else(|| Error::Invalid("oid space exhausted".into()))?;
            if end <= st.own_until {
                st.next_oid = end;
                w.handed_out += n;
                return Ok((first..end).map(Oid).collect());
            }
        }
        let _appending = self.lock_appends(&mut w)?;
        let (first, tid, ts, at) = {
            let st = self.read_state();
            // Continue this process's range if no one reserved past it, else start a
            // new one past everything reserved.
            let first = if st.reserved_oid > st.own_until {
                st.reserved_oid
            } else {
                st.next_oid
            };
            (
                first,
                st.last_tid,
                st.last_timestamp,
                w.torn_tail.unwrap_or(st.end),
            )
        };
        let end = first
            .checked_add(n)
            .ok_or_else(|| Error::Invalid("oid space exhausted".into()))?;
        let ahead = w
            .handed_out
            .clamp(OID_RESERVE_AHEAD, OID_RESERVE_AHEAD_MAX)
            .max(n);
        let reserve_to = end.saturating_add(ahead);
        let h = BlockHeader {
            kind: BlockKind::Reservation,
            len: (BLOCK_HEADER + TRAILER) as u64,
            tid,
            timestamp: ts,
            group_start: at,
            next_oid: reserve_to,
            count: 0,
            aux: 0,
        };
        let mut bytes = h.encode().to_vec();
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        self.append_group(&mut w, at, &bytes, BlockKind::Reservation)?;
        let mut st = self.write_state();
        st.end = at + bytes.len() as u64;
        st.reserved_oid = reserve_to;
        st.own_until = reserve_to;
        st.next_oid = end;
        w.handed_out += n;
        Ok((first..end).map(Oid).collect())
    }

    /// Commits `req` as one transaction: checks that nothing it read or writes was
    /// committed after its snapshot, appends it in one positioned write, and syncs
    /// (under [`Durability::Immediate`]) before returning.
    ///
    /// A request with no records only validates its reads and returns the current tid.
    pub fn commit(&self, req: &CommitRequest) -> Result<Committed> {
        self.commit_many(std::slice::from_ref(req))
            .pop()
            .unwrap_or_else(|| Err(Error::Invalid("no result for a commit".into())))
    }

    /// Commits several transactions as one write group (group commit): each is
    /// validated in order against everything committed before it, including the earlier
    /// members of this group; those that pass are appended together in one positioned
    /// write and made durable by one sync. Returns one result per request, in order.
    ///
    /// A request with no records only validates its reads against what is committed and
    /// returns the last committed tid.
    pub fn commit_many(&self, reqs: &[CommitRequest]) -> Vec<Result<Committed>> {
        let mut w = self.lock_writer();
        let appending = match self.check_writable().and_then(|()| self.lock_appends(&mut w)) {
            Ok(g) => g,
            Err(e) => return reqs.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<Option<Result<Committed>>> = reqs.iter().map(|_| None).collect();
        let (bytes, at, planned) = {
            let st = self.read_state();
            let at = w.torn_tail.unwrap_or(st.end);
            let mut group = Group {
                written: OidMap::default(),
                last_tid: st.last_tid,
                last_timestamp: st.last_timestamp,
                bytes: Vec::new(),
            };
            let mut planned = Vec::new();
            for (i, req) in reqs.iter().enumerate() {
                match self.plan(&st, &mut group, at, req) {
                    Ok(Some(p)) => planned.push((i, p)),
                    Ok(None) => {
                        results[i] = Some(Ok(Committed {
                            tid: Tid(st.last_tid),
                            timestamp: st.last_timestamp,
                        }))
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            (group.bytes, at, planned)
        };
        if !planned.is_empty() {
            // Other processes may append as soon as the bytes are written: the sync, the
            // slow part, runs after the lock is released, so their appends and syncs
            // overlap with ours. Their readers only go as far as synced data (see
            // `mark_synced`), and a sync makes every earlier byte of the file durable, so
            // nobody builds on a transaction that may yet vanish.
            let appended = self
                .write_group(&mut w, at, &bytes, BlockKind::Transaction)
                .and_then(|()| {
                    drop(appending);
                    self.finish_group(at + bytes.len() as u64)
                });
            match appended {
                Err(e) => {
                    for (i, _) in &planned {
                        results[*i] = Some(Err(e.clone()));
                    }
                }
                Ok(()) => {
                    let mut st = self.write_state();
                    for (i, p) in &planned {
                        for &(oid, loc) in &p.entries {
                            st.overlay.set(oid, loc, p.tid);
                        }
                        st.last_tid = p.tid;
                        st.last_timestamp = p.timestamp;
                        st.push_log(p.tid, p.timestamp, p.entries.iter().map(|e| e.0).collect());
                        results[*i] = Some(Ok(Committed {
                            tid: Tid(p.tid),
                            timestamp: p.timestamp,
                        }));
                    }
                    st.end = at + bytes.len() as u64;
                    drop(st);
                    self.commits.fetch_add(planned.len() as u64, Ordering::Relaxed);
                    if let Some(every) = self.opts.checkpoint_every {
                        // At least twice the last checkpoint's size apart, so checkpoints of
                        // a large index cost a bounded fraction of what is appended. The
                        // commits above are durable whatever happens here: a failure only
                        // poisons the journal for later writes.
                        if w.since_checkpoint >= every.max(2 * w.last_checkpoint_len) {
                            let _ = self
                                .lock_appends(&mut w)
                                .and_then(|_again| self.write_checkpoint(&mut w));
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Invalid("a request got no result".into()))))
            .collect()
    }

    /// Validates `req` against the committed state and the earlier members of `group`
    /// and, if it writes anything, encodes it onto the group's bytes. `Ok(None)`: valid,
    /// but nothing to write.
    fn plan(&self, st: &State, group: &mut Group, at: u64, req: &CommitRequest) -> Result<Option<Planned>> {
        let written = req.validate(st.reserved_oid, Tid(st.last_tid))?;
        let conflicts = if req.records.is_empty() {
            req.conflicts(&written, |oid, after| st.changed_after(&*self.io, oid, after.0))?
        } else {
            req.conflicts(&written, |oid, after| match group.written.get(&oid) {
                Some(&(_, tid)) => Ok(tid > after.0),
                None => st.changed_after(&*self.io, oid, after.0),
            })?
        };
        if !conflicts.is_empty() {
            return Err(Error::Conflict { oids: conflicts });
        }
        if req.records.is_empty() {
            return Ok(None);
        }
        let tid = group
            .last_tid
            .checked_add(1)
            .ok_or_else(|| Error::Invalid("transaction ids are exhausted".into()))?;
        let timestamp = now_micros().max(group.last_timestamp);
        let start = group.bytes.len();
        let r = self.encode_transaction(st, group, at, start, tid, timestamp, req);
        match r {
            Ok(entries) => {
                for &(oid, loc) in &entries {
                    group.written.insert(oid, (loc, tid));
                }
                group.last_tid = tid;
                group.last_timestamp = timestamp;
                Ok(Some(Planned {
                    tid,
                    timestamp,
                    entries,
                }))
            }
            Err(e) => {
                // Leave the group's bytes as they were before this transaction.
                group.bytes.truncate(start);
                Err(e)
            }
        }
    }

    /// Appends the transaction block for `req` to `group.bytes` (which start at file
    /// offset `at`); returns where each record's entry will be.
    #[allow(clippy::too_many_arguments)]
    fn encode_transaction(
        &self,
        st: &State,
        group: &mut Group,
        at: u64,
        start: usize,
        tid: u64,
        timestamp: u64,
        req: &CommitRequest,
    ) -> Result<Vec<(Oid, Loc)>> {
        let bytes = &mut group.bytes;
        bytes.reserve(
            BLOCK_HEADER
                + TRAILER
                + req
                    .records
                    .iter()
                    .map(|r| ENTRY_HEADER + r.framed_len())
                    .sum::<usize>(),
        );
        bytes.resize(start + BLOCK_HEADER, 0);
        let mut entries = Vec::with_capacity(req.records.len());
        for r in &req.records {
            let prev = match group.written.get(&r.oid) {
                Some(&(loc, _)) => Some(loc),
                None => st.locate(&*self.io, r.oid)?.map(|(l, _)| l),
            };
            let before = bytes.len();
            encode_entry(bytes, tid, prev.map(|l| (l.offset, l.len)), r)?;
            let loc = Loc {
                offset: at + before as u64,
                len: (bytes.len() - before) as u32,
            };
            entries.push((r.oid, loc));
        }
        let h = BlockHeader {
            kind: BlockKind::Transaction,
            len: (bytes.len() - start + TRAILER) as u64,
            tid,
            timestamp,
            group_start: at,
            next_oid: st.reserved_oid,
            count: req.records.len() as u64,
            aux: 0,
        };
        bytes[start..start + BLOCK_HEADER].copy_from_slice(&h.encode());
        let crc = crc32fast::hash(&bytes[start..]);
        bytes.extend_from_slice(&crc.to_be_bytes());
        Ok(entries)
    }

    /// Appends one write group at `at`: cuts off a torn tail first, writes the bytes in
    /// one positioned write, keeps zeroed space ahead of them, and syncs once.
    fn append_group(&self, w: &mut Writer, at: u64, bytes: &[u8], kind: BlockKind) -> Result<()> {
        self.write_group(w, at, bytes, kind)?;
        self.finish_group(at + bytes.len() as u64)
    }

    /// Makes everything up to `end` durable (under [`Durability::Immediate`]) and tells
    /// the other processes sharing the file that they may read up to there.
    fn finish_group(&self, end: u64) -> Result<()> {
        if self.opts.durability == Durability::Immediate {
            self.sync().map_err(|e| self.poison(e, "syncing the journal"))?;
        }
        self.mark_synced(end);
        Ok(())
    }

    /// Shared mode: raises the synced end recorded in the lock file to `end`. The hint
    /// lives in the page cache that all processes share and needs no sync of its own:
    /// after a crash every process opens with a full scan. Racing updates may leave it
    /// lower than it could be, which only makes readers wait for the next commit.
    fn mark_synced(&self, end: u64) {
        if let (Some(f), Some(now)) = (&self.append_lock, self.synced_hint()) {
            if end > now {
                let _ = f.write_all_at(&end.to_be_bytes(), 0);
            }
        }
    }

    /// The synced end other processes recorded, if this journal is shared.
    fn synced_hint(&self) -> Option<u64> {
        let f = self.append_lock.as_ref()?;
        let mut b = [0u8; 8];
        Some(f.read_exact_at(&mut b, 0).map_or(0, |()| u64::from_be_bytes(b)))
    }

    /// Writes one group at `at`: cuts off a torn tail first, writes the bytes in one
    /// positioned write and keeps filled space ahead of them. No sync.
    fn write_group(&self, w: &mut Writer, at: u64, bytes: &[u8], kind: BlockKind) -> Result<()> {
        if let Some(torn) = w.torn_tail {
            self.io
                .set_len(torn)
                .map_err(|e| self.poison(e, "truncating the torn tail"))?;
            self.sync()
                .map_err(|e| self.poison(e, "syncing the truncation"))?;
            w.torn_tail = None;
            w.prealloc_end = torn;
        }
        self.io
            .write_all_at(bytes, at)
            .map_err(|e| self.poison(e, "appending to the journal"))?;
        let new_end = at + bytes.len() as u64;
        let mut written = bytes.len() as u64;
        // Small groups land in filled space written ahead of them, so their sync does not
        // also have to make a new file size (and block allocation) durable. Large groups
        // gain nothing from it and would only be written twice.
        // Only transactions count: an oid reservation or a checkpoint says nothing about
        // the size of the commits to come.
        let small = kind == BlockKind::Transaction && (bytes.len() as u64) <= self.opts.preallocate / 16;
        if small && new_end + BLOCK_HEADER as u64 > w.prealloc_end {
            let from = w.prealloc_end.max(new_end);
            let target = new_end + self.opts.preallocate;
            let mut filler = vec![0u8; (target - from) as usize];
            fill(&mut filler, from);
            self.io
                .write_all_at(&filler, from)
                .map_err(|e| self.poison(e, "preallocating journal space"))?;
            written += filler.len() as u64;
            w.prealloc_end = target;
        }
        w.prealloc_end = w.prealloc_end.max(new_end);
        w.since_checkpoint = w.since_checkpoint.saturating_add(bytes.len() as u64);
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(written, Ordering::Relaxed);
        Ok(())
    }

    /// Writes an index checkpoint now, so that the next open only scans what follows.
    /// Returns false if it declined because the oid space is too sparse for the dense
    /// checkpoint index (the next open then scans the whole journal).
    pub fn checkpoint(&self) -> Result<bool> {
        let mut w = self.lock_writer();
        self.check_writable()?;
        self.write_checkpoint(&mut w)
    }

    fn write_checkpoint(&self, w: &mut Writer) -> Result<bool> {
        if self.opts.shared {
            // Other processes write checkpoints too: overwrite the slot that is older now.
            let mut b = vec![0u8; (SLOT_OFFSETS[1] as usize) + SLOT_LEN];
            self.io.read_exact_at(&mut b, 0)?;
            w.slots = SLOT_OFFSETS.map(|o| Slot::decode(&b[o as usize..o as usize + SLOT_LEN]));
        }
        let (bytes, at) = {
            let st = self.read_state();
            let base_bound = st.base.as_ref().map_or(0, |b| b.bound());
            let count = st.overlay.bound().max(base_bound);
            // The checkpoint is a dense array indexed by oid. Oids are handed out in
            // sequence, so it is normally about as long as the number of objects; when the
            // oid space is far sparser than that (a damaged or hand-made file), skip it
            // rather than write an index mostly of holes.
            let live = st.overlay.len() as u64 + base_bound;
            if count > 4 * live + 4096 {
                return Ok(false);
            }
            let pages = count.div_ceil(PAGE_ENTRIES);
            let len = BLOCK_HEADER as u64 + 4 * pages + INDEX_ENTRY as u64 * count + TRAILER as u64;
            let at = w.torn_tail.unwrap_or(st.end);
            let h = BlockHeader {
                kind: BlockKind::Checkpoint,
                len,
                tid: st.last_tid,
                timestamp: st.last_timestamp,
                group_start: at,
                next_oid: st.reserved_oid.max(st.next_oid),
                count,
                aux: PAGE_ENTRIES,
            };
            let mut entries = Vec::with_capacity((INDEX_ENTRY as u64 * count) as usize);
            for oid in 0..count {
                let loc = st.locate(&*self.io, Oid(oid))?.map(|(l, _)| l);
                let (o, l) = loc.map_or((0, 0), |l| (l.offset, l.len));
                entries.extend_from_slice(&o.to_be_bytes());
                entries.extend_from_slice(&l.to_be_bytes());
            }
            let mut bytes = Vec::with_capacity(len as usize);
            bytes.extend_from_slice(&h.encode());
            for page in entries.chunks((PAGE_ENTRIES as usize) * INDEX_ENTRY) {
                bytes.extend_from_slice(&crc32fast::hash(page).to_be_bytes());
            }
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&entries);
            bytes.extend_from_slice(&crc.to_be_bytes());
            (bytes, at)
        };
        self.append_group(w, at, &bytes, BlockKind::Checkpoint)?;
        {
            let mut st = self.write_state();
            st.end = at + bytes.len() as u64;
        }
        // The checkpoint is durable; now point the older slot at it.
        let which = match (w.slots[0], w.slots[1]) {
            (None, _) => 0,
            (_, None) => 1,
            (Some(a), Some(b)) => usize::from(b.seq < a.seq),
        };
        let newest = w.slots.iter().flatten().map(|s| s.seq).max().unwrap_or(0);
        // Sequence numbers never wrap: at the end of the range, start again at 1 and
        // clear the other slot, so the new checkpoint is the only one named.
        let (seq, clear_other) = match newest.checked_add(1) {
            Some(seq) => (seq, false),
            None => (1, true),
        };
        let slot = Slot {
            seq,
            offset: at,
            len: bytes.len() as u64,
        };
        self.io
            .write_all_at(&slot.encode(), SLOT_OFFSETS[which])
            .map_err(|e| self.poison(e, "writing the checkpoint slot"))?;
        if clear_other {
            self.io
                .write_all_at(&[0u8; SLOT_LEN], SLOT_OFFSETS[1 - which])
                .map_err(|e| self.poison(e, "clearing a checkpoint slot"))?;
            w.slots[1 - which] = None;
        }
        if self.opts.durability == Durability::Immediate {
            self.sync()
                .map_err(|e| self.poison(e, "syncing the checkpoint slot"))?;
        }
        w.slots[which] = Some(slot);
        w.since_checkpoint = 0;
        w.last_checkpoint_len = bytes.len() as u64;
        Ok(true)
    }

    /// The oids changed by transactions after `since`, and the tid the answer reaches.
    pub fn changes_since(&self, since: Tid) -> Result<Changes> {
        let last = self.last_tid()?;
        if since > last {
            return Err(Error::Invalid(format!(
                "tid {since} is after the last transaction {last}"
            )));
        }
        let txs = self.transactions(since)?;
        let tid = txs.last().map_or(since, |t| t.tid);
        let oids: BTreeSet<Oid> = txs.into_iter().flat_map(|t| t.oids).collect();
        Ok(Changes {
            tid,
            oids: oids.into_iter().collect(),
        })
    }

    /// Writes a checkpoint if anything was appended since the last one, gives back the
    /// preallocated space past the end, and closes the journal: every later call fails
    /// with [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        let mut w = self.lock_writer();
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        // A poisoned journal is closed all the same, but the caller hears that some
        // of this session's writes failed and may not be on disk.
        let r = match self.poisoned.get() {
            Some(cause) => Err(Error::Poisoned { cause: cause.clone() }),
            None if self.opts.read_only => Ok(()),
            None => self.finish_writing(&mut w),
        };
        self.closed.store(true, Ordering::Release);
        if let Some(f) = &self.lock {
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
        // Trim our own zeroed space (a torn tail found at open is left for repair or
        // the next writer, since nothing was written over it).
        let end = self.read_state().end;
        if w.torn_tail.is_none() && self.io.len()? > end {
            self.io
                .set_len(end)
                .map_err(|e| self.poison(e, "trimming preallocated space"))?;
            self.sync()
                .map_err(|e| self.poison(e, "syncing the trimmed journal"))?;
        }
        Ok(())
    }

    /// Checks the whole journal at `path` (see [`verify()`]), without the write lock.
    pub fn verify_path(path: impl AsRef<Path>) -> Result<VerifyReport> {
        let file = File::open(path.as_ref())?;
        verify(&OsFile::new(file))
    }

    /// Cuts a torn tail off the journal at `path`, after checking every block from the
    /// start. Corruption before the tail is returned as an error, and nothing is changed.
    pub fn repair(path: impl AsRef<Path>) -> Result<RepairReport> {
        let path = path.as_ref();
        let file = FsOpenOptions::new().read(true).write(true).open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let io = OsFile::new(file);
        let len = io.len()?;
        let mut head = vec![0u8; len.min(DATA_START) as usize];
        io.read_exact_at(&mut head, 0)?;
        FileHeader::decode(&head)?;
        let mut sc = Scanner::new(&io, len, DATA_START, 0);
        let mut last = 0;
        let cut = loop {
            match sc.next_step()? {
                Step::Block { header, .. } => {
                    if header.kind == BlockKind::Transaction {
                        last = header.tid;
                    }
                }
                Step::End { .. } => break None,
                Step::Torn { offset, .. } => break Some(offset),
            }
        };
        if let Some(at) = cut {
            // A slot can only name a checkpoint that was synced before the torn write, so
            // slots never point past the cut; clear any that would, to be safe.
            for &so in &SLOT_OFFSETS {
                let mut b = [0u8; SLOT_LEN];
                io.read_exact_at(&mut b, so)?;
                if let Some(s) = Slot::decode(&b) {
                    if s.offset.saturating_add(s.len) > at {
                        io.write_all_at(&[0u8; SLOT_LEN], so)?;
                    }
                }
            }
            io.set_len(at)?;
            io.sync_data()?;
        }
        Ok(RepairReport {
            truncated_at: cut,
            removed: cut.map_or(0, |c| len - c),
            last_tid: Tid(last),
        })
    }
}

/// Verifies and decodes the entry bytes read from `loc`, expecting `oid`; returns the
/// record and the entry's back pointer.
fn parse_entry(oid: Oid, loc: Loc, buf: &[u8]) -> Result<(Loaded, u64, u32)> {
    let eh = decode_entry(buf, true).map_err(|why| Error::corrupt(loc.offset, why))?;
    if eh.len != loc.len {
        return Err(Error::corrupt(
            loc.offset,
            "record entry length differs from the index",
        ));
    }
    let record = Record::decode(&buf[ENTRY_HEADER..]).map_err(|e| match e {
        Error::Corrupt { offset, reason } => {
            Error::corrupt(loc.offset + ENTRY_HEADER as u64 + offset, reason)
        }
        other => other,
    })?;
    if record.oid != oid {
        return Err(Error::corrupt(
            loc.offset,
            format!("index points {oid} at a record of {}", record.oid),
        ));
    }
    Ok((
        Loaded {
            record,
            tid: Tid(eh.tid),
        },
        eh.prev_offset,
        eh.prev_len,
    ))
}

impl State {
    /// Folds one scanned block into the state.
    fn apply_block(&mut self, h: &BlockHeader, entries: &[scan::ScannedEntry]) {
        self.reserved_oid = self.reserved_oid.max(h.next_oid);
        if h.kind != BlockKind::Transaction {
            return;
        }
        for e in entries {
            self.overlay.set(
                e.oid,
                Loc {
                    offset: e.offset,
                    len: e.len,
                },
                h.tid,
            );
            self.reserved_oid = self.reserved_oid.max(e.oid.0.saturating_add(1));
        }
        self.last_tid = h.tid;
        self.last_timestamp = self.last_timestamp.max(h.timestamp);
        let oids: Box<[Oid]> = entries.iter().map(|e| e.oid).collect();
        self.push_log(h.tid, h.timestamp, oids);
    }

    fn push_log(&mut self, tid: u64, timestamp: u64, oids: Box<[Oid]>) {
        self.log_oids += oids.len();
        self.log.push_back((tid, timestamp, oids));
        while self.log_oids > CHANGE_LOG_LIMIT && self.log.len() > 1 {
            if let Some((t, _, o)) = self.log.pop_front() {
                self.log_oids -= o.len();
                self.log_from = t;
            }
        }
    }

    /// Where `oid`'s newest entry is, and the tid that wrote it when known in memory.
    fn locate(&self, io: &dyn FileIo, oid: Oid) -> Result<Option<(Loc, Option<u64>)>> {
        if let Some((loc, tid)) = self.overlay.get(oid) {
            return Ok(Some((loc, Some(tid))));
        }
        match &self.base {
            Some(b) => Ok(b.get(io, oid)?.map(|l| (l, None))),
            None => Ok(None),
        }
    }

    /// Whether a transaction after `snapshot` wrote `oid`.
    fn changed_after(&self, io: &dyn FileIo, oid: Oid, snapshot: u64) -> Result<bool> {
        match self.locate(io, oid)? {
            None => Ok(false),
            Some((_, Some(t))) => Ok(t > snapshot),
            // Only in the checkpoint: written at or before the checkpoint's tid.
            Some((_, None)) if self.base.as_ref().is_some_and(|b| b.tid() <= snapshot) => Ok(false),
            Some((loc, None)) => {
                // A snapshot older than the checkpoint: the entry itself says when.
                let mut b = [0u8; 16];
                io.read_exact_at(&mut b, loc.offset)
                    .map_err(|e| eof_as_corrupt(e, loc.offset, "record entry"))?;
                Ok(crate::record::be_u64(&b[8..16]) > snapshot)
            }
        }
    }
}
