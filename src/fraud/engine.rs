//! The rules. See the module docs of [`super`] for the contract; each rule's doc says what it looks at.

use super::config::{FraudConfig, SpikeStat};
use super::state::{Kind, OpenDeposit, PastAmount, RecentTx, UserWindows};
use super::{Alert, Outcome, Rule, Severity, TxFacts};
use rust_decimal::Decimal;
use std::collections::BTreeSet;
use std::time::Duration;

/// Hard cap on remembered window transactions per user. The windows are seconds long, so only a flood (a bot,
/// a replay of a bulk import) gets near it; the oldest are dropped first, which can only make the windows
/// count fewer transactions.
const MAX_RECENT: usize = 4_096;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn dec(v: f64) -> Decimal {
    Decimal::try_from(v).unwrap_or(Decimal::MAX)
}

/// The rules, with the configuration converted once into the units they compare in.
#[derive(Debug, Clone)]
pub struct FraudEngine {
    cfg: FraudConfig,
    lateness_us: i64,
    velocity_window_us: i64,
    velocity_cooldown_us: i64,
    hop_window_us: i64,
    hop_cooldown_us: i64,
    overdraft_cooldown_us: i64,
    history_ttl_us: i64,
    drain_within_us: i64,
    /// How far back (before `watermark − lateness`) sliding-window transactions are still needed.
    recent_keep_us: i64,
    spike_multiplier: Decimal,
    spike_credit_multiplier: Decimal,
    drain_min_multiple: Decimal,
    /// `min_share_pct / 100`.
    drain_share: Decimal,
}

impl FraudEngine {
    /// Builds the engine. The configuration is expected to have passed [`FraudConfig::validate`]; an invalid
    /// one does not panic but may make rules never or always fire.
    pub fn new(cfg: FraudConfig) -> Self {
        let velocity_window_us = micros(cfg.velocity.window);
        let hop_window_us = micros(cfg.country_hopping.window);
        FraudEngine {
            lateness_us: micros(cfg.allowed_lateness),
            velocity_window_us,
            velocity_cooldown_us: micros(cfg.velocity.cooldown),
            hop_window_us,
            hop_cooldown_us: micros(cfg.country_hopping.cooldown),
            overdraft_cooldown_us: micros(cfg.overdraft.cooldown),
            history_ttl_us: micros(cfg.amount_spike.history_ttl),
            drain_within_us: micros(cfg.rapid_drain.within),
            recent_keep_us: velocity_window_us.max(hop_window_us),
            spike_multiplier: dec(cfg.amount_spike.multiplier),
            spike_credit_multiplier: dec(cfg.amount_spike.credit_multiplier),
            drain_min_multiple: dec(cfg.rapid_drain.min_deposit_multiple),
            drain_share: dec(cfg.rapid_drain.min_share_pct / 100.0),
            cfg,
        }
    }

    pub fn config(&self) -> &FraudConfig {
        &self.cfg
    }

    /// Evaluates one new transaction. `watermark_us` is the partition watermark before this transaction.
    pub fn on_transaction(
        &self,
        state: &mut UserWindows,
        tx: &TxFacts,
        watermark_us: i64,
    ) -> Outcome {
        if tx.event_time_us < watermark_us.saturating_sub(self.lateness_us) {
            return Outcome::TooLate;
        }
        self.expire(state, watermark_us);
        // A redelivered transaction still in the window must not count twice.
        if state.recent.iter().any(|r| r.id == tx.transaction_id) {
            return Outcome::Evaluated(Vec::new());
        }
        let kind = Kind::parse(&tx.kind);
        let t = tx.event_time_us;
        let entry = RecentTx {
            id: tx.transaction_id,
            lsn: tx.lsn,
            event_time_us: t,
            kind,
            country: tx.country.clone(),
        };
        let at = state.recent.partition_point(|r| r.key() < entry.key());
        state.recent.insert(at, entry);
        if state.recent.len() > MAX_RECENT {
            let excess = state.recent.len() - MAX_RECENT;
            state.recent.drain(..excess);
        }

        let mut alerts = Vec::new();
        // The baseline is the history before this transaction.
        let baseline = self.baseline(state);
        alerts.extend(self.velocity(state, tx, kind));
        alerts.extend(self.amount_spike(tx, kind, baseline));
        alerts.extend(self.overdraft(state, tx, kind));
        alerts.extend(self.country_hopping(state, tx));
        alerts.extend(self.rapid_drain(state, tx, kind, baseline));
        // The history serves both the spike rule and rapid drain's "large for this user".
        let s = &self.cfg.amount_spike;
        let tracked = kind.is_debit() || (s.history_includes_deposits && kind == Kind::Deposit);
        if (s.enabled || self.cfg.rapid_drain.enabled) && tracked && tx.amount > Decimal::ZERO {
            state.amounts.push_back(PastAmount {
                event_time_us: t,
                amount: tx.amount,
            });
            while state.amounts.len() > s.history_len {
                state.amounts.pop_front();
            }
        }
        Outcome::Evaluated(alerts)
    }

