//! Reading records: the newest version, the version at a snapshot, and batches.

use super::format::{decode_entry, DATA_START, ENTRY_HEADER};
use super::index::Loc;
use super::Journal;
use crate::error::{Error, Result};
use crate::record::{Loaded, Oid, Record, Tid};

impl Journal {
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
            return Err(Error::snapshot_ahead(snapshot, Tid(last)));
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
                    return Err(Error::snapshot_ahead(s, Tid(st.last_tid)));
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
