//! Declarative data-quality rules: `[dq]` config → validated [`RuleSet`] → [`Violation`]s per row.
//!
//! Contract:
//! - [`compile`] does no I/O and rejects, naming the rule: an unknown table, a column that is not in the table's
//!   declaration ([`SourceTable::columns`]), a check that does not fit the column's type (`positive`/`range` on
//!   numbers, `in_set`/`regex`/`max_length` on text, `referential` on a bigint id), a regex that does not compile,
//!   a referential target other than `users`/`wallets`, and duplicate rule names.
//! - [`RuleSet::check`] is pure: the same row and the same reference answers give the same violations, in rule
//!   order. Only `not_null` fails on a null; every other check passes on null (nullability is one rule, not a
//!   side effect of every rule).
//! - Decimal cells are unscaled at the column's scale, so range bounds are rescaled once at compile time and a
//!   bound with more decimal places than the column is a config error rather than a silent rounding.
//! - `regex` must match the *whole* value (the pattern is anchored), which is what a format rule means.
//!
//! The same compiled rules are evaluated on Arrow columns after a write (see [`super::post_write`]) through
//! [`Cell`], so the two paths cannot disagree about what a rule means.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use regex::Regex;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;

use super::post_write::PostWritePolicy;
use crate::cdc::{Row, SourceTable};
use crate::value::{ColumnType, Value};

/// Text values in violation reasons are cut to this many characters: a reason goes to logs and to the
/// quarantine table, and a hostile multi-megabyte value must not follow it there.
const MAX_SHOWN_CHARS: usize = 64;
/// At most this many members of an `in_set` are listed in a reason.
const MAX_SHOWN_MEMBERS: usize = 10;

/// The `[dq]` section of the config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DqConfig {
    /// What a failed post-write check does: `alert` (log, count and record it in `dq_results`, keep committing)
    /// or `halt` (stop before the next commit, so that nothing more lands on top of a suspect snapshot).
    #[serde(default = "default_post_write_policy")]
    pub post_write_policy: PostWritePolicy,
    /// The rules, checked in this order. Giving any `[[dq.rules]]` replaces the defaults ([`default_rules`])
    /// entirely; `rules = []` turns row rules off.
    #[serde(default = "default_rules")]
    pub rules: Vec<RuleConfig>,
}

impl Default for DqConfig {
    fn default() -> Self {
        DqConfig {
            post_write_policy: default_post_write_policy(),
            rules: default_rules(),
        }
    }
}

/// Alert: a data-quality finding should be seen, not stop the pipeline, unless the operator says so.
pub fn default_post_write_policy() -> PostWritePolicy {
    PostWritePolicy::Alert
}

/// Every currency a wallet can hold (`generate::model`'s home and second-wallet currencies).
pub const DEFAULT_CURRENCIES: [&str; 6] = ["CHF", "EUR", "GBP", "PLN", "SEK", "USD"];

/// The defaults catch the three malformed-transaction defects the generator injects: a missing user, a
/// non-positive amount and an unknown currency.
pub fn default_rules() -> Vec<RuleConfig> {
    let rule = |column: &str, check: CheckConfig| RuleConfig {
        table: SourceTable::Transactions.name().to_string(),
        column: column.to_string(),
        check,
        name: None,
    };
    vec![
        rule("user_id", CheckConfig::NotNull),
        rule("amount", CheckConfig::Positive),
        rule(
            "currency",
            CheckConfig::InSet {
                values: DEFAULT_CURRENCIES.iter().map(|c| c.to_string()).collect(),
            },
        ),
    ]
}

/// One `[[dq.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Source table as PostgreSQL names it: `users`, `wallets` or `transactions`.
    pub table: String,
    /// A declared column of that table (columns added at run time are not known at config time).
    pub column: String,
    /// `"not_null"`, `"positive"`, or a table such as `{ range = { min = 0, max = "10000.00" } }`,
    /// `{ in_set = { values = ["EUR"] } }`, `{ regex = { pattern = "[A-Z]{2}" } }`, `{ max_length = { max = 64 } }`,
    /// `{ referential = { references = "users" } }`.
    pub check: CheckConfig,
    /// Name in quarantine records, metrics and `dq_results`; defaults to `<table>.<column>.<check>`. Keep it
    /// stable: it is a metric label value and dashboards key on it.
    #[serde(default)]
    pub name: Option<String>,
}

impl RuleConfig {
    /// The explicit name, or `<table>.<column>.<check>`.
    pub fn effective_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{}.{}.{}", self.table, self.column, self.check.kind()),
        }
    }
}

/// What a rule checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum CheckConfig {
    /// The value is not null.
    NotNull,
    /// A number strictly greater than zero.
    Positive,
    /// A number within `[min, max]` (both inclusive; at least one given).
    Range {
        #[serde(default)]
        min: Option<ConfigNumber>,
        #[serde(default)]
        max: Option<ConfigNumber>,
    },
    /// Text equal to one of `values` (case-sensitive).
    InSet { values: Vec<String> },
    /// Text that the pattern matches as a whole.
    Regex { pattern: String },
    /// Text of at most `max` characters (Unicode scalar values, not bytes).
    MaxLength { max: usize },
    /// A bigint id of a row that exists in `references` (`users` or `wallets`) according to partition state.
    Referential { references: String },
}

