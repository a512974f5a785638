//! Byte layouts of the journal file: pure encoding and decoding, no I/O.
//!
//! All integers are big-endian. All checksums are CRC-32 (IEEE).
//!
//! # File header (offsets 0..4096)
//!
//! ```text
//! 0    magic          8   0x89 'D' 'U' 'R' 'U' 'S' '\r' '\n'
//! 8    version        4   format version: 1, or 2 for a packed file
//! 12   flags          4   0
//! 16   data_start     8   offset of the first block, 4096
//! 24   created        8   creation time, microseconds since the Unix epoch
//! 32   crc            4   CRC of bytes 0..32
//! 512  slot 0        64   header slot (below)
//! 1024 slot 1        64   header slot
//! 1536 pack record   64   version 2 only (below)
//! ```
//!
//! A file written by a pack (version 2) says in its pack record which history it
//! keeps; the record is written once, before the file is put in place, and never
//! changes:
//!
//! ```text
//! 0    magic          4   "DPKR"
//! 4    zero           4
//! 8    generation     8   1 for the first pack of a journal, one more for each later one
//! 16   history from   8   the pack point: snapshots from this tid on read as before
//! 24   its timestamp  8   that transaction's commit time
//! 32   packed at      8   when the pack ran, microseconds since the Unix epoch
//! 40   crc            4   CRC of bytes 0..40
//! ```
//!
//! A header slot records where the newest index checkpoint is and what the journal had
//! made durable when the slot was written:
//!
//! ```text
//! 0    seq            8   higher is newer
//! 8    checkpoint     8   offset of the checkpoint block, 0 if none
//! 16   length         8   its length
//! 24   crc            4   CRC of bytes 0..24
//! 28   zero           4
//! 32   last tid       8   highest transaction id committed
//! 40   next oid       8   every oid below this has been handed out
//! 48   durable end    8   every byte before this offset had been synced
//! 56   crc            4   CRC of bytes 0..56
//! 60   zero           4
//! ```
//!
//! A slot whose bytes 28..64 are all zero was written by durus 0.1 and names only its
//! checkpoint. The valid slot with the higher `seq` is the newest. The slots are the
//! only bytes of the file ever written in place; they sit in different 512-byte
//! sectors, and a write always overwrites the *older* slot, so a torn slot write leaves
//! the other slot intact. A slot is written only after everything it describes was
//! synced: after each index checkpoint and each oid reservation.
//!
//! # Blocks (from `data_start`, appended, never rewritten)
//!
//! Every block starts with the same 64-byte header:
//!
//! ```text
//! 0    magic          4   "DTX1" transaction, "DCP1" checkpoint, "DRS1" oid reservation,
//!                         "DPK1" pack
//! 4    header crc     4   CRC of bytes 8..64 of the header
//! 8    length         8   whole block length in bytes, header and trailer included
//! 16   tid            8   transaction id (checkpoint, reservation: the last tid so far)
//! 24   timestamp      8   microseconds since the Unix epoch, never decreasing
//! 32   group start    8   offset where the write that carried this block began
//! 40   next oid       8   every oid below this has been handed out
//! 48   count          8   records in a transaction; oids in a checkpoint; 0
//! 56   aux            8   checkpoint: index entries per page; otherwise 0
//! ```
//!
//! and ends with a 4-byte trailer CRC. A header of zeros or of *filler* marks the end of
//! the journal. Space past the end is preallocated with filler, so that a commit's sync
//! does not also have to make a new file size durable: the byte at absolute offset `o`
//! is `FILLER[o % 8]`. Filler (unlike zeros, which a damaged disk may also produce)
//! shows that the space was free when it was read, which tells a byte-by-byte copy
//! taken while commits ran (a backup) from a file damaged in the middle.
//!
//! **Transaction** (`DTX1`): the header, `count` record entries, then the CRC of every
//! byte of the block before it. Tids are strictly increasing. A record entry is
//!
//! ```text
//! 0    entry length   4   whole entry length
//! 4    entry crc      4   CRC of bytes 8..length of the entry
//! 8    tid            8   the transaction's tid
//! 16   prev offset    8   offset of this oid's previous entry, 0 if none
//! 24   prev length    4   length of that entry
//! 28   record             Durus framing: oid(8) · data length(4) · data · refs(8 each)
//! ```
//!
//! so one positioned read of `entry length` bytes at an index offset fetches and
//! verifies a record, and the back pointers lead to every older version of the oid
//! (snapshot reads).
//!
//! **Checkpoint** (`DCP1`): the oid index as of this point of the journal, so opening
//! only has to scan what follows it. After the header come one CRC per page of entries,
//! then `count` index entries `offset(8) · length(4)` (offset 0: no record), then the
//! trailer: the CRC of the header and the page CRCs. Pages are read and verified lazily
//! when an oid on them is first looked up.
//!
//! **Reservation** (`DRS1`): only a header and trailer; records that oids up to
//! `next oid` have been handed out, so that they are never handed out again.
//!
//! **Pack** (`DPK1`): laid out as a transaction, but its entries are the versions a pack
//! kept, each with the tid of the transaction that wrote it (at most the block's tid,
//! the pack point) and no back pointer. Pack blocks come first in a packed file, one
//! entry per oid, followed by the transactions after the pack point copied whole.
//!
//! # Recovery
//!
//! Blocks are read in order from the newest checkpoint. A block whose header or CRC
//! does not verify is *damage*. Damage is a torn tail (the journal ends just before
//! it) when no intact block whose `group start` lies beyond the damaged offset exists
//! later in the file: a write that was cut off can only have damaged the last group
//! written. Otherwise the damage is corruption in the middle of the journal and is
//! reported with its offset, never skipped.
//!
//! The header slots bound what a torn tail may take: a slot's durable end says that
//! every byte before it had been synced, so a journal whose blocks end before it (or a
//! slot naming a checkpoint that is not there) has lost acknowledged transactions, and
//! is damaged, not torn. A file cut short after the last slot write, though, cannot be
//! told from a crash's torn tail by the file alone: what such a cut may take unnoticed
//! is what was appended since the last slot write, which is bounded by the checkpoint
//! interval (`JournalOptions::checkpoint_every`, 256 MiB by default; always on close)
//! and by oid reservations, which also write a slot. The slots also keep the highest
//! tid and the oid allocation mark, so that even after a repair that accepts a loss no
//! id the header knew of is handed out again. `journal::recovery` holds the one
//! decision that opening, `verify` and `repair` share.

