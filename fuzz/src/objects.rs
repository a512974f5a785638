//! `object_decode`: the object codec (`durus::object::decode`, `peek_type_name`) on
//! arbitrary record data, for several persistent types.
//!
//! Record data comes from the journal, so anything a damaged or hostile file holds
//! reaches the codec; it must answer with a value or an error. A value that decodes must
//! encode again, and the re-encoding must decode to an equal value that encodes to the
//! same bytes and refs (CBOR has several encodings of one value, so the input bytes
//! themselves need not come back).

use std::collections::BTreeMap;
use std::fmt::Debug;

use durus::object::{decode, encode, peek_type_name, BTree, BTreeNode, Persistent};
use durus::record::Oid;
use durus::{Counter, Ref};
use serde::{Deserialize, Serialize};

use crate::with_alloc_bound;

/// A harness type with the shapes applications use: nested refs in collections,
/// maps, enums, options, strings, signed integers, bools and recursion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// A plain integer.
    pub n: i64,
    /// Text.
    pub name: String,
    /// Refs in a vector.
    pub kids: Vec<Ref<Sample>>,
    /// Refs as map values.
    pub by_name: BTreeMap<String, Ref<Sample>>,
    /// An enum with every variant shape.
    pub shape: Shape,
    /// Recursion (bounded by the codec's nesting limit).
    pub next: Option<Box<Sample>>,
    /// A flag and bytes in a tuple.
    pub extra: (bool, Vec<u8>),
}

/// The enum inside [`Sample`]: unit, newtype, tuple and struct variants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    /// Unit.
    Empty,
    /// Newtype holding a ref.
    One(Ref<Sample>),
    /// Tuple.
    Pair(u8, Option<Ref<Sample>>),
    /// Struct.
    Many {
        /// Refs, some absent.
        refs: Vec<Option<Ref<Sample>>>,
    },
}

impl Persistent for Sample {
    const TYPE_NAME: &'static str = "fuzz.Sample";
}

/// The types tried, chosen by the low bits of the first input byte.
pub const OBJECT_TYPES: [&str; 5] = [
    "durus.Counter",
    "durus.BTree",
    "durus.BTreeNode",
    "durus.BTreeNode",
    "fuzz.Sample",
];

/// Flag bit of the first byte: put a valid format byte and the chosen type's name in
/// front of the rest, so that the input is the CBOR state alone.
pub const OBJECT_PREPEND_NAME: u8 = 0x80;

/// Allocation bound of one `object_decode` run: a few copies of the input, decoded
/// values and their re-encodings, and serde's cautious preallocation of sequences
/// (at most 1 MiB each, whatever length a header claims).
pub fn object_bound(len: usize) -> usize {
    64 * len + (4 << 20)
}

/// The first byte of an `object_decode` input for type number `ty` (an index into
/// [`OBJECT_TYPES`]), for writing seeds.
pub fn object_selector(ty: usize, prepend_name: bool) -> u8 {
    ty as u8 | if prepend_name { OBJECT_PREPEND_NAME } else { 0 }
}

/// Record data of values of every type tried, as the codec writes it (for seeds).
pub fn sample_data() -> Vec<Vec<u8>> {
    let r = Ref::<Sample>::from_oid;
    let leaf = Sample {
        n: -3,
        name: "leaf".into(),
        kids: vec![],
        by_name: BTreeMap::new(),
        shape: Shape::Empty,
        next: None,
        extra: (false, vec![]),
    };
    let full = Sample {
        n: i64::MAX,
        name: "root ✓".into(),
        kids: vec![r(Oid(1)), r(Oid(2)), r(Oid(1))],
        by_name: [("a".to_string(), r(Oid(3)))].into_iter().collect(),
        shape: Shape::Many {
            refs: vec![Some(r(Oid(4))), None],
        },
        next: Some(Box::new(Sample {
            shape: Shape::Pair(7, Some(r(Oid(5)))),
            ..leaf.clone()
        })),
        extra: (true, vec![1, 2, 3]),
    };
    let node: BTreeNode<u64, Ref<Counter>> = BTreeNode::Leaf {
        keys: vec![1, 5, 9],
        values: vec![Ref::from_oid(Oid(10)); 3],
    };
    let branch: BTreeNode<String, Vec<u8>> = BTreeNode::Branch {
        keys: vec!["m".into()],
        children: vec![Ref::from_oid(Oid(11)), Ref::from_oid(Oid(12))],
        merge: std::marker::PhantomData,
    };
    let enc = |r: durus::Result<(Vec<u8>, Vec<Oid>)>| r.expect("encoding a seed value").0;
    vec![
        enc(encode(&Counter::new(-42))),
        enc(encode(&btree_sample())),
        enc(encode(&branch)),
        enc(encode(&node)),
        enc(encode(&full)),
        enc(encode(&Sample {
            shape: Shape::One(r(Oid(u64::MAX))),
            ..leaf
        })),
    ]
}

