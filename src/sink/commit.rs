//! Writing data files and committing them exactly once.
//!
//! Contract:
//! - [`write_data_files`] turns batches into ZSTD(3) Parquet data files under the table's data location, one set of
//!   files per `day(event_time)` partition. File names embed the writer id, the checkpoint id and a random nonce, so a
//!   rewrite after a crash never overwrites a file that an earlier attempt may already have committed. Files that
//!   were written but never committed are orphans: harmless to readers, left for an orphan-file cleanup.
//! - Every commit stores a [`CommitMeta`] (checkpoint id, writer id, optional epoch, next offsets per topic
//!   partition) in the snapshot summary, so data and source positions land in the same atomic catalog swap.
//! - [`commit_files`] first walks the snapshot ancestry from the *current* snapshot (other writers may have appended
//!   on top) for a snapshot of this writer with a checkpoint id at or above the one being committed. If there is
//!   one, nothing is committed and [`CommitOutcome::AlreadyCommitted`] is returned: replaying a checkpoint after a
//!   crash, or retrying after an ambiguous failure, never duplicates rows.
//! - [`PendingCommit`] is the durable record of "files written, commit not yet confirmed". Persist it before
//!   committing; on recovery, [`commit_pending`] commits exactly those files (or finds them already committed).
//!
//! The pipeline commits SQL-catalog tables through [`crate::commit`] (one fenced multi-table swap); these
//! per-table commits remain for the REST catalog. Their limits: one table at a time, so not atomic across tables,
//! and iceberg-rust rebases a transaction on a refreshed table without re-running the ancestry check, so a stale
//! process is fenced only when it sees a newer epoch's snapshot before committing.

use std::collections::{BTreeMap, HashMap};

use arrow_array::RecordBatch;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{
    DataFile, DataFileFormat, Snapshot, deserialize_data_file_from_json,
    serialize_data_file_to_json,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::util::snapshot::ancestors_of;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::types::{CheckpointId, Offset, PartitionId};
use crate::value::Value;

use super::batch::rows_to_batch;
use super::catalog::SinkCatalog;
use super::error::SinkError;
use super::table::{TableDef, arrow_schema_for};

/// Summary key: the checkpoint this snapshot completes.
pub const KEY_CHECKPOINT_ID: &str = "ledgerstream.checkpoint-id";
/// Summary key: which pipeline instance wrote the snapshot.
pub const KEY_WRITER_ID: &str = "ledgerstream.writer-id";
/// Summary key: next offsets per topic and partition, JSON `{"topic":{"0":123}}`.
pub const KEY_OFFSETS: &str = "ledgerstream.offsets";
/// Summary key: the writer generation, for fencing stale processes.
pub const KEY_EPOCH: &str = "ledgerstream.epoch";

/// ZSTD level for data files: table properties are not applied by iceberg-rust's writer, so it is set here.
const ZSTD_LEVEL: i32 = 3;

/// What a commit records about the source, stored in the snapshot summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMeta {
    /// Monotonic per writer; a commit is skipped if the ancestry already holds this or a later one.
    pub checkpoint_id: CheckpointId,
    /// Separates our snapshots from other writers' in a shared table.
    pub writer_id: String,
    /// Generation of the writer process; a higher epoch in the ancestry fences this one.
    pub epoch: Option<u64>,
    /// Next offset to read per topic and partition, covering every row in this and earlier checkpoints.
    pub offsets: BTreeMap<String, BTreeMap<PartitionId, Offset>>,
}

impl CommitMeta {
    /// The snapshot-summary properties for this commit.
    pub fn to_summary(&self) -> Result<HashMap<String, String>, SinkError> {
        let offsets =
            serde_json::to_string(&self.offsets).map_err(|e| SinkError::InvalidPendingCommit {
                reason: format!("offsets do not serialise: {e}"),
            })?;
        let mut m = HashMap::from([
            (
                KEY_CHECKPOINT_ID.to_string(),
                self.checkpoint_id.0.to_string(),
            ),
            (KEY_WRITER_ID.to_string(), self.writer_id.clone()),
            (KEY_OFFSETS.to_string(), offsets),
        ]);
        if let Some(epoch) = self.epoch {
            m.insert(KEY_EPOCH.to_string(), epoch.to_string());
        }
        Ok(m)
    }

