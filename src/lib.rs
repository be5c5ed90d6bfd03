//! ledgerstream: PostgreSQL → Debezium → Kafka → partition actors (RocksDB state) → committer → Apache Iceberg.
//!
//! The module list reads as the data flow; see `ARCHITECTURE.md`.

pub mod generate;
pub mod types;
pub mod value;
