//! Bad input straight to the topics: malformed JSON, truncated records, wrong types, a 5 MB record. Each must land
//! in `quarantine` with its offset, kind and raw bytes; every good record around them must still be committed.

mod support;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use ledgerstream::synth::Synth;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Broker, PipelineDir, arrow_rows, read_table, terminate, wait_for};

const GOOD: usize = 3000;

#[test]
fn malformed_records_are_quarantined_and_nothing_else_is_lost() {
    let broker = Broker::start();
    let prefix = "bad";
    broker.create_topics(prefix, 4);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("partitioner", "murmur2_random")
        .set("message.max.bytes", "16777216")
        .create()
        .expect("producer");
    let topic = |t: &str| format!("{prefix}.public.{t}");

    let good: Vec<_> = Synth::new(3, 100).take(GOOD).collect();
    let valid_tx = String::from_utf8(
        good.iter()
            .find(|r| r.table.name() == "transactions")
            .unwrap()
            .payload
            .clone(),
    )
    .unwrap();
    let huge = format!(
        r#"{{"before":null,"after":{{"id":1,"email":"{}","full_name":"x","country":"US","kyc_status":"v","risk_tier":"l","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}},"source":{{"ts_ms":1,"lsn":1,"table":"users"}},"op":"c"}}"#,
        "a".repeat(5 << 20)
    );
    // (topic, payload, expected error kind)
    let bad: Vec<(String, Vec<u8>, &str)> = vec![
        (topic("users"), b"{not json".to_vec(), "invalid_json"),
        (
            topic("wallets"),
            valid_tx.as_bytes()[..valid_tx.len() / 3].to_vec(),
            "invalid_json",
        ),
        (
            topic("transactions"),
            valid_tx
                .replace(r#""amount":""#, r#""amount":{"x":1},"was":""#)
                .into_bytes(),
            // The decoder reports a money column that is neither a string nor a number as a bad decimal.
            "bad_decimal",
        ),
        (
            topic("transactions"),
            valid_tx
                .replace(r#""id":"#, r#""id":"seven","was":"#)
                .into_bytes(),
            "wrong_type",
        ),
        (
            topic("transactions"),
            valid_tx
                .replace(r#""amount":"#, r#""amount":"12.345.6","was":"#)
                .into_bytes(),
            "bad_decimal",
        ),
        (
            topic("transactions"),
            valid_tx.replace(r#""op":"c""#, r#""op":"x""#).into_bytes(),
            "unknown_op",
        ),
        (topic("users"), b"[1,2,3]".to_vec(), "not_an_object"),
        (topic("users"), huge.into_bytes(), "too_large"),
    ];

    // Interleave: bad records among the good ones.
    let every = GOOD / (bad.len() + 1);
    let mut bad_iter = bad.iter();
    for (i, r) in good.iter().enumerate() {
        let key = r.key.to_string();
        let t = topic(r.table.name());
        producer
            .send(BaseRecord::to(&t).key(&key).payload(&r.payload))
            .expect("send good");
        if i % every == every - 1
            && let Some((t, payload, _)) = bad_iter.next()
        {
            producer
                .send(BaseRecord::to(t).key("1").payload(payload))
                .expect("send bad");
        }
        producer.poll(Duration::ZERO);
    }
    for (t, payload, _) in bad_iter {
        producer
            .send(BaseRecord::to(t).key("1").payload(payload))
            .expect("send bad");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let p = PipelineDir::new("bad", &broker.brokers(), prefix, "500ms");
    let mut run = p.spawn(&[]);
    let total = |t: &str| -> usize {
        read_table(&p.catalog_db(), &p.warehouse(), t)
            .iter()
            .map(|b| b.num_rows())
            .sum()
    };
    let done = wait_for(Duration::from_secs(120), || {
        let good_rows: usize = ["users_changes", "wallets_changes", "transactions_changes"]
            .iter()
            .map(|t| total(t))
            .sum();
        (good_rows >= GOOD && total("quarantine") >= bad.len()).then_some(())
    });
    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(done.is_some(), "not all rows committed; log:\n{}", p.log());
    assert!(
        status.success(),
        "pipeline failed: {status}; log:\n{}",
        p.log()
    );

    let good_rows: usize = ["users_changes", "wallets_changes", "transactions_changes"]
        .iter()
        .map(|t| total(t))
        .sum();
    assert_eq!(good_rows, GOOD, "every good record committed once");

    let q = read_table(&p.catalog_db(), &p.warehouse(), "quarantine");
    let rows = arrow_rows(&q);
    assert_eq!(rows.len(), bad.len());
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        if let ledgerstream::value::Value::Text(k) = &r["error_kind"] {
            *kinds.entry(k.clone()).or_default() += 1;
        }
        assert!(
            matches!(r["error_message"], ledgerstream::value::Value::Text(ref m) if !m.is_empty())
        );
    }
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, k) in &bad {
        *want.entry(k.to_string()).or_default() += 1;
    }
    assert_eq!(kinds, want, "quarantine reasons");
    // The raw payload is kept byte for byte, including the 5 MB one.
    let sizes: Vec<usize> = rows
        .iter()
        .map(|r| match &r["payload"] {
            ledgerstream::value::Value::Binary(b) => b.len(),
            _ => 0,
        })
        .collect();
    assert!(
        sizes.iter().any(|s| *s > 5 << 20),
        "the 5 MB payload is preserved: {sizes:?}"
    );
    let offsets = q.iter().flat_map(|b| {
        let col = b
            .column_by_name("kafka_offset")
            .expect("kafka_offset")
            .as_primitive::<Int64Type>()
            .clone();
        (0..col.len()).map(move |i| col.value(i))
    });
    assert_eq!(offsets.count(), bad.len());
    drop(broker);
}
