//! Checkpoint directories of one partition (`<partition>/checkpoints/<id>`), shared by the RocksDB store and the
//! catalog. A directory named exactly the decimal id is complete (it only ever appears by rename); anything
//! ending in `.tmp` is an interrupted creation or deletion and is never listed.

use crate::error::{StateError, io_at};
use crate::fsutil::{self, is_tmp_name};
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

/// Parses a checkpoint directory name; only the canonical decimal form counts, so `007` or `7.tmp` never do.
fn parse_id(name: &str) -> Option<u64> {
    let id: u64 = name.parse().ok()?;
    (id.to_string() == name).then_some(id)
}

/// Ids of the complete checkpoints under `dir`, ascending. A missing `dir` has none.
pub(crate) fn list_ids(dir: &Path) -> Result<Vec<u64>, StateError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(dir))?;
        let is_dir = entry.file_type().map_err(io_at(&entry.path()))?.is_dir();
        if let (true, Some(id)) = (is_dir, entry.file_name().to_str().and_then(parse_id)) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Removes interrupted creations and deletions (`*.tmp`) under `dir`.
pub(crate) fn clean_tmp(dir: &Path) -> Result<(), StateError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_at(dir))?;
        if entry.file_name().to_str().is_some_and(is_tmp_name) {
            fsutil::remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}

/// Whether complete checkpoint `id` exists under `dir`.
pub(crate) fn exists(dir: &Path, id: u64) -> bool {
    dir.join(id.to_string()).is_dir()
}

/// Deletes checkpoint `id` under `dir`. It is first renamed to a `.tmp` name so that a crash half-way through the
/// removal never leaves a partial directory under a complete checkpoint's name.
pub(crate) fn delete(dir: &Path, id: u64) -> Result<(), StateError> {
    let path = dir.join(id.to_string());
    if !path.is_dir() {
        return Err(StateError::CheckpointNotFound { id });
    }
    let doomed = dir.join(format!("{id}.deleting.tmp"));
    fsutil::remove_if_exists(&doomed)?;
    fsutil::rename_durable(&path, &doomed)?;
    fsutil::remove_if_exists(&doomed)
}