    /// Drops everything no rule can need at `watermark_us`: every later transaction that is not too late has
    /// an event time of at least `watermark_us − allowed_lateness`. Returns `true` when the state is empty.
    pub fn expire(&self, state: &mut UserWindows, watermark_us: i64) -> bool {
        let horizon = watermark_us.saturating_sub(self.lateness_us);
        // A window is (t − W, t] with t ≥ horizon, so anything at or before horizon − W is out of every window.
        let keep_from = horizon.saturating_sub(self.recent_keep_us);
        let stale = state
            .recent
            .partition_point(|r| r.event_time_us <= keep_from);
        state.recent.drain(..stale);
        let ttl_from = horizon.saturating_sub(self.history_ttl_us);
        while state
            .amounts
            .front()
            .is_some_and(|a| a.event_time_us < ttl_from)
        {
            state.amounts.pop_front();
        }
        state
            .deposits
            .retain(|d| d.event_time_us.saturating_add(self.drain_within_us) >= horizon);
        for q in &mut state.quiet_until_us {
            if q.is_some_and(|until| until <= horizon) {
                *q = None;
            }
        }
        state.is_empty()
    }

    /// The rolling statistic of the user's debit amounts, once `min_history` are known.
    fn baseline(&self, state: &UserWindows) -> Option<Decimal> {
        let s = &self.cfg.amount_spike;
        if state.amounts.len() < s.min_history {
            return None;
        }
        let n = Decimal::from(state.amounts.len());
        match s.stat {
            SpikeStat::Mean => {
                let sum = state
                    .amounts
                    .iter()
                    .try_fold(Decimal::ZERO, |acc, a| acc.checked_add(a.amount))?;
                sum.checked_div(n)
            }
            SpikeStat::Median => {
                let mut v: Vec<Decimal> = state.amounts.iter().map(|a| a.amount).collect();
                v.sort();
                let mid = v.len() / 2;
                if v.len() % 2 == 1 {
                    v.get(mid).copied()
                } else {
                    let lo = *v.get(mid.checked_sub(1)?)?;
                    let hi = *v.get(mid)?;
                    lo.checked_add(hi)?.checked_div(Decimal::TWO)
                }
            }
        }
    }

    fn quiet(state: &UserWindows, rule: Rule, t: i64) -> bool {
        state.quiet_until_us[rule.index()].is_some_and(|until| t < until)
    }

    fn silence(state: &mut UserWindows, rule: Rule, t: i64, cooldown_us: i64) {
        if cooldown_us > 0 {
            state.quiet_until_us[rule.index()] = Some(t.saturating_add(cooldown_us));
        }
    }

    fn alert(
        rule: Rule,
        severity: Severity,
        tx: &TxFacts,
        transaction_ids: Vec<i64>,
        window_start_us: i64,
        reason: String,
    ) -> Alert {
        let first = transaction_ids
            .first()
            .copied()
            .unwrap_or(tx.transaction_id);
        Alert {
            alert_id: format!("{}-{}-{}", rule.as_str(), tx.user_id, first),
            rule,
            severity,
            user_id: tx.user_id,
            wallet_id: tx.wallet_id,
            transaction_ids,
            window_start_us,
            window_end_us: tx.event_time_us,
            event_time_us: tx.event_time_us,
            reason,
        }
    }

