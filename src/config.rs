//! Configuration for `ledgerstream run`: parse → validate → typed.
//!
//! * **Parse**: a TOML file (`deny_unknown_fields` everywhere, so a typo is an error, not a silently ignored key),
//!   then environment overrides `LEDGERSTREAM__SECTION__KEY=value` (double underscore separates path segments).
//! * **Validate**: pure checks with no I/O, so `ledgerstream config check` gives the same verdict on any machine.
//! * **Typed**: [`Config`] holds `Duration`s, `NonZero*` and enums; nothing downstream re-parses strings.
//!
//! Secrets (S3 keys, SASL passwords) may be given inline, through `*_env` (an environment variable name) or
//! `*_file` (a file path, read at start-up, not at validation). They are wrapped in [`Secret`], whose `Debug`
//! never prints the value, so they cannot leak through logs.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything that can be wrong with a configuration, each naming the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid TOML or has unknown/mistyped keys: {0}")]
    Parse(String),
    #[error("environment override {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("secret `{key}`: {reason}")]
    Secret { key: String, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// A secret value. `Debug`/`Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How a secret is given in the file: exactly one of the three forms.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The value inline. Convenient for local development only.
    pub value: Option<String>,
    /// Name of an environment variable holding the value.
    pub env: Option<String>,
    /// Path of a file holding the value (trailing newline stripped), e.g. a mounted Kubernetes secret.
    pub file: Option<PathBuf>,
}

impl SecretSource {
    fn validate(&self, key: &'static str) -> Result<(), ConfigError> {
        let n = [
            self.value.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            return Err(invalid(key, "give exactly one of `value`, `env` or `file`"));
        }
        Ok(())
    }

    /// Resolves the secret. This does I/O (env, file), so it happens at start-up, after validation.
    pub fn resolve(&self, key: &str) -> Result<Secret, ConfigError> {
        let err = |reason: String| ConfigError::Secret {
            key: key.to_string(),
            reason,
        };
        if let Some(v) = &self.value {
            return Ok(Secret::new(v.clone()));
        }
        if let Some(var) = &self.env {
            return std::env::var(var)
                .map(Secret::new)
                .map_err(|_| err(format!("environment variable {var} is not set")));
        }
        if let Some(path) = &self.file {
            return std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| err(format!("cannot read {}: {e}", path.display())));
        }
        Err(err("no source given".into()))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The file format (raw). Defaults are named functions so the documentation can point at them.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pipeline: RawPipeline,
    #[serde(default)]
    kafka: RawKafka,
    #[serde(default)]
    iceberg: RawIceberg,
    #[serde(default)]
    observability: RawObservability,
    #[serde(default)]
    enrich: RawEnrich,
    #[serde(default)]
    pnl: RawPnl,
    #[serde(default)]
    dq: crate::dq::DqConfig,
    #[serde(default)]
    fraud: crate::fraud::FraudConfig,
    #[serde(default)]
    schema: RawSchema,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    checkpoint: RawCheckpoint,
}

/// `[checkpoint]`: where state checkpoints are kept besides the local data directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckpoint {
    /// Durable copy of every state checkpoint off the machine (unset: local only).
    remote: Option<RawRemote>,
}

/// `[checkpoint.remote]`: an object store holding state checkpoints, commit intents and completion markers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
enum RawRemote {
    /// A directory (a mounted network volume, or a local disk for tests).
    Dir {
        path: PathBuf,
        #[serde(default)]
        prefix: String,
    },
    /// An S3 bucket (AWS, MinIO or any S3-compatible server).
    S3 {
        bucket: String,
        #[serde(default)]
        prefix: String,
        endpoint: Option<String>,
        #[serde(default = "default_region")]
        region: String,
        access_key_id: Option<SecretSource>,
        secret_access_key: Option<SecretSource>,
        #[serde(default = "default_true")]
        path_style_access: bool,
    },
}

/// `[alerts]`: fraud alerts published to Kafka as well as written to `fraud_alerts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    /// Topic to publish committed alerts to (at least once, keyed by user id, JSON with `alert_id`); unset: off.
    /// The topic must exist (the native broker does not auto-create; `stack/topics.conf` creates `fintech.alerts`).
    topic: Option<String>,
}

/// `[schema]`: source schema changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    /// A column type change Iceberg cannot express, for every table without an entry in `tables`:
    /// `quarantine` (default), `new_column` or `halt`.
    #[serde(default)]
    type_change: crate::changelog::TypeChangePolicy,
    /// Per source table (`users`, `wallets`, `transactions`) overrides of `type_change`.
    #[serde(default)]
    tables: BTreeMap<String, crate::changelog::TypeChangePolicy>,
}

/// `[enrich]`: joining transactions with their user and wallet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnrich {
    /// Longest a transaction change waits, in event time, for a quiet topic (a user or wallet change that may
    /// still be on its way). See `src/watermark.rs`.
    #[serde(default = "default_enrich_max_delay", with = "humantime_serde")]
    max_delay: Duration,
}

