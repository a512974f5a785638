//! The bank the child commits to and the checks read: accounts, one ledger of entries per
//! child task, and the sizes both sides agree on.

use durus::{Persistent, Ref};
use serde::{Deserialize, Serialize};

/// The root: the accounts and one ledger per child task, and (in the pack loop) the
/// ballast that gives every pack a file of some size to copy.
#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "crash.Bank")]
pub struct Bank {
    pub accounts: Vec<Ref<Account>>,
    pub ledgers: Vec<Ref<Ledger>>,
    // Absent from the crash loop's records, which stay as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ballast: Vec<Ref<Ballast>>,
}

/// Live data that no transfer changes: what a pack copies besides the bank.
#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "crash.Ballast")]
pub struct Ballast {
    pub bytes: Vec<u8>,
}

/// Ballast objects in a pack loop's bank, and the bytes of each: 4 MiB in all, so
/// that a pack takes long enough for kills to land inside it.
pub const BALLAST: (usize, usize) = (2048, 2048);

/// One account; transfers move money between two of them.
#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "crash.Account")]
pub struct Account {
    pub balance: i64,
}

/// One task's transfers: the newest entry and how many there are.
#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "crash.Ledger")]
pub struct Ledger {
    pub count: u64,
    pub head: Option<Ref<Entry>>,
}

/// One committed transfer, linked to the task's previous one. The memo (of random
/// length, up to a few KiB) makes some write groups span several pages, so that a kill
/// can cut a write short.
#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "crash.Entry")]
pub struct Entry {
    pub seq: u64,
    pub from: usize,
    pub to: usize,
    pub amount: i64,
    pub memo: String,
    pub prev: Option<Ref<Entry>>,
}

/// Accounts in the bank.
pub const ACCOUNTS: usize = 16;
/// Every account's balance before any transfer.
pub const START: i64 = 1_000;
/// Committing tasks in each child, each with its own ledger.
pub const TASKS: usize = 4;
