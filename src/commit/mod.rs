//! The commit protocol, in one place: how a checkpoint becomes visible in the lakehouse, exactly once, and how a
//! stale writer is kept out.
//!
//! ledgerstream commits through the catalog's own protocol, built from iceberg's public spec types, never through
//! iceberg-rust's `Transaction::commit` (which reloads, re-applies and retries on conflict: a zombie would
//! silently rebase onto its successor's commits, and any check made before it is not atomic with the swap).
//!
//! The steps, one file each:
//! 0. [`fence`]: per table, per writer and per source partition, a mark `{epoch, checkpoint}` in the table
//!    properties. The verdict on a base metadata file says: commit, already committed, or fenced.
//! 1. [`produce`]: stage a table's change on that exact base: manifests, manifest list, snapshot (with the
//!    checkpoint id, writer, epoch and offsets in its summary) and the new marks, in a new metadata.json.
//! 2. [`swap`]: publish every staged table of the checkpoint in one SQL transaction of compare-and-swaps.
//! 3. [`protocol`]: [`claim`] an epoch at start (a swap of new marks into every table), and [`commit_checkpoint`]
//!    with bounded retries that re-validate on the new head, never rebase.
//!
//! Invariants:
//! - A checkpoint is in every table of its commit or in none (SQL catalog).
//! - A commit lands only if, in the exact metadata it replaces, no owned partition has a higher epoch and the
//!   checkpoint is not already there. Since the swap is a compare-and-swap on that metadata file, the check and
//!   the swap are one atomic step.
//! - A claim is itself a swap into every table, so once a new epoch is claimed no older one can commit, even a
//!   process that was stopped mid-commit and wakes up later.
//! - Failed attempts leave only unreferenced files (orphans); nothing here ever deletes a file that an unknown
//!   outcome might have published.
//!
//! The REST catalog still commits table by table through iceberg-rust (see `protocol::legacy_commit`); its own
//! `CommitTableRequest` path is not built yet.

pub mod fence;
pub mod produce;
pub mod protocol;
pub mod swap;

pub use fence::{Fence, PartitionMark, Verdict};
pub use produce::{Staged, TableChange};
pub use protocol::{
    Committed, Files, claim, commit_checkpoint, ensure_not_fenced, newest_checkpoint,
};
pub use swap::{SqlSwap, SwapOutcome};

#[cfg(test)]
mod tests;