impl Default for RawEnrich {
    fn default() -> Self {
        RawEnrich {
            max_delay: default_enrich_max_delay(),
        }
    }
}

/// 5 s of event time: well above the skew between the three topics of a partition when they are read live (a
/// few hundred ms), so joins are complete; a transaction whose user or wallet is truly missing is emitted with
/// its `enrichment_status` after 5 s of further activity (or at the next checkpoint when the partition idles).
fn default_enrich_max_delay() -> Duration {
    Duration::from_secs(5)
}

/// `[pnl]`: the minutely profit-and-loss windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPnl {
    /// How long after a minute ends (in event time) its figures wait for late changes before the `final` row is
    /// written. Later changes become `late_adjustment` rows.
    #[serde(default = "default_pnl_allowed_lateness", with = "humantime_serde")]
    allowed_lateness: Duration,
}

impl Default for RawPnl {
    fn default() -> Self {
        RawPnl {
            allowed_lateness: default_pnl_allowed_lateness(),
        }
    }
}

/// 30 s: a minute's row lands about 30 s after the minute ends plus one checkpoint, which is what a P&L
/// dashboard can show; changes later than that are rare and still counted, as adjustments.
fn default_pnl_allowed_lateness() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default = "default_writer_id")]
    writer_id: String,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    checkpoint_interval: Duration,
    #[serde(default = "default_checkpoints_to_keep")]
    checkpoints_to_keep: usize,
    #[serde(default = "default_max_inflight_records")]
    max_inflight_records_per_partition: usize,
    #[serde(default = "default_source_batch_size")]
    source_batch_size: usize,
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    shutdown_timeout: Duration,
}

