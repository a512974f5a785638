//! Reading Durus's older file format, `DFS20` (`durus/file_storage2.py`,
//! `FileStorage2`, the default before Durus 3.8).
//!
//! ```text
//! "DFS20\0" · index offset(8)
//! transaction*                 (what a pack kept)
//! index record                 length(8) · zlib-compressed pickle of {oid: offset}
//! transaction*                 (appended by commits)
//!
//! transaction = (length(4) · record)* · 0(4)
//! record      = oid(8) · data length(4) · data · refs(8 each)   (durus's own framing)
//! ```
//!
//! All numbers are big-endian. A transaction that the end of the file cuts before its
//! terminating zero is a torn last transaction. The index record is only skipped:
//! reading the transactions in order finds the same newest versions that it lists.

use super::scan::{Location, Reader, Scan, TxRead};
use super::DurusFormat;
use crate::error::{Error, Result};

/// The first bytes of a `FileStorage2` file.
pub(crate) const MAGIC: &[u8; 6] = b"DFS20\0";

/// The smallest record: an oid and a data length.
const RECORD_HEADER: u64 = 12;

/// Reads the framing of a whole `DFS20` file; `r` is at the start.
pub(crate) fn scan(r: &mut Reader, progress: &mut dyn FnMut(u64, u64)) -> Result<Scan> {
    let mut scan = Scan::new(DurusFormat::FileStorage2, r.len());
    r.seek(MAGIC.len() as u64)?;
    let header_end = MAGIC.len() as u64 + 8;
    let index_at = match r.u64()? {
        Ok(at) if (header_end..r.len()).contains(&at) => at,
        Ok(at) => {
            return Err(Error::corrupt(
                MAGIC.len() as u64,
                format!("the index offset {at} is outside the file"),
            ))
        }
        Err(_) => return Err(Error::corrupt(0, "the header is cut short")),
    };
    // Before the index: what a pack wrote, before the index that lists it. Damage here
    // is never a torn write.
    while r.pos() < index_at {
        let at = r.pos();
        match transaction(r, index_at)? {
            Ok((records, end)) => scan.add_transaction(&records, end),
            Err(why) => {
                return Err(Error::corrupt(
                    at,
                    format!("the transaction before the index {why}"),
                ))
            }
        }
    }
    let index_len = match r.u64()? {
        Ok(n) if n <= r.remaining() => n,
        _ => {
            return Err(Error::corrupt(
                index_at,
                "the index record runs past the end of the file",
            ))
        }
    };
    r.seek(index_at + 8 + index_len)?;
    scan.end = r.pos();
    while r.remaining() > 0 {
        let at = r.pos();
        progress(at, scan.records);
        match transaction(r, r.len())? {
            Ok((records, end)) => scan.add_transaction(&records, end),
            Err(why) => {
                scan.torn_from(at, format!("the transaction at offset {at} {why}"));
                break;
            }
        }
    }
    if let Some(t) = &scan.torn {
        scan.end = t.offset;
    }
    Ok(scan)
}

/// Reads one transaction at the reader's position that must end by `limit`: its
/// records' oids and locations and where it ends, or why it is not whole.
fn transaction(r: &mut Reader, limit: u64) -> Result<TxRead> {
    let mut records = Vec::new();
    loop {
        let at = r.pos();
        if limit - at < 4 {
            return Ok(Err(format!(
                "has no end: {} records, then {} bytes",
                records.len(),
                limit - at
            )));
        }
        let Ok(len) = r.u32()? else {
            return Ok(Err("is cut short".into()));
        };
        if len == 0 {
            return Ok(Ok((records, r.pos())));
        }
        let len = u64::from(len);
        if len < RECORD_HEADER || len > limit - at - 4 {
            return Ok(Err(format!(
                "holds a record at offset {at} of {len} bytes, which does not fit"
            )));
        }
        let Ok(oid) = r.u64()? else {
            return Ok(Err("is cut short".into()));
        };
        records.push((oid, Location { offset: at + 4, len }));
        r.seek(at + 4 + len)?;
    }
}