    /// More than `max_debits` debits in `(t − window, t]`.
    fn velocity(&self, state: &mut UserWindows, tx: &TxFacts, kind: Kind) -> Option<Alert> {
        let c = &self.cfg.velocity;
        let t = tx.event_time_us;
        if !c.enabled || !kind.is_debit() || Self::quiet(state, Rule::Velocity, t) {
            return None;
        }
        let from = t.saturating_sub(self.velocity_window_us);
        let debits: Vec<&RecentTx> = state
            .recent
            .iter()
            .filter(|r| r.event_time_us > from && r.event_time_us <= t && r.kind.is_debit())
            .collect();
        if debits.len() <= c.max_debits as usize {
            return None;
        }
        let start = debits.first().map_or(t, |r| r.event_time_us);
        let ids = debits.iter().map(|r| r.id).collect();
        let reason = format!(
            "{} debits within {:?} (more than {}), spanning {} ms",
            debits.len(),
            c.window,
            c.max_debits,
            (t - start) / 1_000
        );
        Self::silence(state, Rule::Velocity, t, self.velocity_cooldown_us);
        Some(Self::alert(
            Rule::Velocity,
            c.severity,
            tx,
            ids,
            start,
            reason,
        ))
    }

    /// A debit above `multiplier ×` baseline, or a deposit above `credit_multiplier ×` baseline.
    fn amount_spike(&self, tx: &TxFacts, kind: Kind, baseline: Option<Decimal>) -> Option<Alert> {
        let c = &self.cfg.amount_spike;
        if !c.enabled || tx.amount <= Decimal::ZERO {
            return None;
        }
        let t = tx.event_time_us;
        let (multiplier, what) = match kind {
            k if k.is_debit() => (self.spike_multiplier, c.multiplier),
            Kind::Deposit => (self.spike_credit_multiplier, c.credit_multiplier),
            _ => return None,
        };
        let baseline = baseline.filter(|b| *b > Decimal::ZERO)?;
        let threshold = baseline.checked_mul(multiplier)?;
        if tx.amount <= threshold {
            return None;
        }
        let stat = match c.stat {
            SpikeStat::Mean => "mean",
            SpikeStat::Median => "median",
        };
        let reason = format!(
            "{} of {} {} is more than {what}x the {stat} {} of the last {} debits",
            tx.kind,
            tx.amount,
            tx.currency,
            baseline.round_dp(2),
            c.history_len
        );
        Some(Self::alert(
            Rule::AmountSpike,
            c.severity,
            tx,
            vec![tx.transaction_id],
            t,
            reason,
        ))
    }

    /// A debit leaving the wallet below zero.
    fn overdraft(&self, state: &mut UserWindows, tx: &TxFacts, kind: Kind) -> Option<Alert> {
        let c = &self.cfg.overdraft;
        let t = tx.event_time_us;
        let balance = tx.wallet_balance_after?;
        if !c.enabled
            || !kind.is_debit()
            || balance >= Decimal::ZERO
            || Self::quiet(state, Rule::Overdraft, t)
        {
            return None;
        }
        let reason = format!(
            "{} of {} {} left the wallet at {}",
            tx.kind, tx.amount, tx.currency, balance
        );
        Self::silence(state, Rule::Overdraft, t, self.overdraft_cooldown_us);
        Some(Self::alert(
            Rule::Overdraft,
            c.severity,
            tx,
            vec![tx.transaction_id],
            t,
            reason,
        ))
    }

