//! Data quality: declarative rules checked on every decoded row before ingestion, and validation of every
//! snapshot after the committer writes it.
//!
//! - [`rules`]: the `[dq]` config, compiled without I/O into a [`RuleSet`]; [`RuleSet::check`] is a pure function
//!   of a row and the partition's reference state (through [`RefLookup`]). A row with violations is quarantined by
//!   the caller, naming the first violated rule in the quarantine record's `rule` column.
//! - [`post_write`]: pure checks over what one snapshot added (row count, rules, partition values, unique
//!   `(key, lsn)`), reported as [`CheckResult`]s that are both metrics and rows of the `dq_results` table. The
//!   I/O half (reading the snapshot's added files back) is `crate::sink::readback`.

pub mod post_write;
pub mod rules;

pub use post_write::{
    CheckResult, DQ_RESULTS_TABLE, LSN_COLUMN, PostWritePolicy, WrittenFile, dq_results_def,
    validate,
};
pub use rules::{
    CheckConfig, ConfigNumber, DqConfig, DqConfigError, RefLookup, Rule, RuleConfig, RuleSet,
    Violation, compile,
};
