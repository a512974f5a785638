//! A durus server on a thread of its own, for tests: it runs under its own executor
//! (async-io's `block_on`), whatever runtime the test's client uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durus::client::ClientStorage;
use durus::journal::JournalOptions;
use durus::server::{Address, Listener, Server, ServerOptions};
use durus::storage::{FileStorage, Storage};

/// A running server and where it listens.
pub struct TestServer {
    pub address: Address,
    pub server: Server,
    /// The file storage served, when the server serves one.
    pub file: Option<FileStorage>,
    thread: Option<std::thread::JoinHandle<durus::Result<()>>>,
}

impl TestServer {
    /// Serves `storage` on `address` (port 0 and the like are resolved).
    pub fn start(storage: Arc<dyn Storage>, options: ServerOptions, address: Address) -> TestServer {
        TestServer::start_with(move || Box::pin(async move { Ok(storage) }), options, address)
    }

    /// Serves the storage `open` makes on the server's own thread.
    pub fn start_with(
        open: impl FnOnce() -> futures::future::BoxFuture<'static, durus::Result<Arc<dyn Storage>>>
            + Send
            + 'static,
        options: ServerOptions,
        address: Address,
    ) -> TestServer {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            async_io::block_on(async move {
                let storage = open().await?;
                let server = Server::from_arc(storage, options).await?;
                let listener = Listener::bind(&address).await?;
                let address = listener.address().expect("an address");
                tx.send((server.clone(), address)).expect("tell the test");
                server.run(listener).await
            })
        });
        let (server, address) = match rx.recv() {
            Ok(a) => a,
            Err(_) => panic!("the server did not start: {:?}", thread.join()),
        };
        TestServer {
            address,
            server,
            file: None,
            thread: Some(thread),
        }
    }

    /// Serves a journal file at `path` on a Unix socket next to it.
    pub fn file(path: &Path, options: ServerOptions) -> TestServer {
        TestServer::file_with(path, JournalOptions::default(), options)
    }

    /// Serves a journal file opened with `journal` options.
    pub fn file_with(path: &Path, journal: JournalOptions, options: ServerOptions) -> TestServer {
        let p = path.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut s = TestServer::start_with(
            move || {
                Box::pin(async move {
                    let s = FileStorage::open(p, journal).await?;
                    let _ = tx.send(s.clone());
                    Ok(Arc::new(s) as Arc<dyn Storage>)
                })
            },
            options,
            socket_next_to(path),
        );
        s.file = rx.recv().ok();
        s
    }

    /// Shuts the server down and waits for it (it closes its storage).
    pub fn stop(mut self) {
        self.server.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread").expect("server run");
        }
    }

    /// A client of this server.
    pub async fn client(&self) -> ClientStorage {
        ClientStorage::connect(&self.address).await.expect("connect")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Unix socket path beside `path` (short enough for the socket path limit when
/// `path` is in a temporary directory).
pub fn socket_next_to(path: &Path) -> Address {
    let mut p: PathBuf = path.to_path_buf();
    p.set_extension("sock");
    Address::Unix(p)
}
