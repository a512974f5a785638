//! Oids, transaction ids and records: the unit every storage moves.
//!
//! A [`Record`] is framed exactly as Python Durus frames it, so records can cross the
//! Durus wire protocol and be compared byte for byte with Durus's own:
//!
//! ```text
//! oid (8 bytes, big-endian) · data length (4 bytes, big-endian) · data · refs (8 bytes each)
//! ```
//!
//! The number of refs is not stored: it follows from the length of the framed record,
//! which the container (journal entry, wire frame) supplies.

use std::fmt;

use crate::error::{Error, Result};

/// Identifies one persistent object for the life of the database. Oids are never reused.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Oid(pub u64);

impl Oid {
    /// The root object's oid.
    pub const ROOT: Oid = Oid(0);

    /// The 8-byte big-endian form used on disk and on the wire.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads the 8-byte big-endian form.
    pub fn from_bytes(b: [u8; 8]) -> Oid {
        Oid(u64::from_be_bytes(b))
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({})", self.0)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A transaction id. Committed transactions have strictly increasing tids starting at 1;
/// `Tid(0)` is the empty database, before any transaction.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tid(pub u64);

impl Tid {
    /// The state before any transaction.
    pub const ZERO: Tid = Tid(0);

    /// The tid after this one.
    pub fn next(self) -> Tid {
        Tid(self.0 + 1)
    }
}

impl fmt::Debug for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tid({})", self.0)
    }
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One stored version of one object: its encoded state and the oids it refers to.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Record {
    /// Which object this is a state of.
    pub oid: Oid,
    /// The encoded state; opaque to the storage.
    pub data: Vec<u8>,
    /// The oids this state refers to (used by pack and crawlers).
    pub refs: Vec<Oid>,
}

/// A fast hasher for oids that keeps neighbours together.
///
/// Oids are handed out in sequence, and objects made together are usually read
/// together. The hash keeps an oid's low bits as they are (a hash table's bucket index
/// comes from the low bits, so consecutive oids land in consecutive buckets and a walk
/// over them reads memory in order) and mixes the rest into the top bits (which the
/// table uses to tell keys apart within a group). Collisions cost time, never memory,
/// so a hostile file can slow a map down but not blow it up.
#[derive(Clone, Debug, Default)]
pub struct OidHasher(u64);

impl std::hash::Hasher for OidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        const TOP: u64 = !((1 << 50) - 1);
        self.0 = n ^ (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) & TOP);
    }
}

/// A hash map keyed by oid, with [`OidHasher`].
pub type OidMap<V> = std::collections::HashMap<Oid, V, std::hash::BuildHasherDefault<OidHasher>>;

/// A record as loaded from a storage, with the transaction that committed it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Loaded {
    /// The stored record.
    pub record: Record,
    /// The transaction that committed this version.
    pub tid: Tid,
}

/// What a transaction asks a storage to commit.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CommitRequest {
    /// The last transaction the committer had seen when it started (its snapshot).
    pub snapshot: Tid,
    /// The new states to write; at most one per oid.
    pub records: Vec<Record>,
    /// Oids the transaction read. Together with the written oids they are checked for
    /// changes committed after `snapshot`.
    pub reads: Vec<Oid>,
    /// Oids whose new state was merged with a version committed after the snapshot (by
    /// conflict resolution): each is checked for changes after the given tid instead.
    pub rebased: Vec<(Oid, Tid)>,
}

impl CommitRequest {
    /// Checks the request against a storage's allocator and history: every written oid
    /// was handed out (`oid < next_oid`, or the root), none is written twice, and the
    /// snapshot is not in the future. Returns the written oids, ascending.
    pub fn validate(&self, next_oid: u64, last_tid: Tid) -> Result<Vec<Oid>> {
        if self.snapshot > last_tid {
            return Err(Error::snapshot_ahead(self.snapshot, last_tid));
        }
        let mut written: Vec<Oid> = self.records.iter().map(|r| r.oid).collect();
        if let Some(&oid) = written.iter().find(|o| o.0 >= next_oid && **o != Oid::ROOT) {
            return Err(Error::NotAllocated { oid });
        }
        // Usually already ascending, which the sort notices in one pass.
        written.sort_unstable();
        if let Some(w) = written.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateWrite { oid: w[0] });
        }
        Ok(written)
    }

    /// The oids changed after this request's snapshot (or rebase point) among those it
    /// read or writes, ascending; `changed_after(oid, tid)` says whether a transaction
    /// after `tid` wrote `oid`.
    pub fn conflicts(
        &self,
        written: &[Oid],
        mut changed_after: impl FnMut(Oid, Tid) -> Result<bool>,
    ) -> Result<Vec<Oid>> {
        let mut conflicts = Vec::new();
        for &oid in self.reads.iter().chain(written) {
            if changed_after(oid, self.checked_after(oid))? {
                conflicts.push(oid);
            }
        }
        conflicts.sort_unstable();
        conflicts.dedup();
        Ok(conflicts)
    }

    /// The tid after which a change to `oid` is a conflict for this request.
    pub fn checked_after(&self, oid: Oid) -> Tid {
        self.rebased
            .iter()
            .find(|(o, _)| *o == oid)
            .map_or(self.snapshot, |&(_, t)| t)
    }
}

