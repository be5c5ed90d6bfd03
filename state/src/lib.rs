//! Keyed, per-partition state with atomic write batches and checkpoints. Knows nothing of Kafka or Iceberg.
