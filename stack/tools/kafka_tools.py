#!/usr/bin/env python3
"""Broker-side helpers for stack/stack.sh (run with the stack's venv: needs confluent-kafka).

    kafka_tools.py ensure-topics BOOTSTRAP TOPICS_CONF PARTITIONS
        Creates every topic of topics.conf that is missing. An existing topic with another partition count is an
        error: user-id co-partitioning across the CDC topics depends on equal counts, so never "fix" it silently.
    kafka_tools.py wait-heartbeat BOOTSTRAP TOPIC SINCE_MS TIMEOUT_S
        Returns 0 once a record with timestamp >= SINCE_MS is read from TOPIC, 1 on timeout.
    kafka_tools.py tail BOOTSTRAP TOPIC SECONDS
        Prints `partition offset key value` for every record of TOPIC read within SECONDS, from the beginning.
    kafka_tools.py counts BOOTSTRAP PREFIX
        Reads the three CDC topics from the beginning until idle and prints records per topic and partition by
        Debezium op (tombstones counted apart). Counting by reading, because tansu's memory engine reports a wrong
        high watermark.

The topics.conf format (`<name> [partitions]`, `#` comments) is also read by the compose topic-init job.
"""
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def read_topics(path, default_partitions):
    topics = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) > 2:
                raise ValueError(f"{path}:{lineno}: expected `<name> [partitions]`, got {raw.strip()!r}")
            partitions = int(fields[1]) if len(fields) == 2 else default_partitions
            if partitions < 1:
                raise ValueError(f"{path}:{lineno}: partitions must be >= 1")
            topics.append((fields[0], partitions))
    return topics


def ensure_topics(bootstrap, conf, default_partitions):
    wanted = read_topics(conf, default_partitions)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=15).topics
    errors = []
    for name, partitions in wanted:
        if name in existing:
            have = len(existing[name].partitions)
            if have != partitions:
                errors.append(f"{name} has {have} partitions, topics.conf wants {partitions}")
    missing = [NewTopic(n, num_partitions=p, replication_factor=1) for n, p in wanted if n not in existing]
    if missing:
        for name, fut in admin.create_topics(missing, operation_timeout=15).items():
            try:
                fut.result()
                print(f"created {name}")
            except KafkaException as e:
                errors.append(f"create {name}: {e}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


def _consumer(bootstrap):
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ledgerstream-stack-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )


def _assign_all(consumer, topic):
    md = consumer.list_topics(topic, timeout=15).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise KafkaException(f"topic {topic} not found")
    consumer.assign([TopicPartition(topic, p, 0) for p in md.partitions])


def wait_heartbeat(bootstrap, topic, since_ms, timeout_s):
    consumer = _consumer(bootstrap)
    try:
        _assign_all(consumer, topic)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            _, ts = msg.timestamp()
            if ts >= since_ms:
                return 0
        return 1
    finally:
        consumer.close()


def tail(bootstrap, topic, seconds):
    consumer = _consumer(bootstrap)
    try:
        _assign_all(consumer, topic)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            key = msg.key().decode() if msg.key() is not None else "<null>"
            value = msg.value().decode() if msg.value() is not None else "<tombstone>"
            print(f"{msg.partition()} {msg.offset()} {key} {value}", flush=True)
        return 0
    finally:
        consumer.close()


def counts(bootstrap, prefix, idle_s=3.0):
    import json
    print(f"{'topic':<32} {'partition':>9} {'c':>7} {'u':>7} {'d':>7} {'r':>5} {'tomb':>6}")
    for table in ("users", "wallets", "transactions"):
        topic = f"{prefix}.public.{table}"
        consumer = _consumer(bootstrap)
        per = {}
        try:
            _assign_all(consumer, topic)
            last = time.monotonic()
            while time.monotonic() - last < idle_s:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                last = time.monotonic()
                row = per.setdefault(msg.partition(), {"c": 0, "u": 0, "d": 0, "r": 0, "tomb": 0})
                if msg.value() is None:
                    row["tomb"] += 1
                    continue
                op = json.loads(msg.value()).get("op", "?")
                row[op] = row.get(op, 0) + 1
        finally:
            consumer.close()
        for p in sorted(per):
            r = per[p]
            print(f"{topic:<32} {p:>9} {r['c']:>7} {r['u']:>7} {r['d']:>7} {r['r']:>5} {r['tomb']:>6}")
    return 0


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "ensure-topics" and len(argv) == 5:
        return ensure_topics(argv[2], argv[3], int(argv[4]))
    if cmd == "wait-heartbeat" and len(argv) == 6:
        return wait_heartbeat(argv[2], argv[3], int(argv[4]), float(argv[5]))
    if cmd == "counts" and len(argv) == 4:
        return counts(argv[2], argv[3])
    if cmd == "tail" and len(argv) == 5:
        return tail(argv[2], argv[3], float(argv[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
