//! Integration-style tests of the sink against a real catalog: sqlite + local filesystem, and sqlite + S3 (moto).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iceberg::spec::{Literal, PrimitiveLiteral};

use crate::types::CheckpointId;
use crate::value::{ColumnSpec, ColumnType, Value};

use super::catalog::{CatalogConfig, S3Config, SinkCatalog};
use super::commit::{
    CommitMeta, CommitOutcome, PendingCommit, commit_files, commit_pending, last_committed,
    write_rows,
};
use super::error::SinkError;
use super::testutil::*;

const CHUNK: usize = 64;

/// Writes `ids` as one checkpoint of `writer` and commits it.
async fn write_commit(
    cat: &SinkCatalog,
    writer: &str,
    cp: u64,
    ids: std::ops::Range<i64>,
) -> CommitOutcome {
    let def = tx_def();
    let table = cat.load_table(&def.name).await.expect("load");
    let m = meta(writer, cp, ids.end);
    let written = write_rows(&table, &def, &m, &tx_rows(ids), CHUNK)
        .await
        .expect("write");
    commit_files(cat, &def.name, written.files, &m)
        .await
        .expect("commit")
}

fn committed(o: CommitOutcome) -> i64 {
    match o {
        CommitOutcome::Committed(id) => id,
        other => panic!("expected Committed, got {other:?}"),
    }
}

fn expected(ids: impl IntoIterator<Item = i64>) -> Vec<TxOut> {
    let mut v: Vec<TxOut> = ids.into_iter().map(TxOut::expected).collect();
    v.sort();
    v
}

/// Rows per partition directory, from the committed files.
fn rows_per_day(files: &[(String, u64)]) -> BTreeMap<String, u64> {
    let mut per_day = BTreeMap::new();
    for (path, count) in files {
        let day = path
            .split('/')
            .find_map(|seg| seg.strip_prefix("created_at_day="))
            .unwrap_or_else(|| panic!("{path} is not in a day partition"));
        *per_day.entry(day.to_string()).or_insert(0) += count;
    }
    per_day
}

#[tokio::test]
async fn three_checkpoints_read_back_exactly_and_partitioned_by_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = embedded(dir.path()).await;
    let def = tx_def();
    cat.ensure_table(&def).await.expect("ensure");

    let ranges = [0..100, 100..250, 250..300];
    let mut snapshots = Vec::new();
    for (i, ids) in ranges.iter().cloned().enumerate() {
        let cp = i as u64 + 1;
        let table = cat.load_table(&def.name).await.expect("load");
        let m = meta("w1", cp, ids.end);
        let written = write_rows(&table, &def, &m, &tx_rows(ids.clone()), CHUNK)
            .await
            .expect("write");
        // One file per day partition, each holding only that day's event times.
        assert_eq!(written.files.len(), 3);
        assert_eq!(written.record_count(), (ids.end - ids.start) as u64);
        for f in &written.files {
            assert!(
                f.file_path().contains(&format!("w1-cp{cp}-")),
                "{}",
                f.file_path()
            );
            let day = match f.partition().fields() {
                [Some(Literal::Primitive(PrimitiveLiteral::Int(d)))] => *d,
                other => panic!("unexpected partition {other:?}"),
            };
            let bound = |m: &std::collections::HashMap<i32, iceberg::spec::Datum>| match m
                .get(&4)
                .map(|d| d.literal())
            {
                Some(PrimitiveLiteral::Long(v)) => *v,
                other => panic!("no created_at bound: {other:?}"),
            };
            let start = i64::from(day) * DAY_US;
            assert!(bound(f.lower_bounds()) >= start && bound(f.upper_bounds()) < start + DAY_US);
            assert!((BASE_DAY..BASE_DAY + 3).contains(&day));
        }
        let sid = committed(
            commit_files(&cat, &def.name, written.files, &m)
                .await
                .expect("commit"),
        );
        snapshots.push((sid, m));
    }

    let table = cat.load_table(&def.name).await.expect("load");
    assert_eq!(tx_out(&scan(&table).await), expected(0..300));

    let files = planned_files(&table).await;
    assert_eq!(files.len(), 9);
    assert_eq!(
        rows_per_day(&files),
        BTreeMap::from([
            ("2024-01-01".to_string(), 100),
            ("2024-01-02".to_string(), 100),
            ("2024-01-03".to_string(), 100),
        ])
    );

    // Every snapshot carries its checkpoint's meta; the last one is what recovery finds.
    for (sid, m) in &snapshots {
        let snap = table.metadata().snapshot_by_id(*sid).expect("snapshot");
        assert_eq!(
            CommitMeta::from_snapshot(snap).expect("meta").as_ref(),
            Some(m)
        );
        let props = &snap.summary().additional_properties;
        assert_eq!(
            props.get("ledgerstream.writer-id").map(String::as_str),
            Some("w1")
        );
        assert_eq!(
            props.get("ledgerstream.offsets").map(String::as_str),
            Some(
                format!(
                    r#"{{"fintech.public.transactions":{{"0":{},"1":{}}}}}"#,
                    m.offsets["fintech.public.transactions"][&crate::types::PartitionId(0)].0,
                    m.offsets["fintech.public.transactions"][&crate::types::PartitionId(1)].0
                )
                .as_str()
            )
        );
    }
    let (last, sid) = last_committed(&table, "w1").expect("walk").expect("found");
    assert_eq!((&last, sid), (&snapshots[2].1, snapshots[2].0));
    assert_eq!(last.checkpoint_id, CheckpointId(3));
    assert_eq!(last_committed(&table, "nobody").expect("walk"), None);
}

