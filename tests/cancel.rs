//! Dropping read and commit futures at arbitrary await points leaves the database
//! consistent and usable, and a commit either lands whole or not at all.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use common::storages::{Kind, Store};
use common::{on_all_runtimes, yield_now, Rng};
use durus::journal::JournalOptions;
use durus::object::decode;
use durus::record::{Changes, CommitRequest, Committed, Loaded, Tid, TxInfo};
use durus::storage::{FileStorage, MemoryStorage, Storage};
use durus::{Change, Db, DbBuilder, Oid, Persistent, Ref, Result};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "cancel.Root")]
struct Root {
    slots: Vec<Ref<Slot>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "cancel.Slot")]
struct Slot {
    value: i64,
}

const SLOTS: usize = 6;
const TOTAL: i64 = 600;

/// Polls `fut` at most `polls` times (yielding to the runtime in between, so blocking-pool
/// work really progresses), then drops it. Returns its output if it finished.
async fn poll_then_drop<F: Future>(fut: F, polls: u64) -> Option<F::Output> {
    let mut fut = Box::pin(fut);
    for _ in 0..polls {
        let r =
            std::future::poll_fn(|cx: &mut Context<'_>| Poll::Ready(Pin::as_mut(&mut fut).poll(cx))).await;
        if let Poll::Ready(v) = r {
            return Some(v);
        }
        yield_now().await;
    }
    None
}

/// Runs the rounds against `storage` (a `Db` on it, and cold ones now and then);
/// returns the tid of the setup commit and how many of the rounds' commits landed.
async fn drop_anywhere(storage: Arc<dyn Storage>, rt: &str) -> (u64, u64) {
    let db: Db<Root> = DbBuilder::storage_arc(storage.clone()).open().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let mut slots = Vec::new();
    for _ in 0..SLOTS {
        slots.push(
            tx.insert(Slot {
                value: TOTAL / SLOTS as i64,
            })
            .await
            .unwrap(),
        );
    }
    tx.root_mut().await.unwrap().slots = slots.clone();
    let start = tx.commit().await.unwrap().tid;

    let mut rng = Rng::with_seed(7 + rt.len() as u64);
    let (mut landed, mut dropped) = (0, 0);
    for round in 0..150 {
        if round % 10 == 0 {
            // A cold Db on the same storage: its reads miss the cache, and dropping
            // them half way must leave it consistent too.
            let cold = DbBuilder::<Root>::storage_arc(storage.clone())
                .open()
                .await
                .unwrap();
            let tx = cold.begin().await.unwrap();
            for &s in &slots {
                let polls = rng.u64(..4);
                let _ = poll_then_drop(tx.get(s), polls).await;
            }
            let mut total = 0;
            for &s in &slots {
                total += tx.get(s).await.unwrap().value;
            }
            assert_eq!(total, TOTAL);
            assert_eq!(cold.stats().oid_locks, 0);
        }
        let before = storage.last_tid().await.unwrap();
        let (from, to) = (rng.u64(..SLOTS as u64) as usize, rng.u64(..SLOTS as u64) as usize);
        let amount = rng.u64(..50) as i64;
        // Every fourth round runs to the end and every fourth is dropped before its
        // first poll, so both outcomes occur whatever the timing; the rest stop after
        // a random number of polls.
        let polls = match round % 4 {
            0 => u64::MAX,
            1 => 0,
            _ => 1 + rng.u64(..40),
        };
        let work = async {
            let mut tx = db.begin().await?;
            tx.get_mut(slots[from]).await?.value -= amount;
            tx.get_mut(slots[to]).await?.value += amount;
            tx.commit().await
        };
        match poll_then_drop(work, polls).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("round {round}: {e}"),
            None => dropped += 1,
        }
        // A commit that got to the storage finishes there. Commits are applied in the
        // order they are made, so an empty one made now returns after it.
        storage.commit(CommitRequest::default()).await.unwrap();
        let after = storage.last_tid().await.unwrap();
        assert!(after.0 - before.0 <= 1);
        landed += after.0 - before.0;

        // What the Db serves (cached or not) is exactly what the storage holds at the
        // transaction's snapshot.
        let tx = db.begin().await.unwrap();
        // A commit dropped while the storage wrote it, which landed anyway, is already
        // visible to the Db's next transaction.
        assert_eq!(tx.snapshot(), after, "round {round}: the Db did not catch up");
        let mut total = 0;
        for &s in &slots {
            let via_db = tx.get(s).await.unwrap().value;
            let stored = storage.load_at(s.oid(), tx.snapshot()).await.unwrap();
            let via_storage = decode::<Slot>(s.oid(), &stored.record.data).unwrap().value;
            assert_eq!(
                via_db, via_storage,
                "round {round}: the cache disagrees with the journal"
            );
            total += via_db;
        }
        assert_eq!(total, TOTAL, "round {round}: a commit landed in part");
        assert_eq!(db.stats().oid_locks, 0);
    }
    eprintln!("{rt}: {landed} landed, {dropped} dropped");
    assert!(dropped >= 150 / 4, "only {dropped} futures were dropped");
    assert!(landed >= 150 / 4, "only {landed} commits landed");
    (start.0, landed)
}

