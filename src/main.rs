//! The `ledgerstream` command line. Glue only: every subcommand calls into the library.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ledgerstream::config::Config;
use ledgerstream::health::Health;
use std::path::PathBuf;
use std::sync::Arc;

/// mimalloc instead of glibc malloc: the pipeline allocates and frees many small, short-lived buffers across
/// threads (records, decoded rows, RocksDB keys), where glibc spent about a fifth of the CPU in a profile of
/// `ledgerstream bench` (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ledgerstream",
    version,
    about = "Exactly-once CDC from PostgreSQL to Apache Iceberg"
)]
struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LEDGERSTREAM_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: Kafka → partition actors → Iceberg, until SIGTERM/Ctrl-C (drains and commits a final
    /// checkpoint).
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Apply the source schema migrations to PostgreSQL (idempotent).
    Migrate {
        #[arg(long, env = "LEDGERSTREAM_PG_URL")]
        pg_url: String,
    },
    /// Write synthetic fintech load to PostgreSQL.
    Generate(ledgerstream::generate::GenerateArgs),
    /// Produce synthetic Debezium-format events straight into the broker (benchmarks, crash tests).
    Produce(ledgerstream::bench::ProduceArgs),
    /// Benchmark Kafka → Iceberg on synthetic events: throughput, freshness, checkpoint/commit latency, restart
    /// time, peak RSS. Needs a running broker (e.g. `stack/stack.sh up`).
    Bench(ledgerstream::bench::BenchArgs),
    /// Benchmark the commit alone: one checkpoint into every table through the multi-table swap, against one
    /// iceberg-rust fast append per table on a twin catalog (embedded sqlite, no broker).
    BenchCommit(ledgerstream::bench_commit::BenchCommitArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Reprocess the input from state checkpoint N into shadow tables (namespace `<namespace>_replay_<NAME>`),
    /// optionally with other rule settings, without touching the live pipeline's state, tables or offsets.
    Replay {
        /// The live pipeline's config (data directory, catalog, Kafka, remote).
        #[arg(long, short)]
        config: PathBuf,
        /// The state checkpoint to start from (complete locally or on the remote).
        #[arg(long)]
        from: u64,
        /// Name of the replay: tables go to `<namespace>_replay_<NAME>`, state to `<data_dir>/replays/<NAME>`.
        #[arg(long)]
        into: String,
        /// Stop before these offsets: `TOPIC:PARTITION=OFFSET,...` (default: the end of the topics at start).
        #[arg(long, conflicts_with = "until_checkpoint")]
        until: Option<String>,
        /// Stop at checkpoint M's offsets: the replay covers exactly what checkpoints N+1..M read.
        #[arg(long)]
        until_checkpoint: Option<u64>,
        /// Stop each topic partition at its first change committed after this time (RFC 3339).
        #[arg(long)]
        until_time: Option<String>,
        /// A config file whose `[enrich]`, `[pnl]`, `[fraud]`, `[dq]` and `[schema]` replace the live ones.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Inspect and prune checkpoints (local data directory and `[checkpoint.remote]`).
    Checkpoints {
        #[arg(long, short)]
        config: PathBuf,
        /// Machine-readable JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: CheckpointsCommand,
    },
    /// Every table of the namespace: rows, data files, last snapshot, its commit time and checkpoint id.
    Tables {
        /// The pipeline's config file (its `[iceberg]` section names the catalog and namespace).
        #[arg(long, short)]
        config: PathBuf,
        /// One JSON array of objects instead of aligned columns.
        #[arg(long)]
        json: bool,
    },
    /// Run one SQL query over the Iceberg tables (DataFusion). Tables go by their plain names
    /// (`SELECT count(*) FROM transactions_enriched`); `users_current` and `wallets_current` are the source tables
    /// as they stand now. Read-only: DDL and DML are refused.
    #[cfg(feature = "query")]
    Query(QueryArgs),
}

#[derive(Subcommand)]
enum CheckpointsCommand {
    /// Every checkpoint: time, state size, tables, rows, local and remote status, complete or not.
    List,
    /// One checkpoint in full: offsets per partition, snapshot id per table, state size per partition.
    Show { id: u64 },
    /// Keep the K newest complete checkpoints (never the latest complete one, anything newer, or anything with a
    /// pending commit intent); remove the rest locally and on the remote.
    Prune {
        #[arg(long)]
        keep: std::num::NonZeroUsize,
    },
}

#[cfg(feature = "query")]
#[derive(clap::Args)]
struct QueryArgs {
    /// The pipeline's config file (its `[iceberg]` section names the catalog and namespace).
    #[arg(long, short)]
    config: PathBuf,
    /// How rows are printed.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Time travel: read every table as checkpoint N left it (the newest snapshot of this config's
    /// `pipeline.writer_id` whose `ledgerstream.checkpoint-id` is at most N; empty if there is none).
    #[arg(long, value_name = "N")]
    as_of_checkpoint: Option<u64>,
    /// The SQL statement.
    sql: String,
}

#[cfg(feature = "query")]
#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// Aligned columns.
    Table,
    /// CSV with a header line.
    Csv,
    /// JSON lines: one object per row.
    Json,
}

#[cfg(feature = "query")]
impl From<OutputFormat> for ledgerstream::query::output::Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Table => Self::Table,
            OutputFormat::Csv => Self::Csv,
            OutputFormat::Json => Self::Json,
        }
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file (and LEDGERSTREAM__* overrides) and print the effective settings.
    Check { file: PathBuf },
}

