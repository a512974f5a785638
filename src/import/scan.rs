//! What the readers of both Durus formats have in common: a positioned, buffered
//! reader of the source file, and the index of newest records they build.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};

use crate::error::{Error, Result};
use crate::record::OidHasher;

use super::{DurusFormat, TornTail};

/// Where the newest record of one oid lies in the source: the offset of its framed
/// record (`oid · data length · data · refs`) and that record's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub offset: u64,
    pub len: u64,
}

/// Reading one transaction: its records' oids and locations and where it ends, or why
/// it is not whole.
pub(crate) type TxRead = std::result::Result<(Vec<(u64, Location)>, u64), String>;

/// What reading a Durus file's framing found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub format: DurusFormat,
    /// The newest record of every oid.
    pub newest: HashMap<u64, Location, std::hash::BuildHasherDefault<OidHasher>>,
    /// Whole transactions read (the first one of a shelf included, even when empty).
    pub transactions: u64,
    /// Records read, every version.
    pub records: u64,
    /// Where the last whole transaction ends.
    pub end: u64,
    /// The file's length.
    pub len: u64,
    /// The part after `end`, if the file does not end with a whole transaction.
    pub torn: Option<TornTail>,
}

impl Scan {
    pub(crate) fn new(format: DurusFormat, len: u64) -> Scan {
        Scan {
            format,
            newest: HashMap::default(),
            transactions: 0,
            records: 0,
            end: 0,
            len,
            torn: None,
        }
    }

    /// Notes a whole transaction's records (in file order: a later one of an oid
    /// replaces an earlier one) and that it ends at `end`.
    pub(crate) fn add_transaction(&mut self, records: &[(u64, Location)], end: u64) {
        self.transactions += 1;
        self.records += records.len() as u64;
        self.newest.extend(records.iter().copied());
        self.end = end;
    }

    /// Notes that the file does not end in a whole transaction: everything from `at`
    /// is left out.
    pub(crate) fn torn_from(&mut self, at: u64, why: String) {
        self.torn = Some(TornTail {
            offset: at,
            bytes: self.len.saturating_sub(at),
            reason: why,
        });
    }
}

/// A buffered reader that knows its position and the file's length, and reads the
/// big-endian integers both formats are made of.
#[derive(Debug)]
pub(crate) struct Reader {
    inner: BufReader<File>,
    pos: u64,
    len: u64,
}

/// A read found the file shorter than its framing says.
#[derive(Debug)]
pub(crate) struct Short;

impl Reader {
    pub(crate) fn new(file: File) -> Result<Reader> {
        let len = file.metadata()?.len();
        Ok(Reader {
            inner: BufReader::with_capacity(1 << 20, file),
            pos: 0,
            len,
        })
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes left after the position.
    pub(crate) fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Reads exactly `buf.len()` bytes, or says the file ends first.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<std::result::Result<(), Short>> {
        if (buf.len() as u64) > self.remaining() {
            return Ok(Err(Short));
        }
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(Ok(()))
            }
            // The file shrank under us.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Err(Short)),
            Err(e) => Err(Error::from(e)),
        }
    }

    pub(crate) fn u64(&mut self) -> Result<std::result::Result<u64, Short>> {
        let mut b = [0; 8];
        Ok(self.read(&mut b)?.map(|()| u64::from_be_bytes(b)))
    }

    pub(crate) fn u32(&mut self) -> Result<std::result::Result<u32, Short>> {
        let mut b = [0; 4];
        Ok(self.read(&mut b)?.map(|()| u32::from_be_bytes(b)))
    }

    /// Moves to `to` (forward moves within the buffer cost no system call).
    pub(crate) fn seek(&mut self, to: u64) -> Result<()> {
        let delta = i64::try_from(i128::from(to) - i128::from(self.pos))
            .map_err(|_| Error::Internal(format!("seek to {to} from {}", self.pos)))?;
        self.inner.seek_relative(delta)?;
        self.pos = to;
        Ok(())
    }

    /// Reads `len` bytes at `offset`.
    pub(crate) fn read_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let short = || {
            Error::corrupt(
                offset,
                format!("a record of {len} bytes runs past the end of the file"),
            )
        };
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(short());
        }
        let n = usize::try_from(len).map_err(|_| short())?;
        // Records are read in file order, a few bytes apart: a relative seek keeps
        // the buffer (a seek to an absolute offset would drop it every time).
        self.seek(offset)?;
        let mut buf = vec![0; n];
        match self.read(&mut buf)? {
            Ok(()) => Ok(buf),
            Err(Short) => Err(short()),
        }
    }
}
