//! Unit tests of the file format's encoders and decoders.
use super::*;

#[test]
fn header_round_trip_and_damage() {
    let h = BlockHeader {
        kind: BlockKind::Transaction,
        len: 100,
        tid: 3,
        timestamp: 4,
        group_start: 4096,
        next_oid: 9,
        count: 1,
        aux: 0,
    };
    let b = h.encode();
    assert_eq!(BlockHeader::decode(&b), Ok(h));
    for i in 0..BLOCK_HEADER {
        let mut d = b;
        d[i] ^= 0x10;
        assert!(
            matches!(BlockHeader::decode(&d), Err(HeaderProblem::Bad(_))),
            "byte {i}"
        );
    }
    assert_eq!(BlockHeader::decode(&[0; 64]), Err(HeaderProblem::Zero));
}

#[test]
fn file_header_checks() {
    let b = FileHeader::new(5).encode_region();
    assert_eq!(FileHeader::decode(&b).unwrap().created, 5);
    // A version newer than this build reads is refused, naming it.
    let mut v = b.clone();
    v[11] = VERSION as u8 + 1;
    assert!(matches!(
        FileHeader::decode(&v),
        Err(Error::Version { found, .. }) if found == VERSION + 1
    ));
    assert!(matches!(FileHeader::decode(b"hello"), Err(Error::Format { .. })));
    let mut c = b;
    c[30] ^= 1;
    assert!(matches!(
        FileHeader::decode(&c),
        Err(Error::Corrupt { offset: 0, .. })
    ));
}

#[test]
fn fill_writes_the_pattern_at_its_file_offsets() {
    for at in 0..17u64 {
        for len in [0usize, 1, 7, 8, 9, 63, 64, 1000] {
            let mut buf = vec![0u8; len];
            fill(&mut buf, at);
            for (i, &b) in buf.iter().enumerate() {
                assert_eq!(
                    b,
                    FILLER[((at + i as u64) % 8) as usize],
                    "at {at} len {len} byte {i}"
                );
            }
            assert_eq!(is_filler(&buf, at), len > 0);
        }
    }
}

#[test]
fn slot_round_trip() {
    let old = Slot {
        seq: 2,
        offset: 8192,
        len: 77,
        mark: None,
    };
    assert_eq!(Slot::decode(&old.encode()), Some(old));
    let s = Slot {
        mark: Some(DurableMark {
            last_tid: 9,
            next_oid: 300,
            end: 9000,
        }),
        ..old
    };
    assert_eq!(Slot::decode(&s.encode()), Some(s));
    for i in 0..SLOT_LEN {
        let mut b = s.encode();
        b[i] ^= 1;
        assert_eq!(Slot::decode(&b), None, "byte {i}");
    }
    // A torn write that keeps the first part of a new slot over an old extension.
    let mut torn = old.encode();
    torn[32..SLOT_LEN].copy_from_slice(&s.encode()[32..]);
    torn[8] ^= 1;
    let crc = crc32fast::hash(&torn[0..24]);
    torn[24..28].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(Slot::decode(&torn), None);
    assert_eq!(Slot::decode(&[0; SLOT_LEN]), None);
}
