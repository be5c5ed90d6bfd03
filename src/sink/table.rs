//! Output table definitions and their Iceberg and Arrow schemas.
//!
//! Contract: a [`TableDef`] maps to exactly one Iceberg schema and one partition spec, deterministically. Field ids
//! are `1..=n` in column order and the spec is `day(event_time_column)`, so two processes that create the same
//! table concurrently agree on it, and a table created by an older build is recognised by column name.
//!
//! The Arrow schema handed to the writer is always derived from an Iceberg schema (see [`arrow_schema_for`]) so it
//! carries the `PARQUET:field_id` metadata that the Iceberg Parquet writer and the partition splitter look up.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_schema::SchemaRef as ArrowSchemaRef;
use iceberg::spec::{
    NestedField, PartitionSpec, PrimitiveType, Schema, SchemaRef, Transform, Type,
    UnboundPartitionSpec,
};

use crate::value::{ColumnSpec, ColumnType};

use super::error::SinkError;

/// An output table: its name inside the configured namespace, its columns and the column it is partitioned by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Table name inside the sink's namespace (e.g. `transactions`).
    pub name: String,
    /// Columns in row order; every row handed to the sink is aligned to this list.
    pub columns: Vec<ColumnSpec>,
    /// The event-time column; the table is partitioned by `day()` of it so that queries by date prune files.
    /// Must be a non-nullable `TimestampTz` or `Date` column: a null partition source would put rows in a
    /// null partition that no date filter ever selects.
    pub event_time_column: String,
}

/// Name of the single partition field, derived from the event-time column.
pub fn partition_field_name(event_time_column: &str) -> String {
    format!("{event_time_column}_day")
}

/// The Iceberg type a column type is stored as.
pub fn iceberg_type(ty: ColumnType) -> Type {
    let p = match ty {
        ColumnType::Bool => PrimitiveType::Boolean,
        ColumnType::Int32 => PrimitiveType::Int,
        ColumnType::Int64 => PrimitiveType::Long,
        ColumnType::Float64 => PrimitiveType::Double,
        ColumnType::Decimal { precision, scale } => PrimitiveType::Decimal {
            precision: u32::from(precision),
            scale: u32::from(scale),
        },
        ColumnType::Text => PrimitiveType::String,
        ColumnType::Binary => PrimitiveType::Binary,
        ColumnType::TimestampTz => PrimitiveType::Timestamptz,
        ColumnType::Date => PrimitiveType::Date,
    };
    Type::Primitive(p)
}

/// The column type an Iceberg type was created from, for reading back existing tables. `None` for types this
/// pipeline never writes.
pub fn column_type_of(ty: &Type) -> Option<ColumnType> {
    let Type::Primitive(p) = ty else { return None };
    Some(match p {
        PrimitiveType::Boolean => ColumnType::Bool,
        PrimitiveType::Int => ColumnType::Int32,
        PrimitiveType::Long => ColumnType::Int64,
        PrimitiveType::Double => ColumnType::Float64,
        PrimitiveType::Decimal { precision, scale } => ColumnType::Decimal {
            precision: u8::try_from(*precision).ok()?,
            scale: u8::try_from(*scale).ok()?,
        },
        PrimitiveType::String => ColumnType::Text,
        PrimitiveType::Binary => ColumnType::Binary,
        PrimitiveType::Timestamptz => ColumnType::TimestampTz,
        PrimitiveType::Date => ColumnType::Date,
        _ => return None,
    })
}

/// The Arrow schema (with Iceberg field ids in the field metadata) for an Iceberg schema.
pub fn arrow_schema_for(schema: &Schema) -> Result<ArrowSchemaRef, SinkError> {
    let arrow = iceberg::arrow::schema_to_arrow_schema(schema).map_err(SinkError::from_iceberg)?;
    Ok(Arc::new(arrow))
}

impl TableDef {
    pub fn new(
        name: impl Into<String>,
        columns: Vec<ColumnSpec>,
        event_time_column: impl Into<String>,
    ) -> Self {
        TableDef {
            name: name.into(),
            columns,
            event_time_column: event_time_column.into(),
        }
    }

