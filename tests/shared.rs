//! Shared mode: several handles on one journal file, each with its own open file
//! description, so they lock and catch up with each other exactly as separate
//! processes do (advisory locks belong to open file descriptions). `processes.rs`
//! runs the same with real processes.

mod common;

use std::path::Path;

use common::on_all_runtimes;
use durus::journal::{Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{Change, FileStorage, Storage};
use durus::{Db, DbBuilder, Error, Persistent, Ref};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Debug, Serialize, Deserialize, Persistent)]
#[durus(name = "shared.Note")]
struct Note {
    text: String,
    others: Vec<Ref<Note>>,
}

fn shared(path: &Path) -> DbBuilder<Note> {
    Db::builder(path).shared(true)
}

async fn set(db: &Db<Note>, text: &str) -> durus::record::Committed {
    let mut tx = db.begin().await.unwrap();
    tx.root_mut().await.unwrap().text = text.into();
    tx.commit().await.unwrap()
}

async fn text(db: &Db<Note>) -> String {
    db.begin().await.unwrap().root().await.unwrap().text.clone()
}

#[test]
fn two_handles_see_pin_and_conflict_with_each_other() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.durus");
        let a = shared(&path).open().await.unwrap();
        let b = shared(&path).open().await.unwrap();

        // A commit by one is seen by the other's next transaction.
        let c1 = set(&a, "a1").await;
        assert_eq!(text(&b).await, "a1");

        // A pinned transaction keeps its snapshot while the other side commits.
        let pinned = b.begin().await.unwrap();
        assert_eq!(pinned.root().await.unwrap().text, "a1");
        let c2 = set(&a, "a2").await;
        assert_eq!(text(&b).await, "a2");
        assert_eq!(pinned.root().await.unwrap().text, "a1");
        assert_eq!(pinned.snapshot(), c1.tid);
        drop(pinned);

        // Point in time, by tid and by timestamp.
        let then = b.begin_at(c1.tid).await.unwrap();
        assert_eq!(then.root().await.unwrap().text, "a1");
        let then = b.begin_at_time(c1.timestamp).await.unwrap();
        assert_eq!(then.snapshot(), c1.tid);
        assert_eq!(then.root().await.unwrap().text, "a1");
        let now = b.begin_at_time(c2.timestamp).await.unwrap();
        assert_eq!(now.root().await.unwrap().text, "a2");
        let before_all = b.begin_at_time(1).await.unwrap();
        assert_eq!(before_all.snapshot(), Tid::ZERO);

        // Both read the root, B commits first: A's commit conflicts, naming the root.
        let mut ta = a.begin().await.unwrap();
        let mut tb = b.begin().await.unwrap();
        ta.root_mut().await.unwrap().text = "from a".into();
        tb.root_mut().await.unwrap().text = "from b".into();
        tb.commit().await.unwrap();
        match ta.commit().await {
            Err(Error::Conflict { oids }) => assert_eq!(oids, vec![Oid::ROOT]),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(text(&a).await, "from b");

        // Oids handed out on both sides never collide, and each sees the other's objects.
        let mut made = Vec::new();
        for round in 0..3 {
            for (name, db) in [("a", &a), ("b", &b)] {
                let mut tx = db.begin().await.unwrap();
                let mut mine = Vec::new();
                for i in 0..40 {
                    mine.push(
                        tx.insert(Note {
                            text: format!("{name}{round}-{i}"),
                            others: vec![],
                        })
                        .await
                        .unwrap(),
                    );
                }
                tx.root_mut().await.unwrap().others.extend(mine.iter().copied());
                tx.commit().await.unwrap();
                made.extend(mine);
            }
        }
        let mut oids: Vec<Oid> = made.iter().map(|r| r.oid()).collect();
        oids.sort_unstable();
        oids.dedup();
        assert_eq!(oids.len(), made.len(), "an oid was handed out twice");
        for db in [&a, &b] {
            let tx = db.begin().await.unwrap();
            let root = tx.root().await.unwrap();
            assert_eq!(root.others.len(), made.len());
            for r in &root.others {
                tx.get(*r).await.unwrap();
            }
        }

        // An exclusive writer cannot open the file under shared ones.
        match Db::<Note>::open(&path).await {
            Err(Error::Locked { .. }) => {}
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("an exclusive writer opened a shared file"),
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
        let report = Journal::verify_path(&path).unwrap();
        assert!(report.transactions >= 9, "{report:?}");
    });
}

#[test]
fn the_feed_reports_other_handles_commits() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.durus");
        let a = shared(&path).open().await.unwrap();
        let b = shared(&path).open().await.unwrap();
        let mut feed = a.changes();
        let mine = set(&a, "one").await;
        let theirs = set(&b, "two").await;
        let mine2 = set(&a, "three").await;
        // A's second commit caught up with B's under the append lock; the feed reports
        // all three in order.
        for want in [mine, theirs, mine2] {
            match feed.next().await {
                Some(Change::Committed { tid, timestamp, oids }) => {
                    assert_eq!(tid, want.tid);
                    assert_eq!(timestamp, want.timestamp);
                    assert_eq!(oids, vec![Oid::ROOT]);
                }
                other => panic!("expected a commit, got {other:?}"),
            }
        }
        // A commit by B alone reaches A's feed when A catches up (a new transaction).
        let more = set(&b, "four").await;
        assert_eq!(text(&a).await, "four");
        match feed.next().await {
            Some(Change::Committed { tid, .. }) => assert_eq!(tid, more.tid),
            other => panic!("expected a commit, got {other:?}"),
        }
    });
}

