//! The W6 tree: persistent types and how it is built.

use durus::{Db, Persistent, Ref};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, Persistent)]
#[durus(name = "w6.Root")]
pub struct Root {
    pub tree: Option<Ref<Node>>,
}

#[derive(Clone, Serialize, Deserialize, Persistent)]
#[durus(name = "w6.Node")]
pub struct Node {
    pub n: u64,
    /// Stored as a CBOR byte string, as Durus stores a `bytes`.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub children: Vec<Ref<Node>>,
}

/// Builds the tree breadth-first in one transaction; node `i`'s children are nodes
/// `i * fanout + 1 ..`, as in the Python script.
pub async fn build(db: &Db<Root>, objects: u64, fanout: u64) -> durus::Result<()> {
    let mut tx = db.begin().await?;
    let payload = vec![b'x'; 64];
    // Oids first, so each node is inserted once with its final children.
    let mut refs: Vec<Ref<Node>> = Vec::with_capacity(objects as usize);
    for i in 0..objects {
        refs.push(
            tx.insert(Node {
                n: i,
                payload: payload.clone(),
                children: Vec::new(),
            })
            .await?,
        );
    }
    for (i, &r) in refs.iter().enumerate() {
        let first = i as u64 * fanout + 1;
        if first >= objects {
            break;
        }
        let kids: Vec<Ref<Node>> = (first..(first + fanout).min(objects))
            .map(|c| refs[c as usize])
            .collect();
        tx.get_mut(r).await?.children = kids;
    }
    tx.root_mut().await?.tree = Some(refs[0]);
    tx.commit().await?;
    Ok(())
}
