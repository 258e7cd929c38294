//! Event batches on PostgreSQL: every ingest job queued on this node is committed in
//! one transaction with one multi-row insert for the events, one for their
//! de-duplication keys and one for new identity links (arrays bound as parameters and
//! expanded with `unnest`, so a group costs the same handful of round trips whether it
//! holds one row or thousands).
//!
//! **Consent is re-checked in the database.** This node's consent index may lag a
//! change made on another node by a notification's delay, so the transaction first
//! takes the gate lock *shared* and then reads the granted purposes of the batch's
//! subjects from `consent_state`. A withdrawal takes the gate *exclusively* (see
//! `consent`): it waits for in-flight batches to commit, and its floor then covers
//! their rows; batches that start after it wait for it and read the withdrawn state.
//! Batches do not block each other (shared holders are compatible), and grants never
//! take the gate.
//!
//! **De-duplication across nodes.** A row's `dedup_key` (keyed hash of source and
//! `messageId`) received on day D is inserted into `dedup_keys` as (D, key) and
//! (D + 1, key) with `ON CONFLICT DO NOTHING RETURNING`. The row is new only if both
//! were inserted. A retry on day D conflicts on (D, key), on day D + 1 on (D + 1, key),
//! so a retry across midnight is caught; and because it is a unique constraint, not a
//! read-then-write, two nodes inserting the same key at once cannot both win (the
//! second waits for the first to commit, then conflicts). Keys are inserted sorted, so
//! two batches sharing keys lock them in the same order and cannot deadlock. Partitions
//! older than yesterday hold no key a new message can conflict with and are dropped, so
//! the window is 24 to 48 hours (Segment's is about a day).
//!
//! **Features** are not written here: a stored row that feeds them keeps its sealed
//! deltas in its `features` column, and the deriver applies them after commit (see
//! `derive`).

use super::locks::{self, Hold};
use super::partitions::{day_of_ms, Table};
use super::{sql, Shared};
use crate::front::Reply;
use crate::plan::features::feeds;
use crate::plan::ingest::{GroupGate, Verdict};
use crate::retry::{copy_err, ATTEMPTS};
use crate::rows::Col;
use crate::seal::SealedRow;
use crate::types::*;
use crate::StoreError;
use candor_core::crypto::LookupHash;
use candor_core::idhash::{IdMap, IdSet};
use candor_core::{PurposeSet, SubjectId};
use deadpool_postgres::Transaction;
use std::collections::HashSet;

pub(super) type Job = (Vec<SealedRow>, Reply<Vec<RowOutcome>>);

/// Why a group failed: a missing partition is retried once (another node's retention
/// may have dropped one this node remembered).
enum Failure {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Failure::Store(e.into())
    }
}

impl Failure {
    fn contention(&self) -> bool {
        match self {
            Failure::Pg(e) => crate::error::is_contention(e),
            Failure::Store(e) => matches!(e, StoreError::Contention(_)),
        }
    }

    fn missing_partition(&self) -> bool {
        matches!(self, Failure::Pg(e) if e.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
            && e.as_db_error().is_some_and(|d| d.message().contains("no partition")))
    }

    fn into_store(self) -> StoreError {
        match self {
            Failure::Pg(e) => e.into(),
            Failure::Store(e) => e,
        }
    }
}

pub(super) async fn commit_group(shared: &Shared, jobs: Vec<Job>) {
    let mut retried = false;
    let mut attempt = 1;
    let result = loop {
        let res = match ensure_partitions(shared, &jobs).await {
            Ok(()) => run(shared, &jobs).await,
            Err(e) => Err(Failure::Store(e)),
        };
        match res {
            Err(f) if !retried && f.missing_partition() => {
                shared.partitions.forget_all();
                retried = true;
            }
            // Rolled back whole: run it again (see `retry::retrying`).
            Err(f) if attempt < ATTEMPTS && f.contention() => {
                tracing::warn!(
                    attempt,
                    "ingest group aborted by the database to resolve contention; running it again"
                );
                attempt += 1;
                crate::retry::back_off(attempt).await;
            }
            other => break other,
        }
    };
    match result {
        Ok((outcomes, linked)) => {
            shared.publish_ids(linked);
            for ((_, reply), out) in jobs.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(out));
            }
        }
        Err(f) => {
            let e = f.into_store();
            tracing::error!(error = %e, "ingest group commit failed");
            for (_, reply) in jobs {
                let _ = reply.send(Err(copy_err(&e)));
            }
        }
    }
}

