//! Shared mode: the lock file held only while appending, catching up with what other
//! processes appended, and the synced-end hint readers follow.

use std::fs::File;
use std::sync::Arc;

use super::io::{FileIo, OsFile};
use super::scan::{Scanner, Step};
use super::state::Writer;
use super::Journal;
use crate::error::{Error, Result};
use crate::record::Tid;

/// Whether other processes may be appending while a catch-up reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writers {
    /// This process holds the append lock: nobody else is writing.
    Stopped,
    /// Without the lock: others may append, cut a torn tail, or trim filler.
    MayBeWriting,
}

/// Releases the lock file's lock when an append (or a failed attempt) is over.
pub(super) struct AppendGuard<'a>(Option<&'a File>);

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.0 {
            let _ = f.unlock();
        }
    }
}

impl Journal {
    /// Catches up with transactions other processes appended (shared mode, or a
    /// read-only journal another process writes) and returns the last tid now known.
    /// Loads and commits never see past what was caught up. A no-op for an exclusive
    /// writer, which appends everything itself.
    pub fn refresh(&self) -> Result<Tid> {
        self.check_open()?;
        if self.others_may_append() {
            let mut w = self.lock_writer();
            if self.file_replaced(&w)? {
                // Loading the new file must not meet an append in progress: in shared
                // mode, wait for the append lock as an open does.
                let _appending = match &self.append_lock {
                    Some(l) => {
                        l.file().lock()?;
                        AppendGuard(Some(l.file()))
                    }
                    None => AppendGuard(None),
                };
                self.follow_pack(&mut w)?;
            }
            self.catch_up_to_synced()?;
        }
        Ok(Tid(self.read_state().last_tid))
    }

    /// Whether the journal's path names another file than the one this process reads
    /// (a pack, here or in another process, put a new one in place).
    pub(super) fn file_replaced(&self, w: &Writer) -> Result<bool> {
        match (&self.path, w.file_id) {
            (Some(path), Some(known)) => Ok(super::open::path_id(path)? != Some(known)),
            _ => Ok(false),
        }
    }

