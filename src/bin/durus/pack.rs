//! `durus pack FILE`: drop old versions and objects unreachable from the root.

use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use durus::journal::{Journal, JournalOptions, Keep, PackOptions, PackPhase, PackProgress, PackReport};
use indicatif::{HumanBytes, ProgressBar};
use serde::Serialize;

use crate::output::{byte_bar, Output};
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Drop old versions and unreachable objects from a journal
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Pack a journal: keep the newest version of every object reachable from the root (through
the references in the records) and drop everything else, old versions and unreachable
objects. With --keep or --keep-transactions the versions needed to read the database as
it was during that window of history are kept too.

The packed file is written beside the journal (FILE.packing), synced, read back and
renamed over it, so a crash or kill at any moment leaves the old file or the whole new
one; a stray FILE.packing is removed by the next writable open. Object ids are never
handed out again, dropped ones included.

Before anything is dropped the references are checked: if a reachable record refers to
an object id that has no record, the pack is refused, naming the ids, and the file is
left as it was; --force packs anyway. The file must not be open for writing by another
process (a server packs its own file: Durus clients' pack()).

On a terminal a progress bar is drawn on stderr; the result is one line on stdout.",
    after_long_help = long_help()
)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Report what a pack would keep and free, writing nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the history of the last DURATION (e.g. 90s, 10m, 2h, 7d, 1h30m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "keep_transactions")]
    pub keep: Option<Duration>,
    /// Keep the history of the last N transactions
    #[arg(long, value_name = "N")]
    pub keep_transactions: Option<u64>,
    /// Pack even if reachable records refer to missing objects (they stay dangling)
    #[arg(long)]
    pub force: bool,
}

fn long_help() -> String {
    LongHelp {
        command: "pack",
        examples: &[
            "durus pack shop.durus",
            "durus pack --dry-run shop.durus",
            "durus pack --keep 7d shop.durus",
            "durus pack --keep-transactions 1000 --json shop.durus | jq .report.freed",
        ],
        exit_ok: "packed, or a dry run reported",
        exit_problem:
            "refused (dangling references), damaged, locked or unreadable (the file is left as it was)",
        success: "\"packed\" or \"dry_run\"",
        report: &[
            "{dry_run, history_from (the pack point: snapshots from this",
            "transaction on read as before), objects (kept), object_bytes,",
            "transactions (after the pack point, carried over whole),",
            "bytes_before, bytes_after (logical sizes of the journal), freed,",
            "dangling (references left dangling; only with --force)}",
        ],
    }
    .render()
}

/// Parses a duration such as `90s`, `10m`, `2h`, `7d`, `2w` or `1h30m`: one or more
/// whole numbers, each followed by a unit.
fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: &str = "use s, m, h, d or w, e.g. 10m, 2h, 7d or 1h30m";
    if s.is_empty() {
        return Err(format!("an empty duration ({UNITS})"));
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("'{s}': expected a number before '{rest}' ({UNITS})"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{s}': {} is too large", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "" => return Err(format!("'{s}': the number {n} has no unit ({UNITS})")),
            other => return Err(format!("'{s}': unknown unit '{other}' ({UNITS})")),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(seconds)
            .and_then(|t| total.checked_add(t))
            .ok_or_else(|| format!("'{s}' is too long a duration"))?;
    }
    Ok(Duration::from_secs(total))
}

/// The report under its documented names, apart from the library type so that a
/// change there cannot change the JSON unnoticed.
#[derive(Serialize)]
struct Report {
    dry_run: bool,
    history_from: u64,
    objects: u64,
    object_bytes: u64,
    transactions: u64,
    bytes_before: u64,
    bytes_after: u64,
    freed: u64,
    dangling: u64,
}

impl Report {
    /// The library's report under the documented names.
    fn of(r: &PackReport) -> Report {
        Report {
            dry_run: r.dry_run,
            history_from: r.history_from.0,
            objects: r.objects,
            object_bytes: r.object_bytes,
            transactions: r.transactions,
            bytes_before: r.bytes_before,
            bytes_after: r.bytes_after,
            freed: r.freed(),
            dangling: r.dangling,
        }
    }
}

