//! Benchmark W7: the storage server. `cargo run --release -p durus-server-bench`
//! (needs Python Durus 4.3: `--python PATH`, or `$DURUS_PYTHON`; `--quick` for small
//! sizes).
//!
//! Every server runs in the same run, on the same machine, after the disk's own
//! fdatasync rate is measured:
//!
//! - (a) Python Durus's server on its default storage (`FileStorage`, never fsyncs),
//! - (b) Python Durus's server on `FileStorage2`, which fsyncs every commit,
//! - (c) `durus`'s server on a journal file, durable (the default), and
//! - (d) the same with `Durability::Eventual`.
//!
//! Against each: Python Durus client processes (1 and 4), each making N one-record
//! commits, then M loads of random oids from a store of R records. Then Rust clients
//! through `ClientStorage` (one client shared by 1, 8, 32 and 128 committing tasks,
//! each commit one record, durable) and a load phase, against (c).

mod python;
mod rust_clients;
mod servers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes of one run.
#[derive(Clone, Copy)]
pub struct Sizes {
    pub commits: usize,
    pub loads: usize,
    pub records: usize,
    pub rust_commits: usize,
    pub rust_loads: usize,
}

const FULL: Sizes = Sizes {
    commits: 2_000,
    loads: 20_000,
    records: 100_000,
    rust_commits: 20_000,
    rust_loads: 200_000,
};

const QUICK: Sizes = Sizes {
    commits: 200,
    loads: 2_000,
    records: 5_000,
    rust_commits: 1_000,
    rust_loads: 10_000,
};

/// The executor durus's server and the Rust clients run on, with two threads (the
/// machine's cores).
pub fn executor() -> Arc<async_executor::Executor<'static>> {
    let ex = Arc::new(async_executor::Executor::new());
    for _ in 0..2 {
        let ex = ex.clone();
        std::thread::spawn(move || async_io::block_on(ex.run(futures::future::pending::<()>())));
    }
    ex
}

/// The round trip of 4 bytes over loopback TCP between two threads of this process
/// (a blocking echo), in µs: the floor under any server's answer to one client.
fn loopback_round_trip_us() -> f64 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut b = [0u8; 4];
        while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
    });
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let n = 20_000;
    let mut b = [0u8; 4];
    let start = Instant::now();
    for _ in 0..n {
        c.write_all(&b).expect("write");
        c.read_exact(&mut b).expect("read");
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn fsync_rate(dir: &Path) -> f64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("fsync-probe"))
        .expect("probe file");
    f.write_all_at(&[0u8; 8192], 0).expect("probe write");
    f.sync_all().expect("probe sync");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        f.write_all_at(&[n as u8; 4096], 0).expect("probe write");
        f.sync_data().expect("probe fdatasync");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// One server's figures with Python clients: commits/s with 1 and 4 clients, loads/s
/// with 1 and 4.
pub struct PyRow {
    pub name: &'static str,
    pub commits: [python::Rate; 2],
    pub loads: [python::Rate; 2],
}

/// The servers of W7, in the table's order.
const KINDS: [(&str, servers::Kind); 4] = [
    (
        "(a) Python Durus server, FileStorage (no fsync)",
        servers::Kind::Python("durus.file_storage.FileStorage"),
    ),
    (
        "(b) Python Durus server, FileStorage2 (fsync per commit)",
        servers::Kind::Python("durus.file_storage2.FileStorage2"),
    ),
    (
        "(c) durus serve (durable, the default)",
        servers::Kind::Durus("immediate"),
    ),
    (
        "(d) durus serve --durability eventual",
        servers::Kind::Durus("eventual"),
    ),
];

