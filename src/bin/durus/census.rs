//! `durus census FILE`: objects and bytes per type.

use std::io;

use durus::tools::census::{census_with, Census};
use indicatif::HumanBytes;
use serde::Serialize;

use crate::output::{maybe_bar, object_style, Output};
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Count the objects of each type and their bytes, the most bytes first
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Count the objects of a journal by type, as Durus's get_census does: for each type name,
how many objects have it in their newest record and how many bytes those records take
(data plus 8 per reference), the most bytes first. The journal is read without the
write lock, so it may be open for writing elsewhere.

The type name of a record written by durus is the one its object layer stores; of a
record imported from Python Durus, the class of its pickle (module.name); anything else
counts as (unknown).",
    after_long_help = long_help()
)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
}

fn long_help() -> String {
    LongHelp {
        command: "census",
        examples: &[
            "durus census shop.durus",
            "durus census --json shop.durus | jq '.report.types[0]'",
        ],
        exit_ok: "counted",
        exit_problem: "damaged, unreadable, or not a journal",
        success: "\"counted\"",
        report: &[
            "{objects, bytes (in all), types: [{name, encoding (\"durus\", \"pickle\"",
            "or \"unknown\"), objects, bytes}], the most bytes first}",
        ],
    }
    .render()
}

/// The report under its documented names.
#[derive(Serialize)]
struct Report {
    objects: u64,
    bytes: u64,
    types: Vec<TypeReport>,
}

#[derive(Serialize)]
struct TypeReport {
    name: String,
    encoding: &'static str,
    objects: u64,
    bytes: u64,
}

impl Report {
    fn of(c: &Census) -> Report {
        Report {
            objects: c.objects,
            bytes: c.bytes,
            types: c
                .types
                .iter()
                .map(|t| TypeReport {
                    name: t.name.to_string(),
                    encoding: t.name.encoding(),
                    objects: t.objects,
                    bytes: t.bytes,
                })
                .collect(),
        }
    }
}

impl JsonReport for Report {
    fn status(&self) -> &'static str {
        "counted"
    }
}

/// Runs `durus census`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let bar = maybe_bar(out.bar_wanted(), "counting");
    if let Some(b) = &bar {
        b.0.set_style(object_style());
    }
    let progress = |done, total| {
        if let Some(b) = &bar {
            b.0.set_length(total);
            b.0.set_position(done);
        }
    };
    let made = args
        .store
        .run("census", out, |p| census_with(p, &progress), Report::of);
    drop(bar);
    let Some(c) = made? else {
        return Ok(());
    };
    let width = c
        .types
        .iter()
        .map(|t| t.name.as_str().len())
        .max()
        .unwrap_or(0)
        .max(4);
    out.line(format_args!(
        "{:>10}  {:>12}  {:<width$}",
        "objects", "bytes", "type"
    ))?;
    for t in &c.types {
        out.line(format_args!(
            "{:>10}  {:>12}  {:<width$}",
            t.objects,
            t.bytes,
            t.name.as_str()
        ))?;
    }
    out.line(format_args!(
        "{:>10}  {:>12}  in all ({})",
        c.objects,
        c.bytes,
        HumanBytes(c.bytes)
    ))
}
