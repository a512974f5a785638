//! A tokio application that serves a journal and uses it over the network with its
//! own tokio sockets: durus's networking is runtime-agnostic (`futures::io` streams),
//! and tokio-util's compat layer turns a tokio `TcpStream` into one.
//!
//! ```text
//! cargo run --example tokio_network [path] [tasks] [increments-per-task]
//! ```
//!
//! The server side accepts on a tokio `TcpListener` and hands each connection to
//! `Server::serve_connection`; the client side gives `ClientStorage` a connector that
//! opens tokio `TcpStream`s. Many tasks then increment one `Counter` through a `Db` on
//! that client: their conflicts are merged (`Counter` resolves them), so nothing is
//! lost.
// Output goes through `say!`, which survives a closed stdout (`println!` panics there).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use durus::client::{ClientOptions, ClientStorage, Connector};
use durus::server::{BoxedStream, Peer, Server, ServerOptions};
use durus::storage::FileStorage;
use durus::{Counter, Db, DbBuilder};
use futures::FutureExt;
use tokio_util::compat::TokioAsyncReadCompatExt;

use common::say;

#[tokio::main]
async fn main() -> durus::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "tokio_network.durus".into());
    let tasks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let per_task: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(25);

    // The server: a journal, and connections accepted by tokio.
    let storage = FileStorage::open(&path, Default::default()).await?;
    let server = Server::new(storage, ServerOptions::default()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let accepting = {
        let server = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                // `.compat()` makes the tokio stream a `futures::io` one.
                tokio::spawn(async move { server.serve_connection(stream.compat(), Peer::Tcp(peer)).await });
            }
        })
    };
    say!("serving {path} on {address}");

    // The client: a connector that opens tokio streams, called again on a reconnect.
    let client = ClientStorage::with_connector(tokio_connector(address), ClientOptions::default()).await?;
    let db: Db<Counter> = DbBuilder::storage(client).open().await?;
    let before = db.begin().await?.root().await?.get();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    db.transact(|tx| {
                        Box::pin(async move {
                            tx.root_mut().await?.increment();
                            Ok::<_, durus::Error>(())
                        })
                    })
                    .await?;
                }
                Ok::<(), durus::Error>(())
            })
        })
        .collect::<Vec<_>>();
    for w in workers {
        w.await.map_err(|e| durus::Error::Internal(e.to_string()))??;
    }
    let after = db.begin().await?.root().await?.get();
    say!("{tasks} tasks x {per_task} increments over the network: counter {before} -> {after}");
    assert_eq!(after - before, (tasks * per_task) as i64, "an increment was lost");

    drop(db);
    accepting.abort();
    server.shutdown();
    server.storage().close().await?;
    Ok(())
}

/// A `ClientStorage` connector that opens tokio `TcpStream`s to `address`.
fn tokio_connector(address: SocketAddr) -> Connector {
    Arc::new(move || {
        async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(BoxedStream(Box::new(stream.compat())))
        }
        .boxed()
    })
}
