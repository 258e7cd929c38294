//! The admin dashboard (issue 12): server-rendered pages behind the admin token, which
//! the login form exchanges for a session cookie (see [`crate::pages`] for the cookie,
//! CSRF and CSP rules every page follows).
//!
//! | route | role |
//! |---|---|
//! | `GET /admin/login`, `POST /admin/login` | anyone (the form takes the admin token) |
//! | `GET /admin/`, `POST /admin/logout`, `GET /admin/variants/new`, `POST /admin/variants`, `POST /admin/variants/preview`, `POST /admin/variants/{id}` | an admin session (cookie), and a CSRF token on every POST |
//! | `GET /admin/editor.js` | anyone (the editor's script) |

use crate::auth;
use crate::charts;
use crate::pages::{self, LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECONDS};
use crate::prompt::{RenderedDto, VariantDto};
use crate::routes::prompt::{period, report_for};
use crate::state::AppState;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn now_s(st: &AppState) -> i64 {
    st.now_ms() / 1000
}

fn login_page(st: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let token = pages::login_token();
    pages::render(
        status,
        "login.html",
        context! { operator => st.settings.operator.name, csrf => token.clone(), error },
        false,
        vec![pages::set_cookie(LOGIN_COOKIE, &token, "/admin", 600)],
    )
}

/// `GET /admin/login`
#[utoipa::path(get, path = "/admin/login", tag = "pages",
    summary = "The dashboard's sign-in page",
    description = "A form for the admin token, with a double-submit CSRF token (form field and `candor_login` cookie).",
    responses(
        (status = 200, description = "The sign-in form", content_type = "text/html", body = String,
            headers(("Set-Cookie" = String, description = "`candor_login`: the form's CSRF token (10 minutes, `Path=/admin`)"))),
    ))]
pub async fn login_form(State(st): State<AppState>) -> Response {
    login_page(&st, StatusCode::OK, None)
}

/// The dashboard's sign-in form.
#[derive(Deserialize, ToSchema)]
#[schema(as = AdminLoginForm)]
pub struct LoginForm {
    /// The admin token.
    token: String,
    /// Equal to the `candor_login` cookie (double submit).
    csrf: String,
}

/// `POST /admin/login`: the admin token for a session cookie.
#[utoipa::path(post, path = "/admin/login", tag = "pages",
    summary = "Sign in to the dashboard",
    description = "Exchanges the admin token for the dashboard's session cookie (`candor_admin`, `HttpOnly`, `SameSite=Strict`, `Path=/admin`, eight hours). Anyone may post it: the form carries the token. Every refusal is the sign-in form again, with a new CSRF cookie.",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: on to the dashboard",
            headers(("Location" = String, description = "`/admin/`"),
                ("Set-Cookie" = String, description = "`candor_admin`: the session; `candor_login` cleared"))),
        (status = 400, description = "The form is incomplete", content_type = "text/html", body = String),
        (status = 401, description = "Not the admin token, or none is configured", content_type = "text/html", body = String),
        (status = 403, description = "The CSRF token does not match its cookie", content_type = "text/html", body = String),
    ))]
pub async fn login(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return login_page(
            &st,
            StatusCode::BAD_REQUEST,
            Some("The form was incomplete."),
        );
    };
    if !pages::login_token_ok(&headers, &f.csrf) {
        return login_page(
            &st,
            StatusCode::FORBIDDEN,
            Some("The form expired. Please sign in again."),
        );
    }
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", f.token)) {
        h.insert(header::AUTHORIZATION, v);
    }
    if auth::admin(st.settings.admin_token.as_ref(), &h).is_err() {
        return login_page(
            &st,
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        );
    }
    match st.sessions.issue(now_s(&st)) {
        Some(session) => pages::redirect(
            "/admin/",
            vec![
                pages::set_cookie(SESSION_COOKIE, &session, "/admin", SESSION_SECONDS),
                pages::set_cookie(LOGIN_COOKIE, "", "/admin", 0),
            ],
        ),
        None => login_page(
            &st,
            StatusCode::UNAUTHORIZED,
            Some("No admin token is configured."),
        ),
    }
}

/// A dashboard form of one button: the session's CSRF token (and, to show or stop a
/// variant, `active`).
#[derive(Deserialize, ToSchema)]
#[schema(as = AdminCsrfForm)]
pub struct CsrfForm {
    /// The session's CSRF token.
    csrf: String,
    /// `POST /admin/variants/{id}`: `true` to show the variant; anything else, or
    /// nothing, stops it.
    active: Option<String>,
}

