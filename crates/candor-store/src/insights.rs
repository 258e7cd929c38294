//! What both backends share for audience insights (issue 5): the options that turn them
//! on, the in-memory feature index updates a transaction stages (published only after it
//! commits), budget arithmetic, and the encoding of advertiser permission lists.
//!
//! The store, not its callers, writes the feature index, and always with the *absolute*
//! stored values (`RETURNING` the new count), so replaying or reordering loads is
//! harmless and the index never drifts from the tables. Features exist in the tables
//! only while the subject grants the insights purpose: ingestion writes them only for
//! rows finally stored under it, and a transition of that purpose in either direction
//! deletes the subject's feature rows (a withdrawal so nothing is kept; a fresh grant
//! so rows left over from a time when insights were not configured, and so not deleted
//! at withdrawal, cannot come back).
//!
//! Features also expire: the retention pass deletes the rows of days past the insights
//! purpose's retention in one transaction and, after it commits, prunes the index to the
//! same cutoff ([`prune_index`]).

use crate::retention::FeatureCutoff;
use crate::types::Spend;
use crate::StoreError;
use candor_core::{PurposeId, SubjectId};
use candor_insights::{Category, DailyFeature, Day, FeatureIndex, FeatureKind, Schema};
use std::collections::HashMap;
use std::sync::Arc;

/// Turns insights on for a store.
#[derive(Clone, Debug)]
pub struct InsightsOptions {
    /// The purpose whose grant makes a subject's events count towards insights. It must
    /// be one of the purposes the store is opened with; the store resolves its bit
    /// (callers cannot know the bit before opening: bits are assigned at open).
    pub purpose: PurposeId,
    /// The index the store keeps up to date (shared with the query engine).
    pub index: Arc<FeatureIndex>,
}

/// Insights as resolved at open.
#[derive(Clone, Debug)]
pub(crate) struct Insights {
    pub bit: u8,
    pub purpose: PurposeId,
}

/// Resolves the options against the store's purpose bits. Without options the store
/// owns an empty index and ignores features.
pub(crate) fn resolve(
    options: Option<InsightsOptions>,
    bits: &HashMap<PurposeId, u8>,
) -> Result<(Option<Insights>, Arc<FeatureIndex>), StoreError> {
    match options {
        Some(o) => {
            let bit = *bits.get(&o.purpose).ok_or_else(|| {
                StoreError::Database(format!(
                    "the insights purpose {} is not a configured purpose",
                    o.purpose
                ))
            })?;
            Ok((
                Some(Insights {
                    bit,
                    purpose: o.purpose,
                }),
                o.index,
            ))
        }
        None => {
            let index = FeatureIndex::new(Schema::default())
                .map_err(|e| StoreError::Database(format!("empty feature index: {e}")))?;
            Ok((None, Arc::new(index)))
        }
    }
}

/// A change to the feature index, staged by a transaction and applied after it commits.
#[derive(Clone, Debug)]
pub(crate) enum IndexOp {
    /// The stored (absolute) value of one daily feature.
    Activity {
        subject: SubjectId,
        dense: u32,
        feature: DailyFeature,
    },
    /// A declared field as stored (`None`: not shared).
    Declared {
        subject: SubjectId,
        dense: u32,
        field: String,
        value: Option<String>,
    },
    /// The subject no longer grants the insights purpose.
    Remove(SubjectId),
}

impl IndexOp {
    pub fn subject(&self) -> SubjectId {
        match self {
            IndexOp::Activity { subject, .. } | IndexOp::Declared { subject, .. } => *subject,
            IndexOp::Remove(s) => *s,
        }
    }

    pub fn apply(&self, index: &FeatureIndex) {
        self.apply_as(index, false);
    }

    /// Applies the op; with `raise`, activity counts only go up (for writers that publish
    /// out of commit order: see `FeatureIndex::raise_activity`).
    pub fn apply_as(&self, index: &FeatureIndex, raise: bool) {
        match self {
            IndexOp::Activity {
                subject,
                dense,
                feature,
            } if raise => index.raise_activity(*subject, *dense, feature),
            IndexOp::Activity {
                subject,
                dense,
                feature,
            } => index.set_activity(*subject, *dense, feature),
            IndexOp::Declared {
                subject,
                dense,
                field,
                value,
            } => index.set_declared(*subject, *dense, field, value.as_deref()),
            IndexOp::Remove(s) => index.remove_subject(s),
        }
    }
}

/// Removes from the index the features past retention under `cut` (after the
/// transaction that deleted their rows has committed); returns how many.
pub(crate) fn prune_index(index: &FeatureIndex, cut: FeatureCutoff) -> usize {
    match cut {
        FeatureCutoff::All => index.clear_activity(),
        // The index holds no day before its first, and every one before its last.
        FeatureCutoff::Before(d) if d <= i64::from(Day::MIN.days()) => 0,
        FeatureCutoff::Before(d) if d > i64::from(Day::MAX.days()) => index.clear_activity(),
        FeatureCutoff::Before(d) => u32::try_from(d)
            .ok()
            .and_then(Day::from_days)
            .map_or(0, |day| index.prune_before(day)),
    }
}

/// A stored count as the index holds it (counts saturate at `u32::MAX`).
pub(crate) fn count_u32(c: i64) -> u32 {
    u32::try_from(c.max(0)).unwrap_or(u32::MAX)
}

/// A stored feature row as the index takes it (`None` when it cannot be parsed; rows
/// are validated when written, so that would be an edit behind the store's back).
pub(crate) fn daily(day: i64, kind: i64, category: &str, count: i64) -> Option<DailyFeature> {
    Some(DailyFeature {
        day: Day::from_days(u32::try_from(day).ok()?)?,
        kind: FeatureKind::from_code(u8::try_from(kind).ok()?)?,
        category: Category::parse(category)?,
        count: count_u32(count),
    })
}

