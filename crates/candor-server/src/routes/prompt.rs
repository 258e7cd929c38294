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
use crate::prompt::{self, PromptConfig, RenderedDto, StatsReport, VariantDto, ACTIONS};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use candor_core::lang::Language;
use candor_core::prompt::assign;
use candor_core::VariantId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

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

#[utoipa::path(get, path = "/candor.js", tag = "prompt",
    summary = "The consent prompt script",
    description = "candor.js with its stylesheet, for publishers to embed from their pages.",
    responses((status = 200, description = "The script", body = String, content_type = "text/javascript",
        headers(
            ("Cache-Control" = String, description = "`public, max-age=300`"),
            ("Cross-Origin-Resource-Policy" = String, description = "`cross-origin`: publishers embed it from their own origin"),
        ))))]
pub async fn candor_js() -> Response {
    javascript(prompt::script())
}

#[utoipa::path(get, path = "/candor-lint.js", tag = "prompt",
    summary = "The prompt linter's measuring script",
    description = "Measures a variant rendered in a browser (sizes, colours, what is ticked and shown) \
for `POST /v1/admin/prompt/variants`.",
    responses((status = 200, description = "The script", body = String, content_type = "text/javascript",
        headers(
            ("Cache-Control" = String, description = "`public, max-age=300`"),
            ("Cross-Origin-Resource-Policy" = String, description = "`cross-origin`"),
        ))))]
pub async fn lint_js() -> Response {
    javascript(LINT_SCRIPT)
}

fn day_of(ms: i64) -> i32 {
    ms.div_euclid(86_400_000) as i32
}

/// Who is shown the prompt, and in which language.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PromptQuery {
    /// The page's language tag; one that cannot be parsed falls back to the catalog's,
    /// as does a missing text.
    lang: Option<String>,
    /// Only picks the variant (by hash); not stored.
    anonymous_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/prompt", tag = "prompt",
    summary = "What candor.js shows this visitor",
    description = "The variant of the running experiment this visitor sees, its wording in the page's \
language, every purpose with its notice (and the hash the ledger records for it), and the IAB settings.",
    params(PromptQuery),
    responses((status = 200, description = "The prompt's configuration", body = PromptConfig,
        headers(("Cache-Control" = String, description = "`no-store`")))))]
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
        Json(prompt::prompt_config(&st, variant, &lang)),
    )
        .into_response())
}

/// An impression (no `action`, no `purposes`) or a choice (an `action`, and what was
/// granted per purpose). No identifier is accepted: unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PromptEvent, example = json!({"writeKey": "YOUR_BROWSER_KEY", "variant": "standard", "event": "choice", "action": "accept_all", "purposes": {"analytics": true}}))]
struct EventBody {
    /// The source's write key, when it is not sent as Basic auth.
    write_key: Option<String>,
    /// The variant shown: `standard` or a saved variant's id.
    variant: String,
    #[schema(value_type = PromptEventKind)]
    event: String,
    /// Only with `choice`.
    #[schema(value_type = Option<PromptActionDoc>)]
    action: Option<String>,
    /// Purpose id → granted; only with `choice`.
    #[serde(default)]
    purposes: BTreeMap<String, bool>,
}

/// What a prompt event counts (documentation only: parsed as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum PromptEventKind {
    Impression,
    Choice,
}

/// How the person left the prompt (documentation only: parsed as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PromptAction)]
enum PromptActionDoc {
    AcceptAll,
    RejectAll,
    Choose,
    Close,
}

/// A counted prompt event.
#[derive(Serialize, ToSchema)]
pub struct PromptEventCounted {
    /// Always `true`.
    counted: bool,
}

#[utoipa::path(post, path = "/v1/prompt/events", tag = "prompt",
    summary = "Count a prompt impression or choice",
    description = "Adds one to the anonymous counts per day, variant and purpose; nothing identifies \
the visitor and nothing of the request is stored. candor.js posts it as `text/plain` (no CORS preflight); \
the body is JSON either way.",
    request_body(content(
        (EventBody = "application/json"),
        (EventBody = "text/plain"),
    )),
    responses(
        (status = 202, description = "Counted", body = PromptEventCounted),
        (status = 204, description = "Not counted: measuring is off (`[prompt] measure = false`)"),
    ))]
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
    Ok((
        StatusCode::ACCEPTED,
        Json(PromptEventCounted { counted: true }),
    )
        .into_response())
}

/// A variant to lint or save, with what `candor-lint.js` measured of it in a browser.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PromptVariantBody)]
struct LintBody {
    variant: VariantDto,
    /// Required to save; when linting, the declaration alone is judged without it.
    rendered: Option<RenderedDto>,
    /// Whether a saved variant joins the experiment at once (default `true`).
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

/// A variant to preview, and the language to show it in.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PromptPreviewBody)]
struct PreviewBody {
    variant: VariantDto,
    /// A language tag (default: the catalog's).
    lang: Option<String>,
}

#[utoipa::path(post, path = "/v1/admin/prompt/preview", tag = "admin",
    summary = "Preview an unsaved prompt variant",
    description = "What `GET /v1/prompt` would answer if this variant were shown, for `candor.preview()` \
to render and measure. Nothing is saved.",
    request_body = PreviewBody,
    responses((status = 200, description = "The prompt's configuration with this variant", body = PromptConfig)))]
