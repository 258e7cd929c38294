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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

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

/// A request to join a list: the address gets a confirmation link.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = EmailSubscriptionRequest, example = json!({"email": "reader@example.org", "list": "news", "evidence": {"form": "footer"}}))]
struct SubscribeBody {
    /// The address to confirm.
    #[schema(format = Email)]
    email: String,
    /// A configured list's name.
    list: String,
    /// Where the request came from, recorded with the subscription: keys `campaign`,
    /// `cmp`, `cmpId`, `confirmation`, `form`, `layer`, `locale`, `prompt`, `variant`;
    /// values 1 to 64 letters, digits, `.`, `_`, `-` or `:`; at most 8.
    #[serde(default)]
    evidence: BTreeMap<String, String>,
    /// The source's write key, when it is not sent as Basic auth (read from the raw
    /// JSON before the body is parsed).
    #[allow(dead_code)]
    write_key: Option<String>,
}

/// The same answer whatever the address's state, so nobody learns who is subscribed.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailSubscriptionAccepted)]
pub struct SubscribeAnswer {
    /// Always `confirmation_sent`.
    status: &'static str,
    message: &'static str,
}

#[utoipa::path(post, path = "/v1/email/subscriptions", tag = "email",
    summary = "Ask to join a list",
    description = "A pending subscription and, within the re-send limit, a confirmation mail (double \
opt-in: nothing is sent until the link is followed). The answer is the same whether the address was new, \
pending, already confirmed or out of re-sends, so this cannot be used to learn who is subscribed.",
    request_body = SubscribeBody,
    responses((status = 202, description = "Accepted", body = SubscribeAnswer)))]
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
        Json(SubscribeAnswer {
            status: "confirmation_sent",
            message: "if this address may join the list, a confirmation link is on its way to it",
        }),
    )
        .into_response())
}

/// The lists, the suppressions and the outbox.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailLists)]
pub struct ListsView {
    lists: Vec<ListView>,
    /// Reason (`unsubscribe`, `bounce`, `complaint`) → suppressed addresses.
    suppressions: BTreeMap<&'static str, i64>,
    outbox: OutboxView,
}

/// One list and its subscriptions by status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EmailList)]
pub struct ListView {
    name: String,
    title: String,
    /// The purpose a subscriber grants by confirming.
    purpose: String,
    pending: i64,
    confirmed: i64,
    unsubscribed: i64,
    /// Confirmed of every subscription asked for; `null` when nobody asked.
    confirmation_rate: Option<f64>,
}

/// Confirmation and sign-in mails since this node started.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailOutbox)]
pub struct OutboxView {
    sent: u64,
    failed: u64,
}

#[utoipa::path(get, path = "/v1/admin/email/lists", tag = "admin",
    summary = "Email lists and suppressions",
    description = "Each configured list with its subscribers by status, the suppression list by reason, \
and the transactional mails this node sent.",
    responses((status = 200, description = "The lists", body = ListsView)))]
pub async fn lists(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<ListsView>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mail = mail(&st)?;
    let counts = st.store.email().list_counts().await?;
    let lists = mail
        .settings
        .lists
        .iter()
        .map(|l| {
            let c = counts.iter().find(|c| c.list == l.name);
            let (p, cf, u) = c.map_or((0, 0, 0), |c| (c.pending, c.confirmed, c.unsubscribed));
            let asked = p + cf + u;
            ListView {
                name: l.name.clone(),
                title: l.title.clone(),
                purpose: l.purpose.as_str().to_owned(),
                pending: p,
                confirmed: cf,
                unsubscribed: u,
                confirmation_rate: (asked > 0).then(|| cf as f64 / asked as f64),
            }
        })
        .collect();
    let suppressions: BTreeMap<&str, i64> = st
        .store
        .email()
        .suppression_counts()
        .await?
        .into_iter()
        .map(|(r, n)| (r.as_str(), n))
        .collect();
    Ok(Json(ListsView {
        lists,
        suppressions,
        outbox: OutboxView {
            sent: mail
                .transactional_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            failed: mail
                .transactional_failed
                .load(std::sync::atomic::Ordering::Relaxed),
        },
    }))
}

/// What a relay or provider reported.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = EmailFeedbackType)]
enum FeedbackKind {
    /// The person reported a message as spam.
    Complaint,
    /// The address's server refused a message after the relay accepted it.
    Bounce,
}

/// A complaint or a bounce an operator's relay or provider reported by address
/// (a webhook the operator forwards).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EmailFeedback, example = json!({"email": "reader@example.org", "type": "bounce"}))]
struct FeedbackBody {
    #[schema(format = Email)]
    email: String,
    #[serde(rename = "type")]
    kind: FeedbackKind,
}

