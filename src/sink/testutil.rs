//! Shared fixtures for the sink's tests: a transactions-like table, deterministic rows and read-back helpers.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use futures::TryStreamExt;
use iceberg::table::Table;

use crate::types::{CheckpointId, Offset, PartitionId};
use crate::value::{ColumnSpec, ColumnType, Value};

use super::catalog::{CatalogConfig, SinkCatalog};
use super::commit::CommitMeta;
use super::table::TableDef;

/// 2024-01-01T00:00:00Z in microseconds.
pub const BASE_US: i64 = 1_704_067_200_000_000;
pub const DAY_US: i64 = 86_400_000_000;
/// Days since the epoch of 2024-01-01.
pub const BASE_DAY: i32 = 19_723;

pub fn tx_def() -> TableDef {
    TableDef::new(
        "transactions",
        vec![
            ColumnSpec::new("id", ColumnType::Int64, false),
            ColumnSpec::new(
                "amount",
                ColumnType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                false,
            ),
            ColumnSpec::new("note", ColumnType::Text, true),
            ColumnSpec::new("created_at", ColumnType::TimestampTz, false),
        ],
        "created_at",
    )
}

/// The row for `id`: amount `id.07`, a note on even ids, event time on day `id % 3` after 2024-01-01.
pub fn tx_row(id: i64) -> Vec<Value> {
    vec![
        Value::Int64(id),
        Value::Decimal(i128::from(id) * 100 + 7),
        if id % 2 == 0 {
            Value::Text(format!("n{id}"))
        } else {
            Value::Null
        },
        Value::TimestampTz(BASE_US + (id % 3) * DAY_US + id),
    ]
}

pub fn tx_rows(ids: std::ops::Range<i64>) -> Vec<Vec<Value>> {
    ids.map(tx_row).collect()
}

pub async fn embedded(dir: &Path) -> SinkCatalog {
    SinkCatalog::connect(&CatalogConfig::embedded(dir), "fintech")
        .await
        .expect("connect embedded catalog")
}

pub fn meta(writer: &str, cp: u64, next_offset: i64) -> CommitMeta {
    CommitMeta {
        checkpoint_id: CheckpointId(cp),
        writer_id: writer.to_string(),
        epoch: None,
        offsets: BTreeMap::from([(
            "fintech.public.transactions".to_string(),
            BTreeMap::from([
                (PartitionId(0), Offset(next_offset)),
                (PartitionId(1), Offset(next_offset * 2)),
            ]),
        )]),
    }
}

/// Every batch of a full scan of the table's current snapshot.
pub async fn scan(table: &Table) -> Vec<RecordBatch> {
    table
        .scan()
        .select_all()
        .build()
        .expect("scan")
        .to_arrow()
        .await
        .expect("to_arrow")
        .try_collect()
        .await
        .expect("read batches")
}

/// One read-back row of the transactions table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TxOut {
    pub id: i64,
    pub cents: i128,
    pub note: Option<String>,
    pub ts: i64,
}

impl TxOut {
    pub fn expected(id: i64) -> Self {
        TxOut {
            id,
            cents: i128::from(id) * 100 + 7,
            note: (id % 2 == 0).then(|| format!("n{id}")),
            ts: BASE_US + (id % 3) * DAY_US + id,
        }
    }
}

/// The transactions rows of a scan, sorted by id.
pub fn tx_out(batches: &[RecordBatch]) -> Vec<TxOut> {
    let mut out = Vec::new();
    for b in batches {
        let col = |name: &str| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("column {name}"))
        };
        let ids = col("id").as_primitive::<Int64Type>();
        let amounts = col("amount").as_primitive::<Decimal128Type>();
        let notes = col("note").as_string::<i32>();
        let ts = col("created_at").as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            out.push(TxOut {
                id: ids.value(i),
                cents: amounts.value(i),
                note: (!notes.is_null(i)).then(|| notes.value(i).to_string()),
                ts: ts.value(i),
            });
        }
    }
    out.sort();
    out
}

/// (data file path, record count) of every file the current snapshot references.
pub async fn planned_files(table: &Table) -> Vec<(String, u64)> {
    let tasks: Vec<_> = table
        .scan()
        .select_all()
        .build()
        .expect("scan")
        .plan_files()
        .await
        .expect("plan")
        .try_collect()
        .await
        .expect("tasks");
    let mut files: Vec<(String, u64)> = tasks
        .into_iter()
        .map(|t| (t.data_file_path, t.record_count.unwrap_or(0)))
        .collect();
    files.sort();
    files
}
