//! [`DbBuilder`]: every way of opening a [`Db`] other than the one-line [`Db::open`].

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Db, DbOptions};
use crate::error::{Error, Result};
use crate::journal::{Durability, JournalOptions};
use crate::object::Persistent;
use crate::storage::{FileStorage, MemoryStorage, Storage, StorageSpec};

/// Opens a [`Db`]: where its objects live, and how it behaves.
///
/// Start from the place the objects live, change the settings that should differ from
/// the defaults, then [`open`](DbBuilder::open):
///
/// | start | objects live in |
/// |---|---|
/// | [`Db::builder(path)`](Db::builder) (or [`DbBuilder::file`]) | the journal file at `path`, created if missing |
/// | [`DbBuilder::memory`] | memory, gone when the last handle is dropped |
/// | [`DbBuilder::storage`], [`DbBuilder::storage_arc`] | a [`Storage`] you opened yourself |
/// | [`DbBuilder::url`]`(spec)` | wherever a [`StorageSpec`] string says (configuration) |
/// | [`DbBuilder::storage`]`(SqliteStorage::open(path, opts).await?)` (feature `sqlite`) | a SQLite file |
/// | [`DbBuilder::storage`]`(PostgresStorage::open(url, opts).await?)` (feature `postgres`) | a PostgreSQL database |
///
/// | setting | default | applies to |
/// |---|---|---|
/// | [`cache_size`](DbBuilder::cache_size) | 100,000 objects | every source |
/// | [`cache_bytes`](DbBuilder::cache_bytes) | 256 MiB | every source |
/// | [`max_attempts`](DbBuilder::max_attempts) | 20 | every source |
/// | [`backoff`](DbBuilder::backoff) | 200 µs, at most 50 ms | every source |
/// | [`options`](DbBuilder::options) | [`DbOptions::default()`] | every source |
/// | [`durability`](DbBuilder::durability) | [`Durability::Immediate`] (every commit is fsynced) | a journal file |
/// | [`shared`](DbBuilder::shared) | `false` (one writing process at a time) | a journal file |
/// | [`read_only`](DbBuilder::read_only) | `false` | a journal file |
/// | [`auto_pack`](DbBuilder::auto_pack) | off (pack when asked) | a journal file |
/// | [`journal_options`](DbBuilder::journal_options) | [`JournalOptions::default()`] | a journal file |
///
/// Settings apply in the order they are made, so a later call overrides what an earlier
/// one set ([`options`](DbBuilder::options) and
/// [`journal_options`](DbBuilder::journal_options) replace everything they cover). The
/// journal settings say how the builder opens a journal file; a builder whose objects
/// live elsewhere refuses them when it opens, rather than ignore a durability the
/// caller asked for.
///
/// ```
/// use durus::{Counter, Db, Durability};
///
/// # fn main() -> durus::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("hits.durus");
/// futures::executor::block_on(async {
///     let db: Db<Counter> = Db::builder(&path)
///         .durability(Durability::Eventual) // no fsync per commit: for bulk loads and tests
///         .cache_size(10_000)
///         .open()
///         .await?;
///     db.transact(|tx| {
///         Box::pin(async move {
///             tx.root_mut().await?.increment();
///             Ok(())
///         })
///     })
///     .await?;
///     db.close().await
/// })
/// # }
/// ```
#[must_use = "a builder opens nothing until `open` is awaited"]
pub struct DbBuilder<R> {
    source: Source,
    options: DbOptions,
    /// The journal settings made, by name, in order: refused when no journal file is
    /// opened (a SQLite file takes durability and sharing).
    journal_settings: Vec<&'static str>,
    _root: PhantomData<fn() -> R>,
}

/// Where the objects live. Private, so that new kinds (a URL-like spec naming another
/// storage) can be added without breaking anyone.
#[derive(Clone)]
enum Source {
    File(PathBuf),
    Memory,
    Storage(Arc<dyn Storage>),
    /// Any other kind a [`StorageSpec`] names.
    Spec(StorageSpec),
}

impl<R> DbBuilder<R> {
    /// A database in the journal file at `path` (created with the root object if it does
    /// not exist); the same as [`Db::builder`].
    pub fn file(path: impl Into<PathBuf>) -> DbBuilder<R> {
        DbBuilder::from_source(Source::File(path.into()))
    }

