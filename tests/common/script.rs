//! A fixed sequence of journal operations that touches every step of a commit (cutting
//! off a torn tail, appending, preallocating, syncing, reserving oids, writing a
//! checkpoint and its slot, closing), with a model of what each transaction wrote, so
//! that any file the sequence could leave behind can be checked against it.

use std::collections::BTreeMap;

use durus::journal::io::MemFile;
use durus::journal::sim::CrashPoint;
use durus::journal::{verify, Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::Error;

/// One step of the script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Hand out this many oids.
    NewOids(u64),
    /// Commit these transactions as one group; each writes (oid number, bytes), where
    /// the number indexes the oids handed out so far.
    Group(Vec<Vec<(usize, Vec<u8>)>>),
    /// Write an index checkpoint.
    Checkpoint,
    /// Close the journal.
    Close,
}

/// Options that make the script reach every step of a commit in a small file:
/// preallocation in small chunks and frequent checkpoints.
pub fn options() -> JournalOptions {
    JournalOptions {
        preallocate: 4096,
        checkpoint_every: Some(3000),
        ..JournalOptions::default()
    }
}

fn bytes(tag: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (tag as usize * 31 + i * 7) as u8).collect()
}

/// The script: small and large transactions, groups of several, an explicit
/// checkpoint, automatic ones and an oid reservation in the middle. (Callers add a
/// [`Step::Close`] when they are done with the journal.)
pub fn steps() -> Vec<Step> {
    let mut s = vec![
        Step::NewOids(4),
        Step::Group(vec![vec![(0, bytes(1, 40))]]),
        Step::Group(vec![vec![(1, bytes(2, 3000))], vec![(2, bytes(3, 20))]]),
        Step::Checkpoint,
        Step::Group(vec![vec![(0, bytes(4, 60)), (3, bytes(5, 10))]]),
        Step::NewOids(200),
    ];
    for i in 0..10u64 {
        let a = (4 + i as usize * 7) % 200;
        let b = (5 + i as usize * 11) % 200;
        s.push(Step::Group(vec![
            vec![(a, bytes(10 + i, 30 + i as usize * 13))],
            vec![(b, bytes(20 + i, 200))],
        ]));
    }
    s.push(Step::Group(vec![vec![(7, bytes(99, 5000))]]));
    s
}

/// What one transaction wrote: (oid, data) pairs.
pub type Writes = Vec<(Oid, Vec<u8>)>;

/// What the script did: every transaction it asked for with its would-be tid, which
/// of them were acknowledged, and the oids handed out.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// (tid, writes, acknowledged) of every transaction whose bytes may have reached
    /// the file, in tid order.
    pub attempted: Vec<(Tid, Writes, bool)>,
    /// The highest oid handed out, plus one.
    pub handed_out: u64,
    /// The first error, and the step it happened at.
    pub failed_at: Option<(usize, Error)>,
    /// Writes refused after the first failure (they must all be refused).
    pub refused: u64,
}

impl Outcome {
    /// The last acknowledged tid.
    pub fn acked(&self) -> Tid {
        self.attempted
            .iter()
            .filter(|a| a.2)
            .map(|a| a.0)
            .max()
            .unwrap_or(Tid::ZERO)
    }

    /// The state after transaction `t`: each oid's newest data.
    pub fn state_at(&self, t: Tid) -> BTreeMap<Oid, Vec<u8>> {
        let mut m = BTreeMap::new();
        for (tid, writes, _) in &self.attempted {
            if *tid <= t {
                for (oid, d) in writes {
                    m.insert(*oid, d.clone());
                }
            }
        }
        m
    }

