//! The thin PostgreSQL writer: schema migration, the id base, and applying one [`Action`] as one transaction.
//!
//! Contract:
//! - [`PgWriter::apply`] commits all of an action's row changes in one database transaction, or none of them.
//!   Rows are inserted with the ids the model assigned (the model continues from [`PgWriter::id_base`]), and
//!   `created_at`/`updated_at` are the database's `now()`, so that they agree with the commit time that
//!   Debezium reports as event time.
//! - Transient failures (connection loss, serialization failure, deadlock, shutdown) are retried with capped
//!   exponential backoff. Retrying is safe because updates write absolute values and because a unique
//!   violation on a retry means an earlier, ambiguous attempt did commit (the action is all-or-nothing).
//! - The writer assumes it is the only writer of these tables while it runs; an update or delete that finds no
//!   row means the model and the database diverged, and is reported as such rather than ignored.

use super::model::{Action, ActionKind, IdBase};
use super::rows::{RowChange, Table};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// The embedded migrations, applied in order. Each must be idempotent.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_fintech",
    include_str!("../../migrations/0001_fintech.sql"),
)];

/// The live DDL run by [`ActionKind::EvolveSchema`].
pub const EVOLVE_DDL: &str = "ALTER TABLE transactions ADD COLUMN IF NOT EXISTS device_id text";

/// Serialises concurrent `migrate` runs (`CREATE ... IF NOT EXISTS` is not race-free).
const MIGRATE_LOCK_KEY: i64 = 0x6c65_6467_6572; // "ledger"

/// Attempts per action, the first included.
const MAX_ATTEMPTS: u32 = 6;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration {name} failed: {source}")]
    Migrate {
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("reading or advancing the id sequences failed: {0}")]
    IdBase(#[source] sqlx::Error),
    #[error("action {seq} ({kind}) failed after {attempts} attempt(s): {source}")]
    Apply {
        seq: u64,
        kind: ActionKind,
        attempts: u32,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "action {seq} ({kind}): no {table} row with id {id}; the database diverged from the generator's model \
         (is another process writing these tables?)"
    )]
    Diverged {
        seq: u64,
        kind: ActionKind,
        table: Table,
        id: i64,
    },
}

