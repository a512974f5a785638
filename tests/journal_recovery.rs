//! Recovery, damage detection, locking and oid allocation of the journal file.

mod common;

use std::collections::BTreeMap;

use common::Rng;
use durus::journal::format::{BlockHeader, DATA_START};
use durus::journal::io::{FileIo, MemFile};
use durus::journal::{verify, Durability, Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::Error;

/// The state after each tid: oid -> data.
type States = Vec<BTreeMap<Oid, Vec<u8>>>;

fn opts() -> JournalOptions {
    JournalOptions {
        durability: Durability::Eventual,
        preallocate: 0,
        checkpoint_every: None,
        ..JournalOptions::default()
    }
}

fn read_only() -> JournalOptions {
    JournalOptions {
        read_only: true,
        ..opts()
    }
}

/// Reserves 4 oids and commits `n` transactions of 1-3 records each; records the
/// states after each tid and the byte range of each transaction. Returns the byte range
/// of the oid reservation block written first.
fn build(j: &Journal, n: usize, seed: u64, states: &mut States, ranges: &mut Vec<(u64, u64)>) -> (u64, u64) {
    let mut rng = Rng::with_seed(seed);
    let r0 = j.end_offset();
    let oids = j.new_oids(4).unwrap();
    let reservation = (r0, j.end_offset());
    for _ in 0..n {
        let start = j.end_offset();
        let mut recs = BTreeMap::new();
        for _ in 0..1 + rng.u64(..3) {
            let oid = oids[rng.u64(..4) as usize];
            let data: Vec<u8> = (0..rng.u64(..30)).map(|_| rng.u8(..)).collect();
            recs.insert(oid, data);
        }
        let records = recs
            .iter()
            .map(|(o, d)| Record::new(*o, d.clone(), vec![Oid::ROOT]))
            .collect();
        let snapshot = j.last_tid().unwrap();
        let c = j
            .commit(&CommitRequest {
                snapshot,
                records,
                reads: vec![],
                ..Default::default()
            })
            .unwrap();
        let mut next = states.last().cloned().unwrap_or_default();
        next.extend(recs);
        states.push(next);
        assert_eq!(c.tid.0 as usize, states.len() - 1);
        ranges.push((start, j.end_offset()));
    }
    reservation
}

/// A journal of `n` transactions; the ranges list every block (the oid reservation
/// first, then the transactions).
fn fresh(n: usize, seed: u64) -> (MemFile, States, Vec<(u64, u64)>) {
    let m = MemFile::new();
    let j = Journal::open_io(Box::new(m.clone()), opts()).unwrap();
    let mut states = vec![BTreeMap::new()];
    let mut ranges = vec![];
    let reservation = build(&j, n, seed, &mut states, &mut ranges);
    ranges.insert(0, reservation);
    drop(j); // no close: no checkpoint, the next open scans everything
    (m, states, ranges)
}

/// Checks that `j` holds exactly `states[tid]` as its newest state, and every older
/// state at its snapshot.
fn assert_states(j: &Journal, states: &States, tid: usize) {
    assert_eq!(j.last_tid().unwrap(), Tid(tid as u64));
    for (t, state) in states.iter().enumerate().take(tid + 1) {
        for oid in (0..6).map(Oid) {
            let got = j.load_at(oid, Tid(t as u64));
            match (got, state.get(&oid)) {
                (Ok(l), Some(d)) => assert_eq!(&l.record.data, d),
                (Err(Error::NotFound { .. }), None) => {}
                (got, want) => panic!("oid {oid} at {t}: got {got:?}, want {want:?}"),
            }
        }
    }
}

#[test]
fn truncating_anywhere_opens_the_prefix_before_the_cut() {
    let (m, states, ranges) = fresh(5, 1);
    let bytes = m.to_bytes();
    let end = ranges.last().unwrap().1 as usize;
    assert_eq!(bytes.len(), end);
    for cut in DATA_START as usize..end {
        for zero_fill in [false, true] {
            // A transaction is whole if it ends before the cut, or (zero filled) if every
            // byte the cut removed from it was a zero anyway: then it is byte-identical.
            let whole = ranges[1..]
                .iter()
                .take_while(|r| {
                    let (a, b) = (r.0 as usize, r.1 as usize);
                    b <= cut || (zero_fill && a < cut && bytes[cut..b].iter().all(|&x| x == 0))
                })
                .count();
            let mut b = bytes[..cut].to_vec();
            if zero_fill {
                // A torn write into preallocated space leaves zeros, not a short file.
                b.resize(end + 4096, 0);
            }
            // The oid reservation's header slot says everything up to its end was made
            // durable: a file cut before that has lost acknowledged data.
            if (cut as u64) < ranges[0].1 {
                match Journal::open_io(Box::new(MemFile::from_bytes(b)), read_only()) {
                    Err(Error::Corrupt { reason, .. }) => {
                        assert!(
                            reason.contains("acknowledged transactions are missing"),
                            "cut at {cut}: {reason}"
                        )
                    }
                    other => panic!("cut at {cut} before the durable end: {other:?}"),
                }
                continue;
            }
            let j = Journal::open_io(Box::new(MemFile::from_bytes(b)), read_only())
                .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_states(&j, &states, whole);
        }
    }
}

#[test]
fn a_torn_tail_is_cut_by_the_next_writer_and_by_repair() {
    let (m, states, ranges) = fresh(3, 2);
    let (a, b) = *ranges.last().unwrap();
    let cut = (a + b) / 2;
    let torn = m.to_bytes()[..cut as usize].to_vec();

    // The next writer appends in place of the torn transaction.
    let m2 = MemFile::from_bytes(torn.clone());
    let j = Journal::open_io(Box::new(m2.clone()), opts()).unwrap();
    assert_eq!(j.last_tid().unwrap(), Tid(2));
    let c = j
        .commit(&CommitRequest {
            snapshot: Tid(2),
            records: vec![Record::new(Oid(1), b"after".to_vec(), vec![])],
            reads: vec![],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(c.tid, Tid(3));
    drop(j);
    let j = Journal::open_io(Box::new(m2.clone()), read_only()).unwrap();
    let mut states = states;
    let mut next = states[2].clone();
    next.insert(Oid(1), b"after".to_vec());
    states.truncate(3);
    states.push(next);
    assert_states(&j, &states, 3);
    assert_eq!(verify(&m2).unwrap().torn_tail, None);

    // repair on a real file truncates the tail.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.durus");
    std::fs::write(&path, &torn).unwrap();
    assert_eq!(Journal::verify_path(&path).unwrap().torn_tail, Some(a));
    let rep = Journal::repair(&path).unwrap();
    assert_eq!(rep.truncated_at, Some(a));
    assert_eq!(rep.removed, cut - a);
    assert_eq!(rep.last_tid, Tid(2));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), a);
    assert_eq!(Journal::repair(&path).unwrap().truncated_at, None);
    let j = Journal::open(&path, read_only()).unwrap();
    assert_states(&j, &states, 2);
}

#[test]
fn flipping_any_byte_of_any_transaction_is_detected_on_open() {
    let (m, states, ranges) = fresh(5, 3);
    let bytes = m.to_bytes();
    let last = ranges.len() - 1;
    assert_eq!(ranges.last().unwrap().1 as usize, bytes.len());
    for pos in DATA_START as usize..bytes.len() {
        let k = ranges
            .iter()
            .position(|r| (r.0..r.1).contains(&(pos as u64)))
            .unwrap();
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[pos] ^= mask;
            let r = Journal::open_io(Box::new(MemFile::from_bytes(b.clone())), read_only());
            match r {
                Err(Error::Corrupt { offset, .. }) => {
                    assert!(
                        k < last,
                        "byte {pos} of the last transaction reported as corruption"
                    );
                    assert_eq!(offset, ranges[k].0, "flip at {pos}");
                }
                Ok(j) => {
                    // Only the last transaction may be taken for a torn tail.
                    assert_eq!(k, last, "flip at {pos} (transaction {k}) went unnoticed");
                    assert_states(&j, &states, last - 1);
                    assert_eq!(
                        verify(&MemFile::from_bytes(b)).unwrap().torn_tail,
                        Some(ranges[k].0)
                    );
                }
                Err(e) => panic!("flip at {pos}: unexpected error {e}"),
            }
        }
    }
}

