//! Read queries, run on pooled read connections (WAL lets them run beside the writer).

use crate::dedup::DedupWindow;
use crate::plan::floors::Page;
use crate::rows::{self, Col};
use crate::types::*;
use crate::{statements as q, StoreError};
use candor_core::crypto::{MasterKey, SubjectKey};
use candor_core::ledger::{Head, SealedEntry};
use candor_core::SubjectId;
use rusqlite::{params, Connection, OptionalExtension, Params};

/// Rows of a query, each decoded by `f`.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    p: impl Params,
    f: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut st = conn.prepare_cached(sql)?;
    let mut rows = st.query(p)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

pub(super) fn subject_key(
    conn: &Connection,
    master: &MasterKey,
    s: SubjectId,
) -> Result<Option<SubjectKey>, StoreError> {
    let wrapped: Option<Vec<u8>> = conn
        .prepare_cached(q::SUBJECT_KEY)?
        .query_row(params![&s.as_bytes()[..]], |r| r.get(0))
        .optional()?;
    wrapped
        .map(|w| {
            master
                .unwrap_key(&s, &w)
                .map_err(|e| StoreError::Corrupt(format!("subject key: {e}")))
        })
        .transpose()
}

pub(super) fn head(conn: &Connection) -> Result<Option<Head>, StoreError> {
    Ok(all(
        conn,
        "SELECT seq, hash FROM ledger_head WHERE id = 1",
        [],
        |r| {
            Ok(Head {
                seq: r.int(0)? as u64,
                hash: r.blob_n(1, "ledger head hash")?,
            })
        },
    )?
    .pop())
}

pub(super) fn consent_state(conn: &Connection, s: SubjectId) -> Result<Vec<StateRow>, StoreError> {
    all(conn, &q::consent_state(), params![&s.as_bytes()[..]], |r| {
        rows::state_row(r)
    })
}

pub(super) fn history(conn: &Connection, s: SubjectId) -> Result<Vec<SealedEntry>, StoreError> {
    all(conn, &q::history(), params![&s.as_bytes()[..]], |r| {
        rows::ledger_entry(r)
    })
}

pub(super) fn ledger_page(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<SealedEntry>, StoreError> {
    all(
        conn,
        &q::ledger_page(),
        params![after as i64, limit as i64],
        |r| rows::ledger_entry(r),
    )
}

/// Events in id order with floors applied, in one read transaction so the floors match
/// the rows (WAL snapshot).
/// (`subject`: only that subject's, which scans the log: the event table has no index
/// by subject, so this is for a person's own rare reads, never a hot path.)
pub(super) fn events_page(
    conn: &Connection,
    after: i64,
    limit: usize,
    subject: Option<SubjectId>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let mut page = Page::new(after, limit);
    while let Some(after) = page.next() {
        let chunk = match subject {
            None => all(&tx, &q::events_after(), params![after, limit as i64], |r| {
                rows::stored_event(r)
            })?,
            Some(s) => all(
                &tx,
                &q::subject_events_after(),
                params![&s.as_bytes()[..], after, limit as i64],
                |r| rows::stored_event(r),
            )?,
        };
        let unknown = page.unknown(&chunk);
        for s in &unknown {
            let f = all(
                &tx,
                "SELECT bit, upto_id FROM purpose_floors WHERE subject_id = ?1",
                params![&s.as_bytes()[..]],
                |r| Ok((*s, u8::try_from(r.int(0)?).unwrap_or(u8::MAX), r.int(1)?)),
            )?;
            page.floors(std::slice::from_ref(s), f);
        }
        page.take(chunk);
    }
    Ok(page.into_events())
}

/// The de-duplication window as of the newest stored event: keys received within
/// `window_ms` of it, read newest first until older.
pub(super) fn dedup_window(conn: &Connection, window_ms: i64) -> Result<DedupWindow, StoreError> {
    let mut w = DedupWindow::new(window_ms);
    let mut st = conn.prepare("SELECT dedup_key, received_ms FROM events ORDER BY id DESC")?;
    let mut rows = st.query([])?;
    let mut keys = Vec::new();
    let mut newest = None;
    while let Some(r) = rows.next()? {
        let at = r.int(1)?;
        let newest = *newest.get_or_insert(at);
        if at < newest - window_ms {
            break;
        }
        keys.push((r.blob_n(0, "dedup key")?, at));
    }
    // Oldest first, as the window expects.
    for (k, at) in keys.into_iter().rev() {
        w.insert(k, at);
    }
    Ok(w)
}

pub(super) fn stats(conn: &Connection) -> Result<Stats, StoreError> {
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
