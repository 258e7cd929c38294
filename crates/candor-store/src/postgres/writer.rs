//! The writer task: one per node, it takes every queued job and commits them in groups.
//!
//! Why a task and not a transaction per call: a commit costs a WAL flush, and folding
//! what queued up while the previous group committed into one transaction shares that
//! cost (group commit), exactly as the SQLite writer does. Consent jobs of a group run
//! in one transaction (each in a savepoint, so a refused withdrawal rolls back alone)
//! and ingest jobs in another (one multi-row insert for all of their rows). Consent
//! goes first, so a withdrawal queued before a batch is in force for it; across nodes
//! the database orders them (see `ingest`).

use super::{consent, ingest, Shared};
use crate::types::*;
use crate::StoreError;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

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

pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Job>) {
    let mut shutdown = None;
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
            ingest::commit_group(&shared, ingests).await;
        }
    }
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
        other => StoreError::Database(match other {
            StoreError::Database(m) => m.clone(),
            o => o.to_string(),
        }),
    }
}
