//! Four OS processes doing bank transfers on one journal file in shared mode, no
//! server: the total is conserved, every acknowledged transfer is in the file, the
//! balances are exactly what the committed transfers add up to, and the file verifies
//! clean, also when one process is killed with SIGKILL in the middle of its run.
//!
//! The same with a fifth process packing the file again and again while the others
//! commit, and with that packer killed in the middle of a pack.
//!
//! With the feature `sqlite`, the four bankers also share one SQLite file
//! (`SqliteStorage`), with and without one of them SIGKILLed; with the feature
//! `postgres`, one PostgreSQL database (`PostgresStorage`, on a private test server),
//! likewise.
//!
//! The child processes are this test binary re-invoked on [`bank_child_process`], with
//! their instructions in the environment. Each reports every transfer the database
//! acknowledged on its standard output, as it happens (the packer: each pack it
//! started and finished).

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
/// The packer's number among the children, and how many packs it runs.
const PACKER: usize = PROCESSES;
const PACKS: u64 = 6;
/// Added to a pack's number in the packer's "started" reports.
const STARTED: u64 = 1 << 40;

fn builder(path: &Path) -> DbBuilder<Bank> {
    Db::builder(path).max_attempts(10_000).shared(true)
}

/// Which storage the processes share.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Store {
    /// The journal file in shared mode.
    Journal,
    /// A SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite,
    /// A PostgreSQL database (the "path" is its connection string).
    #[cfg(feature = "postgres")]
    Postgres,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Journal => "journal",
            #[cfg(feature = "sqlite")]
            Store::Sqlite => "sqlite",
            #[cfg(feature = "postgres")]
            Store::Postgres => "postgres",
        }
    }

    fn parse(s: &str) -> Store {
        match s {
            "journal" => Store::Journal,
            #[cfg(feature = "sqlite")]
            "sqlite" => Store::Sqlite,
            #[cfg(feature = "postgres")]
            "postgres" => Store::Postgres,
            other => panic!("unknown store {other}"),
        }
    }
}

/// Opens the shared database (durable commits, as an application would).
async fn open(path: &Path, store: Store) -> Db<Bank> {
    match store {
        Store::Journal => builder(path).open().await.unwrap(),
        #[cfg(feature = "sqlite")]
        Store::Sqlite => {
            let opts = durus::storage::SqliteOptions::default().shared(true);
            let s = durus::storage::SqliteStorage::open(path, opts).await.unwrap();
            DbBuilder::storage(s).max_attempts(10_000).open().await.unwrap()
        }
        #[cfg(feature = "postgres")]
        Store::Postgres => {
            let conninfo = path.to_str().unwrap();
            let s = durus::storage::PostgresStorage::open(conninfo, Default::default())
                .await
                .unwrap();
            DbBuilder::storage(s).max_attempts(10_000).open().await.unwrap()
        }
    }
}

async fn create(path: &Path, store: Store) {
    let db = open(path, store).await;
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
async fn child(path: String, me: usize, store: Store) {
    let db = open(Path::new(&path), store).await;
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

/// The packer's run: `PACKS` packs while the others commit, each reported when it
/// starts (at its first progress report) and when it is done.
async fn packer(path: String, store: Store) {
    let db = open(Path::new(&path), store).await;
    for k in 0..PACKS {
        let told = std::sync::atomic::AtomicBool::new(false);
        let opts = durus::journal::PackOptions {
            progress: Some(std::sync::Arc::new(move |_| {
                if !told.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    let mut out = std::io::stdout();
                    let _ = writeln!(out, "ack {}", STARTED + k);
                    let _ = out.flush();
                }
            })),
            ..Default::default()
        };
        db.pack(opts).await.unwrap();
        let mut out = std::io::stdout();
        writeln!(out, "ack {k}").unwrap();
        out.flush().unwrap();
        blocking::unblock(|| std::thread::sleep(std::time::Duration::from_millis(20))).await;
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
    let store = Store::parse(parts.next().unwrap());
    // Half the children run under tokio, half under smol.
    if me == PACKER {
        smol::block_on(packer(path, store));
    } else if me.is_multiple_of(2) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(child(path, me, store));
    } else {
        smol::block_on(child(path, me, store));
    }
}

fn spawn(path: &Path, me: usize, store: Store, acks: mpsc::Sender<(usize, u64)>) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bank_child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, format!("{}|{me}|{}", path.display(), store.name()))
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

