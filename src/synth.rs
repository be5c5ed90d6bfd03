//! Synthetic Debezium-format change events, for benchmarks and crash tests that must bypass Debezium (the slow
//! stage here, about 3k events/s) and need an exact ground truth.
//!
//! The stream is a pure function of `(seed, users)`: record `i` is always the same bytes, with the same key, table,
//! primary key and LSN. Records are shaped exactly like Debezium 3.x with `decimal.handling.mode=string` and JSON
//! without schemas, keyed by the bare user id, so the real decoder and partitioning are exercised.

use crate::cdc::SourceTable;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One synthetic record and what it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthRecord {
    pub table: SourceTable,
    /// Kafka key: the bare user id.
    pub key: i64,
    pub pk: i64,
    pub lsn: u64,
    /// `c` or `u`; `None` for a deliberately malformed payload.
    pub op: Option<char>,
    pub payload: Vec<u8>,
}

/// Deterministic generator of synthetic changes.
pub struct Synth {
    rng: ChaCha8Rng,
    users: i64,
    created_users: i64,
    next_tx: i64,
    pending_tx: Vec<(i64, i64, i64)>,
    lsn: u64,
    /// Microseconds since the epoch of the next event; advanced by 100 µs per event unless [`Synth::set_now_us`]
    /// pins it (the benchmark pins it to wall time to measure freshness).
    now_us: i64,
    bad_every: Option<u64>,
    emitted: u64,
}

const COUNTRIES: [&str; 6] = ["US", "GB", "DE", "FR", "NG", "BR"];
const MERCHANTS: [&str; 5] = ["acme", "globex", "initech", "umbrella", "hooli"];

impl Synth {
    /// `users` users are created first (user + wallet each), then transactions and settlements among them.
    pub fn new(seed: u64, users: i64) -> Self {
        Synth {
            rng: ChaCha8Rng::seed_from_u64(seed),
            users: users.max(1),
            created_users: 0,
            next_tx: 1,
            pending_tx: Vec::new(),
            lsn: 1 << 24,
            now_us: 1_764_000_000_000_000,
            bad_every: None,
            emitted: 0,
        }
    }

    /// Makes every `n`-th record malformed JSON (it must end up in quarantine).
    pub fn with_bad_every(mut self, n: u64) -> Self {
        self.bad_every = (n > 0).then_some(n);
        self
    }

    pub fn set_now_us(&mut self, now_us: i64) {
        self.now_us = now_us;
    }

    fn ts(&self) -> String {
        let secs = self.now_us.div_euclid(1_000_000);
        let micros = self.now_us.rem_euclid(1_000_000);
        match chrono::DateTime::from_timestamp(secs, (micros * 1000) as u32) {
            Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            None => "1970-01-01T00:00:00.000000Z".into(),
        }
    }

    fn source(&self, table: &str, tx: i64) -> String {
        let ms = self.now_us / 1000;
        format!(
            r#"{{"version":"3.6.3.Final","connector":"postgresql","name":"fintech","ts_ms":{ms},"snapshot":"false","db":"fintech","sequence":"[null,\"{lsn}\"]","ts_us":{us},"ts_ns":{ns},"schema":"public","table":"{table}","txId":{tx},"lsn":{lsn},"xmin":null}}"#,
            lsn = self.lsn,
            us = self.now_us,
            ns = self.now_us * 1000,
        )
    }

    fn envelope(&self, op: char, before: &str, after: &str, table: &str, tx: i64) -> Vec<u8> {
        format!(
            r#"{{"before":{before},"after":{after},"source":{},"transaction":null,"op":"{op}","ts_ms":{}}}"#,
            self.source(table, tx),
            self.now_us / 1000
        )
        .into_bytes()
    }

    fn tx_row(
        &self,
        id: i64,
        user: i64,
        amount_cents: i64,
        status: &str,
        country: &str,
        merchant: &str,
    ) -> String {
        let ts = self.ts();
        format!(
            r#"{{"id":{id},"wallet_id":{user},"user_id":{user},"counterparty_wallet_id":null,"kind":"payment","amount":"{}.{:02}","fee":"0.30","currency":"USD","status":"{status}","country":"{country}","merchant":"{merchant}","created_at":"{ts}","updated_at":"{ts}"}}"#,
            amount_cents / 100,
            amount_cents % 100
        )
    }

