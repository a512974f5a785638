//! Rust clients through `ClientStorage`: one client shared by many tasks.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use durus::client::ClientStorage;
use durus::record::{CommitRequest, Oid, Record, Tid};
use durus::storage::Storage;

use crate::Sizes;

/// Commits/s and loads/s with 1, 8, 32 and 128 tasks.
pub struct Figures {
    pub commits: [f64; 4],
    pub loads: [f64; 4],
}

const TASKS: [usize; 4] = [1, 8, 32, 128];

pub fn run(
    ex: &Arc<async_executor::Executor<'static>>,
    addr: &str,
    oids: &Path,
    sizes: Sizes,
    runs: usize,
) -> Figures {
    let oids: Arc<Vec<Oid>> = Arc::new(
        std::fs::read_to_string(oids)
            .expect("the oid file")
            .split_whitespace()
            .map(|s| Oid(s.parse().expect("an oid")))
            .collect(),
    );
    let address = addr.parse().expect("address");
    let client = async_io::block_on(ClientStorage::connect(&address)).expect("connect");
    let client = Arc::new(client);
    let mut figures = Figures {
        commits: [0.0; 4],
        loads: [0.0; 4],
    };
    let mut samples = vec![([0.0; 4], [0.0; 4]); runs];
    for (run, sample) in samples.iter_mut().enumerate() {
        for (i, &tasks) in TASKS.iter().enumerate() {
            sample.0[i] = commits(ex, &client, tasks, sizes.rust_commits);
            println!(
                "run {run}: Rust clients, {tasks} committers: {:.0} commits/s",
                sample.0[i]
            );
        }
        for (i, &tasks) in TASKS.iter().enumerate() {
            sample.1[i] = loads(ex, &client, &oids, tasks, sizes.rust_loads);
            println!(
                "run {run}: Rust clients, {tasks} loaders: {:.0} loads/s",
                sample.1[i]
            );
        }
    }
    for i in 0..TASKS.len() {
        figures.commits[i] = median(samples.iter().map(|s| s.0[i]).collect());
        figures.loads[i] = median(samples.iter().map(|s| s.1[i]).collect());
    }
    figures
}

/// Prints the table of `figures`.
pub fn print(figures: &Figures) {
    let row = |v: &[f64; 4]| {
        v.iter()
            .map(|c| format!("{c:.0}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("\n| Rust clients through ClientStorage, durable | 1 | 8 | 32 | 128 |");
    println!("|---|---|---|---|---|");
    println!("| commits/s | {} |", row(&figures.commits));
    println!("| loads/s | {} |", row(&figures.loads));
}

/// `total` one-record commits spread over `tasks` tasks, each writing its own object.
fn commits(
    ex: &Arc<async_executor::Executor<'static>>,
    client: &Arc<ClientStorage>,
    tasks: usize,
    total: usize,
) -> f64 {
    let per = total.div_ceil(tasks);
    let mine = async_io::block_on(client.new_oids(tasks as u64)).expect("oids");
    let start = Instant::now();
    let handles: Vec<_> = mine
        .into_iter()
        .map(|oid| {
            let c = client.clone();
            ex.spawn(async move {
                let mut snapshot = Tid::ZERO;
                for i in 0..per {
                    let req = CommitRequest {
                        snapshot,
                        records: vec![Record::new(oid, (i as u64).to_be_bytes().to_vec(), vec![])],
                        ..CommitRequest::default()
                    };
                    snapshot = c.commit(req).await.expect("commit").tid;
                }
            })
        })
        .collect();
    async_io::block_on(futures::future::join_all(handles));
    (per * tasks) as f64 / start.elapsed().as_secs_f64()
}

/// `total` loads of random oids spread over `tasks` tasks.
fn loads(
    ex: &Arc<async_executor::Executor<'static>>,
    client: &Arc<ClientStorage>,
    oids: &Arc<Vec<Oid>>,
    tasks: usize,
    total: usize,
) -> f64 {
    let per = total.div_ceil(tasks);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let c = client.clone();
            let oids = oids.clone();
            ex.spawn(async move {
                let mut x = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(t as u64 + 1);
                for _ in 0..per {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let oid = oids[(x % oids.len() as u64) as usize];
                    c.load(oid).await.expect("load");
                }
            })
        })
        .collect();
    async_io::block_on(futures::future::join_all(handles));
    (per * tasks) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
