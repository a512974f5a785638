//! durus: an async-first, runtime-agnostic persistent object database.
//!
//! Records are stored durably in an append-only journal file (the embedded default)
//! through the async [`Storage`](storage::Storage) trait, which works the same under
//! tokio, smol, async-std or `futures::executor`: file I/O runs on the `blocking`
//! thread pool and the library starts no runtime of its own.
//!
//! ```
//! use durus::journal::JournalOptions;
//! use durus::record::{CommitRequest, Oid, Record, Tid};
//! use durus::storage::{FileStorage, Storage};
//!
//! # fn main() -> durus::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("example.durus");
//! futures::executor::block_on(async {
//!     let storage = FileStorage::open(&path, JournalOptions::default()).await?;
//!     let oid = storage.new_oids(1).await?[0];
//!     let committed = storage
//!         .commit(CommitRequest {
//!             snapshot: Tid::ZERO,
//!             records: vec![
//!                 Record::new(Oid::ROOT, b"root".to_vec(), vec![oid]),
//!                 Record::new(oid, b"hello".to_vec(), vec![]),
//!             ],
//!             reads: vec![],
//!         })
//!         .await?; // durable (fsynced) when this returns
//!     storage.close().await?;
//!
//!     let storage = FileStorage::open(&path, JournalOptions::default()).await?;
//!     let loaded = storage.load(oid).await?;
//!     assert_eq!(loaded.record.data, b"hello");
//!     assert_eq!(loaded.tid, committed.tid);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Layers
//!
//! - [`record`]: oids, tids and the Durus-framed [`Record`](record::Record).
//! - [`journal`]: the native file format and its synchronous engine.
//! - [`storage`]: the async `Storage` trait and its implementations.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod db;
pub mod error;
pub mod journal;
pub mod object;
pub mod record;
pub mod storage;

pub use db::{Db, DbOptions, Transaction};
pub use error::{Error, Result};
pub use object::{Counter, Persistent, Ref};
pub use record::Oid;
