//! Unit tests per rule and per window with controlled event time; the generator-driven precision/recall test
//! is in `tests/generator.rs`.

// Tests read best as "defaults, then this one change".
#![allow(clippy::field_reassign_with_default)]

use super::*;
use std::time::Duration;

mod generator;

const S: i64 = 1_000_000;
const USER: i64 = 42;
const WALLET: i64 = 7;

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

/// A settled transaction of `kind` and `amount` at `t_s` seconds, home country DE, positive balance.
fn tx(id: i64, t_s: i64, kind: &str, amount: &str) -> TxFacts {
    TxFacts {
        transaction_id: id,
        lsn: u64::try_from(id).expect("id"),
        event_time_us: t_s * S,
        user_id: USER,
        wallet_id: Some(WALLET),
        kind: kind.into(),
        status: "settled".into(),
        amount: d(amount),
        fee: Decimal::ZERO,
        currency: "EUR".into(),
        country: Some("DE".into()),
        user_country: Some("DE".into()),
        wallet_balance_after: Some(d("1000")),
    }
}

/// Fixed round numbers for the unit tests, independent of the tuned defaults.
fn base() -> FraudConfig {
    let mut c = FraudConfig::default();
    c.allowed_lateness = Duration::from_secs(5);
    c.velocity.window = Duration::from_secs(10);
    c.velocity.max_debits = 5;
    c.velocity.cooldown = Duration::from_secs(300);
    c.amount_spike.stat = SpikeStat::Median;
    c.amount_spike.multiplier = 10.0;
    c.amount_spike.credit_multiplier = 25.0;
    c.amount_spike.min_history = 5;
    c.amount_spike.history_len = 20;
    c.amount_spike.history_includes_deposits = false;
    c.amount_spike.history_ttl = Duration::from_secs(30 * 24 * 3600);
    c.overdraft.cooldown = Duration::from_secs(3600);
    c.country_hopping.window = Duration::from_secs(10);
    c.country_hopping.min_countries = 3;
    c.country_hopping.cooldown = Duration::from_secs(300);
    c.rapid_drain.within = Duration::from_secs(600);
    c.rapid_drain.min_deposit_multiple = 5.0;
    c.rapid_drain.min_share_pct = 80.0;
    c.rapid_drain.min_deposit = d("50");
    c
}

/// Only `rule` enabled, so each test sees one rule's alerts.
fn only(rule: Rule) -> FraudConfig {
    let mut c = base();
    c.velocity.enabled = rule == Rule::Velocity;
    c.amount_spike.enabled = rule == Rule::AmountSpike;
    c.overdraft.enabled = rule == Rule::Overdraft;
    c.country_hopping.enabled = rule == Rule::CountryHopping;
    c.rapid_drain.enabled = rule == Rule::RapidDrain;
    c
}

/// Feeds `txs` in order, each with the watermark at the previous transaction's time; returns all alerts.
fn feed(engine: &FraudEngine, state: &mut UserWindows, txs: &[TxFacts]) -> Vec<Alert> {
    let mut out = Vec::new();
    let mut wm = i64::MIN;
    for t in txs {
        out.extend(engine.on_transaction(state, t, wm).into_alerts());
        wm = wm.max(t.event_time_us);
    }
    out
}

fn ids(alerts: &[Alert]) -> Vec<(Rule, Vec<i64>)> {
    alerts
        .iter()
        .map(|a| (a.rule, a.transaction_ids.clone()))
        .collect()
}

// ---- velocity ---------------------------------------------------------------------------------------------

#[test]
fn velocity_fires_on_the_sixth_debit_in_ten_seconds_once() {
    let e = FraudEngine::new(only(Rule::Velocity));
    let mut s = UserWindows::default();
    // Five debits in 0..=8 s: at the threshold, no alert.
    let five: Vec<TxFacts> = (1..=5)
        .map(|i| tx(i, 2 * (i - 1), "payment", "10"))
        .collect();
    assert!(feed(&e, &mut s, &five).is_empty());
    // A credit does not count and does not trigger.
    assert!(
        e.on_transaction(&mut s, &tx(6, 8, "deposit", "10"), 8 * S)
            .alerts()
            .is_empty()
    );
    // The sixth debit at 9 s: six debits in (−1 s, 9 s].
    let a = e
        .on_transaction(&mut s, &tx(7, 9, "withdrawal", "10"), 8 * S)
        .into_alerts();
    assert_eq!(ids(&a), vec![(Rule::Velocity, vec![1, 2, 3, 4, 5, 7])]);
    assert_eq!(a[0].alert_id, "velocity-42-1");
    assert_eq!((a[0].window_start_us, a[0].window_end_us), (0, 9 * S));
    assert_eq!(a[0].severity, Severity::Medium);
    // The burst goes on: suppressed by the cooldown.
    assert!(
        e.on_transaction(&mut s, &tx(8, 9, "payment", "10"), 9 * S)
            .alerts()
            .is_empty()
    );
}

