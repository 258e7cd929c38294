//! Email on consent, the pages a person reaches from a mail or a form (issue 16).
//!
//! - `GET /email/subscribe[?list=]`: Candor's own sign-up form, the configured lists to
//!   choose from (an operator may post the same fields from a form of their own).
//! - `POST /email/subscribe`: an operator's sign-up form (form-encoded `email`, `list`):
//!   always the same "check your inbox" page, known address or not.
//! - `GET /email/confirm?t=`: a page with a button; `POST /email/confirm` spends the
//!   token and confirms. A GET changes nothing, so a mail scanner that fetches links
//!   does not subscribe anyone.
//! - `GET /email/unsubscribe?t=`: a page with a button; `POST /email/unsubscribe?t=`
//!   leaves at once. The POST is also RFC 8058's one-click: a mail client posts
//!   `List-Unsubscribe=One-Click` (form-encoded or multipart) with no cookie; the token
//!   in the URL is all it needs, and the answer is a page, never a redirect.

use super::email::{address, mail};
use crate::email::flows::{self, LinkRefused};
use crate::email::Mail;
use crate::pages;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use candor_core::consent::Channel;
use candor_core::ledger::Actor;
use minijinja::context;
use serde::Deserialize;
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

/// A form of one button: where it posts, its hidden fields, the button's words.
type ButtonForm<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

fn page(
    st: &AppState,
    status: StatusCode,
    title: &str,
    message: &str,
    form: Option<ButtonForm<'_>>,
) -> Response {
    let (action, fields, button) = match form {
        Some((a, f, b)) => (Some(a), f, b),
        None => (None, vec![], ""),
    };
    pages::render(
        status,
        "email.html",
        context! {
            operator => st.settings.operator.name.clone(),
            title, message, action, fields, button,
            alert => status.is_client_error() || status.is_server_error(),
        },
        false,
        vec![],
    )
}

fn disabled(st: &AppState) -> Response {
    page(
        st,
        StatusCode::NOT_FOUND,
        "Email is not set up",
        "This site does not send email through Candor.",
        None,
    )
}

fn refused(st: &AppState, why: LinkRefused) -> Response {
    let (status, title, message) = match why {
        LinkRefused::Invalid => (
            StatusCode::BAD_REQUEST,
            "This link does not work",
            "It may have been copied incompletely. Nothing was changed.",
        ),
        LinkRefused::Expired => (
            StatusCode::GONE,
            "This link has expired",
            "Nothing was changed. Sign up again to get a new confirmation link.",
        ),
        LinkRefused::Used => (
            StatusCode::GONE,
            "This link was already used",
            "A confirmation link works once. Nothing more was changed.",
        ),
        LinkRefused::NotPending => (
            StatusCode::CONFLICT,
            "There is nothing to confirm",
            "You left this list, or the request expired, after this mail was sent. Nothing was changed; sign up again to join.",
        ),
        LinkRefused::Gone => (
            StatusCode::GONE,
            "We no longer hold this address",
            "Nothing was changed.",
        ),
    };
    page(st, status, title, message, None)
}

/// The token a mail's link carries.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The token from the mail's link (a missing one is an invalid link).
    t: Option<String>,
}

/// The confirmation page's form.
#[derive(Deserialize, ToSchema)]
#[schema(as = EmailConfirmForm)]
pub struct TokenForm {
    /// The confirmation token from the mail's link.
    t: Option<String>,
}

/// `GET /email/confirm?t=`: what the link will do, and a button to do it.
#[utoipa::path(get, path = "/email/confirm", tag = "pages",
    summary = "The page a confirmation mail links to",
    description = "Names the list and shows a button that posts the token to `POST /email/confirm`. Changes nothing, so a mail scanner following the link subscribes nobody.",
    params(TokenQuery),
    responses(
        (status = 200, description = "The confirmation button", content_type = "text/html", body = String),
        (status = 400, description = "No token, a forged one, or one for a list no longer configured", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured", content_type = "text/html", body = String),
        (status = 410, description = "The token expired", content_type = "text/html", body = String),
    ))]
