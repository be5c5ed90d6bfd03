//! Every metric ledgerstream exports, in one place.
//!
//! Naming: `ledgerstream_<subsystem>_<name>_<unit>`. Labels are bounded: partition numbers, table names from the
//! fixed output set, rule names from config, error *kinds* (a short closed set), never keys or raw error text.
//!
//! Each function below is the one place an event is both counted and, where useful, logged, so call sites stay one
//! line and the metric set stays reviewable.
//!
//! ## Consumer lag
//!
//! `ledgerstream_source_lag_records{topic,partition}` is `high watermark - next offset`, where the next offset is
//! the one after the last record handed to the partition actor (so records prefetched by librdkafka but not yet
//! processed count as lag), and the high watermark is fetched from the broker every few seconds by a dedicated
//! thread (see `source::kafka`), never on the async executor. The broker's answer is not trusted blindly: the tansu
//! memory engine, for one, reports a high watermark *below* offsets it has already served. When `high < next` the
//! gauge reports 0 (we cannot be behind a position we have already read past) and
//! `ledgerstream_source_watermark_anomalies_total` counts the event, so a broker that lies is visible rather than
//! hidden in a negative or wrapped gauge. Before the first record of a partition is read the next offset is the
//! checkpointed start offset, or the low watermark for a partition read from the beginning.
//! `ledgerstream_committed_offset` is the durable position (last complete checkpoint); the gap between it and the
//! read position is what a restart would replay.

use crate::types::PartitionId;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

/// The process-wide registry scraped at `/metrics`.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    REGISTRY
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn gauge(name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition");
    REGISTRY
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

/// Buckets from 1 ms to about 65 s: covers a single commit up to a stalled checkpoint.
/// Seconds, 1 ms to 2 min, with the round values (0.1, 1, 10 s) dashboards and alerts compare against.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0,
    ]
}

fn histogram(name: &str, help: &str) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency_buckets()))
        .expect("static metric definition");
    REGISTRY
        .register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(latency_buckets()),
        labels,
    )
    .expect("static metric definition");
    REGISTRY
        .register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

struct Metrics {
    source_records: IntCounterVec,
    source_backpressure_micros: IntCounterVec,
    events_in: IntCounterVec,
    rows_out: IntCounterVec,
    duplicates_skipped: IntCounterVec,
    tombstones: IntCounterVec,
    quarantined: IntCounterVec,
    checkpoint_duration: Histogram,
    checkpoint_last_success: IntGauge,
    checkpoint_last_id: IntGauge,
    commit_duration: HistogramVec,
    files_written: IntCounterVec,
    bytes_written: IntCounterVec,
    state_bytes: IntGaugeVec,
    next_offset: IntGaugeVec,
    source_lag: IntGaugeVec,
    watermark_anomalies: IntCounterVec,
    recoveries: IntCounter,
    restarts: IntCounter,
    schema_changes: IntCounterVec,
    freshness: HistogramVec,
    remote_files_uploaded: IntCounter,
    remote_bytes_uploaded: IntCounter,
    remote_upload_duration: Histogram,
    commit_conflicts: IntCounterVec,
    commit_retries: IntCounterVec,
    checkpoint_commit_duration: Histogram,
    writer_epoch: IntGauge,
}

