//! Rows of typed cells → one Arrow `RecordBatch` in a table's Arrow schema.
//!
//! Contract: every row has exactly one cell per [`TableDef`] column; a cell must [`Value::fits`] its column type,
//! nulls are allowed only where both the definition and the table allow them, and decimals must fit their
//! precision. Any violation is a [`BatchError`] naming the row and column; nothing here panics on bad input.
//!
//! The target schema is the *table's* current Arrow schema, which may have more columns than the definition
//! (another writer evolved it): those columns must be optional and are filled with nulls. Columns are matched by
//! name, so the column order of the table does not matter.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder,
    Int64Builder, LargeBinaryBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow_schema::{ArrowError, DataType, Field, SchemaRef as ArrowSchemaRef};

use crate::value::{ColumnSpec, ColumnType, Value};

use super::table::{TableDef, iceberg_type};

/// Why a set of rows cannot become a batch.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BatchError {
    #[error("row {row}: {got} cells, expected {expected}")]
    RowWidth {
        row: usize,
        expected: usize,
        got: usize,
    },
    #[error("row {row}, column {column}: {got} does not fit {expected:?}")]
    TypeMismatch {
        row: usize,
        column: String,
        expected: ColumnType,
        got: &'static str,
    },
    #[error("row {row}, column {column}: null in a required column")]
    NullInRequired { row: usize, column: String },
    #[error("row {row}, column {column}: unscaled decimal {value} exceeds precision {precision}")]
    DecimalOutOfRange {
        row: usize,
        column: String,
        value: i128,
        precision: u8,
    },
    #[error("column {column}: table type {table_type} differs from the definition's {def_type}")]
    ColumnTypeConflict {
        column: String,
        table_type: String,
        def_type: String,
    },
    #[error("column {column}: required in the table but absent from the definition")]
    RequiredColumnNotInDef { column: String },
    #[error("arrow: {0}")]
    Arrow(String),
}

impl From<ArrowError> for BatchError {
    fn from(e: ArrowError) -> Self {
        BatchError::Arrow(e.to_string())
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Bool",
        Value::Int32(_) => "Int32",
        Value::Int64(_) => "Int64",
        Value::Float64(_) => "Float64",
        Value::Decimal(_) => "Decimal",
        Value::Text(_) => "Text",
        Value::Binary(_) => "Binary",
        Value::TimestampTz(_) => "TimestampTz",
        Value::Date(_) => "Date",
    }
}

/// The Arrow type a column type is written as (identical to what iceberg-rust derives from the Iceberg type).
pub fn arrow_type(ty: ColumnType) -> Result<DataType, BatchError> {
    iceberg::arrow::type_to_arrow_type(&iceberg_type(ty))
        .map_err(|e| BatchError::Arrow(e.to_string()))
}

/// Builds one batch in `schema` (a table's Arrow schema with field ids) from rows aligned to `def.columns`.
pub fn rows_to_batch(
    def: &TableDef,
    schema: &ArrowSchemaRef,
    rows: &[Vec<Value>],
) -> Result<RecordBatch, BatchError> {
    let width = def.columns.len();
    if let Some((row, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != width) {
        return Err(BatchError::RowWidth {
            row,
            expected: width,
            got: r.len(),
        });
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let array = match def.column(field.name()) {
            Some((idx, spec)) => {
                let want = arrow_type(spec.ty)?;
                if &want != field.data_type() {
                    return Err(BatchError::ColumnTypeConflict {
                        column: spec.name.clone(),
                        table_type: field.data_type().to_string(),
                        def_type: want.to_string(),
                    });
                }
                build_column(spec, field, idx, rows)?
            }
            None if field.is_nullable() => new_null_array(field.data_type(), rows.len()),
            None => {
                return Err(BatchError::RequiredColumnNotInDef {
                    column: field.name().clone(),
                });
            }
        };
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &options,
    )?)
}

