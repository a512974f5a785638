//! The one decision about the condition of a journal file: intact, a torn tail (only
//! the last write is incomplete, nothing acknowledged is lost), or damaged. Opening (both
//! modes), [`verify`](super::verify()) and [`repair`](super::Journal::repair) all take it
//! here, so they agree on every file.
//!
//! The decision rests on two things the file says about itself:
//!
//! - **The header slots** record where the newest index checkpoint is and what was
//!   durable when they were written (the synced end, the last tid, the oid allocation
//!   mark). A slot that names a checkpoint which is not there, or a durable end beyond
//!   where the journal's blocks end, means acknowledged transactions are missing: the
//!   file was cut short (a partial copy, a damaged disk). That is damage, never a torn
//!   tail.
//! - **The blocks** after the checkpoint (or from the start) are read in order by the
//!   scanner, which decides whether damage is a torn last write (nothing intact of a
//!   later write follows it) or corruption in the middle.
//!
//! A cut after the last slot write cannot be told from a crash's torn tail by the file
//! alone; how much such a cut can take is bounded by how often slots are written (each
//! index checkpoint, by default every 256 MiB appended and on close, and each oid
//! reservation). Opening reads only the slots, the checkpoint's header and checksum, and
//! the blocks that follow it; `verify` and `repair` read and check every block and
//! record from the start, so they also find damage before the checkpoint and inside its
//! index pages, which an open journal reports as [`Error::Corrupt`] when a read reaches
//! it. On every file the three agree on what opening reads.

use std::sync::Arc;

use super::format::{
    BlockHeader, BlockKind, CheckpointLayout, DurableMark, PackRecord, Slot, DATA_START, SLOT_OFFSETS,
    TRAILER,
};
use super::index::BaseIndex;
use super::io::FileIo;
use super::open::read_head;
use super::scan::{later_damage, ScannedEntry, Scanner, Step};
use crate::error::{Error, Result};

/// The condition of a journal file, as opening, `verify` and `repair` all decide it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Every block is whole and the file holds everything its header says was made
    /// durable. (Preallocated space after the end is not damage.)
    Intact,
    /// Only the last write was cut off, as a crash leaves it; nothing acknowledged is
    /// lost. Opening ignores the tail; the next writer or `repair` cuts it off.
    TornTail {
        /// Where the journal ends and the torn bytes begin.
        offset: u64,
        /// What was wrong with the torn bytes.
        reason: String,
    },
    /// Damage recovery may not cut silently: corruption in the middle of the journal,
    /// or a file shorter than what its own header says was made durable. Opening fails
    /// with [`Error::Corrupt`] and changes nothing; `repair` refuses unless told to
    /// accept the loss.
    Damaged {
        /// Where the damage is.
        offset: u64,
        /// What is wrong, naming the offsets involved.
        reason: String,
    },
}

impl Condition {
    /// The [`Error::Corrupt`] that reports damage, if this is damage.
    pub fn to_error(&self) -> Option<Error> {
        match self {
            Condition::Damaged { offset, reason } => Some(Error::corrupt(*offset, reason.clone())),
            _ => None,
        }
    }
}

/// Where a survey starts reading blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanFrom {
    /// After the newest checkpoint (opening: work proportional to what followed it).
    Checkpoint,
    /// From the first block (verify, repair: every block is read).
    Start,
}

/// What the header slots say, checked against the file.
pub(crate) struct Head {
    /// The two header slots, as decoded.
    pub slots: [Option<Slot>; 2],
    /// A packed file's pack record.
    pub pack: Option<PackRecord>,
    /// The greatest durable state the valid slots record.
    pub mark: DurableMark,
    /// The checkpoint the newest slot names (its pages are read lazily).
    pub base: Option<Arc<BaseIndex>>,
    /// Damage the slots show: a checkpoint that is not there, or a durable end the
    /// file does not reach.
    pub damage: Option<Condition>,
}

