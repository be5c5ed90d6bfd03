//! Per-user window state, persisted by the partition (bincode 2 via serde) under the user id.
//!
//! Invariants: `recent` is sorted by `(event_time_us, lsn, id)`; `amounts` is oldest first and holds at most
//! `amount_spike.history_len` entries; every collection is pruned by [`super::FraudEngine::expire`], so the size
//! is bounded by what the longest window, the history and the open deposits need.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The transaction kinds the rules distinguish; anything unrecognised is `Other` and only counts for countries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Deposit,
    Withdrawal,
    TransferOut,
    TransferIn,
    Payment,
    Refund,
    Chargeback,
    Other,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Kind {
        match s {
            "deposit" => Kind::Deposit,
            "withdrawal" => Kind::Withdrawal,
            "transfer_out" => Kind::TransferOut,
            "transfer_in" => Kind::TransferIn,
            "payment" => Kind::Payment,
            "refund" => Kind::Refund,
            "chargeback" => Kind::Chargeback,
            _ => Kind::Other,
        }
    }

    /// Takes money out of the wallet.
    pub(crate) fn is_debit(self) -> bool {
        matches!(self, Kind::Payment | Kind::Withdrawal | Kind::TransferOut)
    }

    /// Takes money out of the platform (what a drain does).
    pub(crate) fn is_cash_out(self) -> bool {
        matches!(self, Kind::Withdrawal | Kind::TransferOut)
    }
}

/// A transaction kept for the sliding windows (velocity, country hopping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecentTx {
    pub id: i64,
    pub lsn: u64,
    pub event_time_us: i64,
    pub kind: Kind,
    /// Needed for country hopping; `None` when the source row had none.
    pub country: Option<String>,
}

impl RecentTx {
    pub(crate) fn key(&self) -> (i64, u64, i64) {
        (self.event_time_us, self.lsn, self.id)
    }
}

/// One debit amount of the rolling history behind the spike statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PastAmount {
    /// For the history TTL, so an inactive user's state expires.
    pub event_time_us: i64,
    pub amount: Decimal,
}

/// A large deposit being watched for a drain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OpenDeposit {
    pub id: i64,
    pub wallet_id: Option<i64>,
    pub event_time_us: i64,
    pub amount: Decimal,
    /// Sum of cash-outs from the wallet since the deposit.
    pub drained: Decimal,
    /// The cash-outs, for the alert.
    pub drain_ids: Vec<i64>,
}

/// Everything the rules remember about one user. Empty means "nothing to remember": the caller deletes the key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserWindows {
    /// Transactions within the longest sliding window plus the allowed lateness, in event-time order.
    pub(crate) recent: Vec<RecentTx>,
    /// The user's last debit amounts, oldest first: the baseline of amount spikes and "large" deposits.
    pub(crate) amounts: VecDeque<PastAmount>,
    /// Large deposits still inside the drain window.
    pub(crate) deposits: Vec<OpenDeposit>,
    /// Per rule (indexed by [`super::Rule::index`]): no alert of that rule before this event time.
    pub(crate) quiet_until_us: [Option<i64>; 5],
}

impl UserWindows {
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
            && self.amounts.is_empty()
            && self.deposits.is_empty()
            && self.quiet_until_us.iter().all(Option::is_none)
    }
}
