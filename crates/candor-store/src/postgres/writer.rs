//! The writer task: one per node, it takes every queued job and commits them in groups.
//!
//! Why a task and not a transaction per call: a commit costs a WAL flush, and folding
//! what queued up while the previous group committed into one transaction shares that
//! cost (group commit), exactly as the SQLite writer does. Consent jobs of a group run
//! in one transaction (each in a savepoint, so a refused withdrawal rolls back alone)
//! and ingest jobs in another (one multi-row insert for all of their rows). Consent
//! goes first, so a withdrawal queued before a batch is in force for it; across nodes
//! the database orders them (see `ingest`).
//!
//! Ingest groups are committed by up to [`INGEST_IN_FLIGHT`] concurrent transactions:
//! one transaction at a time left the database and this node idle in turn, waiting on
//! each other's round trips (a third of the CPU was idle in the benchmark). Running
//! them side by side is safe because nothing in an ingest group relies on the writer's
//! order: consent is re-checked under the shared gate lock, duplicates meet a unique
//! constraint, and ids come from a sequence.

use super::{consent, ingest, Shared};
use crate::types::*;
use crate::StoreError;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

pub(crate) enum Job {
    Consent {
        cmds: Vec<ConsentCommand>,
        reply: oneshot::Sender<Result<Vec<ConsentOutcome>, StoreError>>,
    },
    Ingest {
        rows: Vec<IngestRow>,
        reply: oneshot::Sender<Result<Vec<RowOutcome>, StoreError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Upper bound on events folded into one transaction, to bound commit latency and the
/// size of one statement's arrays.
const MAX_GROUP_ROWS: usize = 20_000;

/// Ingest transactions that may be committing at once on one node.
const INGEST_IN_FLIGHT: u32 = 3;

pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Job>) {
    let mut shutdown = None;
    let in_flight = Arc::new(Semaphore::new(INGEST_IN_FLIGHT as usize));
    while shutdown.is_none() {
        let Some(first) = rx.recv().await else { break };
        let mut group = vec![first];
        let mut rows = 0usize;
        while rows < MAX_GROUP_ROWS {
            match rx.try_recv() {
                Ok(j) => {
                    if let Job::Ingest { rows: r, .. } = &j {
                        rows += r.len();
                    }
                    group.push(j);
                }
                Err(_) => break,
            }
        }
        let mut consents = Vec::new();
        let mut ingests = Vec::new();
        for j in group {
            match j {
                Job::Consent { cmds, reply } => consents.push(consent::Job { cmds, reply }),
                Job::Ingest { rows, reply } => ingests.push(ingest::Job { rows, reply }),
                Job::Shutdown { reply } => shutdown = Some(reply),
            }
        }
        if !consents.is_empty() {
            consent::commit_group(&shared, consents).await;
        }
        if !ingests.is_empty() {
            // Closed only by this function, after the loop.
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                ingest::commit_group(&shared, ingests).await;
                drop(permit);
            });
        }
    }
    // Let committing groups finish (and answer) before the store reports shut down.
    let _ = in_flight.acquire_many(INGEST_IN_FLIGHT).await;
    in_flight.close();
    // Close the queue and fail anything still waiting, rather than leave it hanging.
    rx.close();
    while let Ok(j) = rx.try_recv() {
        match j {
            Job::Consent { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Job::Ingest { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Job::Shutdown { reply } => drop(reply.send(())),
        }
    }
    if let Some(r) = shutdown {
        let _ = r.send(());
    }
}

/// The same failure for every job of a failed group (errors are not `Clone`).
pub(crate) fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Closed => StoreError::Closed,
        StoreError::Contention(m) => StoreError::Contention(m.clone()),
        other => StoreError::Database(match other {
            StoreError::Database(m) => m.clone(),
            o => o.to_string(),
        }),
    }
}

/// Attempts of a transaction PostgreSQL aborts to break a deadlock or a serialization
/// conflict, before the error reaches the caller.
pub(crate) const ATTEMPTS: usize = 3;

/// Runs `f`, one whole transaction, again when PostgreSQL aborted it for contention
/// (`StoreError::Contention`): everything it did was rolled back, so a rerun is exact.
/// Deadlocks are rare but possible (a withdrawal deleting a subject's feature rows while
/// a retention pass deletes old ones in another order; two groups linking the same new
/// identifiers in opposite orders), and the request that lost one should not fail.
pub(crate) async fn retrying<T, Fut>(
    what: &'static str,
    mut f: impl FnMut() -> Fut,
) -> Result<T, StoreError>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(StoreError::Contention(m)) if attempt < ATTEMPTS => {
                tracing::warn!(transaction = what, attempt, error = %m,
                    "aborted by the database to resolve contention; running it again");
                attempt += 1;
            }
            other => return other,
        }
    }
}
