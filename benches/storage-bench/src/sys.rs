//! The machine side: the disk's own fdatasync rate, the file system under the temporary
//! directory, file sizes, and small timing helpers shared by every engine.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::lat::{Samples, LOAD_STRIDE};

const PROBE_BLOCK: usize = 4096;

/// The disk's own sync cost: a 4 KiB write followed by `fdatasync`, either always at
/// offset 0 of a preallocated file (the ceiling for one durable commit at a time that
/// does not grow its file) or appended, so that every sync must also make a new file
/// size durable.
pub struct SyncProbe {
    file: File,
    append: bool,
    writes: u64,
}

impl SyncProbe {
    /// A probe overwriting 4 KiB at offset 0 of a preallocated, synced file.
    pub fn overwrite(dir: &Path, name: &str) -> SyncProbe {
        let file = probe_file(dir, name);
        file.write_all_at(&vec![0u8; 1 << 20], 0)
            .expect("preallocate the fsync probe file");
        file.sync_all().expect("sync the preallocated fsync probe file");
        SyncProbe {
            file,
            append: false,
            writes: 0,
        }
    }

    /// A probe appending 4 KiB to an initially empty file.
    pub fn append(dir: &Path, name: &str) -> SyncProbe {
        let file = probe_file(dir, name);
        file.sync_all().expect("sync the empty fsync probe file");
        SyncProbe {
            file,
            append: true,
            writes: 0,
        }
    }

    /// One write and one `fdatasync`.
    pub fn step(&mut self) {
        let at = if self.append {
            self.writes * PROBE_BLOCK as u64
        } else {
            0
        };
        self.file
            .write_all_at(&[0xA5u8; PROBE_BLOCK], at)
            .expect("probe write");
        self.file.sync_data().expect("probe fdatasync");
        self.writes += 1;
    }

    /// Steps for about `secs` seconds and returns syncs per second.
    pub fn rate(mut self, secs: f64) -> f64 {
        sync_loop(secs, || self.step())
    }
}

fn probe_file(dir: &Path, name: &str) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(name))
        .expect("create an fsync probe file")
}

/// Runs `step` for about `secs` seconds and returns steps per second.
fn sync_loop(secs: f64, mut step: impl FnMut()) -> f64 {
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < limit {
        step();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The mount under `dir` (type and source), read from `/proc/self/mounts`.
pub fn filesystem_of(dir: &Path) -> Option<(String, String, String)> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (source, target, fstype) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(target)
                .then(|| (target.to_string(), fstype.to_string(), source.to_string()))
        })
        .max_by_key(|(target, _, _)| target.len())
}

/// The 1, 5 and 15 minute load averages (other work on the machine skews the figures).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Logical length and allocated bytes of a file (0, 0 if it does not exist).
pub fn file_size(path: &Path) -> (u64, u64) {
    std::fs::metadata(path).map_or((0, 0), |m| (m.len(), m.blocks() * 512))
}

/// Runs `work` over `keys` split into `threads` contiguous chunks, one std thread each,
/// and returns the wall time and every thread's sampled operation times. `work` returns
/// a digest that is kept from the optimiser.
pub fn parallel<F>(keys: &[u64], threads: usize, work: F) -> (Duration, Samples)
where
    F: Fn(&[u64], &mut Samples) -> u64 + Sync,
{
    let chunk = keys.len().div_ceil(threads).max(1);
    let start = Instant::now();
    let (digest, samples) = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(chunk)
            .map(|c| {
                s.spawn(|| {
                    let mut samples = Samples::default();
                    (work(c, &mut samples), samples)
                })
            })
            .collect();
        let mut all = Samples::default();
        let mut digest = 0u64;
        for h in handles {
            let (d, s) = h.join().expect("a load thread panicked");
            digest = digest.wrapping_add(d);
            all.merge(s);
        }
        (digest, all)
    });
    let elapsed = start.elapsed();
    std::hint::black_box(digest);
    (elapsed, samples)
}

/// Sums `load` over `keys`, timing every [`LOAD_STRIDE`]-th call into `samples`.
pub fn sampled(keys: &[u64], samples: &mut Samples, mut load: impl FnMut(u64) -> u64) -> u64 {
    let mut sum = 0u64;
    for (i, &k) in keys.iter().enumerate() {
        let t = Samples::start(i as u64, LOAD_STRIDE);
        sum = sum.wrapping_add(load(k));
        samples.stop(t);
    }
    sum
}

/// One warm-up call of `measure`, then the median of `n` more.
pub fn warm_median(n: usize, mut measure: impl FnMut() -> Duration) -> Duration {
    measure();
    let mut times: Vec<Duration> = (0..n.max(1)).map(|_| measure()).collect();
    times.sort();
    times[times.len() / 2]
}

/// Flushes every dirty page of the system (`sync`) so that writeback left over from an
/// earlier phase (or from the build) does not slow the next timed phase's syncs.
pub fn settle() {
    match std::process::Command::new("sync").status() {
        Ok(s) if s.success() => {}
        other => eprintln!("warning: `sync` failed ({other:?}); timings may include earlier writeback"),
    }
}

/// Runs `f` and returns its result with the time it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// The disk's own bulk-write ceiling: for each batch, `bytes_per_record` random bytes
/// per record appended in one write, then one `fdatasync`, as a journal with that many
/// bytes per record would do at best. Random bytes, because this disk writes
/// compressible data much faster than incompressible data (the record values are
/// random).
pub struct BandwidthProbe {
    file: File,
    at: u64,
    bytes_per_record: usize,
    noise: Vec<u8>,
}

impl BandwidthProbe {
    /// A probe appending to an empty file in `dir`.
    pub fn new(dir: &Path, name: &str, bytes_per_record: usize) -> BandwidthProbe {
        let file = probe_file(dir, name);
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let noise = (0..(4 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        BandwidthProbe {
            file,
            at: 0,
            bytes_per_record,
            noise,
        }
    }

    /// Appends `records` records' worth of random bytes and syncs once.
    pub fn batch(&mut self, records: u64) {
        let mut left = records as usize * self.bytes_per_record;
        while left > 0 {
            // Rotate through the noise so consecutive writes never repeat each other.
            let start = (self.at as usize * 7) % (self.noise.len() / 2);
            let n = left.min(self.noise.len() / 2);
            self.file
                .write_all_at(&self.noise[start..start + n], self.at)
                .expect("bandwidth probe write");
            self.at += n as u64;
            left -= n;
        }
        self.file.sync_data().expect("bandwidth probe fdatasync");
    }
}