/// What a report or a notice did (documentation only: answered as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EmailFeedbackOutcome)]
enum OutcomeDoc {
    /// The address is suppressed for every list from now on.
    Suppressed,
    /// It already was.
    AlreadySuppressed,
    /// A report that is no complaint (`Feedback-Type: not-spam`): nothing changed.
    NotAComplaint,
    /// The person the report names was erased: there is no address to suppress.
    Gone,
}

/// What the feedback did, and the suppression's reason.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailFeedbackResult)]
pub struct FeedbackAnswer {
    #[schema(value_type = OutcomeDoc)]
    result: &'static str,
    /// `complaint` for every report; `bounce` or `complaint` for JSON, as given.
    #[schema(value_type = FeedbackKind)]
    reason: &'static str,
}

/// The largest report read: a feedback-loop report carries headers, often the whole
/// original message, rarely more than a few hundred KiB.
const REPORT_LIMIT: usize = 1 << 20;

/// `POST /v1/admin/email/feedback`: a complaint or a late bounce, suppressing the
/// address for every list. As JSON `{"email", "type": "complaint"|"bounce"}`, or a
/// feedback-loop report as it arrived (`message/rfc822`, `multipart/report`,
/// `message/feedback-report`, `text/plain`), matched by the unsubscribe token of the
/// message it reports (`email::feedback`).
#[utoipa::path(post, path = "/v1/admin/email/feedback", tag = "admin",
    summary = "Report a complaint or a late bounce",
    description = "Suppresses an address for every list. Either JSON naming the address (a relay's or \
provider's webhook, forwarded), or a feedback-loop report (ARF, RFC 5965) as it arrived, up to 1 MiB: \
`multipart/report`, the forwarded original alone (`message/rfc822`), `message/feedback-report` or \
`text/plain`. A report is matched by the unsubscribe link of the message it reports (the recipient's \
address is usually redacted); one that names no message of this server is refused with \
`unrecognized_report`, and a `Feedback-Type: not-spam` report changes nothing. Any other media type is \
refused with `unsupported_media_type`.",
    request_body(content(
        (FeedbackBody = "application/json"),
        (String = "multipart/report", example = json!("From: <fbl@mailbox.example>\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nList-Unsubscribe: <https://candor.example.com/email/unsubscribe?t=...>\r\n\r\n--b1--\r\n")),
        (String = "message/rfc822"),
        (String = "message/feedback-report"),
        (String = "text/plain"),
    )),
    responses((status = 200, description = "What the feedback did", body = FeedbackAnswer)))]
pub async fn feedback(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<FeedbackAnswer>> {
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
    Ok(Json(FeedbackAnswer {
        result: outcome.as_str(),
        reason: reason.as_str(),
    }))
}

/// A campaign to create, as a draft. Templates may use `{{ fields.<name> }}` for the
/// fields the list's purpose may use, `{{ list.name }}`, `{{ list.title }}` and
/// `{{ unsubscribe_url }}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = EmailNewCampaign, example = json!({"name": "Spring offers", "list": "news", "subject": "Spring offers for {{ list.title }}", "text": "Our spring offers.\n\nLeave the list: {{ unsubscribe_url }}"}))]
struct CampaignBody {
    /// 1 to 200 bytes.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// A configured list's name.
    list: String,
    /// A saved segment of the list's purpose: only the list's members in it receive the
    /// campaign.
    segment: Option<String>,
    /// The subject line's template.
    subject: String,
    /// The plain-text body's template.
    text: String,
    /// The HTML body's template, if any.
    html: Option<String>,
}

fn format_ms(ms: i64) -> String {
    crate::routes::format_time(UnixMillis(ms))
}

/// A campaign's messages by status.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailMessageCounts)]
pub struct MessageCounts {
    queued: i64,
    committing: i64,
    sent: i64,
    bounced: i64,
    failed: i64,
    skipped: i64,
}

impl MessageCounts {
    pub fn of(c: Option<&CampaignCounts>) -> Self {
        let n = |s: MessageStatus| c.map_or(0, |c| c.get(s));
        Self {
            queued: n(MessageStatus::Queued),
            committing: n(MessageStatus::Committing),
            sent: n(MessageStatus::Sent),
            bounced: n(MessageStatus::Bounced),
            failed: n(MessageStatus::Failed),
            skipped: n(MessageStatus::Skipped),
        }
    }
}

/// A campaign's status (documentation only: answered as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EmailCampaignStatus)]
enum CampaignStatusDoc {
    Draft,
    /// Recipients queued; being sent.
    Sending,
    /// Every queued message reached a final status.
    Sent,
    Cancelled,
}

/// A campaign, its templates and its messages by status.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailCampaign)]
pub struct CampaignView {
    id: i64,
    name: String,
    list: String,
    segment: Option<String>,
    /// The subject line's template.
    subject: String,
    text: String,
    html: Option<String>,
    #[schema(value_type = CampaignStatusDoc)]
    status: &'static str,
    created: String,
    started: Option<String>,
    finished: Option<String>,
    messages: MessageCounts,
    /// Recipients who left the list through this campaign's unsubscribe link.
    unsubscribed: i64,
}

fn campaign_json(c: &Campaign, counts: Option<&CampaignCounts>) -> CampaignView {
    CampaignView {
        id: c.id,
        name: c.name.clone(),
        list: c.list.clone(),
        segment: c.segment.clone(),
        subject: c.subject_line.clone(),
        text: c.text_body.clone(),
        html: c.html_body.clone(),
        status: c.status.as_str(),
        created: format_ms(c.created_ms),
        started: c.started_ms.map(format_ms),
        finished: c.finished_ms.map(format_ms),
        messages: MessageCounts::of(counts),
        unsubscribed: counts.map_or(0, |c| c.unsubscribed),
    }
}

#[utoipa::path(post, path = "/v1/admin/email/campaigns", tag = "admin",
    summary = "Create a campaign",
    description = "A draft, its templates checked against what the list's purpose may use \
(`invalid_template` otherwise). Nothing is sent until it is started.",
    request_body = CampaignBody,
    responses((status = 201, description = "The draft", body = CampaignView)))]
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

