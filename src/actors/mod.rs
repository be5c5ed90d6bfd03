//! The actor stages and their messages. Each file is one stage; the logic they run lives in plain modules
//! (`processor`, `sink`, `checkpoint`), so the actors stay thin glue.
//!
//! ```text
//! KafkaSource poll threads ──Records──▶ PartitionActor p ──Sealed──▶ CommitterActor ──Completed──▶ Coordinator
//!                                            ▲                                                        │
//!                                            └──────────────────────── Barrier(n) ◀───────────────────┘
//! ```
//!
//! Mailboxes: ractor mailboxes are unbounded, so bounds come from elsewhere. Records are bounded by the source's
//! per-partition permits (released only when the checkpoint holding them commits); barriers and seals by the
//! coordinator keeping at most one checkpoint in flight.

pub mod committer;
pub mod coordinator;
pub mod partition;
pub mod supervisor;
