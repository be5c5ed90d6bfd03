//! Reading back what one snapshot added, for post-write validation (`crate::dq::post_write`).
//!
//! Contract: [`added_files`] returns exactly the data files whose manifest entry is `Added` by the given snapshot
//! (in manifests that snapshot wrote), never files inherited from earlier snapshots, each with its rows and the
//! `day()` partition value recorded in the manifest — the value readers prune on, which is the thing to check.
//!
//! Each file is read whole into memory and decoded on the blocking pool, so a call costs about one checkpoint's
//! worth of one table in memory and never stalls the async executor on Parquet decoding.

use arrow_array::RecordBatch;
use iceberg::spec::{
    DataContentType, DataFileFormat, Literal, ManifestContentType, ManifestStatus,
    PrimitiveLiteral, TableMetadata, Transform,
};
use iceberg::table::Table;
use iceberg::{Error, ErrorKind};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::error::SinkError;

/// One data file a snapshot added, read back.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    /// Full URI as the manifest records it; names the file in check details.
    pub path: String,
    /// The `day()` partition value (days since the epoch) from the manifest entry; `None` when the file's spec has
    /// no day field or the value is null — both mean date filters cannot find its rows.
    pub partition_day: Option<i32>,
    /// The file's rows as stored.
    pub batches: Vec<RecordBatch>,
}

/// Data files added by `snapshot_id`, with their rows.
pub async fn added_files(table: &Table, snapshot_id: i64) -> Result<Vec<WrittenFile>, SinkError> {
    let md = table.metadata();
    let snapshot = md.snapshot_by_id(snapshot_id).ok_or_else(|| {
        invalid(format!(
            "table {} has no snapshot {snapshot_id}",
            table.identifier()
        ))
    })?;
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(SinkError::from_iceberg)?;
    let mut out = Vec::new();
    for manifest_file in list.entries() {
        // Manifests carried over from earlier snapshots keep their original added_snapshot_id.
        if manifest_file.added_snapshot_id != snapshot_id {
            continue;
        }
        if manifest_file.content == ManifestContentType::Deletes {
            return Err(invalid(format!(
                "snapshot {snapshot_id} of {} added delete files, which this sink never writes",
                table.identifier()
            )));
        }
        let day_position = day_field_position(md, manifest_file.partition_spec_id)?;
        let manifest = manifest_file
            .load_manifest(table.file_io())
            .await
            .map_err(SinkError::from_iceberg)?;
        for entry in manifest.entries() {
            if entry.status() != ManifestStatus::Added || entry.snapshot_id() != Some(snapshot_id) {
                continue;
            }
            let file = entry.data_file();
            if file.content_type() != DataContentType::Data {
                continue;
            }
            if file.file_format() != DataFileFormat::Parquet {
                return Err(invalid(format!(
                    "data file {} is {}, only Parquet is read back",
                    file.file_path(),
                    file.file_format()
                )));
            }
            let partition_day = day_position.and_then(|p| match file.partition().fields().get(p) {
                Some(Some(Literal::Primitive(PrimitiveLiteral::Int(day)))) => Some(*day),
                _ => None,
            });
            out.push(WrittenFile {
                path: file.file_path().to_string(),
                partition_day,
                batches: read_parquet(table, file.file_path()).await?,
            });
        }
    }
    Ok(out)
}

/// Position of the `day()` field in partition tuples of spec `spec_id`.
fn day_field_position(md: &TableMetadata, spec_id: i32) -> Result<Option<usize>, SinkError> {
    let spec = md.partition_spec_by_id(spec_id).ok_or_else(|| {
        invalid(format!(
            "manifest refers to unknown partition spec {spec_id}"
        ))
    })?;
    Ok(spec
        .fields()
        .iter()
        .position(|f| f.transform == Transform::Day))
}

async fn read_parquet(table: &Table, path: &str) -> Result<Vec<RecordBatch>, SinkError> {
    let bytes = table
        .file_io()
        .new_input(path)
        .map_err(SinkError::from_iceberg)?
        .read()
        .await
        .map_err(SinkError::from_iceberg)?;
    let owned_path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| unreadable(&owned_path, e))?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(&owned_path, e))
    })
    .await
    .map_err(|e| {
        SinkError::from_iceberg(
            Error::new(
                ErrorKind::Unexpected,
                format!("decoding {path} did not finish"),
            )
            .with_source(e),
        )
    })?
}

/// A data file that is not valid Parquet: permanent, so not retryable.
fn unreadable(path: &str, e: impl std::error::Error + Send + Sync + 'static) -> SinkError {
    SinkError::from_iceberg(
        Error::new(
            ErrorKind::DataInvalid,
            format!("data file {path} is unreadable"),
        )
        .with_source(e),
    )
}

