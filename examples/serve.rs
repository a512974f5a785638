//! Serves a journal file to Durus and durus clients: `cargo run --features server
//! --example serve -- FILE [ADDRESS]` (ADDRESS is `host:port` or `unix:PATH`, by
//! default 127.0.0.1:2972, Durus's port). Try it with Python Durus:
//! `python -c "from durus.client_storage import ClientStorage; from durus.connection
//! import Connection; c = Connection(ClientStorage()); print(c.get_root())"`.
//! Stop it with a Durus `durus -s --stop` (a `Q` from this machine) or Ctrl-C.

use durus::journal::JournalOptions;
use durus::server::{Address, Listener, Server, ServerOptions};
use durus::storage::FileStorage;

fn main() -> durus::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: serve FILE [host:port | unix:PATH]");
        std::process::exit(2);
    };
    let address: Address = args.next().as_deref().unwrap_or("127.0.0.1:2972").parse()?;
    smol::block_on(async {
        let storage = FileStorage::open(file, JournalOptions::default()).await?;
        let server = Server::new(storage, ServerOptions::default())
            .await?
            .with_spawner(|f| smol::spawn(f).detach());
        let listener = Listener::bind(&address).await?;
        println!("serving on {address}");
        server.run(listener).await
    })
}
