//! Segment-compatible ingestion: `POST /v1/batch` and `/v1/{identify,track,page,screen,
//! group,alias}`. The HTTP source of the ingestion pipeline: authenticate, bound the
//! body, find the messages, hand them to `pipeline::ingest` (validate all, gate each,
//! seal and store what some purpose allows) and answer with its report.

use crate::auth;
use crate::body::{self, read_text};
use crate::config::SourceSpec;
use crate::error::{ApiError, ApiResult, Code};
use crate::pipeline;
use crate::pipeline::gate::Credential;
use crate::segment::{self, MAX_BATCH_BYTES, MAX_EVENT_BYTES};
use crate::state::AppState;
use crate::telemetry::DropReason;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use candor_core::event::EventKind;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
    #[serde(rename = "sentAt")]
    sent_at: Option<String>,
}

/// What became of one message that was not stored.
#[derive(Serialize, ToSchema)]
pub struct ItemResult {
    /// The message's position in the request (0 for a single message).
    index: usize,
    /// The message's `messageId`, when it had one.
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    message_id: Option<String>,
    #[schema(value_type = ItemStatusDoc)]
    status: &'static str,
    #[schema(value_type = DropReasonDoc)]
    reason: &'static str,
}

/// What a request's messages became. Invalid messages are not here: any invalid
/// message rejects the whole request (`invalid_message`, or the message's own code on
/// a single-message route) and nothing is stored.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"success": true, "accepted": 1, "dropped": 1, "duplicates": 0,
    "results": [{"index": 1, "messageId": "m-2", "status": "dropped", "reason": "no_consent"}]}))]
pub struct IngestResponse {
    /// Always true: the request was processed (dropping a message is not a failure).
    success: bool,
    /// Messages stored.
    pub accepted: usize,
    /// Messages not stored for a reason other than being a duplicate.
    pub dropped: usize,
    /// Messages already stored (same source and `messageId`).
    duplicates: usize,
    /// Only the messages that were not stored, with why (absent when all were stored).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    results: Vec<ItemResult>,
}

/// `status` of a message not stored (documentation only).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = IngestItemStatus)]
enum ItemStatusDoc {
    Dropped,
    Duplicate,
}

/// Why a message was not stored (documentation only: `telemetry::DropReason`).
/// `no_consent`: no purpose the subject granted covers the event's data category (or
/// no one is known by its identifiers); `unmapped_event`: the event maps to no data
/// category; `client_consent`: the message's `context.consent` or the GPC signal
/// excluded every purpose left; `consent_changed`: consent was withdrawn before the
/// commit; `duplicate`: same source and `messageId` already stored;
/// `unproven_identity`: a browser key named a `userId` without a subject token for it,
/// or an anonymous id linked to more than it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DropReason)]
enum DropReasonDoc {
    NoConsent,
    #[serde(rename = "unmapped_event")]
    Unmapped,
    ClientConsent,
    ConsentChanged,
    Duplicate,
    UnprovenIdentity,
}

#[utoipa::path(post, path = "/v1/batch", tag = "ingest",
    summary = "Send a batch of Segment messages",
    description = "Segment's batch call: up to 500 KB of messages of any type (each at most 32 KB). \
Every message is validated first: one invalid message rejects the whole batch (`invalid_message`, \
with each invalid item in `errors`) and nothing is stored. Each valid message is then stored only \
for the purposes its subject granted that cover its data category; the others are dropped and \
listed in `results` with the reason. The write key goes as the Basic-auth user name or as \
`writeKey` in the body. `Sec-GPC: 1` (or `Candor-GPC: 1`) removes sale or sharing purposes.",
    params(IngestHeaders),
    request_body(content = BatchRequest, content_type = "application/json",
        description = "The batch, as JSON; it may be gzip-compressed (`Content-Encoding: gzip`)."),
    responses((status = 200, description = "What each message became; dropped ones listed with the reason", body = IngestResponse)))]
