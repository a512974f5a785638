//! Walking a whole journal and checking everything in it.

use std::collections::HashMap;

use super::format::{
    decode_entry, BlockKind, FileHeader, Slot, BLOCK_HEADER, DATA_START, INDEX_ENTRY, SLOT_LEN, SLOT_OFFSETS,
};
use super::io::FileIo;
use super::scan::{checkpoint_pages, later_damage, Scanner, Step};
use crate::error::{Error, Result};
use crate::record::{be_u32, be_u64, Oid, Record, Tid};

/// What [`verify`] found in a journal that checked out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Transactions checked.
    pub transactions: u64,
    /// Record entries checked.
    pub records: u64,
    /// Index checkpoints checked (every page).
    pub checkpoints: u64,
    /// Oid reservations seen.
    pub reservations: u64,
    /// The last transaction id.
    pub last_tid: Tid,
    /// Offset where the journal ends.
    pub end: u64,
    /// Set when the journal ends in a torn tail (a cut-off write) at this offset, which
    /// opening ignores and [`repair`](super::Journal::repair) removes.
    pub torn_tail: Option<u64>,
}

/// Checks a whole journal: the file header and slots, every block's checksums, every
/// record entry's checksum and back pointer, every checkpoint's pages and index entries
/// against the records before it, and that nothing intact follows the end. Returns the
/// first problem as [`Error::Corrupt`] with its offset.
pub fn verify(io: &dyn FileIo) -> Result<VerifyReport> {
    let len = io.len()?;
    let mut head = vec![0u8; len.min(DATA_START) as usize];
    io.read_exact_at(&mut head, 0)?;
    FileHeader::decode(&head)?;
    if len < DATA_START {
        return Err(Error::corrupt(len, "file header region cut short"));
    }
    let slots: Vec<(u64, Slot)> = SLOT_OFFSETS
        .iter()
        .filter_map(|&so| Slot::decode(&head[so as usize..so as usize + SLOT_LEN]).map(|s| (so, s)))
        .collect();
    let mut rep = VerifyReport::default();
    // Newest entry of each oid so far: offset and length.
    let mut newest: HashMap<Oid, (u64, u32)> = HashMap::new();
    let mut checkpoints = Vec::new();
    let mut sc = Scanner::new(io, len, DATA_START, 0);
    loop {
        match sc.next_step()? {
            Step::Block {
                offset,
                header,
                entries,
            } => match header.kind {
                BlockKind::Transaction => {
                    rep.transactions += 1;
                    rep.last_tid = Tid(header.tid);
                    for e in entries {
                        let mut b = vec![0u8; e.len as usize];
                        io.read_exact_at(&mut b, e.offset)?;
                        let eh = decode_entry(&b, true).map_err(|why| Error::corrupt(e.offset, why))?;
                        let rec = Record::decode(&b[super::format::ENTRY_HEADER..])
                            .map_err(|_| Error::corrupt(e.offset, "record framing is malformed"))?;
                        let want = newest.get(&rec.oid).copied().unwrap_or((0, 0));
                        if (eh.prev_offset, eh.prev_len) != want {
                            return Err(Error::corrupt(
                                e.offset,
                                format!(
                                    "back pointer of {} is {:?}, expected {:?}",
                                    rec.oid,
                                    (eh.prev_offset, eh.prev_len),
                                    want
                                ),
                            ));
                        }
                        newest.insert(rec.oid, (e.offset, e.len));
                        rep.records += 1;
                    }
                }
                BlockKind::Checkpoint => {
                    check_checkpoint_pages(io, offset, &header, &newest)?;
                    checkpoints.push((offset, header.len));
                    rep.checkpoints += 1;
                }
                BlockKind::Reservation => rep.reservations += 1,
            },
            Step::End { offset, .. } => {
                if let Some(later) = later_damage(io, len, offset)? {
                    return Err(Error::corrupt(
                        offset,
                        format!("the journal ends here but an intact block follows at {later}"),
                    ));
                }
                rep.end = offset;
                break;
            }
            Step::Torn { offset, .. } => {
                rep.end = offset;
                rep.torn_tail = Some(offset);
                break;
            }
        }
    }
    for (so, s) in slots {
        if !checkpoints.contains(&(s.offset, s.len)) {
            return Err(Error::corrupt(
                so,
                format!("checkpoint slot names offset {} where no checkpoint is", s.offset),
            ));
        }
    }
    Ok(rep)
}

fn check_checkpoint_pages(
    io: &dyn FileIo,
    offset: u64,
    h: &super::format::BlockHeader,
    newest: &HashMap<Oid, (u64, u32)>,
) -> Result<()> {
    // The scan that handed over this block already checked every page's checksum.
    let pages =
        checkpoint_pages(h).ok_or_else(|| Error::corrupt(offset, "checkpoint has an impossible shape"))?;
    let entries_at = offset + BLOCK_HEADER as u64 + 4 * pages;
    for p in 0..pages {
        let first = p * h.aux;
        let n = (h.count - first).min(h.aux);
        let at = entries_at + first * INDEX_ENTRY as u64;
        let mut b = vec![0u8; (n * INDEX_ENTRY as u64) as usize];
        io.read_exact_at(&mut b, at)?;
        for (i, e) in b.chunks_exact(INDEX_ENTRY).enumerate() {
            let oid = Oid(first + i as u64);
            let got = (be_u64(&e[0..8]), be_u32(&e[8..12]));
            let want = newest.get(&oid).copied().unwrap_or((0, 0));
            if got != want {
                return Err(Error::corrupt(
                    at + (i * INDEX_ENTRY) as u64,
                    format!("checkpoint places {oid} at {got:?} but its newest record is at {want:?}"),
                ));
            }
        }
    }
    if newest.keys().any(|o| o.0 >= h.count) {
        return Err(Error::corrupt(offset, "checkpoint omits oids that have records"));
    }
    Ok(())
}
