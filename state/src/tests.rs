//! Conformance tests run against both engines through the same generic functions, plus RocksDB-only tests for
//! persistence and crash recovery, and catalog tests.

use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::Path;

type TestResult = Result<(), StateError>;
type Dump = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Wallet {
    user_id: i64,
    currency: String,
    balance_minor: i64,
}

const KEYSPACES: [&str; 4] = ["users", "wallets", "lsn", "fraud"];

/// Every key/value of the test keyspaces, plus the positions under the pseudo-keyspace "@positions".
fn dump<S: PartitionStore>(store: &S) -> Result<Dump, StateError> {
    let mut out = Dump::new();
    for ks in KEYSPACES {
        out.insert(
            ks.to_owned(),
            store.scan_collect(ks, &KeyRange::all(), usize::MAX)?,
        );
    }
    let positions = store
        .positions()?
        .into_iter()
        .map(|(s, p)| (s.into_bytes(), p.to_be_bytes().to_vec()))
        .collect();
    out.insert("@positions".to_owned(), positions);
    Ok(out)
}

fn batch(
    ops: &[(&str, &str, Option<&str>)],
    positions: &[(&str, i64)],
) -> Result<WriteBatch, StateError> {
    let mut b = WriteBatch::new();
    for (ks, key, value) in ops {
        match value {
            Some(v) => b.put(ks, key.as_bytes(), v.as_bytes())?,
            None => b.delete(ks, key.as_bytes())?,
        }
    }
    for (source, position) in positions {
        b.set_position(source, *position);
    }
    Ok(b)
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

// ---- generic conformance tests -------------------------------------------------------------------------------

fn put_get_delete_scan<S: PartitionStore>(s: &mut S) -> TestResult {
    assert_eq!(
        s.get("users", b"u1")?,
        None,
        "never-written keyspace is empty"
    );
    s.write(batch(
        &[
            ("users", "u1", Some("alice")),
            ("users", "u2", Some("bob")),
            ("users", "u10", Some("carol")),
            ("users", "v1", Some("dave")),
            ("wallets", "u1", Some("w-of-u1")),
        ],
        &[],
    )?)?;
    assert_eq!(s.get("users", b"u1")?, Some(b"alice".to_vec()));
    assert_eq!(
        s.get("wallets", b"u1")?,
        Some(b"w-of-u1".to_vec()),
        "same key, separate keyspaces"
    );
    assert_eq!(s.get("fraud", b"u1")?, None);
    assert_eq!(
        s.scan_collect("users", &KeyRange::prefix(b"u"), usize::MAX)?,
        kv(&[("u1", "alice"), ("u10", "carol"), ("u2", "bob")])
    );
    assert_eq!(
        s.scan_collect("users", &KeyRange::between(b"u10", b"v1"), usize::MAX)?,
        kv(&[("u10", "carol"), ("u2", "bob")])
    );
    assert_eq!(
        s.scan_collect("users", &KeyRange::all(), 2)?,
        kv(&[("u1", "alice"), ("u10", "carol")])
    );
    assert_eq!(
        s.scan_collect("users", &KeyRange::between(b"x", b"a"), usize::MAX)?,
        vec![],
        "inverted range is empty"
    );

    s.write(batch(
        &[
            ("users", "u1", None),
            ("users", "u2", Some("bobby")),
            ("users", "nope", None),
        ],
        &[],
    )?)?;
    assert_eq!(s.get("users", b"u1")?, None);
    assert_eq!(s.get("users", b"u2")?, Some(b"bobby".to_vec()));
    assert_eq!(
        s.get("wallets", b"u1")?,
        Some(b"w-of-u1".to_vec()),
        "delete stays in its keyspace"
    );

    let wallet = Wallet {
        user_id: 7,
        currency: "EUR".into(),
        balance_minor: -1250,
    };
    let mut b = WriteBatch::new();
    b.put_typed("wallets", b"w7", &wallet)?;
    s.write(b)?;
    assert_eq!(
        s.get_typed::<Wallet>("wallets", b"w7")?,
        Some(wallet.clone())
    );
    assert_eq!(
        s.scan_typed::<Wallet>("wallets", &KeyRange::prefix(b"w"))?,
        vec![(b"w7".to_vec(), wallet)]
    );
    assert!(
        matches!(
            s.get_typed::<String>("wallets", b"w7"),
            Err(StateError::Codec { .. })
        ),
        "wrong type"
    );
    assert!(
        matches!(
            s.get("__meta", b"x"),
            Err(StateError::InvalidKeyspace { .. })
        ),
        "reserved keyspace"
    );
    Ok(())
}

fn delete_range_sees_earlier_ops_in_batch<S: PartitionStore>(s: &mut S) -> TestResult {
    s.write(batch(
        &[
            ("fraud", "a/1", Some("1")),
            ("fraud", "a/2", Some("2")),
            ("fraud", "b/1", Some("3")),
        ],
        &[],
    )?)?;
    let mut b = WriteBatch::new();
    b.put("fraud", b"a/3", b"new")?;
    b.delete_range("fraud", KeyRange::prefix(b"a/"))?;
    b.put("fraud", b"a/4", b"after")?;
    s.write(b)?;
    assert_eq!(
        s.scan_collect("fraud", &KeyRange::all(), usize::MAX)?,
        kv(&[("a/4", "after"), ("b/1", "3")])
    );

    let mut b = WriteBatch::new();
    b.put("fraud", b"\xff\xff1", b"x")?;
    b.delete_range("fraud", KeyRange::prefix(b"\xff\xff"))?;
    s.write(b)?;
    assert_eq!(
        s.get("fraud", b"\xff\xff1")?,
        None,
        "prefix without successor deletes to the end"
    );
    assert_eq!(s.get("fraud", b"b/1")?, Some(b"3".to_vec()));
    Ok(())
}

fn batch_applies_data_and_positions_together<S: PartitionStore>(s: &mut S) -> TestResult {
    assert_eq!(s.positions()?, BTreeMap::new());
    s.write(batch(
        &[("users", "u1", Some("a")), ("wallets", "w1", Some("b"))],
        &[("users/0", 11), ("wallets/0", 5)],
    )?)?;
    s.write(batch(
        &[("users", "u2", Some("c"))],
        &[("users/0", 12), ("transactions/0", -1)],
    )?)?;
    let expected: BTreeMap<String, i64> =
        [("transactions/0", -1), ("users/0", 12), ("wallets/0", 5)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
    assert_eq!(
        s.positions()?,
        expected,
        "later batch overwrites only the sources it names"
    );
    assert_eq!(s.position("wallets/0")?, Some(5));
    assert_eq!(s.position("absent")?, None);

    let mut positions_only = WriteBatch::new();
    positions_only.set_position("users/0", 13);
    s.write(positions_only)?;
    assert_eq!(s.position("users/0")?, Some(13));

    // A batch that cannot be built never reaches the store: nothing of it is applied.
    let mut bad = WriteBatch::new();
    bad.put("users", b"u9", b"x")?;
    bad.set_position("users/0", 99);
    assert!(bad.put("Bad Name", b"k", b"v").is_err());
    assert_eq!(bad.len(), 1, "the rejected op is not in the batch");
    s.write(WriteBatch::new())?;
    assert_eq!(s.position("users/0")?, Some(13));
    Ok(())
}

fn checkpoint_restore_gives_exact_earlier_state<S: PartitionStore>(s: &mut S) -> TestResult {
    s.write(batch(
        &[("users", "u1", Some("v1")), ("wallets", "w1", Some("10"))],
        &[("users/0", 1)],
    )?)?;
    s.checkpoint(1)?;
    let at_1 = dump(s)?;

    s.write(batch(
        &[
            ("users", "u1", Some("v2")),
            ("wallets", "w1", None),
            ("lsn", "slot", Some("0/16B3748")),
        ],
        &[("users/0", 2), ("wallets/0", 7)],
    )?)?;
    s.checkpoint(2)?;
    let at_2 = dump(s)?;
    assert_ne!(at_1, at_2);

    s.write(batch(
        &[("users", "u3", Some("later")), ("fraud", "f", Some("x"))],
        &[("users/0", 3)],
    )?)?;
    assert_eq!(s.list_checkpoints()?, vec![1, 2]);

    s.restore_checkpoint(1)?;
    assert_eq!(dump(s)?, at_1);
    assert_eq!(
        s.get("lsn", b"slot")?,
        None,
        "keyspace created after the checkpoint is empty again"
    );

    s.restore_checkpoint(2)?;
    assert_eq!(dump(s)?, at_2);
    assert_eq!(
        s.list_checkpoints()?,
        vec![1, 2],
        "restore keeps the checkpoints"
    );

    s.write(batch(
        &[("users", "u4", Some("after-restore"))],
        &[("users/0", 4)],
    )?)?;
    assert_eq!(s.get("users", b"u4")?, Some(b"after-restore".to_vec()));
    s.checkpoint(3)?;
    s.restore_checkpoint(1)?;
    assert_eq!(
        dump(s)?,
        at_1,
        "checkpoint 1 untouched by later restores and writes"
    );

    assert!(matches!(
        s.checkpoint(2),
        Err(StateError::CheckpointExists { id: 2 })
    ));
    assert!(matches!(
        s.restore_checkpoint(99),
        Err(StateError::CheckpointNotFound { id: 99 })
    ));
    Ok(())
}

fn prune_keeps_last_k<S: PartitionStore>(s: &mut S) -> TestResult {
    for id in 1..=5 {
        s.write(batch(
            &[("users", "n", Some(&id.to_string()))],
            &[("users/0", id)],
        )?)?;
        s.checkpoint(id as u64)?;
    }
    assert_eq!(s.prune_checkpoints(2)?, vec![1, 2, 3]);
    assert_eq!(s.list_checkpoints()?, vec![4, 5]);
    assert_eq!(s.prune_checkpoints(2)?, Vec::<u64>::new());
    s.delete_checkpoint(4)?;
    assert_eq!(s.list_checkpoints()?, vec![5]);
    assert!(matches!(
        s.delete_checkpoint(4),
        Err(StateError::CheckpointNotFound { id: 4 })
    ));
    s.restore_checkpoint(5)?;
    assert_eq!(s.get("users", b"n")?, Some(b"5".to_vec()));
    assert!(matches!(
        s.restore_checkpoint(3),
        Err(StateError::CheckpointNotFound { id: 3 })
    ));
    Ok(())
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_engine {
            use super::*;
            $( #[test] fn $name() -> TestResult { super::$name(&mut MemoryPartitionStore::new()) } )*
        }
        mod rocks_engine {
            use super::*;
            $( #[test] fn $name() -> TestResult {
                let dir = tempdir();
                let mut store = open_rocks(dir.path(), 0)?;
                super::$name(&mut store)
            } )*
        }
    };
}

conformance!(
    put_get_delete_scan,
    delete_range_sees_earlier_ops_in_batch,
    batch_applies_data_and_positions_together,
    checkpoint_restore_gives_exact_earlier_state,
    prune_keeps_last_k,
);

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create temp dir")
}

