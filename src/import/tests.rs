//! The readers of both formats on files built here the way Durus writes them; the
//! files real Durus writes are imported in `tests/durus_import.rs`.

use super::*;
use crate::record::Tid;

fn framed(oid: u64, data: &[u8], refs: &[u64]) -> Vec<u8> {
    let rec = Record::new(Oid(oid), data.to_vec(), refs.iter().map(|&o| Oid(o)).collect());
    rec.encode().unwrap()
}

/// A shelf: the first transaction (`first`), an offset map, then `later` transactions.
fn shelf(first: &[Vec<u8>], later: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut f = shelf::PREFIX.to_vec();
    shelf_tx(&mut f, first);
    // An offset map of two one-byte words, as Durus writes for a small file.
    f.extend_from_slice(&(16u64 + 2).to_be_bytes());
    f.extend_from_slice(&1u64.to_be_bytes());
    f.extend_from_slice(&2u64.to_be_bytes());
    f.extend_from_slice(&[0xff, 0xff]);
    for tx in later {
        shelf_tx(&mut f, tx);
    }
    f
}

fn shelf_tx(f: &mut Vec<u8>, records: &[Vec<u8>]) {
    let body: Vec<u8> = records
        .iter()
        .flat_map(|r| {
            let len = (r.len() as u64 + 8).to_be_bytes();
            len.into_iter()
                .chain(r[..8].iter().copied())
                .chain(r.iter().copied())
        })
        .collect();
    f.extend_from_slice(&(body.len() as u64).to_be_bytes());
    f.extend_from_slice(&body);
}

fn dfs20(before: &[Vec<Vec<u8>>], after: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut f = dfs20::MAGIC.to_vec();
    f.extend_from_slice(&[0; 8]);
    for tx in before {
        dfs_tx(&mut f, tx);
    }
    let index_at = f.len() as u64;
    f[6..14].copy_from_slice(&index_at.to_be_bytes());
    let index = b"x\x9c compressed pickle";
    f.extend_from_slice(&(index.len() as u64).to_be_bytes());
    f.extend_from_slice(index);
    for tx in after {
        dfs_tx(&mut f, tx);
    }
    f
}

fn dfs_tx(f: &mut Vec<u8>, records: &[Vec<u8>]) {
    for r in records {
        f.extend_from_slice(&(r.len() as u32).to_be_bytes());
        f.extend_from_slice(r);
    }
    f.extend_from_slice(&[0; 4]);
}

fn import_bytes(bytes: &[u8], opts: &ImportOptions) -> (tempfile::TempDir, Result<ImportReport>) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.durus");
    std::fs::write(&src, bytes).unwrap();
    let r = import_durus(&src, dir.path().join("out.durus"), opts);
    (dir, r)
}

