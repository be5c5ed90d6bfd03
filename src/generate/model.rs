//! The pure, seeded model of a small fintech: users sign up, fund wallets, pay, transfer, get refunds; pending
//! transactions settle later; a few wallets are frozen and a few idle users leave. It also injects fraud
//! episodes and malformed rows at configured rates, and marks the point where the schema evolves.
//!
//! Contract:
//! - [`Model::next_action`] is a pure function of the [`ModelConfig`] and the number of calls so far: the same
//!   config (seed included) yields the identical sequence of [`Action`]s. There is no I/O, no clock and no
//!   iteration over hash maps, whose order would not be reproducible.
//! - The model assigns every primary key itself, counting up from [`IdBase`] (the largest ids already in the
//!   database). Ids in the action stream, and so in the fraud ground truth, are therefore known before anything
//!   is written, and a seeded run against an empty database produces byte-identical tables.
//! - Every action is applied as one database transaction, and after every action the model's balances satisfy
//!   the invariant documented in [`super::rows`] against the rows it has emitted.
//! - Normal activity never takes a wallet below zero: only the `overdraft` fraud pattern does.
//!
//! Time is not modelled. Rows get the database's `now()`, and downstream event time is the commit time, so the
//! real duration of a multi-action fraud episode (a burst, a deposit followed by a drain) depends on `--rate`:
//! at the default 10,000 changes/hour a 10-payment burst spans about 7 seconds and a drain follows its deposit
//! within about a minute.

use super::rows::{
    KycStatus, RiskTier, RowChange, TransactionId, TransactionRow, TxKind, TxStatus, UserId,
    UserProfile, UserRow, WalletId, WalletRow, WalletStatus,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;

mod fraud;

/// Home countries and the currency of the first wallet opened there.
const COUNTRIES: &[(&str, &str)] = &[
    ("DE", "EUR"),
    ("FR", "EUR"),
    ("ES", "EUR"),
    ("IT", "EUR"),
    ("NL", "EUR"),
    ("GB", "GBP"),
    ("US", "USD"),
    ("PL", "PLN"),
    ("SE", "SEK"),
    ("CH", "CHF"),
];
/// Second-wallet currencies.
const CURRENCIES: &[&str] = &["EUR", "USD", "GBP"];
/// Countries that only ever appear on transactions (travel, fraud), never as a home country.
const ABROAD: &[&str] = &["BR", "NG", "AE", "TH", "MX", "ZA", "IN", "TR", "SG", "AR"];
const MERCHANTS: &[&str] = &[
    "amazon", "spotify", "uber", "lidl", "tesco", "shell", "netflix", "ikea", "zalando", "apple",
];
const FIRST_NAMES: &[&str] = &[
    "Anna", "Ben", "Chloe", "David", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira",
    "Liam",
];
const LAST_NAMES: &[&str] = &[
    "Muller", "Smith", "Garcia", "Rossi", "Jansen", "Kowalski", "Dubois", "Nilsson", "Weber",
    "Brown",
];
/// The currency code written into rows made malformed with [`Defect::UnknownCurrency`].
pub const UNKNOWN_CURRENCY: &str = "XXX";
/// At most this many settled payments are remembered as candidates for refunds and chargebacks.
const REFUNDABLE_CAP: usize = 2_000;
/// Settlement is chosen with probability `pending / (pending + SETTLE_HALF)`, which keeps the backlog of
/// pending transactions around this size instead of growing without bound.
const SETTLE_HALF: f64 = 20.0;
/// Until this many users exist, every other action is a signup, so that a run against an empty database soon
/// has a population to spread activity over instead of hammering the first few wallets.
const BOOTSTRAP_USERS: usize = 100;
/// How many random picks a chooser makes before it gives up and the action falls back to a simpler one.
const PICK_TRIES: usize = 8;

/// Everything the model's output depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub seed: u64,
    /// Probability that an action which does not continue a fraud episode starts a new one.
    pub fraud_rate: f64,
    /// Probability that a normal deposit, withdrawal or payment row is malformed.
    pub bad_row_rate: f64,
    /// Emit [`ActionKind::EvolveSchema`] once this many row changes have been emitted.
    pub evolve_after: Option<u64>,
    pub ids: IdBase,
}

/// The largest id already used in each table; the model's first ids are one above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdBase {
    pub users: i64,
    pub wallets: i64,
    pub transactions: i64,
}