    /// A database in memory ([`MemoryStorage`]): every feature but durability, for tests
    /// and for data that need not outlive the process.
    ///
    /// ```
    /// use durus::{Counter, Db, DbBuilder};
    ///
    /// # futures::executor::block_on(async {
    /// let db: Db<Counter> = DbBuilder::memory().open().await?;
    /// assert_eq!(db.begin().await?.root().await?.get(), 0);
    /// # Ok::<(), durus::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn memory() -> DbBuilder<R> {
        DbBuilder::from_source(Source::Memory)
    }

    /// A database on a storage you opened yourself (a [`FileStorage`] on your own
    /// [`FileIo`](crate::journal::io::FileIo), say). The storage's own options decide
    /// durability and sharing.
    ///
    /// ```
    /// use durus::storage::MemoryStorage;
    /// use durus::{Counter, Db, DbBuilder};
    ///
    /// # futures::executor::block_on(async {
    /// let storage = MemoryStorage::new();
    /// let db: Db<Counter> = DbBuilder::storage(storage.clone()).cache_size(100).open().await?;
    /// // A second Db on the same storage sees what the first committed.
    /// let mut tx = db.begin().await?;
    /// tx.root_mut().await?.add(5);
    /// tx.commit().await?;
    /// let other: Db<Counter> = DbBuilder::storage(storage).open().await?;
    /// assert_eq!(other.begin().await?.root().await?.get(), 5);
    /// # Ok::<(), durus::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn storage(storage: impl Storage) -> DbBuilder<R> {
        DbBuilder::storage_arc(Arc::new(storage))
    }

    /// A database on a storage handle that is already shared, such as another `Db`'s
    /// [`Db::storage`].
    pub fn storage_arc(storage: Arc<dyn Storage>) -> DbBuilder<R> {
        DbBuilder::from_source(Source::Storage(storage))
    }

    /// A database wherever `spec` says (see [`StorageSpec`]): `file:PATH` (or a bare
    /// path), `sqlite:PATH`, `postgres://...`, `durus://HOST:PORT`, `durus+unix:PATH` or
    /// `memory:`, so an application picks its storage by configuration. Journal settings
    /// apply to a journal file; a SQLite file takes [`durability`](DbBuilder::durability)
    /// and [`shared`](DbBuilder::shared) and refuses the others, a PostgreSQL database
    /// takes `durability` (it is always shared), as every other kind refuses them all.
    ///
    /// ```
    /// use durus::{Counter, Db, DbBuilder};
    ///
    /// # fn main() -> durus::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// let spec = format!("file:{}", dir.path().join("hits.durus").display()); // from configuration
    /// futures::executor::block_on(async {
    ///     let db: Db<Counter> = DbBuilder::url(&spec)?.cache_size(1_000).open().await?;
    ///     let mut tx = db.begin().await?;
    ///     tx.root_mut().await?.increment();
    ///     tx.commit().await?;
    ///     db.close().await
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a spec that does not parse (an unknown scheme, a server
    /// address without a port); opening it fails later, in [`open`](DbBuilder::open).
    pub fn url(spec: &str) -> Result<DbBuilder<R>> {
        Ok(match spec.parse::<StorageSpec>()? {
            StorageSpec::File(path) => DbBuilder::file(path),
            StorageSpec::Memory => DbBuilder::memory(),
            other => DbBuilder::from_source(Source::Spec(other)),
        })
    }

    fn from_source(source: Source) -> DbBuilder<R> {
        DbBuilder {
            source,
            options: DbOptions::default(),
            journal_settings: Vec::new(),
            _root: PhantomData,
        }
    }

    /// About how many decoded objects the shared cache keeps (default 100,000; Durus's
    /// `cache_size`).
    pub fn cache_size(mut self, objects: usize) -> DbBuilder<R> {
        self.options.cache_size = objects;
        self
    }

    /// About how many bytes the shared cache keeps (default 256 MiB), counting each
    /// object's stored size plus a fixed overhead; see [`DbOptions::cache_bytes`]. The
    /// cache holds at most [`cache_size`](DbBuilder::cache_size) objects and at most
    /// this many bytes.
    pub fn cache_bytes(mut self, bytes: usize) -> DbBuilder<R> {
        self.options.cache_bytes = bytes;
        self
    }

    /// How many times [`Db::transact`] runs a transaction that keeps conflicting before
    /// it returns the conflict (default 20).
    pub fn max_attempts(mut self, attempts: u32) -> DbBuilder<R> {
        self.options.max_attempts = attempts;
        self
    }

    /// The backoff of [`Db::transact`] before its second attempt, and the longest one
    /// (defaults 200 µs and 50 ms); it doubles, with jitter, between attempts.
    pub fn backoff(mut self, first: Duration, longest: Duration) -> DbBuilder<R> {
        self.options.backoff = first;
        self.options.max_backoff = longest;
        self
    }

    /// Every [`Db`] setting at once, replacing those made so far. Its
    /// [`journal`](DbOptions::journal) field is used only when the builder opens a journal
    /// file.
    pub fn options(mut self, options: DbOptions) -> DbBuilder<R> {
        self.options = options;
        self
    }

    /// How far a commit goes before it returns (default [`Durability::Immediate`]: its
    /// bytes are on stable storage). Journal file only.
    pub fn durability(mut self, durability: Durability) -> DbBuilder<R> {
        self.options.journal.durability = durability;
        self.journal_setting("durability")
    }

    /// Whether other processes may read and write the journal file at the same time,
    /// with no server (default `false`); see [`JournalOptions::shared`]. Every process
    /// must open it shared. Journal file only.
    pub fn shared(mut self, shared: bool) -> DbBuilder<R> {
        self.options.journal.shared = shared;
        self.journal_setting("shared")
    }

    /// Opens the journal file without its write lock, alongside a writer (default
    /// `false`). The file must exist and hold a root; every commit that writes fails
    /// with [`Error::ReadOnly`]. Journal file only.
    pub fn read_only(mut self, read_only: bool) -> DbBuilder<R> {
        self.options.journal.read_only = read_only;
        self.journal_setting("read_only")
    }

    /// Packs the journal file in the background once `bytes` of transactions have been
    /// appended since it was opened or last packed (Durus's `--gcbytes`; default: only
    /// when asked, with [`Db::pack`]); see [`JournalOptions::auto_pack`]. Journal file
    /// only.
    pub fn auto_pack(mut self, bytes: u64) -> DbBuilder<R> {
        self.options.journal.auto_pack = Some(bytes);
        self.journal_setting("auto_pack")
    }

    /// Every journal setting at once (preallocation, checkpoints, creation and the
    /// above), replacing those made so far. Journal file only.
    pub fn journal_options(mut self, journal: JournalOptions) -> DbBuilder<R> {
        self.options.journal = journal;
        self.journal_setting("journal_options")
    }

    fn journal_setting(mut self, name: &'static str) -> DbBuilder<R> {
        self.journal_settings.push(name);
        self
    }

    /// Refuses journal settings on a builder that opens no journal file, except those
    /// named in `taken`.
    fn no_journal_settings(&self, source: &str, taken: &[&str]) -> Result<()> {
        match self.journal_settings.iter().find(|n| !taken.contains(n)) {
            Some(name) => Err(Error::Invalid(format!(
                "`{name}` is a journal file setting, and this database is {source}"
            ))),
            None => Ok(()),
        }
    }
}

