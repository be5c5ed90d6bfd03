//! The source tables and THE declaration of their columns.
//!
//! [`SourceTable::columns`] is the single place where the shape of `migrations/0001_fintech.sql` is restated in
//! Rust. The decoder aligns every row image to it, the typed row views read it by index, and downstream output
//! schemas (bronze changelog = metadata columns + these columns + evolved extras) are derived from it. A column
//! added to the migration is added here once; until then it arrives as an extra field and is not lost.

use crate::value::{ColumnSpec, ColumnType};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The PostgreSQL schema all source tables live in; it is the middle part of every Debezium topic name.
pub const SOURCE_SCHEMA: &str = "public";

/// `numeric(18,2)`: money columns.
pub const MONEY: ColumnType = ColumnType::Decimal {
    precision: 18,
    scale: 2,
};

/// Sums of money columns (P&L figures): the same scale, with room for any number of `numeric(18,2)` terms.
pub const MONEY_SUM: ColumnType = ColumnType::Decimal {
    precision: 38,
    scale: 2,
};

/// One declared source column. A `&'static` twin of [`ColumnSpec`] so the declaration can be a `const`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceColumn {
    /// Column name exactly as PostgreSQL (and so Debezium) spells it.
    pub name: &'static str,
    /// Logical type; for `numeric(p,s)` it fixes the scale every decoded decimal is rescaled to.
    pub ty: ColumnType,
    /// Whether the migration allows NULL. A NULL (or absent field) in a NOT NULL column is rejected by the
    /// decoder as structurally impossible; NULLs in nullable columns are data-quality business.
    pub nullable: bool,
}

impl SourceColumn {
    const fn new(name: &'static str, ty: ColumnType, nullable: bool) -> Self {
        SourceColumn { name, ty, nullable }
    }

    pub fn to_spec(&self) -> ColumnSpec {
        ColumnSpec::new(self.name, self.ty, self.nullable)
    }
}

use ColumnType::{Int64, Text, TimestampTz};

const USERS: &[SourceColumn] = &[
    SourceColumn::new("id", Int64, false),
    SourceColumn::new("email", Text, false),
    SourceColumn::new("full_name", Text, false),
    SourceColumn::new("country", Text, false),
    SourceColumn::new("kyc_status", Text, false),
    SourceColumn::new("risk_tier", Text, false),
    SourceColumn::new("created_at", TimestampTz, false),
    SourceColumn::new("updated_at", TimestampTz, false),
];

const WALLETS: &[SourceColumn] = &[
    SourceColumn::new("id", Int64, false),
    SourceColumn::new("user_id", Int64, true),
    SourceColumn::new("currency", Text, false),
    SourceColumn::new("balance", MONEY, false),
    SourceColumn::new("status", Text, false),
    SourceColumn::new("created_at", TimestampTz, false),
    SourceColumn::new("updated_at", TimestampTz, false),
];

const TRANSACTIONS: &[SourceColumn] = &[
    SourceColumn::new("id", Int64, false),
    SourceColumn::new("wallet_id", Int64, true),
    SourceColumn::new("user_id", Int64, true),
    SourceColumn::new("counterparty_wallet_id", Int64, true),
    SourceColumn::new("kind", Text, false),
    SourceColumn::new("amount", MONEY, false),
    SourceColumn::new("fee", MONEY, false),
    SourceColumn::new("currency", Text, false),
    SourceColumn::new("status", Text, false),
    SourceColumn::new("country", Text, true),
    SourceColumn::new("merchant", Text, true),
    SourceColumn::new("created_at", TimestampTz, false),
    SourceColumn::new("updated_at", TimestampTz, false),
];