pub async fn confirm_page(
    State(st): State<AppState>,
    q: Result<Query<TokenQuery>, QueryRejection>,
) -> Response {
    let Ok(mail) = mail(&st) else {
        return disabled(&st);
    };
    let Some(t) = q.ok().and_then(|Query(q)| q.t) else {
        return refused(&st, LinkRefused::Invalid);
    };
    let c = match mail.keys.check_confirmation(&t, st.now()) {
        Ok(c) => c,
        Err(crate::email::tokens::TokenError::Expired) => {
            return refused(&st, LinkRefused::Expired)
        }
        Err(_) => return refused(&st, LinkRefused::Invalid),
    };
    let Some(list) = mail.settings.list(&c.list) else {
        return refused(&st, LinkRefused::Invalid);
    };
    page(
        &st,
        StatusCode::OK,
        &format!("Confirm: {}", list.title),
        &format!(
            "Press the button to receive “{}”. {} You can leave at any time with the link in every mail.",
            list.title, list.description
        ),
        Some(("/email/confirm", vec![("t", t)], "Yes, subscribe me")),
    )
}

fn origin(peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<String> {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect::<String>();
    let ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    Some(format!("ip={ip} ua={agent}"))
}

/// `POST /email/confirm`: spends the token and confirms the subscription.
#[utoipa::path(post, path = "/email/confirm", tag = "pages",
    summary = "Confirm a subscription (double opt-in)",
    description = "Spends the single-use token, confirms the pending subscription and grants the list's purpose under its current notice, in one ledger command (channel `email_confirmation`). The client's IP address and user agent are kept, sealed, only when the operator's config asks for them.",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Subscribed: a page saying so", content_type = "text/html", body = String),
        (status = 400, description = "No token, a forged one, or one for a list no longer configured; nothing changed", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured", content_type = "text/html", body = String),
        (status = 409, description = "The request was left or expired since the mail was sent; nothing changed", content_type = "text/html", body = String),
        (status = 410, description = "The token expired or was used, or the address is no longer held; nothing changed", content_type = "text/html", body = String),
    ))]
pub async fn confirm(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let Ok(mail) = mail(&st) else {
        return disabled(&st);
    };
    let Some(t) = form.ok().and_then(|Form(f)| f.t) else {
        return refused(&st, LinkRefused::Invalid);
    };
    match flows::confirm(&st, &mail, &t, origin(Some(peer), &headers)).await {
        Ok((_, list)) => page(
            &st,
            StatusCode::OK,
            "You are subscribed",
            &format!(
                "You will receive “{}”. Every mail has a link to leave at once.",
                list.title
            ),
            None,
        ),
        Err(why) => refused(&st, why),
    }
}

/// `GET /email/unsubscribe?t=`: a button to leave (a GET changes nothing).
#[utoipa::path(get, path = "/email/unsubscribe", tag = "pages",
    summary = "The page a mail's unsubscribe link opens",
    description = "Names the list and shows a button that posts to `POST /email/unsubscribe` with the same token. Changes nothing.",
    params(TokenQuery),
    responses(
        (status = 200, description = "The unsubscribe button", content_type = "text/html", body = String),
        (status = 400, description = "No token, a forged one, or one for a list no longer configured", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured", content_type = "text/html", body = String),
    ))]
pub async fn unsubscribe_page(
    State(st): State<AppState>,
    q: Result<Query<TokenQuery>, QueryRejection>,
) -> Response {
    let Ok(mail) = mail(&st) else {
        return disabled(&st);
    };
    let Some(t) = q.ok().and_then(|Query(q)| q.t) else {
        return refused(&st, LinkRefused::Invalid);
    };
    let Ok(u) = mail.keys.check_unsubscribe(&t) else {
        return refused(&st, LinkRefused::Invalid);
    };
    let Some(list) = mail.settings.list(&u.list) else {
        return refused(&st, LinkRefused::Invalid);
    };
    let action = format!("/email/unsubscribe?t={t}");
    page(
        &st,
        StatusCode::OK,
        &format!("Leave “{}”?", list.title),
        "Press the button and you will get no more mail from this list. Other lists you are on stay as they are.",
        Some((&action, vec![], "Unsubscribe")),
    )
}

