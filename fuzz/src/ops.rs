//! `journal_ops`: a structured target. The input is read as a sequence of operations
//! on a journal over an in-memory file (allocate oids, commit, group commit, load, load
//! at a snapshot, load many, list changes, checkpoint, reopen, verify, and cut the
//! file's tail off as a crash would), and every answer is compared with a model that
//! knows every version of every oid.
//!
//! The model predicts outcomes exactly: a commit is invalid if it writes an oid twice or
//! one never handed out, conflicts iff an oid it reads or writes was committed after its
//! snapshot (or rebase point), and otherwise gets the next tid. A cut keeps exactly the
//! transactions whose blocks are still byte-for-byte in the file: the journal must open
//! to that prefix, and the model is rolled back to it.

use std::collections::{BTreeMap, BTreeSet};

use durus::journal::format::{
    fill, Slot, BLOCK_HEADER, DATA_START, ENTRY_HEADER, TRAILER,
};
use durus::journal::io::MemFile;
use durus::journal::{Durability, Journal, JournalOptions};
use durus::record::{CommitRequest, Committed, Oid, Record, Tid};
use durus::Error;

use crate::with_alloc_bound;

/// The operations, chosen by one input byte each (modulo their number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `new_oids(1..=4)`.
    NewOids = 0,
    /// One commit of up to 3 records, with reads, an old snapshot, maybe a rebase.
    Commit = 1,
    /// `commit_many` of 2 or 3 requests.
    CommitMany = 2,
    /// `load` of one oid.
    Load = 3,
    /// `load_at` one oid and snapshot (sometimes one after the last tid).
    LoadAt = 4,
    /// `load_many` at the newest state or a snapshot.
    LoadMany = 5,
    /// `changes_since`, `transactions` and `tid_at_time`.
    History = 6,
    /// `checkpoint`.
    Checkpoint = 7,
    /// Close or drop, optionally look through a read-only open, reopen.
    Reopen = 8,
    /// `journal::verify` of the bytes as they are.
    Verify = 9,
    /// Drop the journal, cut the file (maybe padding it with zeros or filler), reopen.
    Cut = 10,
}

/// Whether to print each operation and its outcome (`DURUS_FUZZ_TRACE=1`, for
/// reading what an input does when replaying it).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("DURUS_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($t:tt)*) => {
        if tracing() {
            eprintln!($($t)*);
        }
    };
}

/// Number of [`Op`]s.
const OPS: u8 = 11;

impl Op {
    fn of(b: u8) -> Op {
        match b % OPS {
            0 => Op::NewOids,
            1 => Op::Commit,
            2 => Op::CommitMany,
            3 => Op::Load,
            4 => Op::LoadAt,
            5 => Op::LoadMany,
            6 => Op::History,
            7 => Op::Checkpoint,
            8 => Op::Reopen,
            9 => Op::Verify,
            _ => Op::Cut,
        }
    }
}

/// Allocation bound of one `journal_ops` run: the file grows by at most a few hundred
/// bytes per input byte (record data comes from the input; headers, reservations and
/// checkpoints are bounded per operation), and the harness keeps a few copies of it
/// plus the model.
pub fn ops_bound(len: usize) -> usize {
    1024 * len + (16 << 20)
}

/// An oid that is never handed out: writing it is invalid.
const NEVER: Oid = Oid(1 << 40);

/// The input, read a byte at a time; zeros once it is used up.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let s = self.pos.min(self.data.len());
        let e = (self.pos + n).min(self.data.len());
        self.pos += n;
        self.data[s..e].to_vec()
    }
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// One committed transaction in the model.
#[derive(Clone, Debug)]
struct Tx {
    timestamp: u64,
    /// Oids written, ascending.
    oids: Vec<Oid>,
    /// Where its block is in the file.
    start: u64,
    end: u64,
}

/// One version of an oid in the model: the tid that wrote it, its data and refs.
type Version = (u64, Vec<u8>, Vec<Oid>);

