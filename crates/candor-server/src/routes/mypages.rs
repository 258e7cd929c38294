//! The person's own pages (issue 13): sign in with a link (or candor.js's anonymous
//! id), see everything held, change any consent, download receipts and a full export,
//! and erase. Server-rendered, no script needed; every page follows the rules in
//! [`crate::pages`] (strict CSP with a nonce, `no-store`), the session is
//! [`crate::person`]'s cookie, and every POST carries the session's CSRF token.
//!
//! | route | role |
//! |---|---|
//! | `GET /me/enter`, `POST /me/enter` | anyone: the form carries a single-use link, or a browser key and its anonymous id |
//! | `GET /me`, `POST /me/consent`, `POST /me/fields/{name}`, `POST /me/fields/{name}/remove`, `GET /me/export`, `GET /me/receipts/{id}`, `GET /me/erase`, `POST /me/erase`, `POST /me/logout` | the person's session cookie, and its CSRF token on every POST |
//!
//! A session's power is re-derived on every request from what the store holds now
//! ([`acting`]): the consent API's own rule (`pipeline::consent`) decides, as if the
//! person had come with a subject token (a link) or with the browser key and the
//! anonymous id (candor.js).

use crate::auth;
use crate::error::ApiError;
use crate::mydata::{self, Depth};
use crate::pages;
use crate::person::{Session, Via, COOKIE, ENTER_COOKIE, SESSION_SECONDS};
use crate::pipeline::consent::{self, Actor, Named};
use crate::state::AppState;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use candor_core::consent::{Action, Channel};
use candor_core::crypto::IdKind;
use candor_core::ledger::Evidence;
use candor_core::PurposeId;
use candor_store::RequestKind;
use minijinja::context;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

fn page(status: StatusCode, template: &str, ctx: minijinja::Value) -> Response {
    pages::render(status, template, ctx, false, vec![])
}

/// A page that only says something, with a way back.
fn say(status: StatusCode, title: &str, message: &str, back: bool) -> Response {
    page(status, "me_message.html", context! { title, message, back })
}

fn signed_out() -> Response {
    say(
        StatusCode::UNAUTHORIZED,
        "Please sign in again",
        "Your session has ended, or this page needs one. Ask for a new link from the site you came from, or open “See my data” from its privacy choices.",
        false,
    )
}

/// What a session may do now: act as the person's subject token would (a link), or as
/// the browser key would for its anonymous id (candor.js), under the consent API's own
/// rule. `None` when the subject is gone (erased) or the rule no longer lets it act.
async fn acting(st: &AppState, s: &Session) -> Option<(Actor, Named)> {
    let ids = st.store.identities(s.subject).await.ok()?;
    let (actor, user, anon) = match &s.via {
        // A link acts as the person's account; a subscriber without one (a link
        // mailed to their address, `POST /me/signin`) acts as their address.
        Via::Link => match ids.iter().find(|i| i.kind == IdKind::UserId) {
            Some(user) => (Actor::User(user.value.clone()), None, None),
            None => {
                let email = ids.iter().find(|i| i.kind == IdKind::Email)?;
                (Actor::Email(email.value.clone()), None, None)
            }
        },
        Via::Anonymous(src) => {
            let anon = ids.iter().find(|i| i.kind == IdKind::AnonymousId)?;
            (
                Actor::Browser(src.clone()),
                None,
                Some(anon.value.expose().clone()),
            )
        }
    };
    let named = consent::identities(&st.master, &actor, user, anon.as_deref()).ok()?;
    match consent::resolve(st, &named) {
        Ok(Some(subject)) if subject == s.subject => Some((actor, named)),
        _ => None,
    }
}

/// The request's session, if genuine, unexpired and still able to act.
async fn session(st: &AppState, headers: &HeaderMap) -> Option<(Session, Actor, Named)> {
    let value = pages::cookie(headers, COOKIE)?;
    let s = st.person_keys.check(value, st.now_ms() / 1000)?;
    let (actor, named) = acting(st, &s).await?;
    Some((s, actor, named))
}