impl CheckConfig {
    /// The check's name as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckConfig::NotNull => "not_null",
            CheckConfig::Positive => "positive",
            CheckConfig::Range { .. } => "range",
            CheckConfig::InSet { .. } => "in_set",
            CheckConfig::Regex { .. } => "regex",
            CheckConfig::MaxLength { .. } => "max_length",
            CheckConfig::Referential { .. } => "referential",
        }
    }
}

/// A range bound as written in TOML: an integer, a float, or a string (`"0.01"`, exact for decimals).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ConfigNumber {
    Int(i64),
    Float(f64),
    Text(String),
}

impl ConfigNumber {
    fn to_decimal(&self) -> Option<Decimal> {
        match self {
            ConfigNumber::Int(i) => Some(Decimal::from(*i)),
            // `Display` of an f64 is its shortest round-tripping decimal, never exponent notation, so 0.01 stays 0.01.
            ConfigNumber::Float(f) if f.is_finite() => Decimal::from_str(&f.to_string()).ok(),
            ConfigNumber::Float(_) => None,
            ConfigNumber::Text(s) => Decimal::from_str(s.trim()).ok(),
        }
    }
}

impl fmt::Display for ConfigNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigNumber::Int(i) => write!(f, "{i}"),
            ConfigNumber::Float(x) => write!(f, "{x}"),
            ConfigNumber::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// A rule that cannot be compiled; each names the rule (its effective name) and says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DqConfigError {
    #[error("dq rule {rule}: unknown table `{table}` (expected users, wallets or transactions)")]
    UnknownTable { rule: String, table: String },
    #[error("dq rule {rule}: table {table} has no column `{column}` (declared: {declared})")]
    UnknownColumn {
        rule: String,
        table: &'static str,
        column: String,
        declared: String,
    },
    #[error(
        "dq rule {rule}: check `{check}` needs a {expected} column, but {table}.{column} is {found:?}"
    )]
    WrongType {
        rule: String,
        check: &'static str,
        table: &'static str,
        column: String,
        expected: &'static str,
        found: ColumnType,
    },
    #[error("dq rule {rule}: regex {pattern:?} does not compile: {reason}")]
    BadRegex {
        rule: String,
        pattern: String,
        reason: String,
    },
    #[error("dq rule {rule}: referential target `{references}` must be users or wallets")]
    BadReference { rule: String, references: String },
    #[error("dq rule {rule}: {reason}")]
    InvalidCheck { rule: String, reason: String },
    #[error("dq rule name `{name}` is used by more than one rule")]
    DuplicateName { name: String },
}

/// Answers referential checks from partition state. The caller owns the state; rules never do I/O.
pub trait RefLookup {
    /// Whether a row of `table` with primary key `id` is known.
    fn exists(&self, table: SourceTable, id: i64) -> bool;
}

impl<F: Fn(SourceTable, i64) -> bool> RefLookup for F {
    fn exists(&self, table: SourceTable, id: i64) -> bool {
        self(table, id)
    }
}

/// One failed rule on one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule's name: the quarantine record's `rule` column and the per-rule metric label.
    pub rule: String,
    /// The column the rule is about, so that a reader need not parse the name.
    pub column: String,
    /// Human-readable, with the offending value (text cut to 64 characters).
    pub reason: String,
}

/// A cell as rules see it, whether it comes from a [`Row`] or an Arrow array.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    Null,
    /// An integer (`scale` 0) or an unscaled decimal.
    Exact {
        unscaled: i128,
        scale: u8,
    },
    Float(f64),
    Text(&'a str),
    /// Any other type; names it for the reason.
    Other(&'static str),
}

impl<'a> Cell<'a> {
    fn of_value(v: &'a Value, ty: ColumnType) -> Cell<'a> {
        match v {
            Value::Null => Cell::Null,
            Value::Int32(i) => Cell::Exact {
                unscaled: i128::from(*i),
                scale: 0,
            },
            Value::Int64(i) => Cell::Exact {
                unscaled: i128::from(*i),
                scale: 0,
            },
            Value::Decimal(d) => Cell::Exact {
                unscaled: *d,
                scale: match ty {
                    ColumnType::Decimal { scale, .. } => scale,
                    _ => 0,
                },
            },
            Value::Float64(f) => Cell::Float(*f),
            Value::Text(s) => Cell::Text(s),
            Value::Bool(_) => Cell::Other("bool"),
            Value::Binary(_) => Cell::Other("binary"),
            Value::TimestampTz(_) => Cell::Other("timestamptz"),
            Value::Date(_) => Cell::Other("date"),
        }
    }

    fn shown(&self) -> String {
        match *self {
            Cell::Null => "null".to_string(),
            Cell::Exact { unscaled, scale } => fmt_unscaled(unscaled, scale),
            Cell::Float(f) => f.to_string(),
            Cell::Text(s) => shown_text(s),
            Cell::Other(kind) => format!("a {kind} value"),
        }
    }
}

/// An unscaled decimal as `-12.34`.
pub(crate) fn fmt_unscaled(v: i128, scale: u8) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let s = usize::from(scale);
    let digits = format!("{:0>width$}", v.unsigned_abs(), width = s + 1);
    let (int, frac) = digits.split_at(digits.len() - s);
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}")
}

