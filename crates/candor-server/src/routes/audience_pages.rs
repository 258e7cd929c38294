//! The dashboard's audiences page (issue 14), `/admin/segments`: every segment with its
//! purpose, rule and size now, each segment's size over time as a chart, a form to add
//! or replace a segment (checked against its purpose exactly as the API checks it), and
//! the loyalty program's figures (members, points issued and redeemed, liability).
//!
//! Like the rest of the dashboard: a signed session cookie, a CSRF token on every form,
//! and charts drawn on the server (no script on the page).

use super::dashboard::{authorized_csrf, session_of};
use crate::audiences::parse_saved;
use crate::charts;
use crate::pages;
use crate::state::AppState;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use candor_core::{PurposeId, UnixMillis};
use candor_store::loyalty::SegmentRecord;
use minijinja::context;
use serde::Deserialize;
use utoipa::ToSchema;

/// Days of history the chart shows.
const CHART_DAYS: i64 = 30;

/// The audiences page's segment form: the segment `PUT /v1/admin/segments/{name}` takes,
/// with its rule in the text syntax.
#[derive(Deserialize, Default, ToSchema)]
#[schema(as = AdminSegmentForm)]
pub struct SegmentForm {
    /// The session's CSRF token.
    csrf: String,
    /// 1 to 64 characters of a-z, 0-9 and `_`, starting with a letter; an existing
    /// segment of that name is replaced.
    #[serde(default)]
    name: String,
    /// The purpose the segment is used for (a purpose id of the catalog).
    #[serde(default)]
    purpose: String,
    /// The rule, in the segment text syntax.
    #[serde(default)]
    text: String,
    /// At most 500 characters.
    #[serde(default)]
    description: String,
}

async fn render(
    st: &AppState,
    session: &str,
    status: StatusCode,
    error: Option<String>,
    form: Option<&SegmentForm>,
) -> Response {
    if let Err(e) = st.audiences.catch_up(st).await {
        return pages::message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    let today = st.now().day();
    let from = today - (CHART_DAYS - 1);
    let days: Vec<String> = (from..=today)
        .map(|d| crate::segment::format_time(UnixMillis::day_start(d))[..10].to_owned())
        .collect();
    let sizes = st
        .store
        .segment_sizes(i32::try_from(from).unwrap_or(0))
        .await
        .unwrap_or_default();
    let segments = st.audiences.segments();
    let series: Vec<(String, Vec<(usize, i64)>)> = segments
        .iter()
        .map(|s| {
            let points = sizes
                .iter()
                .filter(|z| z.name == s.record.name)
                .filter_map(|z| {
                    usize::try_from(i64::from(z.day) - from)
                        .ok()
                        .map(|i| (i, z.size))
                })
                .collect();
            (s.record.name.clone(), points)
        })
        .collect();
    let chart = if series.iter().any(|(_, p)| !p.is_empty()) {
        charts::segment_sizes_chart(&days, &series)
            .map_err(|e| tracing::warn!(error = %e, "segment chart not drawn"))
            .ok()
    } else {
        None
    };
    let rows: Vec<_> = segments
        .iter()
        .map(|s| {
            context! {
                name => s.record.name, purpose => s.record.purpose,
                description => s.record.description, text => s.rule.to_string(),
                size => st.audiences.count(st, &s.record.name).unwrap_or(0),
                history => series.iter().find(|(n, _)| *n == s.record.name)
                    .map(|(_, p)| p.iter().map(|(i, n)| (days[*i].clone(), *n)).collect::<Vec<_>>())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let purposes: Vec<_> = st
        .catalog
        .purposes()
        .iter()
        .map(|p| context! { id => p.id.as_str(), title => p.title })
        .collect();
    let loyalty = match crate::loyalty::program(st) {
        Some(_) => crate::loyalty::figures(st).await.ok(),
        None => None,
    };
    let offers: Vec<_> = st
        .audiences
        .offers
        .iter()
        .flat_map(|c| c.offers())
        .map(|o| {
            context! { id => o.id, placement => o.placement, title => o.title,
            priority => o.priority, when => o.when.as_ref().map(|r| r.to_string()) }
        })
        .collect();
    pages::render(
        status,
        "segments.html",
        context! {
            operator => st.settings.operator.name,
            csrf => st.sessions.csrf(session),
            rows, purposes, chart, error, offers,
            loyalty => minijinja::Value::from_serialize(&loyalty),
            form => form.map(|f| context! { name => f.name, purpose => f.purpose, text => f.text, description => f.description }),
        },
        false,
        vec![],
    )
}

/// `GET /admin/segments`
#[utoipa::path(get, path = "/admin/segments", tag = "pages",
    summary = "The dashboard's audiences page",
    description = "Every segment with its purpose, rule, size now and size over the last 30 days, the offers, the loyalty program's figures, and the form to add or replace a segment.",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "No session: to the sign-in page",
            headers(("Location" = String, description = "`/admin/login`"))),
        (status = 500, description = "The segments could not be brought up to date", content_type = "text/html", body = String),
    ))]
