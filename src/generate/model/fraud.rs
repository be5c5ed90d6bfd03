//! Fraud episodes: choosing a suitable wallet, planning the episode, and posting one step per action.
//!
//! Multi-step episodes mark their wallet `busy`, which keeps normal debits, freezes, failed deposits and other
//! episodes away from it, so the amounts planned at the start stay within the balance until the end.

use super::{
    ABROAD, ActionKind, COUNTRIES, Draft, Episode, FraudEpisode, FraudPattern, FraudStep,
    MERCHANTS, Model, Plan, TxSpec, payment_fee,
};
use crate::generate::rows::{TxKind, TxStatus};
use rand::Rng;

impl Model {
    /// Starts an episode of a random pattern on a suitable wallet and returns its first step, or `None` when no
    /// wallet suits the pattern yet.
    pub(super) fn start_fraud(&mut self) -> Option<Draft> {
        let pattern = self.pick_mut(&FraudPattern::ALL);
        let min = match pattern {
            FraudPattern::VelocityBurst => 5_000,
            FraudPattern::CountryHopping => 2_000,
            FraudPattern::AmountSpike | FraudPattern::Overdraft | FraudPattern::RapidDrain => 0,
        };
        let wallet = self.spendable(min)?;
        let (user, home, norm) = self.owner(wallet).map(|(id, u)| (id, u.country, u.norm))?;
        let balance = self.wallets.get(&wallet)?.balance;
        let plan = match pattern {
            FraudPattern::VelocityBurst => {
                let n = self.rng.random_range(8..=15u32);
                // n payments plus their fees stay within 80% of the balance.
                let amount = (balance * 6 / 10 / i64::from(n)).max(1);
                Some(Plan::Burst {
                    remaining: n,
                    amount,
                })
            }
            FraudPattern::CountryHopping => {
                let n = self.rng.random_range(3..=5usize);
                let mut countries: Vec<&'static str> = Vec::with_capacity(n);
                while countries.len() < n {
                    let c = if self.rng.random_bool(0.5) {
                        self.pick_mut(ABROAD)
                    } else {
                        self.pick_mut(COUNTRIES).0
                    };
                    if c != home && !countries.contains(&c) {
                        countries.push(c);
                    }
                }
                let amount = (balance / 2 / n as i64).min(norm * 2).max(1);
                Some(Plan::Hop { countries, amount })
            }
            FraudPattern::RapidDrain => Some(Plan::Drain { deposit: 0 }),
            FraudPattern::AmountSpike | FraudPattern::Overdraft => None,
        };
        let episode = self.next_episode;
        self.next_episode += 1;
        let mut d = Draft::new(ActionKind::Payment);
        d.fraud = Some(FraudStep {
            episode,
            pattern,
            completed: None,
        });
        let Some(plan) = plan else {
            // Single-step patterns.
            let tx = match pattern {
                FraudPattern::AmountSpike => {
                    let amount = self.scaled(norm, 20.0, 50.0);
                    let fee = payment_fee(amount);
                    let pays = amount + fee <= balance;
                    d.kind = if pays {
                        ActionKind::Payment
                    } else {
                        ActionKind::Deposit
                    };
                    let merchant = self.pick_mut(MERCHANTS);
                    TxSpec {
                        wallet,
                        kind: if pays {
                            TxKind::Payment
                        } else {
                            TxKind::Deposit
                        },
                        amount,
                        fee: if pays { fee } else { 0 },
                        status: TxStatus::Pending,
                        country: home,
                        merchant: pays.then_some(merchant),
                        counterparty: None,
                        fresh_device: true,
                        defect: None,
                    }
                }
                _ => {
                    d.kind = ActionKind::Withdrawal;
                    let over = self.scaled(norm, 0.5, 3.0);
                    TxSpec {
                        fresh_device: true,
                        ..TxSpec::new(
                            wallet,
                            TxKind::Withdrawal,
                            balance.max(0) + over,
                            TxStatus::Pending,
                            home,
                        )
                    }
                }
            };
            let id = self.post(&mut d, tx)?;
            d.fraud = Some(FraudStep {
                episode,
                pattern,
                completed: Some(FraudEpisode {
                    episode,
                    pattern,
                    user_id: user,
                    wallet_id: wallet,
                    transaction_ids: vec![id],
                }),
            });
            return Some(d);
        };
        self.wallets.get_mut(&wallet)?.busy = true;
        self.episodes.insert(
            episode,
            Episode {
                pattern,
                user,
                wallet,
                tx_ids: Vec::new(),
                plan,
            },
        );
        self.run_step(episode, d)
    }

