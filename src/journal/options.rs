//! How a journal is opened, and the counters it keeps.

/// How far a commit goes before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// A commit returns after its bytes are on stable storage (`fdatasync`). Survives
    /// process crashes and power loss. The default.
    #[default]
    Immediate,
    /// A commit returns after its bytes are handed to the operating system, without a
    /// sync. Survives a crash of the process but not of the machine; after a power loss
    /// the file may need [`Journal::repair`](super::Journal::repair). For bulk loads and tests.
    Eventual,
}

/// How to open a journal.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// Sync policy for commits.
    pub durability: Durability,
    /// Open without the write lock; every write fails with [`Error::ReadOnly`](crate::Error::ReadOnly).
    pub read_only: bool,
    /// Share the file with other processes that open it in shared mode, with no server.
    ///
    /// Instead of holding the file's write lock for as long as it is open, a process
    /// takes the lock of a lock file next to it (`<path>.lock`, an OS advisory lock)
    /// only while it appends. Under that lock it first reads what other processes
    /// appended, so conflicts with their commits are found exactly; between commits,
    /// [`Journal::refresh`](super::Journal::refresh) catches up. A process killed while appending releases the
    /// lock with its death; its partial append is ignored by readers and cut off by the
    /// next writer. Opening in exclusive mode fails with [`Error::Locked`](crate::Error::Locked) while shared
    /// writers have the file open, and the other way round.
    pub shared: bool,
    /// Create the file if it does not exist (ignored when read-only).
    pub create: bool,
    /// Grow the file with filler this many bytes at a time ahead of the data, so that a
    /// commit's sync does not also have to make a new file size durable. 0 turns it off.
    pub preallocate: u64,
    /// Write an index checkpoint after this many bytes have been appended since the last
    /// one (and at least twice the last checkpoint's size; always on close), bounding
    /// the work of the next open after a crash. `None`: only on close.
    pub checkpoint_every: Option<u64>,
    /// Pack in the background (with [`PackOptions::default`](super::PackOptions)) once
    /// this many bytes of transactions have been appended since the journal was opened
    /// or last packed, as Durus's `--gcbytes` does. `None` (the default): only when
    /// asked. Through [`FileStorage`](crate::storage::FileStorage), which runs the pack
    /// on the blocking pool; a failed background pack is logged (through `log`) and
    /// counted in [`JournalStats::auto_pack_failures`], and the next one is tried after
    /// as many bytes again. Closing the storage stops a background pack at its next
    /// step; dropping it without closing lets the pack finish first.
    pub auto_pack: Option<u64>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            durability: Durability::Immediate,
            read_only: false,
            shared: false,
            create: true,
            preallocate: 4 << 20,
            checkpoint_every: Some(256 << 20),
            auto_pack: None,
        }
    }
}

/// Counters of the work a journal has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Transactions committed.
    pub commits: u64,
    /// Write groups appended (each one positioned write, followed by one sync when
    /// durable).
    pub groups: u64,
    /// Sync calls made to the operating system.
    pub syncs: u64,
    /// Bytes written (including preallocation).
    pub bytes_written: u64,
    /// Packs done by this handle (asked for or automatic).
    pub packs: u64,
    /// Automatic packs that failed.
    pub auto_pack_failures: u64,
}