/// Why a dashboard POST is refused.
pub(crate) enum Refused {
    NoSession,
    BadCsrf,
}

impl Refused {
    pub(crate) fn page(self) -> Response {
        match self {
            Refused::NoSession => pages::redirect("/admin/login", vec![]),
            Refused::BadCsrf => pages::message(
                StatusCode::FORBIDDEN,
                "The form's security token did not match; nothing was changed.",
            ),
        }
    }
}

/// The session a POST acts under, once its CSRF token matches.
fn authorized_post<'a>(
    st: &AppState,
    headers: &'a HeaderMap,
    form: Option<&CsrfForm>,
) -> Result<&'a str, Refused> {
    let session = st
        .sessions
        .check(headers, now_s(st))
        .ok_or(Refused::NoSession)?;
    match form {
        Some(f) if st.sessions.csrf_ok(session, &f.csrf) => Ok(session),
        _ => Err(Refused::BadCsrf),
    }
}

/// The session a POST acts under, given the form's CSRF token (forms with more fields).
pub(crate) fn authorized_csrf<'a>(
    st: &AppState,
    headers: &'a HeaderMap,
    csrf: Option<&str>,
) -> Result<&'a str, Refused> {
    let session = st
        .sessions
        .check(headers, now_s(st))
        .ok_or(Refused::NoSession)?;
    match csrf {
        Some(c) if st.sessions.csrf_ok(session, c) => Ok(session),
        _ => Err(Refused::BadCsrf),
    }
}

/// The signed-in session of a page read, if any.
pub(crate) fn session_of<'a>(st: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    st.sessions.check(headers, now_s(st))
}

/// `POST /admin/logout`
#[utoipa::path(post, path = "/admin/logout", tag = "pages",
    summary = "Sign out of the dashboard",
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out (the session cookie cleared), or no session: to the sign-in page",
            headers(("Location" = String, description = "`/admin/login`"),
                ("Set-Cookie" = String, description = "`candor_admin` cleared (when signed out)"))),
        (status = 403, description = "The form is malformed or its CSRF token does not match; nothing changed", content_type = "text/html", body = String),
    ))]
pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(r) = authorized_post(&st, &headers, form.as_deref().ok()) {
        return r.page();
    }
    pages::redirect(
        "/admin/login",
        vec![pages::set_cookie(SESSION_COOKIE, "", "/admin", 0)],
    )
}

/// `POST /admin/variants/{id}`: start or stop showing a saved variant.
#[utoipa::path(post, path = "/admin/variants/{id}", tag = "pages",
    summary = "Show or stop showing a saved prompt variant",
    description = "Sets a saved variant active (`active=true`) or not. An unknown id changes nothing.",
    params(("id" = String, Path, description = "The variant's id")),
    request_body(content = CsrfForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Done (or no such variant): back to the dashboard; without a session, to the sign-in page",
            headers(("Location" = String, description = "`/admin/`, or `/admin/login` without a session"))),
        (status = 403, description = "The form is malformed or its CSRF token does not match; nothing changed", content_type = "text/html", body = String),
        (status = 500, description = "The saved variants could not be read", content_type = "text/html", body = String),
    ))]
pub async fn toggle_variant(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(r) = authorized_post(&st, &headers, form.as_deref().ok()) {
        return r.page();
    }
    let active = form.as_ref().ok().and_then(|f| f.active.as_deref()) == Some("true");
    st.prompt.invalidate();
    let saved = match st.prompt.saved(&st).await {
        Ok(s) => s,
        Err(e) => return pages::message(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    };
    let Some(s) = saved.iter().find(|s| s.variant.id.as_str() == id) else {
        return pages::redirect("/admin/", vec![]);
    };
    if let Err(e) = st
        .store
        .save_prompt_variant(crate::prompt::stored(&s.variant, active, st.now_ms()))
        .await
    {
        tracing::warn!(error = %e, "variant change not saved");
    }
    st.prompt.invalidate();
    pages::redirect("/admin/", vec![])
}

/// The days the dashboard shows (`YYYY-MM-DD`, inclusive): as `GET /v1/admin/prompt/stats`
/// takes them; a period it refuses falls back to the default one.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// First day (`YYYY-MM-DD`).
    from: Option<String>,
    /// Last day (`YYYY-MM-DD`).
    to: Option<String>,
}

