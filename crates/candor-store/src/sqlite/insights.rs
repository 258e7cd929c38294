//! Audience insights on SQLite: feature rows (written by the writer thread inside the
//! ingest transaction), their load into the feature index at open, advertisers, and
//! reports charged against budgets.
//!
//! Everything that writes runs on the single writer thread, so a budget charge needs no
//! lock: two charges for one advertiser are two jobs in order, and the second reads
//! the first's row (in the same group transaction, or after it committed).

use super::blob16;
use crate::insights::{self, IndexOp, Insights, PutMode, MAX_COUNT, REPORT_COLS};
use crate::types::*;
use crate::StoreError;
use candor_core::index::ConsentIndex;
use candor_core::SubjectId;
use candor_insights::{membership, DailyFeature, FeatureDelta, FeatureIndex};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// The next dense number to hand out (one more than the highest ever stored).
pub fn next_dense(conn: &Connection) -> Result<u32, StoreError> {
    let max: Option<i64> =
        conn.query_row("SELECT max(dense) FROM insight_subjects", [], |r| r.get(0))?;
    match max {
        None => Ok(0),
        Some(m) => u32::try_from(m + 1)
            .map_err(|_| StoreError::Corrupt("insight subject numbers exhausted".into())),
    }
}

/// The subject's dense number, assigning `*next` (and advancing it) the first time.
/// `*next` only grows, also when the transaction rolls back, so a number is never
/// handed out twice.
pub fn dense(conn: &Connection, next: &mut u32, s: SubjectId) -> Result<u32, StoreError> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT dense FROM insight_subjects WHERE subject_id = ?1")?
        .query_row(params![&s.as_bytes()[..]], |r| r.get(0))
        .optional()?;
    if let Some(d) = found {
        return u32::try_from(d).map_err(|_| StoreError::Corrupt("insight subject number".into()));
    }
    let d = *next;
    *next = d
        .checked_add(1)
        .ok_or_else(|| StoreError::Database("insight subject numbers exhausted".into()))?;
    conn.prepare_cached("INSERT INTO insight_subjects (subject_id, dense) VALUES (?1, ?2)")?
        .execute(params![&s.as_bytes()[..], i64::from(d)])?;
    Ok(d)
}

