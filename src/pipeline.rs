//! `ledgerstream run`: recovery, one pipeline generation, and the restart loop around it. Glue only.
//!
//! A generation: connect the source → recover (finish commit intents, restore state checkpoint, compute start
//! offsets) → spawn committer, partition actors and coordinator under a supervisor → start polling. It ends on
//! shutdown (drain: stop polling, final checkpoint, stop actors) or on the first failure of any actor, after which
//! the loop starts a new generation from the last complete checkpoint with capped exponential backoff.

use crate::actors::committer::{self, CommitterActor, CommitterArgs, OffsetHint};
use crate::actors::coordinator::{CoordinatorActor, CoordinatorArgs, CoordinatorMsg};
use crate::actors::partition::{PartitionActor, PartitionArgs, PartitionMsg};
use crate::actors::supervisor::{StopExpected, SupervisorActor, SupervisorArgs};
use crate::cdc::SourceTable;
use crate::changelog::{self, ChangelogSchema};
use crate::checkpoint::{CheckpointManifest, IntentStore, Offsets};
use crate::config::{CatalogKind, Config};
use crate::durable::RemoteCheckpoints;
use crate::health::{Health, Phase};
use crate::metrics;
use crate::processor::{Input, Processor};
use crate::sink::{self, PendingCommit, SinkCatalog};
use crate::source::kafka::{KafkaSource, KafkaSourceSettings};
use crate::types::{CheckpointId, PartitionId};
use crate::value::ColumnSpec;
use anyhow::Context;
use ledgerstream_state::{
    CheckpointCatalog, PartitionStore, RocksConfig, RocksPartitionStore, SharedBlockCache,
    StateLayout,
};
use ractor::{Actor, ActorRef};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};

/// Errors that a restart cannot fix; the process exits instead of looping.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    #[error(
        "table {table} already holds checkpoint {in_table} of writer `{writer}`, but the newest complete local \
         checkpoint is {local:?}. The local data directory is missing or stale: restore it (or a durable \
         checkpoint), or use a new pipeline.writer_id to start over. Refusing to run, since replaying would \
         duplicate rows."
    )]
    LocalStateBehind {
        table: String,
        writer: String,
        in_table: u64,
        local: Option<u64>,
    },
    #[error("commit intent {0} cannot be finished: {1}")]
    BrokenIntent(u64, String),
    #[error(
        "checkpoint {checkpoint} resumes past the end of its input: {details}. The topics were deleted and \
         recreated (or truncated) since that checkpoint; resuming would silently skip every record before those \
         offsets. Refusing to run: restore the topics, or start this pipeline over (a new pipeline.writer_id and \
         an empty data_dir)."
    )]
    OffsetsPastEnd { checkpoint: u64, details: String },
    #[error(
        "the input's partition layout changed: {details} (last checkpoint: {checkpoint:?}). Keyed state lives in \
         the partition its records arrive on, so it cannot follow keys that move: put the old partition count back, \
         or rebuild the state for the new layout (a new pipeline.writer_id and an empty data_dir, reading the topics \
         from the start). Refusing to run rather than join users, wallets and transactions against the wrong state."
    )]
    PartitionsChanged {
        checkpoint: Option<u64>,
        details: String,
    },
    /// A newer epoch of this writer has claimed the partitions (another process took over): this one must not
    /// commit again, and restarting would only fight the new owner.
    #[error(
        "Fenced: {0}. Another process with the same pipeline.writer_id has taken over these partitions; this one \
         committed nothing after the takeover and stops. If the takeover was not intended, two deployments share \
         one writer_id: give each its own."
    )]
    Fenced(String),
    /// A configured policy said to stop: a post-write data-quality check failed under `dq.post_write_policy =
    /// "halt"` (the checkpoint itself is complete; restarting resumes after it, once an operator has looked at
    /// `dq_results`), or a source type change met `schema.type_change = "halt"`.
    #[error("{0}")]
    PolicyHalt(String),
}

/// The source tables, in input order.
const TABLES: [SourceTable; 3] = [
    SourceTable::Users,
    SourceTable::Wallets,
    SourceTable::Transactions,
];

/// Output tables other than the changelogs; recovery checks them too, since a crash can leave any of them ahead.
const DERIVED_TABLES: [&str; 5] = [
    changelog::QUARANTINE_TABLE,
    crate::enrich::ENRICHED_TABLE,
    crate::pnl::PNL_TABLE,
    crate::fraud::ALERTS_TABLE,
    crate::dq::DQ_RESULTS_TABLE,
];

