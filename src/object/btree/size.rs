//! Encoded sizes of a leaf's entries, which decide when a leaf splits.

use serde::Serialize;

use super::{BTreeNode, Persistent};
use crate::error::{Error, Result};

/// A writer that only counts what it is given.
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes of one key and value as the node's CBOR holds them.
pub(super) fn entry_len<K: Serialize, V: Serialize>(key: &K, value: &V) -> Result<usize> {
    let mut n = Count(0);
    ciborium::into_writer(&(key, value), &mut n).map_err(|e| Error::Codec {
        type_name: <BTreeNode<u64, u64> as Persistent>::TYPE_NAME.into(),
        reason: e.to_string(),
    })?;
    // The pair's own one-byte array header is not part of the leaf.
    Ok(n.0.saturating_sub(1))
}

/// Bytes of every entry of a leaf.
pub(super) fn leaf_len<K: Serialize, V: Serialize>(keys: &[K], values: &[V]) -> Result<usize> {
    keys.iter()
        .zip(values)
        .try_fold(0, |sum, (k, v)| Ok(sum + entry_len(k, v)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_sizes_are_their_cbor() {
        // A small u64 is one byte; a string of 100 bytes has two bytes of header.
        assert_eq!(entry_len(&3u64, &"x".repeat(100)).unwrap(), 1 + 102);
        assert_eq!(entry_len(&u64::MAX, &"ab").unwrap(), 9 + 3);
        assert_eq!(leaf_len(&[1u64, 2], &["a", "b"]).unwrap(), 2 * (1 + 2));
        assert_eq!(leaf_len::<u64, u64>(&[], &[]).unwrap(), 0);
    }
}
