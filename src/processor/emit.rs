//! The watermark-driven half of a partition: transaction changes whose watermark has passed leave the wait, are
//! joined with their user and wallet, and feed the enriched table, the fraud windows and the P&L minutes.
//!
//! Everything here reads and writes the partition's state through [`PartitionStore`] only, so it is checkpointed
//! with the offsets like the rest of the partition, and it is exactly-once by the same protocol.

use super::{
    META_KEYSPACE, ProcessError, Processor, USERS_KEYSPACE, WAIT_KEYSPACE, WALLETS_KEYSPACE,
    WATERMARKS_KEY,
};
use crate::cdc::{Op, SourceTable};
use crate::dq::RuleSet;
use crate::enrich::{self, History, UserDim, WaitingTx, WalletDim};
use crate::fraud::{self, FraudEngine, TxFacts, UserWindows};
use crate::metrics;
use crate::pnl::{self, PnlAgg};
use crate::sink::TableDef;
use crate::value::Value;
use crate::watermark::Watermarks;
use ledgerstream_state::{KeyRange, PartitionStore, PartitionStoreExt, WriteBatch};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

/// Open P&L minutes, keyed by [`pnl::key`].
const PNL_KEYSPACE: &str = "pnl";
/// Fraud windows per user ([`UserWindows`]), keyed by user id.
const FRAUD_KEYSPACE: &str = "fraud";

/// Money columns are `numeric(18,2)`.
fn money(unscaled: i128) -> rust_decimal::Decimal {
    rust_decimal::Decimal::try_from_i128_with_scale(unscaled, 2).unwrap_or_default()
}

/// Settings of the stateful stages, from config.
#[derive(Debug, Clone)]
pub struct StageSettings {
    /// Longest a transaction change waits for a quiet topic, in event time (see [`crate::watermark`]).
    pub enrich_max_delay: Duration,
    /// How long after a minute ends its P&L row waits for late changes before it is final.
    pub pnl_allowed_lateness: Duration,
    /// Data-quality rules checked on every row before ingestion, and on what each snapshot added.
    pub dq: Arc<RuleSet>,
    /// What a failed post-write check does.
    pub dq_post_write_policy: crate::dq::PostWritePolicy,
    /// The fraud rules, evaluated on each new transaction in event-time order.
    pub fraud: Arc<FraudEngine>,
    /// Per source table: what a column type change Iceberg cannot express does (`[schema]`).
    pub type_change: std::collections::BTreeMap<SourceTable, crate::changelog::TypeChangePolicy>,
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings {
            enrich_max_delay: Duration::from_secs(5),
            pnl_allowed_lateness: Duration::from_secs(30),
            dq: Arc::new(crate::dq::compile(&crate::dq::DqConfig::default()).unwrap_or_default()),
            dq_post_write_policy: crate::dq::PostWritePolicy::Alert,
            fraud: Arc::new(FraudEngine::new(crate::fraud::FraudConfig::default())),
            type_change: Default::default(),
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl StageSettings {
    pub fn type_change_policy(&self, table: SourceTable) -> crate::changelog::TypeChangePolicy {
        self.type_change.get(&table).copied().unwrap_or_default()
    }

    pub(super) fn max_delay_us(&self) -> i64 {
        micros(self.enrich_max_delay)
    }

    /// How far behind the watermark dimension versions are kept: a change still waiting, or arriving within the
    /// lateness bounds, must find the version it should see.
    pub(super) fn dimension_retention_us(&self) -> i64 {
        micros(self.enrich_max_delay)
            .saturating_add(micros(self.pnl_allowed_lateness))
            .saturating_add(60_000_000)
    }
}

/// Lazily loaded dimension histories for one emission pass.
struct Dims<'a> {
    store: &'a dyn PartitionStore,
    users: HashMap<i64, Option<History<UserDim>>>,
    wallets: HashMap<i64, Option<History<WalletDim>>>,
}

impl Dims<'_> {
    fn user(&mut self, id: Option<i64>) -> Result<Option<&History<UserDim>>, ProcessError> {
        let Some(id) = id else { return Ok(None) };
        if !self.users.contains_key(&id) {
            let h = self.store.get_typed(USERS_KEYSPACE, &id.to_be_bytes())?;
            self.users.insert(id, h);
        }
        Ok(self.users.get(&id).and_then(Option::as_ref))
    }

    fn wallet(&mut self, id: Option<i64>) -> Result<Option<&History<WalletDim>>, ProcessError> {
        let Some(id) = id else { return Ok(None) };
        if !self.wallets.contains_key(&id) {
            let h = self.store.get_typed(WALLETS_KEYSPACE, &id.to_be_bytes())?;
            self.wallets.insert(id, h);
        }
        Ok(self.wallets.get(&id).and_then(Option::as_ref))
    }
}

