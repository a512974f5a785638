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
    /// Random single `Storage::load` calls in W3 (the slower async path).
    pub single_loads: u64,
    /// Measured reopens in W4 (after one warm-up reopen); the median is reported.
    pub reopens: usize,
    /// Interleaved rounds the W1 and W2 writes are split into.
    pub rounds: u64,
    /// Times each W3 figure is measured; the best is reported.
    pub tries: u64,
    /// Seconds each fdatasync probe runs.
    pub sync_secs: f64,
    /// Parent directory of the temporary directory holding every file.
    pub dir: PathBuf,
    /// Run only W5 (the concurrency table), skipping W1 to W4.
    pub only_w5: bool,
    /// Times each W5 row is measured, engines interleaved; the median is reported.
    pub w5_runs: u64,
}

const USAGE: &str = "\
usage: durus-storage-bench [options]

  --records N     records bulk-loaded in W1 and read in W3/W4  (default 1000000)
  --batch N       records per W1 transaction                    (default 10000)
  --commits N     single-record durable commits in W2           (default 5000)
  --loads N       random loads in W3                            (default 1000000)
  --single-loads N  single async Storage::load calls in W3      (default loads/10)
  --reopens N     measured reopens in W4 (median reported)      (default 5)
  --rounds N      interleaved rounds of the W1/W2 writes        (default 10)
  --tries N       W3 measurements per figure (best reported)    (default 3)
  --sync-secs S   seconds per fdatasync probe                   (default 2)
  --only W5       run only W5 (concurrent commits)
  --w5-runs N     interleaved W5 runs per row (median reported) (default 3)
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
            single_loads: 100_000,
            reopens: 5,
            rounds: 10,
            tries: 3,
            sync_secs: 2.0,
            dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-tmp")),
            only_w5: false,
            w5_runs: 3,
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
                "--sync-secs" => {
                    a.sync_secs =
                        value.parse::<f64>().ok().filter(|s| *s > 0.0).ok_or_else(|| {
                            format!("{flag} wants a positive number of seconds, not {value:?}")
                        })?
                }
                "--dir" => a.dir = PathBuf::from(value),
                "--only" if value.eq_ignore_ascii_case("w5") => a.only_w5 = true,
                "--only" => return Err(format!("--only knows W5, not {value:?}")),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        a.single_loads = single_loads.unwrap_or((a.loads / 10).max(1));
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
