//! The server's counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a server's counters since it started ([`Server::stats`](super::Server::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Connections closed at once because `max_connections` were open.
    pub refused_connections: u64,
    /// Connections closed because of malformed or oversized input or a missed deadline.
    pub protocol_errors: u64,
    /// Connections that negotiated the Durus protocol (v1).
    pub v1_sessions: u64,
    /// Connections that negotiated durus's own protocol (v2).
    pub v2_sessions: u64,
    /// Records loaded for clients.
    pub loads: u64,
    /// Loads answered from the server's record cache.
    pub cache_hits: u64,
    /// Commits that landed.
    pub commits: u64,
    /// Commits refused with a conflict.
    pub conflicts: u64,
    /// Commits slower than `slow_commit`.
    pub slow_commits: u64,
    /// Packs done at a client's request.
    pub packs: u64,
    /// Pack requests that could not be honoured.
    pub packs_refused: u64,
    /// Bytes received from clients.
    pub bytes_received: u64,
    /// Bytes sent to clients.
    pub bytes_sent: u64,
}

/// The live counters.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) open_connections: AtomicU64,
    pub(crate) refused_connections: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) v1_sessions: AtomicU64,
    pub(crate) v2_sessions: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) slow_commits: AtomicU64,
    pub(crate) packs: AtomicU64,
    pub(crate) packs_refused: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ServerStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStats {
            connections: g(&self.connections),
            open_connections: g(&self.open_connections),
            refused_connections: g(&self.refused_connections),
            protocol_errors: g(&self.protocol_errors),
            v1_sessions: g(&self.v1_sessions),
            v2_sessions: g(&self.v2_sessions),
            loads: g(&self.loads),
            cache_hits: g(&self.cache_hits),
            commits: g(&self.commits),
            conflicts: g(&self.conflicts),
            slow_commits: g(&self.slow_commits),
            packs: g(&self.packs),
            packs_refused: g(&self.packs_refused),
            bytes_received: g(&self.bytes_received),
            bytes_sent: g(&self.bytes_sent),
        }
    }
}