#[test]
fn velocity_window_slides_out() {
    let e = FraudEngine::new(only(Rule::Velocity));
    let mut s = UserWindows::default();
    // Debits at 0,2,4,6,8 and then at 10: the one at 0 is exactly one window back, so out of (0, 10].
    let mut txs: Vec<TxFacts> = (1..=5)
        .map(|i| tx(i, 2 * (i - 1), "payment", "10"))
        .collect();
    txs.push(tx(6, 10, "transfer_out", "10"));
    assert!(feed(&e, &mut s, &txs).is_empty());
    // One more inside the window makes six in (1 s, 11 s].
    let a = e.on_transaction(&mut s, &tx(7, 11, "payment", "10"), 10 * S);
    assert_eq!(
        ids(a.alerts()),
        vec![(Rule::Velocity, vec![2, 3, 4, 5, 6, 7])]
    );
}

#[test]
fn velocity_fires_again_after_the_cooldown() {
    let e = FraudEngine::new(only(Rule::Velocity));
    let mut s = UserWindows::default();
    let burst = |base: i64, t0: i64| -> Vec<TxFacts> {
        (0..6)
            .map(|i| tx(base + i, t0 + i, "payment", "10"))
            .collect()
    };
    let mut txs = burst(1, 0);
    txs.extend(burst(100, 400)); // cooldown is 300 s after the first alert at 5 s
    let a = feed(&e, &mut s, &txs);
    assert_eq!(
        a.iter().map(|a| a.alert_id.as_str()).collect::<Vec<_>>(),
        vec!["velocity-42-1", "velocity-42-100"]
    );
}

// ---- amount spike -----------------------------------------------------------------------------------------

#[test]
fn amount_spike_needs_history_and_uses_the_median() {
    let e = FraudEngine::new(only(Rule::AmountSpike));
    let mut s = UserWindows::default();
    // Four debits of 10: below min_history (5), so a huge fifth is not judged.
    let mut txs: Vec<TxFacts> = (1..=4).map(|i| tx(i, i, "payment", "10")).collect();
    txs.push(tx(5, 5, "payment", "1000"));
    assert!(feed(&e, &mut s, &txs).is_empty());
    // History 10,10,10,10,1000: median 10. 100 is exactly 10x: not more than, no alert.
    assert!(
        e.on_transaction(&mut s, &tx(6, 6, "payment", "100"), 5 * S)
            .alerts()
            .is_empty()
    );
    // History 10,10,10,10,1000,100: median 10. 100.01 is more than 10x.
    let a = e.on_transaction(&mut s, &tx(7, 7, "payment", "100.01"), 6 * S);
    assert_eq!(ids(a.alerts()), vec![(Rule::AmountSpike, vec![7])]);
    assert_eq!(a.alerts()[0].alert_id, "amount_spike-42-7");
    assert_eq!(a.alerts()[0].severity, Severity::High);
}

#[test]
fn amount_spike_mean_is_pulled_up_by_an_outlier() {
    let mut c = only(Rule::AmountSpike);
    c.amount_spike.stat = SpikeStat::Mean;
    let e = FraudEngine::new(c);
    let mut s = UserWindows::default();
    // 10,10,10,10,1000 → mean 208: 1000 is not a spike against it, but with the median (10) it would be.
    let mut txs: Vec<TxFacts> = (1..=5).map(|i| tx(i, i, "payment", "10")).collect();
    txs[4].amount = d("1000");
    txs.push(tx(6, 6, "payment", "1000"));
    assert!(feed(&e, &mut s, &txs).is_empty());
    // Mean of 10,10,10,10,1000,1000 = 340; 3500 > 3400.
    let a = e.on_transaction(&mut s, &tx(7, 7, "payment", "3500"), 6 * S);
    assert_eq!(ids(a.alerts()), vec![(Rule::AmountSpike, vec![7])]);
}