#[tokio::test]
async fn committing_the_same_checkpoint_twice_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = embedded(dir.path()).await;
    cat.ensure_table(&tx_def()).await.expect("ensure");

    let sid = committed(write_commit(&cat, "w1", 1, 0..100).await);
    // A replay rewrites the same rows into new files; the commit must still be skipped.
    assert_eq!(
        write_commit(&cat, "w1", 1, 0..100).await,
        CommitOutcome::AlreadyCommitted(sid)
    );
    // An older checkpoint of the same writer is covered by the newer one.
    assert_eq!(
        write_commit(&cat, "w1", 0, 500..510).await,
        CommitOutcome::AlreadyCommitted(sid)
    );
    let table = cat.load_table("transactions").await.expect("load");
    assert_eq!(table.metadata().snapshots().count(), 1);
    assert_eq!(tx_out(&scan(&table).await), expected(0..100));

    // Nothing written and nothing committed: no empty snapshot either.
    let m = meta("w1", 2, 100);
    assert_eq!(
        commit_files(&cat, "transactions", Vec::new(), &m)
            .await
            .expect("empty"),
        CommitOutcome::NothingToCommit
    );
    let table = cat.load_table("transactions").await.expect("load");
    assert_eq!(table.metadata().snapshots().count(), 1);
}

#[tokio::test]
async fn last_committed_finds_our_checkpoint_below_another_writers_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = embedded(dir.path()).await;
    cat.ensure_table(&tx_def()).await.expect("ensure");

    let ours = committed(write_commit(&cat, "w1", 1, 0..50).await);
    committed(write_commit(&cat, "w2", 7, 50..80).await);
    let theirs = committed(write_commit(&cat, "w2", 8, 80..90).await);

    let table = cat.load_table("transactions").await.expect("load");
    assert_eq!(table.metadata().current_snapshot_id(), Some(theirs));
    let (m, sid) = last_committed(&table, "w1").expect("walk").expect("found");
    assert_eq!((m, sid), (meta("w1", 1, 50), ours));
    let (m, _) = last_committed(&table, "w2").expect("walk").expect("found");
    assert_eq!(m.checkpoint_id, CheckpointId(8));

    assert_eq!(
        write_commit(&cat, "w1", 1, 0..50).await,
        CommitOutcome::AlreadyCommitted(ours)
    );
    committed(write_commit(&cat, "w1", 2, 90..100).await);
    let table = cat.load_table("transactions").await.expect("load");
    assert_eq!(tx_out(&scan(&table).await), expected(0..100));
    assert_eq!(table.metadata().snapshots().count(), 4);
}