/// What the journal should hold.
#[derive(Default)]
struct Model {
    /// Every version of every oid, oldest first: (tid, data, refs).
    versions: BTreeMap<Oid, Vec<Version>>,
    /// Transaction `t` is `txs[t - 1]`: tids are dense from 1.
    txs: Vec<Tx>,
    /// Oids the journal certainly counts as handed out (the root included), which
    /// commits may write.
    oids: Vec<Oid>,
    /// Oids that must never be handed out again.
    used: BTreeSet<Oid>,
}

/// What a commit request should get.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Invalid,
    Conflict(Vec<Oid>),
    /// No records: valid, answered with the last tid.
    Empty,
    /// A new transaction.
    Commit,
}

impl Model {
    fn last(&self) -> u64 {
        self.txs.len() as u64
    }

    fn pick(&self, b: u8) -> Oid {
        // One past the handed-out oids names one never handed out.
        self.oids
            .get(b as usize % (self.oids.len() + 1))
            .copied()
            .unwrap_or(NEVER)
    }

    fn pick_tid(&self, b: u8) -> u64 {
        b as u64 % (self.last() + 1)
    }

    fn newest_tid(&self, oid: Oid) -> u64 {
        self.versions.get(&oid).and_then(|v| v.last()).map_or(0, |v| v.0)
    }

    /// The version of `oid` visible at `snapshot`.
    fn at(&self, oid: Oid, snapshot: u64) -> Option<&Version> {
        self.versions.get(&oid)?.iter().rev().find(|v| v.0 <= snapshot)
    }

    /// The outcome of `req` when the newest tid of each oid is `newest` and the last
    /// tid is `last` (for group members: what the journal checks them against).
    fn outcome(&self, req: &CommitRequest, last: u64, newest: impl Fn(Oid) -> u64) -> Outcome {
        let mut written = BTreeSet::new();
        let invalid = req.snapshot.0 > last
            || req
                .records
                .iter()
                .any(|r| !written.insert(r.oid) || (r.oid != Oid::ROOT && !self.oids.contains(&r.oid)));
        if invalid {
            return Outcome::Invalid;
        }
        let conflicts: BTreeSet<Oid> = req
            .reads
            .iter()
            .chain(&written)
            .copied()
            .filter(|&o| newest(o) > req.checked_after(o).0)
            .collect();
        if !conflicts.is_empty() {
            Outcome::Conflict(conflicts.into_iter().collect())
        } else if req.records.is_empty() {
            Outcome::Empty
        } else {
            Outcome::Commit
        }
    }

    fn apply(&mut self, req: &CommitRequest, c: Committed, start: u64) -> u64 {
        let tid = c.tid.0;
        for r in &req.records {
            self.versions
                .entry(r.oid)
                .or_default()
                .push((tid, r.data.clone(), r.refs.clone()));
        }
        let mut oids: Vec<Oid> = req.records.iter().map(|r| r.oid).collect();
        oids.sort_unstable();
        let end = start + block_len(&req.records);
        self.txs.push(Tx {
            timestamp: c.timestamp,
            oids,
            start,
            end,
        });
        end
    }

    /// Forgets every transaction after `tid`, and which oids were handed out: only
    /// those written by a kept transaction are certainly still counted as handed out.
    fn roll_back(&mut self, tid: u64) {
        self.txs.truncate(tid as usize);
        for v in self.versions.values_mut() {
            v.retain(|x| x.0 <= tid);
        }
        self.versions.retain(|_, v| !v.is_empty());
        self.used = self
            .versions
            .keys()
            .copied()
            .filter(|&o| o != Oid::ROOT)
            .collect();
        self.oids = std::iter::once(Oid::ROOT)
            .chain(self.used.iter().copied())
            .collect();
    }
}

/// Length of the transaction block holding `records` (see `durus::journal::format`).
fn block_len(records: &[Record]) -> u64 {
    (BLOCK_HEADER
        + TRAILER
        + records
            .iter()
            .map(|r| ENTRY_HEADER + r.framed_len())
            .sum::<usize>()) as u64
}

fn options(config: u8) -> JournalOptions {
    JournalOptions {
        durability: Durability::Eventual,
        read_only: false,
        create: true,
        preallocate: [0, 256, 4096][config as usize % 3],
        checkpoint_every: [None, Some(1024), Some(1 << 20)][(config as usize / 3) % 3],
        ..JournalOptions::default()
    }
}

