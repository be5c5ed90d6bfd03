//! A checkpoint must never resume silently past the end of its input. When the topics were deleted and recreated
//! since the checkpoint (here: a fresh in-memory broker), the stored offsets point past records that never
//! reached the pipeline; the processor refuses to start and says why, instead of skipping them.
//!
//! The same check must not fire on a healthy restart, although tansu's memory engine reports a high watermark
//! below the real end of a partition.

mod support;

use std::time::Duration;
use support::{Broker, PipelineDir, ledgerstream, terminate, wait_for};

/// Changes (not malformed records) among the first `events` of the producer with this seed.
fn changes(events: u64, seed: u64) -> usize {
    let (by_table, _) = support::synth_truth(seed, 100, events, 0);
    by_table.values().map(|s| s.len()).sum()
}

/// Log lines saying the pipeline started consuming (one per start).
fn starts(p: &PipelineDir) -> usize {
    p.log()
        .lines()
        .filter(|l| l.trim_end().ends_with("consuming"))
        .count()
}

fn produce(broker: &Broker, events: u64, seed: u64) {
    support::run_ok(
        ledgerstream()
            .args(["produce", "--brokers", &broker.brokers(), "--topic-prefix"])
            .args([
                "rt",
                "--events",
                &events.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .args(["--users", "100"]),
        "produce",
    );
}

fn changelog_rows(p: &PipelineDir) -> usize {
    support::rows_in(
        p,
        &["users_changes", "wallets_changes", "transactions_changes"],
    )
}

/// Two-partition topics with `events` from the producer with `seed`, and a pipeline run on them until every change
/// is committed (the last field says whether that happened within 90 s). Returns the broker, the pipeline, the
/// running process and the number of changes.
fn consumed(
    name: &str,
    events: u64,
    seed: u64,
) -> (Broker, PipelineDir, support::Running, usize, Option<()>) {
    let broker = Broker::start();
    broker.create_topics("rt", 2);
    produce(&broker, events, seed);
    let p = PipelineDir::new(name, &broker.brokers(), "rt", "500ms");
    let run = p.spawn(&[]);
    let want = changes(events, seed);
    let all_in = wait_for(Duration::from_secs(90), || {
        (changelog_rows(&p) >= want).then_some(())
    });
    (broker, p, run, want, all_in)
}

#[test]
fn a_checkpoint_past_the_end_of_a_recreated_topic_refuses_to_start() {
    let (broker, p, mut run, want, all_in) = consumed("recreated", 2_000, 3);
    assert!(
        all_in.is_some(),
        "{} rows; log:\n{}",
        changelog_rows(&p),
        p.log()
    );
    assert!(terminate(&mut run, Duration::from_secs(60)).success());

    // A healthy restart on the same topics passes the check and keeps consuming.
    let mut again = p.spawn(&[]);
    assert_eq!(starts(&p), 1, "log:\n{}", p.log());
    let consuming = wait_for(Duration::from_secs(60), || (starts(&p) == 2).then_some(()));
    assert!(
        consuming.is_some() && again.try_wait().expect("wait").is_none(),
        "a healthy restart must resume; log:\n{}",
        p.log()
    );
    assert!(terminate(&mut again, Duration::from_secs(60)).success());
    assert!(!p.log().contains("resumes past the end"), "{}", p.log());

    // The topics are gone and recreated with fewer records: the old offsets are past their end.
    let fresh = Broker::start();
    fresh.create_topics("rt", 2);
    produce(&fresh, 100, 4);
    let config = std::fs::read_to_string(&p.config).expect("config");
    std::fs::write(
        &p.config,
        config.replace(&broker.brokers(), &fresh.brokers()),
    )
    .expect("config");
    drop(broker);
    let mut refused = p.spawn(&[]);
    let status = wait_for(Duration::from_secs(90), || {
        refused.try_wait().ok().flatten()
    });
    let log = p.log();
    let status = status.unwrap_or_else(|| panic!("the pipeline kept running; log:\n{log}"));
    assert!(!status.success(), "must exit with an error, got {status}");
    assert!(
        log.contains("resumes past the end of its input") && log.contains("[0] resumes at offset"),
        "the error names the checkpoint and the topic partitions; log:\n{log}"
    );
    // Nothing was written from the new topics.
    assert_eq!(changelog_rows(&p), want);
    let _ = std::fs::remove_dir_all(&p.dir);
}

/// Deletes the three topics under `prefix` and creates them again with `partitions` partitions. Only while nothing
/// consumes them: librdkafka 2.12 can crash in its metadata cache when a topic is recreated under a live client.
fn repartition(broker: &Broker, prefix: &str, partitions: u32) {
    let script = format!(
        r#"
import time
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({{"bootstrap.servers": "{brokers}"}})
names = ["{prefix}.public.users", "{prefix}.public.wallets", "{prefix}.public.transactions"]
for f in admin.delete_topics(names, operation_timeout=15).values():
    f.result()
for _ in range(50):
    if not set(names) & set(admin.list_topics(timeout=15).topics):
        break
    time.sleep(0.2)
new = [NewTopic(n, num_partitions={partitions}, replication_factor=1) for n in names]
for f in admin.create_topics(new, operation_timeout=15).values():
    f.result()
"#,
        brokers = broker.brokers(),
    );
    let out = std::process::Command::new(support::venv_python())
        .args(["-c", &script])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "repartition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_restart_onto_a_different_partition_count_refuses() {
    let (broker, p, mut run, want, all_in) = consumed("repartitioned", 1_000, 5);
    assert!(all_in.is_some(), "log:\n{}", p.log());
    assert!(terminate(&mut run, Duration::from_secs(60)).success());

    // While the pipeline is down the topics come back with 3 partitions (with enough new records that the old
    // offsets are not past their end): keys now hash to other partitions than their state.
    repartition(&broker, "rt", 3);
    produce(&broker, 3_000, 6);
    let mut refused = p.spawn(&[]);
    let status = wait_for(Duration::from_secs(60), || {
        refused.try_wait().ok().flatten()
    });
    let log = p.log();
    let status = status.unwrap_or_else(|| panic!("the restart kept running; log:\n{log}"));
    assert!(!status.success(), "must exit with an error, got {status}");
    assert!(
        log.contains("partition layout changed")
            && log.contains("checkpointed with 2 partitions per topic and the topics now have 3"),
        "log:\n{log}"
    );
    assert_eq!(starts(&p), 1, "the restart never consumed; log:\n{log}");
    assert_eq!(
        changelog_rows(&p),
        want,
        "nothing written from the new layout"
    );
    let _ = std::fs::remove_dir_all(&p.dir);
}