#[test]
fn deposits_are_judged_with_the_credit_multiplier_and_do_not_enter_the_history() {
    let e = FraudEngine::new(only(Rule::AmountSpike));
    let mut s = UserWindows::default();
    let txs: Vec<TxFacts> = (1..=5).map(|i| tx(i, i, "payment", "10")).collect();
    assert!(feed(&e, &mut s, &txs).is_empty());
    // 25x of 10 = 250: a deposit of 250 is not a spike, 250.01 is.
    assert!(
        e.on_transaction(&mut s, &tx(6, 6, "deposit", "250"), 5 * S)
            .alerts()
            .is_empty()
    );
    let a = e.on_transaction(&mut s, &tx(7, 7, "deposit", "250.01"), 6 * S);
    assert_eq!(ids(a.alerts()), vec![(Rule::AmountSpike, vec![7])]);
    assert_eq!(s.amounts.len(), 5);
    // Incoming transfers and refunds are never spikes.
    assert!(
        e.on_transaction(&mut s, &tx(8, 8, "transfer_in", "9999"), 7 * S)
            .alerts()
            .is_empty()
    );
}

// ---- overdraft --------------------------------------------------------------------------------------------

#[test]
fn overdraft_fires_on_a_debit_below_zero_once_per_cooldown() {
    let e = FraudEngine::new(only(Rule::Overdraft));
    let mut s = UserWindows::default();
    let mut zero = tx(1, 1, "withdrawal", "10");
    zero.wallet_balance_after = Some(Decimal::ZERO);
    let mut credit = tx(2, 2, "deposit", "10");
    credit.wallet_balance_after = Some(d("-5"));
    let mut unknown = tx(3, 3, "payment", "10");
    unknown.wallet_balance_after = None;
    assert!(feed(&e, &mut s, &[zero, credit, unknown]).is_empty());
    let mut over = tx(4, 4, "withdrawal", "500");
    over.wallet_balance_after = Some(d("-0.01"));
    let a = e.on_transaction(&mut s, &over, 3 * S);
    assert_eq!(ids(a.alerts()), vec![(Rule::Overdraft, vec![4])]);
    assert!(
        a.alerts()[0].reason.contains("-0.01"),
        "{}",
        a.alerts()[0].reason
    );
    let mut again = tx(5, 60, "payment", "1");
    again.wallet_balance_after = Some(d("-2"));
    assert!(e.on_transaction(&mut s, &again, 4 * S).alerts().is_empty());
    let mut later = tx(6, 3_605, "payment", "1");
    later.wallet_balance_after = Some(d("-3"));
    let a = e.on_transaction(&mut s, &later, 60 * S);
    assert_eq!(ids(a.alerts()), vec![(Rule::Overdraft, vec![6])]);
}

// ---- country hopping --------------------------------------------------------------------------------------

fn in_country(id: i64, t_s: i64, country: &str) -> TxFacts {
    TxFacts {
        country: Some(country.into()),
        ..tx(id, t_s, "payment", "10")
    }
}

#[test]
fn country_hopping_needs_three_countries_in_the_window() {
    let e = FraudEngine::new(only(Rule::CountryHopping));
    let mut s = UserWindows::default();
    // DE at 0, FR at 5, BR at 10: DE is exactly one window back, so only two in (0, 10].
    let txs = [
        in_country(1, 0, "DE"),
        in_country(2, 5, "FR"),
        in_country(3, 10, "BR"),
    ];
    assert!(feed(&e, &mut s, &txs).is_empty());
    let a = e.on_transaction(&mut s, &in_country(4, 11, "NG"), 10 * S);
    assert_eq!(ids(a.alerts()), vec![(Rule::CountryHopping, vec![2, 3, 4])]);
    assert!(a.alerts()[0].reason.starts_with("3 countries (BR,FR,NG)"));
    // Cooldown: a fourth country right after does not alert again.
    assert!(
        e.on_transaction(&mut s, &in_country(5, 12, "AE"), 11 * S)
            .alerts()
            .is_empty()
    );
}

#[test]
fn foreign_country_alert_is_opt_in() {
    let mut c = only(Rule::CountryHopping);
    let e = FraudEngine::new(c.clone());
    let mut s = UserWindows::default();
    assert!(feed(&e, &mut s, &[in_country(1, 0, "TH")]).is_empty());
    c.country_hopping.alert_on_foreign_country = true;
    let e = FraudEngine::new(c);
    let mut s = UserWindows::default();
    let home = feed(&e, &mut s, &[in_country(1, 0, "DE")]);
    assert!(home.is_empty());
    let a = e.on_transaction(&mut s, &in_country(2, 1, "TH"), 0);
    assert_eq!(ids(a.alerts()), vec![(Rule::CountryHopping, vec![2])]);
    assert_eq!(a.alerts()[0].reason, "transaction in TH, home country DE");
}

