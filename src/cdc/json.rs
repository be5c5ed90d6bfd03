//! The only place that touches JSON. Objects are split into borrowed `&RawValue` slices of the input (no tree,
//! no copies); scalars are lexed from those slices on demand. Nothing from here leaves the `cdc` module.

use super::error::{DecodeError, excerpt};
use super::tables::SourceColumn;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::error::Category;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// More fields than this in one row image is not something Debezium emits for these tables; the bound keeps
/// the duplicate check (linear per field) cheap on hostile input.
pub(crate) const MAX_EXTRA_FIELDS: usize = 512;

/// A JSON string that borrows from the input unless it contains escapes.
pub(crate) struct JsonStr<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Which keys of an object are captured by position; the rest are extras (or skipped).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Names {
    Fixed(&'static [&'static str]),
    Columns(&'static [SourceColumn]),
}

impl Names {
    fn len(self) -> usize {
        match self {
            Names::Fixed(n) => n.len(),
            Names::Columns(c) => c.len(),
        }
    }

    fn find(self, key: &str) -> Option<usize> {
        match self {
            Names::Fixed(n) => n.iter().position(|&n| n == key),
            Names::Columns(c) => c.iter().position(|c| c.name == key),
        }
    }
}

/// An object split into its known fields (by position in [`Names`]) and, optionally, the unknown ones.
#[derive(Debug)]
pub(crate) struct RawObject<'a> {
    /// The JSON was the literal `null` rather than an object.
    pub(crate) is_null: bool,
    /// Known fields in [`Names`] order; `None` when absent. A JSON `null` is kept as a raw `null`.
    pub(crate) values: Vec<Option<&'a RawValue>>,
    /// Unknown fields in input order, when requested.
    pub(crate) extras: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// The first key seen twice. Reported as an error by the caller, who knows the path.
    pub(crate) duplicate: Option<Cow<'a, str>>,
    /// More than [`MAX_EXTRA_FIELDS`] unknown fields.
    pub(crate) too_many_extras: bool,
}

impl<'a> RawObject<'a> {
    /// A known field, treating JSON `null` like absence (the envelope's convention).
    pub(crate) fn get(&self, i: usize) -> Option<&'a RawValue> {
        self.values
            .get(i)
            .copied()
            .flatten()
            .filter(|r| r.get() != "null")
    }
}

#[derive(Clone, Copy)]
struct ObjectSeed {
    names: Names,
    keep_extras: bool,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = RawObject<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed {
    type Value = RawObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawObject {
            is_null: true,
            values: Vec::new(),
            extras: Vec::new(),
            duplicate: None,
            too_many_extras: false,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut obj = RawObject {
            is_null: false,
            values: vec![None; self.names.len()],
            extras: Vec::new(),
            duplicate: None,
            too_many_extras: false,
        };
        while let Some(JsonStr(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            match self.names.find(&key) {
                Some(i) => {
                    if obj.values[i].is_some() {
                        obj.duplicate.get_or_insert(key);
                    } else {
                        obj.values[i] = Some(value);
                    }
                }
                None if self.keep_extras => {
                    if obj.extras.iter().any(|(n, _)| *n == key) {
                        obj.duplicate.get_or_insert(key);
                    } else if obj.extras.len() >= MAX_EXTRA_FIELDS {
                        obj.too_many_extras = true;
                    } else {
                        obj.extras.push((key, value));
                    }
                }
                None => {}
            }
        }
        Ok(obj)
    }
}

/// Splits `text` (a whole record, or the raw slice of a nested field named `field`) into a [`RawObject`].
pub(crate) fn parse_object<'a>(
    text: &'a str,
    names: Names,
    keep_extras: bool,
    field: &str,
) -> Result<RawObject<'a>, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = ObjectSeed { names, keep_extras };
    let parsed = seed
        .deserialize(&mut de)
        .and_then(|obj| de.end().map(|()| obj));
    parsed.map_err(|e| match e.classify() {
        // The visitor only fails on type, i.e. when the value is valid JSON but not an object or null.
        Category::Data => DecodeError::NotAnObject {
            field: field.to_owned(),
        },
        Category::Io | Category::Syntax | Category::Eof => DecodeError::InvalidJson {
            detail: e.to_string(),
        },
    })
}

/// A lexed JSON scalar (or the raw text of a composite).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    /// The number's exact source text, so decimals never pass through `f64`.
    Number(&'a str),
    Str(Cow<'a, str>),
    /// An object or array, as raw JSON text.
    Composite(&'a str),
}

impl Scalar<'_> {
    /// What kind of JSON value this is, with a bounded excerpt, for `found` in error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Scalar::Null => "null".to_owned(),
            Scalar::Bool(b) => format!("boolean {b}"),
            Scalar::Number(n) => format!("number {}", excerpt(n)),
            Scalar::Str(s) => format!("string {:?}", excerpt(s)),
            Scalar::Composite(c) => format!("JSON {}", excerpt(c)),
        }
    }
}

