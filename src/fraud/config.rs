//! Fraud rule configuration: parse (serde, `deny_unknown_fields`) → [`FraudConfig::validate`] (no I/O).
//!
//! Every field has a named default function whose doc says why the value was chosen. The defaults are tuned
//! against the generator's injected patterns (see `src/fraud/tests/generator.rs`) at 100 actions/s with a few
//! hundred users, i.e. per-user paces of seconds. Windows are event time, so they must be scaled with the
//! per-user pace of the real workload.

use super::Severity;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::time::Duration;

/// What can be wrong with a [`FraudConfig`], naming the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FraudConfigError {
    #[error("invalid value for `fraud.{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> FraudConfigError {
    FraudConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The fraud engine's configuration (`[fraud]` section).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudConfig {
    /// A transaction whose event time is more than this behind the partition watermark is too late: it updates
    /// no window and raises no alert (it is still written to the enriched output). Also how far back window
    /// state is kept, so that an event that is late but within it still sees its whole window.
    #[serde(default = "default_allowed_lateness", with = "humantime_serde")]
    pub allowed_lateness: Duration,
    #[serde(default)]
    pub velocity: VelocityConfig,
    #[serde(default)]
    pub amount_spike: AmountSpikeConfig,
    #[serde(default)]
    pub overdraft: OverdraftConfig,
    #[serde(default)]
    pub country_hopping: CountryHoppingConfig,
    #[serde(default)]
    pub rapid_drain: RapidDrainConfig,
}

impl Default for FraudConfig {
    fn default() -> Self {
        FraudConfig {
            allowed_lateness: default_allowed_lateness(),
            velocity: VelocityConfig::default(),
            amount_spike: AmountSpikeConfig::default(),
            overdraft: OverdraftConfig::default(),
            country_hopping: CountryHoppingConfig::default(),
            rapid_drain: RapidDrainConfig::default(),
        }
    }
}

/// 5 s: one partition's watermark follows its own commit order, so only transactions of concurrent source
/// transactions arrive out of order, by well under a second.
fn default_allowed_lateness() -> Duration {
    Duration::from_secs(5)
}

/// Many debits in a short sliding window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Length of the sliding event-time window.
    #[serde(default = "default_velocity_window", with = "humantime_serde")]
    pub window: Duration,
    /// Alert when the window holds MORE than this many debits (payment, withdrawal, transfer_out).
    #[serde(default = "default_velocity_max_debits")]
    pub max_debits: u32,
    #[serde(default = "medium")]
    pub severity: Severity,
    /// After an alert, no further velocity alert for the user during this long (one burst, one alert).
    #[serde(default = "default_velocity_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for VelocityConfig {
    fn default() -> Self {
        VelocityConfig {
            enabled: true,
            window: default_velocity_window(),
            max_debits: default_velocity_max_debits(),
            severity: Severity::Medium,
            cooldown: default_velocity_cooldown(),
        }
    }
}

/// 2 s with more than 6 debits: tuned on the generator at 100 actions/s (the demo's pace), where a burst of
/// 8–15 payments takes 80–150 ms while a user of a few hundred pays every few seconds. Event-time windows
/// scale with the per-user pace: at the generator's default 10,000 changes/h (~1.4 actions/s) multiply the
/// windows and cooldowns by ~70 (see `src/fraud/tests/generator.rs`).
fn default_velocity_window() -> Duration {
    Duration::from_secs(2)
}
fn default_velocity_max_debits() -> u32 {
    6
}
/// 10 s: outlasts a burst, so one burst gives one alert, yet a cooldown started by a false alert does not hide
/// a real burst for long.
fn default_velocity_cooldown() -> Duration {
    Duration::from_secs(10)
}

/// Which rolling statistic a spike is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeStat {
    Mean,
    /// Robust against one earlier outlier in the history (the default).
    Median,
}

/// One amount far above the user's recent amounts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountSpikeConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default = "default_spike_stat")]
    pub stat: SpikeStat,
    /// Alert when `amount > multiplier × stat(last history_len debit amounts)`.
    #[serde(default = "default_spike_multiplier")]
    pub multiplier: f64,
    /// A credit (deposit) is a spike only above this (larger) multiple of the same statistic: large deposits
    /// are normal, and a deposit followed by a drain is `rapid_drain`'s business.
    #[serde(default = "default_spike_credit_multiplier")]
    pub credit_multiplier: f64,
    /// Whether deposits join the history too (their size is not capped by the balance, unlike debits, so they
    /// show a user's scale from the first transaction on).
    #[serde(default = "default_spike_history_includes_deposits")]
    pub history_includes_deposits: bool,
    /// How many recent amounts the statistic covers.
    #[serde(default = "default_spike_history_len")]
    pub history_len: usize,
    /// No spike alert until this many amounts are known: a new user has no "usual".
    #[serde(default = "default_spike_min_history")]
    pub min_history: usize,
    /// Amounts older than this (by watermark) are forgotten, so the state of an inactive user expires.
    #[serde(default = "default_spike_history_ttl", with = "humantime_serde")]
    pub history_ttl: Duration,
    #[serde(default = "high")]
    pub severity: Severity,
}