/// A `BTree` map object, made through a stand-in with the same serde shape and type
/// name, since `BTree`'s fields are private.
fn btree_sample() -> BTree<u64, Vec<u8>> {
    #[derive(Clone, Serialize, Deserialize)]
    struct RawBTree {
        root: Ref<()>,
        len: u64,
    }
    impl Persistent for RawBTree {
        const TYPE_NAME: &'static str = "durus.BTree";
    }
    let raw = RawBTree {
        root: Ref::from_oid(Oid(3)),
        len: 17,
    };
    let (data, _) = encode(&raw).expect("encoding a stand-in BTree");
    decode(Oid(1), &data).expect("decoding a stand-in BTree")
}

/// The codec decodes arbitrary record data as each of several types, or fails with a
/// codec or wrong-type error; never panics; values round-trip.
pub fn check_object_decode(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    with_alloc_bound(data.len(), object_bound(data.len()), || {
        let ty = (sel & 0x0F) as usize % OBJECT_TYPES.len();
        let record = if sel & OBJECT_PREPEND_NAME != 0 {
            let name = OBJECT_TYPES[ty];
            let mut d = vec![0xD1, name.len() as u8];
            d.extend_from_slice(name.as_bytes());
            d.extend_from_slice(rest);
            d
        } else {
            rest.to_vec()
        };
        check_peek(&record);
        match ty {
            0 => round_trip::<Counter>(&record),
            1 => round_trip::<BTree<u64, Vec<u8>>>(&record),
            2 => round_trip::<BTreeNode<String, Vec<u8>>>(&record),
            3 => round_trip::<BTreeNode<u64, Ref<Counter>>>(&record),
            _ => round_trip::<Sample>(&record),
        }
    });
}

/// `peek_type_name` reads exactly the layout `0xD1 · n · n bytes of UTF-8 name · ...`.
fn check_peek(data: &[u8]) {
    let want = match data {
        [0xD1, n, rest @ ..] if rest.len() >= *n as usize => std::str::from_utf8(&rest[..*n as usize]).ok(),
        _ => None,
    };
    match peek_type_name(data) {
        Ok(name) => assert_eq!(Some(name), want, "peek_type_name"),
        Err(e) => {
            assert!(want.is_none(), "peek_type_name refused {want:?}: {e}");
            assert!(
                matches!(e, durus::Error::Codec { .. }),
                "peek_type_name error kind: {e:?}"
            );
        }
    }
}

/// Decodes `data` as a `T`; checks the error kind, or that the value round-trips
/// (compared through `Debug` output, since the B-tree types have no `PartialEq`).
fn round_trip<T: Persistent + Debug>(data: &[u8]) {
    let oid = Oid(7);
    let name = peek_type_name(data).ok();
    let value = match decode::<T>(oid, data) {
        Ok(v) => v,
        Err(durus::Error::WrongType {
            oid: o,
            expected,
            found,
        }) => {
            assert_eq!(o, oid, "WrongType names the oid");
            assert_eq!(expected, T::TYPE_NAME, "WrongType names the expected type");
            assert_eq!(Some(found.as_str()), name, "WrongType names the stored type");
            assert_ne!(found, T::TYPE_NAME, "WrongType for the right type name");
            return;
        }
        Err(durus::Error::Codec { .. }) => return,
        Err(e) => panic!(
            "decode::<{}> failed with an unexpected kind of error: {e:?}",
            T::TYPE_NAME
        ),
    };
    assert_eq!(
        name,
        Some(T::TYPE_NAME),
        "decoded a value stored under another type name"
    );
    let (bytes, refs) = encode(&value).expect("a decoded value encodes");
    let mut uniq = refs.clone();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(uniq.len(), refs.len(), "encode lists each ref once");
    let again: T = decode(oid, &bytes).expect("a re-encoded value decodes");
    let (bytes2, refs2) = encode(&again).expect("encoding again");
    assert!(bytes2 == bytes, "encoding is not stable across a round trip");
    assert_eq!(refs2, refs, "refs are not stable across a round trip");
    assert_eq!(
        format!("{value:?}"),
        format!("{again:?}"),
        "value changed across a round trip"
    );
}
