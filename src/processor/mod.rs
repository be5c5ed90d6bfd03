//! What a partition does with its records, minus the actor: the synchronous, unit-tested core of
//! [`crate::actors::partition`].
//!
//! Contract:
//! * [`Processor::apply`] consumes records in offset order per topic. Each record becomes exactly one of: a
//!   changelog row, a quarantine row, a skipped duplicate (counted), or a tombstone (counted). Nothing is dropped
//!   silently and nothing panics on bad input.
//! * Redelivery (Debezium is at-least-once after a Connect restart) is absorbed by keeping the last applied LSN
//!   per `(table, primary key)` in state: a change at or below it is skipped.
//! * State mutations of a batch and the next offsets reached are written as one atomic [`WriteBatch`].
//! * [`Processor::seal`] hands over everything accumulated since the previous seal, with the offset delta
//!   `(from, to]` per topic, and resets. The caller takes the state checkpoint right after sealing, so the
//!   checkpoint holds exactly the state that produced the sealed rows.

use crate::cdc::{self, Decoded, SourceTable};
use crate::changelog::{self, ChangelogSchema, QuarantineRecord};
use crate::enrich::{self, History, UserDim, WaitingTx, WalletDim};
use crate::metrics;
use crate::sink::{self, TableDef};
use crate::source::RawRecord;
use crate::types::PartitionId;
use crate::value::Value;
use crate::watermark::Watermarks;
use arrow_array::RecordBatch;
use ledgerstream_state::{PartitionStore, PartitionStoreExt, StateError, WriteBatch};
use std::collections::{BTreeMap, HashMap};

mod emit;
pub use emit::StageSettings;

/// Keyspace holding the last applied position per `(table, pk)`.
const LSN_KEYSPACE: &str = "lsn";
/// Version histories of users and wallets (bincode [`History`]), keyed by id.
const USERS_KEYSPACE: &str = "dim_user";
const WALLETS_KEYSPACE: &str = "dim_wallet";
/// Transaction changes waiting for the watermark, keyed by [`WaitingTx::key`].
const WAIT_KEYSPACE: &str = "enrich_wait";
/// Partition-wide stage state: the watermarks.
const META_KEYSPACE: &str = "meta";
const WATERMARKS_KEY: &[u8] = b"watermarks";

/// Position of a change for redelivery detection: its LSN, then a rank that orders the two halves of a key change.
/// Debezium turns an update of the message key (the user id) into a delete under the old key and a create under
/// the new one, both at the same LSN; when both keys live in this partition the create must not look like a
/// redelivery of the delete.
fn position(ev: &cdc::ChangeEvent) -> [u8; 9] {
    let mut p = [0u8; 9];
    p[..8].copy_from_slice(&ev.lsn.0.to_be_bytes());
    p[8] = match ev.op {
        cdc::Op::Delete => 0,
        _ => 1,
    };
    p
}

/// One input topic of the partition.
#[derive(Debug, Clone)]
pub struct Input {
    pub topic: String,
    pub table: SourceTable,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error("building {table} batch: {message}")]
    Batch { table: String, message: String },
    #[error("record for unknown input index {0}")]
    UnknownInput(usize),
    #[error("{HALT_PREFIX} {0}")]
    Halt(String),
}

/// Prefix of errors no restart can fix (a configured policy says to stop): the pipeline exits with the message.
pub const HALT_PREFIX: &str = "halting by policy:";

/// Errors no restart can fix (a configured policy says to stop): the pipeline exits with the message.
impl ProcessError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProcessError::Halt(_))
    }
}

/// The rows of one output table sealed at a barrier.
#[derive(Debug)]
pub struct TableOutput {
    /// The table's shape as this partition knew it (the committer unions the shapes of all partitions).
    pub def: TableDef,
    pub batch: RecordBatch,
}

/// Offsets covered by a seal for one topic: records `from..to` (next-offset semantics, `from` inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetDelta {
    pub from: i64,
    pub to: i64,
}

/// Everything a partition hands to the committer at a barrier.
#[derive(Debug)]
pub struct SealedOutput {
    pub tables: Vec<TableOutput>,
    /// Per topic: the next offset after this seal, and the delta since the previous seal (`None` when unchanged).
    pub offsets: BTreeMap<String, (i64, Option<OffsetDelta>)>,
    pub records: usize,
}

/// Counters of one `apply` call, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    pub rows: usize,
    pub duplicates: usize,
    pub tombstones: usize,
    pub quarantined: usize,
    pub truncates: usize,
    /// Transaction changes emitted to the enriched table by this call (their watermark passed).
    pub enriched: usize,
}

pub struct Processor {
    partition: PartitionId,
    inputs: Vec<Input>,
    schemas: BTreeMap<SourceTable, ChangelogSchema>,
    pending: BTreeMap<SourceTable, Vec<Vec<Value>>>,
    quarantine: Vec<Vec<Value>>,
    /// Next offset per input, as of the last applied record.
    next: Vec<i64>,
    /// Next offset per input as of the last seal.
    sealed: Vec<i64>,
    pending_records: usize,
    /// Settings of the stateful stages (enrichment wait, fraud, P&L, data quality).
    stages: StageSettings,
    /// Loaded from state on first use (after the store was restored).
    watermarks: Option<Watermarks>,
    /// Rows of the derived tables (enriched, fraud alerts, P&L) since the last seal.
    derived: BTreeMap<&'static str, Vec<Vec<Value>>>,
    /// P&L changes that arrived after their minute closed, emitted as late adjustments at the next seal.
    late_pnl: BTreeMap<(i64, String), crate::pnl::PnlAgg>,
    /// Waiting transaction changes, for the gauge (approximate after a restore until the next emission pass).
    waiting: usize,
}

