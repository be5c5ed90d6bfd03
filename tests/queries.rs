//! Reading the lakehouse back, end to end on the native stack: generator → PostgreSQL → Debezium → Kafka →
//! `ledgerstream run` → Iceberg, drained, then
//!
//! - the current-state views (`sql/current_state/`), through `ledgerstream query` and through DuckDB, equal
//!   PostgreSQL's `users` and `wallets` tables row for row (a wallet moved to another user and a row changed twice
//!   in one transaction are made on purpose);
//! - `ledgerstream tables` reports the row and file counts, snapshot and checkpoint ids that pyiceberg reads;
//! - every ```` ```sql duckdb ```` and ```` ```sql ledgerstream ```` block of docs/queries.md runs, returns rows, and
//!   its answer is checked against PostgreSQL or a direct read of the tables (see [`check_block`]);
//! - bad SQL and unknown tables fail with a message and a non-zero status.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use ledgerstream::value::Value;
use support::{PipelineDir, Stack, arrow_rows, read_table, terminate, venv_python, wait_for};

/// Generator changes: enough for deletes, fraud episodes, bad rows and a few P&L minutes, small enough for a
/// test of a couple of minutes.
const CHANGES: u64 = 2500;

/// `pnl.allowed_lateness` of the test's pipeline, in seconds.
const PNL_LATENESS_S: i64 = 1;
/// `enrich.max_delay` (the default): the watermark trails the newest commit time by at most this much.
const ENRICH_MAX_DELAY_S: i64 = 5;

/// Columns the current-state views share with the source tables.
const USER_COLUMNS: [&str; 8] = [
    "id",
    "email",
    "full_name",
    "country",
    "kyc_status",
    "risk_tier",
    "created_at",
    "updated_at",
];
const WALLET_COLUMNS: [&str; 7] = [
    "id",
    "user_id",
    "currency",
    "balance",
    "status",
    "created_at",
    "updated_at",
];

/// A result row, each value in a canonical text form (see [`canon`]).
type Row = Vec<String>;

/// One value as comparable text, whichever engine printed it: timestamps as epoch microseconds (RFC 3339 from
/// PostgreSQL and Arrow, `YYYY-MM-DD HH:MM:SS+00:00` from DuckDB), numbers and numeric strings as normalized
/// decimals (DuckDB prints decimals as strings, Arrow as JSON numbers), the rest verbatim.
fn canon(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => decimal(&n.to_string()).unwrap_or_else(|| n.to_string()),
        serde_json::Value::String(s) => {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)) {
                format!("ts:{}", t.timestamp_micros())
            } else if let Some(d) = decimal(s) {
                d
            } else {
                s.clone()
            }
        }
        other => other.to_string(),
    }
}

fn decimal(s: &str) -> Option<String> {
    rust_decimal::Decimal::from_str(s)
        .ok()
        .map(|d| d.normalize().to_string())
}

/// A JSON object with its keys in document order (`serde_json::Map` sorts them), i.e. in column order.
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses JSON lines (one object per row) into rows of the given columns, or of all columns in order.
fn json_rows(text: &str, columns: Option<&[&str]>) -> Vec<Row> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let Ordered(obj) = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            match columns {
                Some(cols) => cols
                    .iter()
                    .map(|c| {
                        let v = obj.iter().find(|(k, _)| k == c).map(|(_, v)| v);
                        canon(v.unwrap_or_else(|| panic!("no {c} in {l}")))
                    })
                    .collect(),
                None => obj.iter().map(|(_, v)| canon(v)).collect(),
            }
        })
        .collect()
}

/// `ledgerstream query --format json` (stdout), asserting success.
fn ledgerstream_query(p: &PipelineDir, sql: &str, as_of: Option<u64>) -> String {
    let mut cmd = support::ledgerstream();
    cmd.args(["query", "--format", "json", "--config"])
        .arg(&p.config);
    if let Some(cp) = as_of {
        cmd.args(["--as-of-checkpoint", &cp.to_string()]);
    }
    support::run_ok(cmd.arg(sql), &format!("ledgerstream query {sql}"))
}

