//! Checkpoints across all partitions of one state root.
//!
//! A global checkpoint `id` is complete when (1) its marker `<root>/checkpoints/<id>.complete` exists and
//! (2) every expected partition has its checkpoint directory `<root>/p-<N>/checkpoints/<id>`. The runtime writes
//! the marker last, after every partition checkpointed and the sink committed; the marker holds the runtime's
//! opaque manifest (offsets, snapshot ids). Requiring both halves means a crash at any point leaves the previous
//! complete checkpoint as the recovery point.
//!
//! Pruning never removes the latest complete checkpoint nor anything newer (those may be in progress), and
//! removes a marker before the partition directories it vouches for.
//!
//! This works on the on-disk layout of the RocksDB engine; the in-memory engine keeps checkpoints in process.

use crate::ckdir;
use crate::error::{StateError, io_at};
use crate::fsutil::{self, is_tmp_name};
use crate::layout::StateLayout;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::num::NonZeroUsize;

/// Suffix of a completion marker file.
const MARKER_SUFFIX: &str = ".complete";

/// A complete global checkpoint and the manifest stored in its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteCheckpoint {
    /// The checkpoint id.
    pub id: u64,
    /// The marker's bytes, exactly as written by [`CheckpointCatalog::write_marker`].
    pub marker: Vec<u8>,
}

/// What [`CheckpointCatalog::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Ids whose marker was removed, ascending.
    pub markers: Vec<u64>,
    /// `(partition, id)` checkpoint directories removed, ascending.
    pub partition_checkpoints: Vec<(u32, u64)>,
}

/// Manages markers and partition checkpoints of one state root. Holds no open files; cheap to clone.
#[derive(Debug, Clone)]
pub struct CheckpointCatalog {
    /// The root whose partitions and markers this catalog manages.
    layout: StateLayout,
}

impl CheckpointCatalog {
    /// A catalog over `layout`.
    pub fn new(layout: StateLayout) -> Self {
        CheckpointCatalog { layout }
    }

    /// The layout this catalog manages.
    pub fn layout(&self) -> &StateLayout {
        &self.layout
    }

