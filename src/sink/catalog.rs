//! Catalog connection and table provisioning.
//!
//! Contract: [`SinkCatalog::connect`] turns a validated [`CatalogConfig`] into an Iceberg catalog whose FileIO can
//! reach the warehouse (local filesystem or S3). [`SinkCatalog::ensure_table`] is idempotent and safe to race
//! with other writers: it creates the namespace and table if missing and otherwise only *adds* the optional
//! columns the definition has and the table lacks. It never drops, renames or retypes a column, and columns the
//! table has beyond the definition are left alone (rows written by this definition leave them null).
//!
//! Exercised locally: SQL catalog on sqlite with a local warehouse and with an S3 warehouse (moto). The SQL catalog
//! on PostgreSQL differs only in the bind style. The REST catalog is built from config but no REST server runs
//! here, so that path is compiled, not tested.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use iceberg::io::{
    S3_ACCESS_KEY_ID, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_ACCESS_KEY,
};
use iceberg::spec::Type;
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, CatalogBuilder, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_rest::{
    REST_CATALOG_PROP_URI, REST_CATALOG_PROP_WAREHOUSE, RestCatalogBuilder,
};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use serde::{Deserialize, Serialize};

use super::error::SinkError;
use super::table::{TableDef, iceberg_type};

/// Catalog name recorded in the SQL catalog's rows; other engines must use the same name to see the tables.
pub const CATALOG_NAME: &str = "ledgerstream";

/// Namespace used when none is configured.
pub fn default_namespace() -> String {
    "fintech".to_string()
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_path_style() -> bool {
    true
}

/// How to reach S3 (or an S3-compatible store such as MinIO or moto).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL for S3-compatible stores (`http://127.0.0.1:9000`); unset means AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Static access key; unset means the default AWS credential chain.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Static secret key, paired with `access_key_id`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Region to sign requests for; S3-compatible stores accept any.
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`). MinIO and moto need it; iceberg-rust defaults to
    /// virtual-host style since 0.10, so it is on by default here.
    #[serde(default = "default_path_style")]
    pub path_style_access: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("path_style_access", &self.path_style_access)
            .finish()
    }
}

impl S3Config {
    /// The FileIO properties iceberg-rust's S3 storage reads.
    fn props(&self) -> HashMap<String, String> {
        let mut p = HashMap::new();
        if let Some(e) = &self.endpoint {
            p.insert(S3_ENDPOINT.to_string(), e.clone());
        }
        if let Some(k) = &self.access_key_id {
            p.insert(S3_ACCESS_KEY_ID.to_string(), k.clone());
        }
        if let Some(s) = &self.secret_access_key {
            p.insert(S3_SECRET_ACCESS_KEY.to_string(), s.clone());
        }
        p.insert(S3_REGION.to_string(), self.region.clone());
        p.insert(
            S3_PATH_STYLE_ACCESS.to_string(),
            self.path_style_access.to_string(),
        );
        p
    }
}

/// Which catalog holds the table metadata pointers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum CatalogConfig {
    /// The JDBC-layout SQL catalog: `sqlite:<file>?mode=rwc` (embedded) or `postgres://…` (shared; Trino and
    /// pyiceberg read it too).
    Sql {
        /// sqlx connection URI; its scheme selects the SQL dialect.
        uri: String,
        /// Root of new tables: `file:///abs/dir` or `s3://bucket/prefix`.
        warehouse: String,
        /// Required when the warehouse is on S3.
        #[serde(default)]
        s3: Option<S3Config>,
    },
    /// An Iceberg REST catalog (e.g. in the compose set-up) with an S3 warehouse.
    Rest {
        /// Base URL of the REST catalog.
        uri: String,
        /// Warehouse name or location, as the REST server expects it.
        warehouse: String,
        /// S3 settings for reading and writing data files.
        s3: S3Config,
    },
}

impl CatalogConfig {
    /// The embedded default: a sqlite catalog file and a local warehouse directory under `dir`.
    pub fn embedded(dir: &Path) -> Self {
        CatalogConfig::Sql {
            uri: format!("sqlite:{}?mode=rwc", dir.join("catalog.db").display()),
            warehouse: format!("file://{}", dir.join("warehouse").display()),
            s3: None,
        }
    }