fn read_only() -> JournalOptions {
    JournalOptions {
        read_only: true,
        ..JournalOptions::default()
    }
}

/// The state of one run: the file, the journal open on it, and the model.
struct Run {
    mem: MemFile,
    opts: JournalOptions,
    j: Journal,
    m: Model,
}

/// Applies the operations an input describes to a journal and checks every answer
/// against the model. The first byte configures preallocation and automatic
/// checkpoints; then each operation takes one byte and its arguments the next few.
pub fn check_journal_ops(data: &[u8]) {
    with_alloc_bound(data.len(), ops_bound(data.len()), || {
        let mut input = Input { data, pos: 0 };
        let opts = options(input.byte());
        let mem = MemFile::new();
        let j = Journal::open_io(Box::new(mem.clone()), opts.clone()).expect("creating a journal");
        let mut run = Run {
            mem,
            opts,
            j,
            m: Model {
                oids: vec![Oid::ROOT],
                ..Model::default()
            },
        };
        while !input.done() {
            let op = Op::of(input.byte());
            trace!("{op:?} (last tid {}, end {})", run.m.last(), run.j.end_offset());
            match op {
                Op::NewOids => run.new_oids(&mut input),
                Op::Commit => run.commit(&mut input),
                Op::CommitMany => run.commit_many(&mut input),
                Op::Load => {
                    let oid = run.m.pick(input.byte());
                    check_load(&run.m, oid, run.j.load(oid), None);
                }
                Op::LoadAt => run.load_at(&mut input),
                Op::LoadMany => run.load_many(&mut input),
                Op::History => run.history(&mut input),
                Op::Checkpoint => {
                    run.j.checkpoint().expect("checkpoint");
                }
                Op::Reopen => run.reopen(&mut input),
                Op::Verify => run.verify(),
                Op::Cut => run.cut(&mut input),
            }
        }
        run.check_all("at the end");
        run.j.close().expect("close");
        run.reopen_with(0);
        run.verify();
    });
}

/// Checks one load against the model: `snapshot` `None` is the newest state.
fn check_load(m: &Model, oid: Oid, got: durus::Result<durus::record::Loaded>, snapshot: Option<u64>) {
    let want = m.at(oid, snapshot.unwrap_or(u64::MAX));
    match (got, want) {
        (Ok(l), Some((tid, data, refs))) => {
            assert_eq!(l.record.oid, oid, "load of {oid} at {snapshot:?}: oid");
            assert_eq!(l.tid, Tid(*tid), "load of {oid} at {snapshot:?}: tid");
            assert!(l.record.data == *data, "load of {oid} at {snapshot:?}: data");
            assert_eq!(&l.record.refs, refs, "load of {oid} at {snapshot:?}: refs");
        }
        (Err(Error::NotFound { oid: o }), None) => assert_eq!(o, oid, "NotFound names the oid"),
        (got, want) => panic!("load of {oid} at {snapshot:?}: got {got:?}, model has {want:?}"),
    }
}

impl Run {
    /// A commit request built from the input: up to 3 records (sometimes with a
    /// duplicate oid), up to 2 reads, a snapshot up to 3 behind `last` (sometimes one
    /// after it), and sometimes a rebase point for one oid.
    fn request(&self, input: &mut Input, last: u64) -> CommitRequest {
        let shape = input.byte();
        let mut records = Vec::new();
        for _ in 0..shape % 4 {
            let oid = self.m.pick(input.byte());
            let meta = input.byte();
            let data = input.take(meta as usize % 24);
            let refs = (0..(meta >> 5) % 3).map(|_| self.m.pick(input.byte())).collect();
            records.push(Record::new(oid, data, refs));
        }
        if shape & 0x80 == 0 {
            // Usually one write per oid; otherwise the duplicate makes it invalid.
            let mut seen = BTreeSet::new();
            records.retain(|r| seen.insert(r.oid));
        }
        let reads = (0..(shape >> 2) % 3).map(|_| self.m.pick(input.byte())).collect();
        let back = input.byte();
        let snapshot = if back == 0xFF {
            last + 1
        } else {
            last.saturating_sub(u64::from(back % 8).saturating_sub(4))
        };
        let rebased = if shape & 0x40 != 0 {
            vec![(self.m.pick(input.byte()), Tid(self.m.pick_tid(input.byte())))]
        } else {
            vec![]
        };
        CommitRequest {
            snapshot: Tid(snapshot),
            records,
            reads,
            rebased,
        }
    }