#[tokio::test]
async fn pending_commit_round_trips_and_recovery_commits_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let def = tx_def();
    let bytes = {
        let cat = embedded(dir.path()).await;
        cat.ensure_table(&def).await.expect("ensure");
        committed(write_commit(&cat, "w1", 1, 0..40).await);

        let table = cat.load_table(&def.name).await.expect("load");
        let m = meta("w1", 2, 140);
        let written = write_rows(&table, &def, &m, &tx_rows(40..140), CHUNK)
            .await
            .expect("write");
        let serialized = written.serialize(&table).expect("serialize");
        let decoded: Vec<_> = serialized
            .iter()
            .map(|s| s.decode(&table).expect("decode"))
            .collect();
        assert_eq!(decoded, written.files);
        let pending = PendingCommit {
            meta: m,
            tables: BTreeMap::from([(def.name.clone(), serialized)]),
        };
        let bytes = pending.to_bytes().expect("bytes");
        assert_eq!(PendingCommit::from_bytes(&bytes).expect("decode"), pending);
        bytes
        // "Crash": the catalog and the written files' handles go away before any commit.
    };

    let cat = embedded(dir.path()).await;
    let pending = PendingCommit::from_bytes(&bytes).expect("decode");
    let outcomes = commit_pending(&cat, &pending).await.expect("recover");
    let sid = committed(outcomes[&def.name]);
    // Crash after the commit but before it was acknowledged: recovery runs again and must not duplicate.
    let again = commit_pending(&cat, &pending).await.expect("recover again");
    assert_eq!(again[&def.name], CommitOutcome::AlreadyCommitted(sid));

    let table = cat.load_table(&def.name).await.expect("load");
    assert_eq!(tx_out(&scan(&table).await), expected(0..140));
    assert_eq!(table.metadata().snapshots().count(), 2);
    assert_eq!(
        last_committed(&table, "w1").expect("walk").map(|(m, _)| m),
        Some(pending.meta)
    );
    assert!(matches!(
        PendingCommit::from_bytes(b"{not json"),
        Err(SinkError::InvalidPendingCommit { .. })
    ));
}

