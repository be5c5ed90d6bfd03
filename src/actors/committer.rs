//! The committer: gathers the seals of checkpoint `n` from every partition, writes one set of Parquet files per
//! table, persists the commit intent, makes one Iceberg snapshot per table (idempotently), then makes state
//! checkpoint `n` the recovery point. See [`crate::checkpoint`] for the protocol and why each step is where it is.

use super::coordinator::CoordinatorMsg;
use crate::checkpoint::{CheckpointManifest, IntentStore, Offsets};
use crate::commit::{self, Fence};
use crate::metrics;
use crate::processor::{SealedOutput, TableOutput};
use crate::sink::{self, CommitMeta, PendingCommit, SinkCatalog, TableDef};
use crate::types::{CheckpointId, Offset, PartitionId};
use arrow_array::{RecordBatch, new_null_array};
use arrow_schema::SchemaRef;
use ledgerstream_state::CheckpointCatalog;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// A partition's contribution to checkpoint `n`.
pub struct Sealed {
    pub checkpoint: CheckpointId,
    pub partition: PartitionId,
    pub output: SealedOutput,
    pub state_bytes: u64,
    /// Released (dropped) once the checkpoint is durable: this is what un-pauses a saturated partition.
    pub permits: Vec<OwnedSemaphorePermit>,
}

pub enum CommitterMsg {
    Expect {
        checkpoint: CheckpointId,
        reply_to: ActorRef<CoordinatorMsg>,
        /// Root span of the checkpoint: the writes and commits below are its children.
        span: tracing::Span,
        /// Held open until the last seal arrives, so its duration is the barrier alignment time.
        barrier: tracing::Span,
    },
    Sealed(Sealed),
}

/// Publishes committed offsets to the consumer group (a lag hint only).
pub type OffsetHint = Arc<dyn Fn(&Offsets) + Send + Sync>;

pub struct CommitterArgs {
    pub catalog: Arc<SinkCatalog>,
    pub writer_id: String,
    pub partitions: Vec<PartitionId>,
    pub checkpoints: CheckpointCatalog,
    pub intents: IntentStore,
    pub keep: NonZeroUsize,
    /// Offsets of the checkpoint we restored from: carried forward for partitions with nothing new.
    pub offsets: Offsets,
    pub offset_hint: OffsetHint,
    /// Rules re-checked on what each snapshot added, and what a failure does.
    pub dq: Arc<crate::dq::RuleSet>,
    pub dq_policy: crate::dq::PostWritePolicy,
    /// Publishes committed fraud alerts to Kafka, when configured.
    pub alerts: Option<Arc<crate::alerts_out::AlertPublisher>>,
    /// Durable copy of state checkpoints, intents and markers (`[checkpoint.remote]`), when configured.
    pub remote: Option<Arc<crate::durable::RemoteCheckpoints>>,
    /// The epoch this generation claimed for its partitions: every commit is checked against it.
    pub fence: Fence,
    /// Every table a checkpoint commit carries the marks into, with data or without (all at checkpoint n or none).
    pub stamp: Vec<String>,
}

/// The checkpoint the committer is gathering seals for.
struct Expected {
    checkpoint: CheckpointId,
    reply_to: ActorRef<CoordinatorMsg>,
    started: Instant,
    span: tracing::Span,
    barrier: tracing::Span,
}

pub struct CommitterState {
    args: CommitterArgs,
    expected: Option<Expected>,
    seals: BTreeMap<PartitionId, Sealed>,
}

pub struct CommitterActor;

