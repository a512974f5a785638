//! Output shared by every subcommand.
//!
//! - Results go to stdout: lines of text, or with `--json` one JSON object (documented
//!   by each subcommand's `--help`; fields are only ever added, never renamed).
//! - Problems go to stderr, and mark the run as failed.
//! - The exit status is 0 when all is well, 1 when a problem was found (damage, an
//!   unreadable file, a refusal), 2 for a usage error (clap's, in `main`).
//! - A closed stdout (`durus verify f | head -1`) is not an error: writing stops
//!   quietly and the status already decided stands. Nothing here panics on a failed
//!   write, which is why the binary never uses `println!`, `print!` or `eprintln!`.
//!
//! Progress reporting, when a long-running subcommand (pack, copy, import) adds it,
//! belongs here too: on stderr, only when stderr is a terminal and `--json` is off.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use std::sync::atomic::{AtomicU64, Ordering};

use durus::journal::io::FileIo;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How a run ended, as the exit status tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Exit status 0.
    Ok,
    /// Exit status 1: a problem was found or the work could not be done.
    Problem,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        match s {
            Status::Ok => ExitCode::SUCCESS,
            Status::Problem => ExitCode::FAILURE,
        }
    }
}

/// The exit status of a usage error (clap's own convention too).
pub const USAGE_ERROR: u8 = 2;

/// The `--json` flag, for subcommands whose result a script may parse.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct Format {
    /// Print the result as one JSON object on stdout (`--help` lists its fields)
    #[arg(long)]
    pub json: bool,
}

/// Where a subcommand writes, and the status it has decided so far.
#[derive(Debug)]
pub struct Output {
    format: Format,
    status: Status,
}

impl Output {
    /// Runs `body` with an output in `format` and turns what happened into the exit
    /// status: [`Status::Problem`] if `body` reported a problem or a write to stdout
    /// failed other than by the reader having gone; a closed stdout keeps the status
    /// `body` had decided.
    pub fn run(format: Format, body: impl FnOnce(&mut Output) -> io::Result<()>) -> ExitCode {
        let mut out = Output {
            format,
            status: Status::Ok,
        };
        match body(&mut out) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => out.problem(format_args!("durus: writing the output: {e}")),
        }
        out.status.into()
    }

    /// True when the result is to be printed as JSON.
    pub fn json_wanted(&self) -> bool {
        self.format.json
    }

    /// True when a progress bar is to be drawn: stderr is a terminal and the result is
    /// not JSON for a script.
    pub fn bar_wanted(&self) -> bool {
        !self.json_wanted() && io::stderr().is_terminal()
    }

    /// Writes one line of text to stdout.
    pub fn line(&mut self, line: fmt::Arguments) -> io::Result<()> {
        write_line(&mut io::stdout().lock(), line)
    }

    /// Writes `value` to stdout as one line of JSON.
    pub fn json<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        serde_json::to_writer(&mut stdout, value).map_err(io::Error::from)?;
        stdout.write_all(b"\n")?;
        stdout.flush()
    }

    /// Writes a warning to stderr: something the user should know that does not make
    /// the run fail (the exit status stays as it is).
    pub fn warning(&mut self, message: fmt::Arguments) {
        let _ = write_line(&mut io::stderr().lock(), message);
    }

    /// Reports a problem on stderr and makes the exit status 1. A failure to write to
    /// stderr is ignored: there is nowhere left to report it, and the status says it.
    pub fn problem(&mut self, message: fmt::Arguments) {
        self.status = Status::Problem;
        let _ = write_line(&mut io::stderr().lock(), message);
    }
}

/// Writes `line` and a newline, then flushes, so a closed reader is noticed at the
/// line that could not be delivered.
fn write_line(w: &mut impl Write, line: fmt::Arguments) -> io::Result<()> {
    w.write_fmt(line)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// Writes clap's help, version or usage error where clap says it belongs (stdout for
/// help and version, stderr for errors), ignoring a closed stream, and returns clap's
/// exit status for it: 0 for help and version, [`USAGE_ERROR`] otherwise.
pub fn clap_message(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(USAGE_ERROR))
}

/// A progress bar over `len` bytes on stderr, for a long command on a terminal (the
/// caller decides whether to draw one: only when stderr is a terminal and `--json` is
/// off).
pub fn byte_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg:28} [{bar:30}] {bytes}/{total_bytes} ({elapsed})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The style of a bar that counts objects rather than bytes.
pub fn object_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg:28} [{bar:30}] {pos}/{len} objects ({elapsed})")
        .map_or_else(|_| ProgressStyle::default_bar(), |s| s.progress_chars("=> "))
}

/// A counter of `what` with no known total (a spinner, the count and the rate), on
/// stderr, for the same callers as [`byte_bar`].
pub fn count_spinner(msg: &'static str, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_message(msg);
    let template = format!("{{msg}} {{spinner}} {{pos}} {what} ({{per_sec}}, {{elapsed}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// A byte bar (see [`byte_bar`]) if `wanted`, with `msg`, cleared when dropped.
pub fn maybe_bar(wanted: bool, msg: &'static str) -> Option<ClearOnDrop> {
    // `with_message` draws nothing: the bar first shows when its length is known.
    wanted.then(|| ClearOnDrop(byte_bar(0).with_message(msg)))
}

/// A progress bar that is cleared from the terminal when the work is done.
#[derive(Debug)]
pub struct ClearOnDrop(pub ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A file whose reads move a progress bar to the furthest byte read (`verify` reads a
/// journal from its start to its end).
pub struct BarIo {
    inner: durus::journal::io::OsFile,
    bar: ProgressBar,
    furthest: AtomicU64,
}

impl BarIo {
    /// Opens `path` for reading, the bar's length set to the file's.
    pub fn open(path: &std::path::Path, bar: ProgressBar) -> io::Result<BarIo> {
        let file = std::fs::File::open(path)?;
        bar.set_length(file.metadata()?.len());
        Ok(BarIo {
            inner: durus::journal::io::OsFile::new(file),
            bar,
            furthest: AtomicU64::new(0),
        })
    }
}

impl FileIo for BarIo {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        let reached = offset + n as u64;
        if self.furthest.fetch_max(reached, Ordering::Relaxed) < reached {
            self.bar.set_position(reached);
        }
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
}
