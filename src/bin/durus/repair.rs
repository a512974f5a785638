//! `durus repair FILE`: cut a torn tail off a journal.

use std::io;
use std::path::Path;

use durus::journal::{Journal, RepairReport};
use serde::Serialize;

use crate::output::Output;
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Cut a torn tail off a journal file
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Cut a torn tail (a last write cut off by a crash) off a journal file, after checking
every block before it.

Damage before the tail is reported with its offset and nothing is changed (exit status
1). The file must not be open for writing by another process: it is locked while it is
repaired.",
    after_long_help = long_help()
)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
}

fn long_help() -> String {
    LongHelp {
        command: "repair",
        examples: &[
            "durus repair shop.durus",
            "durus repair --json shop.durus | jq .report.removed",
        ],
        exit_ok: "repaired, or nothing to repair",
        exit_problem: "damaged, locked or unreadable (the file is left as it was)",
        success: "\"repaired\" or \"intact\" (no torn tail)",
        report: &[
            "{truncated_at (offset the file was cut at, or null),",
            "removed (bytes), last_tid (the last transaction kept)}",
        ],
    }
    .render()
}

/// The report under its documented names, apart from the library type so that a
/// change there cannot change the JSON unnoticed.
#[derive(Serialize)]
struct Report {
    truncated_at: Option<u64>,
    removed: u64,
    last_tid: u64,
}

impl Report {
    /// The library's report under the documented names.
    fn of(r: &RepairReport) -> Report {
        Report {
            truncated_at: r.truncated_at,
            removed: r.removed,
            last_tid: r.last_tid.0,
        }
    }
}

impl JsonReport for Report {
    fn status(&self) -> &'static str {
        self.truncated_at.map_or("intact", |_| "repaired")
    }
}

/// Runs `durus repair`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let repair = |p: &Path| Journal::repair(p);
    let Some(r) = args.store.run("repair", out, repair, Report::of)? else {
        return Ok(());
    };
    let name = args.store.name();
    match r.truncated_at {
        Some(at) => out.line(format_args!(
            "{name}: cut a torn tail of {} bytes at offset {at}; last transaction {}",
            r.removed, r.last_tid
        )),
        None => out.line(format_args!(
            "{name}: no torn tail; last transaction {}",
            r.last_tid
        )),
    }
}
