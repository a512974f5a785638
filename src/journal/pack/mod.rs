//! Pack: garbage collection by reachability, online.
//!
//! A pack writes a new file holding what the database needs from its *pack point* on:
//! the version visible at the pack point of every object reachable from the root
//! (through the refs in the record framing; object data is never decoded), then every
//! transaction after the pack point, copied whole. Everything else (older versions,
//! unreachable objects) is left behind. Commits go on meanwhile: what they append to
//! the old file is copied over in rounds, and only the last round, bounded in size,
//! runs under the writer lock, together with the switch to the new file. The new file
//! is synced before it is renamed over the old one, so a crash at any moment leaves
//! the old file or the whole new one.
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the options, the report, the steps of a pack |
//! | `mark.rs` | the walk over references, reading versions in file order |
//! | `output.rs` | writing the new file: pack blocks, copied transactions, the checkpoint |
//! | `refs.rs` | the reference check (`verify --refs`): the walk, writing nothing |
//! | `switch.rs` | putting the new file in place and the journal on it |
//! | `writeback.rs` | syncing the new file in the background while it is written |

mod mark;
mod output;
mod refs;
mod switch;
mod writeback;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::format::{
    BlockKind, FileHeader, PackRecord, DATA_START, PACK_RECORD_AT, PACK_RECORD_LEN, VERSION,
};
use super::io::{FileIo, OsFile};
use super::scan::{Scanner, Step};
use super::Journal;
use crate::clock::now_micros;
use crate::error::{Error, Result};
use crate::record::{be_u64, split_framed, Oid, Tid};
use mark::Walk;
use output::Output;
pub use refs::RefsReport;

/// Carry-over rounds run without the writer lock until less than this is left.
const CALM: u64 = 1 << 20;
/// Most carry-over rounds before the last one takes the lock whatever is left.
const ROUNDS: usize = 16;

/// What a pack keeps beside the current state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    /// Only what is visible now (the default).
    #[default]
    Nothing,
    /// Every version needed to read the database as it was after each of the last
    /// `n` transactions.
    Transactions(u64),
    /// Every version needed to read the database as it was at any moment of the last
    /// `d` (by commit timestamps).
    Duration(Duration),
}

/// A callback that is told how a pack is getting on.
pub type ProgressFn = Arc<dyn Fn(&PackProgress) + Send + Sync>;

/// How to pack.
#[derive(Clone, Default)]
pub struct PackOptions {
    /// History to keep (point-in-time views in that window survive the pack).
    pub keep: Keep,
    /// Report what a pack would keep and free, writing nothing.
    pub dry_run: bool,
    /// Pack even if reachable records refer to oids that have no record (the
    /// references stay dangling); without it such a pack is refused with
    /// [`Error::DanglingRefs`].
    pub force: bool,
    /// Called after each step with the progress so far.
    pub progress: Option<ProgressFn>,
}

impl fmt::Debug for PackOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackOptions")
            .field("keep", &self.keep)
            .field("dry_run", &self.dry_run)
            .field("force", &self.force)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl PackOptions {
    /// Sets [`progress`](PackOptions::progress) to feed the returned stream, for a
    /// caller that shows progress from a task: the stream yields the pack's progress
    /// reports and ends when the pack is over. A consumer that falls behind misses
    /// reports in between, never the pack's time.
    ///
    /// ```
    /// use durus::journal::PackOptions;
    /// use durus::{Counter, Db};
    /// use futures::StreamExt;
    ///
    /// # fn main() -> durus::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// futures::executor::block_on(async {
    ///     let db: Db<Counter> = Db::open(dir.path().join("c.durus")).await?;
    ///     let mut opts = PackOptions::default();
    ///     let progress = opts.progress_stream();
    ///     let shown = progress.for_each(|p| {
    ///         eprintln!("{:?}: {} objects, {} bytes", p.phase, p.objects, p.bytes);
    ///         futures::future::ready(())
    ///     });
    ///     let (report, ()) = futures::join!(db.pack(opts), shown);
    ///     assert_eq!(report?.objects, 1);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn progress_stream(&mut self) -> futures::stream::BoxStream<'static, PackProgress> {
        use futures::StreamExt;
        let (tx, rx) = futures::channel::mpsc::channel(64);
        let tx = std::sync::Mutex::new(tx);
        self.progress = Some(Arc::new(move |p: &PackProgress| {
            // Full: the consumer is behind, and this report is dropped.
            let _ = crate::sync::lock(&tx).try_send(*p);
        }));
        rx.boxed()
    }
}

