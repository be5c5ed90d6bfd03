//! Debezium record → [`Decoded`]. See the module docs of [`crate::cdc`] for the contract.

use super::error::{DecodeError, excerpt, path};
use super::event::{ChangeEvent, Decoded, ExtraField, Op, Row};
use super::json::{self, Names, RawObject, Scalar, lex};
use super::scalar::{self, EpochUnit};
use super::tables::SourceTable;
use crate::types::Lsn;
use crate::value::{ColumnType, Value};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Largest record value accepted. Debezium rows of these tables are ~0.6 KB (3.5 KB with schemas); anything
/// near this is not a row of ours and is refused before parsing.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Largest record key accepted (keys are bare user ids).
pub const MAX_KEY_BYTES: usize = 4 << 10;

/// Decodes one Kafka record of `table`'s topic.
///
/// A null `payload` (or a JSON `null`, or a schema-wrapped `null` payload) is a [`Decoded::Tombstone`].
/// Everything else must be a Debezium change envelope, bare or wrapped as `{"schema":…, "payload":…}`.
pub fn decode(
    table: SourceTable,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<Decoded, DecodeError> {
    let key = decode_key(key)?;
    let Some(payload) = payload else {
        return Ok(Decoded::Tombstone { key });
    };
    let text = utf8(payload, MAX_RECORD_BYTES).map_err(|e| match e {
        Utf8Error::TooLarge { len, max } => DecodeError::TooLarge { len, max },
        Utf8Error::NotUtf8(detail) => DecodeError::InvalidJson { detail },
    })?;

    let top = json::parse_object(text, Names::Fixed(TOP_FIELDS), false, "record")?;
    if top.is_null {
        return Ok(Decoded::Tombstone { key });
    }
    check_duplicate(&top, "")?;
    let present = |i: usize| top.values.get(i).copied().flatten().is_some();
    let wrapped = present(T_SCHEMA) || present(T_PAYLOAD);
    if !wrapped {
        return decode_envelope(table, key, &top, None).map(Decoded::Change);
    }
    let Some(payload) = top.get(T_PAYLOAD) else {
        return Ok(Decoded::Tombstone { key });
    };
    let envelope = json::parse_object(payload.get(), Names::Fixed(TOP_FIELDS), false, "payload")?;
    check_duplicate(&envelope, "payload")?;
    let hints = top.get(T_SCHEMA).map(parse_hints).transpose()?.flatten();
    decode_envelope(table, key, &envelope, hints.as_ref()).map(Decoded::Change)
}

/// Decodes a record key: a bare integer (`17`), `null`, or a schema-wrapped one
/// (`{"schema":…,"payload":17}`). `None` for an absent key and for the shared `null` key of user-less rows.
pub fn decode_key(key: Option<&[u8]>) -> Result<Option<i64>, DecodeError> {
    let Some(bytes) = key else { return Ok(None) };
    let text = utf8(bytes, MAX_KEY_BYTES).map_err(|e| DecodeError::BadKey {
        detail: match e {
            Utf8Error::TooLarge { len, max } => format!("{len} bytes, over the {max}-byte limit"),
            Utf8Error::NotUtf8(d) => d,
        },
    })?;
    let trimmed = text.trim();
    // The hot path: the ExtractField SMT leaves a bare JSON integer.
    if let Ok(id) = trimmed.parse::<i64>() {
        return Ok(Some(id));
    }
    if trimmed == "null" {
        return Ok(None);
    }
    let bad = |detail: String| DecodeError::BadKey { detail };
    let obj = json::parse_object(trimmed, Names::Fixed(&["schema", "payload"]), false, "key")
        .map_err(|e| {
            bad(format!(
                "expected an integer, null or {{\"schema\",\"payload\"}}: {e}"
            ))
        })?;
    if obj.values.get(1).copied().flatten().is_none() {
        return Err(bad(format!(
            "expected an integer, null or {{\"schema\",\"payload\"}}, found {}",
            excerpt(trimmed)
        )));
    }
    match obj.get(1).map(lex).transpose()? {
        None => Ok(None),
        Some(Scalar::Number(n)) => n
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("payload {} is not a 64-bit integer", excerpt(n)))),
        Some(other) => Err(bad(format!(
            "payload must be an integer, found {}",
            other.describe()
        ))),
    }
}

enum Utf8Error {
    TooLarge { len: usize, max: usize },
    NotUtf8(String),
}