/// A text value quoted and cut to [`MAX_SHOWN_CHARS`].
pub(crate) fn shown_text(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// A compiled numeric bound, in the column's own representation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    /// Unscaled at the column's scale (0 for integer columns).
    Exact(i128),
    Float(f64),
}

/// A compiled check.
#[derive(Debug, Clone)]
enum Check {
    NotNull,
    Positive,
    Range {
        min: Option<Bound>,
        max: Option<Bound>,
    },
    InSet(BTreeSet<String>),
    Regex {
        /// The anchored form actually matched.
        regex: Regex,
        /// The pattern as configured, for reasons.
        pattern: String,
    },
    MaxLength(usize),
    Referential(SourceTable),
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Effective name, unique in the set.
    name: String,
    table: SourceTable,
    /// Declared column name; `'static` because it comes from the declaration, which also proves it exists.
    column: &'static str,
    /// Position in [`SourceTable::columns`], so the row path reads the cell without a name lookup.
    index: usize,
    /// Column type; fixes the scale that decimal cells and bounds share.
    ty: ColumnType,
    check: Check,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn table(&self) -> SourceTable {
        self.table
    }

    pub fn column(&self) -> &'static str {
        self.column
    }

    /// The check's config name (`not_null`, `range`, …).
    pub fn kind(&self) -> &'static str {
        match self.check {
            Check::NotNull => "not_null",
            Check::Positive => "positive",
            Check::Range { .. } => "range",
            Check::InSet(_) => "in_set",
            Check::Regex { .. } => "regex",
            Check::MaxLength(_) => "max_length",
            Check::Referential(_) => "referential",
        }
    }

    /// Whether the rule needs partition state; such rules cannot be re-checked on written files.
    pub fn is_referential(&self) -> bool {
        matches!(self.check, Check::Referential(_))
    }

    fn scale(&self) -> u8 {
        match self.ty {
            ColumnType::Decimal { scale, .. } => scale,
            _ => 0,
        }
    }

    /// `None` if the cell passes; otherwise the reason.
    pub(crate) fn eval(&self, cell: Cell<'_>, refs: &dyn RefLookup) -> Option<String> {
        let col = self.column;
        if cell == Cell::Null {
            return matches!(self.check, Check::NotNull).then(|| format!("{col} is null"));
        }
        match &self.check {
            Check::NotNull => None,
            Check::Positive => match self.compare(cell, Bound::Exact(0)) {
                Ok(std::cmp::Ordering::Greater) => None,
                Ok(_) => Some(format!("{col} is {}, must be > 0", cell.shown())),
                Err(reason) => Some(reason),
            },
            Check::Range { min, max } => {
                if let Some(b) = min {
                    match self.compare(cell, *b) {
                        Ok(std::cmp::Ordering::Less) => {
                            return Some(format!(
                                "{col} is {}, below the minimum {}",
                                cell.shown(),
                                self.shown_bound(*b)
                            ));
                        }
                        Ok(_) => {}
                        Err(reason) => return Some(reason),
                    }
                }
                if let Some(b) = max {
                    match self.compare(cell, *b) {
                        Ok(std::cmp::Ordering::Greater) => {
                            return Some(format!(
                                "{col} is {}, above the maximum {}",
                                cell.shown(),
                                self.shown_bound(*b)
                            ));
                        }
                        Ok(_) => {}
                        Err(reason) => return Some(reason),
                    }
                }
                None
            }
            Check::InSet(set) => match cell {
                Cell::Text(s) if set.contains(s) => None,
                Cell::Text(s) => {
                    let members: Vec<&str> = set
                        .iter()
                        .take(MAX_SHOWN_MEMBERS)
                        .map(String::as_str)
                        .collect();
                    let more = set.len().saturating_sub(MAX_SHOWN_MEMBERS);
                    let more = if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    };
                    Some(format!(
                        "{col} is {}, not one of {}{more}",
                        shown_text(s),
                        members.join(", ")
                    ))
                }
                other => Some(self.not_text(other)),
            },
            Check::Regex { regex, pattern } => match cell {
                Cell::Text(s) if regex.is_match(s) => None,
                Cell::Text(s) => Some(format!(
                    "{col} is {}, which does not match the pattern {pattern:?} as a whole",
                    shown_text(s)
                )),
                other => Some(self.not_text(other)),
            },
            Check::MaxLength(max) => match cell {
                Cell::Text(s) => {
                    let n = s.chars().count();
                    (n > *max).then(|| {
                        format!(
                            "{col} has {n} characters, more than {max}: {}",
                            shown_text(s)
                        )
                    })
                }
                other => Some(self.not_text(other)),
            },
            Check::Referential(target) => match cell {
                Cell::Exact { unscaled, scale: 0 } => match i64::try_from(unscaled) {
                    Ok(id) if refs.exists(*target, id) => None,
                    _ => Some(format!("{col} {unscaled} references no known {target} row")),
                },
                other => Some(format!(
                    "{col} is {}, not a bigint id of {target}",
                    other.shown()
                )),
            },
        }
    }

    fn not_text(&self, cell: Cell<'_>) -> String {
        format!("{} is {}, not text", self.column, cell.shown())
    }

    fn shown_bound(&self, b: Bound) -> String {
        match b {
            Bound::Exact(v) => fmt_unscaled(v, self.scale()),
            Bound::Float(f) => f.to_string(),
        }
    }

    /// Orders a numeric cell against a bound; `Err` (a reason) for a cell that is not a number of the
    /// column's scale, which only a schema mismatch between rules and data can produce.
    fn compare(&self, cell: Cell<'_>, bound: Bound) -> Result<std::cmp::Ordering, String> {
        let col = self.column;
        match (cell, bound) {
            (Cell::Exact { unscaled, scale }, Bound::Exact(b)) if scale == self.scale() => {
                Ok(unscaled.cmp(&b))
            }
            (Cell::Exact { scale, .. }, Bound::Exact(_)) => Err(format!(
                "{col} has scale {scale} in the data, the rule was compiled for scale {}",
                self.scale()
            )),
            (Cell::Float(f), Bound::Float(b)) => f
                .partial_cmp(&b)
                .ok_or_else(|| format!("{col} is NaN, not comparable")),
            (Cell::Float(f), Bound::Exact(0)) => f
                .partial_cmp(&0.0)
                .ok_or_else(|| format!("{col} is NaN, not comparable")),
            (Cell::Exact { unscaled, scale }, Bound::Float(b)) => {
                let v = fmt_unscaled(unscaled, scale)
                    .parse::<f64>()
                    .unwrap_or(f64::NAN);
                v.partial_cmp(&b)
                    .ok_or_else(|| format!("{col} is {}, not comparable", cell.shown()))
            }
            (other, _) => Err(format!("{col} is {}, not a number", other.shown())),
        }
    }
}

