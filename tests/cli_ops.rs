//! The operator commands of the `durus` binary (import, info, ...): results, `--json`,
//! exit statuses and error cases. Import of files written by Python Durus itself is in
//! `tests/durus_import.rs` (feature `python-interop`); here the Durus files are built
//! byte by byte as Durus lays them out.

use std::path::Path;

use durus::journal::{Journal, JournalOptions};
use durus::record::{Oid, Record};
use serde_json::Value;

/// Runs `durus ARGS`: exit code, stdout, stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = assert_cmd::cargo::cargo_bin_cmd!("durus")
        .args(args)
        .output()
        .expect("run durus");
    (
        out.status.code().expect("durus exits, not killed by a signal"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stdout_of(args: &[&str]) -> String {
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
    stdout
}

fn json(args: &[&str], code_wanted: i32) -> Value {
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, code_wanted, "{args:?}: {stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A transaction of a Durus file: (oid, data, refs) of each record.
type Tx<'a> = &'a [(u64, &'a [u8], &'a [u64])];

/// A `SHELF-1` file (Durus's FileStorage) holding `txs`.
fn shelf_file(path: &Path, txs: &[Tx]) {
    let mut f = b"SHELF-1\n".to_vec();
    // An empty first transaction and an empty offset map, as a new Durus file has.
    f.extend_from_slice(&0u64.to_be_bytes());
    for n in [16u64, 1, 0] {
        f.extend_from_slice(&n.to_be_bytes());
    }
    for tx in txs {
        let mut body = Vec::new();
        for &(oid, data, refs) in *tx {
            let rec = Record::new(Oid(oid), data.to_vec(), refs.iter().map(|&o| Oid(o)).collect())
                .encode()
                .unwrap();
            body.extend_from_slice(&(rec.len() as u64 + 8).to_be_bytes());
            body.extend_from_slice(&oid.to_be_bytes());
            body.extend_from_slice(&rec);
        }
        f.extend_from_slice(&(body.len() as u64).to_be_bytes());
        f.extend_from_slice(&body);
    }
    std::fs::write(path, f).unwrap();
}

#[test]
fn import_writes_a_journal_with_the_newest_records_under_their_oids() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("old.durus");
    shelf_file(
        &src,
        &[
            &[(0, b"root 1", &[1]), (1, b"one 1", &[])],
            &[(1, b"one 2", &[2]), (2, b"two", &[])],
        ],
    );
    let dest = dir.path().join("shop.durus");
    let (s, d) = (src.to_str().unwrap(), dest.to_str().unwrap());
    let (code, stdout, stderr) = run(&["import", s, d]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("imported 3 objects") && stdout.contains("SHELF-1"),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "{stderr}");
    let j = Journal::open(&dest, JournalOptions::default()).unwrap();
    assert_eq!(j.load(Oid(1)).unwrap().record.data, b"one 2");
    assert_eq!(j.load(Oid(1)).unwrap().record.refs, vec![Oid(2)]);
    assert!(j.new_oids(1).unwrap()[0] > Oid(2));
    j.close().unwrap();
    let (code, _, _) = run(&["verify", d]);
    assert_eq!(code, 0);

    // Importing again onto the journal is refused and leaves it alone.
    let before = std::fs::read(&dest).unwrap();
    let v = json(&["import", "--json", s, d], 1);
    assert_eq!(
        (v["status"].as_str(), v["error"]["kind"].as_str()),
        (Some("error"), Some("other")),
        "{v}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), before);

    let other = dir.path().join("again.durus");
    let v = json(&["import", "--json", s, other.to_str().unwrap()], 0);
    assert_eq!(v["command"], "import");
    assert_eq!(v["status"], "imported");
    let r = &v["report"];
    assert_eq!(
        (
            &r["format"],
            &r["objects"],
            &r["source_records"],
            &r["source_transactions"],
            &r["max_oid"]
        ),
        (
            &Value::from("SHELF-1"),
            &Value::from(3),
            &Value::from(4),
            &Value::from(3),
            &Value::from(2)
        ),
        "{v}"
    );
    assert!(r["torn"].is_null() && r["has_root"] == true, "{v}");
}

#[test]
fn import_refuses_what_is_not_a_durus_file_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j.durus");
    Journal::open(&journal, JournalOptions::default())
        .unwrap()
        .close()
        .unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "SHELF-2 is not a format\n").unwrap();
    let dest = dir.path().join("out.durus");
    let d = dest.to_str().unwrap();
    for (src, says) in [(&text, "not SHELF-1"), (&journal, "a durus journal already")] {
        let (code, stdout, stderr) = run(&["import", src.to_str().unwrap(), d]);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(
            stderr.contains("not a Python Durus database") && stderr.contains(says),
            "{stderr}"
        );
        assert!(stdout.is_empty());
        let v = json(&["import", "--json", src.to_str().unwrap(), d], 1);
        assert_eq!(v["error"]["kind"], "not_durus", "{v}");
    }
    let missing = dir.path().join("missing.durus");
    let v = json(&["import", "--json", missing.to_str().unwrap(), d], 1);
    assert_eq!(v["error"]["kind"], "io", "{v}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    // A usage error: no destination.
    let (code, _, stderr) = run(&["import", text.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn import_leaves_out_a_torn_commit_saying_so_and_strict_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("old.durus");
    shelf_file(
        &src,
        &[&[(0, b"root", &[])], &[(0, b"root 2", &[]), (1, b"new", &[])]],
    );
    let len = std::fs::metadata(&src).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let s = src.to_str().unwrap();
    let dest = dir.path().join("out.durus");
    let d = dest.to_str().unwrap();
    let (code, stdout, stderr) = run(&["import", "--strict", s, d]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("torn"), "{stderr}");
    assert!(!dest.exists());
    let (code, stdout, stderr) = run(&["import", s, d]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("left out a torn last transaction"), "{stderr}");
    assert!(stdout.contains("imported 1 objects"), "{stdout}");
    let j = Journal::open(&dest, JournalOptions::default()).unwrap();
    assert_eq!(j.load(Oid(0)).unwrap().record.data, b"root");
}

/// `durus CMD --help` has examples (this one among them), exit statuses and `--json`;
/// `-h` stays short.
fn assert_long_help(cmd: &str, example: &str) {
    let (code, stdout, _) = run(&[cmd, "--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Examples:") && stdout.contains(example),
        "{stdout}"
    );
    assert!(
        stdout.contains("--json") && stdout.contains("Exit status"),
        "{stdout}"
    );
    let (_, short, _) = run(&[cmd, "-h"]);
    assert!(!short.contains("Examples:"), "{short}");
    let (_, stdout, _) = run(&["--help"]);
    assert!(stdout.contains(cmd), "{stdout}");
}

#[test]
fn every_operator_command_has_long_help_with_examples() {
    assert_long_help("import", "durus import shop.durus.py shop.durus");
    assert_long_help("info", "durus info shop.durus");
    assert_long_help("census", "durus census shop.durus");
    assert_long_help("dump", "durus dump --oid 0 --at 12 shop.durus");
    assert_long_help("history", "durus history shop.durus 0");
    assert_long_help("backup", "durus backup shop.durus /backups/shop.durus");
}

#[test]
fn info_summarises_a_journal_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("old.durus");
    // Oid 2 is overwritten, oid 3 unreachable: garbage for a pack.
    shelf_file(
        &src,
        &[
            &[(0, b"root", &[1, 2]), (1, b"one", &[]), (2, &[7; 1000], &[])],
            &[(2, b"two", &[]), (3, &[9; 5000], &[])],
        ],
    );
    let dest = dir.path().join("shop.durus");
    let d = dest.to_str().unwrap();
    assert_eq!(run(&["import", src.to_str().unwrap(), d]).0, 0);
    let (code, stdout, stderr) = run(&["info", d]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("format version 1") && stdout.contains("torn tail     none"),
        "{stdout}"
    );
    assert!(stdout.contains("4 (3 reachable from the root"), "{stdout}");
    let v = json(&["info", "--json", d], 0);
    assert_eq!(
        (v["command"].as_str(), v["status"].as_str()),
        (Some("info"), Some("intact")),
        "{v}"
    );
    let r = &v["report"];
    assert_eq!(
        (r["objects"].as_u64(), r["reachable"].as_u64()),
        (Some(4), Some(3)),
        "{v}"
    );
    assert_eq!(
        (r["first_tid"].as_u64(), r["last_tid"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let garbage = r["garbage_estimate"].as_u64().unwrap();
    assert!((5000..6000).contains(&garbage), "{v}");
    // The import's close wrote an index checkpoint of its one transaction.
    let cp = &r["last_checkpoint"];
    assert!(
        cp["offset"].as_u64().unwrap() > 0 && cp["tid"].as_u64() == Some(1),
        "{v}"
    );
    assert!(stdout_of(&["info", d]).contains("indexing up to transaction 1"));

    // A torn tail is reported, not a failure; damage and a non-journal are failures.
    let len = std::fs::metadata(&dest).unwrap().len();
    let mut bytes = std::fs::read(&dest).unwrap();
    bytes.extend_from_slice(&[0xAB; 100]);
    let torn = dir.path().join("torn.durus");
    std::fs::write(&torn, &bytes).unwrap();
    let v = json(&["info", "--json", torn.to_str().unwrap()], 0);
    assert_eq!(v["status"], "torn_tail", "{v}");
    assert_eq!(v["report"]["torn_tail"].as_u64(), Some(len), "{v}");
    let v = json(&["info", "--json", src.to_str().unwrap()], 1);
    assert_eq!(v["error"]["kind"], "format", "{v}");
    let (code, _, stderr) = run(&["info", dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("durus info: "), "{stderr}");
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, durus::Persistent)]
#[durus(name = "shop.Root")]
struct ShopRoot {
    items: Vec<durus::Ref<ShopItem>>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, durus::Persistent)]
#[durus(name = "shop.Item")]
struct ShopItem {
    n: u64,
    label: String,
}

/// A journal written through `Db`: a root holding three items (the second one changed
/// in a second transaction).
fn shop_journal(path: &Path) {
    smol::block_on(async {
        let db: durus::Db<ShopRoot> = durus::Db::open(path).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let mut items = Vec::new();
        for n in 0..3 {
            let label = "x".repeat(100 * (n as usize + 1));
            items.push(tx.insert(ShopItem { n, label }).await.unwrap());
        }
        tx.root_mut().await.unwrap().items = items.clone();
        tx.commit().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.update(items[1], |i| i.label = "changed".into()).await.unwrap();
        tx.commit().await.unwrap();
        db.close().await.unwrap();
    });
}

#[test]
fn census_counts_objects_and_bytes_per_type_most_bytes_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.durus");
    shop_journal(&path);
    let p = path.to_str().unwrap();
    let (code, stdout, stderr) = run(&["census", p]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.is_empty(), "no progress bar off a terminal: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[1].ends_with("shop.Item") && lines[1].trim_start().starts_with("3 "),
        "{stdout}"
    );
    assert!(
        lines[2].ends_with("shop.Root") && lines[2].trim_start().starts_with("1 "),
        "{stdout}"
    );
    let v = json(&["census", "--json", p], 0);
    assert_eq!(
        (v["command"].as_str(), v["status"].as_str()),
        (Some("census"), Some("counted")),
        "{v}"
    );
    let r = &v["report"];
    assert_eq!(r["objects"].as_u64(), Some(4), "{v}");
    let types = r["types"].as_array().unwrap();
    assert_eq!(types.len(), 2, "{v}");
    assert_eq!(
        (types[0]["name"].as_str(), types[0]["encoding"].as_str()),
        (Some("shop.Item"), Some("durus"))
    );
    assert_eq!(types[0]["objects"].as_u64(), Some(3));
    // The newest versions: labels of 100, 7 and 300 bytes, and more besides.
    let item_bytes = types[0]["bytes"].as_u64().unwrap();
    assert!((407..500).contains(&item_bytes), "{v}");
    // The root's data and its three refs (8 bytes each).
    let root_bytes = types[1]["bytes"].as_u64().unwrap();
    assert!(root_bytes >= 24 && root_bytes < item_bytes, "{v}");
    assert_eq!(r["bytes"].as_u64(), Some(item_bytes + root_bytes));

    let v = json(
        &["census", "--json", dir.path().join("missing").to_str().unwrap()],
        1,
    );
    assert_eq!(v["error"]["kind"], "io", "{v}");
}

#[test]
fn census_names_pickled_classes_and_counts_the_rest_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("old.durus");
    let dict: &[u8] = b"\x80\x02cdurus.persistent_dict\nPersistentDict\nq\x01.}q\x02.";
    shelf_file(
        &src,
        &[&[
            (0, dict, &[1, 2, 3]),
            (1, b"\x80\x02cshop\nItem\nq\x01.}q\x02U\x01a.", &[]),
            (2, b"\x80\x02cshop\nItem\nq\x01.}q\x02U\x01b.", &[]),
            (3, &[0x42; 300], &[]),
        ]],
    );
    let dest = dir.path().join("shop.durus");
    let d = dest.to_str().unwrap();
    assert_eq!(run(&["import", src.to_str().unwrap(), d]).0, 0);
    let v = json(&["census", "--json", d], 0);
    let types = v["report"]["types"].as_array().unwrap();
    let got: Vec<(&str, &str, u64)> = types
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["encoding"].as_str().unwrap(),
                t["objects"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("(unknown)", "unknown", 1),
            ("durus.persistent_dict.PersistentDict", "pickle", 1),
            ("shop.Item", "pickle", 2),
        ],
        "{v}"
    );
    assert_eq!(types[0]["bytes"].as_u64(), Some(300));
    assert_eq!(types[1]["bytes"].as_u64(), Some(dict.len() as u64 + 24));
}

#[test]
fn dump_shows_records_decoded_newest_or_at_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.durus");
    shop_journal(&path);
    let p = path.to_str().unwrap();
    let v = json(&["dump", "--json", p], 0);
    assert_eq!(
        (v["command"].as_str(), v["status"].as_str()),
        (Some("dump"), Some("dumped")),
        "{v}"
    );
    let records = v["report"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 4, "{v}");
    let root = &records[0];
    assert_eq!(
        (root["oid"].as_u64(), root["type"].as_str()),
        (Some(0), Some("shop.Root")),
        "{v}"
    );
    let items: Vec<u64> = root["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    assert_eq!(items.len(), 3, "{v}");
    assert_eq!(root["state"]["items"].as_array().map(Vec::len), Some(3), "{v}");
    let second = records
        .iter()
        .find(|r| r["oid"].as_u64() == Some(items[1]))
        .unwrap();
    assert_eq!(second["state"]["label"], "changed", "{v}");
    assert_eq!(second["state"]["n"], 1, "{v}");
    let (first_tid, last_tid) = (root["tid"].as_u64().unwrap(), second["tid"].as_u64().unwrap());
    assert!(first_tid < last_tid, "{v}");

    // One object, as it was after the first transaction.
    let o = items[1].to_string();
    let at = first_tid.to_string();
    let v = json(&["dump", "--json", "--oid", &o, "--at", &at, p], 0);
    let records = v["report"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{v}");
    assert_eq!(
        records[0]["state"]["label"].as_str().map(str::len),
        Some(200),
        "{v}"
    );
    assert_eq!(records[0]["tid"].as_u64(), Some(first_tid));
    // Before anything was committed there is nothing; a missing object is an error.
    let v = json(&["dump", "--json", "--at-time", "0", p], 0);
    assert_eq!(v["report"]["records"].as_array().map(Vec::len), Some(0), "{v}");
    let (code, stdout, stderr) = run(&["dump", "--oid", "999", p]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("object 999 not found"), "{stderr}");
    let (code, _, stderr) = run(&["dump", "--at", "1", "--at-time", "5", p]);
    assert_eq!(code, 2, "{stderr}");

    let (code, stdout, stderr) = run(&["dump", "--oid", &o, p]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("shop.Item") && stdout.contains("\"label\":\"changed\""),
        "{stdout}"
    );
}

#[test]
fn dump_shows_pickles_by_class_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("old.durus");
    let item: &[u8] = b"\x80\x02cshop\nItem\nq\x01.}q\x02U\x01a.";
    shelf_file(&src, &[&[(0, item, &[1]), (1, b"raw bytes", &[])]]);
    let dest = dir.path().join("shop.durus");
    let d = dest.to_str().unwrap();
    assert_eq!(run(&["import", src.to_str().unwrap(), d]).0, 0);
    let v = json(&["dump", "--json", d], 0);
    let r = &v["report"]["records"];
    assert_eq!(
        (r[0]["type"].as_str(), r[0]["encoding"].as_str()),
        (Some("shop.Item"), Some("pickle")),
        "{v}"
    );
    assert_eq!(r[0]["bytes"].as_u64(), Some(item.len() as u64));
    assert!(r[0]["state"].is_null() && r[0]["undecodable"].is_null(), "{v}");
    assert_eq!(r[0]["refs"], serde_json::json!([1]));
    assert_eq!(r[1]["type"], "(unknown)", "{v}");
    assert!(r[1]["undecodable"].is_string(), "{v}");
    let (code, stdout, _) = run(&["dump", d]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("oid 0 tid 1 shop.Item (") && stdout.contains("a pickle"),
        "{stdout}"
    );
}

#[test]
fn history_lists_every_version_of_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.durus");
    shop_journal(&path);
    let p = path.to_str().unwrap();
    let dumped = json(&["dump", "--json", "--oid", "0", p], 0);
    let items = dumped["report"]["records"][0]["refs"].clone();
    let changed = items[1].as_u64().unwrap().to_string();
    let v = json(&["history", "--json", p, &changed], 0);
    assert_eq!(
        (v["command"].as_str(), v["status"].as_str()),
        (Some("history"), Some("listed")),
        "{v}"
    );
    let versions = v["report"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{v}");
    assert!(versions[0]["tid"].as_u64() < versions[1]["tid"].as_u64(), "{v}");
    assert!(
        versions[0]["time"].as_u64() <= versions[1]["time"].as_u64(),
        "{v}"
    );
    assert!(
        versions[0]["bytes"].as_u64() > versions[1]["bytes"].as_u64(),
        "{v}"
    );
    assert_eq!(versions[1]["type"], "shop.Item");
    let unchanged = items[0].as_u64().unwrap().to_string();
    let v = json(&["history", "--json", p, &unchanged], 0);
    assert_eq!(v["report"]["versions"].as_array().map(Vec::len), Some(1), "{v}");
    let (code, stdout, stderr) = run(&["history", p, &changed]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains(" UTC  shop.Item ("), "{stdout}");
    let v = json(&["history", "--json", p, "999"], 1);
    assert_eq!(v["error"]["kind"], "not_found", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("not found"),
        "{v}"
    );
}

/// A shop journal in `dir`, and where its backup goes.
fn shop_and_backup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let path = dir.join("shop.durus");
    shop_journal(&path);
    (path, dir.join("shop.bak"))
}

#[test]
fn backup_writes_a_verified_copy_that_opens_with_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let (path, dest) = shop_and_backup(dir.path());
    let (p, d) = (path.to_str().unwrap(), dest.to_str().unwrap());
    let (code, stdout, stderr) = run(&["backup", p, d]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("copied to") && stdout.contains("verified"),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "{stderr}");
    let original = json(&["dump", "--json", p], 0);
    let copy = json(&["dump", "--json", d], 0);
    assert_eq!(original["report"], copy["report"]);
    assert_eq!(run(&["verify", d]).0, 0);
    let last_tid = original["report"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["tid"].as_u64())
        .max();

    // Again over the earlier backup, with --json; no temporary file is left.
    let v = json(&["backup", "--json", p, d], 0);
    assert_eq!(
        (v["command"].as_str(), v["status"].as_str()),
        (Some("backup"), Some("copied")),
        "{v}"
    );
    assert_eq!(v["report"]["last_tid"].as_u64(), last_tid, "{v}");
    assert_eq!(
        v["report"]["bytes"].as_u64(),
        Some(std::fs::metadata(&dest).unwrap().len()),
        "{v}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn backup_refuses_a_destination_that_is_not_a_journal_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.durus");
    shop_journal(&path);
    let p = path.to_str().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "precious\n").unwrap();
    let (code, stdout, stderr) = run(&["backup", p, notes.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("is not a durus journal; not replacing it"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&notes).unwrap(), b"precious\n");
    let v = json(&["backup", "--json", p, dir.path().to_str().unwrap()], 1);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("is a directory"),
        "{v}"
    );
    let v = json(&["backup", "--json", p, p], 1);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("onto itself"),
        "{v}"
    );
    let v = json(
        &[
            "backup",
            "--json",
            notes.to_str().unwrap(),
            dir.path().join("x").to_str().unwrap(),
        ],
        1,
    );
    assert_eq!(v["error"]["kind"], "format", "{v}");
    assert!(!dir.path().join("x").exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let (code, _, _) = run(&["backup", p]);
    assert_eq!(code, 2);
}

