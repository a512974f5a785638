//! Crash loop: a child process commits bank transfers as fast as it can and is killed
//! with SIGKILL at a random moment, again and again; after every kill the database is
//! reopened and checked.
//!
//! ```text
//! cargo run --example crash_loop                       # 100 kills (the CI run)
//! cargo run --release --example crash_loop -- --kills 2000
//! cargo run --example crash_loop -- --kills 100 --seed 12345   # replay a failure
//! ```
//!
//! The child is this program re-invoked as `crash_loop --child PATH SEED`. It opens the
//! journal (recovering whatever the previous child left, a torn tail included), creates
//! the bank if the file is new, and runs four tasks on one `Db`, so that their commits
//! share write groups. Each transaction moves money between two accounts and appends an
//! entry to its task's ledger, a chain of entries (newest first) numbered 1, 2, 3...;
//! right after `commit()` returns `Ok` the child prints `ack TASK SEQ TID` and flushes.
//!
//! After each kill the parent checks that the journal verifies (a torn tail is allowed,
//! after the last acknowledged transaction), that every acknowledged entry is there,
//! that every ledger is an unbroken chain, and that the balances are exactly the start
//! balances plus the entries, which also conserves the total: a transaction that landed
//! in part would break the last check. Checking is incremental (only entries new since
//! the last kill are walked), and a fresh file is started every 50 kills, so each
//! iteration costs about the same however long the loop runs.
//!
//! Kill moments come from a seeded generator: most kills wait for the child's first
//! acknowledgement and then 0-30 ms more; the rest strike at a random moment between the
//! spawn and a little after the time children have been taking to acknowledge their
//! first commit, so they land in start-up, open and recovery, before the first commit,
//! or among the first commits. Everything but OS timing is
//! determined by the seed, which is printed first and on failure.

use durus::{Persistent, Ref};
use serde::{Deserialize, Serialize};

/// The root: the accounts and one ledger per child task.
#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "crash.Bank")]
struct Bank {
    accounts: Vec<Ref<Account>>,
    ledgers: Vec<Ref<Ledger>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "crash.Account")]
struct Account {
    balance: i64,
}

/// One task's transfers: the newest entry and how many there are.
#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "crash.Ledger")]
struct Ledger {
    count: u64,
    head: Option<Ref<Entry>>,
}

/// One committed transfer, linked to the task's previous one. The memo (of random
/// length, up to a few KiB) makes some write groups span several pages, so that a kill
/// can cut a write short.
#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "crash.Entry")]
struct Entry {
    seq: u64,
    from: usize,
    to: usize,
    amount: i64,
    memo: String,
    prev: Option<Ref<Entry>>,
}

const ACCOUNTS: usize = 16;
const START: i64 = 1_000;
const TASKS: usize = 4;

/// SplitMix64 (Steele, Lea and Flood): deterministic from the seed, and enough for
/// picking kill moments and transfers.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(not(unix))]
fn main() {
    println!("crash loop: skipped (it kills processes with SIGKILL, which needs Unix)");
}

/// The same program is parent and child, so the loop needs no second binary.
#[cfg(unix)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child::main(&args[1..]);
    } else {
        parent::main(&args);
    }
}

/// The killed process: opens the file and commits transfers until it dies.
#[cfg(unix)]
mod child {
    use std::error::Error as StdError;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Arc;

    use durus::journal::JournalOptions;
    use durus::record::Tid;
    use durus::{Db, DbOptions, Ref, Transaction};

    use super::{Account, Bank, Entry, Ledger, Rng, ACCOUNTS, START, TASKS};

    type BoxError = Box<dyn StdError + Send + Sync>;

    /// Conflicting attempts a transfer makes before the child gives up (and fails).
    const MAX_ATTEMPTS: u32 = 10_000;

    /// Runs the child; it only returns by failing (exit status 2), since the parent
    /// kills it.
    pub fn main(args: &[String]) {
        let (path, seed) = match parse(args) {
            Ok(v) => v,
            Err(e) => fail(e),
        };
        if let Err(e) = run_on_runtime(path, seed) {
            fail(e);
        }
        fail("the commit loop ended".into());
    }

