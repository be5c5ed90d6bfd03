//! `ledgerstream produce` and `ledgerstream bench`: synthetic Debezium-format load straight into the broker, and
//! the benchmark that measures the pipeline on it. Glue around [`crate::synth`] and [`crate::pipeline`].

use crate::config::Config;
use crate::metrics;
use crate::synth::Synth;
use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Creates the three source topics under `prefix` with `partitions` partitions each (existing topics are kept).
pub async fn create_topics(brokers: &str, prefix: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("admin client")?;
    let names: Vec<String> = ["users", "wallets", "transactions"]
        .iter()
        .map(|t| format!("{prefix}.public.{t}"))
        .collect();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// What to produce.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub brokers: String,
    /// Topic prefix (Debezium's `topic.prefix`): topics are `<prefix>.public.<table>`.
    #[arg(long, default_value = "fintech")]
    pub topic_prefix: String,
    /// Create the topics with this many partitions first.
    #[arg(long)]
    pub create_topics: Option<i32>,
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Skip this many events of the stream first (to continue a previous run of the same seed).
    #[arg(long, default_value_t = 0)]
    pub skip: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 10_000)]
    pub users: i64,
    /// Events per second; unlimited when absent.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Make every N-th record malformed (it must be quarantined).
    #[arg(long)]
    pub bad_every: Option<u64>,
    /// Stamp events with the wall clock (for freshness measurements) instead of the synthetic clock.
    #[arg(long)]
    pub wall_clock: bool,
}

/// What was produced.
#[derive(Debug, Default, Clone)]
pub struct ProduceReport {
    pub events: u64,
    pub per_table: BTreeMap<&'static str, u64>,
    pub bad: u64,
    pub elapsed: Duration,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Produces synthetic events with librdkafka's murmur2 partitioner (Java's default, what Kafka Connect uses), so
