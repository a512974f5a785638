//! Four OS processes doing bank transfers on one journal file in shared mode, no
//! server: the total is conserved, every acknowledged transfer is in the file, the
//! balances are exactly what the committed transfers add up to, and the file verifies
//! clean, also when one process is killed with SIGKILL in the middle of its run.
//!
//! The child processes are this test binary re-invoked on [`bank_child_process`], with
//! their instructions in the environment. Each reports every transfer the database
//! acknowledged on its standard output, as it happens.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use durus::journal::Journal;
use durus::{Db, DbBuilder, Persistent, Ref};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "procs.Bank")]
struct Bank {
    accounts: Vec<Ref<Account>>,
    ledgers: Vec<Ref<Ledger>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "procs.Account")]
struct Account {
    balance: i64,
}

/// The transfers one process committed: (id, from, to, amount).
#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "procs.Ledger")]
struct Ledger {
    transfers: Vec<(u64, usize, usize, i64)>,
}

const ACCOUNTS: usize = 8;
const START: i64 = 1_000;
const PROCESSES: usize = 4;
const TRANSFERS: u64 = 60;
const CHILD_ENV: &str = "DURUS_BANK_CHILD";

fn builder(path: &Path) -> DbBuilder<Bank> {
    Db::builder(path).max_attempts(10_000).shared(true)
}

async fn create(path: &Path) {
    let db = builder(path).open().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(tx.insert(Account { balance: START }).await.unwrap());
    }
    let mut ledgers = Vec::new();
    for _ in 0..PROCESSES {
        ledgers.push(tx.insert(Ledger::default()).await.unwrap());
    }
    let root = tx.root_mut().await.unwrap();
    root.accounts = accounts;
    root.ledgers = ledgers;
    tx.commit().await.unwrap();
    db.close().await.unwrap();
}

/// One child's run: `TRANSFERS` transfers, each acknowledged on stdout once committed.
async fn child(path: String, me: usize) {
    let db = builder(Path::new(&path)).open().await.unwrap();
    let bank = db.begin().await.unwrap().root().await.unwrap();
    let ledger = bank.ledgers[me];
    let accounts = bank.accounts.clone();
    let mut rng = common::Rng::with_seed(me as u64 + 1);
    let mut out = std::io::stdout();
    for k in 0..TRANSFERS {
        let id = (me as u64) * 1_000_000 + k;
        let from = rng.u64(..ACCOUNTS as u64) as usize;
        let to = (from + 1 + rng.u64(..ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
        let amount = 1 + rng.u64(..200) as i64;
        let (a, b) = (accounts[from], accounts[to]);
        db.transact(|tx| {
            Box::pin(async move {
                tx.get_mut(a).await?.balance -= amount;
                tx.get_mut(b).await?.balance += amount;
                tx.get_mut(ledger).await?.transfers.push((id, from, to, amount));
                Ok(())
            })
        })
        .await
        .unwrap();
        writeln!(out, "ack {id}").unwrap();
        out.flush().unwrap();
    }
    db.close().await.unwrap();
}

/// The entry point of the child processes the tests below start; it does nothing when
/// run as an ordinary test.
#[test]
fn bank_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let path = parts.next().unwrap().to_string();
    let me: usize = parts.next().unwrap().parse().unwrap();
    // Half the children run under tokio, half under smol.
    if me.is_multiple_of(2) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(child(path, me));
    } else {
        smol::block_on(child(path, me));
    }
}

fn spawn(path: &Path, me: usize, acks: mpsc::Sender<(usize, u64)>) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bank_child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, format!("{}|{me}", path.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = c.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("ack ") {
                let _ = acks.send((me, id.trim().parse().unwrap()));
            }
        }
    });
    c
}

/// Runs the four processes; with `kill_after`, process 0 is SIGKILLed once it has
/// acknowledged that many transfers. Then checks everything.
fn run(kill_after: Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.durus");
    futures::executor::block_on(create(&path));
    let (tx, rx) = mpsc::channel();
    let mut children: Vec<Child> = (0..PROCESSES).map(|me| spawn(&path, me, tx.clone())).collect();
    drop(tx);
    let mut acked: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    let mut killed = false;
    for (me, id) in rx.iter() {
        acked.entry(me).or_default().insert(id);
        if let Some(n) = kill_after {
            if me == 0 && !killed && acked[&0].len() as u64 >= n {
                children[0].kill().unwrap();
                killed = true;
            }
        }
    }
    for (me, c) in children.iter_mut().enumerate() {
        let status = c.wait().unwrap();
        if !(killed && me == 0) {
            assert!(status.success(), "child {me} failed: {status}");
        }
    }
    if kill_after.is_some() {
        assert!(killed, "process 0 finished before it could be killed");
    }

    futures::executor::block_on(async {
        let db = builder(&path).open().await.unwrap();
        // One more commit: it cuts off whatever a killed process left half-written.
        db.transact(|tx| {
            Box::pin(async move {
                tx.root_mut().await?;
                Ok(())
            })
        })
        .await
        .unwrap();
        let tx = db.begin().await.unwrap();
        let bank = tx.root().await.unwrap();
        let mut expected = [START; ACCOUNTS];
        let mut ids = BTreeSet::new();
        for (me, l) in bank.ledgers.iter().enumerate() {
            let ledger = tx.get(*l).await.unwrap();
            let mine: BTreeSet<u64> = ledger.transfers.iter().map(|t| t.0).collect();
            assert_eq!(
                mine.len(),
                ledger.transfers.len(),
                "a transfer was committed twice"
            );
            let acks = acked.remove(&me).unwrap_or_default();
            assert!(
                acks.is_subset(&mine),
                "process {me} lost an acknowledged transfer"
            );
            if !(killed && me == 0) {
                assert_eq!(mine.len() as u64, TRANSFERS, "process {me}");
            }
            for &(id, from, to, amount) in &ledger.transfers {
                assert!(ids.insert(id));
                expected[from] -= amount;
                expected[to] += amount;
            }
        }
        let mut total = 0;
        for (i, a) in bank.accounts.iter().enumerate() {
            let balance = tx.get(*a).await.unwrap().balance;
            assert_eq!(balance, expected[i], "account {i}");
            total += balance;
        }
        assert_eq!(total, START * ACCOUNTS as i64);
        db.close().await.unwrap();
    });
    let report = Journal::verify_path(&path).unwrap();
    assert_eq!(report.torn_tail, None, "{report:?}");
    assert!(report.transactions > PROCESSES as u64 * 10, "{report:?}");
}

#[test]
fn four_processes_share_one_file() {
    run(None);
}

#[test]
fn four_processes_with_one_killed() {
    run(Some(15));
}