    /// Reports on stderr (the parent's terminal) and exits with a status the parent
    /// tells from a kill.
    fn fail(e: BoxError) -> ! {
        eprintln!("crash loop child: {e}");
        std::process::exit(2);
    }

    /// `PATH SEED`, as the parent passes them.
    fn parse(args: &[String]) -> Result<(PathBuf, u64), BoxError> {
        match args {
            [path, seed] => Ok((PathBuf::from(path), seed.parse()?)),
            _ => Err("usage: crash_loop --child PATH SEED".into()),
        }
    }

    /// The seed picks the runtime (tokio with two worker threads, smol, or
    /// `futures::executor`), since durus must behave the same under each.
    fn run_on_runtime(path: PathBuf, seed: u64) -> Result<(), BoxError> {
        match seed % 3 {
            0 => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let (db, bank) = open(path, seed).await?;
                    // Whichever task fails first ends the child.
                    let handles = (0..TASKS).map(|t| {
                        let task = tokio::spawn(commit_forever(db.clone(), bank.clone(), t, seed));
                        async move { task.await? }
                    });
                    futures::future::try_join_all(handles).await?;
                    Ok(())
                })
            }
            1 => smol::block_on(run_joined(path, seed)),
            _ => futures::executor::block_on(run_joined(path, seed)),
        }
    }

    /// The tasks as futures joined on one thread; their commits still overlap on the
    /// blocking pool, so they form write groups.
    async fn run_joined(path: PathBuf, seed: u64) -> Result<(), BoxError> {
        let (db, bank) = open(path, seed).await?;
        let tasks = (0..TASKS).map(|t| commit_forever(db.clone(), bank.clone(), t, seed));
        futures::future::try_join_all(tasks).await?;
        Ok(())
    }

    /// Journal settings vary with the seed, so kills also land in index checkpoints
    /// and on files with and without preallocated space.
    fn options(seed: u64) -> DbOptions {
        let mut journal = JournalOptions::default();
        if (seed >> 8).is_multiple_of(2) {
            journal.checkpoint_every = Some(64 << 10);
        }
        journal.preallocate = [4 << 20, 0, 64 << 10][((seed >> 16) % 3) as usize];
        DbOptions {
            journal,
            ..DbOptions::default()
        }
    }

    /// Opens the database (this is where the previous child's leftovers are
    /// recovered), says so, and makes sure the bank exists.
    async fn open(path: PathBuf, seed: u64) -> Result<(Db<Bank>, Arc<Bank>), BoxError> {
        let db: Db<Bank> = Db::open_with(path, options(seed)).await?;
        say(format_args!("opened"))?;
        let bank = create_bank(&db).await?;
        Ok((db, bank))
    }

    /// Creates the accounts and ledgers in one transaction if the file is new.
    async fn create_bank(db: &Db<Bank>) -> durus::Result<Arc<Bank>> {
        db.transact(|tx| {
            Box::pin(async move {
                if tx.root().await?.accounts.is_empty() {
                    let mut accounts = Vec::new();
                    for _ in 0..ACCOUNTS {
                        accounts.push(tx.insert(Account { balance: START }).await?);
                    }
                    let mut ledgers = Vec::new();
                    for _ in 0..TASKS {
                        ledgers.push(tx.insert(Ledger::default()).await?);
                    }
                    let root = tx.root_mut().await?;
                    root.accounts = accounts;
                    root.ledgers = ledgers;
                }
                Ok(())
            })
        })
        .await?;
        db.begin().await?.root().await
    }

    /// One task: random transfers, each acknowledged on stdout once it is durable.
    async fn commit_forever(db: Db<Bank>, bank: Arc<Bank>, task: usize, seed: u64) -> Result<(), BoxError> {
        let mut rng = Rng(seed ^ (task as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        loop {
            let from = rng.below(ACCOUNTS as u64) as usize;
            let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
            let transfer = Transfer {
                ledger: bank.ledgers[task],
                from: (from, bank.accounts[from]),
                to: (to, bank.accounts[to]),
                amount: 1 + rng.below(100) as i64,
                memo_len: if rng.below(4) == 0 {
                    rng.below(6000) as usize
                } else {
                    0
                },
            };
            let (seq, tid) = transfer.commit(&db).await?;
            say(format_args!("ack {task} {seq} {}", tid.0))?;
        }
    }

    /// Writes one line to stdout and flushes it, so the parent has it before a kill.
    fn say(line: std::fmt::Arguments) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_fmt(line)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// One transfer of a task.
    struct Transfer {
        ledger: Ref<Ledger>,
        from: (usize, Ref<Account>),
        to: (usize, Ref<Account>),
        amount: i64,
        memo_len: usize,
    }

    impl Transfer {
        /// Commits the transfer, retrying conflicts by hand (rather than with
        /// `Db::transact`) to learn the tid the acknowledgement reports.
        async fn commit(&self, db: &Db<Bank>) -> Result<(u64, Tid), BoxError> {
            for _ in 0..MAX_ATTEMPTS {
                let mut tx = db.begin().await?;
                let seq = self.write(&mut tx).await?;
                match tx.commit().await {
                    Ok(c) => return Ok((seq, c.tid)),
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(format!("a transfer conflicted {MAX_ATTEMPTS} times").into())
        }

        /// The transfer's changes: both balances, a new entry, and the ledger's head.
        async fn write(&self, tx: &mut Transaction<Bank>) -> durus::Result<u64> {
            tx.get_mut(self.from.1).await?.balance -= self.amount;
            tx.get_mut(self.to.1).await?.balance += self.amount;
            let ledger = tx.get_mut(self.ledger).await?;
            let seq = ledger.count + 1;
            let prev = ledger.head;
            let entry = tx
                .insert(Entry {
                    seq,
                    from: self.from.0,
                    to: self.to.0,
                    amount: self.amount,
                    memo: "m".repeat(self.memo_len),
                    prev,
                })
                .await?;
            let ledger = tx.get_mut(self.ledger).await?;
            ledger.count = seq;
            ledger.head = Some(entry);
            Ok(seq)
        }
    }
}

/// The killer and checker.
#[cfg(unix)]
mod parent {
    use std::collections::BTreeMap;
    use std::fmt::Display;
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdout, Command, Stdio};
    use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use durus::journal::{Journal, JournalOptions, VerifyReport};
    use durus::record::Tid;
    use durus::{Db, DbOptions, Ref, Transaction};

    use super::{Account, Bank, Entry, Ledger, Rng, ACCOUNTS, START, TASKS};

    /// Kills on one file before the next starts afresh, bounding verify and open time.
    const FRESH_EVERY: u64 = 50;
    /// How long the first acknowledgement may take (a debug build on a busy machine).
    const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(60);
    /// Kills that strike at a random moment right after the spawn, in percent.
    const EARLY_KILL_PERCENT: u64 = 15;
    const SIGKILL: i32 = 9;

    /// Runs the loop; exits with status 1 on the first failed check, 2 on bad arguments.
    pub fn main(args: &[String]) {
        let (kills, seed) = match parse(args) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("crash loop: {e}\nusage: crash_loop [--kills N] [--seed S]");
                std::process::exit(2);
            }
        };
        println!("crash loop: seed {seed}, {kills} kills");
        match Loop::new(seed).and_then(|mut l| l.run(kills).map(|()| l)) {
            Ok(l) => l.summary(),
            Err(f) => {
                eprintln!("{f}");
                std::process::exit(1);
            }
        }
    }

    /// `--kills N` (default 100) and `--seed S` (default from the clock).
    fn parse(args: &[String]) -> Result<(u64, u64), String> {
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
        Ok((kills, seed))
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

    /// What a child said before it died.
    #[derive(Default)]
    struct Heard {
        opened: bool,
        /// Time from the spawn to the first acknowledgement, when the parent waited.
        first_ack: Option<Duration>,
        /// (task, seq, tid) of every acknowledged commit.
        acks: Vec<(usize, u64, Tid)>,
    }

    /// One line of a child's stdout.
    enum Line {
        Opened,
        Ack(usize, u64, Tid),
        Garbage(String),
    }

    /// What the checks have established about the current file.
    #[derive(Clone, Default)]
    struct Checked {
        bank: Option<CheckedBank>,
        /// Last transaction id seen, to catch a journal that went backwards.
        last_tid: Tid,
    }

    /// The bank as of the last check: its layout, the balances the entries add up to,
    /// and each ledger's newest entry (seq and oid).
    #[derive(Clone)]
    struct CheckedBank {
        accounts: Vec<Ref<Account>>,
        ledgers: Vec<Ref<Ledger>>,
        balances: Vec<i64>,
        heads: Vec<(u64, Option<Ref<Entry>>)>,
    }

    /// A failed check, with what is needed to replay it.
    struct Failure {
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
                "crash loop FAILED at kill {} (seed {}): {}\n  file kept: {}\n  replay: cargo run --example crash_loop -- --seed {} --kills {}",
                self.kill,
                self.seed,
                self.why,
                self.path.display(),
                self.seed,
                self.kill
            )
        }
    }

    /// The loop's state and counts.
    struct Loop {
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
    }

    impl Loop {
        /// The files live in a temporary directory, removed at the end unless a
        /// check fails.
        fn new(seed: u64) -> Result<Loop, Failure> {
            let dir = tempfile::Builder::new()
                .prefix("durus-crash-loop-")
                .tempdir()
                .map_err(|e| Failure {
                    seed,
                    kill: 0,
                    path: PathBuf::new(),
                    why: format!("creating a temporary directory: {e}"),
                })?;
            Ok(Loop {
                seed,
                rng: Rng(seed),
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
                    println!(
                        "  {} kills, {} acknowledged commits checked",
                        i + 1,
                        thousands(self.acks)
                    );
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
            let child_seed = self.rng.next_u64();
            let at = if self.rng.below(100) < EARLY_KILL_PERCENT {
                KillAt::AfterSpawn(self.first_ack.mul_f64(self.rng.below(1200) as f64 / 1000.0))
            } else {
                KillAt::AfterFirstAck(Duration::from_micros(self.rng.below(30_000)))
            };
            let heard = kill_child(&self.path, child_seed, at)?;
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
            Ok(())
        }

        /// Keeps the directory (with the failing file) and describes the failure.
        fn failure(&mut self, i: u64, why: String) -> Failure {
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
            Failure {
                seed: self.seed,
                kill: i + 1,
                path: self.path.clone(),
                why,
            }
        }

        /// The one line CI logs show.
        fn summary(&self) {
            println!(
                "crash loop: {} kills, {} acknowledged commits checked ({} committed), {} torn tails recovered, \
                 {} kills before the first ack ({} before the open finished), 0 failures (seed {}, {:.1}s)",
                self.kills,
                thousands(self.acks),
                thousands(self.commits),
                self.torn,
                self.before_ack,
                self.before_open,
                self.seed,
                self.started.elapsed().as_secs_f64()
            );
        }
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
    fn kill_child(path: &Path, seed: u64, at: KillAt) -> Result<Heard, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
        let mut child = Command::new(exe)
            .arg("--child")
            .arg(path)
            .arg(seed.to_string())
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

    /// Reads the child's stdout on a thread of its own, so the pipe never fills; the
    /// thread ends when the child's end of the pipe closes (at its death).
    fn read_lines(stdout: ChildStdout) -> (Receiver<Line>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(parse_line(&line)).is_err() {
                    break;
                }
            }
        });
        (rx, reader)
    }

    /// `opened` or `ack TASK SEQ TID`; anything else is kept to be reported.
    fn parse_line(line: &str) -> Line {
        if line == "opened" {
            return Line::Opened;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["ack", task, seq, tid] => match (task.parse(), seq.parse(), tid.parse()) {
                (Ok(task), Ok(seq), Ok(tid)) => Line::Ack(task, seq, Tid(tid)),
                _ => Line::Garbage(line.to_string()),
            },
            _ => Line::Garbage(line.to_string()),
        }
    }

    /// Records one line; a line that is not part of the protocol is a failure.
    fn hear(heard: &mut Heard, line: Line) -> Result<(), String> {
        match line {
            Line::Opened => heard.opened = true,
            Line::Ack(task, seq, tid) if task < TASKS => heard.acks.push((task, seq, tid)),
            Line::Ack(task, ..) => return Err(format!("the child acknowledged for task {task}")),
            Line::Garbage(l) => return Err(format!("the child wrote {l:?}")),
        }
        Ok(())
    }

    /// Waits for the child's first acknowledgement.
    fn wait_for_ack(lines: &Receiver<Line>, heard: &mut Heard) -> Result<(), String> {
        let deadline = Instant::now() + FIRST_ACK_TIMEOUT;
        while heard.acks.is_empty() {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => hear(heard, line)?,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no acknowledgement within {FIRST_ACK_TIMEOUT:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the child closed its stdout before its first acknowledgement".into())
                }
            }
        }
        Ok(())
    }

    /// Checks the file after a kill against what the child acknowledged and what the
    /// previous checks established. Returns the new established state, the verify
    /// report (if the file exists), and how many transfers were new.
    fn check(
        path: &Path,
        heard: &Heard,
        before: &Checked,
    ) -> Result<(Checked, Option<VerifyReport>, u64), String> {
        if !path.exists() {
            return match (heard.acks.first(), before.last_tid) {
                (None, Tid(0)) => Ok((before.clone(), None, 0)),
                (Some(a), _) => Err(format!("no file, but {a:?} was acknowledged")),
                (None, t) => Err(format!("the file is gone, though transaction {t} was in it")),
            };
        }
        let report = verify(path, heard, before)?;
        if report.last_tid == Tid(0) {
            // Not even the root is committed: nothing can have been acknowledged.
            return no_bank(heard, before).map(|c| (c, Some(report), 0));
        }
        let (bank, commits) = futures::executor::block_on(check_bank(path, heard, before))?;
        let checked = Checked {
            bank,
            last_tid: report.last_tid,
        };
        Ok((checked, Some(report), commits))
    }

    /// Verifies the whole journal: any error fails, and a torn tail must come after
    /// every acknowledged transaction and every one seen before.
    fn verify(path: &Path, heard: &Heard, before: &Checked) -> Result<VerifyReport, String> {
        let report = Journal::verify_path(path).map_err(|e| format!("the journal does not verify: {e}"))?;
        let acked = heard.acks.iter().map(|a| a.2).max().unwrap_or_default();
        let newest = acked.max(before.last_tid);
        if report.last_tid < newest {
            return Err(format!(
                "the journal ends at transaction {} (torn tail: {:?}), but {newest} was acknowledged or seen",
                report.last_tid, report.torn_tail
            ));
        }
        Ok(report)
    }

    /// The state when no bank has been committed yet: nothing may be acknowledged and
    /// nothing may have been seen before.
    fn no_bank(heard: &Heard, before: &Checked) -> Result<Checked, String> {
        if let Some(a) = heard.acks.first() {
            return Err(format!("no bank, but {a:?} was acknowledged"));
        }
        if before.bank.is_some() {
            return Err("the bank was in the file before, and now is not".into());
        }
        Ok(before.clone())
    }

    /// Reopens the file read-only (the next child does the recovery) and checks the
    /// bank: layout, ledgers, acknowledgements, balances.
    async fn check_bank(
        path: &Path,
        heard: &Heard,
        before: &Checked,
    ) -> Result<(Option<CheckedBank>, u64), String> {
        let options = DbOptions {
            journal: JournalOptions {
                read_only: true,
                ..JournalOptions::default()
            },
            ..DbOptions::default()
        };
        let db: Db<Bank> = Db::open_with(path, options)
            .await
            .map_err(|e| format!("reopening read-only: {e}"))?;
        let tx = db.begin().await.map_err(|e| format!("beginning: {e}"))?;
        let bank = tx.root().await.map_err(|e| format!("reading the root: {e}"))?;
        let r = if bank.accounts.is_empty() {
            no_bank(heard, before).map(|c| (c.bank, 0))
        } else {
            check_transfers(&tx, &bank, heard, before.bank.as_ref()).await
        };
        drop(tx);
        db.close().await.map_err(|e| format!("closing: {e}"))?;
        r
    }

    /// Walks each ledger's new entries, checks the acknowledgements against them, and
    /// the balances against the entries.
    async fn check_transfers(
        tx: &Transaction<Bank>,
        bank: &Bank,
        heard: &Heard,
        before: Option<&CheckedBank>,
    ) -> Result<(Option<CheckedBank>, u64), String> {
        let mut now = match before {
            Some(b) => b.clone(),
            None => CheckedBank {
                accounts: bank.accounts.clone(),
                ledgers: bank.ledgers.clone(),
                balances: vec![START; ACCOUNTS],
                heads: vec![(0, None); TASKS],
            },
        };
        if bank.accounts != now.accounts || bank.ledgers != now.ledgers || bank.accounts.len() != ACCOUNTS {
            return Err("the bank's accounts or ledgers changed".into());
        }
        let mut commits = 0;
        for task in 0..TASKS {
            let new = new_entries(tx, now.ledgers[task], now.heads[task], task).await?;
            commits += new.len() as u64;
            apply(&mut now, task, &new)?;
        }
        check_acks(heard, before, &now)?;
        check_balances(tx, &now).await?;
        Ok((Some(now), commits))
    }

    /// The entries of a ledger after `known` (the newest entry a previous check saw),
    /// oldest first. The chain must be unbroken (seqs counting down by one) and must
    /// reach `known` itself, so nothing seen before has vanished or been replaced.
    async fn new_entries(
        tx: &Transaction<Bank>,
        ledger: Ref<Ledger>,
        known: (u64, Option<Ref<Entry>>),
        task: usize,
    ) -> Result<Vec<(Ref<Entry>, Entry)>, String> {
        let l = tx
            .get(ledger)
            .await
            .map_err(|e| format!("reading ledger {task}: {e}"))?;
        let mut new = Vec::new();
        let mut at = l.head;
        let mut want = l.count;
        while want > known.0 {
            let r = at.ok_or_else(|| format!("ledger {task} ends before entry {want}"))?;
            let e = tx
                .get(r)
                .await
                .map_err(|e| format!("reading entry {want} of ledger {task}: {e}"))?;
            if e.seq != want {
                return Err(format!("ledger {task}: entry {want} is numbered {}", e.seq));
            }
            at = e.prev;
            want -= 1;
            new.push((r, (*e).clone()));
        }
        if want != known.0 || at != known.1 {
            return Err(format!(
                "ledger {task} (count {}) no longer leads to its entry {} seen before",
                l.count, known.0
            ));
        }
        new.reverse();
        Ok(new)
    }

    /// Adds a ledger's new entries to the expected balances and moves its head.
    fn apply(now: &mut CheckedBank, task: usize, new: &[(Ref<Entry>, Entry)]) -> Result<(), String> {
        for (r, e) in new {
            if e.from >= ACCOUNTS || e.to >= ACCOUNTS || e.from == e.to {
                return Err(format!(
                    "ledger {task}: entry {} moves {} -> {}",
                    e.seq, e.from, e.to
                ));
            }
            now.balances[e.from] -= e.amount;
            now.balances[e.to] += e.amount;
            now.heads[task] = (e.seq, Some(*r));
        }
        Ok(())
    }

    /// Every acknowledged entry is in its ledger, and is one not seen by an earlier
    /// check (a child never acknowledges a seq twice).
    fn check_acks(heard: &Heard, before: Option<&CheckedBank>, now: &CheckedBank) -> Result<(), String> {
        let mut last: BTreeMap<usize, u64> = BTreeMap::new();
        for &(task, seq, tid) in &heard.acks {
            let seen = before.map_or(0, |b| b.heads[task].0);
            let prev = last.insert(task, seq).unwrap_or(seen);
            if seq <= prev {
                return Err(format!("task {task} acknowledged entry {seq} after entry {prev}"));
            }
            if seq > now.heads[task].0 {
                return Err(format!(
                    "acknowledged entry {seq} of task {task} (transaction {tid}) is missing: the ledger has {}",
                    now.heads[task].0
                ));
            }
        }
        Ok(())
    }

    /// The balances are exactly the start balances plus the entries, and the total is
    /// conserved.
    async fn check_balances(tx: &Transaction<Bank>, now: &CheckedBank) -> Result<(), String> {
        let mut total = 0;
        for (i, a) in now.accounts.iter().enumerate() {
            let balance = tx
                .get(*a)
                .await
                .map_err(|e| format!("reading account {i}: {e}"))?
                .balance;
            if balance != now.balances[i] {
                return Err(format!(
                    "account {i} holds {balance}, but its committed entries add up to {}: a transaction landed in part",
                    now.balances[i]
                ));
            }
            total += balance;
        }
        if total != START * ACCOUNTS as i64 {
            return Err(format!("the total is {total}, not {}", START * ACCOUNTS as i64));
        }
        Ok(())
    }
}