/// A POST's session and its CSRF token checked: what may act, or the page to answer.
async fn posted(
    st: &AppState,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<(Session, Actor, Named), Response> {
    let Some((s, actor, named)) = session(st, headers).await else {
        return Err(signed_out());
    };
    if !csrf.is_some_and(|c| st.person_keys.csrf_ok(&s, c)) {
        return Err(say(
            StatusCode::FORBIDDEN,
            "The form expired",
            "Please reload the page and try again.",
            true,
        ));
    }
    Ok((s, actor, named))
}

/// A page that ends the session (sign-out, erasure) and says so.
fn ending(title: &str, message: &str) -> Response {
    let mut r = say(StatusCode::OK, title, message, false);
    let (k, v) = pages::set_cookie(COOKIE, "", "/me", 0);
    if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
        r.headers_mut().append(k, v);
    }
    r
}

fn accessor(s: &Session) -> &'static str {
    match s.via {
        Via::Link => "your data page (signed in with a link)",
        Via::Anonymous(_) => "your data page (this browser's anonymous id)",
    }
}

/// A sign-in link: `t`, or `k` and `a` together. Any other parameter makes the link
/// incomplete.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EnterQuery {
    /// A single-use sign-in token (`POST /v1/admin/subject-links`, or mailed by
    /// `POST /me/signin`).
    t: Option<String>,
    /// A browser write key (with `a`: candor.js's "See my data").
    k: Option<String>,
    /// candor.js's anonymous id (with `k`).
    a: Option<String>,
}

/// `GET /me/enter`: a page with one button that signs in. Following a link does not
/// spend it (mail scanners follow links); pressing the button does.
#[utoipa::path(get, path = "/me/enter", tag = "pages",
    summary = "The sign-in page of a person's own pages",
    description = "Checks the link without spending it and answers with a page of one button that posts it to `POST /me/enter`, with a double-submit CSRF token (form field and `candor_enter` cookie).",
    params(EnterQuery),
    responses(
        (status = 200, description = "The sign-in button", content_type = "text/html", body = String,
            headers(("Set-Cookie" = String, description = "`candor_enter`: the form's CSRF token (10 minutes, `Path=/me`)"))),
        (status = 400, description = "The link is incomplete (no `t`, nor `k` and `a`) or carries another parameter", content_type = "text/html", body = String),
        (status = 401, description = "The token is forged or expired", content_type = "text/html", body = String),
    ))]
pub async fn enter_form(
    State(st): State<AppState>,
    q: Result<Query<EnterQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return say(
            StatusCode::BAD_REQUEST,
            "This link is incomplete",
            "Ask for a new one.",
            false,
        );
    };
    if q.t.is_none() && (q.k.is_none() || q.a.is_none()) {
        return say(
            StatusCode::BAD_REQUEST,
            "This link is incomplete",
            "Ask for a new one.",
            false,
        );
    }
    if let Some(t) = &q.t {
        if st.person_keys.check_link(t, st.now()).is_err() {
            return invalid_link();
        }
    }
    let csrf = pages::login_token();
    pages::render(
        StatusCode::OK,
        "me_enter.html",
        context! {
            operator => st.settings.operator.name,
            t => q.t, k => q.k, a => q.a, csrf => csrf.clone(),
        },
        false,
        vec![pages::set_cookie(ENTER_COOKIE, &csrf, "/me", 600)],
    )
}

fn invalid_link() -> Response {
    say(
        StatusCode::UNAUTHORIZED,
        "This link does not work",
        "It may have expired or been used already. Ask the site you came from for a new one.",
        false,
    )
}

/// The sign-in form `GET /me/enter` renders.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PersonEnterForm)]
pub struct EnterForm {
    /// Equal to the `candor_enter` cookie (double submit).
    csrf: String,
    /// A single-use sign-in token; when present, `k` and `a` are not read.
    t: Option<String>,
    /// A browser write key (with `a`).
    k: Option<String>,
    /// candor.js's anonymous id (with `k`).
    a: Option<String>,
}

/// `POST /me/enter`: spends the link (or checks the browser key's anonymous id) and
/// starts a session.
#[utoipa::path(post, path = "/me/enter", tag = "pages",
    summary = "Sign in to a person's own pages",
    description = "Spends the single-use link (or checks that the browser key's anonymous id names someone it may act for), records the access and starts the person's session (`candor_me` cookie, `Path=/me`). Anyone may post it: the form carries its own credential.",
    request_body(content = EnterForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: on to the person's page",
            headers(("Location" = String, description = "`/me`"),
                ("Set-Cookie" = String, description = "`candor_me`: the session; `candor_enter` cleared"))),
        (status = 200, description = "The anonymous id names nobody: nothing is held, no session", content_type = "text/html", body = String),
        (status = 400, description = "The form is not a well-formed sign-in form", content_type = "text/html", body = String),
        (status = 401, description = "The link is forged, expired or spent, or the browser key is not a browser key", content_type = "text/html", body = String),
        (status = 403, description = "The CSRF token does not match its cookie, or the anonymous id is linked to an account (a link is needed)", content_type = "text/html", body = String),
    ))]
