//! The command line: `[--kills N] [--seed S]` for the loop, and `--child PATH SEED`
//! when the program re-invokes itself as the process to kill.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// What `--help`-less users are told after a bad argument.
pub const USAGE: &str = "usage: crash_loop [--kills N] [--seed S]";

/// The first argument that makes this process a child.
pub const CHILD_FLAG: &str = "--child";

/// The loop's settings.
pub struct LoopArgs {
    /// SIGKILLs to deliver (default 100).
    pub kills: u64,
    /// The seed every choice derives from (default from the clock).
    pub seed: u64,
}

/// A child's settings, as the parent passes them.
pub struct ChildArgs {
    /// The journal file to commit to.
    pub path: PathBuf,
    /// The seed of this child's runtime, options and transfers.
    pub seed: u64,
}

/// Parses the loop's arguments.
pub fn parse_loop(args: &[String]) -> Result<LoopArgs, String> {
    let mut kills = 100;
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos() as u64
        % 1_000_000_000;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value.parse().map_err(|e| format!("{flag} {value}: {e}"))?;
        match flag.as_str() {
            "--kills" => kills = n,
            "--seed" => seed = n,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(LoopArgs { kills, seed })
}

/// Parses a child's arguments (those after [`CHILD_FLAG`]): `PATH SEED`.
pub fn parse_child(args: &[String]) -> Result<ChildArgs, String> {
    match args {
        [path, seed] => Ok(ChildArgs {
            path: PathBuf::from(path),
            seed: seed.parse().map_err(|e| format!("seed {seed}: {e}"))?,
        }),
        _ => Err(format!("usage: crash_loop {CHILD_FLAG} PATH SEED")),
    }
}
