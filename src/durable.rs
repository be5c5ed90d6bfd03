//! Durable state checkpoints off the machine: a copy of every state checkpoint, commit intent and completion
//! marker in an object store (a directory or an S3 bucket, `[checkpoint.remote]`), so that a processor on a new,
//! empty node restores the latest complete checkpoint and continues exactly-once.
//!
//! Remote layout (under the configured prefix):
//!
//! ```text
//! blobs/<sha256>                        one state file (RocksDB SST, MANIFEST, OPTIONS...), content-addressed
//! checkpoints/<id:020>/state.json       StateManifest: per partition, the files (name, size, sha256) it needs
//! checkpoints/<id:020>/intent           copy of the commit intent of <id>
//! checkpoints/<id:020>/complete         copy of the completion marker (CheckpointManifest) of <id>
//! ```
//!
//! **Incremental**: RocksDB table files are immutable and shared between consecutive checkpoints, so a blob is
//! uploaded only when no blob with its hash exists; a checkpoint uploads only the files that changed.
//!
//! **Invariant: the remote copy is never behind the Iceberg tables.** For checkpoint `n` the committer uploads, in
//! this order: (1) state `n` (blobs, then `state.json`; an old `complete` of the same id is removed first), (2) the
//! intent of `n` — and only then commits the tables; after the local marker it uploads (3) `complete` of `n`. A
//! crash at any step leaves the remote restorable (see ARCHITECTURE.md, "Durable checkpoints"):
//! - nothing uploaded, or state without intent: no table holds `n`; restore `n-1` and replay;
//! - intent uploaded, some or all tables committed, no `complete`: restore `n-1` and finish the intent of `n`
//!   (tables that hold `n` are skipped), which needs state `n` — uploaded before the intent.
//!
//! **Retention** ([`retained`]) keeps the newest complete checkpoints, everything newer than the latest complete
//! one, and everything with an intent; blobs are deleted only when no kept `state.json` references them, and only
//! by the pipeline itself (the single writer of blobs), so a blob it decided not to upload again is never
//! collected under its feet.

use futures::future::BoxFuture;
use ledgerstream_state::StateLayout;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error("object store: {0}")]
    Store(String),
    #[error("local state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("remote checkpoint {id}: {reason}")]
    Corrupt { id: u64, reason: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> DurableError + '_ {
    move |source| DurableError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The few object-store operations durable checkpoints need. Keys are `/`-separated relative paths.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, Result<(), DurableError>>;
    /// `None` when the key does not exist.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, DurableError>>;
    /// Every key under `prefix` (recursively), in any order.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, DurableError>>;
    /// Deleting a missing key succeeds.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), DurableError>>;
}

fn store_err(e: opendal::Error) -> DurableError {
    DurableError::Store(e.to_string())
}

/// An [`ObjectStore`] over opendal (a directory or S3; the same opendal build iceberg's storage uses).
#[derive(Debug, Clone)]
pub struct OpendalStore {
    op: opendal::Operator,
}

impl OpendalStore {
    /// Objects under `<path>/<prefix>` on the local filesystem (or a mounted volume).
    pub fn dir(path: &Path, prefix: &str) -> Result<Self, DurableError> {
        let root = std::path::absolute(path.join(prefix)).map_err(io_at(path))?;
        let builder = opendal::services::Fs::default().root(&root.display().to_string());
        Ok(OpendalStore {
            op: opendal::Operator::new(builder).map_err(store_err)?.finish(),
        })
    }

    /// Objects under `prefix` in an S3 bucket. Path-style requests unless `path_style_access` is false.
    pub fn s3(settings: &S3Settings) -> Result<Self, DurableError> {
        let mut b = opendal::services::S3::default()
            .bucket(&settings.bucket)
            .root(&format!("/{}", settings.prefix.trim_matches('/')))
            .region(&settings.region)
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(e) = &settings.endpoint {
            b = b.endpoint(e);
        }
        if let (Some(k), Some(s)) = (&settings.access_key_id, &settings.secret_access_key) {
            b = b.access_key_id(k).secret_access_key(s);
        }
        if !settings.path_style_access {
            b = b.enable_virtual_host_style();
        }
        Ok(OpendalStore {
            op: opendal::Operator::new(b).map_err(store_err)?.finish(),
        })
    }
}

/// S3 settings with secrets already resolved.
#[derive(Clone)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub path_style_access: bool,
}