/// Runs until `shutdown` flips to true. Restarts failed generations; returns on fatal errors.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let health = Arc::new(Health::new(config.observability.ready_max_checkpoint_age));
    run_with_health(config, shutdown, health).await
}

/// [`run`], reporting its phases and checkpoints to `health` (served at `/healthz` and `/readyz`).
pub async fn run_with_health(
    config: Config,
    shutdown: watch::Receiver<bool>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    // Before anything touches the data directory: a second process on it refuses here.
    let _lock = ledgerstream_state::DataDirLock::acquire(&config.pipeline.data_dir)?;
    let result = restart_loop(&config, shutdown, &health).await;
    health.set_phase(Phase::Stopped);
    result
}

async fn restart_loop(
    config: &Config,
    mut shutdown: watch::Receiver<bool>,
    health: &Arc<Health>,
) -> anyhow::Result<()> {
    let mut generation = 0u64;
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        health.set_phase(Phase::Starting);
        match run_generation(config, &mut shutdown, health).await {
            Ok(()) => return Ok(()),
            Err(e) if e.downcast_ref::<FatalError>().is_some() => return Err(e),
            // A failed drain leaves the last complete checkpoint as the restart point; report it, don't loop.
            Err(e) if *shutdown.borrow() => return Err(e),
            Err(e) => {
                health.set_phase(Phase::Restarting);
                generation += 1;
                metrics::pipeline_restarted(generation, &format!("{e:#}"));
                if started.elapsed() > Duration::from_secs(120) {
                    backoff = Duration::from_secs(1);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
        if *shutdown.borrow() {
            return Ok(());
        }
    }
}

/// Builds the sink's catalog configuration from ours, resolving secrets.
pub fn catalog_config(config: &Config) -> anyhow::Result<sink::CatalogConfig> {
    let s3 = match &config.iceberg.s3 {
        Some(s) => Some(sink::S3Config {
            endpoint: s.endpoint.clone(),
            region: s.region.clone(),
            access_key_id: s
                .access_key_id
                .as_ref()
                .map(|k| k.resolve("iceberg.s3.access_key_id"))
                .transpose()?
                .map(|s| s.expose().to_string()),
            secret_access_key: s
                .secret_access_key
                .as_ref()
                .map(|k| k.resolve("iceberg.s3.secret_access_key"))
                .transpose()?
                .map(|s| s.expose().to_string()),
            path_style_access: s.path_style_access,
        }),
        None => None,
    };
    Ok(match &config.iceberg.catalog {
        CatalogKind::Sql {
            uri,
            warehouse,
            password,
        } => {
            let uri = match uri.strip_prefix("sqlite://") {
                Some(path) => {
                    let path = absolute(path)?;
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("creating {}", dir.display()))?;
                    }
                    format!("sqlite:{}?mode=rwc", path.display())
                }
                None => match password {
                    Some(pw) => {
                        with_password(uri, pw.resolve("iceberg.catalog.password")?.expose())
                    }
                    None => uri.clone(),
                },
            };
            let warehouse = if warehouse.contains("://") {
                warehouse.clone()
            } else {
                let dir = absolute(warehouse)?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                format!("file://{}", dir.display())
            };
            sink::CatalogConfig::Sql { uri, warehouse, s3 }
        }
        CatalogKind::Rest { uri, warehouse } => sink::CatalogConfig::Rest {
            uri: uri.clone(),
            warehouse: warehouse.clone(),
            s3: s3.context("the rest catalog needs [iceberg.s3]")?,
        },
    })
}

fn absolute(path: &str) -> anyhow::Result<std::path::PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {path}"))
}

fn with_password(uri: &str, password: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) => format!("{scheme}://{user}:{password}@{host}"),
            None => uri.to_string(),
        },
        None => uri.to_string(),
    }
}

/// Columns of an existing Iceberg table, as column specs.
fn table_columns(table: &iceberg::table::Table) -> Vec<ColumnSpec> {
    table
        .metadata()
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .filter_map(|f| {
            sink::column_type_of(&f.field_type)
                .map(|ty| ColumnSpec::new(f.name.clone(), ty, !f.required))
        })
        .collect()
}

/// What recovery hands to a generation.
pub struct Recovered {
    pub manifest: Option<CheckpointManifest>,
    pub next: CheckpointId,
}

