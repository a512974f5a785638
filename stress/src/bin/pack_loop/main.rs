//! Pack loop: the crash loop with packs. A child commits bank transfers from four tasks
//! while a fifth packs the journal again and again through `Db::pack`; it is killed
//! with SIGKILL at a seeded random moment, again and again, and after every kill the
//! database is reopened and checked.
//!
//! ```text
//! cargo run --release -p durus-stress --bin pack_loop                      # 100 kills (the CI run)
//! cargo run --release -p durus-stress --bin pack_loop -- --kills 1000
//! cargo run --release -p durus-stress --bin pack_loop -- --kills 100 --seed 12345   # replay
//! ```
//!
//! The child, the kills and the checks are the crash loop's (`../crash_loop/`, whose
//! modules this binary compiles in pack mode), with these differences:
//!
//! - The bank carries 4 MiB of ballast that no transfer changes, so each pack reads and
//!   writes a file of that size and more (the entries grow it; a fresh file is started
//!   every 50 kills, which bounds it), and kills land in every phase of a pack: marking,
//!   copying, carry-over rounds, the switch, the rename.
//! - The child prints `packing` before each pack and `packed` after it, so the parent
//!   counts the kills that struck inside a pack.
//! - Kills wait up to 300 ms after the first acknowledgement, so they span several packs.
//! - After the checks (the journal verifies, every acknowledged transfer is there, no
//!   transfer is there in part, the total is conserved) the parent opens the journal for
//!   writing, as the next child would, and checks that no `.packing` file survives it.
//!
//! It prints its seed first and its counts last.

#[cfg(unix)]
#[path = "../crash_loop/args.rs"]
mod args;
#[cfg(unix)]
#[path = "../crash_loop/bank.rs"]
mod bank;
#[cfg(unix)]
#[path = "../crash_loop/checks.rs"]
mod checks;
#[cfg(unix)]
#[path = "../crash_loop/child.rs"]
mod child;
#[cfg(unix)]
#[path = "../crash_loop/killer.rs"]
mod killer;
#[cfg(unix)]
#[path = "../crash_loop/protocol.rs"]
mod protocol;

#[cfg(not(unix))]
fn main() {
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout(),
        "pack loop: skipped (it kills processes with SIGKILL, which needs Unix)"
    );
}

#[cfg(unix)]
fn main() {
    killer::entry(args::Mode::Pack);
}
