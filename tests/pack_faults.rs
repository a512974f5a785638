//! Crash safety of pack (invariant 11, issue 12 point 5): the fault-injection and
//! power-loss machinery of `tests/faults.rs` and `tests/power_loss.rs`, run over every
//! file call a pack makes.
//!
//! The run: a journal on a simulated file holding live objects, their old versions
//! and unreachable ones; a pack into a second simulated file (`pack_into`, whose
//! `publish` callback stands for the rename), with commits made from the progress
//! callback while it marks and copies (so that carry-over rounds have work); then more
//! commits on whichever file the journal ended on, and a close.
//!
//! - Faults: an I/O error, a short write, a full disk or a failed sync injected into
//!   every mutating call of the new file and of the journal's own file. A fault in the
//!   new file before the publish fails the pack cleanly and the journal goes on with
//!   the old file; one after it is an ordinary failed commit, which poisons. A fault in
//!   the journal's own file poisons the journal, and the pack fails with it. Either way
//!   the file the journal's name ends on, as the process left it and as power loss
//!   right then would leave it, reopens with every acknowledged commit.
//! - Power loss: every image power loss could leave of the new file, before every call
//!   made to it. At the publish nothing of it may be unsynced; every image from then on
//!   opens with every commit acknowledged by then. Before the publish the journal's own
//!   file is touched only by the commits, never by the pack.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use common::script::{self, check_image, each_image, Outcome};
use common::Rng;
use durus::journal::io::MemFile;
use durus::journal::sim::{Fault, SimFile};
use durus::journal::{Journal, Keep, PackOptions, PackProgress, PackReport};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::Error;

/// Live objects (all reachable from the root).
const LIVE: usize = 8;
/// Commits the progress callback makes during a pack, at most.
const DURING: u64 = 4;
/// Commits after the pack: enough to fill the space the pack left ahead of them and
/// reach a checkpoint.
const POST: u64 = 8;

fn bytes(tag: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (tag as usize * 13 + i * 5) as u8).collect()
}

/// The starting file and what it holds: the root referring to the live objects, each
/// rewritten a few times, and unreachable objects a pack drops.
fn starting_file() -> (Vec<u8>, Outcome, Vec<Oid>) {
    let m = MemFile::new();
    let j = Journal::open_io(Box::new(m.clone()), script::options()).unwrap();
    let live = j.new_oids(LIVE as u64).unwrap();
    let garbage = j.new_oids(4).unwrap();
    let mut out = Outcome {
        handed_out: garbage[3].0 + 1,
        ..Outcome::default()
    };
    let mut commit = |records: Vec<Record>, model: bool| {
        let tid = j
            .commit(&CommitRequest {
                snapshot: j.last_tid().unwrap(),
                records: records.clone(),
                ..Default::default()
            })
            .unwrap()
            .tid;
        // Unreachable objects stay out of the model (a pack drops them), but their
        // transaction is in it, so that tids line up.
        let writes = if model {
            records.into_iter().map(|r| (r.oid, r.data)).collect()
        } else {
            Vec::new()
        };
        out.attempted.push((tid, writes, true));
    };
    commit(vec![Record::new(Oid::ROOT, b"root".to_vec(), live.clone())], true);
    for round in 0..4u64 {
        let records = live
            .iter()
            .enumerate()
            .map(|(i, &o)| Record::new(o, bytes(round * 100 + i as u64, 300 + i * 40), vec![]))
            .collect();
        commit(records, true);
    }
    let dropped = garbage
        .iter()
        .map(|&o| Record::new(o, vec![0xAB; 2000], vec![]))
        .collect();
    commit(dropped, false);
    j.close().unwrap();
    (m.to_bytes(), out, live)
}

/// What one run did.
struct Ran {
    old: SimFile,
    new: SimFile,
    out: Outcome,
    pack: Result<PackReport, Error>,
    published: bool,
    /// Mutating calls made to the old file during the pack, and by its commits.
    old_ops: (u64, u64),
    /// For each crash point tag: the last acknowledged tid then.
    acked: Vec<Tid>,
    closed: Result<(), Error>,
}

/// A commit of `tag`'s data to one live object, recorded in `out` unless it was
/// refused for an earlier failure (the bytes of a failed one may be in the file).
fn commit_one(j: &Journal, live: &[Oid], out: &mut Outcome, tag: u64) -> Result<Tid, Error> {
    let oid = live[tag as usize % live.len()];
    let data = bytes(1000 + tag, 150 + (tag as usize * 97) % 900);
    let would_be = Tid(out.attempted.last().map_or(0, |a| a.0 .0) + 1);
    let r = j
        .last_tid()
        .and_then(|snapshot| {
            j.commit(&CommitRequest {
                snapshot,
                records: vec![Record::new(oid, data.clone(), vec![])],
                ..Default::default()
            })
        })
        .map(|c| c.tid);
    match &r {
        Ok(tid) => out.attempted.push((*tid, vec![(oid, data)], true)),
        Err(Error::Poisoned { .. } | Error::Closed) => {}
        Err(_) => out.attempted.push((would_be, vec![(oid, data)], false)),
    }
    r
}

