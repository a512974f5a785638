//! `format_decode`: the small decoders of the journal format, fed directly.
//!
//! `journal_open` reaches these decoders only through whole files, where most inputs
//! stop at the first checksum; here each one gets the input bytes itself, is checked
//! against an independent statement of what it must accept (an oracle written from the
//! layout documented in `durus::journal::format`), and what it accepts must re-encode
//! to the bytes it came from.

use durus::journal::format::{
    decode_entry, decode_entry_unverified, encode_entry, fill, has_filler_run, is_filler, BlockHeader, BlockKind, FileHeader,
    CheckpointLayout, HeaderProblem, Slot, BLOCK_HEADER, DATA_START, ENTRY_HEADER, FILLER, FILLER_RUN, INDEX_ENTRY, MAGIC,
    SLOT_LEN, TRAILER, VERSION,
};
use durus::record::{Record, RECORD_HEADER};

use crate::with_alloc_bound;

/// The decoders, chosen by the low bits of the first input byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `FileHeader::decode`.
    FileHeader = 0,
    /// `BlockHeader::decode`.
    BlockHeader = 1,
    /// `Slot::decode`.
    Slot = 2,
    /// `decode_entry` or `decode_entry_unverified` (a record entry inside a transaction).
    Entry = 3,
    /// `CheckpointLayout::of` a header built from the input's fields.
    CheckpointShape = 4,
    /// `is_filler`, `has_filler_run` and `fill`.
    Filler = 5,
}

/// Number of [`Piece`]s; the first byte's low nibble is taken modulo this.
const PIECES: u8 = 6;

/// Flag bit of the first byte: recompute the piece's checksum before decoding, so that
/// mutations of the fields behind it reach the structural checks.
pub const FORMAT_FIX_CRC: u8 = 0x10;
/// Flag bit of the first byte: decode an entry with `decode_entry`, which verifies its
/// checksum, instead of `decode_entry_unverified`.
pub const FORMAT_VERIFY: u8 = 0x20;

impl Piece {
    fn of(b: u8) -> Piece {
        match (b & 0x0F) % PIECES {
            0 => Piece::FileHeader,
            1 => Piece::BlockHeader,
            2 => Piece::Slot,
            3 => Piece::Entry,
            4 => Piece::CheckpointShape,
            _ => Piece::Filler,
        }
    }
}

/// The first input byte that selects `piece` with `flags` (for writing seeds).
pub fn format_selector(piece: Piece, flags: u8) -> u8 {
    piece as u8 | flags
}