fn lsn_key(table: SourceTable, pk: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = match table {
        SourceTable::Users => b'u',
        SourceTable::Wallets => b'w',
        SourceTable::Transactions => b't',
    };
    k[1..].copy_from_slice(&pk.to_be_bytes());
    k
}

impl Processor {
    /// `start[i]` is the next offset of input `i` at the restored checkpoint (0 for a fresh start).
    /// `existing` gives the columns of output tables that already exist, so learnt columns survive restarts.
    pub fn new(
        partition: PartitionId,
        inputs: Vec<Input>,
        start: Vec<i64>,
        existing: &BTreeMap<String, Vec<crate::value::ColumnSpec>>,
        stages: StageSettings,
    ) -> Self {
        let schemas = inputs
            .iter()
            .map(|i| {
                let s = match existing.get(&changelog::changes_table(i.table)) {
                    Some(cols) => ChangelogSchema::with_existing(i.table, cols),
                    None => ChangelogSchema::new(i.table),
                };
                (i.table, s)
            })
            .collect();
        Processor {
            partition,
            next: start.clone(),
            sealed: start,
            inputs,
            schemas,
            pending: BTreeMap::new(),
            quarantine: Vec::new(),
            pending_records: 0,
            stages,
            watermarks: None,
            derived: BTreeMap::new(),
            late_pnl: BTreeMap::new(),
            waiting: 0,
        }
    }

    fn load_watermarks(&mut self, store: &dyn PartitionStore) -> Result<Watermarks, ProcessError> {
        if let Some(w) = self.watermarks.take() {
            return Ok(w);
        }
        let stored: Option<Watermarks> =
            (store as &dyn PartitionStore).get_typed(META_KEYSPACE, WATERMARKS_KEY)?;
        Ok(stored.map_or_else(
            || Watermarks::new(self.inputs.len()),
            |w| w.resized(self.inputs.len()),
        ))
    }

    /// Records applied since the last seal.
    pub fn pending_records(&self) -> usize {
        self.pending_records
    }