/// Who is SIGKILLed, if anyone.
#[derive(Clone, Copy, PartialEq)]
enum Kill {
    None,
    /// Process 0, once it has acknowledged this many transfers.
    Banker(u64),
    /// The packer, once it has started its second pack.
    Packer,
}

/// Runs the four processes (and the packer, with `packs`), kills as told, then checks
/// everything.
fn run(kill: Kill, packs: bool) {
    run_on(Store::Journal, kill, packs);
}

fn run_on(store: Store, kill: Kill, packs: bool) {
    let dir = tempfile::tempdir().unwrap();
    #[allow(unused_mut)]
    let mut path = dir.path().join("bank.durus");
    #[cfg(feature = "postgres")]
    let pg = (store == Store::Postgres).then(common::postgres::database);
    #[cfg(feature = "postgres")]
    if let Some(db) = &pg {
        path = db.conninfo().into();
    }
    futures::executor::block_on(create(&path, store));
    let (tx, rx) = mpsc::channel();
    let n = if packs { PROCESSES + 1 } else { PROCESSES };
    let mut children: Vec<Child> = (0..n).map(|me| spawn(&path, me, store, tx.clone())).collect();
    drop(tx);
    let mut acked: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    let mut killed = None;
    for (me, id) in rx.iter() {
        acked.entry(me).or_default().insert(id);
        let victim = match kill {
            Kill::Banker(n) if me == 0 && acked[&0].len() as u64 >= n => Some(0),
            Kill::Packer if me == PACKER && id == STARTED + 1 => Some(PACKER),
            _ => None,
        };
        if let (Some(v), None) = (victim, killed) {
            children[v].kill().unwrap();
            killed = Some(v);
        }
    }
    for (me, c) in children.iter_mut().enumerate() {
        let status = c.wait().unwrap();
        if killed != Some(me) {
            assert!(status.success(), "child {me} failed: {status}");
        }
    }
    if kill != Kill::None {
        assert!(killed.is_some(), "the process to kill finished first");
    }
    if packs && killed != Some(PACKER) {
        let done = acked.remove(&PACKER).unwrap_or_default();
        assert_eq!(done.iter().filter(|&&k| k < STARTED).count() as u64, PACKS);
    }
    acked.remove(&PACKER);
    let killed = killed == Some(0);

    futures::executor::block_on(async {
        let db = open(&path, store).await;
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
    if store != Store::Journal {
        return;
    }
    let report = Journal::verify_path(&path).unwrap();
    assert_eq!(report.torn_tail, None, "{report:?}");
    if !packs {
        assert!(report.transactions > PROCESSES as u64 * 10, "{report:?}");
    }
    // A pack cut short leaves its file behind until the next writable open.
    assert!(!dir.path().join("bank.durus.packing").exists());
}

#[test]
fn four_processes_share_one_file() {
    run(Kill::None, false);
}

#[test]
fn four_processes_with_one_killed() {
    run(Kill::Banker(15), false);
}

#[test]
fn four_processes_commit_while_a_fifth_packs() {
    run(Kill::None, true);
}

#[test]
fn four_processes_commit_while_a_fifth_packs_and_is_killed_in_a_pack() {
    run(Kill::Packer, true);
}

#[cfg(feature = "sqlite")]
#[test]
fn four_processes_share_one_sqlite_file() {
    run_on(Store::Sqlite, Kill::None, false);
}

#[cfg(feature = "sqlite")]
#[test]
fn four_processes_share_one_sqlite_file_with_one_killed() {
    run_on(Store::Sqlite, Kill::Banker(15), false);
}

#[cfg(feature = "postgres")]
#[test]
fn four_processes_share_one_postgres_database() {
    run_on(Store::Postgres, Kill::None, false);
}

#[cfg(feature = "postgres")]
#[test]
fn four_processes_share_one_postgres_database_with_one_killed() {
    run_on(Store::Postgres, Kill::Banker(15), false);
}

#[cfg(feature = "postgres")]
#[test]
fn four_processes_commit_to_postgres_while_a_fifth_packs() {
    run_on(Store::Postgres, Kill::None, true);
}
