//! The bronze changelog: one output row per source change, plus the quarantine table.
//!
//! Output schemas are *derived*, never written out per table: a changelog table is the metadata columns below,
//! then the source table's declared columns ([`SourceTable::column_specs`], the single declaration of the source
//! schema), then any columns the source gained at run time (schema evolution), in order of first appearance.
//!
//! Invariants:
//! * a row is `(op, lsn, tx_id, source_ts, kafka_partition, kafka_offset, <declared columns>, <extras>)`;
//! * the image is `after` for c/u/r and `before` for d; a truncate has no image and is not a row;
//! * an extra field is never dropped: a new name adds a nullable column; a value whose type conflicts with the
//!   column already added is reported as [`ChangelogError::TypeConflict`] so the caller can quarantine the record.

use crate::cdc::{ChangeEvent, SourceTable};
use crate::sink::TableDef;
use crate::value::{ColumnSpec, ColumnType, Value};

/// Name of the changelog table of a source table.
pub fn changes_table(table: SourceTable) -> String {
    format!("{}_changes", table.name())
}

/// The quarantine table: records that could not be decoded or failed a rule, with everything needed to replay them.
pub const QUARANTINE_TABLE: &str = "quarantine";

/// Event-time column of changelog tables (commit time at the source).
pub const SOURCE_TS: &str = "source_ts";

const META_COLUMNS: usize = 6;

fn meta_columns() -> Vec<ColumnSpec> {
    vec![
        ColumnSpec::new("op", ColumnType::Text, false),
        ColumnSpec::new("lsn", ColumnType::Int64, false),
        ColumnSpec::new("tx_id", ColumnType::Int64, true),
        ColumnSpec::new(SOURCE_TS, ColumnType::TimestampTz, false),
        ColumnSpec::new("kafka_partition", ColumnType::Int32, false),
        ColumnSpec::new("kafka_offset", ColumnType::Int64, false),
    ]
}

/// Why a change could not become a changelog row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangelogError {
    #[error(
        "column `{column}` of {table} was added as {existing:?} but this record carries {found:?}; \
         Iceberg cannot change a column's type in place"
    )]
    TypeConflict {
        table: &'static str,
        column: String,
        existing: ColumnType,
        found: ColumnType,
    },
    #[error("extra column `{column}` of {table} collides with a changelog metadata column")]
    ReservedName { table: &'static str, column: String },
}

impl ChangelogError {
    pub fn kind(&self) -> &'static str {
        match self {
            ChangelogError::TypeConflict { .. } => "schema_type_conflict",
            ChangelogError::ReservedName { .. } => "schema_reserved_name",
        }
    }
}

/// What to do with a source column whose type changed in a way Iceberg cannot express (iceberg 0.10.1 can add and
/// delete columns, not change their type). Per source table, from `[schema]` in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeChangePolicy {
    /// Send the record to `quarantine` (kind `schema_type_conflict`) and go on.
    #[default]
    Quarantine,
    /// Write the value to a new column `<name>__<type>` (e.g. `device_id__int64`), added like any new column.
    NewColumn,
    /// Stop the pipeline with a clear message before anything of that record is written; no restart loop.
    Halt,
}

/// Suffix naming a column type in [`TypeChangePolicy::NewColumn`] columns.
fn type_suffix(ty: ColumnType) -> String {
    match ty {
        ColumnType::Bool => "bool".into(),
        ColumnType::Int32 => "int32".into(),
        ColumnType::Int64 => "int64".into(),
        ColumnType::Float64 => "float64".into(),
        ColumnType::Decimal { precision, scale } => format!("decimal_{precision}_{scale}"),
        ColumnType::Text => "text".into(),
        ColumnType::Binary => "binary".into(),
        ColumnType::TimestampTz => "timestamptz".into(),
        ColumnType::Date => "date".into(),
    }
}

/// The current shape of one changelog table as this partition knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangelogSchema {
    pub table: SourceTable,
    /// Columns learnt at run time, in order of first appearance.
    pub extras: Vec<ColumnSpec>,
}

impl ChangelogSchema {
    pub fn new(table: SourceTable) -> Self {
        ChangelogSchema {
            table,
            extras: Vec::new(),
        }
    }

    /// Starts from columns already present in the output table (e.g. after a restart), so that a partition
    /// agrees with the table about columns added in earlier runs.
    pub fn with_existing(table: SourceTable, existing: &[ColumnSpec]) -> Self {
        let base = Self::new(table).def();
        let extras = existing
            .iter()
            .filter(|c| base.columns.iter().all(|b| b.name != c.name))
            .map(|c| ColumnSpec::new(c.name.clone(), c.ty, true))
            .collect();
        ChangelogSchema { table, extras }
    }

    /// The output table definition for the current shape.
    pub fn def(&self) -> TableDef {
        let mut columns = meta_columns();
        columns.extend(self.table.column_specs());
        columns.extend(self.extras.iter().cloned());
        TableDef::new(changes_table(self.table), columns, SOURCE_TS)
    }

