//! A simulated disk for testing what survives failures: [`SimFile`] is a [`FileIo`]
//! that fails on command and models power loss.
//!
//! Killing a process (SIGKILL) leaves the operating system's page cache intact, so every
//! byte written before the kill survives, synced or not. Power loss keeps only what the
//! last completed sync made durable, plus any part of the writes after it, torn at
//! sector boundaries and in any combination. `SimFile` keeps both views: the bytes a
//! reader sees now, and the durable bytes with the list of writes not yet synced. From
//! them it builds crash images, the files a reboot could find.
//!
//! It also models "fsyncgate": when a sync fails, the writes it should have made
//! durable are dropped from the durable future (the kernel may have thrown the dirty
//! pages away), though readers still see them. A later sync that succeeds does not bring
//! them back, so a store that retries a failed sync and carries on as if its data were
//! safe leaves holes that crash images expose.
//!
//! Applications can use it to test their own recovery code against the same failures.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::io::FileIo;

/// The size of a disk sector: a write torn by power loss keeps or loses whole sectors.
pub const SECTOR: u64 = 512;

/// A failure to inject into one mutating call (a write, a length change or a sync).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The call fails with an I/O error and changes nothing.
    IoError,
    /// A write stores its first half, then fails (a short write followed by an error).
    ShortWrite,
    /// The disk is full: a write stores its first third, then fails with "no space
    /// left on device"; a length change fails with it and changes nothing.
    NoSpace,
    /// A sync fails; the writes it should have made durable never will be.
    SyncError,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 4] = [
        Fault::IoError,
        Fault::ShortWrite,
        Fault::NoSpace,
        Fault::SyncError,
    ];

    /// Whether this fault can happen on a call of kind `op`.
    pub fn applies_to(self, op: OpKind) -> bool {
        matches!(
            (self, op),
            (Fault::IoError, _)
                | (Fault::ShortWrite, OpKind::Write)
                | (Fault::NoSpace, OpKind::Write | OpKind::SetLen)
                | (Fault::SyncError, OpKind::Sync)
        )
    }
}

/// The kinds of mutating call, in the order a [`SimFile`] counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `write_all_at`.
    Write,
    /// `set_len`.
    SetLen,
    /// `sync_data`.
    Sync,
}

/// A change not yet made durable.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    Write { at: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// What power loss at one moment could leave: the durable bytes and the writes since.
#[derive(Clone, Debug)]
pub struct CrashPoint {
    /// The caller's tag when the moment was recorded (see [`SimFile::set_tag`]).
    pub tag: u64,
    /// How many mutating calls had completed.
    pub op: u64,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

impl CrashPoint {
    /// The file if none of the unsynced writes reached the disk.
    pub fn durable(&self) -> Vec<u8> {
        self.durable.clone()
    }

    /// The file if all of them did.
    pub fn everything(&self) -> Vec<u8> {
        let mut f = self.durable.clone();
        for p in &self.pending {
            apply(&mut f, p, &mut |_| true);
        }
        f
    }

    /// How many unsynced sector pieces and length changes there are to choose from.
    pub fn choices(&self) -> usize {
        self.pending.iter().map(|p| pieces(p).len()).sum()
    }

