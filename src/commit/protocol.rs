//! Step 3: the loops that tie the steps together — claim an epoch, commit a checkpoint.
//!
//! Every attempt starts from freshly loaded tables: verdict on the exact base ([`super::fence`]) → stage on it
//! ([`super::produce`]) → swap from it ([`super::swap`]). Nothing is ever rebased: after a conflict the next
//! attempt takes its verdict again on the new head, so
//! - a foreign appender (another tool's commit) only costs a retry, and its rows stay;
//! - a newer epoch of this writer turns into [`SinkError::Fenced`], never a retry;
//! - an unknown outcome that did land turns into [`Verdict::AlreadyCommitted`], never a second copy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::util::snapshot::ancestors_of;
use tracing::Instrument;

use super::fence::{self, Fence, PartitionMark, Verdict};
use super::produce::{self, TableChange};
use super::swap::SwapOutcome;
use crate::metrics;
use crate::sink::{self, CommitMeta, SinkCatalog, SinkError};
use crate::types::{CheckpointId, PartitionId};

/// Attempts before a commit gives up (the generation then restarts and recovery finishes the intent).
const MAX_ATTEMPTS: u32 = 12;

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((25u64 << attempt.min(6)).min(2_000))
}

/// Files of one table in a checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub data: Vec<DataFile>,
    pub deletes: Vec<DataFile>,
}

/// What [`commit_checkpoint`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The snapshot holding this checkpoint's files, per table with files.
    pub snapshots: BTreeMap<String, i64>,
    /// The checkpoint was already in every table (a replay, or an unknown outcome that had landed).
    pub already: bool,
    /// Compare-and-swap attempts that were refused because a table had moved (foreign commits).
    pub conflicts: u32,
}

/// The checkpoint a table holds for this writer in its snapshot ancestry, for tables written before the marks.
fn legacy_checkpoint(table: &Table, writer_id: &str) -> Result<Option<CheckpointId>, SinkError> {
    Ok(sink::last_committed(table, writer_id)?.map(|(m, _)| m.checkpoint_id))
}

fn has_marks(table: &Table, writer_id: &str) -> Result<bool, SinkError> {
    Ok(!fence::marks(table.metadata(), writer_id)?.is_empty())
}

/// The snapshot of `writer_id` that committed checkpoint `n`, if still in the ancestry.
fn snapshot_of(table: &Table, writer_id: &str, n: CheckpointId) -> Result<Option<i64>, SinkError> {
    let md = table.metadata_ref();
    let Some(current) = md.current_snapshot_id() else {
        return Ok(None);
    };
    for s in ancestors_of(&md, current) {
        if let Some(m) = CommitMeta::from_snapshot(&s)?
            && m.writer_id == writer_id
        {
            if m.checkpoint_id == n {
                return Ok(Some(s.snapshot_id()));
            }
            if m.checkpoint_id < n {
                break;
            }
        }
    }
    Ok(None)
}

