//! The demo publisher (issue 12, `serve --demo` only): an app-store-like page at
//! `/demo/` that embeds candor.js with the demo's browser key and holds back three
//! tagged scripts, one per purpose, all served from here (no third-party asset).

use crate::config::demo::BROWSER_WRITE_KEY;
use crate::pages;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

const SCRIPTS: &[(&str, &str)] = &[
    (
        "analytics.js",
        include_str!("../../../../web/demo/analytics.js"),
    ),
    (
        "recommendations.js",
        include_str!("../../../../web/demo/recommendations.js"),
    ),
    ("ads.js", include_str!("../../../../web/demo/ads.js")),
];

const APPS: &[(&str, &str, &str)] = &[
    ("StepQuest", "Health & fitness", "4.7"),
    ("Pocket Budget", "Finance", "4.5"),
    ("Trail Maps", "Navigation", "4.6"),
    ("Sleep Well", "Health & fitness", "4.4"),
    ("Chef at Home", "Food & drink", "4.8"),
    ("Word Garden", "Games", "4.3"),
];

/// The demo page's language.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DemoQuery {
    /// The prompt's language (a language tag, e.g. `fr`); `en` when absent or not a
    /// language tag.
    lang: Option<String>,
}

/// `GET /demo/` (`?lang=fr` shows the prompt in French).
#[utoipa::path(get, path = "/demo/", tag = "pages",
    summary = "The demo publisher's page",
    description = "`serve --demo` only: a publisher's page that embeds candor.js with the demo's browser key and holds back one tagged script per purpose until it is granted.",
    params(DemoQuery),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
    ))]
pub async fn page(
    State(st): State<AppState>,
    q: Result<Query<DemoQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let lang = q
        .ok()
        .and_then(|Query(q)| q.lang)
        .and_then(|l| candor_core::lang::Language::parse(&l).ok())
        .map_or_else(|| "en".to_owned(), |l| l.to_string());
    pages::render(
        StatusCode::OK,
        "demo.html",
        minijinja::context! {
            operator => st.settings.operator.name,
            write_key => BROWSER_WRITE_KEY,
            apps => APPS,
            lang,
        },
        true,
        vec![],
    )
}

/// `GET /demo/{script}`: the page's tagged scripts.
#[utoipa::path(get, path = "/demo/{script}", tag = "pages",
    summary = "One of the demo page's tagged scripts",
    description = "`serve --demo` only.",
    params(("script" = String, Path, description = "`analytics.js`, `recommendations.js` or `ads.js`")),
    responses(
        (status = 200, description = "The script", content_type = "text/javascript", body = String),
    ))]
pub async fn script(Path(name): Path<String>) -> Response {
    match SCRIPTS.iter().find(|(n, _)| *n == name) {
        Some((_, body)) => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            *body,
        )
            .into_response(),
        None => crate::routes::meta::not_found().await.into_response(),
    }
}

/// `GET /demo`: the page lives at `/demo/`.
#[utoipa::path(get, path = "/demo", tag = "pages",
    summary = "To the demo page",
    description = "`serve --demo` only.",
    responses(
        (status = 303, description = "The page is at `/demo/`",
            headers(("Location" = String, description = "`/demo/`"))),
    ))]
pub async fn to_page() -> Response {
    pages::redirect("/demo/", vec![])
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(to_page, page, script))]
pub(crate) struct Api;