fn open(dir: &tempfile::TempDir) -> Journal {
    Journal::open(
        dir.path().join("out.durus"),
        JournalOptions {
            read_only: true,
            ..JournalOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn a_shelf_keeps_the_newest_record_of_each_oid() {
    let first = vec![framed(0, b"root v1", &[1]), framed(1, b"one v1", &[])];
    let later = vec![
        vec![framed(1, b"one v2", &[2]), framed(2, b"two", &[])],
        vec![],
        vec![framed(0, b"root v2", &[1, 2])],
    ];
    let (dir, r) = import_bytes(&shelf(&first, &later), &ImportOptions::default());
    let r = r.unwrap();
    assert_eq!(r.format, DurusFormat::Shelf);
    assert_eq!((r.source_transactions, r.source_records, r.objects), (4, 5, 3));
    assert_eq!(r.max_oid, Some(Oid(2)));
    assert!(r.has_root && r.torn.is_none());
    let j = open(&dir);
    assert_eq!(
        j.load(Oid(0)).unwrap().record.encode().unwrap(),
        framed(0, b"root v2", &[1, 2])
    );
    assert_eq!(
        j.load(Oid(1)).unwrap().record.encode().unwrap(),
        framed(1, b"one v2", &[2])
    );
    assert_eq!(j.load(Oid(2)).unwrap().record.data, b"two");
    assert!(j.last_tid().unwrap() > Tid::ZERO);
    drop(j);
    // The allocator is past the highest oid.
    let j = Journal::open(dir.path().join("out.durus"), JournalOptions::default()).unwrap();
    assert!(j.new_oids(1).unwrap()[0] > Oid(2));
    assert!(!dir.path().join("out.durus.importing").exists());
}

#[test]
fn a_dfs20_file_before_and_after_its_index() {
    let before = vec![vec![framed(0, b"root", &[3]), framed(3, b"three", &[])]];
    let after = vec![vec![framed(3, b"three v2", &[])], vec![framed(4, b"four", &[])]];
    let (dir, r) = import_bytes(&dfs20(&before, &after), &ImportOptions::default());
    let r = r.unwrap();
    assert_eq!(r.format, DurusFormat::FileStorage2);
    assert_eq!(
        (r.source_transactions, r.objects, r.max_oid),
        (3, 3, Some(Oid(4)))
    );
    let j = open(&dir);
    assert_eq!(j.load(Oid(3)).unwrap().record.data, b"three v2");
    assert_eq!(j.load(Oid(4)).unwrap().record.data, b"four");
}

#[test]
fn a_torn_shelf_commit_is_left_out_or_refused() {
    let first = vec![framed(0, b"root", &[])];
    let whole = shelf(&first, &[vec![framed(1, b"one", &[])]]);
    let mut torn_len = whole.clone();
    // A commit whose length says more than follows.
    shelf_tx(&mut torn_len, &[framed(2, b"two", &[])]);
    torn_len.truncate(torn_len.len() - 3);
    // A commit cut before Durus wrote its length back: 0, then records.
    let mut torn_zero = whole.clone();
    torn_zero.extend_from_slice(&0u64.to_be_bytes());
    let rec = framed(2, b"two", &[]);
    torn_zero.extend_from_slice(&(rec.len() as u64 + 8).to_be_bytes());
    torn_zero.extend_from_slice(&rec[..8]);
    torn_zero.extend_from_slice(&rec[..5]);
    for torn in [torn_len, torn_zero] {
        let (dir, r) = import_bytes(&torn, &ImportOptions::default());
        let r = r.unwrap();
        let t = r.torn.clone().unwrap();
        assert_eq!(t.offset, whole.len() as u64, "{t:?}");
        assert_eq!(t.bytes, (torn.len() - whole.len()) as u64);
        assert_eq!((r.objects, r.source_transactions), (2, 2));
        assert!(matches!(open(&dir).load(Oid(2)), Err(Error::NotFound { .. })));

        let refuse = ImportOptions {
            refuse_torn: true,
            ..ImportOptions::default()
        };
        let (dir, r) = import_bytes(&torn, &refuse);
        match r {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, whole.len() as u64),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("out.durus").exists());
        assert!(!dir.path().join("out.durus.importing").exists());
    }
}

#[test]
fn a_torn_dfs20_commit_is_left_out() {
    let whole = dfs20(&[], &[vec![framed(0, b"root", &[])]]);
    let mut torn = whole.clone();
    let rec = framed(1, b"one", &[]);
    torn.extend_from_slice(&(rec.len() as u32).to_be_bytes());
    torn.extend_from_slice(&rec); // no terminating zero
    let (_dir, r) = import_bytes(&torn, &ImportOptions::default());
    let r = r.unwrap();
    assert_eq!(r.torn.unwrap().offset, whole.len() as u64);
    assert_eq!(r.objects, 1);
}

#[test]
fn what_is_not_durus_is_refused_and_nothing_is_written() {
    for bytes in [
        &b""[..],
        b"hello, world\n",
        b"SHELF-",
        &crate::journal::format::MAGIC,
    ] {
        let (dir, r) = import_bytes(bytes, &ImportOptions::default());
        assert!(matches!(r, Err(Error::NotDurus { .. })), "{bytes:?}: {r:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

#[test]
fn damage_before_the_end_or_in_a_record_is_refused() {
    // A shelf whose offset map claims more than the file holds.
    let mut bad_map = shelf(&[framed(0, b"root", &[])], &[]);
    let at = bad_map.len() - 2 - 24;
    bad_map[at + 16..at + 24].copy_from_slice(&1000u64.to_be_bytes());
    // A record whose data length runs past its frame.
    let mut rec = framed(0, b"root", &[]);
    rec[11] = 200;
    let bad_record = shelf(&[], &[vec![rec]]);
    // A DFS20 index offset past the end.
    let mut bad_index = dfs20(&[], &[]);
    bad_index[6..14].copy_from_slice(&10_000u64.to_be_bytes());
    for bytes in [bad_map, bad_record, bad_index] {
        let (dir, r) = import_bytes(&bytes, &ImportOptions::default());
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

#[test]
fn an_existing_destination_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.durus");
    std::fs::write(&src, shelf(&[], &[])).unwrap();
    let dest = dir.path().join("out.durus");
    std::fs::write(&dest, b"precious").unwrap();
    let r = import_durus(&src, &dest, &ImportOptions::default());
    assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
}

#[test]
fn batches_are_bounded() {
    let locs: Vec<(u64, Location)> = (0..50_000)
        .map(|i| {
            (
                i,
                Location {
                    offset: i * 10,
                    len: 1000,
                },
            )
        })
        .collect();
    let sizes: Vec<usize> = batches(&locs).map(<[_]>::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 50_000);
    assert!(sizes
        .iter()
        .all(|&n| n <= BATCH_RECORDS && n as u64 * 1000 <= BATCH_BYTES + 1000));
    let big = [(
        0,
        Location {
            offset: 0,
            len: 1 << 30,
        },
    )];
    assert_eq!(batches(&big).count(), 1);
}
