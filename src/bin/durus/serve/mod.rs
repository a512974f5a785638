//! `durus serve --file F`: share a journal with Durus and durus clients over TCP or a
//! Unix socket; and `durus -s`, Durus's own spelling, for existing start scripts.
//!
//! The server runs on a small executor (one thread unless `--threads`), its file
//! work on the blocking pool. SIGTERM or SIGINT stops it as a `Q` would: it stops
//! accepting, lets the requests under way finish (commits land and are answered),
//! closes the connections and closes the journal; a second signal exits at once
//! (which loses nothing acknowledged either: every answered commit is durable).

mod durus_compat;
pub(crate) mod logger;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use durus::server::{Address, Listener, Server, ServerOptions, ServerStats};
use durus::storage::FileStorage;
use durus::{Durability, Error};
use futures::StreamExt;
use log::LevelFilter;

use crate::output::Output;

pub use durus_compat::DurusArgs;

/// Serve a journal to Durus 4.3 clients and durus's ClientStorage
#[derive(clap::Args, Debug, Clone)]
#[command(
    long_about = "\
Serve a journal file to clients over TCP or a Unix-domain socket: unmodified Python
Durus 4.3 clients (protocol 1) and durus's ClientStorage (protocol 2), chosen per
connection by the handshake. The server validates every commit itself and, by default,
makes it durable (fdatasync, shared by concurrent commits) before it answers.

Stop it with SIGTERM or SIGINT (or a Durus `Q` from this machine: `durus -s --stop`):
it stops accepting, lets commits under way finish and closes the journal. Connections,
errors and slow commits are logged to stderr (or --log-file), and the counters at the
end (and every --stats-every seconds).",
    after_long_help = "\
Examples:
  durus serve --file shop.durus
  durus serve --file shop.durus --host 0.0.0.0 --port 2972
  durus serve --file shop.durus --address unix:/run/shop.sock
  durus -s --file shop.durus --port 2972      (Durus's own spelling)

Exit status: 0 after a clean shutdown, 1 if the journal could not be opened or the
address not listened on, 2 a usage error."
)]
pub struct Args {
    /// The journal file to serve (created if it does not exist)
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub file: PathBuf,
    /// Host to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, logged at start)
    #[arg(long, default_value_t = 2972)]
    pub port: u16,
    /// Listen here instead of --host/--port: `host:port`, or `unix:PATH` for a
    /// Unix-domain socket
    #[arg(long, value_name = "ADDRESS")]
    pub address: Option<String>,
    /// `immediate`: every commit is on disk before it is answered; `eventual`: handed
    /// to the operating system only (survives a crash of the server, not of the
    /// machine)
    #[arg(long, value_enum, default_value = "immediate")]
    pub durability: DurabilityArg,
    /// Instead of serving, ask the server at the address to shut down (Durus's `Q`,
    /// honoured from this machine only)
    #[arg(long)]
    pub stop: bool,
    /// What to log: error, warn, info (connections, slow commits, the counters), debug,
    /// trace
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = level)]
    pub log_level: LevelFilter,
    /// Append the log to this file instead of stderr
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Log the counters every this many seconds (they are always logged at the end)
    #[arg(long, value_name = "SECONDS")]
    pub stats_every: Option<u64>,
    /// Log commits slower than this many milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub slow_commit_ms: u64,
    /// The most connections served at once
    #[arg(long, value_name = "N", default_value_t = ServerOptions::default().max_connections)]
    pub max_connections: usize,
    /// Bytes of recent records the server keeps in memory for loads
    #[arg(long, value_name = "BYTES", default_value_t = ServerOptions::default().cache_bytes)]
    pub cache_bytes: usize,
    /// Threads that run the connections' protocol work (file work runs on a separate
    /// pool). One is the default: a second adds a hand-off between threads to each
    /// request, which cost 1-client loads 38% in W7 on a 2-core machine
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
}

/// The `--durability` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurabilityArg {
    /// fdatasync before every answer (shared by concurrent commits)
    Immediate,
    /// no sync: the operating system writes when it will
    Eventual,
}

fn level(s: &str) -> Result<LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not one of off, error, warn, info, debug, trace"))
}

impl Args {
    fn address(&self) -> Result<Address, Error> {
        match &self.address {
            Some(a) => a.parse(),
            None if self.host.contains(':') => Ok(Address::Tcp(format!("[{}]:{}", self.host, self.port))),
            None => Ok(Address::Tcp(format!("{}:{}", self.host, self.port))),
        }
    }
}

