//! Reading Durus's default file format, `SHELF-1` (`durus/shelf.py`, used by
//! `durus.file_storage.FileStorage`).
//!
//! ```text
//! "SHELF-1\n"
//! first transaction          (everything a pack kept; empty in a new file)
//! offset map                 (oid -> offset of its record in the first transaction)
//! transaction*               (appended by commits)
//!
//! transaction  = length(8) · (length(8) · oid(8) · record)*   each length counts what follows it
//! record       = oid(8) · data length(4) · data · refs(8 each)   (durus's own framing)
//! offset map   = bytes(8) · bytes_per_word(8) · words(8) · words × bytes_per_word
//!                bytes = 16 + bytes_per_word × words
//! ```
//!
//! All numbers are big-endian. Durus writes a commit as a length of 0, then the
//! records, then goes back and writes the length, so a crash while it committed
//! leaves a transaction of length 0 followed by part of its records: that, or a
//! transaction whose length runs past the end of the file, is a torn last
//! transaction. The offset map is only skipped: the first transaction holds the same
//! records, and reading them in order finds the same newest versions.

use super::scan::{Location, Reader, Scan, Short, TxRead};
use super::DurusFormat;
use crate::error::{Error, Result};

/// The first bytes of a shelf file.
pub(crate) const PREFIX: &[u8; 8] = b"SHELF-1\n";

/// The smallest entry after its length: the shelf's name of the record (its oid), and
/// a record of an oid and a data length.
const ENTRY_MIN: u64 = 8 + 12;

/// Reads the framing of a whole shelf file; `r` is at the start.
pub(crate) fn scan(r: &mut Reader, progress: &mut dyn FnMut(u64, u64)) -> Result<Scan> {
    let mut scan = Scan::new(DurusFormat::Shelf, r.len());
    r.seek(PREFIX.len() as u64)?;
    // The first transaction and the offset map are written once, when the file is
    // made or packed: anything wrong there is damage, not a torn write.
    let first = PREFIX.len() as u64;
    match transaction(r)? {
        Ok((records, end)) => scan.add_transaction(&records, end),
        Err(why) => return Err(Error::corrupt(first, format!("the first transaction: {why}"))),
    }
    skip_offset_map(r)?;
    scan.end = r.pos();
    // An empty transaction seen last, which may be the zero length Durus writes before
    // a commit's records.
    let mut empty_at: Option<u64> = None;
    while r.remaining() > 0 {
        let at = r.pos();
        progress(at, scan.records);
        match transaction(r)? {
            Ok((records, end)) => {
                empty_at = records.is_empty().then_some(at);
                scan.add_transaction(&records, end);
            }
            Err(why) => {
                match empty_at {
                    // The length Durus had not yet written back: the empty transaction
                    // and what follows are one torn commit.
                    Some(e) => {
                        scan.transactions -= 1;
                        scan.torn_from(
                            e,
                            format!(
                                "a transaction still of length 0 (Durus writes the length \
                                 after the records) followed by {} bytes that {why}",
                                scan.len - at
                            ),
                        );
                    }
                    None => scan.torn_from(at, format!("the transaction at offset {at} {why}")),
                }
                break;
            }
        }
    }
    if let Some(t) = &scan.torn {
        scan.end = t.offset;
    }
    Ok(scan)
}

/// Reads one transaction at the reader's position: its records' oids and locations,
/// and where it ends; or why it is not whole (the reader is then somewhere inside).
fn transaction(r: &mut Reader) -> Result<TxRead> {
    let start = r.pos();
    let Ok(len) = r.u64()? else {
        return Ok(Err(format!(
            "is cut short: {} bytes of its 8-byte length",
            r.remaining()
        )));
    };
    let end = match (start + 8).checked_add(len) {
        Some(end) if end <= r.len() => end,
        _ => {
            return Ok(Err(format!(
                "claims {len} bytes but only {} follow",
                r.len() - start - 8
            )))
        }
    };
    let mut records = Vec::new();
    while r.pos() < end {
        let at = r.pos();
        if end - at < 8 + ENTRY_MIN {
            return Ok(Err(format!("ends in {} bytes too few for a record", end - at)));
        }
        let rec_len = match r.u64()? {
            Ok(n) => n,
            Err(Short) => return Ok(Err("is cut short".into())),
        };
        if rec_len < ENTRY_MIN || rec_len > end - at - 8 {
            return Ok(Err(format!(
                "holds a record at offset {at} of {rec_len} bytes, which does not fit in it"
            )));
        }
        let oid = match r.u64()? {
            Ok(n) => n,
            Err(Short) => return Ok(Err("is cut short".into())),
        };
        records.push((
            oid,
            Location {
                offset: at + 16,
                len: rec_len - 8,
            },
        ));
        r.seek(at + 8 + rec_len)?;
    }
    Ok(Ok((records, end)))
}

/// Checks the offset map's dimensions and moves past it.
fn skip_offset_map(r: &mut Reader) -> Result<()> {
    let at = r.pos();
    let bad = |why: String| Error::corrupt(at, format!("the offset map: {why}"));
    let (Ok(bytes), Ok(per_word), Ok(words)) = (r.u64()?, r.u64()?, r.u64()?) else {
        return Err(bad("the file ends inside its header".into()));
    };
    if !(1..=8).contains(&per_word) {
        return Err(bad(format!("{per_word} bytes per word")));
    }
    let body = per_word
        .checked_mul(words)
        .and_then(|b| b.checked_add(16))
        .filter(|&b| b == bytes)
        .ok_or_else(|| bad(format!("{bytes} bytes for {words} words of {per_word} bytes")))?;
    let end = at + 8 + body;
    if end > r.len() {
        return Err(bad(format!("{body} bytes run past the end of the file")));
    }
    r.seek(end)
}