/// Event partitions for each receive day (and the next, so midnight finds it ready),
/// dedup partitions for each day and the two after it.
async fn ensure_partitions(shared: &Shared, jobs: &[Job]) -> Result<(), StoreError> {
    let days: HashSet<i32> = jobs
        .iter()
        .flat_map(|j| &j.0)
        .map(|r| day_of_ms(r.received_ms.0))
        .collect();
    let needed = days.into_iter().flat_map(|d| {
        [
            (Table::Events, d),
            (Table::Events, d.saturating_add(1)),
            (Table::Dedup, d),
            (Table::Dedup, d.saturating_add(1)),
            (Table::Dedup, d.saturating_add(2)),
        ]
    });
    shared.partitions.ensure(&shared.pool, needed).await
}

/// The group's rows, `(job, row, purposes stored under)` for the ones to store.
type Stored = Vec<(usize, usize, PurposeSet)>;

async fn run(
    shared: &Shared,
    jobs: &[Job],
) -> Result<(Vec<Vec<RowOutcome>>, IdMap<LookupHash, SubjectId>), Failure> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    locks::take(&tx, locks::GATE, Hold::Shared).await?;
    let granted = granted(shared, &tx, jobs).await?;

    // Consent, then duplicates within the group; what is left is a candidate.
    let mut gate = GroupGate::default();
    let mut outcomes: Vec<Vec<RowOutcome>> = Vec::with_capacity(jobs.len());
    let mut candidates: Stored = Vec::new();
    for (ji, (rows, _)) in jobs.iter().enumerate() {
        let mut out = Vec::with_capacity(rows.len());
        for (ri, row) in rows.iter().enumerate() {
            let g = granted.get(&row.subject).copied().unwrap_or_default();
            let verdict = gate.decide(row.purposes, row.dedup_key, g, false);
            if let Verdict::Store(allowed) = verdict {
                candidates.push((ji, ri, allowed));
            }
            out.push(verdict.outcome());
        }
        outcomes.push(out);
    }
    let row = |ji: usize, ri: usize| &jobs[ji].0[ri];

    // De-duplication against every node: (day, key) and (day + 1, key), sorted.
    let mut pairs: Vec<(i32, [u8; 16])> = Vec::with_capacity(candidates.len() * 2);
    for (ji, ri, _) in &candidates {
        let r = row(*ji, *ri);
        let d = day_of_ms(r.received_ms.0);
        pairs.push((d, r.dedup_key));
        pairs.push((d.saturating_add(1), r.dedup_key));
    }
    pairs.sort_unstable();
    let days: Vec<i32> = pairs.iter().map(|(d, _)| *d).collect();
    let keys: Vec<&[u8]> = pairs.iter().map(|(_, k)| &k[..]).collect();
    let inserted: HashSet<(i32, [u8; 16])> = sql::query(
        &tx,
        "INSERT INTO dedup_keys (day, dedup_key)
         SELECT d, k FROM unnest($1::int4[], $2::bytea[]) AS t(d, k) ORDER BY d, k
         ON CONFLICT DO NOTHING RETURNING day, dedup_key",
        &[&days, &keys],
    )
    .await?
    .iter()
    .filter_map(|r| {
        Some((
            r.get::<_, i32>(0),
            <[u8; 16]>::try_from(r.get::<_, &[u8]>(1)).ok()?,
        ))
    })
    .collect();

    let mut stored: Stored = Vec::with_capacity(candidates.len());
    for (ji, ri, allowed) in candidates {
        let r = row(ji, ri);
        let d = day_of_ms(r.received_ms.0);
        let new = inserted.contains(&(d, r.dedup_key))
            && inserted.contains(&(d.saturating_add(1), r.dedup_key));
        if new {
            stored.push((ji, ri, allowed));
        } else if let Some(o) = outcomes.get_mut(ji).and_then(|v| v.get_mut(ri)) {
            *o = RowOutcome::Duplicate;
        }
    }

    if !stored.is_empty() {
        insert_events(&tx, &stored, jobs, shared.insights_bit()).await?;
    }
    let (linked, subjects) = link(shared, &tx, &stored, jobs).await?;
    super::listen::notify(&tx, &subjects).await?;
    tx.commit().await?;
    Ok((outcomes, linked))
}

/// Granted purposes of the batch's subjects, as committed (read after taking the gate).
async fn granted(
    shared: &Shared,
    tx: &Transaction<'_>,
    jobs: &[Job],
) -> Result<IdMap<SubjectId, PurposeSet>, Failure> {
    let subjects: IdSet<SubjectId> = jobs.iter().flat_map(|j| &j.0).map(|r| r.subject).collect();
    let keys: Vec<&[u8]> = subjects.iter().map(|s| &s.as_bytes()[..]).collect();
    let mut out: IdMap<SubjectId, PurposeSet> = IdMap::default();
    for r in sql::query(
        tx,
        "SELECT subject_id, purpose_id FROM consent_state
         WHERE subject_id = ANY($1) AND status = 'given'",
        &[&keys],
    )
    .await?
    {
        let s = r.subject(0)?;
        let g = shared.granted_of([r.get::<_, &str>(1)]);
        let e = out.entry(s).or_default();
        *e = e.union(g);
    }
    Ok(out)
}

