//! Incremental backup: `Journal::backup_with` / `backup_incremental_into` and
//! `Storage::backup_with` append to an earlier backup what the journal gained since,
//! make the same bytes a full backup makes, refuse (touching nothing) a destination
//! that is not a prefix of the journal, and leave a usable destination when they fail.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use durus::journal::io::MemFile;
use durus::journal::{BackupOptions, Condition, Journal, JournalOptions, PackOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{FileStorage, Storage};

fn read_only() -> JournalOptions {
    JournalOptions {
        read_only: true,
        ..JournalOptions::default()
    }
}

/// A journal with small checkpoints, so that the slots change between backups.
fn options() -> JournalOptions {
    JournalOptions {
        checkpoint_every: Some(8 << 10),
        ..JournalOptions::default()
    }
}

/// Commits `n` transactions, each a new object (referred to by the root, oid 0) and the
/// root rewritten; returns the oids written.
fn commit_some(j: &Journal, n: usize, tag: u8) -> Vec<Oid> {
    let mut oids = Vec::new();
    for i in 0..n {
        let oid = j.new_oids(1).unwrap()[0];
        oids.push(oid);
        let req = CommitRequest {
            snapshot: j.last_tid().unwrap(),
            records: vec![
                Record::new(oid, vec![tag; 100 + i % 50], vec![]),
                Record::new(Oid(0), vec![tag, i as u8], oids.clone()),
            ],
            ..Default::default()
        };
        j.commit(&req).unwrap();
    }
    oids
}

/// A new journal at `path`.
fn new_journal(path: &std::path::Path) -> Journal {
    Journal::open(path, options()).unwrap()
}

#[test]
fn an_incremental_backup_is_byte_identical_to_a_full_one_taken_at_the_same_moment() {
    let dir = tempfile::tempdir().unwrap();
    let j = new_journal(&dir.path().join("live.durus"));
    let (inc, full) = (dir.path().join("inc.durus"), dir.path().join("full.durus"));
    commit_some(&j, 20, 1);
    // Onto a missing file, an incremental backup is a whole copy.
    let first = j.backup_with(&inc, &BackupOptions::incremental()).unwrap();
    assert_eq!(first.written, first.bytes);
    let mut last = first;
    for round in 0..4u8 {
        // Enough for checkpoints (the slots are rewritten) and oid reservations.
        commit_some(&j, 30 + round as usize * 40, round + 2);
        let r = j.backup_with(&inc, &BackupOptions::incremental()).unwrap();
        let f = j.backup_with(&full, &BackupOptions::default()).unwrap();
        assert_eq!((r.bytes, r.last_tid), (f.bytes, f.last_tid), "round {round}");
        assert_eq!(
            r.written,
            r.bytes - last.bytes,
            "round {round}: only the new bytes"
        );
        assert!(r.last_tid > last.last_tid);
        assert_eq!(
            std::fs::read(&inc).unwrap(),
            std::fs::read(&full).unwrap(),
            "round {round}"
        );
        last = r;
    }
    // Nothing new: nothing appended, and still the same bytes.
    let r = j.backup_with(&inc, &BackupOptions::incremental()).unwrap();
    assert_eq!((r.written, r.bytes), (0, last.bytes));
    assert_eq!(std::fs::read(&inc).unwrap(), std::fs::read(&full).unwrap());
    let c = Journal::open(&inc, read_only()).unwrap();
    assert_eq!(c.condition_at_open(), &Condition::Intact);
    assert_eq!(c.last_tid().unwrap(), j.last_tid().unwrap());
    assert_eq!(c.load(Oid(0)).unwrap().record, j.load(Oid(0)).unwrap().record);
    c.close().unwrap();
    // Backing up onto the journal itself is refused.
    let own = dir.path().join("live.durus");
    assert!(matches!(
        j.backup_with(&own, &BackupOptions::incremental()),
        Err(durus::Error::Invalid(_))
    ));
    j.close().unwrap();
}

/// Asserts that an incremental backup onto `dest` (holding `bytes`) is refused with
/// `NotPrefix`, saying `says`, and leaves it as it was.
fn assert_refused(j: &Journal, dest: &std::path::Path, bytes: &[u8], says: &str) {
    std::fs::write(dest, bytes).unwrap();
    match j.backup_with(dest, &BackupOptions::incremental()) {
        Err(durus::Error::NotPrefix { reason }) => assert!(reason.contains(says), "{says}: {reason}"),
        other => panic!("{says}: {other:?}"),
    }
    assert_eq!(std::fs::read(dest).unwrap(), bytes, "{says}: left as it was");
}

#[test]
fn a_destination_that_is_not_a_prefix_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.durus");
    let j = new_journal(&live);
    commit_some(&j, 40, 1);
    let dest = dir.path().join("dest.durus");
    j.backup_to(&dest).unwrap();
    let backup = std::fs::read(&dest).unwrap();
    commit_some(&j, 10, 2);

    // A backup of another store.
    let other = new_journal(&dir.path().join("other.durus"));
    commit_some(&other, 40, 1);
    other.backup_to(&dest).unwrap();
    let theirs = std::fs::read(&dest).unwrap();
    other.close().unwrap();
    assert_refused(&j, &dest, &theirs, "a backup of another store");

    // Damaged or modified after the header, or longer than the journal.
    let mut modified = backup.clone();
    let at = modified.len() - 300;
    modified[at] ^= 1;
    assert_refused(&j, &dest, &modified, &format!("offset {at} differs"));
    let mut header = backup.clone();
    header[1600] ^= 1;
    assert_refused(&j, &dest, &header, "header differs at offset 1600");
    let mut longer = std::fs::read(&live).unwrap();
    longer.truncate(j.backup_into(&MemFile::new()).unwrap().bytes as usize);
    longer.extend_from_slice(&[0; 100]);
    assert_refused(&j, &dest, &longer, "whole blocks end at");
    assert_refused(
        &j,
        &dest,
        &backup[..4000],
        "shorter than a journal's header region",
    );
    assert_refused(&j, &dest, b"hello, this is not a journal at all", "shorter");
    let mut not_journal = backup.clone();
    not_journal[0] = b'X';
    assert_refused(&j, &dest, &not_journal, "not a durus journal");

    // Cut inside a block (as an interrupted run leaves it), it is still a prefix: the
    // rest is appended, and the result is the full backup.
    let cut = &backup[..backup.len() - 10];
    std::fs::write(&dest, cut).unwrap();
    let r = j.backup_with(&dest, &BackupOptions::incremental()).unwrap();
    assert_eq!(r.written, r.bytes - cut.len() as u64);
    let full = MemFile::new();
    j.backup_into(&full).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), full.to_bytes());

    // After a pack the file is a new one: an earlier backup is refused.
    let stop = AtomicBool::new(false);
    j.pack(&PackOptions::default(), &stop).unwrap();
    assert_refused(&j, &dest, &full.to_bytes(), "before a pack rewrote it");
    // And a backup of the packed file is brought up to date again.
    j.backup_to(&dest).unwrap();
    commit_some(&j, 5, 3);
    let r = j.backup_with(&dest, &BackupOptions::incremental()).unwrap();
    assert!(r.written > 0 && r.written < r.bytes, "{r:?}");
    j.close().unwrap();
}

