//! End to end on the native stack, with crashes: generator → PostgreSQL → Debezium → Kafka → `ledgerstream run` →
//! Iceberg, while the processor is `kill -9`ed at random moments six times and Kafka Connect is restarted once
//! (Debezium then redelivers from its last flushed offset).
//!
//! Then every Iceberg changelog row is compared with the source's audit log (trigger-fed, same transaction as each
//! change): exactly the committed changes, each once, with their values, in LSN order per key. The tables are also
//! read with pyiceberg and DuckDB, which must agree.

mod support;

use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use support::{
    PipelineDir, Stack, arrow_rows, load_audit, merge_key_changes, read_table, terminate,
    venv_python, wait_for,
};

const CHANGES: u64 = 6000;

/// One changelog row of a key: `(op, lsn, row)`.
type KeyedRow<'a> = (
    &'static str,
    i64,
    &'a BTreeMap<String, ledgerstream::value::Value>,
);

fn changelog(table: &str) -> String {
    format!("{table}_changes")
}

fn counts(p: &PipelineDir) -> BTreeMap<String, usize> {
    ["users", "wallets", "transactions"]
        .iter()
        .map(|t| {
            let n = read_table(&p.catalog_db(), &p.warehouse(), &changelog(t))
                .iter()
                .map(|b| b.num_rows())
                .sum();
            (t.to_string(), n)
        })
        .collect()
}

