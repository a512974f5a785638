//! A private PostgreSQL server for the tests (feature `postgres`): `initdb` into a
//! temporary directory as the `postgres` system user, started with `pg_ctl` listening
//! only on a Unix socket in that directory, a fresh database per test.
//!
//! A server of one test ([`PgServer::start`]) is stopped and its directory removed when
//! it is dropped, also when the test panics. The server a test process shares between
//! its tests ([`shared`]) lives as long as the process: a watchdog (a shell reading a
//! pipe only this process holds) stops it and removes its directory when the process
//! ends, however it ends (a panic, `exit`, SIGKILL).
//!
//! If PostgreSQL cannot be set up the test fails and says why; it never skips.
//!
//! `initdb` runs once per machine into a template directory under the system's
//! temporary directory (guarded by a lock file, completed by a rename); each server
//! copies the template, which takes a tenth of the time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Where PostgreSQL's programs are looked for, in order.
const BIN_DIRS: [&str; 2] = ["/usr/local/bin", "/usr/lib/postgresql/15/bin"];

/// The system user the server runs as (it refuses to run as root).
const USER: &str = "postgres";

/// A running server; stopped and removed on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    databases: AtomicU64,
    /// The pipe the watchdog of a shared server waits on.
    watchdog: Option<std::process::ChildStdin>,
}

/// One test's database on a server, which stays up while this lives.
#[derive(Clone)]
pub struct PgDatabase {
    pub server: Arc<PgServer>,
    pub name: String,
}

impl PgDatabase {
    /// The libpq-style connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} user={USER} dbname={}",
            self.server.socket_dir().display(),
            self.name
        )
    }

    /// The same as a `postgresql://` URL (for storage specs).
    pub fn url(&self) -> String {
        format!(
            "postgresql:///{}?host={}&user={USER}",
            self.name,
            self.server.socket_dir().display()
        )
    }
}

/// The server this test process shares between its tests: started by the first caller,
/// stopped by its watchdog when the process ends.
pub fn shared() -> Arc<PgServer> {
    static SHARED: OnceLock<Arc<PgServer>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let mut s = PgServer::start();
            s.watch();
            Arc::new(s)
        })
        .clone()
}

/// A fresh database on the shared server.
pub fn database() -> PgDatabase {
    shared().database()
}

fn find_bin() -> PathBuf {
    for d in BIN_DIRS {
        if Path::new(d).join("pg_ctl").exists() && Path::new(d).join("initdb").exists() {
            return PathBuf::from(d);
        }
    }
    panic!("PostgreSQL is not installed: no pg_ctl and initdb in {BIN_DIRS:?}");
}

/// Runs `prog args` as the postgres user, panicking with its output if it fails.
fn run_as_postgres(prog: &Path, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", USER, "--"])
        .arg(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} as {USER} (runuser): {e}", prog.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{}\n{}",
        prog.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_to_postgres(path: &Path) {
    let out = Command::new("chown")
        .args(["-R", USER])
        .arg(path)
        .output()
        .expect("run chown");
    assert!(
        out.status.success(),
        "chown {USER} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The initdb'd template cluster, made once per machine.
fn template(bin: &Path) -> PathBuf {
    let base = std::env::temp_dir();
    let done = base.join("durus-test-pg15-template");
    if done.join("PG_VERSION").exists() {
        return done;
    }
    let lock = std::fs::File::create(base.join("durus-test-pg15-template.lock")).expect("template lock file");
    lock.lock().expect("lock the template lock file");
    if done.join("PG_VERSION").exists() {
        return done;
    }
    let work = tempfile::Builder::new()
        .prefix("durus-test-pg15-initdb")
        .tempdir_in(&base)
        .expect("a directory for initdb");
    chown_to_postgres(work.path());
    let data = work.path().join("data");
    run_as_postgres(
        &bin.join("initdb"),
        &[
            "-D",
            data.to_str().expect("utf-8 path"),
            "--auth=trust",
            "--no-sync",
            "-U",
            USER,
            "--encoding=UTF8",
            "--no-locale",
        ],
    );
    std::fs::rename(&data, &done).expect("put the template in place");
    done
}

impl PgServer {
    /// Starts a private server (one for this caller alone).
    pub fn start() -> PgServer {
        let bin = find_bin();
        let template = template(&bin);
        let dir = tempfile::Builder::new()
            .prefix("durus-pg")
            .tempdir()
            .expect("a directory for the server");
        let out = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(dir.path().join("data"))
            .output()
            .expect("run cp");
        assert!(
            out.status.success(),
            "copy the template: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        chown_to_postgres(dir.path());
        let s = PgServer {
            dir,
            bin,
            databases: AtomicU64::new(0),
            watchdog: None,
        };
        s.run_pg_ctl_start();
        s
    }

    /// Leaves stopping the server and removing its directory to a watchdog process that
    /// does both when this process ends.
    fn watch(&mut self) {
        let script = format!(
            "cat >/dev/null; runuser -u {USER} -- '{}' -D '{}' -m immediate -w stop; rm -rf '{}'",
            self.bin.join("pg_ctl").display(),
            self.data(),
            self.dir.path().display()
        );
        // Never waited for: it is meant to outlive this process, and ends by itself.
        #[allow(clippy::zombie_processes)]
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the watchdog of the test PostgreSQL server");
        self.watchdog = child.stdin;
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> String {
        self.dir
            .path()
            .join("data")
            .to_str()
            .expect("utf-8 path")
            .to_string()
    }

    fn run_pg_ctl_start(&self) {
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories={} -c fsync=off -c full_page_writes=off \
             -c max_connections=200",
            self.socket_dir().display()
        );
        let log = self.dir.path().join("server.log");
        let log = log.to_str().expect("utf-8 path");
        let r = std::panic::catch_unwind(|| {
            run_as_postgres(
                &self.bin.join("pg_ctl"),
                &["-D", &self.data(), "-o", &opts, "-l", log, "-w", "start"],
            )
        });
        if r.is_err() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("PostgreSQL did not start; its log:\n{log}");
        }
    }

    /// Stops the server (`-m fast`: sessions are ended, as by an administrator).
    pub fn stop(&self) {
        run_as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Stops the server as a crash would (`-m immediate`: no shutdown checkpoint; the
    /// next start recovers from the log).
    pub fn crash(&self) {
        run_as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Starts the server again after [`stop`](PgServer::stop).
    pub fn start_again(&self) {
        self.run_pg_ctl_start();
    }

    /// A connection to the maintenance database, as the superuser.
    pub fn admin(&self) -> postgres::Client {
        let conninfo = format!("host={} user={USER} dbname=postgres", self.socket_dir().display());
        postgres::Client::connect(&conninfo, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test PostgreSQL at {conninfo}: {e}"))
    }

    /// Runs SQL on the maintenance database as the superuser, on a thread of its own
    /// (the sync client must not run on a thread that drives an async runtime).
    pub fn sql(&self, sql: &str) {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.admin()
                    .batch_execute(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A fresh, empty database on this server.
    pub fn database(self: &Arc<Self>) -> PgDatabase {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("durus_test_{n}");
        self.sql(&format!("CREATE DATABASE {name}"));
        PgDatabase {
            server: self.clone(),
            name,
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            return;
        }
        // Immediate: the directory goes away next, there is nothing to keep.
        let _ = Command::new("runuser")
            .args(["-u", USER, "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}
