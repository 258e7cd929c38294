//! Segment-compatible ingestion: `POST /v1/batch` and `/v1/{identify,track,page,screen,
//! group,alias}`, with the consent gate in front of storage.
//!
//! The order matters and is the invariant of this module: authenticate, bound the
//! body, validate *every* message (rejecting the whole request if any is invalid, so
//! nothing is half-applied), then decide per message which purposes may use it, and
//! only then seal and store what some purpose allows. What no purpose allows is
//! counted and never written.

use crate::auth;
use crate::body::{self, read_text};
use crate::error::{ApiError, ApiResult, Code, ItemError};
use crate::segment::{self, Message, MAX_BATCH_BYTES, MAX_EVENT_BYTES};
use crate::state::AppState;
use crate::telemetry::{DropReason, EventsAccepted, EventsDropped};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use candor_core::crypto::{IdKind, LookupHash};
use candor_core::event::EventKind;
use candor_store::{Identity, IngestRow, RowOutcome};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
    #[serde(rename = "sentAt")]
    sent_at: Option<String>,
}

#[derive(Serialize)]
pub struct ItemResult {
    index: usize,
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    status: &'static str,
    reason: &'static str,
}

#[derive(Serialize)]
pub struct IngestResponse {
    success: bool,
    pub accepted: usize,
    pub dropped: usize,
    duplicates: usize,
    /// Only the messages that were not stored, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    results: Vec<ItemResult>,
}

pub async fn batch(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<IngestResponse>> {
    let header_key = auth::basic_username(&headers)?;
    let text = read_text(&headers, body, MAX_BATCH_BYTES, Code::BatchTooLarge).await?;
    let parsed: BatchBody = body::parse_json(&text)?;
    let source = auth::source(
        &st.sources,
        header_key.as_deref(),
        parsed.write_key.as_deref(),
    )?;
    let batch_sent_at = parsed.sent_at.as_deref().and_then(segment::parse_time);
    let raws: Vec<&str> = parsed.batch.iter().map(|r| r.get()).collect();
    let gpc = super::sec_gpc(&headers);
    ingest(&st, gpc, source.id.as_str(), &raws, None, batch_sent_at)
        .await
        .map(Json)
}

macro_rules! single {
    ($name:ident, $kind:expr) => {
        pub async fn $name(
            State(st): State<AppState>,
            headers: HeaderMap,
            body: Body,
        ) -> ApiResult<Json<IngestResponse>> {
            single(st, headers, body, $kind).await
        }
    };
}

single!(identify, EventKind::Identify);
single!(track, EventKind::Track);
single!(page, EventKind::Page);
single!(screen, EventKind::Screen);
single!(group, EventKind::Group);
single!(alias, EventKind::Alias);

async fn single(
    st: AppState,
    headers: HeaderMap,
    body: Body,
    kind: EventKind,
) -> ApiResult<Json<IngestResponse>> {
    let header_key = auth::basic_username(&headers)?;
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
    let fields: HashMap<std::borrow::Cow<'_, str>, &RawValue> = body::parse_json(&text)?;
    let body_key: Option<String> = fields
        .get("writeKey")
        .and_then(|r| serde_json::from_str(r.get()).ok());
    let source = auth::source(&st.sources, header_key.as_deref(), body_key.as_deref())?;
    ingest(
        &st,
        super::sec_gpc(&headers),
        source.id.as_str(),
        &[text.as_str()],
        Some(kind),
        None,
    )
    .await
    .map(Json)
}

/// What the gate decided for one message.
enum Decision {
    /// Allowed: to be sealed and written.
    Store(Box<IngestRow>),
    /// Handed to the store (and, unless the store says otherwise, stored).
    Stored,
    Drop(DropReason),
}

/// Validates, gates, seals and stores a set of raw messages from one source. Also
/// used by the demo seeder, so synthetic data passes the very same gate.
pub(crate) async fn ingest(
    st: &AppState,
    gpc: bool,
    source: &str,
    raws: &[&str],
    implied: Option<EventKind>,
    batch_sent_at: Option<i64>,
) -> ApiResult<IngestResponse> {
    // 1. Validate everything first; any invalid message rejects the request whole.
    let mut messages = Vec::with_capacity(raws.len());
    let mut errors = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        match segment::parse_message(raw, implied) {
            Ok(m) => messages.push(m),
            Err(e) => errors.push((i, e)),
        }
    }
    if let Some((_, first)) = errors.first() {
        // A single-message endpoint answers with the message's own code (e.g.
        // event_too_large); a batch with invalid_message and the list.
        let (code, msg) = match implied {
            Some(_) => (first.code, first.message.clone()),
            None => (
                Code::InvalidMessage,
                format!(
                    "{} of {} messages are invalid; nothing was stored",
                    errors.len(),
                    raws.len()
                ),
            ),
        };
        let items = errors
            .into_iter()
            .map(|(index, e)| ItemError {
                index,
                code: e.code.as_str(),
                message: e.message,
            })
            .collect();
        return Err(ApiError::new(code, msg).with_items(items));
    }

    // 2. Gate each message.
    let now = st.now_ms();
    let mut decisions = Vec::with_capacity(messages.len());
    let mut ids = Vec::with_capacity(messages.len());
    for m in messages {
        ids.push(m.message_id.clone());
        decisions.push(gate(st, m, source, gpc, batch_sent_at, now));
    }

    // 3. Hand what the gate allowed to the store, which seals it and stores it durably.
    let mut rows = Vec::new();
    let mut row_index = Vec::new();
    for (i, d) in decisions.iter_mut().enumerate() {
        if let Decision::Store(_) = d {
            if let Decision::Store(row) = std::mem::replace(d, Decision::Stored) {
                rows.push(*row);
                row_index.push(i);
            }
        }
    }

    // 4. Report.
    let outcomes = st.store.ingest(rows).await?;
    for (i, o) in row_index.iter().zip(outcomes) {
        match o {
            RowOutcome::Stored => {}
            RowOutcome::Duplicate => decisions[*i] = Decision::Drop(DropReason::Duplicate),
            RowOutcome::ConsentChanged => {
                decisions[*i] = Decision::Drop(DropReason::ConsentChanged)
            }
        }
    }
    let mut resp = IngestResponse {
        success: true,
        accepted: 0,
        dropped: 0,
        duplicates: 0,
        results: Vec::new(),
    };
    let mut by_reason: HashMap<DropReason, u64> = HashMap::new();
    for (index, (d, message_id)) in decisions.iter().zip(ids).enumerate() {
        match d {
            Decision::Store(_) | Decision::Stored => resp.accepted += 1,
            Decision::Drop(reason) => {
                *by_reason.entry(*reason).or_default() += 1;
                let duplicate = *reason == DropReason::Duplicate;
                if duplicate {
                    resp.duplicates += 1;
                } else {
                    resp.dropped += 1;
                }
                resp.results.push(ItemResult {
                    index,
                    message_id,
                    status: if duplicate { "duplicate" } else { "dropped" },
                    reason: reason.as_str(),
                });
            }
        }
    }
    EventsAccepted {
        source,
        count: resp.accepted as u64,
    }
    .emit();
    for (reason, count) in by_reason {
        EventsDropped { reason, count }.emit();
    }
    Ok(resp)
}