#[test]
fn dropping_reads_and_commits_anywhere_keeps_the_db_whole() {
    on_all_runtimes(|rt| async move {
        let (m, storage) = common::mem_file_storage().await;
        let (start, landed) = drop_anywhere(Arc::new(storage.clone()), rt).await;
        storage.close().await.unwrap();
        let reopened = FileStorage::open_io(Box::new(m), JournalOptions::default())
            .await
            .unwrap();
        assert_eq!(reopened.last_tid().await.unwrap().0, start + landed);
    });
}

/// The same on every storage kind, each reopened (where its data outlives a close)
/// to count what landed.
fn dropping_reads_and_commits_anywhere_keeps_every_storage_whole(kind: Kind) {
    on_all_runtimes(|rt| async move {
        let store = Store::new(kind);
        let storage = store.open().await;
        let (start, landed) = drop_anywhere(storage.clone(), rt).await;
        assert_eq!(storage.last_tid().await.unwrap().0, start + landed);
        if store.reopens() {
            storage.close().await.unwrap();
            drop(storage);
            let reopened = store.open().await;
            assert_eq!(reopened.last_tid().await.unwrap().0, start + landed);
        }
    });
}

crate::storage_tests! {
    dropping_reads_and_commits_anywhere_keeps_every_storage_whole => super::dropping_reads_and_commits_anywhere_keeps_every_storage_whole;
}

/// The same through `ClientStorage` and a server: a dropped request still goes out
/// (in order), and a commit it carried lands or not, whole.
#[cfg(feature = "server")]
#[test]
fn dropping_requests_to_a_server_anywhere_keeps_the_db_whole() {
    on_all_runtimes(|rt| async move {
        let (m, storage) = common::mem_file_storage().await;
        let dir = tempfile::tempdir().unwrap();
        let server = common::server::TestServer::start(
            Arc::new(storage),
            Default::default(),
            common::server::socket_next_to(&dir.path().join("cancel.durus")),
        );
        let client = server.client().await;
        let (start, landed) = drop_anywhere(Arc::new(client), rt).await;
        server.stop();
        let reopened = FileStorage::open_io(Box::new(m), JournalOptions::default())
            .await
            .unwrap();
        assert_eq!(reopened.last_tid().await.unwrap().0, start + landed);
    });
}

/// A [`MemoryStorage`] whose `transactions` calls never finish while the gate is shut:
/// a catch-up that can be caught half way.
struct GatedHistory {
    inner: MemoryStorage,
    shut: Arc<AtomicBool>,
}

impl Storage for GatedHistory {
    fn load(&self, oid: Oid) -> BoxFuture<'_, Result<Loaded>> {
        self.inner.load(oid)
    }
    fn load_at(&self, oid: Oid, snapshot: Tid) -> BoxFuture<'_, Result<Loaded>> {
        self.inner.load_at(oid, snapshot)
    }
    fn load_many(&self, oids: Vec<Oid>, snapshot: Option<Tid>) -> BoxFuture<'_, Result<Vec<Option<Loaded>>>> {
        self.inner.load_many(oids, snapshot)
    }
    fn new_oids(&self, n: u64) -> BoxFuture<'_, Result<Vec<Oid>>> {
        self.inner.new_oids(n)
    }
    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<Committed>> {
        self.inner.commit(req)
    }
    fn changes_since(&self, since: Tid) -> BoxFuture<'_, Result<Changes>> {
        self.inner.changes_since(since)
    }
    fn last_tid(&self) -> BoxFuture<'_, Result<Tid>> {
        self.inner.last_tid()
    }
    fn catch_up(&self) -> BoxFuture<'_, Result<Option<Tid>>> {
        self.inner.catch_up()
    }
    fn transactions(&self, after: Tid) -> BoxFuture<'_, Result<Vec<TxInfo>>> {
        if self.shut.load(Ordering::SeqCst) {
            return futures::future::pending().boxed();
        }
        self.inner.transactions(after)
    }
    fn tid_at_time(&self, timestamp: u64) -> BoxFuture<'_, Result<Tid>> {
        self.inner.tid_at_time(timestamp)
    }
    fn scan(&self) -> BoxStream<'static, Result<Loaded>> {
        self.inner.scan()
    }
    fn changes(&self) -> BoxStream<'static, Change> {
        self.inner.changes()
    }
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.close()
    }
}

#[test]
fn a_dropped_catch_up_is_done_again_by_the_next_begin() {
    on_all_runtimes(|_| async {
        let memory = MemoryStorage::new();
        let shut = Arc::new(AtomicBool::new(false));
        let gated = GatedHistory {
            inner: memory.clone(),
            shut: shut.clone(),
        };
        let a: Db<Root> = DbBuilder::storage(gated).open().await.unwrap();
        let b: Db<Root> = DbBuilder::storage(memory.clone()).open().await.unwrap();
        let mut stale = a.begin().await.unwrap();
        stale.root_mut().await.unwrap().slots.clear();
        // `b` commits behind `a`'s back, so `a`'s commit conflicts and `a` must catch up.
        let mut tx = b.begin().await.unwrap();
        tx.root_mut().await.unwrap().slots.clear();
        let theirs = tx.commit().await.unwrap().tid;
        assert!(stale.commit().await.unwrap_err().is_conflict());

        // The catch-up starts and is dropped while it waits for the storage.
        shut.store(true, Ordering::SeqCst);
        assert!(poll_then_drop(a.begin(), 3).await.is_none());
        shut.store(false, Ordering::SeqCst);

        let tx = a.begin().await.unwrap();
        assert_eq!(tx.snapshot(), theirs, "the next transaction did not catch up");
    });
}
