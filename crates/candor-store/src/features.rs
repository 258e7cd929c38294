//! Audience-insight features as the store keeps them (issue 5): the options that turn
//! them on, and the changes to the in-memory [`FeatureIndex`] that both backends publish.
//!
//! **Off the commit path.** An ingest transaction no longer writes feature rows: it
//! stores the event's feature deltas, sealed under the subject's key, in the event row's
//! `features` column, so the event log itself is the durable record of every feature
//! change. Features are derived from that log after commit, in merged batches
//! (`plan::features::Batch`), and written with a persisted watermark (the highest event
//! id whose deltas the feature tables include) in the same transaction, so a crash or
//! restart neither loses nor double-counts a delta: what is past the watermark is read
//! from the log again. SQLite's single writer keeps the deltas of the rows it just
//! committed and adds them to the index at once, persisting the merged batch every
//! second or so (`sqlite::features`); PostgreSQL nodes share one deriver that reads the
//! log back (`postgres::derive`).
//!
//! **Consent.** Features exist only while the subject grants the insights purpose. A row
//! feeds features only when the purposes it is finally stored under include that
//! purpose, and a logged row is applied only if it still does after purpose floors
//! (`plan::features::feeds`). A transition of the purpose in either direction deletes
//! the subject's feature rows in its own transaction, drops the subject from the index
//! and forgets its deltas not yet persisted; the floor it sets keeps its older logged
//! rows from ever being applied again.
//!
//! Features also expire: the retention pass deletes the rows of days past the insights
//! purpose's retention and, after it commits, prunes the index to the same cutoff
//! ([`prune_index`]).

use crate::plan::retention::FeatureCutoff;
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
pub struct Insights {
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

/// A change to the feature index, applied after the transaction behind it committed.
#[derive(Clone, Debug)]
pub enum IndexOp {
    /// One daily feature: its stored (absolute) count, or a delta (see [`IndexOp::apply`]).
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
}

impl IndexOp {
    pub fn subject(&self) -> SubjectId {
        match self {
            IndexOp::Activity { subject, .. } | IndexOp::Declared { subject, .. } => *subject,
        }
    }

    /// Applies the op. With `add`, an activity count is a delta added to the index's
    /// (SQLite's writer, which alone publishes what it commits); otherwise it is the
    /// absolute stored value (read back from the tables).
    pub fn apply(&self, index: &FeatureIndex, add: bool) {
        match self {
            IndexOp::Activity {
                subject,
                dense,
                feature,
            } if add => index.add_activity(*subject, *dense, feature),
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
