//! `ledgerstream replay --from N --into NAME`: reprocess a range of the input from state checkpoint `N` with the
//! same pipeline code (optionally other rule settings), into shadow tables, while the live pipeline keeps running.
//!
//! How it stays apart from the live pipeline:
//! - state: checkpoint `N` is copied (or downloaded from the remote) into `<data_dir>/replays/<NAME>/`, and the
//!   replay runs there; the live state directory is only read;
//! - tables: namespace `<namespace>_replay_<NAME>`, writer id `<writer_id>-replay-<NAME>`;
//! - Kafka: explicit assignment like the live source, and no consumer-group offsets at all;
//! - no alerts topic, no remote uploads, no metrics endpoint.
//!
//! It reads up to `--until` (offsets), `--until-checkpoint M` (checkpoint M's offsets) or else the end of every
//! topic as seen at start, and stops early per topic partition at the first change committed after
//! `--until-time`. It ends like a live pipeline whose input went quiet: an idle checkpoint releases every change
//! still waiting for its watermark.

use crate::checkpoint::CheckpointManifest;
use crate::config::Config;
use crate::source::kafka::{StartOffsets, StopAt};
use ledgerstream_state::{CheckpointCatalog, StateLayout};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("replay name `{0}`: use 1-32 characters from [a-z0-9_]")]
    BadName(String),
    #[error("--until `{0}`: expected TOPIC:PARTITION=OFFSET[,...]")]
    BadUntil(String),
    #[error("--until-time `{0}`: expected an RFC 3339 time such as 2026-11-25T10:00:00Z")]
    BadTime(String),
    #[error(
        "replay `{0}` already exists at {1}; pick another name (its tables are in their own namespace)"
    )]
    Exists(String, PathBuf),
    #[error(
        "checkpoint {0} is not complete locally nor on the remote (see `ledgerstream checkpoints list`)"
    )]
    NoCheckpoint(u64),
    #[error("--until-checkpoint {until} must be after --from {from}")]
    UntilBeforeFrom { from: u64, until: u64 },
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    State(#[from] ledgerstream_state::StateError),
    #[error(transparent)]
    Remote(#[from] crate::durable::DurableError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}

/// Validates a replay name: it becomes part of a namespace, a writer id and a directory name.
pub fn check_name(name: &str) -> Result<(), ReplayError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then_some(())
        .ok_or_else(|| ReplayError::BadName(name.to_string()))
}

/// Parses `topic:partition=offset,...` (the first offset *not* to replay per topic partition).
pub fn parse_until(s: &str) -> Result<StartOffsets, ReplayError> {
    let bad = || ReplayError::BadUntil(s.to_string());
    let mut out = StartOffsets::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (tp, offset) = part.split_once('=').ok_or_else(bad)?;
        let (topic, partition) = tp.rsplit_once(':').ok_or_else(bad)?;
        let partition: i32 = partition.trim().parse().map_err(|_| bad())?;
        let offset: i64 = offset.trim().parse().map_err(|_| bad())?;
        if topic.trim().is_empty() || partition < 0 || offset < 0 {
            return Err(bad());
        }
        out.insert((topic.trim().to_string(), partition), offset);
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Parses an RFC 3339 time into microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, ReplayError> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_micros())
        .map_err(|_| ReplayError::BadTime(s.to_string()))
}

/// A checkpoint's offsets as per-(topic, partition) bounds.
pub fn offsets_of(m: &CheckpointManifest) -> StartOffsets {
    m.offsets
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |(p, o)| ((t.clone(), *p), *o)))
        .collect()
}

/// The configuration a replay runs with: the live one, moved to its own state directory, namespace and writer
/// id, with nothing that reaches the outside (alerts topic, remote, metrics endpoint), and with the stateful
/// stages (`[enrich]`, `[pnl]`, `[fraud]`, `[dq]`, `[schema]`) of `rules` when given.
pub fn replay_config(live: &Config, name: &str, rules: Option<&Config>) -> Config {
    let mut c = live.clone();
    c.pipeline.data_dir = replay_dir(live, name);
    c.pipeline.writer_id = format!("{}-replay-{name}", live.pipeline.writer_id);
    c.iceberg.namespace = format!("{}_replay_{name}", live.iceberg.namespace);
    c.kafka.group_id = format!("{}-replay-{name}", live.kafka.group_id);
    c.alerts_topic = None;
    c.remote = None;
    c.observability.metrics_addr = None;
    if let Some(r) = rules {
        c.stages = r.stages.clone();
    }
    c
}

