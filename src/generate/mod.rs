//! `ledgerstream generate`: a realistic, seeded load generator for the fintech source database.
//!
//! It drives a pure model ([`model`]) that decides, from the seed alone, which business actions happen (signups,
//! deposits, payments, transfers, settlements, fraud episodes, malformed rows, one live schema change) and a thin
//! writer ([`pg`]) that applies each action as one PostgreSQL transaction.
//!
//! Decisions worth knowing:
//! - **Ids are assigned by the model**, counting up from the largest ids already in the database, and inserted
//!   explicitly; the bigserial sequences are advanced past them at the end. So a seed reproduces the same action
//!   stream and the same ground truth, and ids are known before the write. The price: no other process may
//!   insert into these tables while the generator runs.
//! - **Timestamps are the database's `now()`** (transaction start, shared by all rows of an action). Downstream
//!   event time is the commit time (Debezium `source.ts_ms`), which is within milliseconds of it; a simulated
//!   clock would disagree with the event time the pipeline actually sees.
//! - **A change is one row-level insert, update or delete.** `--rate` and `--max-changes` count those, which is
//!   also the number of Debezium events produced. The run stops at the first action boundary at or past
//!   `--max-changes`, so it may overshoot by less than one action (at most a few rows).
//! - Balance bookkeeping and deletion rules are documented in [`rows`] and [`model`].

pub mod model;
pub mod pg;
pub mod rows;
pub mod truth;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use model::{Action, ActionKind, FraudPattern, Model, ModelConfig};
use pg::PgWriter;
use rows::{Op, Table};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};
use truth::TruthWriter;

/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Arguments of `ledgerstream generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// PostgreSQL connection URL, e.g. postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long, env = "LEDGERSTREAM_PG_URL")]
    pub pg_url: String,
    /// Target rate of row changes: `<n>/s`, `<n>/m`, `<n>/h`, or `max` for as fast as PostgreSQL allows.
    #[arg(long, default_value = "10000/h")]
    pub rate: Rate,
    /// Stop after this long (e.g. `10m`, `1h30m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop once this many row changes have been written.
    #[arg(long)]
    pub max_changes: Option<u64>,
    /// Seed of the model; the same seed gives the same actions. Random (and logged) when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Probability that an action starts a fraud episode.
    #[arg(long, default_value = "0.01")]
    pub fraud_rate: Probability,
    /// Probability that a deposit, withdrawal or payment row is malformed (null user_id, amount <= 0, or
    /// currency XXX).
    #[arg(long, default_value = "0.005")]
    pub bad_row_rate: Probability,
    /// After this many row changes, add `transactions.device_id` with live DDL and fill it from then on.
    #[arg(long)]
    pub evolve_after: Option<u64>,
    /// Write the ground truth of injected fraud and malformed rows here, as JSON lines.
    #[arg(long)]
    pub truth_out: Option<PathBuf>,
    /// Commit without waiting for the WAL flush (`synchronous_commit = off`), for load tests faster than the
    /// disk's fsync rate allows. Commit order and the CDC stream are unaffected.
    #[arg(long)]
    pub async_commit: bool,
    /// Do not print the progress line.
    #[arg(long)]
    pub no_progress: bool,
}

impl GenerateArgs {
    /// Arguments with the CLI defaults, for programmatic use (tests).
    pub fn new(pg_url: impl Into<String>) -> Self {
        GenerateArgs {
            pg_url: pg_url.into(),
            rate: Rate::Limited(10_000.0 / 3600.0),
            duration: None,
            max_changes: None,
            seed: None,
            fraud_rate: Probability(0.01),
            bad_row_rate: Probability(0.005),
            evolve_after: None,
            truth_out: None,
            async_commit: false,
            no_progress: false,
        }
    }
}

/// A target rate of row changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Changes per second, positive and finite.
    Limited(f64),
    Unlimited,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgError {
    #[error("invalid rate {0:?}: expected <n>/s, <n>/m, <n>/h or max")]
    Rate(String),
    #[error("invalid probability {0:?}: expected a number from 0 to 1")]
    Probability(String),
}

impl FromStr for Rate {
    type Err = ArgError;

    fn from_str(s: &str) -> Result<Self, ArgError> {
        let err = || ArgError::Rate(s.to_owned());
        let t = s.trim();
        if matches!(t, "max" | "unlimited") {
            return Ok(Rate::Unlimited);
        }
        let (n, unit) = t.split_once('/').ok_or_else(err)?;
        let n: f64 = n.trim().replace('_', "").parse().map_err(|_| err())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(err()),
        };
        let per_second = n / per;
        if per_second.is_finite() && per_second > 0.0 {
            Ok(Rate::Limited(per_second))
        } else {
            Err(err())
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Limited(r) => write!(f, "{r:.1}/s"),
            Rate::Unlimited => f.write_str("max"),
        }
    }
}

/// A probability in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probability(pub f64);

impl FromStr for Probability {
    type Err = ArgError;

