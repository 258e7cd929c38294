//! The person's own side on PostgreSQL (issue 13): the access log, people's requests
//! and spent sign-in links, in small transactions beside the writer. A link's nonce is
//! spent by a primary key every node shares, so a link works once across all nodes.

use super::{read, sql};
use crate::rows::{self, Col};
use crate::types::{Access, RequestKind, RequestRecord};
use crate::{statements as q, StoreError};
use candor_core::{SubjectId, UnixMillis};
use deadpool_postgres::Object;

pub(super) async fn record_access(c: &Object, a: &Access) -> Result<(), StoreError> {
    let id = &a.subject.as_bytes()[..];
    sql::execute(
        c,
        q::INSERT_ACCESS,
        &[&id, &a.time_ms.0, &a.accessor, &a.purpose, &a.why],
    )
    .await?;
    Ok(())
}

pub(super) async fn access_log(
    c: &Object,
    subject: SubjectId,
    limit: usize,
) -> Result<Vec<Access>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let id = &subject.as_bytes()[..];
    read::all(c, q::ACCESS_LOG, &[&id, &limit], rows::access).await
}

pub(super) async fn open_request(
    c: &Object,
    subject: SubjectId,
    kind: RequestKind,
    channel: &str,
    at: UnixMillis,
) -> Result<i64, StoreError> {
    let id = &subject.as_bytes()[..];
    let row = sql::query_opt(c, q::OPEN_REQUEST, &[&id, &kind.as_str(), &channel, &at.0])
        .await?
        .ok_or_else(|| StoreError::Database("request insert returned no id".into()))?;
    row.int(0)
}

pub(super) async fn close_request(
    c: &Object,
    id: i64,
    at: UnixMillis,
    outcome: &str,
) -> Result<(), StoreError> {
    sql::execute(c, q::CLOSE_REQUEST, &[&at.0, &outcome, &id]).await?;
    Ok(())
}

pub(super) async fn requests(
    c: &Object,
    after: i64,
    limit: usize,
) -> Result<Vec<RequestRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    read::all(c, q::REQUESTS, &[&after, &limit], rows::request).await
}

/// Spends a link's nonce: `true` the first time on any node, `false` once spent.
pub(super) async fn spend_link(
    c: &Object,
    nonce: &[u8; 16],
    expires: UnixMillis,
    now: UnixMillis,
) -> Result<bool, StoreError> {
    sql::execute(c, q::FORGET_LINKS, &[&now.0]).await?;
    let n = sql::execute(c, q::SPEND_LINK, &[&&nonce[..], &expires.0]).await?;
    Ok(n == 1)
}
