//! Post-write validation: after the committer commits checkpoint `n` of a table, it reads back the files that
//! snapshot added (`crate::sink::readback::added_files`) and [`validate`]s them. This half is pure.
//!
//! Checks, each one [`CheckResult`] per table and snapshot, always all four and always in this order:
//! - `row_count`: rows in the added files == rows the committer sent. Catches lost or doubled files.
//! - `rules`: the table's [`RuleSet`] rules hold on every written row (Arrow columns by name). Referential rules
//!   need partition state and are skipped here (the detail says so). Rules apply to output tables named like a
//!   source table (`transactions`) or its changelog (`transactions_changes`).
//! - `partition_values`: every row's `day(event_time)` equals the day partition value its file is filed under;
//!   a wrong value makes date-filtered queries silently miss rows.
//! - `unique_key_lsn`: no `(key…, lsn, op)` appears twice among the added rows; a duplicate means a change was
//!   written twice (a replay that was not deduplicated).
//!
//! Results are both metrics and rows of the [`DQ_RESULTS_TABLE`] ([`dq_results_def`], [`CheckResult::to_row`]).
//! What a failure does is [`PostWritePolicy`]'s business, decided by the caller.

use std::collections::HashSet;

use arrow::row::{RowConverter, SortField};
use arrow::util::display::array_value_to_string;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use serde::Deserialize;

use super::rules::{Cell, Rule, RuleSet};
use crate::cdc::SourceTable;
use crate::changelog::changes_table;
use crate::types::CheckpointId;
use crate::value::{ColumnSpec, ColumnType, Value};

use crate::sink::TableDef;
pub use crate::sink::readback::WrittenFile;

/// The table every post-write check result is appended to.
pub const DQ_RESULTS_TABLE: &str = "dq_results";
/// The change-position column that, with the caller's key, identifies one written change.
pub const LSN_COLUMN: &str = "lsn";
/// The change-kind column (c/u/d/r): with key and LSN, identifies one written change.
pub const OP_COLUMN: &str = "op";

pub const CHECK_ROW_COUNT: &str = "row_count";
pub const CHECK_RULES: &str = "rules";
pub const CHECK_PARTITION_VALUES: &str = "partition_values";
pub const CHECK_UNIQUE_KEY_LSN: &str = "unique_key_lsn";
/// Every check name, in result order: a bounded label set for metrics.
pub const CHECKS: [&str; 4] = [
    CHECK_ROW_COUNT,
    CHECK_RULES,
    CHECK_PARTITION_VALUES,
    CHECK_UNIQUE_KEY_LSN,
];

/// A detail is stored in a table and logged; it says what failed first, not every failing row.
const MAX_DETAIL_CHARS: usize = 1_000;
const DAY_US: i64 = 86_400_000_000;

/// What a failed post-write check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostWritePolicy {
    /// Log, count and record the failure; keep committing.
    Alert,
    /// Stop before the next commit: the data is already committed, but nothing more lands on top of it until an
    /// operator has looked.
    Halt,
}

impl PostWritePolicy {
    /// Whether the pipeline must stop before its next commit, given one snapshot's results.
    pub fn halts(self, results: &[CheckResult]) -> bool {
        self == PostWritePolicy::Halt && results.iter().any(|r| !r.passed)
    }
}

/// The outcome of one check on one snapshot of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Output table name.
    pub table: String,
    /// One of [`CHECKS`].
    pub check: &'static str,
    pub passed: bool,
    /// Rows that failed (for `row_count`, the absolute difference between read and sent). 0 when passed.
    pub failing_rows: u64,
    /// Human-readable: counts, and the first failing value with its file. At most 1000 characters.
    pub detail: String,
}

impl CheckResult {
    fn new(def: &TableDef, check: &'static str, failing_rows: u64, detail: String) -> Self {
        CheckResult {
            table: def.name.clone(),
            check,
            passed: failing_rows == 0,
            failing_rows,
            detail: bounded(detail),
        }
    }

