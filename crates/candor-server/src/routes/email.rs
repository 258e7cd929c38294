//! Email on consent, the API (issue 16): asking to join a list (a source write key: an
//! operator's backend, or a sign-up form's script), and the operator's lists,
//! suppressions and campaigns (admin token).

use crate::auth;
use crate::body::{parse_json, read_bytes, read_text};
use crate::email::{campaigns, feedback, flows, Mail};
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use candor_core::ledger::Actor;
use candor_core::{SubjectId, UnixMillis};
use candor_mail::EmailAddress;
use candor_store::email::{Campaign, CampaignCounts, MessageStatus, SuppressReason};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The email side, or `email_disabled` when the config has no `[email]`.
pub fn mail(st: &AppState) -> ApiResult<Arc<Mail>> {
    st.mail.clone().ok_or_else(|| {
        ApiError::new(
            Code::EmailDisabled,
            "email is not configured on this server ([email] in the config)",
        )
    })
}

pub fn address(s: &str) -> ApiResult<EmailAddress> {
    EmailAddress::parse(s).map_err(|e| ApiError::new(Code::InvalidEmail, e.to_string()))
}

fn list_named<'a>(mail: &'a Mail, name: &str) -> ApiResult<&'a crate::config::email::ListSpec> {
    mail.settings.list(name).ok_or_else(|| {
        ApiError::new(
            Code::UnknownList,
            format!("no list {:?}", name.chars().take(64).collect::<String>()),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubscribeBody {
    email: String,
    list: String,
    #[serde(default)]
    evidence: BTreeMap<String, String>,
    /// Read from the raw JSON before the body is parsed (the key may be in the body).
    #[allow(dead_code)]
    write_key: Option<String>,
}

/// `POST /v1/email/subscriptions`: a pending subscription and a confirmation mail.
/// The answer is the same whether the address was new, pending, already confirmed or
/// out of re-sends, so the API cannot be used to learn who is subscribed.
pub async fn subscribe(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let header_source = auth::header_source(&st.sources, &headers)?;
    let text = read_text(&headers, body, 16 * 1024, Code::InvalidRequest).await?;
    // The key first (it may be in the body): an unauthenticated caller learns nothing
    // about the body's expected shape.
    let source = match header_source {
        Some(s) => s,
        None => {
            let v: Value = parse_json(&text)?;
            auth::source(&st.sources, None, v.get("writeKey").and_then(Value::as_str))?
        }
    };
    let b: SubscribeBody = parse_json(&text)?;
    let mail = mail(&st)?;
    let to = address(&b.email)?;
    let list = list_named(&mail, &b.list)?.clone();
    let evidence = crate::pipeline::consent::evidence(b.evidence)?;
    // A browser key's sign-up forms create subjects for addresses nobody confirmed
    // yet: at most `[limits] new_subjects_per_minute` of them, as for consent.
    if auth::is_browser(source)
        && st
            .store
            .resolve(&crate::email::hash_of(&st.master, &to))
            .is_none()
    {
        st.limits.new_subject(&source.id, st.now_ms())?;
    }
    flows::ask(
        &st,
        &mail,
        &to,
        &list,
        Actor::Source(source.id.clone()),
        evidence,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "confirmation_sent",
            "message": "if this address may join the list, a confirmation link is on its way to it",
        })),
    )
        .into_response())
}