#[derive(Serialize)]
struct Row {
    variant: String,
    impressions: u64,
    /// (rate, interval) per purpose, formatted
    cells: Vec<(String, String)>,
}

#[derive(Serialize)]
struct ComparisonRow {
    purpose: String,
    variant: String,
    difference: String,
    p: String,
    significant: bool,
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// `GET /admin/`: opt-in per purpose and variant over time, with intervals, the
/// comparison of variants, and the saved variants.
#[utoipa::path(get, path = "/admin/", tag = "pages",
    summary = "The dashboard",
    description = "Opt-in per purpose and prompt variant over the period, with intervals and charts, the comparison of variants, the saved variants, and people's most recent requests.",
    params(PeriodQuery),
    responses(
        (status = 200, description = "The dashboard", content_type = "text/html", body = String),
        (status = 303, description = "No session: to the sign-in page",
            headers(("Location" = String, description = "`/admin/login`"))),
        (status = 400, description = "Not even the default period could be computed", content_type = "text/html", body = String),
        (status = 500, description = "The prompt's counts could not be read", content_type = "text/html", body = String),
    ))]
pub async fn dashboard(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<PeriodQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(session) = st.sessions.check(&headers, now_s(&st)) else {
        return pages::redirect("/admin/login", vec![]);
    };
    let q = q.map(|Query(q)| q).unwrap_or(PeriodQuery {
        from: None,
        to: None,
    });
    let (from, to) = match period(&st, q.from.as_deref(), q.to.as_deref()) {
        Ok(p) => p,
        Err(_) => match period(&st, None, None) {
            Ok(p) => p,
            Err(e) => return pages::message(StatusCode::BAD_REQUEST, &e.message),
        },
    };
    let report = match report_for(&st, from, to).await {
        Ok(r) => r,
        Err(e) => return pages::message(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    };
    let purposes: Vec<_> = st
        .catalog
        .purposes()
        .iter()
        .map(|p| context! { id => p.id.as_str(), title => p.title })
        .collect();
    let days: Vec<String> = (from..=to).map(crate::prompt::day_string).collect();
    let mut charts = Vec::new();
    if !report.variants.is_empty() {
        for p in st.catalog.purposes() {
            match charts::opt_in_chart(p.id.as_str(), &days, &report.variants) {
                Ok(svg) => {
                    charts.push(context! { purpose => p.id.as_str(), title => p.title, svg })
                }
                Err(e) => tracing::warn!(purpose = %p.id, error = %e, "chart not drawn"),
            }
        }
    }
    let rows: Vec<Row> = report
        .variants
        .iter()
        .map(|v| Row {
            variant: v.variant.clone(),
            impressions: v.impressions,
            cells: st
                .catalog
                .purposes()
                .iter()
                .map(|p| match v.purposes.get(p.id.as_str()) {
                    Some(crate::prompt::Rate {
                        rate: Some(r),
                        interval: Some(i),
                        ..
                    }) => (percent(*r), format!("{}–{}", percent(i[0]), percent(i[1]))),
                    _ => ("–".into(), String::new()),
                })
                .collect(),
        })
        .collect();
    let comparisons: Vec<ComparisonRow> = report
        .comparisons
        .iter()
        .map(|c| ComparisonRow {
            purpose: c.purpose.clone(),
            variant: c.b.clone(),
            difference: format!("{:+.1} points", c.difference * 100.0),
            p: if c.p_value < 1e-4 {
                "< 0.0001".into()
            } else {
                format!("{:.4}", c.p_value)
            },
            significant: c.significant,
        })
        .collect();
    let variants: Vec<_> = match st.prompt.saved(&st).await {
        Ok(saved) => saved
            .iter()
            .map(|s| {
                context! { id => s.variant.id.as_str(), layout => s.variant.layout.as_str(),
                weight => s.variant.weight, active => s.active }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let requests = recent_requests(&st).await;
    pages::render(
        StatusCode::OK,
        "dashboard.html",
        context! {
            operator => st.settings.operator.name,
            csrf => st.sessions.csrf(session),
            report => context! { from => report.from, to => report.to },
            baseline => report.variants.first().map(|v| v.variant.clone()),
            purposes, charts, rows, comparisons, variants, requests,
        },
        false,
        vec![],
    )
}

/// People's most recent requests (issue 13), newest first, with when each is due and
/// whether it was answered in time: what an operator shows a regulator.
async fn recent_requests(st: &AppState) -> Vec<minijinja::Value> {
    let mut all = Vec::new();
    let mut after = 0;
    // Pages through the list (kept small: one row per request a person made).
    while let Ok(page) = st.store.requests(after, 1000).await {
        let Some(last) = page.last() else { break };
        after = last.id;
        all.extend(page);
        if all.len() > 100_000 {
            break;
        }
    }
    let now = st.now_ms();
    all.iter()
        .rev()
        .take(20)
        .map(|r| {
            let due = r.requested_ms.0.saturating_add(super::me::ANSWER_WITHIN_MS);
            let state = match r.completed_ms {
                Some(c) if c.0 <= due => "answered in time",
                Some(_) => "answered late",
                None if now > due => "overdue",
                None => "open",
            };
            let when = |ms: i64| {
                let t = crate::segment::format_time(candor_core::UnixMillis(ms));
                t.get(..16).unwrap_or(&t).replace('T', " ")
            };
            context! {
                kind => r.kind.as_str(), channel => r.channel, outcome => r.outcome,
                requested => when(r.requested_ms.0), due => when(due), state,
                answered => r.completed_ms.map(|c| when(c.0)),
            }
        })
        .collect()
}

/// `GET /admin`: the dashboard lives at `/admin/` (the cookie's path).
#[utoipa::path(get, path = "/admin", tag = "pages",
    summary = "To the dashboard",
    responses(
        (status = 303, description = "The dashboard is at `/admin/` (its cookie's path)",
            headers(("Location" = String, description = "`/admin/`"))),
    ))]
pub async fn to_dashboard() -> Response {
    pages::redirect("/admin/", vec![])
}

const EDITOR_SCRIPT: &str = include_str!("../../../../web/admin-editor.js");

/// `GET /admin/editor.js`: the variant editor's script (nothing secret in it).
#[utoipa::path(get, path = "/admin/editor.js", tag = "pages",
    summary = "The variant editor's script",
    description = "Loaded by `GET /admin/variants/new`; nothing secret in it, so anyone may fetch it.",
    responses(
        (status = 200, description = "The script", content_type = "text/javascript", body = String),
    ))]