impl Actor for CommitterActor {
    type Msg = CommitterMsg;
    type State = CommitterState;
    type Arguments = CommitterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: CommitterArgs,
    ) -> Result<CommitterState, ActorProcessingErr> {
        Ok(CommitterState {
            args,
            expected: None,
            seals: BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: CommitterMsg,
        state: &mut CommitterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CommitterMsg::Expect {
                checkpoint,
                reply_to,
                span,
                barrier,
            } => {
                if let Some(e) = &state.expected {
                    return Err(format!(
                        "checkpoint {checkpoint} started while {} is still open",
                        e.checkpoint
                    )
                    .into());
                }
                state.expected = Some(Expected {
                    checkpoint,
                    reply_to,
                    started: Instant::now(),
                    span,
                    barrier,
                });
            }
            CommitterMsg::Sealed(seal) => {
                let Some(Expected { checkpoint: n, .. }) = &state.expected else {
                    return Err(format!(
                        "seal for checkpoint {} without a barrier",
                        seal.checkpoint
                    )
                    .into());
                };
                if seal.checkpoint != *n {
                    return Err(format!(
                        "seal for checkpoint {} while {n} is open",
                        seal.checkpoint
                    )
                    .into());
                }
                state.seals.insert(seal.partition, seal);
                if state.seals.len() == state.args.partitions.len() {
                    let Some(Expected {
                        checkpoint: n,
                        reply_to,
                        started,
                        span,
                        barrier,
                    }) = state.expected.take()
                    else {
                        return Ok(());
                    };
                    drop(barrier);
                    let seals = std::mem::take(&mut state.seals);
                    commit_checkpoint(&mut state.args, n, seals)
                        .instrument(span)
                        .await?;
                    metrics::checkpoint_completed(n.0, started.elapsed());
                    reply_to.cast(CoordinatorMsg::Completed(n))?;
                }
            }
        }
        Ok(())
    }
}

/// Unions the shapes of one table as seen by different partitions (they may have learnt new columns at
/// different times): columns by name, first appearance wins the position.
fn union_defs(defs: &[&TableDef]) -> Option<TableDef> {
    let mut out = (*defs.first()?).clone();
    for d in &defs[1..] {
        for c in &d.columns {
            if out.columns.iter().all(|o| o.name != c.name) {
                out.columns.push(c.clone());
            }
        }
    }
    Some(out)
}

/// Reorders and pads `batch` to `schema` by column name. A column absent from the batch becomes nulls; it must be
/// nullable in the table.
pub fn align_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let rows = batch.num_rows();
    let mut cols = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        match batch.schema().index_of(field.name()) {
            Ok(i) => {
                let col = batch.column(i);
                if col.data_type() != field.data_type() {
                    return Err(format!(
                        "column {} is {} in the batch but {} in the table",
                        field.name(),
                        col.data_type(),
                        field.data_type()
                    ));
                }
                cols.push(col.clone());
            }
            Err(_) if field.is_nullable() => cols.push(new_null_array(field.data_type(), rows)),
            Err(_) => {
                return Err(format!(
                    "required column {} missing from the batch",
                    field.name()
                ));
            }
        }
    }
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())
}

/// Event times (`source_ts`) of changelog rows, for the freshness metric. Other tables have none.
fn source_times(batches: &[RecordBatch]) -> Vec<i64> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    let mut out = Vec::new();
    for b in batches {
        if let Some(col) = b.column_by_name(crate::changelog::SOURCE_TS)
            && let Some(ts) = col.as_primitive_opt::<TimestampMicrosecondType>()
        {
            out.extend(
                (0..ts.len())
                    .filter(|i| ts.is_valid(*i))
                    .map(|i| ts.value(i)),
            );
        }
    }
    out
}

/// Business figures carried by committed rows, exported as metrics once the checkpoint is durable.
enum BusinessFigure {
    Pnl(String, metrics::PnlFigures),
    Alerts(String, String, u64),
}