fn utf8(bytes: &[u8], max: usize) -> Result<&str, Utf8Error> {
    if bytes.len() > max {
        return Err(Utf8Error::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    std::str::from_utf8(bytes)
        .map_err(|e| Utf8Error::NotUtf8(format!("not UTF-8 at byte {}", e.valid_up_to())))
}

// Envelope fields. A wrapped record's top level and its payload share one list: `schema`/`payload` are only
// looked at on the top level, the rest only on the envelope.
const TOP_FIELDS: &[&str] = &["schema", "payload", "before", "after", "source", "op"];
const T_SCHEMA: usize = 0;
const T_PAYLOAD: usize = 1;
const T_BEFORE: usize = 2;
const T_AFTER: usize = 3;
const T_SOURCE: usize = 4;
const T_OP: usize = 5;

const SOURCE_FIELDS: &[&str] = &["lsn", "txId", "ts_ms", "ts_us", "snapshot", "table"];
const S_LSN: usize = 0;
const S_TX_ID: usize = 1;
const S_TS_MS: usize = 2;
const S_TS_US: usize = 3;
const S_SNAPSHOT: usize = 4;
const S_TABLE: usize = 5;

fn check_duplicate(obj: &RawObject<'_>, parent: &str) -> Result<(), DecodeError> {
    if let Some(dup) = &obj.duplicate {
        return Err(DecodeError::DuplicateField {
            field: path(parent, dup),
        });
    }
    if obj.too_many_extras {
        return Err(DecodeError::TooManyFields {
            field: parent.to_owned(),
            max: json::MAX_EXTRA_FIELDS,
        });
    }
    Ok(())
}

fn missing(field: &str) -> DecodeError {
    DecodeError::MissingField {
        field: field.to_owned(),
    }
}

fn decode_envelope(
    table: SourceTable,
    key: Option<i64>,
    env: &RawObject<'_>,
    hints: Option<&Hints<'_>>,
) -> Result<ChangeEvent, DecodeError> {
    let op_code = json::string(env.get(T_OP).ok_or_else(|| missing("op"))?, "op")?;
    let op = Op::from_code(&op_code).ok_or_else(|| DecodeError::UnknownOp {
        op: excerpt(&op_code),
    })?;

    let source_raw = env.get(T_SOURCE).ok_or_else(|| missing("source"))?;
    let source = json::parse_object(
        source_raw.get(),
        Names::Fixed(SOURCE_FIELDS),
        false,
        "source",
    )?;
    check_duplicate(&source, "source")?;
    if let Some(raw) = source.get(S_TABLE) {
        let found = json::string(raw, "source.table")?;
        if found != table.name() {
            return Err(DecodeError::TableMismatch {
                expected: table.name(),
                found: excerpt(&found),
            });
        }
    }
    let lsn = Lsn(json::integer(
        source.get(S_LSN).ok_or_else(|| missing("source.lsn"))?,
        "source.lsn",
    )?);
    let tx_id = source
        .get(S_TX_ID)
        .map(|raw| json::integer(raw, "source.txId"))
        .transpose()?;
    let source_ts_us = match source.get(S_TS_US) {
        Some(raw) => json::integer(raw, "source.ts_us")?,
        None => {
            let ms: i64 = json::integer(
                source.get(S_TS_MS).ok_or_else(|| missing("source.ts_ms"))?,
                "source.ts_ms",
            )?;
            scalar::epoch_to_micros(ms, EpochUnit::Millis).map_err(|_| DecodeError::WrongType {
                field: "source.ts_ms".to_owned(),
                expected: "milliseconds within the i64 microsecond range",
                found: format!("number {ms}"),
            })?
        }
    };
    let snapshot = match source.get(S_SNAPSHOT).map(lex).transpose()? {
        None => false,
        Some(Scalar::Bool(b)) => b,
        // Debezium 2+/3 uses "true" / "first" / "last" / "incremental" / ... / "false".
        Some(Scalar::Str(s)) => s != "false",
        Some(other) => {
            return Err(DecodeError::WrongType {
                field: "source.snapshot".to_owned(),
                expected: "a string or boolean",
                found: other.describe(),
            });
        }
    };

    let image = |i: usize, name: &'static str| -> Result<Row, DecodeError> {
        let raw = env.get(i).ok_or_else(|| missing(name))?;
        decode_row(table, raw, hints, name)
    };
    let (row, before) = match op {
        Op::Create | Op::Read => (Some(image(T_AFTER, "after")?), None),
        Op::Update => {
            let before = match env.get(T_BEFORE) {
                Some(raw) => Some(decode_row(table, raw, hints, "before")?),
                None => None,
            };
            (Some(image(T_AFTER, "after")?), before)
        }
        Op::Delete => (Some(image(T_BEFORE, "before")?), None),
        Op::Truncate => (None, None),
    };

    Ok(ChangeEvent {
        table,
        op,
        key,
        lsn,
        tx_id,
        source_ts_us,
        snapshot,
        row,
        before,
    })
}

fn decode_row(
    table: SourceTable,
    raw: &RawValue,
    hints: Option<&Hints<'_>>,
    image: &str,
) -> Result<Row, DecodeError> {
    let columns = table.columns();
    let obj = json::parse_object(raw.get(), Names::Columns(columns), true, image)?;
    check_duplicate(&obj, image)?;
    let mut values = Vec::with_capacity(columns.len());
    for (col, cell) in columns.iter().zip(&obj.values) {
        let value = match cell {
            // An absent nullable column is NULL: a dropped column must not stop the pipeline.
            None if col.nullable => Value::Null,
            None => return Err(missing(&path(image, col.name))),
            Some(raw) => {
                let hint = hints.and_then(|h| h.get(col.name));
                decode_cell(raw, col.ty, hint, image, col.name)?
            }
        };
        if value.is_null() && !col.nullable {
            return Err(DecodeError::NullInRequired {
                field: path(image, col.name),
            });
        }
        values.push(value);
    }
    let extra = obj
        .extras
        .iter()
        .map(|(name, raw)| decode_extra(name, raw, hints.and_then(|h| h.get(name)), image))
        .collect::<Result<Vec<_>, _>>()?;
    Row::new(table, values, extra)
}

/// What a Connect schema says about one field: the physical type refined by its logical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    Int32,
    Int64,
    Float64,
    Bool,
    Text,
    Bytes,
    /// struct / array / map: kept as raw JSON text.
    Composite,
    /// int64 epoch time (`io.debezium.time.{Micro,Nano,}Timestamp`, Connect `Timestamp`). Debezium uses these
    /// for `timestamp` without time zone; they are stored as UTC microseconds.
    Epoch(EpochUnit),
    /// `io.debezium.time.ZonedTimestamp`: ISO-8601 string, what `timestamptz` becomes.
    Zoned,
    /// int32 days (`io.debezium.time.Date`, Connect `Date`).
    Date,
    /// Connect `Decimal`: base64 two's-complement bytes (decimal.handling.mode=precise).
    Decimal {
        scale: u8,
        precision: Option<u8>,
    },
}