/// What a mail client's RFC 8058 one-click unsubscribe posts (documentation only: the
/// body is read, at most 16 KiB, and ignored; the page's button posts an empty form).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = OneClickUnsubscribe)]
struct OneClickDoc {
    #[schema(rename = "List-Unsubscribe", example = "One-Click")]
    list_unsubscribe: Option<String>,
}

/// `POST /email/unsubscribe?t=`: leaves at once (the page's button, or a mail
/// client's RFC 8058 one-click POST). The body (`List-Unsubscribe=One-Click`, in
/// either encoding) is not needed: the token is the whole credential.
#[utoipa::path(post, path = "/email/unsubscribe", tag = "pages",
    summary = "Unsubscribe at once (also RFC 8058 one-click)",
    description = "Leaves the list the token names at once: a ledger record (channel `unsubscribe`, naming the campaign the mail came from), the address suppressed for the list. This is also the `List-Unsubscribe-Post` target: a mail client posts `List-Unsubscribe=One-Click`, form-encoded or multipart, with no cookie. The token in the URL is the whole credential; the body is not read. The answer is a page, never a redirect.",
    params(TokenQuery),
    request_body(description = "Not read: `List-Unsubscribe=One-Click` from a mail client, or the page's empty form",
        content(
            (Option<OneClickDoc> = "application/x-www-form-urlencoded"),
            (Option<OneClickDoc> = "multipart/form-data"),
        )),
    responses(
        (status = 200, description = "Unsubscribed: a page saying so", content_type = "text/html", body = String),
        (status = 400, description = "No token, a forged one, or one for a list no longer configured; nothing changed", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured", content_type = "text/html", body = String),
        (status = 410, description = "The address is no longer held; nothing changed", content_type = "text/html", body = String),
    ))]
pub async fn unsubscribe(
    State(st): State<AppState>,
    q: Result<Query<TokenQuery>, QueryRejection>,
    body: Body,
) -> Response {
    let Ok(mail) = mail(&st) else {
        return disabled(&st);
    };
    // Read (and bound) the body so the connection stays usable; its content is not
    // needed.
    let _ = axum::body::to_bytes(body, 16 * 1024).await;
    let Some(t) = q.ok().and_then(|Query(q)| q.t) else {
        return refused(&st, LinkRefused::Invalid);
    };
    leave(&st, &mail, &t).await
}

async fn leave(st: &AppState, mail: &Mail, t: &str) -> Response {
    let Ok(u) = mail.keys.check_unsubscribe(t) else {
        return refused(st, LinkRefused::Invalid);
    };
    match flows::leave(
        st,
        mail,
        u.subject,
        &u.list,
        Actor::EmailLink,
        Channel::Unsubscribe,
        u.campaign,
    )
    .await
    {
        Ok(list) => page(
            st,
            StatusCode::OK,
            "You are unsubscribed",
            &format!(
                "You will get no more mail from “{}”. If you change your mind, sign up again.",
                list.title
            ),
            None,
        ),
        // An erased person has nothing left to leave: say so plainly.
        Err(why) => refused(st, why),
    }
}

/// `GET /me/signin`: the preference center's sign-in by email.
#[utoipa::path(get, path = "/me/signin", tag = "pages",
    summary = "Sign in to a person's own pages by email",
    description = "A form for an email address, posted to `POST /me/signin`.",
    responses(
        (status = 200, description = "The form", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured", content_type = "text/html", body = String),
    ))]