    /// Partitions that have a directory under the root, ascending.
    pub fn partitions(&self) -> Result<Vec<u32>, StateError> {
        let root = self.layout.root();
        let entries = match fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(root)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at(root))?;
            if let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(StateLayout::parse_partition_dir)
            {
                out.push(p);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Complete checkpoint ids of one partition, ascending.
    pub fn partition_checkpoints(&self, partition: u32) -> Result<Vec<u64>, StateError> {
        ckdir::list_ids(&self.layout.partition_checkpoints_dir(partition))
    }

    /// Complete checkpoint ids of every partition that has a directory.
    pub fn checkpoints_by_partition(&self) -> Result<BTreeMap<u32, Vec<u64>>, StateError> {
        self.partitions()?
            .into_iter()
            .map(|p| Ok((p, self.partition_checkpoints(p)?)))
            .collect()
    }

    /// Atomically and durably writes the marker of checkpoint `id` (replacing an existing one).
    pub fn write_marker(&self, id: u64, bytes: &[u8]) -> Result<(), StateError> {
        fsutil::create_dir_all(&self.layout.markers_dir())?;
        fsutil::write_atomic(&self.layout.marker_path(id), bytes)
    }

    /// The marker bytes of checkpoint `id`, or `None` when it has no marker.
    pub fn read_marker(&self, id: u64) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.layout.marker_path(id);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Ids that have a marker, ascending (interrupted marker writes are ignored).
    pub fn marker_ids(&self) -> Result<Vec<u64>, StateError> {
        let dir = self.layout.markers_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(MARKER_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok().filter(|id| id.to_string() == n));
            if let Some(id) = id {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Whether checkpoint `id` is complete for `partitions` (marker present and every partition checkpointed).
    pub fn is_complete(&self, id: u64, partitions: &[u32]) -> Result<bool, StateError> {
        Ok(self.layout.marker_path(id).is_file() && self.all_partitions_have(id, partitions))
    }

    fn all_partitions_have(&self, id: u64, partitions: &[u32]) -> bool {
        partitions
            .iter()
            .all(|&p| ckdir::exists(&self.layout.partition_checkpoints_dir(p), id))
    }

    /// Ids complete for `partitions`, ascending.
    pub fn complete_ids(&self, partitions: &[u32]) -> Result<Vec<u64>, StateError> {
        Ok(self
            .marker_ids()?
            .into_iter()
            .filter(|&id| self.all_partitions_have(id, partitions))
            .collect())
    }

    /// The newest checkpoint complete for `partitions`, with its marker bytes: the recovery point.
    /// `partitions` must be every partition the runtime owns; a partition with no directory at all makes every
    /// checkpoint incomplete, which is the safe answer.
    pub fn latest_complete(
        &self,
        partitions: &[u32],
    ) -> Result<Option<CompleteCheckpoint>, StateError> {
        for id in self.complete_ids(partitions)?.into_iter().rev() {
            // A marker can vanish between listing and reading only through a concurrent prune; try the next.
            if let Some(marker) = self.read_marker(id)? {
                return Ok(Some(CompleteCheckpoint { id, marker }));
            }
        }
        Ok(None)
    }

    /// Keeps the `keep_last` newest complete checkpoints (for `partitions`) and everything newer than the latest
    /// complete one; removes every other marker and partition checkpoint directory (in all partition
    /// directories), and interrupted marker writes. Without any complete checkpoint nothing is removed.
    pub fn prune(
        &self,
        partitions: &[u32],
        keep_last: NonZeroUsize,
    ) -> Result<PruneReport, StateError> {
        self.prune_protecting(partitions, keep_last, &BTreeSet::new())
    }

    /// [`CheckpointCatalog::prune`] that also keeps every id in `protect` (e.g. checkpoints with a pending commit
    /// intent, which recovery may still need).
    pub fn prune_protecting(
        &self,
        partitions: &[u32],
        keep_last: NonZeroUsize,
        protect: &BTreeSet<u64>,
    ) -> Result<PruneReport, StateError> {
        let complete = self.complete_ids(partitions)?;
        let Some(&latest) = complete.last() else {
            return Ok(PruneReport::default());
        };
        let kept: BTreeSet<u64> = complete
            .iter()
            .rev()
            .take(keep_last.get())
            .copied()
            .collect();
        let doomed = |id: u64| id < latest && !kept.contains(&id) && !protect.contains(&id);

        let mut report = PruneReport::default();
        // Markers first: once a marker is gone the id can no longer be chosen for recovery, so removing its
        // partition directories afterwards is safe even if interrupted.
        for id in self.marker_ids()? {
            if doomed(id) {
                fsutil::remove_if_exists(&self.layout.marker_path(id))?;
                report.markers.push(id);
            }
        }
        if !report.markers.is_empty() {
            fsutil::fsync_dir(&self.layout.markers_dir())?;
        }
        self.clean_marker_tmp(latest)?;
        for (partition, ids) in self.checkpoints_by_partition()? {
            let dir = self.layout.partition_checkpoints_dir(partition);
            for id in ids.into_iter().filter(|&id| doomed(id)) {
                match ckdir::delete(&dir, id) {
                    // Deleted concurrently by the partition's own store: the goal is reached.
                    Ok(()) | Err(StateError::CheckpointNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                report.partition_checkpoints.push((partition, id));
            }
        }
        Ok(report)
    }

    /// Removes interrupted marker writes of ids older than `latest`; newer ones may be in progress.
    fn clean_marker_tmp(&self, latest: u64) -> Result<(), StateError> {
        let dir = self.layout.markers_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name();
            let stale = name
                .to_str()
                .filter(|n| is_tmp_name(n))
                .and_then(|n| n.split('.').next())
                .and_then(|id| id.parse::<u64>().ok())
                .is_some_and(|id| id < latest);
            if stale {
                fsutil::remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }
}
