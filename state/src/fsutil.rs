//! Crash-safe filesystem primitives. The pattern everywhere is: build under a name ending in `.tmp`, fsync the
//! contents, rename into place, fsync the parent directory. A crash therefore leaves either the old name, the new
//! name complete, or a `.tmp` leftover that readers ignore and cleanup removes.

use crate::error::{StateError, io_at};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Suffix of every in-progress file or directory.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// `path` with `.tmp` appended to its file name.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

/// Whether a directory entry is an in-progress leftover.
pub(crate) fn is_tmp_name(name: &str) -> bool {
    name.ends_with(TMP_SUFFIX)
}

/// Makes the entries of directory `dir` (creations, renames, removals) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}

/// Fsyncs the parent of `path`, if it has one.
fn fsync_parent(path: &Path) -> Result<(), StateError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsync_dir(parent),
        _ => Ok(()),
    }
}

pub(crate) fn create_dir_all(dir: &Path) -> Result<(), StateError> {
    fs::create_dir_all(dir).map_err(io_at(dir))
}

/// Removes a file or directory tree; absent is fine.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), StateError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_at(path)(e)),
        _ => Ok(()),
    }
}

/// Renames `from` to `to` and makes the rename durable.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> Result<(), StateError> {
    fs::rename(from, to).map_err(io_at(from))?;
    fsync_parent(to)?;
    if from.parent() != to.parent() {
        fsync_parent(from)?;
    }
    Ok(())
}

/// Atomically replaces `path` with `bytes`: a reader sees the old content, no file, or all of `bytes`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = tmp_path(path);
    {
        let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
        f.write_all(bytes).map_err(io_at(&tmp))?;
        f.sync_all().map_err(io_at(&tmp))?;
    }
    rename_durable(&tmp, path)
}

/// Durable copy of directory tree `src` into new directory `dst`. Immutable RocksDB table files (`*.sst`) are
/// hard-linked when possible, because they are never modified in place and can be gigabytes; every other file
/// (MANIFEST, CURRENT, OPTIONS, WAL) is copied, because the engine rewrites or appends to those when it opens the
/// copy and must not touch the source.
pub(crate) fn copy_dir_durable(src: &Path, dst: &Path) -> Result<(), StateError> {
    fs::create_dir(dst).map_err(io_at(dst))?;
    for entry in fs::read_dir(src).map_err(io_at(src))? {
        let entry = entry.map_err(io_at(src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let file_type = entry.file_type().map_err(io_at(&from))?;
        if file_type.is_dir() {
            copy_dir_durable(&from, &to)?;
        } else {
            let is_sst = from.extension().is_some_and(|ext| ext == "sst");
            if !(is_sst && fs::hard_link(&from, &to).is_ok()) {
                fs::copy(&from, &to).map_err(io_at(&from))?;
                File::open(&to)
                    .and_then(|f| f.sync_all())
                    .map_err(io_at(&to))?;
            }
        }
    }
    fsync_dir(dst)
}