/// What recovery writes through besides the catalog and the local state.
#[derive(Clone, Copy)]
pub struct RecoverWith<'a> {
    /// Republishes the alerts of a checkpoint finished from its intent.
    pub alerts: Option<&'a crate::alerts_out::AlertPublisher>,
    /// The durable checkpoint remote, if configured.
    pub remote: Option<&'a RemoteCheckpoints>,
    /// The epoch this generation claimed: an intent is finished under it.
    pub fence: &'a crate::commit::Fence,
}

/// Finishes leftover commit intents, then finds the recovery point and checks Iceberg agrees with it.
pub async fn recover(
    config: &Config,
    catalog: &SinkCatalog,
    checkpoints: &CheckpointCatalog,
    intents: &IntentStore,
    partitions: &[PartitionId],
    with: RecoverWith<'_>,
) -> anyhow::Result<Recovered> {
    let RecoverWith {
        alerts,
        remote,
        fence,
    } = with;
    let parts: Vec<u32> = partitions.iter().map(|p| p.0 as u32).collect();
    if let Some(remote) = remote {
        restore_from_remote(config, catalog, checkpoints, intents, &parts, remote).await?;
    }
    check_layout(checkpoints, parts.len())?;
    let latest_before = checkpoints.latest_complete(&parts)?.map(|c| c.id);
    for id in intents.list()? {
        if latest_before.is_some_and(|l| id.0 <= l) {
            intents.remove(id)?;
            continue;
        }
        let bytes = intents.read(id)?;
        let pending = PendingCommit::from_bytes(&bytes)
            .map_err(|e| FatalError::BrokenIntent(id.0, e.to_string()))?;
        // The remote must hold state `id` and its intent before any table commits `id` (a no-op when the crash
        // came after the upload).
        if let Some(remote) = remote {
            committer::upload_before_commit(
                remote,
                checkpoints,
                partitions,
                &config.pipeline.writer_id,
                id,
                &bytes,
            )
            .await
            .map_err(|e| anyhow::anyhow!("uploading checkpoint {id}: {e}"))?;
        }
        // Replaying a half-committed checkpoint: its `iceberg_commit` spans are children of this one.
        let span = tracing::info_span!("replay_intent", checkpoint_id = id.0);
        let snapshots = {
            use tracing::Instrument;
            committer::commit_tables(
                catalog,
                fence,
                &checkpoint_tables(),
                &pending,
                &BTreeMap::new(),
                &BTreeMap::new(),
            )
            .instrument(span)
            .await
            .map_err(|e| fatal_if_fenced(e, &format!("finishing intent {id}")))?
        };
        // The crash may have come before this checkpoint's alerts reached Kafka: publish them (again).
        if let (Some(publisher), Some(snapshot)) =
            (alerts, snapshots.get(crate::fraud::ALERTS_TABLE))
        {
            let table = catalog.load_table(crate::fraud::ALERTS_TABLE).await?;
            let files = sink::readback::added_files(&table, *snapshot).await?;
            let batches: Vec<_> = files.into_iter().flat_map(|f| f.batches).collect();
            let n = publisher.publish(&batches).await?;
            tracing::info!(
                checkpoint = id.0,
                alerts = n,
                "republished the alerts of a recovered checkpoint"
            );
        }
        let offsets: Offsets = pending
            .meta
            .offsets
            .iter()
            .map(|(t, ps)| (t.clone(), ps.iter().map(|(p, o)| (p.0, o.0)).collect()))
            .collect();
        let manifest = CheckpointManifest {
            id,
            writer_id: config.pipeline.writer_id.clone(),
            completed_at_ms: chrono::Utc::now().timestamp_millis(),
            offsets,
            snapshots,
            rows: BTreeMap::new(),
            state_bytes: BTreeMap::new(),
            partitions: Some(partitions.len() as u32),
        };
        tracing::info_span!("state_checkpoint", checkpoint_id = id.0)
            .in_scope(|| {
                committer::finish_checkpoint(
                    checkpoints,
                    intents,
                    partitions,
                    &manifest,
                    config.pipeline.checkpoints_to_keep,
                )
            })
            .map_err(|e| anyhow::anyhow!("finishing intent {id}: {e}"))?;
        if let Some(remote) = remote {
            committer::finish_remote(remote, &manifest, config.pipeline.checkpoints_to_keep)
                .await
                .map_err(|e| anyhow::anyhow!("finishing intent {id} remotely: {e}"))?;
        }
        tracing::info!(
            checkpoint = id.0,
            "finished a checkpoint left half-committed by a crash"
        );
    }

    let latest = checkpoints.latest_complete(&parts)?;
    let manifest = match &latest {
        Some(c) => Some(CheckpointManifest::from_bytes(&c.marker)?),
        None => None,
    };
    // A crash between the local and the remote marker leaves the remote one behind: complete it now.
    if let (Some(remote), Some(m)) = (remote, &manifest)
        && remote.marker(m.id.0).await?.is_none()
    {
        remote
            .upload_state(
                checkpoints.layout(),
                m.id.0,
                &parts,
                &config.pipeline.writer_id,
            )
            .await?;
        committer::finish_remote(remote, m, config.pipeline.checkpoints_to_keep)
            .await
            .map_err(|e| anyhow::anyhow!("uploading checkpoint {} remotely: {e}", m.id))?;
        tracing::info!(
            checkpoint = m.id.0,
            "completed the remote copy of the recovery point"
        );
    }
    let local = manifest.as_ref().map(|m| m.id.0);
    if let Some((table, in_table)) = newest_in_tables(config, catalog).await?
        && local.is_none_or(|l| in_table > l)
    {
        return Err(FatalError::LocalStateBehind {
            table,
            writer: config.pipeline.writer_id.clone(),
            in_table,
            local,
        }
        .into());
    }
    let next = CheckpointId(local.unwrap_or(0) + 1);
    Ok(Recovered { manifest, next })
}