    /// A failure that is not about particular rows (a missing column, unreadable types).
    fn broken(def: &TableDef, check: &'static str, failing_rows: u64, detail: String) -> Self {
        CheckResult {
            passed: false,
            ..CheckResult::new(def, check, failing_rows, detail)
        }
    }

    /// The `dq_results` row ([`dq_results_def`] column order). `checked_at_us` is the caller's clock: the one
    /// place wall time is legitimate, since it records when the check ran.
    pub fn to_row(
        &self,
        checkpoint_id: CheckpointId,
        snapshot_id: i64,
        checked_at_us: i64,
    ) -> Vec<Value> {
        vec![
            // Checkpoint ids and row counts stay far below 2^63; saturate rather than wrap if one ever did not.
            Value::Int64(i64::try_from(checkpoint_id.0).unwrap_or(i64::MAX)),
            Value::Text(self.table.clone()),
            Value::Int64(snapshot_id),
            Value::Text(self.check.to_string()),
            Value::Bool(self.passed),
            Value::Int64(i64::try_from(self.failing_rows).unwrap_or(i64::MAX)),
            Value::Text(self.detail.clone()),
            Value::TimestampTz(checked_at_us),
        ]
    }
}

/// The `dq_results` table: one row per check per table per committed snapshot, partitioned by check time.
pub fn dq_results_def() -> TableDef {
    TableDef::new(
        DQ_RESULTS_TABLE,
        vec![
            ColumnSpec::new("checkpoint_id", ColumnType::Int64, false),
            ColumnSpec::new("table_name", ColumnType::Text, false),
            ColumnSpec::new("snapshot_id", ColumnType::Int64, false),
            ColumnSpec::new("check", ColumnType::Text, false),
            ColumnSpec::new("passed", ColumnType::Bool, false),
            ColumnSpec::new("failing_rows", ColumnType::Int64, false),
            ColumnSpec::new("detail", ColumnType::Text, false),
            ColumnSpec::new("checked_at", ColumnType::TimestampTz, false),
        ],
        "checked_at",
    )
}

/// Runs every check on the files one snapshot added. `expected_rows` is what the committer sent for this table
/// in this checkpoint; `key` names the column(s) that, with [`LSN_COLUMN`], identify a written change.
pub fn validate(
    def: &TableDef,
    files: &[WrittenFile],
    expected_rows: u64,
    rules: &RuleSet,
    key: &[&str],
) -> Vec<CheckResult> {
    vec![
        row_count(def, files, expected_rows),
        rules_hold(def, files, rules),
        partition_values(def, files),
        unique_key_lsn(def, files, key),
    ]
}

/// The source table whose rules apply to an output table.
pub fn source_table_of(output_table: &str) -> Option<SourceTable> {
    if output_table == crate::enrich::ENRICHED_TABLE {
        return Some(SourceTable::Transactions);
    }
    SourceTable::ALL
        .into_iter()
        .find(|t| t.name() == output_table || changes_table(*t) == output_table)
}

fn batches(files: &[WrittenFile]) -> impl Iterator<Item = (&str, &RecordBatch)> {
    files
        .iter()
        .flat_map(|f| f.batches.iter().map(move |b| (f.path.as_str(), b)))
}

fn rows_of(file: &WrittenFile) -> u64 {
    file.batches.iter().map(|b| b.num_rows() as u64).sum()
}

fn row_count(def: &TableDef, files: &[WrittenFile], expected: u64) -> CheckResult {
    let read: u64 = files.iter().map(rows_of).sum();
    CheckResult::new(
        def,
        CHECK_ROW_COUNT,
        read.abs_diff(expected),
        format!(
            "{read} rows in {} added files, {expected} sent",
            files.len()
        ),
    )
}