/// What an action does, in business terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Signup,
    ProfileUpdate,
    Deposit,
    Withdrawal,
    Transfer,
    Payment,
    Refund,
    Chargeback,
    Settle,
    FreezeWallet,
    UnfreezeWallet,
    DeleteUser,
    DeleteWallet,
    /// `ALTER TABLE transactions ADD COLUMN IF NOT EXISTS device_id text`; no row changes. Transactions
    /// inserted afterwards carry `device_id`.
    EvolveSchema,
}

impl ActionKind {
    pub const ALL: [ActionKind; 14] = [
        ActionKind::Signup,
        ActionKind::ProfileUpdate,
        ActionKind::Deposit,
        ActionKind::Withdrawal,
        ActionKind::Transfer,
        ActionKind::Payment,
        ActionKind::Refund,
        ActionKind::Chargeback,
        ActionKind::Settle,
        ActionKind::FreezeWallet,
        ActionKind::UnfreezeWallet,
        ActionKind::DeleteUser,
        ActionKind::DeleteWallet,
        ActionKind::EvolveSchema,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Signup => "signup",
            ActionKind::ProfileUpdate => "profile_update",
            ActionKind::Deposit => "deposit",
            ActionKind::Withdrawal => "withdrawal",
            ActionKind::Transfer => "transfer",
            ActionKind::Payment => "payment",
            ActionKind::Refund => "refund",
            ActionKind::Chargeback => "chargeback",
            ActionKind::Settle => "settle",
            ActionKind::FreezeWallet => "freeze_wallet",
            ActionKind::UnfreezeWallet => "unfreeze_wallet",
            ActionKind::DeleteUser => "delete_user",
            ActionKind::DeleteWallet => "delete_wallet",
            ActionKind::EvolveSchema => "evolve_schema",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The injected fraud patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudPattern {
    /// 8–15 payments from one wallet in consecutive actions.
    VelocityBurst,
    /// One payment (or, if the balance cannot cover it, one deposit) of 20–50 times the user's usual amount.
    AmountSpike,
    /// One withdrawal larger than the balance, leaving it negative.
    Overdraft,
    /// 3–5 payments in consecutive actions, each from a different country, none the user's home country.
    CountryHopping,
    /// A large deposit, then 3–20 actions later a withdrawal of 85–98% of it.
    RapidDrain,
}

impl FraudPattern {
    pub const ALL: [FraudPattern; 5] = [
        FraudPattern::VelocityBurst,
        FraudPattern::AmountSpike,
        FraudPattern::Overdraft,
        FraudPattern::CountryHopping,
        FraudPattern::RapidDrain,
    ];
}

/// The ways a transaction row is made malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Defect {
    NullUserId,
    /// Zero or negative `amount`.
    NonPositiveAmount,
    /// `currency` is [`UNKNOWN_CURRENCY`].
    UnknownCurrency,
}

/// Marks an action as one step of a fraud episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudStep {
    pub episode: u64,
    pub pattern: FraudPattern,
    /// Set on the episode's last step: the complete ground truth.
    pub completed: Option<FraudEpisode>,
}

/// Ground truth of one injected fraud episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FraudEpisode {
    pub episode: u64,
    pub pattern: FraudPattern,
    pub user_id: UserId,
    pub wallet_id: WalletId,
    /// Every transaction row the episode inserted, in order.
    pub transaction_ids: Vec<TransactionId>,
}

/// Ground truth of one malformed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    pub defect: Defect,
    pub transaction_id: TransactionId,
    /// The real owner, even when the row's `user_id` is null.
    pub user_id: UserId,
    pub wallet_id: WalletId,
}

/// One business action: the row changes that go into one database transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Position in the stream, from 0.
    pub seq: u64,
    pub kind: ActionKind,
    pub changes: Vec<RowChange>,
    pub fraud: Option<FraudStep>,
    pub bad_row: Option<BadRow>,
}

/// A set of ids that supports O(1) insert, remove and uniform random choice, in a reproducible order.
#[derive(Debug)]
struct IdList<T> {
    items: Vec<T>,
    pos: HashMap<T, usize>,
}

impl<T> Default for IdList<T> {
    fn default() -> Self {
        IdList {
            items: Vec::new(),
            pos: HashMap::new(),
        }
    }
}

impl<T: Copy + Eq + Hash> IdList<T> {
    fn insert(&mut self, id: T) {
        if !self.pos.contains_key(&id) {
            self.pos.insert(id, self.items.len());
            self.items.push(id);
        }
    }