use crate::error::{Error, Result};
use crate::record::{be_u32, be_u64};

/// First bytes of every durus journal.
pub const MAGIC: [u8; 8] = *b"\x89DURUS\r\n";
/// The newest format version this build reads (and writes for a packed file).
pub const VERSION: u32 = 2;
/// The format version of a journal that was never packed.
pub const PLAIN_VERSION: u32 = 1;
/// Offset of the pack record of a packed (version 2) file.
pub const PACK_RECORD_AT: u64 = 1536;
/// Size of the pack record.
pub const PACK_RECORD_LEN: usize = 64;
/// Offset of the first block.
pub const DATA_START: u64 = 4096;
/// Bytes covered by the file header's CRC.
const FILE_HEADER_CRC_AT: usize = 32;
/// Offsets of the two checkpoint slots.
pub const SLOT_OFFSETS: [u64; 2] = [512, 1024];
/// Size of one encoded checkpoint slot.
pub const SLOT_LEN: usize = 64;

/// Length of every block header.
pub const BLOCK_HEADER: usize = 64;
/// Length of every block trailer (a CRC).
pub const TRAILER: usize = 4;
/// Length of a record entry's header, before the framed record.
pub const ENTRY_HEADER: usize = 28;
/// Length of one checkpoint index entry.
pub const INDEX_ENTRY: usize = 12;
/// The repeating pattern of preallocated space, aligned to absolute file offsets.
pub const FILLER: [u8; 8] = [0xFE, b'f', b'r', b'e', b'e', 0xFE, 0, 0];
/// Bytes of aligned filler that count as evidence of preallocated space.
pub const FILLER_RUN: usize = 64;

/// Fills `buf`, which goes at file offset `at`, with preallocation filler.
pub fn fill(buf: &mut [u8], at: u64) {
    // The first period byte by byte, then doubling copies: megabytes of filler cost a
    // few memcpys, not a loop per byte.
    let first = buf.len().min(8);
    for (i, b) in buf[..first].iter_mut().enumerate() {
        *b = FILLER[((at + i as u64) % 8) as usize];
    }
    let mut filled = first;
    while filled < buf.len() {
        let n = filled.min(buf.len() - filled);
        buf.copy_within(0..n, filled);
        filled += n;
    }
}