/// Referential rules are never evaluated here; this answers "exists" so that a stray call cannot fail a row.
fn no_state(_: SourceTable, _: i64) -> bool {
    true
}

fn rules_hold(def: &TableDef, files: &[WrittenFile], rules: &RuleSet) -> CheckResult {
    let Some(source) = source_table_of(&def.name) else {
        return CheckResult::new(
            def,
            CHECK_RULES,
            0,
            format!("no rules apply to table {}", def.name),
        );
    };
    let (skipped, checked): (Vec<&Rule>, Vec<&Rule>) =
        rules.for_table(source).partition(|r| r.is_referential());
    let skipped_note = if skipped.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = skipped.iter().map(|r| r.name()).collect();
        format!(
            "; referential rules need partition state and were not re-checked: {}",
            names.join(", ")
        )
    };
    // Per checked rule: failing rows and the first reason.
    let mut per_rule: Vec<(u64, Option<String>)> = vec![(0, None); checked.len()];
    let mut failing_rows = 0u64;
    let mut total = 0u64;
    for (path, batch) in batches(files) {
        let n = batch.num_rows();
        total += n as u64;
        // A delete image records a row leaving; rules are checked on rows entering (as at ingestion), so deletes
        // are never counted as failing.
        let deletes: Vec<bool> = match batch
            .column_by_name("op")
            .and_then(|c| c.as_string_opt::<i32>())
        {
            Some(ops) => (0..n)
                .map(|i| ops.is_valid(i) && ops.value(i) == "d")
                .collect(),
            None => vec![false; n],
        };
        let mut failed = vec![false; n];
        for (rule, (count, first)) in checked.iter().zip(per_rule.iter_mut()) {
            let Some(array) = batch.column_by_name(rule.column()) else {
                failed.iter_mut().for_each(|f| *f = true);
                *count += n as u64;
                first.get_or_insert_with(|| {
                    format!("column {} is absent from {path}", rule.column())
                });
                continue;
            };
            let view = ColumnView::new(array);
            for (i, row_failed) in failed.iter_mut().enumerate() {
                if deletes[i] {
                    continue;
                }
                if let Some(reason) = rule.eval(view.cell(i), &no_state) {
                    *row_failed = true;
                    *count += 1;
                    first.get_or_insert_with(|| format!("{reason} in {path}"));
                }
            }
        }
        failing_rows += failed.iter().filter(|f| **f).count() as u64;
    }
    let detail = if failing_rows == 0 {
        format!("{} rules held on {total} rows{skipped_note}", checked.len())
    } else {
        let broken: Vec<String> = checked
            .iter()
            .zip(&per_rule)
            .filter(|(_, (count, _))| *count > 0)
            .map(|(rule, (count, first))| {
                format!(
                    "{}: {count} rows, first: {}",
                    rule.name(),
                    first.as_deref().unwrap_or("?")
                )
            })
            .collect();
        format!(
            "{failing_rows} of {total} rows break rules; {}{skipped_note}",
            broken.join("; ")
        )
    };
    CheckResult::new(def, CHECK_RULES, failing_rows, detail)
}

