//! Prompt variants and anonymous prompt counts on PostgreSQL (see `crate::prompt`):
//! one short transaction per call on the pool; concurrent nodes add to the same
//! totals with `ON CONFLICT ... DO UPDATE`, which serializes on the row.

use crate::prompt::{merged, PromptCount, StoredVariant};
use crate::StoreError;
use deadpool_postgres::Object;

pub async fn add_counts(mut c: Object, counts: Vec<PromptCount>) -> Result<(), StoreError> {
    let counts = merged(counts);
    let tx = c.transaction().await?;
    // One statement for the whole batch; rows sorted, so concurrent batches lock
    // rows in the same order and cannot deadlock.
    let days: Vec<i32> = counts.iter().map(|c| c.day).collect();
    let variants: Vec<&str> = counts.iter().map(|c| c.variant.as_str()).collect();
    let purposes: Vec<&str> = counts.iter().map(|c| c.purpose.as_str()).collect();
    let metrics: Vec<&str> = counts.iter().map(|c| c.metric.as_str()).collect();
    let values: Vec<i64> = counts.iter().map(|c| c.count).collect();
    tx.execute(
        "INSERT INTO prompt_counts (day, variant, purpose, metric, count)
         SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[], $5::int8[])
         ON CONFLICT (day, variant, purpose, metric)
         DO UPDATE SET count = prompt_counts.count + EXCLUDED.count",
        &[&days, &variants, &purposes, &metrics, &values],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn counts(
    c: &Object,
    from_day: i32,
    to_day: i32,
) -> Result<Vec<PromptCount>, StoreError> {
    Ok(c.query(
        "SELECT day, variant, purpose, metric, count FROM prompt_counts
         WHERE day BETWEEN $1 AND $2 ORDER BY day, variant, purpose, metric",
        &[&from_day, &to_day],
    )
    .await?
    .iter()
    .map(|r| PromptCount {
        day: r.get(0),
        variant: r.get(1),
        purpose: r.get(2),
        metric: r.get(3),
        count: r.get(4),
    })
    .collect())
}

pub async fn save_variant(c: &Object, v: StoredVariant) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO prompt_variants (id, definition, active, updated_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET definition = EXCLUDED.definition,
             active = EXCLUDED.active, updated_ms = EXCLUDED.updated_ms",
        &[&v.id, &v.definition, &v.active, &v.updated_ms],
    )
    .await?;
    Ok(())
}

pub async fn variants(c: &Object) -> Result<Vec<StoredVariant>, StoreError> {
    Ok(c.query(
        "SELECT id, definition, active, updated_ms FROM prompt_variants ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .map(|r| StoredVariant {
        id: r.get(0),
        definition: r.get(1),
        active: r.get(2),
        updated_ms: r.get(3),
    })
    .collect())
}