    /// Checks the config without I/O.
    pub fn validate(&self) -> Result<(), SinkError> {
        let invalid = |reason: String| Err(SinkError::InvalidConfig { reason });
        match self {
            CatalogConfig::Sql { uri, warehouse, s3 } => {
                if sql_bind_style(uri).is_none() {
                    return invalid(format!(
                        "sql catalog uri must start with sqlite: or postgres://, got {:?}",
                        redact_uri(uri)
                    ));
                }
                if warehouse.starts_with("s3://") || warehouse.starts_with("s3a://") {
                    if s3.is_none() {
                        return invalid("an s3:// warehouse needs an s3 section".into());
                    }
                } else if !warehouse.starts_with("file:///") {
                    return invalid(format!(
                        "warehouse must be file:///<absolute path> or s3://<bucket>/<prefix>, got {warehouse:?}"
                    ));
                }
                Ok(())
            }
            CatalogConfig::Rest { uri, warehouse, .. } => {
                if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                    return invalid(format!("rest catalog uri must be http(s), got {uri:?}"));
                }
                if warehouse.is_empty() {
                    return invalid("rest catalog warehouse is empty".into());
                }
                Ok(())
            }
        }
    }
}

fn sql_bind_style(uri: &str) -> Option<SqlBindStyle> {
    if uri.starts_with("sqlite:") {
        Some(SqlBindStyle::QMark)
    } else if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
        Some(SqlBindStyle::DollarNumeric)
    } else {
        None
    }
}

/// Drops a password from `scheme://user:password@host` so that it never reaches logs.
fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.find('@')) {
        (Some(s), Some(at)) if at > s => match uri[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &uri[..s + 3 + c], &uri[at..]),
            None => uri.to_string(),
        },
        _ => uri.to_string(),
    }
}

/// A connected catalog plus the namespace the sink writes to.
#[derive(Clone)]
pub struct SinkCatalog {
    /// The catalog behind a trait object so that commit code is the same for SQL and REST.
    catalog: Arc<dyn Catalog>,
    /// All output tables live in this one namespace.
    namespace: NamespaceIdent,
    /// The SQL catalog's own database, for ledgerstream's multi-table compare-and-swap (`crate::commit`);
    /// `None` for the REST catalog.
    swap: Option<crate::commit::SqlSwap>,
}

impl fmt::Debug for SinkCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkCatalog")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Schema evolution may race with another writer doing the same; this many attempts settle it.
const EVOLVE_ATTEMPTS: usize = 3;

impl SinkCatalog {
    /// Connects to the configured catalog. For sqlite, the database file's directory is created if missing.
    pub async fn connect(config: &CatalogConfig, namespace: &str) -> Result<Self, SinkError> {
        config.validate()?;
        let namespace = NamespaceIdent::from_strs(namespace.split('.')).map_err(|e| {
            SinkError::InvalidConfig {
                reason: format!("namespace {namespace:?}: {e}"),
            }
        })?;
        let factory = Arc::new(OpenDalResolvingStorageFactory::new());
        let mut swap = None;
        let catalog: Arc<dyn Catalog> = match config {
            CatalogConfig::Sql { uri, warehouse, s3 } => {
                if let Some(path) = uri.strip_prefix("sqlite:") {
                    let file = path.split('?').next().unwrap_or(path);
                    if let Some(parent) = Path::new(file).parent()
                        && !parent.as_os_str().is_empty()
                    {
                        std::fs::create_dir_all(parent).map_err(|e| SinkError::InvalidConfig {
                            reason: format!("cannot create {}: {e}", parent.display()),
                        })?;
                    }
                }
                let style = sql_bind_style(uri).ok_or_else(|| SinkError::InvalidConfig {
                    reason: "unsupported sql uri".into(),
                })?;
                let props = s3.as_ref().map(S3Config::props).unwrap_or_default();
                let catalog = SqlCatalogBuilder::default()
                    .uri(uri.clone())
                    .warehouse_location(warehouse.clone())
                    .sql_bind_style(style)
                    .with_storage_factory(factory)
                    .load(CATALOG_NAME, props)
                    .await
                    .map_err(SinkError::from_iceberg)?;
                // After the catalog, which creates `iceberg_tables` on first use.
                swap = Some(crate::commit::SqlSwap::connect(uri, CATALOG_NAME).await?);
                Arc::new(catalog)
            }
            CatalogConfig::Rest { uri, warehouse, s3 } => {
                let mut props = s3.props();
                props.insert(REST_CATALOG_PROP_URI.to_string(), uri.clone());
                props.insert(REST_CATALOG_PROP_WAREHOUSE.to_string(), warehouse.clone());
                let catalog = RestCatalogBuilder::default()
                    .with_storage_factory(factory)
                    .load(CATALOG_NAME, props)
                    .await
                    .map_err(SinkError::from_iceberg)?;
                Arc::new(catalog)
            }
        };
        Ok(SinkCatalog {
            catalog,
            namespace,
            swap,
        })
    }

