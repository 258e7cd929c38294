//! The route table: every route the server has, registered through one builder that
//! records each (method, path) as it goes, and [`ROUTES`], the one declaration of who
//! may call each and how each can fail. `app::router` builds the router from [`build`]; the authorization
//! matrix test (`tests/api/auth.rs`) reads [`route_list`] — the very same registration
//! — and fails for any route missing from [`ROUTES`], then calls every route with every
//! kind of credential and checks the answer against its role.

use super::{
    admin, advertisers, audience_pages, consent, dashboard, demo, email, email_dashboard,
    email_pages, fields, ingest, loyalty, me, meta, mypages, personalize, prompt, segments,
};
use crate::error::Code;
use crate::state::AppState;
use axum::handler::Handler;
use axum::http::Method;
use axum::Router;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Anyone (an advertiser key excepted: it reaches only `/v1/insights/*`).
    Anyone,
    /// A source write key, browser or server (Basic auth, or `writeKey` in the body).
    WriteKey,
    /// A browser key (for an anonymous id linked to nothing else), a server key, or a
    /// subject token (for its own user).
    ConsentActor,
    /// A server write key only (`imported` signals).
    ServerKey,
    /// The admin bearer token.
    Admin,
    /// The admin dashboard's session cookie (the login form sells it for the admin
    /// token), with a CSRF token on every POST.
    AdminSession,
    /// An advertiser key, and nothing else.
    Advertiser,
    /// A server key, or a subject token for its own user: never a browser key (the
    /// erasure API).
    ServerOrSubject,
    /// A person's session cookie (`person`), with its CSRF token on every POST.
    PersonSession,
    /// The sign-in form of a person's pages: anyone may post it; the form carries a
    /// single-use link (or a browser key and its anonymous id) and a double-submit
    /// CSRF token.
    PersonEntry,
    /// The dashboard's sign-in form: anyone may post it; the form itself checks the
    /// admin token (and a double-submit CSRF token) it carries.
    LoginForm,
}

/// What the route table says of one route: who may call it and the error codes its
/// own checks answer with (those of its role, and of every route, are added by
/// [`crate::openapi`]). The OpenAPI document's security and error responses come from
/// here; the response check (`scripts/check-responses`) fails for a code it lacks.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub role: Role,
    pub errors: &'static [Code],
}

const fn r(method: &'static str, path: &'static str, role: Role, errors: &'static [Code]) -> Route {
    Route {
        method,
        path,
        role,
        errors,
    }
}

/// The codes of the batch ingestion routes (`/v1/batch`, `/v1/import`).
const BATCH: &[Code] = &[
    Code::BatchTooLarge,
    Code::InvalidUtf8,
    Code::InvalidGzip,
    Code::UnsupportedEncoding,
    Code::InvalidJson,
    Code::InvalidRequest,
    Code::InvalidMessage,
    Code::InvalidSubjectToken,
];

/// The codes of the single-message ingestion routes (`/v1/identify`, `/v1/track`...).
const SINGLE_MESSAGE: &[Code] = &[
    Code::EventTooLarge,
    Code::InvalidUtf8,
    Code::InvalidGzip,
    Code::UnsupportedEncoding,
    Code::InvalidJson,
    Code::InvalidRequest,
    Code::InvalidMessage,
    Code::InvalidSubjectToken,
];

