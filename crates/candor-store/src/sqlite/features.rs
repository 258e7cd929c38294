//! Insight features on SQLite, derived from the event log after commit.
//!
//! The single writer stores each featured row's sealed deltas in the row itself (the
//! log) and, once the group has committed, adds the plain deltas to the feature index
//! and to a merged [`Batch`]. The batch is persisted every [`FLUSH_EVERY`] (or when it
//! holds [`FLUSH_KEYS`] features, or the writer is idle) in one transaction that also
//! moves the watermark (`feature_watermark.applied_upto`, the highest event id the
//! tables include). Merging matters: a stream of events for one app on one day becomes
//! one upsert per flush instead of one per group, and the upserts leave the ingest
//! transaction altogether.
//!
//! Crash safety: the tables and the watermark move together, so after a crash the
//! events past the watermark are read back from the log at open ([`FeatureLog::open`])
//! and applied exactly once. A logged row counts only if it still feeds the insights
//! purpose after purpose floors (`plan::features::feeds`), which is what the live path's
//! [`FeatureEffect::Forget`] on a consent flip amounts to: a flip's floor covers every
//! row the subject stored before it.

use super::writer::FeatureEffect;
use crate::caches::Caches;
use crate::features::{self, IndexOp, MAX_COUNT};
use crate::plan::features::{feeds, Batch};
use crate::plan::floors::{self, Floors};
use crate::rows::Col;
use crate::StoreError;
use candor_core::crypto::SubjectKey;
use candor_core::idhash::IdMap;
use candor_core::{PurposeSet, SubjectId};
use candor_insights::{FeatureDelta, FeatureIndex};
use rusqlite::{params, Connection, OptionalExtension};
use std::time::{Duration, Instant};

/// Persist merged deltas at least this often under load.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// ...or as soon as the batch holds this many distinct features.
const FLUSH_KEYS: usize = 20_000;

pub(super) struct FeatureLog {
    batch: Batch,
    /// The highest event id committed (so included in the batch or the tables).
    committed: i64,
    /// The watermark as stored.
    stored: i64,
    last_flush: Instant,
    /// The next insight subject number (one more than the highest ever stored; only
    /// grows, also when a transaction rolls back, so a number is never handed out twice).
    next_dense: u32,
    /// Subject → insight number, so a stream of events does not look it up per row.
    /// Cleared when a group rolls back (a number it assigned may not exist then).
    dense_cache: IdMap<SubjectId, u32>,
    /// Insights are configured (otherwise rows carry no deltas and nothing is kept).
    enabled: bool,
    /// After a failed flush, the idle loop waits until then before trying again.
    retry_at: Option<Instant>,
}

