//! Advertisers and budget charges on SQLite: writes run on the writer thread inside its
//! group transaction, reads on the read pool.
//!
//! Everything that writes runs on the single writer thread, so a budget charge needs no
//! lock: two charges for one advertiser are two jobs in order, and the second reads
//! the first's row (in the same group transaction, or after it committed).

use super::read::all;
use crate::advertisers::{self, advertiser_values, Encoded, PutMode};
use crate::plan::charge::Charge;
use crate::rows::{self, Col};
use crate::types::*;
use crate::{statements as q, StoreError};
use candor_core::SubjectId;
use candor_insights::membership;
use rusqlite::{params, Connection, OptionalExtension};

/// Writes an advertiser in `mode` (see `PutMode`).
pub(super) fn put(conn: &Connection, a: &Advertiser, mode: PutMode) -> Result<(), StoreError> {
    let enc = Encoded::of(a)?;
    let values = advertiser_values!(a, enc, mode.expected(), dyn rusqlite::ToSql);
    let written = conn
        .prepare_cached(advertisers::write_sql(mode))?
        .execute(values.as_slice())?;
    if written == 0 {
        return Err(advertisers::unwritten(mode));
    }
    Ok(())
}

pub(super) fn advertiser(conn: &Connection, id: &str) -> Result<Option<Advertiser>, StoreError> {
    Ok(all(conn, &q::advertiser_by_id(), params![id], |r| {
        rows::advertiser(r)
    })?
    .pop())
}

pub(super) fn advertiser_by_key(
    conn: &Connection,
    key_hash: &[u8; 32],
) -> Result<Option<Advertiser>, StoreError> {
    Ok(
        all(conn, &q::advertiser_by_key(), params![&key_hash[..]], |r| {
            rows::advertiser(r)
        })?
        .pop(),
    )
}

pub(super) fn advertisers(conn: &Connection) -> Result<Vec<Advertiser>, StoreError> {
    all(conn, &q::all_advertisers(), [], |r| rows::advertiser(r))
}

/// The sum of the report costs in `scope` (saturating: a sum beyond `i64::MAX` is over
/// any budget anyway).
pub(super) fn spent(conn: &Connection, scope: &SpendScope) -> Result<Spend, StoreError> {
    let cost = |r: &rusqlite::Row<'_>| {
        Ok(Spend {
            epsilon_nano: r.int(0)?,
            delta_atto: r.int(1)?,
        })
    };
    let costs = match scope {
        SpendScope::Period { advertiser, period } => {
            all(conn, q::PERIOD_COSTS, params![advertiser, period], cost)?
        }
        SpendScope::Lifetime { advertiser } => {
            all(conn, q::LIFETIME_COSTS, params![advertiser], cost)?
        }
        SpendScope::AllSince(t) => all(conn, q::COSTS_SINCE, params![t.0], cost)?,
    };
    Ok(costs
        .into_iter()
        .fold(Spend::default(), Spend::saturating_add))
}

/// Charges and records a report (on the writer thread, inside the group transaction).
pub(super) fn record_report(conn: &Connection, r: &NewReport) -> Result<ReportRecord, StoreError> {
    let row = all(conn, q::BUDGET, params![r.advertiser], |x| {
        Ok((
            Spend {
                epsilon_nano: x.int(0)?,
                delta_atto: x.int(1)?,
            },
            x.flag(2)?,
            rows::opt_spend(x, 3)?,
        ))
    })?
    .pop();
    let (budget, lifetime) = match row {
        Some((budget, false, lifetime)) => (budget, lifetime),
        _ => return Err(StoreError::UnknownAdvertiser),
    };
    let advertiser = r.advertiser.clone();
    let period = (
        budget,
        spent(
            conn,
            &SpendScope::Period {
                advertiser: advertiser.clone(),
                period: r.period.clone(),
            },
        )?,
    );
    let lifetime = match lifetime {
        Some(l) => Some((l, spent(conn, &SpendScope::Lifetime { advertiser })?)),
        None => None,
    };
    let total = match &r.total {
        Some(t) => Some((t.limit, spent(conn, &SpendScope::AllSince(t.since))?)),
        None => None,
    };
    let after = Charge {
        period,
        lifetime,
        total,
    }
    .check(r.cost)?;
    let id: i64 = conn.prepare_cached(q::INSERT_REPORT)?.query_row(
        params![
            r.advertiser,
            r.period,
            r.time_ms.0,
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

pub(super) fn reports(
    conn: &Connection,
    advertiser: Option<&str>,
    after_id: i64,
    limit: usize,
) -> Result<Vec<ReportRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    all(
        conn,
        &q::reports_page(),
        params![advertiser, after_id, limit],
        |r| rows::report(r),
    )
}

pub(super) fn report(conn: &Connection, id: i64) -> Result<Option<ReportRecord>, StoreError> {
    Ok(all(conn, &q::report_by_id(), params![id], |r| rows::report(r))?.pop())
}

pub(super) fn subject_reports(
    conn: &Connection,
    s: SubjectId,
) -> Result<Vec<ReportRecord>, StoreError> {
    let dense: Option<i64> = conn
        .prepare_cached(q::DENSE_OF)?
        .query_row(params![&s.as_bytes()[..]], |r| r.get(0))
        .optional()?;
    let Some(dense) = dense.and_then(|d| u32::try_from(d).ok()) else {
        return Ok(Vec::new());
    };
    let (chunk, low) = membership::split(dense);
    let rows = all(
        conn,
        &format!(
            "SELECT {}, m.bits FROM insight_report_members m
             JOIN insight_reports r ON r.id = m.report_id
             WHERE m.chunk = ?1 ORDER BY r.id DESC",
            rows::REPORT_COLS
        ),
        params![i64::from(chunk)],
        |r| Ok((rows::report(r)?, r.blob(13)?)),
    )?;
    Ok(rows
        .into_iter()
        .filter(|(_, bits)| membership::contains(bits, low))
        .map(|(r, _)| r)
        .collect())
}