/// Runs the Python clients against every server, `runs` times in turn (so that a slow
/// moment of the shared machine hits every server alike), and keeps the median of each
/// figure. Leaves (c) running for the Rust clients and returns it with its oid file.
fn python_rows(
    py: &Path,
    durus: &Path,
    extra: &[String],
    dir: &Path,
    sizes: Sizes,
    runs: usize,
) -> (Vec<PyRow>, servers::Running, PathBuf) {
    let mut servers = Vec::new();
    for (i, (_, kind)) in KINDS.into_iter().enumerate() {
        let file = dir.join(format!("w7-{i}.db"));
        let oids = dir.join(format!("w7-{i}.oids"));
        let server = servers::start(kind, py, durus, extra, &file);
        python::setup(py, &server.address, sizes.records, &oids);
        servers.push((server, oids));
    }
    let mut samples: Vec<Vec<[python::Rate; 4]>> = vec![Vec::new(); KINDS.len()];
    for run in 0..runs {
        for (i, (name, _)) in KINDS.iter().enumerate() {
            let (server, oids) = &servers[i];
            let addr = &server.address;
            let [c1, c4] = [1, 4].map(|k| python::commit_rate(py, addr, k, sizes.commits));
            let [l1, l4] = [1, 4].map(|k| python::load_rate(py, addr, k, sizes.loads, oids));
            println!(
                "run {run}: {name}: commits/s {:.0} (1 client) {:.0} (4); loads/s {:.0} (1) {:.0} (4)",
                c1.per_s, c4.per_s, l1.per_s, l4.per_s
            );
            samples[i].push([c1, c4, l1, l4]);
        }
    }
    let rows = KINDS
        .iter()
        .zip(&samples)
        .map(|((name, _), s)| {
            let m = |j: usize| python::median(s.iter().map(|r| r[j]).collect());
            PyRow {
                name,
                commits: [m(0), m(1)],
                loads: [m(2), m(3)],
            }
        })
        .collect();
    let mut durable = None;
    for (i, (server, oids)) in servers.into_iter().enumerate() {
        if i == 2 {
            durable = Some((server, oids));
        } else {
            server.stop();
        }
    }
    let (server, oids) = durable.expect("(c) ran");
    (rows, server, oids)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut sizes = FULL;
    let mut py: Option<PathBuf> = std::env::var_os("DURUS_PYTHON").map(PathBuf::from);
    let mut extra = Vec::new();
    let mut runs = 3;
    let mut durus = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/durus"));
    let mut against: Option<(String, PathBuf)> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            // Only the Rust clients, against a server already running (for profiling
            // one side): its address and a file of its records' oids.
            "--rust-against" => against = args.next().zip(args.next().map(PathBuf::from)),
            "--quick" => sizes = QUICK,
            "--runs" => runs = args.next().and_then(|r| r.parse().ok()).unwrap_or(0).max(1),
            "--python" => py = args.next().map(PathBuf::from),
            "--durus" => durus = args.next().map(PathBuf::from).unwrap_or_default(),
            // Passed on to `durus serve` (e.g. `--serve-arg --threads --serve-arg 2`).
            "--serve-arg" => extra.extend(args.next()),
            _ => {
                eprintln!(
                    "usage: durus-server-bench [--quick] [--runs N] [--python PATH] [--durus PATH] [--serve-arg ARG]...\n       \
                     durus-server-bench [--quick] [--runs N] --rust-against ADDRESS OID_FILE"
                );
                std::process::exit(2);
            }
        }
    }
    if let Some((address, oids)) = against {
        let rust = rust_clients::run(&executor(), &address, &oids, sizes, runs);
        rust_clients::print(&rust);
        return;
    }
    if !durus.is_file() {
        eprintln!(
            "needs the durus binary at {} (cargo build --release --bin durus, or --durus PATH)",
            durus.display()
        );
        std::process::exit(2);
    }
    let Some(py) = py else {
        eprintln!("needs Python Durus 4.3: --python PATH or DURUS_PYTHON (e.g. a virtualenv with `pip install durus==4.3`)");
        std::process::exit(2);
    };
    let dir = tempfile::tempdir_in(std::env::current_dir().expect("cwd")).expect("scratch directory");
    let rate = fsync_rate(dir.path());
    println!("machine fdatasync rate: {rate:.0}/s (4 KiB overwrite)");
    let rtt = loopback_round_trip_us();
    println!("loopback TCP round trip: {rtt:.1} µs (4 bytes, blocking echo between two threads)");
    let ex = executor();
    let (rows, durable, oids) = python_rows(&py, &durus, &extra, dir.path(), sizes, runs);
    let rust = rust_clients::run(&ex, &durable.address, &oids, sizes, runs);
    durable.stop();
    let after = fsync_rate(dir.path());
    println!("machine fdatasync rate after the run: {after:.0}/s");
    report(&rows, &rust, rate, after);
}

fn report(rows: &[PyRow], rust: &rust_clients::Figures, before: f64, after: f64) {
    let (a, b, c, d) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    println!(
        "\n| server (Python Durus 4.3 clients) | commits/s, 1 client | commits/s, 4 clients | \
         loads/s, 1 client | loads/s, 4 clients | client CPU per commit / load, 1 client |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} µs / {:.0} µs |",
            r.name,
            r.commits[0].per_s,
            r.commits[1].per_s,
            r.loads[0].per_s,
            r.loads[1].per_s,
            r.commits[0].client_cpu_us,
            r.loads[0].client_cpu_us,
        );
    }
    println!("\nTargets (fdatasync {before:.0}/s before, {after:.0}/s after):");
    let check = |what: &str, got: f64, want: f64| {
        println!(
            "- {what}: {got:.2}x (target {want}x) {}",
            if got >= want { "met" } else { "NOT met" }
        );
    };
    check(
        "durable durus vs (b), 4 clients, commits",
        c.commits[1].per_s / b.commits[1].per_s,
        2.0,
    );
    check(
        "eventual durus vs (a), 1 client, commits",
        d.commits[0].per_s / a.commits[0].per_s,
        1.5,
    );
    check(
        "eventual durus vs (a), 4 clients, commits",
        d.commits[1].per_s / a.commits[1].per_s,
        1.5,
    );
    check(
        "durable durus vs (a), 1 client, loads",
        c.loads[0].per_s / a.loads[0].per_s,
        2.0,
    );
    check(
        "durable durus vs (a), 4 clients, loads",
        c.loads[1].per_s / a.loads[1].per_s,
        2.0,
    );
    rust_clients::print(rust);
    check(
        "Rust, 32 committers vs (a) 4 clients, commits",
        rust.commits[2] / a.commits[1].per_s,
        10.0,
    );
    check(
        "Rust, 32 loaders vs (a) 4 clients, loads",
        rust.loads[2] / a.loads[1].per_s,
        10.0,
    );
}