fn open_rocks(root: &Path, partition: u32) -> Result<RocksPartitionStore, StateError> {
    RocksPartitionStore::open(&StateLayout::new(root), partition, RocksConfig::default())
}

// ---- engine-specific -------------------------------------------------------------------------------------------

#[test]
fn memory_size_is_sum_of_keys_and_values() -> TestResult {
    let mut s = MemoryPartitionStore::new();
    s.write(batch(
        &[("users", "ab", Some("cde")), ("wallets", "x", Some(""))],
        &[("src", 1)],
    )?)?;
    assert_eq!(s.approximate_size_bytes()?, 2 + 3 + 1 + (3 + 8));
    Ok(())
}

#[test]
fn rocks_size_grows_with_data() -> TestResult {
    let dir = tempdir();
    let mut s = open_rocks(dir.path(), 0)?;
    let empty = s.approximate_size_bytes()?;
    let mut b = WriteBatch::new();
    let value = vec![7u8; 1024];
    for i in 0..1024u32 {
        b.put("users", &i.to_be_bytes(), &value)?;
    }
    s.write(b)?;
    let full = s.approximate_size_bytes()?;
    assert!(full >= empty + (1 << 20), "empty={empty} full={full}");
    s.checkpoint(1)?; // flushes memtables to table files, which must still be counted
    let flushed = s.approximate_size_bytes()?;
    assert!(flushed > 1024, "flushed={flushed}");
    Ok(())
}

