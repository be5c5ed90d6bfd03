//! What the namespace holds, from table metadata only: one [`TableInfo`] per table for `ledgerstream tables`, and
//! [`snapshot_as_of`], the snapshot of a table that a past checkpoint left behind (time travel).
//!
//! Row and file counts come from the snapshot summary (`total-records`, `total-data-files`, which every Iceberg
//! writer maintains); a snapshot without them is counted from its manifests instead. The sink only fast-appends,
//! so there are no delete files to subtract.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use iceberg::spec::Snapshot;
use iceberg::table::Table;
use iceberg::util::snapshot::ancestors_of;
use serde::Serialize;

use crate::sink::{CommitMeta, SinkCatalog, SinkError};
use crate::types::CheckpointId;

use super::QueryError;

/// Snapshot summary key (Iceberg spec): live rows in the table after this snapshot.
const TOTAL_RECORDS: &str = "total-records";
/// Snapshot summary key (Iceberg spec): live data files after this snapshot.
const TOTAL_DATA_FILES: &str = "total-data-files";

/// One table of the namespace as of its current snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    pub name: String,
    /// Rows in the current snapshot (0 before the first commit).
    pub rows: u64,
    /// Data files the current snapshot references.
    pub data_files: u64,
    /// `None` until the first commit.
    pub snapshot_id: Option<i64>,
    /// When the current snapshot was committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// `ledgerstream.checkpoint-id` of the current snapshot; `None` if another writer made it.
    pub checkpoint_id: Option<u64>,
    /// `ledgerstream.writer-id` of the current snapshot.
    pub writer_id: Option<String>,
}

impl TableInfo {
    /// Reads the current snapshot's figures; counts from the manifests when the summary lacks them.
    pub async fn of(name: &str, table: &Table) -> Result<TableInfo, QueryError> {
        let Some(snapshot) = table.metadata().current_snapshot() else {
            return Ok(TableInfo {
                name: name.to_string(),
                rows: 0,
                data_files: 0,
                snapshot_id: None,
                committed_at: None,
                checkpoint_id: None,
                writer_id: None,
            });
        };
        let (rows, data_files) = match summary_counts(snapshot) {
            Some(counts) => counts,
            None => manifest_counts(table).await?,
        };
        let meta = CommitMeta::from_snapshot(snapshot)?;
        Ok(TableInfo {
            name: name.to_string(),
            rows,
            data_files,
            snapshot_id: Some(snapshot.snapshot_id()),
            committed_at: DateTime::from_timestamp_millis(snapshot.timestamp_ms()),
            checkpoint_id: meta.as_ref().map(|m| m.checkpoint_id.0),
            writer_id: meta.map(|m| m.writer_id),
        })
    }
}

/// `(rows, data files)` from the snapshot summary, if it carries both.
fn summary_counts(snapshot: &Snapshot) -> Option<(u64, u64)> {
    let props = &snapshot.summary().additional_properties;
    let get = |k: &str| props.get(k).and_then(|v| v.parse::<u64>().ok());
    Some((get(TOTAL_RECORDS)?, get(TOTAL_DATA_FILES)?))
}

/// `(rows, data files)` by planning a scan of the current snapshot (reads the manifests, not the data).
async fn manifest_counts(table: &Table) -> Result<(u64, u64), QueryError> {
    let tasks: Vec<_> = table
        .scan()
        .build()
        .map_err(SinkError::from_iceberg)?
        .plan_files()
        .await
        .map_err(SinkError::from_iceberg)?
        .try_collect()
        .await
        .map_err(SinkError::from_iceberg)?;
    let rows = tasks.iter().filter_map(|t| t.record_count).sum();
    Ok((rows, tasks.len() as u64))
}

/// Every table of the namespace, sorted by name, with its current figures.
pub async fn inventory(catalog: &SinkCatalog) -> Result<Vec<TableInfo>, QueryError> {
    let mut out = Vec::new();
    for name in table_names(catalog).await? {
        let table = catalog.load_table(&name).await?;
        out.push(TableInfo::of(&name, &table).await?);
    }
    Ok(out)
}

