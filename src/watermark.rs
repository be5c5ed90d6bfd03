//! Event-time watermarks of one partition, derived from source commit times only (never wall time).
//!
//! A partition reads three topics (users, wallets, transactions) through independent queues, so one topic may be
//! read ahead of another. A transaction can be joined with the user and wallet *as they stood at its source
//! position* only once every topic has delivered everything up to that position. Two bounds decide when:
//!
//! * **complete**: every input has delivered a record with a later commit time. Each topic is in commit order
//!   within a partition, so nothing at or before that time can still arrive. This is exact.
//! * **bounded**: the newest commit time seen on any input, minus `max_delay`. An input that is quiet (a user
//!   table that rarely changes) would otherwise hold everything back forever; after `max_delay` of event time the
//!   join goes ahead with what it has, and says so in `enrichment_status` when a dimension is missing.
//!
//! The watermark is the larger of the two, and never moves backwards. [`Watermarks::flush_idle`] lets the caller
//! release everything seen when the partition has received nothing for a whole checkpoint interval (then every
//! topic is caught up, so the join is complete anyway); it is driven by checkpoint barriers, not by a clock, so
//! tests stay deterministic.
//!
//! Replays are deterministic as long as no topic lags another by more than `max_delay` of event time, which the
//! per-partition queues with bounded in-flight records keep true in practice.

use serde::{Deserialize, Serialize};

/// Watermark state of one partition; persisted with the partition's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    /// Newest commit time (µs) seen per input, `None` until the input delivers its first change.
    high: Vec<Option<i64>>,
    /// The current watermark (µs); `i64::MIN` before anything is known.
    current: i64,
}

impl Watermarks {
    pub fn new(inputs: usize) -> Self {
        Watermarks {
            high: vec![None; inputs],
            current: i64::MIN,
        }
    }

    /// Adapts state restored from a checkpoint taken with another number of inputs.
    pub fn resized(mut self, inputs: usize) -> Self {
        self.high.resize(inputs, None);
        self
    }

    /// Records the commit time of a change read from `input`.
    pub fn observe(&mut self, input: usize, source_ts_us: i64) {
        if let Some(h) = self.high.get_mut(input) {
            *h = Some(h.map_or(source_ts_us, |v| v.max(source_ts_us)));
        }
    }

    /// The newest commit time seen on any input.
    pub fn max_seen(&self) -> Option<i64> {
        self.high.iter().flatten().copied().max()
    }

    /// Everything at or before this time has been delivered by every input (exact bound), if known.
    pub fn complete(&self) -> Option<i64> {
        let mut min = i64::MAX;
        for h in &self.high {
            min = min.min((*h)?);
        }
        // Strictly earlier than the slowest input's newest change: more changes may share its commit time.
        Some(min.saturating_sub(1))
    }

    /// Advances the watermark from what has been observed and returns it.
    pub fn advance(&mut self, max_delay_us: i64) -> i64 {
        let bounded = self.max_seen().map(|m| m.saturating_sub(max_delay_us));
        for candidate in [self.complete(), bounded].into_iter().flatten() {
            self.current = self.current.max(candidate);
        }
        self.current
    }

    /// The partition was idle for a whole checkpoint interval: release everything seen so far.
    pub fn flush_idle(&mut self) -> i64 {
        if let Some(m) = self.max_seen() {
            self.current = self.current.max(m);
        }
        self.current
    }

    pub fn current(&self) -> i64 {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_waits_for_every_input() {
        let mut w = Watermarks::new(3);
        w.observe(0, 100);
        w.observe(2, 500);
        assert_eq!(w.complete(), None);
        // Only the delay bound moves it while an input is unknown.
        assert_eq!(w.advance(1_000_000), 500 - 1_000_000);
        w.observe(1, 300);
        assert_eq!(w.complete(), Some(99));
        assert_eq!(w.advance(1_000_000), 99);
    }

    #[test]
    fn bounded_delay_releases_a_quiet_input() {
        let mut w = Watermarks::new(2);
        w.observe(0, 1_000);
        w.observe(1, 50_000);
        // Input 0 is quiet; after `max_delay` of event time on input 1 the watermark moves regardless.
        assert_eq!(w.advance(10_000), 40_000);
        w.observe(1, 60_000);
        assert_eq!(w.advance(10_000), 50_000);
    }

    #[test]
    fn never_moves_backwards_and_flushes_when_idle() {
        let mut w = Watermarks::new(2);
        w.observe(0, 10_000);
        w.observe(1, 20_000);
        assert_eq!(w.advance(1_000), 19_000);
        // A late, older observation changes nothing.
        w.observe(0, 5_000);
        assert_eq!(w.advance(1_000), 19_000);
        assert_eq!(w.flush_idle(), 20_000);
        assert_eq!(w.advance(1_000), 20_000);
    }

    #[test]
    fn survives_a_bincode_round_trip_and_resizing() {
        let mut w = Watermarks::new(3);
        w.observe(1, 7);
        w.advance(0);
        let bytes = bincode::serde::encode_to_vec(&w, bincode::config::standard()).unwrap();
        let (back, _): (Watermarks, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back, w);
        let bigger = back.resized(4);
        assert_eq!(bigger.high.len(), 4);
        assert_eq!(bigger.current(), w.current());
    }
}
