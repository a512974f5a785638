//! Damage is reported, never absorbed: opening (both modes), `verify` and `repair`
//! classify every file alike, a file cut shorter than its header's durable state is
//! refused and left byte-identical, and a repair that accepts the loss never lets an
//! oid or tid be handed out twice.

mod common;

use std::collections::BTreeMap;

use common::Rng;
use durus::journal::format::{DATA_START, SLOT_LEN, SLOT_OFFSETS};
use durus::journal::io::MemFile;
use durus::journal::{verify, Condition, Durability, Journal, JournalOptions, RepairMode};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::Error;

fn opts(checkpoint_every: u64, preallocate: u64) -> JournalOptions {
    JournalOptions {
        durability: Durability::Immediate,
        preallocate,
        checkpoint_every: Some(checkpoint_every),
        ..JournalOptions::default()
    }
}

fn read_only() -> JournalOptions {
    JournalOptions {
        read_only: true,
        ..JournalOptions::default()
    }
}

/// A journal with several checkpoints and oid reservations. Returns its bytes (closed
/// cleanly, or as a crash leaves it), the state after each tid, and the offset where
/// each transaction's block ends.
struct Built {
    bytes: Vec<u8>,
    states: Vec<BTreeMap<Oid, Vec<u8>>>,
    tx_ends: Vec<u64>,
}

fn build(close: bool, preallocate: u64, seed: u64) -> Built {
    let m = MemFile::new();
    let j = Journal::open_io(Box::new(m.clone()), opts(700, preallocate)).unwrap();
    let mut rng = Rng::with_seed(seed);
    let mut oids = Vec::new();
    let mut states = vec![BTreeMap::new()];
    let mut tx_ends = Vec::new();
    for i in 0..14 {
        if i % 5 == 0 {
            // A few at a time, so that several reservations are made.
            oids.extend(j.new_oids(70).unwrap().into_iter().take(3));
        }
        let mut recs = BTreeMap::new();
        for _ in 0..1 + rng.u64(..2) {
            let oid = oids[rng.u64(..oids.len() as u64) as usize];
            let data: Vec<u8> = (0..8 + rng.u64(..60)).map(|_| rng.u8(..)).collect();
            recs.insert(oid, data);
        }
        let c = j
            .commit(&CommitRequest {
                snapshot: j.last_tid().unwrap(),
                records: recs
                    .iter()
                    .map(|(o, d)| Record::new(*o, d.clone(), vec![]))
                    .collect(),
                ..Default::default()
            })
            .unwrap();
        let mut next = states.last().cloned().unwrap();
        next.extend(recs);
        states.push(next);
        assert_eq!(c.tid.0 as usize, states.len() - 1);
        tx_ends.push(j.end_offset());
    }
    if close {
        j.close().unwrap();
    }
    drop(j);
    Built {
        bytes: m.to_bytes(),
        states,
        tx_ends,
    }
}

/// What one user of the decision made of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Intact,
    Torn(u64),
    Damaged,
    NotAJournal,
}

