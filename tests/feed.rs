//! The change feed: committed transactions in order, and a slow subscriber is told it
//! lagged instead of slowing commits down.

mod common;

use std::sync::Arc;

use common::on_all_runtimes;
use common::storages::{Kind, Store};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{Change, Storage, FEED_CAPACITY};
use futures::StreamExt;

fn write(oids: &[Oid], snapshot: Tid) -> CommitRequest {
    CommitRequest {
        snapshot,
        records: oids
            .iter()
            .rev()
            .map(|&o| Record::new(o, vec![1], vec![]))
            .collect(),
        ..Default::default()
    }
}

async fn feed_in_order(s: Arc<dyn Storage>) {
    let oids = s.new_oids(3).await.unwrap();
    let before = s.last_tid().await.unwrap();
    let mut feed = s.changes();
    let a = s.commit(write(&oids[..2], before)).await.unwrap();
    // Nothing written: not a transaction, not on the feed.
    s.commit(CommitRequest {
        snapshot: a.tid,
        ..Default::default()
    })
    .await
    .unwrap();
    let b = s.commit(write(&oids[2..], a.tid)).await.unwrap();
    assert_eq!(
        feed.next().await,
        Some(Change::Committed {
            tid: a.tid,
            timestamp: a.timestamp,
            oids: oids[..2].to_vec()
        })
    );
    assert_eq!(
        feed.next().await,
        Some(Change::Committed {
            tid: b.tid,
            timestamp: b.timestamp,
            oids: oids[2..].to_vec()
        })
    );
    // Several subscribers each get everything.
    let mut f1 = s.changes();
    let mut f2 = s.changes();
    let c = s.commit(write(&oids[..1], b.tid)).await.unwrap();
    for f in [&mut f1, &mut f2, &mut feed] {
        assert!(matches!(f.next().await, Some(Change::Committed { tid, .. }) if tid == c.tid));
    }
}

fn the_feed_reports_commits_in_order(kind: Kind) {
    on_all_runtimes(|_| async move {
        let store = Store::new(kind);
        feed_in_order(store.open().await).await;
    });
}

#[test]
fn the_feed_reports_commits_in_order_on_a_journal_in_memory() {
    on_all_runtimes(|_| async {
        let (_file, s) = common::mem_file_storage().await;
        feed_in_order(Arc::new(s)).await;
    });
}

fn a_slow_subscriber_is_told_where_to_resume(kind: Kind) {
    on_all_runtimes(|_| async move {
        let store = Store::new(kind);
        let s = store.open().await;
        let oid = s.new_oids(1).await.unwrap()[0];
        let mut slow = s.changes();
        let total = FEED_CAPACITY as u64 + 50;
        let mut t = Tid::ZERO;
        for _ in 0..total {
            t = s.commit(write(&[oid], t)).await.unwrap().tid;
        }
        // Commits were never held up; the subscriber finds the queued events, then the
        // gap, then the commits that came after it made room.
        let mut delivered = Vec::new();
        let resume = loop {
            match slow.next().await {
                Some(Change::Committed { tid, .. }) => delivered.push(tid),
                Some(Change::Lagged { resume_after }) => break resume_after,
                None => panic!("the feed ended"),
            }
        };
        assert!(delivered.len() >= FEED_CAPACITY, "{} delivered", delivered.len());
        assert!(delivered.windows(2).all(|w| w[1] == w[0].next()));
        assert_eq!(resume, *delivered.last().unwrap());
        // Catching up covers everything after the gap.
        let caught = s.changes_since(resume).await.unwrap();
        assert_eq!(caught.tid, t);
        assert_eq!(caught.oids, vec![oid]);
        let next = s.commit(write(&[oid], t)).await.unwrap();
        assert!(matches!(slow.next().await, Some(Change::Committed { tid, .. }) if tid == next.tid));
    });
}

// Once per storage kind (memory, the journal file, SQLite).
crate::storage_tests! {
    the_feed_reports_commits_in_order => super::the_feed_reports_commits_in_order;
    a_slow_subscriber_is_told_where_to_resume => super::a_slow_subscriber_is_told_where_to_resume;
}