    fn remove(&mut self, id: T) {
        if let Some(i) = self.pos.remove(&id) {
            self.items.swap_remove(i);
            if let Some(&moved) = self.items.get(i) {
                self.pos.insert(moved, i);
            }
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn choose(&self, rng: &mut ChaCha8Rng) -> Option<T> {
        if self.items.is_empty() {
            None
        } else {
            Some(self.items[rng.random_range(0..self.items.len())])
        }
    }
}

#[derive(Debug)]
struct UserState {
    country: &'static str,
    /// The user's typical payment, in cents; "far above the norm" is measured against it.
    norm: i64,
    profile: UserProfile,
    wallets: Vec<WalletId>,
    /// The user's usual device, used for `device_id` once the schema has evolved.
    device: u32,
}

#[derive(Debug)]
struct WalletState {
    user: UserId,
    currency: &'static str,
    /// Cents.
    balance: i64,
    status: WalletStatus,
    /// In a multi-step fraud episode: kept out of normal debits, freezes, failed deposits and other episodes so
    /// the episode's planned amounts stay valid.
    busy: bool,
}

#[derive(Debug)]
struct PendingTx {
    id: TransactionId,
    wallet: WalletId,
    kind: TxKind,
    amount: i64,
    /// Cents, signed, as applied to the wallet.
    effect: i64,
    merchant: Option<&'static str>,
}

#[derive(Debug)]
struct Refundable {
    wallet: WalletId,
    amount: i64,
    merchant: Option<&'static str>,
}

#[derive(Debug)]
enum Plan {
    /// Payments of `amount` cents still to make.
    Burst { remaining: u32, amount: i64 },
    /// One payment of `amount` cents from each country, popped from the back.
    Hop {
        countries: Vec<&'static str>,
        amount: i64,
    },
    /// Withdraw most of `deposit` cents.
    Drain { deposit: i64 },
}

#[derive(Debug)]
struct Episode {
    pattern: FraudPattern,
    user: UserId,
    wallet: WalletId,
    tx_ids: Vec<TransactionId>,
    plan: Plan,
}

/// A transaction to post, in cents.
struct TxSpec {
    wallet: WalletId,
    kind: TxKind,
    amount: i64,
    fee: i64,
    status: TxStatus,
    country: &'static str,
    merchant: Option<&'static str>,
    counterparty: Option<WalletId>,
    /// A device the user has never used (fraud), instead of their usual one.
    fresh_device: bool,
    defect: Option<Defect>,
}

impl TxSpec {
    /// A transaction with no fee, merchant, counterparty, fresh device or defect; callers override the rest.
    fn new(
        wallet: WalletId,
        kind: TxKind,
        amount: i64,
        status: TxStatus,
        country: &'static str,
    ) -> Self {
        TxSpec {
            wallet,
            kind,
            amount,
            fee: 0,
            status,
            country,
            merchant: None,
            counterparty: None,
            fresh_device: false,
            defect: None,
        }
    }
}

/// Changes collected while an action is built.
struct Draft {
    kind: ActionKind,
    changes: Vec<RowChange>,
    fraud: Option<FraudStep>,
    bad_row: Option<BadRow>,
}

impl Draft {
    fn new(kind: ActionKind) -> Self {
        Draft {
            kind,
            changes: Vec::new(),
            fraud: None,
            bad_row: None,
        }
    }
}

fn dec(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

/// 1.5% with a 0.10 minimum, in cents.
fn payment_fee(amount: i64) -> i64 {
    (amount * 15 / 1000).max(10)
}

/// The seeded model. See the module docs for its contract.
#[derive(Debug)]
pub struct Model {
    rng: ChaCha8Rng,
    fraud_rate: f64,
    bad_row_rate: f64,
    evolve_after: Option<u64>,
    /// Last id used per table.
    ids: IdBase,
    seq: u64,
    changes_emitted: u64,
    evolved: bool,
    users: HashMap<UserId, UserState>,
    user_list: IdList<UserId>,
    /// Users without any transaction: the only ones that may be deleted, so no transaction ever points at a
    /// deleted wallet or user.
    idle_users: IdList<UserId>,
    wallets: HashMap<WalletId, WalletState>,
    wallet_list: IdList<WalletId>,
    frozen: IdList<WalletId>,
    /// Wallets without any transaction: the only ones that may be deleted.
    unused_wallets: IdList<WalletId>,
    pending: Vec<PendingTx>,
    refundable: VecDeque<Refundable>,
    episodes: BTreeMap<u64, Episode>,
    /// `(due seq, episode)`: the next step of each running multi-step episode.
    agenda: BTreeSet<(u64, u64)>,
    next_episode: u64,
}

impl Model {
    pub fn new(cfg: ModelConfig) -> Self {
        Model {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            fraud_rate: cfg.fraud_rate.clamp(0.0, 1.0),
            bad_row_rate: cfg.bad_row_rate.clamp(0.0, 1.0),
            evolve_after: cfg.evolve_after,
            ids: cfg.ids,
            seq: 0,
            changes_emitted: 0,
            evolved: false,
            users: HashMap::new(),
            user_list: IdList::default(),
            idle_users: IdList::default(),
            wallets: HashMap::new(),
            wallet_list: IdList::default(),
            frozen: IdList::default(),
            unused_wallets: IdList::default(),
            pending: Vec::new(),
            refundable: VecDeque::new(),
            episodes: BTreeMap::new(),
            agenda: BTreeSet::new(),
            next_episode: 0,
        }
    }

    /// Whether [`ActionKind::EvolveSchema`] has been emitted.
    pub fn evolved(&self) -> bool {
        self.evolved
    }

    /// Row changes emitted so far.
    pub fn changes_emitted(&self) -> u64 {
        self.changes_emitted
    }

    /// The last id used per table so far.
    pub fn ids(&self) -> IdBase {
        self.ids
    }

    /// Episodes started but not finished, with the transactions they have inserted so far (the end of a run can
    /// cut one short).
    pub fn open_episodes(&self) -> Vec<FraudEpisode> {
        self.episodes
            .iter()
            .map(|(&episode, e)| FraudEpisode {
                episode,
                pattern: e.pattern,
                user_id: e.user,
                wallet_id: e.wallet,
                transaction_ids: e.tx_ids.clone(),
            })
            .collect()
    }

    /// The model's current balance of a wallet, if it exists.
    pub fn balance(&self, wallet: WalletId) -> Option<Decimal> {
        self.wallets.get(&wallet).map(|w| dec(w.balance))
    }

    /// Produces the next action.
    pub fn next_action(&mut self) -> Action {
        let draft = self.draft();
        let action = Action {
            seq: self.seq,
            kind: draft.kind,
            changes: draft.changes,
            fraud: draft.fraud,
            bad_row: draft.bad_row,
        };
        self.seq += 1;
        self.changes_emitted += action.changes.len() as u64;
        action
    }

    fn draft(&mut self) -> Draft {
        if !self.evolved && self.evolve_after.is_some_and(|n| self.changes_emitted >= n) {
            self.evolved = true;
            return Draft::new(ActionKind::EvolveSchema);
        }
        if let Some(&(due, episode)) = self.agenda.first()
            && due <= self.seq
        {
            self.agenda.remove(&(due, episode));
            if let Some(d) = self.episode_step(episode) {
                return d;
            }
        }
        if self.rng.random_bool(self.fraud_rate)
            && let Some(d) = self.start_fraud()
        {
            return d;
        }
        self.normal()
    }

    fn normal(&mut self) -> Draft {
        if self.user_list.len() < BOOTSTRAP_USERS && self.rng.random_bool(0.5) {
            return self.signup();
        }
        let pending = self.pending.len() as f64;
        if self.rng.random_bool(pending / (pending + SETTLE_HALF))
            && let Some(d) = self.settle()
        {
            return d;
        }
        // Relative weights of the normal actions.
        const WEIGHTS: &[(ActionKind, u32)] = &[
            (ActionKind::Signup, 60),
            (ActionKind::ProfileUpdate, 40),
            (ActionKind::Deposit, 180),
            (ActionKind::Withdrawal, 80),
            (ActionKind::Transfer, 140),
            (ActionKind::Payment, 300),
            (ActionKind::Refund, 20),
            (ActionKind::Chargeback, 7),
            (ActionKind::FreezeWallet, 5),
            (ActionKind::UnfreezeWallet, 3),
            (ActionKind::DeleteUser, 5),
            (ActionKind::DeleteWallet, 3),
        ];
        let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.random_range(0..total);
        let mut kind = ActionKind::Signup;
        for &(k, w) in WEIGHTS {
            if roll < w {
                kind = k;
                break;
            }
            roll -= w;
        }
        let chosen = match kind {
            ActionKind::Signup => Some(self.signup()),
            ActionKind::ProfileUpdate => self.profile_update(),
            ActionKind::Deposit => self.deposit(None),
            ActionKind::Withdrawal => self.withdrawal(),
            ActionKind::Transfer => self.transfer(),
            ActionKind::Payment => self.payment(),
            ActionKind::Refund => self.refund(TxKind::Refund),
            ActionKind::Chargeback => self.refund(TxKind::Chargeback),
            ActionKind::FreezeWallet => self.freeze(),
            ActionKind::UnfreezeWallet => self.unfreeze(),
            ActionKind::DeleteUser => self.delete_user(),
            ActionKind::DeleteWallet => self.delete_wallet(),
            ActionKind::Settle | ActionKind::EvolveSchema => None,
        };
        // Early in a run most choices have nothing to act on; a deposit or a signup always can.
        chosen
            .or_else(|| self.deposit(None))
            .unwrap_or_else(|| self.signup())
    }

    // ---- ids and picks -------------------------------------------------------------------------------------

    fn next_user_id(&mut self) -> UserId {
        self.ids.users += 1;
        UserId(self.ids.users)
    }

    fn next_wallet_id(&mut self) -> WalletId {
        self.ids.wallets += 1;
        WalletId(self.ids.wallets)
    }

    fn next_tx_id(&mut self) -> TransactionId {
        self.ids.transactions += 1;
        TransactionId(self.ids.transactions)
    }

    /// A uniform choice from one of the non-empty constant tables above.
    fn pick_mut<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    /// A random wallet satisfying `ok`, after at most [`PICK_TRIES`] picks.
    fn pick_wallet(&mut self, ok: impl Fn(&WalletState) -> bool) -> Option<WalletId> {
        for _ in 0..PICK_TRIES {
            let id = self.wallet_list.choose(&mut self.rng)?;
            if self.wallets.get(&id).is_some_and(&ok) {
                return Some(id);
            }
        }
        None
    }

    fn pick_user(&mut self, ok: impl Fn(&UserState) -> bool) -> Option<UserId> {
        for _ in 0..PICK_TRIES {
            let id = self.user_list.choose(&mut self.rng)?;
            if self.users.get(&id).is_some_and(&ok) {
                return Some(id);
            }
        }
        None
    }

    /// Cents: `base` scaled by a uniform factor in `[lo, hi)`, at least one cent.
    fn scaled(&mut self, base: i64, lo: f64, hi: f64) -> i64 {
        ((base as f64) * self.rng.random_range(lo..hi))
            .round()
            .max(1.0) as i64
    }

    fn owner(&self, wallet: WalletId) -> Option<(UserId, &UserState)> {
        let user = self.wallets.get(&wallet)?.user;
        self.users.get(&user).map(|u| (user, u))
    }

    /// The country a normal transaction carries: mostly home, sometimes abroad.
    fn tx_country(&mut self, home: &'static str) -> &'static str {
        if self.rng.random_bool(0.05) {
            self.pick_mut(ABROAD)
        } else {
            home
        }
    }

    // ---- posting ----------------------------------------------------------------------------------------------

    /// Inserts a transaction row, applies its effect to the wallet and records the wallet's new balance.
    /// Returns `None` only if the wallet or its owner is unknown, which the callers rule out beforehand.
    fn post(&mut self, d: &mut Draft, spec: TxSpec) -> Option<TransactionId> {
        let id = self.next_tx_id();
        let fresh_device: u32 = self.rng.random();
        let (user, usual_device) = {
            let (user, u) = self.owner(spec.wallet)?;
            (user, u.device)
        };
        let device_id = self.evolved.then(|| {
            let device = if spec.fresh_device {
                fresh_device
            } else {
                usual_device
            };
            format!("dev-{device:08x}")
        });
        let w = self.wallets.get_mut(&spec.wallet)?;
        let fx = if spec.kind.is_credit() {
            spec.amount
        } else {
            -(spec.amount + spec.fee)
        };
        w.balance += fx;
        let balance = w.balance;
        let currency = if spec.defect == Some(Defect::UnknownCurrency) {
            UNKNOWN_CURRENCY
        } else {
            w.currency
        };
        self.idle_users.remove(user);
        self.unused_wallets.remove(spec.wallet);
        d.changes.push(RowChange::InsertTransaction(TransactionRow {
            id,
            wallet_id: spec.wallet,
            user_id: (spec.defect != Some(Defect::NullUserId)).then_some(user),
            counterparty_wallet_id: spec.counterparty,
            kind: spec.kind,
            amount: dec(spec.amount),
            fee: dec(spec.fee),
            currency,
            status: spec.status,
            country: Some(spec.country),
            merchant: spec.merchant,
            device_id,
        }));
        d.changes.push(RowChange::SetWalletBalance {
            id: spec.wallet,
            balance: dec(balance),
        });
        if spec.status == TxStatus::Pending {
            self.pending.push(PendingTx {
                id,
                wallet: spec.wallet,
                kind: spec.kind,
                amount: spec.amount,
                effect: fx,
                merchant: spec.merchant,
            });
        }
        if let Some(defect) = spec.defect {
            d.bad_row = Some(BadRow {
                defect,
                transaction_id: id,
                user_id: user,
                wallet_id: spec.wallet,
            });
        }
        Some(id)
    }

    /// Possibly makes a normal single-row transaction malformed. A non-positive amount changes the effect; if
    /// that would take the wallet below zero the defect becomes an unknown currency instead, so that only the
    /// overdraft pattern ever produces a negative balance.
    fn maybe_defect(&mut self, spec: &mut TxSpec) {
        if !self.rng.random_bool(self.bad_row_rate) {
            return;
        }
        let defect = self.pick_mut(&[
            Defect::NullUserId,
            Defect::NonPositiveAmount,
            Defect::UnknownCurrency,
        ]);
        spec.defect = Some(defect);
        if defect == Defect::NonPositiveAmount {
            let amount = if self.rng.random_bool(0.5) {
                0
            } else {
                -spec.amount
            };
            let balance = self.wallets.get(&spec.wallet).map_or(0, |w| w.balance);
            if balance + effect_cents(spec.kind, amount, spec.fee) >= 0 {
                spec.amount = amount;
            } else {
                spec.defect = Some(Defect::UnknownCurrency);
            }
        }
    }

    // ---- normal actions ---------------------------------------------------------------------------------------

    fn signup(&mut self) -> Draft {
        let mut d = Draft::new(ActionKind::Signup);
        let id = self.next_user_id();
        let (country, currency) = self.pick_mut(COUNTRIES);
        let first = self.pick_mut(FIRST_NAMES);
        let last = self.pick_mut(LAST_NAMES);
        // Typical payment between 5 and ~300 in the wallet currency, log-uniform.
        let norm = 10f64.powf(self.rng.random_range(2.7..4.5)).round() as i64;
        let profile = UserProfile {
            email: format!(
                "{}.{}{}@example.com",
                first.to_lowercase(),
                last.to_lowercase(),
                id
            ),
            kyc_status: KycStatus::Pending,
            risk_tier: RiskTier::Medium,
        };
        d.changes.push(RowChange::InsertUser(UserRow {
            id,
            email: profile.email.clone(),
            full_name: format!("{first} {last}"),
            country,
            kyc_status: profile.kyc_status,
            risk_tier: profile.risk_tier,
        }));
        let mut currencies = vec![currency];
        if self.rng.random_bool(0.2) {
            let second = self.pick_mut(CURRENCIES);
            if second != currency {
                currencies.push(second);
            }
        }
        let device = self.rng.random();
        let mut wallets = Vec::new();
        for currency in currencies {
            let wid = self.next_wallet_id();
            d.changes.push(RowChange::InsertWallet(WalletRow {
                id: wid,
                user_id: id,
                currency,
                balance: Decimal::new(0, 2),
                status: WalletStatus::Active,
            }));
            self.wallets.insert(
                wid,
                WalletState {
                    user: id,
                    currency,
                    balance: 0,
                    status: WalletStatus::Active,
                    busy: false,
                },
            );
            self.wallet_list.insert(wid);
            self.unused_wallets.insert(wid);
            wallets.push(wid);
        }
        self.users.insert(
            id,
            UserState {
                country,
                norm,
                profile,
                wallets,
                device,
            },
        );
        self.user_list.insert(id);
        self.idle_users.insert(id);
        d
    }

    fn profile_update(&mut self) -> Option<Draft> {
        let id = self.pick_user(|_| true)?;
        let roll = self.rng.random_range(0..3u8);
        let kyc = if self.rng.random_bool(0.85) {
            KycStatus::Verified
        } else {
            KycStatus::Rejected
        };
        let tier = self.pick_mut(&[RiskTier::Low, RiskTier::Medium, RiskTier::High]);
        let n: u16 = self.rng.random();
        let u = self.users.get_mut(&id)?;
        match roll {
            0 => u.profile.kyc_status = kyc,
            1 => u.profile.risk_tier = tier,
            _ => u.profile.email = format!("u{id}.{n}@example.net"),
        }
        let mut d = Draft::new(ActionKind::ProfileUpdate);
        d.changes.push(RowChange::UpdateUser {
            id,
            profile: u.profile.clone(),
        });
        Some(d)
    }

    /// A deposit to `wallet`, or to a random active wallet.
    fn deposit(&mut self, wallet: Option<WalletId>) -> Option<Draft> {
        let wallet = match wallet {
            Some(w) => w,
            None => self.pick_wallet(|w| w.status == WalletStatus::Active)?,
        };
        let (home, norm) = self.owner(wallet).map(|(_, u)| (u.country, u.norm))?;
        let amount = self.scaled(norm, 2.0, 8.0);
        let country = self.tx_country(home);
        let spec = TxSpec::new(wallet, TxKind::Deposit, amount, TxStatus::Pending, country);
        self.single(ActionKind::Deposit, spec)
    }

    /// A wallet that normal activity may spend from: active, not in an episode, with at least `min` cents.
    fn spendable(&mut self, min: i64) -> Option<WalletId> {
        self.pick_wallet(|w| w.status == WalletStatus::Active && !w.busy && w.balance >= min)
    }

    fn withdrawal(&mut self) -> Option<Draft> {
        let wallet = self.spendable(1_000)?;
        let balance = self.wallets.get(&wallet)?.balance;
        let (home, norm) = self.owner(wallet).map(|(_, u)| (u.country, u.norm))?;
        let amount = self.scaled(norm, 0.5, 3.0).min(balance * 9 / 10);
        let country = self.tx_country(home);
        let spec = TxSpec::new(
            wallet,
            TxKind::Withdrawal,
            amount,
            TxStatus::Pending,
            country,
        );
        self.single(ActionKind::Withdrawal, spec)
    }

    fn payment(&mut self) -> Option<Draft> {
        let wallet = self.spendable(200)?;
        let balance = self.wallets.get(&wallet)?.balance;
        let (home, norm) = self.owner(wallet).map(|(_, u)| (u.country, u.norm))?;
        // Cap so that amount + fee fits the balance (the fee is at most 1.5% or 0.10).
        let amount = self
            .scaled(norm, 0.2, 1.5)
            .min((balance - 10) * 1000 / 1015);
        if amount < 1 {
            return None;
        }
        let country = self.tx_country(home);
        let merchant = self.pick_mut(MERCHANTS);
        let spec = TxSpec {
            fee: payment_fee(amount),
            merchant: Some(merchant),
            ..TxSpec::new(wallet, TxKind::Payment, amount, TxStatus::Pending, country)
        };
        self.single(ActionKind::Payment, spec)
    }

    /// A one-transaction action of normal activity, which may carry an injected defect.
    fn single(&mut self, kind: ActionKind, mut spec: TxSpec) -> Option<Draft> {
        self.maybe_defect(&mut spec);
        let mut d = Draft::new(kind);
        self.post(&mut d, spec)?;
        Some(d)
    }

    /// A book transfer between two users' active wallets of the same currency; settled at once.
    fn transfer(&mut self) -> Option<Draft> {
        let from = self.spendable(500)?;
        let (from_user, currency, balance) = self
            .wallets
            .get(&from)
            .map(|w| (w.user, w.currency, w.balance))?;
        let to = self.pick_wallet(|w| {
            w.status == WalletStatus::Active && w.currency == currency && w.user != from_user
        })?;
        let (home, norm) = self.owner(from).map(|(_, u)| (u.country, u.norm))?;
        let amount = self.scaled(norm, 0.3, 2.0).min(balance / 2);
        let to_home = self.owner(to).map(|(_, u)| u.country)?;
        let mut d = Draft::new(ActionKind::Transfer);
        let out = TxSpec {
            counterparty: Some(to),
            ..TxSpec::new(from, TxKind::TransferOut, amount, TxStatus::Settled, home)
        };
        let into = TxSpec {
            wallet: to,
            kind: TxKind::TransferIn,
            country: to_home,
            counterparty: Some(from),
            ..out
        };
        self.post(&mut d, out)?;
        self.post(&mut d, into)?;
        Some(d)
    }

    /// A refund or chargeback of a remembered settled payment, credited at once.
    fn refund(&mut self, kind: TxKind) -> Option<Draft> {
        for _ in 0..PICK_TRIES {
            if self.refundable.is_empty() {
                return None;
            }
            let i = self.rng.random_range(0..self.refundable.len());
            let r = self.refundable.swap_remove_back(i)?;
            let Some(home) = self
                .wallets
                .get(&r.wallet)
                .filter(|w| w.status == WalletStatus::Active)
                .and_then(|_| self.owner(r.wallet))
                .map(|(_, u)| u.country)
            else {
                continue;
            };
            let amount = if kind == TxKind::Refund && self.rng.random_bool(0.4) {
                self.scaled(r.amount, 0.2, 0.9).min(r.amount)
            } else {
                r.amount
            };
            let action = if kind == TxKind::Refund {
                ActionKind::Refund
            } else {
                ActionKind::Chargeback
            };
            let mut d = Draft::new(action);
            self.post(
                &mut d,
                TxSpec {
                    merchant: r.merchant,
                    ..TxSpec::new(r.wallet, kind, amount, TxStatus::Settled, home)
                },
            )?;
            return Some(d);
        }
        None
    }

    /// Moves a random pending transaction to its final status. Failing or reversing undoes its effect in the
    /// same action; an undo that would take the wallet below zero (a deposit already spent) settles instead.
    fn settle(&mut self) -> Option<Draft> {
        if self.pending.is_empty() {
            return None;
        }
        let p = self
            .pending
            .swap_remove(self.rng.random_range(0..self.pending.len()));
        let roll: f64 = self.rng.random();
        let w = self.wallets.get_mut(&p.wallet)?;
        let wanted = if roll < 0.9 {
            TxStatus::Settled
        } else if p.kind.is_credit() || roll < 0.96 {
            TxStatus::Failed
        } else {
            TxStatus::Reversed
        };
        let undo_ok = w.balance - p.effect >= 0 && !(w.busy && p.effect > 0);
        let status = if wanted != TxStatus::Settled && !undo_ok {
            TxStatus::Settled
        } else {
            wanted
        };
        let mut d = Draft::new(ActionKind::Settle);
        d.changes
            .push(RowChange::SetTransactionStatus { id: p.id, status });
        if status == TxStatus::Settled {
            if p.kind == TxKind::Payment && p.amount > 0 {
                if self.refundable.len() >= REFUNDABLE_CAP {
                    self.refundable.pop_front();
                }
                self.refundable.push_back(Refundable {
                    wallet: p.wallet,
                    amount: p.amount,
                    merchant: p.merchant,
                });
            }
        } else {
            w.balance -= p.effect;
            d.changes.push(RowChange::SetWalletBalance {
                id: p.wallet,
                balance: dec(w.balance),
            });
        }
        Some(d)
    }

    fn freeze(&mut self) -> Option<Draft> {
        let id = self.pick_wallet(|w| w.status == WalletStatus::Active && !w.busy)?;
        self.wallets.get_mut(&id)?.status = WalletStatus::Frozen;
        self.frozen.insert(id);
        let mut d = Draft::new(ActionKind::FreezeWallet);
        d.changes.push(RowChange::SetWalletStatus {
            id,
            status: WalletStatus::Frozen,
        });
        Some(d)
    }

    fn unfreeze(&mut self) -> Option<Draft> {
        let id = self.frozen.choose(&mut self.rng)?;
        self.frozen.remove(id);
        self.wallets.get_mut(&id)?.status = WalletStatus::Active;
        let mut d = Draft::new(ActionKind::UnfreezeWallet);
        d.changes.push(RowChange::SetWalletStatus {
            id,
            status: WalletStatus::Active,
        });
        Some(d)
    }

    fn forget_wallet(&mut self, id: WalletId) {
        self.wallets.remove(&id);
        self.wallet_list.remove(id);
        self.frozen.remove(id);
        self.unused_wallets.remove(id);
    }

    /// Deletes a user who never transacted, wallets first. Users with transactions are never deleted, so every
    /// transaction's wallet and user keep existing.
    fn delete_user(&mut self) -> Option<Draft> {
        let id = self.idle_users.choose(&mut self.rng)?;
        let user = self.users.remove(&id)?;
        self.user_list.remove(id);
        self.idle_users.remove(id);
        let mut d = Draft::new(ActionKind::DeleteUser);
        for w in user.wallets {
            self.forget_wallet(w);
            d.changes.push(RowChange::DeleteWallet(w));
        }
        d.changes.push(RowChange::DeleteUser(id));
        Some(d)
    }

    /// Deletes an unused wallet of a user who keeps at least one other.
    fn delete_wallet(&mut self) -> Option<Draft> {
        let (id, user) = (0..PICK_TRIES).find_map(|_| {
            let id = self.unused_wallets.choose(&mut self.rng)?;
            let user = self.wallets.get(&id)?.user;
            (self.users.get(&user)?.wallets.len() >= 2).then_some((id, user))
        })?;
        self.users.get_mut(&user)?.wallets.retain(|w| *w != id);
        self.forget_wallet(id);
        let mut d = Draft::new(ActionKind::DeleteWallet);
        d.changes.push(RowChange::DeleteWallet(id));
        Some(d)
    }
}

fn effect_cents(kind: TxKind, amount: i64, fee: i64) -> i64 {
    if kind.is_credit() {
        amount
    } else {
        -(amount + fee)
    }
}

impl Iterator for Model {
    type Item = Action;

    fn next(&mut self) -> Option<Action> {
        Some(self.next_action())
    }
}

#[cfg(test)]
mod tests;