/// The compiled rules, in config order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Every violation of `row`, in rule order; empty when the row is clean. Rules of other tables are ignored.
    pub fn check(&self, row: &Row, refs: &dyn RefLookup) -> Vec<Violation> {
        let mut out = Vec::new();
        for rule in self.for_table(row.table()) {
            // The row invariant guarantees one value per declared column; a miss would be a bug, read as null.
            let cell = row
                .values()
                .get(rule.index)
                .map_or(Cell::Null, |v| Cell::of_value(v, rule.ty));
            if let Some(reason) = rule.eval(cell, refs) {
                out.push(Violation {
                    rule: rule.name.clone(),
                    column: rule.column.to_string(),
                    reason,
                });
            }
        }
        out
    }

    /// Rule names in config order, for pre-registering per-rule metrics.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// The rules of one source table, in config order.
    pub fn for_table(&self, table: SourceTable) -> impl Iterator<Item = &Rule> + '_ {
        self.rules.iter().filter(move |r| r.table == table)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Validates the config (no I/O) and compiles it.
pub fn compile(config: &DqConfig) -> Result<RuleSet, DqConfigError> {
    let mut names = BTreeSet::new();
    let mut rules = Vec::with_capacity(config.rules.len());
    for rc in &config.rules {
        let rule = compile_rule(rc)?;
        if !names.insert(rule.name.clone()) {
            return Err(DqConfigError::DuplicateName { name: rule.name });
        }
        rules.push(rule);
    }
    Ok(RuleSet { rules })
}