    /// Applies a batch of records and writes its state mutations and positions atomically.
    pub fn apply(
        &mut self,
        store: &mut dyn PartitionStore,
        records: &[RawRecord],
    ) -> Result<ApplyStats, ProcessError> {
        let mut stats = ApplyStats::default();
        let mut wb = WriteBatch::new();
        let mut watermarks = self.load_watermarks(store)?;
        // Dimension histories touched by this batch, written once at the end.
        let mut users: HashMap<i64, History<UserDim>> = HashMap::new();
        let mut wallets: HashMap<i64, History<WalletDim>> = HashMap::new();
        // LSNs applied earlier in this batch, not yet visible in the store.
        let mut overlay: HashMap<[u8; 9], [u8; 9]> = HashMap::new();
        let partition = self.partition.0;
        for rec in records {
            let input = self
                .inputs
                .get(rec.input)
                .ok_or(ProcessError::UnknownInput(rec.input))?;
            let table = input.table;
            let topic = input.topic.as_str();
            let quarantine_rule =
                |kind: &str, rule: Option<&str>, message: String, lsn: Option<i64>| {
                    metrics::quarantined(kind, topic, partition, rec.offset.0, &message);
                    QuarantineRecord {
                        kafka_ts_ms: rec.timestamp_ms,
                        topic,
                        partition,
                        offset: rec.offset.0,
                        source_table: Some(table.name()),
                        lsn,
                        kind,
                        rule,
                        message,
                        key: rec.key.as_deref(),
                        payload: rec.payload.as_deref(),
                    }
                    .into_row()
                };
            let quarantine = |kind: &str, message: String, lsn: Option<i64>| {
                quarantine_rule(kind, None, message, lsn)
            };
            match cdc::decode(table, rec.key.as_deref(), rec.payload.as_deref()) {
                Ok(Decoded::Tombstone { .. }) => {
                    metrics::tombstone(table.name());
                    stats.tombstones += 1;
                }
                Ok(Decoded::Change(ev)) => {
                    metrics::event_in(table.name());
                    let Some(pk) = ev.pk() else {
                        // A truncate has no image and no key: it is recorded nowhere but in the counters, since
                        // the changelog records row changes. (The source never truncates in practice.)
                        stats.truncates += 1;
                        continue;
                    };
                    let key = lsn_key(table, pk);
                    let pos = position(&ev);
                    let last = match overlay.get(&key) {
                        Some(l) => Some(*l),
                        None => store
                            .get(LSN_KEYSPACE, &key)?
                            .and_then(|v| <[u8; 9]>::try_from(v.as_slice()).ok()),
                    };
                    // Big-endian bytes compare like the (lsn, rank) tuple they encode.
                    if last.is_some_and(|l| pos <= l) {
                        metrics::duplicate_skipped(table.name());
                        stats.duplicates += 1;
                        continue;
                    }
                    // Data-quality rules, on rows entering (not on delete images). Referential rules on
                    // transactions are checked after the enrichment wait, as of the transaction's position.
                    if let Some(image) = ev.row.as_ref().filter(|_| ev.op != cdc::Op::Delete) {
                        let refs = |t: SourceTable, id: i64| {
                            table == SourceTable::Transactions
                                || dimension_exists(store, &users, &wallets, t, id)
                        };
                        let violations = self.stages.dq.check(image, &refs);
                        if let Some(first) = violations.first() {
                            for v in &violations {
                                metrics::dq_rejected(&v.rule);
                            }
                            let message = violations
                                .iter()
                                .map(|v| format!("{}: {}", v.rule, v.reason))
                                .collect::<Vec<_>>()
                                .join("; ");
                            self.quarantine.push(quarantine_rule(
                                "dq_rule",
                                Some(&first.rule),
                                message,
                                Some(ev.lsn.0 as i64),
                            ));
                            stats.quarantined += 1;
                            // Applied (as a rejection): a redelivery must not quarantine it twice.
                            overlay.insert(key, pos);
                            wb.put(LSN_KEYSPACE, &key, &pos)?;
                            watermarks.observe(rec.input, ev.source_ts_us);
                            self.next[rec.input] = rec.offset.0 + 1;
                            continue;
                        }
                    }
                    let schema = self
                        .schemas
                        .entry(table)
                        .or_insert_with(|| ChangelogSchema::new(table));
                    let policy = self.stages.type_change_policy(table);
                    let mut ev = ev;
                    for column in schema.apply_type_policy(&mut ev, policy) {
                        metrics::schema_type_conflict(table.name(), "new_column");
                        tracing::warn!(
                            table = table.name(),
                            column,
                            "type change written to a new column"
                        );
                    }
                    match schema.row(&ev, self.partition.0, rec.offset.0) {
                        Ok(Some(row)) => {
                            self.pending.entry(table).or_default().push(row);
                            stats.rows += 1;
                            overlay.insert(key, pos);
                            wb.put(LSN_KEYSPACE, &key, &pos)?;
                            watermarks.observe(rec.input, ev.source_ts_us);
                            if table == SourceTable::Transactions {
                                self.waiting += 1;
                            }
                            stage_change(
                                store,
                                &mut wb,
                                &mut users,
                                &mut wallets,
                                ev,
                                rec.offset.0,
                            )?;
                        }
                        Ok(None) => stats.truncates += 1,
                        Err(e @ changelog::ChangelogError::TypeConflict { .. })
                            if policy == changelog::TypeChangePolicy::Halt =>
                        {
                            metrics::schema_type_conflict(table.name(), "halt");
                            return Err(ProcessError::Halt(format!(
                                "{e} (record {topic}[{partition}]@{}); schema.type_change for {} is `halt`. \
                                 Change the policy to `quarantine` or `new_column`, or fix the source, then restart.",
                                rec.offset.0,
                                table.name()
                            )));
                        }
                        Err(e) => {
                            if matches!(e, changelog::ChangelogError::TypeConflict { .. }) {
                                metrics::schema_type_conflict(table.name(), "quarantine");
                            }
                            self.quarantine.push(quarantine(
                                e.kind(),
                                e.to_string(),
                                Some(ev.lsn.0 as i64),
                            ));
                            stats.quarantined += 1;
                        }
                    }
                }
                Err(e) => {
                    self.quarantine
                        .push(quarantine(e.kind(), e.to_string(), None));
                    stats.quarantined += 1;
                }
            }
            self.next[rec.input] = rec.offset.0 + 1;
        }
        // Keep only the dimension versions a transaction still inside the wait or lateness horizon can ask for.
        let horizon = watermarks
            .current()
            .saturating_sub(self.stages.dimension_retention_us());
        for (id, mut h) in users {
            h.prune(horizon);
            wb.put_typed(USERS_KEYSPACE, &id.to_be_bytes(), &h)?;
        }
        for (id, mut h) in wallets {
            h.prune(horizon);
            wb.put_typed(WALLETS_KEYSPACE, &id.to_be_bytes(), &h)?;
        }
        for (i, input) in self.inputs.iter().enumerate() {
            wb.set_position(&input.topic, self.next[i]);
        }
        store.write(wb)?;
        self.pending_records += records.len();
        let max_delay = self.stages.max_delay_us();
        let previous = watermarks.current();
        let now = watermarks.advance(max_delay);
        stats.enriched = self.emit_ready(store, &mut watermarks, previous, now)?;
        self.watermarks = Some(watermarks);
        Ok(stats)
    }

