//! Writing and syncing a write group, and poisoning the journal when either fails.

use std::sync::atomic::Ordering;

use super::format::{fill, BlockKind, BLOCK_HEADER};
use super::options::Durability;
use super::state::Writer;
use super::Journal;
use crate::error::{Error, Result};

impl Journal {
    /// Appends one write group at `at`: cuts off a torn tail first, writes the bytes in
    /// one positioned write, keeps zeroed space ahead of them, and syncs once.
    pub(super) fn append_group(&self, w: &mut Writer, at: u64, bytes: &[u8], kind: BlockKind) -> Result<()> {
        self.write_group(w, at, bytes, kind)?;
        self.finish_group(at + bytes.len() as u64)
    }

    /// Makes everything up to `end` durable (under [`Durability::Immediate`]) and tells
    /// the other processes sharing the file that they may read up to there.
    pub(super) fn finish_group(&self, end: u64) -> Result<()> {
        if self.opts.durability == Durability::Immediate {
            self.sync().map_err(|e| self.poison(e, "syncing the journal"))?;
        }
        self.mark_synced(end);
        Ok(())
    }

    /// positioned write and keeps filled space ahead of them. No sync.
    pub(super) fn write_group(&self, w: &mut Writer, at: u64, bytes: &[u8], kind: BlockKind) -> Result<()> {
        if let Some(torn) = w.torn_tail {
            self.file()
                .set_len(torn)
                .map_err(|e| self.poison(e, "truncating the torn tail"))?;
            self.sync()
                .map_err(|e| self.poison(e, "syncing the truncation"))?;
            w.torn_tail = None;
            w.prealloc_end = torn;
        }
        self.file()
            .write_all_at(bytes, at)
            .map_err(|e| self.poison(e, "appending to the journal"))?;
        let new_end = at + bytes.len() as u64;
        let mut written = bytes.len() as u64;
        // Small groups land in filled space written ahead of them, so their sync does not
        // also have to make a new file size (and block allocation) durable. Large groups
        // gain nothing from it and would only be written twice.
        // Only transactions count: an oid reservation or a checkpoint says nothing about
        // the size of the commits to come.
        let small = kind == BlockKind::Transaction && (bytes.len() as u64) <= self.opts.preallocate / 16;
        if small && new_end + BLOCK_HEADER as u64 > w.prealloc_end {
            let from = w.prealloc_end.max(new_end);
            let target = new_end + self.opts.preallocate;
            let mut filler = vec![0u8; (target - from) as usize];
            fill(&mut filler, from);
            self.file()
                .write_all_at(&filler, from)
                .map_err(|e| self.poison(e, "preallocating journal space"))?;
            written += filler.len() as u64;
            w.prealloc_end = target;
        }
        w.prealloc_end = w.prealloc_end.max(new_end);
        w.since_checkpoint = w.since_checkpoint.saturating_add(bytes.len() as u64);
        if kind == BlockKind::Transaction {
            self.since_pack.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(written, Ordering::Relaxed);
        Ok(())
    }

    /// Marks the journal unwritable after a failed write or sync and returns the error.
    pub(super) fn poison(&self, e: std::io::Error, during: &str) -> Error {
        let source = std::sync::Arc::new(e);
        let _ = self.poisoned.set(Error::Poisoned {
            during: during.to_string(),
            source: source.clone(),
        });
        Error::Io(source)
    }

    pub(super) fn sync(&self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.file().sync_data()
    }
}
