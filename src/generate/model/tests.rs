//! Replays the model's row changes into an in-memory copy of the three tables, checking that every action is a
//! valid set of changes and that the balance invariant of [`crate::generate::rows`] holds after every action.

use super::*;
use crate::generate::rows::{Op, Table, effect};
use std::collections::{BTreeMap, HashSet};

fn config(seed: u64) -> ModelConfig {
    ModelConfig {
        seed,
        fraud_rate: 0.05,
        bad_row_rate: 0.05,
        evolve_after: Some(5_000),
        ids: IdBase::default(),
    }
}

/// The in-memory tables, plus what the checks need to remember.
#[derive(Default)]
struct Db {
    users: BTreeMap<UserId, UserRow>,
    wallets: BTreeMap<WalletId, WalletRow>,
    txs: BTreeMap<TransactionId, TransactionRow>,
    /// Sum of counted effects per wallet, maintained incrementally.
    effects: HashMap<WalletId, Decimal>,
    last_ids: IdBase,
    evolved: bool,
    overdrafted: HashSet<WalletId>,
    /// Completed fraud episodes.
    episodes: Vec<FraudEpisode>,
    bad_rows: Vec<BadRow>,
}

impl Db {
    fn new(ids: IdBase) -> Self {
        Db {
            last_ids: ids,
            ..Db::default()
        }
    }

