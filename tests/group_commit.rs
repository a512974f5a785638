//! Group commit: concurrent committers share one write and one sync, and validation
//! stays exact inside a group.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use common::on_all_runtimes;
use durus::journal::io::MemFile;
use durus::journal::{Durability, Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{FileStorage, Storage};
use durus::Error;

fn write(oid: Oid, snapshot: Tid, data: &[u8]) -> CommitRequest {
    CommitRequest {
        snapshot,
        records: vec![Record::new(oid, data.to_vec(), vec![])],
        ..Default::default()
    }
}

#[test]
fn a_group_is_validated_member_by_member() {
    let m = MemFile::new();
    let j = Journal::open_io(Box::new(m.clone()), JournalOptions::default()).unwrap();
    let o = j.new_oids(3).unwrap();
    let before = j.stats();
    let results = j.commit_many(&[
        write(o[0], Tid(0), b"a"),
        // Read o[0] at the same snapshot: the first member changed it, so this conflicts.
        CommitRequest {
            reads: vec![o[0]],
            ..write(o[1], Tid(0), b"b")
        },
        write(o[2], Tid(0), b"c"),
        // Writes o[2] again from the old snapshot: conflicts with the member before it.
        write(o[2], Tid(0), b"d"),
        // A request with nothing to write validates against what is committed.
        CommitRequest {
            snapshot: Tid(0),
            reads: vec![o[1]],
            ..Default::default()
        },
    ]);
    assert_eq!(results[0].as_ref().unwrap().tid, Tid(1));
    assert!(matches!(&results[1], Err(Error::Conflict { oids }) if oids == &vec![o[0]]));
    assert_eq!(results[2].as_ref().unwrap().tid, Tid(2));
    assert!(matches!(&results[3], Err(Error::Conflict { oids }) if oids == &vec![o[2]]));
    assert!(results[4].is_ok());
    let after = j.stats();
    assert_eq!(after.commits - before.commits, 2);
    assert_eq!(
        after.groups - before.groups,
        1,
        "one write group for the whole batch"
    );
    assert_eq!(after.syncs - before.syncs, 1, "one sync for the whole batch");
    assert_eq!(j.load(o[2]).unwrap().record.data, b"c");
    assert!(matches!(j.load(o[1]), Err(Error::NotFound { .. })));
    // A snapshot can only name a committed transaction, never an earlier member.
    let r = j.commit_many(&[
        write(o[0], Tid(2), b"a2"),
        write(o[0], Tid(3), b"a3"),
        write(o[1], Tid(2), b"b2"),
    ]);
    assert_eq!(r[0].as_ref().unwrap().tid, Tid(3));
    assert!(matches!(&r[1], Err(Error::SnapshotAhead { .. })));
    assert_eq!(r[2].as_ref().unwrap().tid, Tid(4));
    // Members' back pointers lead to the versions before them.
    assert_eq!(j.load_at(o[0], Tid(3)).unwrap().record.data, b"a2");
    assert_eq!(j.load_at(o[0], Tid(2)).unwrap().record.data, b"a");
    drop(j);
    let rep = durus::journal::verify(&m).unwrap();
    assert_eq!((rep.transactions, rep.last_tid), (4, Tid(4)));
}

/// A gate that syncs wait at until the test opens it; it counts the syncs.
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    syncs: AtomicU64,
}

impl Gate {
    fn open_gate(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn pass(&self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        Ok(())
    }
}

#[test]
fn concurrent_commits_share_a_sync() {
    on_all_runtimes(|_| async {
        let gate = Arc::new(Gate {
            open: Mutex::new(true),
            opened: Condvar::new(),
            syncs: AtomicU64::new(0),
        });
        let g = gate.clone();
        let io = common::SyncHook {
            inner: MemFile::new(),
            on_writes: false,
            hook: move || g.pass(),
        };
        let opts = JournalOptions {
            durability: Durability::Immediate,
            preallocate: 0,
            ..JournalOptions::default()
        };
        let s = FileStorage::open_io(Box::new(io), opts).await.unwrap();
        let oids = s.new_oids(11).await.unwrap();
        *gate.open.lock().unwrap() = false;
        let syncs_before = gate.syncs.load(Ordering::SeqCst);
        let groups_before = s.journal().stats().groups;
        // The first commit reaches its sync and waits there...
        let first = s.commit(write(oids[0], Tid(0), b"first"));
        let mut first = Box::pin(first);
        while gate.syncs.load(Ordering::SeqCst) == syncs_before {
            let _ = futures::FutureExt::now_or_never(&mut first);
            std::thread::yield_now();
        }
        // ...while ten more queue up behind it.
        let rest: Vec<_> = oids[1..]
            .iter()
            .map(|&o| s.commit(write(o, Tid(0), b"rest")))
            .collect();
        gate.open_gate();
        let first = first.await.unwrap();
        let rest = futures::future::join_all(rest).await;
        assert_eq!(first.tid, Tid(1));
        let mut tids: Vec<u64> = rest.into_iter().map(|r| r.unwrap().tid.0).collect();
        tids.sort_unstable();
        assert_eq!(tids, (2..=11).collect::<Vec<_>>());
        let groups = s.journal().stats().groups - groups_before;
        assert_eq!(groups, 2, "the ten queued commits went out as one group");
        assert_eq!(gate.syncs.load(Ordering::SeqCst) - syncs_before, 2);
        s.close().await.unwrap();
    });
}