    /// Under [`TypeChangePolicy::NewColumn`], renames every extra field of `ev` whose type conflicts with the column
    /// learnt earlier to `<name>__<type>`, so that the changelog and every derived table see the same columns.
    /// Returns the new names. Other policies leave `ev` unchanged (the conflict surfaces in [`Self::row`]).
    pub fn apply_type_policy(&self, ev: &mut ChangeEvent, policy: TypeChangePolicy) -> Vec<String> {
        if policy != TypeChangePolicy::NewColumn {
            return Vec::new();
        }
        let Some(image) = ev.row.take() else {
            return Vec::new();
        };
        let table = image.table();
        let (values, mut extras) = image.into_parts();
        let mut renamed = Vec::new();
        for extra in &mut extras {
            let (Some(ty), false) = (extra.ty, extra.value.is_null()) else {
                continue;
            };
            if self
                .extras
                .iter()
                .any(|c| c.name == extra.name && c.ty != ty)
            {
                extra.name = format!("{}__{}", extra.name, type_suffix(ty));
                renamed.push(extra.name.clone());
            }
        }
        // Renaming extras cannot break the row invariant, which concerns declared columns only.
        ev.row = crate::cdc::Row::new(table, values, extras).ok();
        renamed
    }

    /// Builds the changelog row of `ev`, learning new extra columns as needed. Returns `Ok(None)` for a change that
    /// has no row image (truncate). On error nothing is learnt.
    pub fn row(
        &mut self,
        ev: &ChangeEvent,
        kafka_partition: i32,
        kafka_offset: i64,
    ) -> Result<Option<Vec<Value>>, ChangelogError> {
        let Some(image) = &ev.row else {
            return Ok(None);
        };
        // Validate every extra first so that an error leaves the schema unchanged.
        let mut new_columns: Vec<ColumnSpec> = Vec::new();
        for extra in image.extra() {
            let Some(ty) = extra.ty else { continue };
            if meta_columns().iter().any(|m| m.name == extra.name) {
                return Err(ChangelogError::ReservedName {
                    table: self.table.name(),
                    column: extra.name.clone(),
                });
            }
            match self.extras.iter().find(|c| c.name == extra.name) {
                Some(col) if col.ty != ty && !extra.value.is_null() => {
                    return Err(ChangelogError::TypeConflict {
                        table: self.table.name(),
                        column: extra.name.clone(),
                        existing: col.ty,
                        found: ty,
                    });
                }
                Some(_) => {}
                None => {
                    if !new_columns.iter().any(|c| c.name == extra.name) {
                        new_columns.push(ColumnSpec::new(extra.name.clone(), ty, true));
                    }
                }
            }
        }
        self.extras.extend(new_columns);

        let mut row = Vec::with_capacity(META_COLUMNS + image.values().len() + self.extras.len());
        row.push(Value::Text(ev.op.code().to_string()));
        row.push(Value::Int64(ev.lsn.0 as i64));
        row.push(ev.tx_id.map_or(Value::Null, Value::Int64));
        row.push(Value::TimestampTz(ev.source_ts_us));
        row.push(Value::Int32(kafka_partition));
        row.push(Value::Int64(kafka_offset));
        row.extend(image.values().iter().cloned());
        for col in &self.extras {
            let v = image
                .extra()
                .iter()
                .find(|e| e.name == col.name)
                .map(|e| e.value.clone())
                .unwrap_or(Value::Null);
            row.push(v);
        }
        Ok(Some(row))
    }
}

/// The quarantine table's definition. Partitioned by the Kafka timestamp: a record that cannot be decoded has no
/// trustworthy event time of its own.
pub fn quarantine_def() -> TableDef {
    TableDef::new(
        QUARANTINE_TABLE,
        vec![
            ColumnSpec::new("kafka_ts", ColumnType::TimestampTz, false),
            ColumnSpec::new("topic", ColumnType::Text, false),
            ColumnSpec::new("kafka_partition", ColumnType::Int32, false),
            ColumnSpec::new("kafka_offset", ColumnType::Int64, false),
            ColumnSpec::new("source_table", ColumnType::Text, true),
            ColumnSpec::new("lsn", ColumnType::Int64, true),
            ColumnSpec::new("error_kind", ColumnType::Text, false),
            ColumnSpec::new("rule", ColumnType::Text, true),
            ColumnSpec::new("error_message", ColumnType::Text, false),
            ColumnSpec::new("key", ColumnType::Binary, true),
            ColumnSpec::new("payload", ColumnType::Binary, true),
        ],
        "kafka_ts",
    )
}

/// One record that goes to quarantine instead of its table.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRecord<'a> {
    pub kafka_ts_ms: Option<i64>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub source_table: Option<&'static str>,
    pub lsn: Option<i64>,
    pub kind: &'a str,
    pub rule: Option<&'a str>,
    pub message: String,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

impl QuarantineRecord<'_> {
    pub fn into_row(self) -> Vec<Value> {
        vec![
            Value::TimestampTz(self.kafka_ts_ms.unwrap_or(0).saturating_mul(1000)),
            Value::Text(self.topic.to_string()),
            Value::Int32(self.partition),
            Value::Int64(self.offset),
            self.source_table
                .map_or(Value::Null, |t| Value::Text(t.to_string())),
            self.lsn.map_or(Value::Null, Value::Int64),
            Value::Text(self.kind.to_string()),
            self.rule
                .map_or(Value::Null, |r| Value::Text(r.to_string())),
            Value::Text(self.message),
            self.key.map_or(Value::Null, |k| Value::Binary(k.to_vec())),
            self.payload
                .map_or(Value::Null, |p| Value::Binary(p.to_vec())),
        ]
    }
}