/// Names of the namespace's tables, sorted. An empty or missing namespace is an error: nothing to query.
pub async fn table_names(catalog: &SinkCatalog) -> Result<Vec<String>, QueryError> {
    let namespace = catalog.namespace();
    let no_tables = || QueryError::NoTables {
        namespace: namespace.to_string(),
    };
    let exists = catalog
        .catalog()
        .namespace_exists(namespace)
        .await
        .map_err(SinkError::from_iceberg)?;
    if !exists {
        return Err(no_tables());
    }
    let mut names: Vec<String> = catalog
        .catalog()
        .list_tables(namespace)
        .await
        .map_err(SinkError::from_iceberg)?
        .into_iter()
        .map(|t| t.name().to_string())
        .collect();
    if names.is_empty() {
        return Err(no_tables());
    }
    names.sort();
    Ok(names)
}

/// What a table looked like when a checkpoint completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// This snapshot: the writer's newest one with a checkpoint id at or below the requested one.
    Snapshot(i64),
    /// The writer had committed nothing to the table by then: it was empty.
    Empty,
}

/// The snapshot of a table as checkpoint `checkpoint` of `writer_id` left it.
///
/// `ancestry` runs from the current snapshot back to the first (newest first), each snapshot with the ledgerstream
/// summary it carries. A table gets a snapshot only at checkpoints that added rows to it, so the snapshot "of"
/// checkpoint `n` is the newest of this writer's snapshots at or below `n`; snapshots of other writers and this
/// writer's later checkpoints are skipped.
pub fn snapshot_as_of(
    ancestry: impl IntoIterator<Item = (i64, Option<CommitMeta>)>,
    writer_id: &str,
    checkpoint: CheckpointId,
) -> AsOf {
    ancestry
        .into_iter()
        .find(|(_, meta)| {
            meta.as_ref()
                .is_some_and(|m| m.writer_id == writer_id && m.checkpoint_id <= checkpoint)
        })
        .map_or(AsOf::Empty, |(id, _)| AsOf::Snapshot(id))
}

/// The current snapshot's ancestry (newest first) with each snapshot's ledgerstream summary.
pub fn ancestry(table: &Table) -> Result<Vec<(i64, Option<CommitMeta>)>, QueryError> {
    let md = table.metadata_ref();
    let Some(current) = md.current_snapshot_id() else {
        return Ok(Vec::new());
    };
    ancestors_of(&md, current)
        .map(|s| Ok((s.snapshot_id(), CommitMeta::from_snapshot(&s)?)))
        .collect()
}

/// The newest checkpoint id of `writer_id` in an ancestry.
pub fn newest_checkpoint(
    ancestry: &[(i64, Option<CommitMeta>)],
    writer_id: &str,
) -> Option<CheckpointId> {
    ancestry
        .iter()
        .filter_map(|(_, m)| m.as_ref())
        .filter(|m| m.writer_id == writer_id)
        .map(|m| m.checkpoint_id)
        .max()
}