impl ObjectStore for OpendalStore {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            self.op
                .write(key, bytes)
                .await
                .map(|_| ())
                .map_err(store_err)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, DurableError>> {
        Box::pin(async move {
            match self.op.read(key).await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(store_err(e)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, DurableError>> {
        Box::pin(async move {
            let entries = match self.op.list_with(prefix).recursive(true).await {
                Ok(e) => e,
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(store_err(e)),
            };
            Ok(entries
                .into_iter()
                .map(|e| e.path().trim_start_matches('/').to_string())
                .filter(|p| !p.ends_with('/'))
                .collect())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            match self.op.delete(key).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(store_err(e)),
            }
        })
    }
}

/// In-memory [`ObjectStore`] for tests; counts writes per key prefix.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    puts: Mutex<Vec<String>>,
}

impl MemoryStore {
    /// Keys written so far (in order, repeats included).
    pub fn puts(&self) -> Vec<String> {
        self.puts.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn keys(&self) -> Vec<String> {
        self.objects
            .lock()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }
}

fn poisoned<T>(_: T) -> DurableError {
    DurableError::Store("memory store lock poisoned".into())
}

impl ObjectStore for MemoryStore {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            self.puts.lock().map_err(poisoned)?.push(key.to_string());
            self.objects
                .lock()
                .map_err(poisoned)?
                .insert(key.to_string(), bytes);
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, DurableError>> {
        Box::pin(async move { Ok(self.objects.lock().map_err(poisoned)?.get(key).cloned()) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, DurableError>> {
        Box::pin(async move {
            Ok(self
                .objects
                .lock()
                .map_err(poisoned)?
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            self.objects.lock().map_err(poisoned)?.remove(key);
            Ok(())
        })
    }
}

/// One file of a partition's state checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// `state.json`: the files state checkpoint `id` consists of, per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateManifest {
    pub id: u64,
    pub writer_id: String,
    pub partitions: BTreeMap<u32, Vec<FileEntry>>,
}

impl StateManifest {
    pub fn bytes(&self) -> u64 {
        self.partitions.values().flatten().map(|f| f.size).sum()
    }
}

/// What the remote holds of one checkpoint id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RemoteEntry {
    /// `state.json` present (so every blob it lists was uploaded before it).
    pub state: bool,
    pub intent: bool,
    /// `complete` present: tables committed and the marker written.
    pub complete: bool,
}

/// What one state upload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    pub files: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
}

/// What a remote prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemotePrune {
    pub checkpoints: Vec<u64>,
    pub blobs: usize,
}

/// Whether a checkpoint is complete and whether it has a pending commit intent: what retention looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub complete: bool,
    pub intent: bool,
}

/// The ids retention keeps: the `keep` newest complete ones, every id newer than the latest complete one (in
/// progress), and every id with a commit intent (recovery may still have to finish it). With no complete
/// checkpoint everything is kept.
pub fn retained(ids: &BTreeMap<u64, Retention>, keep: NonZeroUsize) -> BTreeSet<u64> {
    let complete: Vec<u64> = ids
        .iter()
        .filter(|(_, r)| r.complete)
        .map(|(id, _)| *id)
        .collect();
    let Some(&latest) = complete.last() else {
        return ids.keys().copied().collect();
    };
    let newest: BTreeSet<u64> = complete.iter().rev().take(keep.get()).copied().collect();
    ids.iter()
        .filter(|(id, r)| **id > latest || r.intent || newest.contains(id))
        .map(|(id, _)| *id)
        .collect()
}

fn checkpoint_key(id: u64, what: &str) -> String {
    format!("checkpoints/{id:020}/{what}")
}

fn blob_key(sha: &str) -> String {
    format!("blobs/{sha}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Identity of a local file for the hash cache: SST files are immutable, and hard links share the inode.
type FileIdentity = (u64, u64, u64, i64);

/// Durable checkpoints in one object store. Cheap to share (`Arc`); one per process.
#[derive(Debug)]
pub struct RemoteCheckpoints {
    store: Arc<dyn ObjectStore>,
    /// Blob keys known to exist remotely, filled by one listing on first use. This process is the only writer and
    /// deleter of blobs, so the set stays exact.
    known_blobs: tokio::sync::Mutex<Option<BTreeSet<String>>>,
    /// sha256 of local files already hashed, so that an immutable SST is hashed once, not at every checkpoint.
    hashes: Mutex<HashMap<FileIdentity, String>>,
}

impl RemoteCheckpoints {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        RemoteCheckpoints {
            store,
            known_blobs: tokio::sync::Mutex::new(None),
            hashes: Mutex::new(HashMap::new()),
        }
    }

    /// Every checkpoint id the remote knows of, with what it holds.
    pub async fn listing(&self) -> Result<BTreeMap<u64, RemoteEntry>, DurableError> {
        let mut out: BTreeMap<u64, RemoteEntry> = BTreeMap::new();
        for key in self.store.list("checkpoints/").await? {
            let mut parts = key.trim_start_matches("checkpoints/").split('/');
            let (Some(id), Some(what), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(id) = id.parse::<u64>() else { continue };
            let e = out.entry(id).or_default();
            match what {
                "state.json" => e.state = true,
                "intent" => e.intent = true,
                "complete" => e.complete = true,
                _ => {}
            }
        }
        // A record without anything we recognise (a foreign file) is not a checkpoint.
        out.retain(|_, e| e.state || e.intent || e.complete);
        Ok(out)
    }

    pub async fn state_manifest(&self, id: u64) -> Result<Option<StateManifest>, DurableError> {
        match self.store.get(&checkpoint_key(id, "state.json")).await? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| DurableError::Corrupt {
                    id,
                    reason: format!("state.json: {e}"),
                }),
            None => Ok(None),
        }
    }

    /// The completion marker bytes of `id`, if uploaded.
    pub async fn marker(&self, id: u64) -> Result<Option<Vec<u8>>, DurableError> {
        self.store.get(&checkpoint_key(id, "complete")).await
    }

    pub async fn intent(&self, id: u64) -> Result<Option<Vec<u8>>, DurableError> {
        self.store.get(&checkpoint_key(id, "intent")).await
    }

    pub async fn put_intent(&self, id: u64, bytes: &[u8]) -> Result<(), DurableError> {
        self.store
            .put(&checkpoint_key(id, "intent"), bytes.to_vec())
            .await
    }

    /// Uploads the marker of `id` (after the local one), then drops its intent.
    pub async fn put_marker(&self, id: u64, bytes: &[u8]) -> Result<(), DurableError> {
        self.store
            .put(&checkpoint_key(id, "complete"), bytes.to_vec())
            .await?;
        self.store.delete(&checkpoint_key(id, "intent")).await
    }

    async fn blob_set(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<BTreeSet<String>>>, DurableError> {
        let mut guard = self.known_blobs.lock().await;
        if guard.is_none() {
            *guard = Some(self.store.list("blobs/").await?.into_iter().collect());
        }
        Ok(guard)
    }

    fn hash_file(&self, path: &Path) -> Result<(String, u64), DurableError> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(path).map_err(io_at(path))?;
        let ident = (md.dev(), md.ino(), md.size(), md.mtime_nsec());
        if let Some(h) = self.hashes.lock().ok().and_then(|h| h.get(&ident).cloned()) {
            return Ok((h, md.size()));
        }
        let bytes = std::fs::read(path).map_err(io_at(path))?;
        let h = hex(&sha2::Sha256::digest(&bytes));
        if let Ok(mut cache) = self.hashes.lock() {
            cache.insert(ident, h.clone());
        }
        Ok((h, bytes.len() as u64))
    }

    /// Uploads state checkpoint `id` of `partitions` from `layout`: every file whose content is not yet a blob,
    /// then `state.json`. Any `complete` left under the same id by an earlier life of the pipeline is removed first,
    /// so that a new state under an old marker is never taken for complete.
    pub async fn upload_state(
        &self,
        layout: &StateLayout,
        id: u64,
        partitions: &[u32],
        writer_id: &str,
    ) -> Result<UploadReport, DurableError> {
        self.store.delete(&checkpoint_key(id, "complete")).await?;
        let mut manifest = StateManifest {
            id,
            writer_id: writer_id.to_string(),
            partitions: BTreeMap::new(),
        };
        let mut report = UploadReport::default();
        let mut known = self.blob_set().await?;
        for &p in partitions {
            let dir = layout.partition_checkpoints_dir(p).join(id.to_string());
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .map_err(io_at(&dir))?
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect();
            names.sort();
            let mut files = Vec::with_capacity(names.len());
            for name in names {
                let path = dir.join(&name);
                let (sha, size) = {
                    let path = path.clone();
                    tokio::task::block_in_place(|| self.hash_file(&path))?
                };
                let key = blob_key(&sha);
                report.files += 1;
                if !known.as_ref().is_some_and(|k| k.contains(&key)) {
                    let bytes = tokio::fs::read(&path).await.map_err(io_at(&path))?;
                    self.store.put(&key, bytes).await?;
                    if let Some(k) = known.as_mut() {
                        k.insert(key);
                    }
                    report.uploaded += 1;
                    report.uploaded_bytes += size;
                }
                files.push(FileEntry {
                    name,
                    size,
                    sha256: sha,
                });
            }
            manifest.partitions.insert(p, files);
        }
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| DurableError::Corrupt {
            id,
            reason: e.to_string(),
        })?;
        self.store
            .put(&checkpoint_key(id, "state.json"), json)
            .await?;
        Ok(report)
    }

    /// Downloads state checkpoint `id` into `layout` as complete partition checkpoint directories (each built under
    /// a `.tmp` name, verified against its hashes, fsynced and renamed into place). Partitions that already have
    /// the checkpoint locally are left alone. Returns the bytes downloaded.
    pub async fn download_state(&self, layout: &StateLayout, id: u64) -> Result<u64, DurableError> {
        let manifest = self
            .state_manifest(id)
            .await?
            .ok_or_else(|| DurableError::Corrupt {
                id,
                reason: "no state.json".into(),
            })?;
        let mut total = 0;
        for (p, files) in &manifest.partitions {
            let parent = layout.partition_checkpoints_dir(*p);
            let target = parent.join(id.to_string());
            if target.is_dir() {
                continue;
            }
            let tmp = parent.join(format!("{id}.download.tmp"));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
            for f in files {
                if f.name.contains('/') || f.name.starts_with('.') {
                    return Err(DurableError::Corrupt {
                        id,
                        reason: format!("bad file name {:?}", f.name),
                    });
                }
                let bytes = self.store.get(&blob_key(&f.sha256)).await?.ok_or_else(|| {
                    DurableError::Corrupt {
                        id,
                        reason: format!("blob {} ({}) is missing", f.sha256, f.name),
                    }
                })?;
                if hex(&sha2::Sha256::digest(&bytes)) != f.sha256 {
                    return Err(DurableError::Corrupt {
                        id,
                        reason: format!("blob {} does not match its hash", f.sha256),
                    });
                }
                let path = tmp.join(&f.name);
                total += bytes.len() as u64;
                tokio::task::block_in_place(|| {
                    use std::io::Write;
                    let mut file = std::fs::File::create(&path)?;
                    file.write_all(&bytes)?;
                    file.sync_all()
                })
                .map_err(io_at(&path))?;
            }
            tokio::task::block_in_place(|| {
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &target)?;
                std::fs::File::open(&parent)?.sync_all()
            })
            .map_err(io_at(&target))?;
        }
        Ok(total)
    }