    pub(super) fn episode_step(&mut self, episode: u64) -> Option<Draft> {
        let pattern = self.episodes.get(&episode)?.pattern;
        let mut d = Draft::new(ActionKind::Payment);
        d.fraud = Some(FraudStep {
            episode,
            pattern,
            completed: None,
        });
        self.run_step(episode, d)
    }

    /// Posts the next transaction of a multi-step episode into `d`, then either schedules the following step or
    /// completes the episode.
    fn run_step(&mut self, episode: u64, mut d: Draft) -> Option<Draft> {
        let (wallet, home) = {
            let e = self.episodes.get(&episode)?;
            (e.wallet, self.users.get(&e.user)?.country)
        };
        let merchant = self.pick_mut(MERCHANTS);
        let payment = |amount: i64, country: &'static str| TxSpec {
            fee: payment_fee(amount),
            merchant: Some(merchant),
            fresh_device: true,
            ..TxSpec::new(wallet, TxKind::Payment, amount, TxStatus::Pending, country)
        };
        let gap = self.rng.random_range(3..=20u64);
        let deposit_factor = self.rng.random_range(10.0..30.0);
        let drain_share = self.rng.random_range(0.85..0.98);
        let e = self.episodes.get_mut(&episode)?;
        let (spec, next_due) = match &mut e.plan {
            Plan::Burst { remaining, amount } => {
                *remaining -= 1;
                (payment(*amount, home), (*remaining > 0).then_some(1))
            }
            Plan::Hop { countries, amount } => {
                let country = countries.pop()?;
                (
                    payment(*amount, country),
                    (!countries.is_empty()).then_some(1),
                )
            }
            Plan::Drain { deposit } if *deposit == 0 => {
                let norm = self.users.get(&e.user)?.norm;
                let amount = ((norm as f64) * deposit_factor).round() as i64;
                *deposit = amount;
                d.kind = ActionKind::Deposit;
                let spec = TxSpec {
                    kind: TxKind::Deposit,
                    fee: 0,
                    merchant: None,
                    fresh_device: false,
                    ..payment(amount, home)
                };
                (spec, Some(gap))
            }
            Plan::Drain { deposit } => {
                d.kind = ActionKind::Withdrawal;
                let amount = ((*deposit as f64) * drain_share).round() as i64;
                let spec = TxSpec {
                    kind: TxKind::Withdrawal,
                    fee: 0,
                    merchant: None,
                    ..payment(amount, home)
                };
                (spec, None)
            }
        };
        let id = self.post(&mut d, spec)?;
        let e = self.episodes.get_mut(&episode)?;
        e.tx_ids.push(id);
        match next_due {
            Some(gap) => {
                self.agenda.insert((self.seq + gap, episode));
            }
            None => {
                let e = self.episodes.remove(&episode)?;
                if let Some(w) = self.wallets.get_mut(&e.wallet) {
                    w.busy = false;
                }
                if let Some(step) = d.fraud.as_mut() {
                    step.completed = Some(FraudEpisode {
                        episode,
                        pattern: e.pattern,
                        user_id: e.user,
                        wallet_id: e.wallet,
                        transaction_ids: e.tx_ids,
                    });
                }
            }
        }
        Some(d)
    }
}
