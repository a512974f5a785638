//! Printing for the examples that survives a closed stdout.
//!
//! `println!` panics when the reader of stdout has gone, as in
//! `cargo run --example quickstart | head -1`. The examples print with [`say!`]
//! instead: a line that cannot be delivered is dropped, and so is every later one, while
//! the program goes on to the end and closes its database cleanly.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Prints a line to stdout, as `println!` does, but never panics.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::common::say_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

/// Set once a write to stdout failed: later lines are not attempted.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// What [`say!`] calls: writes `line` to stdout unless an earlier line failed.
pub fn say_line(line: fmt::Arguments) {
    write_unless_gone(&mut io::stdout().lock(), &STDOUT_GONE, line);
}

/// Writes `line` and a newline to `out` and flushes it, unless `gone` is set; sets
/// `gone` if the write fails (a closed pipe, a full disk), instead of panicking.
pub fn write_unless_gone(out: &mut impl Write, gone: &AtomicBool, line: fmt::Arguments) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}
