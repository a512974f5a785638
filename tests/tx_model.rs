//! Property test: interleaved transactions on a Db against a model of serializable
//! snapshot semantics.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::on_all_runtimes;
use durus::journal::io::MemFile;
use durus::journal::{Durability, JournalOptions};
use durus::storage::FileStorage;
use durus::{Db, DbBuilder, Error, Persistent, Ref, Transaction};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "model.Root")]
struct Root {
    objs: Vec<Ref<Obj>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "model.Obj")]
struct Obj {
    n: u64,
}

const OBJS: usize = 4;
const SLOTS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Begin(usize),
    Read(usize, usize),
    Write(usize, usize, u64),
    Commit(usize),
    Abort(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SLOTS;
    let o = 0..OBJS;
    prop_oneof![
        2 => s.clone().prop_map(Op::Begin),
        4 => (s.clone(), o.clone()).prop_map(|(s, o)| Op::Read(s, o)),
        4 => (s.clone(), o, any::<u64>()).prop_map(|(s, o, v)| Op::Write(s, o, v)),
        3 => s.clone().prop_map(Op::Commit),
        1 => s.prop_map(Op::Abort),
    ]
}

/// What the model knows of an open transaction.
struct TxModel {
    tx: Transaction<Root>,
    snapshot: u64,
    reads: BTreeSet<usize>,
    writes: BTreeMap<usize, u64>,
}

async fn run(ops: Vec<Op>, cache_size: usize) {
    let storage = FileStorage::open_io(
        Box::new(MemFile::new()),
        JournalOptions {
            durability: Durability::Eventual,
            ..JournalOptions::default()
        },
    )
    .await
    .unwrap();
    let db: Db<Root> = DbBuilder::storage(storage)
        .cache_size(cache_size)
        .open()
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    let mut objs = Vec::new();
    for _ in 0..OBJS {
        objs.push(tx.insert(Obj { n: 0 }).await.unwrap());
    }
    tx.root_mut().await.unwrap().objs = objs.clone();
    let t0 = tx.commit().await.unwrap().tid.0;

    // Committed states by tid, and the tid that last wrote each object.
    let mut states: HashMap<u64, Vec<u64>> = HashMap::from([(t0, vec![0; OBJS])]);
    let mut last = t0;
    let mut written_at = [t0; OBJS];
    let mut open: Vec<Option<TxModel>> = (0..SLOTS).map(|_| None).collect();

    for op in ops {
        match op {
            Op::Begin(s) => {
                let tx = db.begin().await.unwrap();
                assert_eq!(tx.snapshot().0, last, "a new transaction sees every commit");
                open[s] = Some(TxModel {
                    tx,
                    snapshot: last,
                    reads: BTreeSet::new(),
                    writes: BTreeMap::new(),
                });
            }
            Op::Read(s, o) => {
                if let Some(m) = &mut open[s] {
                    let got = m.tx.get(objs[o]).await.unwrap().n;
                    let want = m.writes.get(&o).copied().unwrap_or(states[&m.snapshot][o]);
                    assert_eq!(got, want, "read of {o} in a transaction at {}", m.snapshot);
                    m.reads.insert(o);
                }
            }
            Op::Write(s, o, v) => {
                if let Some(m) = &mut open[s] {
                    m.tx.get_mut(objs[o]).await.unwrap().n = v;
                    if !m.writes.contains_key(&o) {
                        m.reads.insert(o);
                    }
                    m.writes.insert(o, v);
                }
            }
            Op::Abort(s) => open[s] = None,
            Op::Commit(s) => {
                let Some(m) = open[s].take() else { continue };
                let touched: BTreeSet<usize> = m.reads.iter().chain(m.writes.keys()).copied().collect();
                let conflicts: Vec<_> = touched
                    .iter()
                    .filter(|&&o| written_at[o] > m.snapshot)
                    .map(|&o| objs[o].oid())
                    .collect();
                let r = m.tx.commit().await;
                if m.writes.is_empty() {
                    assert!(r.is_ok(), "a read-only transaction failed: {r:?}");
                } else if !conflicts.is_empty() {
                    match r {
                        Err(Error::Conflict { oids }) => assert_eq!(oids, conflicts),
                        other => panic!("expected a conflict on {conflicts:?}, got {other:?}"),
                    }
                } else {
                    let c = r.unwrap();
                    assert_eq!(c.tid.0, last + 1);
                    let mut next = states[&last].clone();
                    for (&o, &v) in &m.writes {
                        next[o] = v;
                        written_at[o] = c.tid.0;
                    }
                    last = c.tid.0;
                    states.insert(last, next);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn transactions_match_the_model(ops in prop::collection::vec(op(), 1..60), small_cache in any::<bool>()) {
        // A tiny cache forces evictions and reloads between the operations.
        let cache = if small_cache { 2 } else { 1000 };
        on_all_runtimes(|_| run(ops.clone(), cache));
    }
}