/// The same through DuckDB (`scripts/lakehouse.py sql --json`).
fn duckdb_query(p: &PipelineDir, sql: &str, as_of: Option<u64>) -> String {
    let mut cmd = Command::new(venv_python());
    cmd.arg(support::repo_root().join("scripts/lakehouse.py"))
        .arg("--catalog")
        .arg(p.catalog_db());
    if let Some(cp) = as_of {
        cmd.args(["--as-of-checkpoint", &cp.to_string(), "--writer-id", "test"]);
    }
    cmd.args(["sql", "--json", sql]);
    support::run_ok(&mut cmd, &format!("duckdb {sql}"))
}

/// PostgreSQL rows as JSON objects, one per line.
fn pg_rows(stack: &Stack, select: &str, columns: Option<&[&str]>) -> Vec<Row> {
    let out = stack.psql(&format!("SELECT row_to_json(t)::text FROM ({select}) t"));
    json_rows(&out, columns)
}

/// Rows keyed by their first column (the id), for a diff that names the first mismatching key.
fn by_id(rows: Vec<Row>) -> BTreeMap<i64, Row> {
    rows.into_iter()
        .map(|r| (r[0].parse().unwrap_or_else(|_| panic!("id {r:?}")), r))
        .collect()
}

fn assert_same_rows(what: &str, have: BTreeMap<i64, Row>, want: BTreeMap<i64, Row>) {
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !have.contains_key(k))
        .take(5)
        .collect();
    let extra: Vec<_> = have
        .keys()
        .filter(|k| !want.contains_key(k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} rows vs {} in PostgreSQL; missing ids {missing:?}, extra ids {extra:?}",
        have.len(),
        want.len()
    );
    for (id, row) in &want {
        assert_eq!(&have[id], row, "{what}: id {id}");
    }
}

/// Changes per source table in Iceberg: the changelog rows, plus quarantined records of that table (data-quality
/// rejects never reach the changelog).
fn landed_changes(p: &PipelineDir) -> BTreeMap<String, usize> {
    let quarantined = arrow_rows(&read_table(&p.catalog_db(), &p.warehouse(), "quarantine"));
    ["transactions", "users", "wallets"]
        .iter()
        .map(|t| {
            let rows: usize = read_table(&p.catalog_db(), &p.warehouse(), &format!("{t}_changes"))
                .iter()
                .map(|b| b.num_rows())
                .sum();
            let rejected = quarantined
                .iter()
                .filter(|r| r["source_table"] == Value::Text(t.to_string()))
                .count();
            (t.to_string(), rows + rejected)
        })
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Null => String::new(),
        other => panic!("text expected, got {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int64(i) => *i,
        Value::Int32(i) => i64::from(*i),
        other => panic!("integer expected, got {other:?}"),
    }
}

/// A decimal column's value (unscaled, scale 2) as canonical text.
fn money(v: &Value) -> String {
    match v {
        Value::Decimal(unscaled) => {
            decimal(&rust_decimal::Decimal::from_i128_with_scale(*unscaled, 2).to_string())
                .expect("decimal")
        }
        other => panic!("decimal expected, got {other:?}"),
    }
}

/// Every row of a table at a given snapshot.
fn read_table_at(
    p: &PipelineDir,
    table: &str,
    snapshot: Option<i64>,
) -> Vec<BTreeMap<String, Value>> {
    use futures::TryStreamExt;
    let Some(snapshot) = snapshot else {
        return Vec::new();
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let batches = rt.block_on(async {
        let catalog = open_catalog(p).await;
        let t = catalog.load_table(table).await.expect("table");
        t.scan()
            .snapshot_id(snapshot)
            .select_all()
            .build()
            .expect("scan")
            .to_arrow()
            .await
            .expect("to_arrow")
            .try_collect::<Vec<_>>()
            .await
            .expect("batches")
    });
    arrow_rows(&batches)
}

async fn open_catalog(p: &PipelineDir) -> ledgerstream::sink::SinkCatalog {
    let cfg = support::sqlite_catalog(&p.catalog_db(), &p.warehouse());
    ledgerstream::sink::SinkCatalog::connect(&cfg, "fintech")
        .await
        .expect("catalog")
}

/// `(snapshot id, checkpoint id)` of a table's ancestry, newest first, read from the snapshot summaries.
fn snapshots(p: &PipelineDir, table: &str) -> Vec<(i64, Option<u64>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let catalog = open_catalog(p).await;
        let t = catalog.load_table(table).await.expect("table");
        let md = t.metadata();
        let mut out = Vec::new();
        let mut next = md.current_snapshot_id();
        while let Some(id) = next {
            let s = md.snapshot_by_id(id).expect("snapshot");
            let props = &s.summary().additional_properties;
            assert_eq!(
                props.get("ledgerstream.writer-id").map(String::as_str),
                Some("test"),
                "{table}: snapshot {id} of another writer"
            );
            let cp = props
                .get("ledgerstream.checkpoint-id")
                .map(|c| c.parse().expect("checkpoint id"));
            out.push((id, cp));
            next = s.parent_snapshot_id();
        }
        out
    })
}

