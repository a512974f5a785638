//! `durus repair FILE`: cut a torn tail off a journal, or with `--accept-loss` cut a
//! damaged one short.

use std::io;
use std::path::Path;

use durus::journal::{Journal, Loss, RefsReport, RepairMode, RepairReport};
use serde::Serialize;

use crate::output::Output;
use crate::store::{JsonReport, LongHelp, StoreArgs};
use crate::verify::{clean_refs, refs_line, say_missing, Refs};

/// Cut a torn tail off a journal file
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Cut a torn tail (a last write cut off by a crash) off a journal file, after checking
every block before it. The file is classified the same way opening and `durus verify`
classify it.

Any other damage (in the middle, or a file shorter than its header says was made
durable) is reported with its offset and nothing is changed (exit status 1), unless
--accept-loss is given. The file must not be open for writing by another process: it
is locked while it is repaired.

With --refs it first walks every reference from the root, as `durus verify --refs`
does, and refuses to change a journal in which a reachable record refers to an object
id that has no record (a repair cannot bring it back): exit status 1, the ids on
stderr, the file as it was. After a loss accepted with --accept-loss the check runs on
what is left.",
    after_long_help = long_help()
)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Also cut a damaged journal short, losing what follows the damage
    ///
    /// The journal is cut at its last whole block before the damage, losing everything
    /// after it (acknowledged transactions among them). Every transaction and object id
    /// used so far stays used. Only for a file of which no better copy exists.
    // Verbatim: the long help keeps these line breaks (clap would join them into one line).
    #[arg(long, verbatim_doc_comment)]
    pub accept_loss: bool,
    /// Also check that every reference from a reachable record names an existing object
    #[arg(long)]
    pub refs: bool,
}

fn long_help() -> String {
    LongHelp {
        command: "repair",
        examples: &[
            "durus repair shop.durus",
            "durus repair --json shop.durus | jq .report.removed",
            "durus repair --accept-loss damaged-copy.durus",
            "durus repair --refs shop.durus",
        ],
        exit_ok: "repaired (a loss accepted with --accept-loss included), or nothing to repair",
        exit_problem: "damaged, locked, unreadable or (with --refs) dangling references\n     \
                       (the file is left as it was)",
        success: "\"repaired\", \"intact\" (no torn tail) or \"loss_accepted\"",
        report: &[
            "{truncated_at (offset the file was cut at, or null),",
            "removed (bytes), last_tid (the last transaction kept),",
            "loss (null unless loss_accepted, else {offset and reason of the",
            "damage, missing (bytes the header said were durable that the file",
            "no longer had), tids (null, or {first, last}: transaction ids known",
            "to be lost)}), refs (only with --refs: {reachable, reachable_bytes,",
            "dangling})}",
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
    loss: Option<LossReport>,
    /// Absent without `--refs`, so that the report of a plain repair keeps its keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    refs: Option<Refs>,
}

/// What a repair with `--accept-loss` gave up.
#[derive(Serialize)]
struct LossReport {
    offset: u64,
    reason: String,
    missing: u64,
    tids: Option<TidRange>,
}

/// Transaction ids from `first` to `last`, both included.
#[derive(Serialize)]
struct TidRange {
    first: u64,
    last: u64,
}

impl Report {
    /// The library's reports under the documented names.
    fn of((r, refs): &(RepairReport, Option<RefsReport>)) -> Report {
        Report {
            refs: refs.as_ref().map(Refs::of),
            truncated_at: r.truncated_at,
            removed: r.removed,
            last_tid: r.last_tid.0,
            loss: r.loss.as_ref().map(|l: &Loss| LossReport {
                offset: l.offset,
                reason: l.reason.clone(),
                missing: l.missing,
                tids: l.tids.map(|(first, last)| TidRange {
                    first: first.0,
                    last: last.0,
                }),
            }),
        }
    }
}

impl JsonReport for Report {
    fn status(&self) -> &'static str {
        match (&self.loss, self.truncated_at) {
            (Some(_), _) => "loss_accepted",
            (None, Some(_)) => "repaired",
            (None, None) => "intact",
        }
    }
}

/// Runs `durus repair`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let mode = if args.accept_loss {
        RepairMode::AcceptLoss
    } else {
        RepairMode::TornTailOnly
    };
    let mut missing = Vec::new();
    let repair = |p: &Path| -> durus::Result<(RepairReport, Option<RefsReport>)> {
        if !args.refs {
            return Ok((Journal::repair_with(p, mode)?, None));
        }
        // Before anything is changed; a damaged file whose loss is accepted is checked
        // once it has been cut.
        let before = match Journal::verify_refs_path(p) {
            Ok(refs) => Some(clean_refs(refs, &mut missing)?),
            Err(durus::Error::Corrupt { .. }) if args.accept_loss => None,
            Err(e) => return Err(e),
        };
        let r = Journal::repair_with(p, mode)?;
        let refs = match before {
            Some(refs) if r.loss.is_none() => refs,
            _ => clean_refs(Journal::verify_refs_path(p)?, &mut missing)?,
        };
        Ok((r, Some(refs)))
    };
    let result = args.store.run("repair", out, repair, Report::of)?;
    let name = args.store.name();
    say_missing(out, "repair", &name, &missing);
    let Some((r, refs)) = result else {
        return Ok(());
    };
    repair_lines(out, &name, &r)?;
    match refs {
        Some(f) => refs_line(out, &name, &f),
        None => Ok(()),
    }
}

/// The text report of a repair.
fn repair_lines(out: &mut Output, name: &str, r: &RepairReport) -> io::Result<()> {
    match (&r.loss, r.truncated_at) {
        (Some(loss), _) => loss_lines(out, name, r, loss),
        (None, Some(at)) => out.line(format_args!(
            "{name}: cut a torn tail of {} bytes at offset {at}; last transaction {}",
            r.removed, r.last_tid
        )),
        (None, None) => out.line(format_args!(
            "{name}: no torn tail; last transaction {}",
            r.last_tid
        )),
    }
}

/// The text report of a repair that accepted a loss.
fn loss_lines(out: &mut Output, name: &str, r: &RepairReport, loss: &Loss) -> io::Result<()> {
    out.line(format_args!(
        "{name}: damaged at offset {}: {}",
        loss.offset, loss.reason
    ))?;
    out.line(format_args!(
        "{name}: accepted the loss: cut {} bytes at offset {}; last transaction kept {}",
        r.removed,
        r.truncated_at.unwrap_or_default(),
        r.last_tid
    ))?;
    if loss.missing > 0 {
        out.line(format_args!(
            "{name}: {} bytes the header said were durable were already missing from the file",
            loss.missing
        ))?;
    }
    let lost = match loss.tids {
        Some((first, last)) if first == last => format!("transaction {first} is lost"),
        Some((first, last)) => format!("transactions {first} to {last} are lost"),
        None => "no transaction id after the cut is known".to_string(),
    };
    out.line(format_args!(
        "{name}: {lost}; no transaction or object id used so far will be used again"
    ))?;
    Ok(())
}
