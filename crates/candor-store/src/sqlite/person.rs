//! The person's own side on SQLite (issue 13): the access log, people's requests and
//! spent sign-in links. Small transactions of their own beside the writer (like the
//! admin audit log): they are rare, and none of them touches consent or events.

use super::read;
use crate::rows;
use crate::types::{Access, RequestKind, RequestRecord};
use crate::{statements as q, StoreError};
use candor_core::{SubjectId, UnixMillis};
use rusqlite::{params, Connection, TransactionBehavior};

pub(super) fn record_access(conn: &mut Connection, a: &Access) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        q::INSERT_ACCESS,
        params![
            &a.subject.as_bytes()[..],
            a.time_ms.0,
            a.accessor,
            a.purpose,
            a.why
        ],
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) fn access_log(
    conn: &Connection,
    subject: SubjectId,
    limit: usize,
) -> Result<Vec<Access>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    read::all(
        conn,
        q::ACCESS_LOG,
        params![&subject.as_bytes()[..], limit],
        |r| rows::access(r),
    )
}

pub(super) fn open_request(
    conn: &mut Connection,
    subject: SubjectId,
    kind: RequestKind,
    channel: &str,
    at: UnixMillis,
) -> Result<i64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = tx.query_row(
        q::OPEN_REQUEST,
        params![&subject.as_bytes()[..], kind.as_str(), channel, at.0],
        |r| r.get(0),
    )?;
    tx.commit()?;
    Ok(id)
}

pub(super) fn close_request(
    conn: &mut Connection,
    id: i64,
    at: UnixMillis,
    outcome: &str,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(q::CLOSE_REQUEST, params![at.0, outcome, id])?;
    tx.commit()?;
    Ok(())
}

pub(super) fn requests(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<RequestRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    read::all(conn, q::REQUESTS, params![after, limit], |r| {
        rows::request(r)
    })
}

/// Spends a link's nonce: `true` the first time, `false` once spent. Nonces past
/// their expiry are forgotten in the same transaction (a link past it is refused
/// before it gets here, so forgetting them cannot let one be used twice).
pub(super) fn spend_link(
    conn: &mut Connection,
    nonce: &[u8; 16],
    expires: UnixMillis,
    now: UnixMillis,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(q::FORGET_LINKS, params![now.0])?;
    let n = tx.execute(q::SPEND_LINK, params![&nonce[..], expires.0])?;
    tx.commit()?;
    Ok(n == 1)
}
