//! The `durus` binary: verify, repair and pack, exit statuses, `--json`, help, and a
//! closed stdout.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use durus::journal::{Durability, Journal, JournalOptions};
use durus::record::{CommitRequest, Oid, Record, Tid};
use serde_json::Value;

/// Runs `durus ARGS`: whether it succeeded, and stdout followed by stderr.
fn durus(args: &[&str]) -> (bool, String) {
    let out = assert_cmd::cargo::cargo_bin_cmd!("durus")
        .args(args)
        .output()
        .expect("run durus");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Runs `durus ARGS` and returns its exit code, stdout and stderr.
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

/// A journal at `path` with one transaction per entry of `data`, closed cleanly.
fn journal(path: &Path, data: &[&[u8]]) {
    let j = Journal::open(
        path,
        JournalOptions {
            durability: Durability::Eventual,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    let oid = j.new_oids(1).unwrap()[0];
    for (i, d) in data.iter().enumerate() {
        j.commit(&CommitRequest {
            snapshot: Tid(i as u64),
            records: vec![Record::new(oid, d.to_vec(), vec![])],
            ..Default::default()
        })
        .unwrap();
    }
    j.close().unwrap();
}

/// A journal whose first transaction has a flipped byte and a second, intact one after
/// it: damage in the middle, which verify and repair must report and never cut.
fn damaged_journal(path: &Path) -> Vec<u8> {
    journal(
        path,
        &[b"first transaction's record", b"second transaction's record"],
    );
    let mut bytes = std::fs::read(path).unwrap();
    let needle = b"first transaction's record";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the record's bytes are in the file");
    bytes[at] ^= 0x20;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// Appends bytes that look like the start of a cut-off write.
fn tear(path: &Path) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"DTX1 cut off"))
        .unwrap();
}

#[test]
fn verify_and_repair_a_journal_with_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.durus");
    journal(&path, &[b"x"]);
    let p = path.to_str().unwrap();

    let (ok, text) = durus(&["verify", p]);
    assert!(ok && text.contains("ok: 1 transactions, 1 records"), "{text}");
    let clean_len = std::fs::metadata(&path).unwrap().len();
    tear(&path);
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

#[test]
fn exit_status_is_0_ok_1_problem_2_usage_with_results_on_stdout_and_problems_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.durus");
    journal(&good, &[b"a", b"b"]);
    let bad = dir.path().join("bad.durus");
    let bad_bytes = damaged_journal(&bad);
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    let (code, stdout, stderr) = run(&["verify", good]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok: 2 transactions") && stderr.is_empty(),
        "{stdout}{stderr}"
    );

    for cmd in ["verify", "repair"] {
        let (code, stdout, stderr) = run(&[cmd, bad]);
        assert_eq!(code, 1, "{cmd}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{cmd}: {stdout}");
        assert!(
            stderr.starts_with(&format!("durus {cmd}: {bad}: corrupt data at offset")),
            "{cmd}: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read(bad).unwrap(),
        bad_bytes,
        "repair changed a damaged file"
    );

    let missing = dir.path().join("missing.durus");
    let (code, _, stderr) = run(&["repair", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(!missing.exists(), "repair created a file");

    let usage_errors: [&[&str]; 6] = [
        &[],
        &["frobnicate"],
        &["verify"],
        &["verify", good, "extra"],
        &["repair", "--no-such-flag", good],
        &["verify", "--json=yes", good],
    ];
    for args in usage_errors {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(
            stdout.is_empty() && stderr.contains("Usage: durus"),
            "{args:?}: {stdout}{stderr}"
        );
    }
    let (code, _, stderr) = run(&["verif", good]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown command 'verif'") && stderr.contains("'verify'"),
        "{stderr}"
    );

    let (code, stdout, _) = run(&["version"]);
    assert_eq!(
        (code, stdout.trim()),
        (0, format!("durus {}", env!("CARGO_PKG_VERSION")).as_str())
    );
}

#[test]
fn help_names_every_command_and_each_command_has_an_example() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["verify", "repair", "pack", "version", "Exit status"] {
        assert!(stdout.contains(cmd), "{cmd} missing from:\n{stdout}");
    }
    for cmd in ["verify", "repair", "pack"] {
        let (code, stdout, _) = run(&[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(
            stdout.contains("Examples:") && stdout.contains(&format!("  durus {cmd} shop.durus")),
            "{stdout}"
        );
        assert!(
            stdout.contains("--json") && stdout.contains("Exit status"),
            "{stdout}"
        );
        // The short help stays short: no examples.
        let (_, short, _) = run(&[cmd, "-h"]);
        assert!(
            !short.contains("Examples:") && short.contains("Usage: durus"),
            "{short}"
        );
    }
}

/// Parses `--json` output: exactly one line, one object, with exactly the documented
/// keys, `ok` agreeing with the exit status.
fn json(args: &[&str], code_wanted: i32) -> Value {
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, code_wanted, "{args:?}: {stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let keys: BTreeSet<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["command", "file", "status", "ok", "report", "error"]),
        "{v}"
    );
    assert_eq!(v["ok"], Value::Bool(code == 0), "{v}");
    assert_eq!(v["command"], args[0], "{v}");
    assert_eq!(v["file"], *args.last().unwrap(), "{v}");
    if code == 0 {
        assert!(v["error"].is_null() && v["report"].is_object(), "{v}");
    } else {
        assert!(v["report"].is_null(), "{v}");
        let keys: BTreeSet<&str> = v["error"]
            .as_object()
            .expect("error")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["kind", "offset", "message"]), "{v}");
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
    v
}

/// A `--json` object of a failure has this status and error kind.
fn assert_failure(v: &Value, status: &str, kind: &str) {
    assert_eq!(
        (v["status"].as_str(), v["error"]["kind"].as_str()),
        (Some(status), Some(kind)),
        "{v}"
    );
}

#[test]
fn json_output_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.durus");
    journal(&path, &[b"a", b"b", b"c"]);
    let p = path.to_str().unwrap();
    let clean_len = std::fs::metadata(&path).unwrap().len();

    let v = json(&["verify", "--json", p], 0);
    assert_eq!(v["status"], "intact");
    let r = &v["report"];
    let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "transactions",
            "records",
            "checkpoints",
            "reservations",
            "last_tid",
            "end",
            "torn_tail",
            "durable_end",
        ]),
        "{v}"
    );
    assert_eq!(
        (r["transactions"].as_u64(), r["records"].as_u64()),
        (Some(3), Some(3)),
        "{v}"
    );
    assert_eq!(r["last_tid"].as_u64(), Some(3), "{v}");
    assert_eq!(r["end"].as_u64(), Some(clean_len), "{v}");
    assert!(
        r["checkpoints"].is_u64() && r["reservations"].is_u64() && r["torn_tail"].is_null(),
        "{v}"
    );

    let v = json(&["repair", "--json", p], 0);
    assert_eq!(v["status"], "intact");
    assert_eq!(
        v["report"],
        serde_json::json!({"truncated_at": null, "removed": 0, "last_tid": 3, "loss": null})
    );

    tear(&path);
    let v = json(&["verify", "--json", p], 0);
    assert_eq!(v["status"], "torn_tail");
    assert_eq!(v["report"]["torn_tail"].as_u64(), Some(clean_len), "{v}");
    let v = json(&["repair", "--json", p], 0);
    assert_eq!(v["status"], "repaired");
    assert_eq!(
        v["report"],
        serde_json::json!({"truncated_at": clean_len, "removed": 12, "last_tid": 3, "loss": null})
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), clean_len);

    let bad = dir.path().join("bad.durus");
    damaged_journal(&bad);
    for cmd in ["verify", "repair"] {
        let v = json(&[cmd, "--json", bad.to_str().unwrap()], 1);
        assert_failure(&v, "damaged", "corrupt");
        assert!(v["error"]["offset"].is_u64(), "{v}");
    }

    let missing = dir.path().join("missing.durus");
    let v = json(&["verify", "--json", missing.to_str().unwrap()], 1);
    assert_failure(&v, "error", "io");
    assert!(v["error"]["offset"].is_null(), "{v}");

    let not_a_journal = dir.path().join("notes.txt");
    std::fs::write(&not_a_journal, vec![b'n'; 8192]).unwrap();
    let v = json(&["verify", "--json", not_a_journal.to_str().unwrap()], 1);
    assert_failure(&v, "error", "format");
}

