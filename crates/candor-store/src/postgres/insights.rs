//! Audience insights on PostgreSQL: feature rows written by ingest transactions, the
//! feature index kept in step with every node's writes, advertisers, and reports
//! charged against budgets.
//!
//! **Writing.** An ingest group whose stored rows carry features (and are stored under
//! the insights purpose, as re-checked in the database under the gate) writes them in
//! its own transaction, after the events: one statement for new dense numbers, one
//! multi-row upsert for activity (`RETURNING` the absolute counts) and one for declared
//! fields, each over `unnest`ed arrays sorted by key so concurrent groups lock rows in the
//! same order. Duplicate keys within a group are summed first (an upsert cannot touch a
//! row twice). Rows without features cost nothing.
//!
//! **Publishing.** Activity counts only grow while their row lives (rows are deleted,
//! never decremented), so a group carrying only activity deltas commits without any node
//! lock and publishes with `FeatureIndex::raise_activity`: whatever order concurrent
//! groups publish in, the index ends at the highest, i.e. last committed, count. Such a
//! group takes [`FeatureSync`] only for the moment of publishing. A group carrying
//! declared fields (last writer wins) holds [`FeatureSync`] from its upserts through
//! COMMIT and the index update, so those publish in commit order; so does every refresh.
//! A refresh publishes absolute values from its snapshot and may briefly set a count below
//! one a concurrent activity group already raised (that group committed after the
//! snapshot); its row is above the refresh's low-water mark, so the next refresh (every
//! insight query starts with one) reads it again. A late raise of a day a retention pass
//! has pruned is dropped by the index's floor.
//!
//! **Withdrawal.** A consent transaction that moves the insights purpose deletes the
//! subject's feature rows (see `crate::insights`), and every node drops the subject from
//! its index when it publishes a newer granted set without the purpose: at once on the
//! node that took it, through `LISTEN` or the periodic resync on the others
//! (`Shared::publish_granted`). A feature update published after that must not bring
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
//!   feature upserts come after the events `COPY` of the same transaction), so by one
//!   with an id below `xmax`.
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
//! committed, so a refresh or featured ingest group that read rows before the delete
//! publishes them before the prune, not after it.

use super::{cache, locks, sql, Shared};
use crate::insights::{self, IndexOp, Insights, PutMode, MAX_COUNT, REPORT_COLS};
use crate::retention::FeatureCutoff;
use crate::types::*;
use crate::StoreError;
use candor_core::idhash::{IdMap, IdSet};
use candor_core::SubjectId;
use candor_insights::{membership, FeatureDelta};
use deadpool_postgres::{GenericClient, Transaction};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

/// The features one ingest group wrote, to publish after it commits.
pub(crate) struct Written {
    pub ops: Vec<IndexOp>,
    /// Consent version per subject, read under the gate in the same transaction.
    pub versions: IdMap<SubjectId, u64>,
    /// Subject numbers this group read or assigned, for the node's cache once committed.
    pub dense: Vec<(SubjectId, u32)>,
}