pub async fn batch(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<IngestResponse>> {
    let header_source = auth::header_source(&st.sources, &headers)?;
    let text = read_text(&headers, body, MAX_BATCH_BYTES, Code::BatchTooLarge).await?;
    let parsed: BatchBody = body::parse_json(&text)?;
    let source = match header_source {
        Some(s) => s,
        None => auth::source(&st.sources, None, parsed.write_key.as_deref())?,
    };
    let credential = credential(&st, &headers, source)?;
    let batch_sent_at = parsed.sent_at.as_deref().and_then(segment::parse_time);
    let raws: Vec<&str> = parsed.batch.iter().map(|r| r.get()).collect();
    let report = pipeline::ingest::run(
        &st,
        pipeline::ingest::Request {
            source: source.id.as_str(),
            credential,
            raws: &raws,
            implied: None,
            sent_at: batch_sent_at,
            gpc: super::sec_gpc(&headers),
        },
    )
    .await?;
    Ok(Json(report.into()))
}

#[utoipa::path(post, path = "/v1/import", tag = "ingest",
    summary = "Send a batch of Segment messages (import)",
    description = "The same as `POST /v1/batch` (Segment's import endpoint): the same body, limits, \
consent gate and answer.",
    params(IngestHeaders),
    request_body(content = BatchRequest, content_type = "application/json",
        description = "The batch, as JSON; it may be gzip-compressed (`Content-Encoding: gzip`)."),
    responses((status = 200, description = "What each message became; dropped ones listed with the reason", body = IngestResponse)))]
pub async fn import(
    st: State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<IngestResponse>> {
    batch(st, headers, body).await
}

macro_rules! single {
    ($name:ident, $kind:expr, $path:literal, $what:literal, $body:ty) => {
        #[utoipa::path(post, path = $path, tag = "ingest",
            summary = concat!("Send one ", $what, " message"),
            description = concat!("One Segment `", $what, "` message of at most 32 KB, \
gated as in `POST /v1/batch`: stored for the purposes its subject granted, or dropped with the \
reason. An invalid message is refused with its own code (`invalid_message`, `event_too_large`). \
`type` may be left out; if given it must be `", $what, "`. The write key goes as the Basic-auth \
user name or as `writeKey` in the body."),
            params(IngestHeaders),
            request_body(content = $body, content_type = "application/json",
                description = "The message, as JSON; it may be gzip-compressed (`Content-Encoding: gzip`)."),
            responses((status = 200, description = "Whether the message was stored, and why not", body = IngestResponse)))]
        pub async fn $name(
            State(st): State<AppState>,
            headers: HeaderMap,
            body: Body,
        ) -> ApiResult<Json<IngestResponse>> {
            single(st, headers, body, $kind).await
        }
    };
}

single!(
    identify,
    EventKind::Identify,
    "/v1/identify",
    "identify",
    IdentifyBody
);
single!(track, EventKind::Track, "/v1/track", "track", TrackBody);
single!(page, EventKind::Page, "/v1/page", "page", PageBody);
single!(
    screen,
    EventKind::Screen,
    "/v1/screen",
    "screen",
    ScreenBody
);
single!(group, EventKind::Group, "/v1/group", "group", GroupBody);
single!(alias, EventKind::Alias, "/v1/alias", "alias", AliasBody);

async fn single(
    st: AppState,
    headers: HeaderMap,
    body: Body,
    kind: EventKind,
) -> ApiResult<Json<IngestResponse>> {
    let header_source = auth::header_source(&st.sources, &headers)?;
    let text = read_text(&headers, body, MAX_EVENT_BYTES, Code::EventTooLarge).await?;
    // Check the JSON (and find a body write key) before authenticating, so that a
    // malformed body gets invalid_json rather than missing_write_key.
    if !text.trim_start().starts_with('{') {
        body::parse_json::<serde::de::IgnoredAny>(&text)?;
        return Err(ApiError::new(
            Code::InvalidRequest,
            "the body must be a JSON object (one message)",
        ));
    }
    let source = match header_source {
        Some(s) => s,
        None => {
            let fields: HashMap<std::borrow::Cow<'_, str>, &RawValue> = body::parse_json(&text)?;
            let body_key: Option<String> = fields
                .get("writeKey")
                .and_then(|r| serde_json::from_str(r.get()).ok());
            auth::source(&st.sources, None, body_key.as_deref())?
        }
    };
    let credential = credential(&st, &headers, source)?;
    let report = pipeline::ingest::run(
        &st,
        pipeline::ingest::Request {
            source: source.id.as_str(),
            credential,
            raws: &[text.as_str()],
            implied: Some(kind),
            sent_at: None,
            gpc: super::sec_gpc(&headers),
        },
    )
    .await?;
    Ok(Json(report.into()))
}