impl Default for AmountSpikeConfig {
    fn default() -> Self {
        AmountSpikeConfig {
            enabled: true,
            stat: default_spike_stat(),
            multiplier: default_spike_multiplier(),
            credit_multiplier: default_spike_credit_multiplier(),
            history_includes_deposits: default_spike_history_includes_deposits(),
            history_len: default_spike_history_len(),
            min_history: default_spike_min_history(),
            history_ttl: default_spike_history_ttl(),
            severity: Severity::High,
        }
    }
}

/// Mean: measured better than the median on the generator (debits are capped by small balances early on,
/// which drags the median down more than the mean).
fn default_spike_stat() -> SpikeStat {
    SpikeStat::Mean
}
/// 15×: normal debits vary about 10× around a user's norm (0.2–3×); injected spikes are 20–50×.
fn default_spike_multiplier() -> f64 {
    15.0
}
/// 20×: normal deposits are 2–8× a user's norm, rapid-drain deposits 10–30× and injected deposit spikes
/// 20–50×, so drains and deposit spikes overlap; see the report of the precision test.
fn default_spike_credit_multiplier() -> f64 {
    20.0
}
fn default_spike_history_includes_deposits() -> bool {
    false
}
fn default_spike_history_len() -> usize {
    20
}
fn default_spike_min_history() -> usize {
    3
}
/// 30 days.
fn default_spike_history_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// A debit that leaves the wallet balance negative.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverdraftConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default = "high")]
    pub severity: Severity,
    /// After an alert, no further overdraft alert for the user during this long: the balance stays negative
    /// until it is topped up, and that is one episode.
    #[serde(default = "default_overdraft_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for OverdraftConfig {
    fn default() -> Self {
        OverdraftConfig {
            enabled: true,
            severity: Severity::High,
            cooldown: default_overdraft_cooldown(),
        }
    }
}

/// 1 h.
fn default_overdraft_cooldown() -> Duration {
    Duration::from_secs(3600)
}

/// Transactions from many countries in a short window, and optionally any transaction abroad.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryHoppingConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default = "default_hop_window", with = "humantime_serde")]
    pub window: Duration,
    /// Alert when the window holds at least this many distinct transaction countries.
    #[serde(default = "default_hop_min_countries")]
    pub min_countries: usize,
    /// Also alert on every transaction whose country differs from the user's home country (subject to the
    /// cooldown). Off by default: travel makes it noisy (about 5% of the generator's normal transactions).
    #[serde(default)]
    pub alert_on_foreign_country: bool,
    #[serde(default = "medium")]
    pub severity: Severity,
    /// After an alert, no further hopping alert for the user during this long.
    #[serde(default = "default_hop_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for CountryHoppingConfig {
    fn default() -> Self {
        CountryHoppingConfig {
            enabled: true,
            window: default_hop_window(),
            min_countries: default_hop_min_countries(),
            alert_on_foreign_country: false,
            severity: Severity::Medium,
            cooldown: default_hop_cooldown(),
        }
    }
}

/// 1 s: the generator's hops (3–5 payments in consecutive actions, each from another country) take 30–50 ms
/// at 100 actions/s; nobody pays from three countries within a second. Scale like the velocity window.
fn default_hop_window() -> Duration {
    Duration::from_secs(1)
}
/// 3: a hop is 3–5 foreign countries; home plus one trip abroad is two.
fn default_hop_min_countries() -> usize {
    3
}
/// 10 s.
fn default_hop_cooldown() -> Duration {
    Duration::from_secs(10)
}

/// Most of a fresh, large deposit cashed out soon after.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RapidDrainConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// A deposit below this amount (in its currency) is never tracked.
    #[serde(default = "default_drain_min_deposit")]
    pub min_deposit: Decimal,
    /// A deposit is tracked only if it is at least this multiple of the user's rolling debit statistic
    /// (`amount_spike.stat` over `amount_spike.history_len`); ignored while that history is shorter than
    /// `amount_spike.min_history`. Scales "large" to the user.
    #[serde(default = "default_drain_min_deposit_multiple")]
    pub min_deposit_multiple: f64,
    /// Alert when withdrawals and outgoing transfers from the deposit's wallet reach this share of it, in
    /// percent.
    #[serde(default = "default_drain_min_share_pct")]
    pub min_share_pct: f64,
    /// Only cash-outs within this long after the deposit count.
    #[serde(default = "default_drain_within", with = "humantime_serde")]
    pub within: Duration,
    #[serde(default = "high")]
    pub severity: Severity,
}