impl Hint {
    /// The column type an undeclared field with this schema gets.
    fn column_type(self) -> ColumnType {
        match self {
            Hint::Int32 => ColumnType::Int32,
            Hint::Int64 => ColumnType::Int64,
            Hint::Float64 => ColumnType::Float64,
            Hint::Bool => ColumnType::Bool,
            Hint::Text | Hint::Composite => ColumnType::Text,
            Hint::Bytes => ColumnType::Binary,
            Hint::Epoch(_) | Hint::Zoned => ColumnType::TimestampTz,
            Hint::Date => ColumnType::Date,
            Hint::Decimal { scale, precision } => ColumnType::Decimal {
                precision: precision.unwrap_or(38).min(38),
                scale,
            },
        }
    }
}

/// Field hints of the row struct (`after`/`before`) of a Connect envelope schema.
#[derive(Debug)]
struct Hints<'a> {
    fields: Vec<(Cow<'a, str>, Hint)>,
}

impl Hints<'_> {
    fn get(&self, name: &str) -> Option<Hint> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, h)| *h)
    }
}

#[derive(Deserialize)]
struct ConnectSchema<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    field: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    fields: Vec<ConnectSchema<'a>>,
    #[serde(default)]
    parameters: Option<ConnectParams>,
}

#[derive(Deserialize)]
struct ConnectParams {
    #[serde(default)]
    scale: Option<String>,
    #[serde(default, rename = "connect.decimal.precision")]
    precision: Option<String>,
}

