//! Segment-compatible ingestion: `POST /v1/batch` and `/v1/{identify,track,page,screen,
//! group,alias}`. The HTTP source of the ingestion pipeline: authenticate, bound the
//! body, find the messages, hand them to `pipeline::ingest` (validate all, gate each,
//! seal and store what some purpose allows) and answer with its report.

use crate::auth;
use crate::body::{self, read_text};
use crate::config::SourceSpec;
use crate::error::{ApiError, ApiResult, Code};
use crate::pipeline;
use crate::pipeline::gate::Credential;
use crate::segment::{self, MAX_BATCH_BYTES, MAX_EVENT_BYTES};
use crate::state::AppState;
use crate::telemetry::DropReason;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use candor_core::event::EventKind;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
    #[serde(rename = "sentAt")]
    sent_at: Option<String>,
}

#[derive(Serialize)]
pub struct ItemResult {
    index: usize,
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    status: &'static str,
    reason: &'static str,
}

#[derive(Serialize)]
pub struct IngestResponse {
    success: bool,
    pub accepted: usize,
    pub dropped: usize,
    duplicates: usize,
    /// Only the messages that were not stored, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    results: Vec<ItemResult>,
}

pub async fn batch(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<IngestResponse>> {
    let header_source = auth::header_source(&st.sources, &headers)?;
    let text = read_text(&headers, body, MAX_BATCH_BYTES, Code::BatchTooLarge).await?;
    let parsed: BatchBody = body::parse_json(&text)?;
    let source = match header_source {
        Some(s) => s,
        None => auth::source(&st.sources, None, parsed.write_key.as_deref())?,
    };
    let credential = credential(&st, &headers, source)?;
    let batch_sent_at = parsed.sent_at.as_deref().and_then(segment::parse_time);
    let raws: Vec<&str> = parsed.batch.iter().map(|r| r.get()).collect();
    let report = pipeline::ingest::run(
        &st,
        pipeline::ingest::Request {
            source: source.id.as_str(),
            credential,
            raws: &raws,
            implied: None,
            sent_at: batch_sent_at,
            gpc: super::sec_gpc(&headers),
        },
    )
    .await?;
    Ok(Json(report.into()))
}

macro_rules! single {
    ($name:ident, $kind:expr) => {
        pub async fn $name(
            State(st): State<AppState>,
            headers: HeaderMap,
            body: Body,
        ) -> ApiResult<Json<IngestResponse>> {
            single(st, headers, body, $kind).await
        }
    };
}

single!(identify, EventKind::Identify);
single!(track, EventKind::Track);
single!(page, EventKind::Page);
single!(screen, EventKind::Screen);
single!(group, EventKind::Group);
single!(alias, EventKind::Alias);

async fn single(
    st: AppState,
    headers: HeaderMap,
    body: Body,
    kind: EventKind,
) -> ApiResult<Json<IngestResponse>> {
    let header_source = auth::header_source(&st.sources, &headers)?;
    let text = read_text(&headers, body, MAX_EVENT_BYTES, Code::EventTooLarge).await?;
    // Check the JSON (and find a body write key) before authenticating, so that a
    // malformed body gets invalid_json rather than missing_write_key.
    if !text.trim_start().starts_with('{') {
        body::parse_json::<serde::de::IgnoredAny>(&text)?;
        return Err(ApiError::new(
            Code::InvalidRequest,
            "the body must be a JSON object (one message)",
        ));
    }
    let source = match header_source {
        Some(s) => s,
        None => {
            let fields: HashMap<std::borrow::Cow<'_, str>, &RawValue> = body::parse_json(&text)?;
            let body_key: Option<String> = fields
                .get("writeKey")
                .and_then(|r| serde_json::from_str(r.get()).ok());
            auth::source(&st.sources, None, body_key.as_deref())?
        }
    };
    let credential = credential(&st, &headers, source)?;
    let report = pipeline::ingest::run(
        &st,
        pipeline::ingest::Request {
            source: source.id.as_str(),
            credential,
            raws: &[text.as_str()],
            implied: Some(kind),
            sent_at: None,
            gpc: super::sec_gpc(&headers),
        },
    )
    .await?;
    Ok(Json(report.into()))
}

/// The header by which a page hands candor.js's subject token to a browser source's
/// request, proving the user id its events name (issue 11).
pub const SUBJECT_TOKEN_HEADER: &str = "candor-subject-token";

/// What the request's credential proves: a server source anything; a browser source
/// its anonymous ids, plus the user of a valid subject token sent beside the write key.
fn credential(st: &AppState, headers: &HeaderMap, source: &SourceSpec) -> ApiResult<Credential> {
    if !auth::is_browser(source) {
        return Ok(Credential::Server);
    }
    let user = match headers.get(SUBJECT_TOKEN_HEADER) {
        None => None,
        Some(v) => {
            let token = v.to_str().map_err(|_| {
                ApiError::new(Code::InvalidSubjectToken, "subject token is malformed")
            })?;
            Some(st.subject_tokens.verify(token.trim(), st.now_ms() / 1000)?)
        }
    };
    Ok(Credential::Browser { user })
}

impl From<pipeline::ingest::Report> for IngestResponse {
    fn from(r: pipeline::ingest::Report) -> Self {
        let mut resp = IngestResponse {
            success: true,
            accepted: r.accepted,
            dropped: 0,
            duplicates: 0,
            results: Vec::with_capacity(r.dropped.len()),
        };
        for d in r.dropped {
            let duplicate = d.reason == DropReason::Duplicate;
            if duplicate {
                resp.duplicates += 1;
            } else {
                resp.dropped += 1;
            }
            resp.results.push(ItemResult {
                index: d.index,
                message_id: d.message_id,
                status: if duplicate { "duplicate" } else { "dropped" },
                reason: d.reason.as_str(),
            });
        }
        resp
    }
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Api;