#[test]
fn rocks_reopen_persists_data_positions_and_checkpoints() -> TestResult {
    let dir = tempdir();
    {
        let mut s = open_rocks(dir.path(), 3)?;
        s.write(batch(
            &[("users", "u1", Some("a")), ("wallets", "w1", Some("b"))],
            &[("users/3", 42)],
        )?)?;
        s.checkpoint(1)?;
        s.write(batch(&[("users", "u1", Some("a2"))], &[("users/3", 43)])?)?;
    }
    assert!(dir.path().join("p-3/db/CURRENT").is_file());
    let mut s = open_rocks(dir.path(), 3)?;
    assert_eq!(s.get("users", b"u1")?, Some(b"a2".to_vec()));
    assert_eq!(s.get("wallets", b"w1")?, Some(b"b".to_vec()));
    assert_eq!(s.position("users/3")?, Some(43));
    assert_eq!(s.list_checkpoints()?, vec![1]);
    s.restore_checkpoint(1)?;
    drop(s);
    let s = open_rocks(dir.path(), 3)?;
    assert_eq!(
        s.get("users", b"u1")?,
        Some(b"a".to_vec()),
        "restore survives reopen"
    );
    assert_eq!(s.position("users/3")?, Some(42));
    Ok(())
}

#[test]
fn rocks_leftover_tmp_checkpoint_is_ignored_and_cleaned() -> TestResult {
    let dir = tempdir();
    let ckpts = dir.path().join("p-0/checkpoints");
    {
        let mut s = open_rocks(dir.path(), 0)?;
        s.write(batch(&[("users", "u1", Some("a"))], &[])?)?;
        s.checkpoint(1)?;
        // A crash during checkpoint 2 leaves a partial tmp directory behind.
        std::fs::create_dir_all(ckpts.join("2.tmp"))
            .map_err(|e| StateError::Corrupt(e.to_string()))?;
        std::fs::write(ckpts.join("2.tmp/MANIFEST-000001"), b"partial")
            .map_err(|e| StateError::Corrupt(e.to_string()))?;
        std::fs::create_dir_all(ckpts.join("002"))
            .map_err(|e| StateError::Corrupt(e.to_string()))?;
        assert_eq!(s.list_checkpoints()?, vec![1]);
        assert!(matches!(
            s.restore_checkpoint(2),
            Err(StateError::CheckpointNotFound { id: 2 })
        ));
        assert_eq!(
            CheckpointCatalog::new(StateLayout::new(dir.path())).partition_checkpoints(0)?,
            vec![1]
        );
    }
    let mut s = open_rocks(dir.path(), 0)?;
    assert!(!ckpts.join("2.tmp").exists(), "reopen removes the leftover");
    s.checkpoint(2)?;
    assert_eq!(s.list_checkpoints()?, vec![1, 2]);
    Ok(())
}