#[test]
fn damage_behind_a_checkpoint_is_detected_on_read_or_by_verify() {
    let m = MemFile::new();
    let j = Journal::open_io(Box::new(m.clone()), opts()).unwrap();
    let mut states = vec![BTreeMap::new()];
    let mut ranges = vec![];
    let reservation = build(&j, 3, 4, &mut states, &mut ranges);
    j.checkpoint().unwrap();
    let cp = (ranges.last().unwrap().1, j.end_offset());
    build(&j, 2, 5, &mut states, &mut ranges);
    drop(j);
    let bytes = m.to_bytes();
    let last_tid = states.len() - 1;
    let mut on_open = 0;
    let mut on_read = 0;
    let mut by_verify = 0;
    for pos in DATA_START as usize..cp.1 as usize {
        let mut b = bytes.clone();
        b[pos] ^= 0x01;
        let file = MemFile::from_bytes(b);
        let detected_by_verify = verify(&file).is_err();
        let j = match Journal::open_io(Box::new(file), read_only()) {
            Err(Error::Corrupt { .. }) => {
                on_open += 1;
                continue;
            }
            Err(e) => panic!("flip at {pos}: {e}"),
            Ok(j) => j,
        };
        // Whatever is served is right; damage shows up as an error, never as data.
        let mut errors = 0;
        for (t, state) in states.iter().enumerate() {
            for oid in (0..6).map(Oid) {
                match (j.load_at(oid, Tid(t as u64)), state.get(&oid)) {
                    (Ok(l), Some(d)) => assert_eq!(&l.record.data, d, "flip at {pos}"),
                    (Err(Error::NotFound { .. }), None) => {}
                    (Err(Error::Corrupt { .. }), _) => errors += 1,
                    (got, want) => panic!("flip at {pos}: oid {oid} at {t}: {got:?} vs {want:?}"),
                }
            }
        }
        assert_eq!(j.last_tid().unwrap(), Tid(last_tid as u64));
        if errors > 0 {
            on_read += 1;
        } else {
            assert!(
                detected_by_verify,
                "flip at {pos} is detected neither on read nor by verify"
            );
            by_verify += 1;
        }
    }
    // Every record byte and every checkpoint byte is caught on open or read; only the
    // framing bytes of blocks that the checkpoint already covers (transaction headers
    // and trailers, the oid reservation) are left to verify.
    assert!(on_open > 0 && on_read > 0, "{on_open} {on_read} {by_verify}");
    let framing = (3 * (64 + 4) + (reservation.1 - reservation.0)) as usize;
    assert_eq!(by_verify, framing, "{on_open} {on_read} {by_verify}");
}

