//! Insight features on PostgreSQL: writing what the deriver derived, and keeping each
//! node's feature index in step with every node's writes.
//!
//! **Writing.** The deriver (`derive`, one node at a time) writes a merged batch: one
//! statement for new dense numbers, one multi-row upsert for activity (`RETURNING` the
//! absolute counts) and one for declared fields, each over `unnest`ed arrays sorted by
//! key, sent together in one round trip. It holds this node's [`FeatureSync`] from its
//! upserts through COMMIT and the index update, so this node publishes in commit order;
//! so does every refresh.
//!
//! **Withdrawal.** A consent transaction that moves the insights purpose deletes the
//! subject's feature rows (see `crate::features`), and every node drops the subject from
//! its index when it publishes a newer granted set without the purpose: at once on the
//! node that took it, through `LISTEN` or the periodic resync on the others
//! (`Caches::publish_granted`). A feature update published after that must not bring
//! them back, so every feature update carries the consent version (highest
//! `consent_state.seq`) of its subject as read in the same transaction or snapshot as the
//! features, and is applied only if the node has not published a newer consent change;
//! otherwise the subject is re-read whole at the next refresh.
//!
//! **Refreshing (other nodes' writes).** Every feature or declared row insert or update
//! takes a fresh `seq` from one sequence, and a refresh reads the rows with `seq` above
//! a low-water mark. Transactions do not commit in `seq` order, so "the highest seq seen"
//! is not safe: a transaction holding a lower number may still be running. Instead of a
//! time-based lookback (which a slow transaction could outlast) the mark advances
//! exactly, using transaction ids:
//!
//! - Each refresh reads in one REPEATABLE READ snapshot and records a checkpoint
//!   `(xmax, m)`: the snapshot's `xmax` (no transaction with a later id had started) and
//!   `m`, the highest `seq` visible. Every number `<= m` was taken before `m` was (the
//!   sequence is not cached per session), by a transaction that already had an id (the
//!   deriver's upserts come after its watermark read-and-lock), so by one with an id
//!   below `xmax`.
//! - A later refresh whose snapshot has `xmin >= xmax` (every such transaction has
//!   ended) reads, among others, every committed row version numbered above the old
//!   mark; once it is done, the mark can move up to `m`.
//!
//! So the rows of the last moments are re-read by a refresh or two (harmless: values
//! are absolute), and a long-running transaction anywhere in the database only widens
//! that window. Deleted rows (withdrawals) are handled by the consent path above;
//! un-sharing a declared field leaves a NULL tombstone instead of deleting, so it travels
//! the same way as any other update.
//!
//! **Retention** deletes feature rows by day ([`prune`]) and does not tell other nodes:
//! each node prunes its own index in its own retention pass, which every node runs
//! hourly, with the same cutoff. Until then another node may still answer from features
//! this node already deleted, normally for less than an hour past their retention (a
//! failed pass retries an hour later); a refresh never brings deleted rows back (it reads
//! rows, and they are gone), so after its own pass a node's index holds no day past
//! retention. This node prunes under the [`FeatureSync`] lock, after the delete has
//! committed, so a refresh or derivation that read rows before the delete publishes them
//! before the prune, not after it.

use super::{sql, Shared};
use crate::features::{self, IndexOp, Insights, MAX_COUNT};
use crate::plan::features::Batch;
use crate::plan::retention::FeatureCutoff;
use crate::rows::Col;
use crate::StoreError;
use candor_core::idhash::{IdMap, IdSet};
use candor_core::SubjectId;
use deadpool_postgres::{GenericClient, Transaction};
use std::collections::{BTreeSet, VecDeque};
use tokio_postgres::{IsolationLevel, Row};

/// Rows a refresh fetches per round trip (and publishes per hold of the version lock).
const REFRESH_BATCH: i32 = 10_000;

/// Checkpoints kept while a long transaction holds `xmin` back; dropping the oldest only
/// delays the mark.
const MAX_CHECKPOINTS: usize = 4096;

/// This node's position in other nodes' feature writes. Held (as a whole) by a refresh
/// and by the tail of a featured ingest group; see the module docs.
#[derive(Default)]
pub(crate) struct FeatureSync {
    /// Every committed row version with `seq <= low` has been read by a past refresh
    /// (or was superseded by one that has).
    low: i64,
    /// `(xmax, highest seq)` of past refresh snapshots, oldest first.
    checkpoints: VecDeque<(u64, i64)>,
    /// Subjects whose update was not applied because a newer consent change had been
    /// published; re-read whole at the next refresh.
    pub retry: IdSet<SubjectId>,
}

