//! The Iceberg sink: typed rows → day-partitioned Parquet data files → exactly-once commits.
//!
//! - [`table`]: a [`TableDef`] and its deterministic Iceberg schema, `day()` partition spec and Arrow schema.
//! - [`batch`]: rows of [`crate::value::Value`] → an Arrow batch, with typed errors for cells that do not fit.
//! - [`catalog`]: SQL (sqlite/PostgreSQL) or REST catalog from typed config; `ensure_table` with add-only evolution.
//! - [`commit`]: writing files, the pending-commit record, and idempotent commits keyed by writer and checkpoint.
//! - [`readback`]: the data files one snapshot added, read back for post-write validation (`crate::dq`).
//! - [`error`]: [`SinkError`], classified retryable or not.

pub mod batch;
pub mod catalog;
pub mod commit;
pub mod error;
pub mod readback;
pub mod table;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

pub use batch::{BatchError, rows_to_batch};
pub use catalog::{CatalogConfig, S3Config, SinkCatalog, default_namespace};
pub use commit::{
    CommitMeta, CommitOutcome, PendingCommit, SerializedDataFile, WrittenFiles, commit_files,
    commit_pending, last_committed, write_data_files, write_rows,
};
pub use error::SinkError;
pub use readback::{WrittenFile, added_files};
pub use table::{TableDef, column_type_of};