/// Writes the group's events with `COPY … FROM STDIN (FORMAT binary)`: PostgreSQL
/// inserts copied rows in multi-row batches (fewer WAL records and buffer locks than
/// row-by-row `INSERT … SELECT unnest(…)`), which was the larger part of its work per
/// event. Ids still come from the sequence, in arrival order.
async fn insert_events(
    tx: &Transaction<'_>,
    stored: &[(usize, usize, PurposeSet)],
    jobs: &[Job],
    insights_bit: Option<u8>,
) -> Result<(), Failure> {
    use futures_util::pin_mut;
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};
    let sink = tx
        .copy_in(
            "COPY events (day, subject_id, source_id, dedup_key, kind, category, purposes,
               event_ms, received_ms, sealed, features) FROM STDIN (FORMAT binary)",
        )
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT4,
            Type::BYTEA,
            Type::TEXT,
            Type::BYTEA,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::BYTEA,
            Type::BYTEA,
        ],
    );
    pin_mut!(writer);
    for (ji, ri, allowed) in stored {
        let r = &jobs[*ji].0[*ri];
        let day = day_of_ms(r.received_ms.0);
        let purposes = allowed.bits() as i64;
        let features = r
            .features
            .as_deref()
            .filter(|_| feeds(insights_bit, *allowed, !r.deltas.is_empty()));
        let row: [&(dyn ToSql + Sync); 11] = [
            &day,
            &&r.subject.as_bytes()[..],
            &r.source.as_str(),
            &&r.dedup_key[..],
            &r.kind.as_str(),
            &r.category.as_str(),
            &purposes,
            &r.event_ms.0,
            &r.received_ms.0,
            &&r.payload[..],
            &features,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Links identifiers seen on stored rows that no subject has yet, claiming each in
/// `identity_lookup` (first claim wins, across nodes). Returns the links made and the
/// subjects linked.
async fn link(
    shared: &Shared,
    tx: &Transaction<'_>,
    stored: &[(usize, usize, PurposeSet)],
    jobs: &[Job],
) -> Result<(IdMap<LookupHash, SubjectId>, Vec<SubjectId>), Failure> {
    let mut want = Vec::new();
    let mut seen: IdSet<LookupHash> = IdSet::default();
    for (ji, ri, _) in stored {
        let r = &jobs[*ji].0[*ri];
        for ident in &r.link {
            if seen.insert(ident.hash) && shared.resolve(&ident.hash).is_none() {
                want.push((r.subject, ident, r.received_ms));
            }
        }
    }
    if want.is_empty() {
        return Ok((IdMap::default(), Vec::new()));
    }
    want.sort_by_key(|w| w.1.hash.0);
    let hashes: Vec<&[u8]> = want.iter().map(|w| &w.1.hash.0[..]).collect();
    let subjects: Vec<&[u8]> = want.iter().map(|w| &w.0.as_bytes()[..]).collect();
    let kinds: Vec<i16> = want.iter().map(|w| i16::from(w.1.kind.code())).collect();
    let sealed: Vec<&[u8]> = want.iter().map(|w| &w.1.sealed[..]).collect();
    let times: Vec<i64> = want.iter().map(|w| w.2 .0).collect();
    let rows = sql::query(
        tx,
        "WITH input AS (
           SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::int2[], $4::bytea[], $5::int8[])
             AS t(lookup_hash, subject_id, kind, sealed_value, created_ms)
         ), claimed AS (
           INSERT INTO identity_lookup (lookup_hash, subject_id)
           SELECT lookup_hash, subject_id FROM input ORDER BY lookup_hash
           ON CONFLICT (lookup_hash) DO NOTHING RETURNING lookup_hash
         )
         INSERT INTO identities (subject_id, lookup_hash, kind, sealed_value, created_ms)
         SELECT i.subject_id, i.lookup_hash, i.kind, i.sealed_value, i.created_ms
         FROM input i JOIN claimed c USING (lookup_hash)
         RETURNING lookup_hash, subject_id",
        &[&hashes, &subjects, &kinds, &sealed, &times],
    )
    .await?;
    let mut linked = IdMap::default();
    let mut subjects = IdSet::default();
    for r in &rows {
        let s = r.subject(1)?;
        linked.insert(LookupHash(r.blob_n(0, "lookup hash")?), s);
        subjects.insert(s);
    }
    Ok((linked, subjects.into_iter().collect()))
}
