//! RocksDB engine: one database per partition at `<root>/p-<N>/db`.
//!
//! - Each keyspace is a column family, created the first time a batch writes to it. Positions live in the
//!   reserved `__meta` column family, written in the same RocksDB write batch as the data, so data and positions
//!   are atomic together. `atomic_flush` keeps memtable flushes consistent across column families.
//! - The WAL is on but writes are not fsynced by default: the durability point of the pipeline is the checkpoint,
//!   and recovery restores the last complete checkpoint anyway.
//! - A checkpoint is a RocksDB checkpoint (hard links to table files plus copies of the small files), created
//!   under `<id>.tmp` and renamed to `<id>` once complete.
//! - A restore copies the checkpoint to `db.restore.tmp`, then swaps it in: `db` -> `db.old`,
//!   `db.restore.tmp` -> `db`. [`RocksPartitionStore::open`] finishes or rolls back a swap interrupted by a crash,
//!   so the live database is always either the old one or a complete copy of the checkpoint.

use crate::batch::{
    BatchOp, KeyRange, META_KEYSPACE, POSITION_PREFIX, WriteBatch, decode_position, position_key,
};
use crate::ckdir;
use crate::error::{StateError, io_at};
use crate::fsutil;
use crate::layout::{PartitionPaths, StateLayout};
use crate::store::{PartitionStore, ScanVisitor};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, DBCompressionType, Options, ReadOptions,
    WriteOptions,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// A block cache meant to be shared by every partition store of a process, so that the memory bound does not
/// grow with the number of partitions.
#[derive(Clone)]
pub struct SharedBlockCache(rocksdb::Cache);

impl SharedBlockCache {
    /// An LRU cache of `capacity_bytes`.
    pub fn new(capacity_bytes: usize) -> Self {
        SharedBlockCache(rocksdb::Cache::new_lru_cache(capacity_bytes))
    }
}

impl std::fmt::Debug for SharedBlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedBlockCache")
    }
}

/// Tuning of the per-partition databases. Defaults are modest because a process runs several partitions.
#[derive(Debug, Clone)]
pub struct RocksConfig {
    /// Memtable size per column family. Small, since memory use is this times column families times partitions.
    pub write_buffer_bytes: usize,
    /// Memtables per column family (one active plus immutables waiting for flush).
    pub max_write_buffer_number: i32,
    /// Background flush and compaction threads per database.
    pub max_background_jobs: i32,
    /// Cap on WAL size; when exceeded RocksDB flushes the oldest column families so the WAL can be dropped.
    pub max_total_wal_bytes: u64,
    /// Whether every write fsyncs the WAL. Off by default: checkpoints are the durability point.
    pub sync_writes: bool,
    /// Block cache shared across partitions; `None` gives each database RocksDB's small default cache.
    pub block_cache: Option<SharedBlockCache>,
}

impl Default for RocksConfig {
    fn default() -> Self {
        RocksConfig {
            write_buffer_bytes: 8 << 20,
            max_write_buffer_number: 2,
            max_background_jobs: 2,
            max_total_wal_bytes: 64 << 20,
            sync_writes: false,
            block_cache: None,
        }
    }
}

impl RocksConfig {
    fn db_options(&self) -> Options {
        let mut opts = self.cf_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_atomic_flush(true);
        opts.set_max_background_jobs(self.max_background_jobs);
        opts.set_max_total_wal_size(self.max_total_wal_bytes);
        opts.set_keep_log_file_num(3);
        opts
    }

    fn cf_options(&self) -> Options {
        let mut opts = Options::default();
        opts.set_write_buffer_size(self.write_buffer_bytes);
        opts.set_max_write_buffer_number(self.max_write_buffer_number);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_bottommost_compression_type(DBCompressionType::Zstd);
        opts.set_level_compaction_dynamic_level_bytes(true);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        if let Some(cache) = &self.block_cache {
            table.set_block_cache(&cache.0);
            table.set_cache_index_and_filter_blocks(true);
        }
        opts.set_block_based_table_factory(&table);
        opts
    }
}

