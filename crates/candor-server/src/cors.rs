//! Cross-origin access for what a publisher's page calls: candor.js on
//! `https://publisher.example` talks to Candor on another origin.
//!
//! These routes authenticate with an explicit `Authorization` header (a public browser
//! key or a subject token), never with cookies, so any origin may call them: a page
//! gains nothing from a visitor's ambient credentials. `Access-Control-Allow-Origin: *`
//! (without `Allow-Credentials`) says exactly that. Admin pages and routes get no CORS
//! headers: a browser on another origin cannot read them.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths a publisher's page may call from its own origin.
fn public_api(path: &str) -> bool {
    path == "/v1/consent"
        || path.starts_with("/v1/consent/")
        || path == "/v1/purposes"
        || path == "/v1/prompt"
        || path == "/v1/prompt/events"
}

pub async fn layer(req: Request, next: Next) -> Response {
    if !public_api(req.uri().path()) {
        return next.run(req).await;
    }
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method");
    let mut resp = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        // Candor-GPC relays navigator.globalPrivacyControl (scripts cannot send Sec-GPC).
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, candor-gpc"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    resp
}
