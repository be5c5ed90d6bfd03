//! Shared harness for the integration tests: an isolated native stack per test (own data dir, own ports), torn
//! down on drop. Nothing here skips: if a service cannot start, the test fails with the stack's logs.
#![allow(dead_code)]

pub mod pg;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("LEDGERSTREAM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ledgerstream")
        })
}

pub fn venv_python() -> PathBuf {
    cache_dir().join("venv/bin/python")
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests that start their servers at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One native stack: PostgreSQL + tansu + Kafka Connect/Debezium, on private ports under a temp dir.
pub struct Stack {
    pub dir: PathBuf,
    pub pg_port: u16,
    pub kafka_port: u16,
    pub partitions: u32,
    /// Keep the stack dir after the test for debugging (LS_KEEP_STACK=1).
    keep: bool,
}

impl Stack {
    pub fn start(name: &str, partitions: u32) -> Stack {
        let dir = std::env::temp_dir().join(format!("ls-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("stack dir");
        let stack = Stack {
            dir,
            pg_port: free_port(),
            kafka_port: free_port(),
            partitions,
            keep: std::env::var_os("LS_KEEP_STACK").is_some(),
        };
        let mut out = stack.script(&["up"]);
        if !out.status.success() {
            // One retry from a wiped stack: a JVM that dies while starting (seen once in a few hundred starts on
            // this 2-core machine, with an empty log) is an environment hiccup, not what these tests examine. The
            // first failure is still printed.
            let logs = stack.script(&["logs", "--no-follow"]);
            eprintln!(
                "stack up failed once ({}), retrying:\n{}\n--- logs\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&logs.stdout),
            );
            let _ = stack.script(&["down", "--wipe"]);
            out = stack.script(&["up"]);
        }
        if !out.status.success() {
            let logs = stack.script(&["logs", "--no-follow"]);
            panic!(
                "stack up failed ({}):\n{}\n{}\n--- logs\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr),
            );
        }
        stack
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(repo_root().join("stack/stack.sh"))
            .args(args)
            .env("LS_STACK_DIR", &self.dir)
            .env("LS_PG_PORT", self.pg_port.to_string())
            .env("LS_KAFKA_PORT", self.kafka_port.to_string())
            .env("LS_PARTITIONS", self.partitions.to_string())
            .output()
            .expect("run stack/stack.sh")
    }

    /// Runs a stack.sh subcommand and asserts it succeeded.
    pub fn run(&self, args: &[&str]) -> String {
        check(self.script(args), &format!("stack.sh {}", args.join(" ")))
    }

    pub fn pg_url(&self) -> String {
        format!(
            "postgres://ledgerstream:ledgerstream@127.0.0.1:{}/fintech",
            self.pg_port
        )
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// Runs SQL through psql against the source database and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.pg_url(),
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        check(out, &format!("psql {sql}"))
    }

    pub fn psql_file(&self, path: &Path) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.pg_url(),
                "-f",
            ])
            .arg(path)
            .output()
            .expect("psql");
        check(out, &format!("psql -f {}", path.display()))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The ledgerstream binary built for these tests.
pub fn ledgerstream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ledgerstream"))
}

pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    check(cmd.output().expect(what), what)
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A bare tansu broker (memory engine) for tests that bypass Debezium.
pub struct Broker {
    pub port: u16,
    child: std::process::Child,
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let tansu = cache_dir().join("tools/bin/tansu");
        let child = Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (run stack/bootstrap.sh): {e}",
                    tansu.display()
                )
            });
        let broker = Broker { port, child };
        let up = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "tansu did not listen on {port}");
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates the three CDC topics under `prefix` (the broker has no auto-create).
    pub fn create_topics(&self, prefix: &str, partitions: u32) {
        run_ok(
            ledgerstream()
                .args([
                    "produce",
                    "--brokers",
                    &self.brokers(),
                    "--topic-prefix",
                    prefix,
                ])
                .args(["--create-topics", &partitions.to_string(), "--events", "0"]),
            "create topics",
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipeline working directory and its config file.
pub struct PipelineDir {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// Where the catalog and the warehouse live: `<dir>/data` by default, `<dir>/lake` when kept apart from the
    /// data directory (so that wiping the data directory keeps "the lakehouse").
    pub lake: PathBuf,
}

impl PipelineDir {
    pub fn new(name: &str, brokers: &str, prefix: &str, interval: &str) -> PipelineDir {
        let dir = std::env::temp_dir().join(format!("ls-pipe-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pipeline dir");
        let config = dir.join("ledgerstream.toml");
        std::fs::write(
            &config,
            format!(
                "[pipeline]\nwriter_id = \"test\"\ndata_dir = \"{}\"\ncheckpoint_interval = \"{interval}\"\n\
                 [kafka]\nbrokers = \"{brokers}\"\ntopic_prefix = \"{prefix}\"\n\
                 [observability]\nmetrics_addr = \"127.0.0.1:0\"\n",
                dir.join("data").display()
            ),
        )
        .expect("config");
        let lake = dir.join("data");
        PipelineDir { dir, config, lake }
    }

    /// Like [`PipelineDir::new`], with the catalog and warehouse under `<dir>/lake` (outside the data directory)
    /// and durable checkpoints in the directory `<dir>/remote`.
    pub fn with_remote(name: &str, brokers: &str, prefix: &str, interval: &str) -> PipelineDir {
        let mut p = PipelineDir::new(name, brokers, prefix, interval);
        p.lake = p.dir.join("lake");
        let mut text = std::fs::read_to_string(&p.config).expect("config");
        text.push_str(&format!(
            "[iceberg.catalog]\ntype = \"sql\"\nuri = \"sqlite://{}\"\nwarehouse = \"{}\"\n\
             [checkpoint.remote]\nkind = \"dir\"\npath = \"{}\"\n",
            p.catalog_db().display(),
            p.warehouse().display(),
            p.remote().display()
        ));
        std::fs::write(&p.config, text).expect("config");
        p
    }

    pub fn catalog_db(&self) -> PathBuf {
        self.lake.join("catalog.db")
    }

    pub fn warehouse(&self) -> PathBuf {
        self.lake.join("warehouse")
    }

    /// The durable checkpoint directory of [`PipelineDir::with_remote`].
    pub fn remote(&self) -> PathBuf {
        self.dir.join("remote")
    }

    /// The local data directory (state, intents; the catalog too unless [`PipelineDir::with_remote`]).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts `ledgerstream run` with extra environment (e.g. FAILPOINTS). The process is killed when the
    /// returned guard drops, so a failing test never leaves a pipeline running.
    pub fn spawn(&self, env: &[(&str, &str)]) -> Running {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("run.log"))
            .expect("log");
        let mut cmd = ledgerstream();
        cmd.args(["run", "--config"]).arg(&self.config);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(log.try_clone().expect("log")).stderr(log);
        Running(cmd.spawn().expect("spawn ledgerstream run"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("run.log")).unwrap_or_default()
    }
}

/// A child process that is killed (SIGKILL) and reaped on drop unless it already exited.
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends SIGTERM and waits for a clean exit.
pub fn terminate(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = wait_for(within, || child.try_wait().ok().flatten());
    match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            panic!("ledgerstream did not exit within {within:?} of SIGTERM");
        }
    }
}

/// The embedded catalog (sqlite file plus local warehouse) of a pipeline.
pub fn sqlite_catalog(catalog_db: &Path, warehouse: &Path) -> ledgerstream::sink::CatalogConfig {
    ledgerstream::sink::CatalogConfig::Sql {
        uri: format!("sqlite:{}?mode=rwc", catalog_db.display()),
        warehouse: format!("file://{}", warehouse.display()),
        s3: None,
    }
}

/// Changes per source table in the test-only audit log, counting a user-id change of a wallet or transaction as
/// Debezium delivers it (a delete and a create).
pub fn audit_change_counts(stack: &Stack) -> std::collections::BTreeMap<String, usize> {
    let out = stack.psql(
        "SELECT tbl, count(*) + count(*) FILTER (WHERE op = 'u' AND tbl <> 'users' AND \
         (row_data->>'user_id') IS DISTINCT FROM (SELECT a2.row_data->>'user_id' FROM ls_audit a2 \
          WHERE a2.tbl = a.tbl AND a2.pk = a.pk AND a2.seq < a.seq ORDER BY a2.seq DESC LIMIT 1)) \
         FROM ls_audit a GROUP BY tbl ORDER BY tbl",
    );
    out.lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(t, n)| (t.to_string(), n.trim().parse().expect("count")))
        .collect()
}