#[test]
fn reopening_after_a_checkpoint_scans_only_the_tail() {
    let m = MemFile::new();
    let j = Journal::open_io(Box::new(m.clone()), opts()).unwrap();
    let mut states = vec![BTreeMap::new()];
    let mut ranges = vec![];
    build(&j, 4, 6, &mut states, &mut ranges);
    j.close().unwrap();
    assert!(matches!(j.load(Oid(1)), Err(Error::Closed)));
    // Damage the first transaction's framing: a full scan would stop there, so opening
    // succeeding proves the open started at the checkpoint.
    let mut b = m.to_bytes();
    b[DATA_START as usize + 20] ^= 1;
    let j = Journal::open_io(Box::new(MemFile::from_bytes(b)), read_only()).unwrap();
    assert_states(&j, &states, 4);
    assert_eq!(verify(&m).unwrap().checkpoints, 1);
}

#[test]
fn files_that_are_not_journals_are_refused() {
    let ro = read_only();
    let open = |b: Vec<u8>| Journal::open_io(Box::new(MemFile::from_bytes(b)), ro.clone());
    assert!(matches!(open(vec![]), Err(Error::Format { .. })));
    assert!(matches!(
        open(b"SQLite format 3\0 and more".to_vec()),
        Err(Error::Format { .. })
    ));
    let header = durus::journal::format::FileHeader::new(0).encode_region();
    let mut newer = header.clone();
    newer[11] = 9;
    assert!(matches!(
        open(newer),
        Err(Error::Version {
            found: 9,
            supported: durus::journal::format::VERSION
        })
    ));
    assert!(matches!(open(header[..100].to_vec()), Err(Error::Corrupt { .. })));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.txt");
    std::fs::write(&path, "hello world, this is not a database").unwrap();
    let e = Journal::open(&path, opts()).err().unwrap();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    assert!(e.to_string().contains("not a durus journal"));
}