/// Lexes an already-validated raw value. The first byte of valid JSON decides its kind.
pub(crate) fn lex(raw: &RawValue) -> Result<Scalar<'_>, DecodeError> {
    let text = raw.get().trim();
    Ok(match text.as_bytes().first() {
        Some(b'n') => Scalar::Null,
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'"') => {
            let JsonStr(s) = serde_json::from_str(text).map_err(|e| DecodeError::InvalidJson {
                detail: e.to_string(),
            })?;
            Scalar::Str(s)
        }
        Some(b'{' | b'[') => Scalar::Composite(text),
        Some(_) => Scalar::Number(text),
        None => {
            return Err(DecodeError::InvalidJson {
                detail: "empty value".to_owned(),
            });
        }
    })
}

/// A required integer field such as `source.lsn`.
pub(crate) fn integer<T: std::str::FromStr>(raw: &RawValue, field: &str) -> Result<T, DecodeError> {
    match lex(raw)? {
        Scalar::Number(n) => n.parse().map_err(|_| DecodeError::WrongType {
            field: field.to_owned(),
            expected: "an integer in range",
            found: format!("number {}", excerpt(n)),
        }),
        other => Err(DecodeError::WrongType {
            field: field.to_owned(),
            expected: "an integer",
            found: other.describe(),
        }),
    }
}

/// A string field such as `op`.
pub(crate) fn string<'a>(raw: &'a RawValue, field: &str) -> Result<Cow<'a, str>, DecodeError> {
    match lex(raw)? {
        Scalar::Str(s) => Ok(s),
        other => Err(DecodeError::WrongType {
            field: field.to_owned(),
            expected: "a string",
            found: other.describe(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AB: Names = Names::Fixed(&["a", "b"]);

    #[test]
    fn splits_known_and_extra_fields_without_copying() {
        let text = r#"{"b": 1, "x": {"y": [1, 2]}, "a": "s\"q", "z": null}"#;
        let obj = parse_object(text, AB, true, "t").expect("object");
        assert_eq!(obj.values[0].map(RawValue::get), Some(r#""s\"q""#));
        assert_eq!(obj.values[1].map(RawValue::get), Some("1"));
        let extras: Vec<(&str, &str)> = obj
            .extras
            .iter()
            .map(|(k, v)| (k.as_ref(), v.get()))
            .collect();
        assert_eq!(extras, vec![("x", r#"{"y": [1, 2]}"#), ("z", "null")]);
        assert!(matches!(obj.extras[0].0, Cow::Borrowed(_)));
        assert_eq!(obj.duplicate, None);
    }

    #[test]
    fn reports_duplicates_and_non_objects() {
        let obj = parse_object(r#"{"a":1,"a":2}"#, AB, false, "t").expect("object");
        assert_eq!(obj.duplicate.as_deref(), Some("a"));
        let obj = parse_object(r#"{"q":1,"q":2}"#, AB, true, "t").expect("object");
        assert_eq!(obj.duplicate.as_deref(), Some("q"));
        assert!(parse_object("null", AB, false, "t").expect("null").is_null);
        for text in ["[]", "1", "\"s\"", "true"] {
            assert_eq!(
                parse_object(text, AB, false, "t").map(|_| ()),
                Err(DecodeError::NotAnObject { field: "t".into() })
            );
        }
        for text in ["", "{", "{\"a\":}", "{} x", "nul"] {
            let err = parse_object(text, AB, false, "t").map(|_| ()).unwrap_err();
            assert_eq!(err.kind(), "invalid_json", "{text:?}");
        }
    }

    #[test]
    fn lexes_scalars() {
        let raw = |s: &str| serde_json::from_str::<Box<RawValue>>(s).expect("raw");
        assert_eq!(lex(&raw("null")).ok(), Some(Scalar::Null));
        assert_eq!(lex(&raw("true")).ok(), Some(Scalar::Bool(true)));
        assert_eq!(lex(&raw("-12.50e1")).ok(), Some(Scalar::Number("-12.50e1")));
        assert_eq!(
            lex(&raw(r#""a\u00e9""#)).ok(),
            Some(Scalar::Str("aé".into()))
        );
        assert_eq!(lex(&raw("[1]")).ok(), Some(Scalar::Composite("[1]")));
        assert_eq!(
            integer::<u64>(&raw("-1"), "f").unwrap_err().kind(),
            "wrong_type"
        );
        assert_eq!(
            integer::<i64>(&raw("1.0"), "f").unwrap_err().kind(),
            "wrong_type"
        );
        assert_eq!(
            integer::<i64>(&raw("\"1\""), "f").unwrap_err().kind(),
            "wrong_type"
        );
        assert_eq!(
            integer::<i64>(&raw("9223372036854775807"), "f"),
            Ok(i64::MAX)
        );
    }
}
