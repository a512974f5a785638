//! `durus dump FILE`: records decoded, and `durus history FILE OID`: an object's
//! versions.

use std::io;
use std::path::Path;

use durus::tools::dump::{dump_each, history, At, Dumped, State, Version};
use durus::{Oid, Tid};
use serde::Serialize;
use serde_json::Value as Json;

use crate::info::utc;
use crate::output::Output;
use crate::store::{JsonReport, LongHelp, StoreArgs};

/// Print records: oid, tid, type, refs and the state as JSON
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Print the records of a journal without changing it: for each object its oid, the
transaction that wrote the version shown, its type name, its references and its state,
decoded from CBOR and shown as JSON (a pickled record imported from Python Durus is
shown as its class name and size). By default the newest version of every object;
--oid picks one object, --at or --at-time the versions visible at a transaction or a
moment.",
    after_long_help = dump_help()
)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this object
    #[arg(long, value_name = "N")]
    pub oid: Option<u64>,
    /// The versions visible at this transaction
    #[arg(long, value_name = "TID", conflicts_with = "at_time")]
    pub at: Option<u64>,
    /// The versions visible at this moment, in microseconds since the Unix epoch
    #[arg(long, value_name = "T")]
    pub at_time: Option<u64>,
}

fn dump_help() -> String {
    LongHelp {
        command: "dump",
        examples: &[
            "durus dump shop.durus",
            "durus dump --oid 0 --at 12 shop.durus",
            "durus dump --json shop.durus | jq '.report.records[] | select(.type == \"shop.Item\")'",
        ],
        exit_ok: "printed",
        exit_problem: "damaged, unreadable, not a journal, or no such object then",
        success: "\"dumped\"",
        report: &[
            "{records: [{oid, tid, type, encoding (\"durus\", \"pickle\" or \"unknown\"),",
            "refs, bytes, state (the CBOR state as JSON; null when not decoded),",
            "undecodable (why not, or null)}]}",
        ],
    }
    .render()
}

/// List every version of one object with its transaction and time
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
List every version of one object that the journal holds, oldest first: the transaction
that wrote it and its commit time, the type name, size and references. A packed file
holds only the versions its pack kept.",
    after_long_help = history_help()
)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The object
    #[arg(value_name = "OID")]
    pub oid: u64,
}

fn history_help() -> String {
    LongHelp {
        command: "history",
        examples: &[
            "durus history shop.durus 0",
            "durus history --json shop.durus 7 | jq '.report.versions | length'",
        ],
        exit_ok: "listed",
        exit_problem: "damaged, unreadable, not a journal, or no such object",
        success: "\"listed\"",
        report: &[
            "{oid, versions: [{tid, time (microseconds since the Unix epoch), type,",
            "bytes, refs}]}",
        ],
    }
    .render()
}

