//! Insight features on PostgreSQL, derived from the event log after commit (see
//! `crate::features` for why).
//!
//! An ingest transaction stores a featured row's sealed deltas in its `features` column
//! and writes nothing else for features. A deriver then reads the rows past the
//! watermark (`feature_watermark.applied_upto`), keeps the ones that still feed the
//! insights purpose after purpose floors (`plan::features::feeds`), merges their deltas
//! and writes them (`features::write`) together with the new watermark in one
//! transaction, so each row is applied exactly once however often nodes stop.
//!
//! **Which ids are settled.** Ids come from a sequence and ingest transactions commit
//! out of id order, so "every row up to the highest id seen" is not safe: a transaction
//! holding a lower id may still be running. The deriver therefore first takes the gate
//! lock *exclusively* for a moment, as a withdrawal does: every ingest transaction holds
//! it shared from before it takes its ids, so once the deriver has it no ingest is in
//! flight and every id handed out so far is committed or rolled back ([`settled`]). It
//! then derives up to that id, and later ids wait for the next round.
//!
//! **Consent.** The derivation holds the gate *shared*, so a withdrawal (which takes it
//! exclusively) waits for it and a derivation that starts later sees the withdrawal's
//! floor. Rows and floors are read in one statement, so a sweep that rewrites a row and
//! deletes its floor between two reads cannot make a withdrawn row look allowed.
//!
//! **One deriver at a time.** Each node runs a background task ([`background`]) and
//! `Store::refresh_features` derives too; an advisory lock makes them take turns across
//! nodes, and the watermark read under it tells each where the last one stopped.

