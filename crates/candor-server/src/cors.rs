//! Cross-origin access for what a publisher's page calls (issue 11, part 10): candor.js
//! on `https://publisher.example` talks to Candor on another origin.
//!
//! Only the routes a browser key may call answer cross-origin requests: the consent
//! routes, the ingestion routes and the two public reads the prompt needs (`/v1/prompt`,
//! `/v1/purposes`); which ones is read off the route table (roles `WriteKey` and
//! `ConsentActor`), so a new browser route is covered without a second list. They
//! answer preflights (`OPTIONS` is never 405 there), and grant access only to the
//! origins the operator lists in `[cors] allowed_origins` (none by default: a page on
//! any other origin cannot read the answers). The granted origin is echoed, never `*`,
//! and never with `Allow-Credentials`: these routes authenticate with an explicit
//! header (a browser key or a subject token), never with cookies. Every other route,
//! the admin ones above all, gets no CORS header and `OPTIONS` stays 405.

use crate::routes::table::{role_of, Role};
use crate::state::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Whether a browser may call `path` from a page on another origin.
fn browser_route(path: &str) -> bool {
    if path == "/v1/prompt" || path == "/v1/purposes" {
        return true;
    }
    // The one browser route with a path parameter: a person's volunteered field.
    let template = match path.strip_prefix("/v1/me/fields/") {
        Some(name) if !name.is_empty() && !name.contains('/') => "/v1/me/fields/{name}",
        _ => path,
    };
    [Method::GET, Method::POST, Method::PUT, Method::DELETE]
        .iter()
        .any(|m| {
            matches!(
                role_of(m, template),
                Some(Role::WriteKey | Role::ConsentActor)
            )
        })
}

/// An origin the operator allows: listed exactly, or by a `scheme://host:*` entry
/// (any port; for development, where a page's port is not known in advance).
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| match a.strip_suffix(":*") {
        Some(prefix) => origin
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())),
        None => a == origin,
    })
}

pub async fn layer(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if !browser_route(req.uri().path()) {
        return next.run(req).await;
    }
    let granted = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            o.to_str()
                .is_ok_and(|o| origin_allowed(&st.settings.cors_origins, o))
        })
        .cloned();
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    let Some(origin) = granted else {
        return resp;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, DELETE"),
        );
        // Candor-GPC relays navigator.globalPrivacyControl (scripts cannot send
        // Sec-GPC); Candor-Subject-Token proves a logged-in user's id.
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "authorization, content-type, candor-gpc, candor-subject-token",
            ),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_any_port() {
        let allowed = vec![
            "https://news.example".to_owned(),
            "http://127.0.0.1:*".to_owned(),
        ];
        assert!(origin_allowed(&allowed, "https://news.example"));
        assert!(!origin_allowed(&allowed, "https://news.example.evil"));
        assert!(!origin_allowed(&allowed, "http://news.example"));
        assert!(origin_allowed(&allowed, "http://127.0.0.1:8123"));
        assert!(!origin_allowed(&allowed, "http://127.0.0.1:"));
        assert!(!origin_allowed(&allowed, "http://127.0.0.1.evil:80"));
        assert!(!origin_allowed(&[], "https://news.example"));
        assert!(browser_route("/v1/consent"));
        assert!(browser_route("/v1/track"));
        assert!(!browser_route("/v1/consent/signals"));
        assert!(!browser_route("/v1/admin/stats"));
        assert!(browser_route("/v1/me/fields"));
        assert!(browser_route("/v1/me/fields/shoe_size"));
        assert!(!browser_route("/v1/me/fields/shoe_size/x"));
    }
}