static M: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    commit_conflicts: counter_vec(
        "ledgerstream_commit_conflicts_total",
        "Catalog compare-and-swaps refused because the table had moved (another writer committed first); each is \
         re-validated on the new head",
        &["table"],
    ),
    commit_retries: counter_vec(
        "ledgerstream_commit_retries_total",
        "Catalog swaps retried after an error, by outcome (not_committed, unknown)",
        &["outcome"],
    ),
    checkpoint_commit_duration: histogram(
        "ledgerstream_checkpoint_commit_duration_seconds",
        "One checkpoint's commit into every table (stage + swap, all attempts)",
    ),
    writer_epoch: gauge(
        "ledgerstream_writer_epoch",
        "The epoch this process claimed for its partitions at the start of the current generation",
    ),
    remote_files_uploaded: counter(
        "ledgerstream_remote_files_uploaded_total",
        "State files uploaded to the durable checkpoint remote (unchanged files are not uploaded again)",
    ),
    remote_bytes_uploaded: counter(
        "ledgerstream_remote_bytes_uploaded_total",
        "Bytes of state files uploaded to the durable checkpoint remote",
    ),
    remote_upload_duration: histogram(
        "ledgerstream_remote_upload_seconds",
        "Time to upload one state checkpoint and its intent to the remote, before the table commits",
    ),
    source_records: counter_vec(
        "ledgerstream_source_records_total",
        "Kafka records handed to partition actors",
        &["partition"],
    ),
    source_backpressure_micros: counter_vec(
        "ledgerstream_source_backpressure_micros_total",
        "Time partitions spent paused because their in-flight budget was used up, in microseconds",
        &["partition"],
    ),
    events_in: counter_vec(
        "ledgerstream_events_in_total",
        "Change events decoded per source table",
        &["table"],
    ),
    rows_out: counter_vec(
        "ledgerstream_rows_committed_total",
        "Rows committed to Iceberg per output table",
        &["table"],
    ),
    duplicates_skipped: counter_vec(
        "ledgerstream_dedup_skipped_total",
        "Redelivered changes skipped because their LSN was already applied for that key",
        &["table"],
    ),
    tombstones: counter_vec(
        "ledgerstream_tombstones_total",
        "Kafka tombstones seen (they carry no change and are not written)",
        &["table"],
    ),
    quarantined: counter_vec(
        "ledgerstream_quarantine_total",
        "Records sent to the quarantine table, by reason kind",
        &["kind"],
    ),
    checkpoint_duration: histogram(
        "ledgerstream_checkpoint_duration_seconds",
        "From barrier to durable state checkpoint, per checkpoint",
    ),
    checkpoint_last_success: gauge(
        "ledgerstream_checkpoint_last_success_timestamp_seconds",
        "Unix time of the last completed checkpoint",
    ),
    checkpoint_last_id: gauge(
        "ledgerstream_checkpoint_last_id",
        "Id of the last completed checkpoint",
    ),
    commit_duration: histogram_vec(
        "ledgerstream_commit_duration_seconds",
        "Iceberg commit latency per table",
        &["table"],
    ),
    files_written: counter_vec(
        "ledgerstream_files_written_total",
        "Parquet data files written per table",
        &["table"],
    ),
    bytes_written: counter_vec(
        "ledgerstream_bytes_written_total",
        "Parquet bytes written per table",
        &["table"],
    ),
    state_bytes: gauge_vec(
        "ledgerstream_state_size_bytes",
        "Approximate state size per partition",
        &["partition"],
    ),
    next_offset: gauge_vec(
        "ledgerstream_committed_offset",
        "Next offset to read per topic partition, as of the last completed checkpoint",
        &["topic", "partition"],
    ),
    source_lag: gauge_vec(
        "ledgerstream_source_lag_records",
        "Records in the topic partition not yet handed to the partition actor: max(0, high watermark - next offset)",
        &["topic", "partition"],
    ),
    watermark_anomalies: counter_vec(
        "ledgerstream_source_watermark_anomalies_total",
        "High watermarks reported below an offset already read (lag reported as 0 instead)",
        &["topic", "partition"],
    ),
    recoveries: counter(
        "ledgerstream_recoveries_total",
        "Pipeline starts that restored from a checkpoint",
    ),
    restarts: counter(
        "ledgerstream_pipeline_restarts_total",
        "Pipeline generations restarted by the supervisor after a failure",
    ),
    schema_changes: counter_vec(
        "ledgerstream_schema_changes_total",
        "Columns added to output tables because the source schema evolved",
        &["table"],
    ),
    freshness: {
        let h = HistogramVec::new(
            HistogramOpts::new(
                "ledgerstream_freshness_seconds",
                "Source commit time to visible in Iceberg, per committed row",
            )
            .buckets(prometheus::exponential_buckets(0.05, 1.25, 36).expect("static buckets")),
            &["table"],
        )
        .expect("static metric definition");
        REGISTRY
            .register(Box::new(h.clone()))
            .expect("metric registered once");
        h
    },
});