/// Commits checkpoint `meta.checkpoint_id`: `files` into their tables, and the fence's marks into every table of
/// `stamp`, in one atomic swap. A checkpoint without any file commits nothing (its offsets are in the local and
/// remote markers; the tables' marks then trail them, which recovery allows).
pub async fn commit_checkpoint(
    catalog: &SinkCatalog,
    fence: &Fence,
    meta: &CommitMeta,
    files: &BTreeMap<String, Files>,
    stamp: &[String],
) -> Result<Committed, SinkError> {
    let n = meta.checkpoint_id;
    // A checkpoint that wrote no file changes no table: nothing to swap (an idle pipeline writes no metadata).
    if files
        .values()
        .all(|f| f.data.is_empty() && f.deletes.is_empty())
    {
        return Ok(Committed::default());
    }
    let meta = fence.meta(meta.clone());
    let Some(swap) = catalog.sql_swap() else {
        return legacy_commit(catalog, &meta, files).await;
    };
    let names: BTreeSet<&String> = stamp.iter().chain(files.keys()).collect();
    let summary = meta.to_summary()?;
    let mut conflicts = 0;
    for attempt in 0..MAX_ATTEMPTS {
        let mut staged = Vec::new();
        let mut snapshots = BTreeMap::new();
        let mut pending_tables = Vec::new();
        for name in &names {
            let table = catalog.load_table(name).await?;
            let legacy = if has_marks(&table, &fence.writer_id)? {
                None
            } else {
                legacy_checkpoint(&table, &fence.writer_id)?
            };
            match fence::verdict(table.metadata(), fence, n, legacy)? {
                Verdict::AlreadyCommitted => {
                    if files.contains_key(*name)
                        && let Some(id) = snapshot_of(&table, &fence.writer_id, n)?
                    {
                        snapshots.insert((*name).clone(), id);
                    }
                }
                Verdict::Commit => pending_tables.push(((*name).clone(), table)),
            }
        }
        if pending_tables.is_empty() {
            return Ok(Committed {
                snapshots,
                already: true,
                conflicts,
            });
        }
        for (name, table) in &pending_tables {
            let change = match files.get(name) {
                Some(f) => TableChange {
                    data_files: f.data.clone(),
                    delete_files: f.deletes.clone(),
                    summary: summary.clone(),
                },
                None => TableChange::default(),
            };
            let s = produce::stage(table, change, fence.properties(n))
                .instrument(
                    tracing::info_span!("stage", checkpoint_id = n.0, table = %name, attempt),
                )
                .await?;
            if let Some(id) = s.snapshot_id {
                snapshots.insert(name.clone(), id);
            }
            staged.push(s);
        }
        crate::failpoint!("commit::after_stage");
        match swap.swap(&staged).await {
            SwapOutcome::Committed => {
                crate::failpoint!("commit::after_swap");
                return Ok(Committed {
                    snapshots,
                    already: false,
                    conflicts,
                });
            }
            SwapOutcome::Conflict(table) => {
                conflicts += 1;
                metrics::commit_conflict(&table);
                tracing::info!(checkpoint = n.0, table = %table, attempt, "table moved under the commit; re-validating on the new head");
            }
            SwapOutcome::NotCommitted(reason) => {
                metrics::commit_retry("not_committed");
                tracing::warn!(checkpoint = n.0, attempt, reason = %reason, "catalog swap failed; retrying");
            }
            SwapOutcome::Unknown(reason) => {
                metrics::commit_retry("unknown");
                tracing::warn!(checkpoint = n.0, attempt, reason = %reason, "catalog swap outcome unknown; reloading to look for our commit");
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(SinkError::Catalog {
        reason: format!("checkpoint {n} not committed after {MAX_ATTEMPTS} attempts"),
        retryable: true,
    })
}

/// The REST catalog path, until its own commit requests exist: one idempotent fast-append per table (not
/// atomic across tables; fencing only by the epoch in snapshot summaries).
async fn legacy_commit(
    catalog: &SinkCatalog,
    meta: &CommitMeta,
    files: &BTreeMap<String, Files>,
) -> Result<Committed, SinkError> {
    let mut out = Committed::default();
    for (name, f) in files {
        if !f.deletes.is_empty() {
            return Err(SinkError::InvalidConfig {
                reason: format!("table {name}: delete files need the SQL catalog's commit path"),
            });
        }
        match sink::commit_files(catalog, name, f.data.clone(), meta).await? {
            sink::CommitOutcome::Committed(id) | sink::CommitOutcome::AlreadyCommitted(id) => {
                out.snapshots.insert(name.clone(), id);
            }
            sink::CommitOutcome::NothingToCommit => {}
        }
    }
    Ok(out)
}

/// Takes a new epoch for `partitions` of `writer_id` in every table of `tables`, in one swap: from the moment it
/// returns, no commit of an older epoch can land in any of them, whatever that writer's process is doing.
///
/// The epoch is one above the highest any table records for the writer. Two processes claiming at once both
/// compute the same epoch; one swap wins and the other conflicts, re-reads, and claims one higher: the last one to
/// start owns the partitions, and the first is fenced at its next commit.
pub async fn claim(
    catalog: &SinkCatalog,
    writer_id: &str,
    partitions: &[PartitionId],
    tables: &[String],
    disabled: bool,
) -> Result<Fence, SinkError> {
    let Some(swap) = catalog.sql_swap() else {
        // REST: epochs are recorded in snapshot summaries only (see `legacy_commit`).
        return Ok(Fence {
            writer_id: writer_id.to_string(),
            epoch: chrono::Utc::now().timestamp_millis().max(1) as u64,
            partitions: partitions.to_vec(),
            disabled,
        });
    };
    for attempt in 0..MAX_ATTEMPTS {
        let mut loaded = Vec::new();
        let mut epoch = 0;
        for name in tables {
            let table = catalog.load_table(name).await?;
            epoch = epoch.max(fence::highest_epoch(table.metadata(), writer_id)?);
            loaded.push(table);
        }
        let epoch = epoch + 1;
        let mut staged = Vec::new();
        for table in &loaded {
            let marks = fence::marks(table.metadata(), writer_id)?;
            let legacy = if marks.is_empty() {
                legacy_checkpoint(table, writer_id)?.map_or(0, |c| c.0)
            } else {
                0
            };
            let props: HashMap<String, String> = partitions
                .iter()
                .map(|p| {
                    let checkpoint = marks.get(p).map_or(legacy, |m| m.checkpoint);
                    let mark = PartitionMark { epoch, checkpoint };
                    (
                        fence::mark_key(writer_id, *p),
                        serde_json::to_string(&mark).unwrap_or_default(),
                    )
                })
                .collect();
            staged.push(produce::stage(table, TableChange::default(), props).await?);
        }
        match swap.swap(&staged).await {
            SwapOutcome::Committed => {
                tracing::info!(
                    writer = writer_id,
                    epoch,
                    partitions = partitions.len(),
                    "claimed the partitions"
                );
                metrics::writer_epoch(epoch);
                return Ok(Fence {
                    writer_id: writer_id.to_string(),
                    epoch,
                    partitions: partitions.to_vec(),
                    disabled,
                });
            }
            SwapOutcome::Conflict(table) => {
                tracing::info!(table = %table, attempt, "a table moved during the claim; claiming again");
            }
            SwapOutcome::NotCommitted(reason) | SwapOutcome::Unknown(reason) => {
                // An unknown claim that landed is harmless: the next attempt claims one higher.
                tracing::warn!(attempt, reason = %reason, "claim swap failed; retrying");
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(SinkError::Catalog {
        reason: format!(
            "could not claim an epoch for writer {writer_id} after {MAX_ATTEMPTS} attempts"
        ),
        retryable: true,
    })
}

/// Fails with [`SinkError::Fenced`] if `table` records a newer epoch for any partition of the fence. A cheap
/// early check (one table load) for work that must not start under a stale epoch, such as uploading state to the
/// shared remote; the commit itself re-checks atomically.
pub async fn ensure_not_fenced(
    catalog: &SinkCatalog,
    fence: &Fence,
    table: &str,
) -> Result<(), SinkError> {
    let t = catalog.load_table(table).await?;
    fence::verdict(t.metadata(), fence, CheckpointId(u64::MAX), None).map(|_| ())
}

/// The newest checkpoint of `writer_id` a table holds: from its marks (which survive snapshot expiry), else from
/// its snapshot ancestry (tables written before the marks existed).
pub fn newest_checkpoint(table: &Table, writer_id: &str) -> Result<Option<u64>, SinkError> {
    if has_marks(table, writer_id)? {
        return fence::newest_checkpoint(table.metadata(), writer_id);
    }
    Ok(legacy_checkpoint(table, writer_id)?.map(|c| c.0))
}
