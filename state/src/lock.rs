//! The data-directory lock: at most one process works on a data directory at a time.
//!
//! Contract: [`DataDirLock::acquire`] takes an exclusive advisory lock (`flock`) on `<dir>/ledgerstream.lock`
//! without waiting. A second process gets [`LockError::Held`] naming the holder's pid and start time, and has
//! touched nothing but the lock file itself (created if missing, never truncated by a loser). The lock is released
//! when the [`DataDirLock`] drops or the process dies, including on `kill -9`: the kernel drops `flock` locks with
//! the last descriptor, so a crash never leaves a stale lock behind. The pid written into the file is for the
//! message only, never used to decide anything.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "ledgerstream.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error(
        "data directory {dir} is in use by another ledgerstream process ({holder}). Two processes on one data \
         directory would commit each other's intents and prune each other's checkpoints: stop the other process, \
         or give this one its own [pipeline] data_dir"
    )]
    Held { dir: PathBuf, holder: String },
    /// The lock file could not be created, opened or written.
    #[error("data directory lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive lock on a data directory, held until drop.
#[derive(Debug)]
pub struct DataDirLock {
    /// Keeps the `flock` alive: closing the descriptor releases it.
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates `dir` if needed and locks it, or fails at once if another process holds the lock.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "holder unknown".to_string(),
                    h => h.to_string(),
                };
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = format!(
            "pid {}, locked at unix time {}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(me.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DataDirLock::acquire(&data).expect("first lock");
        let err = DataDirLock::acquire(&data).expect_err("second lock must fail");
        let msg = err.to_string();
        assert!(
            matches!(err, LockError::Held { .. }),
            "unexpected error {err:?}"
        );
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "the message names the holder: {msg}"
        );
        // The loser did not wipe the holder's record.
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert!(text.starts_with("pid "), "{text}");
        drop(first);
        DataDirLock::acquire(&data).expect("free again after drop");
    }
}