/// A [`PartitionStore`] backed by one RocksDB database.
pub struct RocksPartitionStore {
    /// The partition directory and the paths inside it.
    paths: PartitionPaths,
    /// Options used to reopen the database and to create column families.
    config: RocksConfig,
    /// The open database. `None` only after a restore failed and the live database could not be reopened.
    db: Option<DB>,
    /// Names of the existing keyspace column families (not `default` nor `__meta`); needed to sum sizes.
    keyspaces: BTreeSet<String>,
}

impl std::fmt::Debug for RocksPartitionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksPartitionStore")
            .field("dir", &self.paths.dir)
            .field("open", &self.db.is_some())
            .finish()
    }
}

impl RocksPartitionStore {
    /// Opens (creating if needed) the store of `partition` under `layout`.
    pub fn open(
        layout: &StateLayout,
        partition: u32,
        config: RocksConfig,
    ) -> Result<Self, StateError> {
        Self::open_dir(layout.partition_dir(partition), config)
    }

    /// Opens (creating if needed) the store whose partition directory is `dir`. Finishes or rolls back a restore
    /// interrupted by a crash and removes leftover temporary checkpoint directories first.
    pub fn open_dir(dir: impl Into<PathBuf>, config: RocksConfig) -> Result<Self, StateError> {
        let paths = PartitionPaths::new(dir.into());
        fsutil::create_dir_all(&paths.checkpoints())?;
        recover_interrupted_restore(&paths)?;
        ckdir::clean_tmp(&paths.checkpoints())?;
        let (db, keyspaces) = open_db(&paths.db(), &config)?;
        Ok(RocksPartitionStore {
            paths,
            config,
            db: Some(db),
            keyspaces,
        })
    }

    /// The partition directory (what to copy to move this partition's state elsewhere, once closed).
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    fn db(&self) -> Result<&DB, StateError> {
        self.db.as_ref().ok_or(StateError::Closed)
    }

    fn ensure_keyspace(&mut self, keyspace: &str) -> Result<(), StateError> {
        if self.keyspaces.contains(keyspace) {
            return Ok(());
        }
        let opts = self.config.cf_options();
        self.db
            .as_mut()
            .ok_or(StateError::Closed)?
            .create_cf(keyspace, &opts)?;
        self.keyspaces.insert(keyspace.to_owned());
        Ok(())
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db()?.cf_handle(name).ok_or_else(|| {
            StateError::Corrupt(format!(
                "column family {name:?} missing from an open database"
            ))
        })
    }

