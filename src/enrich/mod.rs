//! Enrichment: each transaction change joined with its user and wallet *as they stood at the transaction's
//! source position*, into `transactions_enriched`.
//!
//! Contract:
//! * Dimensions are kept as short version histories per key ([`History`]), ordered by LSN, so that the join is
//!   "as of" a position and does not depend on the order in which the three topics happened to be read.
//! * A version belongs to the transaction's view when it is at or before the transaction's LSN, or when it was
//!   written by the same PostgreSQL transaction (the wallet update that applies a payment may come after the
//!   payment's insert in the WAL, and "balance after the change" must include it).
//! * A missing dimension never drops the transaction: it is emitted with an [`EnrichmentStatus`] naming what was
//!   missing. The caller decides *when* to emit (after the watermark passes, see [`crate::watermark`]).
//! * Rows are built only from the input and state, so replaying the same input gives identical rows.
//!
//! The output schema is derived from the single source declaration ([`SourceTable::column_specs`]): changelog
//! metadata, the transaction's columns, the enrichment columns, then any columns the source gained at run time.

use crate::cdc::{Op, Row, SourceTable, TypedRow};
use crate::sink::TableDef;
use crate::value::{ColumnSpec, ColumnType, Value};
use serde::{Deserialize, Serialize};

/// Name of the enriched output table.
pub const ENRICHED_TABLE: &str = "transactions_enriched";
/// Partition source: the transaction's own time, so a status update lands next to its transaction.
pub const ENRICHED_TIME_COLUMN: &str = "created_at";

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// What the join found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrichmentStatus {
    Enriched,
    UserMissing,
    WalletMissing,
    UserAndWalletMissing,
}

impl EnrichmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrichmentStatus::Enriched => "enriched",
            EnrichmentStatus::UserMissing => "user_missing",
            EnrichmentStatus::WalletMissing => "wallet_missing",
            EnrichmentStatus::UserAndWalletMissing => "user_and_wallet_missing",
        }
    }

    fn of(user: bool, wallet: bool) -> Self {
        match (user, wallet) {
            (true, true) => EnrichmentStatus::Enriched,
            (false, true) => EnrichmentStatus::UserMissing,
            (true, false) => EnrichmentStatus::WalletMissing,
            (false, false) => EnrichmentStatus::UserAndWalletMissing,
        }
    }
}

/// The user attributes a transaction is enriched with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDim {
    pub country: String,
    pub kyc_status: String,
    pub risk_tier: String,
    pub created_at_us: i64,
}

/// The wallet attributes a transaction is enriched with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletDim {
    pub user_id: Option<i64>,
    pub currency: String,
    /// Unscaled at the money scale (`numeric(18,2)`), exactly as the source column.
    pub balance_unscaled: i128,
    pub status: String,
}

/// A dimension change from a decoded row image: the key and the new version (`None` for a delete).
pub fn dimension_of(op: Op, row: &Row) -> Option<Dimension> {
    let deleted = op == Op::Delete;
    match row.typed()? {
        TypedRow::User(u) => Some(Dimension::User(
            u.id,
            (!deleted).then_some(UserDim {
                country: u.country,
                kyc_status: u.kyc_status,
                risk_tier: u.risk_tier,
                created_at_us: u.created_at_us,
            }),
        )),
        TypedRow::Wallet(w) => {
            let balance_unscaled = match row.get("balance") {
                Some(Value::Decimal(v)) => *v,
                _ => return None,
            };
            Some(Dimension::Wallet(
                w.id,
                (!deleted).then_some(WalletDim {
                    user_id: w.user_id,
                    currency: w.currency,
                    balance_unscaled,
                    status: w.status,
                }),
            ))
        }
        TypedRow::Transaction(_) => None,
    }
}

/// A keyed dimension change.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    User(i64, Option<UserDim>),
    Wallet(i64, Option<WalletDim>),
}

