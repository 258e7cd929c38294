//! Operator endpoints (admin bearer token): mint subject tokens, verify the ledger,
//! read counts, read the admin audit log.

use crate::auth;
use crate::body::{parse_json, read_text};
use crate::error::{ApiError, ApiResult, Code};
use crate::ledger;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenBody {
    user_id: String,
    #[serde(default = "default_ttl")]
    ttl_seconds: i64,
}

fn default_ttl() -> i64 {
    3600
}

pub async fn subject_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: TokenBody = parse_json(&text)?;
    if b.user_id.is_empty() || b.user_id.len() > 512 || !(1..=86_400 * 30).contains(&b.ttl_seconds)
    {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "userId must be 1 to 512 characters and ttlSeconds 1 to 2592000",
        ));
    }
    let exp = st.now_ms() / 1000 + b.ttl_seconds;
    let token = st.subject_tokens.mint(&b.user_id, exp).ok_or_else(|| {
        ApiError::new(
            Code::InvalidRequest,
            "no subject token secret is configured",
        )
    })?;
    Ok(Json(json!({"token": token, "expiresAt": exp})))
}

pub async fn verify_ledger(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let report = ledger::verify(st.store.as_ref(), &st.signer.verifying_key(), &[]).await?;
    Ok(Json(match report {
        Ok(n) => json!({"ok": true, "records": n}),
        Err(fault) => json!({"ok": false, "fault": fault.to_string()}),
    }))
}

pub async fn stats(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let s = st.store.stats().await?;
    Ok(Json(json!({
        "subjects": s.subjects,
        "subjectsWithConsent": st.store.index().len(),
        "events": s.events,
        "ledgerRecords": s.ledger_records,
        "pendingWithdrawalSweeps": s.pending_floors,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    after: i64,
    limit: Option<usize>,
}

/// `GET /v1/admin/audit`: every admin action with its time, target and outcome.
pub async fn audit(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let axum::extract::Query(q) =
        q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(crate::audit::list(&st, q.after, limit).await?))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Api;