use super::locks::{self, Hold};
use super::{features, sql, Shared};
use crate::plan::features::{feeds, Batch};
use crate::plan::floors;
use crate::retry::retrying;
use crate::rows::Col;
use crate::StoreError;
use candor_core::crypto::SubjectKey;
use candor_core::idhash::IdMap;
use candor_core::{PurposeSet, SubjectId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Event ids one derivation transaction covers at most (a long backlog after downtime
/// is worked through in steps, each committed with its watermark).
const CHUNK_IDS: i64 = 50_000;

/// Derives every row acknowledged before the call: when this returns `Ok`, the feature
/// tables include every featured row committed before it was called.
pub(super) async fn catch_up(shared: &Shared) -> Result<(), StoreError> {
    let Some(bit) = shared.insights_bit() else {
        return Ok(());
    };
    if !behind(shared).await? {
        return Ok(());
    }
    let upto = settled(shared).await?;
    while retrying("feature derivation", || step(shared, bit, upto)).await? {}
    Ok(())
}

/// Whether ids were handed out past the watermark (no lock: a cheap check that saves
/// the gate's moment when nothing was ingested).
async fn behind(shared: &Shared) -> Result<bool, StoreError> {
    let client = shared.pool.get().await?;
    let r = sql::query_opt(
        &client,
        "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq)
                > (SELECT applied_upto FROM feature_watermark WHERE id = 1)",
        &[],
    )
    .await?;
    Ok(r.map(|r| r.flag(0)).transpose()?.unwrap_or(false))
}

/// The highest event id handed out so far, read without any lock (it may belong to a
/// transaction still running: only a bound, see [`settled`]).
pub(super) async fn handed_out(shared: &Shared) -> Result<i64, StoreError> {
    let client = shared.pool.get().await?;
    Ok(sql::query_opt(
        &client,
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq",
        &[],
    )
    .await?
    .map(|r| r.int(0))
    .transpose()?
    .unwrap_or(0))
}

/// The highest event id handed out so far, read while no ingest transaction is in
/// flight, so every id up to it is settled (see the module docs).
pub(super) async fn settled(shared: &Shared) -> Result<i64, StoreError> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    locks::take(&tx, locks::GATE, Hold::Exclusive).await?;
    let upto = sql::query_opt(
        &tx,
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq",
        &[],
    )
    .await?
    .map(|r| r.int(0))
    .transpose()?
    .unwrap_or(0);
    tx.commit().await?;
    Ok(upto)
}

/// One derivation transaction, up to `upto` at most; returns whether more remains.
async fn step(shared: &Shared, bit: u8, upto: i64) -> Result<bool, StoreError> {
    // The connection before the sync lock (see `features::refresh`).
    let mut client = shared.pool.get().await?;
    let mut sync = shared.feature_sync.lock().await;
    let tx = client.transaction().await?;
    locks::take(&tx, locks::DERIVE, Hold::Exclusive).await?;
    locks::take(&tx, locks::GATE, Hold::Shared).await?;
    let low = sql::query_opt(
        &tx,
        "SELECT applied_upto FROM feature_watermark WHERE id = 1",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("the feature_watermark row is missing".into()))?
    .int(0)?;
    if low >= upto {
        tx.commit().await?;
        return Ok(false);
    }
    let hi = upto.min(low.saturating_add(CHUNK_IDS));
    let rows = sql::query(
        &tx,
        "SELECT e.id, e.subject_id, e.purposes, e.features, f.upto_id
         FROM events e LEFT JOIN purpose_floors f
           ON f.subject_id = e.subject_id AND f.bit = $3
         WHERE e.id > $1 AND e.id <= $2 AND e.features IS NOT NULL
         ORDER BY e.id",
        &[&low, &hi, &i16::from(bit)],
    )
    .await?;
    let mut logged = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = r.int(0)?;
        let floor: Vec<(u8, i64)> = r
            .try_get::<_, Option<i64>>(4)?
            .map(|upto| vec![(bit, upto)])
            .unwrap_or_default();
        let under = PurposeSet::from_bits((r.int(2)? as u64) & !floors::mask(&floor, id));
        if feeds(Some(bit), under, true) {
            logged.push((r.subject(1)?, r.blob(3)?));
        }
    }
    let keys = keys(shared, &tx, logged.iter().map(|l| l.0)).await?;
    let mut batch = Batch::default();
    for (subject, sealed) in &logged {
        let key = keys
            .get(subject)
            .ok_or_else(|| StoreError::Corrupt("a featured subject has no data key".into()))?;
        batch.add(
            *subject,
            &crate::seal::open_features(key, *subject, sealed)?,
        );
    }
    let written = if batch.is_empty() {
        None
    } else {
        Some(features::write(shared, &tx, &batch).await?)
    };
    sql::execute(
        &tx,
        "UPDATE feature_watermark SET applied_upto = $1 WHERE id = 1",
        &[&hi],
    )
    .await?;
    tx.commit().await?;
    if let Some(w) = written {
        // Committed: their numbers exist for good.
        shared.dense.lock().extend(w.dense);
        shared.publish_features(w.ops, &mut sync.retry);
    }
    Ok(hi < upto)
}

/// The data keys of `subjects`, from the cache or the database.
async fn keys(
    shared: &Shared,
    tx: &deadpool_postgres::Transaction<'_>,
    subjects: impl Iterator<Item = SubjectId>,
) -> Result<IdMap<SubjectId, SubjectKey>, StoreError> {
    let mut out = IdMap::default();
    let mut missing = Vec::new();
    for s in subjects {
        if out.contains_key(&s) {
            continue;
        }
        match shared.key(&s) {
            Some(k) => {
                out.insert(s, k);
            }
            None => missing.push(s),
        }
    }
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let ids: Vec<&[u8]> = missing.iter().map(|s| &s.as_bytes()[..]).collect();
        for r in sql::query(
            tx,
            "SELECT subject_id, wrapped_key FROM subjects WHERE subject_id = ANY($1)",
            &[&ids],
        )
        .await?
        {
            let s = r.subject(0)?;
            let k = shared
                .master
                .unwrap_key(&s, &r.blob(1)?)
                .map_err(|e| StoreError::Corrupt(format!("subject key: {e}")))?;
            out.insert(s, k);
        }
    }
    Ok(out)
}

/// Derives every `interval` until stopped.
pub(super) async fn background(
    shared: Arc<Shared>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if shared.insights_bit().is_none() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
        if let Err(e) = catch_up(&shared).await {
            tracing::error!(error = %e, "deriving insight features failed; will retry");
        }
    }
}