/// One version of a dimension row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version<T> {
    pub lsn: u64,
    pub tx_id: Option<i64>,
    /// Commit time, for retention.
    pub ts_us: i64,
    /// `None`: the row was deleted at this position.
    pub value: Option<T>,
}

/// The recent versions of one dimension row, ascending by LSN.
///
/// Bounded by [`History::prune`]: only versions that a transaction inside the retention horizon can still ask
/// for are kept, and the newest version is always kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History<T> {
    pub versions: Vec<Version<T>>,
}

impl<T> Default for History<T> {
    fn default() -> Self {
        History {
            versions: Vec::new(),
        }
    }
}

impl<T> History<T> {
    /// Inserts a version in LSN order. A version at an LSN already present (a redelivery) is ignored.
    pub fn insert(&mut self, v: Version<T>) {
        match self.versions.binary_search_by_key(&v.lsn, |x| x.lsn) {
            Ok(_) => {}
            Err(i) => self.versions.insert(i, v),
        }
    }

    /// The version a change at `lsn` in PostgreSQL transaction `tx_id` sees: the newest one at or before `lsn`,
    /// or written by the same transaction.
    pub fn as_of(&self, lsn: u64, tx_id: Option<i64>) -> Option<&Version<T>> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.lsn <= lsn || (tx_id.is_some() && v.tx_id == tx_id))
    }

    /// Drops versions superseded before `horizon_us`: for each such version a newer one exists whose commit time
    /// is at or before the horizon, so no transaction at or after the horizon can see it.
    pub fn prune(&mut self, horizon_us: i64) {
        let keep_from = self
            .versions
            .iter()
            .rposition(|v| v.ts_us <= horizon_us)
            .unwrap_or(0);
        self.versions.drain(..keep_from);
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

/// A transaction change waiting for its watermark. Persisted in the partition state (bincode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingTx {
    pub op: Op,
    pub lsn: u64,
    pub tx_id: Option<i64>,
    pub source_ts_us: i64,
    pub kafka_offset: i64,
    /// The row image (`after`, or `before` for a delete), with its extra fields.
    pub row: Row,
}

impl WaitingTx {
    /// State key: ordered by commit time, then LSN, then op rank, so a range scan emits in event-time order.
    pub fn key(&self) -> [u8; 17] {
        let mut k = [0u8; 17];
        k[..8].copy_from_slice(&order_preserving(self.source_ts_us));
        k[8..16].copy_from_slice(&self.lsn.to_be_bytes());
        k[16] = u8::from(self.op != Op::Delete);
        k
    }

    pub fn user_id(&self) -> Option<i64> {
        self.row.user_id()
    }

    pub fn wallet_id(&self) -> Option<i64> {
        match self.row.get("wallet_id") {
            Some(Value::Int64(v)) => Some(*v),
            _ => None,
        }
    }
}

/// Big-endian bytes of `v` that sort like `v` (sign bit flipped).
pub fn order_preserving(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// Upper bound key for "commit time at or before `ts_us`".
pub fn wait_key_upper_bound(ts_us: i64) -> [u8; 17] {
    let mut k = [0xffu8; 17];
    k[..8].copy_from_slice(&order_preserving(ts_us));
    k
}

/// The enrichment columns, declared once.
fn enrichment_columns() -> Vec<ColumnSpec> {
    vec![
        ColumnSpec::new("user_country", ColumnType::Text, true),
        ColumnSpec::new("user_kyc_status", ColumnType::Text, true),
        ColumnSpec::new("user_risk_tier", ColumnType::Text, true),
        ColumnSpec::new("user_account_age_days", ColumnType::Int32, true),
        ColumnSpec::new("wallet_currency", ColumnType::Text, true),
        ColumnSpec::new("wallet_balance_after", crate::cdc::MONEY, true),
        ColumnSpec::new("wallet_status", ColumnType::Text, true),
        ColumnSpec::new("enrichment_status", ColumnType::Text, false),
    ]
}

/// Changelog metadata columns that the enriched table carries too.
fn meta_columns() -> Vec<ColumnSpec> {
    vec![
        ColumnSpec::new("op", ColumnType::Text, false),
        ColumnSpec::new("lsn", ColumnType::Int64, false),
        ColumnSpec::new("tx_id", ColumnType::Int64, true),
        ColumnSpec::new(crate::changelog::SOURCE_TS, ColumnType::TimestampTz, false),
        ColumnSpec::new("kafka_partition", ColumnType::Int32, false),
        ColumnSpec::new("kafka_offset", ColumnType::Int64, false),
    ]
}

/// The enriched table for the transaction columns learnt so far (`extras`: run-time columns of the source).
pub fn enriched_def(extras: &[ColumnSpec]) -> TableDef {
    let mut columns = meta_columns();
    columns.extend(SourceTable::Transactions.column_specs());
    columns.extend(enrichment_columns());
    columns.extend(extras.iter().cloned());
    TableDef::new(ENRICHED_TABLE, columns, ENRICHED_TIME_COLUMN)
}

/// The result of joining one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined<'a> {
    pub user: Option<&'a UserDim>,
    pub wallet: Option<&'a WalletDim>,
    pub status: EnrichmentStatus,
}

