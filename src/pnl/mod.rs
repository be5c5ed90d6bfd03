//! Profit and loss per minute and currency → `pnl_minutely`.
//!
//! Contract:
//! * Input is the enriched transaction stream of one partition in event-time order. Each change contributes to
//!   the minute of its commit time ([`contribution`]):
//!   - an insert adds its volume and count, and, unless it is already `failed`/`reversed`, its fee to
//!     `fees_earned` and, for a `refund`/`chargeback`, its amount to the matching loss;
//!   - an update to `failed`/`reversed` takes the fee and the loss back out (the source only ever moves
//!     `pending` transactions, so such an update always undoes an insert that counted), and counts a reversal.
//!     Other updates change no figure.
//! * A minute closes when the watermark passes its end plus `allowed_lateness`; its row is then emitted with
//!   `kind = 'final'`. A change for a minute that has already closed is emitted at the next checkpoint as a row
//!   with `kind = 'late_adjustment'` holding only the late delta.
//! * Rows are additive partial aggregates (per partition, plus late adjustments): the figures of a minute are
//!   `SUM(...) GROUP BY minute, currency`. Documented in `docs/queries.md`; no row is ever rewritten.

use crate::sink::TableDef;
use crate::value::{ColumnSpec, ColumnType, Value};
use serde::{Deserialize, Serialize};

pub const PNL_TABLE: &str = "pnl_minutely";
pub const MINUTE_US: i64 = 60_000_000;

/// Additive figures of one (minute, currency). Money is unscaled at the money scale.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnlAgg {
    pub fees_earned: i128,
    pub refund_losses: i128,
    pub chargeback_losses: i128,
    pub volume: i128,
    pub tx_count: i64,
    pub reversals: i64,
}

impl PnlAgg {
    pub fn add(&mut self, other: &PnlAgg) {
        self.fees_earned += other.fees_earned;
        self.refund_losses += other.refund_losses;
        self.chargeback_losses += other.chargeback_losses;
        self.volume += other.volume;
        self.tx_count += other.tx_count;
        self.reversals += other.reversals;
    }

    pub fn is_zero(&self) -> bool {
        *self == PnlAgg::default()
    }
}

/// The facts of one transaction change that P&L needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PnlInput<'a> {
    pub is_insert: bool,
    pub is_update: bool,
    pub kind: &'a str,
    pub status: &'a str,
    pub currency: &'a str,
    pub amount_unscaled: i128,
    pub fee_unscaled: i128,
    pub source_ts_us: i64,
}

/// Start of the minute holding `ts_us`.
pub fn minute_of(ts_us: i64) -> i64 {
    ts_us.div_euclid(MINUTE_US) * MINUTE_US
}

fn cancelled(status: &str) -> bool {
    matches!(status, "failed" | "reversed")
}

/// What one change adds to its minute, or `None` when it changes no figure.
pub fn contribution(tx: &PnlInput<'_>) -> Option<(i64, PnlAgg)> {
    let mut d = PnlAgg::default();
    let loss = |d: &mut PnlAgg, sign: i128| match tx.kind {
        "refund" => d.refund_losses += sign * tx.amount_unscaled,
        "chargeback" => d.chargeback_losses += sign * tx.amount_unscaled,
        _ => {}
    };
    if tx.is_insert {
        d.volume = tx.amount_unscaled;
        d.tx_count = 1;
        if !cancelled(tx.status) {
            d.fees_earned = tx.fee_unscaled;
            loss(&mut d, 1);
        }
    } else if tx.is_update && cancelled(tx.status) {
        d.fees_earned = -tx.fee_unscaled;
        d.reversals = 1;
        loss(&mut d, -1);
    } else {
        return None;
    }
    Some((minute_of(tx.source_ts_us), d))
}

/// Kind of a `pnl_minutely` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// The minute closed on the watermark with these figures.
    Final,
    /// Changes that arrived after their minute closed.
    LateAdjustment,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Final => "final",
            RowKind::LateAdjustment => "late_adjustment",
        }
    }
}

pub fn pnl_def() -> TableDef {
    let money = crate::cdc::MONEY_SUM;
    TableDef::new(
        PNL_TABLE,
        vec![
            ColumnSpec::new("minute", ColumnType::TimestampTz, false),
            ColumnSpec::new("currency", ColumnType::Text, false),
            ColumnSpec::new("fees_earned", money, false),
            ColumnSpec::new("refund_losses", money, false),
            ColumnSpec::new("chargeback_losses", money, false),
            ColumnSpec::new("net_revenue", money, false),
            ColumnSpec::new("volume", money, false),
            ColumnSpec::new("tx_count", ColumnType::Int64, false),
            ColumnSpec::new("reversals", ColumnType::Int64, false),
            ColumnSpec::new("kind", ColumnType::Text, false),
            ColumnSpec::new("kafka_partition", ColumnType::Int32, false),
        ],
        "minute",
    )
}