pub async fn editor_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        EDITOR_SCRIPT,
    )
        .into_response()
}

fn editor_page(
    st: &AppState,
    session: &str,
    status: StatusCode,
    variant: &str,
    error: Option<String>,
    violations: Vec<crate::error::Violation>,
) -> Response {
    pages::render(
        status,
        "editor.html",
        context! {
            operator => st.settings.operator.name,
            csrf => st.sessions.csrf(session),
            variant, error, violations,
        },
        true,
        vec![],
    )
}

/// `GET /admin/variants/new`: the editor, starting from the standard variant.
#[utoipa::path(get, path = "/admin/variants/new", tag = "pages",
    summary = "The prompt variant editor",
    description = "An editor for a new prompt variant, starting from the standard one; its script (`/admin/editor.js`) previews and measures it in the browser before it is posted.",
    responses(
        (status = 200, description = "The editor", content_type = "text/html", body = String),
        (status = 303, description = "No session: to the sign-in page",
            headers(("Location" = String, description = "`/admin/login`"))),
    ))]
pub async fn editor(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = st.sessions.check(&headers, now_s(&st)) else {
        return pages::redirect("/admin/login", vec![]);
    };
    let mut start = VariantDto::of(&candor_core::prompt::Variant::standard());
    start.id = "my_variant".into();
    let json = serde_json::to_string_pretty(&start).unwrap_or_default();
    editor_page(&st, session, StatusCode::OK, &json, None, Vec::new())
}

/// A variant to preview.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EditorPreviewBody)]
pub struct PreviewBody {
    /// A prompt variant, as `POST /v1/admin/prompt/variants` takes it.
    #[schema(value_type = Object)]
    variant: VariantDto,
}

/// `POST /admin/variants/preview`: what the prompt would show for this variant, for
/// the editor to draw and measure. Session, and the CSRF token in `X-CSRF-Token`.
#[utoipa::path(post, path = "/admin/variants/preview", tag = "pages",
    summary = "Preview a prompt variant in the editor",
    description = "What candor.js would show for this variant (the same configuration as `GET /v1/prompt`), for the editor to draw and measure. The dashboard's session, and its CSRF token in the `X-CSRF-Token` header; unlike the other dashboard routes it answers in JSON, errors included. Changes nothing.",
    params(("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    request_body = PreviewBody,
    responses(
        (status = 200, description = "The prompt configuration for this variant, as `GET /v1/prompt` answers it", body = Object),
    ))]
