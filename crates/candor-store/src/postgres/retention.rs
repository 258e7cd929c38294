//! Retention on PostgreSQL: whole day partitions are dropped when every row in them is
//! past retention; otherwise rows are deleted with the tiers' predicate.
//!
//! A partition holds the events received on one day. If even the longest retention has
//! passed since the end of that day, every row in it is past retention whatever its
//! purposes, and the partition is dropped without reading a row. Partitions young
//! enough that only some rows may be past retention get a `DELETE`; a past day's
//! partition left empty is then dropped too. Old de-duplication partitions go as well.
//!
//! With insights, feature rows of days past the insights purpose's retention are deleted
//! too, and this node's feature index pruned to match (`super::features::prune`). Other
//! nodes' indexes keep those features until their own pass, which every node runs
//! (hourly); their refreshes never bring deleted rows back, so after a node's own pass its
//! index holds no day that pass found past retention.

use super::partitions::{self, day_of_ms, Table};
use super::{sql, Shared};
use crate::plan::retention::{FeatureCutoff, Tier, DAY_MS};
use crate::types::RetentionReport;
use crate::StoreError;

/// Deletes what is past retention; `features` is `None` when insights are off.
pub(super) async fn run(
    shared: &Shared,
    now_ms: i64,
    tiers: &[Tier],
    features: Option<FeatureCutoff>,
) -> Result<RetentionReport, StoreError> {
    let mut report = events(shared, now_ms, tiers).await?;
    if let Some(cut) = features {
        report.features_deleted = super::features::prune(shared, cut).await?;
    }
    Ok(report)
}

async fn events(
    shared: &Shared,
    now_ms: i64,
    tiers: &[Tier],
) -> Result<RetentionReport, StoreError> {
    let mut report = RetentionReport::default();
    let (Some(shortest), Some(longest)) = (
        tiers.iter().map(|t| t.cutoff_ms).max(),
        tiers.iter().map(|t| t.cutoff_ms).min(),
    ) else {
        return Ok(report);
    };
    let today = day_of_ms(now_ms);
    let days = {
        let client = shared.pool.get().await?;
        partitions::list(&client, Table::Events).await?
    };
    for day in days {
        let start = i64::from(day) * DAY_MS;
        let end = start + DAY_MS;
        if end <= longest {
            partitions::drop_partition(&shared.pool, &shared.partitions, Table::Events, day)
                .await?;
            report.partitions_dropped += 1;
        } else if start < shortest {
            let client = shared.pool.get().await?;
            report.events_deleted += delete_rows(&client, day, tiers).await?;
            let empty = sql::query_opt(
                &client,
                &format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM \"{}\")",
                    Table::Events.partition(day)
                ),
                &[],
            )
            .await?
            .is_some_and(|r| r.get::<_, bool>(0));
            drop(client);
            if empty && day < today.saturating_sub(1) {
                partitions::drop_partition(&shared.pool, &shared.partitions, Table::Events, day)
                    .await?;
                report.partitions_dropped += 1;
            }
        }
    }
    super::sweep::prune_dedup(shared, now_ms).await?;
    Ok(report)
}

async fn delete_rows(
    client: &deadpool_postgres::Object,
    day: i32,
    tiers: &[Tier],
) -> Result<u64, StoreError> {
    let cutoffs: Vec<i64> = tiers.iter().map(|t| t.cutoff_ms).collect();
    // Bits are stored as the two's-complement i64 of the u64 mask.
    let keeps: Vec<i64> = tiers.iter().map(|t| t.keep() as i64).collect();
    Ok(sql::execute(
        client,
        &format!(
            "DELETE FROM \"{}\" e WHERE EXISTS (
               SELECT 1 FROM unnest($1::int8[], $2::int8[]) AS t(cutoff, keep)
               WHERE e.received_ms < t.cutoff AND (e.purposes & t.keep) = 0)",
            Table::Events.partition(day)
        ),
        &[&cutoffs, &keeps],
    )
    .await?)
}
