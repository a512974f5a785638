//! Pack through `Db` while tasks go on committing and reading: the bank stays whole,
//! snapshots older than a pack read what they read before, and history that a pack
//! dropped says so.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::Rng;
use durus::journal::{Journal, Keep, PackOptions, PackPhase};
use durus::{Db, Durability, Error, Persistent, Ref};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "pack_online.Bank")]
struct Bank {
    accounts: Vec<Ref<Account>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "pack_online.Account")]
struct Account {
    balance: i64,
    /// Replaced now and then, leaving the old memo unreachable.
    memo: Ref<Memo>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "pack_online.Memo")]
struct Memo {
    /// Makes every replaced memo a sizeable piece of garbage.
    text: Vec<u8>,
}

const ACCOUNTS: usize = 12;
const START: i64 = 1_000;
const TASKS: u64 = 6;
const TRANSFERS: u64 = 30;
const PACKS: usize = 4;

async fn open(path: &std::path::Path) -> (Db<Bank>, Vec<Ref<Account>>) {
    let db: Db<Bank> = Db::builder(path)
        .durability(Durability::Eventual)
        .open()
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        let memo = tx.insert(Memo { text: vec![7; 200] }).await.unwrap();
        let a = Account { balance: START, memo };
        accounts.push(tx.insert(a).await.unwrap());
    }
    tx.root_mut().await.unwrap().accounts = accounts.clone();
    tx.commit().await.unwrap();
    (db, accounts)
}

/// One task's transfers; each now and then also replaces the receiving account's
/// memo, so that packs have unreachable objects to drop. Returns the net change.
async fn transfers(db: Db<Bank>, accounts: Vec<Ref<Account>>, seed: u64) -> Vec<i64> {
    let mut rng = Rng::with_seed(seed);
    let mut net = vec![0i64; ACCOUNTS];
    for _ in 0..TRANSFERS {
        let from = rng.usize(..ACCOUNTS);
        let to = (from + 1 + rng.usize(..ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + rng.i64(0..200);
        let replace = rng.u8(..3) == 0;
        let (a, b) = (accounts[from], accounts[to]);
        let moved = db
            .transact(|tx| {
                Box::pin(async move {
                    if tx.get(a).await?.balance < amount {
                        return Ok(false);
                    }
                    tx.get_mut(a).await?.balance -= amount;
                    tx.get_mut(b).await?.balance += amount;
                    if replace {
                        let memo = tx
                            .insert(Memo {
                                text: vec![amount as u8; 200],
                            })
                            .await?;
                        tx.get_mut(b).await?.memo = memo;
                    }
                    Ok(true)
                })
            })
            .await;
        let moved = match moved {
            Ok(m) => m,
            Err(e) => {
                let snap = db.begin().await.unwrap().snapshot();
                let last = db.storage().last_tid().await.unwrap();
                panic!(
                    "transfer: {e}: begin at {snap:?}, storage at {last:?}, {:?}",
                    db.stats()
                );
            }
        };
        if moved {
            net[from] -= amount;
            net[to] += amount;
        }
        common::yield_now().await;
    }
    net
}

/// Every account's balance and memo, in one snapshot.
async fn memos(tx: &durus::Transaction<Bank>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for &a in &tx.root().await.unwrap().accounts {
        let memo = tx.get(a).await.unwrap().memo;
        out.push(tx.get(memo).await.unwrap().text.clone());
    }
    out
}

async fn balances(tx: &durus::Transaction<Bank>) -> Vec<i64> {
    let mut out = Vec::new();
    for &a in &tx.root().await.unwrap().accounts {
        out.push(tx.get(a).await.unwrap().balance);
    }
    out
}

/// Checks whole snapshots until told to stop.
async fn auditor(db: Db<Bank>, stop: Arc<AtomicBool>) -> u64 {
    let mut checked = 0;
    loop {
        let done = stop.load(Ordering::Acquire);
        let tx = db.begin().await.unwrap();
        let b = balances(&tx).await;
        let total = b.iter().try_fold(0i64, |t, x| t.checked_add(*x));
        assert_eq!(
            total,
            Some(START * ACCOUNTS as i64),
            "snapshot {} lost money: {b:?}",
            tx.snapshot()
        );
        checked += 1;
        if done {
            return checked;
        }
        // Cached reads never wait: let the transfers and the packer have the executor.
        blocking::unblock(|| std::thread::sleep(std::time::Duration::from_millis(2))).await;
    }
}

/// Packs again and again while the transfers run.
async fn packer(db: Db<Bank>, stop: Arc<AtomicBool>) -> usize {
    let mut packs = 0;
    while packs < PACKS || !stop.load(Ordering::Acquire) {
        let report = db.pack(PackOptions::default()).await.unwrap();
        assert!(!report.dry_run);
        packs += 1;
        if stop.load(Ordering::Acquire) && packs >= PACKS {
            break;
        }
        common::yield_now().await;
    }
    packs
}

#[test]
fn the_bank_stays_whole_while_packs_run() {
    common::on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.durus");
        let (db, accounts) = open(&path).await;
        // A transaction that lives across every pack reads exactly what it read first,
        // memos that became unreachable included.
        let old = db.begin().await.unwrap();
        let first = balances(&old).await;
        let stop = Arc::new(AtomicBool::new(false));
        let work =
            futures::future::join_all((0..TASKS).map(|t| transfers(db.clone(), accounts.clone(), 300 + t)));
        let audit = auditor(db.clone(), stop.clone());
        let packs = packer(db.clone(), stop.clone());
        let stopper = async {
            let nets = work.await;
            stop.store(true, Ordering::Release);
            nets
        };
        let (nets, checked, packs) = futures::future::join3(stopper, audit, packs).await;
        assert!(
            checked >= 1 && packs >= PACKS,
            "{rt}: {checked} audits, {packs} packs"
        );
        assert_eq!(balances(&old).await, first, "{rt}: an old snapshot changed");
        assert_eq!(
            memos(&old).await,
            vec![vec![7; 200]; ACCOUNTS],
            "{rt}: an old memo changed"
        );
        drop(old);
        let tx = db.begin().await.unwrap();
        let now = balances(&tx).await;
        for (i, b) in now.iter().enumerate() {
            assert_eq!(
                *b,
                START + nets.iter().map(|n| n[i]).sum::<i64>(),
                "{rt}: account {i}"
            );
        }
        let memos_now = memos(&tx).await;
        drop(tx);
        // Quiet now: one more pack keeps exactly the bank, its accounts and their memos.
        let report = db.pack(PackOptions::default()).await.unwrap();
        assert_eq!(report.objects, 1 + 2 * ACCOUNTS as u64, "{rt}");
        assert_eq!(report.transactions, 0);
        db.close().await.unwrap();
        Journal::verify_path(&path).unwrap();
        let db: Db<Bank> = Db::open(&path).await.unwrap();
        let tx = db.begin().await.unwrap();
        assert_eq!(balances(&tx).await, now, "{rt}: after reopening");
        assert_eq!(memos(&tx).await, memos_now, "{rt}: after reopening");
        db.close().await.unwrap();
        assert!(!dir.path().join("bank.durus.packing").exists());
    });
}

