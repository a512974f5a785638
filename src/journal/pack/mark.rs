//! Marking: a breadth-first walk over the references of the versions visible at the
//! pack point, reading them in batches sorted by their place in the file, each kept
//! version handed to the output as it is found.
//!
//! Memory: one bit per oid for what the walk has seen, a frontier list of at most
//! [`FRONTIER`] oids, and past that one more bit per oid for the oids reached but not
//! yet visited, which are then visited in oid order; plus one batch's reads.

use std::sync::Arc;

use super::super::format::{decode_entry, ENTRY_HEADER};
use super::super::index::read_runs;
use super::super::index::Loc;
use super::super::io::FileIo;
use super::super::read::eof_as_corrupt;
use super::super::Journal;
use super::output::Output;
use crate::error::{Error, Result};
use crate::record::{be_u64, split_framed, Oid};

/// Oids looked up and read per batch.
const BATCH: usize = 8192;
/// Entries closer than this are read with one read.
const GAP: u64 = 64 << 10;
/// Longest single read.
const RUN: u64 = 4 << 20;
/// How many missing oids a refusal names.
const NAMED: usize = 100;
/// Most oids the frontier lists; the rest of what the walk reaches goes into a bitmap.
/// Small in debug builds, so that the tests go through the bitmap too.
const FRONTIER: usize = if cfg!(debug_assertions) { 4 } else { 1 << 18 };

/// One bit per oid: seen by the walk.
#[derive(Default)]
pub(super) struct Bitmap(Vec<u64>);

impl Bitmap {
    /// Sets the bit of `oid`; returns whether it was clear.
    pub(super) fn insert(&mut self, oid: Oid) -> bool {
        let (w, b) = ((oid.0 / 64) as usize, oid.0 % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        let was = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        was
    }

    /// Clears the set bits from word `*word` on, in oid order, adding their oids to
    /// `out` until it holds `max`; `*word` is left where to go on from.
    fn drain_into(&mut self, word: &mut usize, max: usize, out: &mut Vec<Oid>) {
        while *word < self.0.len() && out.len() < max {
            let w = &mut self.0[*word];
            while *w != 0 && out.len() < max {
                let b = w.trailing_zeros();
                *w &= *w - 1;
                out.push(Oid(*word as u64 * 64 + u64::from(b)));
            }
            if *w == 0 {
                *word += 1;
            }
        }
    }
}

/// References to oids that had no version at the pack point.
#[derive(Default)]
pub(super) struct Missing {
    pub(super) oids: Vec<Oid>,
}

impl Missing {
    /// Those of them the new file does not hold in the end: dangling references.
    pub(super) fn dangling(&self, out: &Output<'_>) -> (u64, Vec<Oid>) {
        let gone: Vec<Oid> = self.oids.iter().copied().filter(|&o| !out.has(o)).collect();
        (gone.len() as u64, gone.into_iter().take(NAMED).collect())
    }
}

/// The walk's frontier and what it has seen.
pub(super) struct Walk {
    pub(super) seen: Bitmap,
    pub(super) next: Vec<Oid>,
    pub(super) missing: Missing,
    pub(super) marked: u64,
    /// Oids reached, not yet visited, that did not fit in `next`.
    pending: Bitmap,
    pending_count: usize,
}

/// What one batch works in, kept from batch to batch: a fresh read buffer each time
/// would be mapped, faulted in page by page and unmapped again for every batch.
#[derive(Default)]
struct Scratch {
    /// The batch's oids found in the index, with where their newest entry is.
    found: Vec<(Oid, Loc)>,
    buf: Vec<u8>,
}

impl Walk {
    pub(super) fn new(roots: impl IntoIterator<Item = Oid>) -> Walk {
        let mut w = Walk {
            seen: Bitmap::default(),
            next: Vec::new(),
            missing: Missing::default(),
            marked: 0,
            pending: Bitmap::default(),
            pending_count: 0,
        };
        for r in roots {
            w.reach(r);
        }
        w
    }

    /// Adds `oid` to the frontier unless it was seen.
    pub(super) fn reach(&mut self, oid: Oid) {
        if self.seen.insert(oid) {
            if self.next.len() < FRONTIER {
                self.next.push(oid);
            } else {
                self.pending.insert(oid);
                self.pending_count += 1;
            }
        }
    }