pub async fn preview(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<PromptConfig>> {
    let b: PreviewBody = admin_json(&st, &headers, body, 64 * 1024).await?;
    let variant = b.variant.parse(&st.catalog)?;
    let lang = match b.lang.as_deref() {
        Some(l) => {
            Language::parse(l).map_err(|e| ApiError::new(Code::InvalidRequest, e.to_string()))?
        }
        None => st.catalog.language().clone(),
    };
    Ok(Json(prompt::prompt_config(&st, &variant, &lang)))
}

/// A variant the linter passed.
#[derive(Serialize, ToSchema)]
pub struct LintVerdict {
    /// Always `true`: an unfair variant is answered with `unfair_prompt`.
    fair: bool,
    /// Whether a measured rendering was judged too.
    rendered: bool,
}

#[utoipa::path(post, path = "/v1/admin/prompt/lint", tag = "admin",
    summary = "Lint a prompt variant",
    description = "The linter's verdict without saving: `unfair_prompt` (with every rule broken in \
`violations`) for a dark pattern, in the declaration or in the measured rendering.",
    request_body = LintBody,
    responses((status = 200, description = "The variant is fair", body = LintVerdict)))]
pub async fn lint(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<LintVerdict>> {
    let b: LintBody = admin_json(&st, &headers, body, 64 * 1024).await?;
    let variant = b.variant.parse(&st.catalog)?;
    let rendered = b.rendered.map(RenderedDto::into_core).transpose()?;
    prompt::lint(
        &st.settings.prompt,
        &st.catalog,
        &variant,
        rendered.as_ref(),
    )?;
    Ok(Json(LintVerdict {
        fair: true,
        rendered: rendered.is_some(),
    }))
}

/// A saved variant and whether it is in the experiment.
#[derive(Serialize, ToSchema)]
pub struct SavedVariant {
    variant: VariantDto,
    active: bool,
}

#[utoipa::path(post, path = "/v1/admin/prompt/variants", tag = "admin",
    summary = "Save a prompt variant",
    description = "Saves (or replaces, by id) a variant the linter passes, judged on its declaration and \
on what `candor-lint.js` measured in a browser (`rendered`, required).",
    request_body = LintBody,
    responses((status = 201, description = "Saved", body = SavedVariant)))]
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
        Json(SavedVariant {
            variant: VariantDto::of(&variant),
            active: b.active,
        }),
    )
        .into_response())
}

/// A saved variant, whether it is in the experiment, and when it last changed.
#[derive(Serialize, ToSchema)]
pub struct ListedVariant {
    variant: VariantDto,
    active: bool,
    updated: String,
}

/// The saved variants.
#[derive(Serialize, ToSchema)]
pub struct SavedVariants {
    variants: Vec<ListedVariant>,
}

#[utoipa::path(get, path = "/v1/admin/prompt/variants", tag = "admin",
    summary = "List the saved prompt variants",
    description = "Without an active saved variant, visitors see the built-in `standard` one.",
    responses((status = 200, description = "Every saved variant", body = SavedVariants)))]
pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<SavedVariants>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    st.prompt.invalidate();
    let saved = st.prompt.saved(&st).await?;
    let variants = saved
        .iter()
        .map(|s| ListedVariant {
            variant: VariantDto::of(&s.variant),
            active: s.active,
            updated: crate::segment::format_time(s.updated_ms),
        })
        .collect();
    Ok(Json(SavedVariants { variants }))
}

/// Start or stop showing a saved variant, or change its share.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PromptVariantChange, example = json!({"active": false}))]
struct PatchBody {
    active: Option<bool>,
    /// Its share of the experiment among the active variants.
    #[schema(maximum = 1000000)]
    weight: Option<u32>,
}

#[utoipa::path(patch, path = "/v1/admin/prompt/variants/{id}", tag = "admin",
    summary = "Start, stop or reweight a saved prompt variant",
    description = "Neither changes what the variant looks like, so it is not linted again.",
    params(("id" = String, Path, description = "The variant's id")),
    request_body = PatchBody,
    responses((status = 200, description = "The variant after the change", body = SavedVariant)))]
pub async fn patch(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Json<SavedVariant>> {
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
    Ok(Json(SavedVariant {
        variant: VariantDto::of(&s.variant),
        active: s.active,
    }))
}

/// The period of the statistics: at most 367 days, by default the 30 days up to today.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// The first day (`2026-12-01`, UTC), default 29 days before `to`.
    #[param(format = Date)]
    from: Option<String>,
    /// The last day, inclusive, default today.
    #[param(format = Date)]
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

#[utoipa::path(get, path = "/v1/admin/prompt/stats", tag = "admin",
    summary = "Prompt opt-in statistics",
    description = "Opt-in per variant, purpose and day with 95% intervals, and each variant compared with \
the first (Bonferroni-corrected). This node's pending counts are written first.",
    params(StatsQuery),
    responses((status = 200, description = "The statistics", body = StatsReport)))]
pub async fn stats(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<StatsReport>> {
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
#[openapi(paths(
    candor_js, lint_js, config, event, lint, preview, save, list, patch, stats
))]
pub(crate) struct Api;