#[tokio::test]
async fn ensure_table_adds_missing_columns_and_old_rows_read_null() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = embedded(dir.path()).await;
    let v1 = tx_def();
    cat.ensure_table(&v1).await.expect("ensure v1");
    committed(write_commit(&cat, "w1", 1, 0..10).await);

    let mut v2 = v1.clone();
    v2.columns
        .push(ColumnSpec::new("channel", ColumnType::Text, true));
    v2.columns
        .push(ColumnSpec::new("fee", ColumnType::Int64, true));
    let table = cat.ensure_table(&v2).await.expect("ensure v2");
    let fields: Vec<(i32, String, bool)> = table
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.id, f.name.clone(), f.required))
        .collect();
    assert_eq!(
        fields[4..],
        [
            (5, "channel".to_string(), false),
            (6, "fee".to_string(), false)
        ]
    );
    let schema_id = table.metadata().current_schema_id();

    let rows: Vec<Vec<Value>> = (10..20)
        .map(|id| {
            let mut r = tx_row(id);
            r.push(Value::Text("web".into()));
            r.push(Value::Int64(id * 3));
            r
        })
        .collect();
    let m = meta("w1", 2, 20);
    let written = write_rows(&table, &v2, &m, &rows, CHUNK)
        .await
        .expect("write v2");
    committed(
        commit_files(&cat, &v2.name, written.files, &m)
            .await
            .expect("commit v2"),
    );

    // A writer still on the old definition neither fails nor changes the table; its rows get nulls.
    let table = cat.ensure_table(&v1).await.expect("ensure v1 again");
    assert_eq!(table.metadata().current_schema_id(), schema_id);
    committed(write_commit(&cat, "w1", 3, 20..25).await);

    let table = cat.load_table(&v1.name).await.expect("load");
    let batches = scan(&table).await;
    assert_eq!(tx_out(&batches), expected(0..25));
    let mut extra: Vec<(i64, Option<String>, Option<i64>)> = Vec::new();
    for b in &batches {
        use arrow_array::Array;
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int64Type;
        let ids = b
            .column_by_name("id")
            .expect("id")
            .as_primitive::<Int64Type>();
        let ch = b
            .column_by_name("channel")
            .expect("channel")
            .as_string::<i32>();
        let fee = b
            .column_by_name("fee")
            .expect("fee")
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            extra.push((
                ids.value(i),
                (!ch.is_null(i)).then(|| ch.value(i).to_string()),
                (!fee.is_null(i)).then(|| fee.value(i)),
            ));
        }
    }
    extra.sort();
    let want: Vec<(i64, Option<String>, Option<i64>)> = (0..25)
        .map(|id| {
            if (10..20).contains(&id) {
                (id, Some("web".to_string()), Some(id * 3))
            } else {
                (id, None, None)
            }
        })
        .collect();
    assert_eq!(extra, want);

    // Changing a column's type is not add-only evolution.
    let mut retyped = v1.clone();
    retyped.columns[0].ty = ColumnType::Text;
    let err = cat.ensure_table(&retyped).await.expect_err("conflict");
    assert!(matches!(err, SinkError::SchemaConflict { ref column, .. } if column == "id"));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn bad_rows_fail_typed_before_any_file_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = embedded(dir.path()).await;
    let def = tx_def();
    let table = cat.ensure_table(&def).await.expect("ensure");
    let mut rows = tx_rows(0..3);
    rows[2][3] = Value::Null;
    let err = write_rows(&table, &def, &meta("w1", 1, 3), &rows, CHUNK)
        .await
        .expect_err("null event time");
    assert!(matches!(err, SinkError::Batch { .. }));
    assert!(!err.is_retryable());
    let data_dir = dir.path().join("warehouse");
    let parquet_files = walk(&data_dir)
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .count();
    assert_eq!(parquet_files, 0);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_newer_epoch_fences_an_older_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = embedded(dir.path()).await;
    let def = tx_def();
    cat.ensure_table(&def).await.expect("ensure");
    let table = cat.load_table(&def.name).await.expect("load");

    let mut new_gen = meta("w1", 5, 10);
    new_gen.epoch = Some(2);
    let written = write_rows(&table, &def, &new_gen, &tx_rows(0..10), CHUNK)
        .await
        .expect("write");
    committed(
        commit_files(&cat, &def.name, written.files, &new_gen)
            .await
            .expect("commit"),
    );

    let mut stale = meta("w1", 6, 20);
    stale.epoch = Some(1);
    let written = write_rows(&table, &def, &stale, &tx_rows(10..20), CHUNK)
        .await
        .expect("write");
    let err = commit_files(&cat, &def.name, written.files, &stale)
        .await
        .expect_err("fenced");
    assert!(matches!(
        err,
        SinkError::Fenced {
            epoch: 1,
            newer_epoch: 2,
            ..
        }
    ));
    assert!(!err.is_retryable());
    let table = cat.load_table(&def.name).await.expect("load");
    assert_eq!(tx_out(&scan(&table).await), expected(0..10));
}

/// A moto S3 server started by the test and killed (by its own pid) when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let start = 40_000 + (std::process::id() % 20_000) as u16;
    (start..u16::MAX)
        .chain(40_000..start)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port above 40000")
}

fn start_moto() -> Moto {
    let port = free_port();
    // moto comes from the test venv (stack/requirements.txt), installed by stack/bootstrap.sh.
    let cache = std::env::var_os("LEDGERSTREAM_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/ledgerstream")
        });
    let child = Command::new(cache.join("venv/bin/python"))
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto in the venv (run stack/bootstrap.sh); this test needs it");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not listen on {port} within 60s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// Creates a bucket with a plain unsigned PUT (moto does not check signatures).
fn create_bucket(port: u16, bucket: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect moto");
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
}