/// What a pack is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackPhase {
    /// Walking references from the root and copying the versions it reaches.
    Marking,
    /// Copying the transactions after the pack point.
    Copying,
    /// Putting the new file in place.
    Switching,
}

/// Progress of a pack, as [`PackOptions::progress`] is told it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackProgress {
    /// The phase.
    pub phase: PackPhase,
    /// Objects marked reachable so far.
    pub objects: u64,
    /// Bytes of the new file so far.
    pub bytes: u64,
}

/// What a pack did (or, for a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackReport {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// The pack point: snapshots from here on read exactly as before.
    pub history_from: Tid,
    /// Objects kept (reachable at the pack point).
    pub objects: u64,
    /// Bytes of their versions.
    pub object_bytes: u64,
    /// Transactions after the pack point, copied whole.
    pub transactions: u64,
    /// Size of the journal before (its logical end).
    pub bytes_before: u64,
    /// Size of the packed journal.
    pub bytes_after: u64,
    /// References to oids that have no record (only with `force`; otherwise the pack
    /// was refused).
    pub dangling: u64,
}

impl PackReport {
    /// Bytes the pack freed (or would free).
    pub fn freed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

impl Journal {
    /// Packs the journal in place (see the [module docs](self)): writes the packed file
    /// beside it (`<path>.packing`), syncs it, renames it over the journal and goes on
    /// with it. Commits and loads from other threads go on meanwhile, except for a short
    /// pause at the switch. A stray `.packing` file of a crashed pack is removed by the
    /// next writable open.
    ///
    /// # Errors
    ///
    /// [`Error::DanglingRefs`] if reachable records refer to missing oids (unless
    /// [`PackOptions::force`]); [`Error::Unsupported`] for a journal opened without a
    /// path (use [`pack_into`](Journal::pack_into)), and in shared mode on a platform
    /// that cannot tell files apart by device and inode; [`Error::Locked`] in shared
    /// mode while another process packs; [`Error::ReadOnly`]; [`Error::Cancelled`] if
    /// `cancel` was set. On any error the journal goes on as it was and the partial
    /// file is removed.
    ///
    /// In shared mode the other processes move onto the packed file when they next
    /// append or catch up (see [`refresh`](Journal::refresh)).
    pub fn pack(&self, opts: &PackOptions, cancel: &AtomicBool) -> Result<PackReport> {
        self.check_writable()?;
        self.check_packable()?;
        let path = self.path.clone().ok_or_else(|| Error::Unsupported {
            what: "pack of a journal opened without a path (use pack_into)".into(),
        })?;
        let tmp = packing_path(&path);
        let _one = crate::sync::lock(&self.packing);
        // In shared mode other processes may pack too: one at a time, by a lock file of
        // its own (the new file's lock must be shared, like the journal's).
        let _only_packer = if self.opts.shared {
            Some(pack_lock(&path)?)
        } else {
            None
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        // The new file is the journal once renamed: it must be locked like it before
        // anyone can open it under its name.
        let lock = file.try_clone()?;
        let locked = if self.opts.shared {
            lock.try_lock_shared()
        } else {
            lock.try_lock()
        };
        if let Err(e) = locked {
            let _ = std::fs::remove_file(&tmp);
            return Err(super::lock_error(&tmp, e));
        }
        let id = super::open::file_id(&lock)?;
        let out: Arc<dyn FileIo> = Arc::new(OsFile::new(file));
        let mut lock = Some(lock);
        let r = self.pack_locked(out, opts, cancel, &mut |w| {
            std::fs::rename(&tmp, &path)?;
            w.file_id = id;
            if let Some(l) = lock.take() {
                if let Some(old) = w.lock.replace(l) {
                    // The old file is no longer the journal; its lock means nothing.
                    let _ = old.unlock();
                }
            }
            Ok(())
        });
        match r {
            Ok(report) if !report.dry_run => {
                // The rename must be durable before anything appended to the new file
                // is acknowledged as durable.
                super::open::sync_dir(&path).map_err(|e| match e {
                    Error::Io(io) => self.poison(
                        std::io::Error::new(io.kind(), io.to_string()),
                        "syncing the directory after a pack",
                    ),
                    other => other,
                })?;
                Ok(report)
            }
            other => {
                let _ = std::fs::remove_file(&tmp);
                other
            }
        }
    }

    /// Packs the journal into `out` (an empty file) and, once `out` is complete and
    /// synced, calls `publish` to put it in place of the journal's file (for a file
    /// system: a rename), then goes on with `out`. If `publish` fails nothing changes.
    /// For tests that inject faults into the new file, and for journals on other
    /// [`FileIo`]s.
    ///
    /// # Errors
    ///
    /// As [`pack`](Journal::pack), and `publish`'s error.
    pub fn pack_into(
        &self,
        out: Arc<dyn FileIo>,
        opts: &PackOptions,
        cancel: &AtomicBool,
        publish: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<PackReport> {
        self.check_writable()?;
        if self.opts.shared {
            // Other processes find a packed file by its name: only `pack` renames.
            return Err(Error::Unsupported {
                what: "pack_into in shared mode (use pack)".into(),
            });
        }
        let _one = crate::sync::lock(&self.packing);
        self.pack_locked(out, opts, cancel, &mut |_| publish())
    }

    fn check_packable(&self) -> Result<()> {
        // Other processes notice a packed file by its identity (device and inode).
        if self.opts.shared && (self.append_lock.is_none() || !cfg!(unix)) {
            return Err(Error::Unsupported {
                what: "pack in shared mode on this platform".into(),
            });
        }
        Ok(())
    }

    /// Shared mode: catches up with what other processes appended, so that a
    /// carry-over round copies it too. A no-op otherwise.
    fn catch_up_with_others(&self) -> Result<()> {
        if self.opts.shared {
            let _w = self.lock_writer();
            self.catch_up_to_synced()?;
        }
        Ok(())
    }

    /// The steps of a pack, with the pack lock held.
    fn pack_locked(
        &self,
        out: Arc<dyn FileIo>,
        opts: &PackOptions,
        cancel: &AtomicBool,
        publish: &mut dyn FnMut(&mut super::state::Writer) -> std::io::Result<()>,
    ) -> Result<PackReport> {
        let start = self.pack_point(opts.keep)?;
        // What is appended from here on is garbage this pack cannot collect.
        if !opts.dry_run {
            self.since_pack.store(0, Ordering::Relaxed);
        }
        let report_progress = |phase, walk: Option<&Walk>, out: &Output<'_>| -> Result<()> {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            if let Some(p) = &opts.progress {
                p(&PackProgress {
                    phase,
                    objects: walk.map_or(out.kept, |w| w.marked),
                    bytes: out.end(),
                });
            }
            Ok(())
        };
        let record = PackRecord {
            generation: start.generation + 1,
            history_from: start.point,
            history_timestamp: start.point_timestamp,
            packed_at: now_micros(),
        };
        let mut head = FileHeader {
            version: VERSION,
            ..FileHeader::new(now_micros())
        }
        .encode_region();
        let at = PACK_RECORD_AT as usize;
        head[at..at + PACK_RECORD_LEN].copy_from_slice(&record.encode());
        let sink: Arc<dyn FileIo> = if opts.dry_run {
            Arc::new(Discard)
        } else {
            out.clone()
        };
        let mut output = Output::new(&*sink, head, (start.point, start.point_timestamp), start.next_oid);
        // Background syncs only while nobody has committed since the pack began: one
        // commit, and the disk is left to the commits for the rest of the pack.
        let groups_at_start = self.groups.load(Ordering::Relaxed);
        output.set_writeback(writeback::Writeback::new(
            sink.clone(),
            writeback::EVERY,
            move || self.groups.load(Ordering::Relaxed) == groups_at_start,
        ));

        // The window's transactions are copied whole, so what they refer to must be
        // kept too, as of the pack point.
        let mut walk = Walk::new([Oid::ROOT]);
        let window_from = if start.point < start.last_tid {
            self.window_roots(&start, &mut walk)?
        } else {
            start.end
        };
        self.mark_and_keep(&start.file, start.point, &mut walk, &mut output, &mut |w, o| {
            report_progress(PackPhase::Marking, Some(w), o)
        })?;
        let mut copied_to =
            self.copy_blocks(&start.file, window_from, start.end, start.point, &mut output)?;
        report_progress(PackPhase::Copying, None, &output)?;
        // Commits made meanwhile, in rounds, until what is left is small.
        for _ in 0..ROUNDS {
            self.catch_up_with_others()?;
            let end = self.read_state().end;
            if end - copied_to < CALM {
                break;
            }
            copied_to = self.copy_blocks(&start.file, copied_to, end, start.point, &mut output)?;
            report_progress(PackPhase::Copying, None, &output)?;
        }
        report_progress(PackPhase::Switching, None, &output)?;
        // The index checkpoint of everything so far is written and synced before commits
        // pause: the switch then writes and syncs only the last round after it (which
        // the journal reads by scanning after the checkpoint, as an open does), not an
        // index of 12 bytes an oid.
        let checkpoint = output.finish(super::checkpoint::PAGE_ENTRIES)?;
        if !opts.dry_run {
            // Room for the last round (what is left now, twice over) and the commits
            // after the switch.
            let left = self.read_state().end.saturating_sub(copied_to);
            output.preallocate(2 * left + self.opts.preallocate)?;
            output.settle()?;
            sink.sync_data()?;
        }
        let mut w = self.lock_writer();
        self.check_writable()?;
        // In shared mode nobody appends from here until the switch, and taking the lock
        // catches up with what they appended before.
        let _appending = self.lock_appends(&mut w)?;
        let end = self.read_state().end;
        copied_to = self.copy_blocks(&start.file, copied_to, end, start.point, &mut output)?;
        debug_assert_eq!(copied_to, end);
        output.flush()?;
        output.settle()?;
        let (dangling, named) = walk.missing.dangling(&output);
        if dangling > 0 && !opts.force {
            return Err(Error::DanglingRefs {
                count: dangling,
                oids: named,
            });
        }
        let report = PackReport {
            dry_run: opts.dry_run,
            history_from: Tid(start.point),
            objects: output.kept,
            object_bytes: output.kept_bytes,
            transactions: output.copied,
            bytes_before: end,
            bytes_after: output.end(),
            dangling,
        };
        if opts.dry_run {
            return Ok(report);
        }
        self.switch(&mut w, out, checkpoint, report.bytes_after, record, publish)?;
        self.packs.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    /// Scans the transactions after the pack point that exist now, adding what they
    /// refer to to the walk; returns where the first of them is.
    fn window_roots(&self, start: &Start, walk: &mut Walk) -> Result<u64> {
        let mut first = start.end;
        let file = &*start.file;
        transactions_after(
            file,
            DATA_START,
            start.end,
            0,
            start.point,
            |sc, offset, _, entries| {
                first = first.min(offset);
                for e in entries {
                    let bytes = read_block_part(sc, file, e.offset, e.len as u64)?;
                    let (_, _, refs) = split_framed(&bytes[super::format::ENTRY_HEADER..])?;
                    for r in refs.chunks_exact(8) {
                        walk.reach(Oid(be_u64(r)));
                    }
                }
                Ok(())
            },
        )?;
        Ok(first)
    }

    /// Copies the transactions after `point` among the blocks of `file` in
    /// `from..to` (whole blocks) into `output`; returns `to`.
    fn copy_blocks(
        &self,
        file: &Arc<dyn FileIo>,
        from: u64,
        to: u64,
        point: u64,
        output: &mut Output<'_>,
    ) -> Result<u64> {
        if from >= to {
            return Ok(from);
        }
        let last = output_last_tid(output, point);
        let end = transactions_after(&**file, from, to, last, point, |sc, offset, header, entries| {
            let block = read_block_part(sc, &**file, offset, header.len)?;
            let parts: Vec<(Oid, usize, u32)> = entries
                .iter()
                .map(|e| (e.oid, (e.offset - offset) as usize, e.len))
                .collect();
            output.copy_transaction(header, &block, &parts)
        })?;
        if end != to {
            return Err(Error::corrupt(
                end,
                "the journal ends before its known end while packing",
            ));
        }
        Ok(to)
    }

    /// Where the pack starts: the pack point for `keep` and what the journal holds.
    fn pack_point(&self, keep: Keep) -> Result<Start> {
        let (last_tid, last_ts, from, from_ts) = {
            let st = self.read_state();
            (
                st.last_tid,
                st.last_timestamp,
                st.history.history_from,
                st.history.history_timestamp,
            )
        };
        let point = match keep {
            Keep::Nothing => last_tid,
            Keep::Transactions(n) => {
                let txs = self.transactions(Tid(from))?;
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if txs.len() > n {
                    txs[txs.len() - n - 1].tid.0
                } else {
                    from
                }
            }
            Keep::Duration(d) => {
                let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                let t = now_micros().saturating_sub(micros);
                match self.tid_at_time(t) {
                    Ok(tid) => tid.0,
                    Err(Error::HistoryGone { .. }) => from,
                    Err(e) => return Err(e),
                }
            }
        }
        .max(from);
        let point_timestamp = if point == last_tid {
            last_ts
        } else if point == from {
            // The last pack's point: its transaction is not listed any more.
            from_ts
        } else {
            self.timestamp_of(point)?.unwrap_or(from_ts)
        };
        // Only this pack changes the file, so the state read now is the one the point
        // was chosen in, with perhaps more commits after it.
        let st = self.read_state();
        Ok(Start {
            file: st.file.clone(),
            point,
            point_timestamp,
            last_tid: st.last_tid,
            end: st.end,
            next_oid: st.reserved_oid.max(st.own_until).max(st.next_oid),
            generation: st.history.generation,
        })
    }

    /// The commit timestamp of transaction `tid`, if the journal still lists it.
    fn timestamp_of(&self, tid: u64) -> Result<Option<u64>> {
        let txs = self.transactions(Tid(tid.saturating_sub(1)))?;
        Ok(txs.first().filter(|t| t.tid.0 == tid).map(|t| t.timestamp))
    }
}

/// What a pack starts from.
struct Start {
    /// The old file.
    file: Arc<dyn FileIo>,
    point: u64,
    point_timestamp: u64,
    last_tid: u64,
    end: u64,
    next_oid: u64,
    generation: u64,
}

/// Calls `each` with every transaction block after `point` among the blocks of `file`
/// in `from..to` (a scan that expects tids above `last_tid`); returns where the blocks
/// end.
fn transactions_after(
    file: &dyn FileIo,
    from: u64,
    to: u64,
    last_tid: u64,
    point: u64,
    mut each: impl FnMut(
        &Scanner<'_>,
        u64,
        &super::format::BlockHeader,
        &[super::scan::ScannedEntry],
    ) -> Result<()>,
) -> Result<u64> {
    let mut sc = Scanner::new(file, to, from, last_tid);
    loop {
        match sc.next_step()? {
            Step::Block {
                offset,
                header,
                entries,
            } => {
                if header.kind == BlockKind::Transaction && header.tid > point {
                    each(&sc, offset, &header, &entries)?;
                }
            }
            Step::End { offset, .. } | Step::Torn { offset, .. } => return Ok(offset),
        }
    }
}

/// The last tid the output's copies reached: where a scan of the old file resumes.
fn output_last_tid(output: &Output<'_>, point: u64) -> u64 {
    output.last.0.max(point)
}

/// `len` bytes at `offset` of `file`, from the scanner's buffer when it holds them.
fn read_block_part(sc: &Scanner<'_>, file: &dyn FileIo, offset: u64, len: u64) -> Result<Vec<u8>> {
    if let Some(b) = sc.buffered(offset, len) {
        return Ok(b.to_vec());
    }
    let mut b = vec![0u8; len as usize];
    file.read_exact_at(&mut b, offset)?;
    Ok(b)
}

/// The temporary name a pack writes its file under.
/// Takes the lock of `<path>.packlock`, which only a packing process holds (shared
/// mode); `Error::Locked` while another process packs.
pub(crate) fn pack_lock(path: &std::path::Path) -> Result<std::fs::File> {
    let mut p = path.as_os_str().to_owned();
    p.push(".packlock");
    let p = PathBuf::from(p);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)?;
    f.try_lock().map_err(|e| super::lock_error(&p, e))?;
    Ok(f)
}

pub(crate) fn packing_path(path: &std::path::Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".packing");
    PathBuf::from(p)
}

/// A file that forgets what is written to it: a dry run's output.
#[derive(Debug)]
struct Discard;

impl FileIo for Discard {
    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> std::io::Result<usize> {
        Ok(0)
    }
    fn write_all_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(0)
    }
    fn set_len(&self, _len: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
}