fn p(partition: PartitionId) -> String {
    partition.0.to_string()
}

pub fn source_records(partition: PartitionId, n: usize) {
    M.source_records
        .with_label_values(&[&p(partition)])
        .inc_by(n as u64);
}

pub fn source_backpressure(partition: PartitionId, blocked: Duration) {
    M.source_backpressure_micros
        .with_label_values(&[&p(partition)])
        .inc_by(blocked.as_micros() as u64);
    tracing::debug!(
        partition = partition.0,
        blocked_ms = blocked.as_millis() as u64,
        "source paused by backpressure"
    );
}

/// Creates the per-partition and per-table series of a starting pipeline at zero, so that dashboards show "none
/// yet" as 0 instead of no data (a panel over a counter that has not fired yet would otherwise be empty).
pub fn pipeline_started<'a>(
    partitions: impl IntoIterator<Item = PartitionId>,
    source_tables: impl IntoIterator<Item = &'a str> + Clone,
) {
    for partition in partitions {
        let label = p(partition);
        M.source_records.with_label_values(&[&label]);
        M.source_backpressure_micros.with_label_values(&[&label]);
    }
    for table in source_tables {
        M.schema_changes
            .with_label_values(&[&format!("{table}_changes")]);
        M.events_in.with_label_values(&[table]);
        M.duplicates_skipped.with_label_values(&[table]);
        M.tombstones.with_label_values(&[table]);
    }
    for stage in ["fraud", "pnl"] {
        B.late_events.with_label_values(&[stage]);
    }
    M.schema_changes
        .with_label_values(&[crate::enrich::ENRICHED_TABLE]);
}

pub fn event_in(table: &str) {
    M.events_in.with_label_values(&[table]).inc();
}

pub fn duplicate_skipped(table: &str) {
    M.duplicates_skipped.with_label_values(&[table]).inc();
}

pub fn tombstone(table: &str) {
    M.tombstones.with_label_values(&[table]).inc();
}

pub fn quarantined(kind: &str, topic: &str, partition: i32, offset: i64, message: &str) {
    M.quarantined.with_label_values(&[kind]).inc();
    tracing::warn!(
        kind,
        topic,
        partition,
        offset,
        message,
        "record quarantined"
    );
}

pub fn rows_committed(table: &str, rows: u64, files: u64, bytes: u64, took: Duration) {
    M.rows_out.with_label_values(&[table]).inc_by(rows);
    M.files_written.with_label_values(&[table]).inc_by(files);
    M.bytes_written.with_label_values(&[table]).inc_by(bytes);
    M.commit_duration
        .with_label_values(&[table])
        .observe(took.as_secs_f64());
}

/// A catalog swap was refused because `table` had moved since it was loaded.
pub fn commit_conflict(table: &str) {
    M.commit_conflicts.with_label_values(&[table]).inc();
}

/// A catalog swap failed and is retried; `outcome` is `not_committed` or `unknown`.
pub fn commit_retry(outcome: &'static str) {
    M.commit_retries.with_label_values(&[outcome]).inc();
}

/// One checkpoint's multi-table commit finished.
pub fn checkpoint_committed(took: Duration) {
    M.checkpoint_commit_duration.observe(took.as_secs_f64());
}

/// The epoch this generation claimed.
pub fn writer_epoch(epoch: u64) {
    M.writer_epoch.set(epoch as i64);
}

