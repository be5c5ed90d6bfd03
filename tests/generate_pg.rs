//! `ledgerstream generate` against a real PostgreSQL 15 started by the test.
//!
//! Checks, in SQL, the balance invariant (every wallet's balance is the sum of its transactions' effects,
//! ignoring failed and reversed ones), referential sanity, the live schema change, the ground-truth file,
//! that the same seed writes identical rows into a fresh database, and that a second run continues the ids.

mod support;

use ledgerstream::generate::model::UNKNOWN_CURRENCY;
use ledgerstream::generate::rows::{Op, Table};
use ledgerstream::generate::{self, GenerateArgs, Probability, Rate, StopReason, Summary};
use sqlx::PgPool;
use std::collections::HashSet;
use std::path::Path;
use support::pg::TestPg;

/// Wallets whose balance differs from the sum of their counting transactions' effects.
const BALANCE_MISMATCHES: &str = "
    SELECT count(*) FROM wallets w
    LEFT JOIN (
        SELECT wallet_id,
               SUM(CASE WHEN kind IN ('deposit', 'transfer_in', 'refund', 'chargeback') THEN amount
                        ELSE -(amount + fee) END) AS total
        FROM transactions
        WHERE status NOT IN ('failed', 'reversed')
        GROUP BY wallet_id
    ) t ON t.wallet_id = w.id
    WHERE w.balance <> COALESCE(t.total, 0)";

/// A digest of every table's content except the timestamps, to compare two databases.
const CONTENT_DIGEST: &str = "
    SELECT md5(
        (SELECT COALESCE(string_agg(u::text, '|' ORDER BY u.id), '')
           FROM (SELECT id, email, full_name, country, kyc_status, risk_tier FROM users) u) || '#' ||
        (SELECT COALESCE(string_agg(w::text, '|' ORDER BY w.id), '')
           FROM (SELECT id, user_id, currency, balance, status FROM wallets) w) || '#' ||
        (SELECT COALESCE(string_agg(t::text, '|' ORDER BY t.id), '')
           FROM (SELECT id, wallet_id, user_id, counterparty_wallet_id, kind, amount, fee, currency, status,
                        country, merchant, device_id FROM transactions) t))";

fn args(url: String, seed: u64, max_changes: u64, truth: &Path) -> GenerateArgs {
    GenerateArgs {
        rate: Rate::Limited(4_000.0),
        seed: Some(seed),
        max_changes: Some(max_changes),
        evolve_after: Some(1_000),
        fraud_rate: Probability(0.05),
        bad_row_rate: Probability(0.05),
        truth_out: Some(truth.to_path_buf()),
        no_progress: true,
        ..GenerateArgs::new(url)
    }
}

