//! Python Durus client processes (`w7_client.py`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

fn script() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/w7_client.py"))
}

fn client(py: &Path, addr: &str, args: &[String]) -> Child {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    Command::new(py)
        .arg(script())
        .args([host, port])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a Python client")
}

/// Makes the store of `records` records; their oids go to `oids`.
pub fn setup(py: &Path, addr: &str, records: usize, oids: &Path) {
    let out = client(
        py,
        addr,
        &["setup".into(), records.to_string(), oids.display().to_string()],
    )
    .wait_with_output()
    .expect("setup");
    assert!(out.status.success(), "setup failed");
}

/// What `k` clients did together.
#[derive(Clone, Copy, Default)]
pub struct Rate {
    /// Operations per second of them all (from the start signal to the last one done).
    pub per_s: f64,
    /// The clients' own processor time per operation, in µs (mean over the clients):
    /// one client cannot go faster than a million over this, whatever the server.
    pub client_cpu_us: f64,
}

/// The sample with the median rate.
pub fn median(mut samples: Vec<Rate>) -> Rate {
    samples.sort_by(|a, b| a.per_s.total_cmp(&b.per_s));
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Runs `k` clients with `args(i)`, started together once all are ready.
fn together(py: &Path, addr: &str, k: usize, args: impl Fn(usize) -> Vec<String>) -> Rate {
    let mut kids: Vec<(Child, BufReader<std::process::ChildStdout>)> = (0..k)
        .map(|i| {
            let mut c = client(py, addr, &args(i));
            let out = BufReader::new(c.stdout.take().expect("stdout"));
            (c, out)
        })
        .collect();
    for (_, out) in kids.iter_mut() {
        let mut line = String::new();
        out.read_line(&mut line).expect("ready");
        assert_eq!(line.trim(), "ready", "a client did not get ready");
    }
    let start = Instant::now();
    for (c, _) in kids.iter_mut() {
        let mut stdin = c.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("go");
    }
    let mut ops = 0u64;
    let mut cpu = 0.0;
    for (c, out) in kids.iter_mut() {
        let mut line = String::new();
        out.read_line(&mut line).expect("done");
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"done"), "a client failed: {line}");
        ops += f[1].parse::<u64>().expect("ops");
        cpu += f[3].parse::<f64>().expect("cpu seconds");
        assert!(c.wait().expect("wait").success());
    }
    Rate {
        per_s: ops as f64 / start.elapsed().as_secs_f64(),
        client_cpu_us: cpu * 1e6 / ops as f64,
    }
}

/// One-record commits per second with `k` clients of `n` commits each.
pub fn commit_rate(py: &Path, addr: &str, k: usize, n: usize) -> Rate {
    together(py, addr, k, |i| {
        vec!["commit".into(), n.to_string(), i.to_string()]
    })
}

/// Loads per second with `k` clients of `n` loads each.
pub fn load_rate(py: &Path, addr: &str, k: usize, n: usize, oids: &Path) -> Rate {
    together(py, addr, k, |i| {
        vec![
            "load".into(),
            n.to_string(),
            oids.display().to_string(),
            i.to_string(),
        ]
    })
}