impl From<LogFormat> for ledgerstream::telemetry::LogFormat {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Text => ledgerstream::telemetry::LogFormat::Text,
            LogFormat::Json => ledgerstream::telemetry::LogFormat::Json,
        }
    }
}

/// `ledgerstream run`: telemetry from the config, the operator endpoint, then the pipeline until SIGTERM.
async fn run(config: Config, log_format: LogFormat) -> anyhow::Result<()> {
    let otlp = config
        .observability
        .tracing
        .resolve(|k| std::env::var(k).ok())?;
    let telemetry = ledgerstream::telemetry::init(log_format.into(), otlp.as_ref())?;
    let health = Arc::new(Health::new(config.observability.ready_max_checkpoint_age));
    let server = match config.observability.metrics_addr {
        Some(addr) => Some(ledgerstream::http::serve(addr, health.clone()).await?),
        None => None,
    };
    let result = ledgerstream::pipeline::run_with_health(config, shutdown_signal(), health).await;
    if let Some(s) = server {
        s.shutdown().await;
    }
    // Flush the last spans (the final checkpoint's) before exiting.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

/// `ledgerstream checkpoints ...`: glue over `checkpoint_report`.
async fn checkpoints(
    config: &Config,
    json: bool,
    command: CheckpointsCommand,
) -> anyhow::Result<()> {
    use ledgerstream::checkpoint_report as report;
    let layout = ledgerstream_state::StateLayout::new(config.pipeline.data_dir.join("state"));
    let catalog = ledgerstream_state::CheckpointCatalog::new(layout);
    let intents = ledgerstream::checkpoint::IntentStore::new(&config.pipeline.data_dir);
    let remote = config
        .remote
        .as_ref()
        .map(ledgerstream::durable::from_config)
        .transpose()?;
    match command {
        CheckpointsCommand::List => {
            let infos =
                report::build(&report::gather(&catalog, &intents, remote.as_deref()).await?);
            if json {
                println!("{}", serde_json::to_string_pretty(&infos)?);
            } else {
                print!("{}", report::format_list(&infos));
            }
        }
        CheckpointsCommand::Show { id } => {
            let infos =
                report::build(&report::gather(&catalog, &intents, remote.as_deref()).await?);
            let info = infos
                .iter()
                .find(|i| i.id == id)
                .ok_or(report::ReportError::NotFound(id))?;
            if json {
                println!("{}", serde_json::to_string_pretty(info)?);
            } else {
                print!("{}", report::format_show(info));
            }
        }
        CheckpointsCommand::Prune { keep } => {
            let summary = report::prune(&catalog, &intents, remote.as_deref(), keep).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "removed {} local checkpoint(s) {:?} ({} partition state directories) and {} remote \
                     checkpoint record(s) {:?}",
                    summary.local_markers.len(),
                    summary.local_markers,
                    summary.local_state.len(),
                    summary.remote.len(),
                    summary.remote
                );
            }
        }
    }
    Ok(())
}

/// The catalog named by a config, for reading. An embedded (sqlite) catalog must already exist: connecting would
/// otherwise create an empty one and report "no tables" for a mistyped path.
async fn open_catalog(config: &Config) -> anyhow::Result<ledgerstream::sink::SinkCatalog> {
    let catalog = ledgerstream::pipeline::catalog_config(config)?;
    if let ledgerstream::sink::CatalogConfig::Sql { uri, .. } = &catalog
        && let Some(path) = uri.strip_prefix("sqlite:")
    {
        let file = path.split('?').next().unwrap_or(path);
        anyhow::ensure!(
            std::path::Path::new(file).exists(),
            "no catalog at {file} (has `ledgerstream run` written to it? check [pipeline] data_dir and [iceberg.catalog])"
        );
    }
    Ok(ledgerstream::sink::SinkCatalog::connect(&catalog, &config.iceberg.namespace).await?)
}

