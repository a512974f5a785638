//! The PACK request and PACKED reply of protocol version 2 (laid out in
//! `docs/PROTOCOL.md`).

use super::v2::Request;
use super::wire::{bad, put_u64, Cursor};
use crate::error::Result;
use crate::journal::{Keep, PackReport};

/// `keep` tags: what a pack keeps besides the current state.
const KEEP_NOTHING: u8 = 0;
const KEEP_TRANSACTIONS: u8 = 1;
const KEEP_DURATION: u8 = 2;

/// Flag bits of a PACK request.
const DRY_RUN: u8 = 1;
const FORCE: u8 = 2;

/// Appends a PACK request's body: `u8` keep tag · `u64` amount (transactions, or
/// microseconds) · `u8` flags.
pub(super) fn put_request(out: &mut Vec<u8>, keep: Keep, dry_run: bool, force: bool) {
    let (tag, amount) = match keep {
        Keep::Nothing => (KEEP_NOTHING, 0),
        Keep::Transactions(n) => (KEEP_TRANSACTIONS, n),
        Keep::Duration(d) => (KEEP_DURATION, u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
    };
    out.push(tag);
    put_u64(out, amount);
    out.push(if dry_run { DRY_RUN } else { 0 } | if force { FORCE } else { 0 });
}

/// Reads a PACK request's body.
pub(super) fn request(c: &mut Cursor<'_>) -> Result<Request> {
    let tag = c.u8("keep")?;
    let amount = c.u64("keep amount")?;
    let keep = match tag {
        KEEP_NOTHING if amount == 0 => Keep::Nothing,
        KEEP_TRANSACTIONS => Keep::Transactions(amount),
        KEEP_DURATION => Keep::Duration(std::time::Duration::from_micros(amount)),
        other => return Err(bad(format!("pack: unknown keep {other} (amount {amount})"))),
    };
    let flags = c.u8("pack flags")?;
    if flags & !(DRY_RUN | FORCE) != 0 {
        return Err(bad(format!("unknown pack flags {flags:#x}")));
    }
    Ok(Request::Pack {
        keep,
        dry_run: flags & DRY_RUN != 0,
        force: flags & FORCE != 0,
    })
}

/// Appends a PACKED reply's body: `flag` dry run, then `u64` history_from, objects,
/// object bytes, transactions, bytes before, bytes after and dangling references.
pub(super) fn put_report(out: &mut Vec<u8>, r: &PackReport) {
    out.push(u8::from(r.dry_run));
    for n in [
        r.history_from.0,
        r.objects,
        r.object_bytes,
        r.transactions,
        r.bytes_before,
        r.bytes_after,
        r.dangling,
    ] {
        put_u64(out, n);
    }
}

/// Reads a PACKED reply's body.
pub(super) fn report(c: &mut Cursor<'_>) -> Result<PackReport> {
    Ok(PackReport {
        dry_run: super::v2::flag(c, "dry run")?,
        history_from: c.tid("history_from")?,
        objects: c.u64("objects")?,
        object_bytes: c.u64("object bytes")?,
        transactions: c.u64("transactions")?,
        bytes_before: c.u64("bytes before")?,
        bytes_after: c.u64("bytes after")?,
        dangling: c.u64("dangling")?,
    })
}
