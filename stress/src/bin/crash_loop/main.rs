//! Crash loop: a child process commits bank transfers as fast as it can and is killed
//! with SIGKILL at a random moment, again and again; after every kill the database is
//! reopened and checked.
//!
//! ```text
//! cargo run -p durus-stress --bin crash_loop                      # 100 kills (the CI run)
//! cargo run --release -p durus-stress --bin crash_loop -- --kills 2000
//! cargo run -p durus-stress --bin crash_loop -- --kills 100 --seed 12345   # replay a failure
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
//!
//! Modules: [`args`] (the command line), [`bank`] (the data both sides share),
//! [`child`] (the killed process), [`protocol`] (what the child tells the parent),
//! [`killer`] (spawn, kill, count) and [`checks`] (what must hold after each kill).

#[cfg(unix)]
mod args;
#[cfg(unix)]
mod bank;
#[cfg(unix)]
mod checks;
#[cfg(unix)]
mod child;
#[cfg(unix)]
mod killer;
#[cfg(unix)]
mod protocol;

#[cfg(not(unix))]
fn main() {
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout(),
        "crash loop: skipped (it kills processes with SIGKILL, which needs Unix)"
    );
}

#[cfg(unix)]
fn main() {
    killer::entry(args::Mode::Commits);
}
