//! The bank: 32 concurrent tasks moving money between accounts with the retry helper.
//! The total is conserved in every snapshot, no update is lost, and write skew is
//! rejected.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::storages::{Kind, Store};
use common::Rng;
use durus::{Db, DbBuilder, Error, Persistent, Ref};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "bank.Bank")]
struct Bank {
    accounts: Vec<Ref<Account>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "bank.Account")]
struct Account {
    balance: i64,
}

const ACCOUNTS: usize = 16;
const START: i64 = 1_000;
const TASKS: u64 = 32;
const TRANSFERS: u64 = 25;

async fn open(store: &Store) -> (Db<Bank>, Vec<Ref<Account>>) {
    let builder = DbBuilder::storage_arc(store.open().await);
    // SQLite's and PostgreSQL's loads always go through the blocking pool (they cannot
    // tell a load that needs no wait), and a shared file's or a server's client begins
    // every transaction by catching up (reading the file's new commits, a round trip),
    // so on a loaded machine a retried transfer spends longer between its begin and its
    // commit than the batched commits of the others, and needs more attempts than the
    // default 20 to get through. The invariants checked are the same.
    let slow = match store.kind {
        Kind::SharedFile | Kind::Network => true,
        #[cfg(feature = "sqlite")]
        Kind::Sqlite => true,
        #[cfg(feature = "postgres")]
        Kind::Postgres => true,
        Kind::Memory | Kind::File => false,
    };
    let builder = if slow {
        builder.max_attempts(1_000)
    } else {
        builder
    };
    let db: Db<Bank> = builder.open().await.unwrap();
    let accounts = fill(&db).await;
    (db, accounts)
}

/// Creates the accounts under the root.
async fn fill(db: &Db<Bank>) -> Vec<Ref<Account>> {
    let mut tx = db.begin().await.unwrap();
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(tx.insert(Account { balance: START }).await.unwrap());
    }
    tx.root_mut().await.unwrap().accounts = accounts.clone();
    tx.commit().await.unwrap();
    accounts
}

/// Runs the transfer tasks and an auditor, spawned by `spawn`; returns each task's net
/// changes.
async fn run_bank<J>(
    db: &Db<Bank>,
    accounts: &[Ref<Account>],
    seed: u64,
    spawn: impl Fn(futures::future::BoxFuture<'static, Vec<i64>>) -> J,
    spawn_audit: impl FnOnce(futures::future::BoxFuture<'static, u64>) -> futures::future::BoxFuture<'static, u64>,
) -> Vec<Vec<i64>>
where
    J: std::future::Future<Output = Vec<i64>>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let audit = spawn_audit(Box::pin(auditor(db.clone(), stop.clone())));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| spawn(Box::pin(transfers(db.clone(), accounts.to_vec(), seed + t))))
        .collect();
    let mut nets = Vec::new();
    for t in tasks {
        nets.push(t.await);
    }
    stop.store(true, Ordering::Release);
    assert!(audit.await >= 1);
    nets
}

