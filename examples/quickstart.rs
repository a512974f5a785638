//! The main job, on the embedded default: open (or create) a database file, store a
//! small graph of objects, commit, reopen, and print what is there.
//!
//! Run it twice: the second run finds the first run's objects too.
//!
//! ```text
//! cargo run --example quickstart [path]
//! ```
// Output goes through `say!`, which survives a closed stdout (`println!` panics there).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod common;

use durus::{Counter, Db, Persistent, Ref};
use serde::{Deserialize, Serialize};

use common::say;

/// The root object: everything reachable from here is the database.
#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "quickstart.Library")]
struct Library {
    shelves: Vec<Ref<Shelf>>,
    runs: Option<Ref<Counter>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "quickstart.Shelf")]
struct Shelf {
    label: String,
    books: Vec<Ref<Book>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "quickstart.Book")]
struct Book {
    title: String,
    author: String,
    year: u16,
}

fn main() -> durus::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "quickstart.durus".into());
    futures::executor::block_on(run(&path))
}

async fn run(path: &str) -> durus::Result<()> {
    let db: Db<Library> = Db::open(path).await?;

    // One transaction: add a shelf with two books and count this run.
    let mut tx = db.begin().await?;
    let run = match tx.root().await?.runs {
        Some(c) => c,
        None => {
            let c = tx.insert(Counter::new(0)).await?;
            tx.root_mut().await?.runs = Some(c);
            c
        }
    };
    tx.get_mut(run).await?.increment();
    let n = tx.get(run).await?.get();
    let dune = tx
        .insert(Book {
            title: "Dune".into(),
            author: "Frank Herbert".into(),
            year: 1965,
        })
        .await?;
    let emma = tx
        .insert(Book {
            title: "Emma".into(),
            author: "Jane Austen".into(),
            year: 1815,
        })
        .await?;
    let shelf = tx
        .insert(Shelf {
            label: format!("shelf of run {n}"),
            books: vec![dune, emma],
        })
        .await?;
    tx.root_mut().await?.shelves.push(shelf);
    let committed = tx.commit().await?;
    say!(
        "run {n}: committed transaction {} to {path} (durable on disk)",
        committed.tid
    );
    db.close().await?;

    // Reopen and walk the graph from the root.
    let db: Db<Library> = Db::open(path).await?;
    let tx = db.begin().await?;
    let library = tx.root().await?;
    say!("reopened {path}: {} shelf(s)", library.shelves.len());
    for &s in &library.shelves {
        let shelf = tx.get(s).await?;
        say!("  {}:", shelf.label);
        for &b in &shelf.books {
            let book = tx.get(b).await?;
            say!("    {} by {} ({})", book.title, book.author, book.year);
        }
    }
    say!("objects by type: {:?}", db.census().await?);
    db.close().await
}
