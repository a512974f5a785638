//! The embedded default: the journal file, made async through [`Unblocked`].

use std::path::{Path, PathBuf};

use super::{SyncStorage, Unblocked};
use crate::error::Result;
use crate::journal::io::FileIo;
use crate::journal::{Journal, JournalOptions, RepairReport};
use crate::record::{Changes, CommitRequest, Committed, Loaded, Oid, Tid, TxInfo};

/// The journal file storage: [`Journal`] on the blocking pool, with loads whose bytes
/// are in the page cache served on the caller's thread (see [`Journal::try_load`]).
pub type FileStorage = Unblocked<Journal>;

impl Unblocked<Journal> {
    /// Opens or creates the journal at `path` (see [`Journal::open`]).
    ///
    /// # Errors
    ///
    /// As [`Journal::open`]: [`Error::Locked`](crate::Error::Locked) while another process
    /// writes the file, [`Error::Format`](crate::Error::Format),
    /// [`Error::Version`](crate::Error::Version) or [`Error::Corrupt`](crate::Error::Corrupt)
    /// for a file this build cannot read, [`Error::Io`](crate::Error::Io).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not stop an open already running on the blocking pool;
    /// the journal it opens is closed again (its lock released) when that job finishes.
    pub async fn open(path: impl Into<PathBuf>, opts: JournalOptions) -> Result<FileStorage> {
        let path = path.into();
        blocking::unblock(move || Journal::open(path, opts))
            .await
            .map(Unblocked::new)
    }

    /// Opens a journal on any [`FileIo`] (see [`Journal::open_io`]).
    ///
    /// # Errors
    ///
    /// As [`Journal::open_io`].
    ///
    /// # Cancel safety
    ///
    /// As [`open`](Unblocked::open): a dropped open finishes on the blocking pool, and
    /// what it opened is dropped.
    pub async fn open_io(io: Box<dyn FileIo>, opts: JournalOptions) -> Result<FileStorage> {
        blocking::unblock(move || Journal::open_io(io, opts))
            .await
            .map(Unblocked::new)
    }

    /// Cuts a torn tail off the journal at `path` (see [`Journal::repair`]).
    ///
    /// # Errors
    ///
    /// As [`Journal::repair`]: damage other than a torn tail is refused.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not stop a repair already running on the blocking pool:
    /// it runs to the end and its report is lost. Run it again (it finds nothing to do)
    /// or verify the file to learn the outcome.
    pub async fn repair(path: impl AsRef<Path>) -> Result<RepairReport> {
        let path = path.as_ref().to_path_buf();
        blocking::unblock(move || Journal::repair(path)).await
    }

    /// The journal engine.
    pub fn journal(&self) -> &Journal {
        self.engine()
    }
}

impl SyncStorage for Journal {
    fn load(&self, oid: Oid) -> Result<Loaded> {
        Journal::load(self, oid)
    }
    fn load_at(&self, oid: Oid, snapshot: Tid) -> Result<Loaded> {
        Journal::load_at(self, oid, snapshot)
    }
    fn load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Result<Vec<Option<Loaded>>> {
        Journal::load_many(self, oids, snapshot)
    }
    fn try_load(&self, oid: Oid) -> Option<Result<Loaded>> {
        Journal::try_load(self, oid)
    }
    fn try_load_at(&self, oid: Oid, snapshot: Tid) -> Option<Result<Loaded>> {
        Journal::try_load_at(self, oid, snapshot)
    }
    fn try_load_many(&self, oids: &[Oid], snapshot: Option<Tid>) -> Option<Result<Vec<Option<Loaded>>>> {
        Journal::try_load_many(self, oids, snapshot)
    }
    fn new_oids(&self, n: u64) -> Result<Vec<Oid>> {
        Journal::new_oids(self, n)
    }
    fn commit(&self, req: &CommitRequest) -> Result<Committed> {
        Journal::commit(self, req)
    }
    fn commit_many(&self, reqs: &[CommitRequest]) -> Vec<Result<Committed>> {
        Journal::commit_many(self, reqs)
    }
    fn changes_since(&self, since: Tid) -> Result<Changes> {
        Journal::changes_since(self, since)
    }
    fn last_tid(&self) -> Result<Tid> {
        Journal::last_tid(self)
    }
    fn others_may_append(&self) -> bool {
        self.others_may_append()
    }
    fn refresh(&self) -> Result<Tid> {
        Journal::refresh(self)
    }
    fn transactions(&self, after: Tid) -> Result<Vec<TxInfo>> {
        Journal::transactions(self, after)
    }
    fn tid_at_time(&self, timestamp: u64) -> Result<Tid> {
        Journal::tid_at_time(self, timestamp)
    }
    fn oids(&self) -> Result<Vec<Oid>> {
        Journal::oids(self)
    }
    fn backup_to(
        &self,
        dest: &Path,
        opts: &crate::journal::BackupOptions,
    ) -> Result<crate::journal::BackupReport> {
        Journal::backup_with(self, dest, opts)
    }
    fn pin(&self, snapshot: Tid) -> Result<crate::journal::SnapshotPin> {
        Journal::pin(self, snapshot)
    }
    fn pack_due(&self) -> bool {
        Journal::pack_due(self)
    }
    fn auto_pack_failed(&self, error: &crate::Error) {
        self.note_auto_pack_failure();
        log::warn!("durus: a background pack failed: {error}");
    }
    fn pack(
        &self,
        opts: &crate::journal::PackOptions,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<crate::journal::PackReport> {
        Journal::pack(self, opts, cancel)
    }
    fn close(&self) -> Result<()> {
        Journal::close(self)
    }
}
