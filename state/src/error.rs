//! The one error type of the state crate. Every third-party error (I/O, RocksDB, bincode) is converted here and
//! nowhere else, so callers match on a closed set of domain variants and never on engine messages.

use std::io;
use std::path::{Path, PathBuf};

/// Everything a state store or the checkpoint catalog can report.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A filesystem operation failed. The path says which file or directory, because a bare `io::Error`
    /// ("No such file or directory") is useless in a log line.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The storage engine refused an operation.
    #[error("storage engine error: {message}")]
    Engine {
        /// The engine's own message, kept verbatim for diagnosis.
        message: String,
        /// Whether the engine reported a transient condition (busy, timed out, try again).
        retryable: bool,
    },
    /// A value could not be encoded or decoded with the typed helpers.
    #[error("codec error in keyspace {keyspace:?}: {message}")]
    Codec {
        /// Which keyspace the value belongs to.
        keyspace: String,
        /// What bincode said.
        message: String,
    },
    /// A keyspace name is not allowed (empty, too long, bad characters, or reserved).
    #[error("invalid keyspace name {name:?}: {reason}")]
    InvalidKeyspace {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The requested checkpoint does not exist (never created, pruned, or deleted).
    #[error("checkpoint {id} not found")]
    CheckpointNotFound {
        /// The id that was asked for.
        id: u64,
    },
    /// A checkpoint with this id already exists; ids are never reused, so this is a caller bug.
    #[error("checkpoint {id} already exists")]
    CheckpointExists {
        /// The id that was asked for.
        id: u64,
    },
    /// Stored bytes or on-disk layout do not have the expected shape.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// The store lost its database handle because a restore failed half-way and the live database could not be
    /// reopened either. The partition actor must be restarted (which reopens the store from disk).
    #[error("state store is closed after a failed restore")]
    Closed,
}

impl StateError {
    /// Whether retrying the same operation may succeed. Corruption, codec and caller errors never do.
    pub fn is_retryable(&self) -> bool {
        match self {
            StateError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            StateError::Engine { retryable, .. } => *retryable,
            StateError::Codec { .. }
            | StateError::InvalidKeyspace { .. }
            | StateError::CheckpointNotFound { .. }
            | StateError::CheckpointExists { .. }
            | StateError::Corrupt(_)
            | StateError::Closed => false,
        }
    }
}

/// Attaches a path to an I/O error. Use as `.map_err(io_at(&path))`.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl From<rocksdb::Error> for StateError {
    fn from(e: rocksdb::Error) -> Self {
        use rocksdb::ErrorKind as K;
        let retryable = matches!(
            e.kind(),
            K::Busy | K::TimedOut | K::TryAgain | K::Incomplete
        );
        if e.kind() == K::Corruption {
            return StateError::Corrupt(e.into_string());
        }
        StateError::Engine {
            message: e.into_string(),
            retryable,
        }
    }
}

pub(crate) fn encode_error(keyspace: &str, e: bincode::error::EncodeError) -> StateError {
    StateError::Codec {
        keyspace: keyspace.to_owned(),
        message: e.to_string(),
    }
}

pub(crate) fn decode_error(keyspace: &str, e: bincode::error::DecodeError) -> StateError {
    StateError::Codec {
        keyspace: keyspace.to_owned(),
        message: e.to_string(),
    }
}
