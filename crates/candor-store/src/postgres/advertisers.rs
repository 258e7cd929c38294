//! Advertisers and budget charges on PostgreSQL, on the pool.
//!
//! A charge is one transaction that locks the advertiser's row (`FOR UPDATE`) before it
//! sums the period's spend, so concurrent charges for one advertiser, from any node, run
//! one after another and each sees the ones before it (READ COMMITTED: every statement
//! after the lock reads what committed before it).

use super::locks::{self, Hold};
use super::read::all;
use super::{sql, Shared};
use crate::advertisers::{self, advertiser_values, Encoded, PutMode};
use crate::plan::charge::Charge;
use crate::rows::{self, Col};
use crate::types::*;
use crate::{statements as q, StoreError};
use candor_core::SubjectId;
use candor_insights::membership;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

/// Writes an advertiser in `mode` (see `PutMode`).
pub(super) async fn put<C: GenericClient>(
    c: &C,
    a: &Advertiser,
    mode: PutMode,
) -> Result<(), StoreError> {
    let enc = Encoded::of(a)?;
    let values = advertiser_values!(a, enc, mode.expected(), dyn ToSql + Sync);
    let written = sql::execute(c, advertisers::write_sql(mode), &values).await?;
    if written == 0 {
        return Err(advertisers::unwritten(mode));
    }
    Ok(())
}

pub(super) async fn advertiser<C: GenericClient>(
    c: &C,
    id: &str,
) -> Result<Option<Advertiser>, StoreError> {
    Ok(all(c, &q::advertiser_by_id(), &[&id], rows::advertiser)
        .await?
        .pop())
}

pub(super) async fn advertiser_by_key<C: GenericClient>(
    c: &C,
    key_hash: &[u8; 32],
) -> Result<Option<Advertiser>, StoreError> {
    Ok(all(
        c,
        &q::advertiser_by_key(),
        &[&&key_hash[..]],
        rows::advertiser,
    )
    .await?
    .pop())
}

pub(super) async fn advertisers<C: GenericClient>(c: &C) -> Result<Vec<Advertiser>, StoreError> {
    all(c, &q::all_advertisers(), &[], rows::advertiser).await
}

/// The sum of the report costs in `scope` (saturating: beyond `i64::MAX` is over any
/// budget anyway).
pub(super) async fn spent<C: GenericClient>(
    c: &C,
    scope: &SpendScope,
) -> Result<Spend, StoreError> {
    let cost = |r: &tokio_postgres::Row| {
        Ok(Spend {
            epsilon_nano: r.int(0)?,
            delta_atto: r.int(1)?,
        })
    };
    let costs = match scope {
        SpendScope::Period { advertiser, period } => {
            all(c, q::PERIOD_COSTS, &[advertiser, period], cost).await?
        }
        SpendScope::Lifetime { advertiser } => {
            all(c, q::LIFETIME_COSTS, &[advertiser], cost).await?
        }
        SpendScope::AllSince(t) => all(c, q::COSTS_SINCE, &[&t.0], cost).await?,
    };
    Ok(costs
        .into_iter()
        .fold(Spend::default(), Spend::saturating_add))
}

/// Charges and records a report in one transaction (see the module docs).
pub(super) async fn record_report(
    shared: &Shared,
    r: &NewReport,
) -> Result<ReportRecord, StoreError> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    // Before the id is taken: a listing across advertisers waits for this (see `reports`).
    locks::take(&tx, locks::REPORTS, Hold::Shared).await?;
    // Before the advertiser's row, in every charge: the same order everywhere.
    if r.total.is_some() {
        locks::take(&tx, locks::TOTAL_BUDGET, Hold::Exclusive).await?;
    }
    let row = sql::query_opt(&tx, &format!("{} FOR UPDATE", q::BUDGET), &[&r.advertiser]).await?;
    let (budget, lifetime) = match row {
        Some(row) if !row.flag(2)? => (
            Spend {
                epsilon_nano: row.int(0)?,
                delta_atto: row.int(1)?,
            },
            rows::opt_spend(&row, 3)?,
        ),
        _ => return Err(StoreError::UnknownAdvertiser),
    };
    let advertiser = r.advertiser.clone();
    let period_scope = SpendScope::Period {
        advertiser: advertiser.clone(),
        period: r.period.clone(),
    };
    let period = (budget, spent(&tx, &period_scope).await?);
    let lifetime = match lifetime {
        Some(l) => Some((l, spent(&tx, &SpendScope::Lifetime { advertiser }).await?)),
        None => None,
    };
    let total = match &r.total {
        Some(t) => Some((t.limit, spent(&tx, &SpendScope::AllSince(t.since)).await?)),
        None => None,
    };
    let after = Charge {
        period,
        lifetime,
        total,
    }
    .check(r.cost)?;
    let id = sql::query_opt(
        &tx,
        q::INSERT_REPORT,
        &[
            &r.advertiser,
            &r.period,
            &r.time_ms.0,
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
    .int(0)?;
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
pub(super) async fn reports(
    shared: &Shared,
    advertiser: Option<&str>,
    after_id: i64,
    limit: usize,
) -> Result<Vec<ReportRecord>, StoreError> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    if advertiser.is_none() {
        locks::take(&tx, locks::REPORTS, Hold::Exclusive).await?;
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let out = all(
        &tx,
        &q::reports_page(),
        &[&advertiser, &after_id, &limit],
        rows::report,
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

pub(super) async fn report<C: GenericClient>(
    c: &C,
    id: i64,
) -> Result<Option<ReportRecord>, StoreError> {
    Ok(all(c, &q::report_by_id(), &[&id], rows::report)
        .await?
        .pop())
}

pub(super) async fn subject_reports<C: GenericClient>(
    c: &C,
    s: SubjectId,
) -> Result<Vec<ReportRecord>, StoreError> {
    let Some(d) = sql::query_opt(c, q::DENSE_OF, &[&&s.as_bytes()[..]])
        .await?
        .map(|r| r.u32(0, "insight subject number"))
        .transpose()?
    else {
        return Ok(Vec::new());
    };
    let (chunk, low) = membership::split(d);
    let chunk = i32::try_from(chunk)
        .map_err(|_| StoreError::Corrupt("membership chunk out of range".into()))?;
    let rows = all(
        c,
        &format!(
            "SELECT {}, m.bits FROM insight_report_members m
             JOIN insight_reports r ON r.advertiser_id = m.advertiser_id AND r.id = m.report_id
             WHERE m.chunk = $1 ORDER BY r.id DESC",
            rows::REPORT_COLS
        ),
        &[&chunk],
        |r| Ok((rows::report(r)?, r.blob(13)?)),
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, bits)| membership::contains(bits, low))
        .map(|(r, _)| r)
        .collect())
}
