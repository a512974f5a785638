//! `durus import` of database files written by the real Python Durus 4.3 in the test
//! run (feature `python-interop`), in both formats, packed and not: every newest
//! record lands byte for byte under its oid, and `durus serve` gives the journal to the
//! Python client, which reads everything back equal and commits new objects with new
//! oids. Also a torn source, left out or refused.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use common::python::{child_server, durus_files};
use durus::journal::{Journal, JournalOptions};
use durus::record::Oid;
use serde_json::Value;

/// Writes a Durus file with Python: its path, the expected-contents file, and the
/// newest records as Durus stores them (oid -> framed record).
fn python_file(
    dir: &Path,
    format: &str,
    pack: bool,
) -> (std::path::PathBuf, std::path::PathBuf, HashMap<u64, Vec<u8>>) {
    let name = format!("{format}{}", if pack { "-packed" } else { "" });
    let (db, expected, records) = (
        dir.join(format!("{name}.durus")),
        dir.join(format!("{name}.expected")),
        dir.join(format!("{name}.records")),
    );
    let mut args: Vec<&OsStr> = vec![
        "write".as_ref(),
        format.as_ref(),
        db.as_os_str(),
        expected.as_os_str(),
        records.as_os_str(),
    ];
    if pack {
        args.push("pack".as_ref());
    }
    durus_files(&args);
    let bytes = std::fs::read(&records).unwrap();
    let mut newest = HashMap::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let len = u64::from_be_bytes(rest[..8].try_into().unwrap()) as usize;
        let record = rest[8..8 + len].to_vec();
        newest.insert(u64::from_be_bytes(record[..8].try_into().unwrap()), record);
        rest = &rest[8 + len..];
    }
    (db, expected, newest)
}

/// Runs `durus import --json SOURCE DEST`: its exit code, the JSON and stderr.
fn import(args: &[&OsStr]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_durus"))
        .arg("import")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The journal holds exactly these records, byte for byte.
fn assert_same_records(journal: &Path, newest: &HashMap<u64, Vec<u8>>) {
    let j = Journal::open(
        journal,
        JournalOptions {
            read_only: true,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    assert_eq!(j.oids().unwrap().len(), newest.len());
    for (&oid, record) in newest {
        let got = j.load(Oid(oid)).unwrap().record.encode().unwrap();
        assert!(got == *record, "oid {oid} differs");
    }
}

fn import_and_serve(format: &str, pack: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (db, expected, newest) = python_file(dir.path(), format, pack);
    assert!(newest.len() > 5000, "{}", newest.len());
    let journal = dir.path().join("imported.durus");
    let (code, v, stderr) = import(&[db.as_os_str(), journal.as_os_str()]);
    assert_eq!(code, 0, "{v}{stderr}");
    let r = &v["report"];
    assert_eq!(r["format"], if format == "shelf" { "SHELF-1" } else { "DFS20" });
    assert_eq!(r["objects"], newest.len() as u64, "{v}");
    assert_eq!(r["max_oid"], *newest.keys().max().unwrap(), "{v}");
    assert_eq!(
        (r["has_root"].as_bool(), r["torn"].is_null()),
        (Some(true), true),
        "{v}"
    );
    if !pack {
        // Overwrites and garbage: more records in the source than objects.
        assert!(
            r["source_records"].as_u64().unwrap() > newest.len() as u64 + 1000,
            "{v}"
        );
    }
    assert_same_records(&journal, &newest);

    let (mut server, addr, _log) = child_server(&journal);
    let out = durus_files(&["check".as_ref(), addr.as_ref(), expected.as_os_str()]);
    assert!(out.contains("checked 21"), "{out}");
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    server.wait().unwrap();
}

#[test]
fn a_shelf_file_is_imported_and_served_to_python_durus() {
    import_and_serve("shelf", false);
}

#[test]
fn a_packed_shelf_file_is_imported_and_served_to_python_durus() {
    import_and_serve("shelf", true);
}

#[test]
fn a_file_storage2_file_is_imported_and_served_to_python_durus() {
    import_and_serve("dfs20", false);
}

#[test]
fn a_packed_file_storage2_file_is_imported_and_served_to_python_durus() {
    import_and_serve("dfs20", true);
}

#[test]
fn a_torn_last_transaction_is_left_out_saying_so_or_refused_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["shelf", "dfs20"] {
        let (db, _, _) = python_file(dir.path(), format, false);
        let whole = std::fs::read(&db).unwrap();
        // The last transaction deletes `tmp` from the root: cut it in the middle.
        let torn = dir.path().join(format!("{format}-torn.durus"));
        std::fs::write(&torn, &whole[..whole.len() - 40]).unwrap();
        let journal = dir.path().join(format!("{format}-torn.journal"));

        let (code, v, stderr) = import(&["--strict".as_ref(), torn.as_os_str(), journal.as_os_str()]);
        assert_eq!((code, v["error"]["kind"].as_str()), (1, Some("corrupt")), "{v}");
        assert!(stderr.contains("torn"), "{stderr}");
        assert!(!journal.exists());
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .contains("importing")
                })
                .count(),
            0
        );

        let (code, v, stderr) = import(&[torn.as_os_str(), journal.as_os_str()]);
        assert_eq!(code, 0, "{v}{stderr}");
        let t = &v["report"]["torn"];
        assert!(t["bytes"].as_u64().unwrap() > 40, "{v}");
        assert!(stderr.contains("left out a torn last transaction"), "{stderr}");
        // One transaction fewer than the whole file has.
        let whole_journal = dir.path().join(format!("{format}-whole.journal"));
        let (code, w, _) = import(&[db.as_os_str(), whole_journal.as_os_str()]);
        assert_eq!(code, 0);
        assert_eq!(
            v["report"]["source_transactions"].as_u64().unwrap() + 1,
            w["report"]["source_transactions"].as_u64().unwrap(),
            "{v}\n{w}"
        );
        assert_eq!(
            t["offset"].as_u64().unwrap() + t["bytes"].as_u64().unwrap(),
            whole.len() as u64 - 40
        );
    }
}
