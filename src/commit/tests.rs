//! The commit protocol against a real catalog (sqlite + local files): atomic multi-table swaps, idempotence,
//! fencing by epoch, and foreign appenders.

use std::collections::BTreeMap;

use iceberg::transaction::{ApplyTransactionAction, Transaction};

use super::*;
use crate::sink::testutil::*;
use crate::sink::{SinkCatalog, SinkError, TableDef, write_rows};
use crate::types::{CheckpointId, PartitionId};

const PARTS: [PartitionId; 2] = [PartitionId(0), PartitionId(1)];

fn second_def() -> TableDef {
    let mut d = tx_def();
    d.name = "transactions_copy".into();
    d
}

fn names() -> Vec<String> {
    vec![tx_def().name, second_def().name]
}

async fn setup(dir: &std::path::Path) -> SinkCatalog {
    let cat = embedded(dir).await;
    cat.ensure_table(&tx_def()).await.expect("ensure");
    cat.ensure_table(&second_def()).await.expect("ensure");
    cat
}

/// Files for `ids` in both tables, written for checkpoint `cp`.
async fn files_for(
    cat: &SinkCatalog,
    cp: u64,
    ids: std::ops::Range<i64>,
) -> BTreeMap<String, Files> {
    let mut out = BTreeMap::new();
    for def in [tx_def(), second_def()] {
        let table = cat.load_table(&def.name).await.expect("load");
        let w = write_rows(
            &table,
            &def,
            &meta("w", cp, ids.end),
            &tx_rows(ids.clone()),
            64,
        )
        .await
        .expect("write");
        out.insert(
            def.name.clone(),
            Files {
                data: w.files,
                deletes: Vec::new(),
            },
        );
    }
    out
}

async fn ids_in(cat: &SinkCatalog, table: &str) -> Vec<i64> {
    let t = cat.load_table(table).await.expect("load");
    tx_out(&scan(&t).await).into_iter().map(|r| r.id).collect()
}

async fn location(cat: &SinkCatalog, table: &str) -> String {
    cat.load_table(table)
        .await
        .expect("load")
        .metadata_location()
        .expect("location")
        .to_string()
}

/// Appends `ids` to `table` the way another tool would (iceberg-rust's own fast append, no ledgerstream keys).
async fn foreign_append(cat: &SinkCatalog, table: &str, ids: std::ops::Range<i64>) {
    let def = if table == tx_def().name {
        tx_def()
    } else {
        second_def()
    };
    let t = cat.load_table(table).await.expect("load");
    let w = write_rows(&t, &def, &meta("other-tool", 1, 0), &tx_rows(ids), 64)
        .await
        .expect("write");
    let tx = Transaction::new(&t);
    let tx = tx
        .fast_append()
        .add_data_files(w.files)
        .apply(tx)
        .expect("apply");
    tx.commit(cat.catalog()).await.expect("foreign commit");
}