#[test]
fn one_writer_per_file_and_readers_alongside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.durus");
    let w = Journal::open(&path, opts()).unwrap();
    match Journal::open(&path, opts()) {
        Err(Error::Locked { path: p }) => assert_eq!(p, path),
        other => panic!("second writer: {:?}", other.err()),
    }
    assert!(matches!(Journal::repair(&path), Err(Error::Locked { .. })));
    let oid = w.new_oids(1).unwrap()[0];
    w.commit(&CommitRequest {
        snapshot: Tid(0),
        records: vec![Record::new(oid, b"x".to_vec(), vec![])],
        reads: vec![],
        ..Default::default()
    })
    .unwrap();
    let r = Journal::open(&path, read_only()).unwrap();
    assert_eq!(r.load(oid).unwrap().record.data, b"x");
    assert!(matches!(r.new_oids(1), Err(Error::ReadOnly)));
    assert!(matches!(
        r.commit(&CommitRequest::default()),
        Err(Error::ReadOnly)
    ));
    w.close().unwrap();
    let w2 = Journal::open(&path, opts()).unwrap();
    assert_eq!(w2.load(oid).unwrap().record.data, b"x");
}

#[test]
fn oids_are_never_handed_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oids.durus");
    let mut seen = std::collections::BTreeSet::new();
    fn take(seen: &mut std::collections::BTreeSet<Oid>, v: Vec<Oid>) {
        for o in v {
            assert_ne!(o, Oid::ROOT);
            assert!(seen.insert(o), "{o} handed out twice");
        }
    }
    let durable = JournalOptions {
        durability: Durability::Immediate,
        ..opts()
    };
    for round in 0..4 {
        let j = Journal::open(&path, durable.clone()).unwrap();
        take(&mut seen, j.new_oids(3).unwrap());
        take(&mut seen, j.new_oids(2000).unwrap());
        let crash_image = std::fs::read(&path).unwrap();
        take(&mut seen, j.new_oids(1).unwrap());
        if round % 2 == 0 {
            j.close().unwrap();
        } else {
            // A crash: the process dies without closing, after the last allocation.
            drop(j);
            // A crash image from before the last allocation also never repeats what was
            // handed out before or by it (the reservation was made ahead).
            let j2 = Journal::open_io(Box::new(MemFile::from_bytes(crash_image)), opts()).unwrap();
            let again = j2.new_oids(5).unwrap();
            assert!(again.iter().all(|o| !seen.contains(o)), "{again:?}");
        }
    }
    // Writing an oid that was never handed out is refused.
    let j = Journal::open(&path, opts()).unwrap();
    let next = j.new_oids(1).unwrap()[0];
    let r = j.commit(&CommitRequest {
        snapshot: j.last_tid().unwrap(),
        records: vec![Record::new(Oid(next.0 + 5000), vec![], vec![])],
        reads: vec![],
        ..Default::default()
    });
    assert!(matches!(r, Err(Error::NotAllocated { .. })), "{r:?}");
}

#[test]
fn durable_commits_sync_and_eventual_ones_do_not() {
    for (durability, syncs) in [(Durability::Immediate, true), (Durability::Eventual, false)] {
        let m = MemFile::new();
        let j = Journal::open_io(
            Box::new(m),
            JournalOptions {
                durability,
                ..JournalOptions::default()
            },
        )
        .unwrap();
        let oid = j.new_oids(1).unwrap()[0];
        let before = j.stats();
        for i in 0..10u8 {
            j.commit(&CommitRequest {
                snapshot: j.last_tid().unwrap(),
                records: vec![Record::new(oid, vec![i], vec![])],
                reads: vec![],
                ..Default::default()
            })
            .unwrap();
        }
        let s = j.stats();
        assert_eq!(s.commits - before.commits, 10);
        assert_eq!(s.groups - before.groups, 10);
        if syncs {
            assert!(s.syncs - before.syncs >= 10, "{s:?}");
        } else {
            // (The oid reservation before them synced once: its header slot promises
            // that what it describes is durable.)
            assert_eq!(s.syncs - before.syncs, 0, "{s:?}");
        }
    }
}