/// Appends column `idx` of every row to a builder of the column's type.
macro_rules! fill {
    ($builder:expr, $spec:expr, $field:expr, $idx:expr, $rows:expr, $pat:pat => $val:expr) => {{
        let mut b = $builder;
        for (row, cells) in $rows.iter().enumerate() {
            match &cells[$idx] {
                Value::Null => {
                    if !$spec.nullable || !$field.is_nullable() {
                        return Err(BatchError::NullInRequired {
                            row,
                            column: $spec.name.clone(),
                        });
                    }
                    b.append_null();
                }
                $pat => b.append_value($val),
                other => {
                    return Err(BatchError::TypeMismatch {
                        row,
                        column: $spec.name.clone(),
                        expected: $spec.ty,
                        got: value_kind(other),
                    });
                }
            }
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

fn build_column(
    spec: &ColumnSpec,
    field: &Field,
    idx: usize,
    rows: &[Vec<Value>],
) -> Result<ArrayRef, BatchError> {
    let n = rows.len();
    let array = match spec.ty {
        ColumnType::Bool => {
            fill!(BooleanBuilder::with_capacity(n), spec, field, idx, rows, Value::Bool(v) => *v)
        }
        ColumnType::Int32 => {
            fill!(Int32Builder::with_capacity(n), spec, field, idx, rows, Value::Int32(v) => *v)
        }
        ColumnType::Int64 => {
            fill!(Int64Builder::with_capacity(n), spec, field, idx, rows, Value::Int64(v) => *v)
        }
        ColumnType::Float64 => {
            fill!(Float64Builder::with_capacity(n), spec, field, idx, rows, Value::Float64(v) => *v)
        }
        ColumnType::Decimal { precision, scale } => {
            check_decimals(spec, precision, idx, rows)?;
            let builder = Decimal128Builder::with_capacity(n)
                .with_precision_and_scale(precision, scale as i8)?;
            fill!(builder, spec, field, idx, rows, Value::Decimal(v) => *v)
        }
        ColumnType::Text => {
            fill!(StringBuilder::with_capacity(n, n * 16), spec, field, idx, rows, Value::Text(v) => v)
        }
        ColumnType::Binary => match field.data_type() {
            DataType::Binary => {
                fill!(BinaryBuilder::with_capacity(n, n * 16), spec, field, idx, rows, Value::Binary(v) => v)
            }
            _ => {
                fill!(LargeBinaryBuilder::with_capacity(n, n * 16), spec, field, idx, rows, Value::Binary(v) => v)
            }
        },
        ColumnType::TimestampTz => {
            let tz = match field.data_type() {
                DataType::Timestamp(_, tz) => tz.clone(),
                _ => None,
            };
            let builder = TimestampMicrosecondBuilder::with_capacity(n).with_timezone_opt(tz);
            fill!(builder, spec, field, idx, rows, Value::TimestampTz(v) => *v)
        }
        ColumnType::Date => {
            fill!(Date32Builder::with_capacity(n), spec, field, idx, rows, Value::Date(v) => *v)
        }
    };
    Ok(array)
}

fn check_decimals(
    spec: &ColumnSpec,
    precision: u8,
    idx: usize,
    rows: &[Vec<Value>],
) -> Result<(), BatchError> {
    // 10^38 - 1 is the largest 38-digit value and fits in i128; validated TableDefs never exceed 38.
    let max = 10i128
        .checked_pow(u32::from(precision))
        .map_or(i128::MAX, |p| p - 1);
    for (row, cells) in rows.iter().enumerate() {
        if let Value::Decimal(v) = &cells[idx]
            && (*v > max || *v < -max)
        {
            return Err(BatchError::DecimalOutOfRange {
                row,
                column: spec.name.clone(),
                value: *v,
                precision,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::testutil::tx_def;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};

    fn row(id: i64, cents: i128, note: Option<&str>, ts: i64) -> Vec<Value> {
        vec![
            Value::Int64(id),
            Value::Decimal(cents),
            note.map_or(Value::Null, |s| Value::Text(s.into())),
            Value::TimestampTz(ts),
        ]
    }

    #[test]
    fn builds_typed_columns() {
        let def = tx_def();
        let schema = def.arrow_schema().expect("schema");
        let rows = vec![row(1, 1050, Some("a"), 10), row(2, -7, None, 20)];
        let batch = rows_to_batch(&def, &schema, &rows).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        let ids: Vec<i64> = batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, vec![1, 2]);
        let amounts = batch.column(1).as_primitive::<Decimal128Type>();
        assert_eq!(amounts.values().to_vec(), vec![1050, -7]);
        assert_eq!(amounts.value_as_string(0), "10.50");
        let notes = batch.column(2).as_string::<i32>();
        assert_eq!(notes.value(0), "a");
        assert!(notes.is_null(1));
        let ts = batch.column(3).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.values().to_vec(), vec![10, 20]);
        assert_eq!(batch.schema(), schema);
    }

    #[test]
    fn bad_cells_are_typed_errors() {
        let def = tx_def();
        let schema = def.arrow_schema().expect("schema");

        let mut bad = row(1, 1, None, 1);
        bad[0] = Value::Text("x".into());
        assert_eq!(
            rows_to_batch(&def, &schema, &[row(0, 0, None, 0), bad]),
            Err(BatchError::TypeMismatch {
                row: 1,
                column: "id".into(),
                expected: ColumnType::Int64,
                got: "Text"
            })
        );

        let mut null_req = row(1, 1, None, 1);
        null_req[3] = Value::Null;
        assert_eq!(
            rows_to_batch(&def, &schema, &[null_req]),
            Err(BatchError::NullInRequired {
                row: 0,
                column: "created_at".into()
            })
        );

        assert_eq!(
            rows_to_batch(&def, &schema, &[vec![Value::Int64(1)]]),
            Err(BatchError::RowWidth {
                row: 0,
                expected: 4,
                got: 1
            })
        );

        let too_big = 10i128.pow(18);
        assert_eq!(
            rows_to_batch(&def, &schema, &[row(1, too_big, None, 1)]),
            Err(BatchError::DecimalOutOfRange {
                row: 0,
                column: "amount".into(),
                value: too_big,
                precision: 18
            })
        );
        assert!(rows_to_batch(&def, &schema, &[row(1, too_big - 1, None, 1)]).is_ok());
    }

    #[test]
    fn extra_optional_table_columns_are_null_filled() {
        let mut wider = tx_def();
        wider
            .columns
            .push(ColumnSpec::new("channel", ColumnType::Text, true));
        let table_schema = wider.arrow_schema().expect("schema");
        let batch = rows_to_batch(&tx_def(), &table_schema, &[row(1, 1, None, 1)]).expect("batch");
        assert_eq!(batch.num_columns(), 5);
        assert_eq!(batch.column(4).null_count(), 1);

        let mut required_extra = tx_def();
        required_extra
            .columns
            .push(ColumnSpec::new("must", ColumnType::Int32, false));
        let schema = required_extra.arrow_schema().expect("schema");
        assert_eq!(
            rows_to_batch(&tx_def(), &schema, &[row(1, 1, None, 1)]),
            Err(BatchError::RequiredColumnNotInDef {
                column: "must".into()
            })
        );
    }

    #[test]
    fn type_conflict_with_table_is_reported() {
        let mut other = tx_def();
        other.columns[0].ty = ColumnType::Int32;
        let schema = other.arrow_schema().expect("schema");
        assert!(matches!(
            rows_to_batch(&tx_def(), &schema, &[row(1, 1, None, 1)]),
            Err(BatchError::ColumnTypeConflict { .. })
        ));
    }
}