fn invalid(message: String) -> SinkError {
    SinkError::from_iceberg(Error::new(ErrorKind::DataInvalid, message))
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{DataFileBuilder, Struct};

    use super::*;
    use crate::dq::post_write::fixtures::{BASE_DAY, changes_def, clean};
    use crate::dq::{CheckResult, DqConfig, compile, validate};
    use crate::sink::commit::{CommitOutcome, commit_files, write_rows};
    use crate::sink::testutil::{embedded, meta};
    use crate::value::Value;

    fn committed(o: CommitOutcome) -> i64 {
        match o {
            CommitOutcome::Committed(id) => id,
            other => panic!("expected Committed, got {other:?}"),
        }
    }

    fn summary(results: &[CheckResult]) -> Vec<(&'static str, bool, u64)> {
        results
            .iter()
            .map(|r| (r.check, r.passed, r.failing_rows))
            .collect()
    }

    /// Sorted (partition day, rows) of files.
    fn days(files: &[WrittenFile]) -> Vec<(Option<i32>, usize)> {
        let mut v: Vec<_> = files
            .iter()
            .map(|f| {
                (
                    f.partition_day,
                    f.batches.iter().map(RecordBatch::num_rows).sum(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn reads_only_the_snapshots_own_files_and_validates_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = embedded(dir.path()).await;
        let def = changes_def();
        cat.ensure_table(&def).await.expect("ensure");
        let rules = compile(&DqConfig::default()).expect("rules");

        // Checkpoint 1: ids 0..30 over three days. Checkpoint 2: ids 100..110 on day 1 only.
        let mut snapshots = Vec::new();
        for (cp, rows) in [
            (1, (0..30).map(|id| clean(id, id % 3)).collect::<Vec<_>>()),
            (2, (100..110).map(|id| clean(id, 1)).collect()),
        ] {
            let table = cat.load_table(&def.name).await.expect("load");
            let m = meta("w1", cp, 0);
            let written = write_rows(&table, &def, &m, &rows, 8).await.expect("write");
            let sid = committed(
                commit_files(&cat, &def.name, written.files, &m)
                    .await
                    .expect("commit"),
            );
            snapshots.push((sid, rows.len() as u64));
        }
        let table = cat.load_table(&def.name).await.expect("load");

        let first = added_files(&table, snapshots[0].0).await.expect("read 1");
        assert_eq!(
            days(&first),
            vec![
                (Some(BASE_DAY), 10),
                (Some(BASE_DAY + 1), 10),
                (Some(BASE_DAY + 2), 10)
            ]
        );
        let second = added_files(&table, snapshots[1].0).await.expect("read 2");
        assert_eq!(days(&second), vec![(Some(BASE_DAY + 1), 10)]);
        assert!(second[0].path.contains("w1-cp2-"), "{}", second[0].path);

        let results = validate(&def, &second, snapshots[1].1, &rules, &["id"]);
        assert_eq!(
            summary(&results),
            vec![
                ("row_count", true, 0),
                ("rules", true, 0),
                ("partition_values", true, 0),
                ("unique_key_lsn", true, 0),
            ]
        );
        // The committer's count off by one: only row_count fails.
        let results = validate(&def, &first, snapshots[0].1 + 1, &rules, &["id"]);
        assert_eq!(
            summary(&results),
            vec![
                ("row_count", false, 1),
                ("rules", true, 0),
                ("partition_values", true, 0),
                ("unique_key_lsn", true, 0),
            ]
        );
        assert_eq!(results[0].detail, "30 rows in 3 added files, 31 sent");

        assert!(added_files(&table, 12345).await.is_err());
    }

    #[tokio::test]
    async fn catches_misfiled_rows_bad_values_and_duplicates_in_a_real_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = embedded(dir.path()).await;
        let def = changes_def();
        cat.ensure_table(&def).await.expect("ensure");
        let table = cat.load_table(&def.name).await.expect("load");

        // Day-0 rows, one with a negative amount, one written twice (same id and lsn).
        let mut rows: Vec<Vec<Value>> = (0..5).map(|id| clean(id, 0)).collect();
        rows[3][11] = Value::Decimal(-1);
        rows.push(clean(2, 0));
        let m = meta("w1", 1, 0);
        let written = write_rows(&table, &def, &m, &rows, 100)
            .await
            .expect("write");
        assert_eq!(written.files.len(), 1);
        // A writer bug: the file is recorded under the next day's partition.
        let good = &written.files[0];
        let misfiled = DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(good.file_path().to_string())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::from_iter([Some(Literal::int(BASE_DAY + 1))]))
            .record_count(good.record_count())
            .file_size_in_bytes(good.file_size_in_bytes())
            .partition_spec_id(written.spec_id)
            .build()
            .expect("data file");
        let sid = committed(
            commit_files(&cat, &def.name, vec![misfiled], &m)
                .await
                .expect("commit"),
        );
        let table = cat.load_table(&def.name).await.expect("load");
        let files = added_files(&table, sid).await.expect("read");
        assert_eq!(days(&files), vec![(Some(BASE_DAY + 1), 6)]);

        let rules = compile(&DqConfig::default()).expect("rules");
        let results = validate(&def, &files, 6, &rules, &["id"]);
        assert_eq!(
            summary(&results),
            vec![
                ("row_count", true, 0),
                ("rules", false, 1),
                ("partition_values", false, 6),
                ("unique_key_lsn", false, 1),
            ]
        );
        let path = &files[0].path;
        assert_eq!(
            results[2].detail,
            format!(
                "6 rows in 1 of 1 files outside their partition day; first: {path} is in partition 2024-01-02 \
                 but holds a row of 2024-01-01"
            )
        );
        assert_eq!(
            results[3].detail,
            format!("1 duplicate rows of 6; first: (id=2, lsn=1002, op=c) again in {path}")
        );
        assert_eq!(
            results[1].detail,
            format!(
                "1 of 6 rows break rules; transactions.amount.positive: 1 rows, first: amount is -0.01, must be \
                 > 0 in {path}"
            )
        );
    }
}