/// Allocation bound of one `format_decode` run: the decoders allocate at most a file
/// header region, an error message, or a re-encoding of what they decoded.
pub fn format_bound(len: usize) -> usize {
    4 * len + (64 << 10)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn seal(b: &mut [u8], covered: std::ops::Range<usize>, at: usize) {
    let crc = crc32fast::hash(&b[covered]);
    b[at..at + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Every decoder of the journal format accepts exactly what the layout allows, never
/// panics, and what it accepts re-encodes to its input.
pub fn check_format_decode(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    with_alloc_bound(data.len(), format_bound(data.len()), || {
        let mut b = rest.to_vec();
        let fix = sel & FORMAT_FIX_CRC != 0;
        match Piece::of(sel) {
            Piece::FileHeader => check_file_header(&mut b, fix),
            Piece::BlockHeader => check_block_header(&mut b, fix),
            Piece::Slot => check_slot(&mut b, fix),
            Piece::Entry => check_entry(&mut b, fix, sel & FORMAT_VERIFY != 0),
            Piece::CheckpointShape => check_checkpoint_shape(&b),
            Piece::Filler => check_filler(&b),
        }
    });
}

fn check_file_header(b: &mut [u8], fix: bool) {
    if fix && b.len() >= 36 {
        seal(b, 0..32, 32);
    }
    let got = FileHeader::decode(b);
    let sound = b.len() >= 36
        && b[0..8] == MAGIC
        && (1..=VERSION).contains(&be32(&b[8..12]))
        && crc32fast::hash(&b[0..32]) == be32(&b[32..36])
        && be64(&b[16..24]) == DATA_START;
    match got {
        Ok(h) => {
            assert!(sound, "FileHeader::decode accepted a header the layout refuses");
            assert_eq!(h.version, be32(&b[8..12]), "decoded version");
            assert_eq!(h.created, be64(&b[24..32]), "decoded creation time");
            assert_eq!(h.data_start, DATA_START, "decoded data start");
            let again = h.encode_region();
            assert_eq!(again.len(), DATA_START as usize, "a header region's length");
            // The flags word (bytes 12..16) is not interpreted by this version, so it is
            // the one part a re-encoding may not reproduce (and with it the CRC).
            assert!(again[0..12] == b[0..12], "re-encoded header, bytes 0..12");
            assert!(again[16..32] == b[16..32], "re-encoded header, bytes 16..32");
            if b[12..16] == [0; 4] {
                assert!(again[..36] == b[..36], "re-encoded header with zero flags");
            }
            assert!(
                again[36..].iter().all(|&x| x == 0),
                "a new header region has empty slots"
            );
            assert_eq!(
                FileHeader::decode(&again).ok(),
                Some(h),
                "a re-encoded header decodes"
            );
        }
        Err(e) => {
            assert!(!sound, "FileHeader::decode refused a sound header: {e}");
            assert!(
                matches!(
                    e,
                    durus::Error::Format { .. } | durus::Error::Version { .. } | durus::Error::Corrupt { .. }
                ),
                "FileHeader::decode failed with an unexpected kind of error: {e:?}"
            );
        }
    }
}

fn check_block_header(b: &mut [u8], fix: bool) {
    if fix && b.len() >= BLOCK_HEADER {
        seal(b, 8..BLOCK_HEADER, 4);
    }
    let got = BlockHeader::decode(b);
    if b.len() < BLOCK_HEADER {
        assert!(
            matches!(got, Err(HeaderProblem::Bad(_))),
            "a short header decoded: {got:?}"
        );
        return;
    }
    let h = &b[..BLOCK_HEADER];
    let kind = BlockKind::from_magic(&h[0..4]);
    match got {
        Ok(d) => {
            assert_eq!(Some(d.kind), kind, "decoded block kind");
            assert_eq!(crc32fast::hash(&h[8..]), be32(&h[4..8]), "decoded with a bad CRC");
            assert!(
                d.len >= (BLOCK_HEADER + TRAILER) as u64,
                "decoded a block shorter than its frame"
            );
            assert!(d.encode() == h, "a decoded block header re-encodes differently");
            assert_eq!(d.kind.magic(), h[0..4], "magic of the decoded kind");
        }
        Err(HeaderProblem::Zero) => {
            assert!(h.iter().all(|&x| x == 0), "a non-zero header reported as the end");
        }
        Err(HeaderProblem::Bad(why)) => {
            let sound = kind.is_some()
                && crc32fast::hash(&h[8..]) == be32(&h[4..8])
                && be64(&h[8..16]) >= (BLOCK_HEADER + TRAILER) as u64;
            assert!(!sound, "BlockHeader::decode refused a sound header: {why}");
            assert!(!h.iter().all(|&x| x == 0), "zeros reported as damage");
        }
    }
}

fn check_slot(b: &mut [u8], fix: bool) {
    if fix && b.len() >= SLOT_LEN {
        seal(b, 0..24, 24);
        if b[28..SLOT_LEN].iter().any(|&x| x != 0) {
            seal(b, 0..56, 56);
        }
    }
    let got = Slot::decode(b);
    let long = b.len() >= SLOT_LEN;
    // Written by durus 0.1: bytes 28..64 are zero. Written since: zero padding at 28 and
    // 60, and a second CRC over bytes 0..56.
    let plain = long && b[28..SLOT_LEN].iter().all(|&x| x == 0);
    let marked = long && b[28..32] == [0; 4] && b[60..64] == [0; 4] && crc32fast::hash(&b[0..56]) == be32(&b[56..60]);
    let sound = long
        && b[..SLOT_LEN].iter().any(|&x| x != 0)
        && crc32fast::hash(&b[0..24]) == be32(&b[24..28])
        && (plain || marked);
    assert_eq!(
        got.is_some(),
        sound,
        "Slot::decode of {:?}",
        &b[..b.len().min(SLOT_LEN)]
    );
    if let Some(s) = got {
        assert_eq!(
            (s.seq, s.offset, s.len),
            (be64(&b[0..8]), be64(&b[8..16]), be64(&b[16..24]))
        );
        match s.mark {
            None => assert!(plain, "a slot with durable fields decoded without them"),
            Some(m) => assert_eq!(
                (m.last_tid, m.next_oid, m.end),
                (be64(&b[32..40]), be64(&b[40..48]), be64(&b[48..56]))
            ),
        }
        assert!(s.encode()[..] == b[..SLOT_LEN], "a decoded slot re-encodes differently");
        assert_eq!(Slot::decode(&s.encode()), Some(s), "a re-encoded slot decodes");
    }
}

fn check_entry(b: &mut [u8], fix: bool, verify: bool) {
    if fix && b.len() >= ENTRY_HEADER {
        let len = (be32(&b[0..4]) as usize).clamp(8, b.len());
        seal(b, 8..len, 4);
    }
    let got = if verify {
        decode_entry(b)
    } else {
        decode_entry_unverified(b)
    };
    let min = ENTRY_HEADER + RECORD_HEADER;
    let sound = b.len() >= ENTRY_HEADER && {
        let len = be32(&b[0..4]) as usize;
        len >= min && len <= b.len() && (!verify || crc32fast::hash(&b[8..len]) == be32(&b[4..8]))
    };
    let eh = match got {
        Ok(eh) => eh,
        Err(why) => {
            assert!(!sound, "decode_entry refused a sound entry: {why}");
            return;
        }
    };
    assert!(sound, "decode_entry accepted an entry the layout refuses: {eh:?}");
    assert_eq!(
        (eh.len, eh.tid, eh.prev_offset, eh.prev_len),
        (
            be32(&b[0..4]),
            be64(&b[8..16]),
            be64(&b[16..24]),
            be32(&b[24..28])
        ),
        "decoded entry header fields"
    );
    let len = eh.len as usize;
    // The framed record that fills the rest of the entry, if it is well formed, and the
    // entry's header re-encode to the same bytes (the CRC too, when it was verified).
    if let Ok(record) = Record::decode(&b[ENTRY_HEADER..len]) {
        let mut again = Vec::new();
        encode_entry(&mut again, eh.tid, Some((eh.prev_offset, eh.prev_len)), &record)
            .expect("encoding a decoded entry");
        assert_eq!(again.len(), len, "length of a re-encoded entry");
        assert!(
            again[0..4] == b[0..4] && again[8..] == b[8..len],
            "re-encoded entry"
        );
        if verify {
            assert!(again[4..8] == b[4..8], "re-encoded entry CRC");
        }
        let back = decode_entry(&again).expect("a re-encoded entry verifies");
        assert_eq!(back, eh, "a re-encoded entry decodes to the same header");
    }
}

fn check_checkpoint_shape(b: &[u8]) {
    let mut f = [0u8; 24];
    let n = b.len().min(24);
    f[..n].copy_from_slice(&b[..n]);
    let (len, count, aux) = (be64(&f[0..8]), be64(&f[8..16]), be64(&f[16..24]));
    let h = BlockHeader {
        kind: BlockKind::Checkpoint,
        len,
        tid: 0,
        timestamp: 0,
        group_start: 0,
        next_oid: 0,
        count,
        aux,
    };
    let got = CheckpointLayout::of(&h).map(|l| l.pages);
    // The same rule in arithmetic that cannot overflow.
    let want = (aux != 0 && aux <= u32::MAX as u64).then(|| {
        let pages = (count as u128).div_ceil(aux as u128);
        let total = BLOCK_HEADER as u128 + 4 * pages + INDEX_ENTRY as u128 * count as u128 + TRAILER as u128;
        (total == len as u128).then_some(pages as u64)
    });
    assert_eq!(
        got,
        want.flatten(),
        "CheckpointLayout::of(len {len}, count {count}, per page {aux})"
    );
}

fn check_filler(b: &[u8]) {
    let mut f = [0u8; 8];
    let n = b.len().min(8);
    f[..n].copy_from_slice(&b[..n]);
    // A file offset: far below where `at + buf.len()` could overflow.
    let at = u64::from_be_bytes(f) >> 16;
    let buf = b.get(8..).unwrap_or(&[]);
    let expected = |i: usize| FILLER[((at + i as u64) % 8) as usize];
    let all = !buf.is_empty() && buf.iter().enumerate().all(|(i, &x)| x == expected(i));
    assert_eq!(is_filler(buf, at), all, "is_filler at {at}");
    let mut longest = 0;
    let mut run = 0;
    for (i, &x) in buf.iter().enumerate() {
        run = if x == expected(i) { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    assert_eq!(
        has_filler_run(buf, at),
        longest >= FILLER_RUN,
        "has_filler_run at {at}"
    );
    let mut filled = buf.to_vec();
    fill(&mut filled, at);
    assert!(filled.is_empty() || is_filler(&filled, at), "fill writes filler");
    assert_eq!(
        has_filler_run(&filled, at),
        filled.len() >= FILLER_RUN,
        "a filled buffer is a run"
    );
}
