//! Observability end to end: `ledgerstream run` exports its spans over OTLP/gRPC to a receiver inside this test,
//! and serves `/metrics` and `/readyz`. Input is synthetic Debezium-format events in a real broker (tansu), all
//! produced before the pipeline starts; the checkpoint interval is an hour, so the only checkpoint is the final one
//! taken at SIGTERM, and its trace can be asserted exactly: one `checkpoint` root with `barrier`, one `seal` per
//! partition, one `parquet_write` per output table, one `iceberg_commit` (every table in one catalog swap, with a
//! `stage` child per table) and `state_checkpoint`, all children of the root and carrying its checkpoint id.

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{
    Broker, PipelineDir, free_port, http_get, ledgerstream, metric_sum, run_ok, terminate, wait_for,
};

const EVENTS: u64 = 3_000;
const SEED: u64 = 5;
const USERS: i64 = 100;
const BAD_EVERY: u64 = 499;
const PARTITIONS: u32 = 2;

/// Spans received, with the `service.name` of their resource.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.spans.lock().expect("spans");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                out.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attr(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone())
}

/// An integer attribute. tracing-opentelemetry exports `i64`/`i32` fields as integers but `u64`/`usize` ones as
/// decimal strings (they may not fit an i64), so both forms are accepted.
fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(Value::IntValue(i)) => Some(i),
        Some(Value::StringValue(s)) => s.parse().ok(),
        _ => None,
    }
}

