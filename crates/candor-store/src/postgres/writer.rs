//! The writer task: one per node, it takes every queued job and commits them in groups.
//! This file is the loop only; what each job writes is in [`super::consent`],
//! [`super::ingest`], [`super::advertisers`], [`super::fields`] and [`super::derive`].
//!
//! Why a task and not a transaction per call: a commit costs a WAL flush, and folding
//! what queued up while the previous group committed into one transaction shares that
//! cost (group commit), exactly as the SQLite writer does. Consent jobs of a group run
//! in one transaction (each in a savepoint, so a refused withdrawal rolls back alone)
//! and ingest jobs in another. Consent goes first, so a withdrawal queued before a batch
//! is in force for it; across nodes the database orders them (see `ingest`).
//!
//! Ingest groups are committed by up to [`INGEST_IN_FLIGHT`] concurrent transactions:
//! one transaction at a time left the database and this node idle in turn, waiting on
//! each other's round trips (a third of the CPU was idle in the benchmark). Running
//! them side by side is safe because nothing in an ingest group relies on the writer's
//! order: consent is re-checked under the shared gate lock, duplicates meet a unique
//! constraint, and ids come from a sequence. Jobs that serialize in the database itself
//! (a budget charge locks its advertiser's row; a volunteered field write locks its
//! subject's row, see [`super::fields`]) or run beside the groups (sweeps, retention,
//! feature derivation) are spawned as tasks of their own.

use super::{consent, ingest, Shared};
use crate::front::{self, Job};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

/// Upper bound on events folded into one transaction, to bound commit latency and the
/// size of one statement's arrays.
const MAX_GROUP_ROWS: usize = 20_000;

/// Ingest transactions that may be committing at once on one node.
const INGEST_IN_FLIGHT: u32 = 3;

pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Job>) {
    let mut shutdown = None;
    let in_flight = Arc::new(Semaphore::new(INGEST_IN_FLIGHT as usize));
    let mut others = JoinSet::new();
    while shutdown.is_none() {
        let Some(first) = rx.recv().await else { break };
        let mut group = vec![first];
        front::fill(&mut rx, &mut group, MAX_GROUP_ROWS, |_, _| false);
        let mut consents = Vec::new();
        let mut ingests = Vec::new();
        for j in group {
            match j {
                Job::Consent { cmds, reply } => consents.push((cmds, reply)),
                Job::Ingest { rows, reply } => ingests.push((rows, reply)),
                Job::Shutdown { reply } => shutdown = Some(reply),
                other => {
                    let shared = shared.clone();
                    others.spawn(async move { run_alone(&shared, other).await });
                }
            }
        }
        // Reap what finished, so the set does not grow.
        while others.try_join_next().is_some() {}
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
    while others.join_next().await.is_some() {}
    front::drain(&mut rx);
    // What this node acknowledged is in the log either way; deriving it now just spares
    // the next deriver the work.
    if let Err(e) = super::derive::catch_up(&shared).await {
        tracing::warn!(error = %e, "deriving insight features at shutdown failed");
    }
    if let Some(r) = shutdown {
        let _ = r.send(());
    }
}

/// A job that is not part of a group.
async fn run_alone(shared: &Shared, job: Job) {
    match job {
        Job::Advertiser { a, mode, reply } => {
            let res = match shared.pool.get().await {
                Ok(c) => super::advertisers::put(&c, &a, mode).await,
                Err(e) => Err(e.into()),
            };
            let _ = reply.send(res);
        }
        Job::Field { op, reply } => {
            let _ = reply.send(super::fields::apply(shared, &op).await);
        }
        Job::Report { r, reply } => {
            let _ = reply.send(super::advertisers::record_report(shared, &r).await);
        }
        Job::Loyalty { op, reply } => {
            let _ = reply.send(super::loyalty::apply(shared, &op).await);
        }
        Job::Erase { req, reply } => {
            let _ = reply.send(super::erase::run(shared, &req).await);
        }
        Job::Sweep { reply } => {
            let mut sweeper = shared.sweeper.lock().await;
            let res = async {
                while sweeper.step(shared).await? {}
                Ok(())
            }
            .await;
            let _ = reply.send(res);
        }
        Job::Retention {
            now_ms,
            tiers,
            features,
            reply,
        } => {
            let res = crate::retry::retrying("retention", || {
                super::retention::run(shared, now_ms, &tiers, features)
            })
            .await;
            let _ = reply.send(res);
        }
        Job::Features { reply } => {
            let res = async {
                super::derive::catch_up(shared).await?;
                super::features::refresh(shared).await
            }
            .await;
            let _ = reply.send(res);
        }
        other => other.fail(crate::StoreError::Database("not a job to run alone".into())),
    }
}