impl<R: Persistent + Default> DbBuilder<R> {
    /// Opens the database: opens (or creates) its storage, then checks the root object's
    /// type, creating it as `R::default()` if the storage is empty.
    ///
    /// # Errors
    ///
    /// - [`Error::Invalid`] if a journal setting was made for a database that is not in
    ///   a journal file.
    /// - [`Error::Locked`] if another process has the journal file open for writing (or,
    ///   in [`shared`](DbBuilder::shared) mode, has it open in the other mode).
    /// - [`Error::Format`], [`Error::Version`] or [`Error::Corrupt`] if the file is not
    ///   a journal this build can read, or is damaged; [`Error::Io`] if the operating
    ///   system refuses it.
    /// - [`Error::WrongType`] if the stored root is not an `R`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the storage consistent. A journal file being opened on
    /// the blocking pool is closed again when that job finishes. If the root object was
    /// being created, its commit either lands (and the next open finds it) or does not.
    pub async fn open(self) -> Result<Db<R>> {
        let storage: Arc<dyn Storage> = match self.source {
            Source::File(path) => Arc::new(FileStorage::open(path, self.options.journal.clone()).await?),
            Source::Memory => {
                self.no_journal_settings("in memory", &[])?;
                Arc::new(MemoryStorage::new())
            }
            Source::Storage(ref storage) => {
                self.no_journal_settings("on a storage opened by the caller", &[])?;
                storage.clone()
            }
            Source::Spec(ref spec) => {
                let taken: &[&str] = match spec {
                    StorageSpec::Sqlite(_) => &["durability", "shared"],
                    StorageSpec::Postgres(_) => &["durability"],
                    _ => &[],
                };
                self.no_journal_settings(&format!("at {spec}"), taken)?;
                spec.open(&self.options.journal).await?
            }
        };
        Db::start(storage, self.options).await
    }
}

impl<R> Clone for DbBuilder<R> {
    fn clone(&self) -> Self {
        DbBuilder {
            source: self.source.clone(),
            options: self.options.clone(),
            journal_settings: self.journal_settings.clone(),
            _root: PhantomData,
        }
    }
}

impl<R> fmt::Debug for DbBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("DbBuilder");
        match &self.source {
            Source::File(path) => d.field("file", path),
            Source::Memory => d.field("memory", &true),
            Source::Storage(_) => d.field("storage", &"caller's"),
            Source::Spec(spec) => d.field("spec", &spec.to_string()),
        };
        d.field("options", &self.options).finish()
    }
}

