//! Step 0 of every commit: who may write a partition, and whether a checkpoint is already in a table.
//!
//! Each table records, per writer and per source partition, the epoch that owns the partition and the newest
//! checkpoint committed for it, as one table property:
//!
//! `ledgerstream.writer.<writer_id>.p<partition>` = `{"epoch":3,"checkpoint":17}`
//!
//! Table properties live in every metadata.json and are carried forward by every commit, so this bookkeeping
//! survives snapshot expiry (unlike snapshot summaries). Because a commit is a compare-and-swap from one exact
//! metadata file, a verdict taken on the base metadata is atomic with the swap: if anything changed the table
//! since (a newer epoch's claim, another checkpoint), the swap fails and the verdict is taken again on the new head.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::TableMetadata;
use serde::{Deserialize, Serialize};

use crate::sink::{CommitMeta, SinkError};
use crate::types::{CheckpointId, PartitionId};

/// Prefix of every per-writer property key.
pub const WRITER_PREFIX: &str = "ledgerstream.writer.";

/// What a table records about one partition of one writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMark {
    /// The epoch that owns the partition: commits of any lower epoch are refused.
    pub epoch: u64,
    /// Newest checkpoint of this writer committed for the partition (0: none yet).
    pub checkpoint: u64,
}

/// The property key of a partition's mark.
pub fn mark_key(writer_id: &str, partition: PartitionId) -> String {
    format!("{WRITER_PREFIX}{writer_id}.p{}", partition.0)
}

/// Every mark of `writer_id` in a table's properties.
pub fn marks(
    metadata: &TableMetadata,
    writer_id: &str,
) -> Result<BTreeMap<PartitionId, PartitionMark>, SinkError> {
    marks_in(metadata.properties(), writer_id)
}

fn marks_in(
    props: &HashMap<String, String>,
    writer_id: &str,
) -> Result<BTreeMap<PartitionId, PartitionMark>, SinkError> {
    let prefix = format!("{WRITER_PREFIX}{writer_id}.p");
    let mut out = BTreeMap::new();
    for (k, v) in props {
        let Some(p) = k.strip_prefix(&prefix) else {
            continue;
        };
        // `writer.a.p1` must not be read as a mark of writer `a.p`... only digits follow our prefix.
        let Ok(p) = p.parse::<i32>() else { continue };
        let mark: PartitionMark = serde_json::from_str(v).map_err(|e| SinkError::CorruptFence {
            key: k.clone(),
            reason: e.to_string(),
        })?;
        out.insert(PartitionId(p), mark);
    }
    Ok(out)
}

/// The right to commit a set of partitions of a writer, taken by [`super::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub writer_id: String,
    pub epoch: u64,
    pub partitions: Vec<PartitionId>,
    /// Test-only switch (failpoint builds) that skips the epoch check, to show what fencing prevents.
    pub disabled: bool,
}