pub async fn page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(&st, &headers) else {
        return pages::redirect("/admin/login", vec![]);
    };
    render(&st, session, StatusCode::OK, None, None).await
}

/// `POST /admin/segments`: adds or replaces a segment from the form.
#[utoipa::path(post, path = "/admin/segments", tag = "pages",
    summary = "Add or replace a segment from the audiences page",
    description = "Checks the segment against its purpose exactly as `PUT /v1/admin/segments/{name}` does and saves it; a refused one is the page again with the form filled in and the reason.",
    request_body(content = SegmentForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Saved: back to the audiences page; without a session, to the sign-in page",
            headers(("Location" = String, description = "`/admin/segments`, or `/admin/login` without a session"))),
        (status = 400, description = "A bad name, purpose, description or rule: the page again with the reason", content_type = "text/html", body = String),
        (status = 403, description = "The form is malformed or its CSRF token does not match; nothing changed", content_type = "text/html", body = String),
        (status = 422, description = "The rule uses data its purpose may not use: the page again with the reason", content_type = "text/html", body = String),
        (status = 500, description = "The segment could not be saved", content_type = "text/html", body = String),
    ))]
pub async fn save(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SegmentForm>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    let session = match authorized_csrf(&st, &headers, form.as_ref().map(|f| f.csrf.as_str())) {
        Ok(s) => s,
        Err(r) => return r.page(),
    };
    let Some(f) = form else {
        return pages::message(StatusCode::BAD_REQUEST, "The form was incomplete.");
    };
    match checked(&st, &f) {
        Ok(record) => match parse_saved(&st, record) {
            Ok(saved) => {
                if let Err(e) = st.audiences.save(&st, saved).await {
                    return pages::message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
                }
                if let Err(e) = st.audiences.record_sizes(&st).await {
                    tracing::warn!(error = %e, "segment sizes not recorded");
                }
                pages::redirect("/admin/segments", vec![])
            }
            Err(why) => render(&st, session, StatusCode::BAD_REQUEST, Some(why), Some(&f)).await,
        },
        Err((status, why)) => render(&st, session, status, Some(why), Some(&f)).await,
    }
}

/// The form's segment, checked exactly as `PUT /v1/admin/segments/{name}` checks it.
fn checked(st: &AppState, f: &SegmentForm) -> Result<SegmentRecord, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    if PurposeId::parse(&f.name).is_err() {
        return Err(bad(
            "A segment's name is 1 to 64 characters of a-z, 0-9 and _, starting with a letter."
                .into(),
        ));
    }
    let purpose = PurposeId::parse(&f.purpose)
        .ok()
        .filter(|p| st.catalog.purpose(p).is_some())
        .ok_or_else(|| bad("Choose one of the purposes.".into()))?;
    if f.description.chars().count() > 500 {
        return Err(bad("The description is at most 500 characters.".into()));
    }
    let rule = candor_segments::parse_text(&f.text).map_err(|e| bad(format!("The rule: {e}")))?;
    let lookup = |n: &str| -> Option<PurposeId> {
        if n == f.name {
            return None;
        }
        st.audiences
            .purpose_of(n)
            .and_then(|p| PurposeId::parse(&p).ok())
    };
    candor_segments::check(&rule, &purpose, &st.catalog, &st.settings.fields, &lookup)
        .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, format!("Not saved: {e}.")))?;
    let now = st.now_ms();
    let created = st
        .audiences
        .segment(&f.name)
        .map_or(now, |s| s.record.created_ms);
    Ok(SegmentRecord {
        name: f.name.clone(),
        purpose: purpose.to_string(),
        rule: candor_segments::to_json(&rule).to_string(),
        description: f.description.clone(),
        created_ms: created,
        updated_ms: now,
    })
}

/// A dashboard form of one button: the session's CSRF token.
#[derive(Deserialize, ToSchema)]
#[schema(as = AdminSegmentDeleteForm)]
pub struct CsrfOnly {
    /// The session's CSRF token.
    csrf: String,
}

/// `POST /admin/segments/{name}/delete`
#[utoipa::path(post, path = "/admin/segments/{name}/delete", tag = "pages",
    summary = "Delete a segment from the audiences page",
    description = "Deletes the segment; an unknown name changes nothing.",
    params(("name" = String, Path, description = "The segment's name")),
    request_body(content = CsrfOnly, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Deleted (or no such segment): back to the audiences page; without a session, to the sign-in page",
            headers(("Location" = String, description = "`/admin/segments`, or `/admin/login` without a session"))),
        (status = 403, description = "The form is malformed or its CSRF token does not match; nothing changed", content_type = "text/html", body = String),
        (status = 500, description = "The segment could not be deleted", content_type = "text/html", body = String),
    ))]
pub async fn delete(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    if let Err(r) = authorized_csrf(&st, &headers, form.as_ref().map(|f| f.csrf.as_str())) {
        return r.page();
    }
    if st.audiences.segment(&name).is_some() {
        if let Err(e) = st.audiences.delete(&st, &name).await {
            return pages::message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
    }
    pages::redirect("/admin/segments", vec![])
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(page, save, delete))]
pub(crate) struct Api;