impl Default for RawPipeline {
    fn default() -> Self {
        RawPipeline {
            writer_id: default_writer_id(),
            data_dir: default_data_dir(),
            checkpoint_interval: default_checkpoint_interval(),
            checkpoints_to_keep: default_checkpoints_to_keep(),
            max_inflight_records_per_partition: default_max_inflight_records(),
            source_batch_size: default_source_batch_size(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

fn default_writer_id() -> String {
    "ledgerstream".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(".data")
}
/// 10 s: p99 freshness stays near 10 s while one commit per table per 10 s keeps file counts manageable
/// (8,640 commits per table per day) until compaction lands. Sub-second intervals are possible but multiply
/// small files and catalog round-trips.
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_checkpoints_to_keep() -> usize {
    3
}
/// 100k records per partition in flight (polled but not yet committed): about 60 MB of decoded rows per partition,
/// enough to ride through a slow commit at 150k events/s across 4 partitions without pausing the source.
fn default_max_inflight_records() -> usize {
    100_000
}
/// 1,024 records per hand-off from a poll thread to its partition actor amortises the mailbox cost without adding
/// noticeable latency (at 10k events/s per partition a batch fills in about 0.1 s; a partial batch is flushed when
/// the partition goes idle).
fn default_source_batch_size() -> usize {
    1024
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    #[serde(default = "default_brokers")]
    brokers: String,
    #[serde(default = "default_group_id")]
    group_id: String,
    #[serde(default = "default_topic_prefix")]
    topic_prefix: String,
    #[serde(default = "default_schema")]
    schema: String,
    #[serde(default)]
    client: BTreeMap<String, String>,
    #[serde(default)]
    sasl_password: Option<SecretSource>,
}

impl Default for RawKafka {
    fn default() -> Self {
        RawKafka {
            brokers: default_brokers(),
            group_id: default_group_id(),
            topic_prefix: default_topic_prefix(),
            schema: default_schema(),
            client: BTreeMap::new(),
            sasl_password: None,
        }
    }
}

fn default_brokers() -> String {
    "127.0.0.1:19092".into()
}
fn default_group_id() -> String {
    "ledgerstream".into()
}
fn default_topic_prefix() -> String {
    "fintech".into()
}
fn default_schema() -> String {
    "public".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIceberg {
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    catalog: RawCatalog,
    #[serde(default)]
    s3: Option<RawS3>,
}

impl Default for RawIceberg {
    fn default() -> Self {
        RawIceberg {
            namespace: default_namespace(),
            catalog: RawCatalog::default(),
            s3: None,
        }
    }
}

fn default_namespace() -> String {
    "fintech".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
enum RawCatalog {
    /// SQL catalog (JDBC-catalog layout) on sqlite or PostgreSQL.
    Sql {
        /// `sqlite://path/catalog.db` or `postgres://user@host:port/db`. Relative sqlite paths are under data_dir.
        uri: Option<String>,
        /// Warehouse root: a local directory or `s3://bucket/prefix`.
        warehouse: Option<String>,
        /// Password for a postgres uri, kept out of the uri so it never appears in logs.
        password: Option<SecretSource>,
    },
    /// Iceberg REST catalog.
    Rest { uri: String, warehouse: String },
}

impl Default for RawCatalog {
    fn default() -> Self {
        RawCatalog::Sql {
            uri: None,
            warehouse: None,
            password: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    endpoint: Option<String>,
    #[serde(default = "default_region")]
    region: String,
    access_key_id: Option<SecretSource>,
    secret_access_key: Option<SecretSource>,
    /// MinIO and most S3-compatible servers need path-style requests.
    #[serde(default = "default_true")]
    path_style_access: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObservability {
    #[serde(default = "default_metrics_addr")]
    metrics_addr: String,
    #[serde(default, with = "humantime_serde")]
    ready_max_checkpoint_age: Option<Duration>,
    #[serde(default)]
    tracing: RawTracing,
}

impl Default for RawObservability {
    fn default() -> Self {
        RawObservability {
            metrics_addr: default_metrics_addr(),
            ready_max_checkpoint_age: None,
            tracing: RawTracing::default(),
        }
    }
}

/// Loopback by default: exposing metrics beyond the host is a deployment decision (the compose file binds
/// 0.0.0.0:9464 inside its container network).
fn default_metrics_addr() -> String {
    "127.0.0.1:9464".into()
}
/// Three intervals: one slow commit is tolerated, two in a row are a stall worth taking the instance out of
/// rotation for.
fn default_ready_max_checkpoint_age(interval: Duration) -> Duration {
    interval * 3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracing {
    otlp_endpoint: Option<String>,
    #[serde(default = "default_service_name")]
    service_name: String,
    #[serde(default = "default_sampling_ratio")]
    sampling_ratio: f64,
}

impl Default for RawTracing {
    fn default() -> Self {
        RawTracing {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sampling_ratio: default_sampling_ratio(),
        }
    }
}

fn default_service_name() -> String {
    "ledgerstream".into()
}
/// Every checkpoint traced: one trace per checkpoint interval is a handful of spans, cheap at any load.
fn default_sampling_ratio() -> f64 {
    1.0
}

// ---------------------------------------------------------------------------------------------------------------
// Typed configuration.
// ---------------------------------------------------------------------------------------------------------------

/// The validated configuration of a pipeline.
#[derive(Debug, Clone)]
pub struct Config {
    pub pipeline: PipelineConfig,
    pub kafka: KafkaConfig,
    pub iceberg: IcebergConfig,
    /// Kafka topic for committed fraud alerts, if any.
    pub alerts_topic: Option<String>,
    /// The stateful stages inside the partition actors (enrichment, P&L, fraud, data quality).
    pub stages: crate::processor::StageSettings,
    pub observability: ObservabilityConfig,
    /// Durable copy of the state checkpoints off the machine, if configured.
    pub remote: Option<RemoteConfig>,
}

/// Where durable state checkpoints go (see `crate::durable`).
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteConfig {
    /// A directory; `prefix` is a sub-path inside it.
    Dir { path: PathBuf, prefix: String },
    /// An S3 bucket; objects live under `prefix`.
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: String,
        access_key_id: Option<SecretSource>,
        secret_access_key: Option<SecretSource>,
        path_style_access: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservabilityConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` (`metrics_addr = "off"`) serves nothing.
    /// Port 0 picks a free port (tests); the bound address is logged.
    pub metrics_addr: Option<SocketAddr>,
    /// `/readyz` turns 503 when the last successful checkpoint (or the start of consuming, before the first one)
    /// is older than this. At least `pipeline.checkpoint_interval`; default three intervals.
    pub ready_max_checkpoint_age: Duration,
    pub tracing: TracingConfig,
}

/// OpenTelemetry trace export as configured in the file. The standard `OTEL_*` variables are applied on top by
/// [`TracingConfig::resolve`], at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// OTLP/gRPC endpoint, e.g. `http://tempo:4317`. Unset: export is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is
    /// set.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans; `OTEL_SERVICE_NAME` overrides it.
    pub service_name: String,
    /// Fraction of checkpoint traces kept, 0..=1 (parent-based, trace-id ratio); `OTEL_TRACES_SAMPLER_ARG`
    /// overrides it.
    pub sampling_ratio: f64,
}

/// Trace export settings after the `OTEL_*` environment is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    pub endpoint: String,
    pub service_name: String,
    pub sampling_ratio: f64,
}

impl TracingConfig {
    /// Applies the standard OpenTelemetry variables to the file settings. Returns `None` when export is off: no
    /// endpoint anywhere, or `OTEL_SDK_DISABLED=true`. The config file's endpoint wins over
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (it is the more specific setting); the service name and the sampling ratio
    /// follow the OpenTelemetry convention that the environment overrides defaults.
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpSettings>, ConfigError> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let Some(endpoint) = self
            .otlp_endpoint
            .clone()
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        let sampling_ratio = match set("OTEL_TRACES_SAMPLER_ARG") {
            Some(v) => {
                let r: f64 = v.trim().parse().map_err(|_| ConfigError::Env {
                    var: "OTEL_TRACES_SAMPLER_ARG".into(),
                    reason: format!("`{v}` is not a number"),
                })?;
                check_ratio(r).map_err(|reason| ConfigError::Env {
                    var: "OTEL_TRACES_SAMPLER_ARG".into(),
                    reason,
                })?
            }
            None => self.sampling_ratio,
        };
        Ok(Some(OtlpSettings {
            endpoint,
            service_name: set("OTEL_SERVICE_NAME").unwrap_or_else(|| self.service_name.clone()),
            sampling_ratio,
        }))
    }
}

fn check_ratio(r: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("{r} is not within 0..=1"))
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Identifies this pipeline's snapshots in Iceberg. Recovery only trusts snapshots carrying it, so two pipelines
    /// writing the same tables must use different ids.
    pub writer_id: String,
    /// Local state: RocksDB per partition, state checkpoints, commit intents. Losing it means restoring from a
    /// durable checkpoint.
    pub data_dir: PathBuf,
    /// Time between checkpoints (and so between Iceberg commits). See `default_checkpoint_interval` for the trade-off.
    pub checkpoint_interval: Duration,
    /// Complete state checkpoints kept locally; older ones are pruned after each successful checkpoint.
    pub checkpoints_to_keep: NonZeroUsize,
    /// Backpressure bound: records polled but not yet committed, per partition. When reached the partition is
    /// no longer polled; when half is reached an early checkpoint is requested.
    pub max_inflight_records_per_partition: NonZeroUsize,
    /// Records per hand-off from a poll thread to its partition actor.
    pub source_batch_size: NonZeroUsize,
    /// Bound on the drain + final checkpoint at SIGTERM.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    /// Used only to publish committed offsets as a lag hint; start positions come from our checkpoints.
    pub group_id: String,
    /// Debezium `topic.prefix`; topics are `<prefix>.<schema>.<table>`.
    pub topic_prefix: String,
    /// PostgreSQL schema of the source tables.
    pub schema: String,
    /// Extra librdkafka properties (TLS, SASL, fetch sizes...) passed through verbatim.
    pub client: BTreeMap<String, String>,
    /// SASL password, resolved at start-up and set as `sasl.password`.
    pub sasl_password: Option<SecretSource>,
}

impl KafkaConfig {
    /// The Debezium topic of a source table.
    pub fn topic(&self, table: &str) -> String {
        format!("{}.{}.{}", self.topic_prefix, self.schema, table)
    }
}

#[derive(Debug, Clone)]
pub struct IcebergConfig {
    pub namespace: String,
    pub catalog: CatalogKind,
    pub s3: Option<S3Config>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CatalogKind {
    /// SQL catalog (JDBC layout, catalog name `ledgerstream`): `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    Sql {
        uri: String,
        /// A local directory or `s3://bucket/prefix`.
        warehouse: String,
        password: Option<SecretSource>,
    },
    /// Iceberg REST catalog; data files on S3.
    Rest { uri: String, warehouse: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<SecretSource>,
    pub secret_access_key: Option<SecretSource>,
    pub path_style_access: bool,
}

/// librdkafka settings the pipeline owns; overriding them would break exactly-once.
const RESERVED_KAFKA_KEYS: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
    "isolation.level",
];

impl Config {
    /// Reads, parses (with env overrides from the process environment) and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, std::env::vars())
    }

    /// Parses TOML text plus `LEDGERSTREAM__A__B=v` overrides and validates. No I/O.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut doc: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        apply_env_overrides(&mut doc, env)?;
        let raw: RawConfig = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        validate(raw)
    }
}

fn apply_env_overrides(
    doc: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("LEDGERSTREAM__"))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let path: Vec<String> = var["LEDGERSTREAM__".len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::Env {
                var,
                reason: "empty path segment".into(),
            });
        }
        let mut table = &mut *doc;
        for seg in &path[..path.len() - 1] {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        reason: format!("`{seg}` is not a section"),
                    });
                }
            };
        }
        // Keep the value's TOML type when it parses as a scalar (numbers, booleans); otherwise it is a string.
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table() && !v.is_array())
            .unwrap_or(toml::Value::String(value));
        let last = path.last().cloned().unwrap_or_default();
        table.insert(last, parsed);
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let p = raw.pipeline;
    if !is_identifier(&p.writer_id) {
        return Err(invalid(
            "pipeline.writer_id",
            "use 1-64 characters from [A-Za-z0-9_.-]",
        ));
    }
    if p.data_dir.as_os_str().is_empty() {
        return Err(invalid("pipeline.data_dir", "must not be empty"));
    }
    if p.checkpoint_interval < Duration::from_millis(100) {
        return Err(invalid(
            "pipeline.checkpoint_interval",
            "must be at least 100ms (each checkpoint is one Iceberg commit per table)",
        ));
    }
    let nz = |key: &'static str, v: usize| {
        NonZeroUsize::new(v).ok_or_else(|| invalid(key, "must be greater than zero"))
    };
    let checkpoints_to_keep = nz("pipeline.checkpoints_to_keep", p.checkpoints_to_keep)?;
    let max_inflight = nz(
        "pipeline.max_inflight_records_per_partition",
        p.max_inflight_records_per_partition,
    )?;
    let source_batch_size = nz("pipeline.source_batch_size", p.source_batch_size)?;
    if source_batch_size.get() > max_inflight.get() {
        return Err(invalid(
            "pipeline.source_batch_size",
            "must not exceed pipeline.max_inflight_records_per_partition",
        ));
    }

    let k = raw.kafka;
    if k.brokers.trim().is_empty() {
        return Err(invalid("kafka.brokers", "must not be empty"));
    }
    for (key, v) in [
        ("kafka.group_id", &k.group_id),
        ("kafka.topic_prefix", &k.topic_prefix),
        ("kafka.schema", &k.schema),
    ] {
        if !is_identifier(v) {
            return Err(invalid(key, "use 1-64 characters from [A-Za-z0-9_.-]"));
        }
    }
    if let Some(key) = k
        .client
        .keys()
        .find(|key| RESERVED_KAFKA_KEYS.contains(&key.as_str()))
    {
        return Err(invalid(
            "kafka.client",
            format!("`{key}` is set by ledgerstream and cannot be overridden"),
        ));
    }
    if k.client.contains_key("sasl.password") {
        return Err(invalid(
            "kafka.client",
            "put the SASL password in kafka.sasl_password (env or file), not inline",
        ));
    }
    if let Some(s) = &k.sasl_password {
        s.validate("kafka.sasl_password")?;
    }

    let i = raw.iceberg;
    if !is_identifier(&i.namespace) || i.namespace.contains('.') {
        return Err(invalid(
            "iceberg.namespace",
            "use 1-64 characters from [A-Za-z0-9_-]",
        ));
    }
    let catalog = match i.catalog {
        RawCatalog::Sql {
            uri,
            warehouse,
            password,
        } => {
            let uri = uri
                .unwrap_or_else(|| format!("sqlite://{}", p.data_dir.join("catalog.db").display()));
            if !(uri.starts_with("sqlite:") || uri.starts_with("postgres")) {
                return Err(invalid(
                    "iceberg.catalog.uri",
                    "the sql catalog takes sqlite://PATH or postgres://USER@HOST:PORT/DB",
                ));
            }
            if uri.starts_with("postgres") && uri_has_password(&uri) {
                return Err(invalid(
                    "iceberg.catalog.uri",
                    "put the password in iceberg.catalog.password (env or file), not in the uri",
                ));
            }
            if let Some(pw) = &password {
                pw.validate("iceberg.catalog.password")?;
            }
            let warehouse =
                warehouse.unwrap_or_else(|| p.data_dir.join("warehouse").display().to_string());
            CatalogKind::Sql {
                uri,
                warehouse,
                password,
            }
        }
        RawCatalog::Rest { uri, warehouse } => {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                return Err(invalid("iceberg.catalog.uri", "must be an http(s) URL"));
            }
            CatalogKind::Rest { uri, warehouse }
        }
    };
    let warehouse_is_s3 = match &catalog {
        CatalogKind::Sql { warehouse, .. } | CatalogKind::Rest { warehouse, .. } => {
            warehouse.starts_with("s3://") || warehouse.starts_with("s3a://")
        }
    };
    let s3 = match i.s3 {
        Some(s) => {
            if let Some(a) = &s.access_key_id {
                a.validate("iceberg.s3.access_key_id")?;
            }
            if let Some(a) = &s.secret_access_key {
                a.validate("iceberg.s3.secret_access_key")?;
            }
            if s.access_key_id.is_some() != s.secret_access_key.is_some() {
                return Err(invalid(
                    "iceberg.s3",
                    "give both access_key_id and secret_access_key, or neither",
                ));
            }
            Some(S3Config {
                endpoint: s.endpoint,
                region: s.region,
                access_key_id: s.access_key_id,
                secret_access_key: s.secret_access_key,
                path_style_access: s.path_style_access,
            })
        }
        None => None,
    };
    if warehouse_is_s3 && s3.is_none() {
        return Err(invalid(
            "iceberg.s3",
            "an s3:// warehouse needs an [iceberg.s3] section",
        ));
    }
    if matches!(catalog, CatalogKind::Rest { .. }) && s3.is_none() {
        return Err(invalid(
            "iceberg.s3",
            "the rest catalog needs an [iceberg.s3] section for its data files",
        ));
    }

    let o = raw.observability;
    let metrics_addr = match o.metrics_addr.trim() {
        "off" | "none" | "" => None,
        a => Some(a.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "observability.metrics_addr",
                format!("`{a}` is not IP:PORT or \"off\": {e}"),
            )
        })?),
    };
    let ready_max_checkpoint_age = o
        .ready_max_checkpoint_age
        .unwrap_or_else(|| default_ready_max_checkpoint_age(p.checkpoint_interval));
    if ready_max_checkpoint_age < p.checkpoint_interval {
        return Err(invalid(
            "observability.ready_max_checkpoint_age",
            "must be at least pipeline.checkpoint_interval (a healthy pipeline checkpoints once per interval)",
        ));
    }
    let t = o.tracing;
    if let Some(e) = &t.otlp_endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(invalid(
            "observability.tracing.otlp_endpoint",
            "must be an http(s) URL of an OTLP/gRPC receiver, e.g. http://tempo:4317",
        ));
    }
    if t.service_name.trim().is_empty() {
        return Err(invalid(
            "observability.tracing.service_name",
            "must not be empty",
        ));
    }
    let sampling_ratio = check_ratio(t.sampling_ratio)
        .map_err(|r| invalid("observability.tracing.sampling_ratio", r))?;
    let dq_rules = crate::dq::compile(&raw.dq).map_err(|e| invalid("dq.rules", e.to_string()))?;
    if raw
        .alerts
        .topic
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err(invalid(
            "alerts.topic",
            "must not be empty (leave it unset to turn publishing off)",
        ));
    }
    let mut type_change = BTreeMap::new();
    for t in crate::cdc::SourceTable::ALL {
        type_change.insert(t, raw.schema.type_change);
    }
    for (name, policy) in &raw.schema.tables {
        let t = crate::cdc::SourceTable::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                invalid(
                    "schema.tables",
                    format!("unknown source table `{name}` (users, wallets, transactions)"),
                )
            })?;
        type_change.insert(t, *policy);
    }
    raw.fraud
        .validate()
        .map_err(|e| invalid("fraud", e.to_string()))?;
    let remote = raw.checkpoint.remote.map(validate_remote).transpose()?;

    Ok(Config {
        pipeline: PipelineConfig {
            writer_id: p.writer_id,
            data_dir: p.data_dir,
            checkpoint_interval: p.checkpoint_interval,
            checkpoints_to_keep,
            max_inflight_records_per_partition: max_inflight,
            source_batch_size,
            shutdown_timeout: p.shutdown_timeout,
        },
        kafka: KafkaConfig {
            brokers: k.brokers,
            group_id: k.group_id,
            topic_prefix: k.topic_prefix,
            schema: k.schema,
            client: k.client,
            sasl_password: k.sasl_password,
        },
        iceberg: IcebergConfig {
            namespace: i.namespace,
            catalog,
            s3,
        },
        alerts_topic: raw.alerts.topic,
        stages: crate::processor::StageSettings {
            enrich_max_delay: raw.enrich.max_delay,
            pnl_allowed_lateness: raw.pnl.allowed_lateness,
            dq: std::sync::Arc::new(dq_rules),
            dq_post_write_policy: raw.dq.post_write_policy,
            fraud: std::sync::Arc::new(crate::fraud::FraudEngine::new(raw.fraud)),
            type_change,
        },
        observability: ObservabilityConfig {
            metrics_addr,
            ready_max_checkpoint_age,
            tracing: TracingConfig {
                otlp_endpoint: t.otlp_endpoint,
                service_name: t.service_name,
                sampling_ratio,
            },
        },
        remote,
    })
}

