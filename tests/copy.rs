//! Moving between storages: `durus::tools::copy::copy` (every object under its oid, as
//! of one snapshot, also while the source is committed to), `DbBuilder::url` and the
//! `durus copy` command.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::on_all_runtimes;
use durus::journal::JournalOptions;
use durus::record::Oid;
use durus::storage::{MemoryStorage, Storage, StorageSpec};
use durus::tools::copy::copy;
use durus::{Db, DbBuilder, Durability, Error, Persistent, Ref};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "copy.Bank")]
struct Bank {
    accounts: Vec<Ref<Account>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "copy.Account")]
struct Account {
    balance: i64,
    memo: String,
}

const ACCOUNTS: usize = 40;
const TOTAL: i64 = 40 * 1_000;

/// A bank of [`ACCOUNTS`] accounts, then `transfers` transfers (overwrites, so the
/// source holds several versions of most objects), and one unreachable object.
async fn bank(storage: Arc<dyn Storage>, transfers: usize) -> Db<Bank> {
    let db: Db<Bank> = DbBuilder::storage_arc(storage).open().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        let memo = format!("account {i} ünïcode {}", "x".repeat(i * 50));
        accounts.push(tx.insert(Account { balance: 1_000, memo }).await.unwrap());
    }
    tx.insert(Account {
        balance: 0,
        memo: "garbage".into(),
    })
    .await
    .unwrap();
    tx.root_mut().await.unwrap().accounts = accounts;
    tx.commit().await.unwrap();
    for i in 0..transfers {
        transfer(&db, i).await;
    }
    db
}

async fn transfer(db: &Db<Bank>, i: usize) {
    db.transact(|tx| {
        Box::pin(async move {
            let accounts = tx.root().await?.accounts.clone();
            let (a, b) = (accounts[i % ACCOUNTS], accounts[(i * 7 + 3) % ACCOUNTS]);
            if a == b {
                return Ok(());
            }
            tx.get_mut(a).await?.balance -= 3;
            tx.get_mut(b).await?.balance += 3;
            Ok(())
        })
    })
    .await
    .unwrap();
}

/// Every object's newest record: oid → (data, refs).
async fn contents(s: &dyn Storage) -> BTreeMap<Oid, (Vec<u8>, Vec<Oid>)> {
    let mut out = BTreeMap::new();
    let mut scan = s.scan();
    while let Some(l) = scan.next().await {
        let r = l.unwrap().record;
        out.insert(r.oid, (r.data, r.refs));
    }
    out
}

async fn total(db: &Db<Bank>) -> i64 {
    let tx = db.begin().await.unwrap();
    let mut sum = 0;
    for a in tx.root().await.unwrap().accounts.clone() {
        sum += tx.get(a).await.unwrap().balance;
    }
    sum
}

fn journal() -> JournalOptions {
    JournalOptions {
        durability: Durability::Eventual,
        ..JournalOptions::default()
    }
}

#[test]
fn a_store_goes_through_every_kind_and_comes_back_the_same() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let source: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let db = bank(source.clone(), 60).await;
        let want = contents(&*source).await;
        let max = *want.keys().last().unwrap();

        let mut specs = vec![format!("file:{}", dir.path().join("a.durus").display())];
        #[cfg(feature = "sqlite")]
        specs.push(format!("sqlite:{}", dir.path().join("b.sqlite").display()));
        #[cfg(feature = "postgres")]
        let pg = common::postgres::database();
        #[cfg(feature = "postgres")]
        specs.push(pg.url());
        specs.push(dir.path().join("c.durus").display().to_string());
        let mut from = source.clone();
        for spec in &specs {
            let to = spec
                .parse::<StorageSpec>()
                .unwrap()
                .open(&journal())
                .await
                .unwrap();
            let report = copy(&*from, &*to, |_| {}).await.unwrap();
            assert_eq!(report.objects, want.len() as u64, "{spec}");
            assert_eq!(contents(&*to).await, want, "{spec}: same oids, data and refs");
            // New objects come after every copied oid.
            let fresh = to.new_oids(3).await.unwrap();
            assert!(fresh.iter().all(|o| *o > max), "{spec}: {fresh:?} after {max}");
            from = to;
        }
        // The last copy, as a database, holds the bank the source held.
        let copied: Db<Bank> = DbBuilder::storage_arc(from).open().await.unwrap();
        assert_eq!(total(&copied).await, TOTAL);
        assert_eq!(total(&db).await, TOTAL);
        copied.close().await.unwrap();
    });
}