/// What a survey of the blocks found.
pub(crate) struct Survey {
    /// The condition of the file.
    pub condition: Condition,
    /// Where the whole blocks end (with damage: where the blocks before it end).
    pub end: u64,
    /// Whether bytes follow `end` (a torn tail, or preallocated space to reuse).
    pub spare: bool,
    /// Where the scan started.
    pub start: u64,
}

/// One whole block the survey read, handed to its caller in file order.
pub(crate) struct BlockSeen<'a> {
    /// Offset of the block.
    pub offset: u64,
    /// Its header.
    pub header: &'a BlockHeader,
    /// Its record entries (transactions only).
    pub entries: &'a [ScannedEntry],
    /// The block's bytes, when the scan still has them in memory.
    pub bytes: Option<&'a [u8]>,
}

/// Reads the file header and both slots of the journal in `io` (of `file_len` bytes) and
/// checks what each valid slot claims: its checkpoint is there and whole, and the file
/// reaches its durable end.
pub(crate) fn read_slots(io: &dyn FileIo, file_len: u64) -> Result<Head> {
    let (_, slots, pack) = read_head(io, file_len)?;
    let mut order: Vec<(usize, Slot)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect();
    // The newest slot first, so that its problem is the one reported.
    order.sort_by_key(|(_, s)| std::cmp::Reverse(s.seq));
    let mut head = Head {
        slots,
        pack,
        mark: DurableMark::default(),
        base: None,
        damage: None,
    };
    for (k, (i, s)) in order.into_iter().enumerate() {
        match check_slot(io, file_len, SLOT_OFFSETS[i], &s)? {
            Err(damage) => {
                head.damage.get_or_insert(damage);
            }
            Ok(checked) => {
                head.mark.last_tid = head.mark.last_tid.max(checked.mark.last_tid);
                head.mark.next_oid = head.mark.next_oid.max(checked.mark.next_oid);
                head.mark.end = head.mark.end.max(checked.mark.end);
                if k == 0 {
                    head.base = checked.base;
                }
            }
        }
    }
    Ok(head)
}