/// Reads the envelope schema; `None` when it has no row struct to learn from (then values are decoded as
/// without a schema).
fn parse_hints(raw: &RawValue) -> Result<Option<Hints<'_>>, DecodeError> {
    let bad = |found: String| DecodeError::WrongType {
        field: "schema".to_owned(),
        expected: "a Kafka Connect schema",
        found,
    };
    let schema: ConnectSchema<'_> =
        serde_json::from_str(raw.get()).map_err(|e| bad(e.to_string()))?;
    let row = ["after", "before"].iter().find_map(|want| {
        schema
            .fields
            .iter()
            .find(|f| f.field.as_deref() == Some(want))
    });
    let Some(row) = row else { return Ok(None) };
    let mut fields = Vec::with_capacity(row.fields.len());
    for f in &row.fields {
        let Some(name) = &f.field else { continue };
        let hint = match (f.ty.as_ref(), f.name.as_deref()) {
            (_, Some("io.debezium.time.ZonedTimestamp")) => Hint::Zoned,
            (_, Some("io.debezium.time.MicroTimestamp")) => Hint::Epoch(EpochUnit::Micros),
            (_, Some("io.debezium.time.NanoTimestamp")) => Hint::Epoch(EpochUnit::Nanos),
            (_, Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp")) => {
                Hint::Epoch(EpochUnit::Millis)
            }
            (_, Some("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date")) => Hint::Date,
            (_, Some("org.apache.kafka.connect.data.Decimal")) => {
                let params = f.parameters.as_ref();
                let scale = params
                    .and_then(|p| p.scale.as_deref())
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "Decimal field `{name}` without a valid scale parameter"
                        ))
                    })?;
                let precision = params
                    .and_then(|p| p.precision.as_deref())
                    .and_then(|s| s.parse().ok());
                Hint::Decimal { scale, precision }
            }
            ("int8" | "int16" | "int32", _) => Hint::Int32,
            ("int64", _) => Hint::Int64,
            ("float32" | "float64", _) => Hint::Float64,
            ("boolean", _) => Hint::Bool,
            ("string", _) => Hint::Text,
            ("bytes", _) => Hint::Bytes,
            _ => Hint::Composite,
        };
        fields.push((name.clone(), hint));
    }
    Ok(Some(Hints { fields }))
}