#[test]
fn rocks_interrupted_restore_rolls_forward_or_is_discarded() -> TestResult {
    let dir = tempdir();
    let p = dir.path().join("p-0");
    {
        let mut s = open_rocks(dir.path(), 0)?;
        s.write(batch(
            &[("users", "u1", Some("checkpointed"))],
            &[("users/0", 1)],
        )?)?;
        s.checkpoint(1)?;
        s.write(batch(&[("users", "u1", Some("live"))], &[("users/0", 2)])?)?;
    }
    // Crash while copying the checkpoint: the partial copy must be discarded, live state kept.
    std::fs::create_dir_all(p.join("db.restore.tmp"))
        .map_err(|e| StateError::Corrupt(e.to_string()))?;
    {
        let s = open_rocks(dir.path(), 0)?;
        assert_eq!(s.get("users", b"u1")?, Some(b"live".to_vec()));
        assert!(!p.join("db.restore.tmp").exists());
    }
    // Crash between moving the live db away and moving the complete copy in: roll forward.
    crate::fsutil::copy_dir_durable(&p.join("checkpoints/1"), &p.join("db.restore.tmp"))?;
    std::fs::rename(p.join("db"), p.join("db.old"))
        .map_err(|e| StateError::Corrupt(e.to_string()))?;
    let s = open_rocks(dir.path(), 0)?;
    assert_eq!(s.get("users", b"u1")?, Some(b"checkpointed".to_vec()));
    assert_eq!(s.position("users/0")?, Some(1));
    assert!(!p.join("db.old").exists() && !p.join("db.restore.tmp").exists());
    Ok(())
}

/// Child half of `rocks_abort_keeps_batches_whole`: writes batches until killed by `abort`.
#[test]
#[ignore = "run only as a child process by rocks_abort_keeps_batches_whole"]
fn abort_child() -> TestResult {
    let Some(root) = std::env::var_os("LEDGERSTREAM_STATE_ABORT_DIR") else {
        return Ok(());
    };
    let mut s = open_rocks(Path::new(&root), 0)?;
    for i in 1..=500i64 {
        let mut b = WriteBatch::new();
        b.put("users", &i.to_be_bytes(), b"u")?;
        b.put("wallets", &i.to_be_bytes(), b"w")?;
        b.set_position("src", i);
        s.write(b)?;
    }
    std::process::abort();
}

