//! `durus -s ...`: Durus 4.3's command line for its server (`python -m durus -s`), so
//! that start and stop scripts written for it work unchanged, and `--stop` (a `Q` to
//! the server, as Durus sends it).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use durus::server::Address;
use log::LevelFilter;

use super::{Args, DurabilityArg};
use crate::output::Output;

/// Run (or stop) a storage server, with Durus 4.3's options: `durus -s --file F --port P`
#[derive(clap::Parser, Debug)]
#[command(
    name = "durus -s",
    after_help = "The same server as `durus serve` (see `durus serve --help`), durable by default."
)]
pub struct DurusArgs {
    /// The journal file to serve
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Port to listen on
    #[arg(long, default_value_t = 2972)]
    pub port: u16,
    /// Host to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The path of a Unix-domain socket to listen on instead of host and port
    #[arg(long, value_name = "PATH")]
    pub address: Option<PathBuf>,
    /// Logging level, as Python's logging numbers it (lower logs more; 20 is info)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub logginglevel: i32,
    /// Append the log to this file (default: stderr)
    #[arg(long, value_name = "PATH")]
    pub logfile: Option<PathBuf>,
    /// Accepted for Durus's scripts; durus's server has no Python garbage collector
    #[arg(long, value_name = "N")]
    pub gcbytes: Option<u64>,
    /// Instead of starting the server, try to stop a running one
    #[arg(long)]
    pub stop: bool,
}

impl DurusArgs {
    /// The `durus serve` arguments these mean, or why there are none.
    pub fn to_serve(&self) -> Result<Args, String> {
        let file = match (&self.file, self.stop) {
            (Some(f), _) => f.clone(),
            // Only the address matters for --stop.
            (None, true) => PathBuf::new(),
            (None, false) => {
                return Err(
                    "--file is needed: durus serves a journal file (Durus's temporary \
                     storage without --file is not offered)"
                        .into(),
                )
            }
        };
        Ok(Args {
            file,
            host: self.host.clone(),
            port: self.port,
            address: self.address.as_ref().map(|p| format!("unix:{}", p.display())),
            durability: DurabilityArg::Immediate,
            stop: self.stop,
            log_level: python_level(self.logginglevel),
            log_file: self.logfile.clone(),
            stats_every: None,
            slow_commit_ms: 1000,
            max_connections: durus::server::ServerOptions::default().max_connections,
            cache_bytes: durus::server::ServerOptions::default().cache_bytes,
            threads: 1,
        })
    }
}

/// Python's logging levels (10 debug, 20 info, 30 warning, 40 error) as `log`'s.
fn python_level(n: i32) -> LevelFilter {
    match n {
        i32::MIN..=9 => LevelFilter::Trace,
        10..=19 => LevelFilter::Debug,
        20..=29 => LevelFilter::Info,
        30..=39 => LevelFilter::Warn,
        _ => LevelFilter::Error,
    }
}

/// Sends Durus's `Q` to the server at `address` and waits (up to ten seconds, as
/// Durus does) until it no longer accepts connections. No server there is not a
/// failure, as for Durus: there is nothing to stop.
pub fn stop(address: &Address, out: &mut Output) -> std::io::Result<()> {
    let Some(mut conn) = connect(address) else {
        return out.line(format_args!("durus: no server seems to be running at {address}"));
    };
    if let Err(e) = conn.write_all(b"Q") {
        out.problem(format_args!("durus: sending Q to {address}: {e}"));
        return Ok(());
    }
    drop(conn);
    let start = Instant::now();
    while connect(address).is_some() {
        if start.elapsed() > Duration::from_secs(10) {
            out.problem(format_args!(
                "durus: the server at {address} still accepts connections (a Q is honoured only \
                 from this machine)"
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    out.line(format_args!("durus: stopped the server at {address}"))
}

fn connect(address: &Address) -> Option<Box<dyn Write>> {
    match address {
        Address::Tcp(a) => std::net::TcpStream::connect(a.as_str())
            .ok()
            .map(|s| Box::new(s) as Box<dyn Write>),
        #[cfg(unix)]
        Address::Unix(p) => std::os::unix::net::UnixStream::connect(p)
            .ok()
            .map(|s| Box::new(s) as Box<dyn Write>),
        #[cfg(not(unix))]
        Address::Unix(_) => None,
    }
}