fn int(row: &crate::cdc::Row, name: &str) -> Option<i128> {
    match row.get(name) {
        Some(Value::Decimal(v)) => Some(*v),
        _ => None,
    }
}

fn text<'r>(row: &'r crate::cdc::Row, name: &str) -> &'r str {
    match row.get(name) {
        Some(Value::Text(v)) => v,
        _ => "",
    }
}

impl Processor {
    /// The definition of a derived table with the columns known now.
    pub(super) fn derived_def(&self, table: &str) -> TableDef {
        match table {
            enrich::ENRICHED_TABLE => enrich::enriched_def(&self.transaction_extras()),
            fraud::ALERTS_TABLE => fraud::alerts_table_def(),
            _ => pnl::pnl_def(),
        }
    }

    fn transaction_extras(&self) -> Vec<crate::value::ColumnSpec> {
        self.schemas
            .get(&SourceTable::Transactions)
            .map(|s| s.extras.clone())
            .unwrap_or_default()
    }

    /// Emits every waiting transaction change at or before `now` (the watermark just reached; `previous` is the
    /// one before), in event-time order, then closes the P&L minutes the watermark has passed. Returns the number
    /// of enriched rows.
    pub(super) fn emit_ready(
        &mut self,
        store: &mut dyn PartitionStore,
        watermarks: &mut Watermarks,
        previous: i64,
        now: i64,
    ) -> Result<usize, ProcessError> {
        let mut wb = WriteBatch::new();
        let ready: Vec<(Vec<u8>, WaitingTx)> = if now == i64::MIN {
            Vec::new()
        } else {
            store.scan_typed(
                WAIT_KEYSPACE,
                &KeyRange {
                    start: Bound::Unbounded,
                    end: Bound::Included(enrich::wait_key_upper_bound(now).to_vec()),
                },
            )?
        };
        let extras = self.transaction_extras();
        let lateness = micros(self.stages.pnl_allowed_lateness);
        // Minutes before this were closed by earlier passes: what lands there now is a late adjustment.
        let closed_before = if previous == i64::MIN {
            i64::MIN
        } else {
            pnl::first_open_minute(previous, lateness)
        };
        let mut open: BTreeMap<Vec<u8>, PnlAgg> = BTreeMap::new();
        let reader: &dyn PartitionStore = &*store;
        let mut dims = Dims {
            store: reader,
            users: HashMap::new(),
            wallets: HashMap::new(),
        };
        let emitted = ready.len();
        let mut windows: HashMap<i64, UserWindows> = HashMap::new();
        for (key, tx) in ready {
            wb.delete(WAIT_KEYSPACE, &key)?;
            let users = dims.user(tx.user_id())?.cloned();
            let wallets = dims.wallet(tx.wallet_id())?;
            let joined = enrich::join(&tx, users.as_ref(), wallets);
            // Referential rules, as of the transaction's position (other rules passed at ingestion).
            if tx.op != Op::Delete {
                let refs = |t: SourceTable, _id: i64| match t {
                    SourceTable::Users => joined.user.is_some(),
                    SourceTable::Wallets => joined.wallet.is_some(),
                    SourceTable::Transactions => true,
                };
                let violations = self.stages.dq.check(&tx.row, &refs);
                if let Some(first) = violations.first() {
                    for v in &violations {
                        metrics::dq_rejected(&v.rule);
                    }
                    self.quarantine_waiting(&tx, &first.rule, &violations);
                    continue;
                }
            }
            metrics::enriched(joined.status.as_str());
            if matches!(tx.op, Op::Create | Op::Read)
                && let Some(user_id) = tx.user_id()
                && let Some(crate::cdc::TypedRow::Transaction(t)) = tx.row.typed()
            {
                let facts = TxFacts {
                    transaction_id: t.id,
                    lsn: tx.lsn,
                    event_time_us: tx.source_ts_us,
                    user_id,
                    wallet_id: t.wallet_id,
                    kind: t.kind,
                    status: t.status,
                    amount: t.amount,
                    fee: t.fee,
                    currency: t.currency,
                    country: t.country,
                    user_country: joined.user.map(|u| u.country.clone()),
                    wallet_balance_after: joined.wallet.map(|w| money(w.balance_unscaled)),
                };
                if let std::collections::hash_map::Entry::Vacant(e) = windows.entry(user_id) {
                    let state: UserWindows = reader
                        .get_typed(FRAUD_KEYSPACE, &user_id.to_be_bytes())?
                        .unwrap_or_default();
                    e.insert(state);
                }
                if let Some(state) = windows.get_mut(&user_id) {
                    match self.stages.fraud.on_transaction(state, &facts, previous) {
                        fraud::Outcome::TooLate => metrics::late_event("fraud"),
                        outcome => {
                            let rows = self.derived.entry(fraud::ALERTS_TABLE).or_default();
                            for alert in outcome.into_alerts() {
                                rows.push(alert.to_row(self.partition.0));
                            }
                        }
                    }
                }
            }
            let row = enrich::enriched_row(&tx, self.partition.0, &joined, &extras);
            self.derived
                .entry(enrich::ENRICHED_TABLE)
                .or_default()
                .push(row);

            let input = pnl::PnlInput {
                is_insert: matches!(tx.op, Op::Create | Op::Read),
                is_update: tx.op == Op::Update,
                kind: text(&tx.row, "kind"),
                status: text(&tx.row, "status"),
                currency: text(&tx.row, "currency"),
                amount_unscaled: int(&tx.row, "amount").unwrap_or(0),
                fee_unscaled: int(&tx.row, "fee").unwrap_or(0),
                source_ts_us: tx.source_ts_us,
            };
            if let Some((minute, delta)) = pnl::contribution(&input) {
                if minute < closed_before {
                    metrics::late_event("pnl");
                    self.late_pnl
                        .entry((minute, input.currency.to_string()))
                        .or_default()
                        .add(&delta);
                } else {
                    let k = pnl::key(minute, input.currency);
                    if !open.contains_key(&k) {
                        let agg: PnlAgg = reader.get_typed(PNL_KEYSPACE, &k)?.unwrap_or_default();
                        open.insert(k.clone(), agg);
                    }
                    if let Some(agg) = open.get_mut(&k) {
                        agg.add(&delta);
                    }
                }
            }
        }
        for (k, agg) in &open {
            wb.put_typed(PNL_KEYSPACE, k, agg)?;
        }
        // Retention by watermark: what no rule can need any more is dropped, and an empty user is forgotten.
        for (user, mut state) in windows {
            if self.stages.fraud.expire(&mut state, now) {
                wb.delete(FRAUD_KEYSPACE, &user.to_be_bytes())?;
            } else {
                wb.put_typed(FRAUD_KEYSPACE, &user.to_be_bytes(), &state)?;
            }
        }
        wb.put_typed(META_KEYSPACE, WATERMARKS_KEY, &*watermarks)?;
        store.write(wb)?;
        self.waiting = self.waiting.saturating_sub(emitted);
        self.close_pnl(store, now, lateness)?;
        metrics::partition_watermark(self.partition, now, self.waiting);
        Ok(emitted)
    }