#[test]
fn a_failed_or_interrupted_incremental_backup_leaves_a_usable_destination() {
    let dir = tempfile::tempdir().unwrap();
    let j = new_journal(&dir.path().join("live.durus"));
    commit_some(&j, 30, 1);
    let old = MemFile::new();
    let old_report = j.backup_into(&old).unwrap();
    commit_some(&j, 30, 2);
    let full = MemFile::new();
    let report = j.backup_into(&full).unwrap();
    let (old, full) = (old.to_bytes(), full.to_bytes());

    // An error at any write or sync: the earlier backup is put back, byte for byte.
    let mut fail_at = 1;
    loop {
        // Fails its `fail_at`-th write or sync (counting from 1), once.
        let calls = AtomicUsize::new(0);
        let out = common::SyncHook {
            inner: MemFile::from_bytes(old.clone()),
            on_writes: true,
            hook: move || match calls.fetch_add(1, Ordering::SeqCst) + 1 == fail_at {
                true => Err(io::Error::other("injected failure")),
                false => Ok(()),
            },
        };
        match j.backup_incremental_into(&out) {
            Err(e) => {
                assert!(e.to_string().contains("injected failure"), "{fail_at}: {e}");
                assert_eq!(out.inner.to_bytes(), old, "failure at call {fail_at}");
            }
            Ok(r) => {
                assert_eq!((r.bytes, r.last_tid), (report.bytes, report.last_tid));
                assert_eq!(r.written, report.bytes - old_report.bytes);
                assert_eq!(out.inner.to_bytes(), full);
                break;
            }
        }
        fail_at += 1;
    }
    assert!(
        fail_at > 4,
        "the appends, the slots and both syncs were each failed"
    );

    // A run killed while appending leaves the earlier backup and a part of the new
    // bytes after it: that opens as a prefix holding at least the earlier backup, and
    // the next run completes it.
    for cut in (old.len()..full.len()).step_by(997) {
        let mut left = full[..cut].to_vec();
        left[..4096].copy_from_slice(&old[..4096]);
        let c = Journal::open_io(Box::new(MemFile::from_bytes(left.clone())), read_only()).unwrap();
        let last = c.last_tid().unwrap();
        assert!(
            last >= old_report.last_tid && last <= report.last_tid,
            "cut at {cut}"
        );
        c.close().unwrap();
        let out = MemFile::from_bytes(left);
        let r = j.backup_incremental_into(&out).unwrap();
        assert_eq!(r.written, full.len() as u64 - cut as u64);
        assert_eq!(out.to_bytes(), full, "cut at {cut}");
    }
    j.close().unwrap();
}

