//! durus: an async-first, runtime-agnostic persistent object database.
//!
//! Keep a graph of ordinary serde values under one root, read and change them in
//! transactions, and commit; durus stores them durably in an append-only journal file.
//! Everything is async and works the same under tokio, smol, async-std or
//! `futures::executor`: file I/O runs on the `blocking` thread pool, and the library
//! starts no runtime of its own.
//!
//! ```
//! use durus::{Db, Persistent, Ref};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Default, Serialize, Deserialize, Persistent)]
//! struct Library {
//!     books: Vec<Ref<Book>>,
//! }
//!
//! #[derive(Clone, Serialize, Deserialize, Persistent)]
//! struct Book {
//!     title: String,
//!     loans: u32,
//! }
//!
//! # fn main() -> durus::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("library.durus");
//! futures::executor::block_on(async {
//!     let db: Db<Library> = Db::open(&path).await?; // creates the file and the root
//!
//!     let mut tx = db.begin().await?;
//!     let book = tx.insert(Book { title: "Dune".into(), loans: 0 }).await?;
//!     tx.root_mut().await?.books.push(book);
//!     tx.commit().await?; // durable (fsynced) when this returns
//!
//!     // Retries on conflict; the change is copied into the transaction on first use.
//!     db.transact(|tx| {
//!         Box::pin(async move {
//!             tx.get_mut(book).await?.loans += 1;
//!             Ok(())
//!         })
//!     })
//!     .await?;
//!     db.close().await?;
//!
//!     let db: Db<Library> = Db::open(&path).await?;
//!     let tx = db.begin().await?;
//!     let first = tx.root().await?.books[0];
//!     assert_eq!(tx.get(first).await?.loans, 1);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Opening a database
//!
//! [`Db::open(path)`](Db::open) opens (or creates) a journal file with default
//! settings. Everything else goes through [`DbBuilder`]: [`Db::builder(path)`](Db::builder)
//! for a journal file with other settings ([`Durability`], cache size, shared mode,
//! read-only), [`DbBuilder::memory`] and [`DbBuilder::storage`] for other storages.
//!
//! # What the crate root holds
//!
//! What an application needs: [`Db`], [`DbBuilder`], [`DbOptions`], [`Transaction`],
//! [`Ref`], [`Persistent`] (the trait and its derive), [`Counter`], [`BTree`], [`BTreeSet`],
//! [`Error`], [`Result`], [`Oid`], [`Tid`], [`Durability`] and [`Change`] (the change
//! feed's events). The modules below are the layers, public for those who extend them
//! (a storage of their own, fault tests on a simulated file).
//!
//! # Layers
//!
//! Each layer only calls the one below it; `docs/DESIGN.md` in the repository describes
//! them, the invariants they keep and how the cache stays right.
//!
//! - [`record`]: oids, tids and the Durus-framed [`Record`](record::Record).
//! - [`journal`]: the native file format and its synchronous engine.
//! - [`storage`]: the async [`Storage`](storage::Storage) trait and its implementations.
//! - [`object`]: [`Persistent`] types, typed references ([`Ref`]), the codec,
//!   [`Counter`], [`BTree`] and [`BTreeSet`].
//! - [`db`]: [`Db`], its shared cache, and [`Transaction`]s.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
// Library code returns errors; a panic is for bugs. Tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "server")]
pub mod client;
mod clock;
pub mod db;
pub mod error;
pub mod import;
pub mod journal;
#[cfg(test)]
mod model_check;
pub mod object;
#[cfg(feature = "server")]
pub mod protocol;
pub mod record;
#[cfg(feature = "server")]
pub mod server;
pub mod storage;
mod sync;
pub mod tools;

pub use db::{Db, DbBuilder, DbOptions, Transaction};
pub use error::{Error, Result};
pub use journal::Durability;
pub use object::{BTree, BTreeSet, Counter, Persistent, Ref};
pub use record::{Oid, Tid};
pub use storage::Change;
