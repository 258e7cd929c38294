//! What every page Candor serves gets, and the admin's browser session (issue 12).
//!
//! - Every HTML page is rendered from a template with autoescaping (minijinja) and sent
//!   with a strict Content-Security-Policy: nothing may load from anywhere but Candor
//!   itself, inline `<script>`/`<style>` run only with this response's nonce, no framing,
//!   no plugins, forms post only back here. Every other response (JSON, JavaScript)
//!   gets `default-src 'none'` ([`headers_layer`]).
//! - The admin token is exchanged once, on the login form, for a session cookie:
//!   `HttpOnly` (no script reads it), `Secure`, `SameSite=Strict` (no other site's page
//!   sends it), `Path=/admin`, eight hours. The cookie is signed, not stored: its MAC
//!   key is derived from the admin token, so every node sharing the configuration
//!   accepts it and rotating the token ends every session.
//! - Every form carries a CSRF token: for a session, an HMAC of the session under the
//!   same key; on the login form (before any session), the double-submit pattern with a
//!   random `SameSite=Strict` cookie.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use candor_core::Sensitive;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "candor_admin";
pub const LOGIN_COOKIE: &str = "candor_login";
/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 8 * 3600;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    (
        "dashboard.html",
        include_str!("../templates/dashboard.html"),
    ),
    ("demo.html", include_str!("../templates/demo.html")),
    ("message.html", include_str!("../templates/message.html")),
    ("docs.html", include_str!("../templates/docs.html")),
    ("editor.html", include_str!("../templates/editor.html")),
    ("me.html", include_str!("../templates/me.html")),
    ("segments.html", include_str!("../templates/segments.html")),
    ("me_enter.html", include_str!("../templates/me_enter.html")),
    ("email.html", include_str!("../templates/email.html")),
    (
        "email_dashboard.html",
        include_str!("../templates/email_dashboard.html"),
    ),
    ("me_erase.html", include_str!("../templates/me_erase.html")),
    (
        "me_message.html",
        include_str!("../templates/me_message.html"),
    ),
];

fn environment() -> &'static minijinja::Environment<'static> {
    static ENV: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        for (name, src) in TEMPLATES {
            // The templates are compiled in and covered by tests: one that does not
            // parse fails every page test, so this cannot pass unnoticed.
            if let Err(e) = env.add_template(name, src) {
                tracing::error!(template = name, error = %e, "page template does not parse");
            }
        }
        env
    })
}

/// A fresh nonce for one response's CSP.
pub fn nonce() -> String {
    let mut b = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The policy of an HTML page. `self_scripts` adds Candor's own origin to `script-src`
/// (the demo page loads candor.js and its tagged scripts from it).
pub fn policy(nonce: &str, self_scripts: bool) -> String {
    let script = if self_scripts {
        format!("'nonce-{nonce}' 'self'")
    } else {
        format!("'nonce-{nonce}'")
    };
    format!(
        "default-src 'none'; script-src {script}; style-src 'nonce-{nonce}'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Renders a template into a response with its nonce and the page headers.
pub fn render(
    status: StatusCode,
    template: &str,
    ctx: minijinja::Value,
    self_scripts: bool,
    extra: Vec<(header::HeaderName, String)>,
) -> Response {
    let nonce = nonce();
    let ctx = minijinja::context! { nonce => nonce.clone(), ..ctx };
    let body = match environment()
        .get_template(template)
        .and_then(|t| t.render(ctx))
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(template, error = %e, "page did not render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "page error").into_response();
        }
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&policy(&nonce, self_scripts)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(k, v);
        }
    }
    resp
}

/// A page that only says what went wrong.
pub fn message(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    render(
        status,
        "message.html",
        minijinja::context! { title, message },
        false,
        vec![],
    )
}

/// A `303 See Other` to `to`, with extra headers (cookies).
pub fn redirect(to: &str, extra: Vec<(header::HeaderName, String)>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.append(k, v);
        }
    }
    resp
}