/// The header by which a page hands candor.js's subject token to a browser source's
/// request, proving the user id its events name (issue 11).
pub const SUBJECT_TOKEN_HEADER: &str = "candor-subject-token";

/// What the request's credential proves: a server source anything; a browser source
/// its anonymous ids, plus the user of a valid subject token sent beside the write key.
fn credential(st: &AppState, headers: &HeaderMap, source: &SourceSpec) -> ApiResult<Credential> {
    if !auth::is_browser(source) {
        return Ok(Credential::Server);
    }
    let user = match headers.get(SUBJECT_TOKEN_HEADER) {
        None => None,
        Some(v) => {
            let token = v.to_str().map_err(|_| {
                ApiError::new(Code::InvalidSubjectToken, "subject token is malformed")
            })?;
            Some(st.subject_tokens.verify(token.trim(), st.now_ms() / 1000)?)
        }
    };
    Ok(Credential::Browser { user })
}

impl From<pipeline::ingest::Report> for IngestResponse {
    fn from(r: pipeline::ingest::Report) -> Self {
        let mut resp = IngestResponse {
            success: true,
            accepted: r.accepted,
            dropped: 0,
            duplicates: 0,
            results: Vec::with_capacity(r.dropped.len()),
        };
        for d in r.dropped {
            let duplicate = d.reason == DropReason::Duplicate;
            if duplicate {
                resp.duplicates += 1;
            } else {
                resp.dropped += 1;
            }
            resp.results.push(ItemResult {
                index: d.index,
                message_id: d.message_id,
                status: if duplicate { "duplicate" } else { "dropped" },
                reason: d.reason.as_str(),
            });
        }
        resp
    }
}

// The request's shapes, for the OpenAPI document only: the routes read messages by hand
// (`segment::parse_message`, over the raw JSON, so that the stored payload is the
// message as sent), and these mirror exactly what that parser accepts. Any other field
// of a message is accepted and stored as sent.

/// Headers the ingestion routes read (besides the write key's `Authorization`).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct IngestHeaders {
    /// `gzip` (or `x-gzip`) for a gzip-compressed body; `identity` or none otherwise.
    /// Anything else is refused (`unsupported_encoding`). The size limits apply after
    /// decompression.
    #[param(rename = "Content-Encoding", nullable = false)]
    content_encoding: Option<String>,
    /// With a browser write key: a subject token for the user the messages name as
    /// `userId` (minted by the operator's backend), proving that user id. Without it a
    /// browser key's message naming a `userId` is dropped (`unproven_identity`).
    #[param(rename = "Candor-Subject-Token", nullable = false)]
    candor_subject_token: Option<String>,
}

/// `POST /v1/batch` and `POST /v1/import`: Segment's batch.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "writeKey": "wk_server_example",
    "sentAt": "2026-11-29T13:20:12.000Z",
    "batch": [
        {"type": "identify", "messageId": "m-1", "userId": "user-42", "traits": {"plan": "pro"}},
        {"type": "track", "messageId": "m-2", "userId": "user-42", "event": "Order Completed",
         "properties": {"total": 42.5, "currency": "EUR"}, "timestamp": "2026-11-29T13:20:10.000Z"},
        {"type": "page", "messageId": "m-3", "anonymousId": "anon-7", "name": "Pricing"}
    ]
}))]
#[allow(dead_code)]
struct BatchRequest {
    /// The messages, each of at most 32 KB; `type` is required on each.
    batch: Vec<BatchMessage>,
    /// The source's write key, when it is not sent as the Basic-auth user name.
    write_key: Option<String>,
    /// When the client sent the batch (ISO-8601): corrects each message's
    /// `originalTimestamp` for the device's clock skew.
    #[schema(format = DateTime)]
    sent_at: Option<String>,
}

/// One message of a batch: any of the six Segment message types, told apart by `type`
/// (required in a batch).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(discriminator(property_name = "type", mapping(
    ("identify" = "#/components/schemas/IdentifyMessage"),
    ("track" = "#/components/schemas/TrackMessage"),
    ("page" = "#/components/schemas/PageMessage"),
    ("screen" = "#/components/schemas/ScreenMessage"),
    ("group" = "#/components/schemas/GroupMessage"),
    ("alias" = "#/components/schemas/AliasMessage"),
)))]
#[allow(dead_code)]
enum BatchMessage {
    Identify(IdentifyMessage),
    Track(TrackMessage),
    Page(PageMessage),
    Screen(ScreenMessage),
    Group(GroupMessage),
    Alias(AliasMessage),
}

