//! Backpressure must never lose or repeat a record. With an in-flight budget far below the backlog, every
//! partition spends most of the run waiting for permits; the output must still be exactly the input.
//!
//! This found a real loss: pausing and resuming partitions in librdkafka made the fetcher restart inside a record
//! batch, which tansu answers with the next batch, so the rest of the batch was skipped (thousands of records per
//! million, plus some redelivered ones). The source now simply stops polling a partition's queue; librdkafka's own
//! per-partition queue bound (`queued.max.messages.kbytes`) then stops the fetcher at a batch boundary.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::{
    Broker, PipelineDir, free_port, http_get, id_lsn, ledgerstream, metric_sum, read_table,
    rows_in, terminate, wait_for,
};

const EVENTS: u64 = 40_000;
const USERS: i64 = 300;
const SEED: u64 = 21;

#[test]
fn a_tiny_in_flight_budget_loses_and_repeats_nothing() {
    let broker = Broker::start();
    broker.create_topics("bp", 2);
    support::run_ok(
        ledgerstream()
            .args(["produce", "--brokers", &broker.brokers(), "--topic-prefix"])
            .args(["bp", "--events", &EVENTS.to_string()])
            .args(["--seed", &SEED.to_string(), "--users", &USERS.to_string()]),
        "produce",
    );
    let (expected, _) = support::synth_truth(SEED, USERS, EVENTS, 0);
    let want: usize = expected.values().map(|s| s.len()).sum();

    let p = PipelineDir::new("backpressure", &broker.brokers(), "bp", "300ms");
    let metrics_port = free_port();
    let config = std::fs::read_to_string(&p.config).expect("config");
    std::fs::write(
        &p.config,
        config
            .replace(
                "[pipeline]\n",
                "[pipeline]\nmax_inflight_records_per_partition = 200\nsource_batch_size = 50\n",
            )
            .replace("127.0.0.1:0", &format!("127.0.0.1:{metrics_port}")),
    )
    .expect("config");
    let mut run = p.spawn(&[]);
    let tables: Vec<&str> = expected.keys().copied().collect();
    let total = |p: &PipelineDir| rows_in(p, &tables);
    let done = wait_for(Duration::from_secs(240), || {
        (total(&p) >= want).then_some(())
    });
    let text = http_get(metrics_port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    assert!(
        done.is_some(),
        "only {} of {want} rows committed; metrics:\n{}\nlog:\n{}",
        total(&p),
        text.lines()
            .filter(|l| l.starts_with("ledgerstream_source_records_total")
                || l.starts_with("ledgerstream_dedup_skipped_total"))
            .collect::<Vec<_>>()
            .join("\n"),
        p.log()
    );
    // The budget really was the bottleneck: partitions waited for permits.
    assert!(
        metric_sum(&text, "ledgerstream_source_backpressure_micros_total") > 0.0,
        "no backpressure happened"
    );
    assert_eq!(
        metric_sum(&text, "ledgerstream_dedup_skipped_total"),
        0.0,
        "nothing was read twice"
    );
    assert!(terminate(&mut run, Duration::from_secs(60)).success());

    for (table, want) in &expected {
        let rows = id_lsn(&read_table(&p.catalog_db(), &p.warehouse(), table));
        let got: BTreeSet<(i64, i64)> = rows.iter().copied().collect();
        assert_eq!(rows.len(), got.len(), "{table}: duplicate rows");
        let missing: Vec<_> = want.difference(&got).take(5).collect();
        let extra: Vec<_> = got.difference(want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{table}: missing {missing:?}, unexpected {extra:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&p.dir);
}
