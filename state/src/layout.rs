//! Where state lives on disk. One root per process; under it one directory per partition, so a partition's
//! state can move to another instance by copying its directory:
//!
//! ```text
//! <root>/p-<N>/db                      live RocksDB database of partition N
//! <root>/p-<N>/checkpoints/<id>        complete checkpoint <id> of partition N
//! <root>/p-<N>/checkpoints/<id>.tmp    checkpoint being written (ignored, cleaned up)
//! <root>/checkpoints/<id>.complete     marker: checkpoint <id> is complete across all partitions
//! ```

use std::path::{Path, PathBuf};

/// Paths of one state root. Cheap to clone; holds no open files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    /// The directory that holds every partition directory and the marker directory.
    root: PathBuf,
}

impl StateLayout {
    /// Layout rooted at `root` (nothing is created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateLayout { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/p-<N>`: everything that belongs to partition `partition`.
    pub fn partition_dir(&self, partition: u32) -> PathBuf {
        self.root.join(format!("p-{partition}"))
    }

    /// `<root>/p-<N>/checkpoints`: the complete checkpoints of partition `partition`.
    pub fn partition_checkpoints_dir(&self, partition: u32) -> PathBuf {
        PartitionPaths::new(self.partition_dir(partition)).checkpoints()
    }

    /// `<root>/checkpoints`: completion markers.
    pub fn markers_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// `<root>/checkpoints/<id>.complete`.
    pub fn marker_path(&self, id: u64) -> PathBuf {
        self.markers_dir().join(format!("{id}.complete"))
    }

    /// Parses a partition directory name (`p-<N>`).
    pub(crate) fn parse_partition_dir(name: &str) -> Option<u32> {
        name.strip_prefix("p-")?.parse().ok()
    }
}

/// Paths inside one partition directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionPaths {
    /// `<root>/p-<N>`.
    pub(crate) dir: PathBuf,
}

impl PartitionPaths {
    pub(crate) fn new(dir: PathBuf) -> Self {
        PartitionPaths { dir }
    }

    /// The live database.
    pub(crate) fn db(&self) -> PathBuf {
        self.dir.join("db")
    }

    /// The previous live database while a restore swaps it out.
    pub(crate) fn db_old(&self) -> PathBuf {
        self.dir.join("db.old")
    }

    /// Where a restore builds the new live database before swapping it in.
    pub(crate) fn db_restoring(&self) -> PathBuf {
        self.dir.join("db.restore.tmp")
    }

    pub(crate) fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    pub(crate) fn checkpoint(&self, id: u64) -> PathBuf {
        self.checkpoints().join(id.to_string())
    }
}
