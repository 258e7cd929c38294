//! Erasure on PostgreSQL: what `plan::erase` decided, in one transaction (so `kill -9`,
//! of this node or of the database, leaves it complete or not started), then every
//! node's caches told.
//!
//! **Locks.** Like a consent change that may withdraw, the transaction locks the
//! `ledger_head` row (it appends to the one chain), then takes the gate exclusively, so
//! ingest transactions in flight for the subject finish first (their rows are then
//! deleted here) and later ones re-read consent after this commits and find nothing
//! granted (no row is stored, no identifier linked). The feature deriver holds the gate
//! shared, so it cannot be writing the subject's features meanwhile.
//!
//! **Other nodes.** The transaction sends the usual notification naming the subject;
//! a node reloading a subject whose `subjects` row is gone forgets it (`cache`). A full
//! resync also reads the erasure records (a partial index, migration 7) and forgets
//! their subjects, so a missed notification cannot leave one behind. Until a node has
//! heard, its consent path re-checks that a subject its cache resolves to still exists
//! (`consent`), and its ingest path re-reads consent in the database: a stale cache
//! can neither grant nor link anything to an erased subject.
//!
//! **What vacuum and backups mean for it** (`docs/erasure.md`): deleted tuples stay in
//! heap pages until `VACUUM` reclaims them, and in the WAL and in backups until those
//! expire. The identifiers and payloads are sealed under the subject's key, whose only
//! wrapped copy this transaction deletes; what lingers unsealed (lookup hashes, insight
//! features, declared fields) lingers only until vacuum and backup retention pass.

use super::locks::{self, Hold};
use super::{sql, Shared};
use crate::plan::erase::{self, SUBJECT_TABLES};
use crate::retry::retrying;
use crate::rows::Col;
use crate::types::*;
use crate::{statements as q, StoreError};
use candor_core::ledger::Head;
use std::collections::BTreeSet;

pub(super) async fn run(shared: &Shared, req: &Erasure) -> Result<ErasureOutcome, StoreError> {
    let outcome = retrying("erase", || once(shared, req)).await?;
    // Committed: forget the subject on this node (others hear through the notification).
    shared.forget(req.subject);
    shared.dense.lock().remove(&req.subject);
    Ok(outcome)
}

async fn once(shared: &Shared, req: &Erasure) -> Result<ErasureOutcome, StoreError> {
    let mut client = shared.pool.get().await?;
    let tx = client.transaction().await?;
    let row = sql::query_opt(
        &tx,
        "SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("the ledger_head row is missing".into()))?;
    let head = Head {
        seq: row.int(0)? as u64,
        hash: row.blob_n(1, "ledger head hash")?,
    };
    locks::take(&tx, locks::GATE, Hold::Exclusive).await?;
    let sid = &req.subject.as_bytes()[..];
    // The subject's row, with its wrapped data key, first: none means unknown (or
    // erased already), and the transaction is dropped (rolled back) untouched.
    if sql::execute(&tx, q::DELETE_SUBJECT, &[&sid]).await? == 0 {
        return Err(StoreError::UnknownSubject);
    }
    // Checked under the ledger head's lock, which every consent command takes too: no
    // subscription or consent can appear between this check and the commit.
    if req.only_if_abandoned {
        for s in erase::ABANDONED_UNLESS {
            if sql::query_opt(&tx, s, &[&sid]).await?.is_some() {
                return Err(StoreError::NotAbandoned);
            }
        }
    }
    let mut deleted = ErasedCounts::default();
    // The lookup rows are keyed by hash: find them through the subject's identities.
    sql::execute(
        &tx,
        "DELETE FROM identity_lookup
         WHERE lookup_hash IN (SELECT lookup_hash FROM identities WHERE subject_id = $1)
           AND subject_id = $1",
        &[&sid],
    )
    .await?;
    for t in SUBJECT_TABLES {
        *t.count(&mut deleted) = sql::execute(&tx, &t.delete_sql(), &[&sid]).await?;
    }
    // Every partition (no index on subject_id: this scans the log once).
    let events = sql::query(
        &tx,
        "DELETE FROM events WHERE subject_id = $1 RETURNING day, dedup_key",
        &[&sid],
    )
    .await?;
    deleted.events = events.len() as u64;
    // A key received on day D is stored under D and D + 1 (see `ingest`).
    let mut days = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for r in &events {
        let d: i32 = r.get(0);
        days.insert(d);
        days.insert(d.saturating_add(1));
        keys.insert(r.get::<_, Vec<u8>>(1));
    }
    if !keys.is_empty() {
        let days: Vec<i32> = days.into_iter().collect();
        let keys: Vec<Vec<u8>> = keys.into_iter().collect();
        deleted.dedup_keys = sql::execute(
            &tx,
            "DELETE FROM dedup_keys WHERE day = ANY($1) AND dedup_key = ANY($2)",
            &[&days, &keys],
        )
        .await?;
    }
    let plan = erase::plan(req, head, &shared.signer);
    super::consent::append(&tx, sid, &plan.record).await?;
    sql::execute(
        &tx,
        "UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&(plan.head.seq as i64), &&plan.head.hash[..]],
    )
    .await?;
    super::listen::notify(&tx, &[req.subject]).await?;
    tx.commit().await?;
    Ok(ErasureOutcome {
        subject: req.subject,
        deleted,
        record: plan.record,
    })
}
