//! Protocol version 1: the Durus 4.3 storage protocol, byte for byte.
//!
//! A request is one command byte followed by fixed fields; there is no frame length,
//! so [`decode_request`] says how much it needs. All integers are big-endian; an oid
//! is 8 bytes, a count 4 ("int4").
//!
//! | request | bytes after the command | reply |
//! |---|---|---|
//! | `V` version | int4 version | int4 the server's version (the connection closes if they differ) |
//! | `N` new oid | — | oid |
//! | `M` new oids | 1 byte count | count oids |
//! | `L` load | oid | status `O` int4 length record, or `K` (no such oid), or `I` (changed by another client since this one's last sync) |
//! | `B` bulk load | int4 n, n oids | one load reply per oid |
//! | `C` commit | — | int4 n, n oids (invalidations); then the client sends int4 length and the body ([`decode_commit_body`]); a non-empty body is answered `O` (committed) or `I` (conflict) |
//! | `S` sync | — | int4 n, n oids (invalidations) |
//! | `P` pack | — | status byte |
//! | `Q` quit | — | none: the server shuts down |
//! | `.` close | — | none: the server closes the connection |

use super::wire::{bad, put_u32, Cursor};
use crate::error::Result;
use crate::record::{Oid, Record};

/// One Durus client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `V`: the protocol version the client speaks.
    Version(u32),
    /// `N`: one new oid.
    NewOid,
    /// `M`: this many new oids.
    NewOids(u8),
    /// `L`: the record of an oid.
    Load(Oid),
    /// `B`: the records of many oids, answered one by one.
    BulkLoad(Vec<Oid>),
    /// `C`: start a commit (the body follows the server's invalidation reply).
    Commit,
    /// `S`: the invalidations since the last sync.
    Sync,
    /// `P`: pack the storage.
    Pack,
    /// `Q`: shut the server down.
    Quit,
    /// `.`: the client is closing its connection.
    Close,
}

/// Decodes the request at the start of `buf`: `Ok(Some((request, bytes used)))`,
/// `Ok(None)` if `buf` holds only the beginning of one, or a protocol error (an unknown
/// command byte, a bulk load larger than `max_frame` bytes).
pub fn decode_request(buf: &[u8], max_frame: usize) -> Result<Option<(Request, usize)>> {
    let Some(&code) = buf.first() else {
        return Ok(None);
    };
    let body = &buf[1..];
    let need = |n: usize| body.len() >= n;
    let r = match code {
        b'V' if need(4) => (Request::Version(be32(body)), 5),
        b'N' => (Request::NewOid, 1),
        b'M' if need(1) => (Request::NewOids(body[0]), 2),
        b'L' if need(8) => (Request::Load(Oid(crate::record::be_u64(body))), 9),
        b'B' if need(4) => {
            let n = be32(body) as usize;
            let len = n.saturating_mul(8);
            if len > max_frame {
                return Err(bad(format!(
                    "bulk load of {n} oids ({len} bytes) exceeds the {max_frame}-byte frame limit"
                )));
            }
            if !need(4 + len) {
                return Ok(None);
            }
            let oids = Cursor::new(&body[4..4 + len]).oids(n, "bulk load")?;
            (Request::BulkLoad(oids), 5 + len)
        }
        b'C' => (Request::Commit, 1),
        b'S' => (Request::Sync, 1),
        b'P' => (Request::Pack, 1),
        b'Q' => (Request::Quit, 1),
        b'.' => (Request::Close, 1),
        b'V' | b'M' | b'L' | b'B' => return Ok(None),
        other => return Err(bad(format!("no such command code: {:?}", other as char))),
    };
    Ok(Some(r))
}

/// The length of the commit body that follows a `C`, once its 4-byte length has
/// arrived; refused if it is over `max_frame`.
pub fn decode_commit_length(buf: &[u8], max_frame: usize) -> Result<Option<usize>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let n = be32(buf) as usize;
    if n > max_frame {
        return Err(bad(format!(
            "commit body of {n} bytes exceeds the {max_frame}-byte frame limit"
        )));
    }
    Ok(Some(n))
}

