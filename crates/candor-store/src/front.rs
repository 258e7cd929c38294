//! The front of both writers: the jobs a store hands its writer, and the one way they
//! are submitted and answered.
//!
//! Every write goes through a queue to a writer (a thread on SQLite, a task on
//! PostgreSQL) so that it can be committed in a group with whatever queued beside it,
//! and answered only once durable. The job types, the submit/reply plumbing and the
//! rule for folding queued jobs into a group are the same for both backends; only what a
//! writer does with a group differs.

use crate::advertisers::PutMode;
use crate::plan::retention::{FeatureCutoff, Tier};
use crate::seal::{SealedField, SealedRow};
use crate::types::*;
use crate::StoreError;
use tokio::sync::{mpsc, oneshot};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(crate) enum Job {
    /// One atomic unit of consent commands (all or nothing).
    Consent {
        cmds: Vec<ConsentCommand>,
        reply: Reply<Vec<ConsentOutcome>>,
    },
    Ingest {
        rows: Vec<SealedRow>,
        reply: Reply<Vec<RowOutcome>>,
    },
    Advertiser {
        a: Advertiser,
        mode: PutMode,
        reply: Reply<()>,
    },
    Report {
        r: NewReport,
        reply: Reply<ReportRecord>,
    },
    /// Erase one subject, in a transaction of its own.
    Erase {
        req: Erasure,
        reply: Reply<ErasureOutcome>,
    },
    /// Set volunteered fields (all or nothing), or remove one. Answers whether a row was
    /// written or removed; setting a field of an unknown subject is `UnknownSubject`.
    Field {
        op: FieldOp,
        reply: Reply<bool>,
    },
    /// One loyalty points transaction (`plan::loyalty`).
    Loyalty {
        op: crate::loyalty::LoyaltyOp,
        reply: Reply<crate::loyalty::LoyaltyOutcome>,
    },
    /// Finish every pending withdrawal sweep now.
    Sweep {
        reply: Reply<()>,
    },
    /// Delete events and (with insights) features past retention.
    Retention {
        now_ms: i64,
        tiers: Vec<Tier>,
        features: Option<FeatureCutoff>,
        reply: Reply<RetentionReport>,
    },
    /// Bring the feature tables and index up to date with the event log (and, on
    /// PostgreSQL, with other nodes' writes).
    Features {
        reply: Reply<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What a field job does.
pub(crate) enum FieldOp {
    Set(Vec<SealedField>),
    Remove {
        subject: candor_core::SubjectId,
        field: String,
    },
}

impl Job {
    /// Rows of an ingest job (what bounds a group's size).
    pub fn rows(&self) -> usize {
        match self {
            Job::Ingest { rows, .. } => rows.len(),
            _ => 0,
        }
    }

    /// Answers the job with `e` (a shutdown is simply released).
    pub fn fail(self, e: StoreError) {
        match self {
            Job::Consent { reply, .. } => drop(reply.send(Err(e))),
            Job::Ingest { reply, .. } => drop(reply.send(Err(e))),
            Job::Advertiser { reply, .. } => drop(reply.send(Err(e))),
            Job::Report { reply, .. } => drop(reply.send(Err(e))),
            Job::Erase { reply, .. } => drop(reply.send(Err(e))),
            Job::Field { reply, .. } => drop(reply.send(Err(e))),
            Job::Loyalty { reply, .. } => drop(reply.send(Err(e))),
            Job::Sweep { reply } => drop(reply.send(Err(e))),
            Job::Retention { reply, .. } => drop(reply.send(Err(e))),
            Job::Features { reply } => drop(reply.send(Err(e))),
            Job::Shutdown { reply } => drop(reply.send(())),
        }
    }
}

/// Folds jobs already queued into `group` until the queue is empty or the group holds
/// `max_rows` rows. `wait` is asked, when the queue is momentarily empty, whether to
/// give requests in flight a moment to join (it does the waiting; false stops).
pub(crate) fn fill(
    rx: &mut mpsc::Receiver<Job>,
    group: &mut Vec<Job>,
    max_rows: usize,
    mut wait: impl FnMut(&[Job], usize) -> bool,
) {
    let mut rows: usize = group.iter().map(Job::rows).sum();
    while rows < max_rows {
        match rx.try_recv() {
            Ok(j) => {
                rows += j.rows();
                group.push(j);
            }
            Err(mpsc::error::TryRecvError::Empty) if wait(group, rows) => {}
            Err(_) => break,
        }
    }
}

/// Closes the queue and fails whatever is still in it, rather than leave callers
/// hanging.
pub(crate) fn drain(rx: &mut mpsc::Receiver<Job>) {
    rx.close();
    while let Ok(j) = rx.try_recv() {
        j.fail(StoreError::Closed);
    }
}

/// The sending side, held by the store.
pub(crate) struct Front {
    tx: mpsc::Sender<Job>,
}

/// Jobs that may wait in a writer's queue.
const QUEUE: usize = 4096;

impl Front {
    pub fn new() -> (Self, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, rx)
    }

    /// Queues the job `make` builds around a reply channel and waits for its answer.
    pub async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Asks the writer to finish what it holds and stop; returns once it has.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Shutdown { reply: tx }).await.is_ok() {
            let _ = rx.await;
        }
    }
}
