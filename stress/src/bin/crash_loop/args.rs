//! The command line: `[--kills N] [--seed S]` for the loop, and `--child PATH SEED
//! [pack]` when the program re-invokes itself as the process to kill.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// What `--help`-less users are told after a bad argument.
pub const USAGE: &str = "usage: crash_loop|pack_loop [--kills N] [--seed S]";

/// What a child does besides committing transfers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: the crash loop.
    Commits,
    /// Packs the journal again and again through `Db::pack`: the pack loop.
    Pack,
}

impl Mode {
    /// The loop's name in what it prints.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Commits => "crash loop",
            Mode::Pack => "pack loop",
        }
    }

    /// The binary that runs this loop, for the replay command.
    pub fn binary(self) -> &'static str {
        match self {
            Mode::Commits => "crash_loop",
            Mode::Pack => "pack_loop",
        }
    }
}

/// The argument after `PATH SEED` that makes a child pack.
const PACK_ARG: &str = "pack";

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
    /// Whether it packs too.
    pub mode: Mode,
}

/// The arguments after [`CHILD_FLAG`] that start a child on `path`.
pub fn child_args(path: &std::path::Path, seed: u64, mode: Mode) -> Vec<std::ffi::OsString> {
    let mut v = vec![path.as_os_str().to_owned(), seed.to_string().into()];
    if mode == Mode::Pack {
        v.push(PACK_ARG.into());
    }
    v
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

/// Parses a child's arguments (those after [`CHILD_FLAG`]): `PATH SEED [pack]`.
pub fn parse_child(args: &[String]) -> Result<ChildArgs, String> {
    let (path, seed, mode) = match args {
        [path, seed] => (path, seed, Mode::Commits),
        [path, seed, pack] if pack == PACK_ARG => (path, seed, Mode::Pack),
        _ => return Err(format!("usage: crash_loop {CHILD_FLAG} PATH SEED [{PACK_ARG}]")),
    };
    Ok(ChildArgs {
        path: PathBuf::from(path),
        seed: seed.parse().map_err(|e| format!("seed {seed}: {e}"))?,
        mode,
    })
}