    /// Applies one action, panicking with the action on any invalid change.
    fn apply(&mut self, a: &Action) {
        let ctx = || format!("action {a:?}");
        match a.kind {
            ActionKind::EvolveSchema => {
                assert!(a.changes.is_empty(), "{}", ctx());
                assert!(!self.evolved, "evolved twice: {}", ctx());
                self.evolved = true;
            }
            ActionKind::Signup => {
                assert!(
                    matches!(a.changes.first(), Some(RowChange::InsertUser(_))),
                    "{}",
                    ctx()
                );
                assert!(
                    a.changes[1..]
                        .iter()
                        .all(|c| matches!(c, RowChange::InsertWallet(_)))
                        && a.changes.len() >= 2,
                    "{}",
                    ctx()
                );
            }
            _ => assert!(!a.changes.is_empty(), "{}", ctx()),
        }
        let mut touched: HashSet<WalletId> = HashSet::new();
        for c in &a.changes {
            match c {
                RowChange::InsertUser(u) => {
                    assert!(
                        u.id.0 == self.last_ids.users + 1,
                        "user ids must count up: {}",
                        ctx()
                    );
                    self.last_ids.users = u.id.0;
                    self.users.insert(u.id, u.clone());
                }
                RowChange::UpdateUser { id, profile } => {
                    let u = self
                        .users
                        .get_mut(id)
                        .unwrap_or_else(|| panic!("unknown user: {}", ctx()));
                    u.email = profile.email.clone();
                    u.kyc_status = profile.kyc_status;
                    u.risk_tier = profile.risk_tier;
                }
                RowChange::DeleteUser(id) => {
                    assert!(self.users.remove(id).is_some(), "unknown user: {}", ctx());
                    assert!(
                        self.wallets.values().all(|w| w.user_id != *id),
                        "user keeps wallets: {}",
                        ctx()
                    );
                    assert!(
                        self.txs.values().all(|t| t.user_id != Some(*id)),
                        "user has txs: {}",
                        ctx()
                    );
                }
                RowChange::InsertWallet(w) => {
                    assert!(
                        w.id.0 == self.last_ids.wallets + 1,
                        "wallet ids must count up: {}",
                        ctx()
                    );
                    self.last_ids.wallets = w.id.0;
                    assert!(
                        self.users.contains_key(&w.user_id),
                        "wallet of unknown user: {}",
                        ctx()
                    );
                    assert_eq!(w.balance, Decimal::ZERO, "{}", ctx());
                    assert_eq!(w.status, WalletStatus::Active, "{}", ctx());
                    self.wallets.insert(w.id, w.clone());
                    touched.insert(w.id);
                }
                RowChange::SetWalletBalance { id, balance } => {
                    let w = self
                        .wallets
                        .get_mut(id)
                        .unwrap_or_else(|| panic!("unknown wallet: {}", ctx()));
                    w.balance = *balance;
                    touched.insert(*id);
                }
                RowChange::SetWalletStatus { id, status } => {
                    let w = self
                        .wallets
                        .get_mut(id)
                        .unwrap_or_else(|| panic!("unknown wallet: {}", ctx()));
                    assert_ne!(w.status, *status, "no-op status change: {}", ctx());
                    w.status = *status;
                }
                RowChange::DeleteWallet(id) => {
                    assert!(
                        self.wallets.remove(id).is_some(),
                        "unknown wallet: {}",
                        ctx()
                    );
                    assert!(
                        self.txs
                            .values()
                            .all(|t| t.wallet_id != *id && t.counterparty_wallet_id != Some(*id)),
                        "deleted wallet has txs: {}",
                        ctx()
                    );
                }
                RowChange::InsertTransaction(t) => {
                    assert!(
                        t.id.0 == self.last_ids.transactions + 1,
                        "tx ids must count up: {}",
                        ctx()
                    );
                    self.last_ids.transactions = t.id.0;
                    let w = self
                        .wallets
                        .get(&t.wallet_id)
                        .unwrap_or_else(|| panic!("unknown wallet: {}", ctx()));
                    assert_eq!(
                        w.status,
                        WalletStatus::Active,
                        "tx on a frozen wallet: {}",
                        ctx()
                    );
                    let bad = a
                        .bad_row
                        .as_ref()
                        .filter(|b| b.transaction_id == t.id)
                        .map(|b| b.defect);
                    match t.user_id {
                        Some(u) => assert_eq!(u, w.user_id, "tx user is not the owner: {}", ctx()),
                        None => assert_eq!(bad, Some(Defect::NullUserId), "{}", ctx()),
                    }
                    if t.currency != w.currency {
                        assert_eq!(t.currency, UNKNOWN_CURRENCY, "{}", ctx());
                        assert_eq!(bad, Some(Defect::UnknownCurrency), "{}", ctx());
                    }
                    if t.amount <= Decimal::ZERO {
                        assert_eq!(bad, Some(Defect::NonPositiveAmount), "{}", ctx());
                    }
                    assert!(t.fee >= Decimal::ZERO, "{}", ctx());
                    assert_eq!(
                        t.device_id.is_some(),
                        self.evolved,
                        "device_id before/after evolution: {}",
                        ctx()
                    );
                    let expected_status = match t.kind {
                        TxKind::Deposit | TxKind::Withdrawal | TxKind::Payment => TxStatus::Pending,
                        _ => TxStatus::Settled,
                    };
                    assert_eq!(t.status, expected_status, "{}", ctx());
                    match t.kind {
                        TxKind::TransferIn | TxKind::TransferOut => {
                            let other = t.counterparty_wallet_id.and_then(|c| self.wallets.get(&c));
                            let other = other.unwrap_or_else(|| {
                                panic!("transfer without counterparty: {}", ctx())
                            });
                            assert_eq!(other.currency, w.currency, "{}", ctx());
                            assert_ne!(other.user_id, w.user_id, "{}", ctx());
                        }
                        _ => assert!(t.counterparty_wallet_id.is_none(), "{}", ctx()),
                    }
                    assert_eq!(
                        t.merchant.is_some(),
                        t.kind != TxKind::Deposit
                            && t.kind != TxKind::Withdrawal
                            && t.kind != TxKind::TransferIn
                            && t.kind != TxKind::TransferOut,
                        "{}",
                        ctx()
                    );
                    *self.effects.entry(t.wallet_id).or_default() += t.balance_effect();
                    touched.insert(t.wallet_id);
                    self.txs.insert(t.id, t.clone());
                }
                RowChange::SetTransactionStatus { id, status } => {
                    let t = self
                        .txs
                        .get_mut(id)
                        .unwrap_or_else(|| panic!("unknown tx: {}", ctx()));
                    assert_eq!(
                        t.status,
                        TxStatus::Pending,
                        "only pending txs settle: {}",
                        ctx()
                    );
                    assert_ne!(*status, TxStatus::Pending, "{}", ctx());
                    t.status = *status;
                    if !status.counts_toward_balance() {
                        *self.effects.entry(t.wallet_id).or_default() -= t.balance_effect();
                    }
                    touched.insert(t.wallet_id);
                }
            }
        }
        for w in touched {
            if let Some(row) = self.wallets.get(&w) {
                let expected = self.effects.get(&w).copied().unwrap_or_default();
                assert_eq!(
                    row.balance,
                    expected,
                    "wallet {w} balance != counted effects: {}",
                    ctx()
                );
            }
        }
        if let Some(done) = a.fraud.as_ref().and_then(|step| step.completed.as_ref()) {
            if done.pattern == FraudPattern::Overdraft {
                assert!(
                    self.wallets[&done.wallet_id].balance < Decimal::ZERO,
                    "{}",
                    ctx()
                );
                self.overdrafted.insert(done.wallet_id);
            }
            self.episodes.push(done.clone());
        }
        if let Some(bad) = &a.bad_row {
            assert!(self.txs.contains_key(&bad.transaction_id), "{}", ctx());
            self.bad_rows.push(bad.clone());
        }
        for (id, w) in &self.wallets {
            assert!(
                w.balance >= Decimal::ZERO || self.overdrafted.contains(id),
                "unexpected negative: {}",
                ctx()
            );
        }
    }

