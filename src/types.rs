//! Newtypes shared by every stage. Passing a bare `i64` between stages is how offsets and LSNs get mixed up;
//! these make the compiler catch it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A Kafka partition number. Partition `p` of every source topic holds the same users (the topics are
/// co-partitioned by user id), so one partition actor owns all state for the users hashed to `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub i32);

/// A Kafka offset. "Next offset to read" semantics wherever it is stored in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Offset(pub i64);

/// Monotonic id of a checkpoint. Checkpoint `n` covers every record before the offsets it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

/// A PostgreSQL log sequence number as Debezium reports it (`source.lsn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Lsn(pub u64);

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_inner!(PartitionId, Offset, CheckpointId, Lsn);

impl CheckpointId {
    /// The checkpoint after this one.
    pub fn next(self) -> Self {
        CheckpointId(self.0 + 1)
    }
}