#[test]
fn backup_incremental_appends_what_is_new_and_refuses_a_backup_of_another_store() {
    let dir = tempfile::tempdir().unwrap();
    let (path, dest) = shop_and_backup(dir.path());
    let (p, d) = (path.to_str().unwrap(), dest.to_str().unwrap());
    let v = json(&["backup", "--json", "--incremental", p, d], 0);
    assert_eq!(
        v["report"]["written"], v["report"]["bytes"],
        "a missing DEST: a whole copy"
    );
    let first = v["report"]["bytes"].as_u64().unwrap();
    shop_journal(&path);
    let (code, stdout, stderr) = run(&["backup", "--incremental", p, d]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("appended") && stdout.contains("verified"),
        "{stdout}"
    );
    let v = json(&["backup", "--json", "--incremental", p, d], 0);
    assert_eq!(v["report"]["written"], 0, "{v}");
    assert!(v["report"]["bytes"].as_u64().unwrap() > first, "{v}");
    let full = dir.path().join("full.bak");
    assert_eq!(run(&["backup", p, full.to_str().unwrap()]).0, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&full).unwrap());

    // A backup of another store is refused and left alone.
    let other = dir.path().join("other.durus");
    shop_journal(&other);
    let before = std::fs::read(&dest).unwrap();
    let (code, stdout, stderr) = run(&["backup", "--incremental", other.to_str().unwrap(), d]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("not an earlier backup of this journal") && stderr.contains("take a full backup"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), before);
    let v = json(
        &["backup", "--json", "--incremental", other.to_str().unwrap(), d],
        1,
    );
    assert_eq!(
        (&v["status"], &v["error"]["kind"]),
        (&"error".into(), &"not_prefix".into()),
        "{v}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), before);
}