#[test]
fn rocks_abort_keeps_batches_whole() -> TestResult {
    let dir = tempdir();
    let exe = std::env::current_exe().map_err(|e| StateError::Corrupt(e.to_string()))?;
    let status = std::process::Command::new(exe)
        .args(["--exact", "tests::abort_child", "--ignored", "--nocapture"])
        .env("LEDGERSTREAM_STATE_ABORT_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| StateError::Corrupt(e.to_string()))?;
    assert!(!status.success(), "child must die by abort, got {status}");
    let s = open_rocks(dir.path(), 0)?;
    let position = s.position("src")?.unwrap_or(0);
    assert_eq!(
        position, 500,
        "un-synced writes survive a process abort via the WAL"
    );
    let users = s.scan_collect("users", &KeyRange::all(), usize::MAX)?;
    let wallets = s.scan_collect("wallets", &KeyRange::all(), usize::MAX)?;
    assert_eq!(users.len() as i64, position);
    assert_eq!(wallets.len() as i64, position);
    Ok(())
}

// ---- catalog ---------------------------------------------------------------------------------------------------

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero")
}

#[test]
fn catalog_latest_complete_requires_marker_and_all_partitions() -> TestResult {
    let dir = tempdir();
    let layout = StateLayout::new(dir.path());
    let catalog = CheckpointCatalog::new(layout.clone());
    let mut p0 = open_rocks(dir.path(), 0)?;
    let mut p1 = open_rocks(dir.path(), 1)?;
    assert_eq!(catalog.latest_complete(&[0, 1])?, None);

    for id in 1..=3 {
        p0.checkpoint(id)?;
        p1.checkpoint(id)?;
    }
    p0.checkpoint(4)?; // partition 1 never finished checkpoint 4
    catalog.write_marker(1, b"manifest-1")?;
    catalog.write_marker(2, b"manifest-2")?;
    catalog.write_marker(4, b"manifest-4")?; // marker present, partition 1 missing
    // checkpoint 3: both partitions, no marker
    std::fs::write(layout.markers_dir().join("5.complete.tmp"), b"torn")
        .map_err(|e| StateError::Corrupt(e.to_string()))?;

    assert_eq!(catalog.partitions()?, vec![0, 1]);
    assert_eq!(
        catalog.checkpoints_by_partition()?,
        BTreeMap::from([(0, vec![1, 2, 3, 4]), (1, vec![1, 2, 3])])
    );
    assert_eq!(catalog.marker_ids()?, vec![1, 2, 4]);
    assert_eq!(catalog.complete_ids(&[0, 1])?, vec![1, 2]);
    assert_eq!(
        catalog.latest_complete(&[0, 1])?,
        Some(CompleteCheckpoint {
            id: 2,
            marker: b"manifest-2".to_vec()
        })
    );
    assert_eq!(
        catalog.latest_complete(&[0])?,
        Some(CompleteCheckpoint {
            id: 4,
            marker: b"manifest-4".to_vec()
        })
    );
    assert_eq!(
        catalog.latest_complete(&[0, 1, 2])?,
        None,
        "partition 2 has no checkpoints at all"
    );

    catalog.write_marker(3, b"manifest-3")?;
    assert_eq!(catalog.latest_complete(&[0, 1])?.map(|c| c.id), Some(3));
    catalog.write_marker(3, b"manifest-3b")?;
    assert_eq!(
        catalog.read_marker(3)?,
        Some(b"manifest-3b".to_vec()),
        "rewrite replaces atomically"
    );
    assert_eq!(catalog.read_marker(9)?, None);
    Ok(())
}

