//! Reading records: the newest version, the version at a snapshot, and batches.
//!
//! Each load comes in two forms: the plain one (`load`), which may wait for the disk and
//! belongs on a thread that may block, and the `try_` one, which never waits: it reads
//! only through [`FileIo::try_read_at`] (the page cache, on Linux), looks only at index
//! pages already in memory, and takes the state lock only if it is free. When any of
//! that would wait it gives up with `None`, and the caller does the plain load on a
//! thread pool instead. Both read the same bytes and decide alike.

use std::sync::RwLockReadGuard;

use super::format::{decode_entry, DATA_START, ENTRY_HEADER};
use super::index::{read_runs, Loc};
use super::io::FileIo;
use super::state::State;
use super::Journal;
use crate::error::{Error, Result};
use crate::record::{Loaded, Oid, Record, Tid};

/// Most bytes a non-waiting load copies on its caller's thread; a larger load is work
/// for the pool even when its bytes are in the page cache.
const NO_WAIT_BYTES: u64 = 64 << 10;

/// Whether a read may wait for the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The plain loads: any read, on a thread that may block.
    Allowed,
    /// The `try_` loads: fail with [`would_block`] rather than wait.
    Never,
}

impl Journal {
    /// Loads the newest record of `oid`.
    pub fn load(&self, oid: Oid) -> Result<Loaded> {
        self.load_newest(oid, Wait::Allowed)
    }

    /// Loads the version of `oid` visible at `snapshot`: the newest committed by a
    /// transaction at or before it.
    pub fn load_at(&self, oid: Oid, snapshot: Tid) -> Result<Loaded> {
        self.load_visible(oid, snapshot, Wait::Allowed)
    }

    /// Loads many oids, each at `snapshot` (or newest); `None` where one does not exist.
    ///
    /// Records that lie close together in the file are fetched with one positioned read
    /// per run (up to 1 MiB), so loading a batch costs a few syscalls, not one each.
    pub fn load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Result<Vec<Option<Loaded>>> {
        self.load_batch(oids, snapshot, Wait::Allowed)
    }

    /// [`load`](Journal::load) if it can be done without waiting for the disk (or for
    /// a writer's memory update); `None` if it would wait: then call `load` on a thread
    /// that may block. Async callers use it to serve page-cache hits on their own
    /// thread. A record over 64 KiB is always left to `load`.
    pub fn try_load(&self, oid: Oid) -> Option<Result<Loaded>> {
        settled(self.load_newest(oid, Wait::Never))
    }

    /// [`load_at`](Journal::load_at) without waiting, as [`try_load`](Journal::try_load).
    pub fn try_load_at(&self, oid: Oid, snapshot: Tid) -> Option<Result<Loaded>> {
        settled(self.load_visible(oid, snapshot, Wait::Never))
    }

    /// [`load_many`](Journal::load_many) without waiting, as
    /// [`try_load`](Journal::try_load); a batch of more than 64 KiB of records is
    /// always left to `load_many`.
    pub fn try_load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Option<Result<Vec<Option<Loaded>>>> {
        settled(self.load_batch(oids, snapshot, Wait::Never))
    }

    fn load_newest(&self, oid: Oid, wait: Wait) -> Result<Loaded> {
        self.check_open()?;
        let (loc, end, file) = {
            let st = self.state_for(wait)?;
            let loc = st.locate(index_io(wait, &*st.file), oid)?.map(|(l, _)| l);
            (loc, st.end, st.file.clone())
        };
        let loc = loc.ok_or(Error::NotFound { oid })?;
        Ok(read_entry(&*file, oid, loc, end, wait)?.0)
    }

    fn load_visible(&self, oid: Oid, snapshot: Tid, wait: Wait) -> Result<Loaded> {
        self.check_open()?;
        let (found, end, last, file, from) = {
            let st = self.state_for(wait)?;
            let found = st.locate(index_io(wait, &*st.file), oid)?;
            (
                found,
                st.end,
                st.last_tid,
                st.file.clone(),
                st.history.history_from,
            )
        };
        if snapshot.0 > last {
            return Err(Error::snapshot_ahead(snapshot, Tid(last)));
        }
        match visible_version(&*file, oid, found.map(|f| f.0), end, snapshot, from, wait) {
            // Packed away here (an old version, or an object unreachable at the pack
            // point); a file a pack replaced may still hold it for a pinned snapshot.
            Err(gone @ (Error::NotFound { .. } | Error::HistoryGone { .. }))
                if self.generations.any_kept() =>
            {
                match self
                    .generations
                    .covering(snapshot.0, wait == Wait::Allowed)
                    .map_err(|()| Error::from(would_block()))?
                {
                    Some(old) => {
                        let found = old.locate(index_io(wait, &*old.file), oid)?;
                        let from = old.history.history_from;
                        visible_version(&*old.file, oid, found.map(|f| f.0), old.end, snapshot, from, wait)
                    }
                    None => Err(gone),
                }
            }
            other => other,
        }
    }