/// keys land on the same partitions as Debezium's would. Blocking: call from a blocking thread.
pub fn produce(args: &ProduceArgs) -> anyhow::Result<ProduceReport> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("compression.type", "lz4")
        .set("message.max.bytes", "16777216")
        .create()
        .context("producer")?;
    let started = Instant::now();
    let mut report = ProduceReport::default();
    let mut synth = Synth::new(args.seed, args.users);
    if let Some(n) = args.bad_every {
        synth = synth.with_bad_every(n);
    }
    for _ in 0..args.skip {
        synth.next();
    }
    let topics: BTreeMap<&'static str, String> = ["users", "wallets", "transactions"]
        .iter()
        .map(|t| (*t, format!("{}.public.{t}", args.topic_prefix)))
        .collect();
    for i in 0..args.events {
        if args.wall_clock {
            synth.set_now_us(now_us());
        }
        let Some(rec) = synth.next() else { break };
        let key = rec.key.to_string();
        let topic = &topics[rec.table.name()];
        let mut record = BaseRecord::to(topic).key(&key).payload(&rec.payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => anyhow::bail!("produce to {topic}: {e}"),
            }
        }
        *report.per_table.entry(rec.table.name()).or_default() += 1;
        if rec.op.is_none() {
            report.bad += 1;
        }
        report.events += 1;
        if let Some(rate) = args.rate
            && rate > 0
        {
            let due = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                producer.poll(Duration::ZERO);
                std::thread::sleep(wait);
            }
        } else if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60)).context("flush")?;
    report.elapsed = started.elapsed();
    Ok(report)
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub brokers: String,
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    #[arg(long, default_value_t = 100_000)]
    pub users: i64,
    /// Checkpoint interval for the throughput phase.
    #[arg(long, default_value = "2s")]
    pub checkpoint_interval: humantime::Duration,
    /// Rate of the freshness phase, events per second.
    #[arg(long, default_value_t = 20_000)]
    pub fresh_rate: u64,
    /// Duration of the freshness phase.
    #[arg(long, default_value = "30s")]
    pub fresh_duration: humantime::Duration,
    /// Working directory (state, catalog, warehouse); a fresh temp dir when absent.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Give up on the throughput phase after this long (then print where the records went).
    #[arg(long, default_value = "30m")]
    pub timeout: humantime::Duration,
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so the producer's buffers do not count.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Runs the benchmark and prints a report. See BENCHMARKS.md.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("ledgerstream-bench-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let prefix = format!("bench{}", std::process::id());
    create_topics(&args.brokers, &prefix, args.partitions).await?;

    // Phase 1: backlog of N events, then measure Kafka → committed Iceberg.
    let produce_args = ProduceArgs {
        brokers: args.brokers.clone(),
        topic_prefix: prefix.clone(),
        create_topics: None,
        events: args.events,
        skip: 0,
        seed: 1,
        users: args.users,
        rate: None,
        bad_every: None,
        wall_clock: false,
    };
    let pa = produce_args.clone();
    let report = tokio::task::spawn_blocking(move || produce(&pa)).await??;
    println!(
        "produced {} events in {:.1}s ({:.0}/s): {:?}",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events as f64 / report.elapsed.as_secs_f64(),
        report.per_table
    );
    reset_peak_rss();

    let config_text = format!(
        r#"
[pipeline]
writer_id = "bench"
data_dir = "{}"
checkpoint_interval = "{}"
[kafka]
brokers = "{}"
topic_prefix = "{prefix}"
"#,
        dir.display(),
        args.checkpoint_interval,
        args.brokers
    );
    let config = Config::parse(&config_text, Vec::new())?;
    let base_rows = metrics::rows_committed_total();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let run = tokio::spawn(crate::pipeline::run(config.clone(), rx));
    let target = base_rows + report.events;
    let done = wait_until(*args.timeout, || metrics::rows_committed_total() >= target).await;
    let elapsed = started.elapsed();
    if !done {
        // Say where the records went: read, skipped as duplicates, quarantined, committed.
        let wanted = [
            "ledgerstream_source_records_total",
            "ledgerstream_dedup_skipped_total",
            "ledgerstream_rows_committed_total",
            "ledgerstream_events_in_total",
            "ledgerstream_tombstones_total",
            "ledgerstream_quarantine_total",
        ];
        for line in metrics::render().lines() {
            if wanted.iter().any(|w| line.starts_with(w)) {
                eprintln!("{line}");
            }
        }
    }
    anyhow::ensure!(
        done,
        "pipeline did not commit {} rows in time",
        report.events
    );
    let throughput = report.events as f64 / elapsed.as_secs_f64();
    let ck = metrics::checkpoint_stats();
    let cm = metrics::commit_stats();
    let rss_throughput = peak_rss_mb();
    let _ = tx.send(true);
    run.await??;
    println!(
        "throughput: {} events committed in {:.2}s = {:.0} events/s (peak RSS {:.0} MB)",
        report.events,
        elapsed.as_secs_f64(),
        throughput,
        rss_throughput
    );
    println!(
        "checkpoints: {} (mean {:.0} ms, p99 <= {:.0} ms); commits per table: mean {:.1} ms, p99 <= {:.0} ms",
        ck.count, ck.mean_ms, ck.p99_ms, cm.mean_ms, cm.p99_ms
    );

    // Phase 2: restart on the same data dir (recovery), then a steady stream stamped with wall time.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let last_before = metrics::last_checkpoint_id();
    metrics::reset_freshness();
    let fresh_events = args.fresh_rate * args.fresh_duration.as_secs().max(1);
    let pa = ProduceArgs {
        events: fresh_events,
        skip: args.events,
        rate: Some(args.fresh_rate),
        wall_clock: true,
        ..produce_args
    };
    let restart = Instant::now();
    let run = tokio::spawn(crate::pipeline::run(config, rx));
    let producer = tokio::task::spawn_blocking(move || produce(&pa));
    let first_commit = wait_until(Duration::from_secs(120), || {
        metrics::last_checkpoint_id() > last_before
    })
    .await
    .then(|| restart.elapsed());
    let fresh_report = producer.await??;
    let base = base_rows + report.events;
    wait_until(Duration::from_secs(300), || {
        metrics::rows_committed_total() >= base + fresh_report.events
    })
    .await;
    let fresh = metrics::freshness_stats();
    let _ = tx.send(true);
    run.await??;
    println!(
        "restart → first new commit: {}",
        first_commit.map_or("not observed".to_string(), |d| format!(
            "{:.2}s",
            d.as_secs_f64()
        ))
    );
    println!(
        "freshness at {} events/s for {}: p50 {:.2}s, p99 {:.2}s (source commit time → visible in Iceberg; {} rows)",
        args.fresh_rate, args.fresh_duration, fresh.p50_s, fresh.p99_s, fresh.count
    );
    println!("peak RSS (whole run): {:.0} MB", peak_rss_mb());
    Ok(())
}
