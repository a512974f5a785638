//! `durus copy FROM TO`: a whole store into an empty one, between any two kinds.

use std::io;
use std::path::{Path, PathBuf};

use durus::journal::JournalOptions;
use durus::storage::StorageSpec;
use durus::tools::copy::{copy, CopyReport};
use indicatif::HumanBytes;
use serde::Serialize;

use crate::output::{count_spinner, ClearOnDrop, Format, Output};
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Copy a whole store into an empty one of any kind (journal, SQLite, PostgreSQL, server)
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Copy every object of FROM into TO under the same object ids: the newest version of each
as of FROM's last transaction when the copy starts (old versions are not copied, as
after a pack). FROM may be in use meanwhile; what is committed to it during the copy is
not copied. TO must hold no transactions yet: a new file, or an empty server's store.
New objects in TO get ids after the highest one copied.

FROM and TO are storage specs: a journal file (`file:PATH` or a bare PATH), a SQLite file
(`sqlite:PATH`, in builds with the `sqlite` feature), a PostgreSQL database
(`postgres://USER@HOST/DBNAME` or `postgresql:///DBNAME?host=/SOCKET/DIR`, in builds
with the `postgres` feature; TO must hold no durus transactions), a durus server
(`durus://HOST:PORT` or `durus+unix:PATH`). A journal FROM is opened read-only, beside
any writer. If the copy fails, a TO file it created is removed again.

On a terminal a progress counter is drawn on stderr; the result is one line on stdout.",
    after_long_help = long_help()
)]
pub struct Args {
    /// The store to copy (a spec: PATH, file:PATH, sqlite:PATH, postgres://..., durus://HOST:PORT)
    #[arg(value_name = "FROM", value_parser = spec)]
    pub from: String,
    /// The empty store to copy into (a spec, as FROM)
    #[arg(value_name = "TO", value_parser = spec)]
    pub to: String,
    #[command(flatten)]
    pub format: Format,
}

fn long_help() -> String {
    LongHelp {
        command: "copy",
        examples: &[
            "durus copy shop.durus sqlite:shop.sqlite",
            "durus copy sqlite:shop.sqlite file:shop-again.durus",
            "durus copy durus://127.0.0.1:2972 backup.durus",
            "durus copy --json shop.durus sqlite:shop.sqlite | jq .report.objects",
        ],
        exit_ok: "copied",
        exit_problem: "a store could not be opened or read, TO is not empty, or a write failed",
        success: "\"copied\"",
        report: &[
            "{to, objects, bytes (of their states), snapshot (FROM's last tid copied),",
            "transactions (written to TO)}",
        ],
    }
    .render()
}

/// The report under its documented names.
#[derive(Serialize)]
struct Report {
    to: String,
    objects: u64,
    bytes: u64,
    snapshot: u64,
    transactions: u64,
}

impl JsonReport for Report {
    fn status(&self) -> &'static str {
        "copied"
    }
}

/// Runs `durus copy`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let show_bar = out.bar_wanted();
    // The `file` of the JSON object and of messages is FROM.
    let store = StoreArgs {
        file: PathBuf::from(&args.from),
        format: args.format,
    };
    let to_name = args.to.clone();
    let report = |r: &CopyReport| Report {
        to: to_name.clone(),
        objects: r.objects,
        bytes: r.bytes,
        snapshot: r.snapshot.0,
        transactions: r.transactions,
    };
    let op = |_: &Path| run_copy(&args.from, &args.to, show_bar);
    let Some(r) = store.run("copy", out, op, report)? else {
        return Ok(());
    };
    out.line(format_args!(
        "{}: copied {} objects ({}) to {} in {} transaction{}, up to transaction {}",
        args.from,
        r.objects,
        HumanBytes(r.bytes),
        args.to,
        r.transactions,
        if r.transactions == 1 { "" } else { "s" },
        r.snapshot
    ))
}

/// Checks a spec while the command line is parsed, so a bad one is a usage error.
fn spec(s: &str) -> Result<String, String> {
    s.parse::<StorageSpec>()
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn run_copy(from: &str, to: &str, show_bar: bool) -> durus::Result<CopyReport> {
    let from: StorageSpec = from.parse()?;
    let to: StorageSpec = to.parse()?;
    if from.path().is_some() && from.path() == to.path() {
        return Err(durus::Error::Invalid("FROM and TO are the same file".into()));
    }
    // The files a failed copy leaves behind that were not there before it.
    let created: Vec<PathBuf> = match to.path() {
        Some(p) => new_files(p),
        None => Vec::new(),
    };
    let result = futures::executor::block_on(async {
        let source_opts = JournalOptions {
            read_only: true,
            create: false,
            ..JournalOptions::default()
        };
        let source = from.open(&source_opts).await?;
        let dest = to.open(&JournalOptions::default()).await?;
        let bar = show_bar.then(|| ClearOnDrop(count_spinner("copying", "objects")));
        let copied = copy(&*source, &*dest, |n| {
            if let Some(b) = &bar {
                b.0.set_position(n);
            }
        })
        .await;
        drop(bar);
        let closed = dest.close().await;
        let _ = source.close().await;
        let report = copied?;
        closed.map(|()| report)
    });
    if result.is_err() {
        for p in created.iter().filter(|p| p.exists()) {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

/// `path` and the files a store keeps beside it that do not exist yet.
fn new_files(path: &Path) -> Vec<PathBuf> {
    ["", ".lock", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .filter(|p| !p.exists())
        .collect()
}
