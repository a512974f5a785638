//! The record codec: a persistent value becomes `data` (type name and CBOR state) and
//! `refs` (every [`Ref`](super::Ref) inside it).
//!
//! Data layout: `0xD1 · name length (1 byte) · type name (UTF-8) · CBOR state`.

use std::cell::RefCell;

use super::Persistent;
use crate::error::{Error, Result};
use crate::record::Oid;

/// First byte of every object record this codec writes (format 1).
const FORMAT: u8 = 0xD1;

thread_local! {
    /// The refs seen while the current `encode` on this thread serializes its value.
    static COLLECTING: RefCell<Option<Vec<Oid>>> = const { RefCell::new(None) };
}

/// Called by `Ref`'s `Serialize`: records the oid when an encode is collecting.
pub(crate) fn note_ref(oid: Oid) {
    COLLECTING.with(|c| {
        if let Some(v) = c.borrow_mut().as_mut() {
            v.push(oid);
        }
    });
}

/// Restores the previous collector when dropped, even if serialization panics.
struct Collecting {
    prev: Option<Option<Vec<Oid>>>,
}

impl Collecting {
    fn start() -> Collecting {
        Collecting {
            prev: Some(COLLECTING.with(|c| c.borrow_mut().replace(Vec::new()))),
        }
    }
    fn finish(mut self) -> Vec<Oid> {
        let prev = self.prev.take().flatten();
        COLLECTING
            .with(|c| std::mem::replace(&mut *c.borrow_mut(), prev))
            .unwrap_or_default()
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        if let Some(prev) = self.prev.take() {
            COLLECTING.with(|c| *c.borrow_mut() = prev);
        }
    }
}

/// Encodes a value as record data and its refs (in order of appearance, duplicates
/// removed).
pub fn encode<T: Persistent>(value: &T) -> Result<(Vec<u8>, Vec<Oid>)> {
    let name = T::TYPE_NAME.as_bytes();
    let name_len = u8::try_from(name.len()).map_err(|_| Error::TooLarge {
        what: format!("type name {:?}", T::TYPE_NAME),
        size: name.len() as u64,
        limit: 255,
    })?;
    let mut data = Vec::with_capacity(64);
    data.push(FORMAT);
    data.push(name_len);
    data.extend_from_slice(name);
    let collecting = Collecting::start();
    let r = ciborium::into_writer(value, &mut data);
    let mut refs = collecting.finish();
    r.map_err(|e| Error::Codec {
        type_name: T::TYPE_NAME.into(),
        reason: e.to_string(),
    })?;
    let mut seen = std::collections::HashSet::with_capacity(refs.len());
    refs.retain(|o| seen.insert(*o));
    Ok((data, refs))
}

/// The type name stored in record data.
pub fn peek_type_name(data: &[u8]) -> Result<&str> {
    split(data).map(|(name, _)| name)
}

fn split(data: &[u8]) -> Result<(&str, &[u8])> {
    match data {
        [FORMAT, n, rest @ ..] if rest.len() >= *n as usize => {
            let (name, body) = rest.split_at(*n as usize);
            let name = std::str::from_utf8(name).map_err(|_| Error::Codec {
                type_name: String::new(),
                reason: "type name is not UTF-8".into(),
            })?;
            Ok((name, body))
        }
        _ => Err(Error::Codec {
            type_name: String::new(),
            reason: "not a durus object record (unknown format byte or cut short)".into(),
        }),
    }
}

/// Decodes record data of `oid` as a `T`, checking the stored type name first.
pub fn decode<T: Persistent>(oid: Oid, data: &[u8]) -> Result<T> {
    let (name, body) = split(data)?;
    if name != T::TYPE_NAME {
        return Err(Error::WrongType {
            oid,
            expected: T::TYPE_NAME.into(),
            found: name.into(),
        });
    }
    ciborium::from_reader(body).map_err(|e| Error::Codec {
        type_name: T::TYPE_NAME.into(),
        reason: format!("object {oid}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Ref;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Shape {
        Leaf(Ref<Node>),
        Many { kids: Vec<Option<Ref<Node>>> },
    }

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Node {
        n: u64,
        by_name: BTreeMap<String, Ref<Node>>,
        shape: Shape,
        nested: Vec<(u8, Vec<Ref<Node>>)>,
    }
    impl Persistent for Node {
        const TYPE_NAME: &'static str = "test.Node";
    }

    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Other(u64);
    impl Persistent for Other {
        const TYPE_NAME: &'static str = "test.Other";
    }

    #[test]
    fn refs_are_collected_however_deeply_nested() {
        let r = |n| Ref::from_oid(Oid(n));
        let node = Node {
            n: 7,
            by_name: [("a".to_string(), r(1)), ("b".to_string(), r(2))]
                .into_iter()
                .collect(),
            shape: Shape::Many {
                kids: vec![Some(r(3)), None, Some(r(1))],
            },
            nested: vec![(1, vec![r(4)]), (2, vec![r(5), r(6)])],
        };
        let (data, refs) = encode(&node).unwrap();
        assert_eq!(refs, [1, 2, 3, 4, 5, 6].map(Oid).to_vec());
        assert_eq!(peek_type_name(&data).unwrap(), "test.Node");
        assert_eq!(decode::<Node>(Oid(9), &data).unwrap(), node);
        let leaf = Node {
            shape: Shape::Leaf(r(8)),
            by_name: BTreeMap::new(),
            nested: vec![],
            ..node
        };
        assert_eq!(encode(&leaf).unwrap().1, vec![Oid(8)]);
    }

    #[test]
    fn the_wrong_type_is_an_error() {
        let (data, _) = encode(&Other(3)).unwrap();
        match decode::<Node>(Oid(4), &data) {
            Err(Error::WrongType { oid, expected, found }) => {
                assert_eq!(
                    (oid, expected.as_str(), found.as_str()),
                    (Oid(4), "test.Node", "test.Other")
                );
            }
            other => panic!("{:?}", other.err()),
        }
        assert!(matches!(
            decode::<Other>(Oid(1), b"garbage"),
            Err(Error::Codec { .. })
        ));
        assert!(matches!(
            decode::<Other>(Oid(1), &data[..data.len() - 1]),
            Err(Error::Codec { .. })
        ));
    }
}
