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

    /// Reads like [`read_at`](FileIo::read_at) only if that needs no wait for the disk
    /// (the bytes are in the operating system's page cache, or in memory), failing
    /// with [`io::ErrorKind::WouldBlock`] otherwise. Async callers use it to serve a
    /// read on their own thread and hand only reads that would wait to a thread pool.
    ///
    /// A short count means the file ended, or that the rest would have to wait (a
    /// further call then says `WouldBlock`). The default always says `WouldBlock`, so a
    /// file that does not implement it is always read with
    /// [`read_at`](FileIo::read_at) on the pool.
    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let _ = (buf, offset);
        Err(would_block())
    }

    /// Fills `buf` from `offset`, failing with `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        fill(buf, offset, |b, at| self.read_at(b, at))
    }

    /// Fills `buf` from `offset` like [`read_exact_at`](FileIo::read_exact_at), with
    /// [`try_read_at`](FileIo::try_read_at): `WouldBlock` if any part of it would wait
    /// for the disk.
    fn try_read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        fill(buf, offset, |b, at| self.try_read_at(b, at))
    }
}

/// Fills `buf` from `offset` with `read` (short reads go on where they stopped),
/// failing with `UnexpectedEof` if the file ends first.
fn fill(
    buf: &mut [u8],
    offset: u64,
    mut read: impl FnMut(&mut [u8], u64) -> io::Result<usize>,
) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = read(&mut buf[done..], offset + done as u64)?;
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

/// The error of a read that would have to wait.
fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

/// The operating system's file.
///
/// On Linux, [`try_read_at`](FileIo::try_read_at) is `preadv2` with `RWF_NOWAIT`, which
/// copies what is in the page cache and fails with `EAGAIN` instead of starting disk
/// I/O. Where the kernel or the file system does not support it, the file remembers
/// that and says `WouldBlock` from then on, so every read goes to the pool as before.
#[derive(Debug)]
pub struct OsFile {
    file: File,
    /// Cleared once the kernel refuses `RWF_NOWAIT` for this file.
    nowait: std::sync::atomic::AtomicBool,
}

impl OsFile {
    /// Wraps an open file.
    pub fn new(file: File) -> OsFile {
        OsFile {
            file,
            nowait: std::sync::atomic::AtomicBool::new(cfg!(target_os = "linux")),
        }
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
    #[cfg(target_os = "linux")]
    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::sync::atomic::Ordering;
        if !self.nowait.load(Ordering::Relaxed) {
            return Err(would_block());
        }
        let mut bufs = [io::IoSliceMut::new(buf)];
        match rustix::io::preadv2(&self.file, &mut bufs, offset, rustix::io::ReadWriteFlags::NOWAIT) {
            Ok(n) => Ok(n),
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => Err(would_block()),
            // No `preadv2` (before Linux 4.6, or filtered by a sandbox), no
            // `RWF_NOWAIT` (before 4.14), or a file system that cannot honour it.
            Err(e)
                if e == rustix::io::Errno::NOSYS
                    || e == rustix::io::Errno::OPNOTSUPP
                    || e == rustix::io::Errno::INVAL
                    || e == rustix::io::Errno::PERM =>
            {
                self.nowait.store(false, Ordering::Relaxed);
                Err(would_block())
            }
            Err(e) => Err(e.into()),
        }
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

/// Copies what `bytes` holds at `offset` into `buf`.
fn read_from(bytes: &[u8], buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let start = mem_offset(offset)?.min(bytes.len());
    let n = buf.len().min(bytes.len() - start);
    buf[..n].copy_from_slice(&bytes[start..start + n]);
    Ok(n)
}

impl FileIo for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_from(&self.lock(), buf, offset)
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
    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        // Memory never waits for a disk, but the writer may hold the bytes' lock while
        // it copies a large write in; then this read waits on the pool instead.
        let b = match self.bytes.try_lock() {
            Ok(b) => b,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(would_block()),
        };
        read_from(&b, buf, offset)
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
    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).try_read_at(buf, offset)
    }
}
