//! The oid index: where the newest record of each oid lives in the file.
//!
//! Two layers: the `base` is the index saved in the newest checkpoint, read page by page
//! from the file the first time an oid on a page is looked up (so opening costs nothing
//! per oid); the `overlay` holds every oid written since, with the tid that wrote it.

use std::sync::OnceLock;

use super::format::{BlockHeader, CheckpointLayout, INDEX_ENTRY};
use super::io::FileIo;
use crate::error::{Error, Result};
use crate::record::{be_u32, be_u64, Oid, OidMap};

/// Where one record entry is: offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    /// Absolute offset of the entry.
    pub offset: u64,
    /// Entry length.
    pub len: u32,
}

/// Entries sorted by offset, grouped into runs that one read each covers: an entry
/// joins the run before it if it starts at most `gap` bytes past the run's end and the
/// run stays within `max` bytes (a single longer entry is a run of its own). Yields
/// each run's entries (a range of `sorted`) and the bytes to read.
pub(crate) fn read_runs<T>(
    sorted: &[(T, Loc)],
    gap: u64,
    max: u64,
) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<u64>)> + '_ {
    let mut k = 0;
    std::iter::from_fn(move || {
        let first = sorted.get(k)?.1;
        let start = first.offset;
        let mut stop = start + first.len as u64;
        let mut j = k + 1;
        while let Some(&(_, l)) = sorted.get(j) {
            let l_end = l.offset + l.len as u64;
            if l.offset > stop + gap || l_end - start > max {
                break;
            }
            stop = stop.max(l_end);
            j += 1;
        }
        let entries = k..j;
        k = j;
        Some((entries, start..stop))
    })
}

#[derive(Clone, Copy, Default)]
struct Slot {
    offset: u64,
    tid: u64,
    len: u32,
}

/// Index entries written since the checkpoint. A hash map rather than a vector indexed
/// by oid: oids come from the file, and a damaged or hostile file must not be able to
/// make the index allocate in proportion to an oid's value.
#[derive(Default)]
pub struct Overlay {
    slots: OidMap<Slot>,
    /// One past the highest oid present.
    bound: u64,
}

impl Overlay {
    /// The newest entry of `oid` and the tid that wrote it, if written since the checkpoint.
    pub fn get(&self, oid: Oid) -> Option<(Loc, u64)> {
        let s = self.slots.get(&oid)?;
        Some((
            Loc {
                offset: s.offset,
                len: s.len,
            },
            s.tid,
        ))
    }

    /// Records that `oid`'s newest entry is `loc`, written by `tid`.
    pub fn set(&mut self, oid: Oid, loc: Loc, tid: u64) {
        self.slots.insert(
            oid,
            Slot {
                offset: loc.offset,
                tid,
                len: loc.len,
            },
        );
        self.bound = self.bound.max(oid.0.saturating_add(1));
    }

    /// One past the highest oid present.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// How many oids are present.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The oids present, in no particular order.
    pub fn oids(&self) -> impl Iterator<Item = Oid> + '_ {
        self.slots.keys().copied()
    }
}

/// The index saved in a checkpoint block, paged in lazily.
pub struct BaseIndex {
    /// Offset of the checkpoint block.
    pub block_offset: u64,
    /// Length of the checkpoint block.
    pub block_len: u64,
    /// The checkpoint's header.
    pub header: BlockHeader,
    layout: CheckpointLayout,
    page_crcs: Vec<u32>,
    pages: Vec<OnceLock<Box<[u8]>>>,
}

impl BaseIndex {
    /// Builds the lazy index from a checkpoint's header, the layout it describes, and
    /// its page-CRC bytes.
    pub fn new(
        block_offset: u64,
        header: BlockHeader,
        layout: CheckpointLayout,
        page_crc_bytes: &[u8],
    ) -> BaseIndex {
        let page_crcs: Vec<u32> = page_crc_bytes.chunks_exact(4).map(be_u32).collect();
        let pages = (0..page_crcs.len()).map(|_| OnceLock::new()).collect();
        BaseIndex {
            block_offset,
            block_len: header.len,
            header,
            layout,
            page_crcs,
            pages,
        }
    }

