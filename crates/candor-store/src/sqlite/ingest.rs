//! Event batches on SQLite, inside the writer's group transaction: each row decided by
//! `plan::ingest` against the granted sets as this transaction sees them and the
//! in-memory de-duplication window, then appended to the event log.
//!
//! A stored row that feeds insight features keeps its sealed deltas in its `features`
//! column (the log the features are derived from) and hands the plain deltas to the
//! writer's feature log, which applies them once the group has committed.

use super::writer::{FeatureEffect, Pending, Writer};
use crate::plan::features::feeds;
use crate::plan::ingest::{GroupGate, Verdict};
use crate::seal::SealedRow;
use crate::types::RowOutcome;
use crate::StoreError;
use rusqlite::params;

pub(super) fn apply(
    w: &mut Writer,
    rows: Vec<SealedRow>,
    group: &Pending,
    job: &mut Pending,
) -> Result<Vec<RowOutcome>, StoreError> {
    let bit = w.caches.insights_bit();
    let mut gate = GroupGate::default();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let key = row.dedup_key;
        let seen = w.dedup.contains(&key)
            || group.dedup.contains_key(&key)
            || job.dedup.contains_key(&key);
        let granted = w.granted(&row.subject, group, job);
        let verdict = gate.decide(row.purposes, key, granted, seen);
        out.push(verdict.outcome());
        let Verdict::Store(allowed) = verdict else {
            continue;
        };
        let fed = feeds(bit, allowed, !row.deltas.is_empty());
        w.conn
            .prepare_cached(
                "INSERT INTO events (subject_id, source_id, dedup_key, kind, category,
                   purposes, event_ms, received_ms, day, sealed, features)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                &row.subject.as_bytes()[..],
                row.source,
                &row.dedup_key[..],
                row.kind.as_str(),
                row.category.as_str(),
                allowed.bits() as i64,
                row.event_ms.0,
                row.received_ms.0,
                row.event_ms.day(),
                row.payload,
                if fed { row.features.as_deref() } else { None },
            ])?;
        job.events_upto = w.conn.last_insert_rowid();
        job.dedup.insert(key, row.received_ms.0);
        for ident in &row.link {
            w.link(row.subject, ident, row.received_ms.0, group, job)?;
        }
        if fed {
            let dense = w.log.dense(&w.conn, row.subject)?;
            job.features.push(FeatureEffect::Add {
                subject: row.subject,
                dense,
                deltas: row.deltas,
            });
        }
    }
    Ok(out)
}
