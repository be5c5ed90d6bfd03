//! Owning the commit, end to end on a real broker: the data-directory lock, a zombie writer fenced by a takeover,
//! a foreign appender between checkpoints, and checkpoints that appear in every table at once.
//!
//! Input is the synthetic Debezium-format producer into tansu, so the ground truth is exact.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Broker, PipelineDir, id_lsn, ledgerstream, read_table, terminate, wait_for};

const SEED: u64 = 23;
const USERS: i64 = 300;
const BAD_EVERY: u64 = 997;
const CHANGELOGS: [&str; 3] = ["users_changes", "wallets_changes", "transactions_changes"];

fn produce(brokers: &str, prefix: &str, events: u64, rate: u64) -> std::process::Child {
    ledgerstream()
        .args(["produce", "--brokers", brokers, "--topic-prefix", prefix])
        .args(["--events", &events.to_string(), "--seed", &SEED.to_string()])
        .args([
            "--users",
            &USERS.to_string(),
            "--bad-every",
            &BAD_EVERY.to_string(),
        ])
        .args(["--rate", &rate.to_string()])
        .spawn()
        .expect("spawn producer")
}

fn changelog_rows(p: &PipelineDir) -> usize {
    let mut t: Vec<&str> = CHANGELOGS.to_vec();
    t.push("quarantine");
    support::rows_in(p, &t)
}

/// Every changelog holds exactly the synthetic input (ignoring rows with `id < 0`, which a foreign tool added),
/// every malformed record is quarantined once, and `transactions_enriched` has one row per transaction change.
fn assert_exact(p: &PipelineDir, events: u64) {
    let (expected, bad) = support::synth_truth(SEED, USERS, events, BAD_EVERY);
    let mut checks: Vec<(&str, &BTreeSet<(i64, i64)>)> =
        expected.iter().map(|(t, w)| (*t, w)).collect();
    checks.push(("transactions_enriched", &expected["transactions_changes"]));
    for (table, want) in checks {
        let rows: Vec<(i64, i64)> = id_lsn(&read_table(&p.catalog_db(), &p.warehouse(), table))
            .into_iter()
            .filter(|(id, _)| *id >= 0)
            .collect();
        let got: BTreeSet<(i64, i64)> = rows.iter().copied().collect();
        assert_eq!(
            rows.len(),
            got.len(),
            "{table}: {} duplicate rows",
            rows.len() - got.len()
        );
        let missing: Vec<_> = want.difference(&got).take(5).collect();
        let extra: Vec<_> = got.difference(want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{table}: {} missing (e.g. {missing:?}), {} unexpected (e.g. {extra:?})",
            want.difference(&got).count(),
            got.difference(want).count()
        );
    }
    let quarantined: usize = read_table(&p.catalog_db(), &p.warehouse(), "quarantine")
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(
        quarantined, bad,
        "every malformed record quarantined exactly once"
    );
}