/// A CBOR value as JSON: maps with keys that are not text get their key as JSON text,
/// byte strings become hex text, tags show their value.
fn to_json(v: &ciborium::Value) -> Json {
    use ciborium::Value as C;
    match v {
        C::Integer(i) => {
            let i = i128::from(*i);
            match (i64::try_from(i), u64::try_from(i)) {
                (Ok(n), _) => Json::from(n),
                (_, Ok(n)) => Json::from(n),
                _ => Json::from(i.to_string()),
            }
        }
        C::Bytes(b) => Json::from(b.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        C::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        C::Text(s) => Json::from(s.as_str()),
        C::Bool(b) => Json::from(*b),
        C::Null => Json::Null,
        C::Tag(_, inner) => to_json(inner),
        C::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        C::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        C::Text(s) => s.clone(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        _ => Json::Null,
    }
}

#[derive(Serialize)]
struct RecordReport {
    oid: u64,
    tid: u64,
    #[serde(rename = "type")]
    type_name: String,
    encoding: &'static str,
    refs: Vec<u64>,
    bytes: u64,
    state: Json,
    undecodable: Option<String>,
}

impl RecordReport {
    fn of(d: &Dumped) -> RecordReport {
        let (state, undecodable) = match &d.state {
            State::Cbor(v) => (to_json(v), None),
            State::Pickle => (Json::Null, None),
            State::Undecodable(why) => (Json::Null, Some(why.clone())),
        };
        RecordReport {
            oid: d.oid.0,
            tid: d.tid.0,
            type_name: d.type_name.to_string(),
            encoding: d.type_name.encoding(),
            refs: d.refs.iter().map(|o| o.0).collect(),
            bytes: d.bytes,
            state,
            undecodable,
        }
    }
}

#[derive(Serialize)]
struct DumpReport {
    records: Vec<RecordReport>,
}

impl JsonReport for DumpReport {
    fn status(&self) -> &'static str {
        "dumped"
    }
}

/// Runs `durus dump`.
pub fn run(args: &Args, out: &mut Output) -> io::Result<()> {
    let at = match (args.at, args.at_time) {
        (Some(t), _) => At::Tid(Tid(t)),
        (None, Some(ts)) => At::Time(ts),
        (None, None) => At::Newest,
    };
    let oid = args.oid.map(Oid);
    if out.json_wanted() {
        // One JSON object, whose status comes first: the records are gathered (as
        // their reports, not as loaded) before it is printed.
        let records = std::cell::RefCell::new(Vec::new());
        let op = |p: &Path| {
            dump_each(p, oid, at, &mut |d| {
                records.borrow_mut().push(RecordReport::of(&d));
                Ok(())
            })
        };
        let report = |_: &()| DumpReport {
            records: records.take(),
        };
        args.store.run("dump", out, op, report)?;
        return Ok(());
    }
    // Text is printed as the records are read, so that a large store is never held.
    let mut stdout_failed = None;
    let shown = dump_each(args.store.path(), oid, at, &mut |d| {
        show(out, &d).map_err(|e| {
            let stop = durus::Error::Invalid(format!("writing to stdout: {e}"));
            stdout_failed = Some(e);
            stop
        })
    });
    if let Some(e) = stdout_failed {
        return Err(e);
    }
    if let Err(e) = shown {
        out.problem(format_args!("durus dump: {}: {e}", args.store.name()));
    }
    Ok(())
}

/// Prints one record as text.
fn show(out: &mut Output, d: &Dumped) -> io::Result<()> {
    let r = RecordReport::of(d);
    let refs = r.refs.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
    out.line(format_args!(
        "oid {} tid {} {} ({} bytes) refs [{refs}]",
        r.oid, r.tid, r.type_name, r.bytes
    ))?;
    match (&d.state, r.undecodable) {
        (State::Cbor(_), _) => out.line(format_args!("  {}", r.state)),
        (State::Pickle, _) => out.line(format_args!("  (a pickle, not decoded)")),
        (State::Undecodable(_), Some(why)) => out.line(format_args!("  (undecodable: {why})")),
        (State::Undecodable(_), None) => Ok(()),
    }
}

#[derive(Serialize)]
struct VersionReport {
    tid: u64,
    time: u64,
    #[serde(rename = "type")]
    type_name: String,
    bytes: u64,
    refs: Vec<u64>,
}

#[derive(Serialize)]
struct HistoryReport {
    oid: u64,
    versions: Vec<VersionReport>,
}

impl JsonReport for HistoryReport {
    fn status(&self) -> &'static str {
        "listed"
    }
}

/// Runs `durus history`.
pub fn run_history(args: &HistoryArgs, out: &mut Output) -> io::Result<()> {
    let oid = Oid(args.oid);
    let report = |vs: &Vec<Version>| HistoryReport {
        oid: oid.0,
        versions: vs
            .iter()
            .map(|v| VersionReport {
                tid: v.tid.0,
                time: v.timestamp,
                type_name: v.type_name.to_string(),
                bytes: v.bytes,
                refs: v.refs.iter().map(|o| o.0).collect(),
            })
            .collect(),
    };
    let Some(versions) = args.store.run("history", out, |p| history(p, oid), report)? else {
        return Ok(());
    };
    for v in &versions {
        out.line(format_args!(
            "tid {} at {}  {} ({} bytes, {} refs)",
            v.tid,
            utc(v.timestamp),
            v.type_name,
            v.bytes,
            v.refs.len()
        ))?;
    }
    Ok(())
}