    fn new_oids(&mut self, input: &mut Input) {
        let n = 1 + u64::from(input.byte() % 4);
        let got = self.j.new_oids(n).expect("new_oids");
        assert_eq!(got.len() as u64, n, "new_oids({n}) count");
        assert!(
            got.windows(2).all(|w| w[1].0 == w[0].0 + 1),
            "new oids are consecutive"
        );
        for &o in &got {
            assert!(
                o != Oid::ROOT && self.m.used.insert(o),
                "oid {o} handed out twice"
            );
            self.m.oids.push(o);
        }
    }

    /// Checks one commit's result against the model and applies it; returns where the
    /// next block of the same write group starts.
    fn settle(
        &mut self,
        req: &CommitRequest,
        got: durus::Result<Committed>,
        want: Outcome,
        last: u64,
        at: u64,
    ) -> u64 {
        trace!("  {req:?}: {got:?}");
        match (want, got) {
            (
                Outcome::Invalid,
                Err(Error::SnapshotAhead { .. } | Error::NotAllocated { .. } | Error::DuplicateWrite { .. }),
            ) => at,
            (Outcome::Conflict(want), Err(Error::Conflict { oids })) => {
                assert_eq!(oids, want, "conflicting oids of {req:?}");
                at
            }
            (Outcome::Empty, Ok(c)) => {
                assert_eq!(c.tid, Tid(last), "tid of a commit that writes nothing");
                at
            }
            (Outcome::Commit, Ok(c)) => {
                assert_eq!(c.tid, Tid(self.m.last() + 1), "tid of a new transaction");
                let prev = self.m.txs.last().map_or(0, |t| t.timestamp);
                assert!(c.timestamp >= prev, "commit timestamps go backwards");
                self.m.apply(req, c, at)
            }
            (want, got) => panic!("commit of {req:?}: model expects {want:?}, got {got:?}"),
        }
    }

    fn commit(&mut self, input: &mut Input) {
        let last = self.m.last();
        let req = self.request(input, last);
        let want = self.m.outcome(&req, last, |o| self.m.newest_tid(o));
        let at = self.j.end_offset();
        let got = self.j.commit(&req);
        let end = self.settle(&req, got, want, last, at);
        self.check_committed(end, "a commit");
    }

    /// After a commit or group whose last block ends at `end`: the journal reaches
    /// that far and its last tid is the model's.
    fn check_committed(&self, end: u64, what: &str) {
        assert!(
            self.j.end_offset() >= end,
            "the journal ends before its last transaction, after {what}"
        );
        assert_eq!(
            self.j.last_tid().ok(),
            Some(Tid(self.m.last())),
            "last_tid after {what}"
        );
    }

    fn commit_many(&mut self, input: &mut Input) {
        let n = 2 + input.byte() as usize % 2;
        let last = self.m.last();
        let reqs: Vec<CommitRequest> = (0..n).map(|_| self.request(input, last)).collect();
        // Requests that write are checked against everything before them, earlier
        // members included; those that only read, against what was committed before
        // the group (they answer with its last tid).
        let before: BTreeMap<Oid, u64> = self
            .m
            .versions
            .keys()
            .map(|&o| (o, self.m.newest_tid(o)))
            .collect();
        let mut at = self.j.end_offset();
        let results = self.j.commit_many(&reqs);
        assert_eq!(results.len(), n, "commit_many answers each request");
        for (req, got) in reqs.iter().zip(results) {
            let want = if req.records.is_empty() {
                self.m
                    .outcome(req, last, |o| before.get(&o).copied().unwrap_or(0))
            } else {
                self.m.outcome(req, last, |o| self.m.newest_tid(o))
            };
            at = self.settle(req, got, want, last, at);
        }
        self.check_committed(at, "a group commit");
    }