pub async fn preview(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<serde_json::Value>, crate::error::ApiError> {
    use crate::error::{ApiError, Code};
    let session = st
        .sessions
        .check(&headers, now_s(&st))
        .ok_or_else(|| ApiError::new(Code::MissingCredentials, "sign in to the dashboard"))?;
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !st.sessions.csrf_ok(session, token) {
        return Err(ApiError::new(
            Code::Forbidden,
            "the CSRF token does not match",
        ));
    }
    let text = crate::body::read_text(&headers, body, 64 * 1024, Code::InvalidRequest).await?;
    let b: PreviewBody = crate::body::parse_json(&text)?;
    let variant = b.variant.parse(&st.catalog)?;
    Ok(axum::Json(crate::prompt::config(
        &st,
        &variant,
        st.catalog.language(),
    )))
}

/// The editor's form.
#[derive(Deserialize, ToSchema)]
#[schema(as = EditorVariantForm)]
pub struct VariantForm {
    /// The session's CSRF token.
    csrf: String,
    /// The variant as JSON, as `POST /v1/admin/prompt/variants` takes it.
    variant: String,
    /// What the editor measured of the drawn prompt in this browser, as JSON (the
    /// `rendered` of `POST /v1/admin/prompt/lint`).
    rendered: String,
}

/// `POST /admin/variants`: saves a variant the linter passes, judged on its definition
/// and on what the editor measured in this browser; otherwise the editor again, with
/// every rule broken named.
#[utoipa::path(post, path = "/admin/variants", tag = "pages",
    summary = "Save a prompt variant from the editor",
    description = "Saves (and shows) a variant the prompt linter passes, judged on its definition and on what the editor measured in the browser; otherwise the editor again, with every broken rule named.",
    request_body(content = VariantForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Saved: back to the dashboard; without a session, to the sign-in page",
            headers(("Location" = String, description = "`/admin/`, or `/admin/login` without a session"))),
        (status = 400, description = "The variant is not valid, or was not measured in the browser: the editor again", content_type = "text/html", body = String),
        (status = 403, description = "The form is malformed or its CSRF token does not match; nothing changed", content_type = "text/html", body = String),
        (status = 422, description = "The linter refused the variant: the editor again, naming each broken rule", content_type = "text/html", body = String),
        (status = 500, description = "The variant could not be saved: the editor again", content_type = "text/html", body = String),
    ))]
pub async fn save_variant(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<VariantForm>, FormRejection>,
) -> Response {
    let Some(session) = st.sessions.check(&headers, now_s(&st)) else {
        return Refused::NoSession.page();
    };
    let f = match form {
        Ok(Form(f)) if st.sessions.csrf_ok(session, &f.csrf) => f,
        _ => return Refused::BadCsrf.page(),
    };
    let again = |status, error: String, violations| {
        editor_page(&st, session, status, &f.variant, Some(error), violations)
    };
    let parsed = serde_json::from_str::<VariantDto>(&f.variant)
        .map_err(crate::body::json_error)
        .and_then(|v| v.parse(&st.catalog));
    let variant = match parsed {
        Ok(v) => v,
        Err(e) => return again(StatusCode::BAD_REQUEST, e.message, Vec::new()),
    };
    let rendered = match serde_json::from_str::<RenderedDto>(&f.rendered)
        .map_err(crate::body::json_error)
        .and_then(RenderedDto::into_core)
    {
        Ok(r) => r,
        Err(_) => {
            return again(
                StatusCode::BAD_REQUEST,
                "The variant was not measured in the browser; use Check and save (it needs JavaScript).".into(),
                Vec::new(),
            )
        }
    };
    if let Err(e) = crate::prompt::lint(&st.settings.prompt, &st.catalog, &variant, Some(&rendered))
    {
        return again(StatusCode::UNPROCESSABLE_ENTITY, e.message, e.violations);
    }
    if let Err(e) = st
        .store
        .save_prompt_variant(crate::prompt::stored(&variant, true, st.now_ms()))
        .await
    {
        return again(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::error::ApiError::from(e).message,
            Vec::new(),
        );
    }
    st.prompt.invalidate();
    pages::redirect("/admin/", vec![])
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    to_dashboard,
    dashboard,
    login_form,
    login,
    logout,
    toggle_variant,
    editor,
    save_variant,
    preview,
    editor_js
))]
pub(crate) struct Api;
