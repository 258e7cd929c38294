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
//! **Features.** Stored rows that carry insight features and are stored under the
//! insights purpose have them written in the same transaction, after the events (see
//! `insights` for the batching and for why that tail runs under this node's feature
//! lock); a group without features never takes it.

use super::partitions::{day_of_ms, Table};
use super::{cache, locks, sql, writer, Shared};
use crate::types::*;
use crate::StoreError;
use candor_core::crypto::{LookupHash, SubjectKey};
use candor_core::idhash::{IdMap, IdSet};
use candor_core::{PurposeSet, SubjectId};
use deadpool_postgres::Transaction;
use std::collections::HashSet;
use tokio::sync::oneshot;

pub(crate) struct Job {
    pub rows: Vec<IngestRow>,
    pub reply: oneshot::Sender<Result<Vec<RowOutcome>, StoreError>>,
}

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

#[derive(Default)]
struct Staged {
    ids: IdMap<LookupHash, SubjectId>,
    keys: IdMap<SubjectId, SubjectKey>,
}

pub(crate) async fn commit_group(shared: &Shared, jobs: Vec<Job>) {
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
            // Rolled back whole: run it again (see `writer::retrying`).
            Err(f) if attempt < writer::ATTEMPTS && f.contention() => {
                tracing::warn!(
                    attempt,
                    "ingest group aborted by the database to resolve contention; running it again"
                );
                attempt += 1;
            }
            other => break other,
        }
    };
    match result {
        Ok((outcomes, staged)) => {
            shared.ids.write().extend(staged.ids);
            shared.keys.write().extend(staged.keys);
            for (job, out) in jobs.into_iter().zip(outcomes) {
                let _ = job.reply.send(Ok(out));
            }
        }
        Err(f) => {
            let e = f.into_store();
            tracing::error!(error = %e, "ingest group commit failed");
            for job in jobs {
                let _ = job.reply.send(Err(writer::copy_err(&e)));
            }
        }
    }
}

