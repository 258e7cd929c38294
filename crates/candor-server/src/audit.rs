//! The admin audit log (issue 11, part 9): every admin action — advertisers created,
//! changed, their keys rotated, subject tokens minted, prompt variants saved, dashboard
//! sign-ins and changes, imports and signing-key rotations from the CLI — recorded
//! with its time, what it was done to and its outcome, readable at `GET
//! /v1/admin/audit`.
//!
//! For the API it is one layer over the route table, not a call in each handler: a
//! request to a route whose role is `Admin` or `AdminSession` (`routes::table`), other
//! than a read, is recorded once the credential proved valid, so a new admin route is
//! audited without anyone remembering to. Only valid credentials are recorded (a flood
//! of bad tokens cannot grow the log). Request bodies are never recorded: a subject
//! token's user id is personal data, an advertiser's new key a secret.

use crate::error::ApiResult;
use crate::routes::table::{role_of, Role};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use candor_store::AdminAction;

/// Error bodies are small; anything larger is not read for its code.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Records an admin action (best effort: a failure to record is logged, and the
/// action, already done, stands).
pub async fn record(st: &AppState, action: &str, target: &str, outcome: &str, detail: String) {
    let a = AdminAction {
        time_ms: st.now(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: outcome.to_owned(),
        detail,
    };
    if let Err(e) = st.store.record_admin_action(a).await {
        tracing::error!(error = %e, action, "admin action not written to the audit log");
    }
}

/// The values of a route template's `{params}` in `path`, joined by `/`.
fn target(template: &str, path: &str) -> String {
    template
        .split('/')
        .zip(path.split('/'))
        .filter(|(t, _)| t.starts_with('{'))
        .map(|(_, p)| p.chars().take(128).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// The layer: audits admin routes' non-read requests made with valid credentials.
pub async fn layer(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let audited = match (&template, method == Method::GET) {
        (Some(t), false) => match role_of(&method, t) {
            Some(Role::Admin) => {
                crate::auth::admin(st.settings.admin_token.as_ref(), req.headers()).is_ok()
            }
            Some(Role::AdminSession) => st
                .sessions
                .check(req.headers(), st.now_ms() / 1000)
                .is_some(),
            // Signing in: only a successful sign-in is an action (failures are not
            // logged here, so guessing cannot fill the log).
            Some(Role::LoginForm) => true,
            _ => false,
        },
        _ => false,
    };
    let Some(template) = template.filter(|_| audited) else {
        return next.run(req).await;
    };
    let target = target(&template, req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    let action = format!("{method} {template}");
    if template == "/admin/login" {
        // The form answers a redirect when the token was right.
        if status.is_redirection() {
            record(&st, &action, &target, "ok", String::new()).await;
        }
        return resp;
    }
    if status.is_success() || status.is_redirection() {
        record(&st, &action, &target, "ok", String::new()).await;
        return resp;
    }
    // A failure: its stable code is the outcome. Read the (small) error body, put it
    // back.
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("http_{}", status.as_u16()));
    record(&st, &action, &target, &code, String::new()).await;
    Response::from_parts(parts, Body::from(bytes))
}

/// One admin action in the audit log.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    id: i64,
    time: String,
    /// `<METHOD> <route>` (e.g. `PUT /v1/admin/segments/{name}`), or the CLI command.
    action: String,
    /// What it was done to: the route's path parameters, joined by `/`.
    target: String,
    /// `ok`, or the stable error code it failed with.
    outcome: String,
    detail: String,
}

/// A page of the admin audit log, oldest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditLog {
    actions: Vec<AuditEntry>,
    /// The `after` of the next page (the last id here); `null` when this page is empty.
    next: Option<i64>,
}

/// `GET /v1/admin/audit?after=ID&limit=N`: the log, oldest first.
pub async fn list(st: &AppState, after: i64, limit: usize) -> ApiResult<AuditLog> {
    let rows = st.store.admin_actions(after, limit).await?;
    let next = rows.last().map(|r| r.id);
    Ok(AuditLog {
        actions: rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                time: crate::segment::format_time(r.action.time_ms),
                action: r.action.action,
                target: r.action.target,
                outcome: r.action.outcome,
                detail: r.action.detail,
            })
            .collect(),
        next,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets_are_the_path_parameters() {
        assert_eq!(
            super::target(
                "/v1/admin/advertisers/{id}/rotate-key",
                "/v1/admin/advertisers/acme/rotate-key"
            ),
            "acme"
        );
        assert_eq!(
            super::target("/v1/admin/advertisers", "/v1/admin/advertisers"),
            ""
        );
    }
}
