//! Invariant 7 with the non-waiting read path: a load whose bytes are in the page cache
//! may be served on the caller's thread, and a load that would wait for the disk is
//! always read on the blocking pool, under every runtime.

mod common;

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};

use common::on_all_runtimes;
use durus::journal::io::{FileIo, MemFile};
use durus::journal::JournalOptions;
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{FileStorage, Storage};
use durus::{DbBuilder, Persistent};
use serde::{Deserialize, Serialize};

const PAGE: u64 = 4096;

/// How one read was served, and on which thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// `read_at`: may wait for the disk.
    Waiting,
    /// `try_read_at` served it: its pages were cached.
    Served,
    /// `try_read_at` refused: a page was not cached.
    Refused,
}

/// A file with a simulated page cache: `try_read_at` serves only ranges whose 4 KiB
/// pages are all cached, `read_at` (the read that waits for the disk) caches the pages
/// it reads, as the kernel does. Every read is logged with its thread.
#[derive(Default)]
struct PageCacheFile {
    bytes: MemFile,
    cached: Mutex<HashSet<u64>>,
    log: Mutex<Vec<(Read, String)>>,
}

impl PageCacheFile {
    fn pages(offset: u64, len: usize) -> std::ops::Range<u64> {
        offset / PAGE..(offset + len as u64).div_ceil(PAGE)
    }

    fn note(&self, how: Read) {
        let thread = std::thread::current().name().unwrap_or("<unnamed>").to_string();
        self.log.lock().unwrap().push((how, thread));
    }

    /// Drops every page from the simulated page cache and forgets the log.
    fn evict(&self) {
        self.cached.lock().unwrap().clear();
        self.log.lock().unwrap().clear();
    }

    fn log(&self) -> Vec<(Read, String)> {
        self.log.lock().unwrap().clone()
    }
}

impl FileIo for PageCacheFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.note(Read::Waiting);
        self.cached.lock().unwrap().extend(Self::pages(offset, buf.len()));
        self.bytes.read_at(buf, offset)
    }
    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let all_cached = {
            let cached = self.cached.lock().unwrap();
            Self::pages(offset, buf.len()).all(|p| cached.contains(&p))
        };
        if !all_cached {
            self.note(Read::Refused);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.note(Read::Served);
        self.bytes.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.bytes.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.bytes.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.bytes.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.bytes.sync_data()
    }
}

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "test.Leaf")]
struct Leaf {
    n: u64,
    pad: String,
}

/// Every kind of load, through the storage and through a `Db` with a cold cache.
async fn load_everything(s: &FileStorage, oids: &[Oid], at: Tid) {
    for &oid in oids {
        assert_eq!(s.load(oid).await.unwrap().record.oid, oid);
        assert_eq!(s.load_at(oid, at).await.unwrap().record.oid, oid);
    }
    let many = s.load_many(oids.to_vec(), Some(at)).await.unwrap();
    assert!(many.iter().all(Option::is_some));
    let db = DbBuilder::<Leaf>::storage(s.clone()).open().await.unwrap();
    let tx = db.begin().await.unwrap();
    for &oid in &oids[1..] {
        tx.get(durus::Ref::<Leaf>::from_oid(oid)).await.unwrap();
    }
}

#[test]
fn a_read_that_would_wait_runs_on_the_blocking_pool_and_a_cached_one_need_not() {
    on_all_runtimes(|rt| async move {
        let file = Arc::new(PageCacheFile::default());
        let s = FileStorage::open_io(Box::new(file.clone()), JournalOptions::default())
            .await
            .unwrap();
        let mut oids = vec![Oid::ROOT];
        oids.extend(s.new_oids(200).await.unwrap());
        let leaf = |n: u64| {
            durus::object::encode(&Leaf {
                n,
                pad: "x".repeat(100),
            })
            .unwrap()
        };
        let mut records = vec![{
            let (data, refs) = leaf(0);
            Record::new(Oid::ROOT, data, refs)
        }];
        records.extend(oids[1..].iter().map(|&o| {
            let (data, refs) = leaf(o.0);
            Record::new(o, data, refs)
        }));
        let done = s
            .commit(CommitRequest {
                snapshot: Tid::ZERO,
                records,
                ..Default::default()
            })
            .await
            .unwrap();
        // Closing writes an index checkpoint, so the reopened journal must read index
        // pages from the file as well as records.
        s.close().await.unwrap();
        let s = FileStorage::open_io(Box::new(file.clone()), JournalOptions::default())
            .await
            .unwrap();

        // Nothing in the page cache: every load would wait.
        file.evict();
        load_everything(&s, &oids, done.tid).await;
        let cold = file.log();
        let waited: Vec<_> = cold.iter().filter(|(how, _)| *how == Read::Waiting).collect();
        assert!(!waited.is_empty(), "{rt}: nothing was read from the file");
        for (_, thread) in &waited {
            assert!(
                thread.starts_with("blocking-"),
                "{rt}: a read that waits for the disk ran on thread {thread:?}"
            );
        }
        assert!(
            cold.iter().any(|(how, _)| *how == Read::Refused),
            "{rt}: loads did not try to read without waiting"
        );

        // Everything cached now: loads are served where they are made, and none waits.
        file.log.lock().unwrap().clear();
        load_everything(&s, &oids, done.tid).await;
        let warm = file.log();
        assert!(
            warm.iter().all(|(how, _)| *how == Read::Served),
            "{rt}: cached reads still waited: {:?}",
            warm.iter()
                .filter(|(how, _)| *how != Read::Served)
                .collect::<Vec<_>>()
        );
        assert!(warm.len() > oids.len(), "{rt}: only {} reads", warm.len());
        for (_, thread) in &warm {
            assert!(
                !thread.starts_with("blocking-"),
                "{rt}: a page-cache hit was handed to the pool"
            );
        }
        s.close().await.unwrap();
    });
}

/// The operating system's file: bytes not in the page cache are refused, bytes that
/// are cached are served, exactly as `read_at` reads them.
#[cfg(target_os = "linux")]
#[test]
fn os_file_reads_without_waiting_only_what_the_page_cache_holds() {
    use durus::journal::io::OsFile;
    use std::os::unix::fs::FileExt;

    // Under the target directory, which is on the build's disk (a tmpfs cannot drop
    // its pages).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("pages");
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    {
        let f = std::fs::File::create(&path).unwrap();
        f.write_all_at(&data, 0).unwrap();
        f.sync_all().unwrap();
    }
    let file = std::fs::File::open(&path).unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let f = OsFile::new(file);
    let mut buf = vec![0u8; 8192];
    let at = 300_000;
    match f.try_read_at(&mut buf, at) {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
        Ok(n) => panic!("read {n} bytes the page cache had just dropped without waiting"),
    }
    f.read_exact_at(&mut buf, at).unwrap();
    let mut again = vec![0u8; 8192];
    f.try_read_exact_at(&mut again, at).unwrap();
    assert_eq!(again, &data[at as usize..at as usize + 8192]);
    assert_eq!(again, buf);
    // At the end of the file a non-waiting read is short, as a plain one is.
    f.read_exact_at(&mut buf[..100], data.len() as u64 - 100).unwrap();
    assert_eq!(f.try_read_at(&mut buf, data.len() as u64 - 100).unwrap(), 100);
}