#[test]
fn catalog_prune_keeps_last_k_complete_and_everything_newer() -> TestResult {
    let dir = tempdir();
    let layout = StateLayout::new(dir.path());
    let catalog = CheckpointCatalog::new(layout.clone());
    let mut p0 = open_rocks(dir.path(), 0)?;
    let mut p1 = open_rocks(dir.path(), 1)?;
    for id in 1..=6 {
        p0.checkpoint(id)?;
        if id != 3 {
            p1.checkpoint(id)?;
        }
    }
    // Complete: 1, 2, 4, 5. 3 has a marker but misses partition 1. 6 is in progress (no marker).
    for id in 1..=5 {
        catalog.write_marker(id, format!("m{id}").as_bytes())?;
    }
    assert_eq!(catalog.complete_ids(&[0, 1])?, vec![1, 2, 4, 5]);
    assert_eq!(
        catalog.prune(&[0, 1], nz(10))?,
        PruneReport {
            markers: vec![3],
            partition_checkpoints: vec![(0, 3)],
        },
        "incomplete ids older than the latest complete are garbage even when keeping everything"
    );

    let report = catalog.prune(&[0, 1], nz(2))?;
    assert_eq!(report.markers, vec![1, 2]);
    assert_eq!(
        report.partition_checkpoints,
        vec![(0, 1), (0, 2), (1, 1), (1, 2)]
    );
    assert_eq!(catalog.marker_ids()?, vec![4, 5]);
    assert_eq!(
        catalog.checkpoints_by_partition()?,
        BTreeMap::from([(0, vec![4, 5, 6]), (1, vec![4, 5, 6])])
    );
    assert_eq!(catalog.latest_complete(&[0, 1])?.map(|c| c.id), Some(5));
    assert_eq!(
        p0.list_checkpoints()?,
        vec![4, 5, 6],
        "the store sees the catalog's deletions"
    );

    let report = catalog.prune(&[0, 1], nz(1))?;
    assert_eq!(report.markers, vec![4]);
    assert_eq!(
        catalog.checkpoints_by_partition()?,
        BTreeMap::from([(0, vec![5, 6]), (1, vec![5, 6])])
    );
    p0.restore_checkpoint(5)?;
    Ok(())
}

#[test]
fn catalog_prune_protecting_keeps_protected_ids() -> TestResult {
    let dir = tempdir();
    let catalog = CheckpointCatalog::new(StateLayout::new(dir.path()));
    let mut p0 = open_rocks(dir.path(), 0)?;
    for id in 1..=4 {
        p0.checkpoint(id)?;
        catalog.write_marker(id, b"m")?;
    }
    let report = catalog.prune_protecting(&[0], nz(1), &[2].into())?;
    assert_eq!(report.markers, vec![1, 3]);
    assert_eq!(p0.list_checkpoints()?, vec![2, 4]);
    assert_eq!(catalog.marker_ids()?, vec![2, 4]);
    Ok(())
}

#[test]
fn catalog_prune_without_complete_checkpoint_removes_nothing() -> TestResult {
    let dir = tempdir();
    let catalog = CheckpointCatalog::new(StateLayout::new(dir.path()));
    let mut p0 = open_rocks(dir.path(), 0)?;
    p0.checkpoint(1)?;
    catalog.write_marker(2, b"x")?;
    assert_eq!(catalog.prune(&[0], nz(1))?, PruneReport::default());
    assert_eq!(p0.list_checkpoints()?, vec![1]);
    assert_eq!(catalog.marker_ids()?, vec![2]);
    Ok(())
}

/// Rough numbers for the report, not an assertion of speed: `cargo test -p ledgerstream-state -- --ignored
/// measure_rocks --nocapture`.
#[test]
#[ignore = "measurement, prints timings"]
fn measure_rocks() -> TestResult {
    use std::time::Instant;
    let dir = tempdir();
    let mut s = open_rocks(dir.path(), 0)?;
    let (batches, per_batch) = (200i64, 500i64);
    let value = vec![42u8; 100];
    let started = Instant::now();
    for b in 0..batches {
        let mut batch = WriteBatch::new();
        for i in 0..per_batch {
            batch.put("users", &(b * per_batch + i).to_be_bytes(), &value)?;
        }
        batch.set_position("users/0", (b + 1) * per_batch);
        s.write(batch)?;
    }
    let write = started.elapsed();
    let started = Instant::now();
    s.checkpoint(1)?;
    let checkpoint = started.elapsed();
    let size = s.approximate_size_bytes()?;
    let started = Instant::now();
    s.restore_checkpoint(1)?;
    let restore = started.elapsed();
    assert_eq!(s.position("users/0")?, Some(batches * per_batch));
    let n = batches * per_batch;
    println!(
        "rocks: {n} puts of 108 B in batches of {per_batch}: {:.0} puts/s; checkpoint {checkpoint:?}; \
         restore {restore:?}; approximate size {size} B",
        n as f64 / write.as_secs_f64()
    );
    Ok(())
}