    /// Deletes the records (`complete` first, so the id stops being a recovery point, then the intent and
    /// `state.json`) of every checkpoint [`retained`] does not keep. With `collect_blobs`, also deletes blobs no
    /// kept `state.json` references — only the pipeline (the single writer of blobs) passes true.
    pub async fn prune(
        &self,
        keep: NonZeroUsize,
        collect_blobs: bool,
    ) -> Result<RemotePrune, DurableError> {
        let listing = self.listing().await?;
        let flags: BTreeMap<u64, Retention> = listing
            .iter()
            .map(|(id, e)| {
                (
                    *id,
                    Retention {
                        complete: e.complete && e.state,
                        intent: e.intent,
                    },
                )
            })
            .collect();
        let kept = retained(&flags, keep);
        let mut out = RemotePrune::default();
        for id in listing.keys().filter(|id| !kept.contains(id)) {
            for what in ["complete", "intent", "state.json"] {
                self.store.delete(&checkpoint_key(*id, what)).await?;
            }
            out.checkpoints.push(*id);
        }
        if collect_blobs {
            let mut referenced = BTreeSet::new();
            for id in &kept {
                if let Some(m) = self.state_manifest(*id).await? {
                    referenced.extend(m.partitions.values().flatten().map(|f| blob_key(&f.sha256)));
                }
            }
            let mut known = self.blob_set().await?;
            let all: Vec<String> = self.store.list("blobs/").await?;
            for key in all.into_iter().filter(|k| !referenced.contains(k)) {
                self.store.delete(&key).await?;
                if let Some(k) = known.as_mut() {
                    k.remove(&key);
                }
                out.blobs += 1;
            }
        }
        Ok(out)
    }
}