#[test]
fn repair_cuts_damage_only_with_accept_loss_and_says_what_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.durus");
    let damaged = damaged_journal(&path);
    let p = path.to_str().unwrap();

    let (code, stdout, stderr) = run(&["repair", p]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("--accept-loss"),
        "the refusal names the way out: {stderr}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), damaged);

    let (code, stdout, stderr) = run(&["repair", "--accept-loss", p]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("accepted the loss: cut"), "{stdout}");
    let cut_len = std::fs::metadata(&path).unwrap().len();
    assert!(cut_len < damaged.len() as u64);
    let (code, stdout, stderr) = run(&["verify", p]);
    assert_eq!(code, 0, "after the cut the journal verifies: {stdout}{stderr}");

    std::fs::write(&path, &damaged).unwrap();
    let v = json(&["repair", "--accept-loss", "--json", p], 0);
    assert_eq!(v["status"], "loss_accepted", "{v}");
    let r = &v["report"];
    assert_eq!(r["truncated_at"].as_u64(), Some(cut_len), "{v}");
    assert_eq!(r["removed"].as_u64(), Some(damaged.len() as u64 - cut_len), "{v}");
    let keys: BTreeSet<&str> = r["loss"]
        .as_object()
        .expect("loss")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["offset", "reason", "missing", "tids"]),
        "{v}"
    );
    assert!(
        r["loss"]["offset"].is_u64() && r["loss"]["missing"].is_u64(),
        "{v}"
    );
    let tids = &r["loss"]["tids"];
    if !tids.is_null() {
        let (first, last) = (tids["first"].as_u64().unwrap(), tids["last"].as_u64().unwrap());
        assert!(first > r["last_tid"].as_u64().unwrap() && first <= last, "{v}");
    }
}