    /// Checks the definition without I/O: non-empty unique names, valid decimals and a usable event-time column.
    pub fn validate(&self) -> Result<(), SinkError> {
        let invalid = |reason: String| SinkError::InvalidTableDef {
            table: self.name.clone(),
            reason,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("empty table name".into()));
        }
        if self.columns.is_empty() {
            return Err(invalid("no columns".into()));
        }
        let mut seen = BTreeSet::new();
        for c in &self.columns {
            if c.name.trim().is_empty() {
                return Err(invalid("empty column name".into()));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(invalid(format!("duplicate column {}", c.name)));
            }
            if let ColumnType::Decimal { precision, scale } = c.ty
                && (precision == 0 || precision > 38 || scale > precision)
            {
                return Err(invalid(format!(
                    "column {}: decimal({precision},{scale}) is outside 1..=38 with scale <= precision",
                    c.name
                )));
            }
        }
        let partition_name = partition_field_name(&self.event_time_column);
        if seen.contains(partition_name.as_str()) {
            return Err(invalid(format!(
                "column {partition_name} collides with the partition field name"
            )));
        }
        match self.column(&self.event_time_column) {
            None => Err(invalid(format!(
                "event-time column {} is not a column",
                self.event_time_column
            ))),
            Some((_, c)) if c.nullable => Err(invalid(format!(
                "event-time column {} must not be nullable",
                c.name
            ))),
            Some((_, c)) if !matches!(c.ty, ColumnType::TimestampTz | ColumnType::Date) => {
                Err(invalid(format!(
                    "event-time column {} must be TimestampTz or Date, is {:?}",
                    c.name, c.ty
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// The column with this name and its position.
    pub fn column(&self, name: &str) -> Option<(usize, &ColumnSpec)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// The Iceberg schema of a freshly created table: field ids `1..=n` in column order.
    pub fn iceberg_schema(&self) -> Result<Schema, SinkError> {
        self.validate()?;
        let fields = self.columns.iter().zip(1..).map(|(c, id)| {
            let ty = iceberg_type(c.ty);
            let field = if c.nullable {
                NestedField::optional(id, &c.name, ty)
            } else {
                NestedField::required(id, &c.name, ty)
            };
            Arc::new(field)
        });
        Schema::builder()
            .with_schema_id(0)
            .with_fields(fields)
            .build()
            .map_err(SinkError::from_iceberg)
    }

    /// `day(event_time_column)` bound to `schema` (which must contain the event-time column).
    pub fn partition_spec(&self, schema: &SchemaRef) -> Result<PartitionSpec, SinkError> {
        PartitionSpec::builder(schema.clone())
            .with_spec_id(0)
            .add_partition_field(
                &self.event_time_column,
                partition_field_name(&self.event_time_column),
                Transform::Day,
            )
            .and_then(|b| b.build())
            .map_err(SinkError::from_iceberg)
    }

    /// The unbound spec used at table creation.
    pub fn unbound_partition_spec(&self) -> Result<UnboundPartitionSpec, SinkError> {
        let schema = Arc::new(self.iceberg_schema()?);
        Ok(self.partition_spec(&schema)?.into_unbound())
    }

    /// The Arrow schema of a freshly created table, with field-id metadata.
    pub fn arrow_schema(&self) -> Result<ArrowSchemaRef, SinkError> {
        arrow_schema_for(&self.iceberg_schema()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::testutil::tx_def;
    use arrow_schema::{DataType, TimeUnit};
    use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

    #[test]
    fn schema_ids_types_and_nullability() {
        let schema = tx_def().iceberg_schema().expect("schema");
        let ids: Vec<(i32, &str, bool)> = schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| (f.id, f.name.as_str(), f.required))
            .collect();
        assert_eq!(
            ids,
            vec![
                (1, "id", true),
                (2, "amount", true),
                (3, "note", false),
                (4, "created_at", true)
            ]
        );
        let amount = schema.field_by_name("amount").expect("amount");
        assert_eq!(
            *amount.field_type,
            Type::Primitive(PrimitiveType::Decimal {
                precision: 18,
                scale: 2
            })
        );
    }

    #[test]
    fn arrow_schema_carries_field_ids() {
        let arrow = tx_def().arrow_schema().expect("arrow");
        let ids: Vec<&str> = arrow
            .fields()
            .iter()
            .map(|f| {
                f.metadata()
                    .get(PARQUET_FIELD_ID_META_KEY)
                    .map(String::as_str)
                    .unwrap_or("")
            })
            .collect();
        assert_eq!(ids, vec!["1", "2", "3", "4"]);
        assert_eq!(arrow.field(1).data_type(), &DataType::Decimal128(18, 2));
        assert_eq!(
            arrow.field(3).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        );
        assert!(!arrow.field(0).is_nullable());
        assert!(arrow.field(2).is_nullable());
    }

    #[test]
    fn partition_spec_is_day_of_event_time() {
        let def = tx_def();
        let schema = Arc::new(def.iceberg_schema().expect("schema"));
        let spec = def.partition_spec(&schema).expect("spec");
        let fields: Vec<(i32, &str, Transform)> = spec
            .fields()
            .iter()
            .map(|f| (f.source_id, f.name.as_str(), f.transform))
            .collect();
        assert_eq!(fields, vec![(4, "created_at_day", Transform::Day)]);
    }

    #[test]
    fn invalid_defs_are_rejected() {
        let mut def = tx_def();
        def.event_time_column = "missing".into();
        assert!(matches!(
            def.validate(),
            Err(SinkError::InvalidTableDef { .. })
        ));

        let mut def = tx_def();
        def.event_time_column = "note".into();
        assert!(matches!(
            def.validate(),
            Err(SinkError::InvalidTableDef { .. })
        ));

        let mut def = tx_def();
        def.columns
            .push(ColumnSpec::new("id", ColumnType::Text, true));
        assert!(matches!(
            def.validate(),
            Err(SinkError::InvalidTableDef { .. })
        ));

        let mut def = tx_def();
        def.columns[1].ty = ColumnType::Decimal {
            precision: 39,
            scale: 2,
        };
        assert!(matches!(
            def.validate(),
            Err(SinkError::InvalidTableDef { .. })
        ));
    }
}