/// The snapshot a checkpoint left in a table (newest at or below it), read independently of the code under test.
fn snapshot_at(p: &PipelineDir, table: &str, checkpoint: u64) -> Option<i64> {
    snapshots(p, table)
        .into_iter()
        .find(|(_, cp)| cp.is_some_and(|c| c <= checkpoint))
        .map(|(id, _)| id)
}

/// Number of rows of a changelog that are current (latest LSN per id, not a delete), computed in Rust.
fn current_count(rows: &[BTreeMap<String, Value>]) -> usize {
    let mut latest: BTreeMap<i64, (i64, bool)> = BTreeMap::new();
    for r in rows {
        let (id, lsn, deleted) = (int(&r["id"]), int(&r["lsn"]), text(&r["op"]) == "d");
        let e = latest.entry(id).or_insert((lsn, deleted));
        // At equal LSN (an owner change: delete + create) the create wins.
        if lsn > e.0 || (lsn == e.0 && !deleted) {
            *e = (lsn, deleted);
        }
    }
    latest.values().filter(|(_, deleted)| !deleted).count()
}

/// A fenced code block of docs/queries.md: ```` ```sql <engine> name=<name> [as-of-checkpoint=<n>] ````.
#[derive(Debug)]
struct DocBlock {
    engine: String,
    name: String,
    as_of: Option<u64>,
    sql: String,
    line: usize,
}

fn doc_blocks(markdown: &str) -> Vec<DocBlock> {
    let mut out = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```sql ") else {
            continue;
        };
        let mut words = info.split_whitespace();
        let engine = words.next().expect("engine").to_string();
        let mut name = None;
        let mut as_of = None;
        for w in words {
            match w.split_once('=') {
                Some(("name", v)) => name = Some(v.to_string()),
                Some(("as-of-checkpoint", v)) => as_of = Some(v.parse().expect("checkpoint")),
                _ => panic!("docs/queries.md:{}: unknown block attribute {w}", i + 1),
            }
        }
        let sql: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| !l.starts_with("```"))
            .collect();
        out.push(DocBlock {
            engine,
            name: name.unwrap_or_else(|| panic!("docs/queries.md:{}: block without name=", i + 1)),
            as_of,
            sql: sql.join("\n"),
            line: i + 1,
        });
    }
    out
}

/// What the test knows about the run, to check the doc queries' answers.
struct Truth<'a> {
    stack: &'a Stack,
    p: &'a PipelineDir,
    /// The checkpoint the time-travel blocks are run at (mid-run, so the answer differs from now).
    past_checkpoint: u64,
}