/// The outcome of a successful commit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Committed {
    /// The new transaction's id (or the current last tid, when nothing was written).
    pub tid: Tid,
    /// Its commit time, microseconds since the Unix epoch.
    pub timestamp: u64,
}

/// The oids changed by transactions after some point (invalidations).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Changes {
    /// The last transaction id the answer covers.
    pub tid: Tid,
    /// Every oid written after the asked-for point, ascending, without duplicates.
    pub oids: Vec<Oid>,
}

/// One committed transaction, as the change feed and catch-up report it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct TxInfo {
    /// Its transaction id.
    pub tid: Tid,
    /// When it committed, microseconds since the Unix epoch.
    pub timestamp: u64,
    /// The oids it wrote, ascending.
    pub oids: Vec<Oid>,
}

/// Bytes before the data in a framed record: oid and data length.
pub const RECORD_HEADER: usize = 12;

impl Record {
    /// A record with these parts.
    pub fn new(oid: Oid, data: Vec<u8>, refs: Vec<Oid>) -> Record {
        Record { oid, data, refs }
    }

    /// Length of the framed form.
    pub fn framed_len(&self) -> usize {
        RECORD_HEADER + self.data.len() + 8 * self.refs.len()
    }

    /// Appends the Durus framing of this record to `out`.
    ///
    /// Fails if the data is 4 GiB or larger, which the 4-byte length cannot express.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let len = u32::try_from(self.data.len()).map_err(|_| Error::TooLarge {
            what: format!("the data of record {}", self.oid),
            size: self.data.len() as u64,
            limit: u32::MAX as u64,
        })?;
        out.reserve(self.framed_len());
        out.extend_from_slice(&self.oid.to_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.data);
        for r in &self.refs {
            out.extend_from_slice(&r.to_bytes());
        }
        Ok(())
    }

    /// The Durus framing of this record.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.framed_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Parses one framed record that fills `bytes` exactly.
    ///
    /// Malformed input yields [`Error::Corrupt`] with the offset (within `bytes`) of the
    /// field that is wrong; it never panics and never allocates more than `bytes.len()`.
    pub fn decode(bytes: &[u8]) -> Result<Record> {
        let (oid, data, refs) = split_framed(bytes)?;
        let refs = refs.chunks_exact(8).map(|c| Oid(be_u64(c))).collect::<Vec<_>>();
        Ok(Record {
            oid,
            data: data.to_vec(),
            refs,
        })
    }
}

/// Splits a framed record into oid, data and the raw refs bytes without copying.
pub(crate) fn split_framed(bytes: &[u8]) -> Result<(Oid, &[u8], &[u8])> {
    if bytes.len() < RECORD_HEADER {
        return Err(Error::corrupt(
            0,
            format!(
                "record of {} bytes is shorter than its {RECORD_HEADER}-byte header",
                bytes.len()
            ),
        ));
    }
    let oid = Oid(be_u64(&bytes[0..8]));
    let dlen = be_u32(&bytes[8..12]) as usize;
    let rest = &bytes[RECORD_HEADER..];
    if dlen > rest.len() {
        return Err(Error::corrupt(
            8,
            format!(
                "record {oid} claims {dlen} bytes of data but only {} remain",
                rest.len()
            ),
        ));
    }
    let (data, refs) = rest.split_at(dlen);
    if refs.len() % 8 != 0 {
        return Err(Error::corrupt(
            (RECORD_HEADER + dlen) as u64,
            format!(
                "record {oid} has {} bytes of refs, not a multiple of 8",
                refs.len()
            ),
        ));
    }
    Ok((oid, data, refs))
}

/// Reads a big-endian u64 from the first 8 bytes of `b` (callers pass slices of
/// exactly that length).
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Reads a big-endian u32 from the first 4 bytes of `b`.
pub(crate) fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_matches_durus_framing() {
        let r = Record::new(Oid(7), b"abc".to_vec(), vec![Oid(1), Oid(0x0102)]);
        let b = r.encode().unwrap();
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 3, b'a', b'b', b'c'];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(b, want);
        assert_eq!(Record::decode(&b).unwrap(), r);
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(matches!(
            Record::decode(&[0; 11]),
            Err(Error::Corrupt { offset: 0, .. })
        ));
        let mut b = Record::new(Oid(1), vec![1, 2], vec![]).encode().unwrap();
        b[11] = 3; // claims more data than present
        assert!(matches!(
            Record::decode(&b),
            Err(Error::Corrupt { offset: 8, .. })
        ));
        let mut b = Record::new(Oid(1), vec![], vec![Oid(2)]).encode().unwrap();
        b.pop();
        assert!(matches!(
            Record::decode(&b),
            Err(Error::Corrupt { offset: 12, .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_record_decodes_or_errors() {
        let b = Record::new(Oid(3), vec![9; 20], vec![Oid(4), Oid(5)])
            .encode()
            .unwrap();
        for n in 0..b.len() {
            let _ = Record::decode(&b[..n]);
        }
    }
}