fn business_figures(table: &str, batches: &[RecordBatch]) -> Vec<BusinessFigure> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int64Type};
    let mut out = Vec::new();
    for b in batches {
        let text = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>().cloned())
        };
        match table {
            crate::pnl::PNL_TABLE => {
                let money = |name: &str| {
                    b.column_by_name(name)
                        .and_then(|c| c.as_primitive_opt::<Decimal128Type>().cloned())
                };
                let (Some(cur), Some(fees), Some(refunds), Some(charge), Some(volume)) = (
                    text("currency"),
                    money("fees_earned"),
                    money("refund_losses"),
                    money("chargeback_losses"),
                    money("volume"),
                ) else {
                    continue;
                };
                let count = b
                    .column_by_name("tx_count")
                    .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
                // Money columns are at scale 2.
                let units = |v: i128| v as f64 / 100.0;
                for i in 0..b.num_rows() {
                    out.push(BusinessFigure::Pnl(
                        cur.value(i).to_string(),
                        metrics::PnlFigures {
                            fees_earned: units(fees.value(i)),
                            refund_losses: units(refunds.value(i)),
                            chargeback_losses: units(charge.value(i)),
                            volume: units(volume.value(i)),
                            tx_count: count
                                .as_ref()
                                .filter(|c| c.is_valid(i))
                                .map_or(0, |c| c.value(i).max(0) as u64),
                        },
                    ));
                }
            }
            "fraud_alerts" => {
                let (Some(rule), Some(sev)) = (text("rule"), text("severity")) else {
                    continue;
                };
                let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
                for i in 0..b.num_rows() {
                    *counts
                        .entry((rule.value(i).to_string(), sev.value(i).to_string()))
                        .or_default() += 1;
                }
                out.extend(
                    counts
                        .into_iter()
                        .map(|((r, s), n)| BusinessFigure::Alerts(r, s, n)),
                );
            }
            _ => {}
        }
    }
    out
}

fn to_meta_offsets(offsets: &Offsets) -> BTreeMap<String, BTreeMap<PartitionId, Offset>> {
    offsets
        .iter()
        .map(|(t, ps)| {
            (
                t.clone(),
                ps.iter()
                    .map(|(p, o)| (PartitionId(*p), Offset(*o)))
                    .collect(),
            )
        })
        .collect()
}

