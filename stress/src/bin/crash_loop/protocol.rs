//! What a child tells the parent through its stdout, one line at a time: `opened` once
//! the journal is open (recovery done), then `ack TASK SEQ TID` right after each commit
//! returned `Ok`, and (in the pack loop) `packing` before each pack and `packed` after. The child writes [`Line`]s with `Display`; the parent reads them back
//! with [`read_lines`] and collects them into [`Heard`].

use std::fmt;
use std::io::{BufRead, BufReader};
use std::process::ChildStdout;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use durus::record::Tid;

use crate::bank::TASKS;

/// How long the first acknowledgement may take (a debug build on a busy machine).
pub const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// One line of a child's stdout.
pub enum Line {
    /// The database is open.
    Opened,
    /// Task, seq and tid of a durable commit.
    Ack(usize, u64, Tid),
    /// A pack is starting.
    Packing,
    /// The pack started last is done.
    Packed,
    /// Anything else, kept to be reported.
    Garbage(String),
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Opened => f.write_str("opened"),
            Line::Packing => f.write_str("packing"),
            Line::Packed => f.write_str("packed"),
            Line::Ack(task, seq, tid) => write!(f, "ack {task} {seq} {}", tid.0),
            Line::Garbage(l) => f.write_str(l),
        }
    }
}

/// What a child said before it died.
#[derive(Default)]
pub struct Heard {
    /// It reported the database open.
    pub opened: bool,
    /// Time from the spawn to the first acknowledgement, when the parent waited.
    pub first_ack: Option<Duration>,
    /// (task, seq, tid) of every acknowledged commit.
    pub acks: Vec<(usize, u64, Tid)>,
    /// Packs started and finished.
    pub packs: (u64, u64),
}

impl Heard {
    /// Whether the child was killed in the middle of a pack.
    pub fn mid_pack(&self) -> bool {
        self.packs.0 > self.packs.1
    }
}

/// Reads the child's stdout on a thread of its own, so the pipe never fills; the
/// thread ends when the child's end of the pipe closes (at its death).
pub fn read_lines(stdout: ChildStdout) -> (Receiver<Line>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(parse_line(&line)).is_err() {
                break;
            }
        }
    });
    (rx, reader)
}

/// Records one line; a line that is not part of the protocol is a failure.
pub fn hear(heard: &mut Heard, line: Line) -> Result<(), String> {
    match line {
        Line::Opened => heard.opened = true,
        Line::Packing => heard.packs.0 += 1,
        Line::Packed if heard.mid_pack() => heard.packs.1 += 1,
        Line::Packed => return Err("the child finished a pack it had not started".into()),
        Line::Ack(task, seq, tid) if task < TASKS => heard.acks.push((task, seq, tid)),
        Line::Ack(task, ..) => return Err(format!("the child acknowledged for task {task}")),
        Line::Garbage(l) => return Err(format!("the child wrote {l:?}")),
    }
    Ok(())
}

/// Waits for the child's first acknowledgement.
pub fn wait_for_ack(lines: &Receiver<Line>, heard: &mut Heard) -> Result<(), String> {
    let deadline = Instant::now() + FIRST_ACK_TIMEOUT;
    while heard.acks.is_empty() {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => hear(heard, line)?,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no acknowledgement within {FIRST_ACK_TIMEOUT:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the child closed its stdout before its first acknowledgement".into())
            }
        }
    }
    Ok(())
}

/// The inverse of [`Line`]'s `Display`.
fn parse_line(line: &str) -> Line {
    match line {
        "opened" => return Line::Opened,
        "packing" => return Line::Packing,
        "packed" => return Line::Packed,
        _ => {}
    }
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["ack", task, seq, tid] => match (task.parse(), seq.parse(), tid.parse()) {
            (Ok(task), Ok(seq), Ok(tid)) => Line::Ack(task, seq, Tid(tid)),
            _ => Line::Garbage(line.to_string()),
        },
        _ => Line::Garbage(line.to_string()),
    }
}