// ---- rapid drain ------------------------------------------------------------------------------------------

#[test]
fn rapid_drain_sums_cash_outs_of_the_deposit_wallet_within_the_window() {
    let e = FraudEngine::new(only(Rule::RapidDrain));
    let mut s = UserWindows::default();
    let mut other_wallet = tx(3, 20, "withdrawal", "900");
    other_wallet.wallet_id = Some(8);
    let txs = [
        tx(1, 0, "deposit", "1000"),
        tx(2, 10, "withdrawal", "500"),
        other_wallet,
        tx(4, 30, "payment", "500"), // payments are not cash-outs
        tx(5, 40, "transfer_out", "299.99"),
    ];
    assert!(feed(&e, &mut s, &txs).is_empty());
    // 500 + 299.99 + 0.01 = 800 = 80%.
    let a = e.on_transaction(&mut s, &tx(6, 50, "withdrawal", "0.01"), 40 * S);
    assert_eq!(ids(a.alerts()), vec![(Rule::RapidDrain, vec![1, 2, 5, 6])]);
    assert_eq!(a.alerts()[0].alert_id, "rapid_drain-42-1");
    assert_eq!(a.alerts()[0].window_start_us, 0);
    assert!(s.deposits.is_empty(), "a drained deposit is closed");
}

#[test]
fn rapid_drain_ignores_small_or_old_deposits() {
    let e = FraudEngine::new(only(Rule::RapidDrain));
    let mut s = UserWindows::default();
    // Below min_deposit (50): never tracked.
    let small = [
        tx(1, 0, "deposit", "49.99"),
        tx(2, 1, "withdrawal", "49.99"),
    ];
    assert!(feed(&e, &mut s, &small).is_empty());
    // Drained after the 10 min window.
    let mut s = UserWindows::default();
    let old = [
        tx(1, 0, "deposit", "1000"),
        tx(2, 601, "withdrawal", "1000"),
    ];
    assert!(feed(&e, &mut s, &old).is_empty());
    // Exactly at the window edge still counts.
    let mut s = UserWindows::default();
    let edge = [
        tx(1, 0, "deposit", "1000"),
        tx(2, 600, "withdrawal", "1000"),
    ];
    assert_eq!(
        ids(&feed(&e, &mut s, &edge)),
        vec![(Rule::RapidDrain, vec![1, 2])]
    );
}

#[test]
fn rapid_drain_deposit_must_be_large_for_the_user() {
    let e = FraudEngine::new(only(Rule::RapidDrain));
    let mut s = UserWindows::default();
    // Debit median 100: a deposit must be at least 500 to be watched.
    let mut txs: Vec<TxFacts> = (1..=5).map(|i| tx(i, i, "payment", "100")).collect();
    txs.push(tx(6, 6, "deposit", "499"));
    txs.push(tx(7, 7, "withdrawal", "499"));
    txs.push(tx(8, 8, "deposit", "500"));
    txs.push(tx(9, 9, "withdrawal", "400"));
    let a = feed(&e, &mut s, &txs);
    assert_eq!(ids(&a), vec![(Rule::RapidDrain, vec![8, 9])]);
}

// ---- lateness, retention, persistence, determinism --------------------------------------------------------

#[test]
fn too_late_transactions_change_nothing() {
    let e = FraudEngine::new(base());
    let mut s = UserWindows::default();
    feed(&e, &mut s, &[tx(1, 100, "payment", "10")]);
    let before = s.clone();
    // Lateness is 5 s: at watermark 100 s, 95 s is still on time, 94.999999 s is too late.
    let mut late = tx(2, 0, "payment", "10");
    late.event_time_us = 95 * S - 1;
    assert_eq!(e.on_transaction(&mut s, &late, 100 * S), Outcome::TooLate);
    assert_eq!(s, before);
    late.event_time_us = 95 * S;
    assert_eq!(
        e.on_transaction(&mut s, &late, 100 * S),
        Outcome::Evaluated(vec![])
    );
    // A late but accepted transaction is placed in event-time order.
    assert_eq!(
        s.recent.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![2, 1]
    );
}

