//! Conflict checks from a snapshot far behind: a commit whose snapshot has hundreds of
//! transactions after it is validated against all of them (a storage that checks the
//! recent changes in one read must fall back to a full check for an old snapshot), and
//! from a recent one, on every storage.

mod common;

use std::sync::Arc;

use common::on_all_runtimes;
use common::storages::{Kind, Store};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::Storage;
use durus::Error;

fn write(oids: &[Oid], snapshot: Tid, reads: &[Oid]) -> CommitRequest {
    CommitRequest {
        snapshot,
        records: oids.iter().map(|&o| Record::new(o, vec![7], vec![])).collect(),
        reads: reads.to_vec(),
        ..Default::default()
    }
}

fn conflict_on(r: durus::Result<durus::record::Committed>, want: Oid) {
    match r {
        Err(Error::Conflict { oids }) => assert_eq!(oids, [want]),
        other => panic!("expected a conflict on {want}, got {other:?}"),
    }
}

async fn checks(s: Arc<dyn Storage>, behind: usize) {
    let ab = s.new_oids(2).await.unwrap();
    let (a, b) = (ab[0], ab[1]);
    let start = s
        .commit(write(&[a, b], s.last_tid().await.unwrap(), &[]))
        .await
        .unwrap()
        .tid;
    // `behind` transactions after `start`: b rewritten once among many fresh oids.
    let mut last = start;
    for i in 0..behind {
        let fresh = s.new_oids(3).await.unwrap();
        let mut oids = fresh.clone();
        if i == behind / 2 {
            oids.push(b);
        }
        last = s.commit(write(&oids, last, &[])).await.unwrap().tid;
    }
    // From `start`: a is unchanged since, b is not.
    conflict_on(s.commit(write(&[b], start, &[])).await, b);
    conflict_on(s.commit(write(&[a], start, &[b])).await, b);
    let ok = s.commit(write(&[a], start, &[])).await.unwrap();
    // And a rebased check: b merged with its newest version passes from there.
    let rebased = CommitRequest {
        rebased: vec![(b, last)],
        ..write(&[b], start, &[])
    };
    s.commit(rebased).await.unwrap();
    // From the snapshot just before a's rewrite, a changed since; from after it, not.
    conflict_on(s.commit(write(&[a], last, &[])).await, a);
    s.commit(write(&[a], ok.tid, &[])).await.unwrap();
    let now = s.last_tid().await.unwrap();
    s.commit(write(&[a, b], now, &[a, b])).await.unwrap();
}

fn run(kind: Kind, behind: usize) {
    on_all_runtimes(move |_| async move {
        let store = Store::new(kind);
        checks(store.open().await, behind).await;
    });
}

crate::storage_tests! {
    a_few_transactions_behind => |kind| run(kind, 5);
    hundreds_of_transactions_behind => |kind| run(kind, 700);
}
