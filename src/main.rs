//! The `ledgerstream` command line. Glue only: every subcommand calls into the library.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ledgerstream::config::Config;
use ledgerstream::health::Health;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
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
