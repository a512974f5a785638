//! Closing a database while commits are queued: they all land (or fail) before the file
//! closes, a failure among them is reported by `close` too, and commits that come after
//! `close` began are refused with `Closed`. Also: encoding runs off the caller's task,
//! and a commit whose encoding fails fails alone.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{on_all_runtimes, SyncHook};
use durus::journal::io::MemFile;
use durus::journal::{Journal, JournalOptions};
use durus::record::Tid;
use durus::storage::FileStorage;
use durus::{Db, DbBuilder, Error, Persistent, Ref};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "test.CloseRoot")]
struct Root {
    items: Vec<Ref<Item>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, Persistent)]
#[durus(name = "test.CloseItem")]
struct Item {
    n: u64,
}

/// A value whose serialization fails (as a map with non-string keys fails in some
/// formats): its commit must fail alone.
#[derive(Clone, Debug, Deserialize, Persistent)]
#[durus(name = "test.Unencodable")]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be encoded"))
    }
}

const QUEUED: u64 = 48;

/// Makes `n` items with the root listing them, then one transaction per item that
/// rewrites it (each on its own oid, so none waits on another's lock).
async fn setup(db: &Db<Root>, n: u64) -> Vec<Ref<Item>> {
    let mut tx = db.begin().await.unwrap();
    let mut items = Vec::new();
    for i in 0..n {
        items.push(tx.insert(Item { n: i }).await.unwrap());
    }
    tx.root_mut().await.unwrap().items = items.clone();
    tx.commit().await.unwrap();
    items
}

/// Starts one commit per item and polls each once, which puts it in the storage's
/// commit queue; returns the commits still to be awaited.
async fn queue_commits(
    db: &Db<Root>,
    items: &[Ref<Item>],
) -> Vec<BoxFuture<'static, durus::Result<durus::record::Committed>>> {
    let mut pending = Vec::new();
    for &r in items {
        let mut tx = db.begin().await.unwrap();
        tx.update(r, |i| i.n += 1000).await.unwrap();
        let mut fut = tx.commit().boxed();
        // Poll once by hand: the first poll takes the (free) oid lock, encodes nothing
        // yet and queues the commit; it cannot be durable already, except by a rare
        // fast writer, which is fine too.
        match futures::poll!(&mut fut) {
            std::task::Poll::Ready(r) => pending.push(futures::future::ready(r).boxed()),
            std::task::Poll::Pending => pending.push(fut),
        }
    }
    pending
}

#[test]
fn close_lands_every_queued_commit_before_the_file_closes() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("close.durus");
        let db: Db<Root> = Db::open(&path).await.unwrap();
        let items = setup(&db, QUEUED).await;
        let last_before = db.storage().last_tid().await.unwrap();
        let pending = queue_commits(&db, &items).await;

        db.close().await.unwrap();
        // Every queued commit has its answer by now: nothing was left to finish later.
        let mut tids = Vec::new();
        for fut in pending {
            match fut.now_or_never() {
                Some(Ok(c)) => tids.push(c.tid),
                other => panic!("a queued commit was not done when close returned: {other:?}"),
            }
        }
        tids.sort();
        let expected: Vec<Tid> = (1..=QUEUED).map(|i| Tid(last_before.0 + i)).collect();
        assert_eq!(tids, expected, "each queued commit landed once, in order");

        // A commit after close is refused, and so is a new transaction's commit.
        let late = async {
            let mut tx = db.begin_at(last_before).await?;
            tx.put(items[0], Item { n: 7 });
            tx.commit().await
        };
        assert!(matches!(late.await, Err(Error::Closed)));

        let db: Db<Root> = Db::open(&path).await.unwrap();
        let tx = db.begin().await.unwrap();
        for (i, &r) in items.iter().enumerate() {
            assert_eq!(tx.get(r).await.unwrap().n, i as u64 + 1000);
        }
        assert_eq!(
            db.storage().last_tid().await.unwrap(),
            Tid(last_before.0 + QUEUED)
        );
        db.close().await.unwrap();
        durus::journal::Journal::verify_path(&path).unwrap();
    });
}