/// The highest count a feature row stores.
pub(crate) const MAX_COUNT: i64 = u32::MAX as i64;

/// Checks a charge of `cost` on top of `spent` against `budget`; returns the total
/// after it. Refuses a negative cost (it would refund budget).
/// The columns both backends read a report with (in `report_row` order).
pub(crate) const REPORT_COLS: &str =
    "r.id, r.advertiser_id, r.period, r.time_ms, r.cost_epsilon_nano,
    r.cost_delta_atto, r.purpose, r.query_json, r.answer_json, r.spent_epsilon_nano,
    r.spent_delta_atto, r.budget_epsilon_nano, r.budget_delta_atto";

/// How an advertiser row is written: a create must report a taken id instead of
/// overwriting it, and a change must not overwrite a concurrent one.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PutMode {
    /// Insert only; `AdvertiserExists` if the id is taken.
    Create,
    /// Insert or replace, unconditionally (the demo, tests).
    Upsert,
    /// Replace an existing row whose `updated_ms` is this; `AdvertiserChanged` if none.
    Replace(i64),
}

/// The statement writing an advertiser in `mode`: `$1`..`$11` are the columns in
/// `ADVERTISER_COLS` order, `$12` the expected `updated_ms` of `Replace`. `p` spells a
/// placeholder in the backend's dialect (`?` or `$`).
pub(crate) fn advertiser_write_sql(mode: PutMode, p: char) -> String {
    let cols = "name = {p}2, key_hash = {p}3, budget_epsilon_nano = {p}4,
           budget_delta_atto = {p}5, period = {p}6, allowed_features = {p}7,
           allowed_dimensions = {p}8, disabled = {p}9, created_ms = {p}10,
           updated_ms = {p}11";
    let sql = match mode {
        PutMode::Replace(_) => {
            format!("UPDATE advertisers SET {cols} WHERE advertiser_id = {{p}}1 AND updated_ms = {{p}}12")
        }
        PutMode::Create | PutMode::Upsert => format!(
            "INSERT INTO advertisers (advertiser_id, name, key_hash, budget_epsilon_nano,
               budget_delta_atto, period, allowed_features, allowed_dimensions, disabled,
               created_ms, updated_ms)
             VALUES ({{p}}1, {{p}}2, {{p}}3, {{p}}4, {{p}}5, {{p}}6, {{p}}7, {{p}}8, {{p}}9,
               {{p}}10, {{p}}11) {}",
            match mode {
                PutMode::Create => "ON CONFLICT (advertiser_id) DO NOTHING",
                _ =>
                    "ON CONFLICT (advertiser_id) DO UPDATE SET
           name = excluded.name, key_hash = excluded.key_hash,
           budget_epsilon_nano = excluded.budget_epsilon_nano,
           budget_delta_atto = excluded.budget_delta_atto, period = excluded.period,
           allowed_features = excluded.allowed_features,
           allowed_dimensions = excluded.allowed_dimensions, disabled = excluded.disabled,
           created_ms = excluded.created_ms, updated_ms = excluded.updated_ms",
            }
        ),
    };
    sql.replace("{p}", &p.to_string())
}

/// The error for a write of `mode` that changed no row.
pub(crate) fn advertiser_unwritten(mode: PutMode) -> StoreError {
    match mode {
        PutMode::Replace(_) => StoreError::AdvertiserChanged,
        PutMode::Create | PutMode::Upsert => StoreError::AdvertiserExists,
    }
}

pub(crate) fn charge(budget: Spend, spent: Spend, cost: Spend) -> Result<Spend, StoreError> {
    if cost.epsilon_nano < 0 || cost.delta_atto < 0 {
        return Err(StoreError::Database(
            "a report's cost cannot be negative".into(),
        ));
    }
    match spent.checked_add(cost) {
        Some(after) if !after.exceeds(budget) => Ok(after),
        _ => Err(StoreError::Overspend { budget, spent }),
    }
}

/// Permission lists are stored as JSON arrays of strings.
pub(crate) fn names_to_json(names: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(names).map_err(|e| StoreError::Database(e.to_string()))
}

pub(crate) fn names_from_json(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::Corrupt(format!("advertiser permission list: {e}")))
}

pub(crate) fn key_hash(b: &[u8]) -> Result<[u8; 32], StoreError> {
    b.try_into()
        .map_err(|_| StoreError::Corrupt("advertiser key hash: expected 32 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(e: i64, d: i64) -> Spend {
        Spend {
            epsilon_nano: e,
            delta_atto: d,
        }
    }

    #[test]
    fn charges_are_checked_in_both_components_without_overflow() {
        let budget = spend(1_000, 10);
        assert_eq!(
            charge(budget, spend(900, 5), spend(100, 5)).unwrap(),
            budget
        );
        assert!(matches!(
            charge(budget, spend(900, 5), spend(101, 0)),
            Err(StoreError::Overspend { spent, .. }) if spent == spend(900, 5)
        ));
        assert!(matches!(
            charge(budget, spend(0, 10), spend(0, 1)),
            Err(StoreError::Overspend { .. })
        ));
        assert!(matches!(
            charge(spend(i64::MAX, i64::MAX), spend(i64::MAX, 0), spend(1, 0)),
            Err(StoreError::Overspend { .. })
        ));
        assert!(matches!(
            charge(budget, spend(0, 0), spend(-1, 0)),
            Err(StoreError::Database(_))
        ));
    }
}
