//! Step 2: publish staged changes by swapping catalog pointers — every table of a checkpoint in one SQL
//! transaction, so a checkpoint appears in every table at once or in none.
//!
//! The statement is the Java JdbcCatalog's compare-and-swap (the layout pyiceberg's `SqlCatalog` and Trino's JDBC
//! catalog read), one per table, all inside one transaction:
//!
//! `UPDATE iceberg_tables SET metadata_location = new, previous_metadata_location = base
//!  WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = base
//!    AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)`
//!
//! One row each: committed. Zero rows for any table: the transaction is rolled back and nothing changed
//! ([`SwapOutcome::Conflict`]). An error before `COMMIT` was sent also rolls back ([`SwapOutcome::NotCommitted`]).
//! An error *during* `COMMIT` is an unknown outcome ([`SwapOutcome::Unknown`]): the caller must reload and look
//! for its own checkpoint before doing anything else. Tables are swapped in name order, so two writers never
//! wait on each other's row locks in opposite orders. PostgreSQL under READ COMMITTED re-evaluates the WHERE
//! clause on the newest row version after a concurrent update, so the compare-and-swap holds there as on sqlite.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use super::produce::Staged;
use crate::sink::SinkError;

/// How placeholders are written: `?` for sqlite, `$n` for PostgreSQL (sqlx's `Any` driver does not translate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindStyle {
    QMark,
    Dollar,
}

/// What a swap did.
#[derive(Debug)]
pub enum SwapOutcome {
    /// Every table now points at its staged metadata.
    Committed,
    /// Some table was no longer at its base; nothing changed. Carries the table that moved.
    Conflict(String),
    /// Failed before `COMMIT`; nothing changed.
    NotCommitted(String),
    /// `COMMIT` failed mid-flight: the swap may or may not have happened.
    Unknown(String),
}

/// A connection pool to the SQL catalog's own database.
#[derive(Debug, Clone)]
pub struct SqlSwap {
    pool: AnyPool,
    style: BindStyle,
    /// The `catalog_name` column value the pipeline's tables are registered under.
    catalog_name: String,
}

impl SqlSwap {
    /// Connects to the catalog database (the same URI the SQL catalog uses).
    pub async fn connect(uri: &str, catalog_name: &str) -> Result<SqlSwap, SinkError> {
        sqlx::any::install_default_drivers();
        let style = if uri.starts_with("sqlite:") {
            BindStyle::QMark
        } else {
            BindStyle::Dollar
        };
        let pool = AnyPoolOptions::new()
            // Commits are serialised by the committer; one spare connection for reloads.
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect(uri)
            .await
            .map_err(|e| SinkError::Catalog {
                reason: format!("connecting to the catalog database: {e}"),
                retryable: true,
            })?;
        Ok(SqlSwap {
            pool,
            style,
            catalog_name: catalog_name.to_string(),
        })
    }

    fn update_sql(&self) -> String {
        let p = |i: usize| match self.style {
            BindStyle::QMark => "?".to_string(),
            BindStyle::Dollar => format!("${i}"),
        };
        format!(
            "UPDATE iceberg_tables SET metadata_location = {}, previous_metadata_location = {} \
             WHERE catalog_name = {} AND table_namespace = {} AND table_name = {} AND metadata_location = {} \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6)
        )
    }

    /// Swaps every staged table from its base to its new metadata, all or none.
    pub async fn swap(&self, staged: &[Staged]) -> SwapOutcome {
        let mut ordered: Vec<&Staged> = staged.iter().collect();
        ordered.sort_by_key(|s| s.ident.to_string());
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return SwapOutcome::NotCommitted(format!("begin: {e}")),
        };
        let sql = self.update_sql();
        for s in ordered {
            let namespace = s.ident.namespace().join(".");
            let q = sqlx::query(&sql)
                .bind(s.new_location.as_str())
                .bind(s.base_location.as_str())
                .bind(self.catalog_name.as_str())
                .bind(namespace.as_str())
                .bind(s.ident.name())
                .bind(s.base_location.as_str());
            match tx.execute(q).await {
                Ok(r) if r.rows_affected() == 1 => {}
                Ok(r) => {
                    let _ = tx.rollback().await;
                    return if r.rows_affected() == 0 {
                        SwapOutcome::Conflict(s.ident.to_string())
                    } else {
                        SwapOutcome::NotCommitted(format!(
                            "{} catalog rows matched table {}",
                            r.rows_affected(),
                            s.ident
                        ))
                    };
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    return SwapOutcome::NotCommitted(format!("update {}: {e}", s.ident));
                }
            }
        }
        crate::failpoint!("commit::inside_sql_transaction");
        match tx.commit().await {
            Ok(()) => SwapOutcome::Committed,
            Err(e) => SwapOutcome::Unknown(format!("commit: {e}")),
        }
    }
}
