//! Pack at the journal level: a property test against a model of what is reachable,
//! and the cases a pack must refuse or get exactly right.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use durus::journal::io::{FileIo, MemFile};
use durus::journal::{verify, Journal, JournalOptions, Keep, PackOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::Error;
use proptest::prelude::*;

/// One committed version in the model.
#[derive(Clone, Debug, PartialEq)]
struct Version {
    data: Vec<u8>,
    refs: Vec<Oid>,
}

/// Every version ever committed, by oid and tid, and every oid handed out.
#[derive(Default)]
struct Model {
    versions: BTreeMap<Oid, BTreeMap<Tid, Version>>,
    handed_out: BTreeSet<Oid>,
    tids: Vec<Tid>,
}

impl Model {
    fn at(&self, oid: Oid, snapshot: Tid) -> Option<&Version> {
        self.versions
            .get(&oid)?
            .range(..=snapshot)
            .next_back()
            .map(|(_, v)| v)
    }

    /// Oids reachable from the root at `snapshot`.
    fn reachable(&self, snapshot: Tid) -> BTreeSet<Oid> {
        self.reachable_from([Oid::ROOT], snapshot)
    }

    /// Oids with a version at `snapshot` that `roots` reach.
    fn reachable_from(&self, roots: impl IntoIterator<Item = Oid>, snapshot: Tid) -> BTreeSet<Oid> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<Oid> = roots.into_iter().collect();
        while let Some(o) = todo.pop() {
            if let Some(v) = self.at(o, snapshot) {
                if seen.insert(o) {
                    todo.extend(v.refs.iter().copied());
                }
            }
        }
        seen
    }

    fn last(&self) -> Tid {
        self.tids.last().copied().unwrap_or(Tid::ZERO)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(u8),
    /// Writes: which handed-out oid (by index; 255 is the root), data, refs (indexes).
    Commit(Vec<(u8, Vec<u8>, Vec<u8>)>),
    Pack {
        keep: Option<u8>,
        pin_back: Option<u8>,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1u8..4).prop_map(Op::Alloc),
        6 => prop::collection::vec(
            (prop_oneof![1 => Just(255u8), 4 => any::<u8>()], prop::collection::vec(any::<u8>(), 0..24), prop::collection::vec(any::<u8>(), 0..3)),
            1..4
        )
        .prop_map(Op::Commit),
        2 => (prop::option::of(0u8..4), prop::option::of(0u8..5)).prop_map(|(keep, pin_back)| Op::Pack { keep, pin_back }),
        1 => Just(Op::Reopen),
    ]
}

struct Run {
    j: Journal,
    file: MemFile,
    model: Model,
    oids: Vec<Oid>,
}

impl Run {
    fn oid(&self, i: u8) -> Option<Oid> {
        if i == 255 {
            return Some(Oid::ROOT);
        }
        if self.oids.is_empty() {
            return None;
        }
        Some(self.oids[i as usize % self.oids.len()])
    }

    fn commit(&mut self, writes: &[(u8, Vec<u8>, Vec<u8>)]) {
        let mut records = BTreeMap::new();
        for (w, data, refs) in writes {
            let Some(oid) = self.oid(*w) else { continue };
            let refs: Vec<Oid> = refs.iter().filter_map(|r| self.oid(*r)).collect();
            records.insert(oid, (data.clone(), refs));
        }
        if records.is_empty() {
            return;
        }
        let req = CommitRequest {
            snapshot: self.j.last_tid().unwrap(),
            records: records
                .iter()
                .map(|(o, (d, r))| Record::new(*o, d.clone(), r.clone()))
                .collect(),
            ..Default::default()
        };
        let tid = self.j.commit(&req).unwrap().tid;
        for (o, (data, refs)) in records {
            self.model
                .versions
                .entry(o)
                .or_default()
                .insert(tid, Version { data, refs });
        }
        self.model.tids.push(tid);
    }

    fn check_loads(&self, snapshot: Tid, oids: &BTreeSet<Oid>) {
        for &o in oids {
            let want = self.model.at(o, snapshot).unwrap();
            let got = self.j.load_at(o, snapshot).unwrap();
            assert_eq!(
                (&got.record.data, &got.record.refs),
                (&want.data, &want.refs),
                "{o} at {snapshot:?}"
            );
        }
    }

