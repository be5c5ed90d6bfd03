//! Debezium change records → typed [`ChangeEvent`]s. Pure: no I/O, no Kafka types, no clock.
//!
//! Contract of [`decode`]:
//! - Input is one Kafka record of a source table's topic as Debezium 3.x (PostgreSQL, pgoutput) writes it
//!   through Connect's `JsonConverter`, with or without schemas, `decimal.handling.mode=string` (Connect
//!   `Decimal` bytes are also understood when a schema says so), keys made bare user ids by `ExtractField`.
//! - Output is [`Decoded::Change`] or [`Decoded::Tombstone`]; or a [`DecodeError`] whose
//!   [`kind`](DecodeError::kind) is a stable label. Malformed input of any shape or size yields an error,
//!   never a panic.
//! - Row images are aligned to [`SourceTable::columns`], the single declaration of the source tables. Each
//!   value fits its column type; decimals are rescaled exactly to the column scale (never rounded); instants
//!   are UTC microseconds. Fields outside the declaration are kept as [`ExtraField`]s, never dropped.
//! - Only structurally impossible input is rejected: a NULL in a column the migration declares NOT NULL, a
//!   wrong JSON type, an unparsable value. Business rules (a NULL `user_id`, a negative amount) belong to the
//!   data-quality layer.
//! - JSON stays inside this module: parsing borrows slices of the input (`RawValue`) and allocates only for
//!   the typed output.

mod decode;
mod error;
mod event;
mod json;
mod rows;
mod scalar;
mod tables;

#[cfg(test)]
mod tests;

pub use decode::{MAX_KEY_BYTES, MAX_RECORD_BYTES, decode, decode_key};
pub use error::DecodeError;
pub use event::{ChangeEvent, Decoded, ExtraField, Op, Row};
pub use rows::{TransactionRow, TypedRow, UserRow, WalletRow};
pub use tables::{MONEY, MONEY_SUM, SOURCE_SCHEMA, SourceColumn, SourceTable};
