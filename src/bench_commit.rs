//! `ledgerstream bench-commit`: the latency of committing one checkpoint into every output table, through the
//! multi-table swap (`crate::commit`) and, on a twin catalog with the same files, through one iceberg-rust fast
//! append per table (the path checkpoints took before). Embedded sqlite catalog on local disk; no broker needed.
//!
//! Each checkpoint writes one small data file (`rows` rows) per table into each catalog, then times only the
//! commit. The two paths alternate checkpoint by checkpoint, so they see the same machine load and the same table
//! history length. Figures are printed per window of checkpoints, since commit cost grows with the history
//! (manifest lists list every manifest; metadata.json lists every snapshot).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::commit::{self, Files};
use crate::sink::{CatalogConfig, CommitMeta, SinkCatalog, TableDef, write_rows};
use crate::types::{CheckpointId, Offset, PartitionId};
use crate::value::{ColumnSpec, ColumnType, Value};

#[derive(Debug, clap::Args)]
pub struct BenchCommitArgs {
    /// Output tables per checkpoint (the pipeline commits 8).
    #[arg(long, default_value_t = 8)]
    pub tables: usize,
    /// Checkpoints to commit on each path.
    #[arg(long, default_value_t = 300)]
    pub checkpoints: u64,
    /// Rows per table per checkpoint.
    #[arg(long, default_value_t = 200)]
    pub rows: i64,
    /// Report one line per this many checkpoints.
    #[arg(long, default_value_t = 100)]
    pub window: u64,
    /// Working directory; a fresh temp dir when absent.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn line(label: &str, from: u64, to: u64, samples: &mut [Duration]) {
    samples.sort();
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64 * 1e3;
    println!(
        "{label:<28} checkpoints {from:>5}-{to:<5} mean {mean:>7.1} ms  p50 {:>7.1} ms  p99 {:>7.1} ms",
        quantile(samples, 0.5),
        quantile(samples, 0.99)
    );
}

pub async fn bench_commit(args: BenchCommitArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let swap_cat =
        SinkCatalog::connect(&CatalogConfig::embedded(&dir.join("multi")), "bench").await?;
    let append_cat =
        SinkCatalog::connect(&CatalogConfig::embedded(&dir.join("per-table")), "bench").await?;
    let defs: Vec<_> = (0..args.tables)
        .map(|i| {
            TableDef::new(
                format!("t{i}"),
                vec![
                    ColumnSpec::new("id", ColumnType::Int64, false),
                    ColumnSpec::new("note", ColumnType::Text, true),
                    ColumnSpec::new("created_at", ColumnType::TimestampTz, false),
                ],
                "created_at",
            )
        })
        .collect();
    let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
    for d in &defs {
        swap_cat.ensure_table(d).await?;
        append_cat.ensure_table(d).await?;
    }
    let parts = [
        PartitionId(0),
        PartitionId(1),
        PartitionId(2),
        PartitionId(3),
    ];
    let fence = commit::claim(&swap_cat, "bench", &parts, &names, false).await?;
    let (mut multi, mut per_table) = (Vec::new(), Vec::new());
    let mut from = 1;
    println!(
        "commit latency: {} tables x {} rows per checkpoint, {} checkpoints per path, sqlite catalog, local disk",
        args.tables, args.rows, args.checkpoints
    );
    for cp in 1..=args.checkpoints {
        let ids = (cp as i64 * args.rows)..((cp as i64 + 1) * args.rows);
        let meta = CommitMeta {
            checkpoint_id: CheckpointId(cp),
            writer_id: "bench".into(),
            epoch: None,
            offsets: BTreeMap::from([(
                "bench".to_string(),
                parts.iter().map(|p| (*p, Offset(ids.end))).collect(),
            )]),
        };
        // 2024-01-01 plus one second per row: one day partition per checkpoint at most.
        let rows: Vec<Vec<Value>> = ids
            .map(|i| {
                vec![
                    Value::Int64(i),
                    Value::Text(format!("row {i}")),
                    Value::TimestampTz(1_704_067_200_000_000 + i * 1_000_000),
                ]
            })
            .collect();
        // Multi-table swap.
        let mut files = BTreeMap::new();
        for d in &defs {
            let t = swap_cat.load_table(&d.name).await?;
            let w = write_rows(&t, d, &meta, &rows, 4096).await?;
            files.insert(
                d.name.clone(),
                Files {
                    data: w.files,
                    deletes: Vec::new(),
                },
            );
        }
        let started = Instant::now();
        let done = commit::commit_checkpoint(&swap_cat, &fence, &meta, &files, &names).await?;
        multi.push(started.elapsed());
        anyhow::ensure!(
            !done.already && done.snapshots.len() == defs.len(),
            "checkpoint {cp} not committed"
        );
        // One fast append per table, as before.
        let mut written = Vec::new();
        for d in &defs {
            let t = append_cat.load_table(&d.name).await?;
            written.push((
                d.name.clone(),
                write_rows(&t, d, &meta, &rows, 4096).await?.files,
            ));
        }
        let started = Instant::now();
        for (name, f) in written {
            crate::sink::commit_files(&append_cat, &name, f, &meta).await?;
        }
        per_table.push(started.elapsed());
        if cp % args.window == 0 || cp == args.checkpoints {
            line("multi-table swap", from, cp, &mut multi);
            line("per-table fast-append", from, cp, &mut per_table);
            multi.clear();
            per_table.clear();
            from = cp + 1;
        }
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("ls-bench-commit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