/// Writes the features of a group's stored rows (in stored order).
///
/// Latency matters more than anything here: the group holds its row locks and a pooled
/// connection until COMMIT. So subject numbers come from the node's cache when it can,
/// and the consent versions, the activity upsert and the declared upsert are sent
/// together (tokio-postgres pipelines concurrent queries on one connection): one round
/// trip instead of four.
pub(crate) async fn write(
    shared: &Shared,
    tx: &Transaction<'_>,
    rows: &[(SubjectId, &[FeatureDelta])],
) -> Result<Written, StoreError> {
    let subjects: BTreeSet<SubjectId> = rows.iter().map(|(s, _)| *s).collect();
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

    // Sum activity per key; the last declaration per field wins.
    let mut activity: BTreeMap<(SubjectId, u32, u8, &str), i64> = BTreeMap::new();
    let mut declared: BTreeMap<(SubjectId, &str), Option<&str>> = BTreeMap::new();
    for (s, deltas) in rows {
        for d in *deltas {
            match d {
                // Adding nothing would only leave an empty row.
                FeatureDelta::Activity(f) if f.count == 0 => {}
                FeatureDelta::Activity(f) => {
                    let c = activity
                        .entry((*s, f.day.days(), f.kind.code(), f.category.as_str()))
                        .or_insert(0);
                    *c = c.saturating_add(i64::from(f.count)).min(MAX_COUNT);
                }
                FeatureDelta::Declare { field, value } => {
                    declared.insert((*s, field.as_str()), Some(value.as_str()));
                }
                FeatureDelta::Undeclare { field } => {
                    declared.insert((*s, field.as_str()), None);
                }
            }
        }
    }
    let mut ops = Vec::with_capacity(activity.len() + declared.len());
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
    for ((s, day, kind, cat), c) in &activity {
        ss.push(&s.as_bytes()[..]);
        days.push(i32::try_from(*day).map_err(|_| StoreError::Database("day".into()))?);
        kinds.push(i16::from(*kind));
        cats.push(*cat);
        counts.push(*c);
    }
    let activity_q = async {
        if activity.is_empty() {
            return Ok(Vec::new());
        }
        sql::query(
            tx,
            "INSERT INTO insight_features AS f (subject_id, day, kind, category, count, seq)
             SELECT s, d, k, c, n, nextval('insight_seq')
             FROM unnest($1::bytea[], $2::int4[], $3::int2[], $4::text[], $5::int8[])
               AS t(s, d, k, c, n)
             ORDER BY s, d, k, c
             ON CONFLICT (subject_id, day, kind, category) DO UPDATE
               SET count = LEAST(f.count + excluded.count, $6), seq = excluded.seq
             RETURNING subject_id, day, kind, category, count",
            &[&ss, &days, &kinds, &cats, &counts, &MAX_COUNT],
        )
        .await
    };
    let (mut dss, mut fields, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for ((s, field), value) in &declared {
        dss.push(&s.as_bytes()[..]);
        fields.push(*field);
        values.push(*value);
    }
    let declared_q = async {
        if declared.is_empty() {
            return Ok(0);
        }
        // Un-sharing writes a tombstone over a shared value, and nothing where there is
        // none (so identifies without the share mark do not leave a row per field).
        sql::execute(
            tx,
            "INSERT INTO insight_declared AS d (subject_id, field, value, seq)
             SELECT s, f, v, nextval('insight_seq')
             FROM unnest($1::bytea[], $2::text[], $3::text[]) AS t(s, f, v)
             WHERE v IS NOT NULL OR EXISTS (
               SELECT 1 FROM insight_declared x WHERE x.subject_id = t.s AND x.field = t.f)
             ORDER BY s, f
             ON CONFLICT (subject_id, field) DO UPDATE
               SET value = excluded.value, seq = excluded.seq
               WHERE d.value IS DISTINCT FROM excluded.value",
            &[&dss, &fields, &values],
        )
        .await
    };
    let (version_rows, activity_rows, _) = tokio::try_join!(versions_q, activity_q, declared_q)?;
    let mut versions = IdMap::default();
    for r in version_rows {
        versions.insert(
            cache::subject(r.get(0))?,
            u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
        );
    }

    for r in &activity_rows {
        let s = cache::subject(r.get(0))?;
        let f = insights::daily(
            i64::from(r.get::<_, i32>(1)),
            i64::from(r.get::<_, i16>(2)),
            r.get(3),
            r.get(4),
        )
        .ok_or_else(|| StoreError::Corrupt("feature row".into()))?;
        ops.push(IndexOp::Activity {
            subject: s,
            dense: dense_of(&s)?,
            feature: f,
        });
    }
    for ((s, field), value) in &declared {
        ops.push(IndexOp::Declared {
            subject: *s,
            dense: dense_of(s)?,
            field: (*field).to_owned(),
            value: value.map(str::to_owned),
        });
    }
    let dense = dense.into_iter().collect();
    Ok(Written {
        ops,
        versions,
        dense,
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
        out.insert(cache::subject(r.get(0))?, dense_u32(r.get(1))?);
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
        out.insert(cache::subject(r.get(0))?, dense_u32(r.get(1))?);
    }
    Ok(())
}

fn dense_u32(d: i64) -> Result<u32, StoreError> {
    u32::try_from(d).map_err(|_| StoreError::Corrupt("insight subject number".into()))
}

/// Deletes the subject's features (its dense number stays), in a consent transaction.
pub(crate) async fn delete_features<C: GenericClient>(
    c: &C,
    s: SubjectId,
) -> Result<(), StoreError> {
    let sid = &s.as_bytes()[..];
    sql::execute(
        c,
        "DELETE FROM insight_features WHERE subject_id = $1",
        &[&sid],
    )
    .await?;
    sql::execute(
        c,
        "DELETE FROM insight_declared WHERE subject_id = $1",
        &[&sid],
    )
    .await?;
    Ok(())
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
    insights::prune_index(&shared.features, cut);
    Ok(deleted)
}

/// Reads what changed since the last refresh (everything, the first time) and
/// publishes it; see the module docs.
pub(crate) async fn refresh(shared: &Shared) -> Result<(), StoreError> {
    let Some(ins) = &shared.insights else {
        return Ok(());
    };
    // The connection first: a featured ingest group waits for the sync lock while
    // holding a pooled connection, so taking one under the lock could exhaust the pool.
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
            let Some(feature) = insights::daily(
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
            let subject = cache::subject(r.get(0))?;
            if let Some(o) = op(r, subject, dense_u32(r.get(1))?) {
                ops.push(o);
            }
        }
        shared.publish_features(ops, retry, false);
    }
}

fn version(r: &Row, i: usize) -> u64 {
    u64::try_from(r.get::<_, i64>(i)).unwrap_or(0)
}

// ---- advertisers and reports ------------------------------------------------------

/// Writes an advertiser in `mode` (see `PutMode`).
pub(crate) async fn put_advertiser<C: GenericClient>(
    c: &C,
    a: &Advertiser,
    mode: PutMode,
) -> Result<(), StoreError> {
    let key: &[u8] = &a.key_hash;
    let features = insights::names_to_json(&a.allowed_features)?;
    let dimensions = insights::names_to_json(&a.allowed_dimensions)?;
    let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &a.id,
        &a.name,
        &key,
        &a.budget.epsilon_nano,
        &a.budget.delta_atto,
        &a.period,
        &features,
        &dimensions,
        &a.disabled,
        &a.created_ms,
        &a.updated_ms,
    ];
    let expected;
    if let PutMode::Replace(e) = mode {
        expected = e;
        values.push(&expected);
    }
    let written = sql::execute(c, &insights::advertiser_write_sql(mode, '$'), &values).await?;
    if written == 0 {
        return Err(insights::advertiser_unwritten(mode));
    }
    Ok(())
}

