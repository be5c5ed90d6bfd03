//! Reading the Iceberg tables back: `ledgerstream tables` and `ledgerstream query`.
//!
//! Contract:
//! - Everything here is read-only. Tables are opened at one snapshot each when a command starts, so a query sees
//!   a consistent table while the pipeline keeps committing (each table on its own: there is no cross-table
//!   snapshot in Iceberg).
//! - [`inventory`] needs table metadata only (no data files): the `tables` listing, and the choice of the
//!   snapshot that holds a given checkpoint ([`snapshot_as_of`]), which is what time travel registers.
//! - [`current_state`] holds the canonical current-state SQL (`sql/current_state/`): the latest row per key of the
//!   users and wallets changelogs, deletes removed. The same text is used by DuckDB, Trino and `query`.
//! - [`session`] and [`output`] (cargo feature `query`) run SQL through DataFusion over those snapshots and render
//!   the result as a table, CSV or JSON lines.

pub mod current_state;
pub mod inventory;
#[cfg(feature = "query")]
pub mod output;
#[cfg(feature = "query")]
pub mod session;

pub use inventory::{AsOf, TableInfo, inventory, snapshot_as_of};

use crate::sink::SinkError;

/// Why a `tables` or `query` command failed. Every variant is the user's to fix (wrong config, wrong SQL, a
/// checkpoint that does not exist); none is retried.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The catalog could not be reached or a table not loaded (boxed: `SinkError` is large).
    #[error(transparent)]
    Catalog(Box<SinkError>),

    /// The configured namespace has no tables: wrong config, or the pipeline never ran against this catalog.
    #[error("namespace {namespace} holds no tables (has `ledgerstream run` used this catalog?)")]
    NoTables { namespace: String },

    /// The SQL names a table that is neither in the namespace nor one of the current-state views.
    #[error("unknown table {name}; known tables: {}", known.join(", "))]
    UnknownTable { name: String, known: Vec<String> },

    /// Time travel to a checkpoint that this writer has not committed (yet).
    #[error(
        "checkpoint {requested} of writer {writer_id} is not in any table{}",
        match newest { Some(n) => format!(" (the newest committed is {n})"), None => " (no table holds a snapshot of this writer: check pipeline.writer_id)".to_string() }
    )]
    CheckpointNotCommitted {
        requested: u64,
        writer_id: String,
        newest: Option<u64>,
    },

    /// The SQL did not parse, plan or execute (message from DataFusion).
    #[error("{0}")]
    Sql(String),

    /// The result could not be rendered in the requested format.
    #[error("cannot render the result: {0}")]
    Output(String),
}

impl From<SinkError> for QueryError {
    fn from(e: SinkError) -> Self {
        QueryError::Catalog(Box::new(e))
    }
}