#[test]
fn incremental_backups_while_four_tasks_commit_hold_every_acknowledged_commit_on_every_runtime() {
    common::on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.durus");
        let fs = FileStorage::open(&path, options()).await.unwrap();
        let acked = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let committer = |t| common::commit_own_objects(&fs, t, &acked, &stop);
        let copy = dir.path().join("copy.durus");
        let backups = async {
            let mut last = Tid::ZERO;
            let mut appended = 0;
            for i in 0..25 {
                let before = acked.load(Ordering::Acquire);
                let r = fs
                    .backup_with(copy.clone(), BackupOptions::incremental())
                    .await
                    .unwrap_or_else(|e| panic!("{rt}: backup {i}: {e}"));
                let c = Journal::open(&copy, read_only()).unwrap();
                assert_eq!(c.condition_at_open(), &Condition::Intact, "{rt}: backup {i}");
                let held = c.last_tid().unwrap();
                assert!(
                    held.0 >= before,
                    "{rt}: backup {i} holds {held:?}, {before} acked before"
                );
                assert_eq!(held, r.last_tid, "{rt}: backup {i}");
                assert!(held >= last, "{rt}: backup {i}");
                c.close().unwrap();
                if i > 0 && r.written < r.bytes {
                    appended += 1;
                }
                last = held;
            }
            stop.store(true, Ordering::Relaxed);
            assert!(appended > 0, "{rt}: later backups appended");
        };
        futures::join!(backups, committer(0), committer(1), committer(2), committer(3));
        // The copy holds a prefix of the journal's transactions: the same ones, in order,
        // with the same records.
        let c = Journal::open(&copy, read_only()).unwrap();
        let held = c.transactions(Tid::ZERO).unwrap();
        let all = fs.transactions(Tid::ZERO).await.unwrap();
        assert!(!held.is_empty() && held.len() <= all.len(), "{rt}");
        assert_eq!(held[..], all[..held.len()], "{rt}");
        for oid in c.oids().unwrap() {
            assert_eq!(
                c.load(oid).unwrap().record,
                fs.load(oid).await.unwrap().record,
                "{rt}: {oid:?}"
            );
        }
        c.close().unwrap();
        fs.close().await.unwrap();
    });
}