/// Column positions in [`SourceTable::columns`], for the typed row views. A unit test checks them against the
/// declaration so the two cannot drift apart silently.
pub(crate) mod idx {
    pub mod users {
        pub const ID: usize = 0;
        pub const EMAIL: usize = 1;
        pub const FULL_NAME: usize = 2;
        pub const COUNTRY: usize = 3;
        pub const KYC_STATUS: usize = 4;
        pub const RISK_TIER: usize = 5;
        pub const CREATED_AT: usize = 6;
        pub const UPDATED_AT: usize = 7;
    }
    pub mod wallets {
        pub const ID: usize = 0;
        pub const USER_ID: usize = 1;
        pub const CURRENCY: usize = 2;
        pub const BALANCE: usize = 3;
        pub const STATUS: usize = 4;
        pub const CREATED_AT: usize = 5;
        pub const UPDATED_AT: usize = 6;
    }
    pub mod transactions {
        pub const ID: usize = 0;
        pub const WALLET_ID: usize = 1;
        pub const USER_ID: usize = 2;
        pub const COUNTERPARTY_WALLET_ID: usize = 3;
        pub const KIND: usize = 4;
        pub const AMOUNT: usize = 5;
        pub const FEE: usize = 6;
        pub const CURRENCY: usize = 7;
        pub const STATUS: usize = 8;
        pub const COUNTRY: usize = 9;
        pub const MERCHANT: usize = 10;
        pub const CREATED_AT: usize = 11;
        pub const UPDATED_AT: usize = 12;
    }
}

/// A captured PostgreSQL table. The decoder takes this, not a topic name, because the topic prefix is
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SourceTable {
    Users,
    Wallets,
    Transactions,
}

impl SourceTable {
    pub const ALL: [SourceTable; 3] = [
        SourceTable::Users,
        SourceTable::Wallets,
        SourceTable::Transactions,
    ];

    /// The PostgreSQL table name (also Debezium's `source.table`).
    pub fn name(self) -> &'static str {
        match self {
            SourceTable::Users => "users",
            SourceTable::Wallets => "wallets",
            SourceTable::Transactions => "transactions",
        }
    }

    /// The Debezium topic for this table: `<prefix>.public.<table>`.
    pub fn topic(self, prefix: &str) -> String {
        format!("{prefix}.{SOURCE_SCHEMA}.{}", self.name())
    }

    /// The table whose Debezium topic is `topic` under `prefix`; `None` for anything else (heartbeats,
    /// other schemas, other prefixes).
    pub fn from_topic(prefix: &str, topic: &str) -> Option<SourceTable> {
        let rest = topic.strip_prefix(prefix)?.strip_prefix('.')?;
        let table = rest.strip_prefix(SOURCE_SCHEMA)?.strip_prefix('.')?;
        SourceTable::ALL.into_iter().find(|t| t.name() == table)
    }

    /// The declared columns, in table order.
    pub fn columns(self) -> &'static [SourceColumn] {
        match self {
            SourceTable::Users => USERS,
            SourceTable::Wallets => WALLETS,
            SourceTable::Transactions => TRANSACTIONS,
        }
    }

    /// The declaration as owned [`ColumnSpec`]s, for building output schemas.
    pub fn column_specs(self) -> Vec<ColumnSpec> {
        self.columns().iter().map(SourceColumn::to_spec).collect()
    }

    /// Position of `name` in [`Self::columns`].
    pub fn column_index(self, name: &str) -> Option<usize> {
        self.columns().iter().position(|c| c.name == name)
    }

    /// The primary-key column (`bigserial`, never NULL).
    pub fn pk_column(self) -> &'static str {
        "id"
    }

    pub fn pk_index(self) -> usize {
        0
    }

    /// The column holding the owning user's id: the Kafka key and partitioning column. For `users` it is the
    /// primary key itself; elsewhere it is nullable (upstream bugs exist, the data-quality layer catches them).
    pub fn user_id_column(self) -> &'static str {
        match self {
            SourceTable::Users => "id",
            SourceTable::Wallets | SourceTable::Transactions => "user_id",
        }
    }

    pub fn user_id_index(self) -> usize {
        match self {
            SourceTable::Users => idx::users::ID,
            SourceTable::Wallets => idx::wallets::USER_ID,
            SourceTable::Transactions => idx::transactions::USER_ID,
        }
    }
}