/// Whether retrying the same statement later may succeed.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 40001 serialization failure; 40P01 deadlock; 53: insufficient
            // resources; 57P01-57P03: admin/crash shutdown, cannot connect now.
            c.starts_with("08")
                || c.starts_with("53")
                || matches!(&*c, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Opens a small pool (the generator writes sequentially, one action at a time). With `async_commit` the
/// sessions run with `synchronous_commit = off`: commits no longer wait for the WAL flush, which lifts the
/// per-commit fsync ceiling for load tests. Commit order, and so the CDC stream, is unchanged; a server crash
/// may lose the last few hundred milliseconds of commits.
pub async fn connect(url: &str, async_commit: bool) -> Result<PgPool, PgError> {
    let mut opts = PgConnectOptions::from_str(url).map_err(PgError::InvalidUrl)?;
    if async_commit {
        opts = opts.options([("synchronous_commit", "off")]);
    }
    let mut attempt = 0;
    let mut backoff = BACKOFF_START;
    loop {
        attempt += 1;
        match PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await
        {
            Ok(pool) => return Ok(pool),
            Err(e) if attempt < MAX_ATTEMPTS && is_transient(&e) => {
                tracing::warn!(attempt, error = %e, "connecting to PostgreSQL failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => return Err(PgError::Connect(e)),
        }
    }
}

/// Applies every embedded migration, under an advisory lock. Safe to run repeatedly.
pub async fn migrate(pool: &PgPool) -> Result<(), PgError> {
    let mut conn = pool.acquire().await.map_err(PgError::Connect)?;
    let lock_err = |source| PgError::Migrate {
        name: "advisory lock",
        source,
    };
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATE_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(lock_err)?;
    let mut result = Ok(());
    for &(name, sql) in MIGRATIONS {
        if let Err(source) = sqlx::raw_sql(sql).execute(&mut *conn).await {
            result = Err(PgError::Migrate { name, source });
            break;
        }
        tracing::info!(migration = name, "migration applied");
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATE_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(lock_err)?;
    result
}

/// Writes actions to PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgWriter {
    pool: PgPool,
    /// Whether `transactions.device_id` exists and must be written.
    device_id: bool,
}

impl PgWriter {
    pub fn new(pool: PgPool) -> Self {
        PgWriter {
            pool,
            device_id: false,
        }
    }

    /// The largest id in use per table (or handed out by its sequence), so that the model's ids never collide
    /// with rows from earlier runs.
    pub async fn id_base(&self) -> Result<IdBase, PgError> {
        let (users, wallets, transactions): (i64, i64, i64) = sqlx::query_as(
            "SELECT \
               GREATEST((SELECT COALESCE(MAX(id), 0) FROM users), \
                        (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM users_id_seq)), \
               GREATEST((SELECT COALESCE(MAX(id), 0) FROM wallets), \
                        (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM wallets_id_seq)), \
               GREATEST((SELECT COALESCE(MAX(id), 0) FROM transactions), \
                        (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM transactions_id_seq))",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(PgError::IdBase)?;
        Ok(IdBase {
            users,
            wallets,
            transactions,
        })
    }

    /// Moves the bigserial sequences past the ids the model used, so that later inserts by other clients that
    /// rely on the column default do not collide. Sequences are not part of the logical replication stream.
    pub async fn sync_sequences(&self, ids: IdBase) -> Result<(), PgError> {
        for (table, id) in [
            (Table::Users, ids.users),
            (Table::Wallets, ids.wallets),
            (Table::Transactions, ids.transactions),
        ] {
            if id > 0 {
                // `last_value` is 1 on an unused sequence, so the new value is never below a used one.
                let sql = format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST($1, (SELECT last_value FROM {table}_id_seq)))"
                );
                sqlx::query(&sql)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(PgError::IdBase)?;
            }
        }
        Ok(())
    }

    /// Applies `action` in one database transaction, retrying transient failures.
    pub async fn apply(&mut self, action: &Action) -> Result<(), PgError> {
        let mut attempt = 0;
        let mut backoff = BACKOFF_START;
        loop {
            attempt += 1;
            match self.try_apply(action).await {
                Ok(()) => return Ok(()),
                Err(Attempt::Diverged { table, id }) => {
                    return Err(PgError::Diverged {
                        seq: action.seq,
                        kind: action.kind,
                        table,
                        id,
                    });
                }
                Err(Attempt::Sql(e)) if attempt > 1 && is_unique_violation(&e) => {
                    tracing::warn!(
                        seq = action.seq,
                        "an earlier attempt of this action had committed"
                    );
                    return Ok(());
                }
                Err(Attempt::Sql(e)) if attempt < MAX_ATTEMPTS && is_transient(&e) => {
                    tracing::warn!(seq = action.seq, attempt, error = %e, "transient PostgreSQL error; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(Attempt::Sql(source)) => {
                    return Err(PgError::Apply {
                        seq: action.seq,
                        kind: action.kind,
                        attempts: attempt,
                        source,
                    });
                }
            }
        }
    }

    async fn try_apply(&mut self, action: &Action) -> Result<(), Attempt> {
        if action.kind == ActionKind::EvolveSchema {
            sqlx::query(EVOLVE_DDL).execute(&self.pool).await?;
            self.device_id = true;
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for change in &action.changes {
            let rows = self.write(&mut tx, change).await?;
            if rows != 1 {
                return Err(Attempt::Diverged {
                    table: change.table(),
                    id: change.row_id(),
                });
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn write(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        change: &RowChange,
    ) -> Result<u64, sqlx::Error> {
        let done = match change {
            RowChange::InsertUser(u) => {
                sqlx::query(
                    "INSERT INTO users (id, email, full_name, country, kyc_status, risk_tier) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(u.id.0)
                .bind(&u.email)
                .bind(&u.full_name)
                .bind(u.country)
                .bind(u.kyc_status.as_str())
                .bind(u.risk_tier.as_str())
                .execute(&mut **tx)
                .await?
            }
            RowChange::UpdateUser { id, profile } => {
                sqlx::query(
                    "UPDATE users SET email = $2, kyc_status = $3, risk_tier = $4, updated_at = now() WHERE id = $1",
                )
                .bind(id.0)
                .bind(&profile.email)
                .bind(profile.kyc_status.as_str())
                .bind(profile.risk_tier.as_str())
                .execute(&mut **tx)
                .await?
            }
            RowChange::DeleteUser(id) => {
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(id.0)
                    .execute(&mut **tx)
                    .await?
            }
            RowChange::InsertWallet(w) => {
                sqlx::query("INSERT INTO wallets (id, user_id, currency, balance, status) VALUES ($1, $2, $3, $4, $5)")
                    .bind(w.id.0)
                    .bind(w.user_id.0)
                    .bind(w.currency)
                    .bind(w.balance)
                    .bind(w.status.as_str())
                    .execute(&mut **tx)
                    .await?
            }
            RowChange::SetWalletBalance { id, balance } => {
                sqlx::query("UPDATE wallets SET balance = $2, updated_at = now() WHERE id = $1")
                    .bind(id.0)
                    .bind(balance)
                    .execute(&mut **tx)
                    .await?
            }
            RowChange::SetWalletStatus { id, status } => {
                sqlx::query("UPDATE wallets SET status = $2, updated_at = now() WHERE id = $1")
                    .bind(id.0)
                    .bind(status.as_str())
                    .execute(&mut **tx)
                    .await?
            }
            RowChange::DeleteWallet(id) => {
                sqlx::query("DELETE FROM wallets WHERE id = $1")
                    .bind(id.0)
                    .execute(&mut **tx)
                    .await?
            }
            RowChange::InsertTransaction(t) => {
                // The statement text differs only by the evolved column; both are cached as prepared statements.
                let sql = if self.device_id {
                    "INSERT INTO transactions (id, wallet_id, user_id, counterparty_wallet_id, kind, amount, fee, \
                     currency, status, country, merchant, device_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                } else {
                    "INSERT INTO transactions (id, wallet_id, user_id, counterparty_wallet_id, kind, amount, fee, \
                     currency, status, country, merchant) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                };
                let q = sqlx::query(sql)
                    .bind(t.id.0)
                    .bind(t.wallet_id.0)
                    .bind(t.user_id.map(|u| u.0))
                    .bind(t.counterparty_wallet_id.map(|w| w.0))
                    .bind(t.kind.as_str())
                    .bind(t.amount)
                    .bind(t.fee)
                    .bind(t.currency)
                    .bind(t.status.as_str())
                    .bind(t.country)
                    .bind(t.merchant);
                let q = if self.device_id { q.bind(t.device_id.as_deref()) } else { q };
                q.execute(&mut **tx).await?
            }
            RowChange::SetTransactionStatus { id, status } => {
                sqlx::query("UPDATE transactions SET status = $2, updated_at = now() WHERE id = $1")
                    .bind(id.0)
                    .bind(status.as_str())
                    .execute(&mut **tx)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }
}

/// The outcome of one failed attempt.
enum Attempt {
    Sql(sqlx::Error),
    Diverged { table: Table, id: i64 },
}

impl From<sqlx::Error> for Attempt {
    fn from(e: sqlx::Error) -> Self {
        Attempt::Sql(e)
    }
}
