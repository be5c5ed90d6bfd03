//! Rendering a query result: an aligned table for people, CSV with a header, or JSON lines (one object per row,
//! nulls explicit, decimals as exact JSON numbers, timestamps as RFC 3339 strings).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::QueryError;

/// How `ledgerstream query` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

fn output_error(e: impl std::fmt::Display) -> QueryError {
    QueryError::Output(e.to_string())
}

/// The whole result as text in `format`. Column names are printed even when there are no rows (table, CSV).
pub fn render(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> Result<String, QueryError> {
    match format {
        Format::Table => {
            let table =
                arrow::util::pretty::pretty_format_batches_with_schema(schema.clone(), batches)
                    .map_err(output_error)?;
            Ok(format!("{table}\n"))
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                // The header is written with the first batch: an empty one gives a header-only result.
                w.write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(output_error)?;
                for b in batches {
                    w.write(b).map_err(output_error)?;
                }
            }
            String::from_utf8(out).map_err(output_error)
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut out);
                for b in batches {
                    w.write(b).map_err(output_error)?;
                }
                w.finish().map_err(output_error)?;
            }
            String::from_utf8(out).map_err(output_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn sample() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("balance", DataType::Decimal128(18, 2), false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a,b"), None])),
                Arc::new(
                    Decimal128Array::from(vec![1050, -3])
                        .with_precision_and_scale(18, 2)
                        .expect("decimal"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_704_067_200_000_001, 0])
                        .with_timezone("+00:00"),
                ),
            ],
        )
        .expect("batch");
        (schema, vec![batch])
    }

    #[test]
    fn json_lines_are_exact_and_explicit() {
        let (schema, batches) = sample();
        let text = render(&schema, &batches, Format::Json).expect("json");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"id":1,"name":"a,b","balance":10.50,"at":"2024-01-01T00:00:00.000001Z"}"#,
                r#"{"id":2,"name":null,"balance":-0.03,"at":"1970-01-01T00:00:00Z"}"#,
            ]
        );
        assert_eq!(render(&schema, &[], Format::Json).expect("empty"), "");
    }

    #[test]
    fn csv_has_a_header_and_quotes() {
        let (schema, batches) = sample();
        let text = render(&schema, &batches, Format::Csv).expect("csv");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id,name,balance,at");
        assert!(
            lines[1].starts_with("1,\"a,b\",10.50,2024-01-01T00:00:00.000001"),
            "{text}"
        );
        assert!(lines[2].starts_with("2,,-0.03,"), "{text}");
        assert_eq!(lines.len(), 3);
        assert_eq!(
            render(&schema, &[], Format::Csv).expect("empty"),
            "id,name,balance,at\n"
        );
    }

    #[test]
    fn table_shows_columns_even_without_rows() {
        let (schema, batches) = sample();
        let text = render(&schema, &batches, Format::Table).expect("table");
        assert!(text.contains("| id | name | balance |"), "{text}");
        assert!(text.contains("| 1  | a,b  | 10.50   |"), "{text}");
        let empty = render(&schema, &[], Format::Table).expect("empty");
        assert!(empty.contains("| id | name | balance | at |"), "{empty}");
    }
}