    /// Every oid any transaction wrote.
    pub fn written(&self) -> Vec<Oid> {
        let mut v: Vec<Oid> = self
            .attempted
            .iter()
            .flat_map(|a| a.1.iter().map(|w| w.0))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Runs the script on `j` (which starts at `base_tid`), recording what happened. After
/// the first error every write must be refused with [`Error::Poisoned`]; a write that
/// is not is reported as an error here. `after_ack` is called after each acknowledged
/// transaction and each successful oid request, with the outcome so far.
pub fn run(
    j: &Journal,
    steps: &[Step],
    mut out: Outcome,
    mut after_ack: impl FnMut(&Outcome),
) -> Result<Outcome, String> {
    let mut oids: Vec<Oid> = Vec::new();
    let mut last = j.last_tid().map_err(|e| e.to_string())?;
    let mut poisoned = out.failed_at.is_some();
    // A failure may surface only on the next write (a checkpoint after a durable commit
    // poisons the journal without failing the commit), so "refused" is checked from
    // the first error on.
    let note = |out: &mut Outcome, i: usize, e: Error, poisoned: &mut bool| -> Result<(), String> {
        if *poisoned {
            if !matches!(e, Error::Poisoned { .. }) {
                return Err(format!(
                    "step {i}: after a failure a write failed with {e:?}, not Poisoned"
                ));
            }
            out.refused += 1;
        } else {
            out.failed_at = Some((i, e));
            *poisoned = true;
        }
        Ok(())
    };
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::NewOids(n) => match j.new_oids(*n) {
                Ok(got) => {
                    if poisoned {
                        return Err(format!("step {i}: new_oids succeeded after a failure"));
                    }
                    out.handed_out = out.handed_out.max(got.iter().map(|o| o.0 + 1).max().unwrap_or(0));
                    oids.extend(got);
                    after_ack(&out);
                }
                Err(e) => note(&mut out, i, e, &mut poisoned)?,
            },
            Step::Group(txs) => {
                let reqs: Vec<CommitRequest> = txs
                    .iter()
                    .map(|tx| CommitRequest {
                        snapshot: last,
                        records: tx
                            .iter()
                            .filter(|(k, _)| *k < oids.len())
                            .map(|(k, d)| Record::new(oids[*k], d.clone(), vec![]))
                            .collect(),
                        ..CommitRequest::default()
                    })
                    .collect();
                let results = j.commit_many(&reqs);
                // Members of one group fail together, with the same error.
                let was_poisoned = poisoned;
                for (n, (req, r)) in reqs.iter().zip(results).enumerate() {
                    let writes: Writes = req.records.iter().map(|r| (r.oid, r.data.clone())).collect();
                    let would_be = Tid(last.0 + 1);
                    match r {
                        Ok(c) => {
                            if poisoned {
                                return Err(format!("step {i}: a commit succeeded after a failure"));
                            }
                            if c.tid != would_be {
                                return Err(format!("step {i}.{n}: tid {:?}, expected {would_be:?}", c.tid));
                            }
                            out.attempted.push((c.tid, writes, true));
                            last = c.tid;
                            after_ack(&out);
                        }
                        Err(e) if !was_poisoned => {
                            // This transaction's bytes may be in the file.
                            out.attempted.push((Tid(would_be.0 + n as u64), writes, false));
                            if !poisoned {
                                note(&mut out, i, e, &mut poisoned)?;
                            }
                        }
                        Err(e) => note(&mut out, i, e, &mut poisoned)?,
                    }
                }
            }
            Step::Checkpoint => match j.checkpoint() {
                Ok(_) if poisoned => return Err(format!("step {i}: a checkpoint succeeded after a failure")),
                Ok(_) => {}
                Err(e) => note(&mut out, i, e, &mut poisoned)?,
            },
            Step::Close => match j.close() {
                Ok(()) if poisoned => return Err(format!("step {i}: close reported no failure")),
                Ok(()) => {}
                Err(e) => note(&mut out, i, e, &mut poisoned)?,
            },
        }
    }
    Ok(out)
}