#[test]
fn a_copy_taken_while_others_commit_holds_one_snapshot() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let source: Arc<dyn Storage> = Arc::new(
            durus::storage::FileStorage::open(dir.path().join("live.durus"), journal())
                .await
                .unwrap(),
        );
        let db = bank(source.clone(), 20).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (db, stop) = (db.clone(), stop.clone());
            async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < 50 {
                    transfer(&db, i).await;
                    i += 1;
                }
                i
            }
        };
        let copying = async {
            let mut copies = Vec::new();
            for k in 0..8 {
                let to: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
                let report = copy(&*source, &*to, |_| {}).await.unwrap();
                // Exactly the versions the snapshot it names saw.
                for (oid, (data, _)) in contents(&*to).await {
                    let seen = source.load_at(oid, report.snapshot).await.unwrap();
                    assert_eq!(seen.record.data, data, "copy {k}: {oid} at {}", report.snapshot);
                }
                copies.push((k, to, report.snapshot));
                common::yield_now().await;
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            copies
        };
        let (transfers, copies) = futures::join!(writer, copying);
        assert!(transfers >= 50);
        let mut snapshots = Vec::new();
        for (k, to, snapshot) in copies {
            let copied: Db<Bank> = DbBuilder::storage_arc(to).open().await.unwrap();
            // A copy mixing two snapshots would have lost or doubled a transfer.
            assert_eq!(total(&copied).await, TOTAL, "copy {k} at {snapshot}");
            snapshots.push(snapshot);
        }
        assert!(snapshots.windows(2).all(|w| w[0] <= w[1]), "{snapshots:?}");
        db.close().await.unwrap();
    });
}

#[test]
fn a_destination_that_is_not_empty_is_refused_and_left_alone() {
    on_all_runtimes(|_| async {
        let from: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        bank(from.clone(), 3).await;
        let to: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        bank(to.clone(), 1).await;
        let before = (to.last_tid().await.unwrap(), contents(&*to).await);
        match copy(&*from, &*to, |_| {}).await {
            Err(Error::Invalid(why)) => assert!(why.contains("empty store"), "{why}"),
            other => panic!("copied into a full store: {other:?}"),
        }
        assert_eq!((to.last_tid().await.unwrap(), contents(&*to).await), before);
    });
}

#[test]
fn db_builder_url_opens_each_kind_by_configuration() {
    on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("u.durus");
        let sqlite = format!("sqlite:{}", dir.path().join("u.sqlite").display());
        #[cfg(feature = "postgres")]
        let pg = common::postgres::database();
        #[cfg(feature = "postgres")]
        let postgres = Some(pg.url());
        #[cfg(not(feature = "postgres"))]
        let postgres = None;
        let urls: Vec<String> = [
            Some(format!("file:{}", file.display())),
            Some("memory:".to_string()),
            cfg!(feature = "sqlite").then_some(sqlite),
            postgres,
        ]
        .into_iter()
        .flatten()
        .collect();
        for url in &urls {
            let mut builder = DbBuilder::url(url).unwrap();
            if url != "memory:" {
                builder = builder.durability(Durability::Eventual);
            }
            let db: Db<Bank> = builder.open().await.unwrap();
            let mut tx = db.begin().await.unwrap();
            let a = tx
                .insert(Account {
                    balance: 5,
                    memo: url.clone(),
                })
                .await
                .unwrap();
            tx.root_mut().await.unwrap().accounts.push(a);
            tx.commit().await.unwrap();
            db.close().await.unwrap();
            if url != "memory:" {
                let again: Db<Bank> = DbBuilder::url(url).unwrap().open().await.unwrap();
                let tx = again.begin().await.unwrap();
                let a = tx.root().await.unwrap().accounts[0];
                assert_eq!(tx.get(a).await.unwrap().memo, *url);
                drop(tx);
                again.close().await.unwrap();
            }
        }
        // Settings the kind cannot honour are refused when it opens.
        #[cfg(feature = "sqlite")]
        {
            let url = format!("sqlite:{}", dir.path().join("u.sqlite").display());
            let refused = DbBuilder::<Bank>::url(&url).unwrap().read_only(true).open().await;
            assert!(matches!(refused, Err(Error::Invalid(_))), "{:?}", refused.err());
        }
        // Memory has no durability to set.
        let refused = DbBuilder::<Bank>::url("memory:")
            .unwrap()
            .durability(Durability::Eventual)
            .open()
            .await;
        assert!(matches!(refused, Err(Error::Invalid(_))));
        assert!(DbBuilder::<Bank>::url("postgres://").is_err());
        assert!(DbBuilder::<Bank>::url("ftp://localhost/x").is_err());
        // A PostgreSQL database is always shared: `shared` is not a setting it takes.
        #[cfg(feature = "postgres")]
        {
            let refused = DbBuilder::<Bank>::url(&pg.url())
                .unwrap()
                .shared(true)
                .open()
                .await;
            assert!(matches!(refused, Err(Error::Invalid(_))), "{:?}", refused.err());
        }
        #[cfg(not(feature = "postgres"))]
        {
            let refused = DbBuilder::<Bank>::url("postgres://localhost/x")
                .unwrap()
                .open()
                .await;
            assert!(
                matches!(refused, Err(Error::Unsupported { .. })),
                "{:?}",
                refused.err()
            );
        }
        assert!(DbBuilder::<Bank>::url("durus://nohost").is_err());
    });
}

