//! The ground-truth file (`--truth-out`): one JSON object per line for every injected fraud episode and every
//! malformed row, so a later test can measure the precision and recall of fraud and data-quality detection.
//!
//! Line formats (`kind` tells them apart; times are RFC 3339 UTC, taken right after the commit of the first and
//! last action, so they bracket the Debezium `source.ts_ms` of the rows):
//! - `{"kind":"fraud","episode":3,"pattern":"velocity_burst","user_id":12,"wallet_id":20,
//!   "transaction_ids":[101,102],"complete":true,"started_at":"…","ended_at":"…"}`
//!   (`complete` is false for an episode cut short by the end of the run);
//! - `{"kind":"bad_row","defect":"null_user_id","transaction_id":77,"user_id":9,"wallet_id":14,"at":"…"}`.
//!
//! Each line is flushed as it is written, so the file never lags the database by more than one action.

use super::model::{BadRow, FraudEpisode};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record<'a> {
    Fraud {
        #[serde(flatten)]
        episode: &'a FraudEpisode,
        complete: bool,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
    },
    BadRow {
        #[serde(flatten)]
        row: &'a BadRow,
        at: DateTime<Utc>,
    },
}

/// Appends ground-truth lines to a file.
#[derive(Debug)]
pub struct TruthWriter {
    out: BufWriter<File>,
    /// Lines written, reported in the summary.
    lines: u64,
}

impl TruthWriter {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(TruthWriter {
            out: BufWriter::new(File::create(path)?),
            lines: 0,
        })
    }

    pub fn fraud(
        &mut self,
        episode: &FraudEpisode,
        complete: bool,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
    ) -> io::Result<()> {
        self.write(&Record::Fraud {
            episode,
            complete,
            started_at,
            ended_at,
        })
    }

    pub fn bad_row(&mut self, row: &BadRow, at: DateTime<Utc>) -> io::Result<()> {
        self.write(&Record::BadRow { row, at })
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    fn write(&mut self, record: &Record<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        self.lines += 1;
        Ok(())
    }
}
