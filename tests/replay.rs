//! `ledgerstream replay` against a live pipeline on a real broker (tansu), with synthetic Debezium-format input
//! (exact and repeatable):
//!
//! 1. the live pipeline processes the whole input and goes idle (its idle checkpoint releases every waiting
//!    transaction), and keeps running during the replays;
//! 2. a replay from a mid-stream checkpoint N to the end, with the live rules, writes exactly the rows the live
//!    pipeline committed in checkpoints after N, in `transactions_enriched` and `fraud_alerts` (every column);
//! 3. a replay from N until checkpoint M's offsets writes exactly the changelog rows of checkpoints N+1..M;
//! 4. a replay with a lower velocity threshold raises every live velocity alert's user earlier (or at the same
//!    event), at least one strictly earlier, and leaves every other rule's alerts unchanged;
//! 5. the live tables are untouched by the replays.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::{
    Broker, PipelineDir, arrow_rows, id_lsn, ledgerstream, read_checkpoints, read_table,
    read_table_in, run_ok, terminate, wait_for,
};

const EVENTS: u64 = 12_000;

fn rows(batches: &[arrow_array::RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// Every row as a sortable string of all its columns.
fn row_set(batches: &[arrow_array::RecordBatch]) -> Vec<String> {
    let mut out: Vec<String> = arrow_rows(batches)
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    out.sort();
    out
}

fn text(row: &BTreeMap<String, ledgerstream::value::Value>, col: &str) -> String {
    match &row[col] {
        ledgerstream::value::Value::Text(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn int(row: &BTreeMap<String, ledgerstream::value::Value>, col: &str) -> i64 {
    match &row[col] {
        ledgerstream::value::Value::Int64(v) => *v,
        ledgerstream::value::Value::TimestampTz(v) => *v,
        other => panic!("{col}: {other:?}"),
    }
}

fn replay(p: &PipelineDir, args: &[&str]) -> String {
    let mut cmd = ledgerstream();
    cmd.args(["replay", "--config"]).arg(&p.config).args(args);
    cmd.env("RUST_LOG", "info");
    run_ok(&mut cmd, &format!("replay {args:?}"))
}

#[test]
fn replay_reproduces_live_rows_and_follows_changed_rules() {
    let broker = Broker::start();
    let prefix = "rp";
    broker.create_topics(prefix, 4);
    let p = PipelineDir::new("replay", &broker.brokers(), prefix, "300ms");
    // Keep every checkpoint, so that mid-stream ones can be replayed from.
    let cfg = std::fs::read_to_string(&p.config).expect("config").replace(
        "checkpoint_interval",
        "checkpoints_to_keep = 100000\ncheckpoint_interval",
    );
    std::fs::write(&p.config, cfg).expect("config");
    let mut producer = ledgerstream()
        .args([
            "produce",
            "--brokers",
            &broker.brokers(),
            "--topic-prefix",
            prefix,
        ])
        .args([
            "--events",
            &EVENTS.to_string(),
            "--seed",
            "5",
            "--users",
            "200",
        ])
        // Slow enough for several checkpoints (300 ms apart) even on a loaded machine.
        .args(["--rate", "1500"])
        .spawn()
        .expect("producer");
    let mut live = p.spawn(&[]);
    assert!(producer.wait().expect("producer").success());

    // 1. The live pipeline has everything, and its idle checkpoint released every waiting transaction.
    let changes = || {
        rows(&read_table(
            &p.catalog_db(),
            &p.warehouse(),
            "transactions_changes",
        ))
    };
    let enriched = || {
        rows(&read_table(
            &p.catalog_db(),
            &p.warehouse(),
            "transactions_enriched",
        ))
    };
    let want = ledgerstream::synth::Synth::new(5, 200)
        .take(EVENTS as usize)
        .filter(|r| r.table == ledgerstream::cdc::SourceTable::Transactions)
        .count();
    let settled = wait_for(Duration::from_secs(120), || {
        let c = changes();
        (c == want && enriched() == want).then_some(c)
    });
    assert!(
        settled.is_some(),
        "live pipeline did not settle; log:\n{}",
        p.log()
    );
    // Let one more idle checkpoint pass, so that the newest complete checkpoint is after every row.
    std::thread::sleep(Duration::from_secs(1));

    let list = run_ok(
        ledgerstream()
            .args(["checkpoints", "--config"])
            .arg(&p.config)
            .args(["list", "--json"]),
        "checkpoints list",
    );
    let list: serde_json::Value = serde_json::from_str(&list).expect("json");
    let complete: Vec<&serde_json::Value> = list
        .as_array()
        .expect("array")
        .iter()
        .filter(|c| c["complete"] == true)
        .collect();
    let read_at = |c: &serde_json::Value| -> i64 {
        c["offsets"]
            .as_object()
            .map(|t| {
                t.values()
                    .flat_map(|ps| ps.as_object().into_iter().flat_map(|m| m.values()))
                    .filter_map(|o| o.as_i64())
                    .sum()
            })
            .unwrap_or(0)
    };
    // N: the first complete checkpoint past a quarter of the input; M: the first complete one that read more.
    let first_past = |share: f64| {
        complete
            .iter()
            .find(|c| read_at(c) as f64 >= share * EVENTS as f64)
            .copied()
            .expect("a checkpoint past that share")
    };
    let n_ckpt = first_past(0.25);
    let n = n_ckpt["id"].as_u64().expect("id");
    let m = complete
        .iter()
        .find(|c| read_at(c) > read_at(n_ckpt) && read_at(c) as f64 >= 0.5 * EVENTS as f64)
        .and_then(|c| c["id"].as_u64())
        .expect("a later checkpoint that read more");
    let last = complete
        .last()
        .and_then(|c| c["id"].as_u64())
        .expect("last");
    assert!(n < m && m <= last, "n={n} m={m} last={last}");
    let show = run_ok(
        ledgerstream()
            .args(["checkpoints", "--config"])
            .arg(&p.config)
            .args(["show", &n.to_string()]),
        "checkpoints show",
    );
    assert!(
        show.starts_with(&format!("checkpoint {n}: complete")),
        "{show}"
    );
    assert!(
        show.contains(&format!("{prefix}.public.transactions: 0=")),
        "{show}"
    );

    let live_before: BTreeMap<&str, usize> = [
        "transactions_enriched",
        "fraud_alerts",
        "transactions_changes",
    ]
    .into_iter()
    .map(|t| (t, rows(&read_table(&p.catalog_db(), &p.warehouse(), t))))
    .collect();

    // 2. Same rules, from N to the end: the rows of the live checkpoints after N, column for column.
    let out = replay(&p, &["--from", &n.to_string(), "--into", "same"]);
    assert!(out.contains("replay same complete"), "{out}");
    for table in ["transactions_enriched", "fraud_alerts"] {
        let live_rows = row_set(&read_checkpoints(
            &p.catalog_db(),
            &p.warehouse(),
            table,
            "test",
            n,
            u64::MAX,
        ));
        let replayed = row_set(&read_table_in(
            &p.catalog_db(),
            &p.warehouse(),
            "fintech_replay_same",
            table,
        ));
        assert!(
            !live_rows.is_empty(),
            "{table}: the live checkpoints after {n} have rows"
        );
        assert_eq!(
            live_rows.len(),
            replayed.len(),
            "{table}: live {} rows after checkpoint {n}, replay {}",
            live_rows.len(),
            replayed.len()
        );
        let diff: Vec<_> = live_rows
            .iter()
            .zip(&replayed)
            .filter(|(a, b)| a != b)
            .take(2)
            .collect();
        assert!(diff.is_empty(), "{table}: first differences {diff:?}");
    }

    // 3. From N until M's offsets: exactly the changelog rows of checkpoints N+1..M.
    replay(
        &p,
        &[
            "--from",
            &n.to_string(),
            "--until-checkpoint",
            &m.to_string(),
            "--into",
            "window",
        ],
    );
    let live_window: BTreeSet<(i64, i64)> = id_lsn(&read_checkpoints(
        &p.catalog_db(),
        &p.warehouse(),
        "transactions_changes",
        "test",
        n,
        m,
    ))
    .into_iter()
    .collect();
    let replay_window = id_lsn(&read_table_in(
        &p.catalog_db(),
        &p.warehouse(),
        "fintech_replay_window",
        "transactions_changes",
    ));
    assert!(!live_window.is_empty());
    assert_eq!(
        replay_window.len(),
        live_window.len(),
        "no duplicates, nothing missing"
    );
    assert_eq!(
        replay_window.into_iter().collect::<BTreeSet<_>>(),
        live_window
    );

    // 4. A lower velocity threshold: every user alerted live is alerted, no later; other rules unchanged.
    let rules = p.dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[fraud]\nvelocity = { max_debits = 3, window = \"2s\" }\n",
    )
    .expect("rules");
    replay(
        &p,
        &[
            "--from",
            &n.to_string(),
            "--into",
            "lower",
            "--rules",
            rules.to_str().expect("utf-8"),
        ],
    );
    let live_alerts = arrow_rows(&read_checkpoints(
        &p.catalog_db(),
        &p.warehouse(),
        "fraud_alerts",
        "test",
        n,
        u64::MAX,
    ));
    let lower_alerts = arrow_rows(&read_table_in(
        &p.catalog_db(),
        &p.warehouse(),
        "fintech_replay_lower",
        "fraud_alerts",
    ));
    let by_rule = |alerts: &[BTreeMap<String, ledgerstream::value::Value>], velocity: bool| {
        let mut v: Vec<String> = alerts
            .iter()
            .filter(|a| (text(a, "rule") == "velocity") == velocity)
            .map(|a| format!("{a:?}"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        by_rule(&live_alerts, false),
        by_rule(&lower_alerts, false),
        "other rules unchanged"
    );
    let first_alert = |alerts: &[BTreeMap<String, ledgerstream::value::Value>]| {
        let mut firsts: BTreeMap<i64, i64> = BTreeMap::new();
        for a in alerts.iter().filter(|a| text(a, "rule") == "velocity") {
            let e = firsts.entry(int(a, "user_id")).or_insert(i64::MAX);
            *e = (*e).min(int(a, "event_time"));
        }
        firsts
    };
    let (live_v, lower_v) = (first_alert(&live_alerts), first_alert(&lower_alerts));
    assert!(!live_v.is_empty(), "the live run raised velocity alerts");
    let mut earlier = 0;
    for (user, t) in &live_v {
        let lower_t = lower_v
            .get(user)
            .unwrap_or_else(|| panic!("user {user} not alerted with the lower threshold"));
        assert!(
            lower_t <= t,
            "user {user}: lower threshold alerted later ({lower_t} > {t})"
        );
        earlier += usize::from(lower_t < t);
    }
    assert!(
        earlier > 0,
        "a lower threshold must alert some user earlier"
    );
    assert!(lower_v.len() >= live_v.len());
    eprintln!(
        "replayed from {n} (window to {m}, last {last}): {} windowed changes; velocity-alerted users live {}, \
         lower threshold {}, {earlier} alerted earlier",
        live_window.len(),
        live_v.len(),
        lower_v.len()
    );

    // 5. The replays did not touch the live tables.
    for (t, n_rows) in &live_before {
        assert_eq!(
            rows(&read_table(&p.catalog_db(), &p.warehouse(), t)),
            *n_rows,
            "{t}"
        );
    }
    assert!(p.dir.join("data/replays/same/state").is_dir());
    let status = terminate(&mut live, Duration::from_secs(60));
    assert!(status.success(), "live drain failed; log:\n{}", p.log());
    let _ = std::fs::remove_dir_all(&p.dir);
}