fn partition_values(def: &TableDef, files: &[WrittenFile]) -> CheckResult {
    let col = def.event_time_column.as_str();
    let mut failing_rows = 0u64;
    let mut bad_files = 0usize;
    let mut first: Option<String> = None;
    for file in files {
        let path = &file.path;
        let before = failing_rows;
        let Some(day) = file.partition_day else {
            failing_rows += rows_of(file);
            if rows_of(file) > 0 {
                bad_files += 1;
            }
            first.get_or_insert_with(|| format!("{path} has no day partition value"));
            continue;
        };
        for batch in &file.batches {
            let n = batch.num_rows() as u64;
            let Some(array) = batch.column_by_name(col) else {
                failing_rows += n;
                first.get_or_insert_with(|| {
                    format!("event-time column {col} is absent from {path}")
                });
                continue;
            };
            let day_of: Box<dyn Fn(usize) -> i32> = match array.data_type() {
                DataType::Timestamp(TimeUnit::Microsecond, _) => {
                    let a = array.as_primitive::<TimestampMicrosecondType>();
                    // Days since the epoch of any i64 microsecond value fit in i32.
                    Box::new(move |i| a.value(i).div_euclid(DAY_US) as i32)
                }
                DataType::Date32 => {
                    let a = array.as_primitive::<Date32Type>();
                    Box::new(move |i| a.value(i))
                }
                other => {
                    failing_rows += n;
                    first.get_or_insert_with(|| {
                        format!("event-time column {col} has type {other} in {path}")
                    });
                    continue;
                }
            };
            for i in 0..batch.num_rows() {
                if array.is_null(i) {
                    failing_rows += 1;
                    first.get_or_insert_with(|| format!("{path}: {col} is null"));
                    continue;
                }
                let row_day = day_of(i);
                if row_day != day {
                    failing_rows += 1;
                    first.get_or_insert_with(|| {
                        format!(
                            "{path} is in partition {} but holds a row of {}",
                            fmt_day(day),
                            fmt_day(row_day)
                        )
                    });
                }
            }
        }
        if failing_rows > before {
            bad_files += 1;
        }
    }
    let detail = match first {
        None => format!(
            "every row of {} files is in its {col} day partition",
            files.len()
        ),
        Some(first) => format!(
            "{failing_rows} rows in {bad_files} of {} files outside their partition day; first: {first}",
            files.len()
        ),
    };
    CheckResult::new(def, CHECK_PARTITION_VALUES, failing_rows, detail)
}