#[test]
fn a_failed_sync_poisons_the_journal_until_reopened() {
    let m = MemFile::new();
    let fail_sync = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let armed = fail_sync.clone();
    let f = common::SyncHook {
        inner: m.clone(),
        on_writes: false,
        hook: move || match armed.load(std::sync::atomic::Ordering::SeqCst) {
            true => Err(std::io::Error::other("injected fsync failure")),
            false => Ok(()),
        },
    };
    let durable = JournalOptions {
        durability: Durability::Immediate,
        ..opts()
    };
    let j = Journal::open_io(Box::new(f), durable.clone()).unwrap();
    let oid = j.new_oids(1).unwrap()[0];
    let req = |t, d: &[u8]| CommitRequest {
        snapshot: t,
        records: vec![Record::new(oid, d.to_vec(), vec![])],
        reads: vec![],
        ..Default::default()
    };
    j.commit(&req(Tid(0), b"one")).unwrap();
    fail_sync.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(j.commit(&req(Tid(1), b"two")), Err(Error::Io(_))));
    fail_sync.store(false, std::sync::atomic::Ordering::SeqCst);
    // The sync "works" now, but the data it would cover was never known to be safe.
    assert!(matches!(
        j.commit(&req(Tid(1), b"three")),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(j.new_oids(1), Err(Error::Poisoned { .. })));
    assert_eq!(j.load(oid).unwrap().record.data, b"one", "reads still work");
    drop(j);
    let j = Journal::open_io(Box::new(m), durable).unwrap();
    // The unsynced transaction may or may not have reached the disk; either is a prefix.
    let t = j.last_tid().unwrap();
    assert!(t == Tid(1) || t == Tid(2));
    j.commit(&req(t, b"four")).unwrap();
}

#[test]
fn a_zeroed_stretch_before_intact_data_is_corruption_not_an_end() {
    let (m, _, ranges) = fresh(4, 8);
    let mut b = m.to_bytes();
    // Zero the second transaction entirely: the scan sees an all-zero header there.
    let (a, e) = ranges[2];
    b[a as usize..e as usize].fill(0);
    match Journal::open_io(Box::new(MemFile::from_bytes(b.clone())), read_only()) {
        Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, a),
        other => panic!("zeroed middle opened as {:?}", other.map(|j| j.last_tid())),
    }
    assert!(matches!(
        verify(&MemFile::from_bytes(b)),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn leftovers_after_the_end_are_cleared_before_appending() {
    let (m, states, ranges) = fresh(3, 9);
    let mut b = m.to_bytes();
    let end = ranges.last().unwrap().1 as usize;
    // After the end: a zero header, then bytes of an older, torn write that happen to
    // contain an intact block header from the same write group as the end.
    b.resize(end + 64, 0);
    let mut stale = b[ranges[1].0 as usize..ranges[1].1 as usize].to_vec();
    let mut h = BlockHeader::decode(&stale).unwrap();
    h.group_start = end as u64; // written by the torn write that began at the end
    stale[..64].copy_from_slice(&h.encode());
    b.extend_from_slice(&stale);
    let m2 = MemFile::from_bytes(b);
    let j = Journal::open_io(Box::new(m2.clone()), opts()).unwrap();
    assert_states(&j, &states, 3);
    let c = j
        .commit(&CommitRequest {
            snapshot: Tid(3),
            records: vec![Record::new(Oid(1), b"new".to_vec(), vec![])],
            ..Default::default()
        })
        .unwrap();
    drop(j);
    let j = Journal::open_io(Box::new(m2.clone()), read_only()).unwrap();
    assert_eq!(j.last_tid().unwrap(), c.tid);
    assert_eq!(j.load(Oid(1)).unwrap().record.data, b"new");
    assert_eq!(verify(&m2).unwrap().torn_tail, None);
}

#[test]
fn close_gives_back_preallocated_space() {
    let m = MemFile::new();
    let j = Journal::open_io(
        Box::new(m.clone()),
        JournalOptions {
            preallocate: 1 << 20,
            ..opts()
        },
    )
    .unwrap();
    let oid = j.new_oids(1).unwrap()[0];
    j.commit(&CommitRequest {
        snapshot: Tid(0),
        records: vec![Record::new(oid, vec![1], vec![])],
        ..Default::default()
    })
    .unwrap();
    assert!(
        m.len().unwrap() > j.end_offset() + 500_000,
        "space was preallocated"
    );
    j.close().unwrap();
    let j2 = Journal::open_io(Box::new(m.clone()), read_only()).unwrap();
    assert_eq!(m.len().unwrap(), j2.end_offset(), "close trimmed the zeros");
    assert_eq!(j2.load(oid).unwrap().record.data, vec![1]);
}
