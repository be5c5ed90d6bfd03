//! Event-time fraud windows: pure, synchronous rules over one user's recent transactions.
//!
//! Contract (the partition actor is the only caller):
//! - The caller feeds each user's NEW transactions (inserts only, after enrichment) in event-time order (source
//!   commit time, ties by LSN) through [`FraudEngine::on_transaction`], with the partition watermark as it was
//!   before the transaction, and persists [`UserWindows`] (bincode 2, serde) keyed by user id.
//! - A transaction older than `watermark − allowed_lateness` is too late: it changes nothing and raises nothing
//!   ([`Outcome::TooLate`]). Anything newer is placed in its window in event-time order, so a slightly late
//!   transaction is judged against the same window it would have seen on time.
//! - [`FraudEngine::expire`] drops what no rule can need at a watermark; the state stays bounded by the longest
//!   window, the rolling amount history and the open deposits. When it returns `true` the key can be deleted.
//! - Output is a pure function of the input sequence and the watermarks: no wall clock, no hash-map iteration,
//!   alert ids derived from rule, user and the first triggering transaction. One episode gives one alert: each
//!   rule has a per-user cooldown measured in event time.
//! - Bad input (unknown kinds, non-positive amounts, missing countries) never panics: such a transaction takes
//!   part only in the rules it has the fields for.

mod config;
mod engine;
mod state;

#[cfg(test)]
mod tests;

pub use config::{
    AmountSpikeConfig, CountryHoppingConfig, FraudConfig, FraudConfigError, OverdraftConfig,
    RapidDrainConfig, SpikeStat, VelocityConfig,
};
pub use engine::FraudEngine;
pub use state::UserWindows;

use crate::sink::TableDef;
use crate::value::{ColumnSpec, ColumnType, Value};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One new transaction as the fraud rules see it, built by the caller from the enriched row.
#[derive(Debug, Clone, PartialEq)]
pub struct TxFacts {
    pub transaction_id: i64,
    /// Source LSN; breaks event-time ties.
    pub lsn: u64,
    /// Source commit time, microseconds since the epoch.
    pub event_time_us: i64,
    pub user_id: i64,
    pub wallet_id: Option<i64>,
    /// deposit | withdrawal | transfer_out | transfer_in | payment | refund | chargeback.
    pub kind: String,
    /// pending | settled | failed | reversed.
    pub status: String,
    pub amount: Decimal,
    pub fee: Decimal,
    pub currency: String,
    /// Where the transaction happened.
    pub country: Option<String>,
    /// The user's home country from enrichment; `None` if the user is unknown.
    pub user_country: Option<String>,
    /// The wallet balance after this transaction, from enrichment.
    pub wallet_balance_after: Option<Decimal>,
}

/// The rules. The discriminant order is the order rules are evaluated and alerts are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Velocity,
    AmountSpike,
    Overdraft,
    CountryHopping,
    RapidDrain,
}

impl Rule {
    pub const ALL: [Rule; 5] = [
        Rule::Velocity,
        Rule::AmountSpike,
        Rule::Overdraft,
        Rule::CountryHopping,
        Rule::RapidDrain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Velocity => "velocity",
            Rule::AmountSpike => "amount_spike",
            Rule::Overdraft => "overdraft",
            Rule::CountryHopping => "country_hopping",
            Rule::RapidDrain => "rapid_drain",
        }
    }

    /// Position in [`Rule::ALL`], used to index per-rule state.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fraud alert: a row of [`ALERTS_TABLE`].
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// `<rule>-<user>-<first triggering transaction id>`: the same input always gives the same id, so a replay
    /// after a crash rewrites the same alert and downstream can deduplicate on it.
    pub alert_id: String,
    pub rule: Rule,
    pub severity: Severity,
    pub user_id: i64,
    pub wallet_id: Option<i64>,
    /// The transactions that triggered the alert, in event-time order.
    pub transaction_ids: Vec<i64>,
    pub window_start_us: i64,
    pub window_end_us: i64,
    /// Event time of the transaction that raised the alert; the table's partition column.
    pub event_time_us: i64,
    /// For humans, with the numbers that crossed the threshold.
    pub reason: String,
}

/// What [`FraudEngine::on_transaction`] did with a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The transaction was applied to the windows; these alerts (possibly none) were raised, in [`Rule`] order.
    Evaluated(Vec<Alert>),
    /// Older than `watermark − allowed_lateness`: nothing changed. The caller counts it.
    TooLate,
}

impl Outcome {
    pub fn alerts(&self) -> &[Alert] {
        match self {
            Outcome::Evaluated(a) => a,
            Outcome::TooLate => &[],
        }
    }

    pub fn into_alerts(self) -> Vec<Alert> {
        match self {
            Outcome::Evaluated(a) => a,
            Outcome::TooLate => Vec::new(),
        }
    }

    pub fn is_too_late(&self) -> bool {
        matches!(self, Outcome::TooLate)
    }
}

/// The output table of alerts.
pub const ALERTS_TABLE: &str = "fraud_alerts";

/// Schema of [`ALERTS_TABLE`], partitioned by `day(event_time)`. Column order matches [`Alert::to_row`].
pub fn alerts_table_def() -> TableDef {
    TableDef::new(
        ALERTS_TABLE,
        vec![
            ColumnSpec::new("alert_id", ColumnType::Text, false),
            ColumnSpec::new("rule", ColumnType::Text, false),
            ColumnSpec::new("severity", ColumnType::Text, false),
            ColumnSpec::new("user_id", ColumnType::Int64, false),
            ColumnSpec::new("wallet_id", ColumnType::Int64, true),
            ColumnSpec::new("transaction_ids", ColumnType::Text, false),
            ColumnSpec::new("window_start", ColumnType::TimestampTz, false),
            ColumnSpec::new("window_end", ColumnType::TimestampTz, false),
            ColumnSpec::new("event_time", ColumnType::TimestampTz, false),
            ColumnSpec::new("reason", ColumnType::Text, false),
            ColumnSpec::new("kafka_partition", ColumnType::Int32, false),
        ],
        "event_time",
    )
}

impl Alert {
    /// The row for [`alerts_table_def`]; `transaction_ids` is comma separated.
    pub fn to_row(&self, kafka_partition: i32) -> Vec<Value> {
        let ids = self
            .transaction_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        vec![
            Value::Text(self.alert_id.clone()),
            Value::Text(self.rule.as_str().to_string()),
            Value::Text(self.severity.as_str().to_string()),
            Value::Int64(self.user_id),
            self.wallet_id.map_or(Value::Null, Value::Int64),
            Value::Text(ids),
            Value::TimestampTz(self.window_start_us),
            Value::TimestampTz(self.window_end_us),
            Value::TimestampTz(self.event_time_us),
            Value::Text(self.reason.clone()),
            Value::Int32(kafka_partition),
        ]
    }
}
