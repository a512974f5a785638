//! Pack on every storage that packs (the journal file and SQLite; memory says it
//! cannot): what is reachable stays and reads as before, what is not is dropped, old
//! snapshots say they were packed away, a pinned snapshot keeps reading what it read,
//! a dangling reference refuses the pack, a dry run changes nothing, and dropped oids
//! are never handed out again, also after a reopen.

mod common;

use common::on_all_runtimes;
use common::storages::{Kind, Store};
use durus::journal::{Keep, PackOptions};
use durus::record::{CommitRequest, Oid, Record};
use durus::{Db, DbBuilder, Error, Persistent, Ref};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "packc.Root")]
struct Root {
    items: Vec<Ref<Item>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "packc.Item")]
struct Item {
    n: u64,
}

/// A root with three items; the third is then detached (unreachable) and the first
/// changed, so the pack has an old version and an unreachable object to drop.
async fn graph(db: &Db<Root>) -> (Vec<Ref<Item>>, durus::Tid) {
    let mut tx = db.begin().await.unwrap();
    let mut items = Vec::new();
    for n in 0..3 {
        items.push(tx.insert(Item { n }).await.unwrap());
    }
    tx.root_mut().await.unwrap().items = items.clone();
    let first = tx.commit().await.unwrap().tid;
    let mut tx = db.begin().await.unwrap();
    tx.root_mut().await.unwrap().items.truncate(2);
    tx.get_mut(items[0]).await.unwrap().n = 10;
    tx.commit().await.unwrap();
    (items, first)
}

fn pack_drops_what_nothing_reaches(kind: Kind) {
    on_all_runtimes(|_| async move {
        let store = Store::new(kind);
        let db: Db<Root> = DbBuilder::storage_arc(store.open().await).open().await.unwrap();
        let (items, first) = graph(&db).await;
        if kind == Kind::Memory {
            assert!(matches!(
                db.pack(PackOptions::default()).await,
                Err(Error::Unsupported { .. })
            ));
            return;
        }
        // A transaction pinned before the pack keeps reading its snapshot.
        let pinned = db.begin_at(first).await.unwrap();
        assert_eq!(pinned.get(items[0]).await.unwrap().n, 0);
        let report = db.pack(PackOptions::default()).await.unwrap();
        assert!(!report.dry_run);
        // Whatever the storage does to keep it (hold the pack point back, keep the old
        // file), the pinned snapshot reads exactly what it read, unreachable objects too.
        assert_eq!(pinned.get(items[0]).await.unwrap().n, 0);
        assert_eq!(pinned.get(items[2]).await.unwrap().n, 2);
        assert_eq!(pinned.root().await.unwrap().items, items);
        drop(pinned);
        let report = db.pack(PackOptions::default()).await.unwrap();
        let last = db.storage().last_tid().await.unwrap();
        assert_eq!(report.history_from, last);
        assert_eq!(report.objects, 3, "the root and two items");
        assert_eq!(report.dangling, 0);
        let tx = db.begin().await.unwrap();
        assert_eq!(tx.get(items[0]).await.unwrap().n, 10);
        assert_eq!(tx.get(items[1]).await.unwrap().n, 1);
        let s = db.storage().clone();
        assert!(matches!(
            s.load(items[2].oid()).await,
            Err(Error::NotFound { .. })
        ));
        // The old version of a changed object is gone, and says so.
        assert!(matches!(
            s.load_at(items[0].oid(), first).await,
            Err(Error::HistoryGone { oldest }) if oldest == last
        ));
        assert!(matches!(db.begin_at(first).await, Err(Error::HistoryGone { .. })));
        // Unchanged since the old snapshot: read exactly.
        assert_eq!(s.load_at(items[1].oid(), first).await.unwrap().tid, first);
        // A pack with nothing to drop changes nothing.
        let again = db.pack(PackOptions::default()).await.unwrap();
        assert_eq!(again.objects, 3);
        assert_eq!(again.freed(), 0);
        db.close().await.unwrap();
        drop((db, s));
        // After a reopen: the same, and the dropped oid is never handed out again.
        let s = store.open().await;
        assert!(matches!(
            s.load(items[2].oid()).await,
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            s.load_at(items[0].oid(), first).await,
            Err(Error::HistoryGone { .. })
        ));
        // The list of transactions before the point is gone too (a handle that packed
        // may still answer from memory, so this is checked after the reopen).
        assert!(matches!(
            s.transactions(durus::Tid::ZERO).await,
            Err(Error::HistoryGone { .. })
        ));
        assert!(matches!(s.tid_at_time(0).await, Err(Error::HistoryGone { .. })));
        let fresh = s.new_oids(100).await.unwrap();
        assert!(fresh.iter().all(|o| o.0 > items[2].oid().0), "{fresh:?}");
        let db: Db<Root> = DbBuilder::storage_arc(s).open().await.unwrap();
        let tx = db.begin().await.unwrap();
        assert_eq!(tx.root().await.unwrap().items, items[..2].to_vec());
        assert_eq!(tx.get(items[0]).await.unwrap().n, 10);
        db.close().await.unwrap();
    });
}

