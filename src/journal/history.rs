//! The journal's history: which transactions committed when, and what they wrote.

use std::collections::BTreeSet;

use super::format::{BlockHeader, BlockKind, DATA_START};
use super::io::FileIo;
use super::scan::{ScannedEntry, Scanner, Step};
use super::Journal;
use crate::error::{Error, Result};
use crate::record::{Changes, Oid, Tid, TxInfo};

impl Journal {
    /// The transactions after `after`, oldest first, each with its timestamp and the
    /// oids it wrote. Recent ones come from memory; older ones are read from the file.
    ///
    /// # Errors
    ///
    /// [`Error::HistoryGone`] if `after` is before the pack point of a packed file (and
    /// this handle's memory does not reach back that far).
    pub fn transactions(&self, after: Tid) -> Result<Vec<TxInfo>> {
        self.check_open()?;
        let (end, file) = {
            let st = self.read_state();
            if after.0 >= st.log_from {
                let newer = st.log.iter().rev().take_while(|(t, _, _)| *t > after.0).count();
                return Ok(st
                    .log
                    .iter()
                    .skip(st.log.len() - newer)
                    .map(|(t, ts, oids)| {
                        let mut oids = oids.to_vec();
                        oids.sort_unstable();
                        TxInfo {
                            tid: Tid(*t),
                            timestamp: *ts,
                            oids,
                        }
                    })
                    .collect());
            }
            if after.0 < st.history.history_from {
                return Err(Error::HistoryGone {
                    oldest: Tid(st.history.history_from),
                });
            }
            (st.end, st.file.clone())
        };
        let mut out = Vec::new();
        scan_history(&*file, end, |header, entries| {
            if header.tid > after.0 {
                let mut oids: Vec<Oid> = entries.iter().map(|e| e.oid).collect();
                oids.sort_unstable();
                out.push(TxInfo {
                    tid: Tid(header.tid),
                    timestamp: header.timestamp,
                    oids,
                });
            }
            true
        })?;
        Ok(out)
    }

    /// The last transaction committed at or before `timestamp` (microseconds since the
    /// Unix epoch), or [`Tid::ZERO`] if there is none: the state of the database at
    /// that moment is the snapshot at this tid.
    ///
    /// # Errors
    ///
    /// [`Error::HistoryGone`] for a moment before the pack point of a packed file.
    pub fn tid_at_time(&self, timestamp: u64) -> Result<Tid> {
        self.check_open()?;
        let (end, file, from) = {
            let st = self.read_state();
            // Timestamps never decrease, so the log can be searched in halves.
            let newer = st.log.partition_point(|(_, ts, _)| *ts <= timestamp);
            if newer > 0 {
                return Ok(Tid(st.log[newer - 1].0));
            }
            if st.log_from == 0 {
                return Ok(Tid::ZERO);
            }
            let packed = st.history;
            if packed.history_from > 0 && timestamp < packed.history_timestamp {
                return Err(Error::HistoryGone {
                    oldest: Tid(packed.history_from),
                });
            }
            (st.end, st.file.clone(), Tid(packed.history_from))
        };
        // A packed file's history starts at its pack point.
        let mut found = from;
        scan_history(&*file, end, |header, _| {
            if header.timestamp > timestamp {
                return false;
            }
            found = Tid(header.tid);
            true
        })?;
        Ok(found)
    }

    /// The oids changed by transactions after `since`, and the tid the answer reaches.
    pub fn changes_since(&self, since: Tid) -> Result<Changes> {
        let last = self.last_tid()?;
        if since > last {
            return Err(Error::snapshot_ahead(since, last));
        }
        let txs = self.transactions(since)?;
        let tid = txs.last().map_or(since, |t| t.tid);
        let oids: BTreeSet<Oid> = txs.into_iter().flat_map(|t| t.oids).collect();
        Ok(Changes {
            tid,
            oids: oids.into_iter().collect(),
        })
    }
}

/// Reads the transactions of the file from its start up to `end`, handing each to
/// `f` until it returns false. History older than the in-memory log lies before the
/// checkpoint the journal was opened from, which opening did not read: if it does
/// not read whole up to `end`, that is corruption, never a shorter answer.
fn scan_history(
    file: &dyn FileIo,
    end: u64,
    mut f: impl FnMut(&BlockHeader, &[ScannedEntry]) -> bool,
) -> Result<()> {
    let mut sc = Scanner::new(file, end, DATA_START, 0);
    loop {
        match sc.next_step()? {
            Step::Block { header, entries, .. } => {
                if header.kind == BlockKind::Transaction && !f(&header, &entries) {
                    return Ok(());
                }
            }
            Step::End { offset, .. } | Step::Torn { offset, .. } if offset < end => {
                return Err(Error::corrupt(
                    offset,
                    "the journal's history ends before the point it was opened from",
                ))
            }
            Step::End { .. } | Step::Torn { .. } => return Ok(()),
        }
    }
}
