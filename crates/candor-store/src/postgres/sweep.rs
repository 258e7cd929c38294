//! The sweeper: rewrites stored events after withdrawals, in small transactions, in a
//! background task (woken by withdrawals on this node and polling for other nodes').
//!
//! The same passes as SQLite's sweeper: load the floors, scan events up to the highest
//! floor in id chunks, strip floored purposes from matching rows (deleting rows left
//! with none), and at the end delete exactly the floors the pass applied (a floor that
//! a newer withdrawal moved meanwhile stays for the next pass). Reads apply the floors
//! throughout, so nothing waits on the sweeper.
//!
//! Updates are *relative* (`purposes & ~mask`, delete where `purposes & ~mask = 0`),
//! never a value computed from an earlier read, so two sweepers (on two nodes, or
//! `sweep()` beside the background task) commute instead of undoing each other. An
//! advisory lock still keeps them from doing the same work twice.

use super::partitions::{self, day_of_ms, Table};
use super::{cache, locks, sql, Shared};
use crate::StoreError;
use candor_core::idhash::IdMap;
use candor_core::SubjectId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const CHUNK: i64 = 20_000;

/// How often the background task drops dedup partitions that can no longer match.
const DEDUP_PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct Sweeper {
    pass: Option<Pass>,
}

struct Pass {
    floors: IdMap<SubjectId, Vec<(u8, i64)>>,
    max_upto: i64,
    cursor: i64,
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
        sql::execute(
            &tx,
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&locks::CLASS, &locks::SWEEP],
        )
        .await?;
        let mut changes: Vec<(i64, i32, i64)> = Vec::new();
        let mut last = pass.cursor;
        for r in sql::query(
            &tx,
            "SELECT id, day, subject_id, purposes FROM events
             WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
            &[&pass.cursor, &pass.max_upto, &CHUNK],
        )
        .await?
        {
            let id: i64 = r.get(0);
            last = id;
            if let Some(f) = pass.floors.get(&cache::subject(r.get(2))?) {
                let m = crate::sqlite::floor_mask(f, id);
                if (r.get::<_, i64>(3) as u64) & m != 0 {
                    changes.push((id, r.get(1), m as i64));
                }
            }
        }
        if !changes.is_empty() {
            let ids: Vec<i64> = changes.iter().map(|c| c.0).collect();
            let days: Vec<i32> = changes.iter().map(|c| c.1).collect();
            let masks: Vec<i64> = changes.iter().map(|c| c.2).collect();
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
        let done = last >= pass.max_upto || last == pass.cursor;
        pass.cursor = last;
        if done {
            let mut subjects = Vec::new();
            let mut bits = Vec::new();
            let mut uptos = Vec::new();
            for (s, list) in &pass.floors {
                for (bit, upto) in list {
                    subjects.push(&s.as_bytes()[..]);
                    bits.push(i16::from(*bit));
                    uptos.push(*upto);
                }
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

pub async fn pending(c: &deadpool_postgres::Object) -> Result<i64, StoreError> {
    Ok(
        sql::query_opt(c, "SELECT count(*) FROM purpose_floors", &[])
            .await?
            .map_or(0, |r| r.get(0)),
    )
}

async fn load(c: &deadpool_postgres::Object) -> Result<Option<Pass>, StoreError> {
    let mut floors: IdMap<SubjectId, Vec<(u8, i64)>> = IdMap::default();
    let mut max_upto = 0;
    for r in sql::query(
        c,
        "SELECT subject_id, bit, upto_id FROM purpose_floors",
        &[],
    )
    .await?
    {
        let upto: i64 = r.get(2);
        let bit: i16 = r.get(1);
        max_upto = max_upto.max(upto);
        floors
            .entry(cache::subject(r.get(0))?)
            .or_default()
            .push((bit as u8, upto));
    }
    Ok((!floors.is_empty()).then_some(Pass {
        floors,
        max_upto,
        cursor: 0,
    }))
}

/// The background task: sweeps when woken or every `interval`, and now and then drops
/// de-duplication partitions no new message can conflict with.
pub async fn background(
    shared: Arc<Shared>,
    sweeper: Arc<tokio::sync::Mutex<Sweeper>>,
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
            let more = sweeper.lock().await.step(&shared).await;
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
pub async fn prune_dedup(shared: &Shared, now_ms: i64) -> Result<u64, StoreError> {
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