fn validate_remote(r: RawRemote) -> Result<RemoteConfig, ConfigError> {
    let check_prefix = |prefix: &str| {
        if prefix.starts_with('/') || prefix.split('/').any(|s| s == "..") {
            return Err(invalid(
                "checkpoint.remote.prefix",
                "must be a relative path without `..`",
            ));
        }
        Ok(())
    };
    match r {
        RawRemote::Dir { path, prefix } => {
            if path.as_os_str().is_empty() {
                return Err(invalid("checkpoint.remote.path", "must not be empty"));
            }
            check_prefix(&prefix)?;
            Ok(RemoteConfig::Dir { path, prefix })
        }
        RawRemote::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            path_style_access,
        } => {
            if bucket.trim().is_empty() || bucket.contains('/') {
                return Err(invalid(
                    "checkpoint.remote.bucket",
                    "must be a bucket name (no slashes)",
                ));
            }
            check_prefix(&prefix)?;
            if let Some(e) = &endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return Err(invalid(
                    "checkpoint.remote.endpoint",
                    "must be an http(s) URL",
                ));
            }
            if let Some(a) = &access_key_id {
                a.validate("checkpoint.remote.access_key_id")?;
            }
            if let Some(a) = &secret_access_key {
                a.validate("checkpoint.remote.secret_access_key")?;
            }
            if access_key_id.is_some() != secret_access_key.is_some() {
                return Err(invalid(
                    "checkpoint.remote",
                    "give both access_key_id and secret_access_key, or neither",
                ));
            }
            Ok(RemoteConfig::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                path_style_access,
            })
        }
    }
}

