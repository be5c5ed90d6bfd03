//! The Kafka source stage.
//!
//! Contract:
//! * Partition `p` of every input topic is read by one poll thread and handed, in offset order per topic, to the
//!   partition actor `p` (the topics are co-partitioned by user id, so actor `p` sees every change of its users).
//! * Start positions come from our own checkpoint, never from the consumer group; the group only receives
//!   committed offsets afterwards, as a lag hint for operators.
//! * Every hand-off holds permits from a per-partition semaphore sized by
//!   `pipeline.max_inflight_records_per_partition`. The permits travel with the records and are released only when
//!   the checkpoint that contains them is committed, so memory stays bounded whatever the input rate. When permits
//!   run out the poll thread stops polling the partition until they come back; librdkafka's bounded prefetch queue
//!   then stops its fetcher (never `pause()`/`resume()`, see `kafka::PollThread::hand_off`).
//! * Polling runs on dedicated OS threads, never on the async executor.

pub mod kafka;

use crate::types::{Offset, PartitionId};
use tokio::sync::OwnedSemaphorePermit;

/// One Kafka message, detached from librdkafka's buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    /// Index of the topic in the source's topic list (the actor maps it to a source table).
    pub input: usize,
    pub offset: Offset,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Broker/producer timestamp in milliseconds; used only for records that cannot be decoded (quarantine), whose
    /// event time is otherwise unknown.
    pub timestamp_ms: Option<i64>,
}

/// What a poll thread hands to its partition actor.
#[derive(Debug)]
pub struct SourceBatch {
    pub partition: PartitionId,
    pub records: Vec<RawRecord>,
    /// Backpressure permits for `records.len()` records; dropped when the checkpoint holding them commits.
    pub permit: Option<OwnedSemaphorePermit>,
}