/// Headers every response gets; responses that set no policy of their own (all but
/// the pages) get the strictest one.
pub async fn headers_layer(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        );
    }
    resp
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// A `Set-Cookie` value with the attributes every Candor cookie has.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> (header::HeaderName, String) {
    (
        header::SET_COOKIE,
        format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
        ),
    )
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The admin's sessions and CSRF tokens, keyed by the admin token.
pub struct Sessions {
    key: Option<[u8; 32]>,
}

impl Sessions {
    pub fn new(admin_token: Option<&Sensitive<String>>) -> Self {
        Self {
            key: admin_token.map(|t| mac(t.expose().as_bytes(), b"candor-admin-session-v1")),
        }
    }

    /// A new session cookie value, valid until `now_s + SESSION_SECONDS`.
    pub fn issue(&self, now_s: i64) -> Option<String> {
        let key = self.key.as_ref()?;
        let body = format!("v1.{}.{}", now_s + SESSION_SECONDS, random_hex(16));
        Some(format!("{body}.{}", hex::encode(mac(key, body.as_bytes()))))
    }

    /// The session the request carries, if it is genuine and unexpired.
    pub fn check<'a>(&self, headers: &'a HeaderMap, now_s: i64) -> Option<&'a str> {
        let key = self.key.as_ref()?;
        let value = cookie(headers, SESSION_COOKIE)?;
        let (body, tag) = value.rsplit_once('.')?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(exp), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let genuine = hex::decode(tag)
            .ok()
            .is_some_and(|t| bool::from(t.ct_eq(&mac(key, body.as_bytes()))));
        let fresh = exp.parse::<i64>().is_ok_and(|e| now_s < e);
        (genuine && fresh).then_some(value)
    }

    /// The CSRF token the session's forms carry.
    pub fn csrf(&self, session: &str) -> String {
        self.key
            .as_ref()
            .map(|k| hex::encode(&mac(k, format!("csrf:{session}").as_bytes())[..16]))
            .unwrap_or_default()
    }

    pub fn csrf_ok(&self, session: &str, given: &str) -> bool {
        let want = self.csrf(session);
        !want.is_empty() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// The login form's CSRF pair: a random value for the cookie and the form alike.
pub fn login_token() -> String {
    random_hex(16)
}

/// Double-submit check: the form's token equals the cookie's.
pub fn login_token_ok(headers: &HeaderMap, given: &str) -> bool {
    double_submit_ok(headers, LOGIN_COOKIE, given)
}

/// Double-submit check for a form shown before any session: its token equals the
/// `SameSite=Strict` cookie `name` set with the form.
pub fn double_submit_ok(headers: &HeaderMap, name: &str, given: &str) -> bool {
    cookie(headers, name)
        .is_some_and(|c| !c.is_empty() && bool::from(c.as_bytes().ct_eq(given.as_bytes())))
}

fn mac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(msg);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {SESSION_COOKIE}={v}")).unwrap(),
        );
        h
    }

    #[test]
    fn sessions_are_signed_expire_and_die_with_the_token() {
        let token = Sensitive::new("admin-token-admin-token".to_owned());
        let s = Sessions::new(Some(&token));
        let v = s.issue(1_000).unwrap();
        assert_eq!(s.check(&with_cookie(&v), 1_001), Some(v.as_str()));
        assert_eq!(
            s.check(&with_cookie(&v), 1_000 + SESSION_SECONDS),
            None,
            "expired"
        );
        let mut forged = v.clone();
        forged.replace_range(3..4, if &v[3..4] == "9" { "8" } else { "9" });
        assert_eq!(s.check(&with_cookie(&forged), 1_001), None, "edited expiry");
        let other = Sessions::new(Some(&Sensitive::new("rotated-token-rotated".to_owned())));
        assert_eq!(other.check(&with_cookie(&v), 1_001), None, "token rotated");
        assert!(Sessions::new(None).issue(0).is_none());
        // CSRF tokens are per session.
        let w = s.issue(1_000).unwrap();
        assert!(s.csrf_ok(&v, &s.csrf(&v)));
        assert!(!s.csrf_ok(&v, &s.csrf(&w)));
        assert!(!s.csrf_ok(&v, ""));
    }
}
