//! Printing: aligned tables, number formatting, ratios and the targets they are held to.

use std::time::Duration;

/// A table printed with aligned columns; the first column is left-aligned, the rest
/// right-aligned.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// Prints the table.
    pub fn print(&self) {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (s, &w))| {
                    if i == 0 {
                        format!("{s:<w$}")
                    } else {
                        format!("{s:>w$}")
                    }
                })
                .collect();
            println!("  {}", parts.join("  ").trim_end());
        };
        line(&self.header);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        line(&rule);
        for r in &self.rows {
            line(r);
        }
    }
}

/// An integer with thousands separators.
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A per-second rate, rounded, with separators.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// A rate for a table cell.
pub fn per_sec(r: f64) -> String {
    int(r.round() as u64)
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

/// A stated performance target and whether this run met it.
pub struct Verdict {
    /// Which workload and comparison.
    pub what: String,
    /// The target as stated in the issue.
    pub target: String,
    /// The figure measured.
    pub measured: String,
    /// Whether it was met.
    pub met: bool,
}

impl Verdict {
    /// Prints one line: measured figure, target and verdict.
    pub fn print(&self) {
        println!(
            "  {:<44} {:>12}   target {:<14} {}",
            self.what,
            self.measured,
            self.target,
            if self.met { "met" } else { "MISSED" }
        );
    }
}

/// How a ratio is held to its target.
#[derive(Clone, Copy)]
pub enum Bound {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be strictly above this ("ahead of").
    Above(f64),
}

/// `durus / peer` for a figure where higher is better, held to `bound`.
pub fn ratio_verdict(what: &str, durus: f64, peer: f64, bound: Bound) -> Verdict {
    let r = durus / peer;
    let (target, met) = match bound {
        Bound::AtLeast(x) => (format!(">= {x:.2}x"), r >= x),
        Bound::Above(x) => (format!("> {x:.2}x"), r > x),
    };
    Verdict {
        what: what.to_string(),
        target,
        measured: format!("{r:.2}x"),
        met,
    }
}

/// A time held to an upper bound.
pub fn time_verdict(what: &str, took: Duration, below: Duration) -> Verdict {
    Verdict {
        what: what.to_string(),
        target: format!("< {} ms", below.as_secs_f64() * 1e3),
        measured: format!("{} ms", ms(took)),
        met: took < below,
    }
}

/// Prints an informational ratio line (no target).
pub fn print_ratio(what: &str, durus: f64, peer: f64) {
    println!("  {:<44} {:>12}", what, format!("{:.2}x", durus / peer));
}