#[test]
fn history_kept_on_request_and_gone_before_it() {
    common::on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.durus");
        let (db, accounts) = open(&path).await;
        let mut seen = Vec::new();
        for i in 0..6 {
            let mut tx = db.begin().await.unwrap();
            tx.get_mut(accounts[0]).await.unwrap().balance = i;
            let c = tx.commit().await.unwrap();
            seen.push((c.tid, c.timestamp, i));
        }
        let keep = PackOptions {
            keep: Keep::Transactions(3),
            ..Default::default()
        };
        let report = db.pack(keep).await.unwrap();
        assert_eq!(report.history_from, seen[2].0, "{rt}");
        assert_eq!(report.transactions, 3);
        for &(tid, ts, i) in &seen[2..] {
            let tx = db.begin_at(tid).await.unwrap();
            assert_eq!(tx.get(accounts[0]).await.unwrap().balance, i, "{rt} at {tid}");
            let tx = db.begin_at_time(ts).await.unwrap();
            assert_eq!(tx.get(accounts[0]).await.unwrap().balance, i, "{rt} at time {ts}");
        }
        for &(tid, ts, _) in &seen[..2] {
            match db.begin_at(tid).await {
                Err(Error::HistoryGone { oldest }) => assert_eq!(oldest, seen[2].0),
                other => panic!(
                    "{rt}: begin_at({tid}) after the pack: {:?}",
                    other.map(|t| t.snapshot())
                ),
            }
            assert!(
                matches!(db.begin_at_time(ts).await, Err(Error::HistoryGone { .. })),
                "{rt}"
            );
        }
        // A snapshot begun before the pack goes on reading what it read.
        let before = db.begin_at(seen[3].0).await.unwrap();
        db.pack(PackOptions::default()).await.unwrap();
        assert_eq!(before.get(accounts[0]).await.unwrap().balance, 3, "{rt}");
        drop(before);
        assert!(matches!(
            db.begin_at(seen[3].0).await,
            Err(Error::HistoryGone { .. })
        ));
        db.close().await.unwrap();
    });
}