    /// Recomputes every balance from scratch.
    fn check_all_balances(&self) {
        let mut sums: BTreeMap<WalletId, Decimal> = BTreeMap::new();
        for t in self
            .txs
            .values()
            .filter(|t| t.status.counts_toward_balance())
        {
            *sums.entry(t.wallet_id).or_default() += effect(t.kind, t.amount, t.fee);
        }
        for (id, w) in &self.wallets {
            assert_eq!(
                w.balance,
                sums.get(id).copied().unwrap_or_default(),
                "wallet {id}"
            );
        }
    }
}

fn run(cfg: ModelConfig, n: usize) -> Vec<Action> {
    Model::new(cfg).take(n).collect()
}

#[test]
fn same_seed_same_actions_different_seed_different_actions() {
    let a = run(config(7), 3_000);
    let b = run(config(7), 3_000);
    let c = run(config(8), 3_000);
    assert_eq!(a, b);
    let differing = a.iter().zip(&c).filter(|(x, y)| x != y).count();
    assert!(
        differing > 2_500,
        "only {differing} of 3000 actions differ between seeds"
    );
}

#[test]
fn replayed_changes_are_valid_and_balances_match_transactions() {
    let n = 10_000;
    let mut db = Db::new(IdBase::default());
    let mut model = Model::new(config(42));
    for _ in 0..n {
        let a = model.next_action();
        db.apply(&a);
        for w in db.wallets.keys() {
            // The model's own view agrees with the replayed rows.
            assert_eq!(
                model.balance(*w),
                Some(db.wallets[w].balance),
                "wallet {w} after {}",
                a.seq
            );
        }
    }
    db.check_all_balances();
    assert_eq!(model.ids(), db.last_ids);
    // The mix is realistic: every action kind happens, and enough activity survives to be interesting.
    let actions = run(config(42), n);
    let kinds: HashSet<ActionKind> = actions.iter().map(|a| a.kind).collect();
    for k in ActionKind::ALL {
        assert!(kinds.contains(&k), "no {k} in {n} actions");
    }
    assert!(db.users.len() > 200, "{} users", db.users.len());
    assert!(db.txs.len() > 5_000, "{} transactions", db.txs.len());
    let statuses: HashSet<TxStatus> = db.txs.values().map(|t| t.status).collect();
    assert_eq!(statuses.len(), 4, "{statuses:?}");
}

#[test]
fn fraud_episodes_have_their_pattern_shape() {
    let mut db = Db::new(IdBase::default());
    for a in Model::new(config(3)).take(10_000) {
        db.apply(&a);
    }
    let mut per_pattern: BTreeMap<FraudPattern, usize> = BTreeMap::new();
    for e in &db.episodes {
        *per_pattern.entry(e.pattern).or_default() += 1;
        let txs: Vec<&TransactionRow> = e.transaction_ids.iter().map(|id| &db.txs[id]).collect();
        assert!(txs.iter().all(|t| t.wallet_id == e.wallet_id), "{e:?}");
        let home = db.users[&e.user_id].country;
        match e.pattern {
            FraudPattern::VelocityBurst => {
                assert!((8..=15).contains(&txs.len()), "{e:?}");
                assert!(txs.iter().all(|t| t.kind == TxKind::Payment), "{e:?}");
            }
            FraudPattern::CountryHopping => {
                assert!((3..=5).contains(&txs.len()), "{e:?}");
                let countries: HashSet<_> = txs.iter().map(|t| t.country).collect();
                assert_eq!(countries.len(), txs.len(), "{e:?}");
                assert!(!countries.contains(&Some(home)), "{e:?}");
            }
            FraudPattern::RapidDrain => {
                assert_eq!(txs.len(), 2, "{e:?}");
                assert_eq!(
                    (txs[0].kind, txs[1].kind),
                    (TxKind::Deposit, TxKind::Withdrawal),
                    "{e:?}"
                );
                let share = txs[1].amount / txs[0].amount;
                assert!(
                    share >= Decimal::new(84, 2) && share <= Decimal::new(99, 2),
                    "{e:?}"
                );
            }
            FraudPattern::AmountSpike | FraudPattern::Overdraft => {
                assert_eq!(txs.len(), 1, "{e:?}")
            }
        }
    }
    for p in FraudPattern::ALL {
        assert!(
            per_pattern.get(&p).copied().unwrap_or(0) >= 10,
            "{per_pattern:?}"
        );
    }
}