fn identity(st: &AppState, kind: IdKind, value: &str) -> Identity {
    Identity {
        kind,
        hash: st.master.lookup_hash(kind, value),
        value: value.to_owned().into(),
    }
}

/// The consent gate for one message.
fn gate(
    st: &AppState,
    m: Message<'_>,
    source: &str,
    gpc: bool,
    batch_sent_at: Option<i64>,
    now: i64,
) -> Decision {
    let Some(category) = st.catalog.category_for(m.kind, m.name.as_deref()).cloned() else {
        return Decision::Drop(DropReason::Unmapped);
    };
    // Every identifier on the message; the first that resolves names the subject.
    let mut idents: Vec<Identity> = Vec::with_capacity(4);
    if let Some(u) = &m.user_id {
        idents.push(identity(st, IdKind::UserId, u));
    }
    if let Some(a) = &m.anonymous_id {
        idents.push(identity(st, IdKind::AnonymousId, a));
    }
    let mut candidates: Vec<LookupHash> = idents.iter().map(|i| i.hash).collect();
    if let Some(p) = &m.previous_id {
        // An alias's previousId may be a user id or an anonymous id.
        candidates.push(st.master.lookup_hash(IdKind::UserId, p));
        candidates.push(st.master.lookup_hash(IdKind::AnonymousId, p));
    }
    let Some(subject) = candidates.iter().find_map(|h| st.store.resolve(h)) else {
        return Decision::Drop(DropReason::NoConsent);
    };
    let allowed = st
        .store
        .index()
        .granted(&subject)
        .intersect(st.catalog.covering(&category));
    if allowed.is_empty() {
        return Decision::Drop(DropReason::NoConsent);
    }
    // The client's own signals may only narrow.
    let mut narrowed = allowed;
    for name in &m.client_refused {
        // Names that are not our purposes (another CMP's categories) narrow nothing.
        if let Ok(s) = st.catalog.set_of([name.as_str()]) {
            narrowed = narrowed.minus(s);
        }
    }
    if gpc {
        narrowed = narrowed.minus(st.catalog.sale_or_sharing());
    }
    if narrowed.is_empty() {
        return Decision::Drop(DropReason::ClientConsent);
    }
    if let Some(e) = &m.email {
        idents.push(identity(st, IdKind::Email, e));
    }
    if let Some(d) = &m.device_id {
        idents.push(identity(st, IdKind::DeviceId, d));
    }
    let link: Vec<Identity> = idents
        .into_iter()
        .filter(|i| st.store.resolve(&i.hash).is_none())
        .collect();
    let event_ms = m.event_ms(batch_sent_at, now);
    let message_id = match &m.message_id {
        Some(id) => id.clone(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let payload = m.payload(&message_id);
    // Features for audience insights, only from events the subject allowed for that
    // purpose (and only parsed for the data categories that can yield any).
    // A claimed time outside (now - retention, now + 1 day] would make a feature retention
    // deletes at once, or one dated in the future: the event is stored, the feature is not.
    let in_window = event_ms > now - st.insights_retention_ms && event_ms <= now + 86_400_000;
    let features = match st.insights_bit {
        Some(bit)
            if in_window
                && narrowed.contains(bit)
                && st.settings.insights.rules.wants(category.as_str()) =>
        {
            st.settings.insights.rules.extract(
                st.store.features().schema(),
                m.kind.as_str(),
                category.as_str(),
                event_ms,
                &candor_insights::extract::Parts {
                    properties: m.properties,
                    traits: m.traits.as_ref(),
                    share_in_aggregate: &m.share_in_aggregate,
                },
            )
        }
        _ => Vec::new(),
    };
    Decision::Store(Box::new(IngestRow {
        subject,
        link,
        source: source.to_owned(),
        dedup_key: st.master.dedup_key(source, &message_id),
        kind: m.kind,
        category,
        purposes: narrowed,
        event_ms,
        received_ms: now,
        payload: payload.into(),
        features,
    }))
}