/// Every route, its role and its own error codes. A route the router has and this
/// table lacks fails the authorization matrix test and the OpenAPI route test.
pub const ROUTES: &[Route] = &[
    r("POST", "/v1/batch", Role::WriteKey, BATCH),
    r("POST", "/v1/import", Role::WriteKey, BATCH),
    r("POST", "/v1/identify", Role::WriteKey, SINGLE_MESSAGE),
    r("POST", "/v1/track", Role::WriteKey, SINGLE_MESSAGE),
    r("POST", "/v1/page", Role::WriteKey, SINGLE_MESSAGE),
    r("POST", "/v1/screen", Role::WriteKey, SINGLE_MESSAGE),
    r("POST", "/v1/group", Role::WriteKey, SINGLE_MESSAGE),
    r("POST", "/v1/alias", Role::WriteKey, SINGLE_MESSAGE),
    r(
        "POST",
        "/v1/consent",
        Role::ConsentActor,
        &[
            Code::UnknownPurpose,
            Code::NoticeVersionMismatch,
            Code::ConsentNotGiven,
        ],
    ),
    r(
        "GET",
        "/v1/consent",
        Role::ConsentActor,
        &[Code::InvalidRequest],
    ),
    r(
        "POST",
        "/v1/consent/accept-all",
        Role::ConsentActor,
        &[Code::UnknownPurpose, Code::NoticeVersionMismatch],
    ),
    r(
        "POST",
        "/v1/consent/reject-all",
        Role::ConsentActor,
        &[Code::UnknownPurpose, Code::NoticeVersionMismatch],
    ),
    r(
        "GET",
        "/v1/consent/history",
        Role::ConsentActor,
        &[Code::InvalidRequest],
    ),
    r(
        "POST",
        "/v1/consent/signals",
        Role::ServerKey,
        &[Code::InvalidConsentString],
    ),
    r(
        "GET",
        "/v1/consent/insights",
        Role::ConsentActor,
        &[Code::InvalidRequest],
    ),
    r(
        "GET",
        "/v1/me",
        Role::ConsentActor,
        &[Code::InvalidRequest, Code::SubjectNotFound],
    ),
    r(
        "GET",
        "/v1/me/export",
        Role::ConsentActor,
        &[Code::InvalidRequest, Code::SubjectNotFound],
    ),
    r(
        "POST",
        "/v1/me/erase",
        Role::ServerOrSubject,
        &[
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::InvalidEmail,
            Code::SubjectNotFound,
        ],
    ),
    r(
        "POST",
        "/v1/admin/subject-links",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::SubjectNotFound,
        ],
    ),
    r(
        "GET",
        "/v1/admin/requests",
        Role::Admin,
        &[Code::MissingCredentials, Code::InvalidRequest],
    ),
    r("GET", "/me/enter", Role::Anyone, &[]),
    r("POST", "/me/enter", Role::PersonEntry, &[]),
    r("GET", "/me", Role::PersonSession, &[]),
    r(
        "POST",
        "/me/consent",
        Role::PersonSession,
        // The store's own checks, at the commit: withdrawing what is not given, and
        // an anonymous id linked to an account since the session's check.
        &[Code::ConsentNotGiven, Code::SubjectTokenRequired],
    ),
    r("GET", "/me/export", Role::PersonSession, &[]),
    r("GET", "/me/receipts/{id}", Role::PersonSession, &[]),
    r("POST", "/me/logout", Role::PersonSession, &[]),
    r("GET", "/me/erase", Role::PersonSession, &[]),
    r(
        "POST",
        "/me/fields/{name}",
        Role::PersonSession,
        &[Code::SubjectNotFound],
    ),
    r("POST", "/me/fields/{name}/remove", Role::PersonSession, &[]),
    r(
        "POST",
        "/me/erase",
        Role::PersonSession,
        &[Code::SubjectNotFound],
    ),
    r("POST", "/me/loyalty/redeem", Role::PersonSession, &[]),
    r(
        "GET",
        "/v1/me/fields",
        Role::ConsentActor,
        &[Code::InvalidRequest],
    ),
    r(
        "PUT",
        "/v1/me/fields/{name}",
        Role::ConsentActor,
        &[
            Code::InvalidRequest,
            Code::UnknownField,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::SubjectNotFound,
            Code::InvalidFieldValue,
        ],
    ),
    r(
        "DELETE",
        "/v1/me/fields/{name}",
        Role::ConsentActor,
        &[Code::InvalidRequest, Code::UnknownField],
    ),
    r(
        "GET",
        "/v1/admin/segments",
        Role::Admin,
        &[Code::MissingCredentials],
    ),
    r(
        "POST",
        "/v1/admin/segments/validate",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::InvalidSegment,
            Code::UnknownPurpose,
            Code::UnknownSegment,
            Code::SegmentNotAllowed,
        ],
    ),
    r(
        "GET",
        "/v1/admin/segments/{name}",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::UnknownSegment,
        ],
    ),
    r(
        "PUT",
        "/v1/admin/segments/{name}",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::InvalidSegment,
            Code::UnknownPurpose,
            Code::UnknownSegment,
            Code::SegmentNotAllowed,
        ],
    ),
    r(
        "DELETE",
        "/v1/admin/segments/{name}",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::UnknownSegment,
        ],
    ),
    r(
        "GET",
        "/v1/admin/segments/{name}/members",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::UnknownSegment,
        ],
    ),
    r(
        "GET",
        "/v1/admin/segments/{name}/check",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::UnknownSegment,
            Code::SubjectNotFound,
        ],
    ),
    r(
        "POST",
        "/v1/personalize",
        Role::ConsentActor,
        &[
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::UnknownPlacement,
        ],
    ),
    r(
        "GET",
        "/v1/me/loyalty",
        Role::ConsentActor,
        &[Code::InvalidRequest, Code::LoyaltyUnavailable],
    ),
    r(
        "POST",
        "/v1/me/loyalty/redeem",
        Role::ServerOrSubject,
        &[
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::SubjectNotFound,
            Code::LoyaltyUnavailable,
            Code::UnknownReward,
            Code::LoyaltyNotGranted,
            Code::LoyaltyInsufficientPoints,
            Code::LoyaltyOutOfStock,
            Code::IdempotencyKeyConflict,
        ],
    ),
    r(
        "POST",
        "/v1/loyalty/transactions",
        Role::ServerKey,
        &[
            Code::InvalidSubjectToken,
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::SubjectNotFound,
            Code::LoyaltyUnavailable,
            Code::UnknownReward,
            Code::LoyaltyNotGranted,
            Code::LoyaltyCapped,
            Code::LoyaltyInsufficientPoints,
            Code::LoyaltyOutOfStock,
            Code::IdempotencyKeyConflict,
        ],
    ),
    r(
        "GET",
        "/v1/admin/loyalty",
        Role::Admin,
        &[Code::MissingCredentials, Code::LoyaltyUnavailable],
    ),
    r(
        "POST",
        "/v1/admin/loyalty/adjustments",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::SubjectNotFound,
            Code::LoyaltyUnavailable,
            Code::LoyaltyInsufficientPoints,
            Code::IdempotencyKeyConflict,
        ],
    ),
    r(
        "POST",
        "/v1/admin/loyalty/reversals",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::SubjectNotFound,
            Code::LoyaltyUnavailable,
            Code::LoyaltyNoSuchRedemption,
            Code::LoyaltyAlreadyReversed,
            Code::IdempotencyKeyConflict,
        ],
    ),
    r(
        "PUT",
        "/v1/admin/loyalty/rewards/{id}/stock",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
            Code::LoyaltyUnavailable,
            Code::UnknownReward,
        ],
    ),
    r("GET", "/v1/purposes", Role::Anyone, &[]),
    r("GET", "/v1/receipts/public-key", Role::Anyone, &[]),
    r("GET", "/v1/ledger/checkpoint", Role::Anyone, &[]),
    r(
        "POST",
        "/v1/admin/subject-tokens",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::InvalidRequest,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidJson,
        ],
    ),
    r(
        "GET",
        "/v1/admin/ledger/verify",
        Role::Admin,
        &[Code::MissingCredentials],
    ),
    r(
        "GET",
        "/v1/admin/stats",
        Role::Admin,
        &[Code::MissingCredentials],
    ),
    r(
        "GET",
        "/v1/admin/audit",
        Role::Admin,
        &[Code::MissingCredentials, Code::InvalidRequest],
    ),
    r(
        "POST",
        "/v1/admin/advertisers",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::MissingCredentials,
            Code::AlreadyExists,
        ],
    ),
    r(
        "GET",
        "/v1/admin/advertisers",
        Role::Admin,
        &[Code::MissingCredentials],
    ),
    r(
        "PATCH",
        "/v1/admin/advertisers/{id}",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::MissingCredentials,
            Code::Conflict,
            Code::NotFound,
        ],
    ),
    r(
        "POST",
        "/v1/admin/advertisers/{id}/rotate-key",
        Role::Admin,
        &[Code::MissingCredentials, Code::Conflict, Code::NotFound],
    ),
    r(
        "GET",
        "/v1/admin/insights/reports",
        Role::Admin,
        &[Code::InvalidRequest, Code::MissingCredentials],
    ),
    r("GET", "/candor.js", Role::Anyone, &[]),
    r("GET", "/candor-lint.js", Role::Anyone, &[]),
    r(
        "GET",
        "/v1/prompt",
        Role::Anyone,
        &[Code::InvalidRequest, Code::UnknownPurpose],
    ),
    r(
        "POST",
        "/v1/prompt/events",
        Role::WriteKey,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::UnknownPurpose,
            Code::NotFound,
        ],
    ),
    r(
        "POST",
        "/v1/admin/prompt/lint",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::UnknownPurpose,
            Code::MissingCredentials,
            Code::UnfairPrompt,
        ],
    ),
    r(
        "POST",
        "/v1/admin/prompt/preview",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::UnknownPurpose,
            Code::MissingCredentials,
        ],
    ),
    r(
        "POST",
        "/v1/admin/prompt/variants",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::UnknownPurpose,
            Code::MissingCredentials,
            Code::UnfairPrompt,
        ],
    ),
    r(
        "GET",
        "/v1/admin/prompt/variants",
        Role::Admin,
        &[Code::UnknownPurpose, Code::MissingCredentials],
    ),
    r(
        "PATCH",
        "/v1/admin/prompt/variants/{id}",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::UnknownPurpose,
            Code::MissingCredentials,
            Code::NotFound,
        ],
    ),
    r(
        "GET",
        "/v1/admin/prompt/stats",
        Role::Admin,
        &[Code::InvalidRequest, Code::MissingCredentials],
    ),
    r("GET", "/admin", Role::Anyone, &[]),
    r("GET", "/admin/", Role::AdminSession, &[]),
    r("GET", "/admin/login", Role::Anyone, &[]),
    r("POST", "/admin/login", Role::LoginForm, &[]),
    r("POST", "/admin/logout", Role::AdminSession, &[]),
    r("POST", "/admin/variants/{id}", Role::AdminSession, &[]),
    r("GET", "/admin/variants/new", Role::AdminSession, &[]),
    r("POST", "/admin/variants", Role::AdminSession, &[]),
    r(
        "POST",
        "/admin/variants/preview",
        Role::AdminSession,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::MissingCredentials,
        ],
    ),
    r("GET", "/admin/editor.js", Role::Anyone, &[]),
    r("GET", "/admin/segments", Role::AdminSession, &[]),
    r("POST", "/admin/segments", Role::AdminSession, &[]),
    r(
        "POST",
        "/admin/segments/{name}/delete",
        Role::AdminSession,
        &[],
    ),
    r("GET", "/admin/email", Role::AdminSession, &[]),
    r("GET", "/healthz", Role::Anyone, &[]),
    r("GET", "/metrics", Role::Admin, &[Code::MissingCredentials]),
    r("GET", "/openapi.json", Role::Anyone, &[]),
    r("GET", "/.well-known/gpc.json", Role::Anyone, &[]),
    r("GET", "/demo", Role::Anyone, &[]),
    r("GET", "/demo/", Role::Anyone, &[]),
    r("GET", "/demo/{script}", Role::Anyone, &[Code::NotFound]),
    r(
        "POST",
        "/v1/email/subscriptions",
        Role::WriteKey,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::EmailDisabled,
            Code::InvalidEmail,
            Code::UnknownList,
        ],
    ),
    r(
        "GET",
        "/v1/admin/email/lists",
        Role::Admin,
        &[Code::MissingCredentials, Code::EmailDisabled],
    ),
    r(
        "POST",
        "/v1/admin/email/campaigns",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::MissingCredentials,
            Code::EmailDisabled,
            Code::UnknownList,
            Code::InvalidTemplate,
        ],
    ),
    r(
        "GET",
        "/v1/admin/email/campaigns",
        Role::Admin,
        &[Code::MissingCredentials, Code::EmailDisabled],
    ),
    r(
        "GET",
        "/v1/admin/email/campaigns/{id}",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::EmailDisabled,
            Code::NotFound,
        ],
    ),
    r(
        "GET",
        "/v1/admin/email/campaigns/{id}/messages",
        Role::Admin,
        &[
            Code::InvalidRequest,
            Code::MissingCredentials,
            Code::EmailDisabled,
            Code::NotFound,
        ],
    ),
    r(
        "POST",
        "/v1/admin/email/campaigns/{id}/preview",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::MissingCredentials,
            Code::EmailDisabled,
            Code::NotFound,
        ],
    ),
    r(
        "POST",
        "/v1/admin/email/campaigns/{id}/test",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::MissingCredentials,
            Code::EmailDisabled,
            Code::InvalidEmail,
            Code::NotFound,
        ],
    ),
    r(
        "POST",
        "/v1/admin/email/campaigns/{id}/start",
        Role::Admin,
        &[
            Code::InvalidRequest,
            Code::MissingCredentials,
            Code::EmailDisabled,
            Code::NotFound,
            Code::Conflict,
        ],
    ),
    r(
        "POST",
        "/v1/admin/email/campaigns/{id}/cancel",
        Role::Admin,
        &[
            Code::MissingCredentials,
            Code::EmailDisabled,
            Code::NotFound,
            Code::Conflict,
        ],
    ),
    r(
        "POST",
        "/v1/admin/email/feedback",
        Role::Admin,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidRequest,
            Code::MissingCredentials,
            Code::EmailDisabled,
            Code::InvalidEmail,
            Code::UnrecognizedReport,
            Code::UnsupportedMediaType,
        ],
    ),
    r("GET", "/email/subscribe", Role::Anyone, &[]),
    r("POST", "/email/subscribe", Role::Anyone, &[]),
    r("GET", "/email/confirm", Role::Anyone, &[]),
    r("POST", "/email/confirm", Role::Anyone, &[]),
    r("GET", "/email/unsubscribe", Role::Anyone, &[]),
    r("POST", "/email/unsubscribe", Role::Anyone, &[]),
    r("GET", "/me/signin", Role::Anyone, &[]),
    r("POST", "/me/email/{name}/leave", Role::PersonSession, &[]),
    r("POST", "/me/email/{name}/join", Role::PersonSession, &[]),
    r("POST", "/me/signin", Role::Anyone, &[]),
    r(
        "POST",
        "/v1/insights/query",
        Role::Advertiser,
        &[
            Code::InvalidJson,
            Code::InvalidUtf8,
            Code::InvalidGzip,
            Code::UnsupportedEncoding,
            Code::InvalidWriteKey,
            Code::Forbidden,
            Code::InvalidQuery,
            Code::QueryNotAllowed,
            Code::BudgetExceeded,
            Code::LifetimeBudgetExceeded,
            Code::TotalBudgetExceeded,
            Code::InsightsUnavailable,
        ],
    ),
    r(
        "GET",
        "/v1/insights/schema",
        Role::Advertiser,
        &[Code::InvalidWriteKey, Code::Forbidden],
    ),
    r(
        "GET",
        "/v1/insights/budget",
        Role::Advertiser,
        &[Code::InvalidWriteKey, Code::Forbidden],
    ),
    r(
        "GET",
        "/v1/insights/reports",
        Role::Advertiser,
        &[Code::InvalidRequest, Code::InvalidWriteKey, Code::Forbidden],
    ),
    r(
        "GET",
        "/v1/insights/reports/{id}",
        Role::Advertiser,
        &[Code::InvalidWriteKey, Code::Forbidden, Code::NotFound],
    ),
    r("GET", "/docs", Role::Anyone, &[]),
];

