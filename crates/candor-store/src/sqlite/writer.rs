//! The single writer thread: group commit. This file is the loop only; what each job
//! writes is in [`super::consent`], [`super::ingest`], [`super::advertisers`],
//! [`super::fields`] and [`super::features`].
//!
//! Why one thread: SQLite allows one writer at a time anyway, and a single ordered path
//! is what makes consent decisions linearizable. An event batch is re-checked against
//! the consent state *here*, after any withdrawal queued before it has been applied, so
//! no event tagged with a withdrawn purpose can commit after the withdrawal.
//!
//! Jobs that may be refused on their own (a consent unit, an advertiser write, a budget
//! charge) run inside a savepoint, so one failing job rolls back alone while the rest of
//! the group commits. Cache changes are staged per job and published only after the
//! group's COMMIT has returned, in job order, so nobody can observe state that might
//! still be rolled back.

use super::features::FeatureLog;
use super::sweep::Sweeper;
use crate::caches::{Caches, Staged};
use crate::dedup::DedupWindow;
use crate::front::{self, Job};
use crate::types::*;
use crate::StoreError;
use candor_core::idhash::IdMap;
use candor_core::ledger::{Head, GENESIS};
use candor_core::SubjectId;
use candor_insights::FeatureDelta;
use rusqlite::{params, Connection};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Upper bound on events folded into one transaction, to bound commit latency.
const MAX_GROUP_ROWS: usize = 50_000;

/// Group commit: wait at most this long for more jobs when a group is small.
const LINGER: std::time::Duration = std::time::Duration::from_micros(200);
const LINGER_STEP: std::time::Duration = std::time::Duration::from_micros(50);
const LINGER_BELOW_JOBS: usize = 8;
const LINGER_BELOW_ROWS: usize = 256;

/// Under sustained load the queue is never empty; sweep a chunk at least this often.
const SWEEP_EVERY_GROUPS: u32 = 16;

/// What a job changes beyond its SQL, applied after the group commits.
#[derive(Default)]
pub(super) struct Pending {
    pub caches: Staged,
    /// De-duplication keys written, with their receive time.
    pub dedup: IdMap<[u8; 16], i64>,
    /// Feature changes, in the order they happened.
    pub features: Vec<FeatureEffect>,
    /// The highest event id written.
    pub events_upto: i64,
}

impl Pending {
    fn absorb(&mut self, other: Pending) {
        self.caches.absorb(other.caches);
        self.dedup.extend(other.dedup);
        self.features.extend(other.features);
        self.events_upto = self.events_upto.max(other.events_upto);
    }
}

/// A feature change staged by a job (see [`super::features`]).
pub(super) enum FeatureEffect {
    /// A stored row's deltas.
    Add {
        subject: SubjectId,
        dense: u32,
        deltas: Vec<FeatureDelta>,
    },
    /// The subject's insights purpose flipped: its features are gone.
    Forget(SubjectId),
}

pub(super) struct Writer {
    pub conn: Connection,
    pub caches: Arc<Caches>,
    pub head: Head,
    pub dedup: DedupWindow,
    pub log: FeatureLog,
    sweeper: Sweeper,
}

/// An answer to send once the group's fate is known.
enum Answer {
    Consent(
        front::Reply<Vec<ConsentOutcome>>,
        Result<Vec<ConsentOutcome>, StoreError>,
    ),
    Ingest(front::Reply<Vec<RowOutcome>>, Vec<RowOutcome>),
    Advertiser(front::Reply<()>, Result<(), StoreError>),
    Field(front::Reply<bool>, Result<bool, StoreError>),
    Loyalty(
        front::Reply<crate::loyalty::LoyaltyOutcome>,
        Result<crate::loyalty::LoyaltyOutcome, StoreError>,
    ),
    Report(front::Reply<ReportRecord>, Result<ReportRecord, StoreError>),
}

impl Answer {
    fn send(self) {
        match self {
            Answer::Consent(tx, res) => drop(tx.send(res)),
            Answer::Ingest(tx, out) => drop(tx.send(Ok(out))),
            Answer::Advertiser(tx, res) => drop(tx.send(res)),
            Answer::Field(tx, res) => drop(tx.send(res)),
            Answer::Loyalty(tx, res) => drop(tx.send(res)),
            Answer::Report(tx, res) => drop(tx.send(res)),
        }
    }

    fn fail(self, msg: &str) {
        let e = || StoreError::Database(msg.to_owned());
        match self {
            Answer::Consent(tx, _) => drop(tx.send(Err(e()))),
            Answer::Ingest(tx, _) => drop(tx.send(Err(e()))),
            Answer::Advertiser(tx, _) => drop(tx.send(Err(e()))),
            Answer::Field(tx, _) => drop(tx.send(Err(e()))),
            Answer::Loyalty(tx, _) => drop(tx.send(Err(e()))),
            Answer::Report(tx, _) => drop(tx.send(Err(e()))),
        }
    }
}