/// Checks one doc query's answer (rows in the block's column order). Every named block must have a check here.
fn check_block(name: &str, rows: &[Row], truth: &Truth<'_>) {
    let (stack, p) = (truth.stack, truth.p);
    let table = |t: &str| arrow_rows(&read_table(&p.catalog_db(), &p.warehouse(), t));
    match name {
        "current-users" => {
            let want = pg_rows(
                stack,
                "SELECT * FROM users ORDER BY id",
                Some(&USER_COLUMNS),
            );
            assert_eq!(rows, want, "current users vs PostgreSQL");
        }
        "balances-now" => {
            let want = pg_rows(
                stack,
                "SELECT currency, count(*) AS wallets, sum(balance)::text AS total_balance \
                 FROM wallets GROUP BY currency ORDER BY currency",
                Some(&["currency", "wallets", "total_balance"]),
            );
            assert_eq!(rows, want, "balances per currency vs PostgreSQL");
        }
        "largest-wallets" => {
            let want = pg_rows(
                stack,
                "SELECT w.id AS wallet_id, w.user_id, u.email, w.currency, w.balance::text AS balance, w.status \
                 FROM wallets w JOIN users u ON u.id = w.user_id ORDER BY w.balance DESC, w.id LIMIT 10",
                Some(&[
                    "wallet_id",
                    "user_id",
                    "email",
                    "currency",
                    "balance",
                    "status",
                ]),
            );
            assert_eq!(rows, want, "largest wallets vs PostgreSQL");
        }
        "pnl-last-hour" => {
            // The run is minutes old: every minute in the table is within the last hour.
            let mut sums: BTreeMap<(i64, String), [rust_decimal::Decimal; 5]> = BTreeMap::new();
            for r in table("pnl_minutely") {
                let Value::TimestampTz(minute) = r["minute"] else {
                    panic!("minute {:?}", r["minute"]);
                };
                let d = |c: &str| rust_decimal::Decimal::from_str(&money(&r[c])).expect("decimal");
                let e = sums.entry((minute, text(&r["currency"]))).or_default();
                e[0] += d("fees_earned");
                e[1] += d("refund_losses") + d("chargeback_losses");
                e[2] += d("net_revenue");
                e[3] += d("volume");
                e[4] += rust_decimal::Decimal::from(int(&r["tx_count"]));
            }
            let want: Vec<Row> = sums
                .into_iter()
                .map(|((minute, currency), s)| {
                    let mut row = vec![format!("ts:{minute}"), currency];
                    row.extend(s.iter().map(|d| d.normalize().to_string()));
                    row
                })
                .collect();
            assert_eq!(
                rows, want,
                "P&L per minute and currency vs the rows of pnl_minutely"
            );
        }
        "top-fraud-users" => {
            let mut per_user: BTreeMap<i64, (i64, BTreeSet<String>, i64)> = BTreeMap::new();
            for r in table("fraud_alerts") {
                let Value::TimestampTz(at) = r["event_time"] else {
                    panic!("event_time");
                };
                let e = per_user
                    .entry(int(&r["user_id"]))
                    .or_insert((0, BTreeSet::new(), at));
                e.0 += 1;
                e.1.insert(text(&r["rule"]));
                e.2 = e.2.max(at);
            }
            let mut want: Vec<(i64, i64, usize, i64)> = per_user
                .into_iter()
                .map(|(u, (n, rules, last))| (u, n, rules.len(), last))
                .collect();
            want.sort_by_key(|(u, n, _, _)| (-n, *u));
            let want: Vec<Row> = want
                .into_iter()
                .take(10)
                .map(|(u, n, rules, last)| {
                    vec![
                        u.to_string(),
                        n.to_string(),
                        rules.to_string(),
                        format!("ts:{last}"),
                    ]
                })
                .collect();
            assert_eq!(rows, want, "top users by fraud alerts vs a direct count");
        }
        "rejects-by-rule" => {
            let mut counts: BTreeMap<(String, String, String), i64> = BTreeMap::new();
            for r in table("quarantine") {
                *counts
                    .entry((
                        text(&r["error_kind"]),
                        text(&r["rule"]),
                        text(&r["source_table"]),
                    ))
                    .or_default() += 1;
            }
            let mut want: Vec<((String, String, String), i64)> = counts.into_iter().collect();
            // ORDER BY records DESC, error_kind, rule, source_table
            want.sort_by(|(ka, a), (kb, b)| b.cmp(a).then(ka.cmp(kb)));
            let want: Vec<Row> = want
                .into_iter()
                .map(|((kind, rule, source), n)| vec![kind, rule, source, n.to_string()])
                .collect();
            assert_eq!(rows, want, "quarantine by kind and rule vs a direct count");
        }
        "dq-checks" => {
            let mut counts: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
            for r in table("dq_results") {
                let e = counts
                    .entry((text(&r["table_name"]), text(&r["check"])))
                    .or_default();
                e.0 += 1;
                e.1 += i64::from(r["passed"] != Value::Bool(true));
                e.2 += int(&r["failing_rows"]);
            }
            let want: Vec<Row> = counts
                .into_iter()
                .map(|((t, c), (n, failed, failing))| {
                    vec![t, c, n.to_string(), failed.to_string(), failing.to_string()]
                })
                .collect();
            assert_eq!(rows, want, "post-write checks vs a direct count");
            assert!(
                rows.iter().all(|r| r[3] == "0"),
                "a post-write check failed: {rows:?}"
            );
        }
        "as-of-checkpoint" => {
            let cp = truth.past_checkpoint;
            let users = read_table_at(p, "users_changes", snapshot_at(p, "users_changes", cp));
            let wallets =
                read_table_at(p, "wallets_changes", snapshot_at(p, "wallets_changes", cp));
            let txs = read_table_at(
                p,
                "transactions_changes",
                snapshot_at(p, "transactions_changes", cp),
            );
            let want = vec![vec![
                current_count(&users).to_string(),
                current_count(&wallets).to_string(),
                txs.len().to_string(),
            ]];
            assert_eq!(
                rows, want,
                "counts as of checkpoint {cp} vs the snapshots read directly"
            );
            let now_txs: usize =
                read_table(&p.catalog_db(), &p.warehouse(), "transactions_changes")
                    .iter()
                    .map(|b| b.num_rows())
                    .sum();
            assert!(
                txs.len() < now_txs,
                "checkpoint {cp} should be in the past: {} changes then, {now_txs} now",
                txs.len()
            );
        }
        other => panic!("docs/queries.md block {other} has no check in tests/queries.rs"),
    }
}