/// `ledgerstream tables`.
async fn tables(config: &Config, json: bool) -> anyhow::Result<()> {
    let catalog = open_catalog(config).await?;
    let infos = ledgerstream::query::inventory(&catalog).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
    } else {
        print!(
            "{}",
            ledgerstream::query::inventory::render_table_infos(&infos)
        );
    }
    Ok(())
}

/// `ledgerstream query`.
#[cfg(feature = "query")]
async fn query(config: &Config, args: &QueryArgs) -> anyhow::Result<()> {
    use ledgerstream::query::{output, session::QuerySession};
    let catalog = open_catalog(config).await?;
    let as_of = args.as_of_checkpoint.map(ledgerstream::types::CheckpointId);
    let session = QuerySession::open(&catalog, &config.pipeline.writer_id, as_of).await?;
    let result = session.run(&args.sql).await?;
    let text = output::render(&result.schema, &result.batches, args.format.into())?;
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).with_context(|| format!("config {}", path.display()))
}

/// Flips to true on SIGTERM or Ctrl-C.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install SIGTERM handler");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    // `run` sets up telemetry from its config file; every other command logs to stderr only.
    let _logs = match cli.command {
        Command::Run { .. } => None,
        _ => Some(ledgerstream::telemetry::init(cli.log_format.into(), None)?),
    };
    match cli.command {
        Command::Run { config } => run(load_config(&config)?, cli.log_format).await,
        Command::Tables { config, json } => tables(&load_config(&config)?, json).await,
        #[cfg(feature = "query")]
        Command::Query(args) => query(&load_config(&args.config)?, &args).await,
        Command::Migrate { pg_url } => ledgerstream::generate::migrate(&pg_url).await,
        Command::Generate(args) => ledgerstream::generate::run(args).await.map(|_| ()),
        Command::Produce(args) => {
            if let Some(p) = args.create_topics {
                ledgerstream::bench::create_topics(&args.brokers, &args.topic_prefix, p).await?;
            }
            let report =
                tokio::task::spawn_blocking(move || ledgerstream::bench::produce(&args)).await??;
            println!(
                "produced {} events ({} malformed) in {:.2}s: {:?}",
                report.events,
                report.bad,
                report.elapsed.as_secs_f64(),
                report.per_table
            );
            Ok(())
        }
        Command::Bench(args) => ledgerstream::bench::bench(args).await,
        Command::BenchCommit(args) => ledgerstream::bench_commit::bench_commit(args).await,
        Command::Replay {
            config,
            from,
            into,
            until,
            until_checkpoint,
            until_time,
            rules,
        } => {
            use ledgerstream::replay;
            let live = load_config(&config)?;
            let rules = rules
                .map(|r| Config::load(&r).with_context(|| format!("rules {}", r.display())))
                .transpose()?;
            let until = match (until, until_checkpoint) {
                (Some(u), _) => replay::Until::Offsets(replay::parse_until(&u)?),
                (None, Some(m)) => replay::Until::Checkpoint(m),
                (None, None) => replay::Until::End,
            };
            let until_time_us = until_time.map(|t| replay::parse_time(&t)).transpose()?;
            replay::check_name(&into)?;
            let cfg = replay::replay_config(&live, &into, rules.as_ref());
            let until_offsets = replay::prepare(&live, &cfg, &into, from, &until).await?;
            tracing::info!(
                from,
                namespace = %cfg.iceberg.namespace,
                dir = %cfg.pipeline.data_dir.display(),
                "replay prepared"
            );
            ledgerstream::pipeline::run_bounded(
                &cfg,
                ledgerstream::pipeline::Bounds {
                    until_offsets,
                    until_time_us,
                },
                shutdown_signal(),
            )
            .await?;
            println!(
                "replay {into} complete: tables in namespace {}",
                cfg.iceberg.namespace
            );
            Ok(())
        }
        Command::Checkpoints {
            config,
            json,
            command,
        } => checkpoints(&load_config(&config)?, json, command).await,
        Command::Config(ConfigCommand::Check { file }) => match Config::load(&file) {
            Ok(c) => {
                println!("{} is valid.\n\n{c:#?}", file.display());
                Ok(())
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                std::process::exit(2);
            }
        },
    }
}
