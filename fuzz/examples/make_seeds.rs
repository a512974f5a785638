//! Writes the seed corpora `corpus/journal_open/seed-*` and `corpus/record_decode/seed-*`
//! from real journals made through the library (in memory), so the fuzzer starts from
//! well-formed files. Run from anywhere; the seeds are small and meant to be committed:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example make_seeds
//! ```
//!
//! Seeds hold commit timestamps, so a rerun gives different (equally good) bytes.

use std::path::Path;

use durus::journal::format::DATA_START;
use durus::journal::io::MemFile;
use durus::journal::{Durability, Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus_fuzz::{FLAG_FIX_CHECKSUMS, FLAG_PREPEND_HEADER};

fn opts(preallocate: u64) -> JournalOptions {
    JournalOptions {
        durability: Durability::Eventual,
        read_only: false,
        create: true,
        preallocate,
        checkpoint_every: None,
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
    out.push(("transactions", mem.to_bytes()));

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

    // The same with its last 10 bytes cut off: a torn tail.
    out.push(("torn", full[..full.len() - 10].to_vec()));

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

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let jdir = root.join("journal_open");
    let rdir = root.join("record_decode");
    for d in [&jdir, &rdir] {
        std::fs::create_dir_all(d).unwrap();
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }

    let mut n = 0;
    for (name, file) in journals() {
        // The whole file, as is and with checksums re-sealed by the harness.
        for flags in [0, FLAG_FIX_CHECKSUMS] {
            let mut input = vec![flags];
            input.extend_from_slice(&file);
            write(&jdir, &mut n, &format!("{name}, flags {flags}"), &input);
        }
        // Only the blocks, behind a header the harness supplies.
        let flags = FLAG_PREPEND_HEADER | FLAG_FIX_CHECKSUMS;
        let mut input = vec![flags];
        input.extend_from_slice(&file[DATA_START as usize..]);
        write(&jdir, &mut n, &format!("{name} blocks, flags {flags}"), &input);
    }

    let records = [
        Record::new(Oid::ROOT, vec![], vec![]),
        Record::new(Oid(1), b"hello".to_vec(), vec![]),
        Record::new(Oid(7), vec![], vec![Oid(1), Oid(2)]),
        Record::new(Oid(u64::MAX), vec![0xA5; 40], vec![Oid(0), Oid(u64::MAX)]),
    ];
    let mut n = 0;
    for r in &records {
        write(
            &rdir,
            &mut n,
            &format!("record {:?}", r.oid),
            &r.encode().unwrap(),
        );
    }
}
