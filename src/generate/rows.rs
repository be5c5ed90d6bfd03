//! Typed rows and row changes of the source schema (`migrations/0001_fintech.sql`).
//!
//! A [`RowChange`] is exactly one row-level change (one insert, update or delete of one row), which is also what
//! one Debezium event describes and what the rate limiter counts. The model produces them; the writer maps each
//! to one SQL statement.
//!
//! Balance semantics (the invariant the generator maintains and tests check):
//! every wallet's `balance` equals the sum of [`TransactionRow::balance_effect`] over its transactions whose
//! status is neither `failed` nor `reversed`. Wallets start at zero. A transaction's effect is applied when it is
//! inserted (pending funds are held at once), and undone in the same database transaction that moves it to
//! `failed` or `reversed`. Malformed rows obey the same arithmetic (their defects are in labels and signs, not in
//! the bookkeeping), so the invariant holds for every row.

use rust_decimal::Decimal;
use serde::Serialize;
use std::fmt;

macro_rules! id_newtype {
    ($($(#[$m:meta])* $name:ident),*) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

id_newtype!(
    /// `users.id`.
    UserId,
    /// `wallets.id`.
    WalletId,
    /// `transactions.id`.
    TransactionId
);

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            /// The value stored in the database column.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(
    /// `users.kyc_status`.
    KycStatus { Pending => "pending", Verified => "verified", Rejected => "rejected" }
);
str_enum!(
    /// `users.risk_tier`.
    RiskTier { Low => "low", Medium => "medium", High => "high" }
);
str_enum!(
    /// `wallets.status`.
    WalletStatus { Active => "active", Frozen => "frozen" }
);
str_enum!(
    /// `transactions.kind`. Transfers are two rows, one per side, linked by `counterparty_wallet_id`.
    TxKind {
        Deposit => "deposit",
        Withdrawal => "withdrawal",
        TransferOut => "transfer_out",
        TransferIn => "transfer_in",
        Payment => "payment",
        Refund => "refund",
        Chargeback => "chargeback",
    }
);
str_enum!(
    /// `transactions.status`. Only `pending` ever changes; the other three are final.
    TxStatus { Pending => "pending", Settled => "settled", Failed => "failed", Reversed => "reversed" }
);
str_enum!(
    /// The three source tables.
    Table { Users => "users", Wallets => "wallets", Transactions => "transactions" }
);
str_enum!(
    /// The kind of a row change, as Debezium's `op` (c/u/d) would report it.
    Op { Insert => "insert", Update => "update", Delete => "delete" }
);

impl TxKind {
    /// Whether the transaction adds money to its wallet (otherwise it takes `amount + fee`).
    pub fn is_credit(self) -> bool {
        matches!(
            self,
            TxKind::Deposit | TxKind::TransferIn | TxKind::Refund | TxKind::Chargeback
        )
    }
}

impl TxStatus {
    /// Whether a transaction in this status contributes its effect to the wallet balance.
    pub fn counts_toward_balance(self) -> bool {
        !matches!(self, TxStatus::Failed | TxStatus::Reversed)
    }
}

/// A row of `users`. `created_at`/`updated_at` are left to the database (`now()`), see the module docs of
/// [`crate::generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub full_name: String,
    /// ISO 3166-1 alpha-2; the user's home country, which normal transactions mostly carry too.
    pub country: &'static str,
    pub kyc_status: KycStatus,
    pub risk_tier: RiskTier,
}

/// The mutable profile of a user; a profile update rewrites all of it in one `UPDATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub email: String,
    pub kyc_status: KycStatus,
    pub risk_tier: RiskTier,
}

/// A row of `wallets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRow {
    pub id: WalletId,
    pub user_id: UserId,
    /// ISO 4217; transactions on the wallet use it unless the row is malformed on purpose.
    pub currency: &'static str,
    pub balance: Decimal,
    pub status: WalletStatus,
}

/// A row of `transactions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRow {
    pub id: TransactionId,
    pub wallet_id: WalletId,
    /// The wallet owner; `None` only in rows made malformed on purpose.
    pub user_id: Option<UserId>,
    /// The other side of a transfer.
    pub counterparty_wallet_id: Option<WalletId>,
    pub kind: TxKind,
    /// Positive in well-formed rows; zero or negative in rows made malformed on purpose.
    pub amount: Decimal,
    pub fee: Decimal,
    /// The wallet's currency, or `XXX` in rows made malformed on purpose.
    pub currency: &'static str,
    pub status: TxStatus,
    pub country: Option<&'static str>,
    pub merchant: Option<&'static str>,
    /// Only filled once the schema has evolved (`--evolve-after`); the column does not exist before.
    pub device_id: Option<String>,
}

impl TransactionRow {
    /// The signed change this transaction makes to its wallet's balance while it counts (see the module docs).
    pub fn balance_effect(&self) -> Decimal {
        effect(self.kind, self.amount, self.fee)
    }
}

/// The signed balance effect of a transaction of `kind`: credits add `amount`, debits take `amount + fee`.
pub fn effect(kind: TxKind, amount: Decimal, fee: Decimal) -> Decimal {
    if kind.is_credit() {
        amount
    } else {
        -(amount + fee)
    }
}

/// One row-level change. Updates carry absolute new values (never deltas), so re-applying a change after an
/// ambiguous commit cannot double-count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    InsertUser(UserRow),
    UpdateUser { id: UserId, profile: UserProfile },
    DeleteUser(UserId),
    InsertWallet(WalletRow),
    SetWalletBalance { id: WalletId, balance: Decimal },
    SetWalletStatus { id: WalletId, status: WalletStatus },
    DeleteWallet(WalletId),
    InsertTransaction(TransactionRow),
    SetTransactionStatus { id: TransactionId, status: TxStatus },
}

impl RowChange {
    pub fn table(&self) -> Table {
        match self {
            RowChange::InsertUser(_) | RowChange::UpdateUser { .. } | RowChange::DeleteUser(_) => {
                Table::Users
            }
            RowChange::InsertWallet(_)
            | RowChange::SetWalletBalance { .. }
            | RowChange::SetWalletStatus { .. }
            | RowChange::DeleteWallet(_) => Table::Wallets,
            RowChange::InsertTransaction(_) | RowChange::SetTransactionStatus { .. } => {
                Table::Transactions
            }
        }
    }

    pub fn op(&self) -> Op {
        match self {
            RowChange::InsertUser(_)
            | RowChange::InsertWallet(_)
            | RowChange::InsertTransaction(_) => Op::Insert,
            RowChange::UpdateUser { .. }
            | RowChange::SetWalletBalance { .. }
            | RowChange::SetWalletStatus { .. }
            | RowChange::SetTransactionStatus { .. } => Op::Update,
            RowChange::DeleteUser(_) | RowChange::DeleteWallet(_) => Op::Delete,
        }
    }

    /// The primary key of the changed row.
    pub fn row_id(&self) -> i64 {
        match self {
            RowChange::InsertUser(u) => u.id.0,
            RowChange::UpdateUser { id, .. } | RowChange::DeleteUser(id) => id.0,
            RowChange::InsertWallet(w) => w.id.0,
            RowChange::SetWalletBalance { id, .. }
            | RowChange::SetWalletStatus { id, .. }
            | RowChange::DeleteWallet(id) => id.0,
            RowChange::InsertTransaction(t) => t.id.0,
            RowChange::SetTransactionStatus { id, .. } => id.0,
        }
    }
}
