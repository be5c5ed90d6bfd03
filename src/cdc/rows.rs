//! Typed views of a row image for the domain logic (enrichment, fraud, data quality): named fields, money as
//! [`rust_decimal::Decimal`], timestamps as epoch microseconds. Built from a validated [`Row`], so the only way
//! to fail is asking for the wrong table.

use super::event::{ExtraField, Row};
use super::tables::{SourceTable, idx};
use crate::value::Value;
use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub full_name: String,
    /// ISO 3166-1 alpha-2 (`char(2)`); not validated here.
    pub country: String,
    pub kyc_status: String,
    pub risk_tier: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    /// Undeclared columns, kept for schema evolution.
    pub extra: Vec<ExtraField>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WalletRow {
    pub id: i64,
    /// Nullable in the source on purpose; a NULL is a data-quality finding, not a decode error.
    pub user_id: Option<i64>,
    pub currency: String,
    pub balance: Decimal,
    pub status: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub extra: Vec<ExtraField>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransactionRow {
    pub id: i64,
    pub wallet_id: Option<i64>,
    pub user_id: Option<i64>,
    pub counterparty_wallet_id: Option<i64>,
    pub kind: String,
    /// No CHECK in the source: may be negative or zero; the data-quality layer decides.
    pub amount: Decimal,
    pub fee: Decimal,
    pub currency: String,
    pub status: String,
    pub country: Option<String>,
    pub merchant: Option<String>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub extra: Vec<ExtraField>,
}

/// A row image as the typed view of its table.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedRow {
    User(UserRow),
    Wallet(WalletRow),
    Transaction(TransactionRow),
}

/// Moves cells out of a row by index. Every getter returns `None` on a type mismatch, which the [`Row`]
/// invariant rules out; it exists so that no input can make this code panic.
struct Cells(Vec<Value>);

impl Cells {
    fn take(&mut self, i: usize) -> Value {
        self.0
            .get_mut(i)
            .map(|v| std::mem::replace(v, Value::Null))
            .unwrap_or(Value::Null)
    }
    fn int(&mut self, i: usize) -> Option<i64> {
        match self.take(i) {
            Value::Int64(v) => Some(v),
            _ => None,
        }
    }
    fn text(&mut self, i: usize) -> Option<String> {
        match self.take(i) {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }
    fn ts(&mut self, i: usize) -> Option<i64> {
        match self.take(i) {
            Value::TimestampTz(v) => Some(v),
            _ => None,
        }
    }
    fn money(&mut self, i: usize, scale: u32) -> Option<Decimal> {
        match self.take(i) {
            Value::Decimal(v) => Decimal::try_from_i128_with_scale(v, scale).ok(),
            _ => None,
        }
    }
}

/// Scale of the `numeric(18,2)` money columns.
const MONEY_SCALE: u32 = 2;

impl Row {
    /// Consumes the row into its table's typed view. `None` only if the row invariant was broken.
    pub fn into_typed(self) -> Option<TypedRow> {
        let table = self.table();
        let (values, extra) = self.into_parts();
        let mut c = Cells(values);
        Some(match table {
            SourceTable::Users => {
                use idx::users::*;
                TypedRow::User(UserRow {
                    id: c.int(ID)?,
                    email: c.text(EMAIL)?,
                    full_name: c.text(FULL_NAME)?,
                    country: c.text(COUNTRY)?,
                    kyc_status: c.text(KYC_STATUS)?,
                    risk_tier: c.text(RISK_TIER)?,
                    created_at_us: c.ts(CREATED_AT)?,
                    updated_at_us: c.ts(UPDATED_AT)?,
                    extra,
                })
            }
            SourceTable::Wallets => {
                use idx::wallets::*;
                TypedRow::Wallet(WalletRow {
                    id: c.int(ID)?,
                    user_id: c.int(USER_ID),
                    currency: c.text(CURRENCY)?,
                    balance: c.money(BALANCE, MONEY_SCALE)?,
                    status: c.text(STATUS)?,
                    created_at_us: c.ts(CREATED_AT)?,
                    updated_at_us: c.ts(UPDATED_AT)?,
                    extra,
                })
            }
            SourceTable::Transactions => {
                use idx::transactions::*;
                TypedRow::Transaction(TransactionRow {
                    id: c.int(ID)?,
                    wallet_id: c.int(WALLET_ID),
                    user_id: c.int(USER_ID),
                    counterparty_wallet_id: c.int(COUNTERPARTY_WALLET_ID),
                    kind: c.text(KIND)?,
                    amount: c.money(AMOUNT, MONEY_SCALE)?,
                    fee: c.money(FEE, MONEY_SCALE)?,
                    currency: c.text(CURRENCY)?,
                    status: c.text(STATUS)?,
                    country: c.text(COUNTRY),
                    merchant: c.text(MERCHANT),
                    created_at_us: c.ts(CREATED_AT)?,
                    updated_at_us: c.ts(UPDATED_AT)?,
                    extra,
                })
            }
        })
    }

    /// The typed view, cloning.
    pub fn typed(&self) -> Option<TypedRow> {
        self.clone().into_typed()
    }
}

impl TypedRow {
    pub fn as_user(&self) -> Option<&UserRow> {
        match self {
            TypedRow::User(r) => Some(r),
            _ => None,
        }
    }
    pub fn as_wallet(&self) -> Option<&WalletRow> {
        match self {
            TypedRow::Wallet(r) => Some(r),
            _ => None,
        }
    }
    pub fn as_transaction(&self) -> Option<&TransactionRow> {
        match self {
            TypedRow::Transaction(r) => Some(r),
            _ => None,
        }
    }
}