/// `GET /v1/admin/email/lists`: each list with its subscribers by status, and the
/// suppression list by reason.
pub async fn lists(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mail = mail(&st)?;
    let counts = st.store.email().list_counts().await?;
    let lists: Vec<Value> = mail
        .settings
        .lists
        .iter()
        .map(|l| {
            let c = counts.iter().find(|c| c.list == l.name);
            let (p, cf, u) = c.map_or((0, 0, 0), |c| (c.pending, c.confirmed, c.unsubscribed));
            let asked = p + cf + u;
            json!({
                "name": l.name,
                "title": l.title,
                "purpose": l.purpose.as_str(),
                "pending": p,
                "confirmed": cf,
                "unsubscribed": u,
                "confirmationRate": if asked > 0 { Some(cf as f64 / asked as f64) } else { None },
            })
        })
        .collect();
    let suppressed: BTreeMap<&str, i64> = st
        .store
        .email()
        .suppression_counts()
        .await?
        .into_iter()
        .map(|(r, n)| (r.as_str(), n))
        .collect();
    Ok(Json(json!({
        "lists": lists,
        "suppressions": suppressed,
        "outbox": {
            "sent": mail.transactional_sent.load(std::sync::atomic::Ordering::Relaxed),
            "failed": mail.transactional_failed.load(std::sync::atomic::Ordering::Relaxed),
        },
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum FeedbackKind {
    Complaint,
    Bounce,
}

/// A complaint or a bounce an operator's relay or provider reported by address
/// (a webhook the operator forwards).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    email: String,
    #[serde(rename = "type")]
    kind: FeedbackKind,
}

/// The largest report read: a feedback-loop report carries headers, often the whole
/// original message, rarely more than a few hundred KiB.
const REPORT_LIMIT: usize = 1 << 20;

/// `POST /v1/admin/email/feedback`: a complaint or a late bounce, suppressing the
/// address for every list. As JSON `{"email", "type": "complaint"|"bounce"}`, or a
/// feedback-loop report as it arrived (`message/rfc822`, `multipart/report`,
/// `message/feedback-report`, `text/plain`), matched by the unsubscribe token of the
/// message it reports (`email::feedback`).
pub async fn feedback(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mail = mail(&st)?;
    let media = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let (outcome, reason) = match media.as_str() {
        "application/json" => {
            let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
            let b: FeedbackBody = parse_json(&text)?;
            let reason = match b.kind {
                FeedbackKind::Complaint => SuppressReason::Complaint,
                FeedbackKind::Bounce => SuppressReason::Bounce,
            };
            let hash = crate::email::hash_of(&st.master, &address(&b.email)?);
            (feedback::suppress(&st, hash, reason).await?, reason)
        }
        "message/rfc822" | "multipart/report" | "message/feedback-report" | "text/plain" => {
            let raw = read_bytes(&headers, body, REPORT_LIMIT, Code::InvalidRequest).await?;
            (
                feedback::report(&st, &mail, &raw).await?,
                SuppressReason::Complaint,
            )
        }
        _ => {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                "send application/json, or the report as message/rfc822 or multipart/report",
            ))
        }
    };
    Ok(Json(json!({
        "result": outcome.as_str(),
        "reason": reason.as_str(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CampaignBody {
    name: String,
    list: String,
    segment: Option<String>,
    subject: String,
    text: String,
    html: Option<String>,
}

fn format_ms(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| {
        Value::String(crate::routes::format_time(UnixMillis(m)))
    })
}

pub fn counts_json(c: Option<&CampaignCounts>) -> Value {
    let mut m = serde_json::Map::new();
    for s in MessageStatus::ALL {
        m.insert(s.as_str().into(), json!(c.map_or(0, |c| c.get(s))));
    }
    Value::Object(m)
}

fn campaign_json(c: &Campaign, counts: Option<&CampaignCounts>) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "list": c.list,
        "segment": c.segment,
        "subject": c.subject_line,
        "text": c.text_body,
        "html": c.html_body,
        "status": c.status.as_str(),
        "created": format_ms(Some(c.created_ms)),
        "started": format_ms(c.started_ms),
        "finished": format_ms(c.finished_ms),
        "messages": counts_json(counts),
        "unsubscribed": counts.map_or(0, |c| c.unsubscribed),
    })
}

/// `POST /v1/admin/email/campaigns`: a draft, its templates checked.
pub async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mail = mail(&st)?;
    let text = read_text(&headers, body, 512 * 1024, Code::InvalidRequest).await?;
    let b: CampaignBody = parse_json(&text)?;
    list_named(&mail, &b.list)?;
    let id = campaigns::create(
        &st,
        &mail,
        campaigns::Draft {
            name: b.name,
            list: b.list,
            segment: b.segment,
            subject_line: b.subject,
            text_body: b.text,
            html_body: b.html,
        },
    )
    .await
    .map_err(|e| {
        if e.code == Code::InvalidRequest && e.message.contains("templates may use") {
            ApiError::new(Code::InvalidTemplate, e.message)
        } else {
            e
        }
    })?;
    let c = campaigns::get(&st, id).await?;
    Ok((StatusCode::CREATED, Json(campaign_json(&c, None))).into_response())
}

/// `GET /v1/admin/email/campaigns`: newest first, with their messages by status.
pub async fn list(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    mail(&st)?;
    let counts = st.store.email().campaign_counts().await?;
    let items: Vec<Value> = st
        .store
        .email()
        .campaigns()
        .await?
        .iter()
        .map(|c| campaign_json(c, counts.iter().find(|x| x.campaign == c.id)))
        .collect();
    Ok(Json(json!({ "campaigns": items })))
}

fn id_of(p: Result<Path<i64>, PathRejection>) -> ApiResult<i64> {
    p.map(|Path(id)| id)
        .map_err(|_| ApiError::new(Code::NotFound, "no such campaign"))
}

/// `GET /v1/admin/email/campaigns/{id}`
pub async fn get(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    mail(&st)?;
    let c = campaigns::get(&st, id_of(id)?).await?;
    let counts = st.store.email().campaign_counts().await?;
    Ok(Json(campaign_json(
        &c,
        counts.iter().find(|x| x.campaign == c.id),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/admin/email/campaigns/{id}/messages`: per-message status, by pseudonym.
pub async fn messages(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<MessagesQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    mail(&st)?;
    let id = id_of(id)?;
    let Query(q) = q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let after = q
        .after
        .map(|a| SubjectId::parse(&a))
        .transpose()
        .map_err(|_| ApiError::new(Code::InvalidRequest, "after: a subject id"))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = st.store.email().campaign_messages(id, after, limit).await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|m| m.subject.to_string()))
        .flatten();
    let items: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({
                "subject": m.subject.to_string(),
                "status": m.status.as_str(),
                "attempts": m.attempts,
                "updated": format_ms(Some(m.updated_ms)),
                "detail": m.detail,
            })
        })
        .collect();
    Ok(Json(json!({ "messages": items, "next": next })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    subject: Option<String>,
}

/// `POST /v1/admin/email/campaigns/{id}/preview`: what one person (a subject id) or
/// nobody in particular would get.
pub async fn preview(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    body: Body,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mail = mail(&st)?;
    let c = campaigns::get(&st, id_of(id)?).await?;
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: PreviewBody = if text.trim().is_empty() {
        PreviewBody::default()
    } else {
        parse_json(&text)?
    };
    let subject = b
        .subject
        .map(|s| SubjectId::parse(&s))
        .transpose()
        .map_err(|_| ApiError::new(Code::InvalidRequest, "subject: a subject id"))?;
    let r = campaigns::preview(&st, &mail, &c, subject).await?;
    Ok(Json(json!({
        "subject": r.subject_line,
        "text": r.text,
        "html": r.html,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    to: String,
}

/// `POST /v1/admin/email/campaigns/{id}/test`: the preview mailed to an address.
pub async fn test_send(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    body: Body,
) -> ApiResult<Response> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mail = mail(&st)?;
    let c = campaigns::get(&st, id_of(id)?).await?;
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: TestBody = parse_json(&text)?;
    campaigns::test_send(&st, &mail, &c, address(&b.to)?).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "queued"}))).into_response())
}

/// `POST /v1/admin/email/campaigns/{id}/start`: queues the recipients and sends.
pub async fn start(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mail = mail(&st)?;
    let id = id_of(id)?;
    let queued = campaigns::start(&st, &mail, id).await?;
    let c = campaigns::get(&st, id).await?;
    let mut v = campaign_json(&c, None);
    v["queued"] = json!(queued);
    Ok(Json(v))
}

/// `POST /v1/admin/email/campaigns/{id}/cancel`
pub async fn cancel(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    mail(&st)?;
    let id = id_of(id)?;
    campaigns::cancel(&st, id).await?;
    Ok(Json(campaign_json(&campaigns::get(&st, id).await?, None)))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Api;