/// Runs `durus ARGS` with stdout a pipe whose reading end is already closed, so the
/// first write fails: the exit code, and stderr.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(assert_cmd::cargo::cargo_bin!("durus"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run durus");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_status_already_decided() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.durus");
    journal(&path, &[b"a"]);
    let p = path.to_str().unwrap();
    let bad = dir.path().join("bad.durus");
    damaged_journal(&bad);
    let bad = bad.to_str().unwrap();

    let cases: [(&[&str], i32); 10] = [
        (&["--help"], 0),
        (&["-h"], 0),
        (&["verify", "--help"], 0),
        (&["help", "repair"], 0),
        (&["--version"], 0),
        (&["version"], 0),
        (&["verify", p], 0),
        (&["verify", "--json", p], 0),
        (&["repair", p], 0),
        (&["verify", "--json", bad], 1),
    ];
    for (args, code) in cases {
        let (got, stderr) = with_closed_stdout(args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(got, Some(code), "{args:?}: {stderr}");
    }
    // The problem still reaches stderr.
    let (_, stderr) = with_closed_stdout(&["verify", bad]);
    assert!(stderr.contains("corrupt data at offset"), "{stderr}");
}

/// A journal at `path` whose root refers to `a`, which refers to `b`; `a` is rewritten
/// `overwrites` times and an unreachable object is written too, so a pack frees space.
/// With `dangling`, `b` also refers to an oid that has no record. Returns (a, b, the
/// missing oid).
fn graph_journal(path: &Path, overwrites: usize, dangling: bool) -> (Oid, Oid, Oid) {
    let j = Journal::open(path, JournalOptions::default()).unwrap();
    let oids = j.new_oids(4).unwrap();
    let (a, b, garbage, missing) = (oids[0], oids[1], oids[2], oids[3]);
    let b_refs = if dangling { vec![missing] } else { vec![] };
    let commit = |records| {
        j.commit(&CommitRequest {
            snapshot: j.last_tid().unwrap(),
            records,
            ..Default::default()
        })
        .unwrap()
    };
    commit(vec![
        Record::new(Oid::ROOT, b"root".to_vec(), vec![a]),
        Record::new(a, b"a0".to_vec(), vec![b]),
        Record::new(b, b"b".to_vec(), b_refs),
        Record::new(garbage, vec![7; 4000], vec![]),
    ]);
    for i in 1..=overwrites {
        commit(vec![Record::new(a, format!("a{i}").into_bytes(), vec![b])]);
    }
    j.close().unwrap();
    (a, b, missing)
}