/// Refuses a restore when the newest checkpoint was taken with a different partition count than the topics have.
fn check_layout(checkpoints: &CheckpointCatalog, partitions: usize) -> anyhow::Result<()> {
    let Some(id) = checkpoints.marker_ids()?.into_iter().max() else {
        return Ok(());
    };
    let Some(bytes) = checkpoints.read_marker(id)? else {
        return Ok(());
    };
    let recorded = CheckpointManifest::from_bytes(&bytes)?.partitions;
    match crate::checkpoint::layout_change(recorded, partitions as u32) {
        Some(details) => Err(FatalError::PartitionsChanged {
            checkpoint: Some(id),
            details,
        }
        .into()),
        None => Ok(()),
    }
}

/// Every table a checkpoint commit stamps (all at checkpoint n, or none): every output table but `dq_results`,
/// whose rows are the post-write checks of a checkpoint already committed, so it is committed just after.
pub fn checkpoint_tables() -> Vec<String> {
    TABLES
        .iter()
        .map(|t| changelog::changes_table(*t))
        .chain(
            DERIVED_TABLES
                .iter()
                .filter(|t| **t != crate::dq::DQ_RESULTS_TABLE)
                .map(|t| t.to_string()),
        )
        .collect()
}

/// Every output table: the ones an epoch claim covers.
fn all_tables() -> Vec<String> {
    TABLES
        .iter()
        .map(|t| changelog::changes_table(*t))
        .chain(DERIVED_TABLES.iter().map(|t| t.to_string()))
        .collect()
}

/// A sink error as the pipeline reports it: [`FatalError::Fenced`] for a fenced writer, else with context.
pub fn fatal_if_fenced(e: sink::SinkError, context: &str) -> anyhow::Error {
    match e {
        sink::SinkError::Fenced { .. } => FatalError::Fenced(e.to_string()).into(),
        e => anyhow::anyhow!("{context}: {e}"),
    }
}

/// The newest checkpoint of this writer held by any output table, and that table.
async fn newest_in_tables(
    config: &Config,
    catalog: &SinkCatalog,
) -> anyhow::Result<Option<(String, u64)>> {
    let mut newest: Option<(String, u64)> = None;
    for table in TABLES
        .iter()
        .map(|t| changelog::changes_table(*t))
        .chain(DERIVED_TABLES.iter().map(|t| t.to_string()))
    {
        let Ok(t) = catalog.load_table(&table).await else {
            continue;
        };
        if let Some(c) = crate::commit::newest_checkpoint(&t, &config.pipeline.writer_id)?
            && newest.as_ref().is_none_or(|(_, n)| c > *n)
        {
            newest = Some((table, c));
        }
    }
    Ok(newest)
}

