//! Writes the seed corpora `corpus/TARGET/seed-*` of every target (or of the targets
//! named as arguments) from values, records and journals made through the library (in
//! memory), so the fuzzer starts from well-formed inputs. Run from anywhere; the seeds
//! are small and meant to be committed:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example make_seeds [TARGET...]
//! ```
//!
//! Journal seeds hold commit timestamps, so a rerun gives different (equally good) bytes.

use std::path::Path;

use durus::journal::format::{encode_entry, fill, BlockHeader, BlockKind, DurableMark, FileHeader, Slot, DATA_START};
use durus::journal::io::MemFile;
use durus::journal::{Durability, Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus_fuzz::{
    format_selector, object_selector, sample_data, Op, Piece, FLAG_FIX_CHECKSUMS, FLAG_PREPEND_HEADER,
    FORMAT_FIX_CRC, FORMAT_VERIFY,
};

fn opts(preallocate: u64) -> JournalOptions {
    JournalOptions {
        durability: Durability::Eventual,
        read_only: false,
        create: true,
        preallocate,
        checkpoint_every: None,
        ..JournalOptions::default()
    }
}

fn commit(j: &Journal, records: Vec<Record>) {
    let snapshot = j.last_tid().unwrap();
    j.commit(&CommitRequest {
        snapshot,
        records,
        ..Default::default()
    })
    .unwrap();
}

/// A few transactions over a handful of oids, with overwrites (so back pointers exist).
fn some_history(j: &Journal, rounds: u64) {
    let oids = j.new_oids(3).unwrap();
    commit(j, vec![Record::new(Oid::ROOT, b"root".to_vec(), oids.clone())]);
    for round in 0..rounds {
        let i = (round % 3) as usize;
        commit(
            j,
            vec![
                Record::new(oids[i], format!("v{round}").into_bytes(), vec![Oid::ROOT]),
                Record::new(Oid::ROOT, format!("root{round}").into_bytes(), oids.clone()),
            ],
        );
    }
}

/// The journals the seeds are made from, as (name, file bytes).
fn journals() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    // A new, empty journal.
    let mem = MemFile::new();
    let j = Journal::open_io(Box::new(mem.clone()), opts(0)).unwrap();
    drop(j);
    out.push(("empty", mem.to_bytes()));

    // Transactions only, no checkpoint (not closed: closing writes one).
    let mem = MemFile::new();
    let j = Journal::open_io(Box::new(mem.clone()), opts(0)).unwrap();
    some_history(&j, 4);
    let crashed = mem.to_bytes();
    out.push(("transactions", crashed.clone()));

    // The same with its last 10 bytes cut off, as a crash during the last write
    // leaves it: a torn tail (after everything the header says was synced).
    out.push(("torn", crashed[..crashed.len() - 10].to_vec()));

    // Transactions, a checkpoint, more transactions, an oid reservation, and a second
    // checkpoint on close (both slots in use).
    let mem = MemFile::new();
    let j = Journal::open_io(Box::new(mem.clone()), opts(0)).unwrap();
    some_history(&j, 3);
    j.checkpoint().unwrap();
    some_history(&j, 2);
    j.new_oids(2000).unwrap();
    commit(&j, vec![Record::new(Oid(1), vec![], vec![])]);
    j.close().unwrap();
    let full = mem.to_bytes();
    out.push(("checkpointed", full.clone()));

    // (Cut short, it would be damage: its header says everything was synced.)
    let _ = full;

    // Preallocated zeros after the data.
    let mem = MemFile::new();
    let j = Journal::open_io(Box::new(mem.clone()), opts(512)).unwrap();
    some_history(&j, 2);
    out.push(("preallocated", mem.to_bytes()));

    // Reopened after a checkpoint, with transactions after it (the scan starts there).
    let mem = MemFile::new();
    let j = Journal::open_io(Box::new(mem.clone()), opts(0)).unwrap();
    some_history(&j, 2);
    j.close().unwrap();
    let j = Journal::open_io(Box::new(mem.clone()), opts(0)).unwrap();
    commit(&j, vec![Record::new(Oid(2), b"after".to_vec(), vec![Oid(1)])]);
    out.push(("after-checkpoint", mem.to_bytes()));

    for (name, bytes) in &out {
        let j = Journal::open_io(
            Box::new(MemFile::from_bytes(bytes.clone())),
            JournalOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("seed journal {name} does not reopen: {e}"));
        let _ = j.last_tid().unwrap() >= Tid::ZERO;
    }
    out
}

