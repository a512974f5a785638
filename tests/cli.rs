//! The `durus` binary: verify and repair.

use std::process::Command;

use durus::journal::{Durability, Journal, JournalOptions};
use durus::record::{CommitRequest, Record, Tid};

fn durus(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_durus"))
        .args(args)
        .output()
        .expect("run durus");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn verify_and_repair_a_journal_with_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.durus");
    let j = Journal::open(
        &path,
        JournalOptions {
            durability: Durability::Eventual,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    let oid = j.new_oids(1).unwrap()[0];
    j.commit(&CommitRequest {
        snapshot: Tid(0),
        records: vec![Record::new(oid, b"x".to_vec(), vec![])],
        ..Default::default()
    })
    .unwrap();
    j.close().unwrap();
    let p = path.to_str().unwrap();

    let (ok, text) = durus(&["verify", p]);
    assert!(ok && text.contains("ok: 1 transactions, 1 records"), "{text}");
    let clean_len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"DTX1 cut off"))
        .unwrap();
    let (ok, text) = durus(&["verify", p]);
    assert!(ok && text.contains("cut off at offset"), "{text}");
    let (ok, text) = durus(&["repair", p]);
    assert!(ok && text.contains("cut a torn tail of 12 bytes"), "{text}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), clean_len);

    let (ok, text) = durus(&["verify", dir.path().join("missing.durus").to_str().unwrap()]);
    assert!(!ok && text.contains("durus verify"), "{text}");
    let (ok, text) = durus(&["frobnicate"]);
    assert!(!ok && text.contains("unknown command"), "{text}");
    let (ok, text) = durus(&["--version"]);
    assert!(ok && text.starts_with("durus "), "{text}");
}
