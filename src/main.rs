//! The `durus` command-line tool.

use std::process::ExitCode;

const USAGE: &str = "\
usage: durus <command> [args]

commands:
  verify <file>    check every checksum, back pointer and checkpoint of a journal
  repair <file>    cut a torn tail off a journal file
  help             print this message
  version          print the version

More commands (serve, info, pack, dump) come in later releases.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help") | Some("--help") | Some("-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("version") | Some("--version") | Some("-V") => {
            println!("durus {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("verify") => {
            match args.get(1) {
                Some(path) => match durus::journal::Journal::verify_path(path) {
                    Ok(r) => {
                        println!(
                        "{path}: ok: {} transactions, {} records, {} checkpoints, last transaction {}, {} bytes",
                        r.transactions, r.records, r.checkpoints, r.last_tid, r.end
                    );
                        if let Some(at) = r.torn_tail {
                            println!("{path}: the last write was cut off at offset {at}; `durus repair` removes it");
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("durus verify: {path}: {e}");
                        ExitCode::FAILURE
                    }
                },
                None => {
                    eprintln!("durus verify: missing <file>\n\n{USAGE}");
                    ExitCode::from(2)
                }
            }
        }
        Some("repair") => match args.get(1) {
            Some(path) => match durus::journal::Journal::repair(path) {
                Ok(r) => {
                    match r.truncated_at {
                        Some(at) => println!(
                            "{path}: cut a torn tail of {} bytes at offset {at}; last transaction {}",
                            r.removed, r.last_tid
                        ),
                        None => println!("{path}: no torn tail; last transaction {}", r.last_tid),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("durus repair: {path}: {e}");
                    ExitCode::FAILURE
                }
            },
            None => {
                eprintln!("durus repair: missing <file>\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some(other) => {
            eprintln!("durus: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
