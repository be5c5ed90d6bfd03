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
use crate::metrics;
use crate::sink::{self, TableDef};
use crate::source::RawRecord;
use crate::types::PartitionId;
use crate::value::Value;
use arrow_array::RecordBatch;
use ledgerstream_state::{PartitionStore, StateError, WriteBatch};
use std::collections::{BTreeMap, HashMap};

/// Keyspace holding the last applied position per `(table, pk)`.
const LSN_KEYSPACE: &str = "lsn";

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
        }
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
            let quarantine = |kind: &str, message: String, lsn: Option<i64>| {
                metrics::quarantined(kind, topic, partition, rec.offset.0, &message);
                QuarantineRecord {
                    kafka_ts_ms: rec.timestamp_ms,
                    topic,
                    partition,
                    offset: rec.offset.0,
                    source_table: Some(table.name()),
                    lsn,
                    kind,
                    rule: None,
                    message,
                    key: rec.key.as_deref(),
                    payload: rec.payload.as_deref(),
                }
                .into_row()
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
                    let schema = self
                        .schemas
                        .entry(table)
                        .or_insert_with(|| ChangelogSchema::new(table));
                    match schema.row(&ev, self.partition.0, rec.offset.0) {
                        Ok(Some(row)) => {
                            self.pending.entry(table).or_default().push(row);
                            stats.rows += 1;
                            overlay.insert(key, pos);
                            wb.put(LSN_KEYSPACE, &key, &pos)?;
                        }
                        Ok(None) => stats.truncates += 1,
                        Err(e) => {
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
        for (i, input) in self.inputs.iter().enumerate() {
            wb.set_position(&input.topic, self.next[i]);
        }
        store.write(wb)?;
        self.pending_records += records.len();
        Ok(stats)
    }

    /// Hands over everything since the previous seal and resets.
    pub fn seal(&mut self) -> Result<SealedOutput, ProcessError> {
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
        Processor::new(PartitionId(0), inputs(), vec![0, 0, 0], &BTreeMap::new())
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
        let out = p.seal().unwrap();
        let rows = rows_by_table(&out);
        assert_eq!(rows["quarantine"], 10);
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
        let first = p.seal().unwrap();
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
        let second = p.seal().unwrap();
        assert!(second.tables.is_empty());
        assert_eq!(rows_by_table(&first).values().sum::<usize>(), 300);
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
        let out = p.seal().unwrap();
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
        let out = p.seal().unwrap();
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
        p.seal().unwrap();
        let out = p.seal().unwrap();
        assert!(out.tables.is_empty());
        assert!(out.offsets.values().all(|(_, d)| d.is_none()));
    }
}