pub async fn enter(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<EnterForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return say(
            StatusCode::BAD_REQUEST,
            "The form was incomplete",
            "Please try again.",
            false,
        );
    };
    if !pages::double_submit_ok(&headers, ENTER_COOKIE, &f.csrf) {
        return say(
            StatusCode::FORBIDDEN,
            "The form expired",
            "Please open your link again.",
            false,
        );
    }
    let now = st.now();
    let (subject, via) = if let Some(t) = &f.t {
        let Ok(link) = st.person_keys.check_link(t, now) else {
            return invalid_link();
        };
        match st.store.spend_link(link.nonce, link.expires, now).await {
            Ok(true) => {}
            Ok(false) => return invalid_link(),
            Err(e) => return ApiError::from(e).into_response(),
        }
        (link.subject, Via::Link)
    } else {
        let (Some(k), Some(a)) = (&f.k, &f.a) else {
            return invalid_link();
        };
        let Some(src) = st.sources.authenticate(k).filter(|s| auth::is_browser(s)) else {
            return invalid_link();
        };
        let actor = Actor::Browser(src.id.clone());
        let Ok(named) = consent::identities(&st.master, &actor, None, Some(a)) else {
            return invalid_link();
        };
        match consent::resolve(&st, &named) {
            Ok(Some(s)) => (s, Via::Anonymous(src.id.clone())),
            Ok(None) => {
                return say(
                    StatusCode::OK,
                    "Nothing is held about you",
                    "This browser has made no choices here, so there is nothing to show, change or erase.",
                    false,
                )
            }
            Err(_) => {
                return say(
                    StatusCode::FORBIDDEN,
                    "Please sign in through the site",
                    "This browser's id is linked to an account: ask the site you came from for a link to your data.",
                    false,
                )
            }
        }
    };
    let probe = Session {
        subject,
        via: via.clone(),
        value: String::new(),
    };
    if acting(&st, &probe).await.is_none() {
        return invalid_link();
    }
    let value = st.person_keys.issue(subject, &via, now.0 / 1000);
    if let Err(e) = mydata::record(
        &st,
        subject,
        RequestKind::Access,
        "page",
        accessor(&probe),
        "you signed in to see your data",
    )
    .await
    {
        return e.into_response();
    }
    pages::redirect(
        "/me",
        vec![
            pages::set_cookie(COOKIE, &value, "/me", SESSION_SECONDS),
            pages::set_cookie(ENTER_COOKIE, "", "/me", 0),
        ],
    )
}

/// `GET /me`: everything held, and the forms to change it.
#[utoipa::path(get, path = "/me", tag = "pages",
    summary = "A person's own page",
    description = "Everything held about the person (the same gathering as `GET /v1/me`), with the forms to change their consent, answers and mailing lists, the loyalty wallet and what personalization picks for them. The read is written to their access log.",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 401, description = "No session, or it expired or can no longer act (the person was erased)", content_type = "text/html", body = String),
    ))]