const ADVERTISER_COLS: &str = "advertiser_id, name, key_hash, budget_epsilon_nano,
    budget_delta_atto, period, allowed_features, allowed_dimensions, disabled, created_ms,
    updated_ms";

fn advertiser_row(r: &Row) -> Result<Advertiser, StoreError> {
    Ok(Advertiser {
        id: r.get(0),
        name: r.get(1),
        key_hash: insights::key_hash(r.get(2))?,
        budget: Spend {
            epsilon_nano: r.get(3),
            delta_atto: r.get(4),
        },
        period: r.get(5),
        allowed_features: insights::names_from_json(r.get(6))?,
        allowed_dimensions: insights::names_from_json(r.get(7))?,
        disabled: r.get(8),
        created_ms: r.get(9),
        updated_ms: r.get(10),
    })
}

pub(crate) async fn advertiser<C: GenericClient>(
    c: &C,
    id: &str,
) -> Result<Option<Advertiser>, StoreError> {
    sql::query_opt(
        c,
        &format!("SELECT {ADVERTISER_COLS} FROM advertisers WHERE advertiser_id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(advertiser_row)
    .transpose()
}

pub(crate) async fn advertiser_by_key<C: GenericClient>(
    c: &C,
    key_hash: &[u8; 32],
) -> Result<Option<Advertiser>, StoreError> {
    sql::query_opt(
        c,
        &format!("SELECT {ADVERTISER_COLS} FROM advertisers WHERE key_hash = $1"),
        &[&&key_hash[..]],
    )
    .await?
    .as_ref()
    .map(advertiser_row)
    .transpose()
}

pub(crate) async fn advertisers<C: GenericClient>(c: &C) -> Result<Vec<Advertiser>, StoreError> {
    sql::query(
        c,
        &format!("SELECT {ADVERTISER_COLS} FROM advertisers ORDER BY advertiser_id"),
        &[],
    )
    .await?
    .iter()
    .map(advertiser_row)
    .collect()
}

/// The sum of the period's report costs (saturating: beyond `i64::MAX` is over any
/// budget anyway).
pub(crate) async fn spent<C: GenericClient>(
    c: &C,
    advertiser: &str,
    period: &str,
) -> Result<Spend, StoreError> {
    Ok(sql::query(
        c,
        "SELECT cost_epsilon_nano, cost_delta_atto FROM insight_reports
         WHERE advertiser_id = $1 AND period = $2",
        &[&advertiser, &period],
    )
    .await?
    .iter()
    .fold(Spend::default(), |acc, r| {
        acc.saturating_add(Spend {
            epsilon_nano: r.get(0),
            delta_atto: r.get(1),
        })
    }))
}

/// Charges and records a report in one transaction. The advertiser row is locked
/// (`FOR UPDATE`) before the period's spend is summed, so concurrent charges for one
/// advertiser, from any node, run one after another and each sees the ones before it
/// (READ COMMITTED: every statement after the lock reads what committed before it).
pub(crate) async fn record_report(
    shared: &Shared,
    r: &NewReport,
) -> Result<ReportRecord, StoreError> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    // Before the id is taken: a listing across advertisers waits for this (see `reports`).
    sql::execute(
        &tx,
        "SELECT pg_advisory_xact_lock_shared($1, $2)",
        &[&locks::CLASS, &locks::REPORTS],
    )
    .await?;
    let row = sql::query_opt(
        &tx,
        "SELECT budget_epsilon_nano, budget_delta_atto, disabled FROM advertisers
         WHERE advertiser_id = $1 FOR UPDATE",
        &[&r.advertiser],
    )
    .await?;
    let budget = match row {
        Some(row) if !row.get::<_, bool>(2) => Spend {
            epsilon_nano: row.get(0),
            delta_atto: row.get(1),
        },
        _ => return Err(StoreError::UnknownAdvertiser),
    };
    let spent = spent(&tx, &r.advertiser, &r.period).await?;
    let after = insights::charge(budget, spent, r.cost)?;
    let id: i64 = sql::query_opt(
        &tx,
        "INSERT INTO insight_reports (advertiser_id, period, time_ms, cost_epsilon_nano,
           cost_delta_atto, purpose, query_json, answer_json, spent_epsilon_nano,
           spent_delta_atto, budget_epsilon_nano, budget_delta_atto)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        &[
            &r.advertiser,
            &r.period,
            &r.time_ms,
            &r.cost.epsilon_nano,
            &r.cost.delta_atto,
            &r.purpose,
            &r.query_json,
            &r.answer_json,
            &after.epsilon_nano,
            &after.delta_atto,
            &budget.epsilon_nano,
            &budget.delta_atto,
        ],
    )
    .await?
    .ok_or_else(|| StoreError::Database("report insert returned no id".into()))?
    .get(0);
    if !r.members.is_empty() {
        let mut chunks = Vec::with_capacity(r.members.len());
        let mut bits = Vec::with_capacity(r.members.len());
        for (c, b) in &r.members {
            chunks.push(
                i32::try_from(*c)
                    .map_err(|_| StoreError::Database("membership chunk out of range".into()))?,
            );
            bits.push(&b[..]);
        }
        sql::execute(
            &tx,
            "INSERT INTO insight_report_members (advertiser_id, report_id, chunk, bits)
             SELECT $1, $2, c, b FROM unnest($3::int4[], $4::bytea[]) AS t(c, b)",
            &[&r.advertiser, &id, &chunks, &bits],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(r.recorded(id, after, budget))
}

fn report_row(r: &Row) -> ReportRecord {
    ReportRecord {
        id: r.get(0),
        advertiser: r.get(1),
        period: r.get(2),
        time_ms: r.get(3),
        cost: Spend {
            epsilon_nano: r.get(4),
            delta_atto: r.get(5),
        },
        purpose: r.get(6),
        query_json: r.get(7),
        answer_json: r.get(8),
        spent_after: Spend {
            epsilon_nano: r.get(9),
            delta_atto: r.get(10),
        },
        budget: Spend {
            epsilon_nano: r.get(11),
            delta_atto: r.get(12),
        },
    }
}

/// Reports with ids above `after_id`, in id order: pages a caller walks with the last
/// id it saw.
///
/// Ids come from one sequence, taken inside each report's transaction, so they are not
/// committed in id order: a page read while report 10 is in flight and 11 has committed
/// would end at 11, and the next page (after 11) would never show 10. For one advertiser
/// that cannot happen (its reports take their ids under its row lock, one at a time). A
/// listing across advertisers (the operator's audit log, which must show every query)
/// therefore first takes the reports lock exclusively: every report transaction holds it
/// shared from before it takes its id, so the listing waits for those in flight, and any
/// that start later take larger ids than everything it reads.
pub(crate) async fn reports(
    shared: &Shared,
    advertiser: Option<&str>,
    after_id: i64,
    limit: usize,
) -> Result<Vec<ReportRecord>, StoreError> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    if advertiser.is_none() {
        sql::execute(
            &tx,
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&locks::CLASS, &locks::REPORTS],
        )
        .await?;
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = sql::query(
        &tx,
        &format!(
            "SELECT {REPORT_COLS} FROM insight_reports r
             WHERE ($1::text IS NULL OR r.advertiser_id = $1) AND r.id > $2
             ORDER BY r.id LIMIT $3"
        ),
        &[&advertiser, &after_id, &limit],
    )
    .await?;
    tx.commit().await?;
    Ok(rows.iter().map(report_row).collect())
}

pub(crate) async fn report<C: GenericClient>(
    c: &C,
    id: i64,
) -> Result<Option<ReportRecord>, StoreError> {
    Ok(sql::query_opt(
        c,
        &format!("SELECT {REPORT_COLS} FROM insight_reports r WHERE r.id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(report_row))
}

pub(crate) async fn subject_reports<C: GenericClient>(
    c: &C,
    s: SubjectId,
) -> Result<Vec<ReportRecord>, StoreError> {
    let mut dense = IdMap::default();
    read_dense(c, &[&s.as_bytes()[..]], &mut dense).await?;
    let Some(d) = dense.get(&s).copied() else {
        return Ok(Vec::new());
    };
    let (chunk, low) = membership::split(d);
    let chunk = i32::try_from(chunk)
        .map_err(|_| StoreError::Corrupt("membership chunk out of range".into()))?;
    Ok(sql::query(
        c,
        &format!(
            "SELECT {REPORT_COLS}, m.bits FROM insight_report_members m
             JOIN insight_reports r ON r.advertiser_id = m.advertiser_id AND r.id = m.report_id
             WHERE m.chunk = $1 ORDER BY r.id DESC"
        ),
        &[&chunk],
    )
    .await?
    .iter()
    .filter(|r| membership::contains(r.get(13), low))
    .map(report_row)
    .collect())
}