#[test]
fn late_transaction_within_lateness_completes_a_window() {
    let e = FraudEngine::new(only(Rule::Velocity));
    let mut s = UserWindows::default();
    // Debits at 10..=14 s, then a deposit at 18 s moves the watermark to 18 s (cutoff 13 s).
    let mut txs: Vec<TxFacts> = (1..=5).map(|i| tx(i, 9 + i, "payment", "10")).collect();
    txs.push(tx(6, 18, "deposit", "10"));
    assert!(feed(&e, &mut s, &txs).is_empty());
    // A debit stamped 12.999999 s is too late; one stamped 14 s is judged in (4 s, 14 s]: six debits.
    let mut late = tx(7, 0, "payment", "10");
    late.event_time_us = 13 * S - 1;
    assert_eq!(e.on_transaction(&mut s, &late, 18 * S), Outcome::TooLate);
    let a = e.on_transaction(&mut s, &tx(8, 14, "payment", "10"), 18 * S);
    assert_eq!(
        ids(a.alerts()),
        vec![(Rule::Velocity, vec![1, 2, 3, 4, 5, 8])]
    );
    assert_eq!(a.alerts()[0].event_time_us, 14 * S);
}

#[test]
fn expire_keeps_what_rules_need_and_empties_idle_state() {
    let e = FraudEngine::new(base());
    let mut s = UserWindows::default();
    let mut txs: Vec<TxFacts> = (1..=5).map(|i| tx(i, i, "payment", "100")).collect();
    txs.push(tx(6, 10, "deposit", "1000"));
    feed(&e, &mut s, &txs);
    assert_eq!(
        (s.recent.len(), s.amounts.len(), s.deposits.len()),
        (6, 5, 1)
    );
    // Watermark 16 s: horizon 11 s, windows reach back to 1 s (exclusive): tx 1 at 1 s goes.
    assert!(!e.expire(&mut s, 16 * S));
    assert_eq!(
        s.recent.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![2, 3, 4, 5, 6]
    );
    // Horizon 10 min 10 s + 1 µs: the deposit's drain window (10 s + 600 s) is over; windows empty.
    assert!(!e.expire(&mut s, 615 * S + 1));
    assert!(s.recent.is_empty() && s.deposits.is_empty());
    assert_eq!(s.amounts.len(), 5, "the amount history lives for its TTL");
    // After the 30-day TTL everything is gone.
    let month = 30 * 24 * 3600 * S;
    assert!(!e.expire(&mut s, month + 6 * S + 1));
    assert_eq!(s.amounts.len(), 4);
    assert!(e.expire(&mut s, month + 10 * S + 1));
    assert_eq!(s, UserWindows::default());
}

#[test]
fn cooldowns_expire_with_the_watermark() {
    let e = FraudEngine::new(only(Rule::Overdraft));
    let mut s = UserWindows::default();
    let mut over = tx(1, 0, "withdrawal", "10");
    over.wallet_balance_after = Some(d("-1"));
    assert_eq!(feed(&e, &mut s, &[over]).len(), 1);
    // Nothing but the cooldown (until 3600 s) is left once the windows are past.
    assert!(!e.expire(&mut s, 3_605 * S - 1));
    assert!(e.expire(&mut s, 3_605 * S));
}

#[test]
fn bincode_round_trip_of_state() {
    let e = FraudEngine::new(base());
    let mut s = UserWindows::default();
    let mut txs: Vec<TxFacts> = (1..=6).map(|i| tx(i, i, "payment", "12.34")).collect();
    txs.push(tx(7, 7, "deposit", "5000"));
    let mut over = tx(8, 8, "withdrawal", "1");
    over.wallet_balance_after = Some(d("-1"));
    txs.push(over);
    assert!(!feed(&e, &mut s, &txs).is_empty());
    assert!(!s.recent.is_empty() && !s.amounts.is_empty() && !s.deposits.is_empty());
    let cfg = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&s, cfg).expect("encode");
    let (back, read): (UserWindows, usize) =
        bincode::serde::decode_from_slice(&bytes, cfg).expect("decode");
    assert_eq!(read, bytes.len());
    assert_eq!(back, s);
}