pub async fn home(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some((s, _, _)) = session(&st, &headers).await else {
        return signed_out();
    };
    let data = match mydata::gather(&st, s.subject, Depth::Summary).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = st
        .store
        .record_access(candor_store::Access {
            subject: s.subject,
            time_ms: st.now(),
            accessor: accessor(&s).into(),
            purpose: String::new(),
            why: "you looked at your data".into(),
        })
        .await
    {
        return ApiError::from(e).into_response();
    }
    let mut data = serde_json::to_value(&data).unwrap_or_default();
    // The newest messages as the person sent them, laid out to read.
    if let Some(items) = data["events"]["items"].as_array_mut() {
        for e in items {
            let pretty = serde_json::to_string_pretty(&e["message"]).unwrap_or_default();
            e["message"] = serde_json::Value::String(pretty);
        }
    }
    // The loyalty wallet, and what is personalized for the person and why (issue 14).
    let wallet = if crate::loyalty::program(&st).is_some() {
        match crate::loyalty::wallet(&st, Some(s.subject)).await {
            Ok(w) => Some(w),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let picked = picked_for(&st, s.subject);
    let lists = match lists_for(&st, s.subject).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    page(
        StatusCode::OK,
        "me.html",
        context! {
            lists => minijinja::Value::from_serialize(&lists),
            operator => st.settings.operator.name,
            csrf => st.person_keys.csrf(&s),
            data => minijinja::Value::from_serialize(&data),
            anonymous => matches!(s.via, Via::Anonymous(_)),
            wallet => minijinja::Value::from_serialize(&wallet),
            picked => minijinja::Value::from_serialize(&picked),
            redeem_key => hex::encode(rand::random::<[u8; 12]>()),
        },
    )
}

/// For each placement, the offers personalization picks for the person now and why (the
/// reasons name the data used): the person sees what the operator's site would show.
fn picked_for(st: &AppState, subject: candor_core::SubjectId) -> Vec<serde_json::Value> {
    let (Some(offers), Some(bit)) = (
        &st.audiences.offers,
        crate::audiences::personalization_bit(st),
    ) else {
        return Vec::new();
    };
    let granted = st.store.index().granted(&subject);
    let engine = st.audiences.engine();
    let mut placements: Vec<&str> = offers.offers().map(|o| o.placement.as_str()).collect();
    placements.sort_unstable();
    placements.dedup();
    placements
        .into_iter()
        .filter_map(|p| {
            let d = offers.decide(
                &engine,
                p,
                Some(&subject),
                bit,
                granted,
                &st.settings.fields,
                3,
            )?;
            let items: Vec<serde_json::Value> = d
                .items
                .iter()
                .filter(|c| !c.reasons.is_empty())
                .map(|c| {
                    serde_json::json!({
                        "title": c.offer.title,
                        "because": c.reasons.iter().map(|r| r.sentence()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Some(serde_json::json!({"placement": p, "items": items}))
        })
        .collect()
}

/// The redeem form on `GET /me`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PersonRedeemForm)]
pub struct RedeemForm {
    /// The session's CSRF token.
    csrf: String,
    /// The reward's id.
    reward: String,
    /// A fresh key per page: submitting the same form twice is one redemption
    /// (1 to 64 characters).
    key: String,
}

/// `POST /me/loyalty/redeem`: the person spends points on a reward.
#[utoipa::path(post, path = "/me/loyalty/redeem", tag = "pages",
    summary = "Redeem a loyalty reward from a person's page",
    description = "Spends the person's points on a reward, as `POST /v1/me/loyalty/redeem` does; a refusal is a page whose status is that of the API's error code.",
    request_body(content = RedeemForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Redeemed (or the same form posted again): back to the wallet",
            headers(("Location" = String, description = "`/me#loyalty`"))),
        (status = 400, description = "The form is malformed, or its key is empty or longer than 64 characters", content_type = "text/html", body = String),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
        (status = 403, description = "The CSRF token does not match, or the person is not in the program (`loyalty_not_granted`)", content_type = "text/html", body = String),
        (status = 404, description = "No loyalty program, no such reward, or the person is gone", content_type = "text/html", body = String),
        (status = 409, description = "Too few points, out of stock, or the key was used for another transaction", content_type = "text/html", body = String),
        (status = 500, description = "The store failed", content_type = "text/html", body = String),
        (status = 503, description = "The store is unavailable or shutting down", content_type = "text/html", body = String),
    ))]
pub async fn redeem(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<RedeemForm>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    let (s, _, _) = match posted(&st, &headers, form.as_ref().map(|f| f.csrf.as_str())).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(f) = form else {
        return say(
            StatusCode::BAD_REQUEST,
            "That did not work",
            "Please reload the page.",
            true,
        );
    };
    if f.key.is_empty() || f.key.len() > 64 {
        return say(
            StatusCode::BAD_REQUEST,
            "That did not work",
            "Please reload the page.",
            true,
        );
    }
    let key = format!("page:{}", f.key);
    match super::loyalty::redeem_for(&st, s.subject, &f.reward, key, "person").await {
        Ok(_) => pages::redirect("/me#loyalty", vec![]),
        Err(e) => say(
            e.code.status(),
            "That reward could not be redeemed",
            &e.message,
            true,
        ),
    }
}

/// One purpose's consent form on `GET /me`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PersonConsentForm)]
pub struct ConsentForm {
    /// The session's CSRF token.
    csrf: String,
    /// A purpose id of the catalog.
    purpose: String,
    /// `grant` or `withdraw`.
    #[schema(value_type = ConsentActionDoc)]
    action: String,
}

/// A choice the person's page can post (documentation only: the handler matches the
/// text itself, to answer with a page).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = PersonConsentAction)]
enum ConsentActionDoc {
    #[schema(rename = "grant")]
    Grant,
    #[schema(rename = "withdraw")]
    Withdraw,
}

/// `POST /me/consent`: one purpose changed, through the consent API's own path
/// (channel `preference_center`), then back to the page.
#[utoipa::path(post, path = "/me/consent", tag = "pages",
    summary = "Grant or withdraw one purpose from a person's page",
    description = "Records the change in the ledger through the consent API's own path (channel `preference_center`; `Sec-GPC: 1` applies as there).",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Recorded: back to the person's choices",
            headers(("Location" = String, description = "`/me#choices`"))),
        (status = 400, description = "Unknown purpose, or a choice other than `grant` or `withdraw`", content_type = "text/html", body = String),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
        (status = 403, description = "The form is malformed or its CSRF token does not match", content_type = "text/html", body = String),
    ))]