impl<R: Persistent + Default> Db<R> {
    /// A builder for a database in the journal file at `path`, to set options before
    /// opening it; [`Db::open(path)`](Db::open) is `Db::builder(path).open()`. See
    /// [`DbBuilder`] for every setting and its default, and for databases in memory or
    /// on another storage.
    ///
    /// ```
    /// use durus::{Db, Durability, Persistent};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Default, Serialize, Deserialize, Persistent)]
    /// struct Settings {
    ///     theme: String,
    /// }
    ///
    /// # fn main() -> durus::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("settings.durus");
    /// futures::executor::block_on(async {
    ///     let db: Db<Settings> = Db::builder(&path).cache_size(1_000).open().await?;
    ///     let mut tx = db.begin().await?;
    ///     tx.root_mut().await?.theme = "dark".into();
    ///     tx.commit().await?;
    ///     db.close().await?;
    ///
    ///     // A read-only view of the same file.
    ///     let view: Db<Settings> = Db::builder(&path).read_only(true).open().await?;
    ///     assert_eq!(view.begin().await?.root().await?.theme, "dark");
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn builder(path: impl Into<PathBuf>) -> DbBuilder<R> {
        DbBuilder::file(path)
    }

    /// [`Db::open`] with options.
    ///
    /// # Cancel safety
    ///
    /// As [`DbBuilder::open`].
    #[deprecated(since = "0.2.0", note = "use Db::builder(path).options(options).open()")]
    pub async fn open_with(path: impl Into<PathBuf>, options: DbOptions) -> Result<Db<R>> {
        Db::builder(path).options(options).open().await
    }

    /// A database in memory.
    ///
    /// # Cancel safety
    ///
    /// As [`DbBuilder::open`].
    #[deprecated(since = "0.2.0", note = "use DbBuilder::memory().open()")]
    pub async fn memory() -> Result<Db<R>> {
        DbBuilder::memory().open().await
    }

    /// A database on any storage.
    ///
    /// # Cancel safety
    ///
    /// As [`DbBuilder::open`].
    #[deprecated(since = "0.2.0", note = "use DbBuilder::storage(storage).open()")]
    pub async fn with_storage(storage: impl Storage) -> Result<Db<R>> {
        DbBuilder::storage(storage).open().await
    }

    /// A database on any storage, with options.
    ///
    /// # Cancel safety
    ///
    /// As [`DbBuilder::open`].
    #[deprecated(
        since = "0.2.0",
        note = "use DbBuilder::storage(storage).options(options).open()"
    )]
    pub async fn with_storage_options(storage: impl Storage, options: DbOptions) -> Result<Db<R>> {
        DbBuilder::storage(storage).options(options).open().await
    }

    /// A database on a shared storage handle.
    ///
    /// # Cancel safety
    ///
    /// As [`DbBuilder::open`].
    #[deprecated(
        since = "0.2.0",
        note = "use DbBuilder::storage_arc(storage).options(options).open()"
    )]
    pub async fn from_arc(storage: Arc<dyn Storage>, options: DbOptions) -> Result<Db<R>> {
        DbBuilder::storage_arc(storage).options(options).open().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Counter;

    #[test]
    fn later_settings_override_earlier_ones() {
        let b = DbBuilder::<Counter>::file("x")
            .durability(Durability::Eventual)
            .shared(true)
            .cache_size(7);
        assert_eq!(b.options.journal.durability, Durability::Eventual);
        assert!(b.options.journal.shared);
        assert_eq!(b.options.cache_size, 7);
        assert_eq!(b.journal_settings, ["durability", "shared"]);

        let b = b.journal_options(JournalOptions::default());
        assert_eq!(b.options.journal.durability, Durability::Immediate);
        assert!(!b.options.journal.shared);
        assert_eq!(b.options.cache_size, 7, "journal options leave Db settings alone");

        let b = b.options(DbOptions::default()).read_only(true);
        assert_eq!(b.options.cache_size, DbOptions::default().cache_size);
        assert!(b.options.journal.read_only);
    }

    #[test]
    fn only_journal_settings_are_refused_off_a_file() {
        let plain = DbBuilder::<Counter>::memory()
            .cache_size(1)
            .options(DbOptions::default());
        assert!(plain.no_journal_settings("in memory", &[]).is_ok());
        let set = DbBuilder::<Counter>::memory().read_only(false);
        assert!(matches!(
            set.no_journal_settings("in memory", &[]),
            Err(Error::Invalid(_))
        ));
        let sqlite_ok = DbBuilder::<Counter>::memory()
            .durability(Durability::Eventual)
            .shared(true);
        assert!(sqlite_ok
            .no_journal_settings("x", &["durability", "shared"])
            .is_ok());
        let sqlite_bad = sqlite_ok.read_only(true);
        assert!(sqlite_bad
            .no_journal_settings("x", &["durability", "shared"])
            .is_err());
    }
}