fn verdict_of<T>(r: &durus::Result<T>, ok: impl Fn(&T) -> Verdict) -> Verdict {
    match r {
        Ok(t) => ok(t),
        Err(Error::Corrupt { .. }) => Verdict::Damaged,
        Err(Error::Format { .. }) => Verdict::NotAJournal,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn from_condition(c: &Condition) -> Verdict {
    match c {
        Condition::Intact => Verdict::Intact,
        Condition::TornTail { offset, .. } => Verdict::Torn(*offset),
        Condition::Damaged { .. } => panic!("an open journal is never damaged"),
    }
}

/// Classifies `bytes` through read-only open, writable open, verify and repair; checks
/// they agree, that a damaged file is left byte-identical by all of them, and that a
/// file that opens shows exactly the acknowledged transactions whose blocks are whole.
fn check(built: &Built, bytes: &[u8], what: &str) -> Verdict {
    let ro = Journal::open_io(Box::new(MemFile::from_bytes(bytes.to_vec())), read_only());
    let by_ro = verdict_of(&ro, |j| from_condition(j.condition_at_open()));
    let rw_file = MemFile::from_bytes(bytes.to_vec());
    let rw = Journal::open_io(Box::new(rw_file.clone()), opts(700, 0));
    let by_rw = verdict_of(&rw, |j| from_condition(j.condition_at_open()));
    // Opening changes nothing until the first commit or the close.
    assert!(
        rw_file.to_bytes() == bytes,
        "{what}: a writable open changed the file"
    );
    drop(rw);
    let by_verify = verdict_of(&verify(&MemFile::from_bytes(bytes.to_vec())), |r| {
        match r.torn_tail {
            Some(at) => Verdict::Torn(at),
            None => Verdict::Intact,
        }
    });
    let repaired = MemFile::from_bytes(bytes.to_vec());
    let by_repair = verdict_of(
        &Journal::repair_io(&repaired, RepairMode::TornTailOnly),
        |r| match r.truncated_at {
            Some(at) => Verdict::Torn(at),
            None => Verdict::Intact,
        },
    );
    assert_eq!(
        (&by_ro, &by_verify, &by_repair),
        (&by_rw, &by_rw, &by_rw),
        "{what}: read-only open, verify and repair disagree with a writable open"
    );
    match &by_rw {
        Verdict::Damaged | Verdict::NotAJournal => {
            assert!(
                repaired.to_bytes() == bytes,
                "{what}: repair changed a damaged file"
            )
        }
        Verdict::Torn(at) => assert_eq!(repaired.to_bytes().len() as u64, *at, "{what}"),
        Verdict::Intact => {}
    }
    if let Ok(j) = ro {
        let whole = built.tx_ends.iter().filter(|&&e| e <= bytes.len() as u64).count();
        assert_eq!(j.last_tid().unwrap(), Tid(whole as u64), "{what}");
        for (t, state) in built.states.iter().enumerate().take(whole + 1) {
            for (&oid, data) in state {
                let got = j.load_at(oid, Tid(t as u64)).unwrap();
                assert_eq!(&got.record.data, data, "{what}: {oid} at {t}");
            }
        }
    }
    by_rw
}

fn counts(vs: &[Verdict]) -> (usize, usize, usize, usize) {
    let n = |f: fn(&Verdict) -> bool| vs.iter().filter(|v| f(v)).count();
    (
        n(|v| *v == Verdict::Intact),
        n(|v| matches!(v, Verdict::Torn(_))),
        n(|v| *v == Verdict::Damaged),
        n(|v| *v == Verdict::NotAJournal),
    )
}

#[test]
fn every_cut_is_classified_alike_by_open_verify_and_repair() {
    for (close, preallocate, seed) in [(true, 0, 1), (false, 0, 2), (false, 1024, 3)] {
        let built = build(close, preallocate, seed);
        let what = if close { "closed" } else { "crash image" };
        let mut verdicts = Vec::new();
        // Cut 0 is an empty file, which a writable open takes for a new journal.
        for cut in 1..=built.bytes.len() {
            verdicts.push(check(
                &built,
                &built.bytes[..cut],
                &format!("{what}, cut at {cut}"),
            ));
        }
        let (intact, torn, damaged, not_journal) = counts(&verdicts);
        println!(
            "{what}: {intact} intact, {torn} torn tails, {damaged} damaged, {not_journal} not a journal"
        );
        assert!(damaged > 0 && intact > 0, "{what}");
        if close {
            // A cleanly closed journal's header says everything up to its end was made
            // durable: every cut of it is damage.
            assert_eq!(intact, 1, "{what}: only the whole file is intact");
            assert_eq!(torn, 0, "{what}");
        } else {
            // After the last header write, a cut cannot be told from a torn tail.
            assert!(torn > 0, "{what}");
        }
    }
}

#[test]
fn every_flipped_slot_byte_is_classified_alike() {
    for (close, seed) in [(true, 4), (false, 5)] {
        let built = build(close, 0, seed);
        let mut verdicts = Vec::new();
        for &so in &SLOT_OFFSETS {
            for i in so as usize..so as usize + SLOT_LEN {
                for mask in [0x01u8, 0x80] {
                    let mut b = built.bytes.clone();
                    b[i] ^= mask;
                    let v = check(&built, &b, &format!("close {close}, byte {i} ^ {mask:#x}"));
                    verdicts.push(v);
                }
            }
        }
        // A damaged slot reads as a torn slot write: the other slot still describes the
        // file, and nothing is lost.
        let (_, _, damaged, not_journal) = counts(&verdicts);
        assert_eq!((damaged, not_journal), (0, 0), "close {close}");
    }
}

#[test]
fn a_cut_before_the_header_durable_state_is_refused_with_both_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.durus");
    let built = build(true, 0, 6);
    let cut = built.bytes.len() - 500;
    std::fs::write(&path, &built.bytes[..cut]).unwrap();
    for o in [opts(700, 0), read_only()] {
        match Journal::open(&path, o) {
            Err(Error::Corrupt { reason, .. }) => {
                assert!(
                    reason.contains("acknowledged transactions are missing"),
                    "{reason}"
                );
                assert!(
                    reason.contains(&format!("offset {cut}")) || reason.contains(&cut.to_string()),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(std::fs::read(&path).unwrap(), built.bytes[..cut]);
    match Journal::repair(&path) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("accept-loss"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), built.bytes[..cut]);
}

#[test]
fn after_an_accepted_loss_no_oid_or_tid_is_handed_out_again() {
    for seed in 0..6u64 {
        let m = MemFile::new();
        let j = Journal::open_io(Box::new(m.clone()), opts(1_000, 0)).unwrap();
        let mut rng = Rng::with_seed(seed);
        let mut handed_out = Vec::new();
        let mut tids = Vec::new();
        // (file length after a checkpoint, highest tid up to it)
        let mut checkpoints = Vec::new();
        for i in 0..40 {
            handed_out.extend(j.new_oids(1 + rng.u64(..40)).unwrap());
            let oid = handed_out[rng.u64(..handed_out.len() as u64) as usize];
            let c = j
                .commit(&CommitRequest {
                    snapshot: j.last_tid().unwrap(),
                    records: vec![Record::new(
                        oid,
                        vec![i as u8; 20 + rng.u64(..200) as usize],
                        vec![],
                    )],
                    ..Default::default()
                })
                .unwrap();
            tids.push(c.tid);
            if i % 9 == 8 {
                j.checkpoint().unwrap();
                checkpoints.push((j.end_offset(), c.tid));
            }
        }
        drop(j);
        let bytes = m.to_bytes();
        // Cut somewhere before the last checkpoint.
        let (last_cp_end, cp_tid) = *checkpoints.last().unwrap();
        let cut = DATA_START + rng.u64(..last_cp_end - DATA_START);
        let damaged = MemFile::from_bytes(bytes[..cut as usize].to_vec());
        assert!(matches!(
            Journal::repair_io(&damaged, RepairMode::TornTailOnly),
            Err(Error::Corrupt { .. })
        ));
        let rep = Journal::repair_io(&damaged, RepairMode::AcceptLoss).unwrap();
        let loss = rep.loss.clone().expect("a loss is reported");
        // Every tid the header knew of that the cut took is named as lost.
        if rep.last_tid < cp_tid {
            let (first, last) = loss
                .tids
                .unwrap_or_else(|| panic!("seed {seed}: lost tids are not named: {rep:?}"));
            assert_eq!(first, rep.last_tid.next(), "seed {seed}: {rep:?}");
            assert!(
                last >= cp_tid,
                "seed {seed}: lost {first}..={last}, checkpoint at {cp_tid}"
            );
        }
        assert_eq!(rep.removed, cut - rep.truncated_at.unwrap());
        // The repaired file is a journal like any other.
        assert_eq!(verify(&damaged).unwrap().torn_tail, None);
        let j = Journal::open_io(Box::new(damaged.clone()), opts(1_000, 0)).unwrap();
        assert_eq!(j.condition_at_open(), &Condition::Intact);
        let fresh = j.new_oids(100).unwrap();
        let max_old = handed_out.iter().max().unwrap();
        assert!(
            fresh.iter().all(|o| o > max_old),
            "seed {seed}: an oid was handed out again"
        );
        let c = j
            .commit(&CommitRequest {
                snapshot: j.last_tid().unwrap(),
                records: vec![Record::new(fresh[0], b"after".to_vec(), vec![])],
                ..Default::default()
            })
            .unwrap();
        assert!(
            c.tid > cp_tid,
            "seed {seed}: tid {} reused (checkpoint at {cp_tid})",
            c.tid
        );
        j.close().unwrap();
        let j = Journal::open_io(Box::new(damaged), read_only()).unwrap();
        assert_eq!(j.load(fresh[0]).unwrap().record.data, b"after");
        assert_eq!(j.last_tid().unwrap(), c.tid);
    }
}

#[test]
fn every_flipped_byte_is_classified_alike_by_verify_and_repair() {
    let built = build(false, 0, 7);
    // Opening reads the newest checkpoint's header and checksum and every block after
    // it; the checkpoint's index pages and the blocks before it are checked when a read
    // needs them.
    let slots = durus::journal::format::Slot::decode_both(&built.bytes);
    let newest = slots.iter().flatten().max_by_key(|s| s.seq).expect("a slot");
    let open_reads_from = newest.offset + newest.len;
    let mut before_checkpoint = 0;
    for i in DATA_START as usize..built.bytes.len() {
        let mut b = built.bytes.clone();
        b[i] ^= 0x04;
        let what = format!("byte {i}");
        let by_verify = verdict_of(&verify(&MemFile::from_bytes(b.clone())), |r| match r.torn_tail {
            Some(at) => Verdict::Torn(at),
            None => Verdict::Intact,
        });
        let repaired = MemFile::from_bytes(b.clone());
        let by_repair = verdict_of(
            &Journal::repair_io(&repaired, RepairMode::TornTailOnly),
            |r| match r.truncated_at {
                Some(at) => Verdict::Torn(at),
                None => Verdict::Intact,
            },
        );
        assert_eq!(by_verify, by_repair, "{what}");
        if by_verify == Verdict::Damaged {
            assert!(repaired.to_bytes() == b, "{what}: repair changed a damaged file");
        }
        if (i as u64) < open_reads_from {
            before_checkpoint += usize::from(by_verify == Verdict::Damaged);
            continue;
        }
        let by_open = verdict_of(
            &Journal::open_io(Box::new(MemFile::from_bytes(b.clone())), read_only()),
            |j| from_condition(j.condition_at_open()),
        );
        assert_eq!(by_open, by_verify, "{what}");
    }
    assert!(before_checkpoint > 0);
}

#[test]
fn a_journal_written_by_durus_0_1_still_opens() {
    // Durus 0.1 wrote slots without a durable mark (bytes 28..64 zero): such a slot
    // names only its checkpoint, whose end is then the durable end.
    let built = build(true, 0, 8);
    let mut old = built.bytes.clone();
    for &so in &SLOT_OFFSETS {
        let so = so as usize;
        old[so + 28..so + SLOT_LEN].fill(0);
    }
    assert_eq!(check(&built, &old, "0.1 slots"), Verdict::Intact);
    let slots = durus::journal::format::Slot::decode_both(&old);
    assert!(slots
        .iter()
        .flatten()
        .all(|s| s.mark.is_none() && s.has_checkpoint()));
    // Cut before the checkpoint a 0.1 slot names: still damage.
    let newest = slots.iter().flatten().max_by_key(|s| s.seq).unwrap();
    let cut = (newest.offset + newest.len - 1) as usize;
    assert_eq!(check(&built, &old[..cut], "0.1 slots, cut"), Verdict::Damaged);
}
