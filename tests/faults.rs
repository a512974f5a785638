//! Fault injection at every step of a commit (invariants 1, 2 and 8): each mutating
//! file call the journal makes during a scripted run (cutting off a torn tail,
//! appending, preallocating, syncing, reserving oids, writing a checkpoint and its
//! slot, closing) is made to fail, once per kind of failure that call can have: an
//! I/O error, a short write, a full disk, a failed sync.
//!
//! After the failure the call that hit it returns an error (or, if its data was already
//! durable, the journal is poisoned so the next write fails), every later write is
//! refused with `Poisoned` until the file is reopened, reads still serve everything
//! acknowledged, and both the file as the process left it and the file as power loss
//! right then would leave it reopen to a prefix holding every acknowledged transaction.

mod common;

use common::script::{self, check_image, Outcome};
use durus::journal::sim::{Fault, SimFile};
use durus::journal::Journal;
use durus::Error;

/// Runs the script on a simulated copy of the starting file with `fault` armed at call
/// `at` (`None`: no fault); returns the file and the outcome.
fn run_with(
    start: &[u8],
    before: &Outcome,
    fault: Option<(u64, Fault)>,
) -> Result<(SimFile, Outcome), String> {
    let sim = SimFile::from_bytes(start.to_vec());
    if let Some((at, f)) = fault {
        sim.arm(at, f);
    }
    let j = Journal::open_io(Box::new(sim.clone()), script::options()).map_err(|e| format!("open: {e}"))?;
    let out = script::run(&j, &script::steps(), before.clone(), |_| {})?;
    if out.failed_at.is_some() {
        // Reads still serve exactly what was acknowledged.
        let want = out.state_at(out.acked());
        for oid in out.written() {
            let got = match j.load(oid) {
                Ok(l) => Some(l.record.data),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(format!("after the failure, loading {oid:?} failed: {e:?}")),
            };
            if got.as_ref() != want.get(&oid) {
                return Err(format!("after the failure, {oid:?} reads {got:?}"));
            }
        }
        if !matches!(
            j.commit(&Default::default()),
            Err(Error::Poisoned { .. }) | Err(Error::Closed)
        ) {
            return Err("the journal took a commit after the failure".into());
        }
    }
    let out = script::run(&j, &[script::Step::Close], out, |_| {})?;
    Ok((sim, out))
}

#[test]
fn every_failure_at_every_step_of_a_commit_keeps_what_was_acknowledged() {
    let (start, before) = script::starting_file();
    let (clean, reference) = run_with(&start, &before, None).unwrap();
    assert!(reference.failed_at.is_none(), "{:?}", reference.failed_at);
    let kinds = clean.op_kinds();
    check_image(
        clean.durable(),
        &reference,
        reference.acked(),
        reference.handed_out,
    )
    .unwrap();

    let (mut faults, mut checks, mut refused) = (0u64, 0u64, 0u64);
    let mut by_kind = std::collections::BTreeMap::new();
    for (at, &kind) in kinds.iter().enumerate() {
        for fault in Fault::ALL.into_iter().filter(|f| f.applies_to(kind)) {
            let ctx = format!("{fault:?} at call {at} ({kind:?})");
            let (sim, out) =
                run_with(&start, &before, Some((at as u64, fault))).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(
                sim.fired(),
                Some((at as u64, fault)),
                "{ctx}: the fault did not fire"
            );
            let Some((step, err)) = &out.failed_at else {
                panic!("{ctx}: no operation reported the failure");
            };
            assert!(
                matches!(err, Error::Io(_) | Error::Poisoned { .. }),
                "{ctx}: step {step} failed with {err:?}"
            );
            refused += out.refused;
            // The process restarts: the file as it was left (page cache intact).
            check_image(sim.visible(), &out, out.acked(), out.handed_out)
                .unwrap_or_else(|e| panic!("{ctx}, reopened: {e}"));
            // Power is lost right after the failure: only what was synced.
            check_image(sim.durable(), &out, out.acked(), out.handed_out)
                .unwrap_or_else(|e| panic!("{ctx}, after power loss: {e}"));
            faults += 1;
            checks += 2;
            *by_kind.entry(format!("{fault:?}")).or_insert(0u64) += 1;
        }
    }
    assert!(
        faults >= 40,
        "only {faults} faults: the script no longer reaches every step"
    );
    println!(
        "faults: {faults} injected at {} file calls ({by_kind:?}), {checks} reopened files checked, \
         {refused} writes refused after a failure",
        kinds.len()
    );
}