/// Whether `buf`, read from file offset `at`, is all filler (and not empty).
pub fn is_filler(buf: &[u8], at: u64) -> bool {
    !buf.is_empty()
        && buf
            .iter()
            .enumerate()
            .all(|(i, &b)| b == FILLER[((at + i as u64) % 8) as usize])
}

/// Whether `buf`, read from file offset `at`, holds a run of at least [`FILLER_RUN`]
/// aligned filler bytes.
pub fn has_filler_run(buf: &[u8], at: u64) -> bool {
    let mut run = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == FILLER[((at + i as u64) % 8) as usize] {
            run += 1;
            if run >= FILLER_RUN {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// The kinds of block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// A committed transaction.
    Transaction,
    /// An index checkpoint.
    Checkpoint,
    /// An oid reservation.
    Reservation,
    /// Versions kept by a pack.
    Pack,
}

impl BlockKind {
    /// The 4 magic bytes of this kind.
    pub fn magic(self) -> [u8; 4] {
        match self {
            BlockKind::Transaction => *b"DTX1",
            BlockKind::Checkpoint => *b"DCP1",
            BlockKind::Reservation => *b"DRS1",
            BlockKind::Pack => *b"DPK1",
        }
    }

    /// The kind these magic bytes name, if any.
    pub fn from_magic(m: &[u8]) -> Option<BlockKind> {
        match m {
            b"DTX1" => Some(BlockKind::Transaction),
            b"DCP1" => Some(BlockKind::Checkpoint),
            b"DRS1" => Some(BlockKind::Reservation),
            b"DPK1" => Some(BlockKind::Pack),
            _ => None,
        }
    }
}

/// The decoded 64-byte header every block starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// What the block is.
    pub kind: BlockKind,
    /// Whole block length.
    pub len: u64,
    /// Transaction id (or the last tid, for non-transactions).
    pub tid: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp: u64,
    /// Offset where the write carrying this block began.
    pub group_start: u64,
    /// Every oid below this has been handed out.
    pub next_oid: u64,
    /// Records (transaction) or index entries (checkpoint).
    pub count: u64,
    /// Kind-specific: entries per page for a checkpoint.
    pub aux: u64,
}

/// Why a header did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// All 64 bytes are zero: the end of the journal.
    Zero,
    /// Anything else: damage.
    Bad(&'static str),
}

impl BlockHeader {
    /// Encodes the header, computing its CRC.
    pub fn encode(&self) -> [u8; BLOCK_HEADER] {
        let mut b = [0u8; BLOCK_HEADER];
        b[0..4].copy_from_slice(&self.kind.magic());
        b[8..16].copy_from_slice(&self.len.to_be_bytes());
        b[16..24].copy_from_slice(&self.tid.to_be_bytes());
        b[24..32].copy_from_slice(&self.timestamp.to_be_bytes());
        b[32..40].copy_from_slice(&self.group_start.to_be_bytes());
        b[40..48].copy_from_slice(&self.next_oid.to_be_bytes());
        b[48..56].copy_from_slice(&self.count.to_be_bytes());
        b[56..64].copy_from_slice(&self.aux.to_be_bytes());
        let crc = crc32fast::hash(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes and checks a header (magic, CRC, minimal length).
    pub fn decode(b: &[u8]) -> std::result::Result<BlockHeader, HeaderProblem> {
        if b.len() < BLOCK_HEADER {
            return Err(HeaderProblem::Bad("block header cut short"));
        }
        let b = &b[..BLOCK_HEADER];
        let kind = match BlockKind::from_magic(&b[0..4]) {
            Some(k) => k,
            None if b.iter().all(|&x| x == 0) => return Err(HeaderProblem::Zero),
            None => return Err(HeaderProblem::Bad("unknown block magic")),
        };
        if crc32fast::hash(&b[8..]) != be_u32(&b[4..8]) {
            return Err(HeaderProblem::Bad("block header checksum mismatch"));
        }
        let h = BlockHeader {
            kind,
            len: be_u64(&b[8..16]),
            tid: be_u64(&b[16..24]),
            timestamp: be_u64(&b[24..32]),
            group_start: be_u64(&b[32..40]),
            next_oid: be_u64(&b[40..48]),
            count: be_u64(&b[48..56]),
            aux: be_u64(&b[56..64]),
        };
        if h.len < (BLOCK_HEADER + TRAILER) as u64 {
            return Err(HeaderProblem::Bad("block length shorter than header and trailer"));
        }
        Ok(h)
    }
}

/// The decoded file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Format version.
    pub version: u32,
    /// Offset of the first block.
    pub data_start: u64,
    /// Creation time, microseconds since the Unix epoch.
    pub created: u64,
}

impl FileHeader {
    /// The header of a new file created at `created`.
    pub fn new(created: u64) -> FileHeader {
        FileHeader {
            version: PLAIN_VERSION,
            data_start: DATA_START,
            created,
        }
    }

    /// The first `DATA_START` bytes of a new file: the header and two empty slots.
    pub fn encode_region(&self) -> Vec<u8> {
        let mut b = vec![0u8; DATA_START as usize];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_be_bytes());
        b[16..24].copy_from_slice(&self.data_start.to_be_bytes());
        b[24..32].copy_from_slice(&self.created.to_be_bytes());
        let crc = crc32fast::hash(&b[0..FILE_HEADER_CRC_AT]);
        b[32..36].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Checks the magic, version and CRC of a file's first bytes.
    pub fn decode(b: &[u8]) -> Result<FileHeader> {
        if b.len() < 36 || b[0..8] != MAGIC {
            return Err(Error::Format {
                reason: "the file does not start with the durus journal magic".into(),
            });
        }
        let version = be_u32(&b[8..12]);
        if version > VERSION {
            return Err(Error::Version {
                found: version,
                supported: VERSION,
            });
        }
        if crc32fast::hash(&b[0..FILE_HEADER_CRC_AT]) != be_u32(&b[32..36]) {
            return Err(Error::corrupt(0, "file header checksum mismatch"));
        }
        if version == 0 {
            return Err(Error::Format {
                reason: "format version 0 was never written by durus".into(),
            });
        }
        let data_start = be_u64(&b[16..24]);
        if data_start != DATA_START {
            return Err(Error::corrupt(
                16,
                format!("data start {data_start} is not {DATA_START}"),
            ));
        }
        Ok(FileHeader {
            version,
            data_start,
            created: be_u64(&b[24..32]),
        })
    }
}

/// The pack record of a packed file: which pack made it and what history it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PackRecord {
    /// 1 for the first pack of a journal, one more for each later one.
    pub generation: u64,
    /// The pack point: versions visible at snapshots from this tid on are all kept.
    pub history_from: u64,
    /// The commit time of the pack point's transaction.
    pub history_timestamp: u64,
    /// When the pack ran, microseconds since the Unix epoch.
    pub packed_at: u64,
}

impl PackRecord {
    /// Encodes the record with its CRC.
    pub fn encode(&self) -> [u8; PACK_RECORD_LEN] {
        let mut b = [0u8; PACK_RECORD_LEN];
        b[0..4].copy_from_slice(b"DPKR");
        b[8..16].copy_from_slice(&self.generation.to_be_bytes());
        b[16..24].copy_from_slice(&self.history_from.to_be_bytes());
        b[24..32].copy_from_slice(&self.history_timestamp.to_be_bytes());
        b[32..40].copy_from_slice(&self.packed_at.to_be_bytes());
        let crc = crc32fast::hash(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes the pack record from a file's first bytes (the header region), for a
    /// file of `version`: `None` for a plain (version 1) file, an error if a packed
    /// file's record does not check out.
    pub fn decode_region(head: &[u8], version: u32) -> Result<Option<PackRecord>> {
        if version < VERSION {
            return Ok(None);
        }
        let at = PACK_RECORD_AT as usize;
        let b = head
            .get(at..at + PACK_RECORD_LEN)
            .ok_or_else(|| Error::corrupt(PACK_RECORD_AT, "pack record cut short"))?;
        if &b[0..4] != b"DPKR" || crc32fast::hash(&b[0..40]) != be_u32(&b[40..44]) {
            return Err(Error::corrupt(PACK_RECORD_AT, "pack record checksum mismatch"));
        }
        Ok(Some(PackRecord {
            generation: be_u64(&b[8..16]),
            history_from: be_u64(&b[16..24]),
            history_timestamp: be_u64(&b[24..32]),
            packed_at: be_u64(&b[32..40]),
        }))
    }
}

/// A header slot: where the newest index checkpoint is, and the durable state of the
/// journal when the slot was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Higher is newer.
    pub seq: u64,
    /// Offset of the checkpoint block; 0 if the slot names none.
    pub offset: u64,
    /// Length of the checkpoint block (0 with no checkpoint).
    pub len: u64,
    /// What was durable when the slot was written; `None` for a slot written by durus
    /// 0.1, which names only its checkpoint.
    pub mark: Option<DurableMark>,
}

/// The durable state a slot records: what the journal must still hold, and the ids that
/// must never be handed out again, whatever happens to the file later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DurableMark {
    /// The highest transaction id committed: new transactions get higher ones.
    pub last_tid: u64,
    /// Every oid below this has been handed out: new oids are at or above it.
    pub next_oid: u64,
    /// Every byte before this offset was durable (synced) when the slot was written: a
    /// file that ends before it, or whose blocks end before it, has lost acknowledged
    /// transactions.
    pub end: u64,
}

impl Slot {
    /// Whether the slot names a checkpoint.
    pub fn has_checkpoint(&self) -> bool {
        self.offset != 0
    }

    /// Encodes the slot with its CRCs.
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..16].copy_from_slice(&self.offset.to_be_bytes());
        b[16..24].copy_from_slice(&self.len.to_be_bytes());
        let crc = crc32fast::hash(&b[0..24]);
        b[24..28].copy_from_slice(&crc.to_be_bytes());
        if let Some(m) = self.mark {
            b[32..40].copy_from_slice(&m.last_tid.to_be_bytes());
            b[40..48].copy_from_slice(&m.next_oid.to_be_bytes());
            b[48..56].copy_from_slice(&m.end.to_be_bytes());
            let crc = crc32fast::hash(&b[0..56]);
            b[56..60].copy_from_slice(&crc.to_be_bytes());
        }
        b
    }

    /// Decodes both slots from the first bytes of a file (at least up to the end of
    /// slot 1).
    pub fn decode_both(head: &[u8]) -> [Option<Slot>; 2] {
        SLOT_OFFSETS.map(|o| {
            let o = o as usize;
            head.get(o..o + SLOT_LEN).and_then(Slot::decode)
        })
    }

    /// Decodes a slot; `None` if it is empty or a CRC fails (a torn slot write).
    pub fn decode(b: &[u8]) -> Option<Slot> {
        if b.len() < SLOT_LEN || b[..SLOT_LEN].iter().all(|&x| x == 0) {
            return None;
        }
        if crc32fast::hash(&b[0..24]) != be_u32(&b[24..28]) {
            return None;
        }
        let mark = if b[28..SLOT_LEN].iter().all(|&x| x == 0) {
            None
        } else if b[28..32] == [0; 4]
            && crc32fast::hash(&b[0..56]) == be_u32(&b[56..60])
            && b[60..64] == [0; 4]
        {
            Some(DurableMark {
                last_tid: be_u64(&b[32..40]),
                next_oid: be_u64(&b[40..48]),
                end: be_u64(&b[48..56]),
            })
        } else {
            return None;
        };
        Some(Slot {
            seq: be_u64(&b[0..8]),
            offset: be_u64(&b[8..16]),
            len: be_u64(&b[16..24]),
            mark,
        })
    }
}