fn compile_rule(rc: &RuleConfig) -> Result<Rule, DqConfigError> {
    let name = rc.effective_name();
    let invalid = |reason: String| DqConfigError::InvalidCheck {
        rule: name.clone(),
        reason,
    };
    if name.trim().is_empty() {
        return Err(invalid("the rule name must not be empty".into()));
    }
    let table = SourceTable::ALL
        .into_iter()
        .find(|t| t.name() == rc.table)
        .ok_or_else(|| DqConfigError::UnknownTable {
            rule: name.clone(),
            table: rc.table.clone(),
        })?;
    let (index, column) = table
        .columns()
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == rc.column)
        .ok_or_else(|| DqConfigError::UnknownColumn {
            rule: name.clone(),
            table: table.name(),
            column: rc.column.clone(),
            declared: table
                .columns()
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let ty = column.ty;
    let kind = rc.check.kind();
    let wrong_type = |expected: &'static str| DqConfigError::WrongType {
        rule: name.clone(),
        check: kind,
        table: table.name(),
        column: column.name.to_string(),
        expected,
        found: ty,
    };
    let numeric = matches!(
        ty,
        ColumnType::Int32 | ColumnType::Int64 | ColumnType::Float64 | ColumnType::Decimal { .. }
    );
    let text = ty == ColumnType::Text;
    let check = match &rc.check {
        CheckConfig::NotNull => Check::NotNull,
        CheckConfig::Positive if numeric => Check::Positive,
        CheckConfig::Positive => return Err(wrong_type("numeric")),
        CheckConfig::Range { min, max } if numeric => {
            if min.is_none() && max.is_none() {
                return Err(invalid("range needs `min`, `max` or both".into()));
            }
            let bound = |n: &ConfigNumber| compile_bound(n, ty).map_err(&invalid);
            let min = min.as_ref().map(bound).transpose()?;
            let max = max.as_ref().map(bound).transpose()?;
            if let (Some(lo), Some(hi)) = (min, max) {
                let inverted = match (lo, hi) {
                    (Bound::Exact(a), Bound::Exact(b)) => a > b,
                    (Bound::Float(a), Bound::Float(b)) => a > b,
                    _ => false,
                };
                if inverted {
                    return Err(invalid("range `min` is greater than `max`".into()));
                }
            }
            Check::Range { min, max }
        }
        CheckConfig::Range { .. } => return Err(wrong_type("numeric")),
        CheckConfig::InSet { values } if text => {
            if values.is_empty() {
                return Err(invalid("in_set needs at least one value".into()));
            }
            Check::InSet(values.iter().cloned().collect())
        }
        CheckConfig::Regex { pattern } if text => {
            // Compiled as given first, so that an error points into the user's pattern, not the anchored one.
            let bad = |e: regex::Error| DqConfigError::BadRegex {
                rule: name.clone(),
                pattern: pattern.clone(),
                reason: e.to_string(),
            };
            Regex::new(pattern).map_err(bad)?;
            let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(bad)?;
            Check::Regex {
                regex,
                pattern: pattern.clone(),
            }
        }
        CheckConfig::MaxLength { max } if text => {
            if *max == 0 {
                return Err(invalid(
                    "max_length `max` must be at least 1 (use in_set for an empty string)".into(),
                ));
            }
            Check::MaxLength(*max)
        }
        CheckConfig::InSet { .. } | CheckConfig::Regex { .. } | CheckConfig::MaxLength { .. } => {
            return Err(wrong_type("text"));
        }
        CheckConfig::Referential { references } => {
            let target = match references.as_str() {
                "users" => SourceTable::Users,
                "wallets" => SourceTable::Wallets,
                _ => {
                    return Err(DqConfigError::BadReference {
                        rule: name.clone(),
                        references: references.clone(),
                    });
                }
            };
            if ty != ColumnType::Int64 {
                return Err(wrong_type("bigint id"));
            }
            Check::Referential(target)
        }
    };
    Ok(Rule {
        name,
        table,
        column: column.name,
        index,
        ty,
        check,
    })
}

