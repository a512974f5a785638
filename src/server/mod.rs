//! The storage server: any [`Storage`] shared over TCP or a Unix socket, speaking the
//! Durus protocol (v1, so unmodified Python Durus 4.3 clients work) and durus's own
//! protocol (v2, for [`ClientStorage`](crate::client::ClientStorage)), chosen per
//! connection by the handshake. `docs/PROTOCOL.md` documents both.
//!
//! ```
//! use durus::server::{Address, Listener, Server, ServerOptions};
//! use durus::storage::MemoryStorage;
//!
//! # fn main() -> durus::Result<()> {
//! futures::executor::block_on(async {
//!     let server = Server::new(MemoryStorage::new(), ServerOptions::default()).await?;
//!     let listener = Listener::bind(&"127.0.0.1:0".parse::<Address>()?).await?;
//!     let stop = server.clone();
//!     let run = server.run(listener);
//!     stop.shutdown(); // from another task, or a signal handler
//!     run.await?;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # What the server guarantees
//!
//! - Every commit goes through the storage's commit path, validated there (v1
//!   commits too: the server, not the client, decides conflicts), and is durable
//!   under the storage's durability before it is acknowledged. Concurrent commits
//!   from many connections share syncs through the file storage's group commit.
//! - A request is read whole, within [`ServerOptions::max_frame`] and
//!   [`ServerOptions::frame_timeout`], before it touches anything shared; a
//!   malformed, oversized or stalled request closes that one connection (logged,
//!   counted) and stores nothing.
//! - Shutting down ([`Server::shutdown`], or a Durus `Q` from a local client) stops
//!   accepting, lets requests under way finish (commits land and are answered),
//!   closes the connections and then the storage.
//!
//! Pack (`P`) runs [`Storage::pack`] while every other
//! connection goes on; it is answered `O` when done, or `K` (a Durus client's
//! `ProtocolError`) if the storage cannot pack or refused to.

mod cache;
mod conn;
mod history;
pub(crate) mod io;
mod listen;
mod options;
mod shared;
mod stats;
mod v1;
mod v2;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::io::{AsyncRead, AsyncWrite};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::error::Result;
use crate::storage::Storage;

pub use listen::{Address, BoxedStream, Listener, Stream};
pub use options::{Peer, ServerOptions};
pub use stats::ServerStats;

use shared::Shared;

/// Runs a connection's future somewhere: `tokio::spawn`, `smol::spawn(..).detach()`,
/// an executor of the application's.
pub type Spawner = Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>;

/// A storage server. Cheap to clone; clones share the server (one may run it while
/// another shuts it down or reads its counters).
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
    spawner: Option<Spawner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("options", &self.shared.options)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Server {
    /// A server for `storage`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it resolves leaves the storage as it was.
    pub async fn new(storage: impl Storage, options: ServerOptions) -> Result<Server> {
        Server::from_arc(Arc::new(storage), options).await
    }

    /// A server for a storage the application also holds.
    ///
    /// # Cancel safety
    ///
    /// As for [`Server::new`].
    pub async fn from_arc(storage: Arc<dyn Storage>, options: ServerOptions) -> Result<Server> {
        Ok(Server {
            shared: Arc::new(Shared::new(storage, options).await?),
            spawner: None,
        })
    }

    /// Runs each connection as its own task through `spawn`, so that connections are
    /// served in parallel on a multi-threaded executor. Without a spawner,
    /// [`run`](Server::run) drives every connection itself, inside its own future
    /// (which works on any executor, but on one thread at a time).
    pub fn with_spawner(mut self, spawn: impl Fn(BoxFuture<'static, ()>) + Send + Sync + 'static) -> Server {
        self.spawner = Some(Arc::new(spawn));
        self
    }

    /// Accepts and serves connections until [`shutdown`](Server::shutdown) (or a
    /// local Durus client's `Q`); then waits for the connections to finish what they
    /// are doing and, if [`ServerOptions::close_storage`], closes the storage.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops accepting and drops the connections it drives
    /// itself (spawned ones go on); commits already handed to the storage still land,
    /// but their clients get no answer. Prefer [`shutdown`](Server::shutdown).
    pub async fn run(&self, listener: Listener) -> Result<()> {
        match listener.address() {
            Some(a) => log::info!("serving on {a}"),
            None => log::info!("serving"),
        }
        let mut inline: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
        loop {
            let accept = std::pin::pin!(listener.accept());
            let stop = std::pin::pin!(self.shared.shutdown.wait());
            let either = futures::future::select(accept, stop);
            let drive = async {
                loop {
                    if inline.next().await.is_none() {
                        futures::future::pending::<()>().await;
                    }
                }
            };
            let accepted = {
                let drive = std::pin::pin!(drive);
                match futures::future::select(either, drive).await {
                    futures::future::Either::Left((futures::future::Either::Left((a, _)), _)) => a,
                    futures::future::Either::Left((futures::future::Either::Right(_), _)) => break,
                    futures::future::Either::Right(_) => continue,
                }
            };
            if self.shared.shutdown.is_set() {
                // Accepted in the same instant as the shutdown: not served.
                break;
            }
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Running out of file descriptors and the like: the listener
                    // itself is fine, and the condition may pass.
                    log::warn!("accept failed: {e}");
                    continue;
                }
            };
            let open = self.shared.counters.open_connections.load(Ordering::Relaxed) as usize;
            if open >= self.shared.options.max_connections {
                stats::add(&self.shared.counters.refused_connections, 1);
                log::warn!("{peer}: refused, {open} connections are open");
                continue;
            }
            let shared = self.shared.clone();
            let opened = conn::Opened::new(&shared);
            let fut: BoxFuture<'static, ()> =
                Box::pin(async move { conn::serve(stream, &shared, peer, opened).await });
            match &self.spawner {
                Some(spawn) => spawn(fut),
                None => inline.push(fut),
            }
        }
        drop(listener);
        log::info!("shutting down: waiting for the connections to finish");
        while inline.next().await.is_some() {}
        loop {
            if self.shared.counters.open_connections.load(Ordering::SeqCst) == 0 {
                break;
            }
            let ended = self.shared.connection_ended.listen();
            if self.shared.counters.open_connections.load(Ordering::SeqCst) == 0 {
                break;
            }
            ended.await;
        }
        if self.shared.options.close_storage {
            self.shared.storage.close().await?;
            log::info!("storage closed");
        }
        Ok(())
    }

    /// Serves one connection the application accepted itself (any `futures::io`
    /// stream: a tokio stream through tokio-util's compat layer, a TLS stream, a
    /// pipe), until it ends.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the connection; a commit it had handed to the
    /// storage still lands, unanswered.
    pub async fn serve_connection<S>(&self, stream: S, peer: Peer)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let opened = conn::Opened::new(&self.shared);
        conn::serve(stream, &self.shared, peer, opened).await
    }

    /// Asks the server to shut down (see [`run`](Server::run)); returns at once.
    pub fn shutdown(&self) {
        self.shared.shutdown.trigger();
    }

    /// Whether the server was asked to shut down.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_set()
    }

    /// The server's counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.snapshot()
    }

    /// The storage served.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }
}
