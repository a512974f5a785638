//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};

use durus::journal::io::FileIo;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "python-interop")]
pub mod python;
pub mod script;
#[cfg(feature = "server")]
pub mod server;
pub mod storages;

/// The runtimes every async test runs under.
pub const RUNTIMES: [&str; 4] = [
    "tokio-current-thread",
    "tokio-multi-thread",
    "smol",
    "futures-executor",
];

/// Runs the future made by `make` to completion under each runtime in [`RUNTIMES`].
///
/// Under tokio's multi-thread runtime the future is spawned onto a worker thread, so a
/// test also proves its futures are `Send` and work off the calling thread.
pub fn on_all_runtimes<F, Fut>(make: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    for rt in RUNTIMES {
        run_on(rt, make(rt));
    }
}

/// Runs one future under the named runtime.
pub fn run_on<Fut>(rt: &str, fut: Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    match rt {
        "tokio-current-thread" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(fut),
        "tokio-multi-thread" => {
            let r = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            r.block_on(async move { r_spawn(fut).await })
        }
        "smol" => smol::block_on(smol::spawn(fut)),
        "futures-executor" => futures::executor::block_on(fut),
        other => panic!("unknown runtime {other}"),
    }
}

async fn r_spawn<Fut>(fut: Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Err(e) = tokio::spawn(fut).await {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A [`FileIo`] that records the name of every thread it is called on, to prove no file
/// I/O runs on an executor thread.
pub struct ThreadCheckIo<F> {
    pub inner: F,
    pub threads: Arc<Mutex<Vec<String>>>,
}

impl<F: FileIo> ThreadCheckIo<F> {
    pub fn new(inner: F) -> (Self, Arc<Mutex<Vec<String>>>) {
        let threads = Arc::new(Mutex::new(Vec::new()));
        (
            ThreadCheckIo {
                inner,
                threads: threads.clone(),
            },
            threads,
        )
    }

    fn note(&self) {
        let name = std::thread::current().name().unwrap_or("<unnamed>").to_string();
        self.threads.lock().unwrap().push(name);
    }
}

impl<F: FileIo> FileIo for ThreadCheckIo<F> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.note();
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.note();
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.note();
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.note();
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.note();
        self.inner.sync_data()
    }
}

/// The seeded pseudo-random generator tests pick offsets, keys and moments with
/// (`Rng::with_seed(seed)`), so every run of a test makes the same choices.
#[allow(unused_imports)] // not every test binary picks at random
pub use fastrand::Rng;

/// Lets other tasks run: returns `Pending` once (after waking itself).
pub async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// A file storage on an in-memory file, and a handle on the file's bytes.
pub async fn mem_file_storage() -> (durus::journal::io::MemFile, durus::storage::FileStorage) {
    let m = durus::journal::io::MemFile::new();
    let s =
        durus::storage::FileStorage::open_io(Box::new(m.clone()), durus::journal::JournalOptions::default())
            .await
            .expect("open a file storage in memory");
    (m, s)
}

/// An in-memory file whose `sync_data` (and, with `on_writes`, `write_all_at`) first
/// runs a hook (to fail, count or wait).
pub struct SyncHook<H> {
    pub inner: durus::journal::io::MemFile,
    pub hook: H,
    pub on_writes: bool,
}

impl<H: Fn() -> io::Result<()> + Send + Sync + 'static> FileIo for SyncHook<H> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.on_writes {
            (self.hook)()?;
        }
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        (self.hook)()?;
        self.inner.sync_data()
    }
}

/// Commits transactions until `stop`, each writing one new object holding `t` and a
/// count, and raises `acked` to the tid of each commit acknowledged.
pub async fn commit_own_objects(
    fs: &dyn durus::storage::Storage,
    t: u64,
    acked: &std::sync::atomic::AtomicU64,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let oid = fs.new_oids(1).await.unwrap()[0];
        let req = durus::record::CommitRequest {
            snapshot: fs.last_tid().await.unwrap(),
            records: vec![durus::record::Record::new(
                oid,
                [t.to_be_bytes(), n.to_be_bytes()].concat(),
                vec![],
            )],
            ..Default::default()
        };
        let c = fs.commit(req).await.unwrap();
        acked.fetch_max(c.tid.0, Ordering::AcqRel);
    }
}