    fn load_batch(&self, oids: &[Oid], snapshot: Option<Tid>, wait: Wait) -> Result<Vec<Option<Loaded>>> {
        self.check_open()?;
        const GAP: u64 = 4096;
        const RUN: u64 = 1 << 20;
        let mut out: Vec<Option<Loaded>> = vec![None; oids.len()];
        // (index in `oids`, where its newest entry is)
        let mut wanted: Vec<(usize, Loc)> = Vec::with_capacity(oids.len());
        let (end, file) = {
            let st = self.state_for(wait)?;
            if let Some(s) = snapshot {
                if s.0 > st.last_tid {
                    return Err(Error::snapshot_ahead(s, Tid(st.last_tid)));
                }
                if s.0 < st.history.history_from {
                    // Before the pack point: one by one, through the older files.
                    drop(st);
                    return oids
                        .iter()
                        .map(|&oid| match self.load_visible(oid, s, wait) {
                            Ok(l) => Ok(Some(l)),
                            Err(Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        })
                        .collect();
                }
            }
            let io = index_io(wait, &*st.file);
            for (i, &oid) in oids.iter().enumerate() {
                if let Some((loc, _)) = st.locate(io, oid)? {
                    wanted.push((i, loc));
                }
            }
            (st.end, st.file.clone())
        };
        if wait == Wait::Never && wanted.iter().map(|(_, l)| l.len as u64).sum::<u64>() > NO_WAIT_BYTES {
            return Err(would_block().into());
        }
        wanted.sort_unstable_by_key(|(_, l)| l.offset);
        let mut older = Vec::new();
        // Entries near each other are read together (a non-waiting batch reads only
        // the entries, not the gaps between them).
        let gap = if wait == Wait::Never { 0 } else { GAP };
        for (run, bytes) in read_runs(&wanted, gap, RUN) {
            let (start, stop) = (bytes.start, bytes.end);
            if start < DATA_START || stop > end {
                return Err(Error::corrupt(start, "index entries point outside the journal"));
            }
            let mut buf = vec![0u8; (stop - start) as usize];
            read_exact(&*file, wait, &mut buf, start)
                .map_err(|e| eof_as_corrupt(e, start, "record entries"))?;
            for &(i, loc) in &wanted[run] {
                let at = (loc.offset - start) as usize;
                let (loaded, _, _) = parse_entry(oids[i], loc, &buf[at..at + loc.len as usize])?;
                match snapshot {
                    Some(s) if loaded.tid > s => older.push(i),
                    _ => out[i] = Some(loaded),
                }
            }
        }
        // Versions older than the newest follow back pointers one by one, and oids
        // without a record here may be in a file a pack replaced.
        if let Some(s) = snapshot {
            if wanted.len() < oids.len()
                && self
                    .generations
                    .covering(s.0, wait == Wait::Allowed)
                    .map_err(|()| Error::from(would_block()))?
                    .is_some()
            {
                // Everything not answered yet: the older versions and the oids this
                // file has no record of.
                older = (0..oids.len()).filter(|&i| out[i].is_none()).collect();
            }
            for i in older {
                out[i] = match self.load_visible(oids[i], s, wait) {
                    Ok(l) => Some(l),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
            }
        }
        Ok(out)
    }

    /// The readers' state; a non-waiting load does not wait for a writer to finish
    /// updating it.
    fn state_for(&self, wait: Wait) -> Result<RwLockReadGuard<'_, State>> {
        match wait {
            Wait::Allowed => Ok(self.read_state()),
            Wait::Never => match self.state.try_read() {
                Ok(st) => Ok(st),
                // Readers and writers only make plain memory updates (see crate::sync).
                Err(std::sync::TryLockError::Poisoned(p)) => Ok(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => Err(would_block().into()),
            },
        }
    }

    /// Every oid that has a record, ascending (for whole-database scans).
    pub fn oids(&self) -> Result<Vec<Oid>> {
        self.check_open()?;
        let (mut oids, base, file) = {
            let st = self.read_state();
            (
                st.overlay.oids().collect::<Vec<_>>(),
                st.base.clone(),
                st.file.clone(),
            )
        };
        if let Some(b) = base {
            oids.extend(b.oids(&*file)?);
        }
        oids.sort_unstable();
        oids.dedup();
        Ok(oids)
    }
}

/// Follows `oid`'s versions back from its newest entry at `newest` to the one visible
/// at `snapshot`. In a file whose history starts at `from` (a pack point), a version
/// that may have been packed away is [`Error::HistoryGone`], never `NotFound` or a
/// newer version.
fn visible_version(
    file: &dyn FileIo,
    oid: Oid,
    newest: Option<Loc>,
    end: u64,
    snapshot: Tid,
    from: u64,
    wait: Wait,
) -> Result<Loaded> {
    let gone = || {
        if snapshot.0 < from {
            Error::HistoryGone { oldest: Tid(from) }
        } else {
            Error::NotFound { oid }
        }
    };
    let mut loc = newest.ok_or_else(gone)?;
    loop {
        let (loaded, prev_offset, prev_len) = read_entry(file, oid, loc, end, wait)?;
        if loaded.tid <= snapshot {
            return Ok(loaded);
        }
        if prev_offset == 0 {
            return Err(gone());
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

/// The file index lookups read pages through: for a non-waiting load, one that reads
/// nothing, so that only pages already in memory are used.
fn index_io(wait: Wait, file: &dyn FileIo) -> &dyn FileIo {
    match wait {
        Wait::Allowed => file,
        Wait::Never => &InMemoryOnly,
    }
}

fn read_exact(file: &dyn FileIo, wait: Wait, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    match wait {
        Wait::Allowed => file.read_exact_at(buf, offset),
        Wait::Never => file.try_read_exact_at(buf, offset),
    }
}

/// Reads and verifies the entry at `loc` of `file` (whose blocks end at `end`),
/// expecting `oid`.
fn read_entry(file: &dyn FileIo, oid: Oid, loc: Loc, end: u64, wait: Wait) -> Result<(Loaded, u64, u32)> {
    if loc.offset < DATA_START || loc.len as u64 > end || loc.offset > end - loc.len as u64 {
        return Err(Error::corrupt(
            loc.offset,
            format!("index entry for {oid} points outside the journal"),
        ));
    }
    if wait == Wait::Never && loc.len as u64 > NO_WAIT_BYTES {
        return Err(would_block().into());
    }
    let mut buf = vec![0u8; loc.len as usize];
    read_exact(file, wait, &mut buf, loc.offset)
        .map_err(|e| eof_as_corrupt(e, loc.offset, "record entry"))?;
    parse_entry(oid, loc, &buf)
}

/// The answer of a non-waiting load: `None` where it gave up. Every I/O error counts as
/// giving up, so that the load done again on the pool, which may wait, is the one that
/// reports a real failure.
fn settled<T>(r: Result<T>) -> Option<Result<T>> {
    match r {
        Err(Error::Io(_)) => None,
        other => Some(other),
    }
}

fn would_block() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::WouldBlock)
}

/// A file that reads nothing: index lookups through it use only the pages they have
/// already read, and fail with `WouldBlock` where they would read one.
struct InMemoryOnly;

impl FileIo for InMemoryOnly {
    fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<usize> {
        Err(would_block())
    }
    fn write_all_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(would_block())
    }
    fn len(&self) -> std::io::Result<u64> {
        Err(would_block())
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(would_block())
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Err(would_block())
    }
}

/// Verifies and decodes the entry bytes read from `loc`, expecting `oid`; returns the
/// record and the entry's back pointer.
fn parse_entry(oid: Oid, loc: Loc, buf: &[u8]) -> Result<(Loaded, u64, u32)> {
    let eh = decode_entry(buf).map_err(|why| Error::corrupt(loc.offset, why))?;
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

/// An `UnexpectedEof` from reading a structure the index or a header promised is
/// damage (the file is shorter than its own records say); other I/O errors stay I/O.
pub(super) fn eof_as_corrupt(e: std::io::Error, offset: u64, what: &str) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Error::corrupt(offset, format!("{what} extends past the end of the file"))
    } else {
        e.into()
    }
}