/// The decoded header of one record entry inside a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Whole entry length.
    pub len: u32,
    /// The transaction id.
    pub tid: u64,
    /// Offset of the oid's previous entry, 0 if none.
    pub prev_offset: u64,
    /// Length of that entry.
    pub prev_len: u32,
}

/// Appends a record entry (header and Durus-framed record) to `out`.
pub fn encode_entry(
    out: &mut Vec<u8>,
    tid: u64,
    prev: Option<(u64, u32)>,
    record: &crate::record::Record,
) -> Result<()> {
    let start = out.len();
    let len = ENTRY_HEADER + record.framed_len();
    let len32 = u32::try_from(len).map_err(|_| Error::TooLarge {
        what: format!("the journal entry of record {}", record.oid),
        size: len as u64,
        limit: u32::MAX as u64,
    })?;
    let (po, pl) = prev.unwrap_or((0, 0));
    out.extend_from_slice(&len32.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&tid.to_be_bytes());
    out.extend_from_slice(&po.to_be_bytes());
    out.extend_from_slice(&pl.to_be_bytes());
    record.encode_into(out)?;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Decodes an entry header from the first bytes of `b`, checks that its length fits in
/// `b`, and verifies the entry's CRC: what a read of a single record needs.
pub fn decode_entry(b: &[u8]) -> std::result::Result<EntryHeader, &'static str> {
    let eh = decode_entry_unverified(b)?;
    if crc32fast::hash(&b[8..eh.len as usize]) != be_u32(&b[4..8]) {
        return Err("record entry checksum mismatch");
    }
    Ok(eh)
}

