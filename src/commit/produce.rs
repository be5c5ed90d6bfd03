//! Step 1: stage one table's change against an exact base — new manifests, manifest list, snapshot and
//! metadata.json written to storage, nothing swapped yet.
//!
//! A staged change is only ever published by swapping the catalog pointer from `base_location` to
//! `new_location` ([`super::swap`]). If the swap fails, everything written here is unreferenced: harmless to
//! readers, and never deleted here, because after an *unknown* outcome it may be referenced after all.

use std::collections::HashMap;
use std::str::FromStr;

use iceberg::spec::{
    DataContentType, DataFile, MAIN_BRANCH, ManifestFile, ManifestListWriter,
    ManifestWriterBuilder, Operation, Snapshot, SnapshotSummaryCollector, Summary, TableMetadata,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent};

use crate::sink::SinkError;

/// One table's part of a commit.
#[derive(Debug, Clone, Default)]
pub struct TableChange {
    /// New data files (content = data), in the table's default spec.
    pub data_files: Vec<DataFile>,
    /// New position-delete files, each in the partition of the data files it targets.
    pub delete_files: Vec<DataFile>,
    /// Snapshot-summary properties of the new snapshot (checkpoint id, writer, epoch, offsets).
    pub summary: HashMap<String, String>,
}

impl TableChange {
    /// A change with no files: the table only gets its properties (the checkpoint marks) updated, no snapshot.
    pub fn is_empty(&self) -> bool {
        self.data_files.is_empty() && self.delete_files.is_empty()
    }
}

/// A table change written to storage and ready to be swapped in.
#[derive(Debug, Clone)]
pub struct Staged {
    pub ident: TableIdent,
    /// The metadata file the change was built on: the swap succeeds only if it is still current.
    pub base_location: String,
    /// The new metadata file.
    pub new_location: String,
    /// The new snapshot, if the change added files.
    pub snapshot_id: Option<i64>,
}

/// Keys of the running totals a snapshot summary carries, with the added-key they grow by.
const TOTALS: [(&str, &str, &str); 5] = [
    ("total-records", "added-records", "deleted-records"),
    ("total-data-files", "added-data-files", "deleted-data-files"),
    ("total-files-size", "added-files-size", "removed-files-size"),
    (
        "total-delete-files",
        "added-delete-files",
        "removed-delete-files",
    ),
    (
        "total-position-deletes",
        "added-position-deletes",
        "removed-position-deletes",
    ),
];

fn unique_snapshot_id(md: &TableMetadata) -> i64 {
    loop {
        let id = (rand::random::<u64>() >> 1) as i64;
        if id != 0 && md.snapshots().all(|s| s.snapshot_id() != id) {
            return id;
        }
    }
}