#[tokio::test]
async fn s3_warehouse_on_moto_commits_exactly_once() {
    let moto = start_moto();
    create_bucket(moto.port, "ledgerstream-test");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = CatalogConfig::Sql {
        uri: format!(
            "sqlite:{}?mode=rwc",
            dir.path().join("catalog.db").display()
        ),
        warehouse: "s3://ledgerstream-test/warehouse".to_string(),
        s3: Some(S3Config {
            endpoint: Some(format!("http://127.0.0.1:{}", moto.port)),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            region: "us-east-1".into(),
            path_style_access: true,
        }),
    };
    let cat = SinkCatalog::connect(&config, "fintech")
        .await
        .expect("connect");
    let def = tx_def();
    let table = cat.ensure_table(&def).await.expect("ensure");
    assert!(
        table
            .metadata()
            .location()
            .starts_with("s3://ledgerstream-test/warehouse/"),
        "{}",
        table.metadata().location()
    );

    let sid1 = committed(write_commit(&cat, "w1", 1, 0..60).await);
    let table = cat.load_table(&def.name).await.expect("load");
    let m = meta("w1", 2, 120);
    let written = write_rows(&table, &def, &m, &tx_rows(60..120), CHUNK)
        .await
        .expect("write");
    let pending = PendingCommit {
        meta: m,
        tables: BTreeMap::from([(def.name.clone(), written.serialize(&table).expect("ser"))]),
    };
    let pending = PendingCommit::from_bytes(&pending.to_bytes().expect("bytes")).expect("decode");
    let sid2 = committed(commit_pending(&cat, &pending).await.expect("commit")[&def.name]);
    assert_eq!(
        commit_pending(&cat, &pending).await.expect("again")[&def.name],
        CommitOutcome::AlreadyCommitted(sid2)
    );
    assert_eq!(
        write_commit(&cat, "w1", 1, 0..60).await,
        CommitOutcome::AlreadyCommitted(sid1)
    );

    let table = cat.load_table(&def.name).await.expect("load");
    assert_eq!(tx_out(&scan(&table).await), expected(0..120));
    let files = planned_files(&table).await;
    assert!(
        files
            .iter()
            .all(|(p, _)| p.starts_with("s3://ledgerstream-test/"))
    );
    assert_eq!(rows_per_day(&files).values().sum::<u64>(), 120);
    assert_eq!(rows_per_day(&files).len(), 3);
}

/// Throughput of writing and committing 1M small rows in 10 checkpoints. Run explicitly:
/// `cargo test --lib sink::tests::throughput -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "measurement, not a check; run explicitly"]
async fn throughput_1m_small_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = embedded(dir.path()).await;
    let def = tx_def();
    cat.ensure_table(&def).await.expect("ensure");
    const PER_CP: i64 = 100_000;
    const CPS: i64 = 10;
    let batches: Vec<Vec<Vec<Value>>> = (0..CPS)
        .map(|c| tx_rows(c * PER_CP..(c + 1) * PER_CP))
        .collect();

    let (mut t_write, mut t_commit) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    for (c, rows) in batches.iter().enumerate() {
        let m = meta("bench", c as u64 + 1, (c as i64 + 1) * PER_CP);
        let t0 = Instant::now();
        let table = cat.load_table(&def.name).await.expect("load");
        let written = write_rows(&table, &def, &m, rows, 65_536)
            .await
            .expect("write");
        let t1 = Instant::now();
        committed(
            commit_files(&cat, &def.name, written.files, &m)
                .await
                .expect("commit"),
        );
        t_write += t1 - t0;
        t_commit += t1.elapsed();
    }
    let total = start.elapsed();
    let n = (PER_CP * CPS) as f64;
    println!(
        "THROUGHPUT rows={} total={:.2}s rows/s={:.0} write(rows->arrow->parquet)={:.2}s commit={:.3}s ({:.1} ms/commit) build={}",
        n,
        total.as_secs_f64(),
        n / total.as_secs_f64(),
        t_write.as_secs_f64(),
        t_commit.as_secs_f64(),
        t_commit.as_secs_f64() * 1000.0 / CPS as f64,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let table = cat.load_table(&def.name).await.expect("load");
    let read: usize = scan(&table).await.iter().map(|b| b.num_rows()).sum();
    assert_eq!(read as f64, n);
}
