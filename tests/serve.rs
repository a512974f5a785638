//! `durus serve` and `durus -s`, the binary: it serves ClientStorage over TCP and Unix
//! sockets, logs connections and its counters, stops on SIGTERM after answering the
//! commits under way and closes the journal cleanly, and Durus's `--stop` stops it.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::on_all_runtimes;
use durus::client::ClientStorage;
use durus::journal::{Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::{FileStorage, Storage};

/// A running `durus ARGS` whose log says it is serving; its address and its log.
struct Served {
    child: Child,
    address: String,
    log: BufReader<ChildStderr>,
}

// The child is kept in `Served`, whose users wait for it; a panic fails the test.
#[allow(clippy::zombie_processes)]
fn start(args: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_durus"))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run durus");
    let mut log = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        if log.read_line(&mut line).expect("read the log") == 0 {
            let status = child.wait();
            panic!("durus {args:?} ended before serving: {status:?}");
        }
        if let Some(at) = line.find("serving on ") {
            let address = line[at + 11..].trim().to_string();
            return Served { child, address, log };
        }
    }
}

impl Served {
    /// Sends `signal` to the server process.
    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {signal} failed");
    }

    /// Waits for the server to exit; whether it succeeded, and the rest of its log.
    fn wait(mut self) -> (bool, String) {
        let mut rest = String::new();
        self.log.read_to_string(&mut rest).expect("read the log");
        (self.child.wait().expect("wait").success(), rest)
    }
}

fn file_arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Commits from 16 tasks over one client until the connection fails; what each task
/// had acknowledged: (oid, the last value acknowledged).
async fn commit_until_cut(client: ClientStorage, acked: Arc<Mutex<Vec<(Oid, u64)>>>) {
    let oids = client.new_oids(16).await.expect("oids");
    let tasks = oids.into_iter().map(|oid| {
        let client = client.clone();
        let acked = acked.clone();
        async move {
            let mut snapshot = Tid::ZERO;
            for i in 1u64.. {
                let req = CommitRequest {
                    snapshot,
                    records: vec![Record::new(oid, i.to_be_bytes().to_vec(), vec![])],
                    ..CommitRequest::default()
                };
                match client.commit(req).await {
                    Ok(c) => {
                        snapshot = c.tid;
                        acked.lock().unwrap().push((oid, i));
                    }
                    // The server went away: a commit not answered may or may not be
                    // there; the test checks that none of them is.
                    Err(_) => return,
                }
            }
        }
    });
    futures::future::join_all(tasks).await;
}

#[test]
fn sigterm_answers_the_commits_under_way_and_closes_the_journal() {
    on_all_runtimes(|rt| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("term.durus");
        let served = start(&["serve", "--port", "0", "--file", file_arg(&path)]);
        let client = ClientStorage::connect(&served.address.parse().unwrap())
            .await
            .unwrap();
        let start_tid = client.last_tid().await.unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        // The signal goes from another thread once commits flow, while 16 of them are
        // in flight at any moment.
        let signaller = {
            let acked = acked.clone();
            let pid = served.child.id();
            std::thread::spawn(move || {
                while acked.lock().unwrap().len() < 300 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .unwrap();
            })
        };
        commit_until_cut(client, acked.clone()).await;
        signaller.join().unwrap();
        let (ok, log) = served.wait();
        assert!(ok, "{rt}: durus serve failed:\n{log}");
        for want in [
            "SIGTERM: shutting down",
            "storage closed",
            "counters: connections 1",
            "stopped cleanly",
        ] {
            assert!(log.contains(want), "{rt}: the log lacks {want:?}:\n{log}");
        }
        // Closed cleanly: nothing torn; every acknowledged value is there; and every
        // commit in the file was answered (those under way at the signal were finished
        // and answered, not dropped half way or left unanswered).
        let report = Journal::verify_path(&path).unwrap();
        assert_eq!(report.torn_tail, None, "{rt}");
        let acked = acked.lock().unwrap().clone();
        let storage = FileStorage::open(&path, JournalOptions::default()).await.unwrap();
        let mut last = std::collections::HashMap::new();
        for &(oid, i) in &acked {
            let v = last.entry(oid).or_insert(0);
            *v = i.max(*v);
        }
        for (&oid, &i) in &last {
            let data = storage.load(oid).await.unwrap().record.data;
            assert_eq!(data, i.to_be_bytes(), "{rt}: {oid} lost acknowledged commits");
        }
        let landed = storage.last_tid().await.unwrap().0 - start_tid.0;
        assert_eq!(
            landed,
            acked.len() as u64,
            "{rt}: {landed} commits landed, {} were answered",
            acked.len()
        );
        storage.close().await.unwrap();
    });
}