/// Runs the scenario with at most one fault armed (on the old or the new file).
fn run(
    start: &[u8],
    before: &Outcome,
    live: &[Oid],
    keep: Keep,
    old_fault: Option<(u64, Fault)>,
    new_fault: Option<(u64, Fault)>,
    record: bool,
) -> Result<Ran, String> {
    let old = SimFile::from_bytes(start.to_vec());
    let new = SimFile::new();
    if let Some((at, f)) = old_fault {
        old.arm(at, f);
    }
    if let Some((at, f)) = new_fault {
        new.arm(at, f);
    }
    new.record_crash_points(record);
    let j = match Journal::open_io(Box::new(old.clone()), script::options()) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            let out = Outcome {
                failed_at: Some((0, e)),
                ..before.clone()
            };
            let pack = Err(Error::Closed);
            let acked = vec![out.acked()];
            return Ok(Ran {
                old,
                new,
                out,
                pack,
                published: false,
                old_ops: (0, 0),
                acked,
                closed: Ok(()),
            });
        }
    };
    // Shared with the progress callback: the outcome, the tag of each crash point (an
    // index into `acked`), and the old file's calls made by commits.
    let shared = Arc::new(Mutex::new((before.clone(), vec![before.acked()], 0u64)));
    let base = before.attempted.len();
    let progress = {
        let (j, shared, old, new, live) =
            (j.clone(), shared.clone(), old.clone(), new.clone(), live.to_vec());
        Arc::new(move |_: &PackProgress| {
            let mut s = shared.lock().unwrap();
            let made = (s.0.attempted.len() - base) as u64;
            if made >= DURING {
                return;
            }
            let ops = old.ops();
            let _ = commit_one(&j, &live, &mut s.0, made);
            s.2 += old.ops() - ops;
            let acked = s.0.acked();
            s.1.push(acked);
            new.set_tag(s.1.len() as u64 - 1);
        })
    };
    let opts = PackOptions {
        keep,
        progress: Some(progress),
        ..Default::default()
    };
    let old_before = old.ops();
    let mut published = false;
    let mut at_publish = Ok(());
    let pack = j.pack_into(Arc::new(new.clone()), &opts, &AtomicBool::new(false), &mut || {
        published = true;
        // The rename may only happen once the whole new file is durable.
        let p = new.crash_point();
        if p.choices() != 0 {
            at_publish = Err(format!(
                "{} unsynced pieces of the new file at the publish",
                p.choices()
            ));
        }
        Ok(())
    });
    at_publish?;
    drop(opts);
    let (mut out, mut acked, by_commits) = Arc::try_unwrap(shared)
        .map_err(|_| "the progress callback outlived the pack")?
        .into_inner()
        .unwrap();
    let old_ops = (old.ops() - old_before, by_commits);
    if published {
        acked.push(out.acked());
        new.set_tag(acked.len() as u64 - 1);
    }
    for k in 0..POST {
        let _ = commit_one(&j, live, &mut out, 100 + k);
        acked.push(out.acked());
        new.set_tag(acked.len() as u64 - 1);
    }
    let closed = j.close();
    Ok(Ran {
        old,
        new,
        out,
        pack,
        published,
        old_ops,
        acked,
        closed,
    })
}

/// The file the journal's name ends on after the run.
fn current(r: &Ran) -> &SimFile {
    if r.published {
        &r.new
    } else {
        &r.old
    }
}

/// Every commit's result is consistent with the poisoning rule: after the first
/// failure nothing is acknowledged.
fn check_poison(r: &Ran) -> Result<(), String> {
    let first_failed = r.out.attempted.iter().position(|a| !a.2);
    if let Some(i) = first_failed {
        if r.out.attempted[i..].iter().any(|a| a.2) {
            return Err(format!(
                "a commit was acknowledged after a failed one: {:?}",
                r.out.attempted
            ));
        }
    }
    Ok(())
}

