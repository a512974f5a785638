//! The reference check: pack's walk from the root, run over the current state with
//! nothing written, to find reachable records that refer to oids with no record.
//! `durus verify --refs` and a pack's refusal count dangling references the same way,
//! because both are this walk.

use super::mark::Walk;
use super::output::Output;
use super::Discard;
use crate::error::Result;
use crate::journal::{Journal, JournalOptions};
use crate::record::{Oid, Tid};

/// What [`Journal::check_refs`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefsReport {
    /// The snapshot the walk read: the last transaction when it started.
    pub at: Tid,
    /// Objects reachable from the root (those a pack would keep, with no window).
    pub reachable: u64,
    /// Bytes of their newest versions.
    pub reachable_bytes: u64,
    /// References from reachable records to oids that have no record: dangling
    /// references, which a pack refuses to leave behind unless forced.
    pub dangling: u64,
    /// The first of the missing oids (up to 100), in the order the walk met them.
    pub oids: Vec<Oid>,
}

impl RefsReport {
    /// True when no reachable record refers to a missing oid.
    pub fn is_clean(&self) -> bool {
        self.dangling == 0
    }
}

impl Journal {
    /// Walks every reference from the root through the records' refs (the walk a pack
    /// makes, so the two always agree), at the last transaction, and reports the
    /// reachable objects and the dangling references. Nothing is written, so this works
    /// on a read-only journal too; commits from other threads go on meanwhile and are
    /// not looked at.
    ///
    /// Memory is a bit per oid for the walk and 12 bytes per oid for the index of what
    /// it reached (as a dry-run pack).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`](crate::Error::Corrupt) if a record the walk reads is damaged
    /// or its index entry points at another oid; I/O errors; [`Error::Closed`](crate::Error::Closed).
    pub fn check_refs(&self) -> Result<RefsReport> {
        self.check_open()?;
        let (file, point, next_oid) = {
            let st = self.read_state();
            (
                st.file.clone(),
                st.last_tid,
                st.reserved_oid.max(st.own_until).max(st.next_oid),
            )
        };
        let mut output = Output::new(&Discard, Vec::new(), (point, 0), next_oid);
        let mut walk = Walk::new([Oid::ROOT]);
        self.mark_and_keep(&file, point, &mut walk, &mut output, &mut |_, _| Ok(()))?;
        // A journal whose root was never committed reaches nothing; no record refers
        // to the root, so its absence is no dangling reference.
        walk.missing.oids.retain(|&o| o != Oid::ROOT);
        let (dangling, oids) = walk.missing.dangling(&output);
        Ok(RefsReport {
            at: Tid(point),
            reachable: output.kept,
            reachable_bytes: output.kept_bytes,
            dangling,
            oids,
        })
    }
}

impl Journal {
    /// Opens the journal at `path` read-only (no lock: another process may have it
    /// open for writing) and runs [`check_refs`](Journal::check_refs) on it.
    ///
    /// # Errors
    ///
    /// As [`Journal::open`] and [`check_refs`](Journal::check_refs).
    pub fn verify_refs_path(path: impl AsRef<std::path::Path>) -> Result<RefsReport> {
        let j = Journal::open(
            path,
            JournalOptions {
                read_only: true,
                ..JournalOptions::default()
            },
        )?;
        let report = j.check_refs();
        j.close()?;
        report
    }
}
