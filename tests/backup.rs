//! Online backup: `Journal::backup_to` / `Storage::backup` copy a live journal while
//! commits are appended, and every copy is an intact journal holding every transaction
//! acknowledged before the backup started.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use durus::journal::{Condition, Durability, Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{FileStorage, Storage};

fn read_only() -> JournalOptions {
    JournalOptions {
        read_only: true,
        ..JournalOptions::default()
    }
}

/// Checks that the journal in `copy` holds transactions 1..=last of the writer below
/// (transaction k writes object k+1 and sets the counter at oid 1 to k) and nothing
/// else, that it verifies without a torn tail, and returns `last`.
fn check_copy(copy: &durus::journal::io::MemFile, what: &str) -> u64 {
    // (The backup ran the whole of `verify` on the copy before it returned.)
    let c = Journal::open_io(Box::new(copy.clone()), read_only()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(c.condition_at_open(), &Condition::Intact, "{what}");
    let last = c.last_tid().unwrap();
    if last == Tid::ZERO {
        return 0;
    }
    let k = u64::from_be_bytes(c.load(Oid(1)).unwrap().record.data.try_into().unwrap());
    assert_eq!(last.0, k, "{what}: the counter disagrees with the last tid");
    for t in (1..=k).step_by(37).chain([k]) {
        let r = c.load(Oid(1 + t)).unwrap().record;
        assert_eq!(
            r.data,
            vec![(t % 251) as u8; (t % 16) as usize],
            "{what}, object {t}"
        );
    }
    assert!(matches!(c.load(Oid(2 + k)), Err(durus::Error::NotFound { .. })));
    k
}

/// Transaction k: a new object k+1 of k % 16 bytes, and the counter at oid 1 set to k.
fn transaction(j: &Journal, counter: Oid, k: u64) -> CommitRequest {
    let oid = j.new_oids(1).unwrap()[0];
    assert_eq!(oid, Oid(1 + k), "oids are handed out in order");
    CommitRequest {
        snapshot: j.last_tid().unwrap(),
        records: vec![
            Record::new(oid, vec![(k % 251) as u8; (k % 16) as usize], vec![]),
            Record::new(counter, k.to_be_bytes().to_vec(), vec![]),
        ],
        ..Default::default()
    }
}

#[test]
fn thousands_of_backups_during_commits_are_all_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.durus");
    let opts = JournalOptions {
        durability: Durability::Eventual,
        // Small preallocation steps and checkpoints, so backups often meet both.
        preallocate: 16 << 10,
        checkpoint_every: Some(64 << 10),
        ..JournalOptions::default()
    };
    let j = Arc::new(Journal::open(&path, opts).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    // The writer keeps a few transactions ahead of the backups, so that every backup
    // runs while commits are appended and the journal stays small enough for thousands
    // of backups to be quick.
    let backups_done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (j, stop, acked, done) = (j.clone(), stop.clone(), acked.clone(), backups_done.clone());
        std::thread::spawn(move || {
            let counter = j.new_oids(1).unwrap()[0];
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                if k >= 2 * (done.load(Ordering::Acquire) + 1) {
                    std::thread::yield_now();
                    continue;
                }
                k += 1;
                j.commit(&transaction(&j, counter, k)).unwrap();
                acked.store(k, Ordering::Release);
            }
            k
        })
    };
    // Copies into memory, so that thousands of them cost no disk syncs; the copies the
    // next test makes go through files.
    let copy = durus::journal::io::MemFile::new();
    let mut copies = 0;
    for i in 0..2_000 {
        let before = acked.load(Ordering::Acquire);
        let report = j
            .backup_into(&copy)
            .unwrap_or_else(|e| panic!("backup {i} refused: {e}"));
        let k = check_copy(&copy, &format!("backup {i}"));
        assert!(
            k >= before,
            "backup {i} holds {k} transactions, {before} were acknowledged before it"
        );
        assert_eq!(Tid(k), report.last_tid, "backup {i}");
        copies += 1;
        backups_done.store(copies, Ordering::Release);
    }
    stop.store(true, Ordering::Relaxed);
    let made = writer.join().unwrap();
    assert!(made > 0);
    j.close().unwrap();
    println!("backup: {copies} copies checked while {made} transactions were committed");
    // Backing a journal up onto itself is refused, and changes nothing.
    let j = Journal::open(&path, JournalOptions::default()).unwrap();
    assert!(matches!(j.backup_to(&path), Err(durus::Error::Invalid(_))));
    j.close().unwrap();
    let original = durus::journal::io::MemFile::from_bytes(std::fs::read(&path).unwrap());
    assert_eq!(check_copy(&original, "original"), made);
}

#[test]
fn storage_backup_during_concurrent_commits_on_every_runtime() {
    common::on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.durus");
        let fs = FileStorage::open(&path, JournalOptions::default()).await.unwrap();
        let acked = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        // Four committers, each transaction writing one object of its own; the commits
        // run on the blocking pool while the backups below are taken.
        let committer = |t| common::commit_own_objects(&fs, t, &acked, &stop);
        let copy = dir.path().join("copy.durus");
        let backups = async {
            for i in 0..40 {
                let before = acked.load(Ordering::Acquire);
                let report = fs
                    .backup(copy.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{rt}: backup {i}: {e}"));
                let c = Journal::open(&copy, read_only()).unwrap();
                assert!(c.last_tid().unwrap().0 >= before, "{rt}: backup {i}");
                assert_eq!(c.last_tid().unwrap(), report.last_tid, "{rt}: backup {i}");
                c.close().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        };
        futures::join!(backups, committer(0), committer(1), committer(2), committer(3));
        assert!(acked.load(Ordering::Acquire) > 0);
        fs.close().await.unwrap();
        // A storage with no file cannot be backed up, and says so.
        let mem = durus::storage::MemoryStorage::new();
        assert!(matches!(
            mem.backup(copy).await,
            Err(durus::Error::Unsupported { .. })
        ));
    });
}