/// `<data_dir>/replays/<name>`.
pub fn replay_dir(live: &Config, name: &str) -> PathBuf {
    live.pipeline.data_dir.join("replays").join(name)
}

/// Offsets done and to go of a bounded read.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Per (topic, partition): (first offset to read, first offset not to read).
    ranges: Vec<(String, i32, i64, i64)>,
}

impl Progress {
    /// Ranges from `start` (missing: 0) to `stop`; (topic, partition)s without a stop are not counted.
    pub fn new(start: &StartOffsets, stop: &StartOffsets) -> Self {
        Progress {
            ranges: stop
                .iter()
                .map(|((t, p), s)| {
                    let from = start.get(&(t.clone(), *p)).copied().unwrap_or(0);
                    (t.clone(), *p, from, (*s).max(from))
                })
                .collect(),
        }
    }

    /// Offsets to read in total.
    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|(_, _, a, b)| (b - a) as u64).sum()
    }

    /// Offsets read, given the next offset read per (topic, partition) (`-1` or missing: none yet).
    pub fn done(&self, next: &StartOffsets) -> u64 {
        self.ranges
            .iter()
            .map(|(t, p, a, b)| {
                let n = next.get(&(t.clone(), *p)).copied().unwrap_or(-1);
                (n.clamp(*a, *b) - a) as u64
            })
            .sum()
    }
}

/// Shows a progress bar on a terminal (offsets done / to go, rate, ETA) or logs a line every 5 s otherwise, until
/// the bounded read is finished.
pub async fn report_progress(
    progress: Progress,
    read: impl Fn() -> StartOffsets + Send + Sync + 'static,
    stop: Arc<StopAt>,
) {
    use std::io::IsTerminal;
    let total = progress.total();
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "replay {bar:40} {pos}/{len} offsets ({percent}%) {per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut last_log = Instant::now();
    let finished = stop.finished();
    tokio::pin!(finished);
    loop {
        let done = progress.done(&read());
        bar.set_position(done);
        if !tty && last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                done,
                to_go = total.saturating_sub(done),
                rate_per_s = rate.round() as u64,
                "replay progress"
            );
        }
        tokio::select! {
            _ = &mut finished => break,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    let done = progress.done(&read());
    bar.set_position(done);
    bar.finish();
    tracing::info!(
        done,
        total,
        took_ms = started.elapsed().as_millis() as u64,
        "replay read everything up to its bounds"
    );
}

/// What the replay reads up to.
#[derive(Debug, Clone, PartialEq)]
pub enum Until {
    /// The end of every topic as seen at start.
    End,
    Offsets(StartOffsets),
    /// The offsets of this checkpoint.
    Checkpoint(u64),
}

/// Reads checkpoint `id`'s manifest: the local marker when the checkpoint is complete locally, else the remote's.
async fn manifest_of(
    live: &CheckpointCatalog,
    remote: Option<&crate::durable::RemoteCheckpoints>,
    id: u64,
) -> Result<(Vec<u8>, bool), ReplayError> {
    let partitions = live.partitions()?;
    if !partitions.is_empty()
        && live.is_complete(id, &partitions)?
        && let Some(m) = live.read_marker(id)?
    {
        return Ok((m, true));
    }
    if let Some(r) = remote
        && let Some(m) = r.marker(id).await?
    {
        return Ok((m, false));
    }
    Err(ReplayError::NoCheckpoint(id))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), ReplayError> {
    let io = |e: std::io::Error| ReplayError::Io(format!("copying {}: {e}", from.display()));
    std::fs::create_dir_all(to).map_err(io)?;
    for entry in std::fs::read_dir(from).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).map_err(io)?;
        }
    }
    Ok(())
}

