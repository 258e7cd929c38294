//! HTTP routes, one module per resource: `ingest` (Segment API), `consent`,
//! `advertisers` (the advertiser's insight API and the operator's advertiser admin),
//! `admin`, `meta`. The router and its roles:
//!
//! | path | role |
//! |---|---|
//! | `/v1/batch`, `/v1/{identify,track,page,screen,group,alias}` | source write key |
//! | `/v1/consent*` | browser key (own anonymousId), server key, or subject token |
//! | `/v1/consent/insights` (reports my data was eligible for) | same as `/v1/consent` |
//! | `/v1/me/fields`, `/v1/me/fields/{name}` (volunteered fields) | same as `/v1/consent` |
//! | `POST /v1/personalize`, `GET /v1/me/loyalty` | same as `/v1/consent` |
//! | `POST /v1/me/loyalty/redeem` | server key, or subject token (its own user) |
//! | `POST /v1/loyalty/transactions` | server key |
//! | `/v1/insights/*` | advertiser key (and nothing else accepts one: 403 elsewhere) |
//! | `/v1/admin/*`, `/metrics` | admin token |
//! | `/healthz`, `/.well-known/gpc.json`, `/openapi.json`, `/docs`, `/v1/receipts/public-key`, `/v1/purposes` | anyone |
//! | `/candor.js`, `/candor-lint.js`, `GET /v1/prompt` | anyone (the anonymous prompt) |
//! | `POST /v1/prompt/events` | source write key (anonymous counts) |
//! | `/v1/admin/prompt/*` | admin token |
//! | `/admin/login` | anyone (the form takes the admin token); `/admin/*`: an admin session cookie, CSRF token on every POST |
//! | `/demo/*` (`serve --demo` only) | anyone |
//! | `POST /v1/email/subscriptions` | source write key (a pending subscription; the mail confirms) |
//! | `/v1/admin/email/*` | admin token |
//! | `/email/{subscribe,confirm,unsubscribe}` | anyone: a form, or the token a mail carries |
//! | `GET /admin/email` (lists, growth, campaigns, suppressions) | an admin session cookie |

pub mod admin;
pub mod advertisers;
pub mod audience_pages;
pub mod consent;
pub mod dashboard;
pub mod demo;
pub mod email;
pub mod email_dashboard;
pub mod email_pages;
pub mod fields;
pub mod ingest;
pub mod loyalty;
pub mod me;
pub mod meta;
pub mod mypages;
pub mod personalize;
pub mod prompt;
pub mod segments;
pub mod table;

pub use crate::segment::format_time;

/// True when the request carries the Global Privacy Control signal: `Sec-GPC: 1` from
/// the browser, or `Candor-GPC: 1` from candor.js relaying `navigator.globalPrivacyControl`
/// (scripts may not set `Sec-` headers). Either can only narrow what is allowed, so
/// whoever sends it gains nothing by it.
pub(crate) fn sec_gpc(headers: &axum::http::HeaderMap) -> bool {
    gpc_signal(headers).is_some()
}

/// The Global Privacy Control signal a request carries, as it was sent (recorded as
/// the evidence of a GPC refusal).
pub(crate) fn gpc_signal(headers: &axum::http::HeaderMap) -> Option<&'static str> {
    [("sec-gpc", "Sec-GPC: 1"), ("candor-gpc", "Candor-GPC: 1")]
        .into_iter()
        .find(|(h, _)| headers.get(*h).is_some_and(|v| v.as_bytes() == b"1"))
        .map(|(_, signal)| signal)
}
/// The catalog's purpose of that name, or `unknown_purpose` naming (the start of) it.
pub(crate) fn known_purpose<'a>(
    catalog: &'a candor_core::purpose::Catalog,
    name: &str,
) -> crate::error::ApiResult<&'a candor_core::purpose::Purpose> {
    candor_core::PurposeId::parse(name)
        .ok()
        .and_then(|id| catalog.purpose(&id))
        .ok_or_else(|| {
            crate::error::ApiError::new(
                crate::error::Code::UnknownPurpose,
                format!(
                    "unknown purpose {:?}",
                    name.chars().take(64).collect::<String>()
                ),
            )
        })
}
