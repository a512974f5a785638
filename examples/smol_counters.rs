//! Page-hit counters under smol: concurrent tasks increment shared counters without
//! ever failing on a conflict, because `Counter` merges concurrent increments.
//!
//! ```text
//! cargo run --example smol_counters [path]
//! ```
// Output goes through `say!`, which survives a closed stdout (`println!` panics there).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod common;

use durus::object::BTree;
use durus::{Counter, Db, Persistent, Ref};
use serde::{Deserialize, Serialize};

use common::say;

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "site.Site")]
struct Site {
    /// Page path -> its hit counter.
    pages: Option<Ref<BTree<String, Ref<Counter>>>>,
}

fn main() -> durus::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "smol_counters.durus".into());
    smol::block_on(async {
        let db: Db<Site> = Db::open(&path).await?;
        let pages = ["/", "/about", "/blog", "/contact"];
        let tree = db
            .transact(|tx| {
                Box::pin(async move {
                    if let Some(t) = tx.root().await?.pages {
                        return Ok(t);
                    }
                    let t = BTree::create(tx).await?;
                    for p in pages {
                        let c = tx.insert(Counter::new(0)).await?;
                        BTree::insert(tx, t, p.to_string(), c).await?;
                    }
                    tx.root_mut().await?.pages = Some(t);
                    Ok(t)
                })
            })
            .await?;

        // 16 tasks each record 25 hits; every commit succeeds at the first attempt or
        // merges with the hits committed meanwhile.
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let db = db.clone();
                smol::spawn(async move {
                    for i in 0..25 {
                        let page = pages[(t + i) % pages.len()].to_string();
                        let mut tx = db.begin().await?;
                        let counter = BTree::get(&tx, tree, &page).await?.expect("page exists");
                        tx.get_mut(counter).await?.increment();
                        tx.commit().await?;
                    }
                    Ok::<_, durus::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }

        let tx = db.begin().await?;
        for (page, counter) in BTree::entries(&tx, tree).await? {
            say!("{page:<10} {:>6} hits", tx.get(counter).await?.get());
        }
        say!(
            "conflicts merged instead of failing: {}",
            db.stats().resolved_conflicts
        );
        db.close().await
    })
}
