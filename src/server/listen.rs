//! Where a server listens: a TCP address or a Unix-domain socket.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};

use super::options::Peer;
use crate::error::{Error, Result};

/// An address to listen on or connect to: `host:port`, or `unix:PATH` for a
/// Unix-domain socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A TCP address, as `host:port` (resolved when used).
    Tcp(String),
    /// A Unix-domain socket at this path.
    Unix(PathBuf),
}

impl std::str::FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::Invalid("unix: needs a socket path".into()));
            }
            return Ok(Address::Unix(path.into()));
        }
        if !s.contains(':') {
            return Err(Error::Invalid(format!(
                "{s:?} is neither host:port nor unix:PATH"
            )));
        }
        Ok(Address::Tcp(s.to_string()))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A byte stream the server or the client can speak over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed [`Stream`].
pub struct BoxedStream(pub Box<dyn Stream>);

impl std::fmt::Debug for BoxedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedStream")
    }
}

impl AsyncRead for BoxedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoxedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_close(cx)
    }
}

enum Inner {
    Tcp(async_net::TcpListener),
    #[cfg(unix)]
    Unix(async_net::unix::UnixListener, PathBuf),
}

/// A listening socket for [`Server::run`](super::Server::run).
pub struct Listener {
    inner: Inner,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Tcp(l) => write!(f, "Listener({:?})", l.local_addr().ok()),
            #[cfg(unix)]
            Inner::Unix(_, p) => write!(f, "Listener(unix:{})", p.display()),
        }
    }
}

impl Listener {
    /// Listens on `address`. A Unix socket path left behind by a server that is no
    /// longer running is replaced; one a live server answers on is refused.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it resolves leaves nothing listening.
    pub async fn bind(address: &Address) -> Result<Listener> {
        match address {
            Address::Tcp(a) => Ok(Listener {
                inner: Inner::Tcp(async_net::TcpListener::bind(a.as_str()).await?),
            }),
            #[cfg(unix)]
            Address::Unix(p) => {
                let l = match async_net::unix::UnixListener::bind(p) {
                    Ok(l) => l,
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                        if async_net::unix::UnixStream::connect(p).await.is_ok() {
                            return Err(e.into());
                        }
                        std::fs::remove_file(p)?;
                        async_net::unix::UnixListener::bind(p)?
                    }
                    Err(e) => return Err(e.into()),
                };
                Ok(Listener {
                    inner: Inner::Unix(l, p.clone()),
                })
            }
            #[cfg(not(unix))]
            Address::Unix(_) => Err(Error::Invalid("Unix sockets need a Unix system".into())),
        }
    }

    /// Serves a TCP listener the application made itself.
    pub fn from_tcp(l: async_net::TcpListener) -> Listener {
        Listener { inner: Inner::Tcp(l) }
    }

    /// The TCP address listened on (useful after binding port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Tcp(l) => l.local_addr().ok(),
            #[cfg(unix)]
            Inner::Unix(..) => None,
        }
    }

    /// The address listened on.
    pub fn address(&self) -> Option<Address> {
        match &self.inner {
            Inner::Tcp(l) => l.local_addr().ok().map(|a| Address::Tcp(a.to_string())),
            #[cfg(unix)]
            Inner::Unix(_, p) => Some(Address::Unix(p.clone())),
        }
    }

    pub(crate) async fn accept(&self) -> io::Result<(BoxedStream, Peer)> {
        match &self.inner {
            Inner::Tcp(l) => {
                let (s, a) = l.accept().await?;
                // Requests and replies are small and answered one by one: waiting to
                // fill packets would add latency to every round trip.
                s.set_nodelay(true)?;
                Ok((BoxedStream(Box::new(s)), Peer::Tcp(a)))
            }
            #[cfg(unix)]
            Inner::Unix(l, p) => {
                let (s, _) = l.accept().await?;
                Ok((BoxedStream(Box::new(s)), Peer::Unix(Some(p.clone()))))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Inner::Unix(_, p) = &self.inner {
            let _ = std::fs::remove_file(p);
        }
    }
}
