//! The rounds: a server, the client processes, the checks.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::Args;

fn script() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/server_stress.py"))
}

/// A `durus serve` process and its port.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(durus: &Path, file: &Path, log: &Path) -> Result<Server, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("the server log: {e}"))?;
        let mut child = Command::new(durus)
            .args(["serve", "--port", &port.to_string(), "--file"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", durus.display()))?;
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("durus serve exited at start: {status}"));
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                return Err("durus serve did not listen within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server { child, port })
    }

    /// SIGTERM, then the exit status must be 0.
    fn stop(mut self) -> Result<(), String> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !sent.success() || !status.success() {
            return Err(format!("durus serve did not stop cleanly on SIGTERM: {status}"));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only on an error path: `stop` has already waited otherwise.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn python(args: &Args, port: u16, rest: &[String]) -> Command {
    let mut c = Command::new(&args.python);
    c.arg(script()).args(["127.0.0.1", &port.to_string()]).args(rest);
    c
}

/// Runs a client to its end; its stdout, or why it failed.
fn finished(what: &str, out: std::io::Result<Output>) -> Result<String, String> {
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs every round; a one-line summary.
pub fn run(args: &Args) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("stress.durus");
    let log = dir.path().join("server.log");
    let started = Instant::now();
    let mut acked = vec![0u64; args.clients];
    let (mut conflicts, mut audits) = (0u64, 0u64);
    for round in 0..args.rounds {
        let server = Server::start(&args.durus, &file, &log)?;
        if round == 0 {
            let init = [
                "init".to_string(),
                args.accounts.to_string(),
                args.clients.to_string(),
            ];
            finished("init", python(args, server.port, &init).output())?;
        }
        let workers: Vec<Child> = (0..args.clients)
            .map(|i| {
                let seed = args
                    .seed
                    .wrapping_mul(1000)
                    .wrapping_add((round * args.clients + i) as u64);
                let work = [
                    "work".to_string(),
                    i.to_string(),
                    args.transactions.to_string(),
                    seed.to_string(),
                    acked[i].to_string(),
                ];
                python(args, server.port, &work)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("start a client: {e}"))
            })
            .collect::<Result<_, _>>()?;
        for (i, w) in workers.into_iter().enumerate() {
            let line = finished(&format!("client {i}"), w.wait_with_output())?;
            let f: Vec<u64> = line
                .strip_prefix("done ")
                .ok_or_else(|| format!("client {i} said {line:?}"))?
                .split_whitespace()
                .map(|n| n.parse().map_err(|e| format!("client {i}: {line:?}: {e}")))
                .collect::<Result<_, _>>()?;
            acked[i] += f[0];
            conflicts += f[1];
            audits += f[2];
        }
        check(args, server.port, &acked)?;
        server.stop()?;
        let verify = finished(
            "durus verify",
            Command::new(&args.durus)
                .args(["verify", "--json"])
                .arg(&file)
                .output(),
        )?;
        if !verify.contains(r#""status":"intact""#) {
            return Err(format!("after round {round} the journal is not intact: {verify}"));
        }
    }
    // A last server on the file: everything acknowledged in every round is there.
    let server = Server::start(&args.durus, &file, &log)?;
    check(args, server.port, &acked)?;
    server.stop()?;
    Ok(format!(
        "{} rounds x {} Python clients: {} commits acknowledged and found after {} restarts, \
         {conflicts} conflicts retried, {audits} audits consistent, journal intact ({:.1} s, seed {})",
        args.rounds,
        args.clients,
        acked.iter().sum::<u64>(),
        args.rounds,
        started.elapsed().as_secs_f64(),
        args.seed
    ))
}

fn check(args: &Args, port: u16, acked: &[u64]) -> Result<(), String> {
    let mut rest = vec!["check".to_string(), args.clients.to_string()];
    rest.extend(acked.iter().map(|n| n.to_string()));
    let out = finished("check", python(args, port, &rest).output())?;
    if !out.starts_with("ok ") {
        return Err(format!("check said {out:?}"));
    }
    Ok(())
}
