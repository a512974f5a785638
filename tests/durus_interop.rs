//! The real, unmodified Python Durus 4.3 client against durus's server (feature
//! `python-interop`; the helper makes a virtualenv with Durus, or uses
//! `$DURUS_PYTHON`). The scenarios live in `tests/python/durus_client.py`; each asserts
//! what Durus promises its applications, and the Rust side checks the stored file.
//!
//! Servers run in this process on a thread of their own, except where the test
//! kills the server: then it is the `durus serve` binary in a child process.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;

use common::python::{child_server, scenario, spawn_scenario, value};
use common::server::TestServer;
use durus::journal::{Journal, JournalOptions};
use durus::record::{Oid, Tid};
use durus::server::{Address, ServerOptions};
use durus::storage::{FileStorage, Storage};
use durus::Error;

fn tcp() -> Address {
    "127.0.0.1:0".parse().unwrap()
}

/// A server on a journal file at `path`, on TCP (Durus clients speak TCP by default).
fn serve(path: &Path, options: ServerOptions) -> (TestServer, String) {
    let p = path.to_path_buf();
    let s = TestServer::start_with(
        move || {
            Box::pin(async move {
                let s = FileStorage::open(p, JournalOptions::default()).await?;
                Ok(Arc::new(s) as Arc<dyn Storage>)
            })
        },
        options,
        tcp(),
    );
    let addr = s.address.to_string();
    (s, addr)
}

#[test]
fn handshake_oids_and_root_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("boot.durus");
    let (server, addr) = serve(&path, ServerOptions::default());
    let out = scenario(&addr, "bootstrap", &[]);
    let item: u64 = value(&out, "item_oid").parse().unwrap();
    assert_ne!(item, 0);
    assert_eq!(value(&out, "oids"), "200");
    let stats = server.server.stats();
    assert!(stats.v1_sessions >= 2, "{stats:?}");
    assert_eq!(stats.protocol_errors, 0, "{stats:?}");
    server.stop();
    // The root Durus created is oid 0 in the file, and the item it refers to is there.
    let j = Journal::open(&path, JournalOptions::default()).unwrap();
    let root = j.load(Oid::ROOT).unwrap();
    assert!(root.record.refs.contains(&Oid(item)), "{:?}", root.record.refs);
    assert!(j.load(Oid(item)).is_ok());
}

#[test]
fn records_from_empty_to_several_mib_are_stored_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(&dir.path().join("records.durus"), ServerOptions::default());
    let sizes = ["0", "1", "100", "65536", "1048576", "5242880"];
    let out = scenario(&addr, "records", &sizes);
    let records: Vec<&String> = out.iter().filter(|l| l.starts_with("record ")).collect();
    assert_eq!(records.len(), sizes.len());
    let storage = server.server.storage().clone();
    for line in records {
        let f: Vec<u64> = line[7..].split(' ').map(|x| x.parse().unwrap()).collect();
        let stored = futures::executor::block_on(storage.load(Oid(f[0]))).unwrap();
        // What the Python client loads is exactly the Durus framing of what it wrote.
        let framed = stored.record.encode().unwrap();
        assert_eq!(framed.len() as u64, f[1]);
        assert_eq!(crc32fast::hash(&framed) as u64, f[2]);
    }
    server.stop();
}

#[test]
fn bulk_load_and_crawl() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(&dir.path().join("bulk.durus"), ServerOptions::default());
    let out = scenario(&addr, "bulk", &["500"]);
    assert_eq!(value(&out, "bulk"), "500");
    let crawled: u64 = value(&out, "crawled").parse().unwrap();
    assert!(crawled >= 501, "crawled {crawled}");
    server.stop();
}

#[test]
fn invalidations_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(&dir.path().join("inv.durus"), ServerOptions::default());
    assert_eq!(
        value(&scenario(&addr, "invalidations", &[]), "invalidations"),
        "ok"
    );
    server.stop();
}

#[test]
fn write_and_read_conflicts_are_decided_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(&dir.path().join("conflicts.durus"), ServerOptions::default());
    assert_eq!(value(&scenario(&addr, "conflicts", &[]), "conflicts"), "ok");
    // The stale write the scenario forced past the client's own check was refused by
    // the server (the client-side conflicts are refused before reaching it).
    assert!(server.server.stats().conflicts >= 1);
    server.stop();
}

#[test]
fn a_hundred_concurrent_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(&dir.path().join("hundred.durus"), ServerOptions::default());
    // Create the counters first, so the processes do not race to make them.
    scenario(&addr, "counters", &["1", "1"]);
    // 4 processes of 25 client threads each, every client with its own connection.
    let procs: Vec<Child> = (0..4)
        .map(|_| spawn_scenario(&addr, "counters", &["25", "20"]))
        .collect();
    for p in procs {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(value(&scenario(&addr, "total", &[]), "total"), "2001");
    let stats = server.server.stats();
    assert!(stats.connections >= 102, "{stats:?}");
    assert_eq!(stats.protocol_errors, 0, "{stats:?}");
    server.stop();
}

