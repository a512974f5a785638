//! `durus verify FILE`: check a whole journal without changing it.

use std::io;
use std::path::Path;

use durus::journal::{Journal, RefsReport, VerifyReport};
use durus::record::Oid;
use serde::Serialize;

use crate::output::{maybe_bar, BarIo, Output};
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Check every checksum, back pointer and checkpoint of a journal
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Check every checksum, back pointer and checkpoint of a journal, from the file header to
the end, without changing the file.

A torn tail (a last write cut off by a crash, which opening ignores) is reported but is
not a failure; `durus repair` removes it. Damage anywhere else is reported with its
offset, and the exit status is 1.

With --refs it also walks every reference from the root, as a pack does, and reports
references to object ids that have no record (dangling references, which a pack
refuses to leave behind): their count and the first ids, with exit status 1.",
    after_long_help = long_help()
)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Also check that every reference from a reachable record names an existing object
    #[arg(long)]
    pub refs: bool,
}

fn long_help() -> String {
    LongHelp {
        command: "verify",
        examples: &[
            "durus verify shop.durus",
            "durus verify --json shop.durus | jq .report.last_tid",
            "durus verify --refs shop.durus",
        ],
        exit_ok: "intact, or a torn tail only",
        exit_problem: "damaged, unreadable, or (with --refs) dangling references",
        success: "\"intact\" or \"torn_tail\"",
        report: &[
            "{transactions, records, checkpoints, reservations, last_tid,",
            "end (bytes), torn_tail (offset of the cut-off write, or null),",
            "durable_end (everything before it was made durable, as far as",
            "the header knows), refs (only with --refs: {reachable (objects),",
            "reachable_bytes, dangling (0; dangling references fail with",
            "kind \"dangling_refs\", the ids in the message)})}",
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
    /// Absent without `--refs`, so that the report of a plain verify keeps its keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    refs: Option<Refs>,
}

/// What `--refs` found in a journal whose references all resolve.
#[derive(Serialize)]
pub struct Refs {
    reachable: u64,
    reachable_bytes: u64,
    dangling: u64,
}

impl Refs {
    /// The library's report under the documented names.
    pub fn of(f: &RefsReport) -> Refs {
        Refs {
            reachable: f.reachable,
            reachable_bytes: f.reachable_bytes,
            dangling: f.dangling,
        }
    }
}

/// `refs` if nothing reachable refers to a missing object; otherwise the ids go to
/// `missing` and the failure is `DanglingRefs`.
pub fn clean_refs(refs: RefsReport, missing: &mut Vec<Oid>) -> durus::Result<RefsReport> {
    if refs.is_clean() {
        return Ok(refs);
    }
    missing.clone_from(&refs.oids);
    Err(durus::Error::DanglingRefs {
        count: refs.dangling,
        oids: refs.oids,
    })
}

/// Says on stderr which object ids `--refs` found missing, if any.
pub fn say_missing(out: &mut Output, command: &str, name: &str, missing: &[Oid]) {
    if missing.is_empty() {
        return;
    }
    let ids: Vec<String> = missing.iter().map(|o| o.to_string()).collect();
    out.problem(format_args!(
        "durus {command}: {name}: missing object ids (the first {}): {}",
        ids.len(),
        ids.join(" ")
    ));
}

/// The text line of references that all resolve.
pub fn refs_line(out: &mut Output, name: &str, f: &RefsReport) -> io::Result<()> {
    out.line(format_args!(
        "{name}: references ok: {} objects reachable from the root ({} bytes), none dangling",
        f.reachable, f.reachable_bytes
    ))
}

impl Report {
    /// The library's reports under the documented names.
    fn of((r, refs): &(VerifyReport, Option<RefsReport>)) -> Report {
        Report {
            transactions: r.transactions,
            records: r.records,
            checkpoints: r.checkpoints,
            reservations: r.reservations,
            last_tid: r.last_tid.0,
            end: r.end,
            torn_tail: r.torn_tail,
            durable_end: r.durable_end,
            refs: refs.as_ref().map(Refs::of),
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
    let mut missing = Vec::new();
    let show_bar = out.bar_wanted();
    let verify = |p: &Path| {
        let report = match maybe_bar(show_bar, "verifying") {
            Some(bar) => durus::journal::verify(&BarIo::open(p, bar.0.clone())?)?,
            None => Journal::verify_path(p)?,
        };
        if !args.refs {
            return Ok((report, None));
        }
        let refs = clean_refs(Journal::verify_refs_path(p)?, &mut missing)?;
        Ok((report, Some(refs)))
    };
    let result = args.store.run("verify", out, verify, Report::of)?;
    let name = args.store.name();
    say_missing(out, "verify", &name, &missing);
    let Some((r, refs)) = result else {
        return Ok(());
    };
    out.line(format_args!(
        "{name}: ok: {} transactions, {} records, {} checkpoints, last transaction {}, {} bytes",
        r.transactions, r.records, r.checkpoints, r.last_tid.0, r.end
    ))?;
    if let Some(at) = r.torn_tail {
        out.line(format_args!(
            "{name}: the last write was cut off at offset {at}; `durus repair` removes it"
        ))?;
    }
    if let Some(f) = refs {
        refs_line(out, &name, &f)?;
    }
    Ok(())
}
