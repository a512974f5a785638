//! `durus verify FILE`: check a whole journal without changing it.

use std::io;
use std::path::Path;

use durus::journal::{Journal, VerifyReport};
use serde::Serialize;

use crate::output::Output;
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Check every checksum, back pointer and checkpoint of a journal
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Check every checksum, back pointer and checkpoint of a journal, from the file header to
the end, without changing the file.

A torn tail (a last write cut off by a crash, which opening ignores) is reported but is
not a failure; `durus repair` removes it. Damage anywhere else is reported with its
offset, and the exit status is 1.",
    after_long_help = long_help()
)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
}

fn long_help() -> String {
    LongHelp {
        command: "verify",
        examples: &[
            "durus verify shop.durus",
            "durus verify --json shop.durus | jq .report.last_tid",
        ],
        exit_ok: "intact, or a torn tail only",
        exit_problem: "damaged or unreadable",
        success: "\"intact\" or \"torn_tail\"",
        report: &[
            "{transactions, records, checkpoints, reservations, last_tid,",
            "end (bytes), torn_tail (offset of the cut-off write, or null),",
            "durable_end (everything before it was made durable, as far as",
            "the header knows)}",
        ],
    }
    .render()
}

/// The report under its documented names, apart from the library type so that a
/// change there cannot change the JSON unnoticed.
#[derive(Serialize)]
struct Report {
    transactions: u64,
    records: u64,
    checkpoints: u64,
    reservations: u64,
    last_tid: u64,
    end: u64,
    torn_tail: Option<u64>,
    durable_end: u64,
}

impl Report {
    /// The library's report under the documented names.
    fn of(r: &VerifyReport) -> Report {
        Report {
            transactions: r.transactions,
            records: r.records,
            checkpoints: r.checkpoints,
            reservations: r.reservations,
            last_tid: r.last_tid.0,
            end: r.end,
            torn_tail: r.torn_tail,
            durable_end: r.durable_end,
        }
    }
}

impl JsonReport for Report {
    fn status(&self) -> &'static str {
        self.torn_tail.map_or("intact", |_| "torn_tail")
    }
}

/// Runs `durus verify`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let verify = |p: &Path| Journal::verify_path(p);
    let Some(r) = args.store.run("verify", out, verify, Report::of)? else {
        return Ok(());
    };
    let name = args.store.name();
    out.line(format_args!(
        "{name}: ok: {} transactions, {} records, {} checkpoints, last transaction {}, {} bytes",
        r.transactions, r.records, r.checkpoints, r.last_tid, r.end
    ))?;
    if let Some(at) = r.torn_tail {
        out.line(format_args!(
            "{name}: the last write was cut off at offset {at}; `durus repair` removes it"
        ))?;
    }
    Ok(())
}
