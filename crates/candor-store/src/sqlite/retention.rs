//! Retention on SQLite: one `DELETE` over the events table with the tiers of
//! `crate::retention` as its predicate, run on the writer thread so it is ordered with
//! every other write. Floors of deleted rows are left to the sweeper, which ignores
//! rows that are gone.

use crate::retention::Tier;
use crate::types::RetentionReport;
use crate::StoreError;
use rusqlite::types::Value;
use rusqlite::Connection;

pub fn run(conn: &Connection, tiers: &[Tier]) -> Result<RetentionReport, StoreError> {
    if tiers.is_empty() {
        return Ok(RetentionReport::default());
    }
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
    let tx = conn.unchecked_transaction()?;
    let n = tx.execute(&sql, rusqlite::params_from_iter(params))?;
    tx.commit()?;
    Ok(RetentionReport {
        events_deleted: n as u64,
        partitions_dropped: 0,
    })
}