pub fn pnl_row(
    minute_us: i64,
    currency: &str,
    agg: &PnlAgg,
    kind: RowKind,
    partition: i32,
) -> Vec<Value> {
    vec![
        Value::TimestampTz(minute_us),
        Value::Text(currency.to_string()),
        Value::Decimal(agg.fees_earned),
        Value::Decimal(agg.refund_losses),
        Value::Decimal(agg.chargeback_losses),
        Value::Decimal(agg.fees_earned - agg.refund_losses - agg.chargeback_losses),
        Value::Decimal(agg.volume),
        Value::Int64(agg.tx_count),
        Value::Int64(agg.reversals),
        Value::Text(kind.as_str().to_string()),
        Value::Int32(partition),
    ]
}

/// State key of an open (minute, currency): ordered by minute so closing is a range scan.
pub fn key(minute_us: i64, currency: &str) -> Vec<u8> {
    let mut k = crate::enrich::order_preserving(minute_us).to_vec();
    k.extend_from_slice(currency.as_bytes());
    k
}

/// Inverse of [`key`].
pub fn parse_key(k: &[u8]) -> Option<(i64, String)> {
    let (m, c) = k.split_at_checked(8)?;
    let m = u64::from_be_bytes(m.try_into().ok()?) ^ (1 << 63);
    Some((m as i64, String::from_utf8(c.to_vec()).ok()?))
}

/// Minutes whose end plus `allowed_lateness` is at or before the watermark are closed: returns the first minute
/// that is still open.
pub fn first_open_minute(watermark_us: i64, allowed_lateness_us: i64) -> i64 {
    // Minute m is closed iff m + MINUTE + lateness <= watermark.
    minute_of(
        watermark_us
            .saturating_sub(allowed_lateness_us)
            .saturating_sub(MINUTE_US),
    )
    .saturating_add(MINUTE_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx<'a>(
        kind: &'a str,
        status: &'a str,
        insert: bool,
        amount: i128,
        fee: i128,
        ts: i64,
    ) -> PnlInput<'a> {
        PnlInput {
            is_insert: insert,
            is_update: !insert,
            kind,
            status,
            currency: "EUR",
            amount_unscaled: amount,
            fee_unscaled: fee,
            source_ts_us: ts,
        }
    }

    #[test]
    fn inserts_count_fees_and_losses() {
        let (m, d) = contribution(&tx("payment", "settled", true, 10_000, 25, 61_000_000)).unwrap();
        assert_eq!(m, MINUTE_US);
        assert_eq!(
            d,
            PnlAgg {
                fees_earned: 25,
                volume: 10_000,
                tx_count: 1,
                ..Default::default()
            }
        );
        let (_, r) = contribution(&tx("refund", "settled", true, 500, 0, 0)).unwrap();
        assert_eq!(r.refund_losses, 500);
        let (_, c) = contribution(&tx("chargeback", "pending", true, 700, 0, 0)).unwrap();
        assert_eq!(c.chargeback_losses, 700);
        // An insert that is already failed adds volume and count but no fee.
        let (_, f) = contribution(&tx("payment", "failed", true, 100, 5, 0)).unwrap();
        assert_eq!((f.fees_earned, f.volume, f.tx_count), (0, 100, 1));
    }

    #[test]
    fn failing_or_reversing_takes_the_fee_back_and_settling_changes_nothing() {
        let (_, d) = contribution(&tx("payment", "reversed", false, 100, 5, 0)).unwrap();
        assert_eq!((d.fees_earned, d.reversals, d.volume), (-5, 1, 0));
        let (_, c) = contribution(&tx("chargeback", "failed", false, 700, 0, 0)).unwrap();
        assert_eq!(c.chargeback_losses, -700);
        assert_eq!(
            contribution(&tx("payment", "settled", false, 100, 5, 0)),
            None
        );
    }

    #[test]
    fn minutes_and_closing() {
        assert_eq!(minute_of(-1), -MINUTE_US);
        assert_eq!(minute_of(59_999_999), 0);
        // Lateness 10 s: minute [0, 60 s) closes at watermark 70 s.
        assert_eq!(first_open_minute(69_999_999, 10_000_000), 0);
        assert_eq!(first_open_minute(70_000_000, 10_000_000), MINUTE_US);
        let k = key(-MINUTE_US, "USD");
        assert_eq!(parse_key(&k), Some((-MINUTE_US, "USD".to_string())));
        assert!(key(0, "AAA") > key(-MINUTE_US, "ZZZ"));
    }

    #[test]
    fn row_has_net_revenue() {
        let agg = PnlAgg {
            fees_earned: 100,
            refund_losses: 30,
            chargeback_losses: 20,
            volume: 1_000,
            tx_count: 3,
            reversals: 0,
        };
        let row = pnl_row(0, "EUR", &agg, RowKind::Final, 2);
        assert_eq!(row[5], Value::Decimal(50));
        assert_eq!(row.len(), pnl_def().columns.len());
    }
}
