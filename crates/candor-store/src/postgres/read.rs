//! Read queries on pooled connections.

use super::{cache, sql};
use crate::types::*;
use crate::StoreError;
use candor_core::consent::{Channel, ConsentStatus};
use candor_core::crypto::{MasterKey, SubjectKey};
use candor_core::idhash::IdMap;
use candor_core::ledger::{Evidence, Head, LedgerEntry, SealedEntry};
use candor_core::{PurposeId, PurposeSet, SubjectId};
use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::{IsolationLevel, Row};

pub async fn subject_key<C: GenericClient>(
    c: &C,
    master: &MasterKey,
    s: SubjectId,
) -> Result<Option<SubjectKey>, StoreError> {
    let row = sql::query_opt(
        c,
        "SELECT wrapped_key FROM subjects WHERE subject_id = $1",
        &[&&s.as_bytes()[..]],
    )
    .await?;
    row.map(|r| {
        master
            .unwrap_key(&s, r.get(0))
            .map_err(|e| StoreError::Corrupt(format!("subject key: {e}")))
    })
    .transpose()
}

/// The recorded head; `None` while the ledger is empty (the row exists from the start
/// so that there is always something to lock).
pub async fn head(c: &Object) -> Result<Option<Head>, StoreError> {
    let r = sql::query_opt(c, "SELECT seq, hash FROM ledger_head WHERE id = 1", &[])
        .await?
        .ok_or_else(|| StoreError::Corrupt("the ledger_head row is missing".into()))?;
    let seq = r.get::<_, i64>(0) as u64;
    if seq == 0 {
        return Ok(None);
    }
    Ok(Some(Head {
        seq,
        hash: r
            .get::<_, &[u8]>(1)
            .try_into()
            .map_err(|_| StoreError::Corrupt("ledger head hash".into()))?,
    }))
}