    /// Reads the meta back from a snapshot; `Ok(None)` if the snapshot was not written by ledgerstream.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<Option<CommitMeta>, SinkError> {
        let props = &snapshot.summary().additional_properties;
        let Some(writer_id) = props.get(KEY_WRITER_ID) else {
            return Ok(None);
        };
        let corrupt = |reason: String| SinkError::CorruptCommitMeta {
            snapshot_id: snapshot.snapshot_id(),
            reason,
        };
        let checkpoint_id = props
            .get(KEY_CHECKPOINT_ID)
            .ok_or_else(|| corrupt(format!("missing {KEY_CHECKPOINT_ID}")))?
            .parse::<u64>()
            .map_err(|e| corrupt(format!("{KEY_CHECKPOINT_ID}: {e}")))?;
        let offsets = match props.get(KEY_OFFSETS) {
            Some(json) => {
                serde_json::from_str(json).map_err(|e| corrupt(format!("{KEY_OFFSETS}: {e}")))?
            }
            None => return Err(corrupt(format!("missing {KEY_OFFSETS}"))),
        };
        let epoch = props
            .get(KEY_EPOCH)
            .map(|e| {
                e.parse::<u64>()
                    .map_err(|err| corrupt(format!("{KEY_EPOCH}: {err}")))
            })
            .transpose()?;
        Ok(Some(CommitMeta {
            checkpoint_id: CheckpointId(checkpoint_id),
            writer_id: writer_id.clone(),
            epoch,
            offsets,
        }))
    }
}

/// Data files written for one table in one checkpoint, with what is needed to serialise them.
#[derive(Debug, Clone)]
pub struct WrittenFiles {
    pub files: Vec<DataFile>,
    /// Partition spec the files were written with (`DataFile` does not expose it).
    pub spec_id: i32,
    /// Schema the files were written with; needed to decode their column bounds.
    pub schema_id: i32,
}

impl WrittenFiles {
    pub fn record_count(&self) -> u64 {
        self.files.iter().map(DataFile::record_count).sum()
    }

    /// Serialises the files against the table they were written for.
    pub fn serialize(&self, table: &Table) -> Result<Vec<SerializedDataFile>, SinkError> {
        self.files
            .iter()
            .map(|f| SerializedDataFile::encode(table, f.clone(), self.spec_id, self.schema_id))
            .collect()
    }
}

/// One data file in the Iceberg spec's JSON form, plus the spec and schema ids needed to decode it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerializedDataFile {
    pub spec_id: i32,
    pub schema_id: i32,
    /// Output of iceberg-rust's `serialize_data_file_to_json`.
    pub json: String,
}

impl SerializedDataFile {
    fn encode(
        table: &Table,
        file: DataFile,
        spec_id: i32,
        schema_id: i32,
    ) -> Result<Self, SinkError> {
        let md = table.metadata();
        let (schema, spec) = spec_and_schema(table, spec_id, schema_id)?;
        let partition_type = spec
            .partition_type(&schema)
            .map_err(SinkError::from_iceberg)?;
        let json = serialize_data_file_to_json(file, &partition_type, md.format_version())
            .map_err(SinkError::from_iceberg)?;
        Ok(SerializedDataFile {
            spec_id,
            schema_id,
            json,
        })
    }

    /// Rebuilds the `DataFile` against the table's metadata (the spec and schema are never removed by this sink).
    pub fn decode(&self, table: &Table) -> Result<DataFile, SinkError> {
        let (schema, spec) = spec_and_schema(table, self.spec_id, self.schema_id)?;
        let partition_type = spec
            .partition_type(&schema)
            .map_err(SinkError::from_iceberg)?;
        deserialize_data_file_from_json(&self.json, self.spec_id, &partition_type, &schema)
            .map_err(SinkError::from_iceberg)
    }
}

