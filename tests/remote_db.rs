//! `Db` over `ClientStorage` and a real server, as two processes would use it: counter
//! merges across clients, a B-tree shared by them, the pushed change feed, `begin_at`,
//! and a server restart (with a commit made behind the client's back meanwhile): the
//! transaction in flight fails clearly and the next one sees the file as it is, never
//! a stale cache.

mod common;

use common::on_all_runtimes;
use common::server::TestServer;
use durus::storage::Change;
use durus::{BTree, Counter, Db, DbBuilder, Persistent, Ref};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "remote.Root")]
struct Root {
    hits: Option<Ref<Counter>>,
    index: Option<Ref<BTree<u64, String>>>,
}

async fn db(server: &TestServer) -> Db<Root> {
    DbBuilder::storage(server.client().await).open().await.unwrap()
}

#[test]
fn two_clients_merge_counters_share_a_btree_and_see_pushed_changes() {
    on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::file(&dir.path().join("remote.durus"), Default::default());
        let (one, two) = (db(&server).await, db(&server).await);

        let mut tx = one.begin().await.unwrap();
        let hits = tx.insert(Counter::new(0)).await.unwrap();
        let index = BTree::create(&mut tx).await.unwrap();
        let root = tx.root_mut().await.unwrap();
        root.hits = Some(hits);
        root.index = Some(index);
        let made = tx.commit().await.unwrap().tid;

        // Both increment from the same snapshot: the second commit conflicts on the
        // server and is merged by Counter, not refused.
        let mut feed = two.changes();
        let mut a = one.begin().await.unwrap();
        let mut b = two.begin().await.unwrap();
        assert_eq!(
            b.snapshot(),
            made,
            "{rt}: the second client did not see the setup"
        );
        a.get_mut(hits).await.unwrap().increment();
        b.get_mut(hits).await.unwrap().increment();
        let first = a.commit().await.unwrap().tid;
        b.commit().await.unwrap();
        for db in [&one, &two] {
            let tx = db.begin().await.unwrap();
            assert_eq!(
                tx.get(hits).await.unwrap().get(),
                2,
                "{rt}: an increment was lost"
            );
        }
        // The feed of the second client's Db was pushed the first client's commit.
        loop {
            match feed.next().await.unwrap() {
                Change::Committed { tid, oids, .. } if tid == first => {
                    assert!(oids.contains(&hits.oid()));
                    break;
                }
                Change::Committed { .. } => {}
                Change::Lagged { .. } => panic!("{rt}: the feed lagged"),
            }
        }

        // A B-tree built by one client, grown by the other, read by both.
        for chunk in (0..600u64).collect::<Vec<_>>().chunks(200) {
            let mut tx = one.begin().await.unwrap();
            for &k in chunk {
                BTree::insert(&mut tx, index, k, format!("v{k}")).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        let mut tx = two.begin().await.unwrap();
        assert_eq!(BTree::len(&tx, index).await.unwrap(), 600);
        BTree::insert(&mut tx, index, 10_000, "last".into())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let tx = one.begin().await.unwrap();
        assert_eq!(BTree::len(&tx, index).await.unwrap(), 601);
        assert_eq!(
            BTree::get(&tx, index, &10_000).await.unwrap().as_deref(),
            Some("last")
        );

        // The past as it was: before the increments, the counter was 0 and the tree
        // empty.
        let past = two.begin_at(made).await.unwrap();
        assert_eq!(past.get(hits).await.unwrap().get(), 0);
        assert_eq!(BTree::len(&past, index).await.unwrap(), 0);

        drop((one, two));
        server.stop();
    });
}

#[test]
fn after_a_server_restart_the_cache_is_never_stale() {
    on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restart.durus");
        let server = TestServer::file(&path, Default::default());
        let remote = db(&server).await;
        let mut tx = remote.begin().await.unwrap();
        let hits = tx.insert(Counter::new(1)).await.unwrap();
        tx.root_mut().await.unwrap().hits = Some(hits);
        tx.commit().await.unwrap();
        // Cached by the remote Db.
        let mut in_flight = remote.begin().await.unwrap();
        assert_eq!(in_flight.get(hits).await.unwrap().get(), 1);
        in_flight.get_mut(hits).await.unwrap().add(10);

        // The server goes away; while it is down someone changes the file directly.
        server.stop();
        {
            let local: Db<Root> = Db::open(&path).await.unwrap();
            let mut tx = local.begin().await.unwrap();
            tx.get_mut(hits).await.unwrap().add(100);
            tx.commit().await.unwrap();
            local.close().await.unwrap();
        }
        // The transaction begun before the restart cannot commit blindly.
        assert!(
            in_flight.commit().await.is_err(),
            "{rt}: a commit across the restart went through while the server was down"
        );
        let server = TestServer::file(&path, Default::default());
        // The next transaction reconnects and sees the file as it is now.
        let tx = remote.begin().await.unwrap();
        assert_eq!(
            tx.get(hits).await.unwrap().get(),
            101,
            "{rt}: a stale cached state"
        );
        drop(tx);
        drop(remote);
        server.stop();
        // Closed cleanly by the server: the journal verifies with nothing torn.
        let report = durus::journal::Journal::verify_path(&path).unwrap();
        assert_eq!(report.torn_tail, None, "{rt}");
    });
}
