//! Walking a whole journal and checking everything in it.

use super::format::{
    decode_entry, BlockKind, CheckpointLayout, DATA_START, ENTRY_HEADER, INDEX_ENTRY, SLOT_OFFSETS,
};
use super::io::FileIo;
use super::recovery::{read_slots, survey, Condition, Head, ScanFrom};
use crate::error::{Error, Result};
use crate::record::{be_u32, be_u64, split_framed, Oid, OidMap, Tid};

/// What [`verify`] found in a journal that checked out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Transactions checked.
    pub transactions: u64,
    /// Record entries checked.
    pub records: u64,
    /// Index checkpoints checked (every page).
    pub checkpoints: u64,
    /// The last index checkpoint: its offset and the transaction it indexes up to.
    pub last_checkpoint: Option<(u64, Tid)>,
    /// Oid reservations seen.
    pub reservations: u64,
    /// The last transaction id.
    pub last_tid: Tid,
    /// Offset where the journal ends.
    pub end: u64,
    /// Set when the journal ends in a torn tail (a cut-off write) at this offset, which
    /// opening ignores and [`repair`](super::Journal::repair) removes.
    pub torn_tail: Option<u64>,
    /// Everything before this offset was made durable as far as the header knows (the
    /// journal ends at or after it).
    pub durable_end: u64,
}

/// Checks a whole journal: the file header and slots, every block's checksums, every
/// record entry's checksum and back pointer, every checkpoint's pages and index entries
/// against the records before it, that nothing intact follows the end, and that the
/// file holds everything its header says was made durable. The file's condition is
/// decided as opening decides it (see [`Condition`](super::Condition)); damage, and any
/// problem in the contents of the blocks that opening does not read (it checks each
/// block's checksum, not each record's), is returned as [`Error::Corrupt`] with its
/// offset. [`Journal::repair`](super::Journal::repair) decides exactly alike.
pub fn verify(io: &dyn FileIo) -> Result<VerifyReport> {
    let checked = check_all(io)?;
    match checked.condition {
        Condition::Damaged { offset, reason } => Err(Error::Corrupt { offset, reason }),
        _ => Ok(checked.report),
    }
}

/// Everything a whole-journal check learns, for `verify` and `repair` alike.
pub(super) struct Checked {
    /// The counts, as `verify` reports them.
    pub report: VerifyReport,
    /// The condition, with damage found by any check.
    pub condition: Condition,
    /// Where the whole blocks that passed every check end: where a repair that
    /// accepts a loss cuts.
    pub cut: u64,
    /// The newest checkpoint among those blocks (offset, length).
    pub checkpoint: Option<(u64, u64)>,
    /// The highest oid allocation mark those blocks name.
    pub next_oid: u64,
    /// What the header slots said.
    pub head: Head,
}