    fn next_record(&mut self) -> SynthRecord {
        self.lsn += 8 + self.rng.random_range(0..64);
        self.now_us += 100;
        self.emitted += 1;
        let txid = (self.lsn / 8) as i64;
        if self.created_users < self.users && (self.created_users < 8 || self.rng.random_bool(0.1))
        {
            // Alternate: user first, then its wallet.
            let id = self.created_users + 1;
            let ts = self.ts();
            if self.emitted % 2 == 1 {
                let country = COUNTRIES[(id as usize) % COUNTRIES.len()];
                let after = format!(
                    r#"{{"id":{id},"email":"user{id}@example.com","full_name":"User {id}","country":"{country}","kyc_status":"verified","risk_tier":"low","created_at":"{ts}","updated_at":"{ts}"}}"#
                );
                let payload = self.envelope('c', "null", &after, "users", txid);
                return SynthRecord {
                    table: SourceTable::Users,
                    key: id,
                    pk: id,
                    lsn: self.lsn,
                    op: Some('c'),
                    payload,
                };
            }
            self.created_users += 1;
            let after = format!(
                r#"{{"id":{id},"user_id":{id},"currency":"USD","balance":"1000.00","status":"active","created_at":"{ts}","updated_at":"{ts}"}}"#
            );
            let payload = self.envelope('c', "null", &after, "wallets", txid);
            return SynthRecord {
                table: SourceTable::Wallets,
                key: id,
                pk: id,
                lsn: self.lsn,
                op: Some('c'),
                payload,
            };
        }
        let users = self.created_users.max(1);
        if !self.pending_tx.is_empty() && self.rng.random_bool(0.3) {
            let i = self.rng.random_range(0..self.pending_tx.len());
            let (id, user, amount) = self.pending_tx.swap_remove(i);
            let country = COUNTRIES[(user as usize) % COUNTRIES.len()];
            let merchant = MERCHANTS[(id as usize) % MERCHANTS.len()];
            let before = self.tx_row(id, user, amount, "pending", country, merchant);
            let after = self.tx_row(id, user, amount, "settled", country, merchant);
            let payload = self.envelope('u', &before, &after, "transactions", txid);
            return SynthRecord {
                table: SourceTable::Transactions,
                key: user,
                pk: id,
                lsn: self.lsn,
                op: Some('u'),
                payload,
            };
        }
        let id = self.next_tx;
        self.next_tx += 1;
        let user = self.rng.random_range(1..=users);
        let amount = self.rng.random_range(100..500_000);
        let country = COUNTRIES[(user as usize) % COUNTRIES.len()];
        let merchant = MERCHANTS[(id as usize) % MERCHANTS.len()];
        if self.pending_tx.len() < 10_000 {
            self.pending_tx.push((id, user, amount));
        }
        let after = self.tx_row(id, user, amount, "pending", country, merchant);
        let payload = self.envelope('c', "null", &after, "transactions", txid);
        SynthRecord {
            table: SourceTable::Transactions,
            key: user,
            pk: id,
            lsn: self.lsn,
            op: Some('c'),
            payload,
        }
    }
}

impl Iterator for Synth {
    type Item = SynthRecord;

    fn next(&mut self) -> Option<SynthRecord> {
        let mut r = self.next_record();
        if let Some(n) = self.bad_every
            && self.emitted.is_multiple_of(n)
        {
            let cut = r.payload.len() / 2;
            r.payload.truncate(cut);
            r.op = None;
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::{self, Decoded};

    #[test]
    fn stream_is_deterministic_and_decodes() {
        let a: Vec<_> = Synth::new(7, 50).take(2000).collect();
        let b: Vec<_> = Synth::new(7, 50).take(2000).collect();
        assert_eq!(a, b);
        let c: Vec<_> = Synth::new(8, 50).take(2000).collect();
        assert_ne!(a, c);
        let mut lsn = 0;
        for r in &a {
            assert!(r.lsn > lsn, "LSNs increase");
            lsn = r.lsn;
            let key = r.key.to_string();
            match cdc::decode(r.table, Some(key.as_bytes()), Some(&r.payload)) {
                Ok(Decoded::Change(ev)) => {
                    assert_eq!(ev.pk(), Some(r.pk));
                    assert_eq!(ev.lsn.0, r.lsn);
                    assert_eq!(ev.key, Some(r.key));
                }
                other => panic!("record {r:?} decoded to {other:?}"),
            }
        }
        let tables: std::collections::BTreeSet<_> = a.iter().map(|r| r.table.name()).collect();
        assert_eq!(tables.len(), 3);
    }

    #[test]
    fn bad_records_fail_to_decode() {
        let recs: Vec<_> = Synth::new(1, 10).with_bad_every(10).take(100).collect();
        let bad: Vec<_> = recs.iter().filter(|r| r.op.is_none()).collect();
        assert_eq!(bad.len(), 10);
        for r in bad {
            assert!(cdc::decode(r.table, Some(b"1"), Some(&r.payload)).is_err());
        }
    }
}