    /// Hands over everything since the previous seal and resets.
    ///
    /// `idle`: the partition received nothing since the previous seal and has nothing in flight, so every topic is
    /// caught up; the watermark then moves to the newest event seen, releasing everything waiting.
    pub fn seal(
        &mut self,
        store: &mut dyn PartitionStore,
        idle: bool,
    ) -> Result<SealedOutput, ProcessError> {
        if idle {
            let mut watermarks = self.load_watermarks(store)?;
            let previous = watermarks.current();
            let now = watermarks.flush_idle();
            if now > previous {
                self.emit_ready(store, &mut watermarks, previous, now)?;
            }
            self.watermarks = Some(watermarks);
        }
        let mut tables = Vec::new();
        for (table, rows) in std::mem::take(&mut self.pending) {
            if rows.is_empty() {
                continue;
            }
            let def = self
                .schemas
                .get(&table)
                .map(ChangelogSchema::def)
                .unwrap_or_else(|| ChangelogSchema::new(table).def());
            // Rows learnt before a later column was added are shorter: pad them with nulls.
            let width = def.columns.len();
            let rows: Vec<Vec<Value>> = rows
                .into_iter()
                .map(|mut r| {
                    r.resize(width, Value::Null);
                    r
                })
                .collect();
            tables.push(build(def, &rows)?);
        }
        for (table, rows) in std::mem::take(&mut self.derived) {
            if rows.is_empty() {
                continue;
            }
            let def = self.derived_def(table);
            let width = def.columns.len();
            let rows: Vec<Vec<Value>> = rows
                .into_iter()
                .map(|mut r| {
                    r.resize(width, Value::Null);
                    r
                })
                .collect();
            tables.push(build(def, &rows)?);
        }
        let late = std::mem::take(&mut self.late_pnl);
        if !late.is_empty() {
            let rows: Vec<Vec<Value>> = late
                .iter()
                .map(|((minute, currency), agg)| {
                    crate::pnl::pnl_row(
                        *minute,
                        currency,
                        agg,
                        crate::pnl::RowKind::LateAdjustment,
                        self.partition.0,
                    )
                })
                .collect();
            tables.push(build(crate::pnl::pnl_def(), &rows)?);
        }
        if !self.quarantine.is_empty() {
            let rows = std::mem::take(&mut self.quarantine);
            tables.push(build(changelog::quarantine_def(), &rows)?);
        }
        let mut offsets = BTreeMap::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let delta = (self.next[i] != self.sealed[i]).then_some(OffsetDelta {
                from: self.sealed[i],
                to: self.next[i],
            });
            offsets.insert(input.topic.clone(), (self.next[i], delta));
        }
        self.sealed.clone_from(&self.next);
        let records = std::mem::take(&mut self.pending_records);
        Ok(SealedOutput {
            tables,
            offsets,
            records,
        })
    }
}

/// Whether a user or wallet is currently known (latest version not deleted), for referential rules on users and
/// wallets. Reads this batch's changes first, then the store.
fn dimension_exists(
    store: &dyn PartitionStore,
    users: &HashMap<i64, History<UserDim>>,
    wallets: &HashMap<i64, History<WalletDim>>,
    table: SourceTable,
    id: i64,
) -> bool {
    fn live<T>(h: Option<&History<T>>) -> bool {
        h.and_then(|h| h.versions.last())
            .is_some_and(|v| v.value.is_some())
    }
    let key = id.to_be_bytes();
    match table {
        SourceTable::Users => match users.get(&id) {
            Some(h) => live(Some(h)),
            None => live(
                store
                    .get_typed::<History<UserDim>>(USERS_KEYSPACE, &key)
                    .ok()
                    .flatten()
                    .as_ref(),
            ),
        },
        SourceTable::Wallets => match wallets.get(&id) {
            Some(h) => live(Some(h)),
            None => live(
                store
                    .get_typed::<History<WalletDim>>(WALLETS_KEYSPACE, &key)
                    .ok()
                    .flatten()
                    .as_ref(),
            ),
        },
        SourceTable::Transactions => true,
    }
}

/// Records what a change means for the stateful stages: a new dimension version, or a transaction change to wait
/// for its watermark.
fn stage_change(
    store: &dyn PartitionStore,
    wb: &mut WriteBatch,
    users: &mut HashMap<i64, History<UserDim>>,
    wallets: &mut HashMap<i64, History<WalletDim>>,
    mut ev: cdc::ChangeEvent,
    kafka_offset: i64,
) -> Result<(), ProcessError> {
    fn version<T>(ev: &cdc::ChangeEvent, value: Option<T>) -> enrich::Version<T> {
        enrich::Version {
            lsn: ev.lsn.0,
            tx_id: ev.tx_id,
            ts_us: ev.source_ts_us,
            value,
        }
    }
    let Some(row) = ev.row.take() else {
        return Ok(());
    };
    match ev.table {
        SourceTable::Transactions => {
            let waiting = WaitingTx {
                op: ev.op,
                lsn: ev.lsn.0,
                tx_id: ev.tx_id,
                source_ts_us: ev.source_ts_us,
                kafka_offset,
                row,
            };
            wb.put_typed(WAIT_KEYSPACE, &waiting.key(), &waiting)?;
        }
        SourceTable::Users | SourceTable::Wallets => match enrich::dimension_of(ev.op, &row) {
            Some(enrich::Dimension::User(id, dim)) => {
                let h = match users.entry(id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(
                        store
                            .get_typed(USERS_KEYSPACE, &id.to_be_bytes())?
                            .unwrap_or_default(),
                    ),
                };
                h.insert(version(&ev, dim));
            }
            Some(enrich::Dimension::Wallet(id, dim)) => {
                let h = match wallets.entry(id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(
                        store
                            .get_typed(WALLETS_KEYSPACE, &id.to_be_bytes())?
                            .unwrap_or_default(),
                    ),
                };
                h.insert(version(&ev, dim));
            }
            None => {}
        },
    }
    Ok(())
}