/// The summary of a snapshot adding `data` and `deletes` on top of `parent`'s totals.
fn summary(md: &TableMetadata, change: &TableChange) -> Result<Summary, SinkError> {
    let mut collector = SnapshotSummaryCollector::default();
    collector.set_partition_summary_limit(0);
    for f in change.data_files.iter().chain(&change.delete_files) {
        collector.add_file(
            f,
            md.current_schema().clone(),
            md.default_partition_spec().clone(),
        );
    }
    let mut props = change.summary.clone();
    let added = collector.build();
    let parent = md
        .current_snapshot()
        .map(|s| &s.summary().additional_properties);
    for (total, plus, minus) in TOTALS {
        let get = |m: &HashMap<String, String>, k: &str| {
            m.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        let before = match parent {
            Some(p) => match p.get(total).map(|v| v.parse::<u64>()) {
                Some(Ok(v)) => v,
                // A parent without (or with unreadable) totals: totals are unknown from here on, so leave them
                // out rather than write wrong ones.
                _ => continue,
            },
            None => 0,
        };
        let after = (before + get(&added, plus)).saturating_sub(get(&added, minus));
        props.insert(total.to_string(), after.to_string());
    }
    props.extend(added);
    // Appends only data; a delete file makes it an overwrite of rows (what RowDelta commits are in Java).
    let operation = if change.delete_files.is_empty() {
        Operation::Append
    } else {
        Operation::Overwrite
    };
    Ok(Summary {
        operation,
        additional_properties: props,
    })
}

async fn write_manifest(
    table: &Table,
    prefix: &str,
    n: usize,
    snapshot_id: i64,
    files: Vec<DataFile>,
    deletes: bool,
) -> Result<ManifestFile, SinkError> {
    let md = table.metadata();
    let path = format!("{}/metadata/{prefix}-m{n}.avro", md.location());
    let out = table
        .file_io()
        .new_output(path)
        .map_err(SinkError::from_iceberg)?;
    let builder = ManifestWriterBuilder::new(
        out,
        Some(snapshot_id),
        md.current_schema().clone(),
        md.default_partition_spec().as_ref().clone(),
    );
    let mut writer = if deletes {
        builder.build_v2_deletes()
    } else {
        builder.build_v2_data()
    };
    for f in files {
        // -1: the data sequence number is inherited from the manifest list entry, assigned at commit.
        writer.add_file(f, -1).map_err(SinkError::from_iceberg)?;
    }
    writer
        .write_manifest_file()
        .await
        .map_err(SinkError::from_iceberg)
}

/// The metadata file `table` was loaded from: the base a staged change must swap from.
fn base_location(table: &Table) -> Result<String, SinkError> {
    Ok(table
        .metadata_location_result()
        .map_err(SinkError::from_iceberg)?
        .to_string())
}

/// Stages `change` plus `properties` on `table` as loaded (its metadata location is the base).
pub async fn stage(
    table: &Table,
    change: TableChange,
    properties: HashMap<String, String>,
) -> Result<Staged, SinkError> {
    let md = table.metadata();
    let base_location = base_location(table)?;
    if md.format_version() != iceberg::spec::FormatVersion::V2 {
        return Err(SinkError::InvalidTableDef {
            table: table.identifier().to_string(),
            reason: format!(
                "format version {:?}: ledgerstream commits v2 tables only",
                md.format_version()
            ),
        });
    }
    for f in &change.delete_files {
        if f.content_type() != DataContentType::PositionDeletes {
            return Err(SinkError::InvalidPendingCommit {
                reason: format!("{} is not a position-delete file", f.file_path()),
            });
        }
    }
    let mut builder = md.clone().into_builder(Some(base_location.clone()));
    let mut snapshot_id = None;
    if !change.is_empty() {
        let id = unique_snapshot_id(md);
        let prefix = format!("ls-{:016x}", rand::random::<u64>());
        let seq = md.next_sequence_number();
        let parent = md.current_snapshot();
        let mut manifests: Vec<ManifestFile> = match parent {
            Some(s) => table
                .manifest_list_reader(s)
                .load()
                .await
                .map_err(SinkError::from_iceberg)?
                .consume_entries()
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        let summary = summary(md, &change)?;
        let TableChange {
            data_files,
            delete_files,
            ..
        } = change;
        if !data_files.is_empty() {
            manifests.push(write_manifest(table, &prefix, 0, id, data_files, false).await?);
        }
        if !delete_files.is_empty() {
            manifests.push(write_manifest(table, &prefix, 1, id, delete_files, true).await?);
        }
        let list_path = format!("{}/metadata/snap-{id}-0-{prefix}.avro", md.location());
        let out = table
            .file_io()
            .new_output(list_path.clone())
            .map_err(SinkError::from_iceberg)?
            .writer()
            .await
            .map_err(SinkError::from_iceberg)?;
        let mut list = ManifestListWriter::v2(out, id, parent.map(|s| s.snapshot_id()), seq);
        list.add_manifests(manifests.into_iter())
            .map_err(SinkError::from_iceberg)?;
        list.close().await.map_err(SinkError::from_iceberg)?;
        let snapshot = Snapshot::builder()
            .with_manifest_list(list_path)
            .with_snapshot_id(id)
            .with_parent_snapshot_id(parent.map(|s| s.snapshot_id()))
            .with_sequence_number(seq)
            .with_summary(summary)
            .with_schema_id(md.current_schema_id())
            .with_timestamp_ms(
                chrono::Utc::now()
                    .timestamp_millis()
                    .max(md.last_updated_ms()),
            )
            .build();
        builder = builder
            .set_branch_snapshot(snapshot, MAIN_BRANCH)
            .map_err(SinkError::from_iceberg)?;
        snapshot_id = Some(id);
    }
    if !properties.is_empty() {
        builder = builder
            .set_properties(properties)
            .map_err(SinkError::from_iceberg)?;
    }
    finish(table, builder, base_location, snapshot_id).await
}

/// Stages added optional columns (schema evolution) on `table` as loaded: a new schema with the columns appended
/// under fresh field ids, made current. Existing data files simply lack them (read as null).
pub async fn stage_columns(
    table: &Table,
    columns: &[(String, iceberg::spec::Type)],
) -> Result<Staged, SinkError> {
    let md = table.metadata();
    let base_location = base_location(table)?;
    let mut next_id = md.last_column_id();
    let fields: Vec<_> = columns
        .iter()
        .map(|(name, ty)| {
            next_id += 1;
            std::sync::Arc::new(iceberg::spec::NestedField::optional(
                next_id,
                name,
                ty.clone(),
            ))
        })
        .collect();
    let schema = md
        .current_schema()
        .as_ref()
        .clone()
        .into_builder()
        .with_fields(fields)
        .build()
        .map_err(SinkError::from_iceberg)?;
    let builder = md
        .clone()
        .into_builder(Some(base_location.clone()))
        .add_schema(schema)
        .map_err(SinkError::from_iceberg)?
        .set_current_schema(-1)
        .map_err(SinkError::from_iceberg)?;
    finish(table, builder, base_location, None).await
}

/// Builds the new metadata and writes it next to the base as the next version.
async fn finish(
    table: &Table,
    builder: iceberg::spec::TableMetadataBuilder,
    base_location: String,
    snapshot_id: Option<i64>,
) -> Result<Staged, SinkError> {
    let metadata = builder.build().map_err(SinkError::from_iceberg)?.metadata;
    let location = MetadataLocation::from_str(&base_location)
        .map_err(SinkError::from_iceberg)?
        .with_next_version()
        .with_new_metadata(&metadata);
    metadata
        .write_to(table.file_io(), &location)
        .await
        .map_err(SinkError::from_iceberg)?;
    Ok(Staged {
        ident: table.identifier().clone(),
        base_location,
        new_location: location.to_string(),
        snapshot_id,
    })
}