pub async fn consent_state(c: &Object, s: SubjectId) -> Result<Vec<StateRow>, StoreError> {
    let rows = sql::query(
        c,
        "SELECT purpose_id, status, notice_version, seq, time_ms FROM consent_state
         WHERE subject_id = $1 ORDER BY purpose_id",
        &[&&s.as_bytes()[..]],
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let purpose: &str = r.get(0);
        let status: &str = r.get(1);
        out.push(StateRow {
            purpose: PurposeId::parse(purpose).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            status: ConsentStatus::parse(status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
            notice_version: u32::try_from(r.get::<_, i64>(2))
                .map_err(|_| StoreError::Corrupt("notice version".into()))?,
            seq: r.get::<_, i64>(3) as u64,
            time_ms: r.get(4),
        });
    }
    Ok(out)
}

const LEDGER_COLS: &str =
    "seq, subject_id, purpose_id, status, notice_version, notice_hash, channel,
    time_ms, evidence, prev_hash, hash, signature";

/// Rebuilds a ledger entry from its row; a value that cannot be parsed is reported as
/// corrupt, naming the row.
fn ledger_row(r: &Row) -> Result<SealedEntry, StoreError> {
    let seq: i64 = r.get(0);
    let corrupt = |what: &str| StoreError::Corrupt(format!("ledger row {seq}: {what}"));
    let b32 = |i: usize, what: &str| -> Result<[u8; 32], StoreError> {
        r.get::<_, &[u8]>(i).try_into().map_err(|_| corrupt(what))
    };
    Ok(SealedEntry {
        entry: LedgerEntry {
            seq: seq as u64,
            subject: cache::subject(r.get(1))?,
            purpose: PurposeId::parse(r.get(2)).map_err(|_| corrupt("purpose"))?,
            status: ConsentStatus::parse(r.get(3)).ok_or_else(|| corrupt("status"))?,
            notice_version: u32::try_from(r.get::<_, i64>(4))
                .map_err(|_| corrupt("notice version"))?,
            notice_hash: b32(5, "notice hash")?,
            channel: Channel::parse(r.get(6)).ok_or_else(|| corrupt("channel"))?,
            time_ms: r.get(7),
            evidence: serde_json::from_str::<Evidence>(r.get(8))
                .map_err(|_| corrupt("evidence"))?,
            prev_hash: b32(9, "previous hash")?,
        },
        hash: b32(10, "hash")?,
        signature: r
            .get::<_, &[u8]>(11)
            .try_into()
            .map_err(|_| corrupt("signature"))?,
    })
}

pub async fn history(c: &Object, s: SubjectId) -> Result<Vec<SealedEntry>, StoreError> {
    sql::query(
        c,
        &format!("SELECT {LEDGER_COLS} FROM ledger WHERE subject_id = $1 ORDER BY seq"),
        &[&&s.as_bytes()[..]],
    )
    .await?
    .iter()
    .map(ledger_row)
    .collect()
}

pub async fn ledger_page(
    c: &Object,
    after: u64,
    limit: usize,
) -> Result<Vec<SealedEntry>, StoreError> {
    sql::query(
        c,
        &format!("SELECT {LEDGER_COLS} FROM ledger WHERE seq > $1 ORDER BY seq LIMIT $2"),
        &[&(after as i64), &(limit as i64)],
    )
    .await?
    .iter()
    .map(ledger_row)
    .collect()
}

/// Events in id order with floors applied. One REPEATABLE READ transaction, so the
/// floors read match the rows read (a sweep committing in between cannot expose a
/// row whose floor it has just deleted but whose purposes it had not yet rewritten).
pub async fn events_page(
    c: &mut Object,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut out = Vec::new();
    let mut floors: IdMap<SubjectId, Vec<(u8, i64)>> = IdMap::default();
    let mut cursor = after;
    // Rows hidden by floors do not count towards `limit`; keep reading until filled.
    while out.len() < limit {
        let rows = sql::query(
            &tx,
            "SELECT id, subject_id, source_id, kind, category, purposes, event_ms, received_ms, sealed
             FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            &[&cursor, &(limit as i64)],
        )
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut missing: Vec<Vec<u8>> = Vec::new();
        for r in &rows {
            let s = cache::subject(r.get(1))?;
            if let std::collections::hash_map::Entry::Vacant(v) = floors.entry(s) {
                v.insert(Vec::new());
                missing.push(s.as_bytes().to_vec());
            }
        }
        if !missing.is_empty() {
            for f in sql::query(
                &tx,
                "SELECT subject_id, bit, upto_id FROM purpose_floors WHERE subject_id = ANY($1)",
                &[&missing],
            )
            .await?
            {
                let bit: i16 = f.get(1);
                floors
                    .entry(cache::subject(f.get(0))?)
                    .or_default()
                    .push((bit as u8, f.get(2)));
            }
        }
        for r in &rows {
            let id: i64 = r.get(0);
            cursor = id;
            let subject = cache::subject(r.get(1))?;
            let m = floors
                .get(&subject)
                .map_or(0, |f| crate::sqlite::floor_mask(f, id));
            let purposes = (r.get::<_, i64>(5) as u64) & !m;
            if purposes == 0 {
                continue;
            }
            out.push(StoredEvent {
                id,
                subject,
                source: r.get(2),
                kind: r.get(3),
                category: r.get(4),
                purposes: PurposeSet::from_bits(purposes),
                event_ms: r.get(6),
                received_ms: r.get(7),
                sealed_payload: r.get(8),
            });
            if out.len() == limit {
                break;
            }
        }
    }
    tx.commit().await?;
    Ok(out)
}

pub async fn stats(c: &Object) -> Result<Stats, StoreError> {
    let r = sql::query_opt(
        c,
        "SELECT (SELECT count(*) FROM subjects), (SELECT count(*) FROM events),
                (SELECT count(*) FROM ledger), (SELECT count(*) FROM purpose_floors)",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Database("stats returned no row".into()))?;
    Ok(Stats {
        subjects: r.get::<_, i64>(0) as u64,
        events: r.get::<_, i64>(1) as u64,
        ledger_records: r.get::<_, i64>(2) as u64,
        pending_floors: r.get::<_, i64>(3) as u64,
    })
}
