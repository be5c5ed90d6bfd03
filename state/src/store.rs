//! The engine-agnostic keyed-state trait.
//!
//! Contract:
//! - One store holds the state of exactly one partition and is owned by that partition's actor; it is `Send` so
//!   it can move into a blocking thread, and nothing in it is shared with other partitions.
//! - Writes happen only through [`PartitionStore::write`], which applies a [`WriteBatch`] and its positions
//!   atomically: a reader (or a restart) sees either none or all of a batch.
//! - A checkpoint `id` is a consistent copy of the state (data and positions) as of the last batch applied
//!   before it was taken. Ids are chosen by the caller and must increase; restoring a checkpoint replaces the
//!   live state with that copy, and later checkpoints stay untouched until pruned.
//! - Calls are synchronous and may do disk I/O; async callers run them on blocking threads.

use crate::batch::{KeyRange, WriteBatch};
use crate::codec;
use crate::error::StateError;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// An owned `(key, value)` pair as returned by [`PartitionStore::scan_collect`].
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Visitor for [`PartitionStore::scan`]: receives each `(key, value)` in key order and says whether to go on.
pub type ScanVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, StateError> + 'a;

/// Keyed state of one partition. See the module docs for the contract.
pub trait PartitionStore: Send + 'static {
    /// The value stored under `key` in `keyspace`, or `None`. A keyspace never written to is empty.
    fn get(&self, keyspace: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Calls `visit` for every key of `keyspace` within `range`, in ascending key order, until it breaks.
    fn scan(
        &self,
        keyspace: &str,
        range: &KeyRange,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StateError>;

    /// Applies `batch` atomically, data and positions together.
    fn write(&mut self, batch: WriteBatch) -> Result<(), StateError>;

    /// Every source position stored so far, as last set by an applied batch.
    fn positions(&self) -> Result<BTreeMap<String, i64>, StateError>;

    /// Approximate size of the state in bytes (for metrics and placement, not for exact accounting).
    fn approximate_size_bytes(&self) -> Result<u64, StateError>;

    /// Takes checkpoint `id` of the current state. Fails with [`StateError::CheckpointExists`] if `id` is taken.
    fn checkpoint(&mut self, id: u64) -> Result<(), StateError>;

    /// Ids of the complete checkpoints of this store, ascending.
    fn list_checkpoints(&self) -> Result<Vec<u64>, StateError>;

    /// Replaces the live state (data and positions) with checkpoint `id`. The checkpoint itself is kept.
    fn restore_checkpoint(&mut self, id: u64) -> Result<(), StateError>;

    /// Deletes checkpoint `id`. Fails with [`StateError::CheckpointNotFound`] if it does not exist.
    fn delete_checkpoint(&mut self, id: u64) -> Result<(), StateError>;

    /// Deletes all but the `keep_last` newest checkpoints and returns the deleted ids, ascending.
    fn prune_checkpoints(&mut self, keep_last: usize) -> Result<Vec<u64>, StateError> {
        let ids = self.list_checkpoints()?;
        let doomed: Vec<u64> = ids
            .iter()
            .copied()
            .take(ids.len().saturating_sub(keep_last))
            .collect();
        for &id in &doomed {
            self.delete_checkpoint(id)?;
        }
        Ok(doomed)
    }

    /// The position stored for one source.
    fn position(&self, source: &str) -> Result<Option<i64>, StateError> {
        Ok(self.positions()?.get(source).copied())
    }

    /// Collects up to `limit` `(key, value)` pairs of `range` in key order.
    fn scan_collect(
        &self,
        keyspace: &str,
        range: &KeyRange,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StateError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan(keyspace, range, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        Ok(out)
    }
}

/// Typed access on top of any [`PartitionStore`], using the same bincode encoding as
/// [`WriteBatch::put_typed`].
pub trait PartitionStoreExt: PartitionStore {
    /// The decoded value under `key`, or `None`.
    fn get_typed<T: DeserializeOwned>(
        &self,
        keyspace: &str,
        key: &[u8],
    ) -> Result<Option<T>, StateError> {
        self.get(keyspace, key)?
            .map(|bytes| codec::decode(keyspace, &bytes))
            .transpose()
    }

    /// Every `(key, decoded value)` of `range`, in key order. Stops at the first value that does not decode.
    fn scan_typed<T: DeserializeOwned>(
        &self,
        keyspace: &str,
        range: &KeyRange,
    ) -> Result<Vec<(Vec<u8>, T)>, StateError> {
        let mut out = Vec::new();
        self.scan(keyspace, range, &mut |k, v| {
            out.push((k.to_vec(), codec::decode(keyspace, v)?));
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }
}

impl<S: PartitionStore + ?Sized> PartitionStoreExt for S {}
