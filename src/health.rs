//! Liveness and readiness, as served at `/healthz` and `/readyz` (see [`crate::http`]).
//!
//! Contract:
//! * **Live** while `pipeline::run` is looping, including between generations (a restart is the pipeline
//!   healing itself, not a reason to kill the process).
//! * **Ready** only when all of: recovery of the current generation has finished, the partitions are being
//!   consumed, and the last successful checkpoint is younger than `observability.ready_max_checkpoint_age`. Before
//!   the first checkpoint of a generation, the age counts from the moment consuming started, so a fresh instance is
//!   ready at once and turns unready if its first checkpoint never completes.
//!
//! The pipeline reports phase changes; the coordinator reports completed checkpoints. Updates happen a few times
//! per checkpoint interval, so a mutex costs nothing measurable.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the current generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting to Kafka and the catalog.
    Starting,
    /// Finishing commit intents and restoring state.
    Recovering,
    /// Polling and checkpointing: the only phase in which the instance can be ready.
    Consuming,
    /// A generation failed; the next starts after a backoff.
    Restarting,
    /// SIGTERM received: final checkpoint in progress.
    Draining,
    /// `pipeline::run` has returned.
    Stopped,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// The last completed checkpoint of this generation, or when consuming started: the origin of the age bound.
    last_progress: Option<Instant>,
    last_checkpoint: Option<u64>,
}

/// Shared health state. One per process in production; tests create their own.
#[derive(Debug)]
pub struct Health {
    /// Checkpoints older than this make the instance unready.
    max_checkpoint_age: Duration,
    state: Mutex<State>,
}

/// Why `/readyz` says no, as a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("starting: connecting to Kafka and the catalog")]
    Starting,
    #[error("recovering from the last checkpoint")]
    Recovering,
    #[error("restarting after a failed generation")]
    Restarting,
    #[error("draining for shutdown")]
    Draining,
    #[error("stopped")]
    Stopped,
    #[error(
        "checkpoints stalled: last progress {age_ms} ms ago (bound {bound_ms} ms, last checkpoint {last:?})"
    )]
    Stalled {
        age_ms: u64,
        bound_ms: u64,
        last: Option<u64>,
    },
}

impl Health {
    pub fn new(max_checkpoint_age: Duration) -> Self {
        Health {
            max_checkpoint_age,
            state: Mutex::new(State {
                phase: Phase::Starting,
                last_progress: None,
                last_checkpoint: None,
            }),
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        // A poisoned lock only means a panic elsewhere while updating plain data; keep reporting.
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    pub fn set_phase(&self, phase: Phase) {
        self.update(|s| {
            if phase == Phase::Consuming && s.phase != Phase::Consuming {
                s.last_progress = Some(Instant::now());
            }
            s.phase = phase;
        });
    }

    /// Checkpoint `id` is durable.
    pub fn checkpoint_completed(&self, id: u64) {
        self.update(|s| {
            s.last_progress = Some(Instant::now());
            s.last_checkpoint = Some(id);
        });
    }

    pub fn phase(&self) -> Phase {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).phase
    }

    pub fn is_live(&self) -> bool {
        self.phase() != Phase::Stopped
    }

    pub fn readiness(&self) -> Result<(), NotReady> {
        self.readiness_at(Instant::now())
    }

    /// Readiness as of `now` (an explicit clock, so tests need not sleep).
    pub fn readiness_at(&self, now: Instant) -> Result<(), NotReady> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.phase {
            Phase::Starting => Err(NotReady::Starting),
            Phase::Recovering => Err(NotReady::Recovering),
            Phase::Restarting => Err(NotReady::Restarting),
            Phase::Draining => Err(NotReady::Draining),
            Phase::Stopped => Err(NotReady::Stopped),
            Phase::Consuming => {
                let age = s
                    .last_progress
                    .map(|t| now.saturating_duration_since(t))
                    .unwrap_or(Duration::MAX);
                if age > self.max_checkpoint_age {
                    Err(NotReady::Stalled {
                        age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                        bound_ms: u64::try_from(self.max_checkpoint_age.as_millis())
                            .unwrap_or(u64::MAX),
                        last: s.last_checkpoint,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_consuming_and_checkpointing() {
        let h = Health::new(Duration::from_secs(30));
        assert_eq!(h.readiness(), Err(NotReady::Starting));
        h.set_phase(Phase::Recovering);
        assert_eq!(h.readiness(), Err(NotReady::Recovering));
        h.set_phase(Phase::Consuming);
        let t0 = Instant::now();
        assert_eq!(h.readiness_at(t0), Ok(()));
        // No checkpoint within the bound after consuming started: stalled.
        let stalled = h.readiness_at(t0 + Duration::from_secs(31));
        assert!(
            matches!(
                stalled,
                Err(NotReady::Stalled {
                    last: None,
                    bound_ms: 30_000,
                    ..
                })
            ),
            "{stalled:?}"
        );
        h.checkpoint_completed(7);
        let t1 = Instant::now();
        assert_eq!(h.readiness_at(t1 + Duration::from_secs(29)), Ok(()));
        assert!(matches!(
            h.readiness_at(t1 + Duration::from_secs(31)),
            Err(NotReady::Stalled { last: Some(7), .. })
        ));
        h.set_phase(Phase::Restarting);
        assert_eq!(h.readiness_at(t1), Err(NotReady::Restarting));
        assert!(h.is_live());
        h.set_phase(Phase::Stopped);
        assert!(!h.is_live());
    }

    #[test]
    fn a_new_generation_restarts_the_age_clock() {
        let h = Health::new(Duration::from_secs(10));
        h.set_phase(Phase::Consuming);
        h.set_phase(Phase::Restarting);
        std::thread::sleep(Duration::from_millis(20));
        h.set_phase(Phase::Consuming);
        let now = Instant::now();
        assert_eq!(h.readiness_at(now + Duration::from_millis(9_990)), Ok(()));
    }
}