/// [`decode_entry`] without the CRC check, for a scan that has already checked the
/// whole transaction's CRC.
pub fn decode_entry_unverified(b: &[u8]) -> std::result::Result<EntryHeader, &'static str> {
    if b.len() < ENTRY_HEADER {
        return Err("record entry cut short");
    }
    let len = be_u32(&b[0..4]);
    if (len as usize) < ENTRY_HEADER + crate::record::RECORD_HEADER {
        return Err("record entry length too small");
    }
    if len as usize > b.len() {
        return Err("record entry longer than its container");
    }
    Ok(EntryHeader {
        len,
        tid: be_u64(&b[8..16]),
        prev_offset: be_u64(&b[16..24]),
        prev_len: be_u32(&b[24..28]),
    })
}

/// Where the parts of a checkpoint block lie: the header, one CRC per page of index
/// entries, the entries (`count` of them, `per_page` to a page), and the trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointLayout {
    /// Index entries (one per oid below `count`).
    pub count: u64,
    /// Entries per page.
    pub per_page: u64,
    /// Number of pages.
    pub pages: u64,
}

impl CheckpointLayout {
    /// The layout a checkpoint header describes, if its numbers are consistent (the
    /// block length is exactly what `count` and `per_page` make it).
    pub fn of(h: &BlockHeader) -> Option<CheckpointLayout> {
        let l = CheckpointLayout::new(h.count, h.aux)?;
        (l.block_len()? == h.len).then_some(l)
    }

