//! Endpoints about the service itself: health, metrics, the GPC declaration, the
//! OpenAPI document, the receipt-signing public key and the purpose catalog.

use crate::auth;
use crate::error::{ApiError, ApiResult, Code};
use crate::ledger::CheckpointJson;
use crate::receipts::KeyRingJson;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The service is up and its store answers.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "meta",
    summary = "Health",
    description = "Whether the service and its store answer (`503 unavailable` when the store does not).",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz(State(st): State<AppState>) -> Response {
    match st.store.ledger_head().await {
        Ok(_) => (StatusCode::OK, Json(Health { status: "ok" })).into_response(),
        Err(_) => ApiError::new(Code::Unavailable, "the store is not answering").into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "meta",
    summary = "Metrics",
    description = "The service's metrics in the Prometheus text format (version 0.0.4): requests, events \\
accepted and dropped by reason, consent changes, errors by code... Admin token.",
    responses((status = 200, description = "Prometheus text", body = String, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let body = crate::telemetry::prometheus().render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// The Global Privacy Control declaration.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpcDeclaration {
    /// Always `true`: the service honours GPC.
    gpc: bool,
    /// When the declaration last changed (a date).
    last_update: &'static str,
}

/// `/.well-known/gpc.json`: we honour Global Privacy Control.
#[utoipa::path(get, path = "/.well-known/gpc.json", tag = "meta",
    summary = "The Global Privacy Control declaration",
    description = "Declares that the service honours GPC: `Sec-GPC: 1` refuses every purpose that is \\
a sale or sharing.",
    responses((status = 200, description = "The declaration", body = GpcDeclaration)))]
pub async fn gpc_json() -> Json<GpcDeclaration> {
    Json(GpcDeclaration {
        gpc: true,
        last_update: "2026-11-29",
    })
}

/// `/docs`: the API reference, from the same document (`crate::docs`).
#[utoipa::path(get, path = "/docs", tag = "meta",
    summary = "This document as a page",
    description = "The API reference for people, rendered on the server from the same generated document.",
    responses((status = 200, description = "The reference", content_type = "text/html", body = String)))]
pub async fn docs() -> Response {
    static VIEW: std::sync::OnceLock<minijinja::Value> = std::sync::OnceLock::new();
    let view = VIEW.get_or_init(|| {
        let doc: serde_json::Value =
            serde_json::from_str(crate::openapi::json()).unwrap_or_default();
        minijinja::Value::from_serialize(crate::docs::view(&doc))
    });
    crate::pages::render(StatusCode::OK, "docs.html", view.clone(), false, vec![])
}

#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    summary = "This document",
    description = "The OpenAPI 3.1 document of this API, generated from the code.",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json")))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::json(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/receipts/public-key", tag = "meta",
    summary = "The receipt-signing keys",
    description = "The Ed25519 keys that sign consent receipts and ledger checkpoints: the current one, \\
and every key the ledger has used, each certified by its predecessor. Anyone can verify a receipt \\
with them (`candor receipt verify`).",
    responses((status = 200, description = "The key ring", body = KeyRingJson)))]
pub async fn receipt_key(State(st): State<AppState>) -> Json<KeyRingJson> {
    Json(crate::receipts::ring_json(&st.keys))
}

/// A notice: its version, its text and the SHA-256 the ledger records.
#[derive(Serialize, ToSchema)]
pub struct NoticeDto {
    version: u32,
    text: String,
    /// SHA-256 of `text`, hex.
    sha256: String,
}

/// A purpose's title and notice in another language.
#[derive(Serialize, ToSchema)]
pub struct TranslationDto {
    title: String,
    notice: NoticeDto,
}

/// A purpose of the operator's catalog.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurposeDto {
    id: String,
    title: String,
    /// The notice in the catalog's language (`noticeLanguage`).
    notice: NoticeDto,
    /// The data categories the purpose may use.
    categories: Vec<String>,
    /// How long events stored for it are kept.
    retention_days: u32,
    recipients: Vec<String>,
    /// Counts as a sale or sharing under US state law: a GPC signal refuses it.
    sale_or_sharing: bool,
    /// The IAB TCF purposes it maps to.
    tcf_purposes: Vec<u8>,
    /// The W3C Data Privacy Vocabulary purpose, if any.
    dpv: Option<String>,
    /// The catalog's language (a BCP 47 tag).
    notice_language: String,
    /// Google Consent Mode signals its grant allows.
    consent_mode: Vec<String>,
    /// Language tag → the title and notice in that language.
    translations: BTreeMap<String, TranslationDto>,
}

/// The purpose catalog.
#[derive(Serialize, ToSchema)]
pub struct PurposesResponse {
    purposes: Vec<PurposeDto>,
}

fn notice(n: &candor_core::purpose::Notice) -> NoticeDto {
    NoticeDto {
        version: n.version,
        text: n.text.clone(),
        sha256: hex::encode(n.hash),
    }
}

/// The purposes and their notices (in the catalog's language and every translation,
/// each with the SHA-256 the ledger records), for consent prompts to render.
#[utoipa::path(get, path = "/v1/purposes", tag = "meta",
    summary = "The purpose catalog",
    description = "Every purpose with its notice (in the catalog's language and every translation, each \\
with the SHA-256 the ledger records), for consent prompts to render.",
    responses((status = 200, description = "The purposes, in catalog order", body = PurposesResponse)))]
pub async fn purposes(State(st): State<AppState>) -> Json<PurposesResponse> {
    let purposes = st
        .catalog
        .purposes()
        .iter()
        .map(|p| PurposeDto {
            id: p.id.as_str().to_owned(),
            title: p.title.clone(),
            notice: notice(&p.notice),
            categories: p.categories.iter().map(|c| c.as_str().to_owned()).collect(),
            retention_days: p.retention_days,
            recipients: p.recipients.clone(),
            sale_or_sharing: p.sale_or_sharing,
            tcf_purposes: p.tcf_purposes.clone(),
            dpv: p.dpv.clone(),
            notice_language: st.catalog.language().as_str().to_owned(),
            consent_mode: p.consent_mode.clone(),
            translations: p
                .translations
                .iter()
                .map(|(lang, t)| {
                    (
                        lang.to_string(),
                        TranslationDto {
                            title: t.title.clone(),
                            notice: notice(&t.notice),
                        },
                    )
                })
                .collect(),
        })
        .collect();
    Json(PurposesResponse { purposes })
}

pub async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this endpoint does not accept that method",
    )
}

/// `GET /v1/ledger/checkpoint`: the ledger's head now (records, last hash, time), signed
/// with the receipt-signing key, for an operator or an auditor to keep elsewhere and
/// check later with `candor ledger verify --checkpoint` (issue 11). Public, like the
/// key that verifies it: it says how many consent records exist, and nothing else.
#[utoipa::path(get, path = "/v1/ledger/checkpoint", tag = "meta",
    summary = "A signed checkpoint of the consent ledger",
    description = "The ledger's head now (records, last hash, time), signed with the receipt-signing key, \\
to keep elsewhere and check later with `candor ledger verify --checkpoint`.",
    responses((status = 200, description = "The checkpoint", body = CheckpointJson)))]
pub async fn ledger_checkpoint(
    State(st): State<AppState>,
) -> crate::error::ApiResult<Json<CheckpointJson>> {
    let cp = crate::ledger::checkpoint(st.store.as_ref(), &st.signer, st.now()).await?;
    Ok(Json(crate::ledger::checkpoint_json(&cp)))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    healthz,
    metrics,
    openapi,
    docs,
    gpc_json,
    receipt_key,
    purposes,
    ledger_checkpoint
))]
pub(crate) struct Api;