/// What a derivation wrote, to publish after it commits.
pub(crate) struct Written {
    /// Index updates with the absolute stored values, and the consent version of each
    /// one's subject, read in the same transaction.
    pub ops: Vec<(IndexOp, u64)>,
    /// Subject numbers read or assigned, for the node's cache once committed.
    pub dense: Vec<(SubjectId, u32)>,
}

/// Writes a merged batch. The consent versions, the activity upsert and the declared
/// upsert are sent together (tokio-postgres pipelines concurrent queries on one
/// connection): one round trip instead of three.
pub(crate) async fn write(
    shared: &Shared,
    tx: &Transaction<'_>,
    batch: &Batch,
) -> Result<Written, StoreError> {
    let subjects = batch.subjects();
    let mut dense: IdMap<SubjectId, u32> = {
        let cached = shared.dense.lock();
        subjects
            .iter()
            .filter_map(|s| cached.get(s).map(|d| (*s, *d)))
            .collect()
    };
    if dense.len() < subjects.len() {
        let missing: BTreeSet<SubjectId> = subjects
            .iter()
            .filter(|s| !dense.contains_key(*s))
            .copied()
            .collect();
        dense.extend(dense_numbers(tx, &missing).await?);
    }
    let keys: Vec<&[u8]> = subjects.iter().map(|s| &s.as_bytes()[..]).collect();
    let dense_of = |s: &SubjectId| -> Result<u32, StoreError> {
        dense
            .get(s)
            .copied()
            .ok_or_else(|| StoreError::Database("insight subject number missing".into()))
    };

    let versions_q = async {
        sql::query(
            tx,
            "SELECT subject_id, max(seq) FROM consent_state WHERE subject_id = ANY($1)
             GROUP BY subject_id",
            &[&keys],
        )
        .await
    };
    let (mut ss, mut days, mut kinds, mut cats, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((s, day, kind, cat), c) in &batch.activity {
        ss.push(&s.as_bytes()[..]);
        days.push(i32::try_from(day.days()).map_err(|_| StoreError::Database("day".into()))?);
        kinds.push(i16::from(kind.code()));
        cats.push(cat.as_str());
        counts.push(i64::from(*c));
    }
    let activity_q = async {
        if batch.activity.is_empty() {
            return Ok(Vec::new());
        }
        // The cap is a literal, not a parameter: Citus sends the ON CONFLICT clause to
        // the workers without the statement's parameters.
        sql::query(
            tx,
            &format!(
                "INSERT INTO insight_features AS f (subject_id, day, kind, category, count, seq)
                 SELECT s, d, k, c, LEAST(n, {MAX_COUNT}), nextval('insight_seq')
                 FROM unnest($1::bytea[], $2::int4[], $3::int2[], $4::text[], $5::int8[])
                   AS t(s, d, k, c, n)
                 ORDER BY s, d, k, c
                 ON CONFLICT (subject_id, day, kind, category) DO UPDATE
                   SET count = LEAST(f.count + excluded.count, {MAX_COUNT}), seq = excluded.seq
                 RETURNING subject_id, day, kind, category, count"
            ),
            &[&ss, &days, &kinds, &cats, &counts],
        )
        .await
    };
    let (mut dss, mut fields, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for ((s, field), value) in &batch.declared {
        dss.push(&s.as_bytes()[..]);
        fields.push(field.as_str());
        values.push(value.as_deref());
    }
    let declared_q = async {
        if batch.declared.is_empty() {
            return Ok(0);
        }
        // Un-sharing writes a tombstone over a shared value, and nothing where there is
        // none (so identifies without the share mark do not leave a row per field).
        sql::execute(
            tx,
            "INSERT INTO insight_declared AS d (subject_id, field, value, seq)
             SELECT t.s, t.f, t.v, nextval('insight_seq')
             FROM unnest($1::bytea[], $2::text[], $3::text[]) AS t(s, f, v)
             -- A join, not a correlated EXISTS, which Citus refuses beside unnest.
             LEFT JOIN insight_declared x ON x.subject_id = t.s AND x.field = t.f
             WHERE t.v IS NOT NULL OR x.subject_id IS NOT NULL
             ORDER BY t.s, t.f
             ON CONFLICT (subject_id, field) DO UPDATE
               SET value = excluded.value, seq = excluded.seq
               WHERE d.value IS DISTINCT FROM excluded.value",
            &[&dss, &fields, &values],
        )
        .await
    };
    let (version_rows, activity_rows, _) = tokio::try_join!(versions_q, activity_q, declared_q)?;
    let mut versions: IdMap<SubjectId, u64> = IdMap::default();
    for r in &version_rows {
        versions.insert(r.subject(0)?, u64::try_from(r.int(1)?).unwrap_or(0));
    }
    let version = |s: &SubjectId| versions.get(s).copied().unwrap_or(0);
    let mut ops = Vec::with_capacity(batch.len());
    for r in &activity_rows {
        let s = r.subject(0)?;
        let f = features::daily(r.int(1)?, r.int(2)?, &r.text(3)?, r.int(4)?)
            .ok_or_else(|| StoreError::Corrupt("feature row".into()))?;
        ops.push((
            IndexOp::Activity {
                subject: s,
                dense: dense_of(&s)?,
                feature: f,
            },
            version(&s),
        ));
    }
    for ((s, field), value) in &batch.declared {
        ops.push((
            IndexOp::Declared {
                subject: *s,
                dense: dense_of(s)?,
                field: field.clone(),
                value: value.clone(),
            },
            version(s),
        ));
    }
    Ok(Written {
        ops,
        dense: dense.into_iter().collect(),
    })
}

/// The subjects' dense numbers, assigning new ones from the sequence. Existing ones are
/// read first so that numbers are not burnt by conflicting inserts (only a race with
/// another node burns one).
async fn dense_numbers(
    tx: &Transaction<'_>,
    subjects: &BTreeSet<SubjectId>,
) -> Result<IdMap<SubjectId, u32>, StoreError> {
    let mut out = IdMap::default();
    let keys: Vec<&[u8]> = subjects.iter().map(|s| &s.as_bytes()[..]).collect();
    read_dense(tx, &keys, &mut out).await?;
    let missing: Vec<&[u8]> = subjects
        .iter()
        .filter(|s| !out.contains_key(*s))
        .map(|s| &s.as_bytes()[..])
        .collect();
    if missing.is_empty() {
        return Ok(out);
    }
    for r in sql::query(
        tx,
        "INSERT INTO insight_subjects (subject_id, dense)
         SELECT s, nextval('insight_dense_seq') FROM unnest($1::bytea[]) AS t(s) ORDER BY s
         ON CONFLICT (subject_id) DO NOTHING RETURNING subject_id, dense",
        &[&missing],
    )
    .await?
    {
        out.insert(r.subject(0)?, dense_u32(r.get(1))?);
    }
    if out.len() < subjects.len() {
        // Inserted by another node meanwhile (the conflict waited for it to commit).
        read_dense(tx, &missing, &mut out).await?;
    }
    Ok(out)
}

async fn read_dense<C: GenericClient>(
    c: &C,
    keys: &[&[u8]],
    out: &mut IdMap<SubjectId, u32>,
) -> Result<(), StoreError> {
    for r in sql::query(
        c,
        "SELECT subject_id, dense FROM insight_subjects WHERE subject_id = ANY($1)",
        &[&keys],
    )
    .await?
    {
        out.insert(r.subject(0)?, dense_u32(r.get(1))?);
    }
    Ok(())
}

fn dense_u32(d: i64) -> Result<u32, StoreError> {
    u32::try_from(d).map_err(|_| StoreError::Corrupt("insight subject number".into()))
}

/// Deletes the feature rows past retention under `cut` (one autocommitted statement),
/// then prunes this node's index to match; returns the rows deleted. See the module
/// docs for other nodes.
pub(crate) async fn prune(shared: &Shared, cut: FeatureCutoff) -> Result<u64, StoreError> {
    let deleted = {
        let client = shared.pool.get().await?;
        match cut {
            FeatureCutoff::Before(day) => {
                sql::execute(
                    &client,
                    "DELETE FROM insight_features WHERE day < $1::int8",
                    &[&day],
                )
                .await?
            }
            FeatureCutoff::All => {
                sql::execute(&client, "DELETE FROM insight_features", &[]).await?
            }
        }
    };
    // The connection is back in the pool before the lock is taken (see `refresh`).
    let _sync = shared.feature_sync.lock().await;
    features::prune_index(&shared.features, cut);
    Ok(deleted)
}

/// Reads what changed since the last refresh (everything, the first time) and
/// publishes it; see the module docs.
pub(crate) async fn refresh(shared: &Shared) -> Result<(), StoreError> {
    let Some(ins) = &shared.insights else {
        return Ok(());
    };
    // The connection first: a derivation waits for the sync lock while holding a pooled
    // connection, so taking one under the lock could exhaust the pool.
    let mut client = shared.pool.get().await?;
    let mut sync = shared.feature_sync.lock().await;
    let retry = std::mem::take(&mut sync.retry);
    let res = refresh_locked(shared, ins, &mut client, &mut sync, &retry).await;
    if res.is_err() {
        sync.retry.extend(retry);
    }
    res
}

async fn refresh_locked(
    shared: &Shared,
    ins: &Insights,
    client: &mut deadpool_postgres::Object,
    sync: &mut FeatureSync,
    retry: &IdSet<SubjectId>,
) -> Result<(), StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // First statement: it fixes the snapshot that every later read sees.
    let snap = sql::query_opt(
        &tx,
        "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text,
                greatest((SELECT max(seq) FROM insight_features),
                         (SELECT max(seq) FROM insight_declared))
         FROM pg_current_snapshot() AS s",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Database("no snapshot".into()))?;
    let xid = |i: usize| -> Result<u64, StoreError> {
        snap.get::<_, &str>(i)
            .parse()
            .map_err(|_| StoreError::Database("unreadable snapshot".into()))
    };
    let (xmin, xmax) = (xid(0)?, xid(1)?);
    let max_seq: i64 = snap.get::<_, Option<i64>>(2).unwrap_or(0);
    let retry_keys: Vec<&[u8]> = retry.iter().map(|s| &s.as_bytes()[..]).collect();
    let purpose = ins.purpose.as_str();

    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&sync.low, &purpose, &retry_keys];
    publish_changed(
        shared,
        &tx,
        "insight_features",
        "t.day, t.kind, t.category, t.count",
        &params,
        &mut sync.retry,
        |r, subject, dense| {
            let Some(feature) = features::daily(
                i64::from(r.get::<_, i32>(2)),
                i64::from(r.get::<_, i16>(3)),
                r.get(4),
                r.get(5),
            ) else {
                tracing::warn!("a feature row that cannot be parsed was not loaded");
                return None;
            };
            Some((
                IndexOp::Activity {
                    subject,
                    dense,
                    feature,
                },
                version(r, 6),
            ))
        },
    )
    .await?;
    publish_changed(
        shared,
        &tx,
        "insight_declared",
        "t.field, t.value",
        &params,
        &mut sync.retry,
        |r, subject, dense| {
            Some((
                IndexOp::Declared {
                    subject,
                    dense,
                    field: r.get(2),
                    value: r.get(3),
                },
                version(r, 4),
            ))
        },
    )
    .await?;
    tx.commit().await?;

    sync.checkpoints.push_back((xmax, max_seq));
    if sync.checkpoints.len() > MAX_CHECKPOINTS {
        sync.checkpoints.pop_front();
    }
    while let Some(&(x, m)) = sync.checkpoints.front() {
        if x > xmin {
            break;
        }
        sync.low = sync.low.max(m);
        sync.checkpoints.pop_front();
    }
    Ok(())
}

/// Streams the rows of `table` changed since the mark (`$1`) or of subjects to re-read
/// (`$3`), of subjects that grant the insights purpose (`$2`) in the transaction's
/// snapshot, as `subject_id, dense, <columns>, consent version`, and publishes them
/// `REFRESH_BATCH` at a time; `op` turns a row into an index update (None skips it).
async fn publish_changed(
    shared: &Shared,
    tx: &Transaction<'_>,
    table: &str,
    columns: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    retry: &mut IdSet<SubjectId>,
    op: impl Fn(&Row, SubjectId, u32) -> Option<(IndexOp, u64)>,
) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached(&format!(
            "WITH t AS (
               SELECT * FROM {table} WHERE seq > $1 OR subject_id = ANY($3)
             ), v AS (
               SELECT subject_id, max(seq) AS version FROM consent_state
               WHERE subject_id IN (SELECT subject_id FROM t)
               GROUP BY subject_id
               HAVING bool_or(purpose_id = $2 AND status = 'given')
             )
             SELECT t.subject_id, s.dense, {columns}, v.version
             FROM t JOIN v USING (subject_id) JOIN insight_subjects s USING (subject_id)"
        ))
        .await?;
    let portal = tx.bind(&statement, params).await?;
    loop {
        let rows = tx.query_portal(&portal, REFRESH_BATCH).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::with_capacity(rows.len());
        for r in &rows {
            let subject = r.subject(0)?;
            if let Some(o) = op(r, subject, dense_u32(r.get(1))?) {
                ops.push(o);
            }
        }
        shared.publish_features(ops, retry);
    }
}

fn version(r: &Row, i: usize) -> u64 {
    u64::try_from(r.get::<_, i64>(i)).unwrap_or(0)
}