pub async fn change_consent(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<ConsentForm>, FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    let (_, actor, named) =
        match posted(&st, &headers, form.as_ref().map(|f| f.csrf.as_str())).await {
            Ok(p) => p,
            Err(r) => return r,
        };
    let Some(f) = form else {
        return signed_out();
    };
    let Some(purpose) = PurposeId::parse(&f.purpose)
        .ok()
        .filter(|p| st.catalog.purpose(p).is_some())
    else {
        return say(
            StatusCode::BAD_REQUEST,
            "Unknown purpose",
            "Please reload the page.",
            true,
        );
    };
    let action = match f.action.as_str() {
        "grant" => Action::Grant,
        "withdraw" => Action::Withdraw,
        _ => {
            return say(
                StatusCode::BAD_REQUEST,
                "Unknown choice",
                "Please reload the page.",
                true,
            )
        }
    };
    let (cmds, _) = consent::commands(
        &st.catalog,
        consent::Request {
            named,
            actor: actor.recorded(),
            choices: vec![(purpose, action)],
            channel: Channel::PreferenceCenter,
            evidence: Evidence::default(),
            gpc: super::gpc_signal(&headers),
            notice_language: None,
            time: st.now(),
        },
    );
    match st.store.apply_consents_atomically(cmds).await {
        Ok(_) => pages::redirect("/me#choices", vec![]),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The answer form `POST /me/fields/{name}` reads (documentation only: the handler reads
/// the pairs itself, since a many-of field sends `values` once per ticked box).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = PersonFieldForm)]
struct FieldFormDoc {
    /// The session's CSRF token.
    csrf: String,
    /// The answer, for every kind of field but many-of (an integer or month is parsed
    /// as a number).
    value: Option<String>,
    /// One per ticked box, for a many-of field.
    values: Option<Vec<String>>,
    /// For an aggregate field: present (any value) to share the answer in aggregates,
    /// absent to stop sharing it.
    share: Option<String>,
}

/// `POST /me/fields/{name}`: one answer set or changed (provenance `volunteered`), through
/// the same path as `PUT /v1/me/fields/{name}`. The form sends `value` (or `values`, one
/// per ticked box, for a many-of field) and, for an aggregate field, `share`.
#[utoipa::path(post, path = "/me/fields/{name}", tag = "pages",
    summary = "Set one volunteered answer from a person's page",
    description = "Sets the field (provenance `volunteered`) exactly as `PUT /v1/me/fields/{name}` does, the loyalty program's bonus for telling included.",
    params(("name" = String, Path, description = "A field the operator asks about")),
    request_body(content = FieldFormDoc, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Saved: back to the person's answers",
            headers(("Location" = String, description = "`/me#told`"))),
        (status = 400, description = "The answer does not fit the field", content_type = "text/html", body = String),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
        (status = 403, description = "The form is malformed or its CSRF token does not match", content_type = "text/html", body = String),
        (status = 404, description = "The operator asks no such question", content_type = "text/html", body = String),
    ))]
