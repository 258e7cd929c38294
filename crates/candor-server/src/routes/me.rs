//! The person's data through the API (issue 13): `GET /v1/me` (everything held),
//! `GET /v1/me/export` (the same, every event, as a download), and the operator's
//! side: `POST /v1/admin/subject-links` (a single-use sign-in link for the person's own
//! pages) and `GET /v1/admin/requests` (what people asked and when it was answered).
//!
//! Who may ask is the consent reads' rule (`consent::who`): a server key for any user
//! or anonymous id, a subject token for its own user, a browser key for its own
//! anonymous id while that id is linked to nothing else. Every answer is a read of
//! personal data, so each is written to the person's access log.

use super::consent::{actor, who, WhoQuery};
use crate::auth;
use crate::body::{parse_json, read_text};
use crate::error::{ApiError, ApiResult, Code};
use crate::mydata::{self, Depth, MyData};
use crate::person;
use crate::pipeline::consent::Actor;
use crate::segment::format_time;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use candor_core::crypto::IdKind;
use candor_core::{SubjectId, UnixMillis};
use candor_store::RequestKind;
use serde::Deserialize;
use serde_json::{json, Value};

type WhoQ = Result<Query<WhoQuery>, axum::extract::rejection::QueryRejection>;

/// The subject the request may read, and how its credential is named in the access log.
fn subject_of(st: &AppState, headers: &HeaderMap, q: WhoQ) -> ApiResult<(SubjectId, String)> {
    let accessor = match actor(st, headers)? {
        Actor::Server(s) => format!("api (server key {s})"),
        Actor::Browser(s) => format!("api (browser key {s})"),
        Actor::User(_) => "api (subject token)".to_owned(),
        Actor::Email(_) => "api (email link)".to_owned(),
    };
    let subject = who(st, headers, q)?.ok_or_else(|| {
        ApiError::new(
            Code::SubjectNotFound,
            "nothing is held for these identifiers",
        )
    })?;
    Ok((subject, accessor))
}

/// `GET /v1/me`
pub async fn me(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: WhoQ,
) -> ApiResult<Json<MyData>> {
    let (subject, accessor) = subject_of(&st, &headers, q)?;
    let data = mydata::gather(&st, subject, Depth::Summary).await?;
    mydata::record(
        &st,
        subject,
        RequestKind::Access,
        "api",
        &accessor,
        "you (or the operator for you) looked at your data",
    )
    .await?;
    Ok(Json(data))
}

/// `GET /v1/me/export`: every event included, as a file to keep.
pub async fn export(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: WhoQ,
) -> ApiResult<Response> {
    let (subject, accessor) = subject_of(&st, &headers, q)?;
    download(&st, subject, "api", &accessor).await
}

/// The export as a JSON download, recorded as an export request and a read.
pub async fn download(
    st: &AppState,
    subject: SubjectId,
    channel: &str,
    accessor: &str,
) -> ApiResult<Response> {
    let data = mydata::gather(st, subject, Depth::Export).await?;
    let body = serde_json::to_vec_pretty(&data)
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    mydata::record(
        st,
        subject,
        RequestKind::Export,
        channel,
        accessor,
        "you downloaded a copy of your data",
    )
    .await?;
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"my-data.json\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EraseBody {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    /// A server key may name the person by their email address alone (a mailing-list
    /// subscriber with no account).
    email: Option<String>,
}