    fn from_str(s: &str) -> Result<Self, ArgError> {
        match s.trim().parse::<f64>() {
            Ok(p) if (0.0..=1.0).contains(&p) => Ok(Probability(p)),
            _ => Err(ArgError::Probability(s.to_owned())),
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxChanges,
    Duration,
    Interrupted,
}

/// Counters of what was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub actions: u64,
    pub changes: u64,
    pub per_table_op: BTreeMap<(Table, Op), u64>,
    pub per_action: BTreeMap<ActionKind, u64>,
    /// Completed fraud episodes per pattern.
    pub fraud_episodes: BTreeMap<FraudPattern, u64>,
    pub bad_rows: u64,
}

impl Totals {
    pub fn record(&mut self, action: &Action) {
        self.actions += 1;
        self.changes += action.changes.len() as u64;
        for c in &action.changes {
            *self.per_table_op.entry((c.table(), c.op())).or_default() += 1;
        }
        *self.per_action.entry(action.kind).or_default() += 1;
        if let Some(done) = action.fraud.as_ref().and_then(|f| f.completed.as_ref()) {
            *self.fraud_episodes.entry(done.pattern).or_default() += 1;
        }
        if action.bad_row.is_some() {
            self.bad_rows += 1;
        }
    }

    /// Row changes of one table and op.
    pub fn count(&self, table: Table, op: Op) -> u64 {
        self.per_table_op.get(&(table, op)).copied().unwrap_or(0)
    }

    fn tables_line(&self) -> String {
        [Table::Users, Table::Wallets, Table::Transactions]
            .iter()
            .map(|&t| {
                format!(
                    "{t} +{} ~{} -{}",
                    self.count(t, Op::Insert),
                    self.count(t, Op::Update),
                    self.count(t, Op::Delete)
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub seed: u64,
    pub totals: Totals,
    pub elapsed: Duration,
    /// Row changes per second over the whole run.
    pub achieved_rate: f64,
    pub stop: StopReason,
    /// Whether the live schema change ran.
    pub evolved: bool,
    /// Lines written to `--truth-out`.
    pub truth_lines: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(
            f,
            "generate summary: stop={:?} seed={} elapsed={:.1}s changes={} actions={} achieved={:.1} changes/s",
            self.stop,
            self.seed,
            self.elapsed.as_secs_f64(),
            t.changes,
            t.actions,
            self.achieved_rate
        )?;
        writeln!(f, "  rows: {}", t.tables_line())?;
        let kinds: Vec<String> = t
            .per_action
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        writeln!(f, "  actions: {}", kinds.join(" "))?;
        let fraud: Vec<String> = t
            .fraud_episodes
            .iter()
            .map(|(p, n)| format!("{p:?}={n}"))
            .collect();
        writeln!(f, "  fraud episodes: {}", fraud.join(" "))?;
        write!(
            f,
            "  bad rows: {}  schema evolved: {}  truth lines: {}",
            t.bad_rows, self.evolved, self.truth_lines
        )
    }
}

/// `ledgerstream migrate`: applies the embedded migrations.
pub async fn migrate(pg_url: &str) -> anyhow::Result<()> {
    let pool = pg::connect(pg_url, false).await?;
    pg::migrate(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Runs the generator until a limit is reached or Ctrl-C.
pub async fn run(args: GenerateArgs) -> anyhow::Result<Summary> {
    run_until(args, async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: never interrupt.
            std::future::pending::<()>().await;
        }
    })
    .await
}

/// Runs the generator until a limit is reached or `shutdown` completes. The action in flight is always finished
/// (committed or failed) before stopping.
pub async fn run_until(
    args: GenerateArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let seed = args.seed.unwrap_or_else(rand::random);
    tracing::info!(seed, rate = %args.rate, "starting generator");
    let pool = pg::connect(&args.pg_url, args.async_commit).await?;
    pg::migrate(&pool).await?;
    let mut writer = PgWriter::new(pool.clone());
    let ids = writer.id_base().await?;
    let mut model = Model::new(ModelConfig {
        seed,
        fraud_rate: args.fraud_rate.0,
        bad_row_rate: args.bad_row_rate.0,
        evolve_after: args.evolve_after,
        ids,
    });
    let mut truth = match &args.truth_out {
        Some(path) => Some(
            TruthWriter::create(path)
                .with_context(|| format!("creating truth file {}", path.display()))?,
        ),
        None => None,
    };
    let mut progress = Progress::new(!args.no_progress);
    let mut totals = Totals::default();
    let mut episode_start: HashMap<u64, DateTime<Utc>> = HashMap::new();
    let start = Instant::now();
    let deadline = args.duration.map(|d| start + d);
    tokio::pin!(shutdown);

    let outcome: anyhow::Result<StopReason> = async {
        loop {
            if shutdown.as_mut().now_or_never().is_some() {
                return Ok(StopReason::Interrupted);
            }
            if args.max_changes.is_some_and(|max| totals.changes >= max) {
                return Ok(StopReason::MaxChanges);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(StopReason::Duration);
            }
            // Pace: the changes written so far may not run ahead of the target rate.
            if let Rate::Limited(per_second) = args.rate {
                let due = start + Duration::from_secs_f64(totals.changes as f64 / per_second);
                let wake = deadline.map_or(due, |d| due.min(d));
                if wake > Instant::now() {
                    tokio::select! {
                        () = &mut shutdown => return Ok(StopReason::Interrupted),
                        () = tokio::time::sleep_until(wake.into()) => {}
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(StopReason::Duration);
                    }
                }
            }
            let action = model.next_action();
            writer.apply(&action).await?;
            totals.record(&action);
            if let Some(truth) = truth.as_mut() {
                record_truth(truth, &action, &mut episode_start)?;
            }
            progress.tick(start, &totals);
        }
    }
    .await;

    progress.finish(start, &totals);
    // Even after a failure, keep the sequences ahead of the rows that were written.
    let synced = writer.sync_sequences(model.ids()).await;
    let stop = outcome?;
    synced?;
    if let Some(truth) = truth.as_mut() {
        let now = Utc::now();
        for episode in model.open_episodes() {
            if !episode.transaction_ids.is_empty() {
                let started = episode_start.get(&episode.episode).copied().unwrap_or(now);
                truth
                    .fraud(&episode, false, started, now)
                    .context("writing the truth file")?;
            }
        }
    }
    pool.close().await;
    let elapsed = start.elapsed();
    let summary = Summary {
        seed,
        achieved_rate: totals.changes as f64 / elapsed.as_secs_f64().max(1e-9),
        totals,
        elapsed,
        stop,
        evolved: model.evolved(),
        truth_lines: truth.as_ref().map_or(0, TruthWriter::lines),
    };
    tracing::info!(
        changes = summary.totals.changes,
        achieved_rate = summary.achieved_rate,
        stop = ?summary.stop,
        "generator stopped"
    );
    Ok(summary)
}

fn record_truth(
    truth: &mut TruthWriter,
    action: &Action,
    episode_start: &mut HashMap<u64, DateTime<Utc>>,
) -> anyhow::Result<()> {
    let now = Utc::now();
    if let Some(step) = &action.fraud {
        let started = *episode_start.entry(step.episode).or_insert(now);
        if let Some(done) = &step.completed {
            episode_start.remove(&step.episode);
            truth
                .fraud(done, true, started, now)
                .context("writing the truth file")?;
        }
    }
    if let Some(bad) = &action.bad_row {
        truth.bad_row(bad, now).context("writing the truth file")?;
    }
    Ok(())
}

/// The once-a-second progress line on stderr: rewritten in place on a terminal, one line per tick otherwise.
struct Progress {
    enabled: bool,
    terminal: bool,
    last: Instant,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            last: Instant::now(),
        }
    }

    fn tick(&mut self, start: Instant, totals: &Totals) {
        if self.enabled && self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            self.print(start, totals, false);
        }
    }