/// Decodes one cell into the declared (or schema-given) column type.
fn decode_cell(
    raw: &RawValue,
    ty: ColumnType,
    hint: Option<Hint>,
    image: &str,
    name: &str,
) -> Result<Value, DecodeError> {
    let scalar = lex(raw)?;
    let wrong = |expected: &'static str, found: &Scalar<'_>| DecodeError::WrongType {
        field: path(image, name),
        expected,
        found: found.describe(),
    };
    if scalar == Scalar::Null {
        return Ok(Value::Null);
    }
    Ok(match ty {
        ColumnType::Bool => match scalar {
            Scalar::Bool(b) => Value::Bool(b),
            other => return Err(wrong("a boolean", &other)),
        },
        ColumnType::Int32 => match &scalar {
            Scalar::Number(n) => {
                Value::Int32(n.parse().map_err(|_| wrong("a 32-bit integer", &scalar))?)
            }
            other => return Err(wrong("a 32-bit integer", other)),
        },
        ColumnType::Int64 => match &scalar {
            Scalar::Number(n) => {
                Value::Int64(n.parse().map_err(|_| wrong("a 64-bit integer", &scalar))?)
            }
            other => return Err(wrong("a 64-bit integer", other)),
        },
        ColumnType::Float64 => {
            let v = match &scalar {
                Scalar::Number(n) => n.parse::<f64>().ok().filter(|v| v.is_finite()),
                Scalar::Str(s) => match s.as_ref() {
                    "NaN" => Some(f64::NAN),
                    "Infinity" => Some(f64::INFINITY),
                    "-Infinity" => Some(f64::NEG_INFINITY),
                    _ => None,
                },
                _ => None,
            };
            Value::Float64(v.ok_or_else(|| wrong("a finite number, NaN or ±Infinity", &scalar))?)
        }
        ColumnType::Decimal { precision, scale } => {
            let bad = |value: &str, reason| DecodeError::BadDecimal {
                field: path(image, name),
                value: excerpt(value),
                reason,
            };
            match (&scalar, hint) {
                (Scalar::Str(s), Some(Hint::Decimal { scale: from, .. })) => {
                    let bytes = scalar::base64_decode(s).map_err(|r| bad(s, r))?;
                    Value::Decimal(
                        scalar::decimal_from_bytes(&bytes, from, precision, scale)
                            .map_err(|r| bad(s, r))?,
                    )
                }
                (Scalar::Str(s), _) => Value::Decimal(
                    scalar::parse_decimal(s, precision, scale).map_err(|r| bad(s, r))?,
                ),
                (Scalar::Number(n), _) => Value::Decimal(
                    scalar::parse_decimal(n, precision, scale).map_err(|r| bad(n, r))?,
                ),
                (Scalar::Composite(c), _) => {
                    return Err(bad(
                        c,
                        "variable-scale decimal structs are not supported; \
                                       use decimal.handling.mode=string",
                    ));
                }
                (other, _) => return Err(wrong("a decimal string or number", other)),
            }
        }
        ColumnType::Text => match scalar {
            Scalar::Str(s) => Value::Text(s.into_owned()),
            other => return Err(wrong("a string", &other)),
        },
        ColumnType::Binary => match &scalar {
            Scalar::Str(s) => {
                Value::Binary(scalar::base64_decode(s).map_err(|_| wrong("base64 bytes", &scalar))?)
            }
            other => return Err(wrong("base64 bytes", other)),
        },
        ColumnType::TimestampTz => {
            let bad = |value: &str, reason| DecodeError::BadTimestamp {
                field: path(image, name),
                value: excerpt(value),
                reason,
            };
            match &scalar {
                Scalar::Str(s) => {
                    Value::TimestampTz(scalar::parse_zoned_timestamp(s).map_err(|r| bad(s, r))?)
                }
                Scalar::Number(n) => {
                    // Without a schema an integer instant is microseconds (MicroTimestamp, the default
                    // time.precision.mode for PostgreSQL).
                    let unit = match hint {
                        Some(Hint::Epoch(unit)) => unit,
                        _ => EpochUnit::Micros,
                    };
                    let v: i64 = n
                        .parse()
                        .map_err(|_| bad(n, "not an integer epoch value"))?;
                    Value::TimestampTz(scalar::epoch_to_micros(v, unit).map_err(|r| bad(n, r))?)
                }
                other => return Err(wrong("an ISO-8601 string or an epoch integer", other)),
            }
        }
        ColumnType::Date => {
            let bad = |value: &str, reason| DecodeError::BadTimestamp {
                field: path(image, name),
                value: excerpt(value),
                reason,
            };
            match &scalar {
                Scalar::Number(n) => {
                    Value::Date(n.parse().map_err(|_| bad(n, "not an integer day count"))?)
                }
                Scalar::Str(s) => Value::Date(scalar::parse_date(s).map_err(|r| bad(s, r))?),
                other => return Err(wrong("days since the epoch or YYYY-MM-DD", other)),
            }
        }
    })
}

/// Decodes a field outside the declaration, with the schema's type when there is one, else the JSON type.
fn decode_extra(
    name: &str,
    raw: &RawValue,
    hint: Option<Hint>,
    image: &str,
) -> Result<ExtraField, DecodeError> {
    let (ty, value) = match hint {
        Some(Hint::Composite) => {
            let value = match lex(raw)? {
                Scalar::Null => Value::Null,
                _ => Value::Text(raw.get().trim().to_owned()),
            };
            (Some(ColumnType::Text), value)
        }
        Some(hint) => {
            let ty = hint.column_type();
            (Some(ty), decode_cell(raw, ty, Some(hint), image, name)?)
        }
        None => match lex(raw)? {
            Scalar::Null => (None, Value::Null),
            Scalar::Bool(b) => (Some(ColumnType::Bool), Value::Bool(b)),
            Scalar::Number(n) => match (n.parse::<i64>(), n.parse::<f64>()) {
                (Ok(i), _) => (Some(ColumnType::Int64), Value::Int64(i)),
                (_, Ok(f)) if f.is_finite() => (Some(ColumnType::Float64), Value::Float64(f)),
                // Beyond f64: keep the digits rather than lose them.
                _ => (Some(ColumnType::Text), Value::Text(n.to_owned())),
            },
            Scalar::Str(s) => (Some(ColumnType::Text), Value::Text(s.into_owned())),
            Scalar::Composite(c) => (Some(ColumnType::Text), Value::Text(c.to_owned())),
        },
    };
    Ok(ExtraField {
        name: name.to_owned(),
        ty,
        value,
    })
}
