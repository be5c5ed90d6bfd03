//! In-memory engine for tests and for runs that do not need durable state.
//!
//! Same contract as the RocksDB engine (see [`crate::store`]), with everything held in `BTreeMap`s.
//! Checkpoints are full clones kept in the store itself, so they die with the process. A batch is validated
//! before any of it is applied and nothing can fail afterwards, which is what makes it atomic here.

use crate::batch::{BatchOp, KeyRange, WriteBatch};
use crate::error::StateError;
use crate::store::{PartitionStore, ScanVisitor};
use std::collections::BTreeMap;
use std::ops::Bound;

/// The complete state of a partition at one point: what a checkpoint copies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Snapshot {
    /// Keyspace name -> ordered key/value pairs.
    keyspaces: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Source positions as set by the applied batches.
    positions: BTreeMap<String, i64>,
}

/// A [`PartitionStore`] held entirely in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryPartitionStore {
    /// The live state.
    live: Snapshot,
    /// Checkpoint id -> copy of the live state when it was taken.
    checkpoints: BTreeMap<u64, Snapshot>,
}

impl MemoryPartitionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn bound_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// `BTreeMap::range` panics on inverted or empty-excluded bounds; such ranges are simply empty.
fn is_empty_range(range: &KeyRange) -> bool {
    match (&range.start, &range.end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}

fn range_of<'a>(
    map: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    range: &'a KeyRange,
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
    let live = !is_empty_range(range);
    live.then(|| map.range::<[u8], _>((bound_ref(&range.start), bound_ref(&range.end))))
        .into_iter()
        .flatten()
}

impl PartitionStore for MemoryPartitionStore {
    fn get(&self, keyspace: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        crate::batch::validate_keyspace(keyspace)?;
        Ok(self
            .live
            .keyspaces
            .get(keyspace)
            .and_then(|ks| ks.get(key))
            .cloned())
    }

    fn scan(
        &self,
        keyspace: &str,
        range: &KeyRange,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StateError> {
        crate::batch::validate_keyspace(keyspace)?;
        let Some(map) = self.live.keyspaces.get(keyspace) else {
            return Ok(());
        };
        for (k, v) in range_of(map, range) {
            if visit(k, v)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    fn write(&mut self, batch: WriteBatch) -> Result<(), StateError> {
        // WriteBatch validated every keyspace when the op was added; nothing below can fail.
        for op in batch.ops() {
            match op {
                BatchOp::Put {
                    keyspace,
                    key,
                    value,
                } => {
                    self.live
                        .keyspaces
                        .entry(keyspace.clone())
                        .or_default()
                        .insert(key.clone(), value.clone());
                }
                BatchOp::Delete { keyspace, key } => {
                    if let Some(ks) = self.live.keyspaces.get_mut(keyspace) {
                        ks.remove(key);
                    }
                }
                BatchOp::DeleteRange { keyspace, range } => {
                    if let Some(ks) = self.live.keyspaces.get_mut(keyspace) {
                        let doomed: Vec<Vec<u8>> =
                            range_of(ks, range).map(|(k, _)| k.clone()).collect();
                        for k in doomed {
                            ks.remove(&k);
                        }
                    }
                }
            }
        }
        for (source, position) in batch.positions() {
            self.live.positions.insert(source.clone(), *position);
        }
        Ok(())
    }

    fn positions(&self) -> Result<BTreeMap<String, i64>, StateError> {
        Ok(self.live.positions.clone())
    }

    fn approximate_size_bytes(&self) -> Result<u64, StateError> {
        let data: usize = self
            .live
            .keyspaces
            .values()
            .flat_map(|ks| ks.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        let positions: usize = self.live.positions.keys().map(|s| s.len() + 8).sum();
        Ok((data + positions) as u64)
    }

    fn checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        if self.checkpoints.contains_key(&id) {
            return Err(StateError::CheckpointExists { id });
        }
        self.checkpoints.insert(id, self.live.clone());
        Ok(())
    }

    fn list_checkpoints(&self) -> Result<Vec<u64>, StateError> {
        Ok(self.checkpoints.keys().copied().collect())
    }

    fn restore_checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        let snapshot = self
            .checkpoints
            .get(&id)
            .ok_or(StateError::CheckpointNotFound { id })?;
        self.live = snapshot.clone();
        Ok(())
    }

    fn delete_checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        self.checkpoints
            .remove(&id)
            .map(|_| ())
            .ok_or(StateError::CheckpointNotFound { id })
    }
}