#[test]
fn every_failure_at_every_file_call_of_a_pack_keeps_every_acknowledged_commit() {
    let (start, before, live) = starting_file();
    for keep in [Keep::Nothing, Keep::Transactions(3)] {
        let clean = run(&start, &before, &live, keep, None, None, false).unwrap();
        assert!(clean.pack.is_ok() && clean.published, "{:?}", clean.pack);
        assert_eq!(clean.out.attempted.iter().filter(|a| !a.2).count(), 0);
        assert!(
            clean.out.attempted.len() >= before.attempted.len() + DURING as usize,
            "the progress callback committed too little: {:?}",
            clean.out.attempted.len()
        );
        let report = clean.pack.as_ref().unwrap();
        assert!(report.freed() > 0 && report.transactions > 0, "{report:?}");
        check_image(
            clean.new.visible(),
            &clean.out,
            clean.out.acked(),
            clean.out.handed_out,
        )
        .unwrap();

        let (mut faults, mut refused_packs, mut after_publish) = (0u64, 0u64, 0u64);
        for (which, kinds) in [("old", clean.old.op_kinds()), ("new", clean.new.op_kinds())] {
            for (at, &kind) in kinds.iter().enumerate() {
                for fault in Fault::ALL.into_iter().filter(|f| f.applies_to(kind)) {
                    let armed = Some((at as u64, fault));
                    let (of, nf) = if which == "old" {
                        (armed, None)
                    } else {
                        (None, armed)
                    };
                    let ctx = format!("{keep:?}: {fault:?} at call {at} ({kind:?}) of the {which} file");
                    let r = run(&start, &before, &live, keep, of, nf, false)
                        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    let sim = if which == "old" { &r.old } else { &r.new };
                    assert_eq!(sim.fired(), armed, "{ctx}: the fault did not fire");
                    check_poison(&r).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    match (&r.pack, r.published) {
                        (Ok(_), true) => {
                            // The pack was done: the fault hit a later commit (which failed
                            // and poisoned the journal) or the close.
                            assert_eq!(which, "new", "{ctx}: an old-file fault after the switch");
                            assert!(
                                r.out.attempted.iter().any(|a| !a.2) || r.closed.is_err(),
                                "{ctx}: nothing failed"
                            );
                            after_publish += 1;
                        }
                        (Err(e), false) => {
                            assert!(
                                matches!(e, Error::Io(_) | Error::Poisoned { .. } | Error::Closed),
                                "{ctx}: the pack failed with {e:?}"
                            );
                            if which == "new" {
                                // The old file is untouched and the journal goes on with it.
                                assert!(
                                    r.out.attempted.iter().all(|a| a.2),
                                    "{ctx}: {:?}",
                                    r.out.attempted
                                );
                            }
                            refused_packs += 1;
                        }
                        (p, published) => panic!("{ctx}: pack {p:?}, published {published}"),
                    }
                    let cur = current(&r);
                    let (acked, handed) = (r.out.acked(), r.out.handed_out);
                    check_image(cur.visible(), &r.out, acked, handed)
                        .unwrap_or_else(|e| panic!("{ctx}, reopened: {e}"));
                    check_image(cur.durable(), &r.out, acked, handed)
                        .unwrap_or_else(|e| panic!("{ctx}, after power loss: {e}"));
                    faults += 1;
                }
            }
        }
        assert!(faults >= 40, "{keep:?}: only {faults} faults");
        println!(
            "pack faults ({keep:?}): {faults} injected into {} calls of the old file and {} of the new, \
             {refused_packs} packs failed cleanly, {after_publish} commits after the switch failed",
            clean.old.op_kinds().len(),
            clean.new.op_kinds().len()
        );
    }
}

#[test]
fn every_power_loss_image_of_a_packed_file_after_its_publish_holds_every_acknowledged_commit() {
    let (start, before, live) = starting_file();
    let mut rng = Rng::with_seed(0x9ac4_0fd1);
    for keep in [Keep::Nothing, Keep::Transactions(3)] {
        let r = run(&start, &before, &live, keep, None, None, true).unwrap();
        assert!(r.pack.is_ok() && r.published, "{:?}", r.pack);
        // Before the publish the pack reads the old file and writes nothing to it.
        assert_eq!(
            r.old_ops.0, r.old_ops.1,
            "{keep:?}: the pack itself wrote to the old file"
        );
        let mut points = r.new.take_crash_points();
        points.push(r.new.crash_point());
        let publish_tag = r.acked.len() as u64 - 1 - POST;
        let (mut images, mut before_publish, mut torn) = (0u64, 0u64, 0u64);
        for p in &points {
            if p.tag < publish_tag {
                // The journal's name still points at the old file.
                before_publish += 1;
                continue;
            }
            let tid = r.acked[p.tag as usize];
            torn += each_image(p, &mut rng, |img, what| {
                check_image(img, &r.out, tid, r.out.handed_out).unwrap_or_else(|e| {
                    panic!(
                        "{keep:?}: crash before call {} of the new file, {what}: {e}",
                        p.op
                    )
                });
                images += 1;
            });
        }
        assert!(
            images >= 20 && before_publish >= 3,
            "{keep:?}: {images} images, {before_publish} points"
        );
        println!(
            "pack power loss ({keep:?}): {} crash points of the new file ({before_publish} before its publish), \
             {images} images after it opened and checked, {torn} sector pieces chosen",
            points.len()
        );
    }
}
