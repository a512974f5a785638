//! The checks after each kill: the journal verifies (a torn tail only after everything
//! acknowledged), every acknowledged entry is in its ledger, every ledger is an unbroken
//! chain, and the balances are exactly the start balances plus the entries. Checking is
//! incremental: only entries new since the last kill are walked.

use std::collections::BTreeMap;
use std::path::Path;

use durus::journal::{Journal, VerifyReport};
use durus::record::Tid;
use durus::{Db, Ref, Transaction};

use crate::bank::{Account, Bank, Entry, Ledger, ACCOUNTS, START, TASKS};
use crate::protocol::Heard;

/// What the checks have established about the current file.
#[derive(Clone, Default)]
pub struct Checked {
    bank: Option<CheckedBank>,
    /// Last transaction id seen, to catch a journal that went backwards.
    last_tid: Tid,
}

/// The bank as of the last check: its layout, the balances the entries add up to,
/// and each ledger's newest entry (seq and oid).
#[derive(Clone)]
pub struct CheckedBank {
    accounts: Vec<Ref<Account>>,
    ledgers: Vec<Ref<Ledger>>,
    balances: Vec<i64>,
    heads: Vec<(u64, Option<Ref<Entry>>)>,
}

/// Checks the file after a kill against what the child acknowledged and what the
/// previous checks established. Returns the new established state, the verify
/// report (if the file exists), and how many transfers were new.
pub fn check(
    path: &Path,
    heard: &Heard,
    before: &Checked,
) -> Result<(Checked, Option<VerifyReport>, u64), String> {
    if !path.exists() {
        return match (heard.acks.first(), before.last_tid) {
            (None, Tid(0)) => Ok((before.clone(), None, 0)),
            (Some(a), _) => Err(format!("no file, but {a:?} was acknowledged")),
            (None, t) => Err(format!("the file is gone, though transaction {t} was in it")),
        };
    }
    let report = verify(path, heard, before)?;
    if report.last_tid == Tid(0) {
        // Not even the root is committed: nothing can have been acknowledged.
        return no_bank(heard, before).map(|c| (c, Some(report), 0));
    }
    let (bank, commits) = futures::executor::block_on(check_bank(path, heard, before))?;
    let checked = Checked {
        bank,
        last_tid: report.last_tid,
    };
    Ok((checked, Some(report), commits))
}

/// Verifies the whole journal: any error fails, and a torn tail must come after
/// every acknowledged transaction and every one seen before.
fn verify(path: &Path, heard: &Heard, before: &Checked) -> Result<VerifyReport, String> {
    let report = Journal::verify_path(path).map_err(|e| format!("the journal does not verify: {e}"))?;
    let acked = heard.acks.iter().map(|a| a.2).max().unwrap_or_default();
    let newest = acked.max(before.last_tid);
    if report.last_tid < newest {
        return Err(format!(
            "the journal ends at transaction {} (torn tail: {:?}), but {newest} was acknowledged or seen",
            report.last_tid, report.torn_tail
        ));
    }
    Ok(report)
}

/// The state when no bank has been committed yet: nothing may be acknowledged and
/// nothing may have been seen before.
fn no_bank(heard: &Heard, before: &Checked) -> Result<Checked, String> {
    if let Some(a) = heard.acks.first() {
        return Err(format!("no bank, but {a:?} was acknowledged"));
    }
    if before.bank.is_some() {
        return Err("the bank was in the file before, and now is not".into());
    }
    Ok(before.clone())
}

/// Reopens the file read-only (the next child does the recovery) and checks the
/// bank: layout, ledgers, acknowledgements, balances.
async fn check_bank(
    path: &Path,
    heard: &Heard,
    before: &Checked,
) -> Result<(Option<CheckedBank>, u64), String> {
    let db: Db<Bank> = Db::builder(path)
        .read_only(true)
        .open()
        .await
        .map_err(|e| format!("reopening read-only: {e}"))?;
    let tx = db.begin().await.map_err(|e| format!("beginning: {e}"))?;
    let bank = tx.root().await.map_err(|e| format!("reading the root: {e}"))?;
    let r = if bank.accounts.is_empty() {
        no_bank(heard, before).map(|c| (c.bank, 0))
    } else {
        check_transfers(&tx, &bank, heard, before.bank.as_ref()).await
    };
    drop(tx);
    db.close().await.map_err(|e| format!("closing: {e}"))?;
    r
}