/// A config bound in the representation of a column of type `ty`.
fn compile_bound(n: &ConfigNumber, ty: ColumnType) -> Result<Bound, String> {
    let d = n
        .to_decimal()
        .ok_or_else(|| format!("bound {n} is not a finite number"))?;
    let scale = match ty {
        ColumnType::Float64 => {
            return d
                .to_f64()
                .map(Bound::Float)
                .ok_or_else(|| format!("bound {n} does not fit a float"));
        }
        ColumnType::Decimal { scale, .. } => scale,
        _ => 0,
    };
    let d = d.normalize();
    if d.scale() > u32::from(scale) {
        return Err(format!(
            "bound {n} has more decimal places than the column's scale {scale}"
        ));
    }
    let factor = 10i128
        .checked_pow(u32::from(scale) - d.scale())
        .ok_or_else(|| format!("bound {n} is out of range"))?;
    d.mantissa()
        .checked_mul(factor)
        .map(Bound::Exact)
        .ok_or_else(|| format!("bound {n} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Position of a declared transactions column.
    fn ix(column: &str) -> usize {
        SourceTable::Transactions
            .column_index(column)
            .expect("declared column")
    }

    /// A valid transactions row: user 7, amount 12.50 USD, merchant "shop".
    fn tx_values() -> Vec<Value> {
        vec![
            Value::Int64(1),
            Value::Int64(10),
            Value::Int64(7),
            Value::Null,
            Value::Text("payment".into()),
            Value::Decimal(1250),
            Value::Decimal(30),
            Value::Text("USD".into()),
            Value::Text("settled".into()),
            Value::Text("DE".into()),
            Value::Text("shop".into()),
            Value::TimestampTz(1_700_000_000_000_000),
            Value::TimestampTz(1_700_000_000_000_000),
        ]
    }

    fn tx_row(edit: impl FnOnce(&mut Vec<Value>)) -> Row {
        let mut v = tx_values();
        edit(&mut v);
        Row::new(SourceTable::Transactions, v, Vec::new()).expect("valid row")
    }

    fn no_refs(_: SourceTable, _: i64) -> bool {
        false
    }

    fn one(column: &str, check: CheckConfig) -> RuleSet {
        compile(&DqConfig {
            post_write_policy: PostWritePolicy::Alert,
            rules: vec![RuleConfig {
                table: "transactions".into(),
                column: column.into(),
                check,
                name: None,
            }],
        })
        .expect("compiles")
    }

    /// The reasons of the violations, for exact assertions.
    fn reasons(rules: &RuleSet, row: &Row) -> Vec<String> {
        rules
            .check(row, &no_refs)
            .into_iter()
            .map(|v| v.reason)
            .collect()
    }

    fn parse(toml_text: &str) -> Result<DqConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_catch_the_generator_defects() {
        let rules = compile(&DqConfig::default()).expect("defaults compile");
        assert_eq!(
            rules.names().collect::<Vec<_>>(),
            vec![
                "transactions.user_id.not_null",
                "transactions.amount.positive",
                "transactions.currency.in_set"
            ]
        );
        assert_eq!(rules.check(&tx_row(|_| {}), &no_refs), vec![]);
        let bad = tx_row(|v| {
            v[ix("user_id")] = Value::Null;
            v[ix("amount")] = Value::Decimal(-5);
            v[ix("currency")] = Value::Text("XXX".into());
        });
        assert_eq!(
            rules.check(&bad, &no_refs),
            vec![
                Violation {
                    rule: "transactions.user_id.not_null".into(),
                    column: "user_id".into(),
                    reason: "user_id is null".into(),
                },
                Violation {
                    rule: "transactions.amount.positive".into(),
                    column: "amount".into(),
                    reason: "amount is -0.05, must be > 0".into(),
                },
                Violation {
                    rule: "transactions.currency.in_set".into(),
                    column: "currency".into(),
                    reason: "currency is \"XXX\", not one of CHF, EUR, GBP, PLN, SEK, USD".into(),
                },
            ]
        );
        // Rules of transactions say nothing about a wallet row.
        let wallet = Row::new(
            SourceTable::Wallets,
            vec![
                Value::Int64(1),
                Value::Null,
                Value::Text("XXX".into()),
                Value::Decimal(-100),
                Value::Text("active".into()),
                Value::TimestampTz(0),
                Value::TimestampTz(0),
            ],
            Vec::new(),
        )
        .expect("wallet");
        assert_eq!(rules.check(&wallet, &no_refs), vec![]);
    }

    #[test]
    fn default_config_and_empty_section_agree() {
        let parsed = parse("").expect("empty section");
        assert_eq!(parsed, DqConfig::default());
        let halt = parse("post_write_policy = \"halt\"\nrules = []").expect("halt");
        assert_eq!(halt.post_write_policy, PostWritePolicy::Halt);
        assert!(compile(&halt).expect("compiles").is_empty());
    }

    #[test]
    fn not_null_pass_fail() {
        let rules = one("merchant", CheckConfig::NotNull);
        assert_eq!(reasons(&rules, &tx_row(|_| {})), Vec::<String>::new());
        let null = tx_row(|v| v[ix("merchant")] = Value::Null);
        assert_eq!(reasons(&rules, &null), vec!["merchant is null"]);
    }

    #[test]
    fn positive_pass_fail_null() {
        let rules = one("amount", CheckConfig::Positive);
        assert!(reasons(&rules, &tx_row(|v| v[ix("amount")] = Value::Decimal(1))).is_empty());
        assert_eq!(
            reasons(&rules, &tx_row(|v| v[ix("amount")] = Value::Decimal(0))),
            vec!["amount is 0.00, must be > 0"]
        );
        assert_eq!(
            reasons(
                &rules,
                &tx_row(|v| v[ix("amount")] = Value::Decimal(-123_456))
            ),
            vec!["amount is -1234.56, must be > 0"]
        );
        // Integer column; null passes every check but not_null.
        let rules = one("counterparty_wallet_id", CheckConfig::Positive);
        assert!(reasons(&rules, &tx_row(|_| {})).is_empty());
        assert_eq!(
            reasons(
                &rules,
                &tx_row(|v| v[ix("counterparty_wallet_id")] = Value::Int64(-3))
            ),
            vec!["counterparty_wallet_id is -3, must be > 0"]
        );
    }

    #[test]
    fn range_pass_fail_null_and_decimal_bounds() {
        let parsed = parse(
            r#"
            [[rules]]
            table = "transactions"
            column = "amount"
            check = { range = { min = 0.01, max = "10000" } }
            name = "tx_amount_sane"
            "#,
        )
        .expect("parse");
        let rules = compile(&parsed).expect("compile");
        let amount = |cents: i128| tx_row(|v| v[ix("amount")] = Value::Decimal(cents));
        assert!(reasons(&rules, &amount(1)).is_empty());
        assert!(reasons(&rules, &amount(1_000_000)).is_empty());
        assert_eq!(
            reasons(&rules, &amount(0)),
            vec!["amount is 0.00, below the minimum 0.01"]
        );
        assert_eq!(
            reasons(&rules, &amount(1_000_001)),
            vec!["amount is 10000.01, above the maximum 10000.00"]
        );
        assert_eq!(rules.check(&amount(0), &no_refs)[0].rule, "tx_amount_sane");

        // Open-ended range on a nullable bigint: null passes.
        let rules = one(
            "wallet_id",
            CheckConfig::Range {
                min: Some(ConfigNumber::Int(1)),
                max: None,
            },
        );
        assert!(reasons(&rules, &tx_row(|v| v[ix("wallet_id")] = Value::Null)).is_empty());
        assert_eq!(
            reasons(&rules, &tx_row(|v| v[ix("wallet_id")] = Value::Int64(0))),
            vec!["wallet_id is 0, below the minimum 1"]
        );
    }

    #[test]
    fn in_set_pass_fail_null() {
        let rules = one(
            "country",
            CheckConfig::InSet {
                values: vec!["DE".into(), "FR".into()],
            },
        );
        assert!(reasons(&rules, &tx_row(|_| {})).is_empty());
        assert!(reasons(&rules, &tx_row(|v| v[ix("country")] = Value::Null)).is_empty());
        assert_eq!(
            reasons(
                &rules,
                &tx_row(|v| v[ix("country")] = Value::Text("de".into()))
            ),
            vec!["country is \"de\", not one of DE, FR"]
        );
    }

    #[test]
    fn regex_matches_the_whole_value() {
        let rules = one(
            "country",
            CheckConfig::Regex {
                pattern: "[A-Z]{2}".into(),
            },
        );
        assert!(reasons(&rules, &tx_row(|_| {})).is_empty());
        assert!(reasons(&rules, &tx_row(|v| v[ix("country")] = Value::Null)).is_empty());
        // A search would find "DE" inside "xDEx"; a format rule must not.
        assert_eq!(
            reasons(
                &rules,
                &tx_row(|v| v[ix("country")] = Value::Text("xDEx".into()))
            ),
            vec!["country is \"xDEx\", which does not match the pattern \"[A-Z]{2}\" as a whole"]
        );
        // Alternation stays inside the anchors.
        let rules = one(
            "status",
            CheckConfig::Regex {
                pattern: "pending|settled".into(),
            },
        );
        assert!(reasons(&rules, &tx_row(|_| {})).is_empty());
        assert_eq!(
            reasons(
                &rules,
                &tx_row(|v| v[ix("status")] = Value::Text("settledx".into()))
            )
            .len(),
            1
        );
    }

    #[test]
    fn max_length_counts_characters_and_truncates_the_reason() {
        let rules = one("merchant", CheckConfig::MaxLength { max: 4 });
        assert!(reasons(&rules, &tx_row(|_| {})).is_empty());
        assert!(reasons(&rules, &tx_row(|v| v[ix("merchant")] = Value::Null)).is_empty());
        // Four characters, eight bytes: passes.
        assert!(
            reasons(
                &rules,
                &tx_row(|v| v[ix("merchant")] = Value::Text("äöüß".into()))
            )
            .is_empty()
        );
        let long = "x".repeat(100);
        let got = reasons(&rules, &tx_row(|v| v[ix("merchant")] = Value::Text(long)));
        assert_eq!(
            got,
            vec![format!(
                "merchant has 100 characters, more than 4: \"{}\"…",
                "x".repeat(64)
            )]
        );
    }

    #[test]
    fn referential_asks_the_caller() {
        let rules = one(
            "user_id",
            CheckConfig::Referential {
                references: "users".into(),
            },
        );
        let known = |t: SourceTable, id: i64| t == SourceTable::Users && id == 7;
        assert_eq!(rules.check(&tx_row(|_| {}), &known), vec![]);
        assert_eq!(
            rules.check(&tx_row(|v| v[ix("user_id")] = Value::Null), &known),
            vec![]
        );
        assert_eq!(
            rules.check(&tx_row(|v| v[ix("user_id")] = Value::Int64(8)), &known),
            vec![Violation {
                rule: "transactions.user_id.referential".into(),
                column: "user_id".into(),
                reason: "user_id 8 references no known users row".into(),
            }]
        );
        let wallets = one(
            "wallet_id",
            CheckConfig::Referential {
                references: "wallets".into(),
            },
        );
        let wallet_10 = |t: SourceTable, id: i64| t == SourceTable::Wallets && id == 10;
        assert_eq!(wallets.check(&tx_row(|_| {}), &wallet_10), vec![]);
        assert_eq!(wallets.check(&tx_row(|_| {}), &known).len(), 1);
    }

    fn compile_err(toml_text: &str) -> String {
        let cfg = parse(toml_text).expect("parses");
        compile(&cfg).expect_err("must not compile").to_string()
    }

    fn rule_toml(table: &str, column: &str, check: &str) -> String {
        format!("[[rules]]\ntable = \"{table}\"\ncolumn = \"{column}\"\ncheck = {check}\n")
    }

    #[test]
    fn config_errors_name_the_rule_and_the_fix() {
        assert_eq!(
            compile_err(&rule_toml("transactions", "amout", "\"positive\"")),
            "dq rule transactions.amout.positive: table transactions has no column `amout` (declared: id, \
             wallet_id, user_id, counterparty_wallet_id, kind, amount, fee, currency, status, country, merchant, \
             created_at, updated_at)"
        );
        assert_eq!(
            compile_err(&rule_toml("accounts", "id", "\"not_null\"")),
            "dq rule accounts.id.not_null: unknown table `accounts` (expected users, wallets or transactions)"
        );
        assert_eq!(
            compile_err(&rule_toml("transactions", "currency", "\"positive\"")),
            "dq rule transactions.currency.positive: check `positive` needs a numeric column, but \
             transactions.currency is Text"
        );
        assert_eq!(
            compile_err(&rule_toml(
                "transactions",
                "amount",
                "{ regex = { pattern = \"1\" } }"
            )),
            "dq rule transactions.amount.regex: check `regex` needs a text column, but transactions.amount is \
             Decimal { precision: 18, scale: 2 }"
        );
        assert_eq!(
            compile_err(&rule_toml("users", "created_at", "{ range = { min = 0 } }")),
            "dq rule users.created_at.range: check `range` needs a numeric column, but users.created_at is \
             TimestampTz"
        );
        let bad_regex = compile_err(&rule_toml(
            "users",
            "email",
            "{ regex = { pattern = \"[a-z\" } }",
        ));
        assert!(
            bad_regex.starts_with("dq rule users.email.regex: regex \"[a-z\" does not compile: "),
            "{bad_regex}"
        );
        assert!(
            bad_regex.contains("unclosed character class"),
            "{bad_regex}"
        );
        assert_eq!(
            compile_err(&rule_toml(
                "transactions",
                "user_id",
                "{ referential = { references = \"accounts\" } }"
            )),
            "dq rule transactions.user_id.referential: referential target `accounts` must be users or wallets"
        );
        assert_eq!(
            compile_err(&rule_toml(
                "transactions",
                "merchant",
                "{ referential = { references = \"users\" } }"
            )),
            "dq rule transactions.merchant.referential: check `referential` needs a bigint id column, but \
             transactions.merchant is Text"
        );
        assert_eq!(
            compile_err(&rule_toml(
                "transactions",
                "amount",
                "{ range = { min = 0.001 } }"
            )),
            "dq rule transactions.amount.range: bound 0.001 has more decimal places than the column's scale 2"
        );
        assert_eq!(
            compile_err(&rule_toml(
                "transactions",
                "amount",
                "{ range = { min = 5, max = 1 } }"
            )),
            "dq rule transactions.amount.range: range `min` is greater than `max`"
        );
        assert_eq!(
            compile_err(&rule_toml("transactions", "amount", "{ range = {} }")),
            "dq rule transactions.amount.range: range needs `min`, `max` or both"
        );
        assert_eq!(
            compile_err(&rule_toml(
                "transactions",
                "amount",
                "{ range = { max = \"ten\" } }"
            )),
            "dq rule transactions.amount.range: bound \"ten\" is not a finite number"
        );
        assert_eq!(
            compile_err(&rule_toml(
                "transactions",
                "currency",
                "{ in_set = { values = [] } }"
            )),
            "dq rule transactions.currency.in_set: in_set needs at least one value"
        );
        let twice = format!(
            "{}{}",
            rule_toml("transactions", "user_id", "\"not_null\""),
            rule_toml("transactions", "user_id", "\"not_null\"")
        );
        assert_eq!(
            compile_err(&twice),
            "dq rule name `transactions.user_id.not_null` is used by more than one rule"
        );
    }

    #[test]
    fn unknown_checks_and_keys_are_parse_errors() {
        let unknown_check = parse(&rule_toml("transactions", "amount", "\"non_negative\""))
            .expect_err("unknown check");
        assert!(
            unknown_check.contains("unknown variant `non_negative`"),
            "{unknown_check}"
        );
        assert!(unknown_check.contains("not_null"), "{unknown_check}");
        let unknown_key = parse(
            "[[rules]]\ntable = \"transactions\"\ncolumn = \"amount\"\ncheck = \"positive\"\nseverity = 1\n",
        )
        .expect_err("unknown key");
        assert!(
            unknown_key.contains("unknown field `severity`"),
            "{unknown_key}"
        );
        let unknown_inner = parse(&rule_toml(
            "transactions",
            "amount",
            "{ range = { minimum = 1 } }",
        ))
        .expect_err("unknown range key");
        assert!(
            unknown_inner.contains("unexpected keys in table: minimum, available keys: min, max"),
            "{unknown_inner}"
        );
        let bad_policy = parse("post_write_policy = \"panic\"").expect_err("policy");
        assert!(
            bad_policy.contains("unknown variant `panic`"),
            "{bad_policy}"
        );
    }

    #[test]
    fn decimal_formatting() {
        assert_eq!(fmt_unscaled(5, 2), "0.05");
        assert_eq!(fmt_unscaled(-5, 2), "-0.05");
        assert_eq!(fmt_unscaled(123_456, 2), "1234.56");
        assert_eq!(fmt_unscaled(-7, 0), "-7");
        assert_eq!(
            fmt_unscaled(i128::MIN, 2),
            "-1701411834604692317316873037158841057.28"
        );
    }
}
