//! Copying a whole store into an empty one of any kind (`durus copy`): the newest
//! version of every object as of one snapshot, under the same oids.

use std::collections::HashSet;

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::record::{CommitRequest, Oid, Record, Tid};
use crate::storage::Storage;

/// What [`copy`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// Objects copied.
    pub objects: u64,
    /// Bytes of their states.
    pub bytes: u64,
    /// The source's snapshot the copy holds: every transaction up to it.
    pub snapshot: Tid,
    /// Transactions written to the destination.
    pub transactions: u64,
}

/// Records per destination transaction at most.
const BATCH_RECORDS: usize = 10_000;
/// Bytes of states per destination transaction at most.
const BATCH_BYTES: usize = 8 << 20;

/// Copies every object of `from` as of its newest transaction when the copy starts into
/// `to`, which must hold no transactions yet: the same oids, data and refs, in
/// transactions of at most 10,000 objects; `to` hands out new oids after the highest
/// one copied. `from` may be in use meanwhile: its snapshot is pinned, and what is
/// committed after it is not copied. History is not copied (only each object's version
/// at the snapshot), as a pack would keep. `progress` is called with the objects copied
/// so far after each transaction.
///
/// # Errors
///
/// [`Error::Invalid`] if `to` already holds transactions (nothing is written) or hands
/// out oids that are not the copied ones; otherwise what either storage returns. A copy
/// that fails part way leaves `to` holding the transactions written so far.
///
/// # Cancel safety
///
/// Dropping the future stops the copy between two destination transactions (one being
/// committed may still land); `to` then holds a prefix of the copy.
///
/// ```
/// use durus::storage::MemoryStorage;
/// use durus::tools::copy::copy;
/// use durus::{Counter, Db, DbBuilder};
///
/// # futures::executor::block_on(async {
/// let from = MemoryStorage::new();
/// let db: Db<Counter> = DbBuilder::storage(from.clone()).open().await?;
/// let mut tx = db.begin().await?;
/// tx.root_mut().await?.add(7);
/// tx.commit().await?;
///
/// let to = MemoryStorage::new();
/// let report = copy(&from, &to, |_| {}).await?;
/// assert_eq!(report.objects, 1);
/// let copied: Db<Counter> = DbBuilder::storage(to).open().await?;
/// assert_eq!(copied.begin().await?.root().await?.get(), 7);
/// # Ok::<(), durus::Error>(())
/// # }).unwrap();
/// ```
pub async fn copy(from: &dyn Storage, to: &dyn Storage, mut progress: impl FnMut(u64)) -> Result<CopyReport> {
    let mut last = to.last_tid().await?;
    if last != Tid(0) {
        return Err(Error::Invalid(format!(
            "the destination already holds transactions (up to {last}); copy only into an empty store"
        )));
    }
    let snapshot = from.last_tid().await?;
    // Keeps the versions at `snapshot` readable while others commit or pack.
    let _pin = from.pin(snapshot)?;
    let mut report = CopyReport {
        snapshot,
        ..CopyReport::default()
    };
    let mut alloc = Allocated::default();
    let mut batch: Vec<Record> = Vec::new();
    let mut batch_bytes = 0;
    let mut seen = HashSet::new();
    let mut scan = from.scan();
    while let Some(loaded) = scan.next().await {
        let loaded = loaded?;
        let oid = loaded.record.oid;
        if !seen.insert(oid) {
            continue;
        }
        let record = if loaded.tid <= snapshot {
            loaded.record
        } else {
            // Committed after the snapshot: copy the version the snapshot saw, if any.
            match from.load_at(oid, snapshot).await {
                Ok(l) => l.record,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        };
        batch_bytes += record.data.len();
        batch.push(record);
        if batch.len() >= BATCH_RECORDS || batch_bytes >= BATCH_BYTES {
            last = write(to, &mut alloc, &mut batch, last, &mut report).await?;
            batch_bytes = 0;
            progress(report.objects);
        }
    }
    if !batch.is_empty() {
        write(to, &mut alloc, &mut batch, last, &mut report).await?;
        progress(report.objects);
    }
    Ok(report)
}

/// The destination's oids handed out to the copy: all below `end`.
#[derive(Default)]
struct Allocated {
    end: u64,
}

impl Allocated {
    /// Has `to` hand out oids until `oid` is among them; they must be exactly the next
    /// ones, or the copy would not keep its oids.
    async fn through(&mut self, to: &dyn Storage, oid: Oid) -> Result<()> {
        if oid == Oid::ROOT || oid.0 < self.end {
            return Ok(());
        }
        let want = oid.0 + 1 - self.end;
        let got = to.new_oids(want).await?;
        let first = got.first().map(|o| o.0);
        let contiguous = got.windows(2).all(|w| w[1].0 == w[0].0 + 1);
        match (first, got.last()) {
            (Some(f), Some(l)) if contiguous && f <= self.end.max(1) && l.0 >= oid.0 => {
                self.end = l.0 + 1;
                Ok(())
            }
            _ => Err(Error::Invalid(format!(
                "the destination handed out oids {:?}..{:?} where {}..={} were needed, so it \
                 cannot keep the copied oids",
                first,
                got.last().map(|o| o.0),
                self.end,
                oid.0
            ))),
        }
    }
}

/// Commits `batch` (emptying it) as one transaction after `last`; returns its tid.
async fn write(
    to: &dyn Storage,
    alloc: &mut Allocated,
    batch: &mut Vec<Record>,
    last: Tid,
    report: &mut CopyReport,
) -> Result<Tid> {
    if let Some(max) = batch.iter().map(|r| r.oid).max() {
        alloc.through(to, max).await?;
    }
    let records = std::mem::take(batch);
    let objects = records.len() as u64;
    let bytes: u64 = records.iter().map(|r| r.data.len() as u64).sum();
    let committed = to
        .commit(CommitRequest {
            snapshot: last,
            records,
            reads: Vec::new(),
            rebased: Vec::new(),
        })
        .await?;
    report.objects += objects;
    report.bytes += bytes;
    report.transactions += 1;
    Ok(committed.tid)
}