    /// A file power loss could leave: the durable bytes plus the unsynced pieces (whole
    /// sectors of the writes, and length changes) for which `keep` says true, applied in
    /// the order they were made. `keep` is asked once per piece, in order.
    pub fn image(&self, mut keep: impl FnMut(usize) -> bool) -> Vec<u8> {
        let mut f = self.durable.clone();
        let mut n = 0usize;
        for p in &self.pending {
            apply(&mut f, p, &mut |_| {
                let k = keep(n);
                n += 1;
                k
            });
        }
        f
    }
}

/// The pieces of a pending change that power loss keeps or loses independently: the
/// sector-aligned parts of a write (by absolute offset), or a length change as a whole.
fn pieces(p: &Pending) -> Vec<(u64, u64)> {
    match p {
        Pending::SetLen(len) => vec![(*len, 0)],
        Pending::Write { at, bytes } => {
            let end = at + bytes.len() as u64;
            let mut out = Vec::new();
            let mut from = *at;
            while from < end {
                let to = ((from / SECTOR) + 1).saturating_mul(SECTOR).min(end);
                out.push((from, to));
                from = to;
            }
            out
        }
    }
}

/// Applies the pieces of `p` that `keep` selects to `f`.
fn apply(f: &mut Vec<u8>, p: &Pending, keep: &mut dyn FnMut(usize) -> bool) {
    match p {
        Pending::SetLen(len) => {
            if keep(0) {
                f.resize(*len as usize, 0);
            }
        }
        Pending::Write { at, bytes } => {
            for (i, (from, to)) in pieces(p).into_iter().enumerate() {
                if !keep(i) {
                    continue;
                }
                let (from, to) = (from as usize, to as usize);
                if f.len() < to {
                    f.resize(to, 0);
                }
                let src = from - *at as usize;
                f[from..to].copy_from_slice(&bytes[src..src + (to - from)]);
            }
        }
    }
}

#[derive(Default)]
struct State {
    /// What readers see now (the page cache).
    visible: Vec<u8>,
    /// What survives power loss.
    durable: Vec<u8>,
    /// Changes since the last sync that succeeded or failed.
    pending: Vec<Pending>,
    /// Mutating calls so far.
    ops: u64,
    /// Each mutating call's kind, in order.
    kinds: Vec<OpKind>,
    /// The fault to inject, at which call.
    armed: Option<(u64, Fault)>,
    /// The fault that was injected, at which call.
    fired: Option<(u64, Fault)>,
    /// Whether to record a crash point before every mutating call.
    record: bool,
    points: Vec<CrashPoint>,
    tag: u64,
}

impl State {
    fn point(&self) -> CrashPoint {
        CrashPoint {
            tag: self.tag,
            op: self.ops,
            durable: self.durable.clone(),
            pending: self.pending.clone(),
        }
    }

    /// Counts a call of kind `op`, recording a crash point first if asked to; returns
    /// the fault to inject into it, if any.
    fn begin(&mut self, op: OpKind) -> Option<Fault> {
        if self.record {
            let p = self.point();
            self.points.push(p);
        }
        let n = self.ops;
        self.ops += 1;
        self.kinds.push(op);
        match self.armed {
            Some((at, fault)) if at == n && fault.applies_to(op) => {
                self.armed = None;
                self.fired = Some((n, fault));
                Some(fault)
            }
            _ => None,
        }
    }

    fn write(&mut self, at: u64, bytes: &[u8]) {
        let p = Pending::Write {
            at,
            bytes: bytes.to_vec(),
        };
        apply(&mut self.visible, &p, &mut |_| true);
        self.pending.push(p);
    }
}

/// A simulated file: injects [`Fault`]s on command and records what power loss could
/// leave at every moment ([`CrashPoint`]). Clones share the same file.
#[derive(Clone, Default)]
pub struct SimFile {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("SimFile")
            .field("visible_len", &s.visible.len())
            .field("durable_len", &s.durable.len())
            .field("ops", &s.ops)
            .field("armed", &s.armed)
            .finish_non_exhaustive()
    }
}

fn injected(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("injected fault: {what}"))
}

/// `ENOSPC`, as the operating system reports it.
fn no_space() -> io::Error {
    #[cfg(unix)]
    {
        io::Error::from_raw_os_error(28)
    }
    #[cfg(not(unix))]
    {
        injected(io::ErrorKind::Other, "no space left on device")
    }
}

impl SimFile {
    /// An empty file.
    pub fn new() -> SimFile {
        SimFile::default()
    }