async fn generate(args: GenerateArgs) -> Summary {
    generate::run_until(args, std::future::pending())
        .await
        .unwrap_or_else(|e| panic!("generate failed: {e:#}"))
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn live_rows(s: &Summary, table: Table) -> i64 {
    (s.totals.count(table, Op::Insert) - s.totals.count(table, Op::Delete)) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_keeps_balances_consistent_and_evolves_the_schema() {
    let pg = TestPg::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let truth_path = dir.path().join("truth.jsonl");

    // Migrations are idempotent: an explicit migrate followed by generate's own.
    generate::migrate(&pg.url()).await.expect("migrate");
    let summary = generate(args(pg.url(), 2024, 2_000, &truth_path)).await;
    eprintln!("{summary}");

    assert_eq!(summary.stop, StopReason::MaxChanges);
    assert!(
        (2_000..2_010).contains(&summary.totals.changes),
        "{}",
        summary.totals.changes
    );
    assert!(summary.evolved);
    // 2,000 changes at 4,000/s cannot take less than half a second.
    assert!(
        summary.elapsed.as_secs_f64() >= 0.49,
        "{:?}",
        summary.elapsed
    );
    assert!(
        summary.achieved_rate <= 4_000.0 * 1.05,
        "{}",
        summary.achieved_rate
    );

    let pool = PgPool::connect(&pg.url()).await.expect("connect");
    assert_eq!(
        count(&pool, BALANCE_MISMATCHES).await,
        0,
        "wallet balances != transaction effects"
    );
    // The model bootstraps 100 users before spreading activity.
    assert!(count(&pool, "SELECT count(*) FROM wallets").await > 80);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM users").await,
        live_rows(&summary, Table::Users)
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM wallets").await,
        live_rows(&summary, Table::Wallets)
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM transactions").await,
        live_rows(&summary, Table::Transactions)
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM transactions t WHERE NOT EXISTS (SELECT 1 FROM wallets w WHERE w.id = t.wallet_id)")
            .await,
        0,
        "transactions of deleted wallets"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM wallets w WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = w.user_id)").await,
        0,
        "wallets of deleted users"
    );
    for status in ["pending", "settled", "failed", "reversed"] {
        let n = count(
            &pool,
            &format!("SELECT count(*) FROM transactions WHERE status = '{status}'"),
        )
        .await;
        assert!(n > 0, "no {status} transactions");
    }

    // The live schema change: the column exists, is empty before and filled after the evolution point.
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'transactions' AND column_name = 'device_id'"
        )
        .await,
        1
    );
    let filled = count(
        &pool,
        "SELECT count(*) FROM transactions WHERE device_id IS NOT NULL",
    )
    .await;
    let first_filled: i64 = count(
        &pool,
        "SELECT min(id) FROM transactions WHERE device_id IS NOT NULL",
    )
    .await;
    assert!(filled > 0);
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT count(*) FROM transactions WHERE device_id IS NULL AND id > {first_filled}"
            )
        )
        .await,
        0,
        "rows after the evolution without device_id"
    );
    assert!(
        count(
            &pool,
            "SELECT count(*) FROM transactions WHERE device_id IS NULL"
        )
        .await
            > 0
    );

    // Malformed rows reached the database.
    assert!(
        count(
            &pool,
            "SELECT count(*) FROM transactions WHERE user_id IS NULL"
        )
        .await
            > 0
    );
    assert!(
        count(
            &pool,
            &format!("SELECT count(*) FROM transactions WHERE currency = '{UNKNOWN_CURRENCY}'")
        )
        .await
            > 0
    );
    assert!(count(&pool, "SELECT count(*) FROM transactions WHERE amount <= 0").await > 0);

    // The truth file: one line per completed or cut-short episode and per bad row; every id exists.
    let truth = std::fs::read_to_string(&truth_path).expect("truth file");
    let lines: Vec<serde_json::Value> = truth
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines.len() as u64, summary.truth_lines);
    let fraud = lines.iter().filter(|l| l["kind"] == "fraud").count() as u64;
    let bad = lines.iter().filter(|l| l["kind"] == "bad_row").count() as u64;
    assert_eq!(bad, summary.totals.bad_rows);
    let completed: u64 = summary.totals.fraud_episodes.values().sum();
    assert!(
        fraud >= completed && fraud > 0,
        "{fraud} fraud lines, {completed} completed"
    );
    let mut ids: HashSet<i64> = HashSet::new();
    for l in &lines {
        match l["kind"].as_str() {
            Some("fraud") => ids.extend(
                l["transaction_ids"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .filter_map(|v| v.as_i64()),
            ),
            Some("bad_row") => ids.extend(l["transaction_id"].as_i64()),
            other => panic!("unknown truth kind {other:?}"),
        }
    }
    let id_list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM transactions WHERE id IN ({id_list})")
        )
        .await,
        ids.len() as i64
    );
    let overdrafts: Vec<i64> = lines
        .iter()
        .filter(|l| l["pattern"] == "overdraft")
        .filter_map(|l| l["wallet_id"].as_i64())
        .collect();
    assert!(!overdrafts.is_empty(), "no overdraft injected");

    // Same seed into a fresh database: identical rows and identical ground truth (timestamps aside).
    sqlx::query("CREATE DATABASE replay")
        .execute(&pool)
        .await
        .expect("create database");
    let replay_truth = dir.path().join("replay.jsonl");
    let replay = generate(args(pg.url_for("replay"), 2024, 2_000, &replay_truth)).await;
    assert_eq!(replay.totals, summary.totals);
    let replay_pool = PgPool::connect(&pg.url_for("replay"))
        .await
        .expect("connect replay");
    let digest = |p: PgPool| async move {
        sqlx::query_scalar::<_, String>(CONTENT_DIGEST)
            .fetch_one(&p)
            .await
            .expect("digest")
    };
    assert_eq!(
        digest(pool.clone()).await,
        digest(replay_pool.clone()).await
    );
    let strip = |text: String| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
                if let Some(o) = v.as_object_mut() {
                    for key in ["started_at", "ended_at", "at"] {
                        o.remove(key);
                    }
                }
                v
            })
            .collect()
    };
    assert_eq!(
        strip(std::fs::read_to_string(&replay_truth).expect("replay truth")),
        strip(truth.clone())
    );

    // A second run on the first database continues the ids, keeps the invariant, and left the sequences ahead.
    let max_tx_before = count(&pool, "SELECT max(id) FROM transactions").await;
    let second = generate(GenerateArgs {
        evolve_after: None,
        ..args(pg.url(), 99, 300, &dir.path().join("second.jsonl"))
    })
    .await;
    assert_eq!(second.stop, StopReason::MaxChanges);
    assert_eq!(count(&pool, BALANCE_MISMATCHES).await, 0);
    assert_eq!(
        count(
            &pool,
            &format!("SELECT min(id) FROM transactions WHERE id > {max_tx_before}")
        )
        .await,
        max_tx_before + 1
    );
    let next: i64 = count(&pool, "SELECT nextval('transactions_id_seq')").await;
    assert_eq!(
        next,
        count(&pool, "SELECT max(id) FROM transactions").await + 1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM users").await,
        live_rows(&summary, Table::Users) + live_rows(&second, Table::Users)
    );

    pool.close().await;
    replay_pool.close().await;
}