#[tokio::test]
async fn a_checkpoint_lands_in_every_table_once_with_its_marks() {
    let dir = tempfile::tempdir().unwrap();
    let cat = setup(dir.path()).await;
    let fence = claim(&cat, "w", &PARTS, &names(), false)
        .await
        .expect("claim");
    assert_eq!(fence.epoch, 1);
    let files = files_for(&cat, 1, 0..50).await;
    let m = meta("w", 1, 50);
    let done = commit_checkpoint(&cat, &fence, &m, &files, &names())
        .await
        .expect("commit");
    assert!(!done.already);
    assert_eq!(done.snapshots.len(), 2);
    for name in names() {
        assert_eq!(
            ids_in(&cat, &name).await,
            (0..50).collect::<Vec<_>>(),
            "{name}"
        );
        let t = cat.load_table(&name).await.unwrap();
        let marks = fence::marks(t.metadata(), "w").unwrap();
        assert_eq!(
            marks.values().copied().collect::<Vec<_>>(),
            vec![
                PartitionMark {
                    epoch: 1,
                    checkpoint: 1
                };
                2
            ]
        );
        let snap = t.metadata().current_snapshot().unwrap();
        assert_eq!(snap.snapshot_id(), done.snapshots[&name]);
        let meta_back = crate::sink::CommitMeta::from_snapshot(snap)
            .unwrap()
            .unwrap();
        assert_eq!(meta_back.epoch, Some(1));
        assert_eq!(meta_back.checkpoint_id, CheckpointId(1));
        let props = &snap.summary().additional_properties;
        assert_eq!(props.get("total-records").map(String::as_str), Some("50"));
        assert_eq!(props.get("added-records").map(String::as_str), Some("50"));
        assert_eq!(newest_checkpoint(&t, "w").unwrap(), Some(1));
    }
    // The same checkpoint again (a replayed intent): nothing new, the same snapshots reported.
    let again = commit_checkpoint(&cat, &fence, &m, &files, &names())
        .await
        .expect("replay");
    assert!(again.already);
    assert_eq!(again.snapshots, done.snapshots);
    assert_eq!(ids_in(&cat, &tx_def().name).await.len(), 50);
    // A second checkpoint with files in one table only stamps the other without a snapshot.
    let mut two = files_for(&cat, 2, 50..60).await;
    two.remove(&second_def().name);
    let before = cat.load_table(&second_def().name).await.unwrap();
    let done2 = commit_checkpoint(&cat, &fence, &meta("w", 2, 60), &two, &names())
        .await
        .expect("commit 2");
    assert_eq!(
        done2.snapshots.keys().collect::<Vec<_>>(),
        vec![&tx_def().name]
    );
    let after = cat.load_table(&second_def().name).await.unwrap();
    assert_eq!(
        after.metadata().current_snapshot_id(),
        before.metadata().current_snapshot_id()
    );
    assert_eq!(newest_checkpoint(&after, "w").unwrap(), Some(2));
    assert_eq!(ids_in(&cat, &tx_def().name).await.len(), 60);
    let t = cat.load_table(&tx_def().name).await.unwrap();
    let props = &t
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    assert_eq!(props.get("total-records").map(String::as_str), Some("60"));
}

#[tokio::test]
async fn a_newer_epoch_fences_the_older_one_even_mid_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cat = setup(dir.path()).await;
    let old = claim(&cat, "w", &PARTS, &names(), false)
        .await
        .expect("claim");
    commit_checkpoint(
        &cat,
        &old,
        &meta("w", 1, 10),
        &files_for(&cat, 1, 0..10).await,
        &names(),
    )
    .await
    .expect("first");
    // The old process stages checkpoint 2 on the current heads, then stalls (SIGSTOP) ...
    let mut staged = Vec::new();
    for name in names() {
        let t = cat.load_table(&name).await.unwrap();
        let files = files_for(&cat, 2, 10..20).await.remove(&name).unwrap();
        let change = TableChange {
            data_files: files.data,
            delete_files: Vec::new(),
            summary: old.meta(meta("w", 2, 20)).to_summary().unwrap(),
        };
        staged.push(
            produce::stage(&t, change, old.properties(CheckpointId(2)))
                .await
                .unwrap(),
        );
    }
    // ... a new process takes over ...
    let new = claim(&cat, "w", &PARTS, &names(), false)
        .await
        .expect("takeover");
    assert_eq!(new.epoch, 2);
    // ... and the old one wakes up: its swap is refused, and anything it retries is fenced.
    let swap = cat.sql_swap().unwrap();
    assert!(matches!(swap.swap(&staged).await, SwapOutcome::Conflict(_)));
    let err = commit_checkpoint(
        &cat,
        &old,
        &meta("w", 2, 20),
        &files_for(&cat, 2, 10..20).await,
        &names(),
    )
    .await
    .expect_err("stale epoch must not commit");
    assert!(
        matches!(
            err,
            SinkError::Fenced {
                epoch: 1,
                newer_epoch: 2,
                ..
            }
        ),
        "{err:?}"
    );
    for name in names() {
        assert_eq!(
            ids_in(&cat, &name).await.len(),
            10,
            "{name}: the zombie wrote nothing"
        );
    }
    // The new owner carries on from the recorded checkpoint.
    let done = commit_checkpoint(
        &cat,
        &new,
        &meta("w", 2, 20),
        &files_for(&cat, 2, 10..20).await,
        &names(),
    )
    .await
    .expect("new owner commits");
    assert!(!done.already);
    assert_eq!(ids_in(&cat, &tx_def().name).await.len(), 20);
    // With fencing switched off (the failpoint builds' test switch), the stale epoch would have written.
    let mut unfenced = old.clone();
    unfenced.disabled = true;
    let wrote = commit_checkpoint(
        &cat,
        &unfenced,
        &meta("w", 3, 30),
        &files_for(&cat, 3, 20..30).await,
        &names(),
    )
    .await
    .expect("unfenced commit");
    assert!(!wrote.already);
}