async fn commit_checkpoint(
    args: &mut CommitterArgs,
    n: CheckpointId,
    seals: BTreeMap<PartitionId, Sealed>,
) -> Result<(), ActorProcessingErr> {
    // Offsets: everything sealed, carried forward from the previous checkpoint. Check contiguity: a gap or overlap
    // here would be a lost or duplicated range.
    let mut offsets = args.offsets.clone();
    let mut state_bytes = BTreeMap::new();
    let mut by_table: BTreeMap<String, Vec<TableOutput>> = BTreeMap::new();
    let mut permits = Vec::new();
    for (p, seal) in seals {
        for (topic, (next, delta)) in &seal.output.offsets {
            let prev = offsets.get(topic).and_then(|m| m.get(&p.0)).copied();
            if let (Some(d), Some(prev)) = (delta, prev)
                && d.from != prev
            {
                return Err(format!(
                    "offset gap in checkpoint {n}: {topic}[{p}] resumes at {} but the last checkpoint ended at {prev}",
                    d.from
                )
                .into());
            }
            offsets.entry(topic.clone()).or_default().insert(p.0, *next);
        }
        state_bytes.insert(p.0, seal.state_bytes);
        for t in seal.output.tables {
            by_table.entry(t.def.name.clone()).or_default().push(t);
        }
        permits.extend(seal.permits);
    }
    let meta = args.fence.meta(CommitMeta {
        checkpoint_id: n,
        writer_id: args.writer_id.clone(),
        epoch: None,
        offsets: to_meta_offsets(&offsets),
    });

    // 1. Data files, per table.
    let mut pending = PendingCommit {
        meta: meta.clone(),
        tables: BTreeMap::new(),
    };
    let mut rows = BTreeMap::new();
    let mut written_files = BTreeMap::new();
    let mut event_times: Vec<(String, Vec<i64>)> = Vec::new();
    let mut business: Vec<BusinessFigure> = Vec::new();
    let mut alert_batches: Vec<RecordBatch> = Vec::new();
    let mut defs: BTreeMap<String, TableDef> = BTreeMap::new();
    for (name, outputs) in &by_table {
        let parts: Vec<&TableDef> = outputs.iter().map(|o| &o.def).collect();
        let Some(def) = union_defs(&parts) else {
            continue;
        };
        defs.insert(name.clone(), def.clone());
        let table = args.catalog.ensure_table(&def).await?;
        let schema = sink::table::arrow_schema_for(table.metadata().current_schema())?;
        let batches = outputs
            .iter()
            .map(|o| align_batch(&o.batch, &schema))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("table {name}: {e}"))?;
        let count: usize = batches.iter().map(RecordBatch::num_rows).sum();
        event_times.push((name.clone(), source_times(&batches)));
        business.extend(business_figures(name, &batches));
        if name == crate::fraud::ALERTS_TABLE {
            alert_batches.extend(batches.iter().cloned());
        }
        let span = tracing::info_span!(
            "parquet_write",
            checkpoint_id = n.0,
            table = %name,
            rows = count
        );
        let written = sink::write_data_files(&table, &meta, batches)
            .instrument(span)
            .await?;
        let bytes: u64 = written.files.iter().map(|f| f.file_size_in_bytes()).sum();
        written_files.insert(name.clone(), (written.files.len() as u64, bytes));
        pending
            .tables
            .insert(name.clone(), written.serialize(&table)?);
        rows.insert(name.clone(), count as u64);
    }
    crate::failpoint!("committer::after_data_files");

    // 2. The intent: from here on checkpoint n can be finished without Kafka.
    let intent = pending.to_bytes()?;
    args.intents.write(n, &intent)?;
    crate::failpoint!("committer::after_intent");

    // 2b. Remote: state n, then the intent, before any table holds n — the remote is never behind the tables.
    if let Some(remote) = &args.remote {
        // A writer taken over while it was stopped must not overwrite its successor's remote checkpoints.
        if let Some(first) = args.stamp.first() {
            commit::ensure_not_fenced(&args.catalog, &args.fence, first).await?;
        }
        upload_before_commit(
            remote,
            &args.checkpoints,
            &args.partitions,
            &args.writer_id,
            n,
            &intent,
        )
        .instrument(tracing::info_span!("remote_upload", checkpoint_id = n.0))
        .await?;
    }

    // 3. Every table at once: one multi-table swap (crate::commit).
    let snapshots = commit_tables(
        &args.catalog,
        &args.fence,
        &args.stamp,
        &pending,
        &rows,
        &written_files,
    )
    .await?;

    // Alerts to Kafka, before the marker: a crash before it leaves the intent, whose recovery publishes again.
    if let Some(publisher) = &args.alerts
        && !alert_batches.is_empty()
    {
        let n_sent = publisher.publish(&alert_batches).await?;
        tracing::debug!(
            checkpoint = n.0,
            alerts = n_sent,
            topic = publisher.topic(),
            "alerts published"
        );
    }

    // 4. The completion marker makes state checkpoint n the recovery point.
    crate::failpoint!("committer::before_state_marker");
    let manifest = CheckpointManifest {
        id: n,
        writer_id: args.writer_id.clone(),
        completed_at_ms: chrono::Utc::now().timestamp_millis(),
        offsets: offsets.clone(),
        snapshots,
        rows,
        state_bytes,
        partitions: Some(args.partitions.len() as u32),
    };
    tracing::info_span!("state_checkpoint", checkpoint_id = n.0).in_scope(|| {
        finish_checkpoint(
            &args.checkpoints,
            &args.intents,
            &args.partitions,
            &manifest,
            args.keep,
        )
    })?;
    if let Some(remote) = &args.remote {
        finish_remote(remote, &manifest, args.keep).await?;
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    for (table, times) in event_times {
        metrics::freshness(&table, now_us, times.into_iter());
    }
    // Only now that the checkpoint is durable: a crash before this point would replay these rows.
    for f in business {
        match f {
            BusinessFigure::Pnl(currency, figures) => metrics::pnl_committed(&currency, &figures),
            BusinessFigure::Alerts(rule, severity, n) => {
                metrics::fraud_alerts_committed(&rule, &severity, n)
            }
        }
    }
    args.offsets = offsets;
    drop(permits);
    (args.offset_hint)(&args.offsets);

    // 5. Post-write data quality: read back what each snapshot added and check it.
    let results = validate_snapshots(args, &manifest, &defs).await;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}.{}: {}", r.table, r.check, r.detail))
        .collect();
    if !failed.is_empty() {
        tracing::error!(checkpoint = n.0, failures = ?failed, "post-write data-quality checks failed");
    }
    record_dq_results(args, n, &manifest, &results).await?;
    if args.dq_policy.halts(&results) {
        return Err(Box::new(super::supervisor::PolicyHalt(format!(
            "checkpoint {n} failed post-write data-quality checks and dq.post_write_policy is `halt`: {}",
            failed.join("; ")
        ))));
    }
    Ok(())
}

