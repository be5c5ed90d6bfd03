//! Checkpoint bookkeeping shared by the committer and recovery.
//!
//! The protocol for checkpoint `n` (see ARCHITECTURE.md, "Checkpoint protocol"):
//! 1. every partition actor seals at barrier `n`: creates its state checkpoint `n` and hands its rows and offset
//!    delta to the committer;
//! 2. the committer writes the Parquet data files of every table, then persists a **commit intent** (the data
//!    files and the offsets) — from here on, checkpoint `n` can be finished without re-reading Kafka;
//! 3. it commits every table in one fenced catalog swap ([`crate::commit`]; idempotent: tables whose marks already
//!    hold `n` are left alone);
//! 4. it writes the **completion marker** of `n` (this [`CheckpointManifest`]) — now `n` is the recovery point;
//! 5. it deletes the intent and prunes old checkpoints.
//!
//! Recovery finishes any intent left behind (steps 3-5), then restores state from the latest complete checkpoint
//! and seeks every partition to its offsets. A crash before step 2 just replays from the previous checkpoint; the
//! orphaned data files were never referenced by any snapshot.

use crate::types::CheckpointId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Next offset to read, per topic and partition.
pub type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// What the completion marker of a checkpoint records. Human-readable JSON, so `ledgerstream checkpoints show`
/// and an operator with `cat` see the same thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointManifest {
    pub id: CheckpointId,
    pub writer_id: String,
    /// Wall-clock time the checkpoint completed (for operators; never used for processing).
    pub completed_at_ms: i64,
    /// Next offset per topic partition: where a restore resumes.
    pub offsets: Offsets,
    /// Per output table, the Iceberg snapshot that holds this checkpoint's rows. Tables with nothing new in this
    /// checkpoint are absent.
    pub snapshots: BTreeMap<String, i64>,
    /// Rows committed per table in this checkpoint.
    pub rows: BTreeMap<String, u64>,
    /// Approximate state size per partition when sealed.
    pub state_bytes: BTreeMap<i32, u64>,
    /// Partitions per input topic when the checkpoint was taken. Keyed state is hashed by partition, so a
    /// restore onto a different count is refused (see [`layout_change`]). Absent in markers older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
}

/// Why the input's partition layout no longer matches the state's, if it does not.
///
/// Every key's state lives in the partition its records arrive on (the producer hashes the key modulo the
/// partition count). Adding partitions moves keys to other partitions, so state taken with `recorded` partitions
/// cannot serve `now`: a user's wallet would arrive where its user is unknown. The only safe answers are to put the
/// old layout back or to rebuild state for the new one, which is an operator's decision, never an automatic one.
pub fn layout_change(recorded: Option<u32>, now: u32) -> Option<String> {
    match recorded {
        Some(r) if r != now => Some(format!(
            "the state was checkpointed with {r} partitions per topic and the topics now have {now}"
        )),
        _ => None,
    }
}

impl CheckpointManifest {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        serde_json::from_slice(bytes).map_err(|e| CheckpointError::Corrupt(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint io on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt checkpoint record: {0}")]
    Corrupt(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

/// Commit intents: at most a few small files under `<data_dir>/intents/<id>.intent`.
#[derive(Debug, Clone)]
pub struct IntentStore {
    dir: PathBuf,
}

impl IntentStore {
    pub fn new(data_dir: &Path) -> Self {
        IntentStore {
            dir: data_dir.join("intents"),
        }
    }

    fn path(&self, id: CheckpointId) -> PathBuf {
        self.dir.join(format!("{:020}.intent", id.0))
    }

    pub fn write(&self, id: CheckpointId, bytes: &[u8]) -> Result<(), CheckpointError> {
        write_atomic(&self.path(id), bytes)
    }

    pub fn read(&self, id: CheckpointId) -> Result<Vec<u8>, CheckpointError> {
        let p = self.path(id);
        std::fs::read(&p).map_err(io_err(&p))
    }

    /// Ids of the intents present, ascending. Temp files of an interrupted write are ignored.
    pub fn list(&self) -> Result<Vec<CheckpointId>, CheckpointError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".intent")) else {
                continue;
            };
            if let Ok(id) = stem.parse::<u64>() {
                ids.push(CheckpointId(id));
            }
        }
        ids.sort();
        Ok(ids)
    }

    pub fn remove(&self, id: CheckpointId) -> Result<(), CheckpointError> {
        let p = self.path(id);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips() {
        let mut offsets = Offsets::new();
        offsets
            .entry("fintech.public.users".into())
            .or_default()
            .insert(0, 42);
        let m = CheckpointManifest {
            id: CheckpointId(7),
            writer_id: "w".into(),
            completed_at_ms: 1,
            offsets,
            snapshots: [("users_changes".to_string(), 99)].into(),
            rows: [("users_changes".to_string(), 3)].into(),
            state_bytes: [(0, 1024)].into(),
            partitions: Some(4),
        };
        assert_eq!(CheckpointManifest::from_bytes(&m.to_bytes()).unwrap(), m);
        assert!(CheckpointManifest::from_bytes(b"{not json").is_err());
        // Markers written before the partition count was recorded still load.
        let mut old: serde_json::Value = serde_json::from_slice(&m.to_bytes()).unwrap();
        old.as_object_mut().unwrap().remove("partitions");
        let old = CheckpointManifest::from_bytes(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(old.partitions, None);
    }

    #[test]
    fn a_different_partition_count_is_a_layout_change() {
        assert_eq!(layout_change(Some(4), 4), None);
        assert_eq!(layout_change(None, 4), None, "unknown: nothing to compare");
        let grown = layout_change(Some(4), 6).expect("grown");
        assert!(
            grown.contains("4 partitions") && grown.contains("now have 6"),
            "{grown}"
        );
        assert!(layout_change(Some(4), 2).is_some(), "shrunk");
    }

    #[test]
    fn intents_list_ignores_temp_files_and_sort_numerically() {
        let dir = tempfile::tempdir().unwrap();
        let s = IntentStore::new(dir.path());
        assert!(s.list().unwrap().is_empty());
        s.write(CheckpointId(10), b"ten").unwrap();
        s.write(CheckpointId(9), b"nine").unwrap();
        std::fs::write(
            dir.path().join("intents/00000000000000000011.tmp"),
            b"partial",
        )
        .unwrap();
        assert_eq!(s.list().unwrap(), vec![CheckpointId(9), CheckpointId(10)]);
        assert_eq!(s.read(CheckpointId(10)).unwrap(), b"ten");
        s.remove(CheckpointId(9)).unwrap();
        s.remove(CheckpointId(9)).unwrap();
        assert_eq!(s.list().unwrap(), vec![CheckpointId(10)]);
    }
}