/// `POST /v1/me/erase`: the person erased, asked by the operator's backend (server
/// key) or by the person through it (subject token). A browser key cannot: the erasure
/// of an anonymous visitor goes through their own page, behind its confirmation step.
pub async fn erase(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let actor = actor(&st, &headers)?;
    if matches!(actor, Actor::Browser(_)) {
        return Err(ApiError::new(
            Code::Forbidden,
            "erasure through the API needs a server write key or a subject token",
        ));
    }
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: EraseBody = parse_json(&text)?;
    let not_found = || {
        ApiError::new(
            Code::SubjectNotFound,
            "nothing is held for these identifiers",
        )
    };
    let subject = match (&b.email, &b.user_id, &b.anonymous_id) {
        (Some(e), None, None) => {
            if !matches!(actor, Actor::Server(_)) {
                return Err(ApiError::new(
                    Code::Forbidden,
                    "only a server key may name a person by email address",
                ));
            }
            let address = crate::routes::email::address(e)?;
            st.store
                .resolve(&crate::email::hash_of(&st.master, &address))
                .ok_or_else(not_found)?
        }
        (Some(_), _, _) => {
            return Err(ApiError::new(
                Code::InvalidRequest,
                "name the person by email, or by userId/anonymousId, not both",
            ))
        }
        (None, _, _) => {
            let named = crate::pipeline::consent::identities(
                &st.master,
                &actor,
                b.user_id.as_deref(),
                b.anonymous_id.as_deref(),
            )?;
            crate::pipeline::consent::resolve(&st, &named)?.ok_or_else(not_found)?
        }
    };
    let out = mydata::erase(
        &st,
        subject,
        actor.recorded(),
        actor.default_channel(),
        "api",
    )
    .await?;
    let key = st.signing_key_for(out.record.entry.seq);
    Ok(Json(json!({
        "subject": subject.to_string(),
        "erased": true,
        "deleted": {
            "identifiers": out.deleted.identities,
            "consents": out.deleted.consent_states,
            "events": out.deleted.events,
            "insightFeatures": out.deleted.insight_features,
            "declaredFields": out.deleted.insight_declared,
            "accessLog": out.deleted.access_log,
            "volunteeredFields": out.deleted.volunteered_fields,
        },
        "receipt": crate::receipts::build(&out.record, &st.settings.operator, &key),
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LinkBody {
    user_id: String,
    ttl_seconds: Option<i64>,
}

/// `POST /v1/admin/subject-links`: a single-use link to the person's own pages, for
/// the operator's backend to send them (by email, or behind its own login).
pub async fn subject_link(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: LinkBody = parse_json(&text)?;
    let ttl = b.ttl_seconds.unwrap_or(person::DEFAULT_LINK_SECONDS);
    if b.user_id.is_empty()
        || b.user_id.chars().count() > 512
        || !(1..=person::MAX_LINK_SECONDS).contains(&ttl)
    {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!(
                "userId must be 1 to 512 characters and ttlSeconds 1 to {}",
                person::MAX_LINK_SECONDS
            ),
        ));
    }
    let hash = st.master.lookup_hash(IdKind::UserId, &b.user_id);
    let subject = st
        .store
        .resolve(&hash)
        .ok_or_else(|| ApiError::new(Code::SubjectNotFound, "no one with this userId is known"))?;
    let expires = UnixMillis(st.now_ms() + ttl * 1000);
    let token = st.person_keys.mint_link(subject, expires);
    Ok(Json(json!({
        "token": token,
        "path": format!("/me/enter?t={token}"),
        "expiresAt": format_time(expires),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    after: i64,
    limit: Option<usize>,
}

/// How long an operator has to answer a person's request: one month (GDPR Art. 12(3);
/// 30 days, the shortest month-length reading). `dueBy` and `answeredInTime` in the
/// requests list are measured against it.
pub const ANSWER_WITHIN_MS: i64 = 30 * 24 * 3600 * 1000;

/// `GET /v1/admin/requests`: people's access, export and erasure requests, oldest
/// first, each with when it was answered and whether that was within the deadline.
pub async fn requests(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let Query(q) = q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "limit must be 1 to 1000",
        ));
    }
    let rows = st.store.requests(q.after, limit).await?;
    let next = rows.last().map(|r| r.id);
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "subject": r.subject.to_string(),
                "kind": r.kind.as_str(),
                "channel": r.channel,
                "requestedAt": format_time(r.requested_ms),
                "completedAt": r.completed_ms.map(format_time),
                "secondsToAnswer": r.completed_ms.map(|c| (c.0 - r.requested_ms.0) as f64 / 1000.0),
                "dueBy": format_time(UnixMillis(r.requested_ms.0.saturating_add(ANSWER_WITHIN_MS))),
                "answeredInTime": r.completed_ms.map(|c| c.0 - r.requested_ms.0 <= ANSWER_WITHIN_MS),
                "outcome": r.outcome,
            })
        })
        .collect();
    Ok(Json(json!({"requests": items, "next": next})))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Api;
