//! The sink's error type, classified as retryable or not.
//!
//! Every `iceberg::Error` enters through [`SinkError::from_iceberg`], the one place that decides whether a
//! failure is transient (I/O, catalog database, commit conflicts) or permanent (invalid data or metadata,
//! unsupported feature). The committer retries only [`SinkError::is_retryable`] errors; since every commit first
//! checks the snapshot ancestry for its checkpoint, a retry after an ambiguous failure cannot duplicate data.

use iceberg::ErrorKind;

use super::batch::BatchError;

/// What went wrong in the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A [`super::TableDef`] that cannot become an Iceberg table; a programming or config error.
    #[error("invalid table definition {table}: {reason}")]
    InvalidTableDef { table: String, reason: String },

    /// The catalog configuration is unusable (checked before any I/O).
    #[error("invalid catalog config: {reason}")]
    InvalidConfig { reason: String },

    /// Rows that do not fit their table; retrying cannot help.
    #[error("table {table}: {source}")]
    Batch {
        table: String,
        #[source]
        source: BatchError,
    },

    /// The existing table and the definition disagree in a way add-only evolution cannot fix.
    #[error("table {table}: column {column}: {reason}")]
    SchemaConflict {
        table: String,
        column: String,
        reason: String,
    },

    /// A snapshot carries our writer id but a summary we cannot parse: someone else wrote our keys, or a bug.
    #[error("snapshot {snapshot_id}: unreadable ledgerstream summary: {reason}")]
    CorruptCommitMeta { snapshot_id: i64, reason: String },

    /// A pending-commit record that cannot be decoded or no longer matches the table.
    #[error("pending commit record: {reason}")]
    InvalidPendingCommit { reason: String },

    /// A newer generation of this writer has committed: this process is stale and must stop, not retry.
    #[error("writer {writer_id} epoch {epoch} is fenced by epoch {newer_epoch}")]
    Fenced {
        writer_id: String,
        epoch: u64,
        newer_epoch: u64,
    },

    /// A table's fencing marks (`ledgerstream.writer.*` properties) cannot be read, or contradict each other.
    #[error("table property {key}: {reason}")]
    CorruptFence { key: String, reason: String },

    /// The catalog's own database (the SQL catalog's compare-and-swap) failed.
    #[error("catalog: {reason}")]
    Catalog { reason: String, retryable: bool },

    /// An error from iceberg-rust (catalog, storage, writer), with its retry classification.
    #[error("iceberg ({kind:?}, retryable={retryable}): {source}")]
    Iceberg {
        kind: ErrorKind,
        retryable: bool,
        #[source]
        source: iceberg::Error,
    },
}

impl SinkError {
    /// The single conversion from iceberg-rust errors.
    ///
    /// `Unexpected` is what iceberg-rust reports for storage and catalog-database I/O failures, so it is treated
    /// as transient; a commit conflict is transient because the next attempt reloads the table.
    pub fn from_iceberg(source: iceberg::Error) -> Self {
        let kind = source.kind();
        let retryable = source.retryable()
            || matches!(
                kind,
                ErrorKind::Unexpected | ErrorKind::CatalogCommitConflicts
            );
        SinkError::Iceberg {
            kind,
            retryable,
            source,
        }
    }

    /// Whether the same operation may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Iceberg { retryable, .. } | SinkError::Catalog { retryable, .. } => {
                *retryable
            }
            SinkError::InvalidTableDef { .. }
            | SinkError::InvalidConfig { .. }
            | SinkError::Batch { .. }
            | SinkError::SchemaConflict { .. }
            | SinkError::CorruptCommitMeta { .. }
            | SinkError::InvalidPendingCommit { .. }
            | SinkError::CorruptFence { .. }
            | SinkError::Fenced { .. } => false,
        }
    }

    /// The iceberg error kind, if this came from iceberg-rust.
    pub fn iceberg_kind(&self) -> Option<ErrorKind> {
        match self {
            SinkError::Iceberg { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let io = SinkError::from_iceberg(iceberg::Error::new(ErrorKind::Unexpected, "io"));
        assert!(io.is_retryable());
        let conflict = SinkError::from_iceberg(iceberg::Error::new(
            ErrorKind::CatalogCommitConflicts,
            "cas",
        ));
        assert!(conflict.is_retryable());
        let invalid = SinkError::from_iceberg(iceberg::Error::new(ErrorKind::DataInvalid, "bad"));
        assert!(!invalid.is_retryable());
        let marked = SinkError::from_iceberg(
            iceberg::Error::new(ErrorKind::DataInvalid, "x").with_retryable(true),
        );
        assert!(marked.is_retryable());
        let missing = SinkError::from_iceberg(iceberg::Error::new(ErrorKind::TableNotFound, "t"));
        assert!(!missing.is_retryable());
        assert_eq!(missing.iceberg_kind(), Some(ErrorKind::TableNotFound));
    }
}