/// Reads every row of an Iceberg table of the embedded catalog as Arrow batches.
pub fn read_table(
    catalog_db: &Path,
    warehouse: &Path,
    table: &str,
) -> Vec<arrow_array::RecordBatch> {
    read_table_in(catalog_db, warehouse, "fintech", table)
}

/// Rows added to `namespace.table` by the snapshots of `writer` whose checkpoint id is in `(after, upto]`.
pub fn read_checkpoints(
    catalog_db: &Path,
    warehouse: &Path,
    table: &str,
    writer: &str,
    after: u64,
    upto: u64,
) -> Vec<arrow_array::RecordBatch> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cfg = sqlite_catalog(catalog_db, warehouse);
        let catalog = ledgerstream::sink::SinkCatalog::connect(&cfg, "fintech")
            .await
            .expect("catalog");
        let t = catalog.load_table(table).await.expect("table");
        let mut out = Vec::new();
        for snapshot in t.metadata().snapshots() {
            let Some(meta) = ledgerstream::sink::CommitMeta::from_snapshot(snapshot).expect("meta")
            else {
                continue;
            };
            if meta.writer_id == writer
                && meta.checkpoint_id.0 > after
                && meta.checkpoint_id.0 <= upto
            {
                for f in ledgerstream::sink::added_files(&t, snapshot.snapshot_id())
                    .await
                    .expect("added files")
                {
                    out.extend(f.batches);
                }
            }
        }
        out
    })
}