/// `ledgerstream tables --json`, typed.
#[derive(Debug, serde::Deserialize)]
struct ListedTable {
    name: String,
    rows: u64,
    data_files: u64,
    snapshot_id: Option<i64>,
    committed_at: Option<String>,
    checkpoint_id: Option<u64>,
    writer_id: Option<String>,
}

/// pyiceberg's view of one table (`lakehouse.py pyiceberg-stats`).
#[derive(Debug, serde::Deserialize)]
struct PyStats {
    name: String,
    rows: u64,
    data_files: u64,
    snapshot_id: Option<i64>,
    committed_at_ms: Option<i64>,
    checkpoint_id: Option<u64>,
}

#[test]
fn current_state_tables_listing_and_every_documented_query_agree_with_the_source() {
    let stack = Stack::start("queries", 4);
    stack.psql_file(&support::repo_root().join("tests/sql/audit.sql"));
    let p = PipelineDir::new("queries", &stack.brokers(), "fintech", "1s");
    // P&L minutes close 1 s after they end (event time), so the short run below closes some.
    let mut config = std::fs::read_to_string(&p.config).expect("config");
    config.push_str(&format!(
        "\n[pnl]\nallowed_lateness = \"{PNL_LATENESS_S}s\"\n"
    ));
    std::fs::write(&p.config, config).expect("config");
    let mut run = p.spawn(&[]);
    support::run_ok(
        support::ledgerstream()
            .args(["generate", "--pg-url", &stack.pg_url(), "--seed", "11"])
            .args(["--max-changes", &CHANGES.to_string(), "--rate", "300/s"])
            .args(["--fraud-rate", "0.03", "--bad-row-rate", "0.02"]),
        "generator",
    );
    // A P&L minute is emitted once the partition's watermark passes its end plus the lateness; the watermark
    // follows source commit times. So the last changes below are committed after the generator's last minute has
    // ended (plus lateness and the enrichment delay that bounds the watermark), and touch every user and wallet,
    // hence every partition.
    let now_s = chrono::Utc::now().timestamp();
    let wait_s = 60 - now_s.rem_euclid(60) + PNL_LATENESS_S + ENRICH_MAX_DELAY_S + 2;
    std::thread::sleep(Duration::from_secs(wait_s.unsigned_abs()));
    // The cases the current-state SQL must get right, made on purpose: a wallet moved to another user (Debezium:
    // a delete and a create at one LSN), a user changed twice in one transaction (one tx_id, two LSNs), and one
    // transaction that changes every user and every wallet.
    stack.psql(
        "UPDATE wallets SET user_id = (SELECT max(id) FROM users), updated_at = now() \
         WHERE id = (SELECT min(id) FROM wallets WHERE user_id <> (SELECT max(id) FROM users))",
    );
    stack.psql(
        "BEGIN; \
         UPDATE users SET email = 'first@example.com' WHERE id = (SELECT min(id) FROM users); \
         UPDATE users SET email = 'second@example.com', updated_at = now() WHERE id = (SELECT min(id) FROM users); \
         COMMIT;",
    );
    stack.psql(
        "BEGIN; UPDATE users SET updated_at = now(); UPDATE wallets SET updated_at = now(); COMMIT;",
    );
    let want = support::audit_change_counts(&stack);
    let caught_up = wait_for(Duration::from_secs(180), || {
        (landed_changes(&p) == want).then_some(())
    });
    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(
        caught_up.is_some(),
        "expected {want:?}, have {:?}; log:\n{}",
        landed_changes(&p),
        p.log()
    );
    assert!(
        status.success(),
        "drain failed: {status}; log:\n{}",
        p.log()
    );

    // The run must exercise what the views handle: deletes and an owner change in the changelogs.
    let wallets_log = arrow_rows(&read_table(
        &p.catalog_db(),
        &p.warehouse(),
        "wallets_changes",
    ));
    let users_log = arrow_rows(&read_table(
        &p.catalog_db(),
        &p.warehouse(),
        "users_changes",
    ));
    let deletes =
        |rows: &[BTreeMap<String, Value>]| rows.iter().filter(|r| text(&r["op"]) == "d").count();
    assert!(
        deletes(&wallets_log) + deletes(&users_log) > 1,
        "the run deleted nothing"
    );
    let mut seen = BTreeSet::new();
    let owner_changes = wallets_log
        .iter()
        .filter(|r| !seen.insert((int(&r["id"]), int(&r["lsn"]))))
        .count();
    assert_eq!(
        owner_changes, 1,
        "one wallet changed owner (a delete and a create at one LSN)"
    );

    // 1. Current state, full rows on the columns shared with PostgreSQL, in both engines.
    for (view, source, columns) in [
        ("users_current", "users", &USER_COLUMNS[..]),
        ("wallets_current", "wallets", &WALLET_COLUMNS[..]),
    ] {
        let want = by_id(pg_rows(
            &stack,
            &format!("SELECT * FROM {source}"),
            Some(columns),
        ));
        let sql = format!("SELECT * FROM {view}");
        let ours = by_id(json_rows(
            &ledgerstream_query(&p, &sql, None),
            Some(columns),
        ));
        assert_same_rows(&format!("ledgerstream query {view}"), ours, want.clone());
        let duck = by_id(json_rows(&duckdb_query(&p, &sql, None), Some(columns)));
        assert_same_rows(&format!("duckdb {view}"), duck, want.clone());
        println!(
            "{view}: {} rows equal PostgreSQL's {source} in ledgerstream query and DuckDB",
            want.len()
        );
    }

    // 2. `ledgerstream tables` against pyiceberg and DuckDB.
    let listed: Vec<ListedTable> = serde_json::from_str(&support::run_ok(
        support::ledgerstream()
            .args(["tables", "--json", "--config"])
            .arg(&p.config),
        "ledgerstream tables",
    ))
    .expect("tables json");
    let py: BTreeMap<String, PyStats> = support::run_ok(
        Command::new(venv_python())
            .arg(support::repo_root().join("scripts/lakehouse.py"))
            .arg("--catalog")
            .arg(p.catalog_db())
            .arg("pyiceberg-stats"),
        "pyiceberg stats",
    )
    .lines()
    .map(|l| serde_json::from_str::<PyStats>(l).expect("stats json"))
    .map(|s| (s.name.clone(), s))
    .collect();
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        py.keys().map(String::as_str).collect::<Vec<_>>(),
        "table names"
    );
    for t in &listed {
        let s = &py[&t.name];
        assert_eq!(
            (t.rows, t.data_files),
            (s.rows, s.data_files),
            "{}: rows and data files",
            t.name
        );
        assert_eq!(
            (t.snapshot_id, t.checkpoint_id),
            (s.snapshot_id, s.checkpoint_id),
            "{}",
            t.name
        );
        let committed_ms = t.committed_at.as_ref().map(|c| {
            chrono::DateTime::parse_from_rfc3339(c)
                .expect("committed_at")
                .timestamp_millis()
        });
        assert_eq!(committed_ms, s.committed_at_ms, "{}: committed_at", t.name);
        assert!(
            t.snapshot_id.is_none() || t.writer_id.as_deref() == Some("test"),
            "{t:?}"
        );
        let duck = json_rows(
            &duckdb_query(&p, &format!("SELECT count(*) AS n FROM {}", t.name), None),
            None,
        );
        assert_eq!(duck, [vec![t.rows.to_string()]], "{}: DuckDB count", t.name);
    }
    let changelog = listed
        .iter()
        .find(|t| t.name == "transactions_changes")
        .expect("transactions_changes");
    assert!(
        changelog.rows > 0 && changelog.checkpoint_id.is_some(),
        "{changelog:?}"
    );
    println!(
        "ledgerstream tables: {} tables agree with pyiceberg and DuckDB",
        listed.len()
    );

    // 3. Every DuckDB and ledgerstream block of docs/queries.md. Time travel goes to a checkpoint in the middle of
    // the transactions changelog's history, whatever checkpoint the page shows, so that the answer differs from
    // the current one.
    let history: Vec<u64> = snapshots(&p, "transactions_changes")
        .iter()
        .filter_map(|(_, cp)| *cp)
        .collect();
    assert!(
        history.len() >= 3,
        "too few checkpoints to travel: {history:?}"
    );
    let truth = Truth {
        stack: &stack,
        p: &p,
        past_checkpoint: history[history.len() / 2],
    };
    let markdown = std::fs::read_to_string(support::repo_root().join("docs/queries.md"))
        .expect("docs/queries.md");
    let blocks = doc_blocks(&markdown);
    let mut ran: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for b in blocks
        .iter()
        .filter(|b| b.engine == "duckdb" || b.engine == "ledgerstream")
    {
        let as_of = b.as_of.map(|_| truth.past_checkpoint);
        let out = if b.engine == "duckdb" {
            duckdb_query(&p, &b.sql, as_of)
        } else {
            ledgerstream_query(&p, &b.sql, as_of)
        };
        let rows = json_rows(&out, None);
        assert!(
            !rows.is_empty(),
            "docs/queries.md:{} ({} {}) returned no rows",
            b.line,
            b.engine,
            b.name
        );
        check_block(&b.name, &rows, &truth);
        println!(
            "docs/queries.md:{} {} {}: {} rows, checked",
            b.line,
            b.engine,
            b.name,
            rows.len()
        );
        ran.entry(b.name.clone())
            .or_default()
            .insert(b.engine.clone());
    }
    // Every question is answered for both engines that can run here, and for Trino.
    let trino: BTreeSet<&str> = blocks
        .iter()
        .filter(|b| b.engine == "trino")
        .map(|b| b.name.as_str())
        .collect();
    for (name, engines) in &ran {
        assert_eq!(engines.len(), 2, "{name}: runs in {engines:?} only");
        assert!(trino.contains(name.as_str()), "{name}: no Trino block");
    }
    assert!(ran.len() >= 8, "{:?}", ran.keys());

    // 4. Errors: a message and a non-zero status, never a panic.
    for (sql, expect) in [
        ("SELECT * FROM no_such_table", "unknown table no_such_table"),
        ("SELEC 1", "SELEC"),
        ("SELECT missing_column FROM users_changes", "missing_column"),
        ("DELETE FROM users_changes", "DML"),
    ] {
        let out = support::ledgerstream()
            .args(["query", "--config"])
            .arg(&p.config)
            .arg(sql)
            .output()
            .expect("ledgerstream query");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sql}: {stderr}");
        assert!(stderr.contains(expect), "{sql}: {stderr}");
        assert!(!stderr.contains("panicked"), "{sql}: {stderr}");
    }
    let err = support::ledgerstream()
        .args(["query", "--config"])
        .arg(&p.config)
        .args(["--as-of-checkpoint", "999999", "SELECT 1"])
        .output()
        .expect("ledgerstream query");
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        !err.status.success() && stderr.contains("checkpoint 999999"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&p.dir);
}
