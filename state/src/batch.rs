//! Engine-agnostic write batches and key ranges.
//!
//! A [`WriteBatch`] is the only way to change a store. It collects puts and deletes across keyspaces together
//! with the source positions the changes were derived from, and a store applies it all-or-nothing: after a crash
//! the state and its positions always agree, so replay resumes exactly where the applied state ends.
//! Operations apply in the order they were added (a delete after a put of the same key removes it).

use crate::codec;
use crate::error::StateError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Name of the reserved keyspace that holds positions and metadata. Users cannot write to it.
pub(crate) const META_KEYSPACE: &str = "__meta";

/// Longest keyspace name accepted; RocksDB column family names end up in file names and the MANIFEST.
const MAX_KEYSPACE_LEN: usize = 64;

/// Checks that a keyspace name can be used: 1..=64 chars of `[a-z0-9_-]`, not starting with `__` (reserved for
/// internal keyspaces) and not `default` (RocksDB's own column family, which we leave unused).
pub fn validate_keyspace(name: &str) -> Result<(), StateError> {
    let reject = |reason| {
        Err(StateError::InvalidKeyspace {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return reject("empty");
    }
    if name.len() > MAX_KEYSPACE_LEN {
        return reject("longer than 64 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return reject("only a-z, 0-9, '_' and '-' are allowed");
    }
    if name.starts_with("__") {
        return reject("names starting with '__' are reserved");
    }
    if name == "default" {
        return reject("'default' is reserved by the engine");
    }
    Ok(())
}

/// A range of keys within one keyspace, in byte-wise lexicographic order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound.
    pub start: Bound<Vec<u8>>,
    /// Upper bound.
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every key of the keyspace.
    pub fn all() -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let end = match prefix_successor(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let start = if prefix.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(prefix.to_vec())
        };
        KeyRange { start, end }
    }

    /// Keys `k` with `start <= k < end`.
    pub fn between(start: &[u8], end: &[u8]) -> Self {
        KeyRange {
            start: Bound::Included(start.to_vec()),
            end: Bound::Excluded(end.to_vec()),
        }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above_start && below_end
    }

    /// Whether the range is past `key` entirely, i.e. no key `>= key` can be in it. Lets scans stop early.
    pub(crate) fn is_past_end(&self, key: &[u8]) -> bool {
        match &self.end {
            Bound::Included(e) => key > e.as_slice(),
            Bound::Excluded(e) => key >= e.as_slice(),
            Bound::Unbounded => false,
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` when no such key exists
/// (empty prefix or all `0xFF`).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One change inside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put {
        /// Target keyspace (validated when added).
        keyspace: String,
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key` (no-op when absent).
    Delete {
        /// Target keyspace (validated when added).
        keyspace: String,
        /// The key.
        key: Vec<u8>,
    },
    /// Remove every key in `range`, including keys put earlier in the same batch.
    DeleteRange {
        /// Target keyspace (validated when added).
        keyspace: String,
        /// The keys to remove.
        range: KeyRange,
    },
}

/// An atomic unit of change: data operations across keyspaces plus the source positions they bring the state to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Data operations, in the order they apply.
    ops: Vec<BatchOp>,
    /// Source name -> position (opaque to this crate; the runtime stores "next offset to read" per topic
    /// partition). Stored in the same atomic write as `ops`; a later batch overwrites only the sources it names.
    positions: BTreeMap<String, i64>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of raw bytes.
    pub fn put(&mut self, keyspace: &str, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        validate_keyspace(keyspace)?;
        self.ops.push(BatchOp::Put {
            keyspace: keyspace.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
        });
        Ok(())
    }

    /// Adds a put of `value` encoded with bincode 2 (standard config, serde).
    pub fn put_typed<T: Serialize + ?Sized>(
        &mut self,
        keyspace: &str,
        key: &[u8],
        value: &T,
    ) -> Result<(), StateError> {
        validate_keyspace(keyspace)?;
        let value = codec::encode(keyspace, value)?;
        self.ops.push(BatchOp::Put {
            keyspace: keyspace.to_owned(),
            key: key.to_vec(),
            value,
        });
        Ok(())
    }

    /// Adds a delete of one key.
    pub fn delete(&mut self, keyspace: &str, key: &[u8]) -> Result<(), StateError> {
        validate_keyspace(keyspace)?;
        self.ops.push(BatchOp::Delete {
            keyspace: keyspace.to_owned(),
            key: key.to_vec(),
        });
        Ok(())
    }

    /// Adds a delete of every key in `range` (e.g. [`KeyRange::prefix`] to drop all state of one entity).
    pub fn delete_range(&mut self, keyspace: &str, range: KeyRange) -> Result<(), StateError> {
        validate_keyspace(keyspace)?;
        self.ops.push(BatchOp::DeleteRange {
            keyspace: keyspace.to_owned(),
            range,
        });
        Ok(())
    }

    /// Records that, once this batch is applied, the state reflects `source` up to `position`.
    /// Setting the same source twice keeps the last value.
    pub fn set_position(&mut self, source: &str, position: i64) {
        self.positions.insert(source.to_owned(), position);
    }

    /// The data operations, in apply order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// The positions this batch sets.
    pub fn positions(&self) -> &BTreeMap<String, i64> {
        &self.positions
    }

    /// True when the batch changes nothing (no operation and no position).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.positions.is_empty()
    }

    /// Number of data operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The distinct keyspaces this batch touches.
    pub(crate) fn keyspaces(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().map(|op| match op {
            BatchOp::Put { keyspace, .. }
            | BatchOp::Delete { keyspace, .. }
            | BatchOp::DeleteRange { keyspace, .. } => keyspace.as_str(),
        })
    }
}

/// Key under which a source position is stored in the meta keyspace.
pub(crate) fn position_key(source: &str) -> Vec<u8> {
    let mut key = POSITION_PREFIX.to_vec();
    key.extend_from_slice(source.as_bytes());
    key
}

/// Prefix of every position key in the meta keyspace.
pub(crate) const POSITION_PREFIX: &[u8] = b"pos/";

/// Decodes a stored position (8 bytes, big-endian two's complement).
pub(crate) fn decode_position(key: &[u8], value: &[u8]) -> Result<(String, i64), StateError> {
    let source = key
        .strip_prefix(POSITION_PREFIX)
        .and_then(|s| std::str::from_utf8(s).ok())
        .ok_or_else(|| StateError::Corrupt(format!("bad position key {key:?}")))?;
    let bytes: [u8; 8] = value.try_into().map_err(|_| {
        StateError::Corrupt(format!(
            "position of {source:?} has {} bytes, expected 8",
            value.len()
        ))
    })?;
    Ok((source.to_owned(), i64::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_are_validated() {
        for ok in ["users", "wallets", "lsn", "fraud", "a-b_0"] {
            assert!(validate_keyspace(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Users",
            "a b",
            "__meta",
            "default",
            "x/y",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(
                    validate_keyspace(bad),
                    Err(StateError::InvalidKeyspace { .. })
                ),
                "{bad:?} must be rejected"
            );
        }
        let mut batch = WriteBatch::new();
        assert!(batch.put("__meta", b"k", b"v").is_err());
        assert!(batch.is_empty());
    }

    #[test]
    fn prefix_range_bounds() {
        let r = KeyRange::prefix(b"ab");
        assert_eq!(r.end, Bound::Excluded(b"ac".to_vec()));
        assert!(
            r.contains(b"ab")
                && r.contains(b"ab\xff\xff")
                && !r.contains(b"ac")
                && !r.contains(b"aa")
        );
        let r = KeyRange::prefix(b"a\xff");
        assert_eq!(r.end, Bound::Excluded(b"b".to_vec()));
        let r = KeyRange::prefix(b"\xff\xff");
        assert_eq!(r.end, Bound::Unbounded);
        assert!(r.contains(b"\xff\xff\x00") && !r.contains(b"\xff\xfe"));
        assert_eq!(KeyRange::prefix(b""), KeyRange::all());
    }

    #[test]
    fn position_roundtrip_and_corruption() {
        let key = position_key("fintech.public.users/3");
        assert_eq!(
            decode_position(&key, &(-5i64).to_be_bytes()).ok(),
            Some(("fintech.public.users/3".to_owned(), -5))
        );
        assert!(matches!(
            decode_position(&key, b"abc"),
            Err(StateError::Corrupt(_))
        ));
    }
}