#[test]
fn fraud_and_bad_row_rates_are_honoured() {
    for (fraud_rate, bad_row_rate) in [(0.05, 0.02), (0.01, 0.1)] {
        let cfg = ModelConfig {
            fraud_rate,
            bad_row_rate,
            ..config(11)
        };
        let mut seen: HashSet<u64> = HashSet::new();
        let (mut decisions, mut started, mut eligible, mut bad) = (0u64, 0u64, 0u64, 0u64);
        let mut defects: BTreeMap<Defect, u64> = BTreeMap::new();
        for a in run(cfg, 10_000) {
            match &a.fraud {
                Some(step) if !seen.insert(step.episode) => {} // a continuation, not a decision
                Some(_) => {
                    decisions += 1;
                    started += 1;
                }
                None if a.kind != ActionKind::EvolveSchema => decisions += 1,
                None => {}
            }
            if a.fraud.is_none()
                && matches!(
                    a.kind,
                    ActionKind::Deposit | ActionKind::Withdrawal | ActionKind::Payment
                )
            {
                eligible += 1;
                if let Some(b) = &a.bad_row {
                    bad += 1;
                    *defects.entry(b.defect).or_default() += 1;
                }
            }
            assert!(
                a.fraud.is_none() || a.bad_row.is_none(),
                "fraud rows are never malformed"
            );
        }
        let fraud_measured = started as f64 / decisions as f64;
        let bad_measured = bad as f64 / eligible as f64;
        assert!(
            (fraud_measured - fraud_rate).abs() <= fraud_rate * 0.25,
            "fraud {fraud_measured} vs {fraud_rate}"
        );
        assert!(
            (bad_measured - bad_row_rate).abs() <= bad_row_rate * 0.25,
            "bad {bad_measured} vs {bad_row_rate}"
        );
        assert_eq!(defects.len(), 3, "{defects:?}");
    }
}

#[test]
fn no_fraud_and_no_bad_rows_at_rate_zero() {
    let cfg = ModelConfig {
        fraud_rate: 0.0,
        bad_row_rate: 0.0,
        ..config(5)
    };
    let mut db = Db::new(IdBase::default());
    for a in Model::new(cfg).take(5_000) {
        assert!(a.fraud.is_none() && a.bad_row.is_none(), "{a:?}");
        db.apply(&a);
    }
    assert!(db.wallets.values().all(|w| w.balance >= Decimal::ZERO));
}

#[test]
fn schema_evolves_once_after_the_configured_number_of_changes() {
    let cfg = ModelConfig {
        evolve_after: Some(1_000),
        ..config(9)
    };
    let actions = run(cfg, 3_000);
    let mut before = 0u64;
    let mut evolve_at = None;
    for a in &actions {
        if a.kind == ActionKind::EvolveSchema {
            assert!(evolve_at.is_none(), "evolved twice");
            evolve_at = Some(a.seq);
            assert!(before >= 1_000, "evolved after only {before} changes");
        } else if evolve_at.is_none() {
            before += a.changes.len() as u64;
        }
    }
    let at = evolve_at.expect("no evolution in 3000 actions");
    // It happens at the first action boundary at or past the threshold.
    let before_last = before - actions[at as usize - 1].changes.len() as u64;
    assert!(before_last < 1_000);
    // Replay checks device_id is absent before and present after.
    let mut db = Db::new(IdBase::default());
    for a in &actions {
        db.apply(a);
    }
    let with_device = db.txs.values().filter(|t| t.device_id.is_some()).count();
    assert!(with_device > 0 && with_device < db.txs.len());
}

#[test]
fn ids_continue_from_the_base() {
    let base = IdBase {
        users: 100,
        wallets: 250,
        transactions: 9_000,
    };
    let cfg = ModelConfig {
        ids: base,
        ..config(1)
    };
    let mut db = Db::new(base);
    let actions = run(cfg, 2_000);
    for a in &actions {
        db.apply(a);
    }
    assert_eq!(db.users.keys().next(), Some(&UserId(101)));
    assert_eq!(db.txs.keys().next(), Some(&TransactionId(9_001)));
    let counts = actions
        .iter()
        .flat_map(|a| &a.changes)
        .filter(|c| c.table() == Table::Wallets && c.op() == Op::Insert);
    assert_eq!(db.last_ids.wallets, 250 + counts.count() as i64);
}
