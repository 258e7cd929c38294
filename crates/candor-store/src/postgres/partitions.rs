//! Day partitions of `events` and `dedup_keys`, created on demand and dropped by
//! retention.
//!
//! A day is `received_ms` divided by 86 400 000 (UTC days since the epoch); its
//! partition is named `events_YYYYMMDD` (or `dedup_keys_YYYYMMDD`). Creation runs in
//! its own short transaction under an advisory lock, outside the ingest transaction:
//! two nodes never race on `CREATE TABLE`, and the lock that creating a partition takes
//! on the parent is held for milliseconds, once a day. Each node remembers which
//! partitions it knows to exist, so the hot path costs nothing.

use super::locks::{self, Hold};
use crate::plan::retention::DAY_MS;
use crate::StoreError;
use deadpool_postgres::Pool;
use parking_lot::Mutex;
use std::collections::HashSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Events,
    Dedup,
}

impl Table {
    pub fn parent(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Dedup => "dedup_keys",
        }
    }

    /// The partition's name, e.g. `events_20250131`.
    pub fn partition(self, day: i32) -> String {
        let (y, m, d) = civil_from_days(i64::from(day));
        format!("{}_{y:04}{m:02}{d:02}", self.parent())
    }

    /// The day of one of this table's partitions, from its name.
    pub fn day_of(self, name: &str) -> Option<i32> {
        let digits = name.strip_prefix(self.parent())?.strip_prefix('_')?;
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let y: i64 = digits.get(0..4)?.parse().ok()?;
        let m: u32 = digits.get(4..6)?.parse().ok()?;
        let d: u32 = digits.get(6..8)?.parse().ok()?;
        i32::try_from(days_from_civil(y, m, d)).ok()
    }
}

/// The UTC day of a millisecond timestamp.
pub fn day_of_ms(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Partitions this node knows to exist.
#[derive(Default)]
pub struct Known(Mutex<HashSet<(Table, i32)>>);

impl Known {
    /// Creates whichever of `needed` this node has not seen yet.
    pub async fn ensure(
        &self,
        pool: &Pool,
        needed: impl IntoIterator<Item = (Table, i32)>,
    ) -> Result<(), StoreError> {
        let mut missing: Vec<(Table, i32)> = {
            let known = self.0.lock();
            needed.into_iter().filter(|p| !known.contains(p)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_by_key(|(t, d)| (t.parent(), *d));
        missing.dedup();
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        locks::take(&tx, locks::PARTITIONS, Hold::Exclusive).await?;
        for (table, day) in &missing {
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS \"{}\" PARTITION OF {} FOR VALUES FROM ({day}) TO ({})",
                table.partition(*day),
                table.parent(),
                i64::from(*day) + 1
            ))
            .await?;
        }
        tx.commit().await?;
        self.0.lock().extend(missing);
        Ok(())
    }

    pub fn forget(&self, table: Table, day: i32) {
        self.0.lock().remove(&(table, day));
    }

    /// After an insert found no partition (another node dropped one this node knew).
    pub fn forget_all(&self) {
        self.0.lock().clear();
    }
}

/// The existing partitions of `table`, by day.
pub async fn list(
    client: &deadpool_postgres::Object,
    table: Table,
) -> Result<Vec<i32>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::text::regclass",
            &[&table.parent()],
        )
        .await?;
    let mut days: Vec<i32> = rows
        .iter()
        .filter_map(|r| table.day_of(r.get::<_, &str>(0)))
        .collect();
    days.sort_unstable();
    Ok(days)
}

/// Drops one partition (its rows go with it), in its own transaction.
pub async fn drop_partition(
    pool: &Pool,
    known: &Known,
    table: Table,
    day: i32,
) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    locks::take(&tx, locks::PARTITIONS, Hold::Exclusive).await?;
    tx.batch_execute(&format!(
        "DROP TABLE IF EXISTS \"{}\"",
        table.partition(day)
    ))
    .await?;
    tx.commit().await?;
    known.forget(table, day);
    Ok(())
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(Table::Events.partition(0), "events_19700101");
        assert_eq!(Table::Dedup.partition(20_089), "dedup_keys_20250101");
        for day in [-1000, 0, 59, 11_016, 20_089, 40_000] {
            assert_eq!(
                Table::Events.day_of(&Table::Events.partition(day)),
                Some(day)
            );
        }
        assert_eq!(Table::Events.day_of("events_2025"), None);
        assert_eq!(Table::Events.day_of("dedup_keys_20250101"), None);
        assert_eq!(day_of_ms(-1), -1);
    }
}
