//! Bank transfers under tokio: many concurrent tasks move money between accounts with
//! the retry helper, and the total never changes.
//!
//! ```text
//! cargo run --example tokio_bank [path] [tasks] [transfers-per-task]
//! ```
// Output goes through `say!`, which survives a closed stdout (`println!` panics there).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Instant;

use durus::{Db, Persistent, Ref};
use serde::{Deserialize, Serialize};

use common::say;

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "bank.Bank")]
struct Bank {
    accounts: Vec<Ref<Account>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "bank.Account")]
struct Account {
    owner: String,
    balance: i64,
}

#[tokio::main]
async fn main() -> durus::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "tokio_bank.durus".into());
    let tasks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let per_task: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);

    let db: Db<Bank> = Db::open(&path).await?;
    let accounts = db
        .transact(|tx| {
            Box::pin(async move {
                if tx.root().await?.accounts.is_empty() {
                    for i in 0..10 {
                        let a = tx
                            .insert(Account {
                                owner: format!("customer {i}"),
                                balance: 1_000,
                            })
                            .await?;
                        tx.root_mut().await?.accounts.push(a);
                    }
                }
                Ok(tx.root().await?.accounts.clone())
            })
        })
        .await?;
    say!("total before: {}", total(&db).await?);

    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let db = db.clone();
            let accounts = accounts.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(t);
                for _ in 0..per_task {
                    let from = accounts[rng.usize(..accounts.len())];
                    let to = accounts[rng.usize(..accounts.len())];
                    let amount = rng.i64(0..100);
                    db.transact(|tx| {
                        Box::pin(async move {
                            if from == to || tx.get(from).await?.balance < amount {
                                return Ok(());
                            }
                            tx.get_mut(from).await?.balance -= amount;
                            tx.get_mut(to).await?.balance += amount;
                            Ok(())
                        })
                    })
                    .await?;
                }
                Ok::<_, durus::Error>(())
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task panicked")?;
    }
    let elapsed = start.elapsed();
    say!(
        "{} transfers by {tasks} tasks in {:.2?} ({:.0} transfers/s, durable)",
        tasks * per_task,
        elapsed,
        (tasks * per_task) as f64 / elapsed.as_secs_f64()
    );
    say!("total after:  {}", total(&db).await?);
    db.close().await
}

/// The sum of all balances, read in one snapshot.
async fn total(db: &Db<Bank>) -> durus::Result<i64> {
    let tx = db.begin().await?;
    let mut sum = 0;
    for &a in &tx.root().await?.accounts {
        sum += tx.get(a).await?.balance;
    }
    Ok(sum)
}