    /// Moves this journal onto the file its path names now, which a pack put in place
    /// of the one it reads. Called with the writer lock, and in shared mode the append
    /// lock, held. Snapshots pinned before keep reading the old file, as after a pack
    /// in this process.
    pub(super) fn follow_pack(&self, w: &mut Writer) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!self.opts.read_only)
            .open(path)?;
        if !self.opts.read_only {
            file.try_lock_shared().map_err(|e| super::lock_error(path, e))?;
        }
        let id = super::open::file_id(&file)?;
        let io: Arc<dyn FileIo> = Arc::new(OsFile::new(file.try_clone()?));
        let len = io.len()?;
        let (mut fresh, mut writer, _) = super::open::load_file(io, len)?;
        let mut behind = None;
        self.generations.retire(|| {
            let mut st = self.write_state();
            if fresh.last_tid < st.last_tid {
                behind = Some((fresh.last_tid, st.last_tid));
            }
            // The oids this process reserved stay its own.
            fresh.next_oid = st.next_oid;
            fresh.own_until = st.own_until;
            fresh.reserved_oid = fresh.reserved_oid.max(st.reserved_oid);
            fresh.last_tid = fresh.last_tid.max(st.last_tid);
            fresh.last_timestamp = fresh.last_timestamp.max(st.last_timestamp);
            let until = st.last_tid + 1;
            (std::mem::replace(&mut *st, fresh), until)
        });
        writer.handed_out = w.handed_out;
        writer.lock = (!self.opts.read_only).then_some(file);
        writer.file_id = id;
        let old = std::mem::replace(w, writer);
        if let Some(f) = old.lock {
            // The old file is no longer the journal; its lock means nothing.
            let _ = f.unlock();
        }
        match behind {
            // A pack copies every transaction appended before it switched, under the
            // append lock: a new file without one this process read lost it.
            Some((has, known)) => Err(Error::corrupt(
                len,
                format!("the packed file in place ends at transaction {has}, but transaction {known} was committed"),
            )),
            None => Ok(()),
        }
    }

    /// Shared mode: takes the lock file's lock (waiting for another process's append to
    /// finish) and catches up with everything appended before it. A no-op otherwise.
    pub(super) fn lock_appends(&self, w: &mut Writer) -> Result<AppendGuard<'_>> {
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
        if self.file_replaced(w)? {
            self.follow_pack(w)?;
        }
        self.catch_up_locked(w)?;
        Ok(guard)
    }

    /// Shared mode: raises the synced end recorded in the lock file to `end`. The hint
    /// lives in the page cache that all processes share and needs no sync of its own:
    /// after a crash every process opens with a full scan. Racing updates may leave it
    /// lower than it could be, which only makes readers wait for the next commit.
    pub(super) fn mark_synced(&self, end: u64) {
        if let (Some(f), Some(now)) = (&self.append_lock, self.synced_hint()) {
            if end > now {
                let _ = f.write_all_at(&end.to_be_bytes(), 0);
            }
        }
    }

    /// Catches up while holding the append lock, so nobody is appending and the tail's
    /// state is authoritative: filler past the end was preallocated by a writer and may
    /// be written over; anything else (a killed writer's partial append, zeros of an old
    /// file) is cut off before the next append.
    fn catch_up_locked(&self, w: &mut Writer) -> Result<()> {
        let file_len = self.file().len()?;
        let (end, filler) = self.follow_appends(file_len, Writers::Stopped)?;
        w.torn_tail = None;
        w.prealloc_end = end;
        if filler {
            w.prealloc_end = file_len;
        } else if file_len > end {
            w.torn_tail = Some(end);
        }
        Ok(())
    }

    /// Catches up without the append lock, reading only what a writer has made durable
    /// (the synced-end hint), while other processes may be appending.
    pub(super) fn catch_up_to_synced(&self) -> Result<()> {
        let file_len = self.file().len()?;
        let limit = self.synced_hint().map_or(file_len, |h| file_len.min(h));
        // The file may shrink under the scan: a writer cut off a torn tail or gave
        // back preallocated space. Both lie past the end.
        self.follow_appends(limit, Writers::MayBeWriting).map(|_| ())
    }

    /// Reads the blocks appended after this process's known end, up to `limit`, and
    /// folds them into the index. Returns where the readable part ends and whether
    /// filler follows it. While other writers may be at work, the file may shrink under
    /// the scan, and running into its end is the end of the readable part rather than
    /// an error.
    fn follow_appends(&self, limit: u64, writers: Writers) -> Result<(u64, bool)> {
        let (start, last_tid, file) = {
            let st = self.read_state();
            (st.end, st.last_tid, st.file.clone())
        };
        let mut blocks = Vec::new();
        let mut sc = Scanner::following(&*file, limit, start, last_tid);
        let (end, filler) = loop {
            match sc.next_step() {
                Ok(Step::Block { header, entries, .. }) => blocks.push((header, entries)),
                Ok(Step::End { offset, filler }) => break (offset, filler),
                Ok(Step::Torn { offset, .. }) => break (offset, false),
                Err(Error::Io(e))
                    if writers == Writers::MayBeWriting && e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
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
        Ok((end, filler))
    }

    /// Shared mode: sets the synced-end hint to `end`, the end of a file a pack just put
    /// in place (lower than the old file's; readers of the old file only read less).
    pub(super) fn reset_synced_hint(&self, end: u64) {
        if let Some(f) = &self.append_lock {
            let _ = f.write_all_at(&end.to_be_bytes(), 0);
        }
    }

    /// The synced end other processes recorded, if this journal is shared.
    fn synced_hint(&self) -> Option<u64> {
        let f = self.append_lock.as_ref()?;
        let mut b = [0u8; 8];
        Some(f.read_exact_at(&mut b, 0).map_or(0, |()| u64::from_be_bytes(b)))
    }
}