impl fmt::Display for SourceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_reject_foreign_names() {
        for t in SourceTable::ALL {
            assert_eq!(
                SourceTable::from_topic("fintech", &t.topic("fintech")),
                Some(t)
            );
            assert_eq!(SourceTable::from_topic("other", &t.topic("fintech")), None);
        }
        assert_eq!(SourceTable::Users.topic("fintech"), "fintech.public.users");
        assert_eq!(
            SourceTable::from_topic("fintech", "__debezium-heartbeat.fintech"),
            None
        );
        assert_eq!(
            SourceTable::from_topic("fintech", "fintech.public.accounts"),
            None
        );
        assert_eq!(
            SourceTable::from_topic("fintech", "fintech.audit.users"),
            None
        );
        assert_eq!(
            SourceTable::from_topic("fintech", "fintechx.public.users"),
            None
        );
        assert_eq!(
            SourceTable::from_topic("fin.tech", "fin.tech.public.wallets"),
            Some(SourceTable::Wallets)
        );
    }

    #[test]
    fn declaration_matches_the_migration() {
        let migration = include_str!("../../migrations/0001_fintech.sql");
        for t in SourceTable::ALL {
            let start = migration
                .find(&format!("CREATE TABLE IF NOT EXISTS {} (", t.name()))
                .expect("table in migration");
            let body = &migration[start..];
            let body = &body[body.find('(').expect("(") + 1..body.find(");").expect(");")];
            let cols: Vec<(String, String)> = body
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (name, rest) = l.split_once(char::is_whitespace).expect("column line");
                    (
                        name.to_owned(),
                        rest.trim().trim_end_matches(',').to_owned(),
                    )
                })
                .collect();
            let declared: Vec<&str> = t.columns().iter().map(|c| c.name).collect();
            let migrated: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(declared, migrated, "{t}: column names/order");
            for (col, (_, sql)) in t.columns().iter().zip(&cols) {
                let sql_ty = sql.split_whitespace().next().expect("type");
                let expected = match sql_ty {
                    "bigserial" | "bigint" => Int64,
                    "text" | "char(2)" | "char(3)" => Text,
                    "timestamptz" => TimestampTz,
                    "numeric(18,2)" => MONEY,
                    other => panic!("unmapped SQL type {other}"),
                };
                assert_eq!(col.ty, expected, "{t}.{}", col.name);
                let not_null = sql.contains("NOT NULL") || sql.contains("PRIMARY KEY");
                assert_eq!(col.nullable, !not_null, "{t}.{} nullability", col.name);
            }
        }
    }

    #[test]
    fn index_constants_match_the_declaration() {
        use idx::*;
        let check = |t: SourceTable, pairs: &[(usize, &str)]| {
            for &(i, name) in pairs {
                assert_eq!(t.columns()[i].name, name, "{t}[{i}]");
            }
            assert_eq!(
                pairs.len(),
                t.columns().len(),
                "{t}: every column has a constant"
            );
        };
        check(
            SourceTable::Users,
            &[
                (users::ID, "id"),
                (users::EMAIL, "email"),
                (users::FULL_NAME, "full_name"),
                (users::COUNTRY, "country"),
                (users::KYC_STATUS, "kyc_status"),
                (users::RISK_TIER, "risk_tier"),
                (users::CREATED_AT, "created_at"),
                (users::UPDATED_AT, "updated_at"),
            ],
        );
        check(
            SourceTable::Wallets,
            &[
                (wallets::ID, "id"),
                (wallets::USER_ID, "user_id"),
                (wallets::CURRENCY, "currency"),
                (wallets::BALANCE, "balance"),
                (wallets::STATUS, "status"),
                (wallets::CREATED_AT, "created_at"),
                (wallets::UPDATED_AT, "updated_at"),
            ],
        );
        check(
            SourceTable::Transactions,
            &[
                (transactions::ID, "id"),
                (transactions::WALLET_ID, "wallet_id"),
                (transactions::USER_ID, "user_id"),
                (
                    transactions::COUNTERPARTY_WALLET_ID,
                    "counterparty_wallet_id",
                ),
                (transactions::KIND, "kind"),
                (transactions::AMOUNT, "amount"),
                (transactions::FEE, "fee"),
                (transactions::CURRENCY, "currency"),
                (transactions::STATUS, "status"),
                (transactions::COUNTRY, "country"),
                (transactions::MERCHANT, "merchant"),
                (transactions::CREATED_AT, "created_at"),
                (transactions::UPDATED_AT, "updated_at"),
            ],
        );
        for t in SourceTable::ALL {
            assert_eq!(t.columns()[t.pk_index()].name, t.pk_column());
            assert_eq!(t.columns()[t.user_id_index()].name, t.user_id_column());
        }
    }
}