pub async fn set_field(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let pairs = form.map(|Form(p)| p).unwrap_or_default();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (s, _, named) = match posted(&st, &headers, get("csrf")).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(spec) = super::fields::field_named(&st, &name) else {
        return say(
            StatusCode::NOT_FOUND,
            "No such question",
            "Please reload the page.",
            true,
        );
    };
    use candor_core::field::FieldKind;
    let value = match &spec.kind {
        FieldKind::ManyOf { .. } => serde_json::Value::from(
            pairs
                .iter()
                .filter(|(k, _)| k == "values")
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>(),
        ),
        FieldKind::Integer { .. } | FieldKind::Month => {
            let v = get("value").unwrap_or("").trim();
            v.parse::<i64>()
                .map_or_else(|_| serde_json::Value::from(v), serde_json::Value::from)
        }
        _ => serde_json::Value::from(get("value").unwrap_or("")),
    };
    let share = spec.aggregate.then(|| get("share").is_some());
    match super::fields::set(&st, &named, s.subject, spec, &value, share).await {
        Ok(()) => pages::redirect("/me#told", vec![]),
        Err(e) if e.code == crate::error::Code::InvalidFieldValue => say(
            StatusCode::BAD_REQUEST,
            "That answer does not fit",
            &e.message,
            true,
        ),
        Err(e) => e.into_response(),
    }
}

/// `POST /me/fields/{name}/remove`: one answer removed.
#[utoipa::path(post, path = "/me/fields/{name}/remove", tag = "pages",
    summary = "Remove one volunteered answer from a person's page",
    description = "Removes the answer (and stops sharing it in aggregates), also under a field the operator no longer asks about.",
    params(("name" = String, Path, description = "The field's name")),
    request_body(content = CsrfOnly, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Removed (or nothing was held): back to the person's answers",
            headers(("Location" = String, description = "`/me#told`"))),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
        (status = 403, description = "The form is malformed or its CSRF token does not match", content_type = "text/html", body = String),
        (status = 404, description = "Not a field name", content_type = "text/html", body = String),
    ))]
pub async fn remove_field(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let csrf = form.ok().map(|Form(f)| f.csrf);
    let (s, _, named) = match posted(&st, &headers, csrf.as_deref()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = match super::fields::field_named(&st, &name) {
        Ok(spec) => super::fields::unset(&st, &named, s.subject, spec).await,
        // A value held under a field the operator no longer asks about: the person can
        // still remove it.
        Err(_) => match candor_core::field::FieldName::parse(&name) {
            Ok(field) => st
                .store
                .remove_field(s.subject, &field)
                .await
                .map(|_| ())
                .map_err(Into::into),
            Err(_) => {
                return say(
                    StatusCode::NOT_FOUND,
                    "No such answer",
                    "Please reload the page.",
                    true,
                )
            }
        },
    };
    match result {
        Ok(()) => pages::redirect("/me#told", vec![]),
        Err(e) => e.into_response(),
    }
}

/// The operator's mailing lists and where the person stands on each (issue 16), when
/// email is configured and the person has an address here.
async fn lists_for(
    st: &AppState,
    subject: candor_core::SubjectId,
) -> Result<Option<Vec<serde_json::Value>>, candor_store::StoreError> {
    let Some(mail) = &st.mail else {
        return Ok(None);
    };
    if crate::email::address_of(st, subject).await?.is_none() {
        return Ok(None);
    }
    let subs = st.store.email().subscriptions(subject).await?;
    Ok(Some(
        mail.settings
            .lists
            .iter()
            .map(|l| {
                let status = subs
                    .iter()
                    .find(|x| x.list == l.name)
                    .map_or("none", |x| x.status.as_str());
                serde_json::json!({
                    "name": l.name, "title": l.title, "description": l.description,
                    "status": status,
                })
            })
            .collect(),
    ))
}

/// `POST /me/email/{list}/leave`: leaves a list at once (a ledger record, the address
/// suppressed for it).
#[utoipa::path(post, path = "/me/email/{name}/leave", tag = "pages",
    summary = "Leave a mailing list from a person's page",
    description = "Unsubscribes the person's address at once: a ledger record (channel `preference_center`), the address suppressed for the list.",
    params(("name" = String, Path, description = "The list's name")),
    request_body(content = CsrfOnly, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Left: back to the person's lists",
            headers(("Location" = String, description = "`/me#lists`"))),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
        (status = 403, description = "The form is malformed or its CSRF token does not match", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured, no such list, or the person has no address", content_type = "text/html", body = String),
    ))]
