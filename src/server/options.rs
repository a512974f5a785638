//! What a server can be told, and what it knows of the other end of a connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of a [`Server`](super::Server). The defaults suit a server shared by a few
/// hundred clients on one machine or a trusted network.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The largest request a client may send, in bytes: a Durus commit body, a bulk
    /// load, or a v2 frame. A larger one closes that connection. Each connection buffers
    /// at most about this much, which bounds its memory.
    pub max_frame: usize,
    /// How long the rest of a request may take to arrive once its first byte has, and
    /// how long a reply may take to be written. A client stalled mid-frame (or not
    /// reading its replies) is disconnected after this; it never delays anyone else.
    /// Durus's own server uses 10 seconds.
    pub frame_timeout: Duration,
    /// The most connections served at once; further ones are closed as they arrive.
    pub max_connections: usize,
    /// Requests a v2 connection may have in flight at once (pipelining); beyond this
    /// the server stops reading from it until replies have gone out.
    pub max_in_flight: usize,
    /// Bytes of recently loaded and committed records the server keeps in memory, so
    /// that a load it can answer from there needs no file access. 0 turns it off.
    pub cache_bytes: usize,
    /// Commits that take longer than this are logged as slow.
    pub slow_commit: Duration,
    /// Whether shutting down closes the storage (true for a server that owns it).
    pub close_storage: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_frame: 64 << 20,
            frame_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_in_flight: 128,
            cache_bytes: 64 << 20,
            slow_commit: Duration::from_secs(1),
            close_storage: true,
        }
    }
}

/// Who is at the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix-domain socket peer (the path of the socket served, if known).
    Unix(Option<PathBuf>),
    /// A stream the application handed in, described by it. `local` says whether the
    /// peer may shut the server down.
    Other {
        /// A description for the log.
        name: String,
        /// Whether the peer counts as local.
        local: bool,
    },
}

impl Peer {
    /// Whether the peer is on this machine (loopback TCP or a Unix socket). Until
    /// roles exist, only local peers may shut the server down with Durus's `Q`.
    pub fn is_local(&self) -> bool {
        match self {
            Peer::Tcp(a) => a.ip().is_loopback(),
            Peer::Unix(_) => true,
            Peer::Other { local, .. } => *local,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            Peer::Unix(None) => write!(f, "unix"),
            Peer::Other { name, .. } => write!(f, "{name}"),
        }
    }
}
