//! Supervisor of one pipeline generation. Its children are the coordinator, the committer and the partition
//! actors. Any child failing (error or panic) or stopping unexpectedly fails the whole generation: a half-applied
//! partition must never keep running, and the only safe restart point is the last complete checkpoint. The
//! pipeline loop (`crate::pipeline`) then restarts a new generation with capped exponential backoff.

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;

/// An error a restart cannot fix, because a configured policy says to stop (data-quality `halt`, schema
/// `type_change = "halt"`). An actor failing with it ends the pipeline instead of restarting the generation.
#[derive(Debug, thiserror::Error)]
#[error("halting by policy: {0}")]
pub struct PolicyHalt(pub String);

/// How a generation ended.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    /// The failure was a [`PolicyHalt`]: do not restart.
    pub halt: bool,
    /// A newer epoch of this writer took over: do not restart (it would fight the new owner), exit non-zero.
    pub fenced: bool,
}

/// Whether an actor's error is a fenced commit.
fn is_fenced(err: &ActorProcessingErr) -> bool {
    matches!(
        err.downcast_ref::<crate::sink::SinkError>(),
        Some(crate::sink::SinkError::Fenced { .. })
    )
}

/// Whether an actor's error is a policy halt, directly or inside a [`ProcessError`](crate::processor::ProcessError).
fn is_halt(err: &ActorProcessingErr) -> bool {
    err.downcast_ref::<PolicyHalt>().is_some()
        || err
            .downcast_ref::<crate::processor::ProcessError>()
            .is_some_and(crate::processor::ProcessError::is_fatal)
}

pub struct SupervisorActor;

pub struct SupervisorArgs {
    /// Receives the first failure of the generation. Capacity 1 is enough: the first failure ends it.
    pub failures: mpsc::Sender<Failure>,
}

pub struct SupervisorState {
    failures: mpsc::Sender<Failure>,
    stopping: bool,
}

/// Tells the supervisor that children stopping from now on is expected (drain).
pub struct StopExpected;

impl Actor for SupervisorActor {
    type Msg = StopExpected;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            failures: args.failures,
            stopping: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        _msg: StopExpected,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        state.stopping = true;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let failure = match event {
            SupervisionEvent::ActorFailed(who, err) => Some(Failure {
                message: format!("{} failed: {err}", who.get_name().unwrap_or_default()),
                halt: is_halt(&err),
                fenced: is_fenced(&err),
            }),
            SupervisionEvent::ActorTerminated(who, _, reason) if !state.stopping => Some(Failure {
                message: format!(
                    "{} stopped unexpectedly: {}",
                    who.get_name().unwrap_or_default(),
                    reason.unwrap_or_default()
                ),
                halt: false,
                fenced: false,
            }),
            _ => None,
        };
        if let Some(f) = failure {
            let _ = state.failures.try_send(f);
        }
        Ok(())
    }
}