/// When the tables hold a checkpoint newer than the local state (a new node, or a lost data directory), brings
/// the remote's copy here: the newest remote checkpoint complete at or before the tables' one (state + marker), and
/// the intent (+ state) of any newer checkpoint the tables may hold partly, which the intent loop then finishes.
/// With the tables holding nothing of this writer there is nothing to restore: the remote may belong to another
/// lakehouse, so it is never trusted on its own.
async fn restore_from_remote(
    config: &Config,
    catalog: &SinkCatalog,
    checkpoints: &CheckpointCatalog,
    intents: &IntentStore,
    parts: &[u32],
    remote: &RemoteCheckpoints,
) -> anyhow::Result<()> {
    let Some((_, in_tables)) = newest_in_tables(config, catalog).await? else {
        return Ok(());
    };
    let local = checkpoints.latest_complete(parts)?.map(|c| c.id);
    if local.is_some_and(|l| l >= in_tables) {
        return Ok(());
    }
    let listing = remote.listing().await?;
    let base = listing
        .range(..=in_tables)
        .rev()
        .find(|(_, e)| e.complete && e.state)
        .map(|(id, _)| *id);
    if let Some(c) = base {
        let marker = remote.marker(c).await?.context("remote marker vanished")?;
        let m = CheckpointManifest::from_bytes(&marker)?;
        anyhow::ensure!(
            m.writer_id == config.pipeline.writer_id,
            "remote checkpoint {c} belongs to writer `{}`, not `{}`: check [checkpoint.remote]",
            m.writer_id,
            config.pipeline.writer_id
        );
        let bytes = remote.download_state(checkpoints.layout(), c).await?;
        checkpoints.write_marker(c, &marker)?;
        tracing::info!(
            checkpoint = c,
            bytes,
            "restored a durable checkpoint from the remote"
        );
    }
    let first_pending = base.map_or(0, |b| b + 1);
    if first_pending > in_tables {
        return Ok(());
    }
    for (id, e) in listing.range(first_pending..=in_tables) {
        if !(e.intent && e.state) {
            continue;
        }
        let Some(intent) = remote.intent(*id).await? else {
            continue;
        };
        remote.download_state(checkpoints.layout(), *id).await?;
        intents.write(CheckpointId(*id), &intent)?;
        tracing::info!(
            checkpoint = id,
            "fetched a pending commit intent from the remote"
        );
    }
    Ok(())
}

/// Opens partition `p`'s store at the recovery point: restored from checkpoint `at`, or empty for a fresh start.
fn open_store(
    layout: &StateLayout,
    p: PartitionId,
    at: Option<CheckpointId>,
    cache: &SharedBlockCache,
) -> anyhow::Result<Box<dyn PartitionStore>> {
    let dir = layout.partition_dir(p.0 as u32);
    if at.is_none() && dir.exists() {
        // No complete checkpoint: whatever is on disk was never committed anywhere. Start clean, or its LSNs would
        // make us skip changes that were never written.
        std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
    }
    let cfg = RocksConfig {
        block_cache: Some(cache.clone()),
        ..RocksConfig::default()
    };
    let mut store = RocksPartitionStore::open(layout, p.0 as u32, cfg)?;
    if let Some(id) = at {
        store.restore_checkpoint(id.0)?;
    }
    for id in store.list_checkpoints()? {
        if at.is_none_or(|a| id > a.0) {
            store.delete_checkpoint(id)?;
        }
    }
    Ok(Box::new(store))
}

/// A bounded run (a replay): read up to these bounds, then finish with an idle checkpoint and stop.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// First offset not to read per (topic, partition); `None`: the end of every topic as seen at start.
    pub until_offsets: Option<crate::source::kafka::StartOffsets>,
    /// Stop each topic partition at its first change committed after this time (µs).
    pub until_time_us: Option<i64>,
}

async fn run_generation(
    config: &Config,
    shutdown: &mut watch::Receiver<bool>,
    health: &Arc<Health>,
) -> anyhow::Result<()> {
    run_generation_bounded(config, shutdown, health, None).await
}

/// Runs a bounded pipeline (`ledgerstream replay`): one generation, no restart, no consumer-group offsets; returns
/// once everything up to the bounds is committed (or on shutdown / failure).
pub async fn run_bounded(
    config: &Config,
    bounds: Bounds,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let health = Arc::new(Health::new(config.observability.ready_max_checkpoint_age));
    let _lock = ledgerstream_state::DataDirLock::acquire(&config.pipeline.data_dir)?;
    let mut shutdown = shutdown;
    run_generation_bounded(config, &mut shutdown, &health, Some(bounds)).await
}