#[test]
fn close_reports_a_failure_among_the_queued_commits() {
    on_all_runtimes(|_| async {
        let mem = MemFile::new();
        let fail = Arc::new(AtomicBool::new(false));
        let armed = fail.clone();
        let io = SyncHook {
            inner: mem.clone(),
            on_writes: false,
            hook: move || match armed.load(Ordering::SeqCst) {
                true => Err(std::io::Error::other("injected fsync failure")),
                false => Ok(()),
            },
        };
        let fs = FileStorage::open_io(Box::new(io), JournalOptions::default())
            .await
            .unwrap();
        let db: Db<Root> = DbBuilder::storage(fs).open().await.unwrap();
        let items = setup(&db, 8).await;
        let last_before = db.storage().last_tid().await.unwrap();

        fail.store(true, Ordering::SeqCst);
        let pending = queue_commits(&db, &items).await;
        let closed = db.close().await;
        assert!(
            matches!(closed, Err(Error::Poisoned { .. })),
            "close must report that queued commits failed: {closed:?}"
        );
        for fut in pending {
            match fut.now_or_never() {
                Some(Err(Error::Io(_) | Error::Poisoned { .. })) => {}
                other => panic!("a commit whose sync failed answered {other:?}"),
            }
        }

        // Reopening recovers a prefix: everything acknowledged, and of the failed
        // commits at most what happened to reach the file, in order.
        fail.store(false, Ordering::SeqCst);
        let j = Journal::open_io(Box::new(mem), JournalOptions::default()).unwrap();
        let last = j.last_tid().unwrap();
        assert!(last >= last_before && last.0 <= last_before.0 + 8, "{last:?}");
        let landed = last.0 - last_before.0;
        let db: Db<Root> = DbBuilder::storage(durus::storage::Unblocked::new(j))
            .open()
            .await
            .unwrap();
        let tx = db.begin().await.unwrap();
        for (i, &r) in items.iter().enumerate() {
            let n = tx.get(r).await.unwrap().n;
            let bumped = (i as u64) < landed;
            assert_eq!(n, i as u64 + if bumped { 1000 } else { 0 }, "item {i}");
        }
    });
}

#[test]
fn an_encoding_failure_fails_only_its_own_commit() {
    on_all_runtimes(|_| async {
        let (_mem, fs) = common::mem_file_storage().await;
        let db: Db<Root> = DbBuilder::storage(fs).open().await.unwrap();
        let items = setup(&db, 4).await;
        let mut pending = queue_commits(&db, &items[..2]).await;
        let mut bad = db.begin().await.unwrap();
        bad.insert(Unencodable).await.unwrap();
        let bad = bad.commit();
        pending.extend(queue_commits(&db, &items[2..]).await);
        match bad.await {
            Err(Error::Codec { reason, .. }) => assert!(reason.contains("refuses"), "{reason}"),
            other => panic!("an unencodable value committed as {other:?}"),
        }
        for fut in pending {
            fut.await.unwrap();
        }
        let tx = db.begin().await.unwrap();
        for (i, &r) in items.iter().enumerate() {
            assert_eq!(tx.get(r).await.unwrap().n, i as u64 + 1000);
        }
    });
}

/// Encoding happens on a thread of the blocking pool, never on the task that commits.
#[test]
fn small_commits_encode_off_the_callers_thread() {
    #[derive(Clone, Debug, Deserialize, Persistent)]
    #[durus(name = "test.Witness")]
    struct Witness;
    static ENCODED_ON: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    impl Serialize for Witness {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let name = std::thread::current().name().unwrap_or("<unnamed>").to_string();
            ENCODED_ON.lock().unwrap().push(name);
            s.serialize_unit_struct("Witness")
        }
    }
    common::run_on("futures-executor", async {
        let (_mem, fs) = common::mem_file_storage().await;
        let db: Db<Root> = DbBuilder::storage(fs).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.insert(Witness).await.unwrap();
        tx.commit().await.unwrap();
    });
    let on = ENCODED_ON.lock().unwrap().clone();
    assert_eq!(on.len(), 1, "{on:?}");
    assert!(
        on[0].starts_with("blocking-"),
        "encoded on {on:?}, not the blocking pool"
    );
}
