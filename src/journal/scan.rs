//! Reading blocks in order: the one place that decides where a journal ends, whether
//! damage is a torn tail or corruption, and what a well-formed block looks like.

use super::format::{
    decode_entry_unverified, has_filler_run, is_filler, trailer_crc, BlockHeader, BlockKind,
    CheckpointLayout, HeaderProblem, BLOCK_HEADER, ENTRY_HEADER, FILLER_RUN, TRAILER,
};
use super::io::FileIo;
use crate::error::{Error, Result};
use crate::record::{split_framed, Oid};

/// First read size; small so that opening a store whose tail is short stays cheap.
const FIRST_CHUNK: usize = 64 * 1024;
/// Largest read-ahead; reads grow towards it while a long tail is scanned.
const MAX_CHUNK: usize = 8 * 1024 * 1024;

/// One record entry found in a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedEntry {
    /// The record's oid.
    pub oid: Oid,
    /// Absolute offset of the entry.
    pub offset: u64,
    /// Entry length.
    pub len: u32,
    /// The previous version's entry, as recorded.
    pub prev_offset: u64,
    /// The transaction that wrote this version: the block's tid, except in a pack
    /// block, whose entries keep their own.
    pub tid: u64,
}

/// What the scanner found at its position.
#[derive(Debug)]
pub enum Step {
    /// A well-formed block. For transactions, `entries` lists its records in order.
    Block {
        /// Absolute offset of the block.
        offset: u64,
        /// Its header.
        header: BlockHeader,
        /// Its record entries (transactions only).
        entries: Vec<ScannedEntry>,
    },
    /// The journal ends cleanly here (end of file, zeros, or preallocation filler).
    End {
        /// Offset of the end.
        offset: u64,
        /// Whether preallocation filler follows (space a writer may write over).
        filler: bool,
    },
    /// The journal ends here because the last write was cut off; bytes from `offset`
    /// on are a torn tail.
    Torn {
        /// Offset of the first damaged byte range.
        offset: u64,
        /// What was wrong with it.
        reason: &'static str,
    },
}

/// Reads blocks sequentially from a file.
pub struct Scanner<'a> {
    io: &'a dyn FileIo,
    file_len: u64,
    pos: u64,
    last_tid: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk: usize,
    follow: bool,
}

