//! The examples' printing helper (`examples/common`) on a real closed pipe: a line that
//! cannot be delivered neither panics nor is retried, and lines reach an open pipe.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

#[path = "../examples/common/mod.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
// the examples use the macro; this test the function under it
mod example_print;

use example_print::write_unless_gone;

/// A writer that counts the writes it is asked for.
struct Counting<W> {
    inner: W,
    writes: usize,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes += 1;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_closed_pipe_stops_the_lines_without_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut out = Counting {
        inner: writer,
        writes: 0,
    };
    let gone = AtomicBool::new(false);
    write_unless_gone(&mut out, &gone, format_args!("first line"));
    assert!(gone.load(Ordering::Relaxed), "the failed write went unnoticed");
    let tried = out.writes;
    assert!(tried > 0);
    write_unless_gone(&mut out, &gone, format_args!("second line"));
    assert_eq!(out.writes, tried, "a line was tried after the pipe closed");
}

#[test]
fn an_open_pipe_gets_every_line() {
    let (mut reader, mut writer) = std::io::pipe().unwrap();
    let gone = AtomicBool::new(false);
    for i in 0..3 {
        write_unless_gone(&mut writer, &gone, format_args!("line {i}"));
    }
    drop(writer);
    let mut text = String::new();
    reader.read_to_string(&mut text).unwrap();
    assert_eq!(text, "line 0\nline 1\nline 2\n");
    assert!(!gone.load(Ordering::Relaxed));
}
