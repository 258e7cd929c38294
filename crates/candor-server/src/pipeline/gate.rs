//! The consent gate: for one valid message, which purposes may use it, decided before
//! anything is stored (invariant 2). The purposes allowed are those the subject granted
//! that cover the message's data category, narrowed by the client's own signals
//! (`context.consent`, `Sec-GPC`); what no purpose allows is dropped with its reason.
//! The store re-checks consent at commit, inside its ordered path.
//!
//! Which subject a message belongs to depends on the credential (invariant 9): a
//! server key's identifiers all count and are linked; a browser key speaks only for
//! the anonymous id it presents (and a user id proven by a subject token), so it can
//! neither reach nor link to anyone else, and what it is told about a message never
//! depends on another person's consent.

use super::identity;
use crate::segment::Message;
use crate::state::AppState;
use crate::telemetry::DropReason;
use candor_core::crypto::{IdKind, LookupHash};
use candor_core::time::UnixMillis;
use candor_core::{Sensitive, SubjectId};
use candor_store::plan::identity;
use candor_store::{Authority, Identity, IngestRow};

/// What the gate decided for one message.
pub enum Decision {
    /// Allowed for the row's purposes: to be sealed and stored.
    Store(Box<IngestRow>),
    Drop(DropReason),
}

/// What the request's credential proves about identity (invariant 9).
#[derive(Clone, Debug)]
pub enum Credential {
    /// A server (secret) write key, or Candor itself (the demo seeder): its messages
    /// name whom they like, and their identifiers are linked.
    Server,
    /// A browser (public) write key: it speaks for the anonymous ids it presents, and
    /// for `user` when a subject token for that user came with the request.
    Browser { user: Option<Sensitive<String>> },
}

/// Where a message came from and what the request said around it.
pub struct Origin<'a> {
    /// The source (write key) it came through.
    pub source: &'a str,
    pub credential: &'a Credential,
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
    let (subject, mut idents) = match origin.credential {
        Credential::Server => match server_subject(st, &m) {
            Some(found) => found,
            None => return Decision::Drop(DropReason::NoConsent),
        },
        Credential::Browser { user } => match browser_subject(st, &m, user.as_ref()) {
            Ok(Some(found)) => found,
            Ok(None) => return Decision::Drop(DropReason::NoConsent),
            Err(reason) => return Decision::Drop(reason),
        },
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
    if matches!(origin.credential, Credential::Server) {
        // Only a server key's word links an email or a device id: a browser key (even
        // with a subject token) could otherwise steer another person's later events,
        // found by that email, into an account it controls.
        if let Some(e) = &m.email {
            idents.push(identity(&st.master, IdKind::Email, e));
        }
        if let Some(d) = &m.device_id {
            idents.push(identity(&st.master, IdKind::DeviceId, d));
        }
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

/// A server key's message: every identifier on it; the first that resolves names the
/// subject.
fn server_subject(st: &AppState, m: &Message<'_>) -> Option<(SubjectId, Vec<Identity>)> {
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
    let subject = candidates.iter().find_map(|h| st.store.resolve(h))?;
    Some((subject, idents))
}

/// A browser key's message: its anonymous id, and its user id only when the request's
/// subject token is for that user (a user id without that proof drops the message,
/// whoever it names, so the answer says nothing about anyone). A previousId, an email
/// or a device id is never used to find or link a subject. The subject found must be
/// the token's user's, or hold no identifier beyond those the message names
/// (`plan::identity`).
fn browser_subject(
    st: &AppState,
    m: &Message<'_>,
    token_user: Option<&Sensitive<String>>,
) -> Result<Option<(SubjectId, Vec<Identity>)>, DropReason> {
    let mut idents: Vec<Identity> = Vec::with_capacity(2);
    let mut owner = None;
    if let Some(u) = &m.user_id {
        match token_user {
            Some(t) if t.expose() == u => {
                let id = identity(&st.master, IdKind::UserId, u);
                owner = Some(id.hash);
                idents.push(id);
            }
            _ => return Err(DropReason::UnprovenIdentity),
        }
    }
    if let Some(a) = &m.anonymous_id {
        idents.push(identity(&st.master, IdKind::AnonymousId, a));
    }
    let Some(subject) = idents.iter().find_map(|i| st.store.resolve(&i.hash)) else {
        return Ok(None);
    };
    let named = idents
        .iter()
        .filter(|i| st.store.resolve(&i.hash) == Some(subject))
        .count();
    let owner_subject = owner.and_then(|h| st.store.resolve(&h));
    identity::may_act(
        &Authority::Named { owner },
        subject,
        owner_subject,
        st.store.held(&subject),
        named,
    )
    .map_err(|_| DropReason::UnprovenIdentity)?;
    Ok(Some((subject, idents)))
}
