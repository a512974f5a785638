//! How a [`PostgresStorage`](super::PostgresStorage) hears of other processes' commits
//! as they happen: every write group sends a notification on the channel
//! [`CHANNEL`] inside its transaction (PostgreSQL delivers it when the group commits,
//! never for one that rolled back), with its last tid as the payload, and every handle
//! keeps one extra connection that `LISTEN`s on it, on a thread of its own.
//!
//! A notification newer than what the handle knows calls the news callback
//! ([`SyncStorage::watch`](crate::storage::SyncStorage::watch)), which refreshes the
//! handle and puts the transactions on its change feed, so a `Db` that begins nothing
//! still sees other processes' commits on [`Db::changes`](crate::Db::changes). A burst of
//! notifications makes one refresh. Every `Db::begin` still asks the database for its
//! newest tid as well (the polling this replaces where nothing else runs), so that a
//! transaction begun after another process's commit returned always sees it, however
//! late the notification is.
//!
//! When the listening connection breaks (the server restarted), the thread connects
//! again with a growing pause, and refreshes once it listens again: notifications sent
//! while nobody listened are lost, the refresh finds what they said.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::NoTls;

use super::sql::to_error;
use crate::error::Result;
use crate::record::Tid;
use crate::storage::tables::View;
use crate::storage::News;

/// The notification channel of durus's commits.
pub(super) const CHANNEL: &str = "durus_commit";

/// How long the thread waits for a notification before it looks whether it should
/// stop: the longest a `close` waits for it.
const POLL: Duration = Duration::from_millis(100);

/// The longest pause between attempts to connect again.
const MOST_PAUSE: Duration = Duration::from_secs(5);

/// The listening thread of one handle; dropping this tells it to stop.
pub(super) struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Starts listening with a connection of `config`; `news` is called (on the
    /// listening thread) for each notification of a tid after what `view` knows.
    pub(super) fn start(
        config: postgres::Config,
        view: Arc<Mutex<View>>,
        news: News,
    ) -> std::io::Result<Listener> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("durus-postgres-listen".into())
            .spawn(move || run(&config, &view, &news, &flag))?;
        Ok(Listener {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it to end its session (within [`POLL`]),
    /// unless this is that thread (the news callback held the last handle on the
    /// storage).
    pub(super) fn stop_and_wait(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                // A panic on that thread has been reported already; there is nothing
                // to add here.
                let _ = t.join();
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The thread ends its session within [`POLL`].
        self.stop.store(true, Ordering::Release);
    }
}

/// The thread: listens until told to stop, connecting again after a failure.
fn run(config: &postgres::Config, view: &Mutex<View>, news: &News, stop: &AtomicBool) {
    let mut pause = POLL;
    while !stop.load(Ordering::Acquire) {
        match listen(config, view, news, stop) {
            Ok(()) => return,
            Err(e) => {
                if view_closed(view) {
                    return;
                }
                log::debug!("durus: listening for PostgreSQL notifications failed ({e}); trying again");
                let mut slept = Duration::ZERO;
                while slept < pause && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(POLL);
                    slept += POLL;
                }
                pause = (pause * 2).min(MOST_PAUSE);
            }
        }
    }
}

/// The tid a notification names; one that names none (not sent by durus) counts as
/// news all the same.
fn tid_of(n: &postgres::Notification) -> Tid {
    n.payload().parse::<u64>().map_or(Tid(u64::MAX), Tid)
}

fn view_closed(view: &Mutex<View>) -> bool {
    crate::sync::lock(view).closed
}

/// One session: `LISTEN`, catch up with what was missed before it, then hear
/// notifications until told to stop (`Ok`) or the connection breaks (`Err`).
fn listen(config: &postgres::Config, view: &Mutex<View>, news: &News, stop: &AtomicBool) -> Result<()> {
    let mut client = config.connect(NoTls).map_err(to_error)?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(to_error)?;
    // Whatever was committed while nobody listened (before the first session: since
    // the handle opened) sent notifications nobody heard.
    news();
    while !stop.load(Ordering::Acquire) {
        let first = client
            .notifications()
            .timeout_iter(POLL)
            .next()
            .map_err(to_error)?;
        if client.is_closed() {
            return Err(crate::Error::Disconnected {
                reason: "the listening connection to PostgreSQL was lost".into(),
            });
        }
        let Some(first) = first else { continue };
        // The rest of a burst is already here: take it without waiting again.
        let mut newest = tid_of(&first);
        let mut notes = client.notifications();
        let mut more = notes.iter();
        while let Some(n) = more.next().map_err(to_error)? {
            newest = newest.max(tid_of(&n));
        }
        let known = {
            let v = crate::sync::lock(view);
            if v.closed {
                return Ok(());
            }
            v.known
        };
        // This handle's own commits come back too; they are known already.
        if newest > known {
            news();
        }
    }
    Ok(())
}
