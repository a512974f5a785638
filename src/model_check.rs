//! A deterministic scheduler for checking concurrent code in unit tests: the tasks of a
//! scenario run on one thread, and at every point where more than one could go on, a
//! [`Chooser`] picks which one does (or, where allowed, which one is cancelled by
//! dropping its future). [`explore_all`] tries every sequence of choices, which is
//! every interleaving of the scenario's steps; [`explore_random`] samples many under a
//! seed. A failing schedule is reported with its choices, so it can be replayed.
//!
//! Steps are what runs between two points where a task returns `Pending`, so the code
//! under test is interleaved at its await points (and at [`yield_now`] calls a
//! scenario adds inside critical sections). Code whose shared state changes only inside
//! one mutex's critical sections is modelled by making each critical section a step.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::LocalBoxFuture;
use futures::task::{waker, ArcWake};

/// Picks one of `n` options at each scheduling point.
pub(crate) trait Chooser {
    /// A number below `n` (`n` is at least 1).
    fn choose(&mut self, n: usize) -> usize;
}

/// Replays a prefix of choices, then takes the first option; records every choice and
/// how many options it had, for backtracking.
struct Dfs {
    prefix: Vec<usize>,
    trace: Vec<(usize, usize)>,
}

impl Chooser for Dfs {
    fn choose(&mut self, n: usize) -> usize {
        let c = self.prefix.get(self.trace.len()).copied().unwrap_or(0).min(n - 1);
        self.trace.push((c, n));
        c
    }
}

/// Random choices from a seeded generator, recorded for the report.
struct Random {
    rng: fastrand::Rng,
    trace: Vec<usize>,
}

impl Chooser for Random {
    fn choose(&mut self, n: usize) -> usize {
        let c = self.rng.usize(..n);
        self.trace.push(c);
        c
    }
}

/// Runs `scenario` once for every sequence of scheduling choices (depth-first, each
/// run replaying a prefix of the last one's choices), up to `max_runs` runs; returns
/// how many it ran. Fails with the first error and the choices that led to it.
pub(crate) fn explore_all(
    max_runs: usize,
    mut scenario: impl FnMut(&mut dyn Chooser) -> Result<(), String>,
) -> Result<usize, String> {
    let mut prefix = Vec::new();
    for run in 1..=max_runs {
        let mut dfs = Dfs {
            prefix,
            trace: Vec::new(),
        };
        let r = scenario(&mut dfs);
        let choices: Vec<usize> = dfs.trace.iter().map(|c| c.0).collect();
        r.map_err(|e| format!("{e} (schedule {choices:?})"))?;
        // Backtrack: the last choice that still has an untried option.
        let Some(i) = dfs.trace.iter().rposition(|&(c, n)| c + 1 < n) else {
            return Ok(run);
        };
        prefix = choices[..i].to_vec();
        prefix.push(dfs.trace[i].0 + 1);
    }
    Err(format!(
        "more than {max_runs} schedules: make the scenario smaller"
    ))
}

/// Runs `scenario` `runs` times with random scheduling choices derived from `seed`.
pub(crate) fn explore_random(
    seed: u64,
    runs: usize,
    mut scenario: impl FnMut(&mut dyn Chooser) -> Result<(), String>,
) -> Result<(), String> {
    for run in 0..runs as u64 {
        let mut r = Random {
            rng: fastrand::Rng::with_seed(seed ^ run.wrapping_mul(0xA076_1D64_78BD_642F)),
            trace: Vec::new(),
        };
        scenario(&mut r).map_err(|e| format!("{e} (seed {seed}, run {run}, schedule {:?})", r.trace))?;
    }
    Ok(())
}

/// Lets the scheduler switch tasks here: returns `Pending` once, already woken.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(arc: &Arc<Self>) {
        arc.0.store(true, Ordering::SeqCst);
    }
}

struct Task<'a> {
    name: String,
    fut: Option<LocalBoxFuture<'a, ()>>,
    woken: Arc<Flag>,
    cancellable: bool,
}

