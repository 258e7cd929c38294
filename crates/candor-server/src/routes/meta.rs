//! Endpoints about the service itself: health, metrics, the GPC declaration, the
//! OpenAPI document, the receipt-signing public key and the purpose catalog.

use crate::auth;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub async fn healthz(State(st): State<AppState>) -> Response {
    match st.store.ledger_head().await {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Err(_) => ApiError::new(Code::Unavailable, "the store is not answering").into_response(),
    }
}

pub async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let body = crate::telemetry::prometheus().render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// `/.well-known/gpc.json`: we honour Global Privacy Control.
pub async fn gpc_json() -> Json<Value> {
    Json(json!({"gpc": true, "lastUpdate": "2026-11-29"}))
}

/// `/docs`: the API reference, from the same document (`crate::docs`).
pub async fn docs() -> Response {
    static VIEW: std::sync::OnceLock<minijinja::Value> = std::sync::OnceLock::new();
    let view = VIEW.get_or_init(|| {
        let doc: Value = serde_json::from_str(crate::openapi::json()).unwrap_or_default();
        minijinja::Value::from_serialize(crate::docs::view(&doc))
    });
    crate::pages::render(StatusCode::OK, "docs.html", view.clone(), false, vec![])
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::json(),
    )
        .into_response()
}

pub async fn receipt_key(State(st): State<AppState>) -> Json<Value> {
    Json(crate::receipts::ring_json(&st.keys))
}

/// The purposes and their notices (in the catalog's language and every translation,
/// each with the SHA-256 the ledger records), for consent prompts to render.
pub async fn purposes(State(st): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = st
        .catalog
        .purposes()
        .iter()
        .map(|p| {
            json!({
                "id": p.id.as_str(),
                "title": p.title,
                "notice": {"version": p.notice.version, "text": p.notice.text, "sha256": hex::encode(p.notice.hash)},
                "categories": p.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "retentionDays": p.retention_days,
                "recipients": p.recipients,
                "saleOrSharing": p.sale_or_sharing,
                "tcfPurposes": p.tcf_purposes,
                "dpv": p.dpv,
                "noticeLanguage": st.catalog.language().as_str(),
                "consentMode": p.consent_mode,
                "translations": p.translations.iter().map(|(lang, t)| (lang.to_string(), json!({
                    "title": t.title,
                    "notice": {"version": t.notice.version, "text": t.notice.text, "sha256": hex::encode(t.notice.hash)},
                }))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    Json(json!({ "purposes": list }))
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
pub async fn ledger_checkpoint(State(st): State<AppState>) -> crate::error::ApiResult<Json<Value>> {
    let cp = crate::ledger::checkpoint(st.store.as_ref(), &st.signer, st.now()).await?;
    Ok(Json(crate::ledger::checkpoint_json(&cp)))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Api;