/// [`read_table`] in another namespace.
pub fn read_table_in(
    catalog_db: &Path,
    warehouse: &Path,
    namespace: &str,
    table: &str,
) -> Vec<arrow_array::RecordBatch> {
    read_table_from(&sqlite_catalog(catalog_db, warehouse), namespace, table)
}

/// Every row of `namespace.table` through any catalog; empty when the table has no snapshot yet.
pub fn read_table_from(
    cfg: &ledgerstream::sink::CatalogConfig,
    namespace: &str,
    table: &str,
) -> Vec<arrow_array::RecordBatch> {
    use futures::TryStreamExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let catalog = ledgerstream::sink::SinkCatalog::connect(cfg, namespace)
            .await
            .expect("catalog");
        // Not created yet (the pipeline creates its tables at start-up): nothing to read.
        let Ok(t) = catalog.load_table(table).await else {
            return Vec::new();
        };
        if t.metadata().current_snapshot().is_none() {
            return Vec::new();
        }
        let stream = t
            .scan()
            .build()
            .expect("scan")
            .to_arrow()
            .await
            .expect("to_arrow");
        stream.try_collect::<Vec<_>>().await.expect("read batches")
    })
}

/// `(id, lsn)` of every row of a changelog table.
pub fn id_lsn(batches: &[arrow_array::RecordBatch]) -> Vec<(i64, i64)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let mut out = Vec::new();
    for b in batches {
        let ids = b
            .column_by_name("id")
            .expect("id column")
            .as_primitive::<Int64Type>();
        let lsns = b
            .column_by_name("lsn")
            .expect("lsn column")
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((ids.value(i), lsns.value(i)));
        }
    }
    out
}

// --- ground truth: the audit log of the source database ---------------------------------------------------

use ledgerstream::cdc::SourceTable;
use ledgerstream::value::{ColumnType, Value};
use std::collections::BTreeMap;

pub const TABLES: [SourceTable; 3] = [
    SourceTable::Users,
    SourceTable::Wallets,
    SourceTable::Transactions,
];

/// One change as the audit trigger saw it.
#[derive(Debug)]
pub struct Audited {
    pub op: &'static str,
    pub txid: i64,
    pub values: BTreeMap<String, Value>,
}

pub fn audit_value(ty: ColumnType, v: &serde_json::Value) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    match ty {
        ColumnType::Int64 => Value::Int64(v.as_i64().expect("int")),
        ColumnType::Int32 => Value::Int32(v.as_i64().expect("int") as i32),
        ColumnType::Bool => Value::Bool(v.as_bool().expect("bool")),
        ColumnType::Float64 => Value::Float64(v.as_f64().expect("float")),
        ColumnType::Decimal { scale, .. } => {
            let f = v.as_f64().expect("numeric");
            Value::Decimal((f * 10f64.powi(i32::from(scale))).round() as i128)
        }
        ColumnType::Text => Value::Text(v.as_str().expect("text").to_string()),
        ColumnType::TimestampTz => {
            let s = v.as_str().expect("timestamptz");
            let dt = chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            Value::TimestampTz(dt.timestamp_micros())
        }
        ColumnType::Date | ColumnType::Binary => panic!("not in the source schema"),
    }
}

pub fn load_audit(stack: &Stack) -> BTreeMap<(String, i64), Vec<Audited>> {
    let out = stack.psql(
        "SELECT json_build_array(tbl, op, pk, txid, row_data)::text FROM ls_audit ORDER BY seq",
    );
    let mut by_key: BTreeMap<(String, i64), Vec<Audited>> = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let arr: Vec<serde_json::Value> = serde_json::from_str(line).expect("audit json");
        let tbl = arr[0].as_str().expect("tbl").to_string();
        let table = TABLES
            .iter()
            .find(|t| t.name() == tbl)
            .copied()
            .expect("known table");
        let op = match arr[1].as_str() {
            Some("c") => "c",
            Some("u") => "u",
            Some("d") => "d",
            other => panic!("audit op {other:?}"),
        };
        let row = arr[4].as_object().expect("row object");
        let mut values = BTreeMap::new();
        for spec in table.column_specs() {
            values.insert(spec.name.clone(), audit_value(spec.ty, &row[&spec.name]));
        }
        // Columns added at run time (device_id): text in this schema.
        for (name, v) in row {
            if !values.contains_key(name) {
                values.insert(name.clone(), audit_value(ColumnType::Text, v));
            }
        }
        by_key
            .entry((tbl, arr[2].as_i64().expect("pk")))
            .or_default()
            .push(Audited {
                op,
                txid: arr[3].as_i64().expect("txid"),
                values,
            });
    }
    by_key
}

