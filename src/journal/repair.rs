//! Repairing a journal (cutting off a torn tail) and checking one by path.

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::path::Path;

use super::format::{DurableMark, Slot, SLOT_OFFSETS};
use super::io::{FileIo, OsFile};
use super::recovery::Condition;
use super::scan::ids_named_after;
use super::verify::check_all;
use super::{lock_error, verify, Journal, VerifyReport};
use crate::error::{Error, Result};
use crate::record::Tid;

/// How far [`Journal::repair_with`] may go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RepairMode {
    /// Cut off a torn tail (the one damage a crash leaves) and refuse anything else,
    /// changing nothing. The default.
    #[default]
    TornTailOnly,
    /// Also cut a damaged journal at the end of its last whole block before the damage,
    /// accepting the loss of everything after it (acknowledged transactions among
    /// them), and record in the header every id used so far so that none is handed out
    /// again. For a file that was cut short or damaged in the middle, when no better
    /// copy exists.
    AcceptLoss,
}

/// What [`Journal::repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// Offset the file was truncated at, if it was.
    pub truncated_at: Option<u64>,
    /// Bytes removed from the file.
    pub removed: u64,
    /// The last transaction id kept.
    pub last_tid: Tid,
    /// With [`RepairMode::AcceptLoss`] on a damaged file: what was lost.
    pub loss: Option<Loss>,
}

/// What a repair that accepted a loss gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// Where the damage was.
    pub offset: u64,
    /// What the damage was.
    pub reason: String,
    /// Bytes the header said were durable that the file no longer had (beyond its end).
    pub missing: u64,
    /// The transaction ids known to be lost, first and last (inclusive): every tid the
    /// header or an intact block after the cut named. More may have been lost after
    /// the last header update; none of these tids (nor any oid handed out) is used
    /// again.
    pub tids: Option<(Tid, Tid)>,
}

impl Journal {
    /// Checks the whole journal at `path` (see [`verify()`]), without the write lock.
    pub fn verify_path(path: impl AsRef<Path>) -> Result<VerifyReport> {
        let file = File::open(path.as_ref())?;
        verify(&OsFile::new(file))
    }

    /// Cuts a torn tail off the journal at `path`, after checking every block from the
    /// start; [`repair_with`](Journal::repair_with) in [`RepairMode::TornTailOnly`].
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if a process has the file open for writing;
    /// [`Error::Corrupt`] for damage that is not a torn tail, with nothing changed.
    pub fn repair(path: impl AsRef<Path>) -> Result<RepairReport> {
        Journal::repair_with(path, RepairMode::TornTailOnly)
    }

    /// Repairs the journal at `path` as far as `mode` allows: classifies it as opening
    /// does (see [`Condition`]), cuts off a torn tail, and with
    /// [`RepairMode::AcceptLoss`] cuts a damaged journal at its last whole block.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if a process has the file open for writing;
    /// [`Error::Corrupt`] for damage that `mode` does not allow cutting, with nothing
    /// changed.
    pub fn repair_with(path: impl AsRef<Path>, mode: RepairMode) -> Result<RepairReport> {
        let path = path.as_ref();
        let file = FsOpenOptions::new().read(true).write(true).open(path)?;
        file.try_lock().map_err(|e| lock_error(path, e))?;
        Journal::repair_io(&OsFile::new(file), mode)
    }

    /// [`repair_with`](Journal::repair_with) on any [`FileIo`], which the caller has
    /// made sure no one else writes to.
    pub fn repair_io(io: &dyn FileIo, mode: RepairMode) -> Result<RepairReport> {
        let len = io.len()?;
        let checked = check_all(io)?;
        let head = &checked.head;
        let last = checked.report.last_tid.0;
        let mut report = RepairReport {
            truncated_at: None,
            removed: 0,
            last_tid: Tid(last),
            loss: None,
        };
        match (checked.condition, mode) {
            (Condition::Intact, _) => {}
            (Condition::TornTail { offset, .. }, _) => {
                io.set_len(offset)?;
                io.sync_data()?;
                report.truncated_at = Some(offset);
                report.removed = len - offset;
            }
            (Condition::Damaged { offset, reason }, RepairMode::TornTailOnly) => {
                return Err(Error::corrupt(
                    offset,
                    format!(
                        "{reason}; this is not a torn tail, so nothing was changed (repairing with AcceptLoss, `durus repair --accept-loss`, cuts the journal at offset {} and loses what follows)",
                        checked.cut
                    ),
                ));
            }
            (Condition::Damaged { offset, reason }, RepairMode::AcceptLoss) => {
                let cut = checked.cut;
                let next_oid = checked.next_oid;
                let checkpoint = checked.checkpoint;
                let (later_tid, later_oid) = ids_named_after(io, len, cut)?;
                let slots = head.slots.iter().flatten();
                let floor_tid = slots
                    .clone()
                    .filter_map(|s| s.mark)
                    .map(|m| m.last_tid)
                    .fold(later_tid, u64::max);
                let floor_oid = slots
                    .clone()
                    .filter_map(|s| s.mark)
                    .map(|m| m.next_oid)
                    .fold(later_oid.max(next_oid), u64::max);
                let promised = slots
                    .clone()
                    .filter_map(|s| s.mark)
                    .map(|m| m.end)
                    .max()
                    .unwrap_or(0);
                let seq = slots.map(|s| s.seq).max().unwrap_or(0);
                let (offset_cp, len_cp) = checkpoint.unwrap_or((0, 0));
                let mark = DurableMark {
                    last_tid: floor_tid.max(last),
                    next_oid: floor_oid.max(1),
                    end: cut,
                };
                // Both slots describe the repaired file, so that no slot names what was
                // cut; a crash before the truncation below leaves a file that is still
                // damaged, and repairing it again finishes the job.
                for (i, &so) in SLOT_OFFSETS.iter().enumerate() {
                    let slot = Slot {
                        seq: seq.saturating_add(1 + i as u64),
                        offset: offset_cp,
                        len: len_cp,
                        mark: Some(mark),
                    };
                    io.write_all_at(&slot.encode(), so)?;
                }
                io.sync_data()?;
                io.set_len(cut)?;
                io.sync_data()?;
                report.truncated_at = Some(cut);
                report.removed = len - cut;
                report.loss = Some(Loss {
                    offset,
                    reason,
                    missing: promised.saturating_sub(len),
                    tids: (floor_tid > last).then_some((Tid(last + 1), Tid(floor_tid))),
                });
            }
        }
        Ok(report)
    }
}