pub fn checkpoint_completed(id: u64, took: Duration) {
    M.checkpoint_duration.observe(took.as_secs_f64());
    M.checkpoint_last_id.set(id as i64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    M.checkpoint_last_success.set(now);
}

/// One state checkpoint and its intent reached the remote.
pub fn remote_uploaded(files: usize, bytes: u64, took: Duration) {
    M.remote_files_uploaded.inc_by(files as u64);
    M.remote_bytes_uploaded.inc_by(bytes);
    M.remote_upload_duration.observe(took.as_secs_f64());
}

pub fn committed_offset(topic: &str, partition: i32, next: i64) {
    M.next_offset
        .with_label_values(&[topic, &partition.to_string()])
        .set(next);
}

/// Lag of one topic partition, computed robustly from a broker high watermark and our next offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub records: u64,
    /// The broker reported a high watermark below an offset we have already read.
    pub anomaly: bool,
}

/// `max(0, high - next)`; `high < next` is an anomaly of the broker, reported as lag 0.
pub fn compute_lag(high_watermark: i64, next_offset: i64) -> Lag {
    match high_watermark.checked_sub(next_offset) {
        Some(d) if d >= 0 => Lag {
            records: d as u64,
            anomaly: false,
        },
        _ => Lag {
            records: 0,
            anomaly: true,
        },
    }
}

/// Records the lag of `topic[partition]` from a freshly fetched high watermark.
pub fn source_lag(topic: &str, partition: i32, high_watermark: i64, next_offset: i64) -> Lag {
    let lag = compute_lag(high_watermark, next_offset);
    let part = partition.to_string();
    M.source_lag
        .with_label_values(&[topic, &part])
        .set(i64::try_from(lag.records).unwrap_or(i64::MAX));
    let anomalies = M.watermark_anomalies.with_label_values(&[topic, &part]);
    if lag.anomaly {
        anomalies.inc();
        tracing::debug!(
            topic,
            partition,
            high_watermark,
            next_offset,
            "broker high watermark below the read position; lag reported as 0"
        );
    }
    lag
}

pub fn state_size(partition: PartitionId, bytes: u64) {
    M.state_bytes
        .with_label_values(&[&p(partition)])
        .set(bytes as i64);
}

pub fn recovered(checkpoint: Option<u64>) {
    M.recoveries.inc();
    tracing::info!(checkpoint, "pipeline recovered");
}

pub fn pipeline_restarted(generation: u64, error: &str) {
    M.restarts.inc();
    tracing::error!(
        generation,
        error,
        "pipeline failed; restarting from the last checkpoint"
    );
}

pub fn schema_change(table: &str, column: &str) {
    M.schema_changes.with_label_values(&[table]).inc();
    tracing::info!(table, column, "output table schema evolved");
}