pub(super) fn run(
    conn: Connection,
    caches: Arc<Caches>,
    head: Option<Head>,
    dedup: DedupWindow,
    log: FeatureLog,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut w = Writer {
        conn,
        caches,
        head: head.unwrap_or(Head {
            seq: 0,
            hash: GENESIS,
        }),
        dedup,
        log,
        sweeper: Sweeper::default(),
    };
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    let mut groups_since_sweep = 0u32;
    let mut sweep_pending = super::sweep::pending(&w.conn)
        .map(|n| n > 0)
        .unwrap_or(false);
    // Only to wait for a job with a timeout: the queue is tokio's.
    let timer = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build();
    loop {
        // Idle: sweep withdrawals, then wait for work, but not past the moment the
        // features are due to be persisted. (Persisting at every idle moment instead
        // cost a transaction and an fsync per group under load.)
        let first = match rx.try_recv() {
            Ok(j) => j,
            Err(mpsc::error::TryRecvError::Empty) if w.log.due() => {
                w.flush_features();
                continue;
            }
            Err(mpsc::error::TryRecvError::Empty) if sweep_pending => {
                sweep_pending = w.sweep_step();
                continue;
            }
            Err(mpsc::error::TryRecvError::Empty) => match (&timer, w.log.due_in()) {
                (Ok(rt), Some(wait)) => {
                    match rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
                        Ok(Some(j)) => j,
                        Ok(None) => break,
                        Err(_) => continue,
                    }
                }
                _ => match rx.blocking_recv() {
                    Some(j) => j,
                    None => break,
                },
            },
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let mut group = vec![first];
        let linger_until = std::time::Instant::now() + LINGER;
        // A small group pays a whole commit (and fsync) for little: give requests
        // already in flight a moment to join (PostgreSQL's commit_delay). Sleep rather
        // than spin: spinning (sched_yield) took half of this thread's time from the
        // request handlers on a two-core machine.
        front::fill(&mut rx, &mut group, MAX_GROUP_ROWS, |g, rows| {
            let wait = g.len() < LINGER_BELOW_JOBS
                && rows < LINGER_BELOW_ROWS
                && std::time::Instant::now() < linger_until;
            if wait {
                std::thread::sleep(LINGER_STEP);
            }
            wait
        });
        let mut jobs = Vec::with_capacity(group.len());
        for j in group {
            match j {
                Job::Shutdown { reply } => shutdown = Some(reply),
                Job::Sweep { reply } => {
                    let res = w.sweep_all();
                    sweep_pending = false;
                    let _ = reply.send(res);
                }
                Job::Retention {
                    tiers,
                    features,
                    reply,
                    ..
                } => {
                    let res = w.retention(&tiers, features);
                    let _ = reply.send(res);
                }
                Job::Features { reply } => {
                    let _ = reply.send(w.log.flush(&w.conn));
                }
                Job::Erase { req, reply } => {
                    // In a transaction of its own, in queue order: what queued before
                    // it commits first, what queued after it sees the subject gone.
                    if !jobs.is_empty() {
                        sweep_pending |= w.commit_group(std::mem::take(&mut jobs));
                    }
                    let _ = reply.send(w.erase(&req));
                }
                other => jobs.push(other),
            }
        }
        if !jobs.is_empty() {
            sweep_pending |= w.commit_group(jobs);
            groups_since_sweep += 1;
            if sweep_pending && groups_since_sweep >= SWEEP_EVERY_GROUPS {
                groups_since_sweep = 0;
                sweep_pending = w.sweep_step();
            }
            if w.log.due() {
                w.flush_features();
            }
        }
        if shutdown.is_some() {
            break;
        }
    }
    front::drain(&mut rx);
    w.flush_features();
    if let Err(e) = w.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "checkpoint at shutdown failed");
    }
    if let Some(r) = shutdown {
        let _ = r.send(());
    }
}

impl Writer {
    /// One sweeper chunk; returns whether more work remains. Errors are logged and the
    /// pass restarts later: reads honour the floors meanwhile, so nothing is exposed.
    fn sweep_step(&mut self) -> bool {
        match self.sweeper.step(&self.conn) {
            Ok(more) => more,
            Err(e) => {
                tracing::error!(error = %e, "withdrawal sweep failed; will retry");
                false
            }
        }
    }

    fn sweep_all(&mut self) -> Result<(), StoreError> {
        while self.sweeper.step(&self.conn)? {}
        Ok(())
    }

    /// Persists the merged feature deltas. A failure keeps them for the next attempt
    /// (they are in the index already, and the log has them should the process stop).
    fn flush_features(&mut self) {
        if let Err(e) = self.log.flush(&self.conn) {
            tracing::error!(error = %e, "persisting insight features failed; will retry");
        }
    }

