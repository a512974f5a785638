//! Many tasks sharing one `ClientStorage`: their requests go out together and their
//! replies are read together. The stream below counts the calls the client makes on
//! it, so the test fails if every request pays a write of its own, or if the waiting
//! tasks take turns at reading a socket that has nothing for them (each such read
//! replaces the stream's one waker, which wakes the task it replaced).

mod common;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use common::on_all_runtimes;
use common::server::TestServer;
use durus::client::{ClientOptions, ClientStorage};
use durus::record::{CommitRequest, Record};
use durus::server::{Address, BoxedStream};
use durus::storage::Storage;
use futures::io::{AsyncRead, AsyncWrite};
use futures::StreamExt;

#[derive(Default)]
struct Calls {
    writes: AtomicU64,
    reads: AtomicU64,
    empty_reads: AtomicU64,
}

struct Counting {
    inner: async_net::unix::UnixStream,
    calls: Arc<Calls>,
}

impl AsyncRead for Counting {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let counter = if r.is_ready() {
            &self.calls.reads
        } else {
            &self.calls.empty_reads
        };
        counter.fetch_add(1, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counting {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.calls.writes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

const TASKS: usize = 32;
const LOADS_EACH: usize = 50;

#[test]
fn concurrent_loads_share_writes_and_reads() {
    on_all_runtimes(|_rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::file(&dir.path().join("batching.durus"), Default::default());
        let Address::Unix(path) = server.address.clone() else {
            panic!("the test server listens on a Unix socket")
        };
        let calls = Arc::new(Calls::default());
        let counted = calls.clone();
        let connector: durus::client::Connector = Arc::new(move || {
            let (path, calls) = (path.clone(), counted.clone());
            Box::pin(async move {
                let inner = async_net::unix::UnixStream::connect(path).await?;
                Ok(BoxedStream(Box::new(Counting { inner, calls })))
            })
        });
        let client = ClientStorage::with_connector(connector, ClientOptions::default())
            .await
            .unwrap();

        let oids = client.new_oids(TASKS as u64).await.unwrap();
        let records: Vec<Record> = oids
            .iter()
            .map(|&oid| Record::new(oid, oid.0.to_be_bytes().to_vec(), vec![]))
            .collect();
        client
            .commit(CommitRequest {
                records,
                ..CommitRequest::default()
            })
            .await
            .unwrap();

        let (writes, reads) = (
            calls.writes.load(Ordering::Relaxed),
            calls.reads.load(Ordering::Relaxed) + calls.empty_reads.load(Ordering::Relaxed),
        );
        // Every task loads the others' records in turn, each load awaited before the
        // next, so requests only ever go out together if the client gathers them.
        let mut tasks: futures::stream::FuturesUnordered<_> = (0..TASKS)
            .map(|t| {
                let (client, oids) = (client.clone(), oids.clone());
                async move {
                    for i in 0..LOADS_EACH {
                        let oid = oids[(t + i) % TASKS];
                        let loaded = client.load(oid).await.unwrap();
                        assert_eq!(loaded.record.data, oid.0.to_be_bytes().to_vec());
                    }
                }
            })
            .collect();
        while tasks.next().await.is_some() {}

        let loads = (TASKS * LOADS_EACH) as u64;
        let writes = calls.writes.load(Ordering::Relaxed) - writes;
        let reads = calls.reads.load(Ordering::Relaxed) + calls.empty_reads.load(Ordering::Relaxed) - reads;
        assert!(
            writes * 4 <= loads,
            "{writes} writes for {loads} loads by {TASKS} tasks: requests are not gathered"
        );
        assert!(
            reads * 2 <= loads,
            "{reads} reads for {loads} loads by {TASKS} tasks: the waiting tasks take turns at the socket"
        );
        drop(client);
        server.stop();
    });
}

/// Requests far larger than the socket's buffers, from tasks that share the client,
/// half of which give up after their bytes were queued (and perhaps partly written by
/// them): the others' requests still go out whole and are answered.
#[test]
fn large_requests_from_tasks_that_give_up_midway_do_not_stall_the_others() {
    on_all_runtimes(|_rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::file(&dir.path().join("large.durus"), Default::default());
        let client = server.client().await;
        let oids = client.new_oids(16).await.unwrap();
        let big = |oid: durus::record::Oid| -> Vec<u8> {
            (0..(1usize << 20)).map(|i| (i as u64 ^ oid.0) as u8).collect()
        };
        let mut tasks: futures::stream::FuturesUnordered<_> = oids
            .iter()
            .enumerate()
            .map(|(i, &oid)| {
                let client = client.clone();
                async move {
                    let commit = client.commit(CommitRequest {
                        records: vec![Record::new(oid, big(oid), vec![])],
                        ..CommitRequest::default()
                    });
                    if i % 2 == 1 {
                        // Polled twice (its first poll lets the other tasks queue
                        // theirs, the second writes what is queued until the socket
                        // is full), then dropped.
                        let mut commit = commit;
                        let _ = futures::poll!(&mut commit);
                        let _ = futures::poll!(&mut commit);
                        drop(commit);
                        return None;
                    }
                    commit.await.unwrap();
                    Some(oid)
                }
            })
            .collect();
        let mut written = Vec::new();
        while let Some(done) = tasks.next().await {
            written.extend(done);
        }
        assert_eq!(written.len(), 8);
        for oid in written {
            assert!(
                client.load(oid).await.unwrap().record.data == big(oid),
                "{oid:?} reads back whole"
            );
        }
        drop(client);
        server.stop();
    });
}
