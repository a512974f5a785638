//! Index checkpoints: the oid index written into the journal so that opening only
//! scans what follows, and the header slot that names the newest one.

use super::format::{
    BlockHeader, BlockKind, CheckpointLayout, DurableMark, Slot, INDEX_ENTRY, SLOT_LEN, SLOT_OFFSETS,
};
use super::options::Durability;
use super::state::Writer;
use super::Journal;
use crate::error::{Error, Result};
use crate::record::Oid;

/// Entries per checkpoint index page.
pub(super) const PAGE_ENTRIES: u64 = 4096;

impl Journal {
    /// Writes an index checkpoint now, so that the next open only scans what follows.
    /// Returns false if it declined because the oid space is too sparse for the dense
    /// checkpoint index (the next open then scans the whole journal).
    pub fn checkpoint(&self) -> Result<bool> {
        let mut w = self.lock_writer();
        self.check_writable()?;
        self.write_checkpoint(&mut w)
    }

    pub(super) fn write_checkpoint(&self, w: &mut Writer) -> Result<bool> {
        let (bytes, at) = {
            let st = self.read_state();
            let base_bound = st.base.as_ref().map_or(0, |b| b.bound());
            let count = st.overlay.bound().max(base_bound);
            // The checkpoint is a dense array indexed by oid. Oids are handed out in
            // sequence, so it is normally about as long as the number of objects; when the
            // oid space is far sparser than that (a damaged or hand-made file), skip it
            // rather than write an index mostly of holes.
            let live = st.overlay.len() as u64 + base_bound;
            if count > 4 * live + 4096 {
                return Ok(false);
            }
            let len = CheckpointLayout::new(count, PAGE_ENTRIES)
                .and_then(|l| l.block_len())
                .ok_or(Error::Exhausted {
                    what: "checkpoint index entries",
                })?;
            let at = w.torn_tail.unwrap_or(st.end);
            let h = BlockHeader {
                kind: BlockKind::Checkpoint,
                len,
                tid: st.last_tid,
                timestamp: st.last_timestamp,
                group_start: at,
                next_oid: st.reserved_oid.max(st.next_oid),
                count,
                aux: PAGE_ENTRIES,
            };
            let mut entries = Vec::with_capacity((INDEX_ENTRY as u64 * count) as usize);
            for oid in 0..count {
                let loc = st.locate(&*st.file, Oid(oid))?.map(|(l, _)| l);
                let (o, l) = loc.map_or((0, 0), |l| (l.offset, l.len));
                entries.extend_from_slice(&o.to_be_bytes());
                entries.extend_from_slice(&l.to_be_bytes());
            }
            let mut bytes = Vec::with_capacity(len as usize);
            bytes.extend_from_slice(&h.encode());
            for page in entries.chunks((PAGE_ENTRIES as usize) * INDEX_ENTRY) {
                bytes.extend_from_slice(&crc32fast::hash(page).to_be_bytes());
            }
            let crc = crc32fast::hash(&bytes);
            bytes.extend_from_slice(&entries);
            bytes.extend_from_slice(&crc.to_be_bytes());
            (bytes, at)
        };
        self.append_group(w, at, &bytes, BlockKind::Checkpoint)?;
        {
            let mut st = self.write_state();
            st.end = at + bytes.len() as u64;
        }
        // The checkpoint is durable; now point the older slot at it.
        self.write_slot(w, Some((at, bytes.len() as u64)))?;
        w.since_checkpoint = 0;
        w.last_checkpoint_len = bytes.len() as u64;
        Ok(true)
    }

    /// Records the journal's durable state in the older header slot, naming the
    /// checkpoint `checkpoint` (offset and length) or, with `None`, the one the newest
    /// slot names. The slot promises that everything up to the journal's end was
    /// synced: under [`Durability::Immediate`] it was, by the group just appended;
    /// otherwise this syncs first. Called under the append lock in shared mode.
    pub(super) fn write_slot(&self, w: &mut Writer, checkpoint: Option<(u64, u64)>) -> Result<()> {
        if self.opts.durability == Durability::Eventual {
            // Commits were not synced; the slot must not promise what a power loss
            // could still take. Slots are rare (checkpoints and oid reservations), so
            // one sync each costs little even in a bulk load.
            self.sync()
                .map_err(|e| self.poison(e, "syncing the journal before a header slot"))?;
        }
        if self.opts.shared {
            // Other processes write slots too: overwrite the one that is older now.
            let mut b = vec![0u8; (SLOT_OFFSETS[1] as usize) + SLOT_LEN];
            self.file().read_exact_at(&mut b, 0)?;
            w.slots = Slot::decode_both(&b);
        }
        let newest = w.slots.iter().flatten().max_by_key(|s| s.seq).copied();
        let (offset, len) = checkpoint.or(newest.map(|s| (s.offset, s.len))).unwrap_or((0, 0));
        let mark = {
            let st = self.read_state();
            DurableMark {
                last_tid: st.last_tid,
                next_oid: st.reserved_oid.max(st.next_oid),
                end: st.end,
            }
        };
        let which = match (w.slots[0], w.slots[1]) {
            (None, _) => 0,
            (_, None) => 1,
            (Some(a), Some(b)) => usize::from(b.seq < a.seq),
        };
        // Sequence numbers never wrap: at the end of the range, start again at 1 and
        // clear the other slot, so the new one is the only one.
        let (seq, clear_other) = match newest.map_or(0, |s| s.seq).checked_add(1) {
            Some(seq) => (seq, false),
            None => (1, true),
        };
        let slot = Slot {
            seq,
            offset,
            len,
            mark: Some(mark),
        };
        self.file()
            .write_all_at(&slot.encode(), SLOT_OFFSETS[which])
            .map_err(|e| self.poison(e, "writing a header slot"))?;
        if clear_other {
            self.file()
                .write_all_at(&[0u8; SLOT_LEN], SLOT_OFFSETS[1 - which])
                .map_err(|e| self.poison(e, "clearing a header slot"))?;
            w.slots[1 - which] = None;
        }
        if self.opts.durability == Durability::Immediate {
            self.sync().map_err(|e| self.poison(e, "syncing a header slot"))?;
        }
        w.slots[which] = Some(slot);
        Ok(())
    }
}
