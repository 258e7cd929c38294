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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"userId": "user-42", "ttlSeconds": 3600}))]
struct TokenBody {
    /// The signed-in user the token acts for (1 to 512 bytes).
    user_id: String,
    /// How long the token is valid, in seconds (1 to 2592000, default 3600).
    #[serde(default = "default_ttl")]
    #[schema(minimum = 1, maximum = 2_592_000, default = 3600)]
    ttl_seconds: i64,
}

/// A subject token for one user.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectToken {
    /// The token, for `Authorization: Bearer` (or the `Candor-Subject-Token` header beside
    /// a browser write key).
    token: String,
    /// When it expires, in seconds since the Unix epoch.
    expires_at: i64,
}

fn default_ttl() -> i64 {
    3600
}

#[utoipa::path(post, path = "/v1/admin/subject-tokens", tag = "admin",
    summary = "Mint a subject token",
    description = "A short-lived token for one signed-in user, for the operator's backend to hand to \
that user's browser: it acts for that user only (consent, their data, loyalty). Admin token; audited.",
    request_body = TokenBody,
    responses((status = 200, description = "The token", body = SubjectToken)))]
pub async fn subject_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<SubjectToken>> {
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
    Ok(Json(SubjectToken {
        token,
        expires_at: exp,
    }))
}

/// Whether the consent ledger verifies: `records` when it does, `fault` when not.
#[derive(Serialize, ToSchema)]
pub struct LedgerVerification {
    ok: bool,
    /// Records verified (when `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    records: Option<u64>,
    /// The first fault found (when not `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    fault: Option<String>,
}

#[utoipa::path(get, path = "/v1/admin/ledger/verify", tag = "admin",
    summary = "Verify the consent ledger",
    description = "Reads every ledger record in order and checks the hash chain and the signatures, \
under the signing key ring. Admin token.",
    responses((status = 200, description = "Whether it verifies (a fault is an answer, not an error)", body = LedgerVerification)))]
pub async fn verify_ledger(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<LedgerVerification>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let report = ledger::verify(st.store.as_ref(), &st.signer.verifying_key(), &[]).await?;
    Ok(Json(match report {
        Ok(n) => LedgerVerification {
            ok: true,
            records: Some(n),
            fault: None,
        },
        Err(fault) => LedgerVerification {
            ok: false,
            records: None,
            fault: Some(fault.to_string()),
        },
    }))
}

/// Counts of what is held.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    subjects: u64,
    /// Subjects who grant at least one purpose.
    subjects_with_consent: usize,
    /// Event rows stored (withdrawn ones awaiting the sweeper included).
    events: u64,
    ledger_records: u64,
    /// Withdrawals whose stored events are not yet rewritten (reads already honour them).
    pending_withdrawal_sweeps: u64,
}

#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin",
    summary = "Counts of what is held",
    description = "Subjects, events, ledger records and pending withdrawal sweeps. Admin token.",
    responses((status = 200, description = "The counts", body = Stats)))]
pub async fn stats(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Stats>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let s = st.store.stats().await?;
    Ok(Json(Stats {
        subjects: s.subjects,
        subjects_with_consent: st.store.index().len(),
        events: s.events,
        ledger_records: s.ledger_records,
        pending_withdrawal_sweeps: s.pending_floors,
    }))
}

/// A page of the audit log.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Actions after this id (the previous page's `next`); 0 for the first page.
    #[serde(default)]
    after: i64,
    /// At most this many (default 100; below 1 counts as 1, above 1000 as 1000).
    limit: Option<usize>,
}

/// `GET /v1/admin/audit`: every admin action with its time, target and outcome.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin",
    summary = "The admin audit log",
    description = "Every admin action (advertisers, subject tokens, prompt variants, segments, loyalty \
corrections, dashboard sign-ins, CLI imports and key rotations) with its time, target and outcome, \
oldest first. Admin token.",
    params(AuditQuery),
    responses((status = 200, description = "A page of the log", body = crate::audit::AuditLog)))]
pub async fn audit(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<crate::audit::AuditLog>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let axum::extract::Query(q) =
        q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(crate::audit::list(&st, q.after, limit).await?))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(subject_token, verify_ledger, stats, audit))]
pub(crate) struct Api;
