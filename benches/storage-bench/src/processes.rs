//! W5's multi-process row: several OS processes committing to one store at once.
//!
//! The benchmark re-invokes its own binary as the child processes. Each child opens
//! the store, says `ready`, waits for `go` on its standard input, makes its commits
//! (one record per durable transaction), and says `done` with its journal counters,
//! so the time measured is the commits alone, from the first `go` to the last `done`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use durus::journal::{JournalOptions, JournalStats};
use durus::storage::FileStorage;
use durus::{Db, DbBuilder};
use futures::executor::block_on;

use crate::durus_engine::{insert_one, stats_between, Blob};

/// The first argument that makes the binary a child process.
pub const CHILD_FLAG: &str = "--w5-child";

/// Which store the processes share.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A durus journal in shared mode, through a `Db` in each process.
    Durus,
    /// A SQLite database in WAL mode, synchronous=FULL, a connection in each process.
    Sqlite,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Durus => "durus",
            Kind::Sqlite => "sqlite",
        }
    }
}

fn shared() -> JournalOptions {
    JournalOptions {
        shared: true,
        ..JournalOptions::default()
    }
}

/// Runs `processes` children committing `per` transactions each to the store at
/// `path` (created here first); returns the time taken and, for durus, the summed
/// journal counters of the children.
pub fn run(kind: Kind, path: &Path, processes: usize, per: u64) -> (Duration, JournalStats) {
    match kind {
        Kind::Durus => block_on(async {
            let db: Db<Blob> = Db::builder(path)
                .journal_options(shared())
                .open()
                .await
                .expect("create the shared durus file");
            db.close().await.expect("close the durus file");
        }),
        Kind::Sqlite => crate::sqlite_engine::create_empty(path),
    }
    let exe = std::env::current_exe().expect("find the benchmark binary");
    let mut children = Vec::new();
    for me in 0..processes {
        let mut c = Command::new(&exe)
            .arg(CHILD_FLAG)
            .arg(kind.name())
            .arg(path)
            .arg((me as u64 * per).to_string())
            .arg(per.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a child process");
        let stdin = c.stdin.take().expect("child stdin");
        let mut stdout = BufReader::new(c.stdout.take().expect("child stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read from a child");
        assert_eq!(line.trim(), "ready", "child {me} did not get ready");
        children.push((c, stdin, stdout));
    }
    let start = Instant::now();
    for (_, stdin, _) in &mut children {
        stdin.write_all(b"go\n").expect("start a child");
        stdin.flush().expect("start a child");
    }
    let mut total = JournalStats::default();
    for (me, (_, _, stdout)) in children.iter_mut().enumerate() {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read from a child");
        let nums: Vec<u64> = line
            .trim()
            .strip_prefix("done")
            .unwrap_or_else(|| panic!("child {me} failed: {line:?}"))
            .split_whitespace()
            .map(|n| n.parse().expect("a child's counter"))
            .collect();
        if let [commits, groups, syncs, bytes] = nums[..] {
            total.commits += commits;
            total.groups += groups;
            total.syncs += syncs;
            total.bytes_written += bytes;
        }
    }
    let took = start.elapsed();
    for (mut c, _, _) in children {
        let status = c.wait().expect("wait for a child");
        assert!(status.success(), "a child process failed: {status}");
    }
    (took, total)
}

/// The child's side: `--w5-child KIND PATH FIRST COUNT`.
pub fn child_main(args: &[String]) {
    let [kind, path, first, count] = args else {
        eprintln!("usage: {CHILD_FLAG} durus|sqlite PATH FIRST COUNT");
        std::process::exit(2);
    };
    let path = Path::new(path);
    let first: u64 = first.parse().expect("FIRST");
    let count: u64 = count.parse().expect("COUNT");
    let wait_for_go = || {
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).expect("stdin");
    };
    match kind.as_str() {
        "durus" => block_on(async {
            let fs = FileStorage::open(path, shared())
                .await
                .expect("open the shared durus file");
            let db: Db<Blob> = DbBuilder::storage(fs.clone())
                .open()
                .await
                .expect("open a durus Db");
            wait_for_go();
            let before = fs.journal().stats();
            for k in first..first + count {
                insert_one(&db, k).await;
            }
            let s = stats_between(before, fs.journal().stats());
            println!("done {} {} {} {}", s.commits, s.groups, s.syncs, s.bytes_written);
            std::io::stdout().flush().expect("stdout");
            db.close().await.expect("close the durus Db");
        }),
        "sqlite" => {
            let mut conn = crate::sqlite_engine::open_writer(path);
            wait_for_go();
            for k in first..first + count {
                crate::sqlite_engine::insert_one(&mut conn, 1 + k);
            }
            println!("done");
            std::io::stdout().flush().expect("stdout");
        }
        other => {
            eprintln!("unknown store {other}");
            std::process::exit(2);
        }
    }
}