/// Decodes a commit body: records, each as int4 length, oid, and the record in the
/// Durus framing (which repeats the oid). Every length must stay inside the body and
/// inside its record, and both oids must agree.
pub fn decode_commit_body(body: &[u8]) -> Result<Vec<Record>> {
    let mut c = Cursor::new(body);
    let mut records = Vec::new();
    while c.remaining() > 0 {
        let at = body.len() - c.remaining();
        let rlen = c.u32("commit record length")? as usize;
        if rlen < 8 {
            return Err(bad(format!(
                "commit record at offset {at} has length {rlen}, shorter than its oid"
            )));
        }
        let entry = c.bytes(rlen, "commit record")?;
        let oid = Oid(crate::record::be_u64(entry));
        let record = Record::decode(&entry[8..])
            .map_err(|e| bad(format!("commit record for oid {oid} at offset {at}: {e}")))?;
        if record.oid != oid {
            return Err(bad(format!(
                "commit record at offset {at} is sent for oid {oid} but framed for oid {}",
                record.oid
            )));
        }
        records.push(record);
    }
    Ok(records)
}

/// Encodes a commit body (what a Durus client sends after `C`), length included.
pub fn encode_commit_body(records: &[Record], out: &mut Vec<u8>) -> Result<()> {
    let mut body = Vec::new();
    for r in records {
        let framed = r.encode()?;
        super::wire::put_count(&mut body, framed.len() + 8, "commit record")?;
        body.extend_from_slice(&r.oid.to_bytes());
        body.extend_from_slice(&framed);
    }
    super::wire::put_count(out, body.len(), "commit body")?;
    out.extend_from_slice(&body);
    Ok(())
}

/// Appends an invalidation list (the reply to `S`, and the first reply to `C`).
pub fn encode_invalidations(oids: &[Oid], out: &mut Vec<u8>) -> Result<()> {
    super::wire::put_count(out, oids.len(), "invalidations")?;
    super::wire::put_oids(out, oids);
    Ok(())
}

/// Appends the answer to a load of a record that is there: `O`, its length, its
/// Durus framing.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) -> Result<()> {
    out.push(super::STATUS_OKAY);
    super::wire::put_record(out, record)
}

/// Appends the answer to a load whose framed record the caller already holds.
pub fn encode_framed(framed: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.push(super::STATUS_OKAY);
    super::wire::put_count(out, framed.len(), "record")?;
    out.extend_from_slice(framed);
    Ok(())
}

/// Appends a version reply.
pub fn encode_version(version: u32, out: &mut Vec<u8>) {
    put_u32(out, version);
}

fn be32(b: &[u8]) -> u32 {
    crate::record::be_u32(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_need_their_whole_fields() {
        assert_eq!(decode_request(b"", 100).unwrap(), None);
        assert_eq!(decode_request(b"V\0\0", 100).unwrap(), None);
        assert_eq!(
            decode_request(b"V\0\0\0\x01rest", 100).unwrap(),
            Some((Request::Version(1), 5))
        );
        assert_eq!(decode_request(b"M", 100).unwrap(), None);
        assert_eq!(
            decode_request(b"M\x20", 100).unwrap(),
            Some((Request::NewOids(32), 2))
        );
        let mut b = b"B\0\0\0\x02".to_vec();
        b.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(decode_request(&b, 100).unwrap(), None);
        b.extend_from_slice(&9u64.to_be_bytes());
        assert_eq!(
            decode_request(&b, 100).unwrap(),
            Some((Request::BulkLoad(vec![Oid(7), Oid(9)]), 21))
        );
        assert!(decode_request(b"Z", 100).is_err());
        assert!(decode_request(b"B\xff\xff\xff\xff", 1 << 20).is_err());
    }

    #[test]
    fn commit_bodies_round_trip_and_refuse_lies() {
        let records = vec![
            Record::new(Oid(0), vec![], vec![]),
            Record::new(Oid(5), vec![1; 300], vec![Oid(0), Oid(9)]),
        ];
        let mut out = Vec::new();
        encode_commit_body(&records, &mut out).unwrap();
        let n = decode_commit_length(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(n, out.len() - 4);
        assert_eq!(decode_commit_body(&out[4..]).unwrap(), records);
        // Every truncation is an error, never a panic or a partial success, except at
        // the boundary after the first record (24 bytes), which is a whole body.
        for cut in (1..out.len() - 4).filter(|&c| c != 24) {
            assert!(decode_commit_body(&out[4..4 + cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_commit_body(&out[4..28]).unwrap(), records[..1]);
        // The inner oid must match the outer one.
        let mut lie = out[4..].to_vec();
        lie[4 + 7] = 1;
        assert!(decode_commit_body(&lie).is_err());
        // A length field that runs past the end.
        let mut long = out[4..].to_vec();
        long[0] = 0x7f;
        assert!(decode_commit_body(&long).is_err());
        assert!(decode_commit_length(&[0xff; 4], 1 << 20).is_err());
    }
}
