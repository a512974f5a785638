//! Online backup: copying the journal byte by byte while commits are appended gives a
//! file that opens to a consistent prefix of the committed transactions.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use durus::journal::{Durability, Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};

/// Copies `from` to `to` in small chunks, yielding between them, as a slow `cp` would.
fn slow_copy(from: &std::path::Path, to: &std::path::Path) {
    let mut src = std::fs::File::open(from).unwrap();
    let mut dst = std::fs::File::create(to).unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = src.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).unwrap();
        std::thread::yield_now();
    }
}

#[test]
fn a_copy_taken_during_commits_opens_to_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.durus");
    let opts = JournalOptions {
        durability: Durability::Eventual,
        // Small preallocation steps, so copies often cross preallocated space.
        preallocate: 64 << 10,
        ..JournalOptions::default()
    };
    let j = Arc::new(Journal::open(&path, opts).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (j, stop) = (j.clone(), stop.clone());
        std::thread::spawn(move || {
            // Transaction k writes a new object k (of k bytes, so sizes vary) and sets
            // the counter at oid 1 to k.
            let counter = j.new_oids(1).unwrap()[0];
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) && k < 20_000 {
                k += 1;
                let oid = j.new_oids(1).unwrap()[0];
                let req = CommitRequest {
                    snapshot: j.last_tid().unwrap(),
                    records: vec![
                        Record::new(oid, vec![(k % 251) as u8; (k % 3000) as usize], vec![]),
                        Record::new(counter, k.to_be_bytes().to_vec(), vec![]),
                    ],
                    ..Default::default()
                };
                j.commit(&req).unwrap();
            }
            (counter, k)
        })
    };
    let mut copies = 0;
    let mut tails = 0;
    for i in 0..12 {
        let copy = dir.path().join(format!("copy-{i}.durus"));
        slow_copy(&path, &copy);
        let report = Journal::verify_path(&copy).unwrap();
        tails += usize::from(report.torn_tail.is_some());
        let c = Journal::open(
            &copy,
            JournalOptions {
                read_only: true,
                ..JournalOptions::default()
            },
        )
        .unwrap();
        let last = c.last_tid().unwrap();
        if last > Tid::ZERO {
            // Oids: 1 the counter, then one new object per transaction, allocated in order.
            let counter = Oid(1);
            let k = u64::from_be_bytes(c.load(counter).unwrap().record.data.try_into().unwrap());
            assert_eq!(last.0, k, "copy {i}: the counter disagrees with the last tid");
            for t in (1..=k).step_by(97).chain([k]) {
                let r = c.load(Oid(1 + t)).unwrap().record;
                assert_eq!(
                    r.data,
                    vec![(t % 251) as u8; (t % 3000) as usize],
                    "copy {i}, object {t}"
                );
            }
            assert!(matches!(c.load(Oid(2 + k)), Err(durus::Error::NotFound { .. })));
        }
        copies += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let (_, made) = writer.join().unwrap();
    assert!(made > 0);
    println!(
        "{copies} copies checked ({tails} ended in a torn tail) while {made} transactions were committed"
    );
}
