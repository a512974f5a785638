//! The `durus` command-line tool (feature `cli`, on by default).
//!
//! One module per subcommand, each with its clap `Args` and a `run(args, out)`;
//! [`store`] names the database file and describes failures the same way for all of
//! them, and [`output`] decides where text and JSON go and what the exit status is (0
//! ok, 1 a problem found, 2 a usage error). A new subcommand is a module, a variant of
//! [`Command`] and a line in [`main`].
#![forbid(unsafe_code)]
// Every byte goes through `output`, which survives a closed pipe; these macros panic.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod output;
mod repair;
mod store;
mod verify;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};

use output::{Format, Output};

/// Tools for durus database files
#[derive(Parser, Debug)]
#[command(
    name = "durus",
    version,
    after_help = "Run `durus <COMMAND> --help` for a command's details and examples.",
    after_long_help = AFTER_LONG_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const AFTER_LONG_HELP: &str = "\
Examples:
  durus verify shop.durus
  durus repair shop.durus
  durus verify --help

Exit status: 0 ok, 1 a problem was found (damage, an unreadable or locked file), 2 a
usage error. Results go to stdout (as JSON with --json where a command offers it),
problems to stderr.";

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    Verify(verify::Args),
    Repair(repair::Args),
    /// Print the version
    Version,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.kind() == ErrorKind::InvalidSubcommand => {
            return output::clap_message(&unknown_command(&e))
        }
        Err(e) => return output::clap_message(&e),
    };
    match &cli.command {
        Command::Verify(args) => Output::run(args.store.format, |out| verify::run(args, out)),
        Command::Repair(args) => Output::run(args.store.format, |out| repair::run(args, out)),
        Command::Version => Output::run(Format::default(), |out| {
            out.line(format_args!("durus {}", env!("CARGO_PKG_VERSION")))
        }),
    }
}

/// clap's error for an unknown subcommand, worded as `durus` always has ("unknown
/// command"), keeping clap's suggestion of a similar one.
fn unknown_command(e: &clap::Error) -> clap::Error {
    let name = match e.get(ContextKind::InvalidSubcommand) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let tip = match e.get(ContextKind::SuggestedSubcommand) {
        Some(ContextValue::String(s)) => format!("\n\n  tip: a similar command exists: '{s}'"),
        Some(ContextValue::Strings(s)) if !s.is_empty() => {
            format!("\n\n  tip: similar commands exist: '{}'", s.join("', '"))
        }
        _ => String::new(),
    };
    Cli::command().error(
        ErrorKind::InvalidSubcommand,
        format!("unknown command '{name}'{tip}"),
    )
}
