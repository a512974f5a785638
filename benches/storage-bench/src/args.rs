//! Command-line options: workload sizes, so that a quick smoke run is possible.

use std::path::PathBuf;

/// Workload sizes and where the files go.
#[derive(Clone, Debug)]
pub struct Args {
    /// Records bulk-loaded in W1 (and loaded from in W3 and W4).
    pub records: u64,
    /// Records per transaction in W1.
    pub batch: u64,
    /// Single-record durable commits in W2.
    pub commits: u64,
    /// Random loads in W3 (batched and synchronous paths).
    pub loads: u64,
    /// Random single `Storage::load` and `load_at` calls in W3, and distinct keys read
    /// through a `Db`.
    pub single_loads: u64,
    /// Measured reopens in W4 (after one warm-up reopen); the median is reported.
    pub reopens: usize,
    /// Interleaved rounds the W1 and W2 writes are split into.
    pub rounds: u64,
    /// Times each W3 figure is measured, engines interleaved; the median is reported.
    pub tries: u64,
    /// Seconds each fdatasync probe runs.
    pub sync_secs: f64,
    /// Parent directory of the temporary directory holding every file.
    pub dir: PathBuf,
    /// Run only this workload (`W2`, `W3` after the W1 it reads, `W5`, `W5P` or `OPS`).
    pub only: Option<String>,
    /// Times each W5 row is measured, engines interleaved; the median is reported.
    pub w5_runs: u64,
    /// W2 runs (each of `rounds` interleaved rounds); the medians are reported.
    pub w2_runs: u64,
    /// W5P runs of each engine's pack, and of the commit-rate windows, interleaved.
    pub pack_runs: u64,
    /// Seconds of each W5P commit-rate window without a pack.
    pub pack_base_secs: f64,
    /// Live objects of the larger W5P peak-memory pack.
    pub rss_records: u64,
    /// A Python with Durus 4.3, to pack the same data with `Connection.pack()` in W5P.
    pub python: Option<PathBuf>,
    /// More stores for WS, as storage specs (`postgres://...`, `durus://host:port`).
    pub storages: Vec<String>,
}

const USAGE: &str = "\
usage: durus-storage-bench [options]

  --records N     records bulk-loaded in W1 and read in W3/W4  (default 1000000)
  --batch N       records per W1 transaction                    (default 10000)
  --commits N     single-record durable commits in W2           (default 5000)
  --loads N       random loads in W3                            (default 1000000)
  --single-loads N  single async load/load_at calls, and distinct
                  Db reads, in W3                               (default loads)
  --reopens N     measured reopens in W4 (median reported)      (default 5)
  --rounds N      interleaved rounds of the W1/W2 writes        (default 10)
  --tries N       W3 runs per figure (median reported)          (default 3)
  --sync-secs S   seconds per fdatasync probe                   (default 2)
  --only W       run only W2 (single commits), W3 (random loads, after
                  the W1 bulk load it reads), W5 (concurrent commits)
                  W5P (pack), WS (the storages beside plain SQLite) or OPS
                  (durus import of a Python Durus file of --records
                  objects, info and census; needs --python)
  --storage SPEC  one more store for WS (a postgres:// URL, durus://host:port);
                  repeatable
  --w2-runs N     W2 runs (medians reported)                    (default 3)
  --w5-runs N     interleaved W5 runs per row (median reported) (default 3)
  --pack-runs N   interleaved W5P runs (median reported)        (default 3)
  --pack-base-secs S  seconds of each W5P commit window without
                  a pack                                        (default 2)
  --rss-records N live objects of the larger W5P memory pack    (default 10000000)
  --python PATH   a Python with durus==4.3: W5P also packs the same data
                  with Python Durus's Connection.pack()
  --dir PATH      where the temporary directory is made
                  (default <workspace>/target/bench-tmp; must not be tmpfs)
";

impl Default for Args {
    fn default() -> Self {
        Args {
            records: 1_000_000,
            batch: 10_000,
            commits: 5_000,
            loads: 1_000_000,
            single_loads: 1_000_000,
            reopens: 5,
            rounds: 10,
            tries: 3,
            sync_secs: 2.0,
            dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-tmp")),
            only: None,
            w5_runs: 3,
            w2_runs: 3,
            pack_runs: 3,
            pack_base_secs: 2.0,
            rss_records: 10_000_000,
            python: None,
            storages: Vec::new(),
        }
    }
}

impl Args {
    /// Parses `std::env::args()`, printing usage and exiting on `--help` or a bad option.
    pub fn from_env() -> Args {
        match Args::parse(std::env::args().skip(1)) {
            Ok(a) => a,
            Err(msg) => {
                eprintln!("error: {msg}\n\n{USAGE}");
                std::process::exit(2);
            }
        }
    }

    fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args::default();
        let mut single_loads = None;
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                print!("{USAGE}");
                std::process::exit(0);
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--records" => a.records = positive(&flag, &value)?,
                "--batch" => a.batch = positive(&flag, &value)?,
                "--commits" => a.commits = positive(&flag, &value)?,
                "--loads" => a.loads = positive(&flag, &value)?,
                "--single-loads" => single_loads = Some(positive(&flag, &value)?),
                "--reopens" => a.reopens = positive(&flag, &value)? as usize,
                "--rounds" => a.rounds = positive(&flag, &value)?,
                "--tries" => a.tries = positive(&flag, &value)?,
                "--w5-runs" => a.w5_runs = positive(&flag, &value)?,
                "--w2-runs" => a.w2_runs = positive(&flag, &value)?,
                "--pack-runs" => a.pack_runs = positive(&flag, &value)?,
                "--rss-records" => a.rss_records = positive(&flag, &value)?,
                "--python" => a.python = Some(PathBuf::from(value)),
                "--pack-base-secs" => {
                    a.pack_base_secs =
                        value.parse::<f64>().ok().filter(|s| *s > 0.0).ok_or_else(|| {
                            format!("{flag} wants a positive number of seconds, not {value:?}")
                        })?
                }
                "--sync-secs" => {
                    a.sync_secs =
                        value.parse::<f64>().ok().filter(|s| *s > 0.0).ok_or_else(|| {
                            format!("{flag} wants a positive number of seconds, not {value:?}")
                        })?
                }
                "--dir" => a.dir = PathBuf::from(value),
                "--storage" => a.storages.push(value),
                "--only"
                    if ["w2", "w3", "w5", "w5p", "ops", "ws"].contains(&value.to_lowercase().as_str()) =>
                {
                    a.only = Some(value.to_uppercase())
                }
                "--only" => return Err(format!("--only knows W2, W3, W5, W5P, WS and OPS, not {value:?}")),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        a.single_loads = single_loads.unwrap_or(a.loads);
        Ok(a)
    }
}

fn positive(flag: &str, value: &str) -> Result<u64, String> {
    value
        .replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} wants a positive integer, not {value:?}"))
}
