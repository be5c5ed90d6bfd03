//! SQL over the namespace's Iceberg tables through DataFusion (`iceberg-datafusion`).
//!
//! Contract:
//! - Every table of the namespace is registered under its plain name (`transactions_enriched`), pinned to one
//!   snapshot when the session opens: the current one, or with [`open`](QuerySession::open)'s `as_of` the one that
//!   checkpoint left ([`snapshot_as_of`]). A table the writer had not yet committed to at that checkpoint is
//!   registered empty, with its current columns.
//! - The current-state views (`users_current`, `wallets_current`) are registered on top, so they follow the same
//!   snapshot choice.
//! - [`run`](QuerySession::run) accepts one read-only statement: queries and `EXPLAIN`. DDL, DML and session
//!   statements are refused; a table name that is not registered is reported with the known names, before
//!   planning.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use iceberg::table::Table;
use iceberg_datafusion::IcebergStaticTableProvider;

use crate::sink::{SinkCatalog, SinkError};
use crate::types::CheckpointId;

use super::QueryError;
use super::current_state::VIEWS;
use super::inventory::{AsOf, ancestry, newest_checkpoint, snapshot_as_of, table_names};

/// A DataFusion session with the namespace's tables registered.
pub struct QuerySession {
    ctx: SessionContext,
    /// Registered names (tables and views), sorted: what an unknown-table error lists.
    names: Vec<String>,
}

/// The rows of a statement, with its schema (so that an empty result still has column names).
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The one conversion of DataFusion's errors.
fn sql_error(e: DataFusionError) -> QueryError {
    QueryError::Sql(e.to_string())
}

impl QuerySession {
    /// Registers every table of the catalog's namespace at its current snapshot, or, with `as_of`, at the
    /// snapshot that checkpoint of `writer_id` left (see [`snapshot_as_of`]). A checkpoint newer than anything the
    /// writer committed is an error, not an empty answer.
    pub async fn open(
        catalog: &SinkCatalog,
        writer_id: &str,
        as_of: Option<CheckpointId>,
    ) -> Result<QuerySession, QueryError> {
        let mut tables = Vec::new();
        for name in table_names(catalog).await? {
            let table = catalog.load_table(&name).await?;
            tables.push((name, table));
        }
        let ctx = SessionContext::new();
        let mut pinned = Vec::new();
        match as_of {
            None => {
                for (name, table) in tables {
                    pinned.push((name, current(table).await?));
                }
            }
            Some(cp) => {
                let mut newest = None;
                for (name, table) in tables {
                    let anc = ancestry(&table)?;
                    newest = newest.max(newest_checkpoint(&anc, writer_id));
                    let provider = match snapshot_as_of(anc, writer_id, cp) {
                        AsOf::Snapshot(id) => Arc::new(
                            IcebergStaticTableProvider::try_new_from_table_snapshot(table, id)
                                .await
                                .map_err(SinkError::from_iceberg)?,
                        ) as Arc<dyn TableProvider>,
                        AsOf::Empty => empty(&table)?,
                    };
                    pinned.push((name, provider));
                }
                if newest.is_none_or(|n| n < cp) {
                    return Err(QueryError::CheckpointNotCommitted {
                        requested: cp.0,
                        writer_id: writer_id.to_string(),
                        newest: newest.map(|n| n.0),
                    });
                }
            }
        }
        let mut names = Vec::new();
        for (name, provider) in pinned {
            ctx.register_table(name.as_str(), provider)
                .map_err(sql_error)?;
            names.push(name);
        }
        for view in VIEWS {
            if names.iter().any(|n| n == view.source) {
                ctx.sql(&view.create_statement())
                    .await
                    .map_err(|e| QueryError::Sql(format!("view {}: {e}", view.name)))?;
                names.push(view.name.to_string());
            }
        }
        names.sort();
        Ok(QuerySession { ctx, names })
    }

    /// Table and view names the SQL can use.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Runs one read-only statement and collects its rows.
    pub async fn run(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect).map_err(sql_error)?;
        // A query's tables must be registered (CTE names are not references). Other statements are refused below;
        // their targets are not tables to look up.
        let is_query = matches!(&statement, DfStatement::Statement(s) if matches!(**s, SqlStatement::Query(_)));
        let references = if is_query {
            state
                .resolve_table_references(&statement)
                .map_err(sql_error)?
        } else {
            Vec::new()
        };
        for reference in references {
            if !self.ctx.table_exist(reference.clone()).map_err(sql_error)? {
                return Err(QueryError::UnknownTable {
                    name: reference.to_string(),
                    known: self.names.clone(),
                });
            }
        }
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self
            .ctx
            .sql_with_options(sql, read_only)
            .await
            .map_err(sql_error)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(sql_error)?;
        Ok(QueryResult { schema, batches })
    }
}

