//! The killed process: opens the file (recovering whatever the previous child left) and
//! commits transfers from several tasks until it dies, acknowledging each durable commit
//! on stdout; in the pack loop another task packs the journal again and again.

use std::error::Error as StdError;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use durus::journal::{JournalOptions, Keep, PackOptions};
use durus::record::Tid;
use durus::{Db, Ref, Transaction};
use fastrand::Rng;

use crate::args::{self, ChildArgs, Mode};
use crate::bank::{Account, Ballast, Bank, Entry, Ledger, ACCOUNTS, BALLAST, START, TASKS};
use crate::protocol::Line;

type BoxError = Box<dyn StdError + Send + Sync>;
/// One of the child's tasks: it ends only by failing.
type Task = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Conflicting attempts a transfer makes before the child gives up (and fails).
const MAX_ATTEMPTS: u32 = 10_000;

/// Runs the child; it only returns by failing (exit status 2), since the parent
/// kills it.
pub fn main(args: &[String]) {
    let ChildArgs { path, seed, mode } = match args::parse_child(args) {
        Ok(v) => v,
        Err(e) => fail(e.into()),
    };
    if let Err(e) = run_on_runtime(path, seed, mode) {
        fail(e);
    }
    fail("the commit loop ended".into());
}

/// Reports on stderr (the parent's terminal) and exits with a status the parent
/// tells from a kill.
fn fail(e: BoxError) -> ! {
    eprintln!("crash loop child: {e}");
    std::process::exit(2);
}

/// The seed picks the runtime (tokio with two worker threads, smol, or
/// `futures::executor`), since durus must behave the same under each.
fn run_on_runtime(path: PathBuf, seed: u64, mode: Mode) -> Result<(), BoxError> {
    match seed % 3 {
        0 => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let tasks = open_tasks(path, seed, mode).await?;
                // Whichever task fails first ends the child.
                let handles = tasks.into_iter().map(|t| {
                    let task = tokio::spawn(t);
                    async move { task.await? }
                });
                futures::future::try_join_all(handles).await?;
                Ok(())
            })
        }
        1 => smol::block_on(run_joined(path, seed, mode)),
        _ => futures::executor::block_on(run_joined(path, seed, mode)),
    }
}

/// The tasks as futures joined on one thread; their commits still overlap on the
/// blocking pool, so they form write groups.
async fn run_joined(path: PathBuf, seed: u64, mode: Mode) -> Result<(), BoxError> {
    futures::future::try_join_all(open_tasks(path, seed, mode).await?).await?;
    Ok(())
}

/// Opens the database and makes the child's tasks: one per ledger, and the packer.
async fn open_tasks(path: PathBuf, seed: u64, mode: Mode) -> Result<Vec<Task>, BoxError> {
    let (db, bank) = open(path, seed, mode).await?;
    let mut tasks: Vec<Task> = (0..TASKS)
        .map(|t| Box::pin(commit_forever(db.clone(), bank.clone(), t, seed)) as Task)
        .collect();
    if mode == Mode::Pack {
        tasks.push(Box::pin(pack_forever(db, seed)));
    }
    Ok(tasks)
}

/// Packs again and again, saying when each pack starts and ends, so the parent knows
/// whether its kill landed inside one. Some children keep a window of history.
async fn pack_forever(db: Db<Bank>, seed: u64) -> Result<(), BoxError> {
    let keep = match (seed >> 24) % 3 {
        0 => Keep::Transactions(20),
        _ => Keep::Nothing,
    };
    loop {
        say(&Line::Packing)?;
        db.pack(PackOptions {
            keep,
            ..PackOptions::default()
        })
        .await?;
        say(&Line::Packed)?;
    }
}

/// Journal settings vary with the seed, so kills also land in index checkpoints
/// and on files with and without preallocated space.
fn journal_options(seed: u64) -> JournalOptions {
    let mut journal = JournalOptions::default();
    if (seed >> 8).is_multiple_of(2) {
        journal.checkpoint_every = Some(64 << 10);
    }
    journal.preallocate = [4 << 20, 0, 64 << 10][((seed >> 16) % 3) as usize];
    journal
}