async fn run_generation_bounded(
    config: &Config,
    shutdown: &mut watch::Receiver<bool>,
    health: &Arc<Health>,
    bounds: Option<Bounds>,
) -> anyhow::Result<()> {
    let pc = &config.pipeline;
    let stages = &config.stages;
    let topics: Vec<String> = TABLES
        .iter()
        .map(|t| config.kafka.topic(t.name()))
        .collect();
    let sasl_password = config
        .kafka
        .sasl_password
        .as_ref()
        .map(|s| s.resolve("kafka.sasl_password"))
        .transpose()?
        .map(|s| s.expose().to_string());
    let sasl_for_alerts = sasl_password.clone();
    let settings = KafkaSourceSettings {
        brokers: config.kafka.brokers.clone(),
        group_id: config.kafka.group_id.clone(),
        client: config.kafka.client.clone(),
        sasl_password,
        topics: topics.clone(),
        batch_size: pc.source_batch_size.get(),
    };
    let mut source = tokio::task::spawn_blocking(move || KafkaSource::connect(settings)).await??;
    let partitions = source.partitions().to_vec();

    let catalog =
        Arc::new(SinkCatalog::connect(&catalog_config(config)?, &config.iceberg.namespace).await?);
    // Create the output tables up front so that readers see them before the first commit.
    let mut existing: BTreeMap<String, Vec<ColumnSpec>> = BTreeMap::new();
    for t in TABLES {
        let table = catalog.ensure_table(&ChangelogSchema::new(t).def()).await?;
        existing.insert(changelog::changes_table(t), table_columns(&table));
    }
    catalog.ensure_table(&changelog::quarantine_def()).await?;
    // Derived tables exist from the start, so queries and dashboards work before their first rows. The enriched
    // table carries the transaction columns learnt in earlier runs.
    let tx_extras = ChangelogSchema::with_existing(
        SourceTable::Transactions,
        existing
            .get(&changelog::changes_table(SourceTable::Transactions))
            .map(Vec::as_slice)
            .unwrap_or_default(),
    )
    .extras;
    let enriched = catalog
        .ensure_table(&crate::enrich::enriched_def(&tx_extras))
        .await?;
    existing.insert(
        crate::enrich::ENRICHED_TABLE.to_string(),
        table_columns(&enriched),
    );
    catalog.ensure_table(&crate::pnl::pnl_def()).await?;
    catalog
        .ensure_table(&crate::fraud::alerts_table_def())
        .await?;
    catalog.ensure_table(&crate::dq::dq_results_def()).await?;
    metrics::dq_rules_known(config.stages.dq.names());
    metrics::pipeline_started(
        source.partitions().iter().copied(),
        SourceTable::ALL.iter().map(|t| t.name()),
    );

    let layout = StateLayout::new(pc.data_dir.join("state"));
    let checkpoints = CheckpointCatalog::new(layout.clone());
    let intents = IntentStore::new(&pc.data_dir);
    let alerts = match &config.alerts_topic {
        Some(topic) => Some(Arc::new(crate::alerts_out::AlertPublisher::new(
            &config.kafka.brokers,
            &config.kafka.client,
            sasl_for_alerts.as_deref(),
            topic,
        )?)),
        None => None,
    };
    let remote = config
        .remote
        .as_ref()
        .map(crate::durable::from_config)
        .transpose()?;
    // Claim the partitions before recovery: from here on no older epoch of this writer (a previous generation's
    // committer still inside a commit, a process stopped and woken up, another node) can commit to any table.
    let fence = crate::commit::claim(
        &catalog,
        &pc.writer_id,
        &partitions,
        &all_tables(),
        fencing_disabled(),
    )
    .await?;
    health.set_phase(Phase::Recovering);
    let recovered = {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "recovery",
            partitions = partitions.len(),
            checkpoint_id = tracing::field::Empty
        );
        recover(
            config,
            &catalog,
            &checkpoints,
            &intents,
            &partitions,
            RecoverWith {
                alerts: alerts.as_deref(),
                remote: remote.as_deref(),
                fence: &fence,
            },
        )
        .instrument(span.clone())
        .await
        .inspect(|r| {
            if let Some(m) = &r.manifest {
                span.record("checkpoint_id", m.id.0);
            }
        })?
    };
    metrics::recovered(recovered.manifest.as_ref().map(|m| m.id.0));
    let offsets: Offsets = recovered
        .manifest
        .as_ref()
        .map(|m| m.offsets.clone())
        .unwrap_or_default();
    tracing::info!(
        checkpoint = recovered.manifest.as_ref().map(|m| m.id.0),
        next = recovered.next.0,
        partitions = partitions.len(),
        "recovered"
    );

    let start_offsets: crate::source::kafka::StartOffsets = offsets
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |(p, o)| ((t.clone(), *p), *o)))
        .collect();
    // Resuming from a checkpoint: every position must still exist in its topic (a recreated topic would
    // otherwise be skipped up to the old offsets without a trace).
    if let Some(m) = &recovered.manifest {
        let probe = &source;
        let past = tokio::task::block_in_place(|| probe.positions_past_end(&start_offsets))?;
        if !past.is_empty() {
            let details = past
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(FatalError::OffsetsPastEnd {
                checkpoint: m.id.0,
                details,
            }
            .into());
        }
    }

    let (fail_tx, mut fail_rx) = mpsc::channel(1);
    let (supervisor, _sup_handle) =
        Actor::spawn(None, SupervisorActor, SupervisorArgs { failures: fail_tx }).await?;
    // A bounded run (replay) must not move the live pipeline's group offsets, not even as a hint.
    let offset_hint: OffsetHint = if bounds.is_some() {
        Arc::new(|_: &Offsets| {})
    } else {
        source.offset_hinter()
    };
    let (committer, _) = Actor::spawn_linked(
        Some(format!("committer-{}", uuid_suffix())),
        CommitterActor,
        CommitterArgs {
            catalog: catalog.clone(),
            writer_id: pc.writer_id.clone(),
            partitions: partitions.clone(),
            checkpoints: checkpoints.clone(),
            intents: intents.clone(),
            keep: pc.checkpoints_to_keep,
            offsets: offsets.clone(),
            offset_hint,
            dq: config.stages.dq.clone(),
            dq_policy: config.stages.dq_post_write_policy,
            alerts: alerts.clone(),
            remote: remote.clone(),
            fence: fence.clone(),
            stamp: checkpoint_tables(),
        },
        supervisor.get_cell(),
    )
    .await?;
    let (coordinator, _) = Actor::spawn_linked(
        Some(format!("coordinator-{}", uuid_suffix())),
        CoordinatorActor,
        CoordinatorArgs {
            first: recovered.next,
            interval: pc.checkpoint_interval,
            committer: committer.clone(),
            health: health.clone(),
        },
        supervisor.get_cell(),
    )
    .await?;

    let cache = SharedBlockCache::new(64 << 20);
    let at = recovered.manifest.as_ref().map(|m| m.id);
    let mut partition_refs: BTreeMap<PartitionId, ActorRef<PartitionMsg>> = BTreeMap::new();
    let mut permits = BTreeMap::new();
    for &p in &partitions {
        let store = {
            let layout = layout.clone();
            let cache = cache.clone();
            tokio::task::spawn_blocking(move || open_store(&layout, p, at, &cache)).await??
        };
        let inputs: Vec<Input> = TABLES
            .iter()
            .zip(&topics)
            .map(|(t, topic)| Input {
                topic: topic.clone(),
                table: *t,
            })
            .collect();
        let start: Vec<i64> = topics
            .iter()
            .map(|t| {
                offsets
                    .get(t)
                    .and_then(|m| m.get(&p.0))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        let processor = Processor::new(p, inputs, start, &existing, stages.clone());
        let inflight = Arc::new(Semaphore::new(pc.max_inflight_records_per_partition.get()));
        let (actor, _) = Actor::spawn_linked(
            Some(format!("partition-{}-{}", p.0, uuid_suffix())),
            PartitionActor,
            PartitionArgs {
                partition: p,
                store,
                processor,
                committer: committer.clone(),
                coordinator: coordinator.clone(),
                early_checkpoint_records: pc.max_inflight_records_per_partition.get() / 2,
                inflight: inflight.clone(),
                inflight_capacity: pc.max_inflight_records_per_partition.get(),
            },
            supervisor.get_cell(),
        )
        .await?;
        partition_refs.insert(p, actor);
        permits.insert(p, inflight);
    }
    coordinator.cast(CoordinatorMsg::Start(
        partition_refs.values().cloned().collect(),
    ))?;

    let stop = match &bounds {
        Some(b) => {
            let until = match &b.until_offsets {
                Some(u) => u.clone(),
                None => {
                    let probe = &source;
                    tokio::task::block_in_place(|| probe.end_offsets())?
                }
            };
            let progress = crate::replay::Progress::new(&start_offsets, &until);
            tracing::info!(
                records_to_go = progress.total(),
                until = ?until,
                "bounded run: reading up to these offsets"
            );
            let stop = Arc::new(crate::source::kafka::StopAt::new(
                until,
                b.until_time_us,
                partitions.len(),
            ));
            let read = source.position_reader();
            tokio::spawn(crate::replay::report_progress(progress, read, stop.clone()));
            Some(stop)
        }
        None => None,
    };
    let deliver_refs = partition_refs.clone();
    source.start(
        &start_offsets,
        &permits,
        Arc::new(move |batch| {
            deliver_refs
                .get(&batch.partition)
                .is_some_and(|a| a.cast(PartitionMsg::Records(batch)).is_ok())
        }),
        tokio::runtime::Handle::current(),
        stop.clone(),
    )?;
    health.set_phase(Phase::Consuming);
    tracing::info!("consuming");

    let mut layout = source.layout_changes();
    // Set when the topics' partition count changes under us: drain what was read (it is all valid), then stop.
    let mut relayout: Option<String> = None;
    let outcome = tokio::select! {
        changed = layout.wait_for(Option::is_some) => {
            relayout = changed.ok().and_then(|c| c.clone());
            Ok(())
        }
        failure = fail_rx.recv() => match failure {
            Some(f) if f.fenced => Err(FatalError::Fenced(f.message).into()),
            Some(f) if f.halt => Err(FatalError::PolicyHalt(f.message).into()),
            Some(f) => Err(anyhow::anyhow!(f.message)),
            None => Err(anyhow::anyhow!("supervisor gone")),
        },
        _ = shutdown.changed() => Ok(()),
        _ = async {
            match &stop {
                Some(s) => s.finished().await,
                None => std::future::pending().await,
            }
        } => Ok(()),
    };
    // Stop polling first: whatever was delivered before this point is in the actors' mailboxes, ahead of the
    // final barrier.
    let source = tokio::task::spawn_blocking(move || {
        source.stop();
        source
    })
    .await?;
    let result = match outcome {
        Ok(()) => {
            health.set_phase(Phase::Draining);
            tracing::info!("draining: final checkpoint");
            let drained = tokio::time::timeout(pc.shutdown_timeout, async {
                let id = ractor::call!(coordinator, CoordinatorMsg::Drain)?;
                if stop.is_some() {
                    // A bounded run ends like a live pipeline whose input went quiet: one more checkpoint with
                    // nothing new is idle and releases every change still waiting for its watermark.
                    return ractor::call!(coordinator, CoordinatorMsg::Drain);
                }
                Ok(id)
            })
            .await;
            match drained {
                Ok(Ok(id)) => {
                    tracing::info!(checkpoint = id.0, "final checkpoint complete");
                    match relayout {
                        Some(details) => Err(FatalError::PartitionsChanged {
                            checkpoint: Some(id.0),
                            details,
                        }
                        .into()),
                        None => Ok(()),
                    }
                }
                Ok(Err(e)) => Err(anyhow::anyhow!("final checkpoint failed: {e}")),
                Err(_) => Err(anyhow::anyhow!(
                    "final checkpoint did not complete within {:?}",
                    pc.shutdown_timeout
                )),
            }
        }
        Err(e) => Err(e),
    };
    let _ = supervisor.cast(StopExpected);
    // Wait for every actor to be gone (bounded): nothing of this generation, spans included, outlives the call,
    // so a restart or the trace exporter's final flush sees all of it.
    let stop_bound = Some(Duration::from_secs(10));
    let _ = coordinator.stop_and_wait(None, stop_bound).await;
    for a in partition_refs.values() {
        let _ = a.stop_and_wait(None, stop_bound).await;
    }
    let _ = committer.stop_and_wait(None, stop_bound).await;
    let _ = supervisor.stop_and_wait(None, stop_bound).await;
    drop(source);
    // A drain that failed leaves the last complete checkpoint as the restart point; nothing is lost.
    result
}

/// Failpoint builds only: `LEDGERSTREAM_TEST_NO_FENCING=1` skips the epoch check, so that the zombie tests can
/// show what fencing prevents. Release builds always fence.
fn fencing_disabled() -> bool {
    cfg!(feature = "failpoints") && std::env::var_os("LEDGERSTREAM_TEST_NO_FENCING").is_some()
}

fn uuid_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}
