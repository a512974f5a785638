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

mod backup;
mod census;
mod copy;
mod dump;
mod import;
mod info;
mod output;
mod pack;
mod repair;
mod serve;
mod store;
mod verify;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;

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
  durus info shop.durus
  durus census shop.durus
  durus dump --oid 0 shop.durus
  durus history shop.durus 0
  durus backup shop.durus /backups/shop.durus
  durus copy shop.durus sqlite:shop.sqlite   (between storages, same oids)
  durus import old-durus.durus shop.durus   (a Python Durus file into a journal)
  durus repair shop.durus
  durus pack shop.durus
  durus serve --file shop.durus
  durus -s --file shop.durus --port 2972   (Durus's spelling of serve)
  durus verify --help

Exit status: 0 ok, 1 a problem was found (damage, an unreadable or locked file), 2 a
usage error. Results go to stdout (as JSON with --json where a command offers it),
problems to stderr.";

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    Verify(verify::Args),
    Info(info::Args),
    Census(census::Args),
    Dump(dump::Args),
    Backup(backup::Args),
    Copy(copy::Args),
    History(dump::HistoryArgs),
    Import(import::Args),
    Repair(repair::Args),
    Pack(pack::Args),
    Serve(serve::Args),
    /// Print the version
    Version,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "-s") {
        return durus_server(&args[2..]);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if e.kind() == ErrorKind::InvalidSubcommand => {
            return output::clap_message(&unknown_command(&e))
        }
        Err(e) => return output::clap_message(&e),
    };
    match &cli.command {
        Command::Verify(args) => Output::run(args.store.format, |out| verify::run(args, out)),
        Command::Info(args) => Output::run(args.store.format, |out| info::run(args, out)),
        Command::Census(args) => Output::run(args.store.format, |out| census::run(args, out)),
        Command::Dump(args) => Output::run(args.store.format, |out| dump::run(args, out)),
        Command::History(args) => Output::run(args.store.format, |out| dump::run_history(args, out)),
        Command::Backup(args) => Output::run(args.store.format, |out| backup::run(args, out)),
        Command::Copy(args) => Output::run(args.format, |out| copy::run(args, out)),
        Command::Import(args) => Output::run(args.store.format, |out| import::run(args, out)),
        Command::Repair(args) => Output::run(args.store.format, |out| repair::run(args, out)),
        Command::Pack(args) => Output::run(args.store.format, |out| pack::run(args, out)),
        Command::Serve(args) => Output::run(Format::default(), |out| serve::run(args, out)),
        Command::Version => Output::run(Format::default(), |out| {
            out.line(format_args!("durus {}", env!("CARGO_PKG_VERSION")))
        }),
    }
}

/// `durus -s ...`, Durus's own command line for its server, as `durus serve`.
fn durus_server(rest: &[OsString]) -> ExitCode {
    let argv = std::iter::once(OsString::from("durus -s")).chain(rest.iter().cloned());
    let durus = match serve::DurusArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => return output::clap_message(&e),
    };
    match durus.to_serve() {
        Ok(args) => Output::run(Format::default(), |out| serve::run(&args, out)),
        Err(why) => {
            output::clap_message(&serve::DurusArgs::command().error(ErrorKind::MissingRequiredArgument, why))
        }
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