/// Event partitions for each receive day (and the next, so midnight finds it ready),
/// dedup partitions for each day and the two after it.
async fn ensure_partitions(shared: &Shared, jobs: &[Job]) -> Result<(), StoreError> {
    let days: HashSet<i32> = jobs
        .iter()
        .flat_map(|j| &j.rows)
        .map(|r| day_of_ms(r.received_ms))
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

async fn run(shared: &Shared, jobs: &[Job]) -> Result<(Vec<Vec<RowOutcome>>, Staged), Failure> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    sql::execute(
        &tx,
        "SELECT pg_advisory_xact_lock_shared($1, $2)",
        &[&locks::CLASS, &locks::GATE],
    )
    .await?;
    let granted = granted(shared, &tx, jobs).await?;

    // Consent, then duplicates within the group; what is left is a candidate.
    let mut outcomes: Vec<Vec<RowOutcome>> = jobs
        .iter()
        .map(|j| vec![RowOutcome::Stored; j.rows.len()])
        .collect();
    let mut seen: IdSet<[u8; 16]> = IdSet::default();
    let mut candidates: Vec<(usize, usize, PurposeSet)> = Vec::new();
    for (ji, job) in jobs.iter().enumerate() {
        for (ri, row) in job.rows.iter().enumerate() {
            let allowed = row
                .purposes
                .intersect(granted.get(&row.subject).copied().unwrap_or_default());
            let outcome = if allowed.is_empty() {
                RowOutcome::ConsentChanged
            } else if !seen.insert(row.dedup_key) {
                RowOutcome::Duplicate
            } else {
                candidates.push((ji, ri, allowed));
                continue;
            };
            if let Some(o) = outcomes.get_mut(ji).and_then(|v| v.get_mut(ri)) {
                *o = outcome;
            }
        }
    }
    let row = |ji: usize, ri: usize| &jobs[ji].rows[ri];

    // De-duplication against every node: (day, key) and (day + 1, key), sorted.
    let mut pairs: Vec<(i32, [u8; 16])> = Vec::with_capacity(candidates.len() * 2);
    for (ji, ri, _) in &candidates {
        let r = row(*ji, *ri);
        let d = day_of_ms(r.received_ms);
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

    let mut stored: Vec<(usize, usize, PurposeSet)> = Vec::with_capacity(candidates.len());
    for (ji, ri, allowed) in candidates {
        let r = row(ji, ri);
        let d = day_of_ms(r.received_ms);
        let new = inserted.contains(&(d, r.dedup_key))
            && inserted.contains(&(d.saturating_add(1), r.dedup_key));
        if new {
            stored.push((ji, ri, allowed));
        } else if let Some(o) = outcomes.get_mut(ji).and_then(|v| v.get_mut(ri)) {
            *o = RowOutcome::Duplicate;
        }
    }

    if !stored.is_empty() {
        insert_events(&tx, &stored, jobs).await?;
    }
    let mut staged = Staged::default();
    let linked = link(shared, &tx, &stored, jobs, &mut staged).await?;
    let featured: Vec<(SubjectId, &[candor_insights::FeatureDelta])> = match &shared.insights {
        Some(ins) => stored
            .iter()
            .filter(|(_, _, allowed)| allowed.contains(ins.bit))
            .map(|(ji, ri, _)| row(*ji, *ri))
            .filter(|r| !r.features.is_empty())
            .map(|r| (r.subject, &r.features[..]))
            .collect(),
        None => Vec::new(),
    };
    // Activity counts only grow while their row lives, so groups that carry nothing but
    // activity publish with "raise" and need no ordering among themselves: they commit
    // concurrently and take the sync lock only to publish (after a retention prune, the
    // index's floor drops late days). Declared fields are last-writer-wins, so a group
    // carrying any holds the lock through COMMIT and publishes in commit order (see
    // `insights`).
    let declares = featured.iter().any(|(_, ds)| {
        ds.iter()
            .any(|d| !matches!(d, candor_insights::FeatureDelta::Activity(_)))
    });
    let mut features = None;
    if !featured.is_empty() {
        let sync = if declares {
            Some(shared.feature_sync.lock().await)
        } else {
            None
        };
        let written = super::insights::write(shared, &tx, &featured).await?;
        features = Some((sync, written));
    }
    super::listen::notify(&tx, &linked).await?;
    tx.commit().await?;
    if let Some((sync, written)) = features {
        let raise = sync.is_none();
        let mut sync = match sync {
            Some(s) => s,
            None => shared.feature_sync.lock().await,
        };
        // Committed: their numbers exist for good.
        shared.dense.lock().extend(written.dense);
        let versions = written.versions;
        shared.publish_features(
            written.ops.into_iter().map(|op| {
                let v = versions.get(&op.subject()).copied().unwrap_or(0);
                (op, v)
            }),
            &mut sync.retry,
            raise,
        );
    }
    Ok((outcomes, staged))
}

/// Granted purposes of the batch's subjects, as committed (read after taking the gate).
async fn granted(
    shared: &Shared,
    tx: &Transaction<'_>,
    jobs: &[Job],
) -> Result<IdMap<SubjectId, PurposeSet>, Failure> {
    let subjects: IdSet<SubjectId> = jobs
        .iter()
        .flat_map(|j| &j.rows)
        .map(|r| r.subject)
        .collect();
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
        let s = cache::subject(r.get(0))?;
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
) -> Result<(), Failure> {
    use futures_util::pin_mut;
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};
    let sink = tx
        .copy_in(
            "COPY events (day, subject_id, source_id, dedup_key, kind, category, purposes,
               event_ms, received_ms, sealed) FROM STDIN (FORMAT binary)",
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
        ],
    );
    pin_mut!(writer);
    for (ji, ri, allowed) in stored {
        let r = &jobs[*ji].rows[*ri];
        let day = day_of_ms(r.received_ms);
        let purposes = allowed.bits() as i64;
        let row: [&(dyn ToSql + Sync); 10] = [
            &day,
            &&r.subject.as_bytes()[..],
            &r.source.as_str(),
            &&r.dedup_key[..],
            &r.kind.as_str(),
            &r.category.as_str(),
            &purposes,
            &r.event_ms,
            &r.received_ms,
            &&r.sealed_payload[..],
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Links identifiers seen on stored rows that no subject has yet, claiming each in
/// `identity_lookup` (first claim wins, across nodes). Returns the subjects linked.
async fn link(
    shared: &Shared,
    tx: &Transaction<'_>,
    stored: &[(usize, usize, PurposeSet)],
    jobs: &[Job],
    staged: &mut Staged,
) -> Result<Vec<SubjectId>, Failure> {
    let mut want: Vec<(LookupHash, SubjectId, &Identity, i64)> = Vec::new();
    let mut seen: IdSet<LookupHash> = IdSet::default();
    for (ji, ri, _) in stored {
        let r = &jobs[*ji].rows[*ri];
        for ident in &r.link {
            if seen.insert(ident.hash) && shared.ids.read().get(&ident.hash).is_none() {
                want.push((ident.hash, r.subject, ident, r.received_ms));
            }
        }
    }
    if want.is_empty() {
        return Ok(Vec::new());
    }
    want.sort_by_key(|w| w.0 .0);
    let mut hashes = Vec::with_capacity(want.len());
    let mut subjects = Vec::with_capacity(want.len());
    let mut kinds = Vec::with_capacity(want.len());
    let mut sealed = Vec::with_capacity(want.len());
    let mut times = Vec::with_capacity(want.len());
    for (h, s, ident, at) in &want {
        let cached = staged
            .keys
            .get(s)
            .cloned()
            .or_else(|| shared.keys.read().get(s).cloned());
        let key = match cached {
            Some(k) => k,
            None => {
                let k = super::read::subject_key(tx, &shared.master, *s)
                    .await?
                    .ok_or(StoreError::UnknownSubject)?;
                staged.keys.insert(*s, k.clone());
                k
            }
        };
        hashes.push(&h.0[..]);
        subjects.push(&s.as_bytes()[..]);
        kinds.push(i16::from(ident.kind.code()));
        sealed.push(key.seal(&h.0, ident.value.expose().as_bytes()));
        times.push(*at);
    }
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
    let mut linked = IdSet::default();
    for r in &rows {
        let s = cache::subject(r.get(1))?;
        staged.ids.insert(cache::hash(r.get(0))?, s);
        linked.insert(s);
    }
    Ok(linked.into_iter().collect())
}
