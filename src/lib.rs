//! ledgerstream: PostgreSQL → Debezium → Kafka → partition actors (RocksDB state) → committer → Apache Iceberg.
//!
//! Reading order follows the data: `source` (Kafka) → `cdc` (decode) → `processor` + `changelog` (what a
//! partition does) → `actors` (partition, coordinator, committer, supervisor) → `sink` (Iceberg) and
//! `checkpoint` (the recovery protocol). `pipeline` is the glue; `config` and `metrics` are the single homes of
//! configuration and metrics; `health` and `http` serve them to operators, `telemetry` exports the spans. `query`
//! reads the tables back (`ledgerstream tables`, `ledgerstream query`). See `ARCHITECTURE.md`.

pub mod actors;
pub mod alerts_out;
pub mod bench;
pub mod bench_commit;
pub mod cdc;
pub mod changelog;
pub mod checkpoint;
pub mod checkpoint_report;
pub mod commit;
pub mod config;
pub mod dq;
pub mod durable;
pub mod enrich;
pub mod fraud;
pub mod generate;
pub mod health;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod pnl;
pub mod processor;
pub mod query;
pub mod replay;
pub mod sink;
pub mod source;
pub mod synth;
pub mod telemetry;
pub mod types;
pub mod value;
pub mod watermark;

/// A named crash point for the failpoint tests (`--features failpoints`). When the `FAILPOINTS` environment
/// variable enables it (e.g. `FAILPOINTS=commit::after_swap=return`), the process aborts on the spot —
/// the in-process equivalent of `kill -9` at exactly that step. Compiled out otherwise.
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            fail::fail_point!($name, |_| {
                eprintln!("failpoint {} hit: aborting", $name);
                std::process::abort()
            });
        }
    };
}
