//! The single writer: group commit, ledger appends, consent changes and event inserts.
//!
//! Why one thread: SQLite allows one writer at a time anyway, and a single ordered path
//! is what makes consent decisions linearizable. An event batch is re-checked against
//! the consent index *here*, after any withdrawal queued before it has been applied,
//! so no event tagged with a withdrawn purpose can commit after the withdrawal.
//!
//! Each job runs inside a savepoint, so one failing job (a withdrawal of something not
//! given) rolls back alone while the rest of the group commits. Cache updates of a job
//! are staged and published only after the group's COMMIT has returned, so nobody can
//! observe state that might still be rolled back.
//!
//! Insights ride the same path: an ingest job writes the features of rows it stores
//! under the insights purpose (upserts returning the absolute count), a consent job that
//! moves the insights purpose deletes the subject's features, and the feature index is
//! updated with those absolute values after COMMIT, in job order. Budget charges and
//! advertiser changes are jobs too, so charges for one advertiser are serialized here.

use super::insights;
use super::sweep::Sweeper;
use super::Shared;
use crate::dedup::DedupWindow;
use crate::insights::IndexOp;
use crate::retention::{FeatureCutoff, Tier};
use crate::types::*;
use crate::StoreError;
use candor_core::consent::{self, ConsentStatus, Current};
use candor_core::crypto::{LookupHash, SubjectKey};
use candor_core::idhash::IdMap;
use candor_core::ledger::{Head, SealedEntry, GENESIS};
use candor_core::{PurposeId, PurposeSet, SubjectId};
use rusqlite::{params, Connection};
use std::collections::HashMap;
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
    /// Finish every pending withdrawal sweep now.
    Sweep {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Delete events and (with insights) features past retention (see
    /// `crate::retention`).
    Retention {
        tiers: Vec<Tier>,
        features: Option<FeatureCutoff>,
        reply: oneshot::Sender<Result<RetentionReport, StoreError>>,
    },
    Advertiser {
        a: Advertiser,
        mode: crate::insights::PutMode,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Report {
        r: NewReport,
        reply: oneshot::Sender<Result<ReportRecord, StoreError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Upper bound on events folded into one transaction, to bound commit latency.
const MAX_GROUP_ROWS: usize = 50_000;

/// Cache changes staged by a job, published after commit.
#[derive(Default)]
struct Staged {
    ids: IdMap<LookupHash, SubjectId>,
    keys: IdMap<SubjectId, SubjectKey>,
    granted: HashMap<SubjectId, PurposeSet>,
    /// De-duplication keys written, with their receive time.
    dedup: IdMap<[u8; 16], i64>,
    /// Feature index changes, in the order they were written.
    features: Vec<IndexOp>,
}

impl Staged {
    fn absorb(&mut self, other: Staged) {
        self.ids.extend(other.ids);
        self.keys.extend(other.keys);
        self.granted.extend(other.granted);
        self.dedup.extend(other.dedup);
        self.features.extend(other.features);
    }
}

enum Reply {
    Consent(
        oneshot::Sender<Result<Vec<ConsentOutcome>, StoreError>>,
        Result<Vec<ConsentOutcome>, StoreError>,
    ),
    Ingest(
        oneshot::Sender<Result<Vec<RowOutcome>, StoreError>>,
        Result<Vec<RowOutcome>, StoreError>,
    ),
    Advertiser(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    Report(
        oneshot::Sender<Result<ReportRecord, StoreError>>,
        Result<ReportRecord, StoreError>,
    ),
}

impl Reply {
    fn send(self) {
        match self {
            Reply::Consent(tx, res) => drop(tx.send(res)),
            Reply::Ingest(tx, res) => drop(tx.send(res)),
            Reply::Advertiser(tx, res) => drop(tx.send(res)),
            Reply::Report(tx, res) => drop(tx.send(res)),
        }
    }

    fn fail(self, msg: &str) {
        let e = || StoreError::Database(msg.to_owned());
        match self {
            Reply::Consent(tx, _) => drop(tx.send(Err(e()))),
            Reply::Ingest(tx, _) => drop(tx.send(Err(e()))),
            Reply::Advertiser(tx, _) => drop(tx.send(Err(e()))),
            Reply::Report(tx, _) => drop(tx.send(Err(e()))),
        }
    }
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    head: Head,
    dedup: DedupWindow,
    sweeper: Sweeper,
    /// The next insight subject number (see `insights::dense`).
    next_dense: u32,
    /// Subject → insight number, so a stream of events does not look it up per row.
    /// Cleared when a group rolls back (a number it assigned may not exist then).
    dense_cache: IdMap<SubjectId, u32>,
    /// The group's feature changes not yet written (see [`PendingFeatures`]).
    pending: PendingFeatures,
}

/// Feature changes of the group's ingest jobs, merged per (subject, day, kind, category):
/// a stream of events for one app on one day becomes one upsert. They are written before
/// anything else in the group that touches features runs (a consent job deletes them on
/// withdrawal, and must see them first) and before COMMIT, so the order of effects is the
/// order of the jobs. Ingest jobs have no savepoint (a failure rolls back the whole
/// group), so merging across them cannot outlive a failed job.
#[derive(Default)]
struct PendingFeatures {
    activity: HashMap<(SubjectId, u32, u8, String), (u32, candor_insights::DailyFeature)>,
    declared: Vec<(SubjectId, u32, candor_insights::FeatureDelta)>,
}

/// Group commit: wait at most this long for more jobs when a group is small.
const LINGER: std::time::Duration = std::time::Duration::from_micros(200);
const LINGER_STEP: std::time::Duration = std::time::Duration::from_micros(50);
const LINGER_BELOW_JOBS: usize = 8;
const LINGER_BELOW_ROWS: usize = 256;

/// Under sustained load the queue is never empty; sweep a chunk at least this often.
const SWEEP_EVERY_GROUPS: u32 = 16;

pub(crate) fn run(
    conn: Connection,
    shared: Arc<Shared>,
    head: Option<Head>,
    dedup: DedupWindow,
    next_dense: u32,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut w = Writer {
        conn,
        shared,
        head: head.unwrap_or(Head {
            seq: 0,
            hash: GENESIS,
        }),
        dedup,
        sweeper: Sweeper::default(),
        next_dense,
        dense_cache: IdMap::default(),
        pending: PendingFeatures::default(),
    };
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    let mut groups_since_sweep = 0u32;
    let mut sweep_pending = super::sweep::pending(&w.conn)
        .map(|n| n > 0)
        .unwrap_or(false);
    loop {
        // Idle: use the time to sweep withdrawals, then wait for work.
        let first = match rx.try_recv() {
            Ok(j) => j,
            Err(mpsc::error::TryRecvError::Empty) if sweep_pending => {
                sweep_pending = w.sweep_step();
                continue;
            }
            Err(mpsc::error::TryRecvError::Empty) => match rx.blocking_recv() {
                Some(j) => j,
                None => break,
            },
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let mut group = vec![first];
        let mut rows = 0usize;
        let linger_until = std::time::Instant::now() + LINGER;
        while rows < MAX_GROUP_ROWS {
            match rx.try_recv() {
                Ok(j) => {
                    if let Job::Ingest { rows: r, .. } = &j {
                        rows += r.len();
                    }
                    group.push(j);
                }
                // A small group pays a whole commit (and fsync) for little: give
                // requests already in flight a moment to join (PostgreSQL's commit_delay).
                // Sleep rather than spin: spinning (sched_yield) took half of this
                // thread's time from the request handlers on a two-core machine.
                Err(mpsc::error::TryRecvError::Empty)
                    if group.len() < LINGER_BELOW_JOBS
                        && rows < LINGER_BELOW_ROWS
                        && std::time::Instant::now() < linger_until =>
                {
                    std::thread::sleep(LINGER_STEP);
                }
                Err(_) => break,
            }
        }
        let mut jobs = Vec::with_capacity(group.len());
        for j in group {
            match j {
                Job::Shutdown { reply } => shutdown = Some(reply),
                Job::Sweep { reply } => {
                    let mut res = Ok(());
                    loop {
                        match w.sweeper.step(&w.conn) {
                            Ok(true) => continue,
                            Ok(false) => break,
                            Err(e) => {
                                res = Err(e);
                                break;
                            }
                        }
                    }
                    sweep_pending = false;
                    let _ = reply.send(res);
                }
                Job::Retention {
                    tiers,
                    features,
                    reply,
                } => {
                    let res = super::retention::run(&w.conn, &tiers, features);
                    // After COMMIT, and on this thread, so no write can land between the
                    // delete and the prune: the index matches the tables again.
                    if let (Ok(_), Some(cut)) = (&res, features) {
                        crate::insights::prune_index(&w.shared.features, cut);
                    }
                    let _ = reply.send(res);
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
        }
        if shutdown.is_some() {
            break;
        }
    }
    // Close the queue and fail anything still waiting, rather than leave it hanging.
    rx.close();
    while let Ok(j) = rx.try_recv() {
        match j {
            Job::Consent { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Job::Ingest { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Job::Sweep { reply } => drop(reply.send(Err(StoreError::Closed))),
            Job::Retention { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Job::Advertiser { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Job::Report { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Job::Shutdown { reply } => drop(reply.send(())),
        }
    }
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

    /// Commits a group of jobs; returns true when a withdrawal left work for the sweeper.
    fn commit_group(&mut self, jobs: Vec<Job>) -> bool {
        let start_head = self.head;
        let mut staged = Staged::default();
        let mut replies = Vec::with_capacity(jobs.len());
        if let Err(e) = self.exec("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            for j in jobs {
                fail(j, StoreError::Database(msg.clone()));
            }
            return false;
        }
        let mut floored = false;
        let mut abort: Option<StoreError> = None;
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            let job_head = self.head;
            let mut job_staged = Staged::default();
            match job {
                Job::Consent { cmds, reply } => {
                    if let Err(e) = self.flush_features(&mut staged) {
                        replies.push(Reply::Consent(reply, Err(StoreError::Closed)));
                        abort = Some(e);
                        break;
                    }
                    let res = self.savepoint(|w| {
                        let mut outs = Vec::with_capacity(cmds.len());
                        for c in &cmds {
                            outs.push(w.consent(c, &staged, &mut job_staged, &mut floored)?);
                        }
                        Ok(outs)
                    });
                    if res.is_ok() {
                        staged.absorb(job_staged);
                    } else {
                        self.head = job_head;
                    }
                    replies.push(Reply::Consent(reply, res));
                }
                Job::Ingest { rows, reply } => {
                    // No savepoint: inserts fail only when the database does, and then
                    // the whole group is rolled back and every job told.
                    match self.ingest(&rows, &staged, &mut job_staged) {
                        Ok(out) => {
                            staged.absorb(job_staged);
                            replies.push(Reply::Ingest(reply, Ok(out)));
                        }
                        Err(e) => {
                            replies.push(Reply::Ingest(reply, Err(StoreError::Closed)));
                            abort = Some(e);
                            break;
                        }
                    }
                }
                Job::Advertiser { a, mode, reply } => {
                    let res = self.savepoint(|w| insights::put_advertiser(&w.conn, &a, mode));
                    replies.push(Reply::Advertiser(reply, res));
                }
                Job::Report { r, reply } => {
                    // In a savepoint: a refused charge writes nothing anyway, but a
                    // failed insert must not leave half a report in the group.
                    let res = self.savepoint(|w| insights::record_report(&w.conn, &r));
                    replies.push(Reply::Report(reply, res));
                }
                Job::Sweep { reply } => drop(reply.send(Ok(()))),
                Job::Retention { reply, .. } => drop(reply.send(Ok(RetentionReport::default()))),
                Job::Shutdown { reply } => drop(reply.send(())),
            }
        }
        if abort.is_none() {
            if let Err(e) = self.flush_features(&mut staged) {
                abort = Some(e);
            }
        }
        let head_written = if self.head != start_head {
            self.conn
                .execute(
                    "INSERT INTO ledger_head (id, seq, hash) VALUES (1, ?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    params![self.head.seq as i64, &self.head.hash[..]],
                )
                .map(|_| ())
        } else {
            Ok(())
        };
        let committed = match abort {
            Some(e) => Err(e.to_string()),
            None => head_written
                .and_then(|_| self.exec("COMMIT"))
                .map_err(|e| e.to_string()),
        };
        if let Err(msg) = committed {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.pending = PendingFeatures::default();
            self.dense_cache.clear();
            self.head = start_head;
            for j in jobs {
                fail(j, StoreError::Database(msg.clone()));
            }
            tracing::error!(error = %msg, "group commit failed");
            for r in replies {
                r.fail(&msg);
            }
            return false;
        }
        // Durable now: publish to the caches, then answer.
        {
            let mut ids = self.shared.ids.write();
            ids.extend(staged.ids);
        }
        {
            let mut keys = self.shared.keys.write();
            keys.extend(staged.keys);
        }
        for (s, g) in staged.granted {
            self.shared.index.set(s, g);
        }
        for (k, at) in staged.dedup {
            self.dedup.insert(k, at);
        }
        for op in &staged.features {
            op.apply(&self.shared.features);
        }
        for r in replies {
            r.send();
        }
        floored
    }

    /// Runs a statement from the cache: the writer issues BEGIN/COMMIT/SAVEPOINT
    /// thousands of times a second, and parsing them each time showed in profiles.
    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
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

    fn lookup(&self, h: &LookupHash, group: &Staged, job: &Staged) -> Option<SubjectId> {
        job.ids
            .get(h)
            .or_else(|| group.ids.get(h))
            .copied()
            .or_else(|| self.shared.ids.read().get(h).copied())
    }

    fn granted(&self, s: &SubjectId, group: &Staged, job: &Staged) -> PurposeSet {
        job.granted
            .get(s)
            .or_else(|| group.granted.get(s))
            .copied()
            .unwrap_or_else(|| self.shared.index.granted(s))
    }

    fn key(&self, s: SubjectId, group: &Staged, job: &Staged) -> Result<SubjectKey, StoreError> {
        if let Some(k) = job.keys.get(&s).or_else(|| group.keys.get(&s)) {
            return Ok(k.clone());
        }
        if let Some(k) = self.shared.keys.read().get(&s) {
            return Ok(k.clone());
        }
        super::read::subject_key(&self.conn, &self.shared.master, s)?
            .ok_or(StoreError::UnknownSubject)
    }

    fn link(
        &self,
        subject: SubjectId,
        ident: &Identity,
        now_ms: i64,
        group: &Staged,
        job: &mut Staged,
    ) -> Result<(), StoreError> {
        if self.lookup(&ident.hash, group, job).is_some() {
            // Already linked (possibly to another subject: identities are never merged
            // silently, since that would move one person's consent onto another).
            return Ok(());
        }
        let key = self.key(subject, group, job)?;
        let sealed = key.seal(&ident.hash.0, ident.value.expose().as_bytes());
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO identities (lookup_hash, subject_id, kind, sealed_value, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &ident.hash.0[..],
                &subject.as_bytes()[..],
                ident.kind.code(),
                sealed,
                now_ms
            ])?;
        job.ids.insert(ident.hash, subject);
        Ok(())
    }

    fn consent(
        &mut self,
        cmd: &ConsentCommand,
        group: &Staged,
        job: &mut Staged,
        floored: &mut bool,
    ) -> Result<ConsentOutcome, StoreError> {
        let found = cmd
            .identities
            .iter()
            .find_map(|i| self.lookup(&i.hash, group, job));
        let (subject, created) = match found {
            Some(s) => (s, false),
            None if cmd.create => {
                let s = SubjectId::random();
                let key = SubjectKey::generate();
                self.conn.execute(
                    "INSERT INTO subjects (subject_id, wrapped_key, created_ms) VALUES (?1, ?2, ?3)",
                    params![&s.as_bytes()[..], self.shared.master.wrap(&s, &key), cmd.time_ms],
                )?;
                job.keys.insert(s, key);
                (s, true)
            }
            None => return Err(StoreError::UnknownSubject),
        };
        for ident in &cmd.identities {
            self.link(subject, ident, cmd.time_ms, group, job)?;
        }
        let mut current: HashMap<String, Current> = HashMap::new();
        {
            let mut st = self.conn.prepare_cached(
                "SELECT purpose_id, status, notice_version FROM consent_state WHERE subject_id = ?1",
            )?;
            let mut rows = st.query(params![&subject.as_bytes()[..]])?;
            while let Some(r) = rows.next()? {
                let status: String = r.get(1)?;
                let status = ConsentStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?;
                current.insert(
                    r.get(0)?,
                    Current {
                        status,
                        notice_version: r.get(2)?,
                    },
                );
            }
        }
        let before = self.granted(&subject, group, job);
        let mut granted = before;
        let mut records = Vec::new();
        for ch in &cmd.changes {
            let cur = current.get(ch.purpose.as_str()).copied();
            let next = consent::transition(cur, ch.action, ch.notice_version).map_err(|_| {
                StoreError::NotGiven {
                    purpose: ch.purpose.to_string(),
                }
            })?;
            let Some(status) = next else { continue };
            let sealed = self.append(subject, &ch.purpose, status, ch, cmd)?;
            self.conn
                .prepare_cached(
                    "INSERT INTO consent_state (subject_id, purpose_id, status, notice_version, seq, time_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (subject_id, purpose_id) DO UPDATE SET
                       status = excluded.status, notice_version = excluded.notice_version,
                       seq = excluded.seq, time_ms = excluded.time_ms",
                )?
                .execute(params![
                    &subject.as_bytes()[..],
                    ch.purpose.as_str(),
                    status.as_str(),
                    ch.notice_version,
                    sealed.entry.seq as i64,
                    cmd.time_ms
                ])?;
            current.insert(
                ch.purpose.as_str().to_owned(),
                Current {
                    status,
                    notice_version: ch.notice_version,
                },
            );
            if status.grants() {
                granted.insert(ch.bit);
            } else if granted.contains(ch.bit) {
                granted.remove(ch.bit);
                self.floor(subject, ch.bit)?;
                *floored = true;
            }
            records.push(sealed);
        }
        if let Some(ins) = &self.shared.insights {
            // Features exist only while the insights purpose is granted (see
            // `crate::insights`): a transition either way clears them.
            let now = granted.contains(ins.bit);
            if before.contains(ins.bit) != now {
                insights::delete_features(&self.conn, subject)?;
                if !now {
                    job.features.push(IndexOp::Remove(subject));
                }
            }
        }
        job.granted.insert(subject, granted);
        Ok(ConsentOutcome {
            subject,
            created,
            records,
            granted,
        })
    }

    /// Records that the subject's events stored so far no longer carry `bit`. In the
    /// same transaction as the withdrawal, so no read can see one without the other.
    fn floor(&self, subject: SubjectId, bit: u8) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO purpose_floors (subject_id, bit, upto_id)
                 VALUES (?1, ?2, (SELECT coalesce(max(id), 0) FROM events))
                 ON CONFLICT (subject_id, bit) DO UPDATE SET upto_id = excluded.upto_id",
            )?
            .execute(params![&subject.as_bytes()[..], bit])?;
        Ok(())
    }

    fn append(
        &mut self,
        subject: SubjectId,
        purpose: &PurposeId,
        status: ConsentStatus,
        ch: &PurposeChange,
        cmd: &ConsentCommand,
    ) -> Result<SealedEntry, StoreError> {
        let sealed = cmd
            .entry(self.head, subject, ch, status)
            .seal(self.shared.signer.signing_key());
        let evidence = crate::types::evidence_json(&sealed.entry.evidence)?;
        self.conn
            .prepare_cached(
                "INSERT INTO ledger (seq, subject_id, purpose_id, status, notice_version, notice_hash,
                   channel, time_ms, evidence, prev_hash, hash, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                sealed.entry.seq as i64,
                &subject.as_bytes()[..],
                purpose.as_str(),
                status.as_str(),
                ch.notice_version,
                &ch.notice_hash[..],
                cmd.channel.as_str(),
                cmd.time_ms,
                evidence,
                &sealed.entry.prev_hash[..],
                &sealed.hash[..],
                &sealed.signature[..]
            ])?;
        self.head = Head {
            seq: sealed.entry.seq,
            hash: sealed.hash,
        };
        Ok(sealed)
    }

    fn ingest(
        &mut self,
        rows: &[IngestRow],
        group: &Staged,
        job: &mut Staged,
    ) -> Result<Vec<RowOutcome>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let allowed = row
                .purposes
                .intersect(self.granted(&row.subject, group, job));
            if allowed.is_empty() {
                out.push(RowOutcome::ConsentChanged);
                continue;
            }
            let key = row.dedup_key;
            if self.dedup.contains(&key)
                || group.dedup.contains_key(&key)
                || job.dedup.contains_key(&key)
            {
                out.push(RowOutcome::Duplicate);
                continue;
            }
            self.conn
                .prepare_cached(
                    "INSERT INTO events (subject_id, source_id, dedup_key, kind, category,
                       purposes, event_ms, received_ms, day, sealed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    &row.subject.as_bytes()[..],
                    row.source,
                    &row.dedup_key[..],
                    row.kind.as_str(),
                    row.category.as_str(),
                    allowed.bits() as i64,
                    row.event_ms,
                    row.received_ms,
                    row.event_ms.div_euclid(86_400_000),
                    row.sealed_payload
                ])?;
            job.dedup.insert(key, row.received_ms);
            for ident in &row.link {
                self.link(row.subject, ident, row.received_ms, group, job)?;
            }
            if !row.features.is_empty() {
                if let Some(bit) = self.shared.insights.as_ref().map(|i| i.bit) {
                    if allowed.contains(bit) {
                        let dense = match self.dense_cache.get(&row.subject) {
                            Some(d) => *d,
                            None => {
                                let d =
                                    insights::dense(&self.conn, &mut self.next_dense, row.subject)?;
                                self.dense_cache.insert(row.subject, d);
                                d
                            }
                        };
                        self.pending.add(row.subject, dense, &row.features);
                    }
                }
            }
            out.push(RowOutcome::Stored);
        }
        Ok(out)
    }
}

impl PendingFeatures {
    fn add(&mut self, subject: SubjectId, dense: u32, deltas: &[candor_insights::FeatureDelta]) {
        use candor_insights::FeatureDelta;
        for d in deltas {
            match d {
                FeatureDelta::Activity(f) => {
                    let key = (
                        subject,
                        f.day.days(),
                        f.kind.code(),
                        f.category.as_str().to_owned(),
                    );
                    let e = self.activity.entry(key).or_insert_with(|| {
                        (
                            dense,
                            candor_insights::DailyFeature {
                                count: 0,
                                ..f.clone()
                            },
                        )
                    });
                    e.1.count = e.1.count.saturating_add(f.count);
                }
                other => self.declared.push((subject, dense, other.clone())),
            }
        }
    }
}

impl Writer {
    /// Writes the pending feature changes (merged) into the open transaction.
    fn flush_features(&mut self, staged: &mut Staged) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        for ((subject, ..), (dense, f)) in pending.activity {
            insights::write_features(
                &self.conn,
                subject,
                dense,
                std::slice::from_ref(&candor_insights::FeatureDelta::Activity(f)),
                &mut staged.features,
            )?;
        }
        for (subject, dense, d) in pending.declared {
            insights::write_features(
                &self.conn,
                subject,
                dense,
                std::slice::from_ref(&d),
                &mut staged.features,
            )?;
        }
        Ok(())
    }
}

fn fail(job: Job, e: StoreError) {
    match job {
        Job::Consent { reply, .. } => drop(reply.send(Err(e))),
        Job::Ingest { reply, .. } => drop(reply.send(Err(e))),
        Job::Sweep { reply } => drop(reply.send(Err(e))),
        Job::Retention { reply, .. } => drop(reply.send(Err(e))),
        Job::Advertiser { reply, .. } => drop(reply.send(Err(e))),
        Job::Report { reply, .. } => drop(reply.send(Err(e))),
        Job::Shutdown { reply } => drop(reply.send(())),
    }
}