pub async fn signin_page(State(st): State<AppState>) -> Response {
    if mail(&st).is_err() {
        return disabled(&st);
    }
    pages::render(
        StatusCode::OK,
        "email.html",
        context! {
            operator => st.settings.operator.name.clone(),
            title => "Sign in to see your data",
            message => "Type your email address and we will mail you a link that signs you in. It works once, for fifteen minutes.",
            signin => true,
        },
        false,
        vec![],
    )
}

/// The email sign-in form.
#[derive(Deserialize, ToSchema)]
#[schema(as = EmailSigninForm)]
pub struct SigninForm {
    /// The person's email address.
    email: Option<String>,
}

/// `POST /me/signin`: mails a single-use sign-in link to the address if it is known.
/// The answer is the same whether or not it is, so the form cannot tell anyone who is
/// subscribed.
#[utoipa::path(post, path = "/me/signin", tag = "pages",
    summary = "Mail a sign-in link",
    description = "Mails a single-use sign-in link (fifteen minutes, to `GET /me/enter`) to the address if Candor holds it, within a per-address allowance. The answer is the same whether or not it does, so the form tells nobody who is known.",
    request_body(content = SigninForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A page saying a link is on its way if the address is held", content_type = "text/html", body = String),
        (status = 400, description = "Not an email address", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured", content_type = "text/html", body = String),
    ))]
pub async fn signin(
    State(st): State<AppState>,
    form: Result<Form<SigninForm>, FormRejection>,
) -> Response {
    let Ok(mail) = mail(&st) else {
        return disabled(&st);
    };
    let Some(Ok(to)) = form
        .ok()
        .and_then(|Form(f)| f.email)
        .as_deref()
        .map(address)
    else {
        return page(
            &st,
            StatusCode::BAD_REQUEST,
            "That is not an email address",
            "Please go back and check it.",
            None,
        );
    };
    let hash = crate::email::hash_of(&st.master, &to);
    if let Some(subject) = st.store.resolve(&hash) {
        if mail.may_send_signin(hash, st.now_ms()) {
            let expires =
                candor_core::UnixMillis(st.now_ms() + crate::person::DEFAULT_LINK_SECONDS * 1000);
            let token = st.person_keys.mint_link(subject, expires);
            let url = mail.url(&format!("/me/enter?t={token}"));
            let text = format!(
                "To see and manage what {operator} holds about you, open this link and press Continue:\n{url}\n\n\
                 It works once and for fifteen minutes. If you did not ask for it, ignore this mail.\n",
                operator = st.settings.operator.name,
            );
            let _ = mail.outbox.try_send(crate::email::Transactional {
                to,
                subject_line: format!("Your sign-in link for {}", st.settings.operator.name),
                text,
                kind: "signin",
            });
        }
    }
    page(
        &st,
        StatusCode::OK,
        "Check your inbox",
        "If we hold this address, a sign-in link is on its way to it. It works once, for fifteen minutes.",
        None,
    )
}

/// The list the sign-up form starts with.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A configured list's name (otherwise none is chosen, unless there is only one).
    list: Option<String>,
}

/// `GET /email/subscribe[?list=]`: the sign-up form, with the named list (or the only
/// one) chosen.
#[utoipa::path(get, path = "/email/subscribe", tag = "pages",
    summary = "Candor's own sign-up form",
    description = "The configured lists to choose from and an address field, posted to `POST /email/subscribe`.",
    params(ListQuery),
    responses(
        (status = 200, description = "The form", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured", content_type = "text/html", body = String),
    ))]
pub async fn subscribe_form(
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Ok(mail) = mail(&st) else {
        return disabled(&st);
    };
    let lists = &mail.settings.lists;
    let chosen = q
        .ok()
        .and_then(|Query(q)| q.list)
        .filter(|l| mail.settings.list(l).is_some())
        .or_else(|| (lists.len() == 1).then(|| lists[0].name.clone()));
    let lists: Vec<_> = lists
        .iter()
        .map(|l| context! { name => l.name, title => l.title, description => l.description })
        .collect();
    pages::render(
        StatusCode::OK,
        "email.html",
        context! {
            operator => st.settings.operator.name.clone(),
            title => "Sign up for our mail",
            message => "Choose a list and type your email address. We will mail you a link to confirm; nothing else is sent until you follow it, and every mail has a link to leave.",
            subscribe => true, lists, chosen,
        },
        false,
        vec![],
    )
}

