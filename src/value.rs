//! The typed cell model shared by the decoder (`cdc`) and the Iceberg sink (`sink`).
//!
//! Every output table is a list of [`ColumnSpec`]s; every row is a `Vec<Value>` in that order. Keeping one small
//! closed type here (instead of `serde_json::Value`) means the decoder does all parsing and validation once, and
//! the sink only maps already-typed cells to Arrow arrays.

use serde::{Deserialize, Serialize};

/// The logical type of a column. Each maps to exactly one Iceberg type and one Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    Bool,
    Int32,
    Int64,
    Float64,
    /// Fixed-point decimal. Values are stored unscaled at exactly this scale.
    Decimal {
        precision: u8,
        scale: u8,
    },
    Text,
    Binary,
    /// Microseconds since the Unix epoch, UTC.
    TimestampTz,
    /// Days since the Unix epoch.
    Date,
}

/// One cell. `Decimal` is unscaled: its scale is the column's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int32(i32),
    Int64(i64),
    Float64(f64),
    Decimal(i128),
    Text(String),
    Binary(Vec<u8>),
    TimestampTz(i64),
    Date(i32),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether this cell may be stored in a column of type `ty` (nulls fit any type; nullability is checked
    /// separately against [`ColumnSpec::nullable`]).
    pub fn fits(&self, ty: ColumnType) -> bool {
        matches!(
            (self, ty),
            (Value::Null, _)
                | (Value::Bool(_), ColumnType::Bool)
                | (Value::Int32(_), ColumnType::Int32)
                | (Value::Int64(_), ColumnType::Int64)
                | (Value::Float64(_), ColumnType::Float64)
                | (Value::Decimal(_), ColumnType::Decimal { .. })
                | (Value::Text(_), ColumnType::Text)
                | (Value::Binary(_), ColumnType::Binary)
                | (Value::TimestampTz(_), ColumnType::TimestampTz)
                | (Value::Date(_), ColumnType::Date)
        )
    }
}

/// A column of an output table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
}

impl ColumnSpec {
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> Self {
        ColumnSpec {
            name: name.into(),
            ty,
            nullable,
        }
    }
}