#[test]
fn durus_spelling_serves_on_a_unix_socket_and_stop_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compat.durus");
    let socket = dir.path().join("durus.sock");
    let served = start(&["-s", "--file", file_arg(&path), "--address", file_arg(&socket)]);
    assert_eq!(served.address, format!("unix:{}", socket.display()));
    futures::executor::block_on(async {
        let client = ClientStorage::connect(&served.address.parse().unwrap())
            .await
            .unwrap();
        let oid = client.new_oids(1).await.unwrap()[0];
        let req = CommitRequest {
            records: vec![Record::new(oid, b"hello".to_vec(), vec![])],
            ..CommitRequest::default()
        };
        client.commit(req).await.unwrap();
        assert_eq!(client.load(oid).await.unwrap().record.data, b"hello");
    });
    let stop = Command::new(env!("CARGO_BIN_EXE_durus"))
        .args(["-s", "--stop", "--address", file_arg(&socket)])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    let (ok, log) = served.wait();
    assert!(ok, "{log}");
    assert!(log.contains("quit requested"), "{log}");
    assert!(log.contains("connected"), "{log}");
    assert!(log.contains("commits 1,"), "{log}");
    assert!(!socket.exists(), "the socket file was left behind");
    let report = Journal::verify_path(&path).unwrap();
    assert_eq!(report.torn_tail, None);
}

#[test]
fn durus_spelling_on_tcp_and_a_usage_error_without_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tcp.durus");
    let served = start(&[
        "-s",
        "--file",
        file_arg(&path),
        "--port",
        "0",
        "--logginglevel",
        "10",
    ]);
    let port = served.address.rsplit(':').next().unwrap().to_string();
    served.signal("-INT");
    let (ok, log) = served.wait();
    assert!(ok, "{log}");
    assert!(log.contains("SIGINT: shutting down"), "{log}");
    // Without --file, Durus would serve a temporary file; durus says why it does not.
    let out = Command::new(env!("CARGO_BIN_EXE_durus"))
        .args(["-s", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--file is needed"));
    // And --stop with nobody there is not an error, as for Durus.
    let out = Command::new(env!("CARGO_BIN_EXE_durus"))
        .args(["-s", "--stop", "--port", &port])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no server"));
}

#[test]
fn a_file_locked_by_another_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.durus");
    let served = start(&["serve", "--port", "0", "--file", file_arg(&path)]);
    let out = Command::new(env!("CARGO_BIN_EXE_durus"))
        .args(["serve", "--port", "0", "--file", file_arg(&path)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    served.signal("-TERM");
    assert!(served.wait().0);
}

/// `durus backup`, full and then `--incremental`, of a journal that `durus serve` has
/// open and 16 clients' tasks commit to: each copy verifies and holds every commit
/// acknowledged before it started.
#[test]
fn durus_backup_copies_a_served_journal_while_clients_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("served.durus");
    let socket = format!("unix:{}", dir.path().join("b.sock").display());
    let served = start(&["serve", "--file", file_arg(&path), "--address", &socket]);
    let address = served.address.parse().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let committing = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            futures::executor::block_on(async {
                let client = ClientStorage::connect(&address).await.expect("connect");
                commit_until_cut(client, acked).await;
            })
        })
    };
    let dest = dir.path().join("copy.durus");
    for round in 0..4 {
        while acked.lock().unwrap().len() < 50 * (round + 1) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let mut before = std::collections::HashMap::new();
        for &(oid, i) in acked.lock().unwrap().iter() {
            let v = before.entry(oid).or_insert(0);
            *v = i.max(*v);
        }
        let mut args = vec!["backup", file_arg(&path), file_arg(&dest)];
        if round > 0 {
            args.insert(1, "--incremental");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_durus"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "round {round}: {out:?}");
        assert_eq!(Journal::verify_path(&dest).unwrap().torn_tail, None);
        let copy = Journal::open(
            &dest,
            JournalOptions {
                read_only: true,
                ..JournalOptions::default()
            },
        )
        .unwrap();
        for (oid, i) in before {
            let got = copy.load(oid).unwrap().record.data;
            let got = u64::from_be_bytes(got.try_into().unwrap());
            assert!(
                got >= i,
                "round {round}: {oid} holds {got}, {i} was acknowledged first"
            );
        }
        copy.close().unwrap();
    }
    served.signal("-TERM");
    let (ok, log) = served.wait();
    assert!(ok, "{log}");
    committing.join().unwrap();
}