#[test]
fn a_dropped_pack_leaves_the_store_as_it_was() {
    common::on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.durus");
        let (db, accounts) = open(&path).await;
        for i in 0..20 {
            let mut tx = db.begin().await.unwrap();
            tx.get_mut(accounts[i % ACCOUNTS]).await.unwrap().balance += 1;
            tx.commit().await.unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        // The pack's first progress report waits until its future has been dropped.
        let started = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let (s, d) = (started.clone(), dropped.clone());
        let opts = PackOptions {
            progress: Some(Arc::new(move |_| {
                s.store(true, Ordering::Release);
                while !d.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })),
            ..Default::default()
        };
        let mut pack = Box::pin(db.pack(opts));
        while !started.load(Ordering::Acquire) {
            assert!(futures::poll!(&mut pack).is_pending(), "{rt}");
            blocking::unblock(|| std::thread::sleep(std::time::Duration::from_millis(1))).await;
        }
        drop(pack);
        dropped.store(true, Ordering::Release);
        // The next pack waits for the dropped one to stop: it wrote nothing.
        let dry = db
            .pack(PackOptions {
                dry_run: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(dry.dry_run && dry.freed() > 0);
        assert_eq!(std::fs::read(&path).unwrap(), before, "{rt}: the journal changed");
        assert!(!dir.path().join("bank.durus.packing").exists(), "{rt}");
        let tx = db.begin().await.unwrap();
        let total: i64 = balances(&tx).await.iter().sum();
        assert_eq!(total, START * ACCOUNTS as i64 + 20);
        drop(tx);
        db.close().await.unwrap();
        Journal::verify_path(&path).unwrap();
    });
}

#[test]
fn auto_pack_runs_in_the_background_after_the_bytes_given() {
    common::on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auto.durus");
        let opts = durus::journal::JournalOptions {
            auto_pack: Some(64 << 10),
            durability: Durability::Eventual,
            ..Default::default()
        };
        let storage = durus::storage::FileStorage::open(&path, opts).await.unwrap();
        let db: Db<Bank> = durus::DbBuilder::storage(storage.clone()).open().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let memo = tx.insert(Memo { text: vec![1; 100] }).await.unwrap();
        let account = tx.insert(Account { balance: 0, memo }).await.unwrap();
        tx.root_mut().await.unwrap().accounts = vec![account];
        tx.commit().await.unwrap();
        // About 1 KiB of garbage a commit: a pack is due every 60 commits or so.
        let mut i = 0;
        while storage.engine().stats().packs < 2 {
            i += 1;
            assert!(i < 100_000, "{rt}: no background pack after {i} commits");
            let mut tx = db.begin().await.unwrap();
            let memo = tx.insert(Memo { text: vec![7; 1000] }).await.unwrap();
            let a = tx.get_mut(account).await.unwrap();
            a.balance += 1;
            a.memo = memo;
            tx.commit().await.unwrap();
            if i % 50 == 0 {
                // Let the blocking pool's pack make progress on a loaded machine.
                blocking::unblock(|| std::thread::sleep(std::time::Duration::from_millis(1))).await;
            }
        }
        assert_eq!(storage.engine().stats().auto_pack_failures, 0);
        let tx = db.begin().await.unwrap();
        assert_eq!(tx.get(account).await.unwrap().balance, i);
        drop(tx);
        db.close().await.unwrap();
        // A commit appends less than 1.5 KiB (the memo: 1,000 bytes below 24, one byte
        // each in CBOR): no pack came before its 64 KiB.
        assert!(i >= 2 * 65_536 / 1_536, "{rt}: two packs after {i} commits");
        let r = Journal::verify_path(&path).unwrap();
        assert!(r.torn_tail.is_none(), "{rt}: {r:?}");
        let db: Db<Bank> = Db::open(&path).await.unwrap();
        let tx = db.begin().await.unwrap();
        assert_eq!(tx.get(account).await.unwrap().balance, i);
    });
}

#[test]
fn progress_is_a_stream_that_ends_with_the_pack() {
    common::on_all_runtimes(|rt| async move {
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open(&dir.path().join("bank.durus")).await;
        let mut opts = PackOptions::default();
        let progress = opts.progress_stream();
        let (report, seen) = futures::join!(db.pack(opts), progress.collect::<Vec<_>>());
        let report = report.unwrap();
        let phases: Vec<PackPhase> = seen.iter().map(|p| p.phase).collect();
        assert_eq!(phases.first(), Some(&PackPhase::Marking), "{rt}: {phases:?}");
        assert_eq!(phases.last(), Some(&PackPhase::Switching), "{rt}: {phases:?}");
        assert!(
            phases.windows(2).all(|w| w[0] as u8 <= w[1] as u8),
            "{rt}: {phases:?}"
        );
        let last = seen.last().unwrap();
        assert_eq!(last.objects, report.objects);
        assert!(seen.windows(2).all(|w| w[0].bytes <= w[1].bytes));
    });
}