impl FeatureLog {
    /// Opens the log at start: applies what the log holds past the watermark (what a
    /// crash left unpersisted), then loads the tables into the index.
    pub fn open(conn: &Connection, caches: &Caches) -> Result<Self, StoreError> {
        let stored: i64 = conn.query_row(
            "SELECT applied_upto FROM feature_watermark WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let committed: i64 =
            conn.query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))?;
        // One more than the highest number stored, or than the highest an erasure
        // deleted (`insight_dense_next`): numbers are never handed out twice.
        let next: i64 = conn.query_row(
            "SELECT max(coalesce((SELECT max(dense) + 1 FROM insight_subjects), 0),
                        coalesce((SELECT next FROM insight_dense_next WHERE id = 1), 0))",
            [],
            |r| r.get(0),
        )?;
        let next_dense = u32::try_from(next)
            .map_err(|_| StoreError::Corrupt("insight subject numbers exhausted".into()))?;
        let mut log = FeatureLog {
            batch: Batch::default(),
            committed: stored.max(committed),
            stored,
            last_flush: Instant::now(),
            next_dense,
            dense_cache: IdMap::default(),
            enabled: caches.insights_bit().is_some(),
            retry_at: None,
        };
        if let Some(bit) = caches.insights_bit() {
            log.replay(conn, caches, bit)?;
            log.flush(conn)?;
            load(conn, caches)?;
        }
        Ok(log)
    }

    /// Reads the logged rows past the watermark into the batch.
    fn replay(&mut self, conn: &Connection, caches: &Caches, bit: u8) -> Result<(), StoreError> {
        let mut floors = Floors::default();
        {
            let mut st = conn.prepare("SELECT subject_id, bit, upto_id FROM purpose_floors")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                floors
                    .entry(r.subject(0)?)
                    .or_default()
                    .push((u8::try_from(r.int(1)?).unwrap_or(u8::MAX), r.int(2)?));
            }
        }
        let mut keys: IdMap<SubjectId, SubjectKey> = IdMap::default();
        let mut st = conn.prepare(
            "SELECT id, subject_id, purposes, features FROM events
             WHERE id > ?1 AND features IS NOT NULL ORDER BY id",
        )?;
        let mut rows = st.query(params![self.stored])?;
        let mut replayed = 0u64;
        while let Some(r) = rows.next()? {
            let (id, subject) = (r.int(0)?, r.subject(1)?);
            let mask = floors.get(&subject).map_or(0, |f| floors::mask(f, id));
            let under = PurposeSet::from_bits((r.int(2)? as u64) & !mask);
            if !feeds(Some(bit), under, true) {
                continue;
            }
            let key = match keys.get(&subject) {
                Some(k) => k.clone(),
                None => {
                    let k = super::read::subject_key(conn, &caches.master, subject)?
                        .ok_or(StoreError::UnknownSubject)?;
                    keys.insert(subject, k.clone());
                    k
                }
            };
            let deltas = crate::seal::open_features(&key, subject, &r.blob(3)?)?;
            self.dense(conn, subject)?;
            self.batch.add(subject, &deltas);
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(
                events = replayed,
                "insight features replayed from the event log"
            );
        }
        Ok(())
    }

    /// Whether anything awaits persisting.
    fn pending(&self) -> bool {
        self.enabled && (!self.batch.is_empty() || self.committed > self.stored)
    }

    /// Whether anything awaits persisting and, after a failure, it is time to retry.
    fn has_pending(&self) -> bool {
        self.pending() && self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// Whether it is time to persist.
    pub fn due(&self) -> bool {
        self.has_pending()
            && (self.batch.len() >= FLUSH_KEYS || self.last_flush.elapsed() >= FLUSH_EVERY)
    }

    /// How long until something pending is due (`None`: nothing is pending).
    pub fn due_in(&self) -> Option<Duration> {
        self.has_pending()
            .then(|| FLUSH_EVERY.saturating_sub(self.last_flush.elapsed()))
    }

    /// Applies what a committed group staged, in order: deltas go to the index at once
    /// and to the batch; a flip drops the subject from both.
    pub fn committed(&mut self, caches: &Caches, effects: Vec<FeatureEffect>, upto: i64) {
        let index: &FeatureIndex = &caches.features;
        for e in effects {
            match e {
                FeatureEffect::Add {
                    subject,
                    dense,
                    deltas,
                } => {
                    for op in index_ops(subject, dense, &deltas) {
                        op.apply(index, true);
                    }
                    self.batch.add(subject, &deltas);
                }
                FeatureEffect::Forget(subject) => {
                    self.batch.forget(&subject);
                    index.remove_subject(&subject);
                }
            }
        }
        self.committed = self.committed.max(upto);
    }

    /// The next insight number this log would hand out (every number below it may be
    /// in a report's membership).
    pub fn next_dense(&self) -> u32 {
        self.next_dense
    }

    /// An erased subject: its merged deltas are dropped (they must not be written back
    /// by the next flush) and its number forgotten.
    pub fn forget(&mut self, s: &SubjectId) {
        self.batch.forget(s);
        self.dense_cache.remove(s);
    }

    /// A group rolled back: numbers it assigned may not exist.
    pub fn rolled_back(&mut self) {
        self.dense_cache.clear();
    }

    /// Writes the batch and the watermark in one transaction (on the writer thread,
    /// between groups). On failure the batch is kept for the next attempt.
    pub fn flush(&mut self, conn: &Connection) -> Result<(), StoreError> {
        if !self.pending() {
            return Ok(());
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match write(conn, &self.batch, self.committed)
            .and_then(|_| Ok(conn.execute_batch("COMMIT")?))
        {
            Ok(()) => {
                self.batch = Batch::default();
                self.stored = self.committed;
                self.last_flush = Instant::now();
                self.retry_at = None;
                Ok(())
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                self.retry_at = Some(Instant::now() + FLUSH_EVERY);
                Err(e)
            }
        }
    }

    /// The subject's insight number, assigning the next one the first time (inside the
    /// writer's open transaction, so it commits with the row that needed it).
    pub fn dense(&mut self, conn: &Connection, s: SubjectId) -> Result<u32, StoreError> {
        if let Some(d) = self.dense_cache.get(&s) {
            return Ok(*d);
        }
        let found: Option<i64> = conn
            .prepare_cached(crate::statements::DENSE_OF)?
            .query_row(params![&s.as_bytes()[..]], |r| r.get(0))
            .optional()?;
        let d = match found {
            Some(d) => u32::try_from(d)
                .map_err(|_| StoreError::Corrupt("insight subject number".into()))?,
            None => {
                let d = self.next_dense;
                self.next_dense = d.checked_add(1).ok_or_else(|| {
                    StoreError::Database("insight subject numbers exhausted".into())
                })?;
                conn.prepare_cached(
                    "INSERT INTO insight_subjects (subject_id, dense) VALUES (?1, ?2)",
                )?
                .execute(params![&s.as_bytes()[..], i64::from(d)])?;
                d
            }
        };
        self.dense_cache.insert(s, d);
        Ok(d)
    }
}

/// The index updates of one row's deltas (activity counts as deltas).
fn index_ops(subject: SubjectId, dense: u32, deltas: &[FeatureDelta]) -> Vec<IndexOp> {
    deltas
        .iter()
        .map(|d| match d {
            FeatureDelta::Activity(f) => IndexOp::Activity {
                subject,
                dense,
                feature: f.clone(),
            },
            FeatureDelta::Declare { field, value } => IndexOp::Declared {
                subject,
                dense,
                field: field.clone(),
                value: Some(value.clone()),
            },
            FeatureDelta::Undeclare { field } => IndexOp::Declared {
                subject,
                dense,
                field: field.clone(),
                value: None,
            },
        })
        .collect()
}

/// Adds a batch to the feature tables and moves the watermark to `upto`.
fn write(conn: &Connection, batch: &Batch, upto: i64) -> Result<(), StoreError> {
    for (s, f) in batch.activity_features() {
        conn.prepare_cached(
            "INSERT INTO insight_features (subject_id, day, kind, category, count)
             VALUES (?1, ?2, ?3, ?4, min(?5, ?6))
             ON CONFLICT (subject_id, day, kind, category)
             DO UPDATE SET count = min(count + excluded.count, ?6)",
        )?
        .execute(params![
            &s.as_bytes()[..],
            f.day.days(),
            f.kind.code(),
            f.category.as_str(),
            i64::from(f.count),
            MAX_COUNT
        ])?;
    }
    for ((s, field), value) in &batch.declared {
        match value {
            Some(v) => conn
                .prepare_cached(
                    "INSERT INTO insight_declared (subject_id, field, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (subject_id, field) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![&s.as_bytes()[..], field, v])?,
            None => conn
                .prepare_cached(
                    "DELETE FROM insight_declared WHERE subject_id = ?1 AND field = ?2",
                )?
                .execute(params![&s.as_bytes()[..], field])?,
        };
    }
    conn.prepare_cached("UPDATE feature_watermark SET applied_upto = ?1 WHERE id = 1")?
        .execute(params![upto])?;
    Ok(())
}

/// Loads every stored feature into the index. Rows of subjects that do not grant the
/// insights purpose now are skipped: they can only be left over from a time insights
/// were not configured (and are deleted when the subject next grants it).
fn load(conn: &Connection, caches: &Caches) -> Result<(), StoreError> {
    let Some(bit) = caches.insights_bit() else {
        return Ok(());
    };
    let grants = |s: &SubjectId| caches.index.granted(s).contains(bit);
    let index = &caches.features;
    let mut st = conn.prepare(
        "SELECT f.subject_id, s.dense, f.day, f.kind, f.category, f.count
         FROM insight_features f JOIN insight_subjects s ON s.subject_id = f.subject_id",
    )?;
    let mut rows = st.query([])?;
    let mut skipped = 0u64;
    while let Some(r) = rows.next()? {
        let subject = r.subject(0)?;
        if !grants(&subject) {
            continue;
        }
        let dense = r.u32(1, "insight subject number")?;
        match features::daily(r.int(2)?, r.int(3)?, &r.text(4)?, r.int(5)?) {
            Some(f) => index.set_activity(subject, dense, &f),
            None => skipped += 1,
        }
    }
    let mut st = conn.prepare(
        "SELECT d.subject_id, s.dense, d.field, d.value
         FROM insight_declared d JOIN insight_subjects s ON s.subject_id = d.subject_id",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let subject = r.subject(0)?;
        if grants(&subject) {
            let value = r.text(3)?;
            index.set_declared(
                subject,
                r.u32(1, "insight subject number")?,
                &r.text(2)?,
                Some(&value),
            );
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "feature rows that cannot be parsed were not loaded"
        );
    }
    Ok(())
}
