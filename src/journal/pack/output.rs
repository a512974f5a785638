//! Writing a packed file: pack blocks of kept versions, then transactions copied whole
//! with their back pointers rewritten, then the index checkpoint; all through one
//! buffer written in large positioned writes.

use super::super::format::{
    BlockHeader, BlockKind, CheckpointLayout, BLOCK_HEADER, ENTRY_HEADER, INDEX_ENTRY, TRAILER,
};
use super::super::io::FileIo;
use super::writeback::Writeback;
use crate::error::{Error, Result};
use crate::record::{be_u32, be_u64, Oid};

/// Bytes of kept versions per pack block.
const PACK_BLOCK: usize = 4 << 20;
/// Bytes buffered before they are written out.
const FLUSH_AT: usize = 8 << 20;

/// The new file as it is being written.
pub(super) struct Output<'a> {
    out: &'a dyn FileIo,
    /// File offset of `buf[0]`.
    at: u64,
    buf: Vec<u8>,
    /// Where each oid's newest entry in the new file is: the checkpoint's index entries
    /// (offset, length), all zero where none. 12 bytes an oid.
    index: Vec<[u8; INDEX_ENTRY]>,
    /// The open pack block: its offset in `buf` and its entry count.
    block: Option<(usize, u64)>,
    /// The pack point and its timestamp, which pack blocks carry.
    point: (u64, u64),
    /// Every oid below this has been handed out.
    pub(super) next_oid: u64,
    /// Versions kept in pack blocks, and their bytes.
    pub(super) kept: u64,
    pub(super) kept_bytes: u64,
    /// Transactions copied whole.
    pub(super) copied: u64,
    /// The last tid written and its timestamp.
    pub(super) last: (u64, u64),
    /// Background syncs of what is written, if wanted.
    writeback: Option<Writeback<'a>>,
}