fn build(def: TableDef, rows: &[Vec<Value>]) -> Result<TableOutput, ProcessError> {
    let err = |message: String| ProcessError::Batch {
        table: def.name.clone(),
        message,
    };
    let schema = def.arrow_schema().map_err(|e| err(e.to_string()))?;
    let batch = sink::rows_to_batch(&def, &schema, rows).map_err(|e| err(e.to_string()))?;
    Ok(TableOutput { def, batch })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Synth;
    use crate::types::Offset;
    use ledgerstream_state::MemoryPartitionStore;

    fn inputs() -> Vec<Input> {
        [
            SourceTable::Users,
            SourceTable::Wallets,
            SourceTable::Transactions,
        ]
        .iter()
        .map(|t| Input {
            topic: format!("fintech.public.{}", t.name()),
            table: *t,
        })
        .collect()
    }

    fn input_of(t: SourceTable) -> usize {
        match t {
            SourceTable::Users => 0,
            SourceTable::Wallets => 1,
            SourceTable::Transactions => 2,
        }
    }

    /// Synthetic records as they would arrive from Kafka, with per-topic offsets.
    fn records(n: usize, bad_every: u64) -> Vec<RawRecord> {
        let mut next = [0i64; 3];
        Synth::new(3, 20)
            .with_bad_every(bad_every)
            .take(n)
            .map(|r| {
                let input = input_of(r.table);
                let offset = next[input];
                next[input] += 1;
                RawRecord {
                    input,
                    offset: Offset(offset),
                    key: Some(r.key.to_string().into_bytes()),
                    payload: Some(r.payload),
                    timestamp_ms: Some(1_000),
                }
            })
            .collect()
    }

    fn processor() -> Processor {
        Processor::new(
            PartitionId(0),
            inputs(),
            vec![0, 0, 0],
            &BTreeMap::new(),
            StageSettings::default(),
        )
    }

    fn rows_by_table(out: &SealedOutput) -> BTreeMap<String, usize> {
        out.tables
            .iter()
            .map(|t| (t.def.name.clone(), t.batch.num_rows()))
            .collect()
    }

    #[test]
    fn every_record_becomes_exactly_one_outcome() {
        let recs = records(500, 50);
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        let stats = p.apply(&mut store, &recs).unwrap();
        assert_eq!(stats.quarantined, 10);
        assert_eq!(stats.rows + stats.quarantined, 500);
        let out = p.seal(&mut store, false).unwrap();
        let mut rows = rows_by_table(&out);
        assert_eq!(rows["quarantine"], 10);
        // Derived tables (enriched, P&L) come on top of the one outcome per record.
        rows.remove("transactions_enriched");
        rows.remove("pnl_minutely");
        assert_eq!(rows.values().sum::<usize>(), 500);
        assert_eq!(out.records, 500);
        // Offsets: each topic's delta covers exactly its records.
        for (i, input) in inputs().iter().enumerate() {
            let n = recs.iter().filter(|r| r.input == i).count() as i64;
            let (next, delta) = out.offsets[&input.topic];
            assert_eq!(next, n);
            assert_eq!(delta, Some(OffsetDelta { from: 0, to: n }));
        }
        // Positions were written with the state.
        let pos = store.positions().unwrap();
        assert_eq!(
            pos["fintech.public.transactions"],
            out.offsets["fintech.public.transactions"].0
        );
    }

    #[test]
    fn redelivery_is_skipped_and_counted() {
        let recs = records(300, 0);
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        p.apply(&mut store, &recs).unwrap();
        let first = p.seal(&mut store, false).unwrap();
        // Debezium redelivers the same changes at new offsets after a Connect restart.
        let redelivered: Vec<RawRecord> = recs
            .iter()
            .map(|r| RawRecord {
                offset: Offset(r.offset.0 + 1000),
                ..r.clone()
            })
            .collect();
        let stats = p.apply(&mut store, &redelivered).unwrap();
        assert_eq!(stats.duplicates, 300);
        assert_eq!(stats.rows, 0);
        let second = p.seal(&mut store, false).unwrap();
        assert!(second.tables.is_empty());
        let mut rows = rows_by_table(&first);
        rows.remove("transactions_enriched");
        assert_eq!(rows.values().sum::<usize>(), 300);
    }

    #[test]
    fn key_change_at_one_lsn_keeps_both_halves() {
        let tx = |op: &str, before: &str, after: &str| {
            format!(
                r#"{{"before":{before},"after":{after},"source":{{"ts_ms":1764000000000,"lsn":5000,"txId":9,"table":"wallets"}},"op":"{op}"}}"#
            )
            .into_bytes()
        };
        let wallet = |user: i64| {
            format!(
                r#"{{"id":1,"user_id":{user},"currency":"USD","balance":"1.00","status":"active","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}}"#
            )
        };
        let recs = vec![
            RawRecord {
                input: 1,
                offset: Offset(0),
                key: Some(b"3".to_vec()),
                payload: Some(tx("d", &wallet(3), "null")),
                timestamp_ms: None,
            },
            RawRecord {
                input: 1,
                offset: Offset(1),
                key: Some(b"7".to_vec()),
                payload: Some(tx("c", "null", &wallet(7))),
                timestamp_ms: None,
            },
        ];
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        let stats = p.apply(&mut store, &recs).unwrap();
        assert_eq!((stats.rows, stats.duplicates), (2, 0));
        // A redelivery of either half is still a duplicate.
        let stats = p.apply(&mut store, &recs).unwrap();
        assert_eq!((stats.rows, stats.duplicates), (0, 2));
    }

    #[test]
    fn tombstones_are_counted_not_written() {
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        let recs = vec![RawRecord {
            input: 0,
            offset: Offset(4),
            key: Some(b"1".to_vec()),
            payload: None,
            timestamp_ms: None,
        }];
        let stats = p.apply(&mut store, &recs).unwrap();
        assert_eq!(stats.tombstones, 1);
        let out = p.seal(&mut store, false).unwrap();
        assert!(out.tables.is_empty());
        assert_eq!(out.offsets["fintech.public.users"].0, 5);
    }

    #[test]
    fn a_new_source_column_extends_the_table_and_pads_older_rows() {
        let recs = records(40, 0);
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        p.apply(&mut store, &recs).unwrap();
        let evolved = br#"{"before":null,"after":{"id":999,"wallet_id":1,"user_id":1,"counterparty_wallet_id":null,"kind":"payment","amount":"5.00","fee":"0.10","currency":"USD","status":"pending","country":"US","merchant":"m","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","device_id":"dev-1"},"source":{"ts_ms":1764000000000,"lsn":99999999999,"txId":1,"table":"transactions"},"op":"c"}"#;
        p.apply(
            &mut store,
            &[RawRecord {
                input: 2,
                offset: Offset(1000),
                key: Some(b"1".to_vec()),
                payload: Some(evolved.to_vec()),
                timestamp_ms: None,
            }],
        )
        .unwrap();
        let out = p.seal(&mut store, false).unwrap();
        let tx = out
            .tables
            .iter()
            .find(|t| t.def.name == "transactions_changes")
            .unwrap();
        let col = tx
            .batch
            .column_by_name("device_id")
            .expect("device_id added");
        assert_eq!(col.null_count(), tx.batch.num_rows() - 1);
    }

    #[test]
    fn sealing_twice_without_input_gives_no_delta() {
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        p.apply(&mut store, &records(10, 0)).unwrap();
        p.seal(&mut store, false).unwrap();
        let out = p.seal(&mut store, false).unwrap();
        assert!(out.tables.is_empty());
        assert!(out.offsets.values().all(|(_, d)| d.is_none()));
    }

    fn table_rows(out: &SealedOutput, name: &str) -> Vec<Vec<String>> {
        use arrow::util::display::{ArrayFormatter, FormatOptions};
        let mut rows = Vec::new();
        for t in out.tables.iter().filter(|t| t.def.name == name) {
            let opts = FormatOptions::default();
            let fmts: Vec<ArrayFormatter> = t
                .batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
                .collect();
            for i in 0..t.batch.num_rows() {
                rows.push(fmts.iter().map(|f| f.value(i).to_string()).collect());
            }
        }
        rows
    }

    fn column(out: &SealedOutput, table: &str, name: &str) -> Vec<String> {
        let idx = out
            .tables
            .iter()
            .find(|t| t.def.name == table)
            .and_then(|t| t.def.column(name).map(|(i, _)| i))
            .unwrap();
        table_rows(out, table)
            .into_iter()
            .map(|r| r[idx].clone())
            .collect()
    }

    /// Runs `recs` through a fresh processor in chunks, then one idle seal; returns everything sealed, with the
    /// enriched rows sorted by LSN (each seal emits in event-time order; sorting makes runs comparable).
    fn run_all(recs: &[RawRecord], chunk: usize) -> Vec<Vec<String>> {
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        let mut enriched = Vec::new();
        for c in recs.chunks(chunk) {
            p.apply(&mut store, c).unwrap();
            enriched.extend(table_rows(
                &p.seal(&mut store, false).unwrap(),
                "transactions_enriched",
            ));
        }
        enriched.extend(table_rows(
            &p.seal(&mut store, true).unwrap(),
            "transactions_enriched",
        ));
        // Column 1 is the LSN.
        enriched.sort_by_key(|r| r[1].parse::<i64>().unwrap());
        enriched
    }

    #[test]
    fn enrichment_does_not_depend_on_how_the_topics_interleave() {
        let recs = records(2_000, 0);
        let as_read = run_all(&recs, 97);
        // The worst skew: every transaction before any user or wallet, then users, then wallets.
        let mut skewed: Vec<RawRecord> = recs.iter().filter(|r| r.input == 2).cloned().collect();
        skewed.extend(recs.iter().filter(|r| r.input == 0).cloned());
        skewed.extend(recs.iter().filter(|r| r.input == 1).cloned());
        let skewed = run_all(&skewed, 250);
        let txs = recs.iter().filter(|r| r.input == 2).count();
        assert_eq!(as_read.len(), txs, "every transaction change emitted once");
        assert_eq!(
            as_read, skewed,
            "byte-identical rows whatever the read order"
        );
        // The synthetic stream creates a wallet without its user now and then: exactly those transactions say
        // so; every other one is fully enriched.
        let users: std::collections::BTreeSet<String> = recs
            .iter()
            .filter(|r| r.input == 0)
            .filter_map(
                |r| match cdc::decode(SourceTable::Users, None, r.payload.as_deref()) {
                    Ok(Decoded::Change(ev)) => ev.pk().map(|k| k.to_string()),
                    _ => None,
                },
            )
            .collect();
        let def = enrich::enriched_def(&[]);
        let (status, user) = (
            def.column("enrichment_status").unwrap().0,
            def.column("user_id").unwrap().0,
        );
        let mut missing = 0;
        for r in &as_read {
            let expected = if users.contains(&r[user]) {
                "enriched"
            } else {
                missing += 1;
                "user_missing"
            };
            assert_eq!(r[status], expected, "{r:?}");
        }
        assert!(missing > 0 && missing < as_read.len() / 2, "{missing}");
    }

    #[test]
    fn a_missing_user_waits_for_the_bound_then_is_emitted_with_its_status() {
        let tx = |id: i64, ms: i64, lsn: u64| {
            RawRecord {
            input: 2,
            offset: Offset(id),
            key: Some(b"42".to_vec()),
            payload: Some(format!(
                r#"{{"before":null,"after":{{"id":{id},"wallet_id":42,"user_id":42,"counterparty_wallet_id":null,"kind":"payment","amount":"5.00","fee":"0.10","currency":"USD","status":"pending","country":"US","merchant":"m","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}},"source":{{"ts_ms":{ms},"lsn":{lsn},"txId":{id},"table":"transactions"}},"op":"c"}}"#
            ).into_bytes()),
            timestamp_ms: None,
        }
        };
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        let base = 1_764_000_000_000;
        p.apply(&mut store, &[tx(1, base, 100)]).unwrap();
        let out = p.seal(&mut store, false).unwrap();
        assert!(
            table_rows(&out, "transactions_enriched").is_empty(),
            "waits"
        );
        // 4 s of event time later: still inside the 5 s bound.
        p.apply(&mut store, &[tx(2, base + 4_000, 200)]).unwrap();
        let out = p.seal(&mut store, false).unwrap();
        assert!(table_rows(&out, "transactions_enriched").is_empty());
        // 6 s later the first one is released, marked; the second still waits.
        p.apply(&mut store, &[tx(3, base + 6_000, 300)]).unwrap();
        let out = p.seal(&mut store, false).unwrap();
        assert_eq!(
            column(&out, "transactions_enriched", "enrichment_status"),
            vec!["user_and_wallet_missing"]
        );
        assert_eq!(column(&out, "transactions_enriched", "id"), vec!["1"]);
        // An idle checkpoint releases the rest.
        let out = p.seal(&mut store, true).unwrap();
        assert_eq!(column(&out, "transactions_enriched", "id"), vec!["2", "3"]);
        assert!(p.seal(&mut store, true).unwrap().tables.is_empty());
    }

    #[test]
    fn waiting_changes_survive_a_checkpoint_restore() {
        let recs = records(600, 0);
        let straight = run_all(&recs, 600);
        // Same input, but the processor is rebuilt from state half way (as after a crash and restore).
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        let (a, b) = recs.split_at(300);
        p.apply(&mut store, a).unwrap();
        let mut rows = table_rows(&p.seal(&mut store, false).unwrap(), "transactions_enriched");
        store.checkpoint(1).unwrap();
        let next: Vec<i64> = inputs()
            .iter()
            .map(|i| store.position(&i.topic).unwrap().unwrap_or(0))
            .collect();
        let mut p = Processor::new(
            PartitionId(0),
            inputs(),
            next,
            &BTreeMap::new(),
            StageSettings::default(),
        );
        p.apply(&mut store, b).unwrap();
        rows.extend(table_rows(
            &p.seal(&mut store, true).unwrap(),
            "transactions_enriched",
        ));
        rows.sort_by_key(|r| r[1].parse::<i64>().unwrap());
        assert_eq!(rows, straight);
    }

    #[test]
    fn pnl_minutes_close_on_the_watermark_and_sum_to_the_input() {
        // 3 minutes of synthetic traffic at 100 µs per event is too short: stretch time by pinning it.
        let mut synth = Synth::new(9, 10);
        let mut next = [0i64; 3];
        let mut recs = Vec::new();
        for i in 0..3_000i64 {
            synth.set_now_us(1_764_000_000_000_000 + i * 100_000); // 10 events per second
            let r = synth.next().unwrap();
            let input = input_of(r.table);
            recs.push(RawRecord {
                input,
                offset: Offset(next[input]),
                key: Some(r.key.to_string().into_bytes()),
                payload: Some(r.payload),
                timestamp_ms: None,
            });
            next[input] += 1;
        }
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        let mut pnl_rows = Vec::new();
        for c in recs.chunks(200) {
            p.apply(&mut store, c).unwrap();
            pnl_rows.extend(table_rows(
                &p.seal(&mut store, false).unwrap(),
                "pnl_minutely",
            ));
        }
        // 300 s of events, lateness 30 s: minutes ending at or before 270 s are final.
        let def = crate::pnl::pnl_def();
        let idx = |n: &str| def.column(n).unwrap().0;
        assert!(pnl_rows.len() >= 3, "{pnl_rows:?}");
        assert!(pnl_rows.iter().all(|r| r[idx("kind")] == "final"));
        let counted: i64 = pnl_rows
            .iter()
            .map(|r| r[idx("tx_count")].parse::<i64>().unwrap())
            .sum();
        let inserts_before = |limit_us: i64| {
            recs.iter()
                .filter(|r| r.input == 2)
                .filter(|r| {
                    let s = String::from_utf8_lossy(r.payload.as_deref().unwrap());
                    s.contains(r#""op":"c""#)
                        && crate::cdc::decode(SourceTable::Transactions, None, r.payload.as_deref())
                            .ok()
                            .and_then(|d| match d {
                                Decoded::Change(ev) => Some(ev.source_ts_us < limit_us),
                                _ => None,
                            })
                            .unwrap_or(false)
                })
                .count() as i64
        };
        // Closed minutes are exactly those starting before the first open one.
        let last_closed_end = pnl_rows
            .iter()
            .map(|r| r[idx("minute")].clone())
            .max()
            .unwrap();
        let end_us = chrono::DateTime::parse_from_rfc3339(&last_closed_end)
            .unwrap()
            .timestamp_micros()
            + crate::pnl::MINUTE_US;
        assert_eq!(counted, inserts_before(end_us));
        // Fees: every insert carries a 0.30 fee and none is failed, so fees = 0.30 × count per row.
        for r in &pnl_rows {
            let n: i64 = r[idx("tx_count")].parse().unwrap();
            assert_eq!(
                r[idx("fees_earned")],
                format!("{}.{:02}", n * 30 / 100, n * 30 % 100)
            );
        }
    }

    fn evolved_tx(id: i64, lsn: u64, device: &str) -> RawRecord {
        RawRecord {
            input: 2,
            offset: Offset(id),
            key: Some(b"1".to_vec()),
            payload: Some(format!(
                r#"{{"before":null,"after":{{"id":{id},"wallet_id":1,"user_id":1,"counterparty_wallet_id":null,"kind":"payment","amount":"5.00","fee":"0.10","currency":"USD","status":"pending","country":"US","merchant":"m","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","device_id":{device}}},"source":{{"ts_ms":1764000000000,"lsn":{lsn},"txId":{id},"table":"transactions"}},"op":"c"}}"#
            ).into_bytes()),
            timestamp_ms: None,
        }
    }

    fn with_policy(policy: changelog::TypeChangePolicy) -> Processor {
        let mut stages = StageSettings::default();
        stages.type_change.insert(SourceTable::Transactions, policy);
        Processor::new(
            PartitionId(0),
            inputs(),
            vec![0, 0, 0],
            &BTreeMap::new(),
            stages,
        )
    }

    #[test]
    fn a_type_change_goes_to_a_new_column_in_every_table_under_new_column() {
        let mut store = MemoryPartitionStore::new();
        let mut p = with_policy(changelog::TypeChangePolicy::NewColumn);
        let recs = [evolved_tx(1, 100, r#""dev-1""#), evolved_tx(2, 200, "42")];
        let stats = p.apply(&mut store, &recs).unwrap();
        assert_eq!((stats.rows, stats.quarantined), (2, 0));
        let out = p.seal(&mut store, true).unwrap();
        for table in ["transactions_changes", "transactions_enriched"] {
            assert_eq!(
                column(&out, table, "device_id"),
                vec!["dev-1", ""],
                "{table}"
            );
            assert_eq!(
                column(&out, table, "device_id__int64"),
                vec!["", "42"],
                "{table}"
            );
        }
    }

    #[test]
    fn a_type_change_is_quarantined_by_default_and_halts_under_halt() {
        let recs = [evolved_tx(1, 100, r#""dev-1""#), evolved_tx(2, 200, "42")];
        let mut store = MemoryPartitionStore::new();
        let mut p = processor();
        let stats = p.apply(&mut store, &recs).unwrap();
        assert_eq!((stats.rows, stats.quarantined), (1, 1));
        let out = p.seal(&mut store, true).unwrap();
        assert_eq!(
            column(&out, "quarantine", "error_kind"),
            vec!["schema_type_conflict"]
        );

        let mut store = MemoryPartitionStore::new();
        let mut p = with_policy(changelog::TypeChangePolicy::Halt);
        p.apply(&mut store, &recs[..1]).unwrap();
        let err = p.apply(&mut store, &recs[1..]).unwrap_err();
        assert!(err.is_fatal(), "{err}");
        assert!(err.to_string().starts_with(HALT_PREFIX), "{err}");
        assert!(err.to_string().contains("device_id"), "{err}");
    }
}
