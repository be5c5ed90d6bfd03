//! End to end on the native stack: generator → PostgreSQL → Debezium → Kafka, read back with rdkafka.
//!
//! Ground truth is a trigger-fed audit table in the source database (tests/sql/audit.sql). Asserts that every
//! committed change arrives exactly once in op and values, in LSN order per key, that a live `ADD COLUMN` shows up,
//! and that a user's events of all three topics sit in the same partition number.

mod support;

use ledgerstream::cdc::{self, ChangeEvent, Decoded, Op, SourceTable};
use ledgerstream::value::Value;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use support::{Stack, TABLES, ledgerstream, load_audit, run_ok};

fn event_values(ev: &ChangeEvent) -> BTreeMap<String, Value> {
    let row = ev.row.as_ref().expect("row image");
    let mut values = BTreeMap::new();
    for (spec, v) in ev.table.column_specs().iter().zip(row.values()) {
        values.insert(spec.name.clone(), v.clone());
    }
    for e in row.extra() {
        values.insert(e.name.clone(), e.value.clone());
    }
    values
}

struct Received {
    partition: i32,
    offset: i64,
    ev: ChangeEvent,
}

#[test]
fn debezium_delivers_every_committed_change_co_partitioned() {
    let stack = Stack::start("cdc", 4);
    stack.psql_file(&support::repo_root().join("tests/sql/audit.sql"));

    run_ok(
        ledgerstream().args([
            "generate",
            "--pg-url",
            &stack.pg_url(),
            "--seed",
            "42",
            "--max-changes",
            "2000",
            "--rate",
            "2000/s",
            "--evolve-after",
            "1000",
        ]),
        "ledgerstream generate",
    );
    let audit = load_audit(&stack);
    let expected: usize = audit.values().map(Vec::len).sum();
    assert!(expected >= 2000, "generator wrote {expected} changes");
    let deletes = audit.values().flatten().filter(|a| a.op == "d").count();
    assert!(deletes > 0, "the generator must exercise deletes");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack.brokers())
        .set("group.id", "e2e-cdc")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for t in TABLES {
        for p in 0..stack.partitions as i32 {
            tpl.add_partition_offset(&t.topic("fintech"), p, Offset::Beginning)
                .expect("tpl");
        }
    }
    consumer.assign(&tpl).expect("assign");

    // Debezium may deliver a user-id change as delete + create (the key changes), so count changes, not records.
    let mut received: Vec<Received> = Vec::new();
    let mut tombstones = 0usize;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut idle_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let table = SourceTable::from_topic("fintech", m.topic()).expect("known topic");
                match cdc::decode(table, m.key(), m.payload()).unwrap_or_else(|e| {
                    panic!(
                        "undecodable record {}[{}]@{}: {e}",
                        m.topic(),
                        m.partition(),
                        m.offset()
                    )
                }) {
                    Decoded::Tombstone { .. } => tombstones += 1,
                    Decoded::Change(ev) => received.push(Received {
                        partition: m.partition(),
                        offset: m.offset(),
                        ev,
                    }),
                }
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {
                if received.len() >= expected && idle_since.elapsed() > Duration::from_secs(5) {
                    break;
                }
            }
        }
    }
    assert!(
        tombstones >= deletes,
        "{tombstones} tombstones for {deletes} deletes"
    );

    // Group per (table, pk), in Kafka order within a partition; check LSNs increase in that order.
    let mut by_key: BTreeMap<(String, i64), Vec<&Received>> = BTreeMap::new();
    for r in &received {
        by_key
            .entry((r.ev.table.name().to_string(), r.ev.pk().expect("pk")))
            .or_default()
            .push(r);
    }
    for ((t, pk), rs) in &by_key {
        let mut last: HashMap<i32, (i64, u64)> = HashMap::new();
        for r in rs {
            if let Some((off, lsn)) = last.get(&r.partition) {
                assert!(
                    r.offset > *off && r.ev.lsn.0 >= *lsn,
                    "{t}/{pk}: LSN order broken in partition {}",
                    r.partition
                );
            }
            last.insert(r.partition, (r.offset, r.ev.lsn.0));
        }
    }

    // Compare with the audit log, merging a key change (delete + create at one LSN) back into one update.
    let mut compared = 0usize;
    let mut device_id_seen = false;
    for (key, audited) in &audit {
        let mut rs: Vec<&Received> = by_key.get(key).cloned().unwrap_or_default();
        rs.sort_by_key(|r| (r.ev.lsn, r.ev.op != Op::Delete));
        let mut changes: Vec<(&'static str, &ChangeEvent)> = Vec::new();
        let mut i = 0;
        while i < rs.len() {
            let ev = &rs[i].ev;
            let op = match ev.op {
                Op::Create | Op::Read => "c",
                Op::Update => "u",
                Op::Delete => "d",
                Op::Truncate => panic!("unexpected truncate"),
            };
            if op == "d"
                && i + 1 < rs.len()
                && rs[i + 1].ev.lsn == ev.lsn
                && rs[i + 1].ev.op == Op::Create
            {
                changes.push(("u", &rs[i + 1].ev));
                i += 2;
                continue;
            }
            changes.push((op, ev));
            i += 1;
        }
        assert_eq!(
            changes.len(),
            audited.len(),
            "{key:?}: {} changes in Kafka, {} in the audit log",
            changes.len(),
            audited.len()
        );
        for ((op, ev), a) in changes.iter().zip(audited) {
            assert_eq!(*op, a.op, "{key:?}: op");
            assert_eq!(ev.tx_id, Some(a.txid), "{key:?}: txid");
            let got = event_values(ev);
            for (name, want) in &a.values {
                let have = got.get(name).unwrap_or(&Value::Null);
                assert_eq!(have, want, "{key:?}: column {name} ({op})");
                if name == "device_id" && !have.is_null() {
                    device_id_seen = true;
                }
            }
            compared += 1;
        }
    }
    assert_eq!(compared, expected);
    assert!(
        device_id_seen,
        "the live ADD COLUMN device_id never reached Kafka"
    );
    let extra_keys: Vec<_> = by_key.keys().filter(|k| !audit.contains_key(*k)).collect();
    assert!(
        extra_keys.is_empty(),
        "changes in Kafka without a source change: {extra_keys:?}"
    );

    // Co-partitioning: every record keyed by a user id sits in the same partition, whatever its topic.
    let mut home: HashMap<i64, (i32, &'static str)> = HashMap::new();
    let mut keyed = 0;
    for r in &received {
        if let Some(user) = r.ev.key {
            keyed += 1;
            let (p, t) = *home.entry(user).or_insert((r.partition, r.ev.table.name()));
            assert_eq!(
                r.partition,
                p,
                "user {user}: {} in partition {} but {t} in partition {p}",
                r.ev.table.name(),
                r.partition
            );
        }
    }
    let users_in_all_three = home
        .keys()
        .filter(|u| {
            TABLES.iter().all(|t| {
                received
                    .iter()
                    .any(|r| r.ev.key == Some(**u) && r.ev.table == *t)
            })
        })
        .count();
    assert!(
        keyed > 0 && users_in_all_three > 10,
        "{users_in_all_three} users seen in all three topics"
    );
    println!(
        "compared {compared} changes ({deletes} deletes, {tombstones} tombstones); {} users in {} partitions",
        home.len(),
        stack.partitions
    );
}