    /// The tid the checkpoint was taken at.
    pub fn tid(&self) -> u64 {
        self.header.tid
    }

    /// One past the highest oid the checkpoint covers.
    pub fn bound(&self) -> u64 {
        self.layout.count
    }

    /// Offset of the first byte of page `p`'s entries.
    fn page_offset(&self, p: u64) -> u64 {
        self.block_offset + self.layout.page_span(p).0
    }

    /// Reads and verifies page `p`, or returns the cached copy.
    pub fn page(&self, io: &dyn FileIo, p: u64) -> Result<&[u8]> {
        let cell = &self.pages[p as usize];
        if let Some(b) = cell.get() {
            return Ok(b);
        }
        let (at, len) = self.layout.page_span(p);
        let at = self.block_offset + at;
        let mut buf = vec![0u8; len];
        io.read_exact_at(&mut buf, at)?;
        if crc32fast::hash(&buf) != self.page_crcs[p as usize] {
            return Err(Error::corrupt(
                at,
                format!("checkpoint index page {p} checksum mismatch"),
            ));
        }
        // Two threads may read the same page at once; both copies are identical.
        let _ = cell.set(buf.into_boxed_slice());
        Ok(cell.get().map(|b| &b[..]).unwrap_or(&[]))
    }

    /// Where `oid`'s newest record was at checkpoint time.
    pub fn get(&self, io: &dyn FileIo, oid: Oid) -> Result<Option<Loc>> {
        if oid.0 >= self.bound() {
            return Ok(None);
        }
        let p = oid.0 / self.layout.per_page;
        let i = ((oid.0 % self.layout.per_page) as usize) * INDEX_ENTRY;
        let page = self.page(io, p)?;
        let e = page
            .get(i..i + INDEX_ENTRY)
            .ok_or_else(|| Error::corrupt(self.page_offset(p), "checkpoint index page too short"))?;
        let offset = be_u64(&e[0..8]);
        if offset == 0 {
            return Ok(None);
        }
        let len = be_u32(&e[8..12]);
        // A checkpoint describes only the journal before it.
        let inside = offset >= super::format::DATA_START
            && offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.block_offset);
        if !inside {
            return Err(Error::corrupt(
                self.page_offset(p) + i as u64,
                format!("checkpoint places {oid} outside the journal before it"),
            ));
        }
        Ok(Some(Loc { offset, len }))
    }

    /// Every oid the checkpoint holds a record for (reads every page).
    pub fn oids(&self, io: &dyn FileIo) -> Result<Vec<Oid>> {
        let mut out = Vec::new();
        for p in 0..self.page_crcs.len() as u64 {
            let page = self.page(io, p)?;
            for (i, e) in page.chunks_exact(INDEX_ENTRY).enumerate() {
                if be_u64(&e[0..8]) != 0 {
                    out.push(Oid(self.layout.first_oid(p) + i as u64));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, len: u32) -> ((), Loc) {
        ((), Loc { offset, len })
    }

    #[test]
    fn entries_near_each_other_are_read_in_runs_of_bounded_length() {
        let sorted = [
            at(100, 10),
            at(110, 10),  // touching
            at(125, 5),   // within the gap of 8
            at(200, 10),  // too far
            at(210, 51),  // would pass the bound of 60 from 200
            at(300, 100), // alone longer than the bound
        ];
        let runs: Vec<_> = read_runs(&sorted, 8, 60).collect();
        assert_eq!(
            runs,
            vec![
                (0..3, 100..130),
                (3..4, 200..210),
                (4..5, 210..261),
                (5..6, 300..400)
            ]
        );
        assert_eq!(read_runs::<()>(&[], 8, 60).count(), 0);
        // No gap allowed: only touching entries join.
        let runs: Vec<_> = read_runs(&sorted[..3], 0, 60).map(|r| r.0).collect();
        assert_eq!(runs, vec![0..2, 2..3]);
    }
}