/// The data of `oids` in the journal at `path` (None for a missing one), read-only.
fn contents(path: &Path, oids: &[Oid]) -> Vec<Option<Vec<u8>>> {
    let j = Journal::open(
        path,
        JournalOptions {
            read_only: true,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    let got = oids
        .iter()
        .map(|&o| match j.load(o) {
            Ok(l) => Some(l.record.data),
            Err(durus::Error::NotFound { .. }) => None,
            Err(e) => panic!("{o}: {e}"),
        })
        .collect();
    j.close().unwrap();
    got
}

#[test]
fn pack_frees_space_and_the_file_verifies_and_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.durus");
    let (a, b, _) = graph_journal(&path, 50, false);
    let p = path.to_str().unwrap();
    let live = [Oid::ROOT, a, b];
    let before = contents(&path, &live);
    let size_before = std::fs::metadata(&path).unwrap().len();

    let (code, stdout, stderr) = run(&["pack", p]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "{p}: packed: kept 3 objects, carried over 0 transactions; "
        )) && stdout.contains(" → ")
            && stdout.contains("freed"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "one line when stderr is no terminal: {stdout}"
    );
    assert!(stderr.is_empty(), "no progress bar off a terminal: {stderr}");
    assert!(std::fs::metadata(&path).unwrap().len() < size_before);
    assert!(!dir.path().join("shop.durus.packing").exists());
    let (code, stdout, stderr) = run(&["verify", "--refs", p]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("references ok: 3 objects reachable from the root"),
        "{stdout}"
    );
    let v = json(&["repair", "--refs", "--json", p], 0);
    assert_eq!(
        (v["status"].as_str(), v["report"]["refs"]["reachable"].as_u64()),
        (Some("intact"), Some(3)),
        "{v}"
    );
    assert_eq!(contents(&path, &live), before);
    assert_eq!(before[1].as_deref(), Some(&b"a50"[..]));
}