fn write(dir: &Path, n: &mut usize, what: &str, bytes: &[u8]) {
    let p = dir.join(format!("seed-{n}"));
    std::fs::write(&p, bytes).unwrap();
    println!("{} ({what}, {} bytes)", p.display(), bytes.len());
    *n += 1;
}

/// Removes the old `seed-*` files of `dir` (creating it if need be).
fn clear(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("seed-") {
            std::fs::remove_file(p).unwrap();
        }
    }
}

fn journal_open_seeds(dir: &Path) {
    let mut n = 0;
    for (name, file) in journals() {
        // The whole file, as is and with checksums re-sealed by the harness.
        for flags in [0, FLAG_FIX_CHECKSUMS] {
            let mut input = vec![flags];
            input.extend_from_slice(&file);
            write(dir, &mut n, &format!("{name}, flags {flags}"), &input);
        }
        // Only the blocks, behind a header the harness supplies.
        let flags = FLAG_PREPEND_HEADER | FLAG_FIX_CHECKSUMS;
        let mut input = vec![flags];
        input.extend_from_slice(&file[DATA_START as usize..]);
        write(dir, &mut n, &format!("{name} blocks, flags {flags}"), &input);
    }
}

fn record_decode_seeds(dir: &Path) {
    let records = [
        Record::new(Oid::ROOT, vec![], vec![]),
        Record::new(Oid(1), b"hello".to_vec(), vec![]),
        Record::new(Oid(7), vec![], vec![Oid(1), Oid(2)]),
        Record::new(Oid(u64::MAX), vec![0xA5; 40], vec![Oid(0), Oid(u64::MAX)]),
    ];
    let mut n = 0;
    for r in &records {
        write(dir, &mut n, &format!("record {:?}", r.oid), &r.encode().unwrap());
    }
}

/// Well-formed traffic of both protocols, behind the selector byte of each decoder.
fn protocol_decode_seeds(dir: &Path) {
    use durus::protocol::{v1, v2};
    let mut n = 0;
    let records = vec![
        Record::new(Oid::ROOT, b"root".to_vec(), vec![Oid(1)]),
        Record::new(Oid(1), vec![], vec![]),
    ];
    let mut v1_requests = vec![0u8];
    v1_requests.extend_from_slice(b"V\0\0\0\x01NM\x20L\0\0\0\0\0\0\0\x01B\0\0\0\x01\0\0\0\0\0\0\0\0CSP.");
    write(dir, &mut n, "v1 requests", &v1_requests);
    let mut body = Vec::new();
    v1::encode_commit_body(&records, &mut body).unwrap();
    let mut v1_body = vec![1u8];
    v1_body.extend_from_slice(&body[4..]);
    write(dir, &mut n, "v1 commit body", &v1_body);
    let requests = [
        v2::Request::Load {
            oid: Oid(1),
            snapshot: Some(Tid(3)),
        },
        v2::Request::LoadMany {
            oids: vec![Oid(0), Oid(1)],
            snapshot: None,
        },
        v2::Request::NewOids { n: 32 },
        v2::Request::Commit {
            req: CommitRequest {
                snapshot: Tid(2),
                records: records.clone(),
                reads: vec![Oid(3)],
                rebased: vec![(Oid(1), Tid(2))],
            },
            want_records: true,
        },
        v2::Request::ChangesSince { since: Tid(1) },
        v2::Request::LastTid,
        v2::Request::Transactions {
            after: Tid(0),
            max: 100,
        },
        v2::Request::TidAtTime { timestamp: 5 },
        v2::Request::ScanNext { cursor: 0, max: 10 },
        v2::Request::ScanClose { cursor: 1 },
        v2::Request::Subscribe,
    ];
    let mut v2_requests = vec![2u8];
    for (i, r) in requests.iter().enumerate() {
        v2::encode_request(i as u32 + 1, r, &mut v2_requests).unwrap();
    }
    write(dir, &mut n, "v2 requests", &v2_requests);
    let loaded = durus::record::Loaded {
        record: records[0].clone(),
        tid: Tid(4),
    };
    let replies = [
        v2::Reply::Records(vec![Some(loaded.clone()), None]),
        v2::Reply::Oids(vec![Oid(5)]),
        v2::Reply::Conflict {
            last: Tid(9),
            oids: vec![Oid(0)],
            records: vec![loaded.clone()],
        },
        v2::Reply::Tid(Tid(4)),
        v2::Reply::Transactions {
            txs: vec![durus::record::TxInfo {
                tid: Tid(1),
                timestamp: 2,
                oids: vec![Oid(0)],
            }],
            more: false,
        },
        v2::Reply::ScanPage {
            cursor: 1,
            done: true,
            records: vec![loaded],
        },
        v2::Reply::Error(durus::Error::Invalid("no".into())),
        v2::Reply::Pushed(durus::storage::Change::Lagged { resume_after: Tid(3) }),
    ];
    let mut v2_replies = vec![3u8];
    for (i, r) in replies.iter().enumerate() {
        v2::encode_reply(i as u32 + 1, r, &mut v2_replies).unwrap();
    }
    write(dir, &mut n, "v2 replies", &v2_replies);
}

