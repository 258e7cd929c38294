//! The sweeper on PostgreSQL: carries out `plan::floors::SweepPass` in small
//! transactions, in a background task (woken by withdrawals on this node and polling for
//! other nodes'); see `plan::floors` for what a pass does.
//!
//! Updates are *relative* (`purposes & ~mask`, delete where `purposes & ~mask = 0`),
//! never a value computed from an earlier read, so two sweepers (on two nodes, or
//! `sweep()` beside the background task) commute instead of undoing each other. An
//! advisory lock still keeps them from doing the same work twice.

use super::locks::{self, Hold};
use super::partitions::{self, day_of_ms, Table};
use super::{sql, Shared};
use crate::plan::floors::SweepPass;
use crate::rows::Col;
use crate::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const CHUNK: i64 = 20_000;

/// How often the background task drops dedup partitions that can no longer match.
const DEDUP_PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub(crate) struct Sweeper {
    pass: Option<SweepPass>,
}

impl Sweeper {
    /// Runs one chunk in its own transaction. Returns true while work remains.
    pub async fn step(&mut self, shared: &Shared) -> Result<bool, StoreError> {
        let res = self.try_step(shared).await;
        if res.is_err() {
            self.pass = None;
        }
        res
    }

    async fn try_step(&mut self, shared: &Shared) -> Result<bool, StoreError> {
        let mut client = shared.pool.get().await?;
        if self.pass.is_none() {
            self.pass = load(&client).await?;
        }
        let Some(pass) = self.pass.as_mut() else {
            return Ok(false);
        };
        let tx = client.transaction().await?;
        locks::take(&tx, locks::SWEEP, Hold::Exclusive).await?;
        let (from, to) = pass.range();
        let mut rows = Vec::new();
        for r in sql::query(
            &tx,
            "SELECT id, day, subject_id, purposes FROM events
             WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
            &[&from, &to, &CHUNK],
        )
        .await?
        {
            rows.push((
                r.int(0)?,
                r.subject(2)?,
                r.int(3)? as u64,
                r.get::<_, i32>(1),
            ));
        }
        let (rewrites, done) = pass.chunk(rows);
        if !rewrites.is_empty() {
            let ids: Vec<i64> = rewrites.iter().map(|c| c.id).collect();
            let days: Vec<i32> = rewrites.iter().map(|c| c.extra).collect();
            let masks: Vec<i64> = rewrites.iter().map(|c| c.mask as i64).collect();
            let mut distinct_days = days.clone();
            distinct_days.sort_unstable();
            distinct_days.dedup();
            // `day = ANY(...)` lets the planner skip every other day's partition.
            sql::execute(
                &tx,
                "DELETE FROM events e USING unnest($1::int8[], $2::int4[], $3::int8[]) AS t(id, day, m)
                 WHERE e.day = ANY($4) AND e.id = t.id AND e.day = t.day AND (e.purposes & ~t.m) = 0",
                &[&ids, &days, &masks, &distinct_days],
            )
            .await?;
            sql::execute(
                &tx,
                "UPDATE events e SET purposes = e.purposes & ~t.m
                 FROM unnest($1::int8[], $2::int4[], $3::int8[]) AS t(id, day, m)
                 WHERE e.day = ANY($4) AND e.id = t.id AND e.day = t.day AND (e.purposes & t.m) <> 0",
                &[&ids, &days, &masks, &distinct_days],
            )
            .await?;
        }
        if done {
            let (mut subjects, mut bits, mut uptos) = (Vec::new(), Vec::new(), Vec::new());
            for (s, bit, upto) in pass.applied() {
                subjects.push(s.as_bytes().to_vec());
                bits.push(i16::from(bit));
                uptos.push(upto);
            }
            sql::execute(
                &tx,
                "DELETE FROM purpose_floors f USING unnest($1::bytea[], $2::int2[], $3::int8[]) AS t(s, b, u)
                 WHERE f.subject_id = t.s AND f.bit = t.b AND f.upto_id = t.u",
                &[&subjects, &bits, &uptos],
            )
            .await?;
        }
        tx.commit().await?;
        if done {
            self.pass = None;
            // Floors written during this pass are picked up by the next one.
            return pending(&client).await.map(|n| n > 0);
        }
        Ok(true)
    }
}

async fn pending(c: &deadpool_postgres::Object) -> Result<i64, StoreError> {
    sql::query_opt(c, "SELECT count(*) FROM purpose_floors", &[])
        .await?
        .map_or(Ok(0), |r| r.int(0))
}

async fn load(c: &deadpool_postgres::Object) -> Result<Option<SweepPass>, StoreError> {
    let mut floors = Vec::new();
    for r in sql::query(
        c,
        "SELECT subject_id, bit, upto_id FROM purpose_floors",
        &[],
    )
    .await?
    {
        floors.push((
            r.subject(0)?,
            u8::try_from(r.int(1)?).unwrap_or(u8::MAX),
            r.int(2)?,
        ));
    }
    Ok(SweepPass::new(floors))
}

/// The background task: sweeps when woken or every `interval`, and now and then drops
/// de-duplication partitions no new message can conflict with.
pub(super) async fn background(
    shared: Arc<Shared>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shared.sweep_wake.notified() => {}
            _ = tokio::time::sleep(interval) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
        loop {
            if *stop.borrow() {
                return;
            }
            // One chunk per lock, so `sweep()` and shutdown are never kept waiting long.
            let more = shared.sweeper.lock().await.step(&shared).await;
            match more {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "withdrawal sweep failed; will retry");
                    break;
                }
            }
        }
        if last_prune.is_none_or(|t| t.elapsed() >= DEDUP_PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            if let Err(e) = prune_dedup(&shared, now_ms()).await {
                tracing::warn!(error = %e, "dropping old de-duplication partitions failed");
            }
        }
    }
}

/// Drops de-duplication partitions before yesterday: a message received today inserts
/// keys for today and tomorrow only, so older ones can never conflict again.
pub(super) async fn prune_dedup(shared: &Shared, now_ms: i64) -> Result<u64, StoreError> {
    let today = day_of_ms(now_ms);
    let client = shared.pool.get().await?;
    let days = partitions::list(&client, Table::Dedup).await?;
    drop(client);
    let mut dropped = 0;
    for day in days.into_iter().filter(|d| *d < today.saturating_sub(1)) {
        partitions::drop_partition(&shared.pool, &shared.partitions, Table::Dedup, day).await?;
        dropped += 1;
    }
    Ok(dropped)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