fn unique_key_lsn(def: &TableDef, files: &[WrittenFile], key: &[&str]) -> CheckResult {
    let total: u64 = files.iter().map(rows_of).sum();
    if key.is_empty() {
        return CheckResult::broken(
            def,
            CHECK_UNIQUE_KEY_LSN,
            total,
            "no key columns given".into(),
        );
    }
    // A change of a row's key arrives as a delete under the old key and a create under the new one at one LSN;
    // when both halves name the same key (a wallet moved to another user keeps its id), `op` tells them apart.
    let op = def
        .columns
        .iter()
        .any(|c| c.name == OP_COLUMN)
        .then_some(OP_COLUMN);
    let names: Vec<&str> = key.iter().copied().chain([LSN_COLUMN]).chain(op).collect();
    // One converter for every batch: rows are only comparable when encoded by the same converter.
    let mut converter: Option<RowConverter> = None;
    let mut seen = HashSet::new();
    let mut duplicates = 0u64;
    let mut first: Option<String> = None;
    for (path, batch) in batches(files) {
        if batch.num_rows() == 0 {
            continue;
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(names.len());
        for name in &names {
            match batch.column_by_name(name) {
                Some(a) => columns.push(a.clone()),
                None => {
                    return CheckResult::broken(
                        def,
                        CHECK_UNIQUE_KEY_LSN,
                        total,
                        format!("column {name} is absent from {path}"),
                    );
                }
            }
        }
        let conv = match &mut converter {
            Some(c) => c,
            None => {
                let fields = columns
                    .iter()
                    .map(|a| SortField::new(a.data_type().clone()))
                    .collect();
                match RowConverter::new(fields) {
                    Ok(c) => converter.insert(c),
                    Err(e) => {
                        return CheckResult::broken(
                            def,
                            CHECK_UNIQUE_KEY_LSN,
                            total,
                            format!("key columns cannot be compared: {e}"),
                        );
                    }
                }
            }
        };
        let rows = match conv.convert_columns(&columns) {
            Ok(rows) => rows,
            Err(e) => {
                return CheckResult::broken(
                    def,
                    CHECK_UNIQUE_KEY_LSN,
                    total,
                    format!("key columns of {path} differ in type from earlier files: {e}"),
                );
            }
        };
        for i in 0..rows.num_rows() {
            if !seen.insert(rows.row(i).owned()) {
                duplicates += 1;
                first.get_or_insert_with(|| {
                    let shown: Vec<String> = names
                        .iter()
                        .zip(&columns)
                        .map(|(n, a)| {
                            let v = array_value_to_string(a, i).unwrap_or_else(|_| "?".into());
                            format!("{n}={v}")
                        })
                        .collect();
                    format!("({}) again in {path}", shown.join(", "))
                });
            }
        }
    }
    let detail = match first {
        None => format!("{total} rows, ({}) unique", names.join(", ")),
        Some(first) => format!("{duplicates} duplicate rows of {total}; first: {first}"),
    };
    CheckResult::new(def, CHECK_UNIQUE_KEY_LSN, duplicates, detail)
}

/// A typed view of one Arrow column, downcast once per batch rather than per cell.
enum ColumnView<'a> {
    Int32(&'a arrow_array::Int32Array),
    Int64(&'a arrow_array::Int64Array),
    Float64(&'a arrow_array::Float64Array),
    Decimal(&'a arrow_array::Decimal128Array, u8),
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    Other(&'a dyn Array, &'static str),
}

impl<'a> ColumnView<'a> {
    fn new(array: &'a ArrayRef) -> Self {
        match array.data_type() {
            DataType::Int32 => ColumnView::Int32(array.as_primitive::<Int32Type>()),
            DataType::Int64 => ColumnView::Int64(array.as_primitive::<Int64Type>()),
            DataType::Float64 => ColumnView::Float64(array.as_primitive::<Float64Type>()),
            DataType::Decimal128(_, scale) => match u8::try_from(*scale) {
                Ok(s) => ColumnView::Decimal(array.as_primitive::<Decimal128Type>(), s),
                Err(_) => ColumnView::Other(array.as_ref(), "negative-scale decimal"),
            },
            DataType::Utf8 => ColumnView::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => ColumnView::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => ColumnView::Utf8View(array.as_string_view()),
            DataType::Boolean => ColumnView::Other(array.as_ref(), "bool"),
            DataType::Binary | DataType::LargeBinary => ColumnView::Other(array.as_ref(), "binary"),
            DataType::Timestamp(..) => ColumnView::Other(array.as_ref(), "timestamp"),
            DataType::Date32 => ColumnView::Other(array.as_ref(), "date"),
            _ => ColumnView::Other(array.as_ref(), "unsupported-type"),
        }
    }

    fn cell(&self, i: usize) -> Cell<'a> {
        let exact = |v: i128, scale: u8| Cell::Exact { unscaled: v, scale };
        match self {
            ColumnView::Int32(a) if a.is_valid(i) => exact(i128::from(a.value(i)), 0),
            ColumnView::Int64(a) if a.is_valid(i) => exact(i128::from(a.value(i)), 0),
            ColumnView::Float64(a) if a.is_valid(i) => Cell::Float(a.value(i)),
            ColumnView::Decimal(a, s) if a.is_valid(i) => exact(a.value(i), *s),
            ColumnView::Utf8(a) if a.is_valid(i) => Cell::Text(a.value(i)),
            ColumnView::LargeUtf8(a) if a.is_valid(i) => Cell::Text(a.value(i)),
            ColumnView::Utf8View(a) if a.is_valid(i) => Cell::Text(a.value(i)),
            ColumnView::Other(a, kind) if a.is_valid(i) => Cell::Other(kind),
            _ => Cell::Null,
        }
    }
}

/// Days since the epoch as `YYYY-MM-DD`.
fn fmt_day(day: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map(|d| d.date_naive().to_string())
        .unwrap_or_else(|| format!("day {day}"))
}

fn bounded(s: String) -> String {
    match s.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

/// Changelog rows and batches for the tests here and in `sink::readback`.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::changelog::ChangelogSchema;
    use crate::sink::rows_to_batch;

    /// 2024-01-01T00:00:00Z in microseconds, and its day number.
    pub const BASE_US: i64 = 1_704_067_200_000_000;
    pub const BASE_DAY: i32 = 19_723;
    pub const DAY: i64 = DAY_US;

    pub fn changes_def() -> TableDef {
        ChangelogSchema::new(SourceTable::Transactions).def()
    }

    /// A changelog row of transaction `id` at `lsn`, with event time `ts_us`, `amount` in cents and a user.
    pub fn change_row(id: i64, lsn: i64, ts_us: i64, cents: i128, user: Option<i64>) -> Vec<Value> {
        vec![
            Value::Text("c".into()),
            Value::Int64(lsn),
            Value::Null,
            Value::TimestampTz(ts_us),
            Value::Int32(0),
            Value::Int64(id),
            // Declared transaction columns.
            Value::Int64(id),
            Value::Int64(10),
            user.map_or(Value::Null, Value::Int64),
            Value::Null,
            Value::Text("payment".into()),
            Value::Decimal(cents),
            Value::Decimal(30),
            Value::Text("EUR".into()),
            Value::Text("settled".into()),
            Value::Null,
            Value::Null,
            Value::TimestampTz(ts_us),
            Value::TimestampTz(ts_us),
        ]
    }

    /// A clean row of `id` on day `BASE_DAY + day`.
    pub fn clean(id: i64, day: i64) -> Vec<Value> {
        change_row(
            id,
            1_000 + id,
            BASE_US + day * DAY + id,
            500 + i128::from(id),
            Some(7),
        )
    }

    pub fn batch(rows: &[Vec<Value>]) -> RecordBatch {
        let def = changes_def();
        let schema = def.arrow_schema().expect("schema");
        rows_to_batch(&def, &schema, rows).expect("batch")
    }

    pub fn file(path: &str, day: Option<i32>, rows: &[Vec<Value>]) -> WrittenFile {
        WrittenFile {
            path: path.into(),
            partition_day: day,
            batches: vec![batch(rows)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::dq::rules::{DqConfig, compile};

    fn rules() -> RuleSet {
        compile(&DqConfig::default()).expect("default rules")
    }

    /// (check, passed, failing_rows) of every result, for exact assertions.
    fn summary(results: &[CheckResult]) -> Vec<(&'static str, bool, u64)> {
        results
            .iter()
            .map(|r| (r.check, r.passed, r.failing_rows))
            .collect()
    }

    fn two_days() -> Vec<WrittenFile> {
        vec![
            file("d0.parquet", Some(BASE_DAY), &[clean(1, 0), clean(2, 0)]),
            file("d1.parquet", Some(BASE_DAY + 1), &[clean(3, 1)]),
        ]
    }

    #[test]
    fn clean_files_pass_every_check() {
        let def = changes_def();
        let results = validate(&def, &two_days(), 3, &rules(), &["id"]);
        assert_eq!(
            summary(&results),
            vec![
                ("row_count", true, 0),
                ("rules", true, 0),
                ("partition_values", true, 0),
                ("unique_key_lsn", true, 0),
            ]
        );
        let details: Vec<&str> = results.iter().map(|r| r.detail.as_str()).collect();
        assert_eq!(
            details,
            vec![
                "3 rows in 2 added files, 3 sent",
                "3 rules held on 3 rows",
                "every row of 2 files is in its source_ts day partition",
                "3 rows, (id, lsn, op) unique",
            ]
        );
        assert!(results.iter().all(|r| r.table == "transactions_changes"));
        assert!(!PostWritePolicy::Halt.halts(&results));
    }

    #[test]
    fn row_count_mismatch_either_way() {
        let def = changes_def();
        let more = validate(&def, &two_days(), 4, &rules(), &["id"]);
        assert_eq!(
            (
                more[0].passed,
                more[0].failing_rows,
                more[0].detail.as_str()
            ),
            (false, 1, "3 rows in 2 added files, 4 sent")
        );
        let fewer = validate(&def, &two_days(), 1, &rules(), &["id"]);
        assert_eq!((fewer[0].passed, fewer[0].failing_rows), (false, 2));
        assert!(PostWritePolicy::Halt.halts(&fewer));
        assert!(!PostWritePolicy::Alert.halts(&fewer));
    }

    #[test]
    fn rules_count_failing_rows_once_and_show_the_first_value() {
        let def = changes_def();
        let rows = vec![
            clean(1, 0),
            // Null user and negative amount: one failing row, two broken rules.
            change_row(2, 1_002, BASE_US + 2, -150, None),
            change_row(3, 1_003, BASE_US + 3, 0, Some(7)),
        ];
        let files = vec![file("f.parquet", Some(BASE_DAY), &rows)];
        let r = &validate(&def, &files, 3, &rules(), &["id"])[1];
        assert_eq!((r.check, r.passed, r.failing_rows), ("rules", false, 2));
        assert_eq!(
            r.detail,
            "2 of 3 rows break rules; transactions.user_id.not_null: 1 rows, first: user_id is null in \
             f.parquet; transactions.amount.positive: 2 rows, first: amount is -1.50, must be > 0 in f.parquet"
        );
    }

    #[test]
    fn rules_skip_referential_and_foreign_tables() {
        let def = changes_def();
        let cfg: DqConfig = toml::from_str(
            "[[rules]]\ntable = \"transactions\"\ncolumn = \"user_id\"\ncheck = { referential = { references = \"users\" } }\n\
             [[rules]]\ntable = \"wallets\"\ncolumn = \"currency\"\ncheck = { in_set = { values = [\"USD\"] } }\n",
        )
        .expect("parse");
        let rules = compile(&cfg).expect("compile");
        let r = &validate(&def, &two_days(), 3, &rules, &["id"])[1];
        assert_eq!(
            (r.passed, r.detail.as_str()),
            (
                true,
                "0 rules held on 3 rows; referential rules need partition state and were not re-checked: \
                 transactions.user_id.referential"
            )
        );
        let other = TableDef::new("fraud_alerts", def.columns.clone(), "source_ts");
        let r = &validate(&other, &two_days(), 3, &self::rules(), &["id"])[1];
        assert_eq!(
            (r.passed, r.detail.as_str()),
            (true, "no rules apply to table fraud_alerts")
        );
        assert_eq!(source_table_of("users"), Some(SourceTable::Users));
        assert_eq!(
            source_table_of("wallets_changes"),
            Some(SourceTable::Wallets)
        );
    }

    #[test]
    fn partition_values_catch_misfiled_and_unpartitioned_rows() {
        let def = changes_def();
        let files = vec![
            // Day-1 rows filed under day 0.
            file(
                "wrong.parquet",
                Some(BASE_DAY),
                &[clean(1, 0), clean(2, 1), clean(3, 1)],
            ),
            file("none.parquet", None, &[clean(4, 0)]),
            file("ok.parquet", Some(BASE_DAY + 1), &[clean(5, 1)]),
        ];
        let r = &validate(&def, &files, 5, &rules(), &["id"])[2];
        assert_eq!(
            (r.check, r.passed, r.failing_rows),
            ("partition_values", false, 3)
        );
        assert_eq!(
            r.detail,
            "3 rows in 2 of 3 files outside their partition day; first: wrong.parquet is in partition \
             2024-01-01 but holds a row of 2024-01-02"
        );
        // Event times before the epoch round down to the earlier day.
        let early = change_row(9, 9, -1, 100, Some(1));
        let r = &validate(
            &def,
            &[file("e.parquet", Some(-1), &[early])],
            1,
            &rules(),
            &["id"],
        )[2];
        assert!(r.passed, "{}", r.detail);
    }

    #[test]
    fn a_key_change_is_a_delete_and_a_create_at_one_lsn_not_a_duplicate() {
        // A wallet moved to another user: Debezium sends a delete and a create of the same id at one LSN.
        let def = changes_def();
        let mut delete = clean(2, 0);
        delete[0] = Value::Text("d".into());
        let files = vec![file(
            "a.parquet",
            Some(BASE_DAY),
            &[clean(1, 0), delete.clone(), clean(2, 0)],
        )];
        let r = &validate(&def, &files, 3, &rules(), &["id"])[3];
        assert_eq!(
            (r.check, r.passed, r.failing_rows),
            ("unique_key_lsn", true, 0),
            "{}",
            r.detail
        );
        // A delete written twice is still caught.
        let twice = vec![file("a.parquet", Some(BASE_DAY), &[delete.clone(), delete])];
        let r = &validate(&def, &twice, 2, &rules(), &["id"])[3];
        assert_eq!((r.passed, r.failing_rows), (false, 1), "{}", r.detail);
    }

    #[test]
    fn duplicate_key_lsn_across_files() {
        let def = changes_def();
        let files = vec![
            file("a.parquet", Some(BASE_DAY), &[clean(1, 0), clean(2, 0)]),
            // Same id, same lsn (a replayed change), and same id at a new lsn (a later update: fine).
            file(
                "b.parquet",
                Some(BASE_DAY),
                &[clean(2, 0), change_row(2, 5_000, BASE_US + 5, 600, Some(7))],
            ),
        ];
        let r = &validate(&def, &files, 4, &rules(), &["id"])[3];
        assert_eq!(
            (r.check, r.passed, r.failing_rows),
            ("unique_key_lsn", false, 1)
        );
        assert_eq!(
            r.detail,
            "1 duplicate rows of 4; first: (id=2, lsn=1002, op=c) again in b.parquet"
        );
        let no_key = &validate(&def, &files, 4, &rules(), &[])[3];
        assert_eq!(
            (no_key.passed, no_key.failing_rows, no_key.detail.as_str()),
            (false, 4, "no key columns given")
        );
        let bad_key = &validate(&def, &files, 4, &rules(), &["nope"])[3];
        assert_eq!(
            (bad_key.passed, bad_key.detail.as_str()),
            (false, "column nope is absent from a.parquet")
        );
    }

    #[test]
    fn empty_snapshot_passes_when_nothing_was_sent() {
        let results = validate(&changes_def(), &[], 0, &rules(), &["id"]);
        assert_eq!(
            summary(&results),
            vec![
                ("row_count", true, 0),
                ("rules", true, 0),
                ("partition_values", true, 0),
                ("unique_key_lsn", true, 0),
            ]
        );
    }

    #[test]
    fn results_become_dq_results_rows() {
        let def = dq_results_def();
        def.validate().expect("valid def");
        let result = CheckResult {
            table: "transactions_changes".into(),
            check: CHECK_ROW_COUNT,
            passed: false,
            failing_rows: 1,
            detail: "3 rows in 2 added files, 4 sent".into(),
        };
        let row = result.to_row(CheckpointId(42), 777, BASE_US);
        assert_eq!(
            row,
            vec![
                Value::Int64(42),
                Value::Text("transactions_changes".into()),
                Value::Int64(777),
                Value::Text("row_count".into()),
                Value::Bool(false),
                Value::Int64(1),
                Value::Text("3 rows in 2 added files, 4 sent".into()),
                Value::TimestampTz(BASE_US),
            ]
        );
        let schema = def.arrow_schema().expect("schema");
        let batch = crate::sink::rows_to_batch(&def, &schema, &[row]).expect("fits the table");
        assert_eq!(batch.num_rows(), 1);
    }

    #[test]
    fn long_details_are_bounded() {
        let s = bounded("x".repeat(5_000));
        assert_eq!(s.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(s.ends_with('…'));
    }
}