impl<'a> Scanner<'a> {
    /// A scanner starting at `pos`, which expects tids above `last_tid`.
    pub fn new(io: &'a dyn FileIo, file_len: u64, pos: u64, last_tid: u64) -> Scanner<'a> {
        Scanner {
            io,
            file_len,
            pos,
            last_tid,
            buf: Vec::new(),
            buf_start: pos,
            chunk: FIRST_CHUNK,
            follow: false,
        }
    }

    /// A scanner that follows a journal other processes are appending to: damage is
    /// where a write in progress (or one cut off by a crash) ends the readable part, so
    /// it is reported as [`Step::Torn`] at once, without searching the rest of the file.
    pub fn following(io: &'a dyn FileIo, file_len: u64, pos: u64, last_tid: u64) -> Scanner<'a> {
        Scanner {
            follow: true,
            ..Scanner::new(io, file_len, pos, last_tid)
        }
    }

    /// Forgets what it has read ahead, so that the next step reads the file again from
    /// the current position, now `file_len` bytes long.
    pub fn reread(&mut self, file_len: u64) {
        self.file_len = file_len;
        self.buf.clear();
        self.buf_start = self.pos;
        self.chunk = FIRST_CHUNK;
    }

    /// The offset of the next block.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Bytes `[pos, pos + n)`, which the caller has checked lie inside the file.
    fn fetch(&mut self, pos: u64, n: usize) -> Result<&[u8]> {
        let have = pos >= self.buf_start && pos + n as u64 <= self.buf_start + self.buf.len() as u64;
        if !have {
            let want = (n.max(self.chunk) as u64).min(self.file_len - pos) as usize;
            self.buf.clear();
            self.buf.resize(want, 0);
            self.io.read_exact_at(&mut self.buf, pos)?;
            self.buf_start = pos;
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
        }
        let s = (pos - self.buf_start) as usize;
        Ok(&self.buf[s..s + n])
    }

    /// The bytes `[pos, pos + n)` if the last read brought them in (as it does for a
    /// transaction block [`next_step`](Scanner::next_step) just returned), without
    /// reading.
    pub fn buffered(&self, pos: u64, n: u64) -> Option<&[u8]> {
        let s = pos.checked_sub(self.buf_start)? as usize;
        self.buf.get(s..s.checked_add(n as usize)?)
    }

    /// Reads the next block and advances past it.
    pub fn next_step(&mut self) -> Result<Step> {
        let offset = self.pos;
        let remaining = self.file_len.saturating_sub(offset);
        if remaining == 0 {
            return Ok(Step::End {
                offset,
                filler: false,
            });
        }
        if remaining < BLOCK_HEADER as u64 {
            let rest = self.fetch(offset, remaining as usize)?;
            if is_filler(rest, offset) {
                return Ok(Step::End { offset, filler: true });
            }
            if rest.iter().all(|&b| b == 0) {
                return Ok(Step::End {
                    offset,
                    filler: false,
                });
            }
            return self.damage(offset, "block header cut short by the end of the file");
        }
        let raw = self.fetch(offset, BLOCK_HEADER)?;
        if is_filler(raw, offset) {
            return Ok(Step::End { offset, filler: true });
        }
        let header = match BlockHeader::decode(raw) {
            Ok(h) => h,
            Err(HeaderProblem::Zero) => {
                return Ok(Step::End {
                    offset,
                    filler: false,
                })
            }
            Err(HeaderProblem::Bad(why)) => return self.damage(offset, why),
        };
        if header.len > remaining {
            return self.damage(offset, "block extends past the end of the file");
        }
        if header.group_start > offset {
            return Err(Error::corrupt(
                offset,
                "block's write group starts after the block",
            ));
        }
        let entries = match header.kind {
            BlockKind::Transaction | BlockKind::Pack => match self.read_transaction(offset, &header)? {
                Ok(entries) => entries,
                Err(why) => return self.damage(offset, why),
            },
            BlockKind::Checkpoint => {
                if let Err(why) = self.check_checkpoint(offset, &header)? {
                    return self.damage(offset, why);
                }
                Vec::new()
            }
            BlockKind::Reservation => {
                if header.len != (BLOCK_HEADER + TRAILER) as u64 {
                    return Err(Error::corrupt(offset, "reservation block has the wrong length"));
                }
                let b = self.fetch(offset, header.len as usize)?;
                if crc32fast::hash(&b[..BLOCK_HEADER]) != trailer_crc(b) {
                    return self.damage(offset, "reservation checksum mismatch");
                }
                Vec::new()
            }
        };
        if header.kind == BlockKind::Transaction {
            if header.tid <= self.last_tid {
                return Err(Error::corrupt(
                    offset,
                    format!("transaction id {} does not follow {}", header.tid, self.last_tid),
                ));
            }
            self.last_tid = header.tid;
        } else if header.kind == BlockKind::Pack {
            // Pack blocks open a packed file, all at the pack point's tid.
            if header.tid < self.last_tid {
                return Err(Error::corrupt(
                    offset,
                    format!("pack block's tid {} is before {}", header.tid, self.last_tid),
                ));
            }
            self.last_tid = header.tid;
        } else if header.tid != self.last_tid {
            return Err(Error::corrupt(
                offset,
                format!(
                    "block names last tid {} but the journal is at {}",
                    header.tid, self.last_tid
                ),
            ));
        }
        self.pos = offset + header.len;
        Ok(Step::Block {
            offset,
            header,
            entries,
        })
    }

    /// Checks a transaction's (or pack block's) CRC and parses its entries. The outer
    /// `Result` is I/O or a well-checksummed but malformed block (corruption); the
    /// inner `Err` is damage.
    fn read_transaction(
        &mut self,
        offset: u64,
        h: &BlockHeader,
    ) -> Result<std::result::Result<Vec<ScannedEntry>, &'static str>> {
        let len = h.len as usize;
        let tid = h.tid;
        let count = h.count;
        let next_oid = h.next_oid;
        let block = self.fetch(offset, len)?;
        if crc32fast::hash(&block[..len - TRAILER]) != trailer_crc(block) {
            return Ok(Err("transaction checksum mismatch"));
        }
        // Each entry takes at least 40 bytes, so a count beyond that is malformed; this
        // also bounds the allocation below by the block's length.
        if count > (len / (ENTRY_HEADER + crate::record::RECORD_HEADER)) as u64 {
            return Err(Error::corrupt(offset, "transaction claims more records than fit"));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let body = &block[BLOCK_HEADER..len - TRAILER];
        let mut at = 0usize;
        for _ in 0..count {
            let e_off = offset + (BLOCK_HEADER + at) as u64;
            let eh = decode_entry_unverified(&body[at..]).map_err(|why| Error::corrupt(e_off, why))?;
            let packed = h.kind == BlockKind::Pack;
            if packed && (eh.tid > tid || eh.prev_offset != 0) {
                return Err(Error::corrupt(
                    e_off,
                    "pack entry is newer than its block or has a back pointer",
                ));
            }
            if !packed && eh.tid != tid {
                return Err(Error::corrupt(
                    e_off,
                    "record entry's tid differs from its transaction's",
                ));
            }
            if eh.prev_offset >= offset {
                return Err(Error::corrupt(
                    e_off,
                    "record entry's back pointer does not point back",
                ));
            }
            let framed = &body[at + ENTRY_HEADER..at + eh.len as usize];
            let (oid, _, _) = split_framed(framed).map_err(|e| match e {
                Error::Corrupt { offset: o, reason } => {
                    Error::corrupt(e_off + ENTRY_HEADER as u64 + o, reason)
                }
                other => other,
            })?;
            // Every oid written was handed out first, and the writer records the
            // allocator's mark in the header.
            if oid.0 >= next_oid && oid != Oid::ROOT {
                return Err(Error::corrupt(
                    e_off,
                    format!("record of {oid} beyond the allocated oids"),
                ));
            }
            entries.push(ScannedEntry {
                oid,
                offset: e_off,
                len: eh.len,
                prev_offset: eh.prev_offset,
                tid: eh.tid,
            });
            at += eh.len as usize;
        }
        if at != body.len() {
            return Err(Error::corrupt(
                offset,
                "transaction length does not match its records",
            ));
        }
        Ok(Ok(entries))
    }

    /// Checks a checkpoint block's shape and its header-and-page-CRC checksum.
    fn check_checkpoint(
        &mut self,
        offset: u64,
        h: &BlockHeader,
    ) -> Result<std::result::Result<(), &'static str>> {
        let layout = CheckpointLayout::of(h)
            .ok_or_else(|| Error::corrupt(offset, "checkpoint has an impossible shape"))?;
        let head = self.fetch(offset, layout.head_len())?;
        let crc = crc32fast::hash(head);
        let page_crcs = head[BLOCK_HEADER..].to_vec();
        let trailer = self.fetch(offset + h.len - TRAILER as u64, TRAILER)?;
        if crc != trailer_crc(trailer) {
            return Ok(Err("checkpoint checksum mismatch"));
        }
        // The pages too: power loss during the checkpoint's write can keep its first and
        // last sectors but lose some between them, and such a checkpoint must read as a
        // torn write (cut off by the next writer), not pass as whole and later be
        // reported as corruption in the middle. A slot only ever names a checkpoint
        // after it was synced, so this never rejects one the index depends on.
        for (p, want) in page_crcs.chunks_exact(4).enumerate() {
            let (at, len) = layout.page_span(p as u64);
            let page = self.fetch(offset + at, len)?;
            if crc32fast::hash(page).to_be_bytes() != want {
                return Ok(Err("checkpoint index page checksum mismatch"));
            }
        }
        Ok(Ok(()))
    }

    /// Decides whether damage at `offset` is a torn tail or corruption: corruption if
    /// an intact block from a later write group exists anywhere after it, unless
    /// preallocation filler lies between the two (see [`later_damage`]).
    fn damage(&mut self, offset: u64, reason: &'static str) -> Result<Step> {
        if self.follow {
            return Ok(Step::Torn { offset, reason });
        }
        if let Some(later) = later_damage(self.io, self.file_len, offset)? {
            return Err(Error::corrupt(
                offset,
                format!("{reason}, and an intact block of a later write follows at offset {later}"),
            ));
        }
        Ok(Step::Torn { offset, reason })
    }
}

/// Where an end or damage at `offset` is followed by an intact block of a later write
/// group, so that the journal cannot simply end at `offset`; `None` if it can.
///
/// Filler between the two means the bytes at `offset` were read while that space was
/// still free: a copy of the file taken while commits were appended (a backup made
/// with `cp`), whose later blocks were copied after the writer got past the copier.
/// Such a copy ends at `offset`. Without filler it is corruption in the middle.
pub fn later_damage(io: &dyn FileIo, file_len: u64, offset: u64) -> Result<Option<u64>> {
    let Some(later) = find_later_group(io, file_len, offset)? else {
        return Ok(None);
    };
    if filler_between(io, offset, later)? {
        return Ok(None);
    }
    Ok(Some(later))
}

/// Whether `[from, to)` holds a run of aligned preallocation filler.
fn filler_between(io: &dyn FileIo, from: u64, to: u64) -> Result<bool> {
    const WINDOW: u64 = 1 << 20;
    let mut start = from;
    while start < to {
        let n = (to - start).min(WINDOW + FILLER_RUN as u64);
        let mut buf = vec![0u8; n as usize];
        io.read_exact_at(&mut buf, start)?;
        if has_filler_run(&buf, start) {
            return Ok(true);
        }
        if n <= FILLER_RUN as u64 {
            break;
        }
        // Overlap windows so a run across a boundary is still seen whole.
        start += n - FILLER_RUN as u64;
    }
    Ok(false)
}

/// Searches the file after `damaged` for an intact block header whose write group
/// started after `damaged`; returns its offset.
pub fn find_later_group(io: &dyn FileIo, file_len: u64, damaged: u64) -> Result<Option<u64>> {
    let mut found = None;
    each_intact_header(io, file_len, damaged + 1, |at, h| {
        if h.group_start > damaged && h.group_start <= at {
            found = Some(at);
            return false;
        }
        true
    })?;
    Ok(found)
}

/// The highest transaction id and oid allocation mark named by any intact block header
/// at or after `from`, whether or not the blocks around it are whole: what a repair
/// that cuts the journal at `from` must never hand out again.
pub fn ids_named_after(io: &dyn FileIo, file_len: u64, from: u64) -> Result<(u64, u64)> {
    let (mut tid, mut next_oid) = (0, 0);
    each_intact_header(io, file_len, from, |_, h| {
        tid = tid.max(h.tid);
        next_oid = next_oid.max(h.next_oid);
        true
    })?;
    Ok((tid, next_oid))
}

/// Hands every block header at or after `from` whose magic and CRC check out (at any
/// offset, aligned or not) to `f`, in file order, until `f` returns false.
fn each_intact_header(
    io: &dyn FileIo,
    file_len: u64,
    from: u64,
    mut f: impl FnMut(u64, &BlockHeader) -> bool,
) -> Result<()> {
    const WINDOW: usize = 1 << 20;
    let mut start = from;
    let want = file_len.saturating_sub(start).min((WINDOW + BLOCK_HEADER) as u64);
    let mut buf = vec![0u8; want as usize];
    while start + BLOCK_HEADER as u64 <= file_len {
        let n = ((file_len - start) as usize).min(buf.len());
        io.read_exact_at(&mut buf[..n], start)?;
        let last = n - BLOCK_HEADER;
        for i in 0..=last {
            if buf[i] != b'D' || BlockKind::from_magic(&buf[i..i + 4]).is_none() {
                continue;
            }
            if let Ok(h) = BlockHeader::decode(&buf[i..i + BLOCK_HEADER]) {
                if !f(start + i as u64, &h) {
                    return Ok(());
                }
            }
        }
        start += last as u64 + 1;
    }
    Ok(())
}
