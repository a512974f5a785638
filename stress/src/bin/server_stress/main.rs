//! A multi-process stress run of `durus serve` with unmodified Python Durus 4.3
//! clients, after Durus's own `test/stress.py`:
//!
//! ```text
//! cargo run --release -p durus-stress --bin server_stress -- \
//!     [--clients 4] [--transactions 500] [--accounts 20] [--rounds 2] [--seed S] \
//!     [--python PATH] [--durus PATH]
//! ```
//!
//! Each round starts `durus serve` on the same journal, runs the client processes at
//! once (transfers between shared accounts, each logged in the client's own list,
//! read-only audits of the total, every conflict retried), then checks through a fresh
//! client that the total is conserved and that each client's log holds exactly the
//! commits it was told succeeded; stops the server with SIGTERM (it must exit 0 and
//! leave a journal that `durus verify` finds intact); the next round starts a new
//! server on that file, so every round also checks that a restart lost nothing.
//!
//! Python comes from `--python`, else `$DURUS_PYTHON` (a Python with `durus==4.3`
//! installed); the server from `--durus`, else `target/release/durus` or
//! `target/debug/durus` of this workspace. Pack over the wire is not part of the run:
//! the server refuses `P` until the storage can pack.

mod run;

use std::path::PathBuf;
use std::process::ExitCode;

/// The run's settings.
pub struct Args {
    /// Client processes per round.
    pub clients: usize,
    /// Transactions per client per round.
    pub transactions: usize,
    /// Shared accounts.
    pub accounts: usize,
    /// Server restarts (rounds).
    pub rounds: usize,
    /// Seed of the clients' choices.
    pub seed: u64,
    /// Python with Durus 4.3.
    pub python: PathBuf,
    /// The `durus` binary.
    pub durus: PathBuf,
}

const USAGE: &str = "usage: server_stress [--clients N] [--transactions N] [--accounts N] \
                     [--rounds N] [--seed S] [--python PATH] [--durus PATH]";

fn parse() -> Result<Args, String> {
    let workspace = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let durus = ["release", "debug"]
        .iter()
        .map(|p| workspace.join("target").join(p).join("durus"))
        .find(|p| p.is_file());
    let mut a = Args {
        clients: 4,
        transactions: 500,
        accounts: 20,
        rounds: 2,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs(),
        python: std::env::var_os("DURUS_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_default(),
        durus: durus.unwrap_or_default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--clients" => a.clients = number()?.max(1) as usize,
            "--transactions" => a.transactions = number()? as usize,
            "--accounts" => a.accounts = number()?.max(2) as usize,
            "--rounds" => a.rounds = number()?.max(1) as usize,
            "--seed" => a.seed = number()?,
            "--python" => a.python = PathBuf::from(&value),
            "--durus" => a.durus = PathBuf::from(&value),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.python.as_os_str().is_empty() {
        return Err("needs Python with durus==4.3: --python PATH or $DURUS_PYTHON".into());
    }
    if !a.durus.is_file() {
        return Err("needs the durus binary: cargo build --bin durus, or --durus PATH".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("server_stress: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run::run(&args) {
        Ok(summary) => {
            println!("server stress: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("server stress FAILED (seed {}): {e}", args.seed);
            ExitCode::FAILURE
        }
    }
}