/// Opens the database (this is where the previous child's leftovers are
/// recovered), says so, and makes sure the bank exists.
async fn open(path: PathBuf, seed: u64, mode: Mode) -> Result<(Db<Bank>, Arc<Bank>), BoxError> {
    let db: Db<Bank> = Db::builder(path)
        .journal_options(journal_options(seed))
        .open()
        .await?;
    say(&Line::Opened)?;
    let bank = create_bank(&db, mode).await?;
    Ok((db, bank))
}

/// Creates the accounts and ledgers (and the pack loop's ballast) in one transaction
/// if the file is new.
async fn create_bank(db: &Db<Bank>, mode: Mode) -> durus::Result<Arc<Bank>> {
    db.transact(|tx| {
        Box::pin(async move {
            if tx.root().await?.accounts.is_empty() {
                let mut accounts = Vec::new();
                for _ in 0..ACCOUNTS {
                    accounts.push(tx.insert(Account { balance: START }).await?);
                }
                let mut ledgers = Vec::new();
                for _ in 0..TASKS {
                    ledgers.push(tx.insert(Ledger::default()).await?);
                }
                let mut ballast = Vec::new();
                if mode == Mode::Pack {
                    for i in 0..BALLAST.0 {
                        let bytes = vec![i as u8; BALLAST.1];
                        ballast.push(tx.insert(Ballast { bytes }).await?);
                    }
                }
                let root = tx.root_mut().await?;
                root.accounts = accounts;
                root.ledgers = ledgers;
                root.ballast = ballast;
            }
            Ok(())
        })
    })
    .await?;
    db.begin().await?.root().await
}

/// One task: random transfers, each acknowledged on stdout once it is durable.
async fn commit_forever(db: Db<Bank>, bank: Arc<Bank>, task: usize, seed: u64) -> Result<(), BoxError> {
    let mut rng = Rng::with_seed(seed ^ (task as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    loop {
        let from = rng.u64(..ACCOUNTS as u64) as usize;
        let to = (from + 1 + rng.u64(..ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
        let transfer = Transfer {
            ledger: bank.ledgers[task],
            from: (from, bank.accounts[from]),
            to: (to, bank.accounts[to]),
            amount: 1 + rng.u64(..100) as i64,
            memo_len: if rng.u64(..4) == 0 {
                rng.u64(..6000) as usize
            } else {
                0
            },
        };
        let (seq, tid) = transfer.commit(&db).await?;
        say(&Line::Ack(task, seq, tid))?;
    }
}

/// Writes one line to stdout and flushes it, so the parent has it before a kill.
fn say(line: &Line) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// One transfer of a task.
struct Transfer {
    ledger: Ref<Ledger>,
    from: (usize, Ref<Account>),
    to: (usize, Ref<Account>),
    amount: i64,
    memo_len: usize,
}

impl Transfer {
    /// Commits the transfer, retrying conflicts by hand (rather than with
    /// `Db::transact`) to learn the tid the acknowledgement reports.
    async fn commit(&self, db: &Db<Bank>) -> Result<(u64, Tid), BoxError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut tx = db.begin().await?;
            let seq = self.write(&mut tx).await?;
            match tx.commit().await {
                Ok(c) => return Ok((seq, c.tid)),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(format!("a transfer conflicted {MAX_ATTEMPTS} times").into())
    }

    /// The transfer's changes: both balances, a new entry, and the ledger's head.
    async fn write(&self, tx: &mut Transaction<Bank>) -> durus::Result<u64> {
        tx.get_mut(self.from.1).await?.balance -= self.amount;
        tx.get_mut(self.to.1).await?.balance += self.amount;
        let ledger = tx.get_mut(self.ledger).await?;
        let seq = ledger.count + 1;
        let prev = ledger.head;
        let entry = tx
            .insert(Entry {
                seq,
                from: self.from.0,
                to: self.to.0,
                amount: self.amount,
                memo: "m".repeat(self.memo_len),
                prev,
            })
            .await?;
        let ledger = tx.get_mut(self.ledger).await?;
        ledger.count = seq;
        ledger.head = Some(entry);
        Ok(seq)
    }
}