#[test]
fn a_killed_writers_partial_append_is_ignored_then_cut_off() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torn.durus");
        let opts = JournalOptions {
            shared: true,
            ..JournalOptions::default()
        };
        let a = FileStorage::open(&path, opts.clone()).await.unwrap();
        let b = FileStorage::open(&path, opts).await.unwrap();
        let oids = a.new_oids(2).await.unwrap();
        let block = a.journal().end_offset();
        let first = a
            .commit(CommitRequest {
                snapshot: Tid::ZERO,
                records: vec![Record::new(oids[0], b"kept".to_vec(), vec![])],
                ..Default::default()
            })
            .await
            .unwrap();
        // What a writer killed in the middle of its append leaves: the start of a
        // transaction block (its header is intact, the rest never arrived).
        let end = a.journal().end_offset();
        let mut head = vec![0u8; 90];
        std::fs::File::open(&path)
            .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, block))
            .unwrap();
        assert_eq!(&head[..4], b"DTX1");
        {
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&f, &head, end).unwrap();
        }
        // Readers stop before it.
        assert_eq!(b.catch_up().await.unwrap(), Some(first.tid));
        assert_eq!(b.load(oids[0]).await.unwrap().record.data, b"kept");
        // The next writer cuts it off and appends in its place.
        let second = b
            .commit(CommitRequest {
                snapshot: first.tid,
                records: vec![Record::new(oids[1], b"after".to_vec(), vec![])],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(second.tid, first.tid.next());
        assert_eq!(a.catch_up().await.unwrap(), Some(second.tid));
        assert_eq!(a.load(oids[1]).await.unwrap().record.data, b"after");
        a.close().await.unwrap();
        b.close().await.unwrap();
        let report = Journal::verify_path(&path).unwrap();
        assert_eq!(report.transactions, 2, "{report:?}");
    });
}

#[test]
fn a_pack_by_one_handle_is_followed_by_the_others() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.durus");
        let a = shared(&path).open().await.unwrap();
        let b = shared(&path).open().await.unwrap();
        let c = shared(&path).open().await.unwrap();
        // Garbage: notes replaced, each leaving the old one unreachable.
        for i in 0..10 {
            let mut tx = a.begin().await.unwrap();
            let n = tx
                .insert(Note {
                    text: format!("note {i}"),
                    others: vec![],
                })
                .await
                .unwrap();
            let root = tx.root_mut().await.unwrap();
            root.text = format!("a{i}");
            root.others = vec![n];
            tx.commit().await.unwrap();
        }
        // b holds a transaction from before the pack; c is idle throughout it.
        let old = b.begin().await.unwrap();
        let old_note = old.root().await.unwrap().others[0];
        assert_eq!(old.get(old_note).await.unwrap().text, "note 9");
        set(&b, "b before").await;
        let report = a.pack(durus::journal::PackOptions::default()).await.unwrap();
        assert!(report.freed() > 0 && report.objects == 2, "{report:?}");
        // Every handle goes on on the new file: commits land there, and each sees the
        // others'.
        set(&b, "b after").await;
        assert_eq!(text(&a).await, "b after");
        assert_eq!(text(&c).await, "b after");
        set(&c, "c after").await;
        assert_eq!(text(&b).await, "c after");
        // The transaction from before reads what it read, from the old file.
        assert_eq!(old.root().await.unwrap().text, "a9");
        assert_eq!(old.get(old_note).await.unwrap().text, "note 9");
        drop(old);
        // A second pack, by another handle, is followed as well.
        let report = c.pack(durus::journal::PackOptions::default()).await.unwrap();
        assert_eq!(report.objects, 2);
        set(&a, "a last").await;
        assert_eq!(text(&b).await, "a last");
        for db in [a, b, c] {
            db.close().await.unwrap();
        }
        let report = Journal::verify_path(&path).unwrap();
        assert!(report.torn_tail.is_none());
        let db = shared(&path).open().await.unwrap();
        assert_eq!(text(&db).await, "a last");
        db.close().await.unwrap();
        assert!(!dir.path().join("shared.durus.packing").exists());
    });
}

#[test]
fn two_handles_cannot_pack_at_once_and_oids_stay_unique() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.durus");
    let opts = JournalOptions {
        shared: true,
        ..Default::default()
    };
    let a = Journal::open(&path, opts.clone()).unwrap();
    let b = Journal::open(&path, opts).unwrap();
    let mine = a.new_oids(3).unwrap();
    let theirs = b.new_oids(3).unwrap();
    let commit = |j: &Journal, oid: Oid, refs: Vec<Oid>| {
        let req = CommitRequest {
            snapshot: j.refresh().unwrap(),
            records: vec![Record::new(oid, vec![1], refs)],
            ..Default::default()
        };
        j.commit(&req).unwrap()
    };
    commit(&a, Oid::ROOT, mine.iter().chain(&theirs).copied().collect());
    for &o in mine.iter().chain(&theirs) {
        commit(&b, o, vec![]);
    }
    // One pack at a time: while another process holds the pack lock (here taken by
    // hand, as a running pack holds it), a pack is refused.
    let held = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.path().join("shared.durus.packlock"))
        .unwrap();
    held.try_lock().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    assert!(matches!(
        b.pack(&Default::default(), &stop),
        Err(Error::Locked { .. })
    ));
    held.unlock().unwrap();
    let r = b.pack(&Default::default(), &stop).unwrap();
    assert_eq!(r.objects, 7);
    // Each handle keeps its own oid range across the other's pack.
    let more_a = a.new_oids(2).unwrap();
    let more_b = b.new_oids(2).unwrap();
    let mut all: Vec<Oid> = mine
        .iter()
        .chain(&theirs)
        .chain(&more_a)
        .chain(&more_b)
        .copied()
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 10);
    commit(&a, more_a[0], vec![]);
    commit(&b, more_b[0], vec![]);
    assert_eq!(a.refresh().unwrap(), b.refresh().unwrap());
}