/// Decides the condition of the journal whose slots are `head`, reading its blocks from
/// `from` and handing every whole block to `on_block`. I/O errors (and errors
/// `on_block` returns) are returned as errors; damage is a [`Condition::Damaged`] in
/// the survey. Damage the slots show is the condition whatever the blocks hold, but the
/// blocks are read up to their own end all the same, so that a repair knows where the
/// whole part ends.
pub(crate) fn survey(
    io: &dyn FileIo,
    file_len: u64,
    head: &Head,
    from: ScanFrom,
    mut on_block: impl FnMut(BlockSeen<'_>) -> Result<()>,
) -> Result<Survey> {
    let (start, last_tid) = match (from, &head.base) {
        (ScanFrom::Checkpoint, Some(b)) => (b.block_offset + b.block_len, b.header.tid),
        _ => (DATA_START, 0),
    };
    let mut file_len = file_len;
    let mut sc = Scanner::new(io, file_len, start, last_tid);
    // Where the end was read again after an intact block turned up past it.
    let mut reread_at = None;
    let (end, spare, mut condition) = loop {
        match sc.next_step() {
            Ok(Step::Block {
                offset,
                header,
                entries,
            }) => on_block(BlockSeen {
                offset,
                header: &header,
                entries: &entries,
                bytes: sc.buffered(offset, header.len),
            })?,
            Ok(Step::End { offset, .. }) => {
                if file_len > offset {
                    // Zeros mark the end, but a zeroed stretch in the middle of a journal
                    // must not silently hide what follows it.
                    if let Some(later) = later_damage(io, file_len, offset)? {
                        // A writer in another process appends as this reads: the end
                        // can be read before a group was written there and the later
                        // group after. A writer appends in order, so once the later
                        // group is there the one at the end is too; reading the end
                        // again tells that from damage, which reads the same.
                        if reread_at != Some(offset) {
                            reread_at = Some(offset);
                            file_len = io.len()?.max(file_len);
                            sc.reread(file_len);
                            continue;
                        }
                        break (
                            offset,
                            true,
                            Condition::Damaged {
                                offset,
                                reason: format!("the journal reads as ending here, but an intact block follows at {later}"),
                            },
                        );
                    }
                }
                break (offset, file_len > offset, Condition::Intact);
            }
            Ok(Step::Torn { offset, reason }) => {
                break (
                    offset,
                    true,
                    Condition::TornTail {
                        offset,
                        reason: reason.into(),
                    },
                )
            }
            Err(Error::Corrupt { offset, reason }) => {
                break (sc.position(), true, Condition::Damaged { offset, reason })
            }
            Err(e) => return Err(e),
        }
    };
    if end < head.mark.end && !matches!(condition, Condition::Damaged { .. }) {
        condition = Condition::Damaged {
            offset: end,
            reason: format!(
                "the journal's blocks end at offset {end}, but its header says everything up to offset {} was made durable: acknowledged transactions are missing (the file was cut short)",
                head.mark.end
            ),
        };
    }
    if let Some(damage) = &head.damage {
        condition = damage.clone();
    }
    Ok(Survey {
        condition,
        end,
        spare,
        start,
    })
}

/// A slot that checked out: its durable state and, if it names one, its checkpoint.
struct CheckedSlot {
    mark: DurableMark,
    base: Option<Arc<BaseIndex>>,
}

/// Checks what a slot (at `at` in the header) claims against the file: its checkpoint is
/// there and whole, and the file reaches its durable end.
fn check_slot(
    io: &dyn FileIo,
    file_len: u64,
    at: u64,
    s: &Slot,
) -> Result<std::result::Result<CheckedSlot, Condition>> {
    let damaged = |reason: String| Ok(Err(Condition::Damaged { offset: at, reason }));
    let mut mark = s.mark.unwrap_or_default();
    if let Some(m) = s.mark {
        if m.end > file_len {
            return damaged(format!(
                "the header slot at offset {at} says everything up to offset {} was made durable, but the file ends at offset {file_len}: acknowledged transactions are missing (the file was cut short)",
                m.end
            ));
        }
    }
    if !s.has_checkpoint() {
        if s.mark.is_none() {
            return damaged(format!(
                "the header slot at offset {at} names neither a checkpoint nor a durable state"
            ));
        }
        return Ok(Ok(CheckedSlot { mark, base: None }));
    }
    let cp_end = s
        .offset
        .checked_add(s.len)
        .filter(|&e| s.offset >= DATA_START && e <= file_len);
    let Some(cp_end) = cp_end else {
        return damaged(format!(
            "the header slot at offset {at} names a checkpoint at offset {} of {} bytes, beyond the end of the file at offset {file_len}: acknowledged transactions are missing (the file was cut short)",
            s.offset, s.len
        ));
    };
    let missing = |why: &str| {
        damaged(format!(
            "the header slot at offset {at} names a checkpoint at offset {} where none is ({why})",
            s.offset
        ))
    };
    let mut hb = [0u8; super::format::BLOCK_HEADER];
    io.read_exact_at(&mut hb, s.offset)?;
    let Ok(h) = BlockHeader::decode(&hb) else {
        return missing("no block header");
    };
    if h.kind != BlockKind::Checkpoint || h.len != s.len {
        return missing("a different block");
    }
    let Some(layout) = CheckpointLayout::of(&h) else {
        return missing("an impossible shape");
    };
    let mut head = vec![0u8; layout.head_len()];
    io.read_exact_at(&mut head, s.offset)?;
    let mut tr = [0u8; TRAILER];
    io.read_exact_at(&mut tr, cp_end - TRAILER as u64)?;
    if crc32fast::hash(&head) != u32::from_be_bytes(tr) {
        return missing("its checksum does not match");
    }
    // A slot from before durable marks names only its checkpoint, which was synced.
    if s.mark.is_none() {
        mark = DurableMark {
            last_tid: h.tid,
            next_oid: h.next_oid,
            end: cp_end,
        };
    }
    let base = Arc::new(BaseIndex::new(
        s.offset,
        h,
        layout,
        &head[super::format::BLOCK_HEADER..],
    ));
    Ok(Ok(CheckedSlot {
        mark,
        base: Some(base),
    }))
}