#[tokio::test]
async fn the_swap_is_all_or_nothing_across_tables() {
    let dir = tempfile::tempdir().unwrap();
    let cat = setup(dir.path()).await;
    let fence = claim(&cat, "w", &PARTS, &names(), false)
        .await
        .expect("claim");
    let files = files_for(&cat, 1, 0..10).await;
    let mut staged = Vec::new();
    for (name, f) in &files {
        let t = cat.load_table(name).await.unwrap();
        let change = TableChange {
            data_files: f.data.clone(),
            delete_files: Vec::new(),
            summary: fence.meta(meta("w", 1, 10)).to_summary().unwrap(),
        };
        staged.push(
            produce::stage(&t, change, fence.properties(CheckpointId(1)))
                .await
                .unwrap(),
        );
    }
    let first_before = location(&cat, &tx_def().name).await;
    // Another tool moves the second table after staging.
    foreign_append(&cat, &second_def().name, 1000..1005).await;
    let swap = cat.sql_swap().unwrap();
    match swap.swap(&staged).await {
        SwapOutcome::Conflict(t) => assert!(t.ends_with("transactions_copy"), "{t}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        location(&cat, &tx_def().name).await,
        first_before,
        "the first table must not have moved when the second conflicted"
    );
    assert!(ids_in(&cat, &tx_def().name).await.is_empty());
}

#[tokio::test]
async fn a_foreign_append_between_checkpoints_is_kept_and_nothing_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let cat = setup(dir.path()).await;
    let fence = claim(&cat, "w", &PARTS, &names(), false)
        .await
        .expect("claim");
    commit_checkpoint(
        &cat,
        &fence,
        &meta("w", 1, 10),
        &files_for(&cat, 1, 0..10).await,
        &names(),
    )
    .await
    .expect("first");
    foreign_append(&cat, &tx_def().name, 1000..1005).await;
    let done = commit_checkpoint(
        &cat,
        &fence,
        &meta("w", 2, 20),
        &files_for(&cat, 2, 10..20).await,
        &names(),
    )
    .await
    .expect("second");
    assert!(!done.already);
    let mut want: Vec<i64> = (0..20).collect();
    want.extend(1000..1005);
    assert_eq!(ids_in(&cat, &tx_def().name).await, want);
    assert_eq!(
        ids_in(&cat, &second_def().name).await,
        (0..20).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn claims_carry_the_checkpoint_of_tables_written_before_the_marks() {
    let dir = tempfile::tempdir().unwrap();
    let cat = setup(dir.path()).await;
    // A table committed by the old per-table path holds checkpoint 4 in its ancestry only.
    let def = tx_def();
    let t = cat.load_table(&def.name).await.unwrap();
    let w = write_rows(&t, &def, &meta("w", 4, 5), &tx_rows(0..5), 64)
        .await
        .unwrap();
    crate::sink::commit_files(&cat, &def.name, w.files, &meta("w", 4, 5))
        .await
        .unwrap();
    let fence = claim(&cat, "w", &PARTS, &names(), false)
        .await
        .expect("claim");
    let t = cat.load_table(&def.name).await.unwrap();
    assert_eq!(newest_checkpoint(&t, "w").unwrap(), Some(4));
    // Re-committing checkpoint 4 (an old intent) is recognised as done in that table.
    let files = files_for(&cat, 4, 0..5).await;
    let only_first: BTreeMap<_, _> = files.into_iter().filter(|(k, _)| *k == def.name).collect();
    let again = commit_checkpoint(
        &cat,
        &fence,
        &meta("w", 4, 5),
        &only_first,
        std::slice::from_ref(&def.name),
    )
    .await
    .unwrap();
    assert!(again.already);
    assert_eq!(ids_in(&cat, &def.name).await.len(), 5);
}
