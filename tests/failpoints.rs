//! Crash tests (`--features failpoints`): the processor is killed (aborted in place, like `kill -9`) at each step
//! of the checkpoint protocol, restarted, and must end with every Iceberg table holding exactly the input: no
//! duplicate `(table, id, lsn)`, no missing change, every malformed record in quarantine once.
//!
//! Input comes from the synthetic Debezium-format producer straight into a real broker (tansu), so the ground
//! truth is exact and Debezium's speed does not matter.

mod support;

use std::collections::BTreeSet;

use std::time::Duration;
use support::{Broker, PipelineDir, id_lsn, ledgerstream, read_table, terminate, wait_for};

const EVENTS: u64 = 12_000;
const SEED: u64 = 11;
const USERS: i64 = 300;
const BAD_EVERY: u64 = 997;

/// `(id, lsn)` of every change, per changelog table.
type Expected = support::ChangesByTable;

/// The changes the producer writes, and how many malformed records among them.
fn expected() -> (Expected, usize) {
    support::synth_truth(SEED, USERS, EVENTS, BAD_EVERY)
}

fn produce(brokers: &str, prefix: &str, rate: u64) -> std::process::Child {
    ledgerstream()
        .args(["produce", "--brokers", brokers, "--topic-prefix", prefix])
        .args(["--events", &EVENTS.to_string(), "--seed", &SEED.to_string()])
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

fn total_rows(p: &PipelineDir) -> usize {
    support::rows_in(
        p,
        &[
            "users_changes",
            "wallets_changes",
            "transactions_changes",
            "quarantine",
        ],
    )
}

/// Runs the scenario: crash at `failpoint` (after `skip` earlier hits), restart, drain, compare.
fn crash_and_recover(name: &str, failpoint: &str, skip: u32) {
    crash_and_recover_on(name, failpoint, skip, Node::Same);
}

/// Where the restart happens.
#[derive(Clone, Copy, PartialEq)]
enum Node {
    /// The same machine: the data directory survives the crash.
    Same,
    /// A new, empty node: the data directory is wiped after the crash; the lakehouse (catalog + warehouse) and the
    /// durable checkpoint remote are kept.
    New,
}

fn crash_and_recover_on(name: &str, failpoint: &str, skip: u32, node: Node) {
    let broker = Broker::start();
    let prefix = format!("fp{}", name.replace('_', ""));
    broker.create_topics(&prefix, 4);
    let p = match node {
        Node::Same => PipelineDir::new(name, &broker.brokers(), &prefix, "300ms"),
        Node::New => PipelineDir::with_remote(name, &broker.brokers(), &prefix, "300ms"),
    };
    let mut producer = produce(&broker.brokers(), &prefix, 4_000);

    let actions = if skip == 0 {
        "return".to_string()
    } else {
        format!("{skip}*off->return")
    };
    let mut crashing = p.spawn(&[("FAILPOINTS", &format!("{failpoint}={actions}"))]);
    let status = wait_for(Duration::from_secs(60), || {
        crashing.try_wait().ok().flatten()
    })
    .unwrap_or_else(|| {
        let _ = crashing.kill();
        panic!("failpoint {failpoint} never hit; log:\n{}", p.log())
    });
    assert!(!status.success(), "the crashing run must die, got {status}");
    assert!(
        p.log().contains(&format!("failpoint {failpoint} hit")),
        "log:\n{}",
        p.log()
    );

    if node == Node::New {
        // Otherwise there would be nothing to restore and the scenario would test a fresh start.
        assert!(
            total_rows(&p) > 0,
            "the tables must hold rows before the node is lost"
        );
        std::fs::remove_dir_all(p.data_dir()).expect("wipe the data directory");
    }
    let mut run = p.spawn(&[]);
    assert!(producer.wait().expect("producer").success());
    let (expected, bad) = expected();
    let want: usize = expected.values().map(BTreeSet::len).sum::<usize>() + bad;
    let caught_up = wait_for(Duration::from_secs(120), || {
        (total_rows(&p) >= want).then_some(())
    });
    // Transactions wait for their watermark; once input stops, an idle checkpoint releases the last ones.
    let want_enriched = expected["transactions_changes"].len();
    let enriched_rows = || {
        read_table(&p.catalog_db(), &p.warehouse(), "transactions_enriched")
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>()
    };
    let enriched_caught_up = wait_for(Duration::from_secs(60), || {
        (enriched_rows() >= want_enriched).then_some(())
    });
    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(
        enriched_caught_up.is_some(),
        "only {} of {want_enriched} enriched rows; log:\n{}",
        enriched_rows(),
        p.log()
    );
    assert!(
        caught_up.is_some(),
        "only {} of {want} rows committed; log:\n{}",
        total_rows(&p),
        p.log()
    );
    assert!(
        status.success(),
        "drain failed: {status}; log:\n{}",
        p.log()
    );

    // The derived table is exactly-once too: one enriched row per transaction change.
    let mut checks: Vec<(&str, &BTreeSet<(i64, i64)>)> =
        expected.iter().map(|(t, w)| (*t, w)).collect();
    checks.push(("transactions_enriched", &expected["transactions_changes"]));
    for (table, want) in checks {
        let rows = id_lsn(&read_table(&p.catalog_db(), &p.warehouse(), table));
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
            "{table}: missing {missing:?}, unexpected {extra:?}"
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
    if node == Node::New {
        // The new node came back from the remote (not from scratch, which would have duplicated rows anyway).
        let log = p.log();
        assert!(
            log.contains("restored a durable checkpoint from the remote"),
            "log:\n{log}"
        );
        // And the remote is complete again: its newest checkpoint has state and marker, like the local one.
        let out = support::run_ok(
            ledgerstream()
                .args(["checkpoints", "--config"])
                .arg(&p.config)
                .args(["list", "--json"]),
            "checkpoints list",
        );
        let list: serde_json::Value = serde_json::from_str(&out).expect("json");
        let last = list
            .as_array()
            .and_then(|a| a.last())
            .expect("some checkpoint");
        assert_eq!(last["complete"], true, "{out}");
        assert_eq!(last["remote"]["marker"], true, "{out}");
    }
    let _ = std::fs::remove_dir_all(&p.dir);
    drop(broker);
}

#[test]
fn crash_after_data_files_before_commit() {
    crash_and_recover("after_data_files", "committer::after_data_files", 1);
}

#[test]
fn crash_after_intent_before_any_commit() {
    crash_and_recover("after_intent", "committer::after_intent", 1);
}

#[test]
fn crash_after_staging_before_the_swap() {
    // Every table's new metadata is written, none is swapped in: replay from the intent.
    crash_and_recover("after_stage", "commit::after_stage", 1);
}

#[test]
fn crash_inside_the_multi_table_sql_transaction() {
    // The UPDATEs of every table ran, COMMIT did not: the catalog rolls back, no table holds the checkpoint.
    crash_and_recover("inside_sql_tx", "commit::inside_sql_transaction", 2);
}

#[test]
fn crash_after_the_swap_before_the_state_checkpoint() {
    // Every table holds the checkpoint, the marker is missing: recovery finds it committed and writes the marker.
    crash_and_recover("after_swap", "commit::after_swap", 2);
}

#[test]
fn crash_after_all_commits_before_state_marker() {
    crash_and_recover("before_marker", "committer::before_state_marker", 1);
}

#[test]
fn crash_after_marker_before_cleanup() {
    crash_and_recover("after_marker", "committer::after_state_marker", 1);
}

#[test]
fn crash_during_partition_state_checkpoint() {
    crash_and_recover("state_checkpoint", "partition::before_state_checkpoint", 2);
}

#[test]
fn crash_at_the_very_first_checkpoint() {
    crash_and_recover("first_checkpoint", "commit::after_swap", 0);
}

// ---- durable checkpoints: the crash is followed by a restart on a new node (empty data directory) ----------------

#[test]
fn new_node_after_remote_state_before_remote_intent() {
    // Remote holds state n but no intent: no table holds n; restore n-1 and replay.
    crash_and_recover_on(
        "remote_state",
        "committer::after_remote_state",
        4,
        Node::New,
    );
}

#[test]
fn new_node_after_remote_intent_before_any_commit() {
    crash_and_recover_on(
        "remote_intent",
        "committer::after_remote_intent",
        4,
        Node::New,
    );
}

#[test]
fn new_node_after_the_swap() {
    // Every table holds n but no marker exists anywhere: the new node must fetch n's intent (and state) and
    // find it committed.
    crash_and_recover_on("remote_after_swap", "commit::after_swap", 1, Node::New);
}

#[test]
fn new_node_after_local_marker_before_remote_marker() {
    // Every table holds n and the local marker was written, but the remote marker was not.
    crash_and_recover_on(
        "remote_marker",
        "committer::after_state_marker",
        4,
        Node::New,
    );
}
