//! Bounds-checked reading of the big-endian fields both protocols are made of.

use crate::error::{Error, Result};
use crate::record::{Oid, Record, Tid};

/// A protocol error with this reason.
pub(crate) fn bad(reason: impl Into<String>) -> Error {
    Error::Protocol {
        reason: reason.into(),
    }
}

/// Reads fields from a byte slice front to back; every read checks that the bytes are
/// there, so a length field can never make it read past the end or allocate more than
/// the input could hold.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, at: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(bad(format!(
                "{what}: needs {n} bytes at offset {} but only {} remain",
                self.at,
                self.remaining()
            )));
        }
        let b = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(b)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn oid(&mut self, what: &str) -> Result<Oid> {
        self.u64(what).map(Oid)
    }

    pub(crate) fn tid(&mut self, what: &str) -> Result<Tid> {
        self.u64(what).map(Tid)
    }

    /// A count of items of `size` bytes each, refused if the items cannot all be in the
    /// rest of the input (so the caller may allocate for them).
    pub(crate) fn count(&mut self, size: usize, what: &str) -> Result<usize> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(size) > self.remaining() {
            return Err(bad(format!(
                "{what}: {n} items of at least {size} bytes do not fit in the {} bytes left",
                self.remaining()
            )));
        }
        Ok(n)
    }

    /// `n` oids of 8 bytes each.
    pub(crate) fn oids(&mut self, n: usize, what: &str) -> Result<Vec<Oid>> {
        let b = self.bytes(n.saturating_mul(8), what)?;
        Ok(b.chunks_exact(8).map(|c| Oid(crate::record::be_u64(c))).collect())
    }

    /// A u32-length-prefixed Durus-framed record.
    pub(crate) fn record(&mut self, what: &str) -> Result<Record> {
        let len = self.u32(what)? as usize;
        let b = self.bytes(len, what)?;
        Record::decode(b).map_err(|e| bad(format!("{what}: {e}")))
    }

    /// A u32-length-prefixed UTF-8 string (invalid UTF-8 is replaced, not refused: it
    /// only ever carries messages for people).
    pub(crate) fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u32(what)? as usize;
        Ok(String::from_utf8_lossy(self.bytes(len, what)?).into_owned())
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self, what: &str) -> Result<()> {
        if self.remaining() != 0 {
            return Err(bad(format!(
                "{what}: {} unexpected bytes after the last field",
                self.remaining()
            )));
        }
        Ok(())
    }
}

/// Appends a big-endian u32.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian u64.
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a count that must fit the protocol's 4-byte count fields.
pub(crate) fn put_count(out: &mut Vec<u8>, n: usize, what: &str) -> Result<()> {
    let n = u32::try_from(n).map_err(|_| bad(format!("{what}: {n} items exceed a 4-byte count")))?;
    put_u32(out, n);
    Ok(())
}

/// Appends oids, 8 bytes each.
pub(crate) fn put_oids(out: &mut Vec<u8>, oids: &[Oid]) {
    out.reserve(oids.len() * 8);
    for o in oids {
        out.extend_from_slice(&o.to_bytes());
    }
}

/// Appends a record with a u32 length in front of its Durus framing.
pub(crate) fn put_record(out: &mut Vec<u8>, r: &Record) -> Result<()> {
    put_count(out, r.framed_len(), "record")?;
    r.encode_into(out)
}

/// Appends a u32-length-prefixed string.
pub(crate) fn put_string(out: &mut Vec<u8>, s: &str) -> Result<()> {
    put_count(out, s.len(), "string")?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}
