//! The typed output of the decoder: what every later stage sees instead of JSON.

use super::error::{DecodeError, excerpt};
use super::tables::SourceTable;
use crate::types::Lsn;
use crate::value::{ColumnType, Value};
use serde::{Deserialize, Serialize};

/// The Debezium operation (`op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// `c`: an INSERT.
    Create,
    /// `u`: an UPDATE.
    Update,
    /// `d`: a DELETE; the row image is the `before` image.
    Delete,
    /// `r`: a row read by an initial or incremental snapshot.
    Read,
    /// `t`: a TRUNCATE of the whole table; there is no row image. (Debezium skips these unless
    /// `skipped.operations` is changed, but they are decodable.)
    Truncate,
}

impl Op {
    pub fn from_code(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            "t" => Op::Truncate,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// A field of a row image that the declaration in [`SourceTable::columns`] does not know (typically a column
/// added by `ALTER TABLE ... ADD COLUMN`). Kept so that schema evolution downstream never drops data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtraField {
    /// Column name as Debezium sent it.
    pub name: String,
    /// The column type: exact when the record carried a Connect schema; inferred from the JSON value
    /// otherwise (bool → Bool, integer → Int64, other number → Float64, string/object/array → Text).
    /// `None` only for a null without a schema, whose type cannot be known.
    pub ty: Option<ColumnType>,
    /// The value, of type `ty` (or `Null`).
    pub value: Value,
}

/// One row image, aligned to the table's declared columns.
///
/// Invariant (checked by every constructor): `values.len() == table.columns().len()`, each value fits its
/// column type, and NOT NULL columns are not `Null`. Accessors and the typed views rely on it, which is why
/// deserializing (e.g. from a state store) goes through [`Row::new`] too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RowRepr")]
pub struct Row {
    table: SourceTable,
    values: Vec<Value>,
    extra: Vec<ExtraField>,
}

/// The unchecked serialized form of a [`Row`].
#[derive(Deserialize)]
struct RowRepr {
    table: SourceTable,
    values: Vec<Value>,
    extra: Vec<ExtraField>,
}

impl TryFrom<RowRepr> for Row {
    type Error = DecodeError;
    fn try_from(r: RowRepr) -> Result<Row, DecodeError> {
        Row::new(r.table, r.values, r.extra)
    }
}

impl Row {
    /// Builds a row, enforcing the invariant. Used by the decoder and by tests/generators of other stages.
    pub fn new(
        table: SourceTable,
        values: Vec<Value>,
        extra: Vec<ExtraField>,
    ) -> Result<Row, DecodeError> {
        let columns = table.columns();
        if values.len() != columns.len() {
            return Err(DecodeError::WrongType {
                field: table.name().to_owned(),
                expected: "one value per declared column",
                found: format!("{} values for {} columns", values.len(), columns.len()),
            });
        }
        for (col, v) in columns.iter().zip(&values) {
            if v.is_null() && !col.nullable {
                return Err(DecodeError::NullInRequired {
                    field: col.name.to_owned(),
                });
            }
            if !v.fits(col.ty) {
                return Err(DecodeError::WrongType {
                    field: col.name.to_owned(),
                    expected: "a value of the declared column type",
                    found: excerpt(&format!("{v:?}")),
                });
            }
        }
        Ok(Row {
            table,
            values,
            extra,
        })
    }

    pub fn table(&self) -> SourceTable {
        self.table
    }

    /// Values in declaration order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Fields outside the declaration, in the order they appeared.
    pub fn extra(&self) -> &[ExtraField] {
        &self.extra
    }

    pub fn into_parts(self) -> (Vec<Value>, Vec<ExtraField>) {
        (self.values, self.extra)
    }

    /// A declared column's value, or an extra field's value, by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self.table.column_index(name) {
            Some(i) => self.values.get(i),
            None => self.extra.iter().find(|e| e.name == name).map(|e| &e.value),
        }
    }

    /// The primary key (`id`); always present by the row invariant.
    pub fn pk(&self) -> Option<i64> {
        self.int64_at(self.table.pk_index())
    }

    /// The owning user's id; `None` when the (nullable) column is NULL.
    pub fn user_id(&self) -> Option<i64> {
        self.int64_at(self.table.user_id_index())
    }

    fn int64_at(&self, i: usize) -> Option<i64> {
        match self.values.get(i) {
            Some(Value::Int64(v)) => Some(*v),
            _ => None,
        }
    }
}

/// One decoded Debezium change record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The table the record belongs to (cross-checked against `source.table` when present).
    pub table: SourceTable,
    pub op: Op,
    /// The Kafka record key: the user id the topics are partitioned by (`None` for the shared `null` key of
    /// rows without a user). For a delete after a user change it is the *old* user id.
    pub key: Option<i64>,
    /// `source.lsn`: position of the change in the PostgreSQL WAL; orders changes and identifies replays.
    pub lsn: Lsn,
    /// `source.txId`: the PostgreSQL transaction, to group changes committed together.
    pub tx_id: Option<i64>,
    /// Event time in microseconds since the epoch: commit time of the change (`source.ts_us`, else
    /// `source.ts_ms * 1000`). Windows and lateness use this, never wall time.
    pub source_ts_us: i64,
    /// Whether the record was produced by a snapshot (`source.snapshot` other than `false`), as opposed to
    /// streaming from the WAL.
    pub snapshot: bool,
    /// The row image: `after` for create/update/read, `before` for delete; `None` exactly for truncate.
    pub row: Option<Row>,
    /// The pre-update image of an update (present with `REPLICA IDENTITY FULL`); `None` for other ops.
    pub before: Option<Row>,
}

impl ChangeEvent {
    /// The primary key of the row image.
    pub fn pk(&self) -> Option<i64> {
        self.row.as_ref()?.pk()
    }

    /// The row image's user id (`None` when NULL or for a truncate).
    pub fn user_id(&self) -> Option<i64> {
        self.row.as_ref()?.user_id()
    }

    /// A column (declared or extra) of the row image by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.row.as_ref()?.get(name)
    }
}

/// What one Kafka record decodes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Decoded {
    Change(ChangeEvent),
    /// A null-valued record that Debezium emits after each delete (for log compaction, which these topics
    /// must not use). Carries the key so the caller can route it; it changes no state.
    Tombstone {
        key: Option<i64>,
    },
}