/// Runs `durus serve` (or `durus -s`).
pub fn run(args: &Args, out: &mut Output) -> std::io::Result<()> {
    let address = match args.address() {
        Ok(a) => a,
        Err(e) => {
            out.problem(format_args!("durus serve: {e}"));
            return Ok(());
        }
    };
    if args.stop {
        return durus_compat::stop(&address, out);
    }
    if let Err(e) = logger::install(args.log_level, args.log_file.as_deref()) {
        out.problem(format_args!("durus serve: the log file: {e}"));
        return Ok(());
    }
    let threads = args.threads.max(1);
    let ex = Arc::new(async_executor::Executor::new());
    // The helper threads end with the process, right after `run` returns.
    for _ in 1..threads {
        let ex = ex.clone();
        std::thread::spawn(move || async_io::block_on(ex.run(futures::future::pending::<()>())));
    }
    let result = async_io::block_on(ex.run(serve(args, address, ex.clone())));
    log::logger().flush();
    if let Err(e) = result {
        out.problem(format_args!("durus serve: {}: {e}", args.file.display()));
    }
    Ok(())
}

async fn serve(
    args: &Args,
    address: Address,
    ex: Arc<async_executor::Executor<'static>>,
) -> durus::Result<()> {
    let durability = match args.durability {
        DurabilityArg::Immediate => Durability::Immediate,
        DurabilityArg::Eventual => Durability::Eventual,
    };
    let journal = durus::journal::JournalOptions {
        durability,
        ..Default::default()
    };
    let storage = FileStorage::open(&args.file, journal).await?;
    let options = ServerOptions {
        slow_commit: Duration::from_millis(args.slow_commit_ms),
        max_connections: args.max_connections,
        cache_bytes: args.cache_bytes,
        ..ServerOptions::default()
    };
    let spawn_on = ex.clone();
    let server = Server::new(storage, options)
        .await?
        .with_spawner(move |f| spawn_on.spawn(f).detach());
    let listener = Listener::bind(&address).await?;
    log::info!(
        "durus {} serving {} ({durability:?} durability)",
        env!("CARGO_PKG_VERSION"),
        args.file.display()
    );
    let signals = async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])?;
    ex.spawn(on_signals(signals, server.clone())).detach();
    if let Some(every) = args.stats_every.filter(|&s| s > 0) {
        ex.spawn(stats_every(server.clone(), Duration::from_secs(every)))
            .detach();
    }
    // A task of its own, not the future `block_on` polls: that one is polled again
    // whenever any task is scheduled, and each poll would retry the accept.
    let accepting = server.clone();
    let ran = ex.spawn(async move { accepting.run(listener).await }).await;
    log::info!("counters: {}", counters(&server.stats()));
    match &ran {
        Ok(()) => log::info!("stopped cleanly"),
        Err(e) => log::error!("stopped with an error: {e}"),
    }
    ran
}

/// The first SIGTERM or SIGINT shuts the server down; a second one exits at once.
async fn on_signals(mut signals: async_signal::Signals, server: Server) {
    let mut seen = 0;
    while let Some(Ok(signal)) = signals.next().await {
        let signal = if signal == async_signal::Signal::Int {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        seen += 1;
        if seen == 1 {
            log::info!("{signal}: shutting down (finishing the requests under way)");
            server.shutdown();
        } else {
            log::warn!("{signal} again: exiting now (every answered commit is durable)");
            log::logger().flush();
            std::process::exit(1);
        }
    }
}

async fn stats_every(server: Server, every: Duration) {
    loop {
        async_io::Timer::after(every).await;
        if server.is_shutting_down() {
            return;
        }
        log::info!("counters: {}", counters(&server.stats()));
    }
}

fn counters(s: &ServerStats) -> String {
    format!(
        "connections {} (open {}, refused {}, v1 {}, v2 {}), protocol errors {}, commits {}, \
         conflicts {}, slow commits {}, loads {} (cache hits {}), packs refused {}, \
         bytes in {}, out {}",
        s.connections,
        s.open_connections,
        s.refused_connections,
        s.v1_sessions,
        s.v2_sessions,
        s.protocol_errors,
        s.commits,
        s.conflicts,
        s.slow_commits,
        s.loads,
        s.cache_hits,
        s.packs_refused,
        s.bytes_received,
        s.bytes_sent
    )
}