fn a_dangling_reference_refuses_the_pack_and_names_the_oid(kind: Kind) {
    on_all_runtimes(|_| async move {
        let store = Store::new(kind);
        let s = store.open().await;
        let oids = s.new_oids(2).await.unwrap();
        let last = s.last_tid().await.unwrap();
        // The root refers to oids[0], which has a record, and oids[1], which has none.
        s.commit(CommitRequest {
            snapshot: last,
            records: vec![
                Record::new(Oid::ROOT, b"root".to_vec(), vec![oids[0], oids[1]]),
                Record::new(oids[0], b"a".to_vec(), vec![]),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
        match s.pack(PackOptions::default()).await {
            Err(Error::DanglingRefs { count, oids: named }) => {
                assert_eq!(count, 1);
                assert_eq!(named, vec![oids[1]]);
            }
            other => panic!("expected DanglingRefs, got {other:?}"),
        }
        // Refused: history is still all there.
        assert_eq!(s.transactions(durus::Tid::ZERO).await.unwrap().len(), 1);
        let forced = s
            .pack(PackOptions {
                force: true,
                ..PackOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(forced.dangling, 1);
        assert_eq!(s.load(oids[0]).await.unwrap().record.data, b"a");
        s.close().await.unwrap();
    });
}

fn a_dry_run_reports_and_writes_nothing(kind: Kind) {
    on_all_runtimes(|_| async move {
        let store = Store::new(kind);
        let db: Db<Root> = DbBuilder::storage_arc(store.open().await).open().await.unwrap();
        let (items, first) = graph(&db).await;
        let dry = db
            .pack(PackOptions {
                dry_run: true,
                ..PackOptions::default()
            })
            .await
            .unwrap();
        assert!(dry.dry_run);
        assert_eq!(dry.objects, 3);
        assert!(dry.freed() > 0, "{dry:?}");
        let s = db.storage().clone();
        // Everything still there, old versions included.
        assert_eq!(s.load_at(items[0].oid(), first).await.unwrap().tid, first);
        assert_eq!(s.load(items[2].oid()).await.unwrap().tid, first);
        // The root's creation and the two commits of the graph.
        assert_eq!(s.transactions(durus::Tid::ZERO).await.unwrap().len(), 3);
        // Keeping the last transaction keeps the snapshot before it readable.
        let kept = db
            .pack(PackOptions {
                keep: Keep::Transactions(1),
                ..PackOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(kept.history_from, first);
        assert_eq!(s.load_at(items[0].oid(), first).await.unwrap().tid, first);
        // The detached item is still referenced at the pack point, so it stays.
        assert_eq!(s.load(items[2].oid()).await.unwrap().tid, first);
        db.close().await.unwrap();
    });
}

storage_tests! {
    pack_drops_what_nothing_reaches => super::pack_drops_what_nothing_reaches;
}

// Memory does not pack (`pack_drops_what_nothing_reaches::memory` checks it says so).
packing_storage_tests! {
    a_dangling_reference_refuses_the_pack_and_names_the_oid => super::a_dangling_reference_refuses_the_pack_and_names_the_oid;
    a_dry_run_reports_and_writes_nothing => super::a_dry_run_reports_and_writes_nothing;
}