/// Starts tasks, from the scenario or from inside other tasks.
#[derive(Clone, Default)]
pub(crate) struct Spawner<'a> {
    new: Rc<RefCell<Vec<Task<'a>>>>,
}

impl<'a> Spawner<'a> {
    /// Adds a task; `cancellable` lets the scheduler drop it at any of its await points.
    pub(crate) fn spawn(
        &self,
        name: impl Into<String>,
        cancellable: bool,
        fut: impl Future<Output = ()> + 'a,
    ) {
        self.new.borrow_mut().push(Task {
            name: name.into(),
            fut: Some(Box::pin(fut)),
            woken: Arc::new(Flag(AtomicBool::new(true))),
            cancellable,
        });
    }
}

/// What one run did.
#[derive(Debug, Default)]
pub(crate) struct RunReport {
    /// Tasks dropped by the scheduler before they finished.
    pub(crate) cancelled: Vec<String>,
}

/// Runs the tasks `setup` spawns until all finish, choosing with `chooser` which runnable
/// task goes next, and (while fewer than `max_cancels` were) offering to drop any
/// unfinished cancellable task as one more option. Fails on a deadlock (tasks left, none
/// runnable) or after `max_steps` steps.
pub(crate) fn run<'a>(
    chooser: &mut dyn Chooser,
    max_cancels: usize,
    max_steps: usize,
    setup: impl FnOnce(&Spawner<'a>),
) -> Result<RunReport, String> {
    let spawner = Spawner::default();
    setup(&spawner);
    let mut tasks: Vec<Task<'a>> = Vec::new();
    let mut report = RunReport::default();
    for _ in 0..max_steps {
        tasks.append(&mut spawner.new.borrow_mut());
        tasks.retain(|t| t.fut.is_some());
        if tasks.is_empty() {
            return Ok(report);
        }
        let runnable: Vec<usize> = (0..tasks.len())
            .filter(|&i| tasks[i].woken.0.load(Ordering::SeqCst))
            .collect();
        if runnable.is_empty() {
            let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
            return Err(format!("deadlock: {names:?} wait and nothing can wake them"));
        }
        let cancellable: Vec<usize> = if report.cancelled.len() < max_cancels {
            (0..tasks.len()).filter(|&i| tasks[i].cancellable).collect()
        } else {
            Vec::new()
        };
        let pick = chooser.choose(runnable.len() + cancellable.len());
        if let Some(&i) = runnable.get(pick) {
            let t = &mut tasks[i];
            t.woken.0.store(false, Ordering::SeqCst);
            let w = waker(t.woken.clone());
            let mut cx = Context::from_waker(&w);
            if let Some(f) = t.fut.as_mut() {
                if Pin::new(f).poll(&mut cx).is_ready() {
                    t.fut = None;
                }
            }
        } else {
            let t = &mut tasks[cancellable[pick - runnable.len()]];
            report.cancelled.push(t.name.clone());
            t.fut = None;
        }
    }
    Err(format!("no end after {max_steps} steps"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explore_all_visits_every_interleaving_once() {
        // Two tasks of two steps each: C(4, 2) = 6 interleavings.
        let mut seen = std::collections::BTreeSet::new();
        let runs = explore_all(100, |c| {
            let log = RefCell::new(String::new());
            run(c, 0, 100, |s| {
                for name in ["a", "b"] {
                    let log = &log;
                    s.spawn(name, false, async move {
                        log.borrow_mut().push_str(name);
                        yield_now().await;
                        log.borrow_mut().push_str(&name.to_uppercase());
                    });
                }
            })?;
            seen.insert(log.into_inner());
            Ok(())
        })
        .unwrap();
        assert_eq!(runs, 6);
        assert_eq!(seen.len(), 6, "{seen:?}");
    }

    #[test]
    fn a_deadlock_is_reported_with_its_schedule() {
        let e = explore_all(10, |c| {
            run(c, 0, 100, |s| {
                s.spawn("stuck", false, std::future::pending::<()>());
            })
            .map(|_| ())
        })
        .unwrap_err();
        assert!(e.contains("deadlock") && e.contains("stuck"), "{e}");
    }
}
