//! Keyed, per-partition state with atomic write batches and checkpoints. Knows nothing of Kafka or Iceberg.
//!
//! - [`PartitionStore`] is the engine-agnostic trait a partition actor owns, one instance per partition, with no
//!   locking across partitions. [`RocksPartitionStore`] keeps one RocksDB database per partition directory
//!   (`<root>/p-<N>/db`) so a partition's state can move with its directory; [`MemoryPartitionStore`] is the
//!   in-memory engine for tests.
//! - State changes only through a [`WriteBatch`], which carries the source positions (opaque name -> `i64`) the
//!   changes bring the state to and is applied all-or-nothing.
//! - Checkpoints are per store (create, list, restore, delete, prune); [`CheckpointCatalog`] ties them together
//!   across the partitions of a root with atomic completion markers and picks the recovery point.
//! - [`DataDirLock`] keeps a second process off a data directory (an exclusive `flock`, gone with the process).
//! - Every call is synchronous; async callers run them on blocking threads.

mod batch;
mod catalog;
mod ckdir;
mod codec;
mod error;
mod fsutil;
mod layout;
mod lock;
mod memory;
mod rocks;
mod store;

#[cfg(test)]
mod tests;

pub use batch::{BatchOp, KeyRange, WriteBatch, validate_keyspace};
pub use catalog::{CheckpointCatalog, CompleteCheckpoint, PruneReport};
pub use error::StateError;
pub use layout::StateLayout;
pub use lock::{DataDirLock, LOCK_FILE, LockError};
pub use memory::MemoryPartitionStore;
pub use rocks::{RocksConfig, RocksPartitionStore, SharedBlockCache};
pub use store::{KeyValue, PartitionStore, PartitionStoreExt, ScanVisitor};
