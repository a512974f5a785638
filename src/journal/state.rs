//! The journal's in-memory state: what readers look up, and what only the writer
//! touches. Pure memory updates; no I/O except reading an index page or an entry header
//! the lookups need.

use std::collections::VecDeque;
use std::sync::Arc;

use super::format::{BlockHeader, BlockKind, PackRecord, Slot};
use super::index::{BaseIndex, Loc, Overlay};
use super::io::FileIo;
use super::read::eof_as_corrupt;
use super::scan::ScannedEntry;

use crate::error::Result;
use crate::record::Oid;

/// How many changed oids the in-memory change log keeps before older transactions have
/// to be read back from the file to answer [`Journal::changes_since`](super::Journal::changes_since).
const CHANGE_LOG_LIMIT: usize = 1 << 20;

/// Everything readers need, behind one read-write lock held only for memory lookups
/// (and, at worst, the first read of a checkpoint index page).
pub(super) struct State {
    /// The file this state describes.
    pub(super) file: Arc<dyn FileIo>,
    pub(super) overlay: Overlay,
    pub(super) base: Option<Arc<BaseIndex>>,
    pub(super) last_tid: u64,
    pub(super) last_timestamp: u64,
    /// Offset where the next block goes.
    pub(super) end: u64,
    /// Next oid to hand out in this process.
    pub(super) next_oid: u64,
    /// The end of this process's reserved range: `next_oid..own_until` are ours.
    pub(super) own_until: u64,
    /// Every oid below this is durably recorded as handed out (by any process).
    pub(super) reserved_oid: u64,
    /// Transactions since `log_from` (tid, timestamp, oids), for change queries.
    pub(super) log: VecDeque<(u64, u64, Box<[Oid]>)>,
    pub(super) log_oids: usize,
    pub(super) log_from: u64,
    /// What the last pack kept (all zero for a file never packed): snapshots before
    /// `history.history_from` cannot be read from this file.
    pub(super) history: PackRecord,
}

/// State only the writer touches.
pub(super) struct Writer {
    /// The file is zero-filled up to here.
    pub(super) prealloc_end: u64,
    /// A torn tail at this offset must be cut off before the next append.
    pub(super) torn_tail: Option<u64>,
    pub(super) since_checkpoint: u64,
    /// Size of the last checkpoint written (or found on open).
    pub(super) last_checkpoint_len: u64,
    pub(super) slots: [Option<Slot>; 2],
    /// Oids this process has handed out (sizes the reservations).
    pub(super) handed_out: u64,
    /// A handle on the locked file description, to release the file's lock on close
    /// (a pack moves the lock to the file it puts in place).
    pub(super) lock: Option<std::fs::File>,
    /// Which file (device, inode) the path named when this process opened it or last
    /// followed a pack: in shared mode, a different one means another process packed.
    pub(super) file_id: Option<(u64, u64)>,
}

impl State {
    /// The state before scanning: what the checkpoint `base` (if any) records.
    pub(super) fn from_checkpoint(file: Arc<dyn FileIo>, base: Option<Arc<BaseIndex>>) -> State {
        let (last_tid, last_timestamp, reserved_oid) = match &base {
            Some(b) => (b.header.tid, b.header.timestamp, b.header.next_oid.max(1)),
            None => (0, 0, 1),
        };
        State {
            file,
            overlay: Overlay::default(),
            base,
            last_tid,
            last_timestamp,
            end: 0,
            next_oid: 0,
            own_until: 0,
            reserved_oid,
            log: VecDeque::new(),
            log_oids: 0,
            log_from: last_tid,
            history: PackRecord::default(),
        }
    }

    /// Folds one scanned block into the state.
    pub(super) fn apply_block(&mut self, h: &BlockHeader, entries: &[ScannedEntry]) {
        self.reserved_oid = self.reserved_oid.max(h.next_oid);
        // The versions a pack kept are each at their own tid, and none is a new
        // transaction; a transaction's entries are at its tid.
        let pack = match h.kind {
            BlockKind::Pack => true,
            BlockKind::Transaction => false,
            _ => return,
        };
        for e in entries {
            let loc = Loc {
                offset: e.offset,
                len: e.len,
            };
            self.overlay.set(e.oid, loc, if pack { e.tid } else { h.tid });
            self.reserved_oid = self.reserved_oid.max(e.oid.0.saturating_add(1));
        }
        self.last_tid = self.last_tid.max(h.tid);
        self.last_timestamp = self.last_timestamp.max(h.timestamp);
        if !pack {
            let oids: Box<[Oid]> = entries.iter().map(|e| e.oid).collect();
            self.push_log(h.tid, h.timestamp, oids);
        }
    }

    pub(super) fn push_log(&mut self, tid: u64, timestamp: u64, oids: Box<[Oid]>) {
        self.log_oids += oids.len();
        self.log.push_back((tid, timestamp, oids));
        while self.log_oids > CHANGE_LOG_LIMIT && self.log.len() > 1 {
            if let Some((t, _, o)) = self.log.pop_front() {
                self.log_oids -= o.len();
                self.log_from = t;
            }
        }
    }

    /// Where `oid`'s newest entry is, and the tid that wrote it when known in memory.
    pub(super) fn locate(&self, io: &dyn FileIo, oid: Oid) -> Result<Option<(Loc, Option<u64>)>> {
        if let Some((loc, tid)) = self.overlay.get(oid) {
            return Ok(Some((loc, Some(tid))));
        }
        match &self.base {
            Some(b) => Ok(b.get(io, oid)?.map(|l| (l, None))),
            None => Ok(None),
        }
    }

    /// Whether a transaction after `snapshot` wrote `oid`.
    pub(super) fn changed_after(&self, io: &dyn FileIo, oid: Oid, snapshot: u64) -> Result<bool> {
        match self.locate(io, oid)? {
            None => Ok(false),
            Some((_, Some(t))) => Ok(t > snapshot),
            // Only in the checkpoint: written at or before the checkpoint's tid.
            Some((_, None)) if self.base.as_ref().is_some_and(|b| b.tid() <= snapshot) => Ok(false),
            Some((loc, None)) => {
                // A snapshot older than the checkpoint: the entry itself says when.
                let mut b = [0u8; 16];
                io.read_exact_at(&mut b, loc.offset)
                    .map_err(|e| eof_as_corrupt(e, loc.offset, "record entry"))?;
                Ok(crate::record::be_u64(&b[8..16]) > snapshot)
            }
        }
    }
}