impl<'a> Output<'a> {
    /// A new file in `out` whose first `DATA_START` bytes are `head`.
    pub(super) fn new(out: &'a dyn FileIo, head: Vec<u8>, point: (u64, u64), next_oid: u64) -> Output<'a> {
        Output {
            out,
            at: 0,
            buf: {
                // Room for a full buffer and the pack block that crosses its end, so
                // that it is not grown (and copied) step by step.
                let mut buf = Vec::with_capacity(FLUSH_AT + PACK_BLOCK + (1 << 16));
                buf.extend_from_slice(&head);
                buf
            },
            index: Vec::new(),
            block: None,
            point,
            next_oid,
            kept: 0,
            kept_bytes: 0,
            copied: 0,
            last: point,
            writeback: None,
        }
    }

    /// Syncs what is written in the background as it goes (see `writeback.rs`).
    pub(super) fn set_writeback(&mut self, wb: Writeback<'a>) {
        self.writeback = Some(wb);
    }

    /// Waits for a background sync in flight; its failure is the pack's. Call before
    /// the file's own sync.
    pub(super) fn settle(&mut self) -> Result<()> {
        self.writeback.as_mut().map_or(Ok(()), Writeback::settle)
    }

    fn wrote(&mut self, n: usize) -> Result<()> {
        self.writeback.as_mut().map_or(Ok(()), |w| w.wrote(n as u64))
    }

    /// Offset just past everything added so far.
    pub(super) fn end(&self) -> u64 {
        self.at + self.buf.len() as u64
    }

    /// Whether `oid` has an entry in the new file.
    pub(super) fn has(&self, oid: Oid) -> bool {
        self.index
            .get(oid.0 as usize)
            .is_some_and(|e| e != &[0; INDEX_ENTRY])
    }

    /// Adds a kept version: `entry` is its whole entry as read (checked), which goes
    /// into a pack block with its tid and without its back pointer.
    pub(super) fn keep(&mut self, oid: Oid, entry: &[u8]) -> Result<()> {
        if self.has(oid) {
            return Err(Error::Internal(format!("pack kept {oid} twice")));
        }
        let (start, count) = match self.block {
            Some(b) => b,
            None => {
                let s = self.buf.len();
                self.buf.extend_from_slice(&[0u8; BLOCK_HEADER]);
                (s, 0)
            }
        };
        let offset = self.end();
        let e = self.buf.len();
        self.buf.extend_from_slice(entry);
        self.buf[e + 16..e + ENTRY_HEADER].fill(0);
        let crc = crc32fast::hash(&self.buf[e + 8..]);
        self.buf[e + 4..e + 8].copy_from_slice(&crc.to_be_bytes());
        self.set_index(oid, offset, entry.len() as u32);
        self.kept += 1;
        self.kept_bytes += entry.len() as u64;
        self.block = Some((start, count + 1));
        if self.buf.len() - start >= PACK_BLOCK {
            self.close_pack_block()?;
        }
        Ok(())
    }

    /// Finishes the open pack block, if any.
    pub(super) fn close_pack_block(&mut self) -> Result<()> {
        let Some((start, count)) = self.block.take() else {
            return Ok(());
        };
        let len = (self.buf.len() - start + TRAILER) as u64;
        let h = BlockHeader {
            kind: BlockKind::Pack,
            len,
            tid: self.point.0,
            timestamp: self.point.1,
            group_start: self.at + start as u64,
            next_oid: self.next_oid,
            count,
            aux: 0,
        };
        self.buf[start..start + BLOCK_HEADER].copy_from_slice(&h.encode());
        let crc = crc32fast::hash(&self.buf[start..]);
        self.buf.extend_from_slice(&crc.to_be_bytes());
        self.flush_if_full()
    }

    /// Copies a transaction block whole, pointing each entry back at its oid's entry in
    /// the new file. `entries` are the entries' (oid, offset within the block, length).
    pub(super) fn copy_transaction(
        &mut self,
        h: &BlockHeader,
        block: &[u8],
        entries: &[(Oid, usize, u32)],
    ) -> Result<()> {
        self.close_pack_block()?;
        let start = self.buf.len();
        let offset = self.end();
        self.buf.extend_from_slice(block);
        let next_oid = self.next_oid.max(h.next_oid);
        self.next_oid = next_oid;
        let moved = BlockHeader {
            group_start: offset,
            next_oid,
            ..*h
        };
        self.buf[start..start + BLOCK_HEADER].copy_from_slice(&moved.encode());
        for &(oid, at, len) in entries {
            let e = start + at;
            let prev = self.index_of(oid);
            self.buf[e + 16..e + 24].copy_from_slice(&prev.0.to_be_bytes());
            self.buf[e + 24..e + 28].copy_from_slice(&prev.1.to_be_bytes());
            let crc = crc32fast::hash(&self.buf[e + 8..e + len as usize]);
            self.buf[e + 4..e + 8].copy_from_slice(&crc.to_be_bytes());
            self.set_index(oid, offset + at as u64, len);
        }
        let body_end = self.buf.len() - TRAILER;
        let crc = crc32fast::hash(&self.buf[start..body_end]);
        self.buf[body_end..].copy_from_slice(&crc.to_be_bytes());
        self.copied += 1;
        self.last = (h.tid, h.timestamp);
        self.flush_if_full()
    }

    /// Appends the index checkpoint of everything added, writes all that is buffered,
    /// and returns the checkpoint's offset and length.
    pub(super) fn finish(&mut self, page_entries: u64) -> Result<(u64, u64)> {
        if self.kept == 0 && self.copied == 0 {
            // Nothing survived: an empty pack block still carries the pack point's tid,
            // which the checkpoint after it names.
            self.block = Some((self.buf.len(), 0));
            self.buf.extend_from_slice(&[0u8; BLOCK_HEADER]);
        }
        self.close_pack_block()?;
        let count = self.index.len() as u64;
        let len = CheckpointLayout::new(count, page_entries)
            .and_then(|l| l.block_len())
            .ok_or(Error::Exhausted {
                what: "checkpoint index entries",
            })?;
        let offset = self.end();
        let h = BlockHeader {
            kind: BlockKind::Checkpoint,
            len,
            tid: self.last.0,
            timestamp: self.last.1,
            group_start: offset,
            next_oid: self.next_oid,
            count,
            aux: page_entries,
        };
        let start = self.buf.len();
        self.buf.extend_from_slice(&h.encode());
        for page in self.index.chunks(page_entries as usize) {
            let mut hasher = crc32fast::Hasher::new();
            for e in page {
                hasher.update(e);
            }
            self.buf.extend_from_slice(&hasher.finalize().to_be_bytes());
        }
        let crc = crc32fast::hash(&self.buf[start..]);
        self.flush()?;
        // The entries go out straight from the index, not through the buffer.
        let mut at = self.at;
        for chunk in self.index.chunks(FLUSH_AT / INDEX_ENTRY) {
            self.buf.clear();
            self.buf.extend(chunk.iter().flatten());
            self.out.write_all_at(&self.buf, at)?;
            at += self.buf.len() as u64;
            if let Some(w) = self.writeback.as_mut() {
                w.wrote(self.buf.len() as u64)?;
            }
        }
        self.buf.clear();
        self.out.write_all_at(&crc.to_be_bytes(), at)?;
        self.at = at + TRAILER as u64;
        Ok((offset, len))
    }

    /// Writes `len` bytes of filler just past what is written (which must all be
    /// flushed), so that the commits after the switch land in filled space as they do
    /// in the old file; what is added later overwrites it. Returns the filler's end.
    pub(super) fn preallocate(&mut self, len: u64) -> Result<u64> {
        debug_assert!(self.buf.is_empty());
        // In pieces through the (empty) buffer: the room includes the checkpoint's,
        // which is 12 bytes an oid, too much to hold at once for a large store.
        let mut at = self.at;
        let end = self.at + len;
        while at < end {
            let n = (end - at).min(FLUSH_AT as u64) as usize;
            self.buf.resize(n, 0);
            super::super::format::fill(&mut self.buf, at);
            self.out.write_all_at(&self.buf, at)?;
            at += n as u64;
            self.wrote(n)?;
        }
        self.buf.clear();
        Ok(end)
    }

    /// Writes what is buffered.
    pub(super) fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all_at(&self.buf, self.at)?;
            self.at += self.buf.len() as u64;
            let n = self.buf.len();
            self.buf.clear();
            self.wrote(n)?;
        }
        Ok(())
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_AT && self.block.is_none() {
            self.flush()?;
        }
        Ok(())
    }

    fn index_of(&self, oid: Oid) -> (u64, u32) {
        match self.index.get(oid.0 as usize) {
            Some(e) => (be_u64(&e[0..8]), be_u32(&e[8..12])),
            None => (0, 0),
        }
    }

    fn set_index(&mut self, oid: Oid, offset: u64, len: u32) {
        let i = oid.0 as usize;
        if self.index.len() <= i {
            self.index.resize(i + 1, [0; INDEX_ENTRY]);
        }
        let e = &mut self.index[i];
        e[0..8].copy_from_slice(&offset.to_be_bytes());
        e[8..12].copy_from_slice(&len.to_be_bytes());
    }
}