impl Default for RapidDrainConfig {
    fn default() -> Self {
        RapidDrainConfig {
            enabled: true,
            min_deposit: default_drain_min_deposit(),
            min_deposit_multiple: default_drain_min_deposit_multiple(),
            min_share_pct: default_drain_min_share_pct(),
            within: default_drain_within(),
            severity: Severity::High,
        }
    }
}

/// 50.00: small deposits are not worth laundering.
fn default_drain_min_deposit() -> Decimal {
    Decimal::new(5_000, 2)
}
/// 5×: normal deposits are 2–8× a user's norm, drain deposits 10–30×.
fn default_drain_min_deposit_multiple() -> f64 {
    5.0
}
/// 80%: the generator drains 85–98%.
fn default_drain_min_share_pct() -> f64 {
    80.0
}
/// 1 s: the generator drains 3–20 actions after the deposit (30–200 ms at 100 actions/s); a longer window
/// lets a user's normal cash-outs add up to 80% of a deposit. Scale like the velocity window.
fn default_drain_within() -> Duration {
    Duration::from_secs(1)
}

fn enabled() -> bool {
    true
}
fn medium() -> Severity {
    Severity::Medium
}
fn high() -> Severity {
    Severity::High
}

fn positive_duration(key: &'static str, d: Duration) -> Result<(), FraudConfigError> {
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    // Windows are added to microsecond event times; anything beyond a year is a typo.
    if d > Duration::from_secs(366 * 24 * 3600) {
        return Err(invalid(key, "must be at most a year"));
    }
    Ok(())
}

fn ratio(key: &'static str, v: f64, min_exclusive: f64) -> Result<(), FraudConfigError> {
    if !v.is_finite() || v <= min_exclusive {
        return Err(invalid(
            key,
            format!("must be a finite number above {min_exclusive}, is {v}"),
        ));
    }
    Ok(())
}

impl FraudConfig {
    /// Pure checks; the engine relies on them (positive windows, finite multipliers, sane counts).
    pub fn validate(&self) -> Result<(), FraudConfigError> {
        if self.allowed_lateness > Duration::from_secs(366 * 24 * 3600) {
            return Err(invalid("allowed_lateness", "must be at most a year"));
        }
        let v = &self.velocity;
        positive_duration("velocity.window", v.window)?;
        if v.cooldown > Duration::from_secs(366 * 24 * 3600) {
            return Err(invalid("velocity.cooldown", "must be at most a year"));
        }
        if v.max_debits == 0 {
            return Err(invalid("velocity.max_debits", "must be at least 1"));
        }
        let s = &self.amount_spike;
        ratio("amount_spike.multiplier", s.multiplier, 1.0)?;
        ratio("amount_spike.credit_multiplier", s.credit_multiplier, 1.0)?;
        if s.history_len == 0 || s.history_len > 1_000 {
            return Err(invalid("amount_spike.history_len", "must be in 1..=1000"));
        }
        if s.min_history == 0 || s.min_history > s.history_len {
            return Err(invalid(
                "amount_spike.min_history",
                "must be in 1..=history_len",
            ));
        }
        positive_duration("amount_spike.history_ttl", s.history_ttl)?;
        if self.overdraft.cooldown > Duration::from_secs(366 * 24 * 3600) {
            return Err(invalid("overdraft.cooldown", "must be at most a year"));
        }
        let h = &self.country_hopping;
        positive_duration("country_hopping.window", h.window)?;
        if h.min_countries < 2 {
            return Err(invalid(
                "country_hopping.min_countries",
                "must be at least 2",
            ));
        }
        if h.cooldown > Duration::from_secs(366 * 24 * 3600) {
            return Err(invalid(
                "country_hopping.cooldown",
                "must be at most a year",
            ));
        }
        let d = &self.rapid_drain;
        if d.min_deposit <= Decimal::ZERO {
            return Err(invalid("rapid_drain.min_deposit", "must be positive"));
        }
        ratio(
            "rapid_drain.min_deposit_multiple",
            d.min_deposit_multiple,
            0.0,
        )?;
        if !d.min_share_pct.is_finite() || d.min_share_pct <= 0.0 || d.min_share_pct > 100.0 {
            return Err(invalid("rapid_drain.min_share_pct", "must be in (0, 100]"));
        }
        positive_duration("rapid_drain.within", d.within)?;
        Ok(())
    }
}
