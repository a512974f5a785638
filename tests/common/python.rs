//! The real Python Durus 4.3, for interoperability tests: `$DURUS_PYTHON` if set, else
//! a virtualenv under `target/` made once (with `python3 -m venv` and
//! `pip install durus==4.3`) under a file lock, so tests running in parallel share it.
//! Fails with a clear message if neither works: these tests never skip.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};

/// The Durus version the tests are written against.
pub const DURUS: &str = "durus==4.3";

/// A Python interpreter that can `import durus`.
pub fn durus_python() -> PathBuf {
    if let Some(p) = std::env::var_os("DURUS_PYTHON") {
        let p = PathBuf::from(p);
        if let Err(e) = imports_durus(&p) {
            panic!("DURUS_PYTHON={} cannot import durus 4.3: {e}", p.display());
        }
        return p;
    }
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).expect("create target/tmp");
    let venv = base.join("durus-venv");
    let lock = File::create(base.join("durus-venv.lock")).expect("create the venv lock file");
    lock.lock().expect("lock the venv lock file");
    let python = venv.join("bin").join("python");
    let ready = venv.join(".durus-4.3-installed");
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (install python3 and its venv module, or set DURUS_PYTHON)",
        );
        run(
            Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", DURUS]),
            "pip install durus==4.3 (needs the package registry, or set DURUS_PYTHON)",
        );
        if let Err(e) = imports_durus(&python) {
            panic!("the virtualenv at {} cannot import durus: {e}", venv.display());
        }
        File::create(&ready).expect("mark the virtualenv ready");
    }
    python
}

fn imports_durus(python: &Path) -> Result<(), String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import durus, durus.client_storage, importlib.metadata as m; assert m.version('durus') == '4.3', m.version('durus')",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn run(cmd: &mut Command, what: &str) {
    match cmd.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{what} could not start: {e}"),
    }
}

/// The scenario script beside the tests.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/durus_client.py")
}

/// Runs a scenario of the script against `address` (`host:port`) and returns its
/// output lines; panics with its output if it fails.
pub fn scenario(address: &str, name: &str, args: &[&str]) -> Vec<String> {
    let out = scenario_output(address, name, args);
    if !out.status.success() {
        panic!(
            "Python scenario {name} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs a scenario and returns its output, whatever its exit status.
pub fn scenario_output(address: &str, name: &str, args: &[&str]) -> Output {
    Command::new(durus_python())
        .arg(script())
        .arg(name)
        .arg(address)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python")
}

/// Starts a scenario without waiting for it, its output piped.
pub fn spawn_scenario(address: &str, name: &str, args: &[&str]) -> std::process::Child {
    Command::new(durus_python())
        .arg(script())
        .arg(name)
        .arg(address)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python")
}

/// The value of the first `key value` line.
pub fn value<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

/// Starts `durus serve` (the binary) on `path` on a free port; returns it, its
/// address, and its log (stderr) to read on.
// The child is handed to the caller, which waits for it; a panic here fails the test.
#[allow(clippy::zombie_processes)]
pub fn child_server(path: &Path) -> (Child, String, BufReader<ChildStderr>) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_durus"))
        .args(["serve", "--port", "0", "--file"])
        .arg(path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            let status = c.wait();
            panic!("durus serve died: {status:?}");
        }
        if let Some(at) = line.find("serving on ") {
            return (c, line[at + 11..].trim().to_string(), out);
        }
    }
}

/// Runs `tests/python/durus_files.py ARGS` (Durus database files written by Python
/// Durus, and checks of them through a server) and returns its stdout; panics with its
/// output if it fails.
pub fn durus_files(args: &[&std::ffi::OsStr]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/durus_files.py");
    let out = Command::new(durus_python())
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    if !out.status.success() {
        panic!(
            "durus_files.py {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