    /// Scans `range` of column family `name`, which must exist.
    fn scan_cf(
        &self,
        name: &str,
        range: &KeyRange,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StateError> {
        let db = self.db()?;
        let cf = self.cf(name)?;
        let mut opts = ReadOptions::default();
        if let Bound::Excluded(end) = &range.end {
            opts.set_iterate_upper_bound(end.clone());
        }
        let mut it = db.raw_iterator_cf_opt(cf, opts);
        match &range.start {
            Bound::Included(s) | Bound::Excluded(s) => it.seek(s),
            Bound::Unbounded => it.seek_to_first(),
        }
        while let Some((k, v)) = it.item() {
            if range.is_past_end(k) {
                break;
            }
            if range.contains(k) && visit(k, v)?.is_break() {
                return Ok(());
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// Closes the database, swaps the restored copy in, and reopens. On failure the live database is whatever
    /// crash recovery would make of the directory, reopened if possible.
    fn swap_in_restored(&mut self) -> Result<(), StateError> {
        drop(self.db.take());
        let swapped = (|| {
            fsutil::remove_if_exists(&self.paths.db_old())?;
            fsutil::rename_durable(&self.paths.db(), &self.paths.db_old())?;
            fsutil::rename_durable(&self.paths.db_restoring(), &self.paths.db())?;
            fsutil::remove_if_exists(&self.paths.db_old())
        })();
        let reopened = recover_interrupted_restore(&self.paths)
            .and_then(|()| open_db(&self.paths.db(), &self.config));
        match (swapped, reopened) {
            (Ok(()), Ok((db, keyspaces))) => {
                self.db = Some(db);
                self.keyspaces = keyspaces;
                Ok(())
            }
            (Err(e), Ok((db, keyspaces))) => {
                self.db = Some(db);
                self.keyspaces = keyspaces;
                Err(e)
            }
            (_, Err(e)) => Err(e),
        }
    }
}

/// Opens the database at `path` with all its column families, creating it with the meta column family if new.
fn open_db(path: &Path, config: &RocksConfig) -> Result<(DB, BTreeSet<String>), StateError> {
    let opts = config.db_options();
    let mut names: BTreeSet<String> = if path.join("CURRENT").exists() {
        DB::list_cf(&opts, path)?.into_iter().collect()
    } else {
        BTreeSet::new()
    };
    names.insert(rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_owned());
    names.insert(META_KEYSPACE.to_owned());
    let descriptors = names
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(name, config.cf_options()));
    let db = DB::open_cf_descriptors(&opts, path, descriptors)?;
    let keyspaces = names
        .into_iter()
        .filter(|n| n != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && n != META_KEYSPACE)
        .collect();
    Ok((db, keyspaces))
}

/// Completes the state machine of a restore swap after a crash (see the module docs):
/// - `db` present: the swap finished or never started; drop any `db.old` / `db.restore.tmp` leftovers.
/// - `db` absent, `db.old` present: the crash hit between the two renames. `db.restore.tmp` was complete
///   before `db` was moved away, so roll forward with it; without it, roll back to `db.old`.
fn recover_interrupted_restore(paths: &PartitionPaths) -> Result<(), StateError> {
    let (db, old, restoring) = (paths.db(), paths.db_old(), paths.db_restoring());
    if !db.exists() && old.exists() {
        let source = if restoring.exists() { &restoring } else { &old };
        fsutil::rename_durable(source, &db)?;
    }
    fsutil::remove_if_exists(&old)?;
    fsutil::remove_if_exists(&restoring)
}

/// Fsyncs the small files RocksDB copied into a checkpoint (table files are hard links to already synced files)
/// and the directory itself, so the rename that publishes the checkpoint cannot outlive its contents.
fn sync_checkpoint_dir(dir: &Path) -> Result<(), StateError> {
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let path = entry.map_err(io_at(dir))?.path();
        if path.is_file() && path.extension().is_none_or(|ext| ext != "sst") {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_at(&path))?;
        }
    }
    fsutil::fsync_dir(dir)
}

impl PartitionStore for RocksPartitionStore {
    fn get(&self, keyspace: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        crate::batch::validate_keyspace(keyspace)?;
        if !self.keyspaces.contains(keyspace) {
            return Ok(None);
        }
        Ok(self
            .db()?
            .get_pinned_cf(self.cf(keyspace)?, key)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        keyspace: &str,
        range: &KeyRange,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), StateError> {
        crate::batch::validate_keyspace(keyspace)?;
        if !self.keyspaces.contains(keyspace) {
            return Ok(());
        }
        self.scan_cf(keyspace, range, visit)
    }

    fn write(&mut self, batch: WriteBatch) -> Result<(), StateError> {
        if batch.is_empty() {
            return Ok(());
        }
        let touched: BTreeSet<String> = batch.keyspaces().map(str::to_owned).collect();
        for keyspace in &touched {
            self.ensure_keyspace(keyspace)?;
        }
        let mut wb = rocksdb::WriteBatch::default();
        // Keys put earlier in this batch, per keyspace: a range delete must remove them too, and the database
        // iterator cannot see them yet.
        let mut pending: HashMap<&str, BTreeSet<&[u8]>> = HashMap::new();
        for op in batch.ops() {
            match op {
                BatchOp::Put {
                    keyspace,
                    key,
                    value,
                } => {
                    wb.put_cf(self.cf(keyspace)?, key, value);
                    pending
                        .entry(keyspace.as_str())
                        .or_default()
                        .insert(key.as_slice());
                }
                BatchOp::Delete { keyspace, key } => {
                    wb.delete_cf(self.cf(keyspace)?, key);
                    if let Some(keys) = pending.get_mut(keyspace.as_str()) {
                        keys.remove(key.as_slice());
                    }
                }
                BatchOp::DeleteRange { keyspace, range } => {
                    let cf = self.cf(keyspace)?;
                    // Deleting key by key (instead of a range tombstone) works for unbounded ranges and keeps
                    // reads free of range-tombstone overhead; range deletes here are per-entity and small.
                    let mut doomed: Vec<Vec<u8>> = Vec::new();
                    self.scan_cf(keyspace, range, &mut |k, _| {
                        doomed.push(k.to_vec());
                        Ok(std::ops::ControlFlow::Continue(()))
                    })?;
                    if let Some(keys) = pending.get_mut(keyspace.as_str()) {
                        keys.retain(|k| {
                            let hit = range.contains(k);
                            if hit {
                                doomed.push(k.to_vec());
                            }
                            !hit
                        });
                    }
                    for k in doomed {
                        wb.delete_cf(cf, k);
                    }
                }
            }
        }
        let meta = self.cf(META_KEYSPACE)?;
        for (source, position) in batch.positions() {
            wb.put_cf(meta, position_key(source), position.to_be_bytes());
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(self.config.sync_writes);
        self.db()?.write_opt(wb, &opts)?;
        Ok(())
    }

    fn positions(&self) -> Result<BTreeMap<String, i64>, StateError> {
        let mut out = BTreeMap::new();
        self.scan_cf(
            META_KEYSPACE,
            &KeyRange::prefix(POSITION_PREFIX),
            &mut |k, v| {
                let (source, position) = decode_position(k, v)?;
                out.insert(source, position);
                Ok(std::ops::ControlFlow::Continue(()))
            },
        )?;
        Ok(out)
    }

    fn approximate_size_bytes(&self) -> Result<u64, StateError> {
        let db = self.db()?;
        let mut total = 0u64;
        for name in self
            .keyspaces
            .iter()
            .map(String::as_str)
            .chain([META_KEYSPACE])
        {
            let cf = self.cf(name)?;
            for prop in [
                rocksdb::properties::TOTAL_SST_FILES_SIZE,
                rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES,
            ] {
                total += db.property_int_value_cf(cf, prop)?.unwrap_or(0);
            }
        }
        Ok(total)
    }

    fn checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        let target = self.paths.checkpoint(id);
        if target.exists() {
            return Err(StateError::CheckpointExists { id });
        }
        let tmp = fsutil::tmp_path(&target);
        fsutil::remove_if_exists(&tmp)?;
        // RocksDB stages its own work in `<path>.tmp`; clear a leftover of that too.
        fsutil::remove_if_exists(&fsutil::tmp_path(&tmp))?;
        Checkpoint::new(self.db()?)?.create_checkpoint(&tmp)?;
        sync_checkpoint_dir(&tmp)?;
        fsutil::rename_durable(&tmp, &target)
    }

    fn list_checkpoints(&self) -> Result<Vec<u64>, StateError> {
        ckdir::list_ids(&self.paths.checkpoints())
    }

    fn restore_checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        let source = self.paths.checkpoint(id);
        if !source.is_dir() {
            return Err(StateError::CheckpointNotFound { id });
        }
        let restoring = self.paths.db_restoring();
        fsutil::remove_if_exists(&restoring)?;
        fsutil::copy_dir_durable(&source, &restoring)?;
        self.swap_in_restored()
    }

    fn delete_checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        ckdir::delete(&self.paths.checkpoints(), id)
    }
}