    /// The layout of a checkpoint of `count` entries, `per_page` to a page.
    pub fn new(count: u64, per_page: u64) -> Option<CheckpointLayout> {
        if per_page == 0 || per_page > u32::MAX as u64 {
            return None;
        }
        Some(CheckpointLayout {
            count,
            per_page,
            pages: count.div_ceil(per_page),
        })
    }

    /// The whole block's length, if it fits in a u64.
    pub fn block_len(&self) -> Option<u64> {
        (BLOCK_HEADER as u64)
            .checked_add(self.pages.checked_mul(4)?)?
            .checked_add(self.count.checked_mul(INDEX_ENTRY as u64)?)?
            .checked_add(TRAILER as u64)
    }

    /// Bytes of the header and the page CRCs: what the trailer's CRC covers.
    pub fn head_len(&self) -> usize {
        BLOCK_HEADER + 4 * self.pages as usize
    }

    /// The first oid on page `p`.
    pub fn first_oid(&self, p: u64) -> u64 {
        p * self.per_page
    }

    /// Entries on page `p`.
    pub fn page_entries(&self, p: u64) -> u64 {
        (self.count - self.first_oid(p)).min(self.per_page)
    }

    /// Offset of page `p`'s entries from the start of the block, and their length.
    pub fn page_span(&self, p: u64) -> (u64, usize) {
        let at = self.head_len() as u64 + self.first_oid(p) * INDEX_ENTRY as u64;
        (at, (self.page_entries(p) * INDEX_ENTRY as u64) as usize)
    }
}

/// The CRC stored in the last 4 bytes of a block.
pub fn trailer_crc(block: &[u8]) -> u32 {
    be_u32(&block[block.len() - TRAILER..])
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