    pub fn catalog(&self) -> &dyn Catalog {
        self.catalog.as_ref()
    }

    /// The SQL catalog's compare-and-swap connection, if this is a SQL catalog.
    pub fn sql_swap(&self) -> Option<&crate::commit::SqlSwap> {
        self.swap.as_ref()
    }

    pub fn namespace(&self) -> &NamespaceIdent {
        &self.namespace
    }

    pub fn ident(&self, table: &str) -> TableIdent {
        TableIdent::new(self.namespace.clone(), table.to_string())
    }

    /// Loads the current version of a table.
    pub async fn load_table(&self, table: &str) -> Result<Table, SinkError> {
        self.catalog
            .load_table(&self.ident(table))
            .await
            .map_err(SinkError::from_iceberg)
    }

    async fn ensure_namespace(&self) -> Result<(), SinkError> {
        let exists = self
            .catalog
            .namespace_exists(&self.namespace)
            .await
            .map_err(SinkError::from_iceberg)?;
        if exists {
            return Ok(());
        }
        match self
            .catalog
            .create_namespace(&self.namespace, HashMap::new())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NamespaceAlreadyExists => Ok(()),
            Err(e) => Err(SinkError::from_iceberg(e)),
        }
    }

    /// Creates the namespace and table if missing, then adds missing optional columns. Returns the table as it
    /// is after any evolution.
    pub async fn ensure_table(&self, def: &TableDef) -> Result<Table, SinkError> {
        def.validate()?;
        self.ensure_namespace().await?;
        let ident = self.ident(&def.name);
        let exists = self
            .catalog
            .table_exists(&ident)
            .await
            .map_err(SinkError::from_iceberg)?;
        let table = if exists {
            self.load_table(&def.name).await?
        } else {
            let creation = TableCreation::builder()
                .name(def.name.clone())
                .schema(def.iceberg_schema()?)
                .partition_spec(def.unbound_partition_spec()?)
                .build();
            match self.catalog.create_table(&self.namespace, creation).await {
                Ok(t) => t,
                Err(e) if e.kind() == ErrorKind::TableAlreadyExists => {
                    self.load_table(&def.name).await?
                }
                Err(e) => return Err(SinkError::from_iceberg(e)),
            }
        };
        self.evolve(def, table).await
    }

    async fn evolve(&self, def: &TableDef, table: Table) -> Result<Table, SinkError> {
        match &self.swap {
            Some(swap) => self.evolve_by_swap(swap, def, table).await,
            None => self.evolve_by_transaction(def, table).await,
        }
    }

    /// SQL catalog: the added columns are one compare-and-swap of a new current schema (`crate::commit`), never an
    /// iceberg-rust transaction that could rebase. A lost race re-reads and adds only what is still missing.
    async fn evolve_by_swap(
        &self,
        swap: &crate::commit::SqlSwap,
        def: &TableDef,
        mut table: Table,
    ) -> Result<Table, SinkError> {
        for _ in 0..EVOLVE_ATTEMPTS * 4 {
            let missing = missing_columns(def, &table)?;
            if missing.is_empty() {
                return Ok(table);
            }
            // Added as optional even if the definition says required: existing rows have no value. The batch
            // builder still rejects nulls for columns the definition marks required.
            let staged = crate::commit::produce::stage_columns(&table, &missing).await?;
            match swap.swap(std::slice::from_ref(&staged)).await {
                crate::commit::SwapOutcome::Committed => {
                    for (name, _) in &missing {
                        crate::metrics::schema_change(&def.name, name);
                    }
                }
                outcome => {
                    tracing::info!(table = %def.name, ?outcome, "schema change not swapped in; re-reading the table");
                }
            }
            table = self.load_table(&def.name).await?;
        }
        if missing_columns(def, &table)?.is_empty() {
            return Ok(table);
        }
        Err(SinkError::Catalog {
            reason: format!(
                "could not add columns to {} after repeated conflicts",
                def.name
            ),
            retryable: true,
        })
    }

    /// REST catalog: iceberg-rust's schema update transaction.
    async fn evolve_by_transaction(
        &self,
        def: &TableDef,
        mut table: Table,
    ) -> Result<Table, SinkError> {
        for attempt in 1..=EVOLVE_ATTEMPTS {
            let missing = missing_columns(def, &table)?;
            if missing.is_empty() {
                return Ok(table);
            }
            let mut action = Transaction::new(&table).update_schema();
            for (name, ty) in &missing {
                // Added as optional even if the definition says required: existing rows have no value and
                // iceberg-rust has no required-with-default path we want to depend on. The batch builder still
                // rejects nulls for columns the definition marks required.
                action = action.add_column(AddColumn::optional(name, ty.clone()));
            }
            let tx = action
                .apply(Transaction::new(&table))
                .map_err(SinkError::from_iceberg)?;
            match tx.commit(self.catalog.as_ref()).await {
                Ok(t) => {
                    for (name, _) in &missing {
                        crate::metrics::schema_change(&def.name, name);
                    }
                    return Ok(t);
                }
                Err(e) => {
                    // Another writer may have added the same columns first; re-check against a fresh copy.
                    table = self.load_table(&def.name).await?;
                    if attempt == EVOLVE_ATTEMPTS {
                        if missing_columns(def, &table)?.is_empty() {
                            return Ok(table);
                        }
                        return Err(SinkError::from_iceberg(e));
                    }
                }
            }
        }
        Ok(table)
    }
}

