//! Retention on SQLite: one `DELETE` over the events table with the tiers of
//! `crate::plan::retention` as its predicate, and (with insights) one over the feature rows of
//! days past the insights purpose's retention, in one transaction run on the writer
//! thread so it is ordered with every other write. The writer prunes the feature index
//! after it commits. Floors of deleted rows are left to the sweeper, which ignores rows
//! that are gone.
//!
//! Neither table has an index that would narrow these deletes (see the architecture notes
//! on the events table; features are keyed by subject first), so each is one scan, once
//! an hour.

use crate::plan::retention::{FeatureCutoff, Tier};
use crate::types::RetentionReport;
use crate::StoreError;
use rusqlite::types::Value;
use rusqlite::Connection;

/// Deletes what is past retention; `features` is `None` when insights are off (rows left
/// from an earlier configuration are then not this pass's to judge: a new grant deletes
/// them).
pub fn run(
    conn: &Connection,
    tiers: &[Tier],
    features: Option<FeatureCutoff>,
) -> Result<RetentionReport, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let mut report = RetentionReport::default();
    if !tiers.is_empty() {
        let mut sql = String::from("DELETE FROM events WHERE ");
        let mut params: Vec<Value> = Vec::with_capacity(tiers.len() * 2);
        for (i, t) in tiers.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!(
                "(received_ms < ?{} AND (purposes & ?{}) = 0)",
                2 * i + 1,
                2 * i + 2
            ));
            params.push(Value::Integer(t.cutoff_ms));
            // Bits are stored as the two's-complement i64 of the u64 mask.
            params.push(Value::Integer(t.keep() as i64));
        }
        report.events_deleted = tx.execute(&sql, rusqlite::params_from_iter(params))? as u64;
    }
    report.features_deleted = match features {
        None => 0,
        Some(FeatureCutoff::Before(day)) => {
            tx.execute("DELETE FROM insight_features WHERE day < ?1", [day])?
        }
        Some(FeatureCutoff::All) => tx.execute("DELETE FROM insight_features", [])?,
    } as u64;
    tx.commit()?;
    Ok(report)
}
