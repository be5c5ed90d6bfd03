//! The checkpoint coordinator: starts checkpoint `n` every `checkpoint_interval` (or early, when a partition's
//! in-flight budget is half used), with at most one checkpoint in flight, and runs the final checkpoint on drain.
//!
//! Barrier alignment is trivial by construction: a partition actor has a single mailbox fed by one poll thread,
//! so every record enqueued before `Barrier(n)` belongs to checkpoint `n` and every record after it to `n + 1`.
//!
//! Tracing: each checkpoint is one trace. The coordinator opens its root span `checkpoint` (attribute
//! `checkpoint_id`) and a child `barrier` span, and sends both inside the barrier messages, so that the spans the
//! partition actors (`seal`) and the committer (`parquet_write`, `iceberg_commit`, `state_checkpoint`) open attach
//! to the right checkpoint whichever task runs them. The root ends when the last holder drops it, after the
//! committer is done.

use super::committer::CommitterMsg;
use super::partition::PartitionMsg;
use crate::health::Health;
use crate::types::CheckpointId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub enum CoordinatorMsg {
    /// The partition actors, once spawned (they need the coordinator's address first). No barrier before this.
    Start(Vec<ActorRef<PartitionMsg>>),
    Tick,
    RequestEarly,
    /// Sent by the committer when checkpoint `n` is durable (or failed; failures also stop the committer).
    Completed(CheckpointId),
    /// Stop starting periodic checkpoints, run one final checkpoint and reply when it is durable.
    Drain(RpcReplyPort<CheckpointId>),
}

pub struct CoordinatorArgs {
    pub first: CheckpointId,
    pub interval: Duration,
    pub committer: ActorRef<CommitterMsg>,
    /// Told of every completed checkpoint, for `/readyz`.
    pub health: Arc<Health>,
}

pub struct CoordinatorState {
    next: CheckpointId,
    /// The open checkpoint, when it started, and its root span (kept so that it ends no earlier than completion).
    in_flight: Option<(CheckpointId, Instant, tracing::Span)>,
    early_pending: bool,
    drain: Option<(RpcReplyPort<CheckpointId>, Option<CheckpointId>)>,
    partitions: Vec<ActorRef<PartitionMsg>>,
    committer: ActorRef<CommitterMsg>,
    health: Arc<Health>,
    _ticker: tokio::task::JoinHandle<()>,
}

impl CoordinatorState {
    fn begin(
        &mut self,
        myself: &ActorRef<CoordinatorMsg>,
    ) -> Result<CheckpointId, ActorProcessingErr> {
        let n = self.next;
        self.next = n.next();
        // A root span: a checkpoint is its own trace, not a child of whatever the coordinator was doing.
        let root = tracing::info_span!(parent: None, "checkpoint", checkpoint_id = n.0);
        // Barrier alignment: from injection until the committer holds every partition's seal.
        let barrier = tracing::info_span!(
            parent: &root,
            "barrier",
            checkpoint_id = n.0,
            partitions = self.partitions.len()
        );
        self.in_flight = Some((n, Instant::now(), root.clone()));
        self.early_pending = false;
        tracing::debug!(checkpoint = n.0, "barrier");
        self.committer.cast(CommitterMsg::Expect {
            checkpoint: n,
            reply_to: myself.clone(),
            span: root.clone(),
            barrier,
        })?;
        for p in &self.partitions {
            p.cast(PartitionMsg::Barrier {
                checkpoint: n,
                span: root.clone(),
            })?;
        }
        Ok(n)
    }
}

pub struct CoordinatorActor;

impl Actor for CoordinatorActor {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState;
    type Arguments = CoordinatorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: CoordinatorArgs,
    ) -> Result<CoordinatorState, ActorProcessingErr> {
        let ticker = myself.send_interval(args.interval, || CoordinatorMsg::Tick);
        Ok(CoordinatorState {
            next: args.first,
            in_flight: None,
            early_pending: false,
            drain: None,
            partitions: Vec::new(),
            committer: args.committer,
            health: args.health,
            _ticker: ticker,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut CoordinatorState,
    ) -> Result<(), ActorProcessingErr> {
        state._ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: CoordinatorMsg,
        state: &mut CoordinatorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CoordinatorMsg::Start(partitions) => state.partitions = partitions,
            CoordinatorMsg::Tick | CoordinatorMsg::RequestEarly => {
                if state.drain.is_some() || state.partitions.is_empty() {
                    return Ok(());
                }
                if state.in_flight.is_none() {
                    state.begin(&myself)?;
                } else if matches!(msg, CoordinatorMsg::RequestEarly) {
                    state.early_pending = true;
                }
            }
            CoordinatorMsg::Completed(n) => {
                if let Some((id, started, _root)) = state.in_flight.take() {
                    if id != n {
                        return Err(
                            format!("checkpoint {n} completed while {id} was in flight").into()
                        );
                    }
                    tracing::info!(
                        checkpoint = n.0,
                        took_ms = started.elapsed().as_millis() as u64,
                        "checkpoint complete"
                    );
                }
                state.health.checkpoint_completed(n.0);
                match state.drain.take() {
                    Some((reply, Some(final_id))) if final_id == n => {
                        let _ = reply.send(n);
                    }
                    Some((reply, _)) => {
                        let final_id = state.begin(&myself)?;
                        state.drain = Some((reply, Some(final_id)));
                    }
                    None => {
                        if state.early_pending {
                            state.begin(&myself)?;
                        }
                    }
                }
            }
            CoordinatorMsg::Drain(reply) => {
                if state.in_flight.is_none() {
                    let final_id = state.begin(&myself)?;
                    state.drain = Some((reply, Some(final_id)));
                } else {
                    // Let the in-flight checkpoint finish, then start the final one (see `Completed`).
                    state.drain = Some((reply, None));
                }
            }
        }
        Ok(())
    }
}