impl Fence {
    /// The properties a commit of checkpoint `n` sets: every owned partition at `n` under this epoch.
    pub fn properties(&self, n: CheckpointId) -> HashMap<String, String> {
        self.partitions
            .iter()
            .map(|p| {
                let mark = PartitionMark {
                    epoch: self.epoch,
                    checkpoint: n.0,
                };
                (
                    mark_key(&self.writer_id, *p),
                    serde_json::to_string(&mark).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The snapshot-summary meta of a commit of checkpoint `n` under this fence.
    pub fn meta(&self, mut meta: CommitMeta) -> CommitMeta {
        meta.epoch = Some(self.epoch);
        meta
    }
}

/// What a table's base metadata says about committing checkpoint `n` under a fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The fence holds and the table lacks `n`: commit.
    Commit,
    /// Every owned partition already holds `n` or later: nothing to do (a replay, or an unknown outcome that did
    /// land).
    AlreadyCommitted,
}

/// Checks `metadata` against the fence for checkpoint `n`.
///
/// - Any owned partition with a higher epoch: [`SinkError::Fenced`].
/// - Every owned partition at `n` or later: [`Verdict::AlreadyCommitted`].
/// - Some at `n` or later and some not: the table was written in a way this protocol never does
///   ([`SinkError::CorruptFence`]).
/// - Tables written before the marks existed have none; then `legacy` (the checkpoint found by walking the
///   snapshot ancestry) decides.
pub fn verdict(
    metadata: &TableMetadata,
    fence: &Fence,
    n: CheckpointId,
    legacy: Option<CheckpointId>,
) -> Result<Verdict, SinkError> {
    verdict_in(metadata.properties(), fence, n, legacy)
}

fn verdict_in(
    props: &HashMap<String, String>,
    fence: &Fence,
    n: CheckpointId,
    legacy: Option<CheckpointId>,
) -> Result<Verdict, SinkError> {
    let marks = marks_in(props, &fence.writer_id)?;
    let mut done = 0usize;
    for p in &fence.partitions {
        let Some(m) = marks.get(p) else { continue };
        if m.epoch > fence.epoch && !fence.disabled {
            return Err(SinkError::Fenced {
                writer_id: fence.writer_id.clone(),
                epoch: fence.epoch,
                newer_epoch: m.epoch,
            });
        }
        if m.checkpoint >= n.0 {
            done += 1;
        }
    }
    if done == fence.partitions.len() && done > 0 {
        return Ok(Verdict::AlreadyCommitted);
    }
    if done > 0 {
        return Err(SinkError::CorruptFence {
            key: format!("{WRITER_PREFIX}{}.p*", fence.writer_id),
            reason: format!(
                "{done} of {} partitions already hold checkpoint {n}, the others do not",
                fence.partitions.len()
            ),
        });
    }
    if legacy.is_some_and(|c| c >= n) {
        return Ok(Verdict::AlreadyCommitted);
    }
    Ok(Verdict::Commit)
}

/// The newest checkpoint of `writer_id` a table records in its marks (any partition).
pub fn newest_checkpoint(
    metadata: &TableMetadata,
    writer_id: &str,
) -> Result<Option<u64>, SinkError> {
    Ok(marks(metadata, writer_id)?
        .values()
        .map(|m| m.checkpoint)
        .filter(|c| *c > 0)
        .max())
}

/// The highest epoch of `writer_id` a table records for any partition.
pub fn highest_epoch(metadata: &TableMetadata, writer_id: &str) -> Result<u64, SinkError> {
    Ok(marks(metadata, writer_id)?
        .values()
        .map(|m| m.epoch)
        .max()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(epoch: u64) -> Fence {
        Fence {
            writer_id: "w".into(),
            epoch,
            partitions: vec![PartitionId(0), PartitionId(1)],
            disabled: false,
        }
    }

    fn props(f: &Fence, n: u64) -> HashMap<String, String> {
        f.properties(CheckpointId(n))
    }

    #[test]
    fn marks_round_trip_and_ignore_other_writers() {
        let mut p = props(&fence(3), 7);
        p.insert("ledgerstream.writer.w2.p0".into(), "not json".into());
        p.insert("ledgerstream.writer.w.pX".into(), "ignored".into());
        p.insert("write.format.default".into(), "parquet".into());
        let m = marks_in(&p, "w").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[&PartitionId(1)],
            PartitionMark {
                epoch: 3,
                checkpoint: 7
            }
        );
        assert!(marks_in(&p, "w2").is_err(), "a corrupt mark is an error");
    }

    #[test]
    fn verdicts() {
        let check = |p: &HashMap<String, String>, f: &Fence, n: u64| {
            verdict_in(p, f, CheckpointId(n), None)
        };
        let at5 = props(&fence(2), 5);
        assert_eq!(check(&at5, &fence(2), 6).unwrap(), Verdict::Commit);
        assert_eq!(
            check(&at5, &fence(2), 5).unwrap(),
            Verdict::AlreadyCommitted
        );
        assert_eq!(
            check(&at5, &fence(2), 4).unwrap(),
            Verdict::AlreadyCommitted
        );
        assert_eq!(
            check(&at5, &fence(3), 6).unwrap(),
            Verdict::Commit,
            "a newer epoch takes over"
        );
        assert!(matches!(
            check(&at5, &fence(1), 6),
            Err(SinkError::Fenced {
                epoch: 1,
                newer_epoch: 2,
                ..
            })
        ));
        let mut off = fence(1);
        off.disabled = true;
        assert_eq!(
            check(&at5, &off, 6).unwrap(),
            Verdict::Commit,
            "fencing off: the stale epoch commits"
        );
        // Half the partitions at n: never produced by an atomic commit.
        let mut half = props(&fence(2), 5);
        half.extend(
            Fence {
                partitions: vec![PartitionId(1)],
                ..fence(2)
            }
            .properties(CheckpointId(4)),
        );
        assert!(matches!(
            check(&half, &fence(2), 5),
            Err(SinkError::CorruptFence { .. })
        ));
        // No marks yet (a table from before them, or a fresh one): the ancestry decides.
        let none = HashMap::new();
        assert_eq!(check(&none, &fence(1), 1).unwrap(), Verdict::Commit);
        assert_eq!(
            verdict_in(&none, &fence(1), CheckpointId(3), Some(CheckpointId(3))).unwrap(),
            Verdict::AlreadyCommitted
        );
    }
}