/// The table at its current snapshot; a table without one yet is empty.
async fn current(table: Table) -> Result<Arc<dyn TableProvider>, QueryError> {
    if table.metadata().current_snapshot().is_none() {
        return empty(&table);
    }
    Ok(Arc::new(
        IcebergStaticTableProvider::try_new_from_table(table)
            .await
            .map_err(SinkError::from_iceberg)?,
    ))
}

/// An empty table with the table's current columns.
fn empty(table: &Table) -> Result<Arc<dyn TableProvider>, QueryError> {
    let schema = iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
        .map_err(SinkError::from_iceberg)?;
    let mem = MemTable::try_new(Arc::new(schema), vec![vec![]]).map_err(sql_error)?;
    Ok(Arc::new(mem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::testutil::{embedded, meta, tx_def, tx_rows};
    use crate::sink::{TableDef, commit_files, write_rows};
    use crate::value::{ColumnSpec, ColumnType, Value};
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;

    const WRITER: &str = "w";

    /// Appends `rows` to `table` as checkpoint `cp` of [`WRITER`].
    async fn commit(catalog: &SinkCatalog, def: &TableDef, cp: u64, rows: Vec<Vec<Value>>) {
        let table = catalog.load_table(&def.name).await.expect("load");
        let m = meta(WRITER, cp, cp as i64);
        let written = write_rows(&table, def, &m, &rows, 1000)
            .await
            .expect("write");
        commit_files(catalog, &def.name, written.files, &m)
            .await
            .expect("commit");
    }

    fn int_column(r: &QueryResult, name: &str) -> Vec<Option<i64>> {
        r.batches
            .iter()
            .flat_map(|b| {
                let c = b
                    .column_by_name(name)
                    .unwrap_or_else(|| panic!("column {name}"))
                    .as_primitive::<Int64Type>()
                    .clone();
                (0..c.len())
                    .map(move |i| (!c.is_null(i)).then(|| c.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A changelog table shaped like `wallets_changes`: the meta columns, then the source row.
    fn wallets_changes_def() -> TableDef {
        let cols = [
            ("op", ColumnType::Text, false),
            ("lsn", ColumnType::Int64, false),
            ("tx_id", ColumnType::Int64, true),
            ("source_ts", ColumnType::TimestampTz, false),
            ("id", ColumnType::Int64, false),
            ("user_id", ColumnType::Int64, true),
            (
                "balance",
                ColumnType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                false,
            ),
        ];
        TableDef::new(
            "wallets_changes",
            cols.iter()
                .map(|(n, t, o)| ColumnSpec::new(*n, *t, *o))
                .collect(),
            "source_ts",
        )
    }

    /// `(op, lsn, tx_id, id, user_id, balance cents)`.
    fn change(op: &str, lsn: i64, tx: i64, id: i64, user: i64, cents: i128) -> Vec<Value> {
        vec![
            Value::Text(op.into()),
            Value::Int64(lsn),
            Value::Int64(tx),
            Value::TimestampTz(crate::sink::testutil::BASE_US + lsn),
            Value::Int64(id),
            Value::Int64(user),
            Value::Decimal(cents),
        ]
    }

    #[tokio::test]
    async fn queries_run_over_current_and_past_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = embedded(dir.path()).await;
        let def = tx_def();
        catalog.ensure_table(&def).await.expect("table");
        // A table that never gets a commit is queryable (and empty).
        let quiet = TableDef::new(
            "quiet",
            vec![
                ColumnSpec::new("k", ColumnType::Int64, false),
                ColumnSpec::new("at", ColumnType::TimestampTz, false),
            ],
            "at",
        );
        catalog.ensure_table(&quiet).await.expect("quiet");
        commit(&catalog, &def, 1, tx_rows(0..10)).await;
        commit(&catalog, &def, 3, tx_rows(10..25)).await;

        let now = QuerySession::open(&catalog, WRITER, None)
            .await
            .expect("open");
        assert_eq!(now.names(), ["quiet", "transactions"]);
        let count = |r: QueryResult| int_column(&r, "n");
        let n = now
            .run("SELECT count(*) AS n FROM transactions")
            .await
            .expect("count");
        assert_eq!(count(n), [Some(25)]);
        let q = now.run("SELECT count(*) AS n FROM quiet").await.expect("q");
        assert_eq!(count(q), [Some(0)]);
        // Sums over decimals and filters on pushed-down columns come back exact.
        let sum = now
            .run("SELECT CAST(sum(amount) * 100 AS BIGINT) AS n FROM transactions WHERE id >= 20")
            .await
            .expect("sum");
        assert_eq!(count(sum), [Some((20..25).map(|i| i * 100 + 7).sum())]);

        // Time travel: checkpoint 2 is the table as checkpoint 1 left it; before it, empty.
        for (cp, want) in [(1, 10), (2, 10), (3, 25)] {
            let past = QuerySession::open(&catalog, WRITER, Some(CheckpointId(cp)))
                .await
                .expect("open as of");
            let n = past
                .run("SELECT count(*) AS n FROM transactions")
                .await
                .expect("count");
            assert_eq!(count(n), [Some(want)], "as of checkpoint {cp}");
        }
        let err = QuerySession::open(&catalog, WRITER, Some(CheckpointId(4)))
            .await
            .err()
            .expect("not committed");
        assert!(
            matches!(
                err,
                QueryError::CheckpointNotCommitted {
                    requested: 4,
                    newest: Some(3),
                    ..
                }
            ),
            "{err}"
        );
        let err = QuerySession::open(&catalog, "someone-else", Some(CheckpointId(1)))
            .await
            .err()
            .expect("unknown writer");
        assert!(err.to_string().contains("writer_id"), "{err}");
    }

    #[tokio::test]
    async fn unknown_tables_bad_sql_and_writes_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = embedded(dir.path()).await;
        let def = tx_def();
        catalog.ensure_table(&def).await.expect("table");
        commit(&catalog, &def, 1, tx_rows(0..3)).await;
        let s = QuerySession::open(&catalog, WRITER, None)
            .await
            .expect("open");

        let err = s.run("SELECT * FROM nope").await.expect_err("unknown");
        match &err {
            QueryError::UnknownTable { name, known } => {
                assert_eq!(name, "nope");
                assert_eq!(known, &["transactions"]);
            }
            other => panic!("{other}"),
        }
        // A CTE is not a table reference.
        let r = s
            .run("WITH t AS (SELECT id FROM transactions) SELECT count(*) AS n FROM t")
            .await
            .expect("cte");
        assert_eq!(int_column(&r, "n"), [Some(3)]);
        for bad in [
            "SELEC 1",
            "SELECT no_such_column FROM transactions",
            "SELECT 1; SELECT 2",
        ] {
            let err = s.run(bad).await.expect_err(bad);
            assert!(matches!(err, QueryError::Sql(_)), "{bad}: {err}");
        }
        for write in [
            "CREATE TABLE x AS SELECT 1",
            "INSERT INTO transactions SELECT * FROM transactions",
            "DROP TABLE transactions",
        ] {
            let err = s.run(write).await.expect_err(write);
            assert!(matches!(err, QueryError::Sql(_)), "{write}: {err}");
        }
        let r = s
            .run("SELECT count(*) AS n FROM transactions")
            .await
            .expect("still there");
        assert_eq!(int_column(&r, "n"), [Some(3)]);
    }

    #[tokio::test]
    async fn current_state_view_keeps_the_latest_row_per_key_and_drops_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = embedded(dir.path()).await;
        let def = wallets_changes_def();
        catalog.ensure_table(&def).await.expect("table");
        commit(
            &catalog,
            &def,
            1,
            vec![
                change("r", 100, 1, 1, 10, 500),
                change("r", 100, 1, 2, 20, 700),
                change("c", 110, 2, 3, 30, 0),
                // Two changes of wallet 1 in one PostgreSQL transaction: same tx_id, the higher LSN wins.
                change("u", 120, 3, 1, 10, 400),
                change("u", 121, 3, 1, 10, 350),
            ],
        )
        .await;
        commit(
            &catalog,
            &def,
            2,
            vec![
                // Wallet 2 moves to user 21: a delete under the old user and a create under the new one, one LSN.
                change("d", 130, 4, 2, 20, 700),
                change("c", 130, 4, 2, 21, 700),
                // Wallet 3 is deleted.
                change("d", 140, 5, 3, 30, 0),
                // Wallet 4 is created and deleted, then an older change of wallet 1 arrives late in the file order.
                change("c", 150, 6, 4, 40, 100),
                change("d", 151, 7, 4, 40, 100),
                change("u", 119, 3, 1, 10, 450),
            ],
        )
        .await;
        let s = QuerySession::open(&catalog, WRITER, None)
            .await
            .expect("open");
        assert_eq!(s.names(), ["wallets_changes", "wallets_current"]);
        let r = s
            .run(
                "SELECT id, user_id, lsn, CAST(balance * 100 AS BIGINT) AS cents \
                 FROM wallets_current ORDER BY id",
            )
            .await
            .expect("current");
        assert_eq!(int_column(&r, "id"), [Some(1), Some(2)]);
        assert_eq!(int_column(&r, "user_id"), [Some(10), Some(21)]);
        assert_eq!(int_column(&r, "lsn"), [Some(121), Some(130)]);
        assert_eq!(int_column(&r, "cents"), [Some(350), Some(700)]);

        // As of checkpoint 1 the view sees the older snapshot: wallets 1, 2 and 3.
        let past = QuerySession::open(&catalog, WRITER, Some(CheckpointId(1)))
            .await
            .expect("open as of");
        let r = past
            .run("SELECT id, user_id FROM wallets_current ORDER BY id")
            .await
            .expect("current as of 1");
        assert_eq!(int_column(&r, "id"), [Some(1), Some(2), Some(3)]);
        assert_eq!(int_column(&r, "user_id"), [Some(10), Some(20), Some(30)]);
    }
}
