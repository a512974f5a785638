//! The ERROR reply of protocol version 2: a durus [`Error`] as a code, a detail (an
//! oid, an offset, a count or an OS error number) and a message, and back (the codes
//! are [`code`]; `docs/PROTOCOL.md` lists them).

use super::v2::code;
use super::wire::{bad, put_string, put_u64, Cursor};
use crate::error::{Error, Result};
use crate::record::{Oid, Tid};

/// Appends an error as code, oid or offset, and message.
pub(super) fn put_error(out: &mut Vec<u8>, e: &Error) -> Result<()> {
    let (code, n, msg) = match e {
        Error::NotFound { oid } => (code::NOT_FOUND, oid.0, String::new()),
        Error::Invalid(m) => (code::INVALID, 0, m.clone()),
        Error::Closed => (code::CLOSED, 0, String::new()),
        Error::ReadOnly => (code::READ_ONLY, 0, String::new()),
        // The OS error number travels, so that `io_kind` (a full disk) works remotely.
        Error::Poisoned { during, source } => (
            code::POISONED,
            source.raw_os_error().map_or(0, |n| n as u32 as u64),
            format!("{during}\n{source}"),
        ),
        Error::NotAllocated { oid } => (code::NOT_ALLOCATED, oid.0, String::new()),
        Error::DuplicateWrite { oid } => (code::DUPLICATE_WRITE, oid.0, String::new()),
        Error::Unsupported { what } => (code::UNSUPPORTED, 0, what.clone()),
        Error::Corrupt { offset, reason } => (code::CORRUPT, *offset, reason.clone()),
        // The named oids travel in the message, in decimal, separated by commas.
        Error::DanglingRefs { count, oids } => (
            code::DANGLING_REFS,
            *count,
            oids.iter().map(|o| o.0.to_string()).collect::<Vec<_>>().join(","),
        ),
        Error::HistoryGone { oldest } => (code::HISTORY_GONE, oldest.0, String::new()),
        // Passed on as it came, so that a proxy does not wrap it once more.
        Error::Remote { message } => (code::OTHER, 0, message.clone()),
        other => (code::OTHER, 0, other.to_string()),
    };
    out.push(code);
    put_u64(out, n);
    put_string(out, &msg)
}

pub(super) fn error(c: &mut Cursor<'_>) -> Result<Error> {
    let code = c.u8("error code")?;
    let n = c.u64("error detail")?;
    let msg = c.string("error message")?;
    Ok(match code {
        code::NOT_FOUND => Error::NotFound { oid: Oid(n) },
        code::INVALID => Error::Invalid(msg),
        code::CLOSED => Error::Closed,
        code::READ_ONLY => Error::ReadOnly,
        code::POISONED => {
            let (during, cause) = msg.split_once('\n').unwrap_or((msg.as_str(), ""));
            // Only a nonzero 32-bit number is an OS error (what `put_error` sends); any
            // other detail is read as none, so that the error re-encodes as it came.
            let source = match u32::try_from(n).ok().filter(|&os| os != 0) {
                Some(os) => std::io::Error::from_raw_os_error(os as i32),
                None => std::io::Error::other(cause.to_string()),
            };
            Error::Poisoned {
                during: during.to_string(),
                source: std::sync::Arc::new(source),
            }
        }
        code::NOT_ALLOCATED => Error::NotAllocated { oid: Oid(n) },
        code::DUPLICATE_WRITE => Error::DuplicateWrite { oid: Oid(n) },
        code::UNSUPPORTED => Error::Unsupported { what: msg },
        code::CORRUPT => Error::Corrupt {
            offset: n,
            reason: msg,
        },
        code::HISTORY_GONE => Error::HistoryGone { oldest: Tid(n) },
        code::DANGLING_REFS => Error::DanglingRefs {
            count: n,
            oids: msg
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse()
                        .map(Oid)
                        .map_err(|_| bad(format!("a dangling oid {s:?}")))
                })
                .collect::<Result<_>>()?,
        },
        _ => Error::Remote { message: msg },
    })
}
