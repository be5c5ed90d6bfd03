//! Partition actor `p`: owns the state store of partition `p` and turns its records into output rows.
//!
//! On `Records` it runs [`Processor::apply`] (state writes on a blocking section, never stalling the executor's
//! other tasks); on `Barrier(n)` it seals, takes state checkpoint `n` and hands the sealed output, together with
//! the backpressure permits of the sealed records, to the committer.

use super::committer::{CommitterMsg, Sealed};
use super::coordinator::CoordinatorMsg;
use crate::metrics;
use crate::processor::Processor;
use crate::source::SourceBatch;
use crate::types::{CheckpointId, PartitionId};
use ledgerstream_state::PartitionStore;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub enum PartitionMsg {
    Records(SourceBatch),
    Barrier {
        checkpoint: CheckpointId,
        /// The checkpoint's root span, so that `seal` joins its trace.
        span: tracing::Span,
    },
}

pub struct PartitionArgs {
    pub partition: PartitionId,
    pub store: Box<dyn PartitionStore>,
    pub processor: Processor,
    pub committer: ActorRef<CommitterMsg>,
    pub coordinator: ActorRef<CoordinatorMsg>,
    /// Pending records at which an early checkpoint is requested (half the in-flight budget), so that a busy
    /// partition never sits paused waiting for the timer.
    pub early_checkpoint_records: usize,
    /// The partition's in-flight budget (shared with the source) and its size: when every permit is free, nothing
    /// is buffered or paused anywhere for this partition, which is what makes an empty interval "idle".
    pub inflight: Arc<Semaphore>,
    pub inflight_capacity: usize,
}

pub struct PartitionState {
    args: PartitionArgs,
    /// Permits of records applied but not yet sealed.
    permits: Vec<OwnedSemaphorePermit>,
    early_requested: bool,
}

pub struct PartitionActor;

impl Actor for PartitionActor {
    type Msg = PartitionMsg;
    type State = PartitionState;
    type Arguments = PartitionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: PartitionArgs,
    ) -> Result<PartitionState, ActorProcessingErr> {
        Ok(PartitionState {
            args,
            permits: Vec::new(),
            early_requested: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: PartitionMsg,
        state: &mut PartitionState,
    ) -> Result<(), ActorProcessingErr> {
        let a = &mut state.args;
        match msg {
            PartitionMsg::Records(batch) => {
                tokio::task::block_in_place(|| {
                    a.processor.apply(a.store.as_mut(), &batch.records)
                })?;
                if let Some(p) = batch.permit {
                    state.permits.push(p);
                }
                if !state.early_requested
                    && a.processor.pending_records() >= a.early_checkpoint_records
                {
                    state.early_requested = true;
                    a.coordinator.cast(CoordinatorMsg::RequestEarly)?;
                }
            }
            PartitionMsg::Barrier {
                checkpoint,
                span: root,
            } => {
                let span = tracing::info_span!(
                    parent: &root,
                    "seal",
                    checkpoint_id = checkpoint.0,
                    partition = a.partition.0
                );
                let idle = a.processor.pending_records() == 0
                    && state.permits.is_empty()
                    && a.inflight.available_permits() == a.inflight_capacity;
                let (output, state_bytes) = tokio::task::block_in_place(|| {
                    let _g = span.enter();
                    let output = a.processor.seal(a.store.as_mut(), idle)?;
                    crate::failpoint!("partition::before_state_checkpoint");
                    a.store.checkpoint(checkpoint.0)?;
                    let bytes = a.store.approximate_size_bytes().unwrap_or(0);
                    Ok::<_, ActorProcessingErr>((output, bytes))
                })?;
                metrics::state_size(a.partition, state_bytes);
                state.early_requested = false;
                // The seal ends before the committer can see it: the checkpoint's trace is complete (and exported
                // ahead of the commit spans) however the actors are scheduled afterwards.
                drop(span);
                a.committer.cast(CommitterMsg::Sealed(Sealed {
                    checkpoint,
                    partition: a.partition,
                    output,
                    state_bytes,
                    permits: std::mem::take(&mut state.permits),
                }))?;
            }
        }
        Ok(())
    }
}