#[test]
fn restart_keeps_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restart.durus");
    let (server, addr) = serve(&path, ServerOptions::default());
    scenario(&addr, "commit_loop", &["50"]);
    server.stop();
    let (server, addr) = serve(&path, ServerOptions::default());
    assert_eq!(value(&scenario(&addr, "check_log", &[]), "log"), "50");
    scenario(&addr, "commit_loop", &["10"]);
    assert_eq!(value(&scenario(&addr, "check_log", &[]), "log"), "60");
    server.stop();
}

#[test]
fn pack_over_the_wire_drops_the_garbage_and_keeps_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pack.durus");
    let (server, addr) = serve(&path, ServerOptions::default());
    let out = scenario(&addr, "pack", &[]);
    assert_eq!(value(&out, "pack"), "answered O", "{out:?}");
    assert_eq!(value(&out, "after_pack"), "ok");
    assert_eq!(value(&out, "child"), "19");
    let stats = server.server.stats();
    assert_eq!((stats.packs, stats.packs_refused), (1, 0), "{stats:?}");
    server.stop();
    // The file was packed: the history before the pack is gone, and it checks out.
    let j = Journal::open(
        &path,
        JournalOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        j.transactions(Tid::ZERO),
        Err(Error::HistoryGone { .. })
    ));
    drop(j);
    Journal::verify_path(&path).unwrap();
}

/// Runs Python's commit loop against `addr` until `n` commits were acknowledged;
/// returns the loop's process (still committing) and the acknowledged ids so far.
fn commits_acked(addr: &str, n: usize) -> (Child, Vec<u64>) {
    let mut p = spawn_scenario(addr, "commit_loop", &["1000000"]);
    let mut lines = BufReader::new(p.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < n {
        let l = lines.next().expect("the commit loop ended early").unwrap();
        if let Some(i) = l.strip_prefix("acked ") {
            acked.push(i.parse().unwrap());
        }
    }
    // Keep reading in the background so the loop never blocks on its output; what it
    // acknowledges from here on is counted too.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(|l| l.ok()) {
            if let Some(i) = l.strip_prefix("acked ") {
                let _ = tx.send(i.parse::<u64>().unwrap());
            }
        }
    });
    // The receiver is drained by the caller after the kill.
    ACKS.with(|a| *a.borrow_mut() = Some(rx));
    (p, acked)
}

thread_local! {
    static ACKS: std::cell::RefCell<Option<std::sync::mpsc::Receiver<u64>>> = const { std::cell::RefCell::new(None) };
}

fn later_acks() -> Vec<u64> {
    ACKS.with(|a| {
        a.borrow_mut()
            .take()
            .map(|rx| rx.iter().collect())
            .unwrap_or_default()
    })
}

#[test]
fn sigkill_loses_no_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill.durus");
    for round in 0..3 {
        let (mut server, addr, _out) = child_server(&path);
        let (mut client, mut acked) = commits_acked(&addr, 100);
        // SAFETY-free kill: the child is ours, named by its pid.
        Command::new("kill")
            .args(["-KILL", &server.id().to_string()])
            .status()
            .unwrap();
        server.wait().unwrap();
        let _ = client.wait();
        acked.extend(later_acks());
        let last = *acked.iter().max().unwrap();
        let (server, addr) = serve(&path, ServerOptions::default());
        let have: u64 = value(&scenario(&addr, "check_log", &[]), "log").parse().unwrap();
        assert!(
            have > last,
            "round {round}: commit {last} was acknowledged but the log has {have} entries"
        );
        server.stop();
    }
    assert!(Journal::verify_path(&path).is_ok());
}

#[test]
fn sigterm_lets_commits_finish_and_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("term.durus");
    let (mut server, addr, mut out) = child_server(&path);
    let (mut client, mut acked) = commits_acked(&addr, 100);
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(server.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("SIGTERM: shutting down"), "{rest}");
    assert!(rest.contains("storage closed"), "{rest}");
    assert!(rest.contains("stopped cleanly"), "{rest}");
    let _ = client.wait();
    acked.extend(later_acks());
    let last = *acked.iter().max().unwrap();
    // Closed cleanly: nothing torn at the end, every acknowledged commit there.
    let report = Journal::verify_path(&path).unwrap();
    assert_eq!(report.torn_tail, None);
    let (server, addr) = serve(&path, ServerOptions::default());
    let have: u64 = value(&scenario(&addr, "check_log", &[]), "log").parse().unwrap();
    assert!(have > last);
    server.stop();
}