/// Columns of `def` that the table lacks; errors if a shared column has a different type.
fn missing_columns(def: &TableDef, table: &Table) -> Result<Vec<(String, Type)>, SinkError> {
    let schema = table.metadata().current_schema();
    let mut missing = Vec::new();
    for c in &def.columns {
        let want = iceberg_type(c.ty);
        match schema.field_by_name(&c.name) {
            Some(f) if *f.field_type == want => {}
            Some(f) => {
                return Err(SinkError::SchemaConflict {
                    table: def.name.clone(),
                    column: c.name.clone(),
                    reason: format!("table has {}, definition wants {}", f.field_type, want),
                });
            }
            None => missing.push((c.name.clone(), want)),
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        let ok = CatalogConfig::embedded(Path::new("/tmp/x"));
        assert!(ok.validate().is_ok());
        let bad_uri = CatalogConfig::Sql {
            uri: "mysql://h/db".into(),
            warehouse: "file:///tmp/w".into(),
            s3: None,
        };
        assert!(matches!(
            bad_uri.validate(),
            Err(SinkError::InvalidConfig { .. })
        ));
        let s3_without_section = CatalogConfig::Sql {
            uri: "postgres://u:p@127.0.0.1:45432/iceberg".into(),
            warehouse: "s3://bucket/wh".into(),
            s3: None,
        };
        assert!(matches!(
            s3_without_section.validate(),
            Err(SinkError::InvalidConfig { .. })
        ));
        assert_eq!(
            redact_uri("postgres://u:secret@127.0.0.1:45432/iceberg"),
            "postgres://u:***@127.0.0.1:45432/iceberg"
        );
    }

    #[test]
    fn config_parses_with_defaults() {
        let json = r#"{"kind":"rest","uri":"http://127.0.0.1:48181","warehouse":"s3://lake/wh",
            "s3":{"endpoint":"http://127.0.0.1:49000","access_key_id":"a","secret_access_key":"b"}}"#;
        let cfg: CatalogConfig = serde_json::from_str(json).expect("parse");
        let CatalogConfig::Rest { s3, .. } = &cfg else {
            panic!("expected rest config, got {cfg:?}");
        };
        assert!(s3.path_style_access);
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(
            s3.props().get(S3_PATH_STYLE_ACCESS).map(String::as_str),
            Some("true")
        );
        assert!(!format!("{s3:?}").contains("\"b\""));
        let unknown = r#"{"kind":"sql","uri":"sqlite:x","warehouse":"file:///w","extra":1}"#;
        assert!(serde_json::from_str::<CatalogConfig>(unknown).is_err());
    }
}