/// Compares `fraud_alerts` with the generator's injected episodes: an alert matches an episode of its pattern
/// when they share a transaction id. Prints per-rule precision and recall and asserts per-rule bars.
fn fraud_precision_recall(
    p: &PipelineDir,
    truth: &std::path::Path,
) -> std::collections::BTreeSet<String> {
    use std::collections::BTreeSet;
    let episodes: Vec<(String, BTreeSet<i64>)> = std::fs::read_to_string(truth)
        .expect("truth")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "fraud" && v["complete"] == true)
        .map(|v| {
            let rule = match v["pattern"].as_str().unwrap_or("") {
                "velocity_burst" => "velocity".to_string(),
                other => other.to_string(),
            };
            let ids = v["transaction_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
                .unwrap_or_default();
            (rule, ids)
        })
        .collect();
    let rows = arrow_rows(&read_table(&p.catalog_db(), &p.warehouse(), "fraud_alerts"));
    let text = |r: &BTreeMap<String, ledgerstream::value::Value>, c: &str| match &r[c] {
        ledgerstream::value::Value::Text(s) => s.clone(),
        v => panic!("{c}: {v:?}"),
    };
    let alerts: Vec<(String, String, BTreeSet<i64>)> = rows
        .iter()
        .map(|r| {
            let ids = text(r, "transaction_ids")
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            (text(r, "alert_id"), text(r, "rule"), ids)
        })
        .collect();
    let ids: BTreeSet<&String> = alerts.iter().map(|a| &a.0).collect();
    assert_eq!(ids.len(), alerts.len(), "duplicate alert ids");
    let mut failures = Vec::new();
    for rule in [
        "velocity",
        "overdraft",
        "country_hopping",
        "rapid_drain",
        "amount_spike",
    ] {
        let eps: Vec<&BTreeSet<i64>> = episodes
            .iter()
            .filter(|(r, _)| r == rule)
            .map(|(_, i)| i)
            .collect();
        let mine: Vec<&BTreeSet<i64>> = alerts
            .iter()
            .filter(|(_, r, _)| r == rule)
            .map(|(_, _, i)| i)
            .collect();
        let true_alerts = mine
            .iter()
            .filter(|a| eps.iter().any(|e| !e.is_disjoint(a)))
            .count();
        let found = eps
            .iter()
            .filter(|e| mine.iter().any(|a| !e.is_disjoint(a)))
            .count();
        let precision = true_alerts as f64 / mine.len().max(1) as f64;
        let recall = found as f64 / eps.len().max(1) as f64;
        println!(
            "fraud {rule}: {} episodes, {} alerts, precision {precision:.2}, recall {recall:.2}",
            eps.len(),
            mine.len()
        );
        // Bars from measured runs with a margin (the default windows are tuned on the model at ~100 actions/s;
        // this run's pace and user count differ). amount_spike is reported only: see src/fraud docs.
        let (min_precision, min_recall) = match rule {
            // Event times are real commit times, so windows see slightly different timings run to run.
            "overdraft" => (0.75, 0.75),
            "country_hopping" => (0.6, 0.75),
            "velocity" | "rapid_drain" => (0.4, 0.6),
            _ => (0.0, 0.0),
        };
        if !eps.is_empty() && (precision < min_precision || recall < min_recall) {
            failures.push(format!(
                "{rule}: precision {precision:.2}, recall {recall:.2}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
    alerts.into_iter().map(|a| a.0).collect()
}

/// Every `alert_id` on the alerts topic (read from the beginning until it stays quiet).
fn published_alert_ids(brokers: &str) -> std::collections::BTreeSet<String> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-alerts-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    // Explicit assignment from the beginning (no group protocol needed).
    let md = consumer
        .fetch_metadata(Some("fintech.alerts"), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for t in md.topics() {
        for part in t.partitions() {
            tpl.add_partition_offset("fintech.alerts", part.id(), rdkafka::Offset::Beginning)
                .expect("partition");
        }
    }
    assert!(tpl.count() > 0, "the alerts topic has no partitions");
    consumer.assign(&tpl).expect("assign");
    let mut ids = std::collections::BTreeSet::new();
    let mut quiet_since = std::time::Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(8) {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let msg: ledgerstream::alerts_out::AlertMessage =
                    serde_json::from_slice(m.payload().expect("payload")).expect("alert json");
                ids.insert(msg.alert_id);
                quiet_since = std::time::Instant::now();
            }
            Some(Err(e)) => panic!("alerts topic: {e}"),
            None => {}
        }
    }
    ids
}

/// Transaction ids the generator made malformed, from its ground-truth file.
fn bad_transactions(truth: &std::path::Path) -> std::collections::BTreeSet<i64> {
    std::fs::read_to_string(truth)
        .expect("truth file")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "bad_row")
        .filter_map(|v| v["transaction_id"].as_i64())
        .collect()
}

/// Audited changes of the given transactions.
fn audited_changes_of(stack: &Stack, ids: &std::collections::BTreeSet<i64>) -> usize {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    stack
        .psql(&format!(
            "SELECT count(*) FROM ls_audit WHERE tbl = 'transactions' AND pk IN ({})",
            list.join(",")
        ))
        .trim()
        .parse()
        .expect("count")
}

/// `(transaction id, rule)` of every data-quality rejection in the quarantine table.
fn quarantined_by_rule(p: &PipelineDir) -> Vec<(i64, String)> {
    let rows = arrow_rows(&read_table(&p.catalog_db(), &p.warehouse(), "quarantine"));
    rows.iter()
        .filter(|r| r["error_kind"] == ledgerstream::value::Value::Text("dq_rule".into()))
        .map(|r| {
            let ledgerstream::value::Value::Binary(payload) = &r["payload"] else {
                panic!("payload {:?}", r["payload"]);
            };
            let v: serde_json::Value = serde_json::from_slice(payload).expect("payload json");
            let env = if v.get("payload").is_some() {
                &v["payload"]
            } else {
                &v
            };
            let image = if env["after"].is_object() {
                &env["after"]
            } else {
                &env["before"]
            };
            let id = image["id"].as_i64().expect("id in quarantined payload");
            let ledgerstream::value::Value::Text(rule) = &r["rule"] else {
                panic!("rule {:?}", r["rule"]);
            };
            (id, rule.clone())
        })
        .collect()
}

#[test]
fn kill_nine_and_connect_restart_lose_nothing_and_duplicate_nothing() {
    let stack = Stack::start("pipeline", 4);
    stack.psql_file(&support::repo_root().join("tests/sql/audit.sql"));
    let p = PipelineDir::new("e2e", &stack.brokers(), "fintech", "1s");
    // Alerts go to Kafka too (the stack pre-creates the topic).
    let config_path = p.dir.join("ledgerstream.toml");
    let mut config = std::fs::read_to_string(&config_path).expect("config");
    config.push_str("\n[alerts]\ntopic = \"fintech.alerts\"\n");
    std::fs::write(&config_path, config).expect("config");

    let truth = p.dir.join("truth.jsonl");
    let mut generator = support::ledgerstream()
        .args(["generate", "--pg-url", &stack.pg_url(), "--seed", "5"])
        .arg("--truth-out")
        .arg(&truth)
        .args(["--max-changes", &CHANGES.to_string(), "--rate", "300/s"])
        .args([
            "--evolve-after",
            "3000",
            "--bad-row-rate",
            "0.02",
            "--fraud-rate",
            "0.02",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("generator");

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let mut kills = 0;
    for round in 0..6 {
        let mut run = p.spawn(&[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..4500)));
        if round == 2 {
            stack.run(&["restart", "connect"]);
        }
        if let Ok(Some(status)) = run.try_wait() {
            panic!(
                "pipeline exited on its own ({status}) in round {round}; log:\n{}",
                p.log()
            );
        }
        run.kill().expect("kill -9");
        run.wait().expect("reap");
        kills += 1;
    }
    assert!(
        generator.wait().expect("generator").success(),
        "generator failed"
    );

    // Malformed transactions (null user, non-positive amount, unknown currency) fail the default data-quality
    // rules: every change of them goes to quarantine instead of the changelog.
    let bad = bad_transactions(&truth);
    assert!(!bad.is_empty(), "the generator injected no bad rows");
    let bad_changes = audited_changes_of(&stack, &bad);
    let mut want = support::audit_change_counts(&stack);
    *want.get_mut("transactions").expect("transactions") -= bad_changes;
    let mut run = p.spawn(&[]);
    let caught_up = wait_for(Duration::from_secs(240), || {
        let have = counts(&p);
        want.iter()
            .all(|(t, n)| have.get(t).copied().unwrap_or(0) >= *n)
            .then_some(())
    });
    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(
        caught_up.is_some(),
        "expected {want:?}, have {:?}; log:\n{}",
        counts(&p),
        p.log()
    );
    assert!(status.success(), "drain failed: {status}");
    assert_eq!(
        counts(&p),
        want,
        "exact row counts per table after {kills} kills"
    );

    // Row by row against the audit log.
    let audit = load_audit(&stack);
    let mut compared = 0;
    for t in ["users", "wallets", "transactions"] {
        let rows = arrow_rows(&read_table(&p.catalog_db(), &p.warehouse(), &changelog(t)));
        let mut seen = std::collections::HashSet::new();
        let mut by_id: HashMap<i64, Vec<KeyedRow<'_>>> = HashMap::new();
        for r in &rows {
            let id = match r["id"] {
                ledgerstream::value::Value::Int64(v) => v,
                ref v => panic!("id {v:?}"),
            };
            let lsn = match r["lsn"] {
                ledgerstream::value::Value::Int64(v) => v,
                ref v => panic!("lsn {v:?}"),
            };
            let op: &'static str = match &r["op"] {
                ledgerstream::value::Value::Text(s) if s == "c" || s == "r" => "c",
                ledgerstream::value::Value::Text(s) if s == "u" => "u",
                ledgerstream::value::Value::Text(s) if s == "d" => "d",
                v => panic!("op {v:?}"),
            };
            assert!(
                seen.insert((id, lsn, op)),
                "{t}: duplicate row id={id} lsn={lsn} op={op}"
            );
            by_id.entry(id).or_default().push((op, lsn, r));
        }
        for ((tbl, pk), audited) in audit
            .iter()
            .filter(|((tbl, pk), _)| tbl == t && !(t == "transactions" && bad.contains(pk)))
        {
            let changes = merge_key_changes(by_id.remove(pk).unwrap_or_default());
            assert_eq!(
                changes.len(),
                audited.len(),
                "{tbl}/{pk}: changes in Iceberg vs audit log"
            );
            for ((op, row), a) in changes.iter().zip(audited) {
                assert_eq!(*op, a.op, "{tbl}/{pk}");
                for (name, want) in &a.values {
                    let have = row.get(name).unwrap_or(&ledgerstream::value::Value::Null);
                    assert_eq!(have, want, "{tbl}/{pk}: column {name}");
                }
                compared += 1;
            }
        }
        assert!(
            by_id.is_empty(),
            "{t}: rows without a source change: {:?}",
            by_id.keys().take(5).collect::<Vec<_>>()
        );
    }
    let audited: usize = audit.values().map(Vec::len).sum();
    assert_eq!(compared + bad_changes, audited);

    // Quarantine: exactly the bad transactions' changes, once each, with the rule that caught them.
    let quarantined = quarantined_by_rule(&p);
    let ids: std::collections::BTreeSet<i64> = quarantined.iter().map(|(id, _)| *id).collect();
    assert_eq!(quarantined.len(), bad_changes, "quarantined changes");
    assert_eq!(ids, bad, "quarantined transaction ids");
    assert!(
        quarantined
            .iter()
            .all(|(_, rule)| rule.starts_with("transactions.")),
        "{quarantined:?}"
    );

    // Derived tables, through the same kills: one enriched row per transaction change...
    let enriched = support::id_lsn(&read_table(
        &p.catalog_db(),
        &p.warehouse(),
        "transactions_enriched",
    ));
    let changes = support::id_lsn(&read_table(
        &p.catalog_db(),
        &p.warehouse(),
        "transactions_changes",
    ));
    let enriched_set: std::collections::BTreeSet<_> = enriched.iter().copied().collect();
    assert_eq!(
        enriched.len(),
        enriched_set.len(),
        "duplicate enriched rows"
    );
    assert_eq!(
        enriched_set,
        changes.iter().copied().collect(),
        "enriched rows vs changelog"
    );
    // ...the column added at the source mid-run is queryable there too...
    let device = support::run_ok(
        std::process::Command::new(venv_python())
            .arg(support::repo_root().join("scripts/lakehouse.py"))
            .arg("--catalog")
            .arg(p.catalog_db())
            .args([
                "sql",
                "SELECT count(device_id) AS n, count(*) FILTER (WHERE enrichment_status = 'enriched') AS e, \
                 count(*) AS t FROM transactions_enriched",
                "--json",
            ]),
        "duckdb device_id",
    );
    let device: serde_json::Value = serde_json::from_str(device.trim()).expect("duckdb json");
    assert!(device["n"].as_i64().unwrap_or(0) > 0, "{device}");
    println!("transactions_enriched: {device}");
    // ...and the injected fraud is found, and every committed alert reached the alerts topic.
    let table_ids = fraud_precision_recall(&p, &truth);
    let topic_ids = published_alert_ids(&stack.brokers());
    let missing: Vec<_> = table_ids.difference(&topic_ids).take(5).collect();
    let unknown: Vec<_> = topic_ids.difference(&table_ids).take(5).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "alerts topic vs table: missing {missing:?}, not in the table {unknown:?}"
    );

    // Other readers agree: pyiceberg and DuckDB over the same catalog.
    for t in ["users", "wallets", "transactions"] {
        let want = want[t].to_string();
        let py = support::run_ok(
            std::process::Command::new(venv_python())
                .arg(support::repo_root().join("scripts/lakehouse.py"))
                .arg("--catalog")
                .arg(p.catalog_db())
                .args(["pyiceberg-count", &changelog(t)]),
            "pyiceberg count",
        );
        assert_eq!(py.trim(), want, "pyiceberg {t}");
        let duck = support::run_ok(
            std::process::Command::new(venv_python())
                .arg(support::repo_root().join("scripts/lakehouse.py"))
                .arg("--catalog")
                .arg(p.catalog_db())
                .args([
                    "sql",
                    &format!("SELECT count(*) AS n FROM {}", changelog(t)),
                    "--json",
                ]),
            "duckdb count",
        );
        let n: serde_json::Value = serde_json::from_str(duck.trim()).expect("duckdb json");
        assert_eq!(n["n"].to_string(), want, "duckdb {t}");
    }
    println!("{compared} changes compared after {kills} kill -9 and one Connect restart");
    let _ = std::fs::remove_dir_all(&p.dir);
}
