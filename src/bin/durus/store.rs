//! Naming a store on the command line and describing what went wrong with it.
//!
//! Every subcommand that works on a database file takes [`StoreArgs`] (the `FILE`
//! argument and `--json`, with the same names and help everywhere), runs its operation
//! through [`StoreArgs::run`], which reports a failure on stderr as
//! `durus COMMAND: FILE: error` and, with `--json`, prints the result in the one
//! [`StoreJson`] shape (a failure as a [`Failure`]), and ends its long help with a
//! [`LongHelp`]. The subcommands that read a store as a database (info, census, dump,
//! history, backup) open it read-only in the library (`durus::tools`), so that beside
//! a writer they all behave alike.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::output::{Format, Output};

/// The arguments of every subcommand on a database file: the file, and `--json`.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// The journal file (a durus database)
    #[arg(value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub file: PathBuf,
    #[command(flatten)]
    pub format: Format,
}

impl StoreArgs {
    /// The file as given.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The file as messages and the JSON `file` field name it.
    pub fn name(&self) -> String {
        self.file.display().to_string()
    }

    /// Runs `op` on the file for subcommand `command`. A failure is reported on stderr
    /// (which makes the exit status 1). With `--json` the result object is printed, as
    /// [`StoreJson`] of `op`'s value turned into a report by `report`. Returns the value
    /// for the subcommand to print as text, or `None` when there is nothing left to
    /// print.
    pub fn run<T, R: JsonReport>(
        &self,
        command: &'static str,
        out: &mut Output,
        op: impl FnOnce(&Path) -> durus::Result<T>,
        report: impl FnOnce(&T) -> R,
    ) -> io::Result<Option<T>> {
        let result = op(self.path()).map_err(|e| {
            out.problem(format_args!("durus {command}: {}: {e}", self.name()));
            Failure::new(&e)
        });
        if out.json_wanted() {
            let json = StoreJson::new(command, self, result.as_ref().map(report));
            out.json(&json)?;
            return Ok(None);
        }
        Ok(result.ok())
    }
}

/// A subcommand's report as its `--json` object carries it.
pub trait JsonReport: Serialize {
    /// The object's `status` for this success.
    fn status(&self) -> &'static str;
}

/// The end of a store subcommand's long `--help`: examples, exit statuses and its
/// `--json` object, whose common keys are described here once.
pub struct LongHelp {
    /// The subcommand.
    pub command: &'static str,
    /// Command lines.
    pub examples: &'static [&'static str],
    /// What exit status 0 means for it.
    pub exit_ok: &'static str,
    /// What exit status 1 means for it.
    pub exit_problem: &'static str,
    /// The `status` values of a success.
    pub success: &'static str,
    /// The keys of `report`, described, as lines.
    pub report: &'static [&'static str],
}

impl LongHelp {
    /// The text.
    pub fn render(&self) -> String {
        const INDENT: &str = "\n            ";
        let LongHelp {
            command,
            examples,
            exit_ok,
            exit_problem,
            success,
            report,
        } = self;
        let examples = examples
            .iter()
            .map(|e| format!("  {e}"))
            .collect::<Vec<_>>()
            .join("\n");
        let report = report.join(INDENT);
        format!(
            "Examples:\n{examples}\n\n\
             Exit status:\n  0  {exit_ok}\n  1  {exit_problem}\n  2  a usage error\n\n\
             JSON (--json), one object on stdout, the same keys every time:\n  \
             command   \"{command}\"\n  \
             file      the FILE argument\n  \
             status    success: {success}{INDENT}\
             failure: \"damaged\" (damage, or dangling references), or \"error\"{INDENT}\
             (locked, unreadable, not a journal)\n  \
             ok        true exactly when the exit status is 0\n  \
             report    null unless ok, else an object:{INDENT}{report}\n  \
             error     null when ok, else {{kind, offset, message}}; kind is \"corrupt\"{INDENT}\
             (offset set), \"dangling_refs\", \"locked\", \"format\", \"version\",{INDENT}\
             \"not_durus\" (import: not a Python Durus file), \"not_prefix\" (backup{INDENT}\
             --incremental: DEST is not an earlier backup), \"not_found\" (dump,{INDENT}\
             history: no such object), \"io\" or \"other\""
        )
    }
}

/// The `--json` object of a subcommand on a store: the same keys every time, with
/// `report` set when the operation succeeded and `error` when it failed.
#[derive(Debug, Serialize)]
struct StoreJson<'a, R> {
    /// The subcommand.
    command: &'static str,
    /// The FILE argument.
    file: String,
    /// The subcommand's word for a success, or `damaged` or `error`.
    status: &'static str,
    /// True exactly when the exit status is 0.
    ok: bool,
    /// The subcommand's report.
    report: Option<R>,
    /// What went wrong.
    error: Option<&'a Failure>,
}

impl<'a, R: JsonReport> StoreJson<'a, R> {
    /// The object for `result`: a success's report, or a failure.
    fn new(command: &'static str, store: &StoreArgs, result: Result<R, &'a Failure>) -> Self {
        let (status, report, error) = match result {
            Ok(report) => (report.status(), Some(report), None),
            Err(f) if f.is_damage() => ("damaged", None, Some(f)),
            Err(f) => ("error", None, Some(f)),
        };
        StoreJson {
            command,
            file: store.name(),
            status,
            ok: error.is_none(),
            report,
            error,
        }
    }
}

/// What a failed operation on a store reports.
#[derive(Debug, Serialize)]
struct Failure {
    /// What kind of failure: `corrupt` (the file is damaged; `offset` says where),
    /// `dangling_refs` (reachable records refer to object ids that have no record),
    /// `locked` (another process writes it), `format` (not a durus journal), `version`
    /// (written by a newer durus), `not_durus` (an import's source is not a Python
    /// Durus file), `not_prefix` (an incremental backup's DEST is not an earlier backup of
    /// the store), `not_found` (no such object), `io` (the operating system refused: missing file,
    /// permissions), or `other`.
    kind: &'static str,
    /// The byte offset of the damage, for `corrupt`.
    offset: Option<u64>,
    /// The error as text, as the human output shows it.
    message: String,
}

impl Failure {
    /// Describes `e`.
    fn new(e: &durus::Error) -> Failure {
        use durus::Error;
        let (kind, offset) = match e {
            Error::Corrupt { offset, .. } => ("corrupt", Some(*offset)),
            Error::DanglingRefs { .. } => ("dangling_refs", None),
            Error::Locked { .. } => ("locked", None),
            Error::Format { .. } => ("format", None),
            Error::NotDurus { .. } => ("not_durus", None),
            Error::NotPrefix { .. } => ("not_prefix", None),
            Error::Version { .. } => ("version", None),
            Error::NotFound { .. } => ("not_found", None),
            Error::Io(_) => ("io", None),
            _ => ("other", None),
        };
        Failure {
            kind,
            offset,
            message: e.to_string(),
        }
    }

    /// True when the file itself is damaged (its bytes, or references to objects that
    /// are not there), as opposed to being unreadable or busy.
    fn is_damage(&self) -> bool {
        matches!(self.kind, "corrupt" | "dangling_refs")
    }
}
