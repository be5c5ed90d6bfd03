//! `ledgerstream checkpoints list | show | prune`: what each checkpoint holds and whether it is complete.
//!
//! A checkpoint is **complete** when every table committed it (its completion marker exists: the marker is
//! written only after the commits), every partition's state checkpoint is on local disk, and — when a remote is
//! configured — the remote holds its state and its marker too. [`build`] and the formatters are pure; [`gather`]
//! reads the local data directory and the remote.

use crate::checkpoint::{CheckpointManifest, IntentStore, Offsets};
use crate::durable::{RemoteCheckpoints, RemoteEntry, Retention};
use ledgerstream_state::{CheckpointCatalog, StateError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::num::NonZeroUsize;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Remote(#[from] crate::durable::DurableError),
    #[error("no checkpoint {0}")]
    NotFound(u64),
}

/// What the local data directory says of one id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LocalStatus {
    /// Completion marker present.
    pub marker: bool,
    /// Partitions whose state checkpoint directory exists, of `partitions_expected`.
    pub state_partitions: usize,
    pub partitions_expected: usize,
    /// A commit intent is pending (tables may be partly committed).
    pub intent: bool,
}

/// What the remote says of one id, when a remote is configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RemoteStatus {
    pub state: bool,
    pub intent: bool,
    pub marker: bool,
    /// Total bytes of the state files, from `state.json`.
    pub state_bytes: Option<u64>,
}

/// One checkpoint, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointInfo {
    pub id: u64,
    pub complete: bool,
    pub writer_id: Option<String>,
    pub completed_at_ms: Option<i64>,
    /// Next offset per topic partition (from the marker).
    pub offsets: Offsets,
    /// Iceberg snapshot id per table that got rows in this checkpoint.
    pub snapshots: BTreeMap<String, i64>,
    pub rows: BTreeMap<String, u64>,
    /// State size per partition when sealed.
    pub state_bytes: BTreeMap<i32, u64>,
    pub local: LocalStatus,
    pub remote: Option<RemoteStatus>,
}

impl CheckpointInfo {
    pub fn state_total(&self) -> u64 {
        self.state_bytes.values().sum()
    }
}

/// Everything read from disk and the remote, before interpretation.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Partitions that have a state directory.
    pub partitions: Vec<u32>,
    /// Marker contents per id with a local marker (`None`: unreadable).
    pub local_markers: BTreeMap<u64, Option<CheckpointManifest>>,
    /// Local partition checkpoint ids per partition.
    pub local_state: BTreeMap<u32, Vec<u64>>,
    pub local_intents: BTreeSet<u64>,
    /// `None` when no remote is configured.
    pub remote: Option<BTreeMap<u64, RemoteEntry>>,
    /// Remote marker contents (used when the local marker is missing, e.g. on a new node).
    pub remote_markers: BTreeMap<u64, CheckpointManifest>,
    pub remote_state_bytes: BTreeMap<u64, u64>,
}

/// Interprets [`Inputs`]: one [`CheckpointInfo`] per id known anywhere, ascending.
pub fn build(inputs: &Inputs) -> Vec<CheckpointInfo> {
    let mut ids: BTreeSet<u64> = inputs.local_markers.keys().copied().collect();
    ids.extend(inputs.local_state.values().flatten());
    ids.extend(&inputs.local_intents);
    if let Some(r) = &inputs.remote {
        ids.extend(r.keys());
    }
    ids.into_iter()
        .map(|id| {
            let state_partitions = inputs
                .partitions
                .iter()
                .filter(|p| {
                    inputs
                        .local_state
                        .get(p)
                        .is_some_and(|ids| ids.contains(&id))
                })
                .count();
            let local = LocalStatus {
                marker: inputs.local_markers.contains_key(&id),
                state_partitions,
                partitions_expected: inputs.partitions.len(),
                intent: inputs.local_intents.contains(&id),
            };
            let remote = inputs.remote.as_ref().map(|r| {
                let e = r.get(&id).copied().unwrap_or_default();
                RemoteStatus {
                    state: e.state,
                    intent: e.intent,
                    marker: e.complete,
                    state_bytes: inputs.remote_state_bytes.get(&id).copied(),
                }
            });
            let local_complete = local.marker
                && local.partitions_expected > 0
                && local.state_partitions == local.partitions_expected;
            let remote_complete = remote.as_ref().is_none_or(|r| r.marker && r.state);
            let manifest = inputs
                .local_markers
                .get(&id)
                .cloned()
                .flatten()
                .or_else(|| inputs.remote_markers.get(&id).cloned());
            let m = manifest.as_ref();
            CheckpointInfo {
                id,
                complete: local_complete && remote_complete,
                writer_id: m.map(|m| m.writer_id.clone()),
                completed_at_ms: m.map(|m| m.completed_at_ms),
                offsets: m.map(|m| m.offsets.clone()).unwrap_or_default(),
                snapshots: m.map(|m| m.snapshots.clone()).unwrap_or_default(),
                rows: m.map(|m| m.rows.clone()).unwrap_or_default(),
                state_bytes: m.map(|m| m.state_bytes.clone()).unwrap_or_default(),
                local,
                remote,
            }
        })
        .collect()
}

