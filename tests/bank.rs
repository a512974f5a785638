//! The bank: 32 concurrent tasks moving money between accounts with the retry helper.
//! The total is conserved in every snapshot, no update is lost, and write skew is
//! rejected.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::Rng;
use durus::{Db, Durability, Error, Persistent, Ref};
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

async fn open(dir: &std::path::Path) -> (Db<Bank>, Vec<Ref<Account>>) {
    let db: Db<Bank> = Db::builder(dir.join("bank.durus"))
        .durability(Durability::Eventual)
        .open()
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(tx.insert(Account { balance: START }).await.unwrap());
    }
    tx.root_mut().await.unwrap().accounts = accounts.clone();
    tx.commit().await.unwrap();
    (db, accounts)
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

#[test]
fn bank_on_tokio_multi_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (db, accounts) = open(dir.path()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let audit = tokio::spawn(auditor(db.clone(), stop.clone()));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| tokio::spawn(transfers(db.clone(), accounts.clone(), 100 + t)))
            .collect();
        let mut nets = Vec::new();
        for t in tasks {
            nets.push(t.await.unwrap());
        }
        stop.store(true, Ordering::Release);
        assert!(audit.await.unwrap() >= 1);
        final_check(&db, &accounts, nets).await;
        db.close().await.unwrap();
        // And after reopening.
        let db: Db<Bank> = Db::open(dir.path().join("bank.durus")).await.unwrap();
        let tx = db.begin().await.unwrap();
        let mut total = 0;
        for &a in &tx.root().await.unwrap().accounts {
            total += tx.get(a).await.unwrap().balance;
        }
        assert_eq!(total, START * ACCOUNTS as i64);
    });
}

#[test]
fn bank_on_smol() {
    smol::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (db, accounts) = open(dir.path()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let audit = smol::spawn(auditor(db.clone(), stop.clone()));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| smol::spawn(transfers(db.clone(), accounts.clone(), 200 + t)))
            .collect();
        let mut nets = Vec::new();
        for t in tasks {
            nets.push(t.await);
        }
        stop.store(true, Ordering::Release);
        assert!(audit.await >= 1);
        final_check(&db, &accounts, nets).await;
        db.close().await.unwrap();
    });
}

#[test]
fn bank_write_skew_is_rejected() {
    common::on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let (db, accounts) = open(dir.path()).await;
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
