//! `durus info FILE`: what is in a journal.

use std::io;

use durus::tools::info::{info, StoreInfo};
use indicatif::HumanBytes;
use serde::Serialize;

use crate::output::Output;
use crate::serve::logger::civil_from_days;
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Summarise a journal: format, size, transactions, objects, garbage
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Summarise a journal without changing it (it may be open for writing elsewhere): its
format version, size, transactions (count, first and last with their times), records,
objects (and how many are reachable from the root), index checkpoints, about how many
bytes a pack would free, and whether it ends in a torn tail.

Every block is checked as `durus verify` checks it, and the references are walked from
the root as `durus pack` does, so this reads the whole file.",
    after_long_help = long_help()
)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
}

fn long_help() -> String {
    LongHelp {
        command: "info",
        examples: &[
            "durus info shop.durus",
            "durus info --json shop.durus | jq .report.garbage_estimate",
        ],
        exit_ok: "summarised (a torn tail is reported, not a failure)",
        exit_problem: "damaged, unreadable, or not a journal",
        success: "\"intact\" or \"torn_tail\"",
        report: &[
            "{version, file_bytes, end (the journal's logical size), transactions,",
            "records (every version), checkpoints, last_checkpoint (null, or",
            "{offset, tid}: where the last index checkpoint is and the transaction",
            "it indexes up to), first_tid, first_time, last_tid,",
            "last_time (times in microseconds since the Unix epoch; null when",
            "empty), objects, reachable, reachable_bytes, garbage_estimate (about",
            "what a pack would free), torn_tail (its offset, or null)}",
        ],
    }
    .render()
}

/// The report under its documented names.
#[derive(Serialize)]
struct Report {
    version: u32,
    file_bytes: u64,
    end: u64,
    transactions: u64,
    records: u64,
    checkpoints: u64,
    last_checkpoint: Option<Checkpoint>,
    first_tid: Option<u64>,
    first_time: Option<u64>,
    last_tid: Option<u64>,
    last_time: Option<u64>,
    objects: u64,
    reachable: u64,
    reachable_bytes: u64,
    garbage_estimate: u64,
    torn_tail: Option<u64>,
}

/// Where the last index checkpoint is.
#[derive(Serialize)]
struct Checkpoint {
    offset: u64,
    tid: u64,
}

impl Report {
    fn of(i: &StoreInfo) -> Report {
        Report {
            version: i.version,
            file_bytes: i.file_bytes,
            end: i.end,
            transactions: i.transactions,
            records: i.records,
            checkpoints: i.checkpoints,
            last_checkpoint: i
                .last_checkpoint
                .map(|(offset, tid)| Checkpoint { offset, tid: tid.0 }),
            first_tid: i.first.map(|(t, _)| t.0),
            first_time: i.first.map(|(_, ts)| ts),
            last_tid: i.last.map(|(t, _)| t.0),
            last_time: i.last.map(|(_, ts)| ts),
            objects: i.objects,
            reachable: i.reachable,
            reachable_bytes: i.reachable_bytes,
            garbage_estimate: i.garbage_estimate,
            torn_tail: i.torn_tail,
        }
    }
}

impl JsonReport for Report {
    fn status(&self) -> &'static str {
        if self.torn_tail.is_some() {
            "torn_tail"
        } else {
            "intact"
        }
    }
}

/// Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Runs `durus info`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let Some(i) = args.store.run("info", out, |p| info(p), Report::of)? else {
        return Ok(());
    };
    let name = args.store.name();
    out.line(format_args!(
        "{name}: durus journal, format version {}",
        i.version
    ))?;
    out.line(format_args!(
        "  size          {} ({} on disk)",
        HumanBytes(i.end),
        HumanBytes(i.file_bytes)
    ))?;
    out.line(format_args!(
        "  transactions  {} ({} records, {} checkpoints)",
        i.transactions, i.records, i.checkpoints
    ))?;
    if let Some((offset, tid)) = i.last_checkpoint {
        out.line(format_args!(
            "  checkpoint    the last at offset {offset}, indexing up to transaction {tid}"
        ))?;
    }
    for (what, tx) in [("first", i.first), ("last ", i.last)] {
        if let Some((tid, ts)) = tx {
            out.line(format_args!("  {what}         transaction {tid} at {}", utc(ts)))?;
        }
    }
    out.line(format_args!(
        "  objects       {} ({} reachable from the root, {})",
        i.objects,
        i.reachable,
        HumanBytes(i.reachable_bytes)
    ))?;
    out.line(format_args!(
        "  garbage       about {} (what a pack would free)",
        HumanBytes(i.garbage_estimate)
    ))?;
    match i.torn_tail {
        Some(at) => out.line(format_args!(
            "  torn tail     at offset {at} (a cut-off last write; `durus repair` removes it)"
        )),
        None => out.line(format_args!("  torn tail     none")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_798_761_599_000_000), "2026-12-31 23:59:59 UTC");
    }
}