/// Reads back what checkpoint `n` added to each table and runs the post-write checks. A table that cannot be read
/// back gets a failed `readback` result rather than stopping the pipeline.
async fn validate_snapshots(
    args: &CommitterArgs,
    manifest: &CheckpointManifest,
    defs: &BTreeMap<String, TableDef>,
) -> Vec<crate::dq::CheckResult> {
    let mut out = Vec::new();
    for (name, snapshot) in &manifest.snapshots {
        let Some(def) = defs.get(name) else { continue };
        let expected = manifest.rows.get(name).copied().unwrap_or(0);
        let files = match args.catalog.load_table(name).await {
            Ok(t) => sink::readback::added_files(&t, *snapshot).await,
            Err(e) => Err(e),
        };
        let files = match files {
            Ok(f) => f,
            Err(e) => {
                out.push(crate::dq::CheckResult {
                    table: name.clone(),
                    check: "readback",
                    passed: false,
                    failing_rows: expected,
                    detail: format!("cannot read snapshot {snapshot} back: {e}"),
                });
                continue;
            }
        };
        // Only tables of changes have a (key, lsn) identity; P&L, alerts and quarantine (whose lsn may repeat
        // when one change breaks several rules over time) do not.
        let has_lsn = def.column(crate::dq::LSN_COLUMN).is_some() && def.column("id").is_some();
        // `op` joins the identity inside the check: Debezium delivers an update of the partition key (a wallet
        // moved to another user) as a delete and a create with one LSN, both rightly written.
        for r in crate::dq::validate(def, &files, expected, &args.dq, &["id"]) {
            if r.check == "unique_key_lsn" && !has_lsn {
                continue;
            }
            out.push(r);
        }
    }
    for r in &out {
        metrics::dq_check(&r.table, r.check, r.passed);
    }
    out
}

/// Appends the results to `dq_results` as one snapshot carrying checkpoint `n`, idempotently like any other table.
async fn record_dq_results(
    args: &CommitterArgs,
    n: CheckpointId,
    manifest: &CheckpointManifest,
    results: &[crate::dq::CheckResult],
) -> Result<(), ActorProcessingErr> {
    if results.is_empty() {
        return Ok(());
    }
    let def = crate::dq::dq_results_def();
    let checked_at = chrono::Utc::now().timestamp_micros();
    let rows: Vec<Vec<crate::value::Value>> = results
        .iter()
        .map(|r| {
            let snapshot = manifest.snapshots.get(&r.table).copied().unwrap_or(0);
            r.to_row(n, snapshot, checked_at)
        })
        .collect();
    let table = args.catalog.ensure_table(&def).await?;
    let schema = sink::table::arrow_schema_for(table.metadata().current_schema())?;
    let batch = sink::rows_to_batch(&def, &schema, &rows)?;
    let meta = args.fence.meta(CommitMeta {
        checkpoint_id: n,
        writer_id: args.writer_id.clone(),
        epoch: None,
        offsets: to_meta_offsets(&manifest.offsets),
    });
    let written = sink::write_data_files(&table, &meta, [batch]).await?;
    let files = BTreeMap::from([(
        def.name.clone(),
        commit::Files {
            data: written.files,
            deletes: Vec::new(),
        },
    )]);
    commit::commit_checkpoint(
        &args.catalog,
        &args.fence,
        &meta,
        &files,
        std::slice::from_ref(&def.name),
    )
    // Its own trace: follow-up work of a checkpoint already complete, outside the checkpoint's span.
    .instrument(tracing::info_span!(
        parent: None,
        "dq_results_commit",
        checkpoint_id = n.0,
        rows = results.len()
    ))
    .await?;
    Ok(())
}