    fn finish(&mut self, start: Instant, totals: &Totals) {
        if self.enabled {
            self.print(start, totals, true);
        }
    }

    fn print(&self, start: Instant, totals: &Totals, last: bool) {
        let secs = start.elapsed().as_secs_f64();
        let line = format!(
            "generate {secs:.0}s changes={} ({:.1}/s) actions={} | {} | fraud={} bad={}",
            totals.changes,
            totals.changes as f64 / secs.max(1e-9),
            totals.actions,
            totals.tables_line(),
            totals.fraud_episodes.values().sum::<u64>(),
            totals.bad_rows
        );
        let mut err = std::io::stderr().lock();
        // Progress output is best effort: a closed stderr must not stop the generator.
        let _ = if self.terminal {
            write!(err, "\r\x1b[2K{line}{}", if last { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
    }
}

#[cfg(test)]
mod args_tests {
    use super::*;

    #[test]
    fn rate_parses_units_and_rejects_garbage() {
        assert_eq!("2000/s".parse::<Rate>(), Ok(Rate::Limited(2000.0)));
        assert_eq!("120/m".parse::<Rate>(), Ok(Rate::Limited(2.0)));
        assert_eq!("36_000/h".parse::<Rate>(), Ok(Rate::Limited(10.0)));
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Unlimited));
        for bad in ["", "10", "10/d", "-5/s", "0/s", "x/s", "inf/s"] {
            assert_eq!(
                bad.parse::<Rate>(),
                Err(ArgError::Rate(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn probability_is_bounded() {
        assert_eq!("0.25".parse::<Probability>(), Ok(Probability(0.25)));
        assert_eq!("1".parse::<Probability>(), Ok(Probability(1.0)));
        assert!("1.5".parse::<Probability>().is_err());
        assert!("-0.1".parse::<Probability>().is_err());
        assert!("NaN".parse::<Probability>().is_err());
    }
}
