//! Precision and recall of the default rules against the generator's injected fraud (the ground truth).
//!
//! The pure [`Model`] is driven with a fixed seed; action `seq` gets event time `seq / rate`. Every transaction
//! insert with a user becomes a [`TxFacts`] (home country from the user rows, balance after from the wallet
//! update that follows the insert in the same action) and is fed per user, in order, with the running
//! watermark, through a bincode round trip of the user's state as the partition would persist it.
//!
//! Matching: an alert of rule R matches an episode of pattern P(R) when they share a transaction id. Every
//! alert carries the transactions that triggered it (velocity: the debits of the window; country hopping: the
//! transactions of the window; rapid drain: the deposit and the cash-outs), so this is also how rapid drain is
//! matched: by the deposit or the withdrawal id. Precision of R = alerts of R matching an episode of P(R) /
//! alerts of R; recall of P = completed episodes of P matched by an alert of R(P). Episodes still open when the
//! run ends are ground truth for precision (an alert on them is right) but not counted for recall.

use super::super::*;
use crate::generate::model::{FraudPattern, IdBase, Model, ModelConfig};
use crate::generate::rows::RowChange;
use std::collections::{BTreeMap, BTreeSet};

fn rule_of(p: FraudPattern) -> Rule {
    match p {
        FraudPattern::VelocityBurst => Rule::Velocity,
        FraudPattern::AmountSpike => Rule::AmountSpike,
        FraudPattern::Overdraft => Rule::Overdraft,
        FraudPattern::CountryHopping => Rule::CountryHopping,
        FraudPattern::RapidDrain => Rule::RapidDrain,
    }
}

/// Per rule: (true-positive alerts, alerts, detected episodes, completed episodes).
type Scores = BTreeMap<Rule, (usize, usize, usize, usize)>;

