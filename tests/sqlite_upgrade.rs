//! A `SqliteStorage` file of format 1 (an index of the object rows by tid, no oid lists
//! in the transaction rows), made here with that schema by hand, is upgraded when it
//! is opened: its history, snapshots, conflict checks, oid allocation and pack work as
//! on a file made by this build, and the file says format 2 afterwards.
#![cfg(feature = "sqlite")]

mod common;

use durus::journal::PackOptions;
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{SqliteOptions, SqliteStorage, Storage};
use durus::Error;

const FORMAT_1: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE durus_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE durus_tx (tid INTEGER PRIMARY KEY, ts INTEGER NOT NULL);
CREATE TABLE durus_object (
    oid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    data BLOB NOT NULL,
    refs BLOB NOT NULL,
    PRIMARY KEY (oid, tid)
) WITHOUT ROWID;
CREATE INDEX durus_object_by_tid ON durus_object (tid, oid);
INSERT INTO durus_meta (key, value) VALUES ('format', 1), ('next_oid', 3), ('history_from', 0);
INSERT INTO durus_tx (tid, ts) VALUES (1, 1000), (2, 2000);
";

/// Refs as format 1 stored them: 8 bytes each, big-endian.
fn refs(oids: &[u64]) -> Vec<u8> {
    oids.iter().flat_map(|o| o.to_be_bytes()).collect()
}

/// Writes a format 1 file: transaction 1 wrote the root (referring to oid 1) and oid 1,
/// transaction 2 the root again (referring to 1 and 2) and oid 2.
fn make_format_1(path: &std::path::Path) {
    let c = rusqlite::Connection::open(path).expect("create the file");
    c.execute_batch(FORMAT_1).expect("the format 1 schema");
    let rows: [(u64, u64, &[u8], Vec<u8>); 4] = [
        (0, 1, b"root one", refs(&[1])),
        (1, 1, b"first", refs(&[])),
        (0, 2, b"root two", refs(&[1, 2])),
        (2, 2, b"second", refs(&[])),
    ];
    for (oid, tid, data, refs) in rows {
        c.execute(
            "INSERT INTO durus_object (oid, tid, data, refs) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![oid as i64, tid as i64, data, refs],
        )
        .expect("a format 1 row");
    }
}

#[test]
fn a_format_1_file_is_upgraded_when_opened() {
    common::on_all_runtimes(|_| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        make_format_1(&path);
        let s = SqliteStorage::open(&path, SqliteOptions::default())
            .await
            .unwrap();

        // The history, from the oid lists the upgrade wrote.
        let txs = s.transactions(Tid::ZERO).await.unwrap();
        let listed: Vec<(u64, Vec<u64>)> = txs
            .iter()
            .map(|t| (t.tid.0, t.oids.iter().map(|o| o.0).collect()))
            .collect();
        assert_eq!(listed, vec![(1, vec![0, 1]), (2, vec![0, 2])]);
        assert_eq!(s.load(Oid::ROOT).await.unwrap().record.data, b"root two");
        assert_eq!(
            s.load_at(Oid::ROOT, Tid(1)).await.unwrap().record.data,
            b"root one"
        );

        // A commit on the old snapshot that writes the root conflicts (the check reads
        // the oid lists); oids go on from the allocation mark.
        let stale = CommitRequest {
            snapshot: Tid(1),
            records: vec![Record::new(Oid::ROOT, b"stale".to_vec(), vec![])],
            ..Default::default()
        };
        match s.commit(stale).await {
            Err(Error::Conflict { oids }) => assert_eq!(oids, vec![Oid::ROOT]),
            other => panic!("a stale commit gave {other:?}"),
        }
        let fresh = s.new_oids(1).await.unwrap()[0];
        assert!(fresh.0 >= 3, "{fresh}");
        let tid = s
            .commit(CommitRequest {
                snapshot: Tid(2),
                records: vec![
                    Record::new(Oid::ROOT, b"root three".to_vec(), vec![Oid(1), fresh]),
                    Record::new(fresh, b"third".to_vec(), vec![]),
                ],
                ..Default::default()
            })
            .await
            .unwrap()
            .tid;
        assert_eq!(tid, Tid(3));

        // Pack drops oid 2 (unreachable now) and the old roots.
        let report = s.pack(PackOptions::default()).await.unwrap();
        assert_eq!(report.objects, 3, "{report:?}");
        assert!(matches!(s.load(Oid(2)).await, Err(Error::NotFound { .. })));
        assert_eq!(s.load(fresh).await.unwrap().record.data, b"third");
        s.close().await.unwrap();

        let c = rusqlite::Connection::open(&path).unwrap();
        let format: i64 = c
            .query_row("SELECT value FROM durus_meta WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(format, 2);
        let indexes: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'durus_object_by_tid'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "the index by tid is dropped");
    });
}
