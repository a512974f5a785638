//! The server against hostile and broken clients, byte by byte over real sockets:
//! garbage, truncated and oversized requests, lengths that lie, a 4 GiB declared
//! length, a client stalled in the middle of a request. Each closes that one
//! connection, stores nothing, and leaves every other client unharmed. Also the
//! protocol rules a Durus client relies on, checked without Python: the version
//! answer, oid 0 for the root, invalidations.

#![cfg(feature = "server")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::server::{socket_next_to, TestServer};
use durus::protocol::v1;
use durus::record::{Oid, Record};
use durus::server::{Peer, Server, ServerOptions};
use durus::storage::MemoryStorage;
use futures::{AsyncReadExt, AsyncWriteExt};

type Conn = async_net::unix::UnixStream;

fn server(options: ServerOptions) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        Arc::new(MemoryStorage::new()),
        options,
        socket_next_to(&dir.path().join("h.durus")),
    );
    (s, dir)
}

async fn connect(s: &TestServer) -> Conn {
    let durus::server::Address::Unix(p) = &s.address else {
        unreachable!()
    };
    Conn::connect(p).await.unwrap()
}

async fn read_n(c: &mut Conn, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    c.read_exact(&mut b).await.unwrap();
    b
}

/// True once the server has closed the connection (reads end).
async fn closed(c: &mut Conn) -> bool {
    let mut b = [0u8; 64];
    loop {
        match c.read(&mut b).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

/// A well-behaved Durus-style exchange: new oids, a commit, a load. Returns the oid.
async fn honest(s: &TestServer) -> Oid {
    let mut c = connect(s).await;
    c.write_all(b"V\0\0\0\x01").await.unwrap();
    assert_eq!(read_n(&mut c, 4).await, [0, 0, 0, 1]);
    c.write_all(b"M\x02").await.unwrap();
    let oids = read_n(&mut c, 16).await;
    let oid = Oid(u64::from_be_bytes(oids[8..16].try_into().unwrap()));
    c.write_all(b"C").await.unwrap();
    let n = u32::from_be_bytes(read_n(&mut c, 4).await.try_into().unwrap());
    read_n(&mut c, 8 * n as usize).await;
    let mut body = Vec::new();
    v1::encode_commit_body(&[Record::new(oid, b"honest".to_vec(), vec![])], &mut body).unwrap();
    c.write_all(&body).await.unwrap();
    assert_eq!(read_n(&mut c, 1).await, b"O");
    let mut l = b"L".to_vec();
    l.extend_from_slice(&oid.to_bytes());
    c.write_all(&l).await.unwrap();
    assert_eq!(read_n(&mut c, 1).await, b"O");
    oid
}

/// Opens a connection and starts a commit on it: the invalidation list is read, the
/// body is the caller's.
async fn start_commit(s: &TestServer) -> Conn {
    let mut c = connect(s).await;
    c.write_all(b"C").await.unwrap();
    let n = u32::from_be_bytes(read_n(&mut c, 4).await.try_into().unwrap());
    read_n(&mut c, 8 * n as usize).await;
    c
}

#[test]
fn hostile_requests_close_only_their_connection_and_store_nothing() {
    common::run_on("smol", async {
        let (s, _dir) = server(ServerOptions {
            max_frame: 1 << 20,
            ..ServerOptions::default()
        });
        let storage = s.server.storage().clone();

        // Garbage: an unknown command byte.
        let mut c = connect(&s).await;
        c.write_all(b"Zgarbage").await.unwrap();
        assert!(closed(&mut c).await);

        // A declared commit body of 4 GiB: refused from its length, before any body.
        let mut c = start_commit(&s).await;
        c.write_all(&[0xff; 4]).await.unwrap();
        assert!(closed(&mut c).await);

        // Over the frame limit (1 MiB here), refused at once too.
        let mut c = start_commit(&s).await;
        c.write_all(&(2u32 << 20).to_be_bytes()).await.unwrap();
        assert!(closed(&mut c).await);

        // A bulk load of 2^32-1 oids.
        let mut c = connect(&s).await;
        c.write_all(b"B\xff\xff\xff\xff").await.unwrap();
        assert!(closed(&mut c).await);

        // An inner record length that runs past the end of the body.
        let oid = Oid(1);
        let mut entry = Vec::new();
        entry.extend_from_slice(&100u32.to_be_bytes());
        entry.extend_from_slice(&oid.to_bytes());
        entry.extend_from_slice(&Record::new(oid, b"x".to_vec(), vec![]).encode().unwrap());
        let mut c = start_commit(&s).await;
        c.write_all(&(entry.len() as u32).to_be_bytes()).await.unwrap();
        c.write_all(&entry).await.unwrap();
        assert!(closed(&mut c).await);

        // A data length inside the framed record that runs past its record.
        let mut body = Vec::new();
        v1::encode_commit_body(&[Record::new(oid, b"abc".to_vec(), vec![])], &mut body).unwrap();
        body[4 + 4 + 8 + 11] = 200;
        let mut c = start_commit(&s).await;
        c.write_all(&body).await.unwrap();
        assert!(closed(&mut c).await);

        // Outer and inner oids that disagree.
        let mut body = Vec::new();
        v1::encode_commit_body(&[Record::new(oid, b"abc".to_vec(), vec![])], &mut body).unwrap();
        body[4 + 4 + 7] = 9;
        let mut c = start_commit(&s).await;
        c.write_all(&body).await.unwrap();
        assert!(closed(&mut c).await);

        // A commit of an oid never handed out.
        let mut body = Vec::new();
        v1::encode_commit_body(&[Record::new(Oid(1 << 40), b"abc".to_vec(), vec![])], &mut body).unwrap();
        let mut c = start_commit(&s).await;
        c.write_all(&body).await.unwrap();
        assert!(closed(&mut c).await);

        // Truncated: half a commit body, then the client goes away.
        let mut body = Vec::new();
        v1::encode_commit_body(&[Record::new(oid, vec![7; 1000], vec![])], &mut body).unwrap();
        let mut c = start_commit(&s).await;
        c.write_all(&body[..500]).await.unwrap();
        drop(c);

        // v2 frames: a 4 GiB frame length, and an unknown kind.
        let mut c = connect(&s).await;
        c.write_all(b"V\0\0\0\x02").await.unwrap();
        assert_eq!(read_n(&mut c, 4).await, [0, 0, 0, 2]);
        c.write_all(&[0xff; 4]).await.unwrap();
        assert!(closed(&mut c).await);
        let mut c = connect(&s).await;
        c.write_all(b"V\0\0\0\x02").await.unwrap();
        read_n(&mut c, 4).await;
        c.write_all(&[0, 0, 0, 5, 0x7e, 0, 0, 0, 1]).await.unwrap();
        assert!(closed(&mut c).await);

        // Nothing was stored, and an honest client is served as if nothing happened.
        assert_eq!(storage.last_tid().await.unwrap().0, 0);
        let oid = honest(&s).await;
        assert_eq!(storage.load(oid).await.unwrap().record.data, b"honest");
        let stats = s.server.stats();
        assert!(stats.protocol_errors >= 10, "{stats:?}");
        assert_eq!(stats.commits, 1, "{stats:?}");
        s.stop();
    });
}

#[test]
fn a_client_stalled_mid_request_delays_nobody_and_is_cut_off() {
    common::run_on("tokio-multi-thread", async {
        let (s, _dir) = server(ServerOptions {
            frame_timeout: Duration::from_millis(300),
            ..ServerOptions::default()
        });
        // Stalled in the middle of a load, and in the middle of a commit body.
        let mut stalled = connect(&s).await;
        stalled.write_all(b"L\0\0\0").await.unwrap();
        let mut stalled_commit = start_commit(&s).await;
        stalled_commit.write_all(&[0, 0, 1, 0, 0, 0]).await.unwrap();
        // Others go about their business meanwhile, commits included.
        for _ in 0..20 {
            honest(&s).await;
        }
        assert_eq!(s.server.stats().commits, 20);
        // The stalled ones are cut off once their deadline passes.
        assert!(closed(&mut stalled).await);
        assert!(closed(&mut stalled_commit).await);
        assert!(s.server.stats().protocol_errors >= 2);
        s.stop();
    });
}

#[test]
fn version_mismatch_is_answered_and_closed() {
    common::run_on("futures-executor", async {
        let (s, _dir) = server(ServerOptions::default());
        let mut c = connect(&s).await;
        c.write_all(b"V\0\0\0\x07").await.unwrap();
        assert_eq!(read_n(&mut c, 4).await, [0, 0, 0, 2]);
        assert!(closed(&mut c).await);
        s.stop();
    });
}

#[test]
fn oid_zero_goes_to_durus_clients_until_the_root_exists() {
    common::run_on("smol", async {
        let (s, _dir) = server(ServerOptions::default());
        let mut a = connect(&s).await;
        let mut b = connect(&s).await;
        a.write_all(b"N").await.unwrap();
        assert_eq!(read_n(&mut a, 8).await, [0; 8]);
        // Both clients creating a root get 0 while there is none.
        b.write_all(b"M\x03").await.unwrap();
        let oids = read_n(&mut b, 24).await;
        assert_eq!(oids[..8], [0; 8]);
        // a commits the root; b's root commit then conflicts (its sync point is older).
        for c in [&mut a, &mut b] {
            c.write_all(b"C").await.unwrap();
            let n = u32::from_be_bytes(read_n(c, 4).await.try_into().unwrap());
            read_n(c, 8 * n as usize).await;
            let mut body = Vec::new();
            v1::encode_commit_body(&[Record::new(Oid::ROOT, b"root".to_vec(), vec![])], &mut body).unwrap();
            c.write_all(&body).await.unwrap();
        }
        assert_eq!(read_n(&mut a, 1).await, b"O");
        assert_eq!(read_n(&mut b, 1).await, b"I");
        // With a root, 0 is never handed out again, and no oid twice.
        let mut seen = std::collections::BTreeSet::new();
        seen.extend(oids[8..].chunks(8).map(|c| c.to_vec()));
        for _ in 0..10 {
            a.write_all(b"M\x20").await.unwrap();
            for o in read_n(&mut a, 256).await.chunks(8) {
                assert_ne!(o, [0; 8]);
                assert!(seen.insert(o.to_vec()), "oid handed out twice");
            }
        }
        s.stop();
    });
}

#[test]
fn quit_is_honoured_only_from_local_peers() {
    common::run_on("smol", async {
        let storage = Arc::new(MemoryStorage::new());
        let server = Server::from_arc(storage, ServerOptions::default()).await.unwrap();
        // A peer that does not count as local: the connection closes, the server stays.
        let (mut ours, theirs) = async_net::unix::UnixStream::pair().unwrap();
        let remote = Peer::Other {
            name: "remote".into(),
            local: false,
        };
        let serving = server.serve_connection(theirs, remote);
        let client = async {
            ours.write_all(b"Q").await.unwrap();
            assert!(closed(&mut ours).await);
        };
        futures::join!(serving, client);
        assert!(!server.is_shutting_down());
        // A local one shuts it down.
        let (mut ours, theirs) = async_net::unix::UnixStream::pair().unwrap();
        let local = Peer::Unix(None);
        let serving = server.serve_connection(theirs, local);
        let client = async {
            ours.write_all(b"Q").await.unwrap();
            assert!(closed(&mut ours).await);
        };
        futures::join!(serving, client);
        assert!(server.is_shutting_down());
    });
}
