//! The storage factory of the conformance suite: every storage kind a test runs
//! against, opened (and reopened) the same way, and a macro that makes one `#[test]`
//! per kind from one generic test body.

use std::sync::Arc;

use durus::journal::{Durability, JournalOptions};
use durus::storage::{FileStorage, MemoryStorage, Storage};

/// A storage kind under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `MemoryStorage`: one shared instance, so a "reopen" is another handle on it.
    Memory,
    /// `FileStorage`, the journal file.
    File,
    /// `FileStorage` in shared mode (`JournalOptions::shared`): each handle its own
    /// lock on the file, as other processes would hold.
    SharedFile,
    /// `ClientStorage`, each handle a connection to one in-process `durus serve` of a
    /// journal file (on a thread of its own, over a Unix socket).
    Network,
    /// `SqliteStorage` (feature `sqlite`).
    #[cfg(feature = "sqlite")]
    Sqlite,
    /// `PostgresStorage` (feature `postgres`), on a fresh database of the test server.
    #[cfg(feature = "postgres")]
    Postgres,
}

/// Where one test's storage lives, from which it is opened and reopened.
pub struct Store {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    memory: MemoryStorage,
    /// The test's database, for `Kind::Postgres`.
    #[cfg(feature = "postgres")]
    pub pg: Option<super::postgres::PgDatabase>,
    /// The server, for `Kind::Network`.
    pub server: Option<super::server::TestServer>,
}

impl Store {
    /// A new, empty store of this kind.
    pub fn new(kind: Kind) -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = (kind == Kind::Network).then(|| {
            let journal = JournalOptions {
                durability: Durability::Eventual,
                ..JournalOptions::default()
            };
            super::server::TestServer::file_with(&dir.path().join("store.durus"), journal, Default::default())
        });
        Store {
            kind,
            dir,
            memory: MemoryStorage::new(),
            #[cfg(feature = "postgres")]
            pg: (kind == Kind::Postgres).then(super::postgres::database),
            server,
        }
    }

    /// The connection string of the test's PostgreSQL database.
    #[cfg(feature = "postgres")]
    pub fn conninfo(&self) -> String {
        self.pg.as_ref().expect("a postgres store").conninfo()
    }

    /// The path of the store's file (unused by memory).
    pub fn path(&self) -> std::path::PathBuf {
        match self.kind {
            Kind::Memory | Kind::File | Kind::SharedFile | Kind::Network => {
                self.dir.path().join("store.durus")
            }
            #[cfg(feature = "sqlite")]
            Kind::Sqlite => self.dir.path().join("store.sqlite"),
            #[cfg(feature = "postgres")]
            Kind::Postgres => self.dir.path().join("unused"),
        }
    }

    /// Opens a handle with the given durability (ignored by memory).
    pub async fn open_with(&self, durability: Durability) -> Arc<dyn Storage> {
        match self.kind {
            Kind::Memory => Arc::new(self.memory.clone()),
            Kind::File | Kind::SharedFile => Arc::new(
                FileStorage::open(
                    self.path(),
                    JournalOptions {
                        durability,
                        shared: self.kind == Kind::SharedFile,
                        ..JournalOptions::default()
                    },
                )
                .await
                .expect("open the journal"),
            ),
            // The server's durability is its own (eventual, for speed).
            Kind::Network => Arc::new(self.server.as_ref().expect("the test's server").client().await),
            #[cfg(feature = "sqlite")]
            Kind::Sqlite => Arc::new(
                durus::storage::SqliteStorage::open(
                    self.path(),
                    durus::storage::SqliteOptions::default().durability(durability),
                )
                .await
                .expect("open the sqlite storage"),
            ),
            #[cfg(feature = "postgres")]
            Kind::Postgres => Arc::new(
                durus::storage::PostgresStorage::open(
                    &self.conninfo(),
                    durus::storage::PostgresOptions::default().durability(durability),
                )
                .await
                .expect("open the postgres storage"),
            ),
        }
    }

    /// Opens a handle without syncs (the tests' usual setting).
    pub async fn open(&self) -> Arc<dyn Storage> {
        self.open_with(Durability::Eventual).await
    }

    /// Whether the data outlives a close (memory's handles all close together).
    pub fn reopens(&self) -> bool {
        self.kind != Kind::Memory
    }
}

/// `storage_tests!(name => body)`: a module `name` with one `#[test]` per storage kind,
/// each calling `body(Kind)`.
#[macro_export]
macro_rules! storage_tests {
    ($($name:ident => $body:expr;)+) => {$(
        $crate::storage_tests!(@module $name, $body, {
            #[test]
            fn memory() {
                ($body)($crate::common::storages::Kind::Memory)
            }
        });
    )+};
    // One module: the tests given, then one for every kind that has a file.
    (@module $name:ident, $body:expr, { $($more:tt)* }) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $($more)*
            #[test]
            fn file() {
                ($body)($crate::common::storages::Kind::File)
            }
            #[test]
            fn shared_file() {
                ($body)($crate::common::storages::Kind::SharedFile)
            }
            #[test]
            fn network() {
                ($body)($crate::common::storages::Kind::Network)
            }
            #[cfg(feature = "sqlite")]
            #[test]
            fn sqlite() {
                ($body)($crate::common::storages::Kind::Sqlite)
            }
            #[cfg(feature = "postgres")]
            #[test]
            fn postgres() {
                ($body)($crate::common::storages::Kind::Postgres)
            }
        }
    };
}

/// `packing_storage_tests!(name => body)`: as [`storage_tests!`], for the kinds that
/// pack (all but memory).
#[macro_export]
macro_rules! packing_storage_tests {
    ($($name:ident => $body:expr;)+) => {$(
        $crate::storage_tests!(@module $name, $body, {});
    )+};
}