/// The message's `context`: what Candor reads of it. Any other key (`ip`,
/// `userAgent`, `library`, `page`...) is accepted and stored as sent.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct MessageContext {
    /// The client's own consent signal: it can only narrow what the subject granted.
    consent: Option<ContextConsent>,
    /// The device; a server key's message links `device.id` to the subject.
    device: Option<ContextDevice>,
    /// An identify's traits, when the message has no top-level `traits`.
    #[schema(value_type = Option<Object>)]
    traits: Option<serde_json::Value>,
    /// Candor's own context.
    candor: Option<ContextCandor>,
}

/// `context.consent`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ContextConsent {
    /// Category (purpose id) → whether the person allows it; a purpose given `false`
    /// is not used for this message. Names that are not the operator's purposes (another
    /// consent manager's categories) change nothing.
    category_preferences: Option<std::collections::BTreeMap<String, bool>>,
}

/// `context.device`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct ContextDevice {
    /// The device id (a string of at most 512 characters, or a number).
    id: Option<String>,
}

/// `context.candor`: not validated; an unknown shape shares nothing.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct ContextCandor {
    /// The operator's declared insight fields the person shares in aggregate insights.
    share_in_aggregate: Option<Vec<String>>,
    /// Where the traits' field values came from (default `observed`).
    #[schema(value_type = Option<super::fields::ProvenanceDoc>)]
    provenance: Option<String>,
}

/// The message type, which a single-message route implies (documentation only).
macro_rules! kind_doc {
    ($name:ident, $as:ident, $variant:ident) => {
        #[derive(Deserialize, ToSchema)]
        #[serde(rename_all = "lowercase")]
        #[schema(as = $as)]
        enum $name {
            $variant,
        }
    };
}
kind_doc!(IdentifyKind, IdentifyType, Identify);
kind_doc!(TrackKind, TrackType, Track);
kind_doc!(PageKind, PageType, Page);
kind_doc!(ScreenKind, ScreenType, Screen);
kind_doc!(GroupKind, GroupType, Group);
kind_doc!(AliasKind, AliasType, Alias);

/// One Segment message type's two schemas, with the same fields: `$batch`, the message
/// in a batch (`type` required), and `$single`, the body of the type's own route (`type`
/// optional, the route implies it). Its own fields, then the fields every message has.
/// Identifiers (`userId`, `anonymousId`, `previousId`, `groupId`, `messageId`) are
/// strings of at most 512 characters; a number is accepted too (made a string), and an
/// empty string or `null` counts as absent. Timestamps are ISO-8601.
macro_rules! message_doc {
    ($(#[$meta:meta])* $batch:ident, $single:ident, $kind:ty, { $($fields:tt)* }) => {
        message_doc!(@one $(#[$meta])* $batch, $kind, { $($fields)* },
            "The message type: required in a batch.");
        message_doc!(@one $(#[$meta])* $single, Option<$kind>, { $($fields)* },
            "The message type: optional (the route implies it); if given, it must match.");
    };
    (@one $(#[$meta:meta])* $name:ident, $kind:ty, { $($fields:tt)* }, $kind_doc:literal) => {
        #[derive(Deserialize, ToSchema)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        $(#[$meta])*
        struct $name {
            #[doc = $kind_doc]
            #[serde(rename = "type")]
            kind: $kind,
            $($fields)*
            /// Deduplication key: a message with the `messageId` of one this source
            /// already sent is not stored again (`duplicate`). One is generated when
            /// absent.
            #[schema(max_length = 512)]
            message_id: Option<String>,
            /// When the event happened (ISO-8601). Wins over `originalTimestamp`.
            #[schema(format = DateTime)]
            timestamp: Option<String>,
            /// When the event happened by the device's clock, corrected with `sentAt`.
            #[schema(format = DateTime)]
            original_timestamp: Option<String>,
            /// When the device sent the message (ISO-8601).
            #[schema(format = DateTime)]
            sent_at: Option<String>,
            context: Option<MessageContext>,
            /// Segment's destination switches: accepted (an object) and stored, not used.
            #[schema(value_type = Option<Object>)]
            integrations: Option<serde_json::Value>,
            /// The source's write key, when it is not sent as the Basic-auth user name
            /// (in a batch, give it once as the batch's `writeKey`). Never stored.
            write_key: Option<String>,
        }
    };
}

message_doc!(
    /// `identify`: who the person is and their traits. Needs `userId` or `anonymousId`.
    /// A server key's identify links its identifiers (and `traits.email`) to one subject.
    #[schema(example = json!({"type": "identify", "userId": "user-42", "anonymousId": "anon-7",
        "traits": {"plan": "pro", "shoe_size": 42}}))]
    IdentifyMessage, IdentifyBody, IdentifyKind, {
        #[schema(max_length = 512)]
        user_id: Option<String>,
        #[schema(max_length = 512)]
        anonymous_id: Option<String>,
        /// The person's traits. `email` (a string of at most 512 characters) is linked as
        /// an identifier when a server key sends it; traits named like the operator's
        /// volunteered fields are written to those fields (with `context.candor.provenance`).
        #[schema(value_type = Option<Object>)]
        traits: Option<serde_json::Value>,
    }
);

