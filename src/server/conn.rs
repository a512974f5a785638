//! One connection from accept to close: the handshake decides the protocol, a
//! session serves it, and the end is logged and counted.

use std::sync::atomic::Ordering;

use futures::io::{AsyncRead, AsyncWrite};

use super::io::{Conn, Ended, Input};
use super::options::Peer;
use super::shared::Shared;
use super::stats::add;
use crate::error::Error;
use crate::protocol::v1::{self, Request};
use crate::protocol::{PROTOCOL_V1, PROTOCOL_V2};

/// How long a connection closed for a shutdown waits at most for its client to close
/// too (see [`Conn::close_gracefully`]).
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// A connection counted as open, from the moment it was accepted (before its task
/// runs, so that a shutdown waiting for open connections cannot miss it) until it ends.
pub(crate) struct Opened(());

impl Opened {
    /// Counts a connection as open.
    pub(crate) fn new(shared: &Shared) -> Opened {
        add(&shared.counters.connections, 1);
        add(&shared.counters.open_connections, 1);
        Opened(())
    }
}

/// Serves one connection to its end.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    shared: &Shared,
    peer: Peer,
    opened: Opened,
) {
    let counters = shared.counters.clone();
    log::info!("{peer}: connected");
    let conn = Conn {
        stream,
        input: Input::new(),
        counters: counters.clone(),
        timeout: shared.options.frame_timeout,
        max_frame: shared.options.max_frame,
    };
    let mut conn = conn;
    let ended = session(&mut conn, shared, &peer).await;
    // Counted before the connection closes, so that whoever sees it closed sees the
    // count too.
    match ended {
        Ended::Closed => log::info!("{peer}: closed"),
        Ended::Shutdown => {
            conn.close_gracefully(shared.options.frame_timeout.min(LINGER))
                .await;
            log::info!("{peer}: closed for shutdown");
        }
        Ended::Failed(Error::Protocol { reason }) => {
            add(&counters.protocol_errors, 1);
            log::warn!("{peer}: closed: {reason}");
        }
        Ended::Failed(e) => log::warn!("{peer}: closed after an error: {e}"),
    }
    drop(conn);
    let Opened(()) = opened;
    counters.open_connections.fetch_sub(1, Ordering::SeqCst);
    shared.connection_ended.notify(usize::MAX);
}

async fn session<S: AsyncRead + AsyncWrite + Unpin + Send>(
    conn: &mut Conn<S>,
    shared: &Shared,
    peer: &Peer,
) -> Ended {
    let first = {
        let read = std::pin::pin!(conn.read(true, v1::decode_request));
        let stop = std::pin::pin!(shared.shutdown.wait());
        match futures::future::select(read, stop).await {
            futures::future::Either::Left((r, _)) => r,
            futures::future::Either::Right(_) => return Ended::Shutdown,
        }
    };
    let first = match first {
        Ok(Some(r)) => r,
        Ok(None) => return Ended::Closed,
        Err(e) => return e,
    };
    match first {
        Request::Version(PROTOCOL_V2) => {
            if let Err(e) = conn.write(&PROTOCOL_V2.to_be_bytes()).await {
                return e;
            }
            add(&shared.counters.v2_sessions, 1);
            super::v2::serve(conn, shared, peer).await
        }
        Request::Version(PROTOCOL_V1) => {
            if let Err(e) = conn.write(&PROTOCOL_V1.to_be_bytes()).await {
                return e;
            }
            add(&shared.counters.v1_sessions, 1);
            super::v1::serve(conn, shared, peer, None).await
        }
        Request::Version(v) => {
            // Durus's answer to a version it does not speak: its own, then close.
            if let Err(e) = conn.write(&PROTOCOL_V2.to_be_bytes()).await {
                return e;
            }
            Ended::Failed(Error::Protocol {
                reason: format!("protocol version {v} is not supported (1 and 2 are)"),
            })
        }
        other => {
            // Durus clients may skip the handshake (its `--stop` does): version 1.
            add(&shared.counters.v1_sessions, 1);
            super::v1::serve(conn, shared, peer, Some(other)).await
        }
    }
}