#[cfg(feature = "server")]
#[test]
fn db_builder_url_reaches_a_server() {
    use common::server::{socket_next_to, TestServer};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("served.durus");
    let server = TestServer::file(&path, durus::server::ServerOptions::default());
    let durus::server::Address::Unix(sock) = socket_next_to(&path) else {
        panic!("a unix socket");
    };
    assert_eq!(server.address, durus::server::Address::Unix(sock.clone()));
    on_all_runtimes(move |_| {
        let url = format!("durus+unix:{}", sock.display());
        async move {
            let db: Db<Bank> = DbBuilder::url(&url).unwrap().open().await.unwrap();
            transfer_ready(&db).await;
            let to: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
            let report = copy(&**db.storage(), &*to, |_| {}).await.unwrap();
            assert!(report.objects >= 1);
            assert_eq!(contents(&*to).await, contents(&**db.storage()).await);
            db.close().await.unwrap();
        }
    });
    server.stop();
}

/// Puts one account in a bank that may be empty.
#[cfg(feature = "server")]
async fn transfer_ready(db: &Db<Bank>) {
    let mut tx = db.begin().await.unwrap();
    let a = tx
        .insert(Account {
            balance: 1,
            memo: "over the network".into(),
        })
        .await
        .unwrap();
    tx.root_mut().await.unwrap().accounts.push(a);
    tx.commit().await.unwrap();
}

/// Runs `durus ARGS`: exit code, stdout, stderr.
#[cfg(feature = "cli")]
fn durus(args: &[&str]) -> (i32, String, String) {
    let out = assert_cmd::cargo::cargo_bin_cmd!("durus")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(feature = "cli")]
#[test]
fn durus_copy_moves_a_store_and_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.durus");
    futures::executor::block_on(async {
        let s: Arc<dyn Storage> = Arc::new(durus::storage::FileStorage::open(&src, journal()).await.unwrap());
        bank(s.clone(), 10).await.close().await.unwrap();
    });
    let src_s = src.display().to_string();
    let back = dir.path().join("back.durus");
    let back_s = back.display().to_string();
    // Through PostgreSQL or SQLite where this build has it, else straight to another
    // journal.
    #[cfg(feature = "postgres")]
    let pg = common::postgres::database();
    #[cfg(feature = "postgres")]
    let middle = pg.url();
    #[cfg(not(feature = "postgres"))]
    let middle = if cfg!(feature = "sqlite") {
        format!("sqlite:{}", dir.path().join("mid.sqlite").display())
    } else {
        format!("file:{}", dir.path().join("mid.durus").display())
    };
    let (code, stdout, stderr) = durus(&["copy", "--json", &src_s, &middle]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["status"], "copied");
    assert_eq!(v["report"]["objects"], ACCOUNTS as u64 + 2);
    let (code, stdout, stderr) = durus(&["copy", &middle, &back_s]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("copied 42 objects"), "{stdout}");
    let (a, b) = futures::executor::block_on(async {
        let ro = JournalOptions {
            read_only: true,
            ..JournalOptions::default()
        };
        let a = durus::storage::FileStorage::open(&src, ro.clone()).await.unwrap();
        let b = durus::storage::FileStorage::open(&back, ro).await.unwrap();
        (contents(&a).await, contents(&b).await)
    });
    assert_eq!(a, b, "the round trip keeps every oid, state and ref");

    // Into a store that holds transactions: refused, the file untouched.
    let before = std::fs::read(&back).unwrap();
    let (code, _, stderr) = durus(&["copy", &src_s, &back_s]);
    assert_eq!(code, 1);
    assert!(stderr.contains("empty store"), "{stderr}");
    assert_eq!(std::fs::read(&back).unwrap(), before);

    // Specs that do not parse are usage errors; a missing source leaves no file behind.
    let (code, _, stderr) = durus(&["copy", &src_s, "ftp://db/x"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown storage scheme"), "{stderr}");
    let missing = dir.path().join("missing.durus").display().to_string();
    let never = dir.path().join("never.durus");
    let (code, _, _) = durus(&["copy", &missing, &never.display().to_string()]);
    assert_eq!(code, 1);
    assert!(!never.exists());
    let (code, _, stderr) = durus(&["copy", &src_s, &src_s]);
    assert_eq!(code, 1);
    assert!(stderr.contains("same file"), "{stderr}");
}
