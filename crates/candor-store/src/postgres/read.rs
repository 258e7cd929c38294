//! Read queries on pooled connections.

use super::sql;
use crate::plan::floors::Page;
use crate::rows::{self, Col};
use crate::types::*;
use crate::{statements as q, StoreError};
use candor_core::crypto::{MasterKey, SubjectKey};
use candor_core::ledger::{Head, SealedEntry};
use candor_core::SubjectId;
use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::types::ToSql;
use tokio_postgres::IsolationLevel;

/// Rows of a query, each decoded by `f`.
pub(super) async fn all<C: GenericClient, T>(
    c: &C,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
    f: impl Fn(&tokio_postgres::Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    sql::query(c, statement, params)
        .await?
        .iter()
        .map(f)
        .collect()
}

pub(super) async fn subject_key<C: GenericClient>(
    c: &C,
    master: &MasterKey,
    s: SubjectId,
) -> Result<Option<SubjectKey>, StoreError> {
    let row = sql::query_opt(c, q::SUBJECT_KEY, &[&&s.as_bytes()[..]]).await?;
    row.map(|r| {
        master
            .unwrap_key(&s, &r.blob(0)?)
            .map_err(|e| StoreError::Corrupt(format!("subject key: {e}")))
    })
    .transpose()
}

/// The recorded head; `None` while the ledger is empty (the row exists from the start
/// so that there is always something to lock).
pub(super) async fn head(c: &Object) -> Result<Option<Head>, StoreError> {
    let r = sql::query_opt(c, "SELECT seq, hash FROM ledger_head WHERE id = 1", &[])
        .await?
        .ok_or_else(|| StoreError::Corrupt("the ledger_head row is missing".into()))?;
    let seq = r.int(0)? as u64;
    if seq == 0 {
        return Ok(None);
    }
    Ok(Some(Head {
        seq,
        hash: r.blob_n(1, "ledger head hash")?,
    }))
}

pub(super) async fn consent_state(c: &Object, s: SubjectId) -> Result<Vec<StateRow>, StoreError> {
    all(
        c,
        &q::consent_state(),
        &[&&s.as_bytes()[..]],
        rows::state_row,
    )
    .await
}

pub(super) async fn history(c: &Object, s: SubjectId) -> Result<Vec<SealedEntry>, StoreError> {
    all(c, &q::history(), &[&&s.as_bytes()[..]], rows::ledger_entry).await
}

pub(super) async fn ledger_page(
    c: &Object,
    after: u64,
    limit: usize,
) -> Result<Vec<SealedEntry>, StoreError> {
    all(
        c,
        &q::ledger_page(),
        &[&(after as i64), &(limit as i64)],
        rows::ledger_entry,
    )
    .await
}

/// Events in id order with floors applied. One REPEATABLE READ transaction, so the
/// floors read match the rows read (a sweep committing in between cannot expose a
/// row whose floor it has just deleted but whose purposes it had not yet rewritten).
/// (`subject`: only that subject's events.)
pub(super) async fn events_page(
    c: &mut Object,
    after: i64,
    limit: usize,
    subject: Option<SubjectId>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut page = Page::new(after, limit);
    while let Some(after) = page.next() {
        let chunk = match subject {
            None => {
                all(&tx, &q::events_after(), &[&after, &(limit as i64)], |r| {
                    rows::stored_event(r)
                })
                .await?
            }
            Some(s) => {
                let id = &s.as_bytes()[..];
                all(
                    &tx,
                    &q::subject_events_after(),
                    &[&id, &after, &(limit as i64)],
                    rows::stored_event,
                )
                .await?
            }
        };
        let unknown = page.unknown(&chunk);
        if !unknown.is_empty() {
            let ids: Vec<&[u8]> = unknown.iter().map(|s| &s.as_bytes()[..]).collect();
            let rows = all(
                &tx,
                "SELECT subject_id, bit, upto_id FROM purpose_floors WHERE subject_id = ANY($1)",
                &[&ids],
                |r| {
                    Ok((
                        r.subject(0)?,
                        u8::try_from(r.int(1)?).unwrap_or(u8::MAX),
                        r.int(2)?,
                    ))
                },
            )
            .await?;
            page.floors(&unknown, rows);
        }
        page.take(chunk);
    }
    tx.commit().await?;
    Ok(page.into_events())
}

pub(super) async fn stats(c: &Object) -> Result<Stats, StoreError> {
    let r = sql::query_opt(
        c,
        "SELECT (SELECT count(*) FROM subjects), (SELECT count(*) FROM events),
                (SELECT count(*) FROM ledger), (SELECT count(*) FROM purpose_floors)",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Database("stats returned no row".into()))?;
    Ok(Stats {
        subjects: r.int(0)? as u64,
        events: r.int(1)? as u64,
        ledger_records: r.int(2)? as u64,
        pending_floors: r.int(3)? as u64,
    })
}