/// One task's transfers; returns the net change it committed per account.
async fn transfers(db: Db<Bank>, accounts: Vec<Ref<Account>>, seed: u64) -> Vec<i64> {
    let mut rng = Rng::with_seed(seed);
    let mut net = vec![0i64; ACCOUNTS];
    for _ in 0..TRANSFERS {
        let from = rng.u64(..ACCOUNTS as u64) as usize;
        let to = (from + 1 + rng.u64(..ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
        let amount = 1 + rng.u64(..300) as i64;
        let (a, b) = (accounts[from], accounts[to]);
        let moved = db
            .transact(|tx| {
                Box::pin(async move {
                    if tx.get(a).await?.balance < amount {
                        return Ok(false);
                    }
                    tx.get_mut(a).await?.balance -= amount;
                    tx.get_mut(b).await?.balance += amount;
                    Ok(true)
                })
            })
            .await
            .unwrap();
        if moved {
            net[from] -= amount;
            net[to] += amount;
        }
    }
    net
}

/// Reads every account in one snapshot, again and again, until told to stop; every
/// snapshot must hold the whole total. Returns how many snapshots it checked.
async fn auditor(db: Db<Bank>, stop: Arc<AtomicBool>) -> u64 {
    let mut checked = 0;
    loop {
        let done = stop.load(Ordering::Acquire);
        let tx = db.begin().await.unwrap();
        let bank = tx.root().await.unwrap();
        let mut total = 0;
        for &a in &bank.accounts {
            let bal = tx.get(a).await.unwrap().balance;
            assert!(bal >= 0, "an account went negative");
            total += bal;
        }
        assert_eq!(
            total,
            START * ACCOUNTS as i64,
            "snapshot {} lost money",
            tx.snapshot()
        );
        tx.commit().await.unwrap();
        checked += 1;
        if done {
            return checked;
        }
        // Reads that hit the cache never wait, so give the transfer tasks a turn.
        common::yield_now().await;
    }
}

async fn final_check(db: &Db<Bank>, accounts: &[Ref<Account>], nets: Vec<Vec<i64>>) {
    let tx = db.begin().await.unwrap();
    for (i, &a) in accounts.iter().enumerate() {
        let want = START + nets.iter().map(|n| n[i]).sum::<i64>();
        assert_eq!(
            tx.get(a).await.unwrap().balance,
            want,
            "account {i}: an update was lost"
        );
    }
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

async fn tokio_join<T: Send + 'static>(f: futures::future::BoxFuture<'static, T>) -> T {
    tokio::spawn(f).await.unwrap()
}

fn bank_on_tokio_multi_thread(kind: Kind) {
    tokio_rt().block_on(async {
        let store = Store::new(kind);
        let (db, accounts) = open(&store).await;
        let nets = run_bank(&db, &accounts, 100, tokio_join, |f| Box::pin(tokio_join(f))).await;
        final_check(&db, &accounts, nets).await;
        db.close().await.unwrap();
        // And after reopening.
        if store.reopens() {
            let db: Db<Bank> = DbBuilder::storage_arc(store.open().await).open().await.unwrap();
            let tx = db.begin().await.unwrap();
            let mut total = 0;
            for &a in &tx.root().await.unwrap().accounts {
                total += tx.get(a).await.unwrap().balance;
            }
            assert_eq!(total, START * ACCOUNTS as i64);
        }
    });
}

fn bank_on_smol(kind: Kind) {
    smol::block_on(async {
        let store = Store::new(kind);
        let (db, accounts) = open(&store).await;
        let nets = run_bank(&db, &accounts, 200, smol::spawn, |f| Box::pin(smol::spawn(f))).await;
        final_check(&db, &accounts, nets).await;
        db.close().await.unwrap();
    });
}

/// The bank through `ClientStorage` and a server on a journal file: two `Db`s (as two
/// client processes would have) share the work, so their commits conflict through
/// the server and merge nothing; the total is conserved and no transfer is lost.
#[cfg(feature = "server")]
async fn bank_over_a_server<J>(
    seed: u64,
    spawn: impl Fn(futures::future::BoxFuture<'static, Vec<i64>>) -> J + Copy,
    spawn_audit: impl Fn(futures::future::BoxFuture<'static, u64>) -> futures::future::BoxFuture<'static, u64>,
) where
    J: std::future::Future<Output = Vec<i64>>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.durus");
    let server = common::server::TestServer::file(&path, Default::default());
    // Two Dbs conflict with each other through the server, which no lock of either
    // one prevents, so transfers may need many attempts (as between processes).
    let one: Db<Bank> = durus::DbBuilder::storage(server.client().await)
        .max_attempts(10_000)
        .open()
        .await
        .unwrap();
    let two: Db<Bank> = durus::DbBuilder::storage(server.client().await)
        .max_attempts(10_000)
        .open()
        .await
        .unwrap();
    let accounts = fill(&one).await;
    let both = async {
        futures::join!(
            run_bank(&one, &accounts, seed, spawn, &spawn_audit),
            run_bank(&two, &accounts, seed + 1000, spawn, &spawn_audit)
        )
    };
    let (mut nets, more) = both.await;
    nets.extend(more);
    // Every transfer either Db acknowledged is there, through either Db.
    final_check(&one, &accounts, nets.clone()).await;
    final_check(&two, &accounts, nets).await;
    assert!(
        server.server.stats().conflicts > 0,
        "the two Dbs never conflicted"
    );
    drop((one, two));
    server.stop();
    let db: Db<Bank> = Db::open(&path).await.unwrap();
    let tx = db.begin().await.unwrap();
    let mut total = 0;
    for &a in &tx.root().await.unwrap().accounts {
        total += tx.get(a).await.unwrap().balance;
    }
    assert_eq!(total, START * ACCOUNTS as i64);
}

#[cfg(feature = "server")]
#[test]
fn bank_over_a_server_on_tokio_multi_thread() {
    tokio_rt().block_on(bank_over_a_server(300, tokio_join, |f| Box::pin(tokio_join(f))));
}

#[cfg(feature = "server")]
#[test]
fn bank_over_a_server_on_smol() {
    smol::block_on(bank_over_a_server(400, smol::spawn, |f| Box::pin(smol::spawn(f))));
}

fn bank_write_skew_is_rejected(kind: Kind) {
    common::on_all_runtimes(|_| async move {
        let store = Store::new(kind);
        let (db, accounts) = open(&store).await;
        // Rule: a customer's two accounts together may not go below zero. Two withdrawals
        // each check the rule on the same snapshot and each take from a different account.
        let (a, b) = (accounts[0], accounts[1]);
        let mut t1 = db.begin().await.unwrap();
        let mut t2 = db.begin().await.unwrap();
        for (t, from) in [(&mut t1, a), (&mut t2, b)] {
            let sum = t.get(a).await.unwrap().balance + t.get(b).await.unwrap().balance;
            assert!(sum - 1_500 >= 0);
            t.get_mut(from).await.unwrap().balance -= 1_500;
        }
        t1.commit().await.unwrap();
        assert!(matches!(t2.commit().await, Err(Error::Conflict { .. })));
        let tx = db.begin().await.unwrap();
        let sum = tx.get(a).await.unwrap().balance + tx.get(b).await.unwrap().balance;
        assert_eq!(sum, 500);
    });
}

// One test per storage kind (memory, the journal file, SQLite, PostgreSQL) for each body
// above.
crate::storage_tests! {
    bank_on_tokio_multi_thread => super::bank_on_tokio_multi_thread;
    bank_on_smol => super::bank_on_smol;
    bank_write_skew_is_rejected => super::bank_write_skew_is_rejected;
}