/// One well-formed encoding of each piece of the journal format.
fn format_decode_seeds(dir: &Path) {
    let mut n = 0;
    let mut seed = |piece: Piece, flags: u8, what: &str, bytes: &[u8]| {
        let mut input = vec![format_selector(piece, flags)];
        input.extend_from_slice(bytes);
        write(dir, &mut n, what, &input);
    };
    let region = FileHeader::new(1_700_000_000_000_000).encode_region();
    seed(Piece::FileHeader, 0, "file header", &region[..36]);
    seed(
        Piece::FileHeader,
        FORMAT_FIX_CRC,
        "file header, CRC re-sealed",
        &region[..36],
    );
    let tx = BlockHeader {
        kind: BlockKind::Transaction,
        len: 120,
        tid: 3,
        timestamp: 1_700_000_000_000_000,
        group_start: 4096,
        next_oid: 65,
        count: 1,
        aux: 0,
    };
    let cp = BlockHeader {
        kind: BlockKind::Checkpoint,
        len: 132,
        count: 5,
        aux: 4096,
        ..tx
    };
    seed(Piece::BlockHeader, 0, "transaction header", &tx.encode());
    seed(
        Piece::BlockHeader,
        FORMAT_FIX_CRC,
        "checkpoint header, CRC re-sealed",
        &cp.encode(),
    );
    seed(Piece::BlockHeader, 0, "zero header", &[0; 64]);
    let slot = Slot {
        seq: 2,
        offset: 8192,
        len: 132,
        mark: None,
    };
    seed(Piece::Slot, 0, "slot of durus 0.1", &slot.encode());
    let marked = Slot {
        mark: Some(DurableMark {
            last_tid: 7,
            next_oid: 4096,
            end: 8324,
        }),
        ..slot
    };
    seed(Piece::Slot, 0, "slot with a durable mark", &marked.encode());
    let mut entry = Vec::new();
    let r = Record::new(Oid(5), b"data".to_vec(), vec![Oid(1)]);
    encode_entry(&mut entry, 3, Some((4160, 52)), &r).unwrap();
    seed(Piece::Entry, FORMAT_VERIFY, "record entry, verified", &entry);
    seed(
        Piece::Entry,
        FORMAT_FIX_CRC,
        "record entry, CRC re-sealed",
        &entry,
    );
    let mut shape = Vec::new();
    for v in [cp.len, cp.count, cp.aux] {
        shape.extend_from_slice(&v.to_be_bytes());
    }
    seed(Piece::CheckpointShape, 0, "checkpoint shape", &shape);
    let at = 4100u64;
    let mut filler = (at << 16).to_be_bytes().to_vec();
    let mut f = vec![0u8; 72];
    fill(&mut f, at);
    filler.extend_from_slice(&f);
    seed(Piece::Filler, 0, "filler", &filler);
}

/// Record data of each persistent type tried, whole and as CBOR behind the name the
/// harness supplies.
fn object_decode_seeds(dir: &Path) {
    let mut n = 0;
    // `sample_data` lists the types in the order of `OBJECT_TYPES`, then one more Sample.
    for (i, data) in sample_data().into_iter().enumerate() {
        let ty = i.min(4);
        let mut whole = vec![object_selector(ty, false)];
        whole.extend_from_slice(&data);
        write(dir, &mut n, &format!("type {ty}"), &whole);
        let name_len = data[1] as usize;
        let mut state = vec![object_selector(ty, true)];
        state.extend_from_slice(&data[2 + name_len..]);
        write(dir, &mut n, &format!("type {ty}, state only"), &state);
    }
}

/// Builds `journal_ops` inputs: the first byte configures the journal, then each
/// operation is its byte and its arguments (see `durus_fuzz::check_journal_ops`).
struct Ops(Vec<u8>);