/// Joins a waiting transaction with the dimension versions it should see.
pub fn join<'a>(
    tx: &WaitingTx,
    users: Option<&'a History<UserDim>>,
    wallets: Option<&'a History<WalletDim>>,
) -> Joined<'a> {
    let user = users
        .and_then(|h| h.as_of(tx.lsn, tx.tx_id))
        .and_then(|v| v.value.as_ref());
    let wallet = wallets
        .and_then(|h| h.as_of(tx.lsn, tx.tx_id))
        .and_then(|v| v.value.as_ref());
    Joined {
        user,
        wallet,
        status: EnrichmentStatus::of(user.is_some(), wallet.is_some()),
    }
}

/// The enriched row, aligned to [`enriched_def`]`(extras)`.
pub fn enriched_row(
    tx: &WaitingTx,
    kafka_partition: i32,
    joined: &Joined<'_>,
    extras: &[ColumnSpec],
) -> Vec<Value> {
    let text = |s: Option<&String>| s.map_or(Value::Null, |s| Value::Text(s.clone()));
    let created = match tx.row.get(ENRICHED_TIME_COLUMN) {
        Some(Value::TimestampTz(v)) => Some(*v),
        _ => None,
    };
    let age_days = joined.user.zip(created).map_or(Value::Null, |(u, c)| {
        let days = (c - u.created_at_us).div_euclid(MICROS_PER_DAY);
        i32::try_from(days).map_or(Value::Null, Value::Int32)
    });
    let mut row = Vec::with_capacity(32);
    row.push(Value::Text(tx.op.code().to_string()));
    row.push(Value::Int64(tx.lsn as i64));
    row.push(tx.tx_id.map_or(Value::Null, Value::Int64));
    row.push(Value::TimestampTz(tx.source_ts_us));
    row.push(Value::Int32(kafka_partition));
    row.push(Value::Int64(tx.kafka_offset));
    row.extend(tx.row.values().iter().cloned());
    row.push(text(joined.user.map(|u| &u.country)));
    row.push(text(joined.user.map(|u| &u.kyc_status)));
    row.push(text(joined.user.map(|u| &u.risk_tier)));
    row.push(age_days);
    row.push(text(joined.wallet.map(|w| &w.currency)));
    row.push(
        joined
            .wallet
            .map_or(Value::Null, |w| Value::Decimal(w.balance_unscaled)),
    );
    row.push(text(joined.wallet.map(|w| &w.status)));
    row.push(Value::Text(joined.status.as_str().to_string()));
    for col in extras {
        let v = tx
            .row
            .extra()
            .iter()
            .find(|e| e.name == col.name)
            .map(|e| e.value.clone())
            .unwrap_or(Value::Null);
        row.push(v);
    }
    row
}

#[cfg(test)]
mod tests;