    fn retention(
        &mut self,
        tiers: &[crate::plan::retention::Tier],
        features: Option<crate::plan::retention::FeatureCutoff>,
    ) -> Result<RetentionReport, StoreError> {
        // Pending deltas first, so the delete sees every row it should.
        self.log.flush(&self.conn)?;
        let res = super::retention::run(&self.conn, tiers, features);
        // After COMMIT, and on this thread, so no write can land between the delete and
        // the prune: the index matches the tables again.
        if let (Ok(_), Some(cut)) = (&res, features) {
            crate::features::prune_index(&self.caches.features, cut);
        }
        res
    }

    /// Commits a group of jobs; returns true when a withdrawal left work for the sweeper.
    fn commit_group(&mut self, jobs: Vec<Job>) -> bool {
        let start_head = self.head;
        if let Err(e) = self.exec("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            for j in jobs {
                j.fail(StoreError::Database(msg.clone()));
            }
            return false;
        }
        let mut group = Pending::default();
        let mut answers = Vec::with_capacity(jobs.len());
        let mut abort: Option<StoreError> = None;
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            let job_head = self.head;
            let mut mine = Pending::default();
            match job {
                Job::Consent { cmds, reply } => {
                    let res = self.savepoint(|w| {
                        cmds.iter()
                            .map(|c| super::consent::apply(w, c, &group, &mut mine))
                            .collect::<Result<Vec<_>, _>>()
                    });
                    if res.is_ok() {
                        group.absorb(mine);
                    } else {
                        self.head = job_head;
                    }
                    answers.push(Answer::Consent(reply, res));
                }
                Job::Ingest { rows, reply } => {
                    // No savepoint: inserts fail only when the database does, and then
                    // the whole group is rolled back and every job told.
                    match super::ingest::apply(self, rows, &group, &mut mine) {
                        Ok(out) => {
                            group.absorb(mine);
                            answers.push(Answer::Ingest(reply, out));
                        }
                        Err(e) => {
                            answers.push(Answer::Ingest(reply, Vec::new()));
                            abort = Some(e);
                            break;
                        }
                    }
                }
                Job::Advertiser { a, mode, reply } => {
                    let res = self.savepoint(|w| super::advertisers::put(&w.conn, &a, mode));
                    answers.push(Answer::Advertiser(reply, res));
                }
                Job::Field { op, reply } => {
                    // In the group, so it is ordered with consent changes queued beside
                    // it; in a savepoint, so a refused one rolls back alone.
                    let res = self.savepoint(|w| super::fields::apply(&w.conn, &op));
                    answers.push(Answer::Field(reply, res));
                }
                Job::Loyalty { op, reply } => {
                    // In the group: the single writer is the account's lock
                    // (`sqlite::loyalty`); in a savepoint, so a failed one rolls back
                    // alone.
                    let res = self.savepoint(|w| super::loyalty::apply(&w.conn, &op));
                    answers.push(Answer::Loyalty(reply, res));
                }
                Job::Report { r, reply } => {
                    // In a savepoint: a refused charge writes nothing anyway, but a
                    // failed insert must not leave half a report in the group.
                    let res = self.savepoint(|w| super::advertisers::record_report(&w.conn, &r));
                    answers.push(Answer::Report(reply, res));
                }
                other => other.fail(StoreError::Database("not a group job".into())),
            }
        }
        let committed = match abort {
            Some(e) => Err(e.to_string()),
            None => self
                .write_head(start_head)
                .and_then(|_| self.exec("COMMIT"))
                .map_err(|e| e.to_string()),
        };
        if let Err(msg) = committed {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.log.rolled_back();
            self.head = start_head;
            for j in jobs {
                j.fail(StoreError::Database(msg.clone()));
            }
            tracing::error!(error = %msg, "group commit failed");
            for a in answers {
                a.fail(&msg);
            }
            return false;
        }
        // Durable now: publish, then answer. Features first, in job order, so a
        // withdrawal later in the group removes what earlier rows added.
        for (k, at) in group.dedup.drain() {
            self.dedup.insert(k, at);
        }
        self.log
            .committed(&self.caches, group.features, group.events_upto);
        group.caches.publish(&self.caches);
        for a in answers {
            a.send();
        }
        group.caches.floored
    }

    fn write_head(&self, start: Head) -> rusqlite::Result<()> {
        if self.head == start {
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "INSERT INTO ledger_head (id, seq, hash) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            )?
            .execute(params![self.head.seq as i64, &self.head.hash[..]])
            .map(|_| ())
    }

    /// Runs a statement from the cache: the writer issues BEGIN/COMMIT/SAVEPOINT
    /// thousands of times a second, and parsing them each time showed in profiles.
    pub fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    fn savepoint<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.exec("SAVEPOINT job")?;
        match f(self) {
            Ok(v) => {
                self.exec("RELEASE job")?;
                Ok(v)
            }
            Err(e) => {
                self.conn
                    .execute_batch("ROLLBACK TO job; RELEASE job")
                    .map_err(|re| StoreError::Database(format!("{e}; rollback failed: {re}")))?;
                Err(e)
            }
        }
    }
}