/// `postgres://user:pw@host` carries a password; `postgres://user@host` does not.
fn uri_has_password(uri: &str) -> bool {
    let Some(rest) = uri.split("://").nth(1) else {
        return false;
    };
    match rest.split_once('@') {
        Some((userinfo, _)) => userinfo.contains(':'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Vec::<(String, String)>::new())
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.pipeline.checkpoint_interval, Duration::from_secs(10));
        assert_eq!(c.pipeline.checkpoints_to_keep.get(), 3);
        assert_eq!(c.kafka.topic("transactions"), "fintech.public.transactions");
        assert_eq!(c.iceberg.namespace, "fintech");
        match c.iceberg.catalog {
            CatalogKind::Sql { uri, warehouse, .. } => {
                assert_eq!(uri, "sqlite://.data/catalog.db");
                assert_eq!(warehouse, ".data/warehouse");
            }
            other => panic!("unexpected catalog {other:?}"),
        }
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = parse("[pipeline]\ncheckpoint_intervall = \"5s\"\n").unwrap_err();
        assert!(err.to_string().contains("checkpoint_intervall"), "{err}");
    }

    #[test]
    fn env_overrides_keep_types_and_win() {
        let env = vec![
            (
                "LEDGERSTREAM__PIPELINE__CHECKPOINTS_TO_KEEP".to_string(),
                "7".to_string(),
            ),
            (
                "LEDGERSTREAM__KAFKA__BROKERS".to_string(),
                "127.0.0.1:1".to_string(),
            ),
            (
                "LEDGERSTREAM__PIPELINE__CHECKPOINT_INTERVAL".to_string(),
                "2s".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::parse("[kafka]\nbrokers = \"a:1\"\n", env).unwrap();
        assert_eq!(c.pipeline.checkpoints_to_keep.get(), 7);
        assert_eq!(c.kafka.brokers, "127.0.0.1:1");
        assert_eq!(c.pipeline.checkpoint_interval, Duration::from_secs(2));
    }

    #[test]
    fn reserved_kafka_keys_cannot_be_overridden() {
        let err = parse("[kafka.client]\n\"enable.auto.commit\" = \"true\"\n").unwrap_err();
        assert!(err.to_string().contains("enable.auto.commit"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (text, key) in [
            (
                "[pipeline]\ncheckpoint_interval = \"10ms\"",
                "pipeline.checkpoint_interval",
            ),
            (
                "[pipeline]\ncheckpoints_to_keep = 0",
                "pipeline.checkpoints_to_keep",
            ),
            ("[pipeline]\nwriter_id = \"a b\"", "pipeline.writer_id"),
            ("[iceberg]\nnamespace = \"\"", "iceberg.namespace"),
            (
                "[iceberg.catalog]\ntype = \"sql\"\nuri = \"postgres://u:pw@h/db\"",
                "iceberg.catalog.uri",
            ),
            (
                "[iceberg.catalog]\ntype = \"sql\"\nwarehouse = \"s3://b/w\"",
                "iceberg.s3",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn secrets_resolve_and_never_print() {
        let src = SecretSource {
            value: Some("hunter2".into()),
            env: None,
            file: None,
        };
        let s = src.resolve("k").unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "***");
        let both = SecretSource {
            value: Some("a".into()),
            env: Some("B".into()),
            file: None,
        };
        assert!(both.validate("k").is_err());
    }

    #[test]
    fn remote_checkpoint_config() {
        assert!(parse("").unwrap().remote.is_none());
        let c = parse("[checkpoint.remote]\nkind = \"dir\"\npath = \"/backup\"\nprefix = \"a/b\"")
            .unwrap();
        assert_eq!(
            c.remote,
            Some(RemoteConfig::Dir {
                path: "/backup".into(),
                prefix: "a/b".into()
            })
        );
        let c = parse(
            "[checkpoint.remote]\nkind = \"s3\"\nbucket = \"st\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             access_key_id = { env = \"K\" }\nsecret_access_key = { file = \"/run/s\" }",
        )
        .unwrap();
        assert!(matches!(
            c.remote,
            Some(RemoteConfig::S3 { ref bucket, path_style_access: true, ref region, .. })
                if bucket == "st" && region == "us-east-1"
        ));
        for (bad, key) in [
            ("kind = \"dir\"\npath = \"\"", "checkpoint.remote.path"),
            (
                "kind = \"dir\"\npath = \"/x\"\nprefix = \"/abs\"",
                "checkpoint.remote.prefix",
            ),
            (
                "kind = \"s3\"\nbucket = \"a/b\"",
                "checkpoint.remote.bucket",
            ),
            (
                "kind = \"s3\"\nbucket = \"b\"\nendpoint = \"ftp://x\"",
                "checkpoint.remote.endpoint",
            ),
            (
                "kind = \"s3\"\nbucket = \"b\"\naccess_key_id = { env = \"K\" }",
                "checkpoint.remote",
            ),
        ] {
            match parse(&format!("[checkpoint.remote]\n{bad}")) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("[checkpoint.remote]\nkind = \"gcs\"\nbucket = \"b\""),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn shipped_config_files_are_valid() {
        let local = parse(include_str!("../deploy/ledgerstream.local.toml")).unwrap();
        assert_eq!(local.pipeline.writer_id, "ledgerstream-local");
        assert!(matches!(local.remote, Some(RemoteConfig::Dir { .. })));
        let compose = parse(include_str!("../deploy/ledgerstream/ledgerstream.toml")).unwrap();
        assert_eq!(compose.kafka.brokers, "kafka:29092");
        assert!(matches!(compose.iceberg.catalog, CatalogKind::Rest { .. }));
        assert!(matches!(
            compose.remote,
            Some(RemoteConfig::S3 { ref bucket, path_style_access: true, .. }) if bucket == "warehouse"
        ));
        assert!(compose.iceberg.s3.is_some_and(|s| s.path_style_access));
        // The compose healthcheck and Prometheus reach the processor on 9464 from outside its container.
        assert_eq!(
            compose.observability.metrics_addr,
            Some("0.0.0.0:9464".parse().unwrap())
        );
    }

    #[test]
    fn observability_defaults_follow_the_checkpoint_interval() {
        let c = parse("[pipeline]\ncheckpoint_interval = \"2s\"").unwrap();
        let o = c.observability;
        assert_eq!(o.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(o.ready_max_checkpoint_age, Duration::from_secs(6));
        assert_eq!(o.tracing.otlp_endpoint, None);
        assert_eq!(o.tracing.service_name, "ledgerstream");
        assert_eq!(o.tracing.sampling_ratio, 1.0);
        let off = parse("[observability]\nmetrics_addr = \"off\"").unwrap();
        assert_eq!(off.observability.metrics_addr, None);
    }

    #[test]
    fn invalid_observability_values_name_their_key() {
        for (text, key) in [
            (
                "[observability]\nmetrics_addr = \"localhost\"",
                "observability.metrics_addr",
            ),
            (
                "[pipeline]\ncheckpoint_interval = \"10s\"\n[observability]\nready_max_checkpoint_age = \"5s\"",
                "observability.ready_max_checkpoint_age",
            ),
            (
                "[observability.tracing]\nsampling_ratio = 1.5",
                "observability.tracing.sampling_ratio",
            ),
            (
                "[observability.tracing]\notlp_endpoint = \"tempo:4317\"",
                "observability.tracing.otlp_endpoint",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn otel_environment_applies_on_top_of_the_file() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let file = parse("").unwrap().observability.tracing;
        assert_eq!(file.resolve(env(&[])).unwrap(), None);
        let from_env = file
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_SERVICE_NAME", "ls-eu"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]))
            .unwrap();
        assert_eq!(
            from_env,
            Some(OtlpSettings {
                endpoint: "http://collector:4317".into(),
                service_name: "ls-eu".into(),
                sampling_ratio: 0.25,
            })
        );
        let configured = parse(
            "[observability.tracing]\notlp_endpoint = \"http://tempo:4317\"\nsampling_ratio = 0.5",
        )
        .unwrap()
        .observability
        .tracing;
        let s = configured
            .resolve(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://tempo:4317");
        assert_eq!(s.sampling_ratio, 0.5);
        assert_eq!(
            configured
                .resolve(env(&[("OTEL_SDK_DISABLED", "true")]))
                .unwrap(),
            None
        );
        let err = configured
            .resolve(env(&[("OTEL_TRACES_SAMPLER_ARG", "2")]))
            .unwrap_err();
        assert!(err.to_string().contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
    }

    #[test]
    fn rest_catalog_with_s3() {
        let c = parse(
            r#"
[iceberg.catalog]
type = "rest"
uri = "http://rest:8181"
warehouse = "s3://warehouse/"
[iceberg.s3]
endpoint = "http://minio:9000"
access_key_id = { env = "AWS_ACCESS_KEY_ID" }
secret_access_key = { env = "AWS_SECRET_ACCESS_KEY" }
"#,
        )
        .unwrap();
        assert!(matches!(c.iceberg.catalog, CatalogKind::Rest { .. }));
        let s3 = c.iceberg.s3.unwrap();
        assert!(s3.path_style_access);
        assert_eq!(s3.endpoint.as_deref(), Some("http://minio:9000"));
    }
}