    fn pack(&mut self, keep: Option<u8>, pin_back: Option<u8>) {
        let last = self.model.last();
        // A snapshot pinned before the pack reads what it read before, after it.
        let pinned = pin_back.and_then(|b| {
            let i = self.model.tids.len().checked_sub(1 + b as usize)?;
            Some(self.model.tids[i])
        });
        // A snapshot an earlier pack dropped cannot be pinned, and says so.
        let pinned = pinned.filter(|&s| match self.j.pin(s) {
            Ok(_) => true,
            Err(Error::HistoryGone { oldest }) => {
                assert!(
                    s < oldest && s < self.j.oldest_snapshot(),
                    "{s:?} pinnable: {oldest:?}"
                );
                false
            }
            Err(e) => panic!("pin {s:?}: {e}"),
        });
        let pin = pinned.map(|s| self.j.pin(s).unwrap());
        // What the pinned snapshot reads before the pack (an earlier pack may have
        // dropped versions of objects it cannot reach): it reads the same after.
        let before: Vec<(Oid, Tid, Option<Version>)> = pinned
            .map(|s| {
                let reach = self.model.reachable(s);
                self.model
                    .versions
                    .keys()
                    .map(|&o| match self.j.load_at(o, s) {
                        Ok(l) => {
                            let v = Version {
                                data: l.record.data,
                                refs: l.record.refs,
                            };
                            assert_eq!(Some(&v), self.model.at(o, s), "{o} at {s:?}");
                            (o, s, Some(v))
                        }
                        Err(Error::NotFound { .. }) => {
                            assert!(!reach.contains(&o), "reachable {o} at {s:?} not found");
                            (o, s, None)
                        }
                        Err(e) => panic!("{o} at {s:?}: {e}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let opts = PackOptions {
            keep: keep.map_or(Keep::Nothing, |n| Keep::Transactions(n as u64)),
            force: true,
            ..Default::default()
        };
        let out = MemFile::new();
        let report = self
            .j
            .pack_into(Arc::new(out.clone()), &opts, &AtomicBool::new(false), &mut || {
                Ok(())
            })
            .unwrap();
        self.file = out;
        let point = report.history_from;
        assert!(point <= last);
        verify(&self.file).unwrap();
        // Reachable at the point and after: exactly as before.
        for (k, &t) in self.model.tids.iter().enumerate() {
            if t >= point {
                let r = self.model.reachable(t);
                self.check_loads(t, &r);
                let _ = k;
            }
        }
        // Kept: what the pack point's versions reach from the root and from every ref
        // written after the point (the window, and commits made while a pack runs, may
        // refer to objects unreachable at the point), and all that was written after it.
        let written_after: BTreeSet<Oid> = self
            .model
            .versions
            .iter()
            .filter(|(_, v)| v.keys().any(|&t| t > point))
            .map(|(&o, _)| o)
            .collect();
        let roots = std::iter::once(Oid::ROOT).chain(
            self.model
                .versions
                .values()
                .flat_map(|v| v.range(Tid(point.0 + 1)..))
                .flat_map(|(_, v)| v.refs.iter().copied()),
        );
        let kept: BTreeSet<Oid> = self
            .model
            .reachable_from(roots, point)
            .into_iter()
            .chain(written_after)
            .collect();
        for &o in &kept {
            assert!(self.j.load(o).is_ok(), "{o} should be kept");
        }
        for &o in self.model.versions.keys() {
            if !kept.contains(&o) {
                assert!(
                    matches!(self.j.load(o), Err(Error::NotFound { .. })),
                    "{o} should be gone"
                );
            }
        }
        for (o, s, want) in &before {
            match (self.j.load_at(*o, *s), want) {
                (Ok(l), Some(v)) => assert_eq!((&l.record.data, &l.record.refs), (&v.data, &v.refs)),
                (Err(Error::NotFound { .. }), None) => {}
                (got, want) => panic!("pinned {o} at {s:?}: {got:?}, wanted {want:?}"),
            }
        }
        drop(pin);
        // Without the pin, an old snapshot reads right or says its history is gone.
        for (o, s, want) in &before {
            match (self.j.load_at(*o, *s), want) {
                (Ok(l), Some(v)) => assert_eq!((&l.record.data, &l.record.refs), (&v.data, &v.refs)),
                // Dropped by the pack: without the pin, a stale read of what the
                // snapshot could not reach says it is gone.
                (Err(Error::NotFound { .. }), _) => {
                    assert!(
                        !self.model.reachable(*s).contains(o),
                        "reachable {o} at {s:?} not found"
                    )
                }
                (Err(Error::HistoryGone { oldest }), _) => assert!(oldest == point && *s < point),
                (got, want) => panic!("unpinned {o} at {s:?}: {got:?}, wanted {want:?}"),
            }
        }
        // What the pack dropped is garbage: the application holds no ref to it, and
        // its oid is never handed out again (the allocator checks that on `Alloc`).
        self.oids.retain(|o| kept.contains(o));
        self.model.versions.retain(|o, _| kept.contains(o));
    }

    fn reopen(&mut self) {
        self.j.close().unwrap();
        self.j = Journal::open_io(Box::new(self.file.clone()), small_prealloc()).unwrap();
    }
}

/// Default options but with less space filled ahead of commits: every pack and every
/// check reads it back, and the model test packs hundreds of times.
fn small_prealloc() -> JournalOptions {
    JournalOptions {
        preallocate: 64 << 10,
        ..JournalOptions::default()
    }
}

fn run(ops: Vec<Op>) {
    let file = MemFile::new();
    let j = Journal::open_io(Box::new(file.clone()), small_prealloc()).unwrap();
    let mut r = Run {
        j,
        file,
        model: Model::default(),
        oids: Vec::new(),
    };
    for op in ops {
        match op {
            Op::Alloc(n) => {
                for o in r.j.new_oids(n as u64).unwrap() {
                    assert!(r.model.handed_out.insert(o), "{o} handed out twice");
                    r.oids.push(o);
                }
            }
            Op::Commit(w) => r.commit(&w),
            Op::Pack { keep, pin_back } => r.pack(keep, pin_back),
            Op::Reopen => r.reopen(),
        }
    }
    r.reopen();
    let last = r.model.last();
    let reach = r.model.reachable(last);
    r.check_loads(last, &reach);
    for o in r.j.new_oids(8).unwrap() {
        assert!(
            !r.model.handed_out.contains(&o),
            "{o} handed out again after a pack"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn packs_keep_exactly_what_is_reachable(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}

fn graph() -> (Journal, MemFile, Vec<Oid>) {
    let file = MemFile::new();
    let j = Journal::open_io(Box::new(file.clone()), JournalOptions::default()).unwrap();
    let oids = j.new_oids(3).unwrap();
    let req = CommitRequest {
        snapshot: j.last_tid().unwrap(),
        records: vec![
            Record::new(Oid::ROOT, b"root".to_vec(), vec![oids[0]]),
            Record::new(oids[0], b"a".to_vec(), vec![oids[1]]),
            Record::new(oids[1], b"b".to_vec(), vec![]),
            Record::new(oids[2], b"garbage".to_vec(), vec![]),
        ],
        ..Default::default()
    };
    j.commit(&req).unwrap();
    (j, file, oids)
}

#[test]
fn a_dangling_reference_refuses_the_pack_and_names_the_oid() {
    let (j, file, oids) = graph();
    let missing = j.new_oids(1).unwrap()[0];
    j.commit(&CommitRequest {
        snapshot: j.last_tid().unwrap(),
        records: vec![Record::new(oids[1], b"b2".to_vec(), vec![missing])],
        ..Default::default()
    })
    .unwrap();
    let before = file.to_bytes();
    let out = MemFile::new();
    let r = j.pack_into(
        Arc::new(out.clone()),
        &PackOptions::default(),
        &AtomicBool::new(false),
        &mut || Ok(()),
    );
    match r {
        Err(Error::DanglingRefs { count, oids }) => {
            assert_eq!(count, 1);
            assert_eq!(oids, vec![missing]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(file.to_bytes(), before, "a refused pack leaves the journal alone");
    assert_eq!(j.load(oids[1]).unwrap().record.data, b"b2");
    // Forced, it packs and says what it left dangling.
    let forced = PackOptions {
        force: true,
        ..Default::default()
    };
    let report = j
        .pack_into(
            Arc::new(MemFile::new()),
            &forced,
            &AtomicBool::new(false),
            &mut || Ok(()),
        )
        .unwrap();
    assert_eq!(report.dangling, 1);
    assert_eq!(report.objects, 3);
}

#[test]
fn a_dry_run_reports_and_writes_nothing() {
    let (j, file, oids) = graph();
    let before = file.to_bytes();
    let out = MemFile::new();
    let dry = PackOptions {
        dry_run: true,
        ..Default::default()
    };
    let report = j
        .pack_into(Arc::new(out.clone()), &dry, &AtomicBool::new(false), &mut || {
            panic!("published")
        })
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.objects, 3);
    assert!(report.freed() > 0);
    assert_eq!(out.len().unwrap(), 0);
    assert_eq!(file.to_bytes(), before);
    assert_eq!(j.load(oids[2]).unwrap().record.data, b"garbage");
}

#[test]
fn a_failed_publish_or_a_cancel_leaves_the_journal_as_it_was() {
    let (j, file, oids) = graph();
    let r = j.pack_into(
        Arc::new(MemFile::new()),
        &PackOptions::default(),
        &AtomicBool::new(false),
        &mut || Err(std::io::Error::other("rename failed")),
    );
    assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
    let r = j.pack_into(
        Arc::new(MemFile::new()),
        &PackOptions::default(),
        &AtomicBool::new(true),
        &mut || Ok(()),
    );
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    // Still on the old file: commits land there and it holds everything.
    let tid = j
        .commit(&CommitRequest {
            snapshot: j.last_tid().unwrap(),
            records: vec![Record::new(oids[2], b"g2".to_vec(), vec![])],
            ..Default::default()
        })
        .unwrap()
        .tid;
    j.close().unwrap();
    let j = Journal::open_io(Box::new(file), JournalOptions::default()).unwrap();
    assert_eq!(j.load(oids[2]).unwrap().tid, tid);
}

#[test]
fn old_snapshots_and_history_say_they_were_packed_away() {
    let (j, _file, oids) = graph();
    let first = j.last_tid().unwrap();
    j.commit(&CommitRequest {
        snapshot: first,
        records: vec![Record::new(oids[1], b"b2".to_vec(), vec![])],
        ..Default::default()
    })
    .unwrap();
    let out = MemFile::new();
    let report = j
        .pack_into(
            Arc::new(out.clone()),
            &PackOptions::default(),
            &AtomicBool::new(false),
            &mut || Ok(()),
        )
        .unwrap();
    let gone = Error::HistoryGone {
        oldest: report.history_from,
    };
    assert_eq!(
        j.load_at(oids[1], first).unwrap_err().to_string(),
        gone.to_string()
    );
    // Unchanged since: read exactly.
    assert_eq!(j.load_at(oids[0], first).unwrap().record.data, b"a");
    assert!(matches!(j.pin(first), Err(Error::HistoryGone { .. })));
    j.close().unwrap();
    let j = Journal::open_io(Box::new(out), JournalOptions::default()).unwrap();
    assert!(matches!(
        j.transactions(Tid::ZERO),
        Err(Error::HistoryGone { .. })
    ));
    assert!(matches!(j.tid_at_time(0), Err(Error::HistoryGone { .. })));
    assert!(matches!(
        j.load_at(oids[1], first),
        Err(Error::HistoryGone { .. })
    ));
    assert_eq!(j.load(oids[1]).unwrap().record.data, b"b2");
    assert!(matches!(j.load(oids[2]), Err(Error::NotFound { .. })));
    assert_eq!(j.oldest_snapshot(), report.history_from);
}

#[test]
fn a_lone_committer_never_conflicts_with_packs_running_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.durus");
    let j = Arc::new(Journal::open(&path, JournalOptions::default()).unwrap());
    let oids = j.new_oids(20).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let packer = {
        let (j, stop) = (j.clone(), stop.clone());
        std::thread::spawn(move || {
            for _ in 0..30 {
                j.pack(
                    &PackOptions {
                        force: true,
                        ..Default::default()
                    },
                    &AtomicBool::new(false),
                )
                .unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Release);
            30
        })
    };
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        i += 1;
        let o = oids[(i % 20) as usize];
        let snapshot = j.last_tid().unwrap();
        let refs: Vec<Oid> = oids.clone();
        let req = CommitRequest {
            snapshot,
            records: vec![
                Record::new(Oid::ROOT, vec![1; 50], refs),
                Record::new(o, vec![i as u8; 300], vec![]),
            ],
            reads: vec![o, Oid::ROOT],
            ..Default::default()
        };
        if let Err(e) = j.commit(&req) {
            panic!("commit {i} at {snapshot:?}: {e}");
        }
    }
    assert_eq!(packer.join().unwrap(), 30);
    assert!(i > 0);
}

#[test]
fn a_read_only_handle_follows_the_writers_pack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.durus");
    let w = Journal::open(&path, JournalOptions::default()).unwrap();
    let oids = w.new_oids(2).unwrap();
    let commit = |data: u8, refs: Vec<Oid>| {
        let req = CommitRequest {
            snapshot: w.last_tid().unwrap(),
            records: vec![
                Record::new(Oid::ROOT, vec![data], refs),
                Record::new(oids[0], vec![data], vec![]),
            ],
            ..Default::default()
        };
        w.commit(&req).unwrap().tid
    };
    let first = commit(1, vec![oids[0]]);
    commit(2, vec![oids[0]]);
    let r = Journal::open(
        &path,
        JournalOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let pin = r.pin(first).unwrap();
    w.pack(&PackOptions::default(), &AtomicBool::new(false)).unwrap();
    let last = commit(3, vec![]);
    // The reader moves to the new file and sees the commit made after the pack...
    assert_eq!(r.refresh().unwrap(), last);
    assert_eq!(r.load(Oid::ROOT).unwrap().record.data, vec![3]);
    // ...while its pinned snapshot still reads the old versions.
    assert_eq!(r.load_at(Oid::ROOT, first).unwrap().record.data, vec![1]);
    drop(pin);
    assert!(matches!(
        r.load_at(Oid::ROOT, first),
        Err(Error::HistoryGone { .. })
    ));
}

#[test]
fn the_reference_check_finds_what_a_pack_refuses_for_and_writes_nothing() {
    let (j, file, oids) = graph();
    let clean = j.check_refs().unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!((clean.reachable, clean.at), (3, j.last_tid().unwrap()));
    let missing = j.new_oids(2).unwrap();
    j.commit(&CommitRequest {
        snapshot: j.last_tid().unwrap(),
        records: vec![Record::new(oids[1], b"b2".to_vec(), missing.clone())],
        ..Default::default()
    })
    .unwrap();
    let before = file.to_bytes();
    let found = j.check_refs().unwrap();
    assert_eq!((found.dangling, &found.oids), (2, &missing), "{found:?}");
    assert_eq!(file.to_bytes(), before, "the check wrote");
    match j.pack_into(
        Arc::new(MemFile::new()),
        &PackOptions::default(),
        &AtomicBool::new(false),
        &mut || Ok(()),
    ) {
        Err(Error::DanglingRefs { count, oids }) => assert_eq!((count, oids), (found.dangling, found.oids)),
        other => panic!("{other:?}"),
    }
    // Read-only, and a journal with no root yet: nothing reachable, nothing dangling.
    j.close().unwrap();
    let ro = JournalOptions {
        read_only: true,
        ..JournalOptions::default()
    };
    let j = Journal::open_io(Box::new(file), ro.clone()).unwrap();
    assert_eq!(j.check_refs().unwrap().dangling, 2);
    let empty = MemFile::new();
    Journal::open_io(Box::new(empty.clone()), JournalOptions::default())
        .unwrap()
        .close()
        .unwrap();
    let none = Journal::open_io(Box::new(empty), ro)
        .unwrap()
        .check_refs()
        .unwrap();
    assert_eq!((none.reachable, none.dangling), (0, 0), "{none:?}");
}