/// Applies one stored row's feature deltas; stages the resulting absolute values.
pub fn write_features(
    conn: &Connection,
    subject: SubjectId,
    dense: u32,
    deltas: &[FeatureDelta],
    ops: &mut Vec<IndexOp>,
) -> Result<(), StoreError> {
    let sid = &subject.as_bytes()[..];
    for d in deltas {
        match d {
            // Adding nothing would only leave an empty row.
            FeatureDelta::Activity(f) if f.count == 0 => {}
            FeatureDelta::Activity(f) => {
                let count: i64 = conn
                    .prepare_cached(
                        "INSERT INTO insight_features (subject_id, day, kind, category, count)
                         VALUES (?1, ?2, ?3, ?4, min(?5, ?6))
                         ON CONFLICT (subject_id, day, kind, category)
                         DO UPDATE SET count = min(count + excluded.count, ?6)
                         RETURNING count",
                    )?
                    .query_row(
                        params![
                            sid,
                            f.day.days(),
                            f.kind.code(),
                            f.category.as_str(),
                            i64::from(f.count),
                            MAX_COUNT
                        ],
                        |r| r.get(0),
                    )?;
                ops.push(IndexOp::Activity {
                    subject,
                    dense,
                    feature: DailyFeature {
                        count: insights::count_u32(count),
                        ..f.clone()
                    },
                });
            }
            FeatureDelta::Declare { field, value } => {
                conn.prepare_cached(
                    "INSERT INTO insight_declared (subject_id, field, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (subject_id, field) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![sid, field, value])?;
                ops.push(IndexOp::Declared {
                    subject,
                    dense,
                    field: field.clone(),
                    value: Some(value.clone()),
                });
            }
            FeatureDelta::Undeclare { field } => {
                conn.prepare_cached(
                    "DELETE FROM insight_declared WHERE subject_id = ?1 AND field = ?2",
                )?
                .execute(params![sid, field])?;
                ops.push(IndexOp::Declared {
                    subject,
                    dense,
                    field: field.clone(),
                    value: None,
                });
            }
        }
    }
    Ok(())
}

/// Deletes the subject's features (its dense number stays).
pub fn delete_features(conn: &Connection, s: SubjectId) -> Result<(), StoreError> {
    let sid = &s.as_bytes()[..];
    conn.prepare_cached("DELETE FROM insight_features WHERE subject_id = ?1")?
        .execute(params![sid])?;
    conn.prepare_cached("DELETE FROM insight_declared WHERE subject_id = ?1")?
        .execute(params![sid])?;
    Ok(())
}

/// Loads every stored feature into the index at open. Rows of subjects that do not
/// grant the insights purpose now are skipped: they can only be left over from a time
/// insights were not configured (and are deleted when the subject next grants it).
pub fn load(
    conn: &Connection,
    ins: &Insights,
    consent: &ConsentIndex,
    index: &FeatureIndex,
) -> Result<(), StoreError> {
    let mut st = conn.prepare(
        "SELECT f.subject_id, s.dense, f.day, f.kind, f.category, f.count
         FROM insight_features f JOIN insight_subjects s ON s.subject_id = f.subject_id",
    )?;
    let mut rows = st.query([])?;
    let mut skipped = 0u64;
    while let Some(r) = rows.next()? {
        let subject = SubjectId::from_bytes(blob16(r, 0)?);
        if !consent.granted(&subject).contains(ins.bit) {
            continue;
        }
        let dense = dense_of(r, 1)?;
        match insights::daily(r.get(2)?, r.get(3)?, &r.get::<_, String>(4)?, r.get(5)?) {
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
        let subject = SubjectId::from_bytes(blob16(r, 0)?);
        if !consent.granted(&subject).contains(ins.bit) {
            continue;
        }
        let value: String = r.get(3)?;
        index.set_declared(
            subject,
            dense_of(r, 1)?,
            &r.get::<_, String>(2)?,
            Some(&value),
        );
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "feature rows that cannot be parsed were not loaded"
        );
    }
    Ok(())
}

fn dense_of(r: &Row<'_>, i: usize) -> Result<u32, StoreError> {
    u32::try_from(r.get::<_, i64>(i)?)
        .map_err(|_| StoreError::Corrupt("insight subject number".into()))
}

/// Writes an advertiser in `mode` (see `PutMode`).
pub fn put_advertiser(conn: &Connection, a: &Advertiser, mode: PutMode) -> Result<(), StoreError> {
    let features = insights::names_to_json(&a.allowed_features)?;
    let dimensions = insights::names_to_json(&a.allowed_dimensions)?;
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &a.id,
        &a.name,
        &a.key_hash,
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
    let written = conn
        .prepare_cached(&insights::advertiser_write_sql(mode, '?'))?
        .execute(values.as_slice())?;
    if written == 0 {
        return Err(insights::advertiser_unwritten(mode));
    }
    Ok(())
}

const ADVERTISER_COLS: &str = "advertiser_id, name, key_hash, budget_epsilon_nano,
    budget_delta_atto, period, allowed_features, allowed_dimensions, disabled, created_ms,
    updated_ms";

fn advertiser_row(r: &Row<'_>) -> Result<Advertiser, StoreError> {
    Ok(Advertiser {
        id: r.get(0)?,
        name: r.get(1)?,
        key_hash: insights::key_hash(&r.get::<_, Vec<u8>>(2)?)?,
        budget: Spend {
            epsilon_nano: r.get(3)?,
            delta_atto: r.get(4)?,
        },
        period: r.get(5)?,
        allowed_features: insights::names_from_json(&r.get::<_, String>(6)?)?,
        allowed_dimensions: insights::names_from_json(&r.get::<_, String>(7)?)?,
        disabled: r.get(8)?,
        created_ms: r.get(9)?,
        updated_ms: r.get(10)?,
    })
}

pub fn advertiser(conn: &Connection, id: &str) -> Result<Option<Advertiser>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {ADVERTISER_COLS} FROM advertisers WHERE advertiser_id = ?1"
    ))?;
    let mut rows = st.query(params![id])?;
    rows.next()?.map(advertiser_row).transpose()
}

pub fn advertiser_by_key(
    conn: &Connection,
    key_hash: &[u8; 32],
) -> Result<Option<Advertiser>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {ADVERTISER_COLS} FROM advertisers WHERE key_hash = ?1"
    ))?;
    let mut rows = st.query(params![&key_hash[..]])?;
    rows.next()?.map(advertiser_row).transpose()
}

pub fn advertisers(conn: &Connection) -> Result<Vec<Advertiser>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {ADVERTISER_COLS} FROM advertisers ORDER BY advertiser_id"
    ))?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(advertiser_row(r)?);
    }
    Ok(out)
}

/// The sum of the period's report costs (saturating: a sum beyond `i64::MAX` is over
/// any budget anyway).
pub fn spent(conn: &Connection, advertiser: &str, period: &str) -> Result<Spend, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT cost_epsilon_nano, cost_delta_atto FROM insight_reports
         WHERE advertiser_id = ?1 AND period = ?2",
    )?;
    let mut rows = st.query(params![advertiser, period])?;
    let mut total = Spend::default();
    while let Some(r) = rows.next()? {
        total = total.saturating_add(Spend {
            epsilon_nano: r.get(0)?,
            delta_atto: r.get(1)?,
        });
    }
    Ok(total)
}

