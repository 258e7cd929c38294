//! The consent prompt's routes (issue 12).
//!
//! | route | role |
//! |---|---|
//! | `GET /candor.js`, `GET /candor-lint.js`, `GET /v1/prompt` | anyone (a visitor's browser) |
//! | `POST /v1/prompt/events` | a source write key (in the body, as `sendBeacon`-style posts carry it, or Basic auth) |
//! | `/v1/admin/prompt/*` (lint, preview, variants, stats) | admin token |

use crate::auth;
use crate::body::{parse_json, read_text};
use crate::error::{ApiError, ApiResult, Code};
use crate::prompt::{self, RenderedDto, VariantDto, ACTIONS};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use candor_core::lang::Language;
use candor_core::prompt::assign;
use candor_core::VariantId;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const LINT_SCRIPT: &str = include_str!("../../../../web/candor-lint.js");

fn javascript(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // Publishers embed it from their own origin.
            (
                header::HeaderName::from_static("cross-origin-resource-policy"),
                "cross-origin",
            ),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

pub async fn candor_js() -> Response {
    javascript(prompt::script())
}

pub async fn lint_js() -> Response {
    javascript(LINT_SCRIPT)
}

fn day_of(ms: i64) -> i32 {
    ms.div_euclid(86_400_000) as i32
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptQuery {
    lang: Option<String>,
    anonymous_id: Option<String>,
}

/// `GET /v1/prompt`: what candor.js shows this visitor. `lang` is the page's language
/// (a tag it cannot parse falls back to the catalog's, as does a missing text);
/// `anonymousId` only picks the variant, by hash, and is not stored.
pub async fn config(
    State(st): State<AppState>,
    q: Result<Query<PromptQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let lang = q
        .lang
        .as_deref()
        .and_then(|l| Language::parse(l).ok())
        .unwrap_or_else(|| st.catalog.language().clone());
    let variants = st.prompt.active(&st).await?;
    let unit = q.anonymous_id.unwrap_or_default();
    let variant = assign(&variants, &unit)
        .ok_or_else(|| ApiError::new(Code::Internal, "no prompt variant"))?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(prompt::config(&st, variant, &lang)),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventBody {
    write_key: Option<String>,
    variant: String,
    event: String,
    action: Option<String>,
    #[serde(default)]
    purposes: BTreeMap<String, bool>,
}

/// `POST /v1/prompt/events`: an impression or an outcome, counted per day, variant and
/// purpose. No identifier is accepted (unknown fields are refused), none is stored.
pub async fn event(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let header_source = auth::header_source(&st.sources, &headers)?;
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: EventBody = parse_json(&text)?;
    if header_source.is_none() {
        auth::source(&st.sources, None, b.write_key.as_deref())?;
    }
    if !st.settings.prompt.measure {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // Only variants that exist, so counts cannot grow without bound.
    let variant = VariantId::parse(&b.variant)
        .map_err(|e| ApiError::new(Code::InvalidRequest, e.to_string()))?;
    let known = variant.as_str() == "standard"
        || st
            .prompt
            .saved(&st)
            .await?
            .iter()
            .any(|s| s.variant.id == variant);
    if !known {
        return Err(ApiError::new(Code::NotFound, "no such prompt variant"));
    }
    let day = day_of(st.now_ms());
    match (b.event.as_str(), b.action.as_deref()) {
        ("impression", None) if b.purposes.is_empty() => {
            st.prompt.count(day, &variant, None, "impression");
        }
        ("choice", Some(action)) => {
            let metric = ACTIONS.iter().find(|a| **a == action).ok_or_else(|| {
                ApiError::new(
                    Code::InvalidRequest,
                    format!("action must be one of {ACTIONS:?}"),
                )
            })?;
            let mut decided = Vec::new();
            for (name, granted) in &b.purposes {
                let p = super::known_purpose(&st.catalog, name)?.id.clone();
                decided.push((p, *granted));
            }
            st.prompt.count(day, &variant, None, metric);
            for (p, granted) in decided {
                st.prompt.count(
                    day,
                    &variant,
                    Some(&p),
                    if granted { "granted" } else { "refused" },
                );
            }
        }
        _ => {
            return Err(ApiError::new(
                Code::InvalidRequest,
                "event is \"impression\" (no action, no purposes) or \"choice\" with an action",
            ))
        }
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"counted": true}))).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LintBody {
    variant: VariantDto,
    rendered: Option<RenderedDto>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// An admin request's JSON body, once the admin token is checked.
async fn admin_json<T: serde::de::DeserializeOwned>(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> ApiResult<T> {
    auth::admin(st.settings.admin_token.as_ref(), headers)?;
    let text = read_text(headers, body, limit, Code::InvalidRequest).await?;
    parse_json(&text)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PreviewBody {
    variant: VariantDto,
    lang: Option<String>,
}

/// `POST /v1/admin/prompt/preview`: what `GET /v1/prompt` would answer if this
/// (unsaved) variant were shown, for `candor.preview()` to render and measure.
pub async fn preview(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let b: PreviewBody = admin_json(&st, &headers, body, 64 * 1024).await?;
    let variant = b.variant.parse(&st.catalog)?;
    let lang = match b.lang.as_deref() {
        Some(l) => {
            Language::parse(l).map_err(|e| ApiError::new(Code::InvalidRequest, e.to_string()))?
        }
        None => st.catalog.language().clone(),
    };
    Ok(Json(prompt::config(&st, &variant, &lang)))
}

/// `POST /v1/admin/prompt/lint`: the linter's verdict without saving.
pub async fn lint(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let b: LintBody = admin_json(&st, &headers, body, 64 * 1024).await?;
    let variant = b.variant.parse(&st.catalog)?;
    let rendered = b.rendered.map(RenderedDto::into_core).transpose()?;
    prompt::lint(
        &st.settings.prompt,
        &st.catalog,
        &variant,
        rendered.as_ref(),
    )?;
    Ok(Json(json!({"fair": true, "rendered": rendered.is_some()})))
}

/// `POST /v1/admin/prompt/variants`: saves a variant that the linter passes, judged on
/// its declaration and on what `candor-lint.js` measured in a browser (required).
pub async fn save(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let b: LintBody = admin_json(&st, &headers, body, 64 * 1024).await?;
    let variant = b.variant.parse(&st.catalog)?;
    let rendered = b
        .rendered
        .ok_or_else(|| {
            ApiError::new(
                Code::InvalidRequest,
                "rendered is required: render the variant and measure it with candor-lint.js (the dashboard does this)",
            )
        })?
        .into_core()?;
    prompt::lint(&st.settings.prompt, &st.catalog, &variant, Some(&rendered))?;
    st.store
        .save_prompt_variant(prompt::stored(&variant, b.active, st.now_ms()))
        .await?;
    st.prompt.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(json!({"variant": VariantDto::of(&variant), "active": b.active})),
    )
        .into_response())
}

/// `GET /v1/admin/prompt/variants`
pub async fn list(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    st.prompt.invalidate();
    let saved = st.prompt.saved(&st).await?;
    let list: Vec<Value> = saved
        .iter()
        .map(|s| json!({"variant": VariantDto::of(&s.variant), "active": s.active, "updated": crate::segment::format_time(s.updated_ms)}))
        .collect();
    Ok(Json(json!({"variants": list})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchBody {
    active: Option<bool>,
    weight: Option<u32>,
}

/// `PATCH /v1/admin/prompt/variants/{id}`: start or stop showing a saved variant, or
/// change its share. Neither changes what it looks like, so it is not linted again.
pub async fn patch(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let b: PatchBody = admin_json(&st, &headers, body, 4096).await?;
    if b.weight.is_some_and(|w| w > 1_000_000) {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "weight: at most 1000000",
        ));
    }
    st.prompt.invalidate();
    let saved = st.prompt.saved(&st).await?;
    let mut s = saved
        .iter()
        .find(|s| s.variant.id.as_str() == id)
        .cloned()
        .ok_or_else(|| ApiError::new(Code::NotFound, "no such prompt variant"))?;
    if let Some(a) = b.active {
        s.active = a;
    }
    if let Some(w) = b.weight {
        s.variant.weight = w;
    }
    st.store
        .save_prompt_variant(prompt::stored(&s.variant, s.active, st.now_ms()))
        .await?;
    st.prompt.invalidate();
    Ok(Json(
        json!({"variant": VariantDto::of(&s.variant), "active": s.active}),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_day(s: &str) -> ApiResult<i32> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt).map_err(|_| {
        ApiError::new(
            Code::InvalidRequest,
            format!("{s:?} is not a date like 2026-12-01"),
        )
    })?;
    Ok(d.to_julian_day() - time::macros::date!(1970 - 01 - 01).to_julian_day())
}

/// The period a stats request names: `from`..=`to`, by default the last 30 days.
pub fn period(st: &AppState, from: Option<&str>, to: Option<&str>) -> ApiResult<(i32, i32)> {
    let today = day_of(st.now_ms());
    let to = to.map(parse_day).transpose()?.unwrap_or(today);
    let from = from.map(parse_day).transpose()?.unwrap_or(to - 29);
    if from > to || to - from > 366 {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "from must be before to, at most 366 days apart",
        ));
    }
    Ok((from, to))
}

/// `GET /v1/admin/prompt/stats?from=&to=`: opt-in per variant, purpose and day with 95%
/// intervals, and the variants compared. This node's pending counts are written first.
pub async fn stats(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<prompt::StatsReport>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let Query(q) = q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let (from, to) = period(&st, q.from.as_deref(), q.to.as_deref())?;
    Ok(Json(report_for(&st, from, to).await?))
}

pub async fn report_for(st: &AppState, from: i32, to: i32) -> ApiResult<prompt::StatsReport> {
    st.prompt.flush(st.store.as_ref()).await?;
    let counts = st.store.prompt_counts(from, to).await?;
    Ok(prompt::report(&st.catalog, &counts, from, to))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Api;
