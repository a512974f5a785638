//! OPS: the operator tools at scale. Python Durus 4.3 writes `--records` objects (leaves
//! of 100 random bytes under the root, through its own `Connection`, so the pickles and
//! class names are real), then `durus import` reads that file into a journal (records/s),
//! and `durus info` and `durus census` run on the imported journal; each through the
//! library calls the commands make, the median of 3 runs.

use std::path::Path;
use std::time::Duration;

use durus::import::{import_durus, ImportOptions};
use durus::tools::census::census;
use durus::tools::info::info;

use crate::args::Args;
use crate::report::{int, mib, per_sec, rate, secs, Table};
use crate::sys::{self, timed};

/// Runs of each measured step; the median is reported.
const RUNS: usize = 3;

/// The OPS workload.
pub fn ops(args: &Args, dir: &Path) {
    let Some(python) = &args.python else {
        eprintln!("OPS needs --python PATH (a Python with durus==4.3) to write the Durus file");
        std::process::exit(2);
    };
    let source = dir.join("ops.durus-py");
    let Some(out) = crate::pack::python_script(python, &source, args.records, args.batch, 0) else {
        std::process::exit(1);
    };
    let written: Vec<f64> = out
        .lines()
        .find_map(|l| l.strip_prefix("written "))
        .map(|l| l.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    println!(
        "\nOPS: a Python Durus 4.3 FileStorage of {} leaves written by Durus itself in {} s \
         ({} MiB); median of {RUNS} runs",
        int(args.records),
        written.first().map_or("?".into(), |s| format!("{s:.1}")),
        mib(std::fs::metadata(&source).map_or(0, |m| m.len())),
    );
    sys::settle();
    let dest = dir.join("ops.durus");
    let mut imports = Vec::new();
    for _ in 0..RUNS {
        let _ = std::fs::remove_file(&dest);
        let (r, took) = timed(|| import_durus(&source, &dest, &ImportOptions::default()));
        let r = r.expect("import the Python Durus file");
        imports.push((took, r));
        sys::settle();
    }
    imports.sort_by_key(|(took, _)| *took);
    let (took, r) = &imports[RUNS / 2];
    let mut t = Table::new(&["step", "seconds", "rate", "what"]);
    t.row(vec![
        "durus import".into(),
        secs(*took),
        format!("{} records/s", per_sec(rate(r.source_records, *took))),
        format!(
            "{} source records into {} objects, {} MiB journal",
            int(r.source_records),
            int(r.objects),
            mib(r.journal_bytes)
        ),
    ]);
    let (i, took) = median_of(|| info(&dest).expect("durus info"));
    t.row(vec![
        "durus info".into(),
        secs(took),
        format!("{} objects/s", per_sec(rate(i.objects, took))),
        format!("{} objects, {} reachable", int(i.objects), int(i.reachable)),
    ]);
    let (c, took) = median_of(|| census(&dest).expect("durus census"));
    t.row(vec![
        "durus census".into(),
        secs(took),
        format!("{} objects/s", per_sec(rate(c.objects, took))),
        format!("{} objects in {} types", int(c.objects), c.types.len()),
    ]);
    t.print();
}

/// Runs `f` [`RUNS`] times: the result of the last run and the median time.
fn median_of<T>(mut f: impl FnMut() -> T) -> (T, Duration) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let (out, took) = timed(&mut f);
        times.push(took);
        last = Some(out);
    }
    times.sort();
    (last.expect("RUNS > 0"), times[RUNS / 2])
}
