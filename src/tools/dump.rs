//! [`dump`]: the records of a journal, decoded, and [`history`]: every version of one
//! object.

use std::path::Path;

use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::record::{Loaded, Oid, Tid};
use crate::tools::census::{open_read_only, TypeName};

/// Which versions [`dump`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum At {
    /// The newest record of each object.
    #[default]
    Newest,
    /// The version visible at this transaction.
    Tid(Tid),
    /// The version visible at this moment (microseconds since the Unix epoch).
    Time(u64),
}

/// A record's state, decoded as far as durus can.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// A durus object's CBOR state.
    Cbor(ciborium::Value),
    /// A pickle (imported from Python Durus), which durus does not decode.
    Pickle,
    /// Data durus cannot decode, with the reason.
    Undecodable(String),
}

/// One record as [`dump`] shows it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Dumped {
    /// The object.
    pub oid: Oid,
    /// The transaction that wrote this version.
    pub tid: Tid,
    /// The type its data names.
    pub type_name: TypeName,
    /// The objects it refers to.
    pub refs: Vec<Oid>,
    /// Bytes of its data.
    pub bytes: u64,
    /// Its state.
    pub state: State,
}

impl Dumped {
    fn of(loaded: Loaded) -> Dumped {
        let r = loaded.record;
        let type_name = TypeName::of(&r.data);
        let state = match &type_name {
            TypeName::Durus(name) => {
                let body = r.data.get(2 + name.len()..).unwrap_or_default();
                match ciborium::from_reader::<ciborium::Value, _>(body) {
                    Ok(v) => State::Cbor(v),
                    Err(e) => State::Undecodable(e.to_string()),
                }
            }
            TypeName::Pickle(_) => State::Pickle,
            TypeName::Unknown => State::Undecodable("not a durus object record or a pickle".into()),
        };
        Dumped {
            oid: r.oid,
            tid: loaded.tid,
            type_name,
            refs: r.refs,
            bytes: r.data.len() as u64,
            state,
        }
    }
}

/// Oids loaded per batch.
const BATCH: usize = 4096;

/// The records of the journal at `path` (read without the write lock), oldest oid
/// first: of `oid` alone if given, else of every object, each in the version `at`
/// selects (objects that did not exist then are left out).
///
/// # Errors
///
/// [`Error::NotFound`] if `oid` has no version at `at`; [`Error::HistoryGone`] for a
/// moment before a packed file's pack point; what opening and reading a journal can
/// fail with.
pub fn dump(path: impl AsRef<Path>, oid: Option<Oid>, at: At) -> Result<Vec<Dumped>> {
    let mut out = Vec::new();
    dump_each(path, oid, at, &mut |d| {
        out.push(d);
        Ok(())
    })?;
    Ok(out)
}

/// [`dump`] a record at a time: hands each record to `each` as soon as it is read (a
/// few thousand are loaded at once), so that a store of millions is shown without
/// holding them all; stops at the first error `each` returns, and returns it.
///
/// # Errors
///
/// As [`dump`], and what `each` returns.
pub fn dump_each(
    path: impl AsRef<Path>,
    oid: Option<Oid>,
    at: At,
    each: &mut dyn FnMut(Dumped) -> Result<()>,
) -> Result<()> {
    let j = open_read_only(path.as_ref())?;
    let shown = show_each(&j, oid, at, each);
    let closed = j.close();
    shown?;
    closed
}

/// The body of [`dump_each`] on an open journal.
fn show_each(
    j: &Journal,
    oid: Option<Oid>,
    at: At,
    each: &mut dyn FnMut(Dumped) -> Result<()>,
) -> Result<()> {
    let snapshot = match at {
        At::Newest => None,
        At::Tid(t) => Some(t),
        At::Time(ts) => Some(j.tid_at_time(ts)?),
    };
    match oid {
        Some(oid) => {
            let loaded = match snapshot {
                Some(t) => j.load_at(oid, t)?,
                None => j.load(oid)?,
            };
            each(Dumped::of(loaded))
        }
        None => {
            for chunk in j.oids()?.chunks(BATCH) {
                for loaded in j.load_many(chunk, snapshot)?.into_iter().flatten() {
                    each(Dumped::of(loaded))?;
                }
            }
            Ok(())
        }
    }
}

/// One version of an object, as [`history`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Version {
    /// The transaction that wrote it.
    pub tid: Tid,
    /// When that transaction committed (microseconds since the Unix epoch).
    pub timestamp: u64,
    /// The type its data names.
    pub type_name: TypeName,
    /// Bytes of its data.
    pub bytes: u64,
    /// The objects it refers to.
    pub refs: Vec<Oid>,
}

/// Every version of `oid` the journal at `path` holds, oldest first (a packed file
/// holds only what its pack kept).
///
/// # Errors
///
/// [`Error::NotFound`] if the journal holds no version of `oid`; what opening and
/// reading a journal can fail with.
pub fn history(path: impl AsRef<Path>, oid: Oid) -> Result<Vec<Version>> {
    let j = open_read_only(path.as_ref())?;
    let txs = match j.transactions(Tid::ZERO) {
        Ok(t) => t,
        Err(Error::HistoryGone { oldest }) => j.transactions(Tid(oldest.0.saturating_sub(1)))?,
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for tx in txs.iter().filter(|t| t.oids.binary_search(&oid).is_ok()) {
        let loaded = j.load_at(oid, tx.tid)?;
        if loaded.tid != tx.tid {
            continue;
        }
        out.push(Version {
            tid: tx.tid,
            timestamp: tx.timestamp,
            type_name: TypeName::of(&loaded.record.data),
            bytes: loaded.record.data.len() as u64,
            refs: loaded.record.refs,
        });
    }
    j.close()?;
    if out.is_empty() {
        return Err(Error::NotFound { oid });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;
    use crate::record::{CommitRequest, Record};

    #[test]
    fn dump_each_hands_records_over_one_at_a_time_and_stops_at_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.durus");
        let j = Journal::open(&path, JournalOptions::default()).unwrap();
        let oids = j.new_oids(10).unwrap();
        let records = oids.iter().map(|&o| Record::new(o, vec![1, 2], vec![])).collect();
        j.commit(&CommitRequest {
            records,
            ..Default::default()
        })
        .unwrap();
        j.close().unwrap();
        let mut seen = Vec::new();
        dump_each(&path, None, At::Newest, &mut |d| {
            seen.push(d.oid);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, oids);
        assert_eq!(dump(&path, None, At::Newest).unwrap().len(), 10);
        let mut calls = 0;
        let stopped = dump_each(&path, None, At::Newest, &mut |_| {
            calls += 1;
            match calls {
                3 => Err(Error::Invalid("enough".into())),
                _ => Ok(()),
            }
        });
        assert!(matches!(stopped, Err(Error::Invalid(m)) if m == "enough"));
        assert_eq!(calls, 3);
    }
}
