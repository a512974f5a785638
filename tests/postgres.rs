//! What `PostgresStorage` promises beyond the conformance suite (which runs it with every
//! other storage): oids never handed out twice across reopens, several handles on one
//! database seeing each other's commits (on the change feed too) and conflicting
//! serializably, Unix-socket URLs, and a server restart under a live `Db`: the work in
//! flight fails with `Error::Disconnected`, later work reconnects by itself.
#![cfg(feature = "postgres")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::postgres::{PgDatabase, PgServer};
use durus::record::{CommitRequest, Oid, Record};
use durus::storage::{Change, PostgresOptions, PostgresStorage, Storage};
use durus::{Counter, Db, DbBuilder, Durability, Error};
use futures::{FutureExt, StreamExt};

/// The runtimes these tests run under.
const RUNTIMES: [&str; 2] = ["tokio-multi-thread", "smol"];

async fn open(db: &PgDatabase) -> PostgresStorage {
    let opts = PostgresOptions::default().durability(Durability::Eventual);
    PostgresStorage::open(&db.conninfo(), opts).await.expect("open")
}

#[test]
fn oids_are_never_handed_out_twice_also_after_a_reopen() {
    for rt in RUNTIMES {
        let db = common::postgres::database();
        common::run_on(rt, async move {
            let mut seen = BTreeSet::new();
            for _ in 0..3 {
                let a = open(&db).await;
                let b = open(&db).await;
                for s in [&a, &b] {
                    for o in s.new_oids(300).await.unwrap() {
                        assert!(o != Oid::ROOT && seen.insert(o), "oid {o} handed out twice");
                    }
                }
                // An oid handed out to one handle may be written through the other one,
                // an oid reserved by nobody may not.
                let o = a.new_oids(1).await.unwrap()[0];
                b.catch_up().await.unwrap();
                let snapshot = b.last_tid().await.unwrap();
                let req = |oid| CommitRequest {
                    snapshot,
                    records: vec![Record::new(oid, b"x".to_vec(), vec![])],
                    ..Default::default()
                };
                b.commit(req(o)).await.unwrap();
                let never = Oid(1 << 50);
                assert!(matches!(
                    b.commit(req(never)).await,
                    Err(Error::NotAllocated { oid }) if oid == never
                ));
                a.close().await.unwrap();
                b.close().await.unwrap();
            }
        });
    }
}

#[test]
fn handles_on_one_database_see_each_others_commits_and_conflict() {
    for rt in RUNTIMES {
        let db = common::postgres::database();
        common::run_on(rt, async move {
            let a: Db<Counter> = DbBuilder::storage(open(&db).await).open().await.unwrap();
            let b: Db<Counter> = DbBuilder::storage(open(&db).await).open().await.unwrap();
            let mut feed = b.changes();

            // A commit of one handle reaches the other's transactions and its feed.
            let mut tx = a.begin().await.unwrap();
            tx.root_mut().await.unwrap().increment();
            let first = tx.commit().await.unwrap();
            let tx = b.begin().await.unwrap();
            assert_eq!(tx.root().await.unwrap().get(), 1);
            drop(tx);
            match feed.next().await {
                Some(Change::Committed { tid, oids, .. }) => {
                    assert_eq!(tid, first.tid);
                    assert_eq!(oids, vec![Oid::ROOT]);
                }
                other => panic!("the feed said {other:?}"),
            }

            // Two transactions on one snapshot that both write the root: the second to
            // commit conflicts (a counter would merge, so the root is read and written
            // as a plain value through `root_mut` and a non-mergeable change of both).
            let storage_a = open(&db).await;
            let storage_b = open(&db).await;
            let snapshot = storage_a.last_tid().await.unwrap();
            let write = |data: &[u8]| CommitRequest {
                snapshot,
                records: vec![Record::new(Oid::ROOT, data.to_vec(), vec![])],
                ..Default::default()
            };
            storage_b.catch_up().await.unwrap();
            storage_a.commit(write(b"\xa0")).await.unwrap();
            match storage_b.commit(write(b"\xa0")).await {
                Err(Error::Conflict { oids }) => assert_eq!(oids, vec![Oid::ROOT]),
                other => panic!("expected a conflict, got {other:?}"),
            }
            // A read-only dependency conflicts just the same.
            let req = CommitRequest {
                snapshot,
                reads: vec![Oid::ROOT],
                records: vec![Record::new(
                    storage_b.new_oids(1).await.unwrap()[0],
                    vec![1],
                    vec![],
                )],
                ..Default::default()
            };
            assert!(matches!(storage_b.commit(req).await, Err(Error::Conflict { .. })));
            for s in [storage_a, storage_b] {
                s.close().await.unwrap();
            }
            a.close().await.unwrap();
            b.close().await.unwrap();
        });
    }
}