fn wait_caught_up(p: &PipelineDir, events: u64, within: Duration) {
    let (expected, bad) = support::synth_truth(SEED, USERS, events, BAD_EVERY);
    let want = expected.values().map(BTreeSet::len).sum::<usize>() + bad;
    let done = wait_for(within, || (changelog_rows(p) >= want).then_some(()));
    assert!(
        done.is_some(),
        "only {} of {want} rows committed; log:\n{}",
        changelog_rows(p),
        p.log()
    );
    let want_enriched = expected["transactions_changes"].len();
    let enriched = || {
        read_table(&p.catalog_db(), &p.warehouse(), "transactions_enriched")
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>()
    };
    let done = wait_for(Duration::from_secs(60), || {
        (enriched() >= want_enriched).then_some(())
    });
    assert!(
        done.is_some(),
        "only {} of {want_enriched} enriched rows; log:\n{}",
        enriched(),
        p.log()
    );
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

#[test]
fn a_second_run_on_the_same_data_directory_refuses_and_touches_nothing() {
    const EVENTS: u64 = 6_000;
    let broker = Broker::start();
    let prefix = "lock";
    broker.create_topics(prefix, 4);
    let p = PipelineDir::new("lock", &broker.brokers(), prefix, "300ms");
    let mut producer = produce(&broker.brokers(), prefix, EVENTS, 3_000);
    let mut first = p.spawn(&[]);
    let consuming = wait_for(Duration::from_secs(60), || {
        p.log().contains("consuming").then_some(())
    });
    assert!(consuming.is_some(), "log:\n{}", p.log());

    let second = ledgerstream()
        .args(["run", "--config"])
        .arg(&p.config)
        .output()
        .expect("second run");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second process must refuse");
    assert!(
        stderr.contains("is in use by another ledgerstream process")
            && stderr.contains(&format!("pid {}", first.id())),
        "the refusal names the holder: {stderr}"
    );
    assert!(
        !stderr.contains("claimed the partitions") && !stderr.contains("recovered"),
        "the second process must stop before claiming or recovering: {stderr}"
    );

    assert!(producer.wait().expect("producer").success());
    wait_caught_up(&p, EVENTS, Duration::from_secs(120));
    let status = terminate(&mut first, Duration::from_secs(60));
    assert!(
        status.success(),
        "first run drains cleanly: {status}; log:\n{}",
        p.log()
    );
    assert_exact(&p, EVENTS);
    let _ = std::fs::remove_dir_all(&p.dir);
}

/// A second pipeline directory for the same writer, lakehouse and remote as `a`, with its own data directory.
fn same_writer_elsewhere(a: &PipelineDir, name: &str) -> PipelineDir {
    let dir = a.dir.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let text = std::fs::read_to_string(&a.config).expect("config");
    let text = text.replace(
        &format!("data_dir = \"{}\"", a.data_dir().display()),
        &format!("data_dir = \"{}\"", dir.join("data").display()),
    );
    let config = dir.join("ledgerstream.toml");
    std::fs::write(&config, text).expect("config");
    PipelineDir {
        dir,
        config,
        lake: a.lake.clone(),
    }
}

#[test]
fn a_writer_stopped_past_a_takeover_commits_nothing_and_exits_fenced() {
    const EVENTS: u64 = 24_000;
    let broker = Broker::start();
    let prefix = "zombie";
    broker.create_topics(prefix, 4);
    let a = PipelineDir::with_remote("zombie", &broker.brokers(), prefix, "300ms");
    let b = same_writer_elsewhere(&a, "node-b");
    let mut producer = produce(&broker.brokers(), prefix, EVENTS, 2_000);
    let mut old = a.spawn(&[]);
    // Let A commit a few checkpoints, then freeze it mid-stream, as a long GC pause or a VM stall would.
    let started = wait_for(Duration::from_secs(90), || {
        (changelog_rows(&a) > 3_000).then_some(())
    });
    assert!(started.is_some(), "A never committed; log:\n{}", a.log());
    signal(old.id(), "-STOP");
    let frozen_rows = changelog_rows(&a);

    // B takes over on another data directory, restoring from the shared remote.
    let mut new = b.spawn(&[]);
    let took_over = wait_for(Duration::from_secs(90), || {
        (changelog_rows(&a) > frozen_rows).then_some(())
    });
    assert!(took_over.is_some(), "B never committed; log:\n{}", b.log());
    assert!(
        b.log()
            .contains("restored a durable checkpoint from the remote"),
        "log:\n{}",
        b.log()
    );

    // A wakes up: its next commit is refused by the takeover's epoch, and it stops with an error.
    signal(old.id(), "-CONT");
    let exited = wait_for(Duration::from_secs(90), || old.try_wait().ok().flatten());
    let Some(status) = exited else {
        panic!("the woken writer kept running; log:\n{}", a.log());
    };
    assert!(
        !status.success(),
        "a fenced writer exits non-zero, got {status}"
    );
    let log_a = a.log();
    assert!(log_a.contains("Fenced"), "log:\n{log_a}");

    assert!(producer.wait().expect("producer").success());
    wait_caught_up(&a, EVENTS, Duration::from_secs(180));
    let status = terminate(&mut new, Duration::from_secs(60));
    assert!(
        status.success(),
        "B drains cleanly: {status}; log:\n{}",
        b.log()
    );
    assert_exact(&a, EVENTS);
    let _ = std::fs::remove_dir_all(&a.dir);
}

#[test]
fn a_foreign_append_between_checkpoints_survives_and_nothing_duplicates() {
    const EVENTS: u64 = 12_000;
    let broker = Broker::start();
    let prefix = "foreign";
    broker.create_topics(prefix, 4);
    let p = PipelineDir::new("foreign", &broker.brokers(), prefix, "300ms");
    let mut producer = produce(&broker.brokers(), prefix, EVENTS, 3_000);
    let mut run = p.spawn(&[]);
    let some = wait_for(Duration::from_secs(90), || {
        (support::rows_in(&p, &["users_changes"]) >= 5).then_some(())
    });
    assert!(some.is_some(), "log:\n{}", p.log());
    // pyiceberg appends to a live pipeline table while checkpoints keep committing.
    let out = support::run_ok(
        Command::new(support::venv_python())
            .arg(support::repo_root().join("tests/support/foreign_append.py"))
            .arg(p.catalog_db())
            .args(["fintech", "users_changes", "5"]),
        "pyiceberg append",
    );
    // A multiset: a user's several changes share its id.
    let mut foreign: Vec<i64> = out
        .trim()
        .split(',')
        .map(|v| v.parse().expect("id"))
        .collect();
    foreign.sort();
    assert_eq!(foreign.len(), 5, "{out}");

    assert!(producer.wait().expect("producer").success());
    wait_caught_up(&p, EVENTS, Duration::from_secs(120));
    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(status.success(), "drain: {status}; log:\n{}", p.log());
    assert_exact(&p, EVENTS);
    let mut kept: Vec<i64> = id_lsn(&read_table(
        &p.catalog_db(),
        &p.warehouse(),
        "users_changes",
    ))
    .into_iter()
    .map(|(id, _)| id)
    .filter(|id| *id < 0)
    .collect();
    kept.sort();
    assert_eq!(kept, foreign, "the foreign rows survive, once each");
    let _ = std::fs::remove_dir_all(&p.dir);
}

/// For each table, the newest checkpoint its marks record for writer `test`, read from one consistent catalog
/// snapshot (a single SELECT) and the metadata files it points at.
fn checkpoints_per_table(catalog_db: &Path, tables: &[String]) -> Option<BTreeMap<String, u64>> {
    let out = Command::new(support::venv_python())
        .arg("-c")
        .arg(
            "import json,sqlite3,sys\n\
             con=sqlite3.connect(sys.argv[1])\n\
             rows=con.execute(\"SELECT table_name, metadata_location FROM iceberg_tables\").fetchall()\n\
             print(json.dumps(dict(rows)))",
        )
        .arg(catalog_db)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let locations: BTreeMap<String, String> = serde_json::from_slice(&out.stdout).ok()?;
    let mut per_table = BTreeMap::new();
    for t in tables {
        let loc = locations.get(t)?;
        let text = std::fs::read_to_string(loc.trim_start_matches("file://")).ok()?;
        let md: serde_json::Value = serde_json::from_str(&text).ok()?;
        let newest = md["properties"]
            .as_object()?
            .iter()
            .filter(|(k, _)| k.starts_with("ledgerstream.writer.test.p"))
            .filter_map(|(_, v)| serde_json::from_str::<serde_json::Value>(v.as_str()?).ok())
            .filter_map(|m| m["checkpoint"].as_u64())
            .max()
            .unwrap_or(0);
        per_table.insert(t.clone(), newest);
    }
    Some(per_table)
}

#[test]
fn a_reader_never_sees_two_tables_at_different_checkpoints() {
    const EVENTS: u64 = 12_000;
    let broker = Broker::start();
    let prefix = "atomic";
    broker.create_topics(prefix, 4);
    let p = PipelineDir::new("atomic", &broker.brokers(), prefix, "200ms");
    // Slow enough for many checkpoints (200 ms apart) while the reader polls.
    let mut producer = produce(&broker.brokers(), prefix, EVENTS, 1_000);
    let mut run = p.spawn(&[]);
    let tables = ledgerstream::pipeline::checkpoint_tables();
    let mut seen = BTreeSet::new();
    let mut polls = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while std::time::Instant::now() < deadline {
        if let Some(per_table) = checkpoints_per_table(&p.catalog_db(), &tables) {
            polls += 1;
            let distinct: BTreeSet<u64> = per_table.values().copied().collect();
            assert!(
                distinct.len() <= 1,
                "tables at different checkpoints: {per_table:?}"
            );
            seen.extend(distinct);
        }
        // Reading every table is slower than a poll: check for the end only once the producer is done.
        if producer.try_wait().ok().flatten().is_some() {
            break;
        }
    }
    assert!(producer.wait().expect("producer").success());
    assert!(
        seen.len() >= 5,
        "the reader saw too few checkpoints to mean anything: {seen:?} in {polls} polls"
    );
    wait_caught_up(&p, EVENTS, Duration::from_secs(60));
    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(status.success(), "drain: {status}; log:\n{}", p.log());
    assert_exact(&p, EVENTS);
    let _ = std::fs::remove_dir_all(&p.dir);
}