    /// A file holding `bytes`, all of them durable.
    pub fn from_bytes(bytes: Vec<u8>) -> SimFile {
        let f = SimFile::new();
        {
            let mut s = f.lock();
            s.visible = bytes.clone();
            s.durable = bytes;
        }
        f
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// What a reader sees now (and what survives if only the process dies).
    pub fn visible(&self) -> Vec<u8> {
        self.lock().visible.clone()
    }

    /// What survives power loss now, if none of the unsynced writes reached the disk.
    pub fn durable(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// Power loss now, as a [`CrashPoint`] to build images from.
    pub fn crash_point(&self) -> CrashPoint {
        self.lock().point()
    }

    /// Injects `fault` into mutating call number `at` (counting from 0 at the file's
    /// creation), if the fault applies to that call's kind.
    pub fn arm(&self, at: u64, fault: Fault) {
        self.lock().armed = Some((at, fault));
    }

    /// The fault injected so far, and into which call.
    pub fn fired(&self) -> Option<(u64, Fault)> {
        self.lock().fired
    }

    /// Mutating calls made so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The kind of every mutating call so far, in order.
    pub fn op_kinds(&self) -> Vec<OpKind> {
        self.lock().kinds.clone()
    }

    /// Starts or stops recording a crash point before every mutating call.
    pub fn record_crash_points(&self, on: bool) {
        self.lock().record = on;
    }

    /// The crash points recorded so far, emptying the list.
    pub fn take_crash_points(&self) -> Vec<CrashPoint> {
        std::mem::take(&mut self.lock().points)
    }

    /// Sets the tag stored with crash points from now on (for example, how many
    /// commits had been acknowledged).
    pub fn set_tag(&self, tag: u64) {
        self.lock().tag = tag;
    }
}

impl FileIo for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let s = self.lock();
        let start = usize::try_from(offset).map_or(s.visible.len(), |o| o.min(s.visible.len()));
        let n = buf.len().min(s.visible.len() - start);
        buf[..n].copy_from_slice(&s.visible[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.lock();
        match s.begin(OpKind::Write) {
            None => {
                s.write(offset, buf);
                Ok(())
            }
            Some(Fault::ShortWrite) => {
                s.write(offset, &buf[..buf.len() / 2]);
                Err(injected(io::ErrorKind::Other, "short write, then an I/O error"))
            }
            Some(Fault::NoSpace) => {
                s.write(offset, &buf[..buf.len() / 3]);
                Err(no_space())
            }
            Some(_) => Err(injected(io::ErrorKind::Other, "write failed")),
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().visible.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        match s.begin(OpKind::SetLen) {
            None => {
                let p = Pending::SetLen(len);
                apply(&mut s.visible, &p, &mut |_| true);
                s.pending.push(p);
                Ok(())
            }
            Some(Fault::NoSpace) => Err(no_space()),
            Some(_) => Err(injected(io::ErrorKind::Other, "changing the length failed")),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.lock();
        let fault = s.begin(OpKind::Sync);
        let pending = std::mem::take(&mut s.pending);
        if fault.is_some() {
            // The pages may have been dropped: these writes will never be durable.
            return Err(injected(io::ErrorKind::Other, "sync failed"));
        }
        for p in &pending {
            apply(&mut s.durable, p, &mut |_| true);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_only_after_a_sync_and_lost_after_a_failed_one() {
        let f = SimFile::new();
        f.write_all_at(b"abc", 0).unwrap();
        assert_eq!(f.visible(), b"abc");
        assert!(f.durable().is_empty());
        f.sync_data().unwrap();
        assert_eq!(f.durable(), b"abc");

        f.write_all_at(b"XY", 1).unwrap();
        f.arm(f.ops(), Fault::SyncError);
        assert!(f.sync_data().is_err());
        assert_eq!(f.fired(), Some((3, Fault::SyncError)));
        assert_eq!(f.visible(), b"aXY", "readers still see the write");
        f.write_all_at(b"!", 3).unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.durable(), b"abc!", "the write whose sync failed stays lost");
    }

    #[test]
    fn images_keep_whole_sectors_of_unsynced_writes() {
        let f = SimFile::from_bytes(vec![1; 1000]);
        f.write_all_at(&[2; 600], 300).unwrap(); // sectors: 300..512, 512..900
        f.set_len(2000).unwrap();
        let p = f.crash_point();
        assert_eq!(p.choices(), 3);
        assert_eq!(p.durable(), vec![1; 1000]);
        assert_eq!(p.everything(), f.visible());
        let img = p.image(|i| i == 1);
        assert_eq!(&img[..512], &[1; 512][..]);
        assert_eq!(&img[512..900], &[2; 388][..]);
        assert_eq!(img.len(), 1000);
        let img = p.image(|i| i == 2);
        assert_eq!(img.len(), 2000);
        assert_eq!(&img[300..1000], &[1; 700][..]);
    }

    #[test]
    fn faults_fire_once_on_the_armed_call_of_a_fitting_kind() {
        let f = SimFile::new();
        f.arm(0, Fault::SyncError);
        f.write_all_at(b"abcdef", 0).unwrap(); // a write: the sync fault does not apply
        assert_eq!(f.fired(), None);
        f.arm(1, Fault::ShortWrite);
        assert!(f.write_all_at(b"123456", 6).is_err());
        assert_eq!(f.visible(), b"abcdef123");
        f.arm(2, Fault::NoSpace);
        assert_eq!(
            f.set_len(100).unwrap_err().raw_os_error(),
            no_space().raw_os_error()
        );
        assert_eq!(f.visible().len(), 9);
        assert_eq!(f.op_kinds(), [OpKind::Write, OpKind::Write, OpKind::SetLen]);
    }
}