/// Reads and checks every block of the journal in `io`; I/O errors are errors, damage
/// is in the returned condition.
pub(super) fn check_all(io: &dyn FileIo) -> Result<Checked> {
    let len = io.len()?;
    let head = read_slots(io, len)?;
    let mut report = VerifyReport {
        durable_end: head.mark.end,
        ..VerifyReport::default()
    };
    // Newest entry of each oid so far: offset and length.
    let mut newest: OidMap<(u64, u32)> = OidMap::default();
    let mut checkpoints = Vec::new();
    let mut next_oid = 0;
    // The block being checked, and where the blocks that passed end.
    let (mut current, mut cut) = (DATA_START, DATA_START);
    let found = survey(io, len, &head, ScanFrom::Start, |b| {
        current = b.offset;
        match b.header.kind {
            BlockKind::Transaction | BlockKind::Pack => {
                for e in b.entries {
                    let at = (e.offset - b.offset) as usize;
                    let held = b.bytes.and_then(|bytes| bytes.get(at..at + e.len as usize));
                    check_entry(io, held, e.offset, e.len, &mut newest)?;
                }
                if b.header.kind == BlockKind::Transaction {
                    report.transactions += 1;
                }
                report.records += b.entries.len() as u64;
                report.last_tid = Tid(b.header.tid);
            }
            BlockKind::Checkpoint => {
                check_checkpoint_pages(io, b.offset, b.header, &newest)?;
                checkpoints.push((b.offset, b.header.len));
                report.checkpoints += 1;
                report.last_checkpoint = Some((b.offset, Tid(b.header.tid)));
            }
            BlockKind::Reservation => report.reservations += 1,
        }
        next_oid = next_oid.max(b.header.next_oid);
        cut = b.offset + b.header.len;
        Ok(())
    });
    let mut condition = match found {
        Ok(found) => {
            report.end = found.end;
            if let Condition::TornTail { offset, .. } = &found.condition {
                report.torn_tail = Some(*offset);
            }
            found.condition
        }
        // A record, back pointer or index entry that does not check out: the block
        // holding it is where the whole part of the journal ends.
        Err(Error::Corrupt { offset, reason }) => {
            cut = current;
            Condition::Damaged { offset, reason }
        }
        Err(e) => return Err(e),
    };
    if !matches!(condition, Condition::Damaged { .. }) {
        // The slots' checkpoints checked out where they are; they must also be blocks
        // of the journal, not bytes that happen to look like one.
        for (&so, s) in SLOT_OFFSETS.iter().zip(&head.slots) {
            let Some(s) = s else { continue };
            if s.has_checkpoint() && !checkpoints.contains(&(s.offset, s.len)) {
                condition = Condition::Damaged {
                    offset: so,
                    reason: format!(
                        "the header slot names a checkpoint at offset {} that is not a block of the journal",
                        s.offset
                    ),
                };
                break;
            }
        }
    }
    if let Some(damage) = &head.damage {
        condition = damage.clone();
    }
    Ok(Checked {
        report,
        condition,
        cut,
        checkpoint: checkpoints.iter().rev().find(|(o, l)| o + l <= cut).copied(),
        next_oid,
        head,
    })
}

/// Checks one record entry's checksum, framing and back pointer against the newest
/// entry of its oid so far, and records it as the newest. `held` is the entry's bytes
/// if the scan still has them; otherwise they are read.
fn check_entry(
    io: &dyn FileIo,
    held: Option<&[u8]>,
    offset: u64,
    len: u32,
    newest: &mut OidMap<(u64, u32)>,
) -> Result<()> {
    let read;
    let b = match held {
        Some(b) => b,
        None => {
            let mut b = vec![0u8; len as usize];
            io.read_exact_at(&mut b, offset)?;
            read = b;
            &read[..]
        }
    };
    let eh = decode_entry(b).map_err(|why| Error::corrupt(offset, why))?;
    let (oid, _, _) = split_framed(&b[ENTRY_HEADER..])
        .map_err(|_| Error::corrupt(offset, "record framing is malformed"))?;
    let want = newest.get(&oid).copied().unwrap_or((0, 0));
    if (eh.prev_offset, eh.prev_len) != want {
        return Err(Error::corrupt(
            offset,
            format!(
                "back pointer of {} is {:?}, expected {:?}",
                oid,
                (eh.prev_offset, eh.prev_len),
                want
            ),
        ));
    }
    newest.insert(oid, (offset, len));
    Ok(())
}

fn check_checkpoint_pages(
    io: &dyn FileIo,
    offset: u64,
    h: &super::format::BlockHeader,
    newest: &OidMap<(u64, u32)>,
) -> Result<()> {
    // The scan that handed over this block already checked every page's checksum.
    let layout = CheckpointLayout::of(h)
        .ok_or_else(|| Error::corrupt(offset, "checkpoint has an impossible shape"))?;
    for p in 0..layout.pages {
        let (at, n) = layout.page_span(p);
        let at = offset + at;
        let mut b = vec![0u8; n];
        io.read_exact_at(&mut b, at)?;
        for (i, e) in b.chunks_exact(INDEX_ENTRY).enumerate() {
            let oid = Oid(layout.first_oid(p) + i as u64);
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