    /// Adds every oid `refs` (8 bytes each) names.
    fn reach_refs(&mut self, refs: &[u8]) {
        for r in refs.chunks_exact(8) {
            self.reach(Oid(be_u64(r)));
        }
    }
}

impl Journal {
    /// Walks from the walk's frontier until it is empty, keeping the version of every
    /// oid reached that is visible at `point`; `step` is called after each batch
    /// (progress, cancellation).
    pub(super) fn mark_and_keep(
        &self,
        file: &Arc<dyn FileIo>,
        point: u64,
        walk: &mut Walk,
        out: &mut Output<'_>,
        step: &mut dyn FnMut(&Walk, &Output<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut level = Vec::new();
        let mut scratch = Scratch::default();
        loop {
            if !walk.next.is_empty() {
                std::mem::swap(&mut level, &mut walk.next);
                for batch in level.chunks(BATCH) {
                    self.keep_batch(file, point, batch, walk, out, &mut scratch)?;
                    step(walk, out)?;
                }
                level.clear();
                continue;
            }
            if walk.pending_count == 0 {
                return Ok(());
            }
            // One sweep over the oids that overflowed the frontier, in oid order; what
            // it reaches goes to the frontier (visited after the sweep) or, past the
            // frontier's limit, back into the bitmap (ahead of the sweep or behind it,
            // for the next sweep).
            let mut word = 0;
            loop {
                level.clear();
                walk.pending.drain_into(&mut word, BATCH, &mut level);
                if level.is_empty() {
                    break;
                }
                walk.pending_count -= level.len();
                self.keep_batch(file, point, &level, walk, out, &mut scratch)?;
                step(walk, out)?;
            }
            level.clear();
        }
    }

    fn keep_batch(
        &self,
        file: &Arc<dyn FileIo>,
        point: u64,
        batch: &[Oid],
        walk: &mut Walk,
        out: &mut Output<'_>,
        scratch: &mut Scratch,
    ) -> Result<()> {
        let Scratch { found, buf } = scratch;
        found.clear();
        let end = {
            let st = self.read_state();
            for &oid in batch {
                match st.locate(&**file, oid)? {
                    Some((loc, _)) => found.push((oid, loc)),
                    None => walk.missing.oids.push(oid),
                }
            }
            st.end
        };
        found.sort_unstable_by_key(|(_, l)| l.offset);
        for (run, bytes) in read_runs(&found[..], GAP, RUN) {
            let (start, stop) = (bytes.start, bytes.end);
            if stop > end {
                return Err(Error::corrupt(start, "index entries point outside the journal"));
            }
            // Only grown, never shrunk: what it held is overwritten by the read.
            let want = (stop - start) as usize;
            if buf.len() < want {
                buf.resize(want, 0);
            }
            let buf = &mut buf[..want];
            file.read_exact_at(buf, start)
                .map_err(|e| eof_as_corrupt(e, start, "record entries"))?;
            for &(oid, loc) in &found[run] {
                let at = (loc.offset - start) as usize;
                let entry = &buf[at..at + loc.len as usize];
                let eh = decode_entry(entry).map_err(|why| Error::corrupt(loc.offset, why))?;
                if eh.tid <= point {
                    self.keep_one(oid, loc.offset, entry, walk, out)?;
                } else if let Some(older) = version_at(&**file, oid, eh.prev_offset, eh.prev_len, point)? {
                    self.keep_one(oid, loc.offset, &older, walk, out)?;
                } else {
                    // Created after the pack point: not part of its state.
                    walk.missing.oids.push(oid);
                }
            }
        }
        Ok(())
    }

    fn keep_one(
        &self,
        oid: Oid,
        offset: u64,
        entry: &[u8],
        walk: &mut Walk,
        out: &mut Output<'_>,
    ) -> Result<()> {
        let (got, _, refs) = split_framed(&entry[ENTRY_HEADER..]).map_err(|e| match e {
            Error::Corrupt { offset: o, reason } => Error::corrupt(offset + ENTRY_HEADER as u64 + o, reason),
            other => other,
        })?;
        if got != oid {
            return Err(Error::corrupt(
                offset,
                format!("index entry for {oid} holds {got}"),
            ));
        }
        walk.reach_refs(refs);
        walk.marked += 1;
        out.keep(oid, entry)
    }
}

/// The entry of the version of `oid` visible at `point`, following back pointers from
/// the entry at `prev`; `None` if the oid had no version then.
fn version_at(
    file: &dyn FileIo,
    oid: Oid,
    mut prev: u64,
    mut prev_len: u32,
    point: u64,
) -> Result<Option<Vec<u8>>> {
    while prev != 0 {
        let mut b = vec![0u8; prev_len as usize];
        file.read_exact_at(&mut b, prev)
            .map_err(|e| eof_as_corrupt(e, prev, "record entry"))?;
        let eh = decode_entry(&b).map_err(|why| Error::corrupt(prev, why))?;
        if eh.tid <= point {
            return Ok(Some(b));
        }
        if eh.prev_offset >= prev {
            return Err(Error::corrupt(
                prev,
                format!("back pointer of {oid} does not point back"),
            ));
        }
        (prev, prev_len) = (eh.prev_offset, eh.prev_len);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_drains_in_oid_order_in_bounded_steps() {
        let mut b = Bitmap::default();
        let oids = [0u64, 1, 63, 64, 65, 200, 1000, 1001, 4095];
        for &o in &oids {
            assert!(b.insert(Oid(o)));
        }
        assert!(!b.insert(Oid(64)));
        let (mut word, mut out) = (0, Vec::new());
        b.drain_into(&mut word, 4, &mut out);
        assert_eq!(out, [0, 1, 63, 64].map(Oid));
        // A bit set behind the sweep waits for the next one; one ahead is found.
        b.insert(Oid(2));
        b.insert(Oid(3000));
        let mut rest = Vec::new();
        b.drain_into(&mut word, usize::MAX, &mut rest);
        assert_eq!(rest, [65, 200, 1000, 1001, 3000, 4095].map(Oid));
        let (mut word, mut again) = (0, Vec::new());
        b.drain_into(&mut word, usize::MAX, &mut again);
        assert_eq!(again, [Oid(2)]);
        let (mut word, mut none) = (0, Vec::new());
        b.drain_into(&mut word, usize::MAX, &mut none);
        assert!(none.is_empty());
    }
}