/// Every campaign.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailCampaigns)]
pub struct CampaignList {
    campaigns: Vec<CampaignView>,
}

#[utoipa::path(get, path = "/v1/admin/email/campaigns", tag = "admin",
    summary = "List the campaigns",
    responses((status = 200, description = "Every campaign, newest first, with its messages by status", body = CampaignList)))]
pub async fn list(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<CampaignList>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    mail(&st)?;
    let counts = st.store.email().campaign_counts().await?;
    let campaigns = st
        .store
        .email()
        .campaigns()
        .await?
        .iter()
        .map(|c| campaign_json(c, counts.iter().find(|x| x.campaign == c.id)))
        .collect();
    Ok(Json(CampaignList { campaigns }))
}

fn id_of(p: Result<Path<i64>, PathRejection>) -> ApiResult<i64> {
    p.map(|Path(id)| id)
        .map_err(|_| ApiError::new(Code::NotFound, "no such campaign"))
}

#[utoipa::path(get, path = "/v1/admin/email/campaigns/{id}", tag = "admin",
    summary = "One campaign",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, description = "The campaign with its messages by status", body = CampaignView)))]
pub async fn get(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<CampaignView>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    mail(&st)?;
    let c = campaigns::get(&st, id_of(id)?).await?;
    let counts = st.store.email().campaign_counts().await?;
    Ok(Json(campaign_json(
        &c,
        counts.iter().find(|x| x.campaign == c.id),
    )))
}

/// A page of a campaign's messages, in subject order.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// The subject id after which the page starts (`next` of the previous page).
    #[param(pattern = "^[0-9a-f]{32}$")]
    after: Option<String>,
    /// At most this many (1 to 1000, default 100).
    limit: Option<usize>,
}

/// A message's status (documentation only: answered as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EmailMessageStatus)]
enum MessageStatusDoc {
    /// Waiting for its turn.
    Queued,
    /// Being handed over: counts as sent, never sent again.
    Committing,
    Sent,
    /// Refused permanently (the address is suppressed).
    Bounced,
    /// Given up after too many temporary failures.
    Failed,
    /// Not sent: the person withdrew, left the list or was suppressed by then.
    Skipped,
}

/// One recipient's message, by pseudonym.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailCampaignMessage)]
pub struct MessageView {
    /// The recipient's subject id (a pseudonym).
    subject: String,
    #[schema(value_type = MessageStatusDoc)]
    status: &'static str,
    attempts: u32,
    updated: String,
    /// The last SMTP reply or reason.
    detail: Option<String>,
}

/// A page of a campaign's messages.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailCampaignMessages)]
pub struct MessagePage {
    messages: Vec<MessageView>,
    /// `after` for the next page; `null` on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/v1/admin/email/campaigns/{id}/messages", tag = "admin",
    summary = "A campaign's messages",
    description = "Each recipient's message status, by pseudonym (never the address), in pages.",
    params(("id" = i64, Path, description = "The campaign's id"), MessagesQuery),
    responses((status = 200, description = "A page of messages", body = MessagePage)))]