/// Commits a pending checkpoint into every table of `stamp` in one swap (a table that already holds it is left
/// alone). Shared with recovery. Returns the snapshot holding the checkpoint's files, per table with files.
pub async fn commit_tables(
    catalog: &SinkCatalog,
    fence: &Fence,
    stamp: &[String],
    pending: &PendingCommit,
    rows: &BTreeMap<String, u64>,
    written: &BTreeMap<String, (u64, u64)>,
) -> Result<BTreeMap<String, i64>, sink::SinkError> {
    let started = Instant::now();
    let n = pending.meta.checkpoint_id;
    let span = tracing::info_span!(
        "iceberg_commit",
        checkpoint_id = n.0,
        tables = pending.tables.len(),
        epoch = fence.epoch
    );
    let outcome = async {
        let mut files = BTreeMap::new();
        for (name, serialized) in &pending.tables {
            let table = catalog.load_table(name).await?;
            let data = serialized
                .iter()
                .map(|f| f.decode(&table))
                .collect::<Result<Vec<_>, _>>()?;
            files.insert(
                name.clone(),
                commit::Files {
                    data,
                    deletes: Vec::new(),
                },
            );
        }
        commit::commit_checkpoint(catalog, fence, &pending.meta, &files, stamp).await
    }
    .instrument(span)
    .await?;
    let took = started.elapsed();
    metrics::checkpoint_committed(took);
    if outcome.already {
        tracing::info!(
            checkpoint = n.0,
            "checkpoint already in the tables; not committing again"
        );
    } else {
        for name in outcome.snapshots.keys() {
            let (nfiles, bytes) = written.get(name).copied().unwrap_or_default();
            metrics::rows_committed(
                name,
                rows.get(name).copied().unwrap_or(0),
                nfiles,
                bytes,
                took,
            );
        }
    }
    Ok(outcome.snapshots)
}

/// Uploads state checkpoint `n` and its intent to the remote. Shared with recovery.
pub async fn upload_before_commit(
    remote: &crate::durable::RemoteCheckpoints,
    checkpoints: &CheckpointCatalog,
    partitions: &[PartitionId],
    writer_id: &str,
    n: CheckpointId,
    intent: &[u8],
) -> Result<(), ActorProcessingErr> {
    let parts: Vec<u32> = partitions.iter().map(|p| p.0 as u32).collect();
    let started = Instant::now();
    let report = remote
        .upload_state(checkpoints.layout(), n.0, &parts, writer_id)
        .await?;
    crate::failpoint!("committer::after_remote_state");
    remote.put_intent(n.0, intent).await?;
    metrics::remote_uploaded(report.uploaded, report.uploaded_bytes, started.elapsed());
    tracing::debug!(
        checkpoint = n.0,
        files = report.files,
        uploaded = report.uploaded,
        bytes = report.uploaded_bytes,
        "state checkpoint uploaded"
    );
    crate::failpoint!("committer::after_remote_intent");
    Ok(())
}

/// After the local marker: the remote marker (checkpoint `n` is now restorable on any node), then remote retention.
pub async fn finish_remote(
    remote: &crate::durable::RemoteCheckpoints,
    manifest: &CheckpointManifest,
    keep: NonZeroUsize,
) -> Result<(), ActorProcessingErr> {
    remote
        .put_marker(manifest.id.0, &manifest.to_bytes())
        .await?;
    let pruned = remote.prune(keep, true).await?;
    if !pruned.checkpoints.is_empty() || pruned.blobs > 0 {
        tracing::debug!(checkpoints = ?pruned.checkpoints, blobs = pruned.blobs, "remote checkpoints pruned");
    }
    Ok(())
}

/// Steps 4-5 of the protocol: completion marker, intent removal, pruning. Shared with recovery.
pub fn finish_checkpoint(
    checkpoints: &CheckpointCatalog,
    intents: &IntentStore,
    partitions: &[PartitionId],
    manifest: &CheckpointManifest,
    keep: NonZeroUsize,
) -> Result<(), ActorProcessingErr> {
    checkpoints.write_marker(manifest.id.0, &manifest.to_bytes())?;
    crate::failpoint!("committer::after_state_marker");
    intents.remove(manifest.id)?;
    let parts: Vec<u32> = partitions.iter().map(|p| p.0 as u32).collect();
    checkpoints.prune(&parts, keep)?;
    for (topic, ps) in &manifest.offsets {
        for (p, o) in ps {
            metrics::committed_offset(topic, *p, *o);
        }
    }
    Ok(())
}