/// Walks each ledger's new entries, checks the acknowledgements against them, and
/// the balances against the entries.
async fn check_transfers(
    tx: &Transaction<Bank>,
    bank: &Bank,
    heard: &Heard,
    before: Option<&CheckedBank>,
) -> Result<(Option<CheckedBank>, u64), String> {
    let mut now = match before {
        Some(b) => b.clone(),
        None => CheckedBank {
            accounts: bank.accounts.clone(),
            ledgers: bank.ledgers.clone(),
            balances: vec![START; ACCOUNTS],
            heads: vec![(0, None); TASKS],
        },
    };
    if bank.accounts != now.accounts || bank.ledgers != now.ledgers || bank.accounts.len() != ACCOUNTS {
        return Err("the bank's accounts or ledgers changed".into());
    }
    let mut commits = 0;
    for task in 0..TASKS {
        let new = new_entries(tx, now.ledgers[task], now.heads[task], task).await?;
        commits += new.len() as u64;
        apply(&mut now, task, &new)?;
    }
    check_acks(heard, before, &now)?;
    check_balances(tx, &now).await?;
    Ok((Some(now), commits))
}

/// The entries of a ledger after `known` (the newest entry a previous check saw),
/// oldest first. The chain must be unbroken (seqs counting down by one) and must
/// reach `known` itself, so nothing seen before has vanished or been replaced.
async fn new_entries(
    tx: &Transaction<Bank>,
    ledger: Ref<Ledger>,
    known: (u64, Option<Ref<Entry>>),
    task: usize,
) -> Result<Vec<(Ref<Entry>, Entry)>, String> {
    let l = tx
        .get(ledger)
        .await
        .map_err(|e| format!("reading ledger {task}: {e}"))?;
    let mut new = Vec::new();
    let mut at = l.head;
    let mut want = l.count;
    while want > known.0 {
        let r = at.ok_or_else(|| format!("ledger {task} ends before entry {want}"))?;
        let e = tx
            .get(r)
            .await
            .map_err(|e| format!("reading entry {want} of ledger {task}: {e}"))?;
        if e.seq != want {
            return Err(format!("ledger {task}: entry {want} is numbered {}", e.seq));
        }
        at = e.prev;
        want -= 1;
        new.push((r, (*e).clone()));
    }
    if want != known.0 || at != known.1 {
        return Err(format!(
            "ledger {task} (count {}) no longer leads to its entry {} seen before",
            l.count, known.0
        ));
    }
    new.reverse();
    Ok(new)
}

/// Adds a ledger's new entries to the expected balances and moves its head.
fn apply(now: &mut CheckedBank, task: usize, new: &[(Ref<Entry>, Entry)]) -> Result<(), String> {
    for (r, e) in new {
        if e.from >= ACCOUNTS || e.to >= ACCOUNTS || e.from == e.to {
            return Err(format!(
                "ledger {task}: entry {} moves {} -> {}",
                e.seq, e.from, e.to
            ));
        }
        now.balances[e.from] -= e.amount;
        now.balances[e.to] += e.amount;
        now.heads[task] = (e.seq, Some(*r));
    }
    Ok(())
}

/// Every acknowledged entry is in its ledger, and is one not seen by an earlier
/// check (a child never acknowledges a seq twice).
fn check_acks(heard: &Heard, before: Option<&CheckedBank>, now: &CheckedBank) -> Result<(), String> {
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    for &(task, seq, tid) in &heard.acks {
        let seen = before.map_or(0, |b| b.heads[task].0);
        let prev = last.insert(task, seq).unwrap_or(seen);
        if seq <= prev {
            return Err(format!("task {task} acknowledged entry {seq} after entry {prev}"));
        }
        if seq > now.heads[task].0 {
            return Err(format!(
                "acknowledged entry {seq} of task {task} (transaction {tid}) is missing: the ledger has {}",
                now.heads[task].0
            ));
        }
    }
    Ok(())
}

/// The balances are exactly the start balances plus the entries, and the total is
/// conserved.
async fn check_balances(tx: &Transaction<Bank>, now: &CheckedBank) -> Result<(), String> {
    let mut total = 0;
    for (i, a) in now.accounts.iter().enumerate() {
        let balance = tx
            .get(*a)
            .await
            .map_err(|e| format!("reading account {i}: {e}"))?
            .balance;
        if balance != now.balances[i] {
            return Err(format!(
                "account {i} holds {balance}, but its committed entries add up to {}: a transaction landed in part",
                now.balances[i]
            ));
        }
        total += balance;
    }
    if total != START * ACCOUNTS as i64 {
        return Err(format!("the total is {total}, not {}", START * ACCOUNTS as i64));
    }
    Ok(())
}