/// A mixed sequence where every rule fires; the same input must give byte-identical alerts.
fn everything() -> Vec<TxFacts> {
    let mut txs: Vec<TxFacts> = (1..=5).map(|i| tx(i, i, "payment", "50")).collect();
    txs.push(tx(6, 6, "payment", "600")); // velocity (6 debits) and spike (> 10 x 50)
    txs.push(in_country(7, 7, "FR"));
    txs.push(in_country(8, 8, "BR")); // hopping: DE, FR, BR
    txs.push(tx(9, 20, "deposit", "500")); // watched (>= 5 x 50), no spike (<= 25 x 50)
    let mut drain = tx(10, 30, "withdrawal", "450");
    drain.wallet_balance_after = Some(d("-100")); // drain (90%) and overdraft
    txs.push(drain);
    txs
}

#[test]
fn all_rules_fire_in_rule_order_and_deterministically() {
    let e = FraudEngine::new(base());
    let run = || {
        let mut s = UserWindows::default();
        feed(&e, &mut s, &everything())
    };
    let a = run();
    assert_eq!(
        a.iter().map(|a| a.alert_id.as_str()).collect::<Vec<_>>(),
        vec![
            "velocity-42-1",
            "amount_spike-42-6",
            "country_hopping-42-1",
            "overdraft-42-10",
            "rapid_drain-42-9",
        ]
    );
    assert_eq!(a, run());
}

// ---- config and table -------------------------------------------------------------------------------------

#[test]
fn config_parses_with_defaults_and_rejects_unknown_keys() {
    let c: FraudConfig = toml::from_str(
        r#"
        allowed_lateness = "2s"
        [velocity]
        window = "1m"
        max_debits = 9
        severity = "high"
        [amount_spike]
        stat = "mean"
        [rapid_drain]
        min_deposit = "100.00"
        "#,
    )
    .expect("parse");
    assert_eq!(c.allowed_lateness, Duration::from_secs(2));
    assert_eq!(c.velocity.window, Duration::from_secs(60));
    assert_eq!(c.velocity.max_debits, 9);
    assert_eq!(c.velocity.severity, Severity::High);
    assert_eq!(c.amount_spike.stat, SpikeStat::Mean);
    assert_eq!(c.rapid_drain.min_deposit, d("100.00"));
    assert_eq!(c.overdraft, OverdraftConfig::default());
    assert_eq!(c.validate(), Ok(()));
    assert!(toml::from_str::<FraudConfig>("[velocity]\nwindw = \"1s\"").is_err());
    assert_eq!(FraudConfig::default().validate(), Ok(()));
}

#[test]
fn invalid_config_names_the_key() {
    let mut c = FraudConfig::default();
    c.velocity.window = Duration::ZERO;
    let key = |c: &FraudConfig| match c.validate() {
        Err(FraudConfigError::Invalid { key, .. }) => key,
        Ok(()) => "ok",
    };
    assert_eq!(key(&c), "velocity.window");
    let mut c = FraudConfig::default();
    c.amount_spike.min_history = 21;
    assert_eq!(key(&c), "amount_spike.min_history");
    let mut c = FraudConfig::default();
    c.amount_spike.multiplier = f64::NAN;
    assert_eq!(key(&c), "amount_spike.multiplier");
    let mut c = FraudConfig::default();
    c.rapid_drain.min_share_pct = 101.0;
    assert_eq!(key(&c), "rapid_drain.min_share_pct");
    let mut c = FraudConfig::default();
    c.country_hopping.min_countries = 1;
    assert_eq!(key(&c), "country_hopping.min_countries");
}

#[test]
fn alert_row_matches_the_table() {
    let def = alerts_table_def();
    assert_eq!(def.validate().map_err(|e| e.to_string()), Ok(()));
    let a = Alert {
        alert_id: "velocity-42-1".into(),
        rule: Rule::Velocity,
        severity: Severity::Medium,
        user_id: 42,
        wallet_id: None,
        transaction_ids: vec![1, 2, 3],
        window_start_us: 10,
        window_end_us: 20,
        event_time_us: 20,
        reason: "r".into(),
    };
    let row = a.to_row(3);
    assert_eq!(row.len(), def.columns.len());
    for (v, c) in row.iter().zip(&def.columns) {
        assert!(v.fits(c.ty) && (c.nullable || !v.is_null()), "{}", c.name);
    }
    assert_eq!(row[5], Value::Text("1,2,3".into()));
    assert_eq!(row[4], Value::Null);
    assert_eq!(row[10], Value::Int32(3));
    assert_eq!(
        Rule::ALL.map(Rule::as_str),
        [
            "velocity",
            "amount_spike",
            "overdraft",
            "country_hopping",
            "rapid_drain"
        ]
    );
}