message_doc!(
    /// `track`: something the person did. Needs `userId` or `anonymousId`, and `event`.
    #[schema(example = json!({"type": "track", "userId": "user-42", "event": "Order Completed",
        "properties": {"total": 42.5, "currency": "EUR"}}))]
    TrackMessage, TrackBody, TrackKind, {
        #[schema(max_length = 512)]
        user_id: Option<String>,
        #[schema(max_length = 512)]
        anonymous_id: Option<String>,
        /// The event's name (not empty): with the type, it decides the data category.
        #[schema(min_length = 1)]
        event: String,
        /// The event's properties (loyalty earning rules and insight features read them).
        #[schema(value_type = Option<Object>)]
        properties: Option<serde_json::Value>,
    }
);

message_doc!(
    /// `page`: a page view on the web. Needs `userId` or `anonymousId`.
    #[schema(example = json!({"type": "page", "anonymousId": "anon-7", "name": "Pricing",
        "properties": {"path": "/pricing"}}))]
    PageMessage, PageBody, PageKind, {
        #[schema(max_length = 512)]
        user_id: Option<String>,
        #[schema(max_length = 512)]
        anonymous_id: Option<String>,
        /// The page's name: with the type, it decides the data category.
        name: Option<String>,
        /// The page's category (stored as sent).
        category: Option<String>,
        #[schema(value_type = Option<Object>)]
        properties: Option<serde_json::Value>,
    }
);

message_doc!(
    /// `screen`: a screen view in an app. Needs `userId` or `anonymousId`.
    #[schema(example = json!({"type": "screen", "anonymousId": "anon-7", "name": "Home"}))]
    ScreenMessage, ScreenBody, ScreenKind, {
        #[schema(max_length = 512)]
        user_id: Option<String>,
        #[schema(max_length = 512)]
        anonymous_id: Option<String>,
        /// The screen's name: with the type, it decides the data category.
        name: Option<String>,
        #[schema(value_type = Option<Object>)]
        properties: Option<serde_json::Value>,
    }
);

message_doc!(
    /// `group`: the person's group (a company, a household). Needs `userId` or
    /// `anonymousId`, and `groupId`.
    #[schema(example = json!({"type": "group", "userId": "user-42", "groupId": "acme",
        "traits": {"name": "Acme"}}))]
    GroupMessage, GroupBody, GroupKind, {
        #[schema(max_length = 512)]
        user_id: Option<String>,
        #[schema(max_length = 512)]
        anonymous_id: Option<String>,
        #[schema(max_length = 512)]
        group_id: String,
        /// The group's traits.
        #[schema(value_type = Option<Object>)]
        traits: Option<serde_json::Value>,
    }
);

message_doc!(
    /// `alias`: a new identity for the same person. Needs `previousId` (a former user
    /// id or anonymous id) and `userId`.
    #[schema(example = json!({"type": "alias", "previousId": "anon-7", "userId": "user-42"}))]
    AliasMessage, AliasBody, AliasKind, {
        #[schema(max_length = 512)]
        previous_id: String,
        #[schema(max_length = 512)]
        user_id: String,
        #[schema(max_length = 512)]
        anonymous_id: Option<String>,
    }
);

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(batch, import, identify, track, page, screen, group, alias))]
pub(crate) struct Api;
