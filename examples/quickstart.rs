//! The main job, on the embedded default: open (or create) a journal file, commit a
//! small graph of records, close, reopen, and print what is there.
//!
//! Run it twice: the second run finds the first run's data.
//!
//! ```text
//! cargo run --example quickstart [path]
//! ```

use durus::journal::JournalOptions;
use durus::record::{CommitRequest, Oid, Record};
use durus::storage::{FileStorage, Storage};

fn main() -> durus::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "quickstart.durus".into());
    futures::executor::block_on(run(&path))
}

async fn run(path: &str) -> durus::Result<()> {
    let storage = FileStorage::open(path, JournalOptions::default()).await?;
    let snapshot = storage.last_tid().await?;

    // The root record lists the oids of one record per run so far.
    let mut runs = match storage.load(Oid::ROOT).await {
        Ok(root) => root.record.refs,
        Err(durus::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let oid = storage.new_oids(1).await?[0];
    runs.push(oid);
    let note = format!("run {} of the quickstart", runs.len());
    let committed = storage
        .commit(CommitRequest {
            snapshot,
            records: vec![
                Record::new(Oid::ROOT, b"runs".to_vec(), runs.clone()),
                Record::new(oid, note.into_bytes(), vec![]),
            ],
            reads: vec![Oid::ROOT],
            ..Default::default()
        })
        .await?;
    println!("committed transaction {} (durable on disk)", committed.tid);
    storage.close().await?;

    let storage = FileStorage::open(path, JournalOptions::default()).await?;
    let root = storage.load(Oid::ROOT).await?;
    println!(
        "reopened {path}: the root refers to {} record(s)",
        root.record.refs.len()
    );
    for loaded in storage
        .load_many(root.record.refs.clone(), None)
        .await?
        .into_iter()
        .flatten()
    {
        println!(
            "  oid {:>3} (transaction {:>3}): {}",
            loaded.record.oid,
            loaded.tid,
            String::from_utf8_lossy(&loaded.record.data)
        );
    }
    storage.close().await
}