/// Charges and records a report (on the writer thread, inside the group transaction).
pub fn record_report(conn: &Connection, r: &NewReport) -> Result<ReportRecord, StoreError> {
    let row: Option<(i64, i64, bool)> = conn
        .prepare_cached(
            "SELECT budget_epsilon_nano, budget_delta_atto, disabled FROM advertisers
             WHERE advertiser_id = ?1",
        )?
        .query_row(params![r.advertiser], |x| {
            Ok((x.get(0)?, x.get(1)?, x.get(2)?))
        })
        .optional()?;
    let budget = match row {
        Some((e, d, false)) => Spend {
            epsilon_nano: e,
            delta_atto: d,
        },
        _ => return Err(StoreError::UnknownAdvertiser),
    };
    let spent = spent(conn, &r.advertiser, &r.period)?;
    let after = insights::charge(budget, spent, r.cost)?;
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO insight_reports (advertiser_id, period, time_ms, cost_epsilon_nano,
               cost_delta_atto, purpose, query_json, answer_json, spent_epsilon_nano,
               spent_delta_atto, budget_epsilon_nano, budget_delta_atto)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
        )?
        .query_row(
            params![
                r.advertiser,
                r.period,
                r.time_ms,
                r.cost.epsilon_nano,
                r.cost.delta_atto,
                r.purpose,
                r.query_json,
                r.answer_json,
                after.epsilon_nano,
                after.delta_atto,
                budget.epsilon_nano,
                budget.delta_atto
            ],
            |x| x.get(0),
        )?;
    let mut ins = conn.prepare_cached(
        "INSERT INTO insight_report_members (chunk, report_id, bits) VALUES (?1, ?2, ?3)",
    )?;
    for (chunk, bits) in &r.members {
        ins.execute(params![i64::from(*chunk), id, bits])?;
    }
    Ok(r.recorded(id, after, budget))
}

fn report_row(r: &Row<'_>) -> Result<ReportRecord, StoreError> {
    Ok(ReportRecord {
        id: r.get(0)?,
        advertiser: r.get(1)?,
        period: r.get(2)?,
        time_ms: r.get(3)?,
        cost: Spend {
            epsilon_nano: r.get(4)?,
            delta_atto: r.get(5)?,
        },
        purpose: r.get(6)?,
        query_json: r.get(7)?,
        answer_json: r.get(8)?,
        spent_after: Spend {
            epsilon_nano: r.get(9)?,
            delta_atto: r.get(10)?,
        },
        budget: Spend {
            epsilon_nano: r.get(11)?,
            delta_atto: r.get(12)?,
        },
    })
}

pub fn reports(
    conn: &Connection,
    advertiser: Option<&str>,
    after_id: i64,
    limit: usize,
) -> Result<Vec<ReportRecord>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {REPORT_COLS} FROM insight_reports r
         WHERE (?1 IS NULL OR r.advertiser_id = ?1) AND r.id > ?2 ORDER BY r.id LIMIT ?3"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = st.query(params![advertiser, after_id, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(report_row(r)?);
    }
    Ok(out)
}

pub fn report(conn: &Connection, id: i64) -> Result<Option<ReportRecord>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {REPORT_COLS} FROM insight_reports r WHERE r.id = ?1"
    ))?;
    let mut rows = st.query(params![id])?;
    rows.next()?.map(report_row).transpose()
}

pub fn subject_reports(conn: &Connection, s: SubjectId) -> Result<Vec<ReportRecord>, StoreError> {
    let dense: Option<i64> = conn
        .prepare_cached("SELECT dense FROM insight_subjects WHERE subject_id = ?1")?
        .query_row(params![&s.as_bytes()[..]], |r| r.get(0))
        .optional()?;
    let Some(dense) = dense.and_then(|d| u32::try_from(d).ok()) else {
        return Ok(Vec::new());
    };
    let (chunk, low) = membership::split(dense);
    let mut st = conn.prepare_cached(&format!(
        "SELECT {REPORT_COLS}, m.bits FROM insight_report_members m
         JOIN insight_reports r ON r.id = m.report_id
         WHERE m.chunk = ?1 ORDER BY r.id DESC"
    ))?;
    let mut rows = st.query(params![i64::from(chunk)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let bits: Vec<u8> = r.get(13)?;
        if membership::contains(&bits, low) {
            out.push(report_row(r)?);
        }
    }
    Ok(out)
}