/// Opens `image` as a restarted process would (read-write, cutting off a torn tail)
/// and checks it against `out`: it verifies, it holds exactly the state after some
/// transaction at or after `at_least` and no later than the last one attempted, new
/// oids are past the `handed_out` oids handed out before, and it takes a new commit
/// that survives a reopen. Returns the tid it opened at.
pub fn check_image(image: Vec<u8>, out: &Outcome, at_least: Tid, handed_out: u64) -> Result<Tid, String> {
    verify(&MemFile::from_bytes(image.clone())).map_err(|e| format!("verify: {e}"))?;
    let file = MemFile::from_bytes(image);
    let j = Journal::open_io(Box::new(file.clone()), options()).map_err(|e| format!("open: {e}"))?;
    let t = j.last_tid().map_err(|e| e.to_string())?;
    let newest = out.attempted.last().map_or(Tid::ZERO, |a| a.0);
    if t < at_least || t > newest {
        return Err(format!("opened at {t:?}, outside {at_least:?}..={newest:?}"));
    }
    let want = out.state_at(t);
    for oid in out.written() {
        let got = match j.load(oid) {
            Ok(l) => Some(l.record.data),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(format!("load {oid:?}: {e}")),
        };
        if got.as_ref() != want.get(&oid) {
            return Err(format!("{oid:?} at {t:?}: {got:?} != {:?}", want.get(&oid)));
        }
    }
    let fresh = j.new_oids(1).map_err(|e| format!("new oid: {e}"))?[0];
    if fresh.0 < handed_out {
        return Err(format!(
            "oid {fresh:?} handed out again (before: up to {handed_out})"
        ));
    }
    let c = j
        .commit(&CommitRequest {
            snapshot: t,
            records: vec![Record::new(fresh, b"after".to_vec(), vec![])],
            ..CommitRequest::default()
        })
        .map_err(|e| format!("commit after recovery: {e}"))?;
    drop(j);
    let j = Journal::open_io(Box::new(file.clone()), options()).map_err(|e| format!("reopen: {e}"))?;
    if j.last_tid().map_err(|e| e.to_string())? != c.tid {
        return Err("the commit after recovery was lost".into());
    }
    drop(j);
    verify(&file).map_err(|e| format!("verify after recovery: {e}"))?;
    Ok(t)
}

/// A file with a few transactions and then a torn tail (a cut-off write), so the
/// script's first commit has a tail to cut off; and the outcome that made it.
pub fn starting_file() -> (Vec<u8>, Outcome) {
    let m = MemFile::new();
    let j = Journal::open_io(Box::new(m.clone()), options()).expect("open a new journal");
    let out = run(
        &j,
        &[
            Step::NewOids(2),
            Step::Group(vec![vec![(0, bytes(200, 50))]]),
            Step::Group(vec![vec![(1, bytes(201, 70))]]),
            Step::Close,
        ],
        Outcome::default(),
        |_| {},
    )
    .expect("the starting transactions");
    drop(j);
    let mut b = m.to_bytes();
    let end = b.len();
    // 100 bytes copied from inside the last block, as if a later write was cut off.
    let copy: Vec<u8> = b[end - 200..end - 100].to_vec();
    b.extend_from_slice(&copy);
    (b, out)
}

/// Images per crash point: every subset when there are at most this many unsynced
/// pieces to choose from...
pub const EXHAUSTIVE_UP_TO: usize = 8;
/// ... else this many random subsets (plus nothing and everything).
pub const SAMPLES: usize = 64;

/// Calls `check` with every image power loss at `p` could leave, named: nothing
/// unsynced kept, everything kept, and every subset of the unsynced pieces (or, past
/// [`EXHAUSTIVE_UP_TO`] of them, [`SAMPLES`] random ones drawn from `rng`). Returns how
/// many sector pieces were chosen among.
pub fn each_image(p: &CrashPoint, rng: &mut super::Rng, mut check: impl FnMut(Vec<u8>, &str)) -> u64 {
    let n = p.choices();
    let mut torn_pieces = 0;
    check(p.durable(), "nothing unsynced kept");
    check(p.everything(), "everything kept");
    if n <= EXHAUSTIVE_UP_TO {
        for mask in 1..(1u64 << n).saturating_sub(1) {
            check(p.image(|i| mask >> i & 1 == 1), &format!("subset {mask:#b}"));
            torn_pieces += n as u64;
        }
    } else {
        for s in 0..SAMPLES {
            // Vary how much survives, from almost nothing to almost everything.
            let keep = 1 + rng.u64(..15);
            let mut r = super::Rng::with_seed(rng.u64(..));
            check(p.image(|_| r.u64(..16) < keep), &format!("sample {s}"));
            torn_pieces += n as u64;
        }
    }
    torn_pieces
}