    fn load_at(&mut self, input: &mut Input) {
        let oid = self.m.pick(input.byte());
        let b = input.byte();
        if b == 0xFF {
            let after = Tid(self.m.last() + 1);
            assert!(
                matches!(self.j.load_at(oid, after), Err(Error::SnapshotAhead { .. })),
                "load_at a snapshot after the last tid"
            );
            return;
        }
        let s = self.m.pick_tid(b);
        check_load(&self.m, oid, self.j.load_at(oid, Tid(s)), Some(s));
    }

    fn load_many(&mut self, input: &mut Input) {
        let b = input.byte();
        let oids: Vec<Oid> = (0..b % 5).map(|_| self.m.pick(input.byte())).collect();
        let snapshot = (b & 0x80 != 0).then(|| self.m.pick_tid(input.byte()));
        let got = self.j.load_many(&oids, snapshot.map(Tid)).expect("load_many");
        assert_eq!(got.len(), oids.len(), "load_many answers each oid");
        for (&oid, l) in oids.iter().zip(got) {
            let l = l.ok_or(Error::NotFound { oid });
            check_load(&self.m, oid, l, snapshot);
        }
    }

    fn history(&mut self, input: &mut Input) {
        let since = self.m.pick_tid(input.byte());
        let txs = &self.m.txs[since as usize..];
        let got = self.j.transactions(Tid(since)).expect("transactions");
        assert_eq!(got.len(), txs.len(), "transactions after {since}");
        for (i, (g, w)) in got.iter().zip(txs).enumerate() {
            assert_eq!(
                g.tid,
                Tid(since + 1 + i as u64),
                "transactions after {since}: tid"
            );
            assert_eq!(g.timestamp, w.timestamp, "transactions after {since}: timestamp");
            assert_eq!(g.oids, w.oids, "transactions after {since}: oids");
        }
        let changed: BTreeSet<Oid> = txs.iter().flat_map(|t| t.oids.iter().copied()).collect();
        let c = self.j.changes_since(Tid(since)).expect("changes_since");
        assert_eq!(
            c.tid,
            Tid(self.m.last()),
            "changes_since({since}) reaches the last tid"
        );
        assert_eq!(
            c.oids,
            changed.into_iter().collect::<Vec<_>>(),
            "changes_since({since})"
        );
        // A moment at, just before or just after a commit's timestamp.
        let b = input.byte();
        let ts = match self.m.txs.get(b as usize % (self.m.txs.len() + 1)) {
            Some(t) => (t.timestamp + 1).saturating_sub(u64::from(b % 3)),
            None => 0,
        };
        let want = self.m.txs.iter().take_while(|t| t.timestamp <= ts).count() as u64;
        assert_eq!(self.j.tid_at_time(ts).ok(), Some(Tid(want)), "tid_at_time({ts})");
    }

    /// Compares everything the journal holds with the model.
    fn check_all(&self, when: &str) {
        check_journal(&self.j, &self.m, when);
    }

    fn reopen(&mut self, input: &mut Input) {
        let mode = input.byte();
        if mode & 1 != 0 {
            // A read-only open alongside the writer sees everything it committed.
            let ro = Journal::open_io(Box::new(MemFile::from_bytes(self.mem.to_bytes())), read_only())
                .expect("a read-only open alongside the writer");
            check_journal(&ro, &self.m, "in a read-only open alongside the writer");
        }
        self.reopen_with(mode >> 1);
    }

    /// Closes (or, for odd `mode`, only drops) the journal and opens it again.
    fn reopen_with(&mut self, mode: u8) {
        if mode & 1 == 0 {
            self.j.close().expect("close");
            assert!(
                matches!(self.j.last_tid(), Err(Error::Closed)),
                "a closed journal answers"
            );
        }
        self.j = Journal::open_io(Box::new(self.mem.clone()), self.opts.clone()).expect("reopening");
        self.check_all("after a reopen");
    }