pub async fn leave_list(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(list): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let csrf = form.ok().map(|Form(f)| f.csrf);
    let (s, actor, _) = match posted(&st, &headers, csrf.as_deref()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(mail) = st.mail.clone() else {
        return say(StatusCode::NOT_FOUND, "No such list", "", true);
    };
    match crate::email::flows::leave(
        &st,
        &mail,
        s.subject,
        &list,
        actor.recorded(),
        Channel::PreferenceCenter,
        None,
    )
    .await
    {
        Ok(_) => pages::redirect("/me#lists", vec![]),
        Err(_) => say(
            StatusCode::NOT_FOUND,
            "No such list",
            "Please reload the page.",
            true,
        ),
    }
}

/// `POST /me/email/{list}/join`: asks to join; the confirmation goes by mail to the
/// person's address (double opt-in, whoever is signed in).
#[utoipa::path(post, path = "/me/email/{name}/join", tag = "pages",
    summary = "Ask to join a mailing list from a person's page",
    description = "A pending subscription for the person's address and a confirmation mail (double opt-in): nothing is sent from the list until the link in it is followed.",
    params(("name" = String, Path, description = "The list's name")),
    request_body(content = CsrfOnly, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Asked: a page saying the confirmation is on its way", content_type = "text/html", body = String),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
        (status = 403, description = "The form is malformed or its CSRF token does not match", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured, the person has no address, or no such list", content_type = "text/html", body = String),
    ))]
pub async fn join_list(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(list): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let csrf = form.ok().map(|Form(f)| f.csrf);
    let (s, actor, _) = match posted(&st, &headers, csrf.as_deref()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (Some(mail), Ok(Some((address, _)))) = (
        st.mail.clone(),
        crate::email::address_of(&st, s.subject).await,
    ) else {
        return say(StatusCode::NOT_FOUND, "No address to send to", "", true);
    };
    let Some(spec) = mail.settings.list(&list).cloned() else {
        return say(
            StatusCode::NOT_FOUND,
            "No such list",
            "Please reload the page.",
            true,
        );
    };
    match crate::email::flows::ask(
        &st,
        &mail,
        &address,
        &spec,
        actor.recorded(),
        candor_core::ledger::Evidence::default(),
    )
    .await
    {
        Ok(_) => say(
            StatusCode::OK,
            "Check your inbox",
            &format!(
                "We sent a confirmation link for “{}” to your address. Nothing will be sent until you follow it.",
                spec.title
            ),
            true,
        ),
        Err(e) => e.into_response(),
    }
}

/// `GET /me/export`: the whole export as a download.
#[utoipa::path(get, path = "/me/export", tag = "pages",
    summary = "Download everything held about the signed-in person",
    description = "The export `GET /v1/me/export` answers with (every event included), as a file; recorded as an export request in the person's access log.",
    responses(
        (status = 200, description = "The export, as an attachment (`my-data.json`)", body = crate::mydata::MyData,
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"my-data.json\"`"))),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
    ))]
pub async fn export(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some((s, _, _)) = session(&st, &headers).await else {
        return signed_out();
    };
    match super::me::download(&st, s.subject, "page", accessor(&s)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// `GET /me/receipts/{seq}`: one of the person's own receipts, as a file to keep and
/// verify with the operator's public key.
#[utoipa::path(get, path = "/me/receipts/{id}", tag = "pages",
    summary = "Download one of the signed-in person's consent receipts",
    description = "The signed receipt of one of the person's own ledger records, to keep and verify with the operator's public key (`GET /v1/receipts/public-key`).",
    params(("id" = String, Path, description = "The record's ledger sequence number")),
    responses(
        (status = 200, description = "The receipt, as an attachment (`candor-receipt-{id}.json`)", body = crate::receipts::Receipt,
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"candor-receipt-{id}.json\"`"))),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
        (status = 404, description = "Not a sequence number, or not one of the person's records", content_type = "text/html", body = String),
    ))]