#[test]
fn pack_dry_run_leaves_the_file_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.durus");
    graph_journal(&path, 20, false);
    let p = path.to_str().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (code, stdout, stderr) = run(&["pack", "--dry-run", p]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("dry run: would keep 3 objects") && stdout.contains("nothing was written"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "a dry run changed the file");
    assert!(!dir.path().join("d.durus.packing").exists());
    let v = json(&["pack", "--dry-run", "--json", p], 0);
    assert_eq!(
        (v["status"].as_str(), v["report"]["dry_run"].as_bool()),
        (Some("dry_run"), Some(true))
    );
    assert!(v["report"]["freed"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn pack_json_has_the_documented_shape_and_keeps_history_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.durus");
    graph_journal(&path, 10, false);
    let p = path.to_str().unwrap();

    let v = json(&["pack", "--keep-transactions", "3", "--json", p], 0);
    assert_eq!(v["status"], "packed", "{v}");
    let r = &v["report"];
    let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "dry_run",
            "history_from",
            "objects",
            "object_bytes",
            "transactions",
            "bytes_before",
            "bytes_after",
            "freed",
            "dangling",
        ]),
        "{v}"
    );
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    assert_eq!((n("transactions"), n("history_from")), (3, 8), "{v}");
    assert_eq!(n("freed"), n("bytes_before") - n("bytes_after"), "{v}");
    assert_eq!((r["dry_run"].as_bool(), n("dangling")), (Some(false), 0), "{v}");
    assert!(n("objects") >= 3 && n("object_bytes") > 0, "{v}");

    // Every transaction of the last hour is kept: nothing left to carry over that
    // the previous pack had not already kept, and nothing to drop.
    let v = json(&["pack", "--keep", "1h", "--json", p], 0);
    assert_eq!(v["report"]["history_from"].as_u64(), Some(8), "{v}");
    let v = json(&["pack", "--json", p], 0);
    assert_eq!(
        (
            v["report"]["history_from"].as_u64(),
            v["report"]["transactions"].as_u64()
        ),
        (Some(11), Some(0)),
        "{v}"
    );

    for bad in [
        &["pack", "--keep", "10x", p][..],
        &["pack", "--keep", "1h", "--keep-transactions", "2", p],
    ] {
        let (code, stdout, stderr) = run(bad);
        assert_eq!(code, 2, "{bad:?}: {stdout}{stderr}");
    }
    let (_, _, stderr) = run(&["pack", "--keep", "10x", p]);
    assert!(stderr.contains("unknown unit 'x'"), "{stderr}");
}

#[test]
fn pack_refuses_dangling_references_naming_them_and_force_packs_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.durus");
    let (a, b, missing) = graph_journal(&path, 5, true);
    let p = path.to_str().unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let (code, stdout, stderr) = run(&["pack", p]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with(&format!("durus pack: {p}: 1 dangling references"))
            && stderr.contains(&format!("oids {missing}"))
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a refused pack changed the file"
    );
    let v = json(&["pack", "--json", p], 1);
    assert_failure(&v, "damaged", "dangling_refs");

    // verify finds the same without --refs nothing: the bytes are intact.
    let (code, _, stderr) = run(&["verify", p]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run(&["verify", "--refs", p]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("1 dangling references")
            && stderr.contains(&format!("missing object ids (the first 1): {missing}")),
        "{stderr}"
    );
    let v = json(&["verify", "--refs", "--json", p], 1);
    assert_failure(&v, "damaged", "dangling_refs");
    // repair --refs refuses to change it, naming what is missing.
    let (code, stdout, stderr) = run(&["repair", "--refs", p]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("(the first 1): {missing}")), "{stderr}");
    assert_failure(
        &json(&["repair", "--refs", "--json", p], 1),
        "damaged",
        "dangling_refs",
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a refused repair changed the file"
    );

    let (code, stdout, stderr) = run(&["pack", "--force", p]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("1 dangling references were left (--force)"),
        "{stdout}"
    );
    assert_eq!(
        contents(&path, &[a, b, missing]),
        vec![Some(b"a5".to_vec()), Some(b"b".to_vec()), None]
    );
}

#[test]
fn pack_of_a_locked_or_missing_file_fails_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.durus");
    graph_journal(&path, 5, false);
    let p = path.to_str().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let holder = Journal::open(&path, JournalOptions::default()).unwrap();
    let (code, stdout, stderr) = run(&["pack", p]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.starts_with(&format!("durus pack: {p}: ")) && stderr.contains("locked by another process"),
        "{stderr}"
    );
    let v = json(&["pack", "--json", p], 1);
    assert_failure(&v, "error", "locked");
    holder.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(!dir.path().join("l.durus.packing").exists());

    let missing = dir.path().join("missing.durus");
    let v = json(&["pack", "--json", missing.to_str().unwrap()], 1);
    assert_failure(&v, "error", "io");
    assert!(!missing.exists(), "pack created a file");
}