/// Rows of Iceberg batches as column-name → value maps (the types the sink writes).
pub fn arrow_rows(batches: &[arrow_array::RecordBatch]) -> Vec<BTreeMap<String, Value>> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
    use arrow_schema::DataType;
    let mut out = Vec::new();
    for b in batches {
        let schema = b.schema();
        let mut rows: Vec<BTreeMap<String, Value>> = vec![BTreeMap::new(); b.num_rows()];
        for (f, col) in schema.fields().iter().zip(b.columns()) {
            for (i, row) in rows.iter_mut().enumerate() {
                let v = if col.is_null(i) {
                    Value::Null
                } else {
                    match f.data_type() {
                        DataType::Int64 => Value::Int64(col.as_primitive::<Int64Type>().value(i)),
                        DataType::Int32 => Value::Int32(col.as_primitive::<Int32Type>().value(i)),
                        DataType::Utf8 => Value::Text(col.as_string::<i32>().value(i).to_string()),
                        DataType::LargeUtf8 => {
                            Value::Text(col.as_string::<i64>().value(i).to_string())
                        }
                        DataType::Decimal128(_, _) => {
                            Value::Decimal(col.as_primitive::<Decimal128Type>().value(i))
                        }
                        DataType::Timestamp(_, _) => Value::TimestampTz(
                            col.as_primitive::<TimestampMicrosecondType>().value(i),
                        ),
                        DataType::Binary => Value::Binary(col.as_binary::<i32>().value(i).to_vec()),
                        DataType::LargeBinary => {
                            Value::Binary(col.as_binary::<i64>().value(i).to_vec())
                        }
                        DataType::Boolean => Value::Bool(col.as_boolean().value(i)),
                        other => panic!("unexpected column type {other} for {}", f.name()),
                    }
                };
                row.insert(f.name().clone(), v);
            }
        }
        out.extend(rows);
    }
    out
}

/// Turns a key's changes, sorted by (lsn, delete first), into audit-comparable `(op, row)`s: a delete and a create
/// at the same LSN are one update that changed the user id (Debezium splits a key change in two).
pub fn merge_key_changes<'a>(
    mut rows: Vec<(&'static str, i64, &'a BTreeMap<String, Value>)>,
) -> Vec<(&'static str, &'a BTreeMap<String, Value>)> {
    rows.sort_by_key(|(op, lsn, _)| (*lsn, *op != "d"));
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let (op, lsn, row) = rows[i];
        if op == "d" && i + 1 < rows.len() && rows[i + 1].1 == lsn && rows[i + 1].0 == "c" {
            out.push(("u", rows[i + 1].2));
            i += 2;
            continue;
        }
        out.push((op, row));
        i += 1;
    }
    out
}

/// `(id, lsn)` of every change, per changelog table.
pub type ChangesByTable = BTreeMap<&'static str, std::collections::BTreeSet<(i64, i64)>>;

/// What the synthetic producer (`ledgerstream produce --seed S --users U --events N --bad-every B`) writes:
/// `(id, lsn)` of every change per changelog table, and how many malformed records among them.
pub fn synth_truth(seed: u64, users: i64, events: u64, bad_every: u64) -> (ChangesByTable, usize) {
    use ledgerstream::cdc::SourceTable;
    let mut by_table = ChangesByTable::new();
    let mut bad = 0;
    for r in ledgerstream::synth::Synth::new(seed, users)
        .with_bad_every(bad_every)
        .take(events as usize)
    {
        if r.op.is_none() {
            bad += 1;
            continue;
        }
        let table = match r.table {
            SourceTable::Users => "users_changes",
            SourceTable::Wallets => "wallets_changes",
            SourceTable::Transactions => "transactions_changes",
        };
        by_table
            .entry(table)
            .or_default()
            .insert((r.pk, r.lsn as i64));
    }
    (by_table, bad)
}

/// Rows committed so far to `tables` of the pipeline in `p`.
pub fn rows_in(p: &PipelineDir, tables: &[&str]) -> usize {
    tables
        .iter()
        .map(|t| {
            read_table(&p.catalog_db(), &p.warehouse(), t)
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
        })
        .sum()
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n")?.1.to_string()))
}

/// Sum of a metric family's samples (every label set) in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