    /// At least `min_countries` distinct countries in `(t − window, t]`, or (if enabled) a country other than
    /// the user's home country.
    fn country_hopping(&self, state: &mut UserWindows, tx: &TxFacts) -> Option<Alert> {
        let c = &self.cfg.country_hopping;
        let t = tx.event_time_us;
        let country = tx.country.as_deref()?;
        if !c.enabled || Self::quiet(state, Rule::CountryHopping, t) {
            return None;
        }
        let from = t.saturating_sub(self.hop_window_us);
        let in_window: Vec<&RecentTx> = state
            .recent
            .iter()
            .filter(|r| r.event_time_us > from && r.event_time_us <= t && r.country.is_some())
            .collect();
        let countries: BTreeSet<&str> = in_window
            .iter()
            .filter_map(|r| r.country.as_deref())
            .collect();
        let (ids, start, reason) = if countries.len() >= c.min_countries {
            let start = in_window.first().map_or(t, |r| r.event_time_us);
            let list = countries.iter().copied().collect::<Vec<_>>().join(",");
            (
                in_window.iter().map(|r| r.id).collect(),
                start,
                format!(
                    "{} countries ({list}) within {:?} (at least {})",
                    countries.len(),
                    c.window,
                    c.min_countries
                ),
            )
        } else if c.alert_on_foreign_country
            && tx
                .user_country
                .as_deref()
                .is_some_and(|home| home != country)
        {
            (
                vec![tx.transaction_id],
                t,
                format!(
                    "transaction in {country}, home country {}",
                    tx.user_country.as_deref().unwrap_or("?")
                ),
            )
        } else {
            return None;
        };
        Self::silence(state, Rule::CountryHopping, t, self.hop_cooldown_us);
        Some(Self::alert(
            Rule::CountryHopping,
            c.severity,
            tx,
            ids,
            start,
            reason,
        ))
    }

    /// Tracks large deposits; a cash-out from the same wallet within `within` adds to each open deposit's
    /// drained sum, and the first deposit whose sum reaches `min_share_pct` raises the alert and is closed.
    fn rapid_drain(
        &self,
        state: &mut UserWindows,
        tx: &TxFacts,
        kind: Kind,
        baseline: Option<Decimal>,
    ) -> Option<Alert> {
        let c = &self.cfg.rapid_drain;
        let t = tx.event_time_us;
        if !c.enabled || tx.amount <= Decimal::ZERO {
            return None;
        }
        if kind == Kind::Deposit {
            let large_for_user = baseline.is_none_or(|b| {
                b.checked_mul(self.drain_min_multiple)
                    .is_some_and(|min| tx.amount >= min)
            });
            if tx.amount >= c.min_deposit && large_for_user {
                state.deposits.push(OpenDeposit {
                    id: tx.transaction_id,
                    wallet_id: tx.wallet_id,
                    event_time_us: t,
                    amount: tx.amount,
                    drained: Decimal::ZERO,
                    drain_ids: Vec::new(),
                });
            }
            return None;
        }
        if !kind.is_cash_out() {
            return None;
        }
        let mut hit = None;
        for (i, d) in state.deposits.iter_mut().enumerate() {
            if d.wallet_id != tx.wallet_id
                || t < d.event_time_us
                || t > d.event_time_us.saturating_add(self.drain_within_us)
            {
                continue;
            }
            d.drained = d.drained.saturating_add(tx.amount);
            d.drain_ids.push(tx.transaction_id);
            let needed = d.amount.checked_mul(self.drain_share).unwrap_or(d.amount);
            if hit.is_none() && d.drained >= needed {
                hit = Some(i);
            }
        }
        let d = state.deposits.remove(hit?);
        let pct = d
            .drained
            .checked_div(d.amount)
            .map_or(Decimal::ZERO, |r| (r * Decimal::ONE_HUNDRED).round_dp(1));
        let reason = format!(
            "{pct}% of a deposit of {} {} cashed out within {} s (at least {}%)",
            d.amount,
            tx.currency,
            (t - d.event_time_us) / 1_000_000,
            c.min_share_pct
        );
        let mut ids = vec![d.id];
        ids.extend(d.drain_ids);
        Some(Self::alert(
            Rule::RapidDrain,
            c.severity,
            tx,
            ids,
            d.event_time_us,
            reason,
        ))
    }
}