/// Builds the configured remote, resolving its secrets (I/O: env, files).
pub fn from_config(
    remote: &crate::config::RemoteConfig,
) -> Result<Arc<RemoteCheckpoints>, DurableError> {
    use crate::config::RemoteConfig;
    let store: Arc<dyn ObjectStore> = match remote {
        RemoteConfig::Dir { path, prefix } => Arc::new(OpendalStore::dir(path, prefix)?),
        RemoteConfig::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            path_style_access,
        } => {
            let resolve = |s: &Option<crate::config::SecretSource>, key: &str| {
                s.as_ref()
                    .map(|s| s.resolve(key).map(|v| v.expose().to_string()))
                    .transpose()
            };
            Arc::new(OpendalStore::s3(&S3Settings {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: endpoint.clone(),
                region: region.clone(),
                access_key_id: resolve(access_key_id, "checkpoint.remote.access_key_id")?,
                secret_access_key: resolve(
                    secret_access_key,
                    "checkpoint.remote.secret_access_key",
                )?,
                path_style_access: *path_style_access,
            })?)
        }
    };
    Ok(Arc::new(RemoteCheckpoints::new(store)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerstream_state::{PartitionStore, RocksConfig, RocksPartitionStore, WriteBatch};

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    fn flags(spec: &[(u64, bool, bool)]) -> BTreeMap<u64, Retention> {
        spec.iter()
            .map(|&(id, complete, intent)| (id, Retention { complete, intent }))
            .collect()
    }

    #[test]
    fn retention_keeps_latest_complete_newer_and_intents() {
        // 1..5 complete, 6 has an intent (tables being committed), 7 state only (in progress).
        let ids = flags(&[
            (1, true, false),
            (2, true, false),
            (3, false, false),
            (4, true, false),
            (5, true, false),
            (6, false, true),
            (7, false, false),
        ]);
        assert_eq!(retained(&ids, nz(1)), [5, 6, 7].into());
        assert_eq!(retained(&ids, nz(2)), [4, 5, 6, 7].into());
        // An old checkpoint with a leftover intent is kept too.
        let ids = flags(&[(1, false, true), (2, true, false), (3, true, false)]);
        assert_eq!(retained(&ids, nz(1)), [1, 3].into());
        // No complete checkpoint: nothing may go.
        let ids = flags(&[(1, false, false), (2, false, true)]);
        assert_eq!(retained(&ids, nz(1)), [1, 2].into());
        assert!(retained(&BTreeMap::new(), nz(3)).is_empty());
    }

    fn put(store: &mut RocksPartitionStore, from: u32, to: u32, pos: i64) {
        let mut b = WriteBatch::new();
        for i in from..to {
            b.put("k", &i.to_be_bytes(), &[7u8; 512]).unwrap();
        }
        b.set_position("t", pos);
        store.write(b).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn uploads_are_incremental_and_restore_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path().join("state"));
        let mut store = RocksPartitionStore::open(&layout, 0, RocksConfig::default()).unwrap();
        put(&mut store, 0, 2000, 1);
        store.checkpoint(1).unwrap();
        let mem = Arc::new(MemoryStore::default());
        let remote = RemoteCheckpoints::new(mem.clone());
        let first = remote.upload_state(&layout, 1, &[0], "w").await.unwrap();
        assert!(first.uploaded > 0);
        assert_eq!(
            first.uploaded, first.files,
            "everything is new the first time"
        );

        // Checkpoint 2 adds a table file; the first one is shared and must not be uploaded again.
        put(&mut store, 2000, 4000, 2);
        store.checkpoint(2).unwrap();
        let blobs_before = mem
            .puts()
            .iter()
            .filter(|k| k.starts_with("blobs/"))
            .count();
        let second = remote.upload_state(&layout, 2, &[0], "w").await.unwrap();
        let blobs_after = mem
            .puts()
            .iter()
            .filter(|k| k.starts_with("blobs/"))
            .count();
        assert_eq!(blobs_after - blobs_before, second.uploaded);
        let m1 = remote.state_manifest(1).await.unwrap().unwrap();
        let m2 = remote.state_manifest(2).await.unwrap().unwrap();
        let ssts = |m: &StateManifest| -> BTreeSet<String> {
            m.partitions[&0]
                .iter()
                .filter(|f| f.name.ends_with(".sst"))
                .map(|f| f.sha256.clone())
                .collect()
        };
        let shared = ssts(&m1).intersection(&ssts(&m2)).count();
        assert!(shared >= 1, "checkpoint 2 shares checkpoint 1's SST");
        assert!(
            second.uploaded <= second.files - shared,
            "shared files were uploaded again: {second:?}"
        );
        // Uploading the same checkpoint again uploads nothing.
        let again = remote.upload_state(&layout, 2, &[0], "w").await.unwrap();
        assert_eq!(again.uploaded, 0);

        // Restore on an empty node: checkpoint 2 comes back byte for byte and opens with its data.
        let node = tempfile::tempdir().unwrap();
        let fresh = StateLayout::new(node.path().join("state"));
        let n = remote.download_state(&fresh, 2).await.unwrap();
        assert_eq!(n, m2.bytes());
        let mut restored = RocksPartitionStore::open(&fresh, 0, RocksConfig::default()).unwrap();
        restored.restore_checkpoint(2).unwrap();
        assert_eq!(restored.positions().unwrap().get("t"), Some(&2));
        assert!(restored.get("k", &3999u32.to_be_bytes()).unwrap().is_some());
        // A second download is a no-op; a corrupted blob is detected.
        assert_eq!(remote.download_state(&fresh, 2).await.unwrap(), 0);
        let victim = blob_key(&m1.partitions[&0][0].sha256);
        mem.put(&victim, b"garbage".to_vec()).await.unwrap();
        let other = tempfile::tempdir().unwrap();
        let err = remote
            .download_state(&StateLayout::new(other.path()), 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn markers_intents_listing_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::new(dir.path().join("state"));
        let mut store = RocksPartitionStore::open(&layout, 0, RocksConfig::default()).unwrap();
        let mem = Arc::new(MemoryStore::default());
        let remote = RemoteCheckpoints::new(mem.clone());
        for id in 1..=4u64 {
            put(
                &mut store,
                id as u32 * 100,
                id as u32 * 100 + 100,
                id as i64,
            );
            store.checkpoint(id).unwrap();
            remote.upload_state(&layout, id, &[0], "w").await.unwrap();
            remote.put_intent(id, b"intent").await.unwrap();
            if id < 4 {
                remote.put_marker(id, b"marker").await.unwrap();
            }
        }
        let l = remote.listing().await.unwrap();
        assert_eq!(
            l[&3],
            RemoteEntry {
                state: true,
                intent: false,
                complete: true
            }
        );
        assert_eq!(
            l[&4],
            RemoteEntry {
                state: true,
                intent: true,
                complete: false
            }
        );
        let pruned = remote.prune(nz(1), true).await.unwrap();
        assert_eq!(pruned.checkpoints, vec![1, 2]);
        assert!(pruned.blobs > 0);
        let l = remote.listing().await.unwrap();
        assert_eq!(l.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
        // Everything the kept checkpoints need is still there: both download.
        for id in [3, 4] {
            let node = tempfile::tempdir().unwrap();
            remote
                .download_state(&StateLayout::new(node.path()), id)
                .await
                .unwrap();
        }
        // A re-used id drops its old marker before its new state lands.
        remote.upload_state(&layout, 3, &[0], "w").await.unwrap();
        assert!(!remote.listing().await.unwrap()[&3].complete);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn dir_store_lists_nested_keys_and_tolerates_missing() {
        let dir = tempfile::tempdir().unwrap();
        let s = OpendalStore::dir(dir.path(), "pre/fix").unwrap();
        assert!(s.list("checkpoints/").await.unwrap().is_empty());
        assert_eq!(s.get("nope").await.unwrap(), None);
        s.delete("nope").await.unwrap();
        s.put("checkpoints/00000000000000000001/intent", b"x".to_vec())
            .await
            .unwrap();
        s.put("blobs/ab", b"y".to_vec()).await.unwrap();
        assert_eq!(
            s.list("checkpoints/").await.unwrap(),
            vec!["checkpoints/00000000000000000001/intent".to_string()]
        );
        assert!(dir.path().join("pre/fix/blobs/ab").is_file());
        let remote = RemoteCheckpoints::new(Arc::new(s));
        assert_eq!(
            remote.listing().await.unwrap()[&1],
            RemoteEntry {
                state: false,
                intent: true,
                complete: false
            }
        );
    }
}