/// The declared role of a route, if any.
pub fn role_of(method: &Method, path: &str) -> Option<Role> {
    route(method, path).map(|r| r.role)
}

/// The table's row for a route, if any.
pub fn route(method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.method == method.as_str() && r.path == path)
}

/// A router being built, with the list of what it routes.
pub(crate) struct Table {
    pub router: Router<AppState>,
    pub list: Vec<(Method, &'static str)>,
}

impl Table {
    fn new() -> Self {
        Self {
            router: Router::new(),
            list: Vec::new(),
        }
    }

    fn add<H: Handler<T, AppState>, T: 'static>(
        mut self,
        method: Method,
        path: &'static str,
        h: H,
    ) -> Self {
        let filter = axum::routing::MethodFilter::try_from(method.clone())
            .unwrap_or(axum::routing::MethodFilter::GET);
        self.router = self.router.route(path, axum::routing::on(filter, h));
        self.list.push((method, path));
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::GET, path, h)
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::POST, path, h)
    }

    fn patch<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::PATCH, path, h)
    }

    fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::PUT, path, h)
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::DELETE, path, h)
    }
}

/// The routes everyone but advertisers reaches (the demo page's only under `--demo`),
/// and the advertiser's own.
pub(crate) fn build(demo_routes: bool) -> (Table, Table) {
    let main = Table::new()
        .post("/v1/batch", ingest::batch)
        .post("/v1/import", ingest::import)
        .post("/v1/identify", ingest::identify)
        .post("/v1/track", ingest::track)
        .post("/v1/page", ingest::page)
        .post("/v1/screen", ingest::screen)
        .post("/v1/group", ingest::group)
        .post("/v1/alias", ingest::alias)
        .post("/v1/consent", consent::record)
        .get("/v1/consent", consent::current)
        .post("/v1/consent/accept-all", consent::accept_all)
        .post("/v1/consent/reject-all", consent::reject_all)
        .get("/v1/consent/history", consent::history)
        .post("/v1/consent/signals", consent::import_signal)
        .get("/v1/consent/insights", consent::insight_reports)
        .get("/v1/me", me::me)
        .get("/v1/me/export", me::export)
        .post("/v1/me/erase", me::erase)
        .post("/v1/admin/subject-links", me::subject_link)
        .get("/v1/admin/requests", me::requests)
        .get("/me/enter", mypages::enter_form)
        .post("/me/enter", mypages::enter)
        .get("/me", mypages::home)
        .post("/me/consent", mypages::change_consent)
        .get("/me/export", mypages::export)
        .get("/me/receipts/{id}", mypages::receipt)
        .post("/me/logout", mypages::logout)
        .get("/me/erase", mypages::erase_form)
        .post("/me/fields/{name}", mypages::set_field)
        .post("/me/fields/{name}/remove", mypages::remove_field)
        .post("/me/erase", mypages::erase)
        .post("/me/loyalty/redeem", mypages::redeem)
        .get("/v1/me/fields", fields::list)
        .put("/v1/me/fields/{name}", fields::put)
        .delete("/v1/me/fields/{name}", fields::remove)
        .get("/v1/admin/segments", segments::list)
        .post("/v1/admin/segments/validate", segments::validate)
        .get("/v1/admin/segments/{name}", segments::get)
        .put("/v1/admin/segments/{name}", segments::put)
        .delete("/v1/admin/segments/{name}", segments::delete)
        .get("/v1/admin/segments/{name}/members", segments::members)
        .get("/v1/admin/segments/{name}/check", segments::check_one)
        .post("/v1/personalize", personalize::personalize)
        .get("/v1/me/loyalty", loyalty::wallet)
        .post("/v1/me/loyalty/redeem", loyalty::redeem)
        .post("/v1/loyalty/transactions", loyalty::transaction)
        .get("/v1/admin/loyalty", loyalty::figures)
        .post("/v1/admin/loyalty/adjustments", loyalty::adjust)
        .post("/v1/admin/loyalty/reversals", loyalty::reverse)
        .put("/v1/admin/loyalty/rewards/{id}/stock", loyalty::stock)
        .get("/v1/purposes", meta::purposes)
        .get("/v1/receipts/public-key", meta::receipt_key)
        .get("/v1/ledger/checkpoint", meta::ledger_checkpoint)
        .post("/v1/admin/subject-tokens", admin::subject_token)
        .get("/v1/admin/ledger/verify", admin::verify_ledger)
        .get("/v1/admin/stats", admin::stats)
        .get("/v1/admin/audit", admin::audit)
        .post("/v1/admin/advertisers", advertisers::create_advertiser)
        .get("/v1/admin/advertisers", advertisers::list_advertisers)
        .patch("/v1/admin/advertisers/{id}", advertisers::update_advertiser)
        .post(
            "/v1/admin/advertisers/{id}/rotate-key",
            advertisers::rotate_key,
        )
        .get("/v1/admin/insights/reports", advertisers::audit)
        .get("/candor.js", prompt::candor_js)
        .get("/candor-lint.js", prompt::lint_js)
        .get("/v1/prompt", prompt::config)
        .post("/v1/prompt/events", prompt::event)
        .post("/v1/admin/prompt/lint", prompt::lint)
        .post("/v1/admin/prompt/preview", prompt::preview)
        .post("/v1/admin/prompt/variants", prompt::save)
        .get("/v1/admin/prompt/variants", prompt::list)
        .patch("/v1/admin/prompt/variants/{id}", prompt::patch)
        .get("/v1/admin/prompt/stats", prompt::stats)
        .get("/admin", dashboard::to_dashboard)
        .get("/admin/", dashboard::dashboard)
        .get("/admin/login", dashboard::login_form)
        .post("/admin/login", dashboard::login)
        .post("/admin/logout", dashboard::logout)
        .post("/admin/variants/{id}", dashboard::toggle_variant)
        .get("/admin/variants/new", dashboard::editor)
        .post("/admin/variants", dashboard::save_variant)
        .post("/admin/variants/preview", dashboard::preview)
        .get("/admin/editor.js", dashboard::editor_js)
        .get("/admin/segments", audience_pages::page)
        .post("/admin/segments", audience_pages::save)
        .post("/admin/segments/{name}/delete", audience_pages::delete)
        .get("/admin/email", email_dashboard::page)
        .get("/healthz", meta::healthz)
        .get("/metrics", meta::metrics)
        .get("/openapi.json", meta::openapi)
        .get("/docs", meta::docs)
        .get("/.well-known/gpc.json", meta::gpc_json)
        .post("/v1/email/subscriptions", email::subscribe)
        .get("/v1/admin/email/lists", email::lists)
        .post("/v1/admin/email/campaigns", email::create)
        .get("/v1/admin/email/campaigns", email::list)
        .get("/v1/admin/email/campaigns/{id}", email::get)
        .get("/v1/admin/email/campaigns/{id}/messages", email::messages)
        .post("/v1/admin/email/campaigns/{id}/preview", email::preview)
        .post("/v1/admin/email/campaigns/{id}/test", email::test_send)
        .post("/v1/admin/email/campaigns/{id}/start", email::start)
        .post("/v1/admin/email/campaigns/{id}/cancel", email::cancel)
        .post("/v1/admin/email/feedback", email::feedback)
        .get("/email/subscribe", email_pages::subscribe_form)
        .post("/email/subscribe", email_pages::subscribe)
        .get("/email/confirm", email_pages::confirm_page)
        .post("/email/confirm", email_pages::confirm)
        .get("/email/unsubscribe", email_pages::unsubscribe_page)
        .post("/email/unsubscribe", email_pages::unsubscribe)
        .get("/me/signin", email_pages::signin_page)
        .post("/me/email/{name}/leave", mypages::leave_list)
        .post("/me/email/{name}/join", mypages::join_list)
        .post("/me/signin", email_pages::signin);
    // The demo publisher's page, only for the demo operator.
    let main = if demo_routes {
        main.get("/demo", demo::to_page)
            .get("/demo/", demo::page)
            .get("/demo/{script}", demo::script)
    } else {
        main
    };
    // The advertiser's own routes: the only ones an advertiser key reaches.
    let advertiser = Table::new()
        .post("/v1/insights/query", advertisers::query)
        .get("/v1/insights/schema", advertisers::schema)
        .get("/v1/insights/budget", advertisers::budget)
        .get("/v1/insights/reports", advertisers::reports)
        .get("/v1/insights/reports/{id}", advertisers::report);
    (main, advertiser)
}

/// Every (method, path) the router serves, from the same registration as the router.
pub fn route_list(demo_routes: bool) -> Vec<(Method, &'static str)> {
    let (main, advertiser) = build(demo_routes);
    main.list.into_iter().chain(advertiser.list).collect()
}