    fn verify(&mut self) {
        match durus::journal::verify(&MemFile::from_bytes(self.mem.to_bytes())) {
            Ok(rep) => {
                assert_eq!(rep.last_tid, Tid(self.m.last()), "verify's last tid");
                assert_eq!(rep.transactions, self.m.last(), "verify's transaction count");
            }
            Err(e) => panic!("verify of a journal only ever written by durus: {e}"),
        }
    }

    /// Cuts the file as a crash during a write would: everything from the cut on is
    /// gone, or (preallocated space) reads as zeros or filler.
    fn cut(&mut self, input: &mut Input) {
        let how = input.byte();
        let at = input.u16();
        let before = self.mem.to_bytes();
        let len = before.len() as u64;
        // Anywhere after the header region, up to the end of the file.
        let cut = DATA_START + u64::from(at) % (len - DATA_START + 1);
        let mut after = before[..cut as usize].to_vec();
        match how % 3 {
            0 => {}
            1 => after.resize(len as usize, 0),
            _ => {
                let mut f = vec![0u8; (len - cut) as usize];
                fill(&mut f, cut);
                after.extend_from_slice(&f);
            }
        }
        // The header slots say what was synced: a crash cannot take that, so a cut
        // before it is damage (a file cut short), refused by every reader and left as
        // it is. The journal goes on from the file as it was.
        let durable = Slot::decode_both(&before)
            .iter()
            .flatten()
            .filter_map(|s| s.mark.map(|m| m.end))
            .max()
            .unwrap_or(0);
        if cut < durable {
            trace!("  cut at {cut} of {len}, before the durable end {durable}: damage");
            let file = MemFile::from_bytes(after.clone());
            for o in [read_only(), self.opts.clone()] {
                assert!(
                    matches!(Journal::open_io(Box::new(file.clone()), o), Err(Error::Corrupt { .. })),
                    "a journal cut at {cut}, before its durable end {durable}, was opened"
                );
            }
            assert!(matches!(durus::journal::verify(&file), Err(Error::Corrupt { .. })));
            assert!(file.to_bytes() == after, "opening a damaged file changed it");
            return;
        }
        trace!("  cut at {cut} of {len} (how {how:#x})");
        // The transactions that survive: those whose blocks are still intact.
        let kept = self
            .m
            .txs
            .iter()
            .take_while(|t| {
                after.get(t.start as usize..t.end as usize) == Some(&before[t.start as usize..t.end as usize])
            })
            .count() as u64;
        // The journal is not closed (a crash): it is dropped when replaced below, and
        // a `Journal` does nothing when dropped.
        self.mem.replace(after);
        self.m.roll_back(kept);
        let ro = Journal::open_io(Box::new(MemFile::from_bytes(self.mem.to_bytes())), read_only())
            .unwrap_or_else(|e| panic!("a read-only open after a cut at {cut} (how {how}): {e}"));
        check_journal(&ro, &self.m, "read-only after a cut");
        self.j = Journal::open_io(Box::new(self.mem.clone()), self.opts.clone())
            .unwrap_or_else(|e| panic!("reopening after a cut at {cut} (how {how}): {e}"));
        self.check_all("after a cut");
        self.verify();
    }
}

/// Compares what `j` holds with the model: the last tid, the oids with records, and
/// loads of every oid (up to a cap) at the newest state and at several snapshots.
fn check_journal(j: &Journal, m: &Model, when: &str) {
    let last = m.last();
    assert_eq!(j.last_tid().ok(), Some(Tid(last)), "last_tid {when}");
    let oids = j.oids().unwrap_or_else(|e| panic!("oids {when}: {e}"));
    let want: Vec<Oid> = m.versions.keys().copied().collect();
    assert_eq!(oids, want, "oids with records {when}");
    let snapshots = [0, last / 2, last.saturating_sub(1), last];
    for &oid in want.iter().take(32).chain([&NEVER]) {
        check_load(m, oid, j.load(oid), None);
        for s in snapshots {
            check_load(m, oid, j.load_at(oid, Tid(s)), Some(s));
        }
    }
}
