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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
#[utoipa::path(get, path = "/v1/me", tag = "my data",
    summary = "Everything held about the person",
    description = "The person's identifiers, consents with their receipts, volunteered fields, \
event counts with the newest events, insight reports they were counted in, and their access log. \
A read of personal data: written to the person's access log and to the operator's requests \
(`GET /v1/admin/requests`).",
    params(WhoQuery),
    responses((status = 200, description = "The person's data (the newest few events only)", body = MyData)))]
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
#[utoipa::path(get, path = "/v1/me/export", tag = "my data",
    summary = "Download everything held about the person",
    description = "The same as `GET /v1/me` with every event (up to 100000; `events.omitted` counts the \
rest), as a JSON file to keep (`my-data.json`). Recorded as an export request.",
    params(WhoQuery),
    responses((status = 200, description = "The person's data, every event included, as an attachment",
        body = MyData, content_type = "application/json",
        headers(("Content-Disposition" = String, description = "`attachment; filename=\"my-data.json\"`"),
            ("Cache-Control" = String, description = "`no-store`")))))]
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

/// Whom to erase: `userId` and/or `anonymousId`, or `email` alone.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"userId": "user-42"}))]
struct EraseBody {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    /// A server key may name the person by their email address alone (a mailing-list
    /// subscriber with no account).
    email: Option<String>,
}

/// What an erasure deleted, by kind.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasedDto {
    identifiers: u64,
    consents: u64,
    events: u64,
    insight_features: u64,
    declared_fields: u64,
    access_log: u64,
    volunteered_fields: u64,
}

/// The erasure's outcome: what was deleted, and the ledger's erasure record as a
/// signed receipt (the ledger keeps the pseudonym and nothing else).
#[derive(Serialize, ToSchema)]
pub struct EraseResponse {
    /// The erased person's pseudonym.
    subject: String,
    /// Always `true`.
    erased: bool,
    deleted: ErasedDto,
    receipt: crate::receipts::Receipt,
}

/// `POST /v1/me/erase`: the person erased, asked by the operator's backend (server
/// key) or by the person through it (subject token). A browser key cannot: the erasure
/// of an anonymous visitor goes through their own page, behind its confirmation step.
#[utoipa::path(post, path = "/v1/me/erase", tag = "my data",
    summary = "Erase the person",
    description = "Deletes everything held about the person (identifiers, events, fields, insight \
features, access log) and appends an erasure record to the consent ledger. A server key names \
anyone (by email address too); a subject token only its own user; a browser key may not. Recorded \
as an erasure request.",
    request_body = EraseBody,
    responses((status = 200, description = "What was deleted, with the erasure's signed receipt", body = EraseResponse)))]
pub async fn erase(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<EraseResponse>> {
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
    Ok(Json(EraseResponse {
        subject: subject.to_string(),
        erased: true,
        deleted: ErasedDto {
            identifiers: out.deleted.identities,
            consents: out.deleted.consent_states,
            events: out.deleted.events,
            insight_features: out.deleted.insight_features,
            declared_fields: out.deleted.insight_declared,
            access_log: out.deleted.access_log,
            volunteered_fields: out.deleted.volunteered_fields,
        },
        receipt: crate::receipts::build(&out.record, &st.settings.operator, &key),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"userId": "user-42", "ttlSeconds": 900}))]
struct LinkBody {
    /// The person's user id (1 to 512 characters): someone already known.
    user_id: String,
    /// How long the link stays valid, in seconds (default 900, at most 604800).
    ttl_seconds: Option<i64>,
}

/// A single-use sign-in link to the person's own pages.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectLink {
    /// The link's token.
    token: String,
    /// The link's path on this server: `/me/enter?t=<token>`.
    path: String,
    /// When the link stops working.
    expires_at: String,
}

/// `POST /v1/admin/subject-links`: a single-use link to the person's own pages, for
/// the operator's backend to send them (by email, or behind its own login).
#[utoipa::path(post, path = "/v1/admin/subject-links", tag = "my data",
    summary = "Mint a sign-in link to a person's own pages",
    description = "A single-use link to the person's pages (their data and choices), for the operator's \
backend to send them. Admin token.",
    request_body = LinkBody,
    responses((status = 200, description = "The link", body = SubjectLink)))]
pub async fn subject_link(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<SubjectLink>> {
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
    Ok(Json(SubjectLink {
        path: format!("/me/enter?t={token}"),
        token,
        expires_at: format_time(expires),
    }))
}

/// A page of the requests list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Requests after this id (the previous page's `next`); 0 for the first page.
    #[serde(default)]
    after: i64,
    /// At most this many (1 to 1000, default 100).
    limit: Option<usize>,
}

/// A person's request: access, export or erasure.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestDto {
    id: i64,
    /// The person's pseudonym.
    subject: String,
    #[schema(value_type = RequestKindDoc)]
    kind: &'static str,
    /// Through what it came: `page`, `api`, `cli`...
    channel: String,
    requested_at: String,
    /// When it was answered (`null` while open, or if it failed).
    completed_at: Option<String>,
    seconds_to_answer: Option<f64>,
    /// One month after the request: the deadline to answer (GDPR Art. 12(3)).
    due_by: String,
    answered_in_time: Option<bool>,
    /// `ok`, `pending`, or the stable error code it failed with.
    outcome: String,
}

/// The kind of a person's request (documentation only: `candor_store::RequestKind`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RequestKind)]
enum RequestKindDoc {
    Access,
    Export,
    Erasure,
}

/// A page of people's requests, oldest first.
#[derive(Serialize, ToSchema)]
pub struct RequestsResponse {
    requests: Vec<RequestDto>,
    /// The `after` of the next page (the last id here); `null` when this page is empty.
    next: Option<i64>,
}

/// How long an operator has to answer a person's request: one month (GDPR Art. 12(3);
/// 30 days, the shortest month-length reading). `dueBy` and `answeredInTime` in the
/// requests list are measured against it.
pub const ANSWER_WITHIN_MS: i64 = 30 * 24 * 3600 * 1000;

/// `GET /v1/admin/requests`: people's access, export and erasure requests, oldest
/// first, each with when it was answered and whether that was within the deadline.
#[utoipa::path(get, path = "/v1/admin/requests", tag = "my data",
    summary = "People's access, export and erasure requests",
    description = "Every request people made of their data, oldest first, with when it was answered \
and whether that was within a month. Admin token.",
    params(Page),
    responses((status = 200, description = "A page of requests", body = RequestsResponse)))]
pub async fn requests(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RequestsResponse>> {
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
    let requests = rows
        .into_iter()
        .map(|r| RequestDto {
            id: r.id,
            subject: r.subject.to_string(),
            kind: r.kind.as_str(),
            channel: r.channel,
            requested_at: format_time(r.requested_ms),
            completed_at: r.completed_ms.map(format_time),
            seconds_to_answer: r
                .completed_ms
                .map(|c| (c.0 - r.requested_ms.0) as f64 / 1000.0),
            due_by: format_time(UnixMillis(
                r.requested_ms.0.saturating_add(ANSWER_WITHIN_MS),
            )),
            answered_in_time: r
                .completed_ms
                .map(|c| c.0 - r.requested_ms.0 <= ANSWER_WITHIN_MS),
            outcome: r.outcome,
        })
        .collect();
    Ok(Json(RequestsResponse { requests, next }))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(me, export, erase, subject_link, requests))]
pub(crate) struct Api;
