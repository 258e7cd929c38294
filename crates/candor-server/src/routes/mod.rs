//! HTTP routes, one module per resource: `ingest` (Segment API), `consent`,
//! `advertisers` (the advertiser's insight API and the operator's advertiser admin),
//! `admin`, `meta`. The router and its roles:
//!
//! | path | role |
//! |---|---|
//! | `/v1/batch`, `/v1/{identify,track,page,screen,group,alias}` | source write key |
//! | `/v1/consent*` | browser key (own anonymousId), server key, or subject token |
//! | `/v1/consent/insights` (reports my data was eligible for) | same as `/v1/consent` |
//! | `/v1/insights/*` | advertiser key (and nothing else accepts one: 403 elsewhere) |
//! | `/v1/admin/*`, `/metrics` | admin token |
//! | `/healthz`, `/.well-known/gpc.json`, `/openapi.json`, `/v1/receipts/public-key`, `/v1/purposes` | anyone |

pub mod admin;
pub mod advertisers;
pub mod consent;
pub mod ingest;
pub mod meta;

/// True when the request carries the Global Privacy Control signal (`Sec-GPC: 1`).
pub(crate) fn sec_gpc(headers: &axum::http::HeaderMap) -> bool {
    headers.get("sec-gpc").is_some_and(|v| v.as_bytes() == b"1")
}