fn spec_and_schema(
    table: &Table,
    spec_id: i32,
    schema_id: i32,
) -> Result<(iceberg::spec::SchemaRef, iceberg::spec::PartitionSpecRef), SinkError> {
    let md = table.metadata();
    let schema =
        md.schema_by_id(schema_id)
            .cloned()
            .ok_or_else(|| SinkError::InvalidPendingCommit {
                reason: format!("table {} has no schema {schema_id}", table.identifier()),
            })?;
    let spec = md.partition_spec_by_id(spec_id).cloned().ok_or_else(|| {
        SinkError::InvalidPendingCommit {
            reason: format!(
                "table {} has no partition spec {spec_id}",
                table.identifier()
            ),
        }
    })?;
    Ok((schema, spec))
}

/// The durable "written, not yet confirmed committed" record of one checkpoint across tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommit {
    pub meta: CommitMeta,
    /// Table name → its files for this checkpoint. A table with no rows has no entry.
    pub tables: BTreeMap<String, Vec<SerializedDataFile>>,
}

impl PendingCommit {
    pub fn to_bytes(&self) -> Result<Vec<u8>, SinkError> {
        serde_json::to_vec(self).map_err(|e| SinkError::InvalidPendingCommit {
            reason: format!("encode: {e}"),
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SinkError> {
        serde_json::from_slice(bytes).map_err(|e| SinkError::InvalidPendingCommit {
            reason: format!("decode: {e}"),
        })
    }
}

/// What [`commit_files`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A new snapshot with this id holds the files and the meta.
    Committed(i64),
    /// The ancestry already holds this writer's checkpoint (or a later one) in this snapshot; nothing was written.
    AlreadyCommitted(i64),
    /// No files and not yet committed: no snapshot is created, so the table carries no meta for this checkpoint.
    NothingToCommit,
}

/// Writes batches (in the table's current Arrow schema, see [`rows_to_batch`]) as day-partitioned Parquet files.
pub async fn write_data_files(
    table: &Table,
    meta: &CommitMeta,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> Result<WrittenFiles, SinkError> {
    let md = table.metadata();
    let schema = md.current_schema().clone();
    let spec = md.default_partition_spec().clone();
    let written = WrittenFiles {
        files: Vec::new(),
        spec_id: spec.spec_id(),
        schema_id: schema.schema_id(),
    };
    let zstd = ZstdLevel::try_new(ZSTD_LEVEL).map_err(|e| SinkError::InvalidConfig {
        reason: format!("zstd level {ZSTD_LEVEL}: {e}"),
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .build();
    let location = DefaultLocationGenerator::new(md).map_err(SinkError::from_iceberg)?;
    let prefix = format!(
        "{}-cp{}-{:016x}",
        sanitize(&meta.writer_id),
        meta.checkpoint_id,
        rand::random::<u64>()
    );
    let names = DefaultFileNameGenerator::new(prefix, None, DataFileFormat::Parquet);
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        ParquetWriterBuilder::new(props, schema.clone()),
        table.file_io().clone(),
        location,
        names,
    );
    let mut fanout = FanoutWriter::new(DataFileWriterBuilder::new(rolling));
    let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)
        .map_err(SinkError::from_iceberg)?;
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        for (key, part) in splitter.split(&batch).map_err(SinkError::from_iceberg)? {
            fanout
                .write(key, part)
                .await
                .map_err(SinkError::from_iceberg)?;
        }
    }
    let files = fanout.close().await.map_err(SinkError::from_iceberg)?;
    Ok(WrittenFiles { files, ..written })
}

/// Builds batches of at most `chunk` rows from rows aligned to `def`, in the table's current schema, and writes
/// them. Validation of every row happens before any file is written.
pub async fn write_rows(
    table: &Table,
    def: &TableDef,
    meta: &CommitMeta,
    rows: &[Vec<Value>],
    chunk: usize,
) -> Result<WrittenFiles, SinkError> {
    let schema = arrow_schema_for(table.metadata().current_schema())?;
    let batches = rows
        .chunks(chunk.max(1))
        .map(|c| {
            rows_to_batch(def, &schema, c).map_err(|source| SinkError::Batch {
                table: def.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    write_data_files(table, meta, batches).await
}

/// Keeps file names portable whatever the writer id contains.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The snapshot already holding `meta`'s checkpoint (or a later one) of the same writer, if any.
///
/// Walks back from the current snapshot and stops at the first of our snapshots older than `meta`, since a
/// writer's checkpoint ids increase along its ancestry. Fails with [`SinkError::Fenced`] if a newer epoch of the
/// same writer has committed.
fn find_committed(table: &Table, meta: &CommitMeta) -> Result<Option<i64>, SinkError> {
    let md = table.metadata_ref();
    let Some(current) = md.current_snapshot_id() else {
        return Ok(None);
    };
    let mut found = None;
    for snapshot in ancestors_of(&md, current) {
        let Some(theirs) = CommitMeta::from_snapshot(&snapshot)? else {
            continue;
        };
        if theirs.writer_id != meta.writer_id {
            continue;
        }
        if let (Some(ours), Some(seen)) = (meta.epoch, theirs.epoch)
            && seen > ours
        {
            return Err(SinkError::Fenced {
                writer_id: meta.writer_id.clone(),
                epoch: ours,
                newer_epoch: seen,
            });
        }
        if theirs.checkpoint_id < meta.checkpoint_id {
            break;
        }
        // Keep walking: the exact checkpoint, if present, is further back than any later one.
        found = Some(snapshot.snapshot_id());
    }
    Ok(found)
}

/// Commits `files` with `meta` in the snapshot summary, unless this writer's checkpoint is already in the ancestry.
pub async fn commit_files(
    catalog: &SinkCatalog,
    table_name: &str,
    files: Vec<DataFile>,
    meta: &CommitMeta,
) -> Result<CommitOutcome, SinkError> {
    // Always against freshly loaded metadata: a cached table would miss commits made since it was loaded.
    let table = catalog.load_table(table_name).await?;
    if let Some(snapshot_id) = find_committed(&table, meta)? {
        return Ok(CommitOutcome::AlreadyCommitted(snapshot_id));
    }
    if files.is_empty() {
        return Ok(CommitOutcome::NothingToCommit);
    }
    let tx = Transaction::new(&table);
    // The duplicate-file check re-reads every manifest (commit time grows with table history); the ancestry
    // check above already guarantees these files are not committed, and their names are unique.
    let tx = tx
        .fast_append()
        .with_check_duplicate(false)
        .add_data_files(files)
        .set_snapshot_properties(meta.to_summary()?)
        .apply(tx)
        .map_err(SinkError::from_iceberg)?;
    let committed = tx
        .commit(catalog.catalog())
        .await
        .map_err(SinkError::from_iceberg)?;
    let snapshot_id = committed.metadata().current_snapshot_id().ok_or_else(|| {
        SinkError::from_iceberg(iceberg::Error::new(
            iceberg::ErrorKind::Unexpected,
            "table has no current snapshot after a successful append",
        ))
    })?;
    Ok(CommitOutcome::Committed(snapshot_id))
}

/// Commits every table of a pending record (recovery path and normal path alike). Tables are committed one by
/// one; each commit is idempotent, so re-running after a failure part-way through is safe.
pub async fn commit_pending(
    catalog: &SinkCatalog,
    pending: &PendingCommit,
) -> Result<BTreeMap<String, CommitOutcome>, SinkError> {
    let mut outcomes = BTreeMap::new();
    for (name, serialized) in &pending.tables {
        let table = catalog.load_table(name).await?;
        let files = serialized
            .iter()
            .map(|s| s.decode(&table))
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = commit_files(catalog, name, files, &pending.meta).await?;
        outcomes.insert(name.clone(), outcome);
    }
    Ok(outcomes)
}

/// The most recent snapshot written by `writer_id` in the table's current ancestry, with its meta.
pub fn last_committed(
    table: &Table,
    writer_id: &str,
) -> Result<Option<(CommitMeta, i64)>, SinkError> {
    let md = table.metadata_ref();
    let Some(current) = md.current_snapshot_id() else {
        return Ok(None);
    };
    for snapshot in ancestors_of(&md, current) {
        if let Some(meta) = CommitMeta::from_snapshot(&snapshot)?
            && meta.writer_id == writer_id
        {
            return Ok(Some((meta, snapshot.snapshot_id())));
        }
    }
    Ok(None)
}
