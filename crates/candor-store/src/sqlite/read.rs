//! Read queries, run on pooled read connections (WAL lets them run beside the writer).

use super::{blob16, blob32};
use crate::dedup::DedupWindow;
use crate::types::*;
use crate::StoreError;
use candor_core::consent::{Channel, ConsentStatus};
use candor_core::crypto::{MasterKey, SubjectKey};
use candor_core::ledger::{Evidence, Head, LedgerEntry, SealedEntry};
use candor_core::{PurposeId, PurposeSet, SubjectId};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

pub fn subject_key(
    conn: &Connection,
    master: &MasterKey,
    s: SubjectId,
) -> Result<Option<SubjectKey>, StoreError> {
    let wrapped: Option<Vec<u8>> = conn
        .query_row(
            "SELECT wrapped_key FROM subjects WHERE subject_id = ?1",
            params![&s.as_bytes()[..]],
            |r| r.get(0),
        )
        .optional()?;
    wrapped
        .map(|w| {
            master
                .unwrap_key(&s, &w)
                .map_err(|e| StoreError::Corrupt(format!("subject key: {e}")))
        })
        .transpose()
}

pub fn head(conn: &Connection) -> Result<Option<Head>, StoreError> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row("SELECT seq, hash FROM ledger_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(seq, hash)| {
        Ok(Head {
            seq: seq as u64,
            hash: hash
                .try_into()
                .map_err(|_| StoreError::Corrupt("ledger head hash".into()))?,
        })
    })
    .transpose()
}

pub fn consent_state(conn: &Connection, s: SubjectId) -> Result<Vec<StateRow>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT purpose_id, status, notice_version, seq, time_ms FROM consent_state
         WHERE subject_id = ?1 ORDER BY purpose_id",
    )?;
    let mut rows = st.query(params![&s.as_bytes()[..]])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let purpose: String = r.get(0)?;
        let status: String = r.get(1)?;
        out.push(StateRow {
            purpose: PurposeId::parse(&purpose).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            status: ConsentStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
            notice_version: r.get(2)?,
            seq: r.get::<_, i64>(3)? as u64,
            time_ms: r.get(4)?,
        });
    }
    Ok(out)
}

const LEDGER_COLS: &str =
    "seq, subject_id, purpose_id, status, notice_version, notice_hash, channel,
    time_ms, evidence, prev_hash, hash, signature";

/// Rebuilds a ledger entry from its row. A value that cannot even be parsed (an edit
/// that left an unknown status, say) is reported as corrupt, naming the row.
fn ledger_row(r: &Row<'_>) -> Result<SealedEntry, StoreError> {
    let purpose: String = r.get(2)?;
    let status: String = r.get(3)?;
    let channel: String = r.get(6)?;
    let evidence: String = r.get(8)?;
    let sig: Vec<u8> = r.get(11)?;
    let corrupt = |what: &str| {
        StoreError::Corrupt(format!(
            "ledger row {}: {what}",
            r.get::<_, i64>(0).unwrap_or(-1)
        ))
    };
    Ok(SealedEntry {
        entry: LedgerEntry {
            seq: r.get::<_, i64>(0)? as u64,
            subject: SubjectId::from_bytes(blob16(r, 1)?),
            purpose: PurposeId::parse(&purpose).map_err(|_| corrupt("purpose"))?,
            status: ConsentStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
            notice_version: r.get(4)?,
            notice_hash: blob32(r, 5)?,
            channel: Channel::parse(&channel).ok_or_else(|| corrupt("channel"))?,
            time_ms: r.get(7)?,
            evidence: serde_json::from_str::<Evidence>(&evidence)
                .map_err(|_| corrupt("evidence"))?,
            prev_hash: blob32(r, 9)?,
        },
        hash: blob32(r, 10)?,
        signature: sig.try_into().map_err(|_| corrupt("signature"))?,
    })
}

pub fn history(conn: &Connection, s: SubjectId) -> Result<Vec<SealedEntry>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {LEDGER_COLS} FROM ledger WHERE subject_id = ?1 ORDER BY seq"
    ))?;
    let mut rows = st.query(params![&s.as_bytes()[..]])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(ledger_row(r)?);
    }
    Ok(out)
}

pub fn ledger_page(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<SealedEntry>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {LEDGER_COLS} FROM ledger WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let mut rows = st.query(params![after as i64, limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(ledger_row(r)?);
    }
    Ok(out)
}

pub fn events_page(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    // One read transaction, so the floors match the rows (WAL snapshot).
    let tx = conn.unchecked_transaction()?;
    let mut out = Vec::new();
    let mut floors: HashMap<SubjectId, Vec<(u8, i64)>> = HashMap::new();
    let mut cursor = after;
    // Rows hidden by floors do not count towards `limit`; keep reading until filled.
    while out.len() < limit {
        let mut st = tx.prepare_cached(
            "SELECT id, subject_id, source_id, kind, category, purposes, event_ms, received_ms, sealed
             FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut rows = st.query(params![cursor, limit as i64])?;
        let mut seen = 0usize;
        while let Some(r) = rows.next()? {
            seen += 1;
            let id: i64 = r.get(0)?;
            cursor = id;
            let subject = SubjectId::from_bytes(blob16(r, 1)?);
            let f = match floors.entry(subject) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => v.insert(subject_floors(&tx, subject)?),
            };
            let m = super::sweep::mask(f, id);
            let purposes = (r.get::<_, i64>(5)? as u64) & !m;
            if purposes == 0 {
                continue;
            }
            out.push(StoredEvent {
                id,
                subject,
                source: r.get(2)?,
                kind: r.get(3)?,
                category: r.get(4)?,
                purposes: PurposeSet::from_bits(purposes),
                event_ms: r.get(6)?,
                received_ms: r.get(7)?,
                sealed_payload: r.get(8)?,
            });
            if out.len() == limit {
                break;
            }
        }
        if seen == 0 {
            break;
        }
    }
    Ok(out)
}

fn subject_floors(conn: &Connection, s: SubjectId) -> Result<Vec<(u8, i64)>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT bit, upto_id FROM purpose_floors WHERE subject_id = ?1")?;
    let rows = st.query_map(params![&s.as_bytes()[..]], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The de-duplication window as of the newest stored event: keys received within
/// `window_ms` of it, read newest first until older.
pub fn dedup_window(conn: &Connection, window_ms: i64) -> Result<DedupWindow, StoreError> {
    let mut w = DedupWindow::new(window_ms);
    let mut st = conn.prepare("SELECT dedup_key, received_ms FROM events ORDER BY id DESC")?;
    let mut rows = st.query([])?;
    let mut keys = Vec::new();
    let mut newest = None;
    while let Some(r) = rows.next()? {
        let at: i64 = r.get(1)?;
        let newest = *newest.get_or_insert(at);
        if at < newest - window_ms {
            break;
        }
        keys.push((blob16(r, 0)?, at));
    }
    // Oldest first, as the window expects.
    for (k, at) in keys.into_iter().rev() {
        w.insert(k, at);
    }
    Ok(w)
}

pub fn stats(conn: &Connection) -> Result<Stats, StoreError> {
    let count = |sql: &str| -> Result<u64, StoreError> {
        Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
    };
    Ok(Stats {
        subjects: count("SELECT count(*) FROM subjects")?,
        events: count("SELECT count(*) FROM events")?,
        ledger_records: count("SELECT count(*) FROM ledger")?,
        pending_floors: count("SELECT count(*) FROM purpose_floors")?,
    })
}
