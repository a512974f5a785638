//! `durus backup FILE DEST [--incremental]`: a verified copy, whole or brought up to date.

use std::io;
use std::path::PathBuf;

use std::sync::Arc;

use durus::journal::{BackupOptions, BackupProgressFn, BackupReport};
use durus::tools::backup::backup;
use indicatif::HumanBytes;
use serde::Serialize;

use crate::output::{maybe_bar, Output};
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Copy a journal consistently while writers run, verified
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Write a full copy of a journal to DEST while it may be in use (committed to by another
process or served by `durus serve`): the copy holds every transaction committed before
the backup started, is written under a temporary name, synced, verified and only then
renamed to DEST, so DEST never holds a partial copy. A raw byte copy (cp) of a live
journal can catch a write half done; this cannot.

DEST may be missing, empty, or an earlier backup (a durus journal), which is replaced;
anything else there is refused and left alone.

With --incremental, DEST must be an earlier backup of the same journal file: only what
was committed since is appended to it (the journal is append-only, so the old bytes are
kept), then its header slots are updated and the whole of it is verified. DEST is
refused and left untouched if it is not a prefix of the journal: a backup of another
store, of this store before a pack rewrote it, or one that was modified since. A
missing or empty DEST gets a full copy. If the run is interrupted, DEST still opens as
the earlier backup, and the next --incremental run completes it.",
    after_long_help = long_help()
)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Where the copy goes
    #[arg(value_name = "DEST", value_hint = clap::ValueHint::FilePath)]
    pub dest: PathBuf,
    /// Append only what is new to an earlier backup at DEST
    #[arg(long)]
    pub incremental: bool,
}

fn long_help() -> String {
    LongHelp {
        command: "backup",
        examples: &[
            "durus backup shop.durus /backups/shop.durus",
            "durus backup --incremental shop.durus /backups/shop.durus",
            "durus backup --json shop.durus shop.bak | jq .report.last_tid",
        ],
        exit_ok: "copied and verified",
        exit_problem: "the source is damaged, unreadable or not a journal, or DEST\n     \
                       is not a journal (with --incremental: not an earlier backup\n     \
                       of this journal) and was left alone",
        success: "\"copied\"",
        report: &[
            "{dest, bytes (in the copy), last_tid (the last transaction it holds),\n     \
                   written (bytes written: the whole copy, or what was appended)}",
        ],
    }
    .render()
}

/// The report under its documented names.
#[derive(Serialize)]
struct Report {
    dest: String,
    bytes: u64,
    last_tid: u64,
    written: u64,
}

impl JsonReport for Report {
    fn status(&self) -> &'static str {
        "copied"
    }
}

/// Runs `durus backup`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let dest = args.dest.display().to_string();
    let report = |r: &BackupReport| Report {
        dest: dest.clone(),
        bytes: r.bytes,
        last_tid: r.last_tid.0,
        written: r.written,
    };
    let mut opts = if args.incremental {
        BackupOptions::incremental()
    } else {
        BackupOptions::default()
    };
    let bar = maybe_bar(out.bar_wanted(), "copying");
    opts.progress = bar.as_ref().map(|b| {
        let b = b.0.clone();
        let f: BackupProgressFn = Arc::new(move |done, total| {
            b.set_length(total);
            b.set_position(done);
        });
        f
    });
    let made = args
        .store
        .run("backup", out, |p| backup(p, &args.dest, &opts), report);
    drop(bar);
    let Some(r) = made? else {
        return Ok(());
    };
    let how = if r.written < r.bytes {
        format!("appended {} to {dest}", HumanBytes(r.written))
    } else {
        format!("copied to {dest}")
    };
    out.line(format_args!(
        "{}: {how} and verified: {} ({} bytes), up to transaction {}",
        args.store.name(),
        HumanBytes(r.bytes),
        r.bytes,
        r.last_tid
    ))
}