/// Ids a local prune keeping `keep` complete checkpoints would keep: see [`crate::durable::retained`].
pub fn local_keep(infos: &[CheckpointInfo], keep: NonZeroUsize) -> BTreeSet<u64> {
    let flags: BTreeMap<u64, Retention> = infos
        .iter()
        .filter(|i| i.local.marker || i.local.state_partitions > 0 || i.local.intent)
        .map(|i| {
            (
                i.id,
                Retention {
                    complete: i.local.marker
                        && i.local.partitions_expected > 0
                        && i.local.state_partitions == i.local.partitions_expected,
                    intent: i.local.intent,
                },
            )
        })
        .collect();
    crate::durable::retained(&flags, keep)
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Bytes with a binary unit, e.g. `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn local_cell(l: &LocalStatus) -> String {
    let mut s = format!(
        "{}{}/{}",
        if l.marker { "marker " } else { "state " },
        l.state_partitions,
        l.partitions_expected
    );
    if l.intent {
        s.push_str(" +intent");
    }
    s
}

fn remote_cell(r: &Option<RemoteStatus>) -> String {
    match r {
        None => "n/a".into(),
        Some(r) => {
            let parts: Vec<&str> = [
                (r.state, "state"),
                (r.intent, "intent"),
                (r.marker, "marker"),
            ]
            .iter()
            .filter(|(b, _)| *b)
            .map(|(_, s)| *s)
            .collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join("+")
            }
        }
    }
}

fn status(i: &CheckpointInfo) -> &'static str {
    if i.complete {
        "complete"
    } else if i.local.intent || i.remote.as_ref().is_some_and(|r| r.intent) {
        "commit pending"
    } else if i.local.marker && i.remote.as_ref().is_some_and(|r| !r.marker) {
        "not yet durable"
    } else if i.local.marker {
        "state missing"
    } else {
        "incomplete"
    }
}

/// The `checkpoints list` table.
pub fn format_list(infos: &[CheckpointInfo]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8}  {:<23}  {:>10}  {:>6}  {:>8}  {:<18}  {:<18}  STATUS",
        "ID", "COMPLETED (UTC)", "STATE", "TABLES", "ROWS", "LOCAL", "REMOTE"
    );
    for i in infos {
        let rows: u64 = i.rows.values().sum();
        let _ = writeln!(
            out,
            "{:>8}  {:<23}  {:>10}  {:>6}  {:>8}  {:<18}  {:<18}  {}",
            i.id,
            time(i.completed_at_ms),
            if i.state_bytes.is_empty() {
                "-".to_string()
            } else {
                human_bytes(i.state_total())
            },
            i.snapshots.len(),
            rows,
            local_cell(&i.local),
            remote_cell(&i.remote),
            status(i)
        );
    }
    if infos.is_empty() {
        out.push_str("(no checkpoints)\n");
    }
    out
}

/// The `checkpoints show N` report.
pub fn format_show(i: &CheckpointInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "checkpoint {}: {}", i.id, status(i));
    let _ = writeln!(
        out,
        "  writer:     {}",
        i.writer_id.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "  completed:  {} UTC", time(i.completed_at_ms));
    let _ = writeln!(
        out,
        "  local:      marker {}, state {}/{} partitions, intent {}",
        yes(i.local.marker),
        i.local.state_partitions,
        i.local.partitions_expected,
        yes(i.local.intent)
    );
    match &i.remote {
        None => {
            let _ = writeln!(out, "  remote:     not configured");
        }
        Some(r) => {
            let _ = writeln!(
                out,
                "  remote:     state {}{}, intent {}, marker {}",
                yes(r.state),
                r.state_bytes
                    .map(|b| format!(" ({})", human_bytes(b)))
                    .unwrap_or_default(),
                yes(r.intent),
                yes(r.marker)
            );
        }
    }
    let _ = writeln!(out, "  offsets (next to read):");
    for (topic, ps) in &i.offsets {
        let parts: Vec<String> = ps.iter().map(|(p, o)| format!("{p}={o}")).collect();
        let _ = writeln!(out, "    {topic}: {}", parts.join(" "));
    }
    let _ = writeln!(out, "  snapshots:");
    if i.snapshots.is_empty() {
        let _ = writeln!(out, "    (no table got rows)");
    }
    for (table, snap) in &i.snapshots {
        let _ = writeln!(
            out,
            "    {table:<24} {snap:>20}  {} rows",
            i.rows.get(table).copied().unwrap_or(0)
        );
    }
    let parts: Vec<String> = i
        .state_bytes
        .iter()
        .map(|(p, b)| format!("p{p}={}", human_bytes(*b)))
        .collect();
    let _ = writeln!(
        out,
        "  state:      {} ({})",
        human_bytes(i.state_total()),
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" ")
        }
    );
    out
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// What `checkpoints prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PruneSummary {
    /// Ids whose local marker was removed.
    pub local_markers: Vec<u64>,
    /// `(partition, id)` local state checkpoints removed.
    pub local_state: Vec<(u32, u64)>,
    /// Ids whose remote records were removed (their blobs are collected by the pipeline's next prune).
    pub remote: Vec<u64>,
}

/// Keeps the `keep` newest complete checkpoints, the latest complete one, anything newer and anything with a
/// commit intent, locally and on the remote; removes the rest.
pub async fn prune(
    checkpoints: &CheckpointCatalog,
    intents: &IntentStore,
    remote: Option<&RemoteCheckpoints>,
    keep: NonZeroUsize,
) -> Result<PruneSummary, ReportError> {
    let partitions = checkpoints.partitions()?;
    let protect: BTreeSet<u64> = intents.list()?.into_iter().map(|i| i.0).collect();
    let local = checkpoints.prune_protecting(&partitions, keep, &protect)?;
    let remote = match remote {
        Some(r) => r.prune(keep, false).await?.checkpoints,
        None => Vec::new(),
    };
    Ok(PruneSummary {
        local_markers: local.markers,
        local_state: local.partition_checkpoints,
        remote,
    })
}

/// Reads the local data directory (and the remote, if given) into [`Inputs`].
pub async fn gather(
    checkpoints: &CheckpointCatalog,
    intents: &IntentStore,
    remote: Option<&RemoteCheckpoints>,
) -> Result<Inputs, ReportError> {
    let mut inputs = Inputs {
        partitions: checkpoints.partitions()?,
        local_state: checkpoints.checkpoints_by_partition()?,
        local_intents: intents.list()?.into_iter().map(|i| i.0).collect(),
        ..Inputs::default()
    };
    for id in checkpoints.marker_ids()? {
        let m = checkpoints
            .read_marker(id)?
            .and_then(|b| CheckpointManifest::from_bytes(&b).ok());
        inputs.local_markers.insert(id, m);
    }
    if let Some(r) = remote {
        let listing = r.listing().await?;
        for (id, e) in &listing {
            if e.complete
                && !inputs.local_markers.contains_key(id)
                && let Some(b) = r.marker(*id).await?
                && let Ok(m) = CheckpointManifest::from_bytes(&b)
            {
                inputs.remote_markers.insert(*id, m);
            }
            if e.state
                && let Some(m) = r.state_manifest(*id).await?
            {
                inputs.remote_state_bytes.insert(*id, m.bytes());
                if inputs.partitions.is_empty() {
                    // A new node has no partition directories yet: expect what the remote checkpoint has.
                    inputs.partitions = m.partitions.keys().copied().collect();
                }
            }
        }
        inputs.remote = Some(listing);
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CheckpointId;

    fn manifest(id: u64) -> CheckpointManifest {
        CheckpointManifest {
            id: CheckpointId(id),
            writer_id: "w".into(),
            completed_at_ms: 1_700_000_000_000 + id as i64,
            offsets: [(
                "fintech.public.users".to_string(),
                [(0, 10 * id as i64), (1, 7)].into(),
            )]
            .into(),
            snapshots: [("users_changes".to_string(), 4242 + id as i64)].into(),
            rows: [("users_changes".to_string(), 3)].into(),
            state_bytes: [(0, 2048), (1, 1024)].into(),
            partitions: Some(2),
        }
    }

    /// Two partitions; 1 and 2 complete locally; 3 sealed with an intent; 2 only partly on the remote.
    fn inputs(remote: bool) -> Inputs {
        Inputs {
            partitions: vec![0, 1],
            local_markers: [(1, Some(manifest(1))), (2, Some(manifest(2)))].into(),
            local_state: [(0, vec![1, 2, 3]), (1, vec![1, 2, 3])].into(),
            local_intents: [3].into(),
            remote: remote.then(|| {
                [
                    (
                        1,
                        RemoteEntry {
                            state: true,
                            intent: false,
                            complete: true,
                        },
                    ),
                    (
                        2,
                        RemoteEntry {
                            state: true,
                            intent: false,
                            complete: false,
                        },
                    ),
                    (
                        3,
                        RemoteEntry {
                            state: true,
                            intent: true,
                            complete: false,
                        },
                    ),
                ]
                .into()
            }),
            remote_markers: BTreeMap::new(),
            remote_state_bytes: [(1, 5000)].into(),
        }
    }

    #[test]
    fn completeness_needs_marker_state_and_remote() {
        let local_only = build(&inputs(false));
        assert_eq!(
            local_only
                .iter()
                .map(|i| (i.id, i.complete))
                .collect::<Vec<_>>(),
            vec![(1, true), (2, true), (3, false)]
        );
        let with_remote = build(&inputs(true));
        assert_eq!(
            with_remote
                .iter()
                .map(|i| (i.id, i.complete))
                .collect::<Vec<_>>(),
            vec![(1, true), (2, false), (3, false)],
            "2 has no remote marker yet, so it is not durable"
        );
        assert_eq!(status(&with_remote[1]), "not yet durable");
        assert_eq!(status(&with_remote[2]), "commit pending");
        // A missing partition checkpoint makes a marked checkpoint incomplete.
        let mut i = inputs(false);
        i.local_state.insert(1, vec![1, 3]);
        let infos = build(&i);
        assert!(!infos[1].complete);
        assert_eq!(status(&infos[1]), "state missing");
    }

    #[test]
    fn remote_markers_fill_in_on_a_new_node() {
        let mut i = Inputs {
            remote: Some(
                [(
                    5,
                    RemoteEntry {
                        state: true,
                        intent: false,
                        complete: true,
                    },
                )]
                .into(),
            ),
            ..Inputs::default()
        };
        i.remote_markers.insert(5, manifest(5));
        let infos = build(&i);
        assert_eq!(infos.len(), 1);
        assert!(!infos[0].complete, "not restorable locally yet");
        assert_eq!(infos[0].snapshots["users_changes"], 4247);
        assert_eq!(infos[0].offsets["fintech.public.users"][&0], 50);
    }

    #[test]
    fn local_prune_never_drops_the_latest_complete_or_an_intent() {
        let infos = build(&inputs(false));
        assert_eq!(local_keep(&infos, NonZeroUsize::MIN), [2, 3].into());
        let mut i = inputs(false);
        i.local_intents = [1, 3].into();
        let infos = build(&i);
        assert_eq!(local_keep(&infos, NonZeroUsize::MIN), [1, 2, 3].into());
    }

    #[test]
    fn list_and_show_render_every_field() {
        let infos = build(&inputs(true));
        let list = format_list(&infos);
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 4, "{list}");
        assert!(lines[0].starts_with("      ID  COMPLETED (UTC)"), "{list}");
        assert!(lines[1].contains("2023-11-14 22:13:20.001"), "{list}");
        assert!(lines[1].contains("3.0 KiB"), "{list}");
        assert!(lines[1].contains("marker 2/2"), "{list}");
        assert!(lines[1].contains("state+marker"), "{list}");
        assert!(lines[1].trim_end().ends_with("complete"), "{list}");
        assert!(lines[3].contains("state 2/2 +intent"), "{list}");
        assert!(lines[3].trim_end().ends_with("commit pending"), "{list}");
        let show = format_show(&infos[0]);
        assert!(show.starts_with("checkpoint 1: complete\n"), "{show}");
        assert!(
            show.contains("    fintech.public.users: 0=10 1=7\n"),
            "{show}"
        );
        assert!(show.contains("users_changes"), "{show}");
        assert!(show.contains("4243  3 rows"), "{show}");
        assert!(
            show.contains("state yes (4.9 KiB), intent no, marker yes"),
            "{show}"
        );
        assert!(show.contains("3.0 KiB (p0=2.0 KiB p1=1.0 KiB)"), "{show}");
        assert_eq!(format_list(&[]).lines().nth(1), Some("(no checkpoints)"));
        let json = serde_json::to_value(&infos).unwrap();
        assert_eq!(json[0]["snapshots"]["users_changes"], 4243);
        assert_eq!(json[2]["local"]["intent"], true);
        assert_eq!(json[1]["remote"]["marker"], false);
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
