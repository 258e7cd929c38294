//! Prompt variants and anonymous prompt counts on SQLite (see `crate::prompt`).
//!
//! Writes use a connection of their own in an `IMMEDIATE` transaction: SQLite lets one
//! writer in at a time, so this waits (busy timeout) for the group-commit writer's
//! current transaction and the writer waits for this one, which is a handful of rows.

use crate::prompt::{merged, PromptCount, StoredVariant};
use crate::StoreError;
use rusqlite::{params, Connection, TransactionBehavior};
use std::path::Path;

pub fn add_counts(path: &Path, counts: Vec<PromptCount>) -> Result<(), StoreError> {
    let mut conn = super::open_conn(path, true)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare(
            "INSERT INTO prompt_counts (day, variant, purpose, metric, count)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (day, variant, purpose, metric) DO UPDATE SET count = count + excluded.count",
        )?;
        for c in merged(counts) {
            st.execute(params![c.day, c.variant, c.purpose, c.metric, c.count])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub fn counts(
    conn: &Connection,
    from_day: i32,
    to_day: i32,
) -> Result<Vec<PromptCount>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT day, variant, purpose, metric, count FROM prompt_counts
         WHERE day BETWEEN ?1 AND ?2 ORDER BY day, variant, purpose, metric",
    )?;
    let rows = st.query_map(params![from_day, to_day], |r| {
        Ok(PromptCount {
            day: r.get(0)?,
            variant: r.get(1)?,
            purpose: r.get(2)?,
            metric: r.get(3)?,
            count: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn save_variant(path: &Path, v: StoredVariant) -> Result<(), StoreError> {
    let mut conn = super::open_conn(path, true)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO prompt_variants (id, definition, active, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET definition = excluded.definition,
             active = excluded.active, updated_ms = excluded.updated_ms",
        params![v.id, v.definition, v.active, v.updated_ms],
    )?;
    tx.commit()?;
    Ok(())
}

pub fn variants(conn: &Connection) -> Result<Vec<StoredVariant>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, definition, active, updated_ms FROM prompt_variants ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(StoredVariant {
            id: r.get(0)?,
            definition: r.get(1)?,
            active: r.get(2)?,
            updated_ms: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
