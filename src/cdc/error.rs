//! Why a record could not be decoded. Every variant is permanent (retrying the same bytes gives the same
//! answer), so the caller quarantines the record; [`DecodeError::kind`] is the bounded metric/quarantine label
//! and the `Display` text (which names the offending field) goes into the quarantine row.

use thiserror::Error;

/// Longest excerpt of an offending value kept in an error message, so a huge bad field cannot blow up logs.
const MAX_EXCERPT_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("record is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("not valid JSON: {detail}")]
    InvalidJson { detail: String },
    #[error("`{field}` is not a JSON object")]
    NotAnObject { field: String },
    #[error("required field `{field}` is missing")]
    MissingField { field: String },
    #[error("`{field}` has more than {max} undeclared fields")]
    TooManyFields { field: String, max: usize },
    #[error("field `{field}` appears twice")]
    DuplicateField { field: String },
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("NOT NULL column `{field}` is null")]
    NullInRequired { field: String },
    #[error("field `{field}`: bad decimal {value:?}: {reason}")]
    BadDecimal {
        field: String,
        value: String,
        reason: &'static str,
    },
    #[error("field `{field}`: bad timestamp {value:?}: {reason}")]
    BadTimestamp {
        field: String,
        value: String,
        reason: &'static str,
    },
    #[error("unknown op {op:?} (expected one of c, u, d, r, t)")]
    UnknownOp { op: String },
    #[error("record is for table {found:?}, decoder was asked for {expected:?}")]
    TableMismatch {
        expected: &'static str,
        found: String,
    },
    #[error("bad record key: {detail}")]
    BadKey { detail: String },
}

impl DecodeError {
    /// Stable snake_case label for metrics and the quarantine table. Never changes for a given variant.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::InvalidJson { .. } => "invalid_json",
            DecodeError::NotAnObject { .. } => "not_an_object",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::DuplicateField { .. } => "duplicate_field",
            DecodeError::TooManyFields { .. } => "too_many_fields",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::NullInRequired { .. } => "null_in_required",
            DecodeError::BadDecimal { .. } => "bad_decimal",
            DecodeError::BadTimestamp { .. } => "bad_timestamp",
            DecodeError::UnknownOp { .. } => "unknown_op",
            DecodeError::TableMismatch { .. } => "table_mismatch",
            DecodeError::BadKey { .. } => "bad_key",
        }
    }

    /// The dotted path of the offending field (`after.balance`, `source.lsn`), when one is to blame.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::NotAnObject { field }
            | DecodeError::MissingField { field }
            | DecodeError::DuplicateField { field }
            | DecodeError::TooManyFields { field, .. }
            | DecodeError::WrongType { field, .. }
            | DecodeError::NullInRequired { field }
            | DecodeError::BadDecimal { field, .. }
            | DecodeError::BadTimestamp { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Every variant is a property of the bytes, so none is worth retrying.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// A bounded copy of an offending value for an error message.
pub(crate) fn excerpt(s: &str) -> String {
    match s.char_indices().nth(MAX_EXCERPT_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

/// Joins an image name and a column into the dotted path used in messages. Only called on error paths.
pub(crate) fn path(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_bounded_and_char_safe() {
        assert_eq!(excerpt("12.5"), "12.5");
        let long = "é".repeat(100);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), MAX_EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }
}
