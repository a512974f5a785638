//! The Python Durus 4.3 side of W6: `durus_w6.py` beside this crate, one run per call.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::stats::Measure;

/// What one Python run measured.
#[derive(Default)]
pub struct Figures {
    pub build_s: f64,
    pub reopen_ms: f64,
    pub rows: HashMap<String, Measure>,
}

/// Runs the script once in a fresh file; `None` (with the reason on stderr) if Python
/// or Durus is missing or the run fails.
pub fn run(python: &str, path: &Path, objects: u64, fanout: u64) -> Option<Figures> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("durus_w6.py");
    let out = match Command::new(python)
        .arg(&script)
        .arg(path)
        .arg(objects.to_string())
        .arg(fanout.to_string())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("could not run {python}: {e}");
            return None;
        }
    };
    if !out.status.success() {
        eprintln!(
            "Python Durus run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let mut f = Figures::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let nums: Vec<f64> = fields.iter().skip(1).filter_map(|v| v.parse().ok()).collect();
        match (fields.first().copied(), nums.as_slice()) {
            (Some("build_commit_s"), [s]) => f.build_s = *s,
            (Some("reopen_s"), [s]) => f.reopen_ms = s * 1e3,
            (Some(key), [rate, p50, p99]) => {
                f.rows.insert(
                    key.to_string(),
                    Measure {
                        rate: *rate,
                        p50_ns: *p50,
                        p99_ns: *p99,
                    },
                );
            }
            _ => {}
        }
    }
    Some(f)
}