/// `ledgerstream tables` as aligned text columns.
pub fn render_table_infos(infos: &[TableInfo]) -> String {
    let header = [
        "table",
        "rows",
        "data_files",
        "snapshot_id",
        "committed_at",
        "checkpoint_id",
    ];
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let rows: Vec<[String; 6]> = infos
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.rows.to_string(),
                i.data_files.to_string(),
                opt(i.snapshot_id.map(|s| s.to_string())),
                opt(i
                    .committed_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))),
                opt(i.checkpoint_id.map(|c| c.to_string())),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            // Names left-aligned, numbers and ids right-aligned.
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for r in &rows {
        line(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::testutil::{embedded, meta, tx_def, tx_rows};
    use crate::sink::{commit_files, write_rows};

    fn m(writer: &str, cp: u64) -> Option<CommitMeta> {
        Some(meta(writer, cp, 1))
    }

    #[test]
    fn as_of_picks_the_newest_snapshot_at_or_below_the_checkpoint() {
        // Newest first: our 7, someone else's, our 5, our 2.
        let ancestry = vec![
            (40, m("w", 7)),
            (30, m("other", 9)),
            (20, m("w", 5)),
            (10, m("w", 2)),
        ];
        let at = |cp| snapshot_as_of(ancestry.clone(), "w", CheckpointId(cp));
        assert_eq!(at(7), AsOf::Snapshot(40));
        assert_eq!(at(100), AsOf::Snapshot(40));
        // Between two of our commits: the table as checkpoint 5 left it, not the other writer's later append.
        assert_eq!(at(6), AsOf::Snapshot(20));
        assert_eq!(at(5), AsOf::Snapshot(20));
        assert_eq!(at(4), AsOf::Snapshot(10));
        assert_eq!(at(1), AsOf::Empty);
        assert_eq!(
            snapshot_as_of(ancestry.clone(), "nobody", CheckpointId(7)),
            AsOf::Empty
        );
        assert_eq!(
            snapshot_as_of(vec![(1, None)], "w", CheckpointId(7)),
            AsOf::Empty
        );
        assert_eq!(newest_checkpoint(&ancestry, "w"), Some(CheckpointId(7)));
        assert_eq!(newest_checkpoint(&ancestry, "other"), Some(CheckpointId(9)));
        assert_eq!(newest_checkpoint(&ancestry, "x"), None);
    }

    #[tokio::test]
    async fn table_info_and_time_travel_follow_the_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = embedded(dir.path()).await;
        let def = tx_def();
        let table = catalog.ensure_table(&def).await.expect("table");
        let empty = TableInfo::of("transactions", &table).await.expect("info");
        assert_eq!(
            (empty.rows, empty.data_files, empty.snapshot_id),
            (0, 0, None)
        );
        assert!(ancestry(&table).expect("ancestry").is_empty());

        // Three checkpoints of 10, 20 and 5 rows (each spans three day partitions: 3 files each).
        let mut snapshots = Vec::new();
        for (cp, ids) in [(1, 0..10), (2, 10..30), (4, 30..35)] {
            let table = catalog.load_table("transactions").await.expect("load");
            let mt = meta("w", cp, ids.end);
            let written = write_rows(&table, &def, &mt, &tx_rows(ids), 1000)
                .await
                .expect("write");
            let outcome = commit_files(&catalog, "transactions", written.files, &mt)
                .await
                .expect("commit");
            snapshots.push(match outcome {
                crate::sink::CommitOutcome::Committed(id) => id,
                other => panic!("{other:?}"),
            });
        }
        let table = catalog.load_table("transactions").await.expect("load");
        let info = TableInfo::of("transactions", &table).await.expect("info");
        assert_eq!(info.rows, 35);
        assert_eq!(info.data_files, 9);
        assert_eq!(info.snapshot_id, Some(snapshots[2]));
        assert_eq!(info.checkpoint_id, Some(4));
        assert_eq!(info.writer_id.as_deref(), Some("w"));
        // The summary and the manifests agree.
        assert_eq!(manifest_counts(&table).await.expect("count"), (35, 9));

        let anc = ancestry(&table).expect("ancestry");
        assert_eq!(
            anc.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            snapshots.iter().rev().copied().collect::<Vec<_>>()
        );
        let at = |cp| snapshot_as_of(anc.clone(), "w", CheckpointId(cp));
        assert_eq!(at(1), AsOf::Snapshot(snapshots[0]));
        assert_eq!(at(3), AsOf::Snapshot(snapshots[1]));
        assert_eq!(at(4), AsOf::Snapshot(snapshots[2]));

        let listed = inventory(&catalog).await.expect("inventory");
        assert_eq!(listed, vec![info.clone()]);
        let text = render_table_infos(&listed);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("table"), "{text}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells[..3], ["transactions", "35", "9"], "{text}");
        assert_eq!(cells[3], snapshots[2].to_string());
        assert_eq!(cells[5], "4");
    }

    #[tokio::test]
    async fn a_namespace_without_tables_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = embedded(dir.path()).await;
        let err = inventory(&catalog).await.expect_err("no tables");
        assert!(matches!(err, QueryError::NoTables { .. }), "{err}");
        assert!(err.to_string().contains("fintech"), "{err}");
    }
}
