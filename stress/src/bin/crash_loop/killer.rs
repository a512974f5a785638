//! The killer: spawns a child on the current file, SIGKILLs it at a seeded random
//! moment, hands what it heard to the checks, and keeps the counts the summary prints.
//! In the pack loop it also checks that a pack file the kill left behind is gone after
//! the next writable open.

use std::fmt::Display;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fastrand::Rng;

use durus::journal::{Journal, JournalOptions};

use crate::args::{self, LoopArgs, Mode, CHILD_FLAG};
use crate::checks::{check, Checked};
use crate::protocol::{hear, read_lines, wait_for_ack, Heard};

/// Kills on one file before the next starts afresh, bounding verify and open time.
const FRESH_EVERY: u64 = 50;
/// Kills that strike at a random moment right after the spawn, in percent.
const EARLY_KILL_PERCENT: u64 = 15;
const SIGKILL: i32 = 9;

/// The program's entry: the same program is parent and child, so a loop needs no
/// second binary. As a child it commits (and packs) until killed; as the parent it
/// runs the loop.
pub fn entry(mode: Mode) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_FLAG) {
        crate::child::main(&args[1..]);
    } else {
        main(&args, mode);
    }
}

/// Runs the loop; exits with status 1 on the first failed check, 2 on bad arguments.
fn main(args: &[String], mode: Mode) {
    let LoopArgs { kills, seed } = match args::parse_loop(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}: {e}\n{}", mode.name(), args::USAGE);
            std::process::exit(2);
        }
    };
    say(format_args!("{}: seed {seed}, {kills} kills", mode.name()));
    match Loop::new(seed, mode).and_then(|mut l| l.run(kills).map(|()| l)) {
        Ok(l) => l.summary(),
        Err(f) => {
            eprintln!("{f}");
            std::process::exit(1);
        }
    }
}

/// Prints a progress line. A closed stdout (`crash_loop | head -1`) stops the lines,
/// not the loop: the exit status still tells whether every check passed.
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// When to kill a child.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This long after the spawn, whatever the child is doing: a fraction (0 to 1.2)
    /// of the time children have been taking to their first acknowledgement, so
    /// that these kills spread over start-up, open and recovery, and the first
    /// commits, in debug and release builds alike.
    AfterSpawn(Duration),
    /// This long after the child's first acknowledgement.
    AfterFirstAck(Duration),
}

/// A failed check, with what is needed to replay it.
struct Failure {
    mode: Mode,
    seed: u64,
    /// The failing kill, counting from 1.
    kill: u64,
    path: PathBuf,
    why: String,
}

impl Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} FAILED at kill {} (seed {}): {}\n  file kept: {}\n  replay: cargo run -p durus-stress --bin {} -- --seed {} --kills {}",
            self.mode.name(),
            self.kill,
            self.seed,
            self.why,
            self.path.display(),
            self.mode.binary(),
            self.seed,
            self.kill
        )
    }
}

/// The loop's state and counts.
struct Loop {
    mode: Mode,
    seed: u64,
    rng: Rng,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    checked: Checked,
    started: Instant,
    /// Average time from spawn to first acknowledgement (recent children weigh more).
    first_ack: Duration,
    kills: u64,
    acks: u64,
    commits: u64,
    torn: u64,
    before_open: u64,
    before_ack: u64,
    /// Pack loop: packs finished, kills inside a pack, pack files left by a kill.
    packs: u64,
    mid_pack: u64,
    strays: u64,
}

impl Loop {
    /// The files live in a temporary directory, removed at the end unless a
    /// check fails.
    fn new(seed: u64, mode: Mode) -> Result<Loop, Failure> {
        let dir = tempfile::Builder::new()
            .prefix("durus-crash-loop-")
            .tempdir()
            .map_err(|e| Failure {
                mode,
                seed,
                kill: 0,
                path: PathBuf::new(),
                why: format!("creating a temporary directory: {e}"),
            })?;
        Ok(Loop {
            mode,
            seed,
            rng: Rng::with_seed(seed),
            path: dir.path().join("none"),
            dir: Some(dir),
            checked: Checked::default(),
            started: Instant::now(),
            first_ack: Duration::from_millis(20),
            kills: 0,
            acks: 0,
            commits: 0,
            torn: 0,
            before_open: 0,
            before_ack: 0,
            packs: 0,
            mid_pack: 0,
            strays: 0,
        })
    }

    /// Runs `kills` iterations, stopping at the first failure.
    fn run(&mut self, kills: u64) -> Result<(), Failure> {
        for i in 0..kills {
            if i % FRESH_EVERY == 0 {
                self.fresh_file(i).map_err(|why| self.failure(i, why))?;
            }
            self.iteration().map_err(|why| self.failure(i, why))?;
            if (i + 1) % 500 == 0 && i + 1 < kills {
                say(format_args!(
                    "  {} kills, {} acknowledged commits checked",
                    i + 1,
                    thousands(self.acks)
                ));
            }
        }
        Ok(())
    }

    /// Starts a new file in a new directory, removing the old one (with any
    /// temporary files a killed creation left next to it).
    fn fresh_file(&mut self, i: u64) -> Result<(), String> {
        let dir = self.dir.as_ref().ok_or("no directory")?.path();
        if let Some(old) = self.path.parent().filter(|p| *p != dir) {
            std::fs::remove_dir_all(old).map_err(|e| format!("removing {}: {e}", old.display()))?;
        }
        let round = dir.join(format!("round-{}", i / FRESH_EVERY));
        std::fs::create_dir(&round).map_err(|e| format!("creating {}: {e}", round.display()))?;
        self.path = round.join("bank.durus");
        self.checked = Checked::default();
        Ok(())
    }