    /// Quarantines a transaction change that failed a referential rule after its wait. Its raw Kafka payload is no
    /// longer at hand, so the payload column holds the decoded row image as JSON.
    fn quarantine_waiting(
        &mut self,
        tx: &WaitingTx,
        rule: &str,
        violations: &[crate::dq::Violation],
    ) {
        let topic = self
            .inputs
            .iter()
            .find(|i| i.table == SourceTable::Transactions)
            .map(|i| i.topic.clone())
            .unwrap_or_default();
        let message = violations
            .iter()
            .map(|v| format!("{}: {}", v.rule, v.reason))
            .collect::<Vec<_>>()
            .join("; ");
        metrics::quarantined(
            "dq_rule",
            &topic,
            self.partition.0,
            tx.kafka_offset,
            &message,
        );
        let payload = serde_json::to_vec(&tx.row).unwrap_or_default();
        let row = crate::changelog::QuarantineRecord {
            kafka_ts_ms: Some(tx.source_ts_us / 1000),
            topic: &topic,
            partition: self.partition.0,
            offset: tx.kafka_offset,
            source_table: Some(SourceTable::Transactions.name()),
            lsn: Some(tx.lsn as i64),
            kind: "dq_rule",
            rule: Some(rule),
            message,
            key: None,
            payload: Some(&payload),
        }
        .into_row();
        self.quarantine.push(row);
    }

    /// Emits and forgets the P&L minutes the watermark has closed.
    fn close_pnl(
        &mut self,
        store: &mut dyn PartitionStore,
        now: i64,
        lateness: i64,
    ) -> Result<(), ProcessError> {
        if now == i64::MIN {
            return Ok(());
        }
        let first_open = pnl::first_open_minute(now, lateness);
        let closed: Vec<(Vec<u8>, PnlAgg)> = store.scan_typed(
            PNL_KEYSPACE,
            &KeyRange {
                start: Bound::Unbounded,
                end: Bound::Excluded(pnl::key(first_open, "")),
            },
        )?;
        if closed.is_empty() {
            return Ok(());
        }
        let mut wb = WriteBatch::new();
        for (k, agg) in closed {
            wb.delete(PNL_KEYSPACE, &k)?;
            let Some((minute, currency)) = pnl::parse_key(&k) else {
                continue;
            };
            if agg.is_zero() {
                continue;
            }
            self.derived
                .entry(pnl::PNL_TABLE)
                .or_default()
                .push(pnl::pnl_row(
                    minute,
                    &currency,
                    &agg,
                    pnl::RowKind::Final,
                    self.partition.0,
                ));
        }
        store.write(wb)?;
        Ok(())
    }
}