/// Renders the registry in the Prometheus text format.
pub fn render() -> String {
    // Touch the lazy sets so that every metric family is present even before its first event.
    LazyLock::force(&M);
    LazyLock::force(&B);
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Records, for each committed row, how long after its source commit it became visible. `source_ts_us` are the
/// rows' event times; `now_us` is the commit completion time.
pub fn freshness(table: &str, now_us: i64, source_ts_us: impl Iterator<Item = i64>) {
    let h = M.freshness.with_label_values(&[table]);
    // Take the samples lock only while a benchmark records, not on every commit.
    let mut exact = if RECORD_EXACT.load(Ordering::Relaxed) {
        FRESHNESS_SAMPLES.lock().ok()
    } else {
        None
    };
    for ts in source_ts_us {
        let secs = (now_us - ts) as f64 / 1e6;
        h.observe(secs);
        if let Some(v) = exact.as_mut() {
            v.push(secs as f32);
        }
    }
}

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exact freshness samples, recorded only while a benchmark asks for them (histogram buckets are too coarse for
/// the p50/p99 a benchmark reports).
static FRESHNESS_SAMPLES: Mutex<Vec<f32>> = Mutex::new(Vec::new());
static RECORD_EXACT: AtomicBool = AtomicBool::new(false);

/// Starts recording exact freshness samples from zero.
pub fn reset_freshness() {
    if let Ok(mut v) = FRESHNESS_SAMPLES.lock() {
        v.clear();
    }
    RECORD_EXACT.store(true, Ordering::Relaxed);
}

#[derive(Debug, Clone, Copy, Default)]
pub struct FreshnessStats {
    pub count: usize,
    pub p50_s: f64,
    pub p99_s: f64,
}

pub fn freshness_stats() -> FreshnessStats {
    let Ok(mut v) = FRESHNESS_SAMPLES.lock() else {
        return FreshnessStats::default();
    };
    if v.is_empty() {
        return FreshnessStats::default();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| f64::from(v[((v.len() - 1) as f64 * p).round() as usize]);
    FreshnessStats {
        count: v.len(),
        p50_s: q(0.5),
        p99_s: q(0.99),
    }
}

/// Source records committed so far (changelog and quarantine rows), for the benchmark.
pub fn rows_committed_total() -> u64 {
    LazyLock::force(&M);
    REGISTRY
        .gather()
        .iter()
        .filter(|f| f.name() == "ledgerstream_rows_committed_total")
        .flat_map(|f| {
            f.get_metric()
                .iter()
                // One row per source record: the changelogs and the quarantine. Derived tables (enriched, alerts,
                // P&L, dq results) come on top and would make a record count twice.
                .filter(|m| {
                    m.get_label().iter().any(|l| {
                        l.name() == "table"
                            && (l.value().ends_with("_changes") || l.value() == "quarantine")
                    })
                })
                .map(|m| m.get_counter().get_value() as u64)
                .collect::<Vec<_>>()
        })
        .sum()
}

pub fn last_checkpoint_id() -> i64 {
    M.checkpoint_last_id.get()
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LatencyStats {
    pub count: u64,
    pub mean_ms: f64,
    /// Upper bound of the bucket holding the 99th percentile.
    pub p99_ms: f64,
}

fn stats_of(h: &prometheus::proto::Histogram) -> LatencyStats {
    let count = h.get_sample_count();
    if count == 0 {
        return LatencyStats::default();
    }
    let want = (count as f64 * 0.99).ceil() as u64;
    let p99 = h
        .get_bucket()
        .iter()
        .find(|b| b.cumulative_count() >= want)
        .map(|b| b.upper_bound())
        .unwrap_or(f64::INFINITY);
    LatencyStats {
        count,
        mean_ms: h.get_sample_sum() / count as f64 * 1000.0,
        p99_ms: p99 * 1000.0,
    }
}

pub fn checkpoint_stats() -> LatencyStats {
    use prometheus::core::Collector;
    M.checkpoint_duration
        .collect()
        .first()
        .and_then(|f| f.get_metric().first().map(|m| stats_of(m.get_histogram())))
        .unwrap_or_default()
}

/// Commit latency over all tables.
pub fn commit_stats() -> LatencyStats {
    use prometheus::core::Collector;
    let mut total = LatencyStats::default();
    let mut sum_ms = 0.0;
    for f in M.commit_duration.collect() {
        for m in f.get_metric() {
            let s = stats_of(m.get_histogram());
            total.count += s.count;
            sum_ms += s.mean_ms * s.count as f64;
            total.p99_ms = total.p99_ms.max(s.p99_ms);
        }
    }
    if total.count > 0 {
        total.mean_ms = sum_ms / total.count as f64;
    }
    total
}

// ---------------------------------------------------------------------------------------------------------------
// Business and stateful-stage metrics: enrichment, watermarks, fraud, P&L, data quality.
// Fraud and P&L figures are taken from committed rows (in the committer), so a restart that reprocesses the
// records since the last checkpoint does not count them twice.
// ---------------------------------------------------------------------------------------------------------------

fn float_counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::CounterVec {
    let c = prometheus::CounterVec::new(Opts::new(name, help), labels)
        .expect("static metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

struct Business {
    enriched: IntCounterVec,
    enrich_waiting: IntGaugeVec,
    watermark: IntGaugeVec,
    late_events: IntCounterVec,
    fraud_alerts: IntCounterVec,
    pnl_fees: prometheus::CounterVec,
    pnl_fees_reversed: prometheus::CounterVec,
    pnl_losses: prometheus::CounterVec,
    pnl_volume: prometheus::CounterVec,
    pnl_transactions: IntCounterVec,
    dq_rejects: IntCounterVec,
    dq_checks: IntCounterVec,
    schema_policy: IntCounterVec,
}

static B: LazyLock<Business> = LazyLock::new(|| Business {
    enriched: counter_vec(
        "ledgerstream_enrich_rows_total",
        "Transaction changes emitted to transactions_enriched, by enrichment status",
        &["status"],
    ),
    enrich_waiting: gauge_vec(
        "ledgerstream_enrich_waiting_rows",
        "Transaction changes held in state until the watermark passes them",
        &["partition"],
    ),
    watermark: gauge_vec(
        "ledgerstream_watermark_seconds",
        "Event-time watermark per partition, as Unix seconds",
        &["partition"],
    ),
    late_events: counter_vec(
        "ledgerstream_late_events_total",
        "Events that arrived after the watermark had passed them, by stage (fraud: beyond allowed lateness; \
         pnl: after their minute closed, emitted as a late adjustment)",
        &["stage"],
    ),
    fraud_alerts: counter_vec(
        "ledgerstream_fraud_alerts_total",
        "Fraud alerts committed, by rule and severity",
        &["rule", "severity"],
    ),
    pnl_fees: float_counter_vec(
        "ledgerstream_pnl_fees_earned_total",
        "Fees earned (committed P&L rows, before reversals), in currency units",
        &["currency"],
    ),
    pnl_fees_reversed: float_counter_vec(
        "ledgerstream_pnl_fees_reversed_total",
        "Fees given back by failed or reversed transactions, in currency units",
        &["currency"],
    ),
    pnl_losses: float_counter_vec(
        "ledgerstream_pnl_losses_total",
        "Refund and chargeback losses, in currency units",
        &["currency", "kind"],
    ),
    pnl_volume: float_counter_vec(
        "ledgerstream_pnl_volume_total",
        "Transaction volume, in currency units",
        &["currency"],
    ),
    pnl_transactions: counter_vec(
        "ledgerstream_pnl_transactions_total",
        "Transactions counted in P&L",
        &["currency"],
    ),
    dq_rejects: counter_vec(
        "ledgerstream_dq_rejected_total",
        "Rows quarantined by a data-quality rule before ingestion, by rule",
        &["rule"],
    ),
    dq_checks: counter_vec(
        "ledgerstream_dq_checks_total",
        "Post-write data-quality checks, by table, check and result",
        &["table", "check", "result"],
    ),
    schema_policy: counter_vec(
        "ledgerstream_schema_type_conflicts_total",
        "Source column type changes Iceberg cannot express, by table and the policy applied",
        &["table", "policy"],
    ),
});

/// Currency codes are data, so they are admitted as label values only in their ISO 4217 shape, and only the
/// first 64 distinct ones: a bad feed cannot blow up the series count.
fn currency_label(currency: &str) -> String {
    static SEEN: LazyLock<std::sync::Mutex<std::collections::BTreeSet<String>>> =
        LazyLock::new(Default::default);
    let iso = currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase());
    if !iso {
        return "other".into();
    }
    let Ok(mut seen) = SEEN.lock() else {
        return "other".into();
    };
    if seen.contains(currency) || seen.len() < 64 {
        seen.insert(currency.to_string());
        currency.to_string()
    } else {
        "other".into()
    }
}

pub fn enriched(status: &str) {
    B.enriched.with_label_values(&[status]).inc();
}

pub fn partition_watermark(partition: PartitionId, watermark_us: i64, waiting: usize) {
    let p = partition.0.to_string();
    if watermark_us > i64::MIN {
        B.watermark
            .with_label_values(&[&p])
            .set(watermark_us.div_euclid(1_000_000));
    }
    B.enrich_waiting
        .with_label_values(&[&p])
        .set(i64::try_from(waiting).unwrap_or(i64::MAX));
}

pub fn late_event(stage: &str) {
    B.late_events.with_label_values(&[stage]).inc();
}

pub fn fraud_alerts_committed(rule: &str, severity: &str, n: u64) {
    B.fraud_alerts
        .with_label_values(&[rule, severity])
        .inc_by(n);
}

/// Committed P&L figures of one row (money in currency units).
pub struct PnlFigures {
    pub fees_earned: f64,
    pub refund_losses: f64,
    pub chargeback_losses: f64,
    pub volume: f64,
    pub tx_count: u64,
}

pub fn pnl_committed(currency: &str, f: &PnlFigures) {
    let c = currency_label(currency);
    // Every series of a currency exists from its first row on, so "no reversals yet" reads 0, not no data.
    B.pnl_fees_reversed.with_label_values(&[&c]);
    for kind in ["refund", "chargeback"] {
        B.pnl_losses.with_label_values(&[&c, kind]);
    }
    if f.fees_earned >= 0.0 {
        B.pnl_fees.with_label_values(&[&c]).inc_by(f.fees_earned);
    } else {
        B.pnl_fees_reversed
            .with_label_values(&[&c])
            .inc_by(-f.fees_earned);
    }
    for (kind, v) in [
        ("refund", f.refund_losses),
        ("chargeback", f.chargeback_losses),
    ] {
        // A negative loss is a cancelled refund or chargeback: it reduces the loss, counted as a reversal.
        if v > 0.0 {
            B.pnl_losses.with_label_values(&[&c, kind]).inc_by(v);
        }
    }
    if f.volume > 0.0 {
        B.pnl_volume.with_label_values(&[&c]).inc_by(f.volume);
    }
    B.pnl_transactions
        .with_label_values(&[&c])
        .inc_by(f.tx_count);
}

pub fn dq_rejected(rule: &str) {
    B.dq_rejects.with_label_values(&[rule]).inc();
}

/// Pre-registers the per-rule series at start-up so dashboards show zero rather than no data.
pub fn dq_rules_known<'a>(rules: impl IntoIterator<Item = &'a str>) {
    for r in rules {
        B.dq_rejects.with_label_values(&[r]);
    }
}

pub fn dq_check(table: &str, check: &str, passed: bool) {
    B.dq_checks
        .with_label_values(&[table, check, if passed { "pass" } else { "fail" }])
        .inc();
}

pub fn schema_type_conflict(table: &str, policy: &str) {
    B.schema_policy.with_label_values(&[table, policy]).inc();
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_never_negative_and_anomalies_are_flagged() {
        assert_eq!(
            compute_lag(150, 100),
            Lag {
                records: 50,
                anomaly: false
            }
        );
        assert_eq!(
            compute_lag(100, 100),
            Lag {
                records: 0,
                anomaly: false
            }
        );
        // What the tansu memory engine does: a high watermark behind what it already served.
        assert_eq!(
            compute_lag(0, 4_000),
            Lag {
                records: 0,
                anomaly: true
            }
        );
        assert_eq!(
            compute_lag(i64::MIN, 1),
            Lag {
                records: 0,
                anomaly: true
            }
        );
    }

    #[test]
    fn anomalies_are_counted_per_topic_partition() {
        source_lag("lag-unit-topic", 9, 10, 25);
        source_lag("lag-unit-topic", 9, 40, 25);
        let text = render();
        assert!(
            text.contains(
                "ledgerstream_source_watermark_anomalies_total{partition=\"9\",topic=\"lag-unit-topic\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ledgerstream_source_lag_records{partition=\"9\",topic=\"lag-unit-topic\"} 15\n"
            ),
            "{text}"
        );
    }
}
