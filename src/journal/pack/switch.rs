//! The end of a pack: the new file's header slot, its sync, putting it in place, and
//! the journal's switch to it under the writer lock.

use std::sync::Arc;

use super::super::format::{DurableMark, PackRecord, Slot, SLOT_OFFSETS};
use super::super::io::FileIo;
use super::super::open::load_file;
use super::super::recovery::Condition;
use super::super::state::Writer;
use super::super::Journal;
use crate::error::{Error, Result};

impl Journal {
    /// Finishes the new file `out` (blocks up to `end`, the checkpoint at
    /// `checkpoint` and the last round's transactions after it), publishes it and moves
    /// the journal onto it. Called with the writer lock held and everything the old file
    /// holds copied, so nothing can be appended to the old file after this.
    pub(super) fn switch(
        &self,
        w: &mut Writer,
        out: Arc<dyn FileIo>,
        checkpoint: (u64, u64),
        end: u64,
        record: PackRecord,
        publish: &mut dyn FnMut(&mut Writer) -> std::io::Result<()>,
    ) -> Result<()> {
        let mark = {
            let st = self.read_state();
            DurableMark {
                last_tid: st.last_tid,
                next_oid: st.reserved_oid.max(st.own_until).max(st.next_oid),
                end,
            }
        };
        let slot = Slot {
            seq: 1,
            offset: checkpoint.0,
            len: checkpoint.1,
            mark: Some(mark),
        };
        out.write_all_at(&slot.encode(), SLOT_OFFSETS[0])?;
        out.sync_data()?;
        // Read back as an open would (the slot, the checkpoint, the blocks after it), so
        // that a file that would not open is never put in place; the journal goes on
        // with what this read.
        let len = out.len()?;
        let (mut fresh, next, condition) = load_file(out, len)
            .map_err(|e| Error::Internal(format!("the packed file does not read back: {e}")))?;
        if condition != Condition::Intact || fresh.end != end || fresh.last_tid != mark.last_tid {
            return Err(Error::Internal(format!(
                "the packed file reads back as {condition:?}, ending at {} with transaction {}, \
                 not at {end} with {}",
                fresh.end, fresh.last_tid, mark.last_tid
            )));
        }
        publish(w)?;
        self.reset_synced_hint(end);
        fresh.history = record;
        self.generations.retire(|| {
            let mut st = self.write_state();
            fresh.last_tid = st.last_tid;
            fresh.last_timestamp = st.last_timestamp;
            fresh.next_oid = st.next_oid;
            fresh.own_until = st.own_until;
            fresh.reserved_oid = st.reserved_oid;
            // The change log is about transactions, not where they are: it stays.
            fresh.log = std::mem::take(&mut st.log);
            fresh.log_oids = st.log_oids;
            fresh.log_from = st.log_from;
            // Snapshots up to the last tid may still hold refs to objects this pack
            // dropped; a pinned one reads them from the old file.
            let until = st.last_tid + 1;
            (std::mem::replace(&mut *st, fresh), until)
        });
        // Past the end is the filler this pack wrote (an open would take it for a tail
        // to cut off before the next append; here it is known to be ours).
        w.prealloc_end = len;
        w.torn_tail = None;
        w.since_checkpoint = next.since_checkpoint;
        w.last_checkpoint_len = next.last_checkpoint_len;
        w.slots = next.slots;
        Ok(())
    }
}
