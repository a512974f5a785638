//! The async storages work the same under every runtime, and the file storage never
//! does file I/O on an executor thread.

mod common;

use std::sync::Arc;

use common::{on_all_runtimes, ThreadCheckIo};
use durus::journal::io::MemFile;
use durus::journal::JournalOptions;
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{FileStorage, MemoryStorage, Storage};
use durus::Error;
use futures::{FutureExt, TryStreamExt};

/// A workout of every `Storage` method.
async fn exercise(s: Arc<dyn Storage>) {
    let oids = s.new_oids(3).await.unwrap();
    let c1 = s
        .commit(CommitRequest {
            snapshot: Tid::ZERO,
            records: vec![
                Record::new(Oid::ROOT, b"root".to_vec(), oids.clone()),
                Record::new(oids[0], b"a".to_vec(), vec![]),
            ],
            reads: vec![],
            ..Default::default()
        })
        .await
        .unwrap();
    let c2 = s
        .commit(CommitRequest {
            snapshot: c1.tid,
            records: vec![Record::new(oids[0], b"a2".to_vec(), vec![])],
            reads: vec![Oid::ROOT],
            ..Default::default()
        })
        .await
        .unwrap();
    // A transaction that started at c1 and read oids[0] conflicts with c2.
    match s
        .commit(CommitRequest {
            snapshot: c1.tid,
            records: vec![Record::new(oids[1], b"b".to_vec(), vec![])],
            reads: vec![oids[0]],
            ..Default::default()
        })
        .await
    {
        Err(Error::Conflict { oids: o }) => assert_eq!(o, vec![oids[0]]),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(s.load(oids[0]).await.unwrap().record.data, b"a2");
    assert_eq!(s.load_at(oids[0], c1.tid).await.unwrap().record.data, b"a");
    assert!(matches!(s.load(oids[2]).await, Err(Error::NotFound { .. })));
    let many = s
        .load_many(vec![Oid::ROOT, oids[0], oids[2]], Some(c1.tid))
        .await
        .unwrap();
    assert_eq!(many[1].as_ref().unwrap().record.data, b"a");
    assert!(many[2].is_none());
    assert_eq!(s.changes_since(c1.tid).await.unwrap().oids, vec![oids[0]]);
    assert_eq!(s.last_tid().await.unwrap(), c2.tid);
    let all: Vec<_> = s.scan().try_collect().await.unwrap();
    assert_eq!(all.len(), 2);
    s.close().await.unwrap();
    assert!(matches!(s.last_tid().await, Err(Error::Closed)));
}

#[test]
fn memory_storage_on_every_runtime() {
    on_all_runtimes(|_| exercise(Arc::new(MemoryStorage::new())));
}

#[test]
fn file_storage_does_all_io_on_the_blocking_pool() {
    on_all_runtimes(|rt| async move {
        let (io, threads) = ThreadCheckIo::new(MemFile::new());
        let s = FileStorage::open_io(Box::new(io), JournalOptions::default())
            .await
            .unwrap();
        exercise(Arc::new(s)).await;
        let threads = threads.lock().unwrap();
        assert!(threads.len() > 10, "{rt}: only {} I/O calls seen", threads.len());
        for t in threads.iter() {
            assert!(t.starts_with("blocking-"), "{rt}: file I/O ran on thread {t:?}");
        }
    });
}

#[test]
fn file_storage_on_a_real_file_on_every_runtime() {
    on_all_runtimes(|_| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt.durus");
        exercise(Arc::new(
            FileStorage::open(path.clone(), JournalOptions::default())
                .await
                .unwrap(),
        ))
        .await;
        let s = FileStorage::open(path, JournalOptions::default()).await.unwrap();
        assert_eq!(s.load(Oid::ROOT).await.unwrap().record.data, b"root");
        s.close().await.unwrap();
    });
}

#[test]
fn a_dropped_commit_either_lands_whole_or_not_at_all() {
    on_all_runtimes(|_| async move {
        let (m, s) = common::mem_file_storage().await;
        let oids = s.new_oids(4).await.unwrap();
        let mut landed = 0;
        for round in 0..20u8 {
            let snapshot = s.last_tid().await.unwrap();
            let records = oids
                .iter()
                .map(|&o| Record::new(o, vec![round; 10], vec![]))
                .collect();
            let mut fut = s.commit(CommitRequest {
                snapshot,
                records,
                reads: vec![],
                ..Default::default()
            });
            // Poll once, then drop it mid-flight.
            let _ = (&mut fut).now_or_never();
            drop(fut);
            // A commit that was handed to the storage runs to completion. Commits are
            // applied in the order they are made, so an empty one returns after it.
            s.commit(CommitRequest::default()).await.unwrap();
            let after = s.last_tid().await.unwrap();
            assert!(after == snapshot || after == snapshot.next());
            let now: Vec<_> = s.load_many(oids.clone(), None).await.unwrap();
            let values: Vec<u8> = now
                .iter()
                .map(|l| l.as_ref().map_or(255, |l| l.record.data[0]))
                .collect();
            // All four records carry the same round, or none does.
            assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
            if after != snapshot {
                landed += 1;
            }
        }
        s.close().await.unwrap();
        let reopened = FileStorage::open_io(Box::new(m), JournalOptions::default())
            .await
            .unwrap();
        assert_eq!(reopened.last_tid().await.unwrap().0, landed);
    });
}

#[cfg(feature = "server")]
#[test]
fn client_storage_over_a_server_on_every_runtime() {
    on_all_runtimes(|_| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = common::server::TestServer::file(
            &dir.path().join("rt.durus"),
            durus::server::ServerOptions::default(),
        );
        exercise(Arc::new(server.client().await)).await;
        // Closing a client closes its connection, not the server's storage.
        let again = server.client().await;
        assert_eq!(again.load(Oid::ROOT).await.unwrap().record.data, b"root");
        server.stop();
    });
}