#[test]
fn a_unix_socket_url_opens_through_db_builder_url() {
    for rt in RUNTIMES {
        let db = common::postgres::database();
        common::run_on(rt, async move {
            let url = db.url();
            assert!(url.starts_with("postgresql:///"), "{url}");
            let d: Db<Counter> = DbBuilder::url(&url).unwrap().open().await.unwrap();
            let mut tx = d.begin().await.unwrap();
            tx.root_mut().await.unwrap().increment();
            tx.commit().await.unwrap();
            d.close().await.unwrap();
            let d: Db<Counter> = DbBuilder::url(&url).unwrap().open().await.unwrap();
            assert_eq!(d.begin().await.unwrap().root().await.unwrap().get(), 1);
            d.close().await.unwrap();
        });
    }
}

#[test]
fn a_server_that_is_not_there_is_a_clear_error() {
    let server = Arc::new(PgServer::start());
    let db = server.database();
    server.stop();
    common::run_on("smol", async move {
        match PostgresStorage::open(&db.conninfo(), PostgresOptions::default()).await {
            Err(Error::Disconnected { reason }) => assert!(reason.contains("PostgreSQL"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            PostgresStorage::open("host=/x port=notaport", PostgresOptions::default()).await,
            Err(Error::Invalid(_))
        ));
    });
}

#[test]
fn a_restarted_server_fails_the_work_in_flight_and_later_work_reconnects() {
    for rt in RUNTIMES {
        // A server of its own: it is stopped under the test's feet.
        let server = Arc::new(PgServer::start());
        let db = server.database();
        common::run_on(rt, async move {
            let d: Db<Counter> = DbBuilder::storage(open(&db).await).open().await.unwrap();
            let mut tx = d.begin().await.unwrap();
            tx.root_mut().await.unwrap().increment();
            tx.commit().await.unwrap();

            // A transaction in flight when the server restarts.
            let mut in_flight = d.begin().await.unwrap();
            in_flight.root_mut().await.unwrap().increment();
            let s = server.clone();
            blocking::unblock(move || {
                s.stop();
                s.start_again();
            })
            .await;
            match in_flight.commit().await {
                Err(Error::Disconnected { reason }) => {
                    assert!(reason.contains("PostgreSQL"), "{reason}");
                }
                other => panic!("the commit across a restart gave {other:?}"),
            }

            // While the server is down, work fails with the same error; once it is back,
            // the next transactions reconnect and commit.
            let s = server.clone();
            blocking::unblock(move || s.stop()).await;
            assert!(matches!(d.begin().await, Err(Error::Disconnected { .. })));
            let s = server.clone();
            blocking::unblock(move || s.start_again()).await;
            for _ in 0..2 {
                let mut tx = d.begin().await.unwrap();
                tx.root_mut().await.unwrap().increment();
                tx.commit().await.unwrap();
            }
            let d2: Db<Counter> = DbBuilder::storage(open(&db).await).open().await.unwrap();
            assert_eq!(d2.begin().await.unwrap().root().await.unwrap().get(), 3);
            d2.close().await.unwrap();
            d.close().await.unwrap();
        });
    }
}

#[test]
fn oids_handed_out_before_a_server_crash_are_not_handed_out_again() {
    let server = Arc::new(PgServer::start());
    let db = server.database();
    common::run_on("smol", async move {
        let s = open(&db).await;
        let before: BTreeSet<Oid> = s.new_oids(10).await.unwrap().into_iter().collect();
        // Nothing committed since: only the reservation itself made the oids durable,
        // also with this handle's commits not waiting for a flush (`open` makes it
        // `Durability::Eventual`).
        let srv = server.clone();
        blocking::unblock(move || {
            srv.crash();
            srv.start_again();
        })
        .await;
        drop(s);
        let s = open(&db).await;
        let after = s.new_oids(10).await.unwrap();
        let highest = *before.iter().next_back().unwrap();
        assert!(after.iter().all(|o| *o > highest), "{after:?} after {before:?}");
        s.close().await.unwrap();
    });
}

/// The next event of `feed`, or a panic if none comes within a generous bound (so a
/// missing notification fails the test instead of hanging it).
async fn next_change(feed: &mut futures::stream::BoxStream<'static, Change>) -> Change {
    let timer = blocking::unblock(|| std::thread::sleep(std::time::Duration::from_secs(60)));
    match futures::future::select(feed.next(), Box::pin(timer)).await {
        futures::future::Either::Left((Some(c), _)) => c,
        futures::future::Either::Left((None, _)) => panic!("the feed ended"),
        futures::future::Either::Right(_) => panic!("no change reached the feed in 60 s"),
    }
}

/// Three commits of `writer`, their tids.
async fn three_commits(writer: &Db<Counter>) -> Vec<durus::record::Tid> {
    let mut tids = Vec::new();
    for _ in 0..3 {
        let mut tx = writer.begin().await.unwrap();
        tx.root_mut().await.unwrap().increment();
        tids.push(tx.commit().await.unwrap().tid);
    }
    tids
}

#[test]
fn other_handles_commits_reach_the_feed_of_a_db_that_begins_nothing() {
    for rt in RUNTIMES {
        let db = common::postgres::database();
        common::run_on(rt, async move {
            let watcher: Db<Counter> = DbBuilder::storage(open(&db).await).open().await.unwrap();
            let mut feed = watcher.changes();
            let writer: Db<Counter> = DbBuilder::storage(open(&db).await).open().await.unwrap();
            let tids = three_commits(&writer).await;
            // The watcher began nothing since it subscribed: only the notifications its
            // listening connection heard can have told it.
            let mut heard = Vec::new();
            while heard.len() < tids.len() {
                match next_change(&mut feed).await {
                    Change::Committed { tid, oids, .. } => {
                        assert_eq!(oids, vec![Oid::ROOT]);
                        heard.push(tid);
                    }
                    other => panic!("the feed said {other:?}"),
                }
            }
            assert_eq!(heard, tids);
            writer.close().await.unwrap();
            watcher.close().await.unwrap();
        });
    }
}

#[test]
fn without_listening_other_handles_commits_arrive_with_the_next_begin() {
    for rt in RUNTIMES {
        let db = common::postgres::database();
        common::run_on(rt, async move {
            let opts = PostgresOptions::default()
                .durability(Durability::Eventual)
                .listen(false);
            let quiet = PostgresStorage::open(&db.conninfo(), opts).await.unwrap();
            let watcher: Db<Counter> = DbBuilder::storage(quiet).open().await.unwrap();
            let mut feed = watcher.changes();
            let writer: Db<Counter> = DbBuilder::storage(open(&db).await).open().await.unwrap();
            let tids = three_commits(&writer).await;
            // Long enough for a notification to have arrived, had anyone listened.
            blocking::unblock(|| std::thread::sleep(std::time::Duration::from_millis(300))).await;
            assert!(
                feed.next().now_or_never().is_none(),
                "news without listening or a begin"
            );
            // The begin asks the database, and the feed hears of all three.
            let tx = watcher.begin().await.unwrap();
            assert_eq!(tx.root().await.unwrap().get(), 3);
            drop(tx);
            for want in tids {
                match next_change(&mut feed).await {
                    Change::Committed { tid, .. } => assert_eq!(tid, want),
                    other => panic!("the feed said {other:?}"),
                }
            }
            writer.close().await.unwrap();
            watcher.close().await.unwrap();
        });
    }
}

#[test]
fn the_listening_connection_comes_back_after_a_server_restart() {
    let server = Arc::new(PgServer::start());
    let db = server.database();
    common::run_on("tokio-multi-thread", async move {
        let watcher: Db<Counter> = DbBuilder::storage(open(&db).await).open().await.unwrap();
        let mut feed = watcher.changes();
        let s = server.clone();
        blocking::unblock(move || {
            s.stop();
            s.start_again();
        })
        .await;
        // A handle opened after the restart commits; the watcher, which began nothing,
        // hears of it once its listener has connected again (its catch-up after the
        // new LISTEN may be what tells it). The second round comes while it listens:
        // only notifications can tell of that one.
        let writer: Db<Counter> = DbBuilder::storage(open(&db).await).open().await.unwrap();
        for _ in 0..2 {
            let tids = three_commits(&writer).await;
            let mut heard = Vec::new();
            while heard.len() < tids.len() {
                match next_change(&mut feed).await {
                    Change::Committed { tid, .. } => heard.push(tid),
                    other => panic!("the feed said {other:?}"),
                }
            }
            assert_eq!(heard, tids);
        }
        writer.close().await.unwrap();
        watcher.close().await.unwrap();
    });
}

/// A history-free handle on `db`.
async fn open_history_free(db: &PgDatabase) -> PostgresStorage {
    let opts = PostgresOptions::default()
        .durability(Durability::Eventual)
        .history_free(true);
    PostgresStorage::open(&db.conninfo(), opts)
        .await
        .expect("open history-free")
}

/// Rows of `durus_object` in `db`, counted on a connection of the test's own.
async fn object_rows(db: &PgDatabase) -> i64 {
    let conninfo = db.conninfo();
    blocking::unblock(move || {
        let mut c = postgres::Client::connect(&conninfo, postgres::NoTls).expect("connect");
        c.query_one("SELECT count(*) FROM durus_object", &[])
            .expect("count the rows")
            .get(0)
    })
    .await
}

#[test]
fn history_free_keeps_only_current_states_and_a_stale_read_conflicts() {
    for rt in RUNTIMES {
        let kept = common::postgres::database();
        let free = common::postgres::database();
        common::run_on(rt, async move {
            // The same ten commits on both kinds of database.
            for (db, history_free) in [(&kept, false), (&free, true)] {
                let storage = match history_free {
                    true => open_history_free(db).await,
                    false => open(db).await,
                };
                let d: Db<Counter> = DbBuilder::storage(storage).open().await.unwrap();
                for _ in 0..10 {
                    let mut tx = d.begin().await.unwrap();
                    tx.root_mut().await.unwrap().increment();
                    tx.commit().await.unwrap();
                }
                d.close().await.unwrap();
            }
            assert_eq!(object_rows(&kept).await, 11, "every version kept");
            assert_eq!(object_rows(&free).await, 1, "only the current state");

            // A read at a snapshot older than the root's only version gets no older
            // version: it conflicts (a storage read; a Db's cache may still hold the
            // version its snapshot sees, and serves it). A Db retries on a new snapshot.
            let reader: Db<Counter> = DbBuilder::storage(open_history_free(&free).await)
                .open()
                .await
                .unwrap();
            let writer: Db<Counter> = DbBuilder::storage(open_history_free(&free).await)
                .open()
                .await
                .unwrap();
            let stale = open_history_free(&free).await;
            let snapshot = stale.last_tid().await.unwrap();
            assert!(stale.load_at(Oid::ROOT, snapshot).await.is_ok());
            let mut tx = writer.begin().await.unwrap();
            tx.root_mut().await.unwrap().increment();
            tx.commit().await.unwrap();
            stale.catch_up().await.unwrap();
            match stale.load_at(Oid::ROOT, snapshot).await {
                Err(Error::Conflict { oids }) => assert_eq!(oids, vec![Oid::ROOT]),
                other => panic!("a stale read gave {other:?}"),
            }
            match stale.load_many(vec![Oid::ROOT], Some(snapshot)).await {
                Err(Error::Conflict { oids }) => assert_eq!(oids, vec![Oid::ROOT]),
                other => panic!("a stale read of many gave {other:?}"),
            }
            // Newest reads are served.
            assert!(stale.load(Oid::ROOT).await.is_ok());
            stale.close().await.unwrap();
            let seen = reader
                .transact(|tx| Box::pin(async move { Ok(tx.root().await?.get()) }))
                .await
                .unwrap();
            assert_eq!(seen, 11);
            // The change feed and `transactions` still name what each transaction wrote.
            let storage = open_history_free(&free).await;
            let txs = storage.transactions(durus::record::Tid::ZERO).await.unwrap();
            assert_eq!(txs.len(), 12, "the root's creation and eleven increments");
            assert!(txs.iter().all(|t| t.oids == vec![Oid::ROOT]), "{txs:?}");
            storage.close().await.unwrap();
            reader.close().await.unwrap();
            writer.close().await.unwrap();
        });
    }
}

#[test]
fn a_database_keeps_the_history_mode_it_was_made_with() {
    let kept = common::postgres::database();
    let free = common::postgres::database();
    common::run_on("smol", async move {
        open(&kept).await.close().await.unwrap();
        open_history_free(&free).await.close().await.unwrap();
        for (db, history_free) in [(&kept, true), (&free, false)] {
            let opts = PostgresOptions::default().history_free(history_free);
            match PostgresStorage::open(&db.conninfo(), opts).await {
                Err(Error::Invalid(why)) => assert!(why.contains("history"), "{why}"),
                Err(e) => panic!("the other mode gave {e}"),
                Ok(_) => panic!("opened with the other history mode"),
            }
        }
    });
}

#[test]
fn a_history_free_pack_drops_what_is_unreachable() {
    let db = common::postgres::database();
    common::run_on("smol", async move {
        let s = open_history_free(&db).await;
        let [child, other] = s.new_oids(2).await.unwrap()[..] else {
            panic!("two oids")
        };
        let commit = |refs: Vec<Oid>, more: Option<Oid>| {
            let s = &s;
            async move {
                s.catch_up().await.unwrap();
                let snapshot = s.last_tid().await.unwrap();
                let mut records = vec![Record::new(Oid::ROOT, b"root".to_vec(), refs)];
                records.extend(more.map(|o| Record::new(o, b"leaf".to_vec(), vec![])));
                s.commit(CommitRequest {
                    snapshot,
                    records,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        };
        commit(vec![child, other], Some(child)).await;
        commit(vec![child, other], Some(other)).await;
        // `other` is unreachable from here on; `child` stays.
        commit(vec![child], None).await;
        assert_eq!(object_rows(&db).await, 3);
        let report = s.pack(durus::journal::PackOptions::default()).await.unwrap();
        assert_eq!(report.objects, 2, "{report:?}");
        assert_eq!(object_rows(&db).await, 2);
        assert!(s.load(child).await.is_ok());
        assert!(matches!(s.load(other).await, Err(Error::NotFound { oid }) if oid == other));
        s.close().await.unwrap();
    });
}

#[test]
fn a_transaction_table_made_before_the_oid_lists_gains_the_column() {
    let db = common::postgres::database();
    let conninfo = db.conninfo();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&conninfo, postgres::NoTls).expect("connect");
        c.batch_execute("CREATE TABLE durus_tx (tid BIGINT PRIMARY KEY, ts BIGINT NOT NULL)")
            .expect("the old table");
    })
    .join()
    .unwrap();
    common::run_on("smol", async move {
        let d: Db<Counter> = DbBuilder::storage(open_history_free(&db).await)
            .open()
            .await
            .unwrap();
        let mut tx = d.begin().await.unwrap();
        tx.root_mut().await.unwrap().increment();
        tx.commit().await.unwrap();
        let txs = d.storage().transactions(durus::record::Tid::ZERO).await.unwrap();
        assert!(txs.iter().all(|t| t.oids == vec![Oid::ROOT]), "{txs:?}");
        d.close().await.unwrap();
    });
}