    /// One spawn, kill and check.
    fn iteration(&mut self) -> Result<(), String> {
        let child_seed = self.rng.u64(..);
        let at = if self.rng.u64(..100) < EARLY_KILL_PERCENT {
            KillAt::AfterSpawn(self.first_ack.mul_f64(self.rng.u64(..1200) as f64 / 1000.0))
        } else {
            KillAt::AfterFirstAck(Duration::from_micros(self.rng.u64(..after_ack_micros(self.mode))))
        };
        let heard = kill_child(&self.path, child_seed, at, self.mode)?;
        self.kills += 1;
        if let Some(t) = heard.first_ack {
            self.first_ack = (self.first_ack * 3 + t) / 4;
        }
        self.before_open += u64::from(!heard.opened);
        self.before_ack += u64::from(heard.acks.is_empty());
        let (checked, report, commits) = check(&self.path, &heard, &self.checked)?;
        self.checked = checked;
        self.acks += heard.acks.len() as u64;
        self.commits += commits;
        self.torn += u64::from(report.is_some_and(|r| r.torn_tail.is_some()));
        self.packs += heard.packs.1;
        self.mid_pack += u64::from(heard.mid_pack());
        if self.mode == Mode::Pack {
            self.strays += u64::from(no_stray_after_open(&self.path)?);
        }
        Ok(())
    }

    /// Keeps the directory (with the failing file) and describes the failure.
    fn failure(&mut self, i: u64, why: String) -> Failure {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        Failure {
            mode: self.mode,
            seed: self.seed,
            kill: i + 1,
            path: self.path.clone(),
            why,
        }
    }

    /// The one line CI logs show.
    fn summary(&self) {
        let packs = match self.mode {
            Mode::Commits => String::new(),
            Mode::Pack => format!(
                "{} packs finished, {} kills inside a pack, {} pack files left by a kill and removed by the next open, ",
                thousands(self.packs),
                self.mid_pack,
                self.strays
            ),
        };
        say(format_args!(
            "{}: {} kills, {} acknowledged commits checked ({} committed), {} torn tails recovered, {packs}\
             {} kills before the first ack ({} before the open finished), 0 failures (seed {}, {:.1}s)",
            self.mode.name(),
            self.kills,
            thousands(self.acks),
            thousands(self.commits),
            self.torn,
            self.before_ack,
            self.before_open,
            self.seed,
            self.started.elapsed().as_secs_f64()
        ));
    }
}

/// How long after the first acknowledgement a kill may wait: in the pack loop long
/// enough to span several packs, so kills land in every phase of one.
fn after_ack_micros(mode: Mode) -> u64 {
    match mode {
        Mode::Commits => 30_000,
        Mode::Pack => 300_000,
    }
}

/// After a kill (and its checks) a writable open, which takes the journal's lock,
/// must remove a pack file the killed child left; returns whether there was one.
fn no_stray_after_open(path: &Path) -> Result<bool, String> {
    let mut packing = path.as_os_str().to_owned();
    packing.push(".packing");
    let packing = PathBuf::from(packing);
    let stray = packing.exists();
    if path.exists() {
        let j = Journal::open(path, JournalOptions::default())
            .map_err(|e| format!("reopening for writing: {e}"))?;
        j.close().map_err(|e| format!("closing after the reopen: {e}"))?;
    }
    if packing.exists() {
        return Err(format!("{} survived a writable open", packing.display()));
    }
    Ok(stray)
}

/// 23456 as "23,456".
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Spawns a child on `path`, kills it at `at`, and returns everything it said.
fn kill_child(path: &Path, seed: u64, at: KillAt, mode: Mode) -> Result<Heard, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let mut child = Command::new(exe)
        .arg(CHILD_FLAG)
        .args(args::child_args(path, seed, mode))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning the child: {e}"))?;
    let spawned = Instant::now();
    let Some(stdout) = child.stdout.take() else {
        kill(&mut child)?;
        return Err("the child has no stdout".into());
    };
    let (lines, reader) = read_lines(stdout);
    let mut heard = Heard::default();
    let waited = match at {
        KillAt::AfterSpawn(d) => {
            std::thread::sleep(d.saturating_sub(spawned.elapsed()));
            Ok(())
        }
        KillAt::AfterFirstAck(d) => wait_for_ack(&lines, &mut heard).map(|()| {
            heard.first_ack = Some(spawned.elapsed());
            std::thread::sleep(d)
        }),
    };
    let status = kill(&mut child)?;
    reader.join().map_err(|_| "the stdout reader panicked")?;
    for line in lines.try_iter() {
        hear(&mut heard, line)?;
    }
    if status.signal() != Some(SIGKILL) {
        return Err(format!(
            "the child ended by itself before the kill ({status}); see its stderr above"
        ));
    }
    waited.map(|()| heard)
}

/// Kills the child and reaps it.
fn kill(child: &mut Child) -> Result<std::process::ExitStatus, String> {
    child.kill().map_err(|e| format!("killing the child: {e}"))?;
    child
        .wait()
        .map_err(|e| format!("waiting for the killed child: {e}"))
}