/// Runs `actions` model actions at `actions_per_sec` and scores the alerts of `cfg`.
fn run(seed: u64, actions: u64, actions_per_sec: u64, cfg: FraudConfig) -> (Scores, usize) {
    let engine = FraudEngine::new(cfg);
    let mut model = Model::new(ModelConfig {
        seed,
        fraud_rate: 0.01,
        bad_row_rate: 0.005,
        evolve_after: None,
        ids: IdBase::default(),
    });
    let mut homes: BTreeMap<i64, String> = BTreeMap::new();
    let mut states: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    let mut alerts: Vec<Alert> = Vec::new();
    let mut completed = Vec::new();
    let mut watermark = i64::MIN;
    let mut lsn = 0u64;
    let bincode_cfg = bincode::config::standard();
    for _ in 0..actions {
        let action = model.next_action();
        let t = i64::try_from(action.seq).expect("seq") * 1_000_000
            / i64::try_from(actions_per_sec).expect("rate");
        for (i, change) in action.changes.iter().enumerate() {
            lsn += 1;
            match change {
                RowChange::InsertUser(u) => {
                    homes.insert(u.id.0, u.country.to_string());
                }
                RowChange::InsertTransaction(row) => {
                    // A row without a user goes to data quality, not to the fraud rules.
                    let Some(user) = row.user_id else { continue };
                    let balance_after = action.changes[i + 1..].iter().find_map(|c| match c {
                        RowChange::SetWalletBalance { id, balance } if *id == row.wallet_id => {
                            Some(*balance)
                        }
                        _ => None,
                    });
                    let tx = TxFacts {
                        transaction_id: row.id.0,
                        lsn,
                        event_time_us: t,
                        user_id: user.0,
                        wallet_id: Some(row.wallet_id.0),
                        kind: row.kind.as_str().to_string(),
                        status: row.status.as_str().to_string(),
                        amount: row.amount,
                        fee: row.fee,
                        currency: row.currency.to_string(),
                        country: row.country.map(str::to_string),
                        user_country: homes.get(&user.0).cloned(),
                        wallet_balance_after: balance_after,
                    };
                    let mut state: UserWindows = match states.get(&user.0) {
                        Some(bytes) => {
                            bincode::serde::decode_from_slice(bytes, bincode_cfg)
                                .expect("decode state")
                                .0
                        }
                        None => UserWindows::default(),
                    };
                    let outcome = engine.on_transaction(&mut state, &tx, watermark);
                    assert!(!outcome.is_too_late(), "in-order input is never late");
                    alerts.extend(outcome.into_alerts());
                    states.insert(
                        user.0,
                        bincode::serde::encode_to_vec(&state, bincode_cfg).expect("encode"),
                    );
                    watermark = watermark.max(t);
                }
                _ => {}
            }
        }
        if let Some(ep) = action.fraud.and_then(|f| f.completed) {
            completed.push(ep);
        }
        // Retention as the partition does it: periodically, deleting emptied keys.
        if action.seq % 1_000 == 999 {
            states.retain(|_, bytes| {
                let mut s: UserWindows = bincode::serde::decode_from_slice(bytes, bincode_cfg)
                    .expect("decode")
                    .0;
                if engine.expire(&mut s, watermark) {
                    return false;
                }
                *bytes = bincode::serde::encode_to_vec(&s, bincode_cfg).expect("encode");
                true
            });
        }
    }

    // Transaction id → patterns of the episodes (completed or still open) it belongs to.
    let mut truth: BTreeMap<i64, BTreeSet<FraudPattern>> = BTreeMap::new();
    for ep in completed.iter().chain(model.open_episodes().iter()) {
        for id in &ep.transaction_ids {
            truth.entry(id.0).or_default().insert(ep.pattern);
        }
    }
    let mut scores: Scores = BTreeMap::new();
    for rule in Rule::ALL {
        scores.insert(rule, (0, 0, 0, 0));
    }
    for a in &alerts {
        let s = scores.entry(a.rule).or_default();
        s.1 += 1;
        let hit = a.transaction_ids.iter().any(|id| {
            truth
                .get(id)
                .is_some_and(|ps| ps.iter().any(|p| rule_of(*p) == a.rule))
        });
        if hit {
            s.0 += 1;
        }
    }
    for ep in &completed {
        let rule = rule_of(ep.pattern);
        let ids: BTreeSet<i64> = ep.transaction_ids.iter().map(|id| id.0).collect();
        let s = scores.entry(rule).or_default();
        s.3 += 1;
        if alerts
            .iter()
            .any(|a| a.rule == rule && a.transaction_ids.iter().any(|id| ids.contains(id)))
        {
            s.2 += 1;
        }
    }
    (scores, states.len())
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

fn report_and_check(label: &str, scores: &Scores, min: f64) {
    let mut failures = Vec::new();
    for (rule, (tp, n, found, total)) in scores {
        let precision = ratio(*tp, *n);
        let recall = ratio(*found, *total);
        println!(
            "{label} {:<16} precision {precision:.3} ({tp}/{n})  recall {recall:.3} ({found}/{total})",
            rule.as_str()
        );
        if *total < 10 {
            failures.push(format!("{rule}: only {total} episodes, too few to judge"));
        }
        if precision < min || recall < min {
            failures.push(format!(
                "{rule}: precision {precision:.3}, recall {recall:.3}"
            ));
        }
    }
    assert!(failures.is_empty(), "{label}: {failures:?}");
}

/// 20k actions at 100 actions/s (200 s of event time; users grow from 100 to about 800), default config.
#[test]
fn default_rules_catch_generated_fraud_at_100_actions_per_second() {
    let (scores, _) = run(7, 20_000, 100, FraudConfig::default());
    report_and_check("100/s", &scores, 0.9);
}

/// The generator's default pace (10,000 changes/h is about 1.5 actions/s): windows span many more actions.
#[test]
fn default_rules_catch_generated_fraud_at_the_generator_default_rate() {
    let (scores, _) = run(11, 20_000, 1, FraudConfig::default());
    report_and_check("1/s", &scores, 0.9);
}