pub async fn receipt(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(seq): Path<String>,
) -> Response {
    let Some((s, _, _)) = session(&st, &headers).await else {
        return signed_out();
    };
    let Ok(seq) = seq.parse::<u64>() else {
        return say(StatusCode::NOT_FOUND, "No such receipt", "", true);
    };
    let history = match st.store.consent_history(s.subject).await {
        Ok(h) => h,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Only the person's own records: another subject's sequence number finds nothing.
    let Some(r) = history.iter().find(|r| r.entry.seq == seq) else {
        return say(StatusCode::NOT_FOUND, "No such receipt", "", true);
    };
    let receipt = crate::receipts::build(r, &st.settings.operator, &st.signing_key_for(seq));
    let mut resp = axum::Json(receipt).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
        "attachment; filename=\"candor-receipt-{seq}.json\""
    )) {
        resp.headers_mut()
            .insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// `GET /me/erase`: what erasure deletes and what stays, and one button.
#[utoipa::path(get, path = "/me/erase", tag = "pages",
    summary = "The erasure page of a person's own pages",
    description = "What erasure deletes and what stays, and the button that posts `POST /me/erase`.",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
    ))]
pub async fn erase_form(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some((s, _, _)) = session(&st, &headers).await else {
        return signed_out();
    };
    let identifiers = st.store.identities(s.subject).await.map_or(0, |i| i.len());
    let data = match mydata::gather(&st, s.subject, Depth::Summary).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    page(
        StatusCode::OK,
        "me_erase.html",
        context! {
            operator => st.settings.operator.name,
            csrf => st.person_keys.csrf(&s),
            identifiers,
            events => data.events.total,
        },
    )
}

/// `POST /me/erase`: erases the person, ends the session, says so.
#[utoipa::path(post, path = "/me/erase", tag = "pages",
    summary = "Erase the signed-in person",
    description = "Erases the person as `POST /v1/me/erase` does (recorded as an erasure request, channel `preference_center`) and ends the session.",
    request_body(content = CsrfOnly, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Erased: a page saying so", content_type = "text/html", body = String,
            headers(("Set-Cookie" = String, description = "`candor_me` cleared"))),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
        (status = 403, description = "The form is malformed or its CSRF token does not match", content_type = "text/html", body = String),
    ))]
pub async fn erase(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let csrf = form.ok().map(|Form(f)| f.csrf);
    let (s, actor, _) = match posted(&st, &headers, csrf.as_deref()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = mydata::erase(
        &st,
        s.subject,
        actor.recorded(),
        Channel::PreferenceCenter,
        "page",
    )
    .await
    {
        return e.into_response();
    }
    ending(
        "Your data has been erased",
        "Everything we held about you is gone. If you come back, you start as someone new, with nothing allowed until you choose.",
    )
}

/// `POST /me/logout`
#[utoipa::path(post, path = "/me/logout", tag = "pages",
    summary = "Sign out of a person's own pages",
    request_body(content = CsrfOnly, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed out: a page saying so", content_type = "text/html", body = String,
            headers(("Set-Cookie" = String, description = "`candor_me` cleared"))),
        (status = 401, description = "No session, or it can no longer act", content_type = "text/html", body = String),
        (status = 403, description = "The form is malformed or its CSRF token does not match", content_type = "text/html", body = String),
    ))]
pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let Some((s, _, _)) = session(&st, &headers).await else {
        return signed_out();
    };
    if !form.is_ok_and(|Form(f)| st.person_keys.csrf_ok(&s, &f.csrf)) {
        return say(
            StatusCode::FORBIDDEN,
            "The form expired",
            "Please reload the page and try again.",
            true,
        );
    }
    let mut r = say(
        StatusCode::OK,
        "Signed out",
        "You can close this page.",
        false,
    );
    let (k, v) = pages::set_cookie(COOKIE, "", "/me", 0);
    if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
        r.headers_mut().append(k, v);
    }
    r
}

/// A form of one button: the session's CSRF token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PersonCsrfForm)]
pub struct CsrfOnly {
    /// The session's CSRF token.
    csrf: String,
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    enter_form,
    enter,
    home,
    change_consent,
    export,
    receipt,
    logout,
    erase_form,
    set_field,
    remove_field,
    erase,
    redeem,
    leave_list,
    join_list
))]
pub(crate) struct Api;