impl JsonReport for Report {
    fn status(&self) -> &'static str {
        if self.dry_run {
            "dry_run"
        } else {
            "packed"
        }
    }
}

/// Runs `durus pack`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let keep = match (args.keep, args.keep_transactions) {
        (Some(d), _) => Keep::Duration(d),
        (None, Some(n)) => Keep::Transactions(n),
        (None, None) => Keep::Nothing,
    };
    let show_bar = out.bar_wanted();
    let mut refused = false;
    let pack = |p: &Path| {
        let r = pack_file(p, keep, args, show_bar);
        refused = matches!(r, Err(durus::Error::DanglingRefs { .. }));
        r
    };
    let result = args.store.run("pack", out, pack, Report::of)?;
    let name = args.store.name();
    if refused {
        out.problem(format_args!(
            "durus pack: {name}: nothing was changed; `durus pack --force` packs anyway and leaves \
             these references dangling (`durus verify --refs` lists them)"
        ));
    }
    let Some(r) = result else {
        return Ok(());
    };
    let (before, after, freed) = (
        HumanBytes(r.bytes_before),
        HumanBytes(r.bytes_after),
        HumanBytes(r.freed()),
    );
    if r.dry_run {
        out.line(format_args!(
            "{name}: dry run: would keep {} objects and carry over {} transactions; \
             {before} → {after}, would free {freed}; nothing was written",
            r.objects, r.transactions
        ))?;
    } else {
        out.line(format_args!(
            "{name}: packed: kept {} objects, carried over {} transactions; {before} → {after}, \
             freed {freed}; history from transaction {}",
            r.objects, r.transactions, r.history_from.0
        ))?;
    }
    if r.dangling > 0 {
        out.line(format_args!(
            "{name}: {} dangling references {} (--force)",
            r.dangling,
            if r.dry_run { "would be left" } else { "were left" }
        ))?;
    }
    Ok(())
}

/// Opens the journal for writing (which takes its lock and removes a stray pack file)
/// and packs it, drawing progress on stderr if `show_bar`.
fn pack_file(path: &Path, keep: Keep, args: &Args, show_bar: bool) -> durus::Result<PackReport> {
    let j = Journal::open(
        path,
        JournalOptions {
            create: false,
            ..JournalOptions::default()
        },
    )?;
    let bar = show_bar.then(|| byte_bar(j.end_offset()));
    let opts = PackOptions {
        keep,
        dry_run: args.dry_run,
        force: args.force,
        progress: bar.clone().map(|b| {
            let f: Arc<dyn Fn(&PackProgress) + Send + Sync> = Arc::new(move |p: &PackProgress| show(&b, p));
            f
        }),
    };
    let report = j.pack(&opts, &AtomicBool::new(false));
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let closed = j.close();
    let report = report?;
    closed?;
    Ok(report)
}

fn show(bar: &ProgressBar, p: &PackProgress) {
    let phase = match p.phase {
        PackPhase::Marking => "marking",
        PackPhase::Copying => "copying",
        PackPhase::Switching => "switching",
    };
    bar.set_message(format!("{phase}: {} objects", p.objects));
    bar.set_position(p.bytes);
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_in_human_units() {
        let secs = |s| parse_duration(s).map(|d: Duration| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("10m"), Ok(600));
        assert_eq!(secs("2h"), Ok(7200));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("2w"), Ok(1_209_600));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("0s"), Ok(0));
        for (bad, says) in [
            ("", "empty"),
            ("10", "has no unit"),
            ("10x", "unknown unit 'x'"),
            ("h", "expected a number"),
            ("1.5h", "unknown unit '.'"),
            ("-1h", "expected a number"),
            ("99999999999999999999s", "too large"),
            ("999999999999999w", "too long"),
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
