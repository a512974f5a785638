//! The small file interface the journal does all its I/O through.
//!
//! Keeping the journal behind [`FileIo`] lets tests swap the operating system's file for
//! one that lives in memory, fails on command, or simulates power loss, without the
//! journal knowing the difference.

use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Positioned file I/O: everything the journal asks of a file.
///
/// Methods take `&self` so that many readers can issue positioned reads at once.
#[allow(clippy::len_without_is_empty)] // a file length, not a collection
pub trait FileIo: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset`; returns fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes written data (and the file size) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;

    /// Fills `buf` from `offset`, failing with `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file ended before the requested bytes",
                ));
            }
            done += n;
        }
        Ok(())
    }
}

/// The operating system's file.
#[derive(Debug)]
pub struct OsFile {
    file: File,
}

impl OsFile {
    /// Wraps an open file.
    pub fn new(file: File) -> OsFile {
        OsFile { file }
    }

    /// The wrapped file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(unix)]
impl FileIo for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(windows)]
impl FileIo for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::windows::fs::FileExt;
        self.file.seek_read(buf, offset)
    }
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            let n = self.file.seek_write(buf, offset)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// A file held in memory. Clones share the same bytes, so a test can keep one handle
/// and inspect or damage the bytes the journal wrote through another.
#[derive(Clone, Debug, Default)]
pub struct MemFile {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl MemFile {
    /// An empty file.
    pub fn new() -> MemFile {
        MemFile::default()
    }

    /// A file holding `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> MemFile {
        MemFile {
            bytes: Arc::new(Mutex::new(bytes)),
        }
    }

    /// A copy of the current contents.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.lock().clone()
    }

    /// Replaces the contents.
    pub fn replace(&self, bytes: Vec<u8>) {
        *self.lock() = bytes;
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding this lock cannot leave the Vec half-updated in a way
        // that matters to a test file, so a poisoned lock is still usable.
        crate::sync::lock(&self.bytes)
    }
}

fn mem_offset(offset: u64) -> io::Result<usize> {
    usize::try_from(offset).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
}

impl FileIo for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let b = self.lock();
        let start = mem_offset(offset)?.min(b.len());
        let n = buf.len().min(b.len() - start);
        buf[..n].copy_from_slice(&b[start..start + n]);
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut b = self.lock();
        let start = mem_offset(offset)?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write past the end of memory"))?;
        if b.len() < end {
            b.resize(end, 0);
        }
        b[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = mem_offset(len)?;
        self.lock().resize(len, 0);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: FileIo + ?Sized> FileIo for Arc<T> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        (**self).sync_data()
    }
}