/// Creates the replay's working directory with state checkpoint `from` (copied from the live data directory, or
/// downloaded from the remote) and its marker, and resolves `until` into offsets (`None`: end of the topics).
pub async fn prepare(
    live: &Config,
    replay: &Config,
    name: &str,
    from: u64,
    until: &Until,
) -> Result<Option<StartOffsets>, ReplayError> {
    check_name(name)?;
    let dir = &replay.pipeline.data_dir;
    if dir.exists() {
        return Err(ReplayError::Exists(name.to_string(), dir.clone()));
    }
    let live_catalog =
        CheckpointCatalog::new(StateLayout::new(live.pipeline.data_dir.join("state")));
    let remote = live
        .remote
        .as_ref()
        .map(crate::durable::from_config)
        .transpose()?;
    let until = match until {
        Until::End => None,
        Until::Offsets(o) => Some(o.clone()),
        Until::Checkpoint(m) => {
            if *m <= from {
                return Err(ReplayError::UntilBeforeFrom { from, until: *m });
            }
            let (bytes, _) = manifest_of(&live_catalog, remote.as_deref(), *m).await?;
            Some(offsets_of(&CheckpointManifest::from_bytes(&bytes)?))
        }
    };
    let (marker, local) = manifest_of(&live_catalog, remote.as_deref(), from).await?;
    let layout = StateLayout::new(dir.join("state"));
    if local {
        for p in live_catalog.partitions()? {
            copy_dir(
                &live_catalog
                    .layout()
                    .partition_checkpoints_dir(p)
                    .join(from.to_string()),
                &layout.partition_checkpoints_dir(p).join(from.to_string()),
            )?;
        }
    } else if let Some(r) = &remote {
        r.download_state(&layout, from).await?;
    }
    CheckpointCatalog::new(layout).write_marker(from, &marker)?;
    Ok(until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bounds_parse_strictly() {
        check_name("fraud_v2").unwrap();
        for bad in ["", "Fraud", "a-b", "a.b", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let u = parse_until("fintech.public.users:0=10, fintech.public.users:1=7,t:2=0").unwrap();
        assert_eq!(u[&("fintech.public.users".to_string(), 1)], 7);
        assert_eq!(u[&("t".to_string(), 2)], 0);
        assert_eq!(u.len(), 3);
        for bad in [
            "",
            "t:0",
            "t=5",
            ":0=1",
            "t:x=1",
            "t:0=-1",
            "t:-1=3",
            "t:0=1,junk",
        ] {
            assert!(parse_until(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_time("2026-11-25T10:00:00Z").unwrap(),
            1_795_600_800_000_000
        );
        assert_eq!(
            parse_time("2026-11-25T11:00:00+01:00").unwrap(),
            parse_time("2026-11-25T10:00:00Z").unwrap()
        );
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn progress_counts_offsets_within_the_bounds() {
        let k = |t: &str, p: i32| (t.to_string(), p);
        let start: StartOffsets = [(k("a", 0), 100), (k("a", 1), 0)].into();
        let stop: StartOffsets = [(k("a", 0), 150), (k("a", 1), 20), (k("b", 0), 5)].into();
        let p = Progress::new(&start, &stop);
        assert_eq!(p.total(), 50 + 20 + 5);
        assert_eq!(p.done(&StartOffsets::new()), 0);
        let now: StartOffsets = [(k("a", 0), 120), (k("a", 1), -1), (k("b", 0), 99)].into();
        assert_eq!(p.done(&now), 20 + 5, "clamped to the bounds");
        // A stop before the start reads nothing.
        let p = Progress::new(&[(k("a", 0), 10)].into(), &[(k("a", 0), 3)].into());
        assert_eq!(p.total(), 0);
    }

    #[test]
    fn replay_config_is_isolated_from_the_live_pipeline() {
        let live = Config::parse(
            "[pipeline]\nwriter_id = \"live\"\ndata_dir = \"/d\"\n[alerts]\ntopic = \"a\"\n\
             [checkpoint.remote]\nkind = \"dir\"\npath = \"/r\"\n",
            std::iter::empty(),
        )
        .unwrap();
        let rules = Config::parse(
            "[fraud]\nvelocity = { max_debits = 2, window = \"2s\" }",
            std::iter::empty(),
        )
        .unwrap();
        let c = replay_config(&live, "v2", Some(&rules));
        assert_eq!(c.pipeline.data_dir, PathBuf::from("/d/replays/v2"));
        assert_eq!(c.pipeline.writer_id, "live-replay-v2");
        assert_eq!(c.iceberg.namespace, "fintech_replay_v2");
        assert_eq!(c.kafka.group_id, "ledgerstream-replay-v2");
        assert!(c.alerts_topic.is_none() && c.remote.is_none());
        assert!(c.observability.metrics_addr.is_none());
        // The catalog stays the live one (the default sqlite path was resolved against the live data dir).
        assert_eq!(c.iceberg.catalog, live.iceberg.catalog);
        assert!(Arc::ptr_eq(&c.stages.fraud, &rules.stages.fraud));
        let same = replay_config(&live, "v1", None);
        assert!(Arc::ptr_eq(&same.stages.fraud, &live.stages.fraud));
    }
}