pub async fn messages(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<MessagesQuery>, QueryRejection>,
) -> ApiResult<Json<MessagePage>> {
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
    let messages = rows
        .iter()
        .map(|m| MessageView {
            subject: m.subject.to_string(),
            status: m.status.as_str(),
            attempts: m.attempts,
            updated: format_ms(m.updated_ms),
            detail: m.detail.clone(),
        })
        .collect();
    Ok(Json(MessagePage { messages, next }))
}

/// Whose preview: a subject's (with their fields), or nobody's (fields empty). An empty
/// body is nobody's too.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EmailPreviewRequest)]
struct PreviewBody {
    /// A subject id.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    subject: Option<String>,
}

/// A campaign rendered for one recipient.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailCampaignPreview)]
pub struct PreviewView {
    /// The subject line.
    subject: String,
    text: String,
    html: Option<String>,
}

#[utoipa::path(post, path = "/v1/admin/email/campaigns/{id}/preview", tag = "admin",
    summary = "Preview a campaign",
    description = "What one person (a subject id) or nobody in particular would get. Nothing is sent.",
    params(("id" = i64, Path, description = "The campaign's id")),
    request_body(content = ref("#/components/schemas/EmailPreviewRequest"),
        description = "Optional: an empty body (or `{}`) previews the mail for nobody in particular."),
    responses((status = 200, description = "The rendered mail", body = PreviewView)))]
pub async fn preview(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    body: Body,
) -> ApiResult<Json<PreviewView>> {
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
    Ok(Json(PreviewView {
        subject: r.subject_line,
        text: r.text,
        html: r.html,
    }))
}

/// Where to send a test.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EmailTestRequest, example = json!({"to": "me@example.com"}))]
struct TestBody {
    /// An address of the operator's: the preview goes there, outside any list.
    #[schema(format = Email)]
    to: String,
}

/// A test mail waiting in the outbox.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailTestQueued)]
pub struct TestQueued {
    /// Always `queued`.
    status: &'static str,
}

#[utoipa::path(post, path = "/v1/admin/email/campaigns/{id}/test", tag = "admin",
    summary = "Send a campaign's preview to an address",
    description = "The preview with empty fields, subject line prefixed `[test]`, as plain text.",
    params(("id" = i64, Path, description = "The campaign's id")),
    request_body = TestBody,
    responses((status = 202, description = "Queued for sending", body = TestQueued)))]
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
    Ok((StatusCode::ACCEPTED, Json(TestQueued { status: "queued" })).into_response())
}

/// A started campaign and how many messages were queued.
#[derive(Serialize, ToSchema)]
#[schema(as = EmailCampaignStarted)]
pub struct StartedView {
    #[serde(flatten)]
    campaign: CampaignView,
    /// Recipients queued: the list's confirmed members who grant its purpose now (and
    /// are in the segment, if one is named).
    queued: u64,
}

#[utoipa::path(post, path = "/v1/admin/email/campaigns/{id}/start", tag = "admin",
    summary = "Start a campaign",
    description = "Queues the list's confirmed members who grant its purpose now (and are in the \
segment, if one is named) and starts sending; each message is decided again just before it goes out. \
Only a draft starts (`conflict` otherwise).",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, description = "The campaign, now sending", body = StartedView)))]
pub async fn start(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<StartedView>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mail = mail(&st)?;
    let id = id_of(id)?;
    let queued = campaigns::start(&st, &mail, id).await?;
    let c = campaigns::get(&st, id).await?;
    Ok(Json(StartedView {
        campaign: campaign_json(&c, None),
        queued,
    }))
}

#[utoipa::path(post, path = "/v1/admin/email/campaigns/{id}/cancel", tag = "admin",
    summary = "Cancel a campaign",
    description = "A draft, or a campaign being sent: messages still queued are skipped when their turn \
comes. `conflict` for a campaign already sent or cancelled.",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, description = "The campaign, cancelled", body = CampaignView)))]
pub async fn cancel(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<CampaignView>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    mail(&st)?;
    let id = id_of(id)?;
    campaigns::cancel(&st, id).await?;
    Ok(Json(campaign_json(&campaigns::get(&st, id).await?, None)))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        subscribe, lists, feedback, create, list, get, messages, preview, test_send, start, cancel
    ),
    components(schemas(PreviewBody))
)]
pub(crate) struct Api;