fn str_attr(span: &Span, key: &str) -> Option<String> {
    match attr(span, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Tables derived in the partition actors, written when the watermark releases their rows.
const DERIVED: [&str; 3] = ["transactions_enriched", "fraud_alerts", "pnl_minutely"];

/// Rows each output table gets from the synthetic input: distinct changes per changelog table, and the malformed
/// records in quarantine.
fn expected_rows() -> BTreeMap<String, i64> {
    let (by_table, bad) = support::synth_truth(SEED, USERS, EVENTS, BAD_EVERY);
    let mut out: BTreeMap<String, i64> = by_table
        .into_iter()
        .map(|(t, s)| (t.to_string(), s.len() as i64))
        .collect();
    out.insert("quarantine".into(), bad as i64);
    out
}

#[test]
fn one_checkpoint_is_one_trace_with_the_expected_tree() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let receiver = Receiver::default();
    let otlp_port = free_port();
    {
        let svc = TraceServiceServer::new(receiver.clone());
        let addr = ([127, 0, 0, 1], otlp_port).into();
        rt.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve(addr)
                .await
                .expect("OTLP receiver");
        });
    }

    let broker = Broker::start();
    let prefix = "traces";
    broker.create_topics(prefix, PARTITIONS);
    run_ok(
        ledgerstream()
            .args([
                "produce",
                "--brokers",
                &broker.brokers(),
                "--topic-prefix",
                prefix,
            ])
            .args(["--events", &EVENTS.to_string(), "--seed", &SEED.to_string()])
            .args(["--users", &USERS.to_string()])
            .args(["--bad-every", &BAD_EVERY.to_string()]),
        "produce",
    );

    let p = PipelineDir::new("trace_tree", &broker.brokers(), prefix, "1h");
    let metrics_port = free_port();
    // PipelineDir serves metrics on an ephemeral port; this test scrapes a known one.
    let config = std::fs::read_to_string(&p.config).expect("config");
    assert!(
        config.contains("metrics_addr = \"127.0.0.1:0\""),
        "{config}"
    );
    std::fs::write(
        &p.config,
        config.replace("127.0.0.1:0", &format!("127.0.0.1:{metrics_port}")),
    )
    .expect("config");
    let endpoint = format!("http://127.0.0.1:{otlp_port}");
    let mut run = p.spawn(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_SERVICE_NAME", "ls-trace-test"),
    ]);

    // Everything read, ready, and no lag left on any of the 3 x PARTITIONS topic partitions.
    let caught_up = wait_for(Duration::from_secs(90), || {
        let (_, text) = http_get(metrics_port, "/metrics")?;
        let read = metric_sum(&text, "ledgerstream_source_records_total");
        let lag_series = text
            .lines()
            .filter(|l| l.starts_with("ledgerstream_source_lag_records{"))
            .count();
        let lag = metric_sum(&text, "ledgerstream_source_lag_records");
        (read == EVENTS as f64 && lag_series == 3 * PARTITIONS as usize && lag == 0.0)
            .then_some(text)
    });
    assert!(
        caught_up.is_some(),
        "pipeline did not read all {EVENTS} events with zero lag; metrics:\n{:?}\nlog:\n{}",
        http_get(metrics_port, "/metrics"),
        p.log()
    );
    assert_eq!(
        http_get(metrics_port, "/readyz"),
        Some((200, "ready\n".to_string()))
    );
    assert_eq!(
        http_get(metrics_port, "/healthz"),
        Some((200, "ok\n".to_string()))
    );
    assert!(
        p.log().contains(&format!("127.0.0.1:{metrics_port}")),
        "bound address logged; log:\n{}",
        p.log()
    );

    let status = terminate(&mut run, Duration::from_secs(60));
    assert!(
        status.success(),
        "drain failed: {status}; log:\n{}",
        p.log()
    );

    // The exporter is flushed before exit; allow the receiver a moment to finish storing.
    let spans = wait_for(Duration::from_secs(10), || {
        let spans = receiver.spans.lock().expect("spans").clone();
        spans
            .iter()
            .any(|(_, s)| s.name == "state_checkpoint")
            .then_some(spans)
    })
    .unwrap_or_else(|| panic!("no checkpoint trace received; log:\n{}", p.log()));
    assert!(
        spans.iter().all(|(service, _)| service == "ls-trace-test"),
        "OTEL_SERVICE_NAME applies to every span"
    );
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();

    // The drain's checkpoint, and possibly a second, idle one that releases what still waited for the
    // watermark; each is its own trace. The first holds every change read.
    let roots: Vec<&Span> = spans.iter().filter(|s| s.name == "checkpoint").collect();
    assert!(
        (1..=2).contains(&roots.len()),
        "the drain runs one or two checkpoints: {roots:?}"
    );
    let root = *roots
        .iter()
        .find(|r| int_attr(r, "checkpoint_id") == Some(1))
        .expect("checkpoint 1");
    assert!(
        roots
            .iter()
            .all(|r| r.trace_id != root.trace_id || r.span_id == root.span_id),
        "one trace per checkpoint"
    );
    assert!(root.parent_span_id.is_empty(), "checkpoint is a trace root");
    assert_eq!(
        int_attr(root, "checkpoint_id"),
        Some(1),
        "{:?}",
        root.attributes
    );

    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == root.span_id)
        .collect();
    for c in &children {
        assert_eq!(
            c.trace_id, root.trace_id,
            "{} in the checkpoint's trace",
            c.name
        );
        assert_eq!(
            int_attr(c, "checkpoint_id"),
            Some(1),
            "{} carries the id",
            c.name
        );
    }
    let named = |name: &str| -> Vec<&Span> {
        children
            .iter()
            .copied()
            .filter(|s| s.name == name)
            .collect()
    };
    assert_eq!(named("barrier").len(), 1);
    assert_eq!(
        int_attr(named("barrier")[0], "partitions"),
        Some(i64::from(PARTITIONS))
    );
    let sealed: BTreeSet<i64> = named("seal")
        .iter()
        .filter_map(|s| int_attr(s, "partition"))
        .collect();
    assert_eq!(
        named("seal").len(),
        PARTITIONS as usize,
        "roots: {roots:?}\nall spans: {:?}\nlog:\n{}",
        spans
            .iter()
            .map(|s| (
                s.name.clone(),
                int_attr(s, "checkpoint_id"),
                int_attr(s, "partition")
            ))
            .collect::<Vec<_>>(),
        p.log()
    );
    assert_eq!(sealed, (0..i64::from(PARTITIONS)).collect());

    let expected = expected_rows();
    let written: BTreeMap<String, i64> = named("parquet_write")
        .iter()
        .map(|s| {
            (
                str_attr(s, "table").expect("table attribute"),
                int_attr(s, "rows").expect("rows attribute"),
            )
        })
        .collect();
    // The changelogs and quarantine hold exactly the input; the derived tables (enrichment, fraud, P&L) get what
    // the watermark released by this checkpoint, each at most once.
    assert_eq!(
        named("parquet_write").len(),
        written.len(),
        "one write per table"
    );
    for (table, rows) in &expected {
        assert_eq!(written.get(table), Some(rows), "rows written to {table}");
    }
    for (table, rows) in &written {
        assert!(
            expected.contains_key(table) || DERIVED.contains(&table.as_str()),
            "unexpected table {table}"
        );
        assert!(*rows > 0, "{table}: a write span for no rows");
    }
    if let Some(enriched) = written.get("transactions_enriched") {
        assert!(*enriched <= expected["transactions_changes"]);
    }
    let commits = named("iceberg_commit");
    assert_eq!(commits.len(), 1, "one multi-table commit per checkpoint");
    assert_eq!(
        int_attr(commits[0], "tables"),
        Some(written.len() as i64),
        "the commit carries every written table"
    );
    assert!(int_attr(commits[0], "epoch").is_some_and(|e| e >= 1));
    // Every table the checkpoint stamps is staged under the commit span, the written ones among them.
    let staged: BTreeSet<String> = spans
        .iter()
        .filter(|s| s.name == "stage" && s.parent_span_id == commits[0].span_id)
        .filter_map(|s| str_attr(s, "table"))
        .collect();
    for t in written.keys() {
        assert!(
            staged.contains(t),
            "{t} staged under iceberg_commit: {staged:?}"
        );
    }
    assert_eq!(named("state_checkpoint").len(), 1);
    // The post-write checks' commit to dq_results is a trace of its own (`dq_results_commit`), not a child.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "dq_results_commit" && s.parent_span_id.is_empty())
    );
    assert_eq!(
        children.len(),
        1 + PARTITIONS as usize + written.len() + 1 + 1,
        "no other direct children: {:?}",
        children.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // The checkpoint span covers all of its steps.
    for c in &children {
        assert!(
            c.start_time_unix_nano >= root.start_time_unix_nano
                && c.end_time_unix_nano <= root.end_time_unix_nano,
            "{} inside the checkpoint span",
            c.name
        );
    }

    let recovery: Vec<&Span> = spans.iter().filter(|s| s.name == "recovery").collect();
    assert_eq!(recovery.len(), 1, "one generation, one recovery span");
    assert!(recovery[0].parent_span_id.is_empty());
    assert_eq!(
        int_attr(recovery[0], "partitions"),
        Some(i64::from(PARTITIONS))
    );
    assert_eq!(
        int_attr(recovery[0], "checkpoint_id"),
        None,
        "a fresh start restores no checkpoint"
    );

    let _ = std::fs::remove_dir_all(&p.dir);
    drop(broker);
    drop(rt);
}
