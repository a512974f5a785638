//! `durus import DURUS-FILE FILE`: a Python Durus database into a new journal.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durus::import::{
    import_durus, ImportOptions, ImportPhase, ImportProgress, ImportProgressFn, ImportReport,
};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::output::{byte_bar, Output};
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Import a Python Durus database file into a new journal
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Import a Python Durus 4.3 database file into a new journal, FILE, which must not exist.
Both of Durus's formats are read: SHELF-1 (FileStorage, the default, packed or not) and
DFS20 (FileStorage2).

The journal holds the newest record of every object, byte for byte as Durus stored it
(the pickles and references untouched), under the same object ids; new objects get ids
after the highest one. Old versions are not copied. Served with `durus serve`, the
journal answers unmodified Python Durus clients as the original file did.

If the Durus file ends in a torn transaction (a commit cut off by a crash: Durus does
not sync its commits), that transaction is left out and a warning on stderr says so,
with its offset and size; with --strict the import is refused instead. A file that is
not a Durus database, or whose framing is damaged elsewhere, is refused. The journal is
written as FILE.importing and renamed to FILE when it is complete and synced, so a
failed or interrupted import leaves no FILE behind.

On a terminal a progress bar is drawn on stderr; the result is one line on stdout.",
    after_long_help = long_help()
)]
pub struct Args {
    /// The Python Durus database file to read (it is not changed)
    #[arg(value_name = "DURUS-FILE", value_hint = clap::ValueHint::FilePath)]
    pub source: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Refuse a Durus file that ends in a torn transaction instead of leaving it out
    #[arg(long)]
    pub strict: bool,
}

fn long_help() -> String {
    LongHelp {
        command: "import",
        examples: &[
            "durus import shop.durus.py shop.durus",
            "durus import --strict /var/lib/app/data.durus shop.durus && durus serve --file shop.durus",
            "durus import --json old.durus shop.durus | jq .report.objects",
        ],
        exit_ok: "imported (a torn last transaction left out is said on stderr)",
        exit_problem: "not a Durus file, damaged (or torn, with --strict), FILE exists, or unreadable",
        success: "\"imported\"",
        report: &[
            "{source (the DURUS-FILE argument), format (\"SHELF-1\" or \"DFS20\"),",
            "source_bytes, source_transactions, source_records (every version),",
            "objects (written: the newest record of each oid), object_bytes,",
            "max_oid (or null), has_root, journal_bytes, torn (null, or",
            "{offset, bytes, reason}: the torn last transaction left out)}",
        ],
    }
    .render()
}

/// The report under its documented names.
#[derive(Serialize)]
struct Report {
    source: String,
    format: &'static str,
    source_bytes: u64,
    source_transactions: u64,
    source_records: u64,
    objects: u64,
    object_bytes: u64,
    max_oid: Option<u64>,
    has_root: bool,
    journal_bytes: u64,
    torn: Option<Torn>,
}

#[derive(Serialize)]
struct Torn {
    offset: u64,
    bytes: u64,
    reason: String,
}

impl Report {
    fn of(source: &Path, r: &ImportReport) -> Report {
        Report {
            source: source.display().to_string(),
            format: r.format.name(),
            source_bytes: r.source_bytes,
            source_transactions: r.source_transactions,
            source_records: r.source_records,
            objects: r.objects,
            object_bytes: r.object_bytes,
            max_oid: r.max_oid.map(|o| o.0),
            has_root: r.has_root,
            journal_bytes: r.journal_bytes,
            torn: r.torn.as_ref().map(|t| Torn {
                offset: t.offset,
                bytes: t.bytes,
                reason: t.reason.clone(),
            }),
        }
    }
}

impl JsonReport for Report {
    fn status(&self) -> &'static str {
        "imported"
    }
}

/// Runs `durus import`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let show_bar = out.bar_wanted();
    let source = args.source.as_path();
    let import = |dest: &Path| {
        let bar = show_bar.then(|| byte_bar(0));
        let mut opts = ImportOptions::default();
        opts.refuse_torn = args.strict;
        opts.progress = bar.clone().map(|b| {
            let f: ImportProgressFn = Arc::new(move |p: &ImportProgress| show(&b, p));
            f
        });
        let r = import_durus(source, dest, &opts);
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        r
    };
    let mut found = None;
    let result = args.store.run(
        "import",
        out,
        |dest| {
            let r = import(dest);
            if let Ok(r) = &r {
                found = Some((r.torn.clone(), r.has_root || r.objects == 0));
            }
            r
        },
        |r| Report::of(source, r),
    )?;
    // Warnings go to stderr whether or not the result is JSON.
    let src = source.display();
    if let Some((torn, has_root)) = found {
        if let Some(t) = torn {
            out.warning(format_args!(
                "durus import: {src}: left out a torn last transaction: {} bytes at offset {} \
                 ({}); `durus import --strict` refuses such a file",
                t.bytes, t.offset, t.reason
            ));
        }
        if !has_root {
            out.warning(format_args!(
                "durus import: {src}: has no root object (oid 0); Durus clients will make a new one"
            ));
        }
    }
    let Some(r) = result else {
        return Ok(());
    };
    let name = args.store.name();
    let next = match r.max_oid {
        Some(max) => format!("; new objects get oids after {max}"),
        None => String::new(),
    };
    out.line(format_args!(
        "{name}: imported {} objects ({}) from {src} ({}, {} transactions, {} records){next}",
        r.objects,
        indicatif::HumanBytes(r.object_bytes),
        r.format,
        r.source_transactions,
        r.source_records,
    ))
}

fn show(bar: &ProgressBar, p: &ImportProgress) {
    let phase = match p.phase {
        ImportPhase::Scanning => "reading",
        ImportPhase::Writing => "writing",
    };
    bar.set_length(p.total);
    bar.set_message(format!("{phase}: {} records", p.records));
    bar.set_position(p.bytes);
}