impl Ops {
    fn new(config: u8) -> Ops {
        Ops(vec![config])
    }
    fn op(mut self, op: Op, args: &[u8]) -> Ops {
        self.0.push(op as u8);
        self.0.extend_from_slice(args);
        self
    }
    /// A commit request writing `(oid pick, data)` pairs, reading `reads`, with a
    /// snapshot `back` behind the last tid (0..=3).
    fn request(mut self, writes: &[(u8, &[u8])], reads: &[u8], back: u8) -> Ops {
        self.0.push(writes.len() as u8 | (reads.len() as u8) << 2);
        for (pick, data) in writes {
            self.0.push(*pick);
            self.0.push(data.len() as u8);
            self.0.extend_from_slice(data);
        }
        self.0.extend_from_slice(reads);
        self.0.push(if back == 0 { 0 } else { 4 + back });
        self
    }
    fn commit(self, writes: &[(u8, &[u8])], reads: &[u8], back: u8) -> Ops {
        self.op(Op::Commit, &[]).request(writes, reads, back)
    }
}

/// Operation sequences that commit, conflict, group-commit, reopen, checkpoint and cut.
fn journal_ops_seeds(dir: &Path) {
    let mut n = 0;
    // Picks: 0 is the root, k the k-th oid handed out.
    let basic = Ops::new(0)
        .op(Op::NewOids, &[2])
        .commit(&[(0, b"root"), (1, b"one")], &[], 0)
        .commit(&[(1, b"one again"), (2, b"two")], &[0], 0)
        .op(Op::Load, &[1])
        .op(Op::LoadAt, &[1, 1])
        .op(Op::LoadMany, &[0x80, 0, 1, 2, 1])
        .op(Op::History, &[0, 1])
        .op(Op::Reopen, &[0])
        .op(Op::LoadAt, &[1, 1])
        .op(Op::Verify, &[]);
    write(dir, &mut n, "commits, loads, reopen", &basic.0);
    let conflicts = Ops::new(0)
        .op(Op::NewOids, &[1])
        .commit(&[(0, b"a")], &[], 0)
        .commit(&[(1, b"b")], &[], 0)
        .commit(&[(0, b"c")], &[1], 1)
        .commit(&[(1, b"d")], &[], 1)
        .op(Op::CommitMany, &[1])
        .request(&[(0, b"e")], &[], 0)
        .request(&[], &[0], 0)
        .request(&[(1, b"f"), (0, b"g")], &[], 0)
        .op(Op::History, &[1, 2]);
    write(dir, &mut n, "conflicts and a group commit", &conflicts.0);
    let mut checkpoints = Ops::new(3).op(Op::NewOids, &[3]);
    for i in 0..8u8 {
        checkpoints = checkpoints.commit(&[(i % 4, &[i; 20]), ((i + 1) % 4, b"x")], &[], 0);
    }
    let checkpoints = checkpoints
        .op(Op::Checkpoint, &[])
        .commit(&[(2, b"after the checkpoint")], &[], 0)
        .op(Op::Reopen, &[2])
        .op(Op::LoadAt, &[2, 3])
        .op(Op::History, &[1, 5]);
    write(dir, &mut n, "checkpoints and a crash reopen", &checkpoints.0);
    let cuts = Ops::new(1)
        .op(Op::NewOids, &[2])
        .commit(&[(0, b"root"), (1, b"one")], &[], 0)
        .op(Op::Checkpoint, &[])
        .commit(&[(2, b"two")], &[], 0)
        .commit(&[(1, b"one, later")], &[], 0)
        .op(Op::Cut, &[1, 0x01, 0x40])
        .op(Op::LoadAt, &[1, 2])
        .commit(&[(1, b"after the cut")], &[], 0)
        .op(Op::Cut, &[0x82, 0xFF, 0xF0])
        .op(Op::Verify, &[]);
    write(dir, &mut n, "cuts with zeros and filler", &cuts.0);
}

type Seeds = fn(&Path);

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let all: [(&str, Seeds); 6] = [
        ("journal_open", journal_open_seeds),
        ("record_decode", record_decode_seeds),
        ("format_decode", format_decode_seeds),
        ("object_decode", object_decode_seeds),
        ("journal_ops", journal_ops_seeds),
        ("protocol_decode", protocol_decode_seeds),
    ];
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    for (name, seeds) in all {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            let dir = root.join(name);
            clear(&dir);
            seeds(&dir);
        }
    }
}
