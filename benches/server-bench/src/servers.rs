//! The servers W7 compares, each a process of its own on a free loopback port.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Clone, Copy)]
pub enum Kind {
    /// `python -m durus -s` with this storage class.
    Python(&'static str),
    /// `durus serve` with this `--durability`.
    Durus(&'static str),
}

/// A server process and where it listens.
pub struct Running {
    child: Child,
    kind: Kind,
    pub address: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts a `kind` server on `file`; waits until it accepts connections.
pub fn start(kind: Kind, py: &Path, durus: &Path, extra: &[String], file: &Path) -> Running {
    let port = free_port().to_string();
    let mut cmd = match kind {
        Kind::Python(class) => {
            let mut c = Command::new(py);
            c.args([
                "-m",
                "durus",
                "-s",
                "--port",
                &port,
                "--storage-class",
                class,
                "--file",
            ])
            .arg(file)
            .stderr(Stdio::null());
            c
        }
        Kind::Durus(durability) => {
            let mut c = Command::new(durus);
            c.args([
                "serve",
                "--port",
                &port,
                "--durability",
                durability,
                "--log-level",
                "warn",
            ])
            .args(extra)
            .arg("--file")
            .arg(file);
            c
        }
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start a server");
    let address = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Running { child, kind, address }
}

impl Running {
    /// Stops the server: durus's with SIGTERM (a clean close, checked), Python's with
    /// SIGKILL (it has no other way but a client's `Q`, and its file is thrown away).
    pub fn stop(mut self) {
        match self.kind {
            Kind::Durus(_) => {
                let ok = Command::new("kill")
                    .args(["-TERM", &self.child.id().to_string()])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "kill -TERM failed");
                let status = self.child.wait().expect("wait for durus serve");
                assert!(status.success(), "durus serve did not stop cleanly: {status}");
            }
            Kind::Python(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
