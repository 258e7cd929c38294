//! The consent gate: for one valid message, which purposes may use it, decided before
//! anything is stored (invariant 2). The purposes allowed are those the subject granted
//! that cover the message's data category, narrowed by the client's own signals
//! (`context.consent`, `Sec-GPC`); what no purpose allows is dropped with its reason.
//! The store re-checks consent at commit, inside its ordered path.

use super::identity;
use crate::segment::Message;
use crate::state::AppState;
use crate::telemetry::DropReason;
use candor_core::crypto::{IdKind, LookupHash};
use candor_core::time::UnixMillis;
use candor_store::{Identity, IngestRow};

/// What the gate decided for one message.
pub enum Decision {
    /// Allowed for the row's purposes: to be sealed and stored.
    Store(Box<IngestRow>),
    Drop(DropReason),
}

/// Where a message came from and what the request said around it.
pub struct Origin<'a> {
    /// The source (write key) it came through.
    pub source: &'a str,
    /// The request carried `Sec-GPC: 1`.
    pub gpc: bool,
    /// The batch's `sentAt`, for clock-skew correction.
    pub sent_at: Option<i64>,
    pub received: UnixMillis,
}

/// The consent gate for one message.
pub fn decide(st: &AppState, m: Message<'_>, origin: &Origin<'_>) -> Decision {
    let Some(category) = st.catalog.category_for(m.kind, m.name.as_deref()).cloned() else {
        return Decision::Drop(DropReason::Unmapped);
    };
    // Every identifier on the message; the first that resolves names the subject.
    let mut idents: Vec<Identity> = Vec::with_capacity(4);
    if let Some(u) = &m.user_id {
        idents.push(identity(&st.master, IdKind::UserId, u));
    }
    if let Some(a) = &m.anonymous_id {
        idents.push(identity(&st.master, IdKind::AnonymousId, a));
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
    if origin.gpc {
        narrowed = narrowed.minus(st.catalog.sale_or_sharing());
    }
    if narrowed.is_empty() {
        return Decision::Drop(DropReason::ClientConsent);
    }
    if let Some(e) = &m.email {
        idents.push(identity(&st.master, IdKind::Email, e));
    }
    if let Some(d) = &m.device_id {
        idents.push(identity(&st.master, IdKind::DeviceId, d));
    }
    let link: Vec<Identity> = idents
        .into_iter()
        .filter(|i| st.store.resolve(&i.hash).is_none())
        .collect();
    let now = origin.received;
    let event = UnixMillis(m.event_ms(origin.sent_at, now.0));
    let message_id = match &m.message_id {
        Some(id) => id.clone(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let payload = m.payload(&message_id);
    // Features for audience insights, only from events the subject allowed for that
    // purpose (and only read for the data categories that can yield any). A claimed time
    // outside (now - retention, now + 1 day] would make a feature retention deletes at
    // once, or one dated in the future: the event is stored, the feature is not.
    let in_window =
        event > now.minus_days(i64::from(st.insights_retention_days)) && event <= now.plus_days(1);
    let features = match st.insights_bit {
        Some(bit)
            if in_window
                && narrowed.contains(bit)
                && st.settings.insights.rules.wants(category.as_str()) =>
        {
            st.settings.insights.rules.extract(
                st.store.features().schema(),
                m.kind,
                category.as_str(),
                event,
                &m.insight_parts(),
            )
        }
        _ => Vec::new(),
    };
    Decision::Store(Box::new(IngestRow {
        subject,
        link,
        source: origin.source.to_owned(),
        dedup_key: st.master.dedup_key(origin.source, &message_id),
        kind: m.kind,
        category,
        purposes: narrowed,
        event_ms: event,
        received_ms: now,
        payload: payload.into(),
        features,
    }))
}