/// A sign-up form (Candor's own, or an operator's posting the same fields).
#[derive(Deserialize, ToSchema)]
#[schema(as = EmailSubscribeForm)]
pub struct SubscribeForm {
    /// The address to subscribe.
    email: Option<String>,
    /// A configured list's name.
    list: Option<String>,
}

/// `POST /email/subscribe`: an operator's sign-up form. The same page whatever became
/// of the address (new, pending, confirmed, out of re-sends).
#[utoipa::path(post, path = "/email/subscribe", tag = "pages",
    summary = "Sign up for a mailing list (double opt-in)",
    description = "A pending subscription and, within the re-send limit, a confirmation mail linking to `GET /email/confirm`. The same page whatever became of the address (new, pending, confirmed, out of re-sends), so the form tells nobody who is subscribed. Unknown addresses share one allowance of new subjects per minute.",
    request_body(content = SubscribeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A page saying a confirmation link is on its way if the address may join", content_type = "text/html", body = String),
        (status = 400, description = "The form is incomplete, the address is not an email address, or no such list", content_type = "text/html", body = String),
        (status = 404, description = "Email is not configured", content_type = "text/html", body = String),
        (status = 429, description = "Too many new addresses this minute: try again later", content_type = "text/html", body = String),
        (status = 500, description = "The subscription could not be recorded", content_type = "text/html", body = String),
        (status = 503, description = "The store is unavailable, or too many mails are waiting to be sent", content_type = "text/html", body = String),
    ))]
pub async fn subscribe(
    State(st): State<AppState>,
    form: Result<Form<SubscribeForm>, FormRejection>,
) -> Response {
    let Ok(mail) = mail(&st) else {
        return disabled(&st);
    };
    let Ok(Form(f)) = form else {
        return page(
            &st,
            StatusCode::BAD_REQUEST,
            "The form was incomplete",
            "Please go back and try again.",
            None,
        );
    };
    let Some(Ok(to)) = f.email.as_deref().map(address) else {
        return page(
            &st,
            StatusCode::BAD_REQUEST,
            "That is not an email address",
            "Please go back and check it.",
            None,
        );
    };
    let Some(list) = f
        .list
        .as_deref()
        .and_then(|l| mail.settings.list(l))
        .cloned()
    else {
        return page(
            &st,
            StatusCode::BAD_REQUEST,
            "No such list",
            "Please go back and try again.",
            None,
        );
    };
    // Each unknown address becomes a (pending) subject: the public form shares one
    // allowance of new subjects per minute, like a browser key's.
    if st
        .store
        .resolve(&crate::email::hash_of(&st.master, &to))
        .is_none()
    {
        let form = candor_core::SourceId::parse("email_form").unwrap_or_else(|_| unreachable!());
        if let Err(e) = st.limits.new_subject(&form, st.now_ms()) {
            return page(
                &st,
                e.code.status(),
                "Please try again in a minute",
                "Too many sign-ups are arriving at once.",
                None,
            );
        }
    }
    match flows::ask(&st, &mail, &to, &list, Actor::EmailLink, Default::default()).await {
        Ok(_) => page(
            &st,
            StatusCode::OK,
            "Check your inbox",
            &format!(
                "If this address may join “{}”, a confirmation link is on its way. Nothing will be sent until you follow it.",
                list.title
            ),
            None,
        ),
        Err(e) => page(
            &st,
            e.code.status(),
            "Please try again later",
            &e.message,
            None,
        ),
    }
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    subscribe_form,
    subscribe,
    confirm_page,
    confirm,
    unsubscribe_page,
    unsubscribe,
    signin_page,
    signin
))]
pub(crate) struct Api;
