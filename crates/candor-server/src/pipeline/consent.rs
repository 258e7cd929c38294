//! Consent requests: who may act for whom, and a request turned into the commands the
//! store applies as one atomic unit, the Global Privacy Control rule included.
//!
//! Who may act for whom: a browser write key only for the anonymous id it presents, and
//! only while that id is linked to nothing else; a server write key for any id; a
//! subject token for the user it was minted for (and an anonymous id presented beside
//! it that belongs to no one else). The rule is `candor_store::plan::identity`'s. A
//! request carrying `Sec-GPC: 1` refuses every sale/sharing purpose (channel `gpc`) and
//! cannot grant them, in the same atomic unit as the rest of the request.

use super::identity;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;
use candor_core::consent::{Action, Channel};
use candor_core::crypto::{IdKind, MasterKey};
use candor_core::lang::Language;
use candor_core::ledger::{self, Evidence};
use candor_core::purpose::{Catalog, Purpose};
use candor_core::time::UnixMillis;
use candor_core::{PurposeId, Sensitive};
use candor_core::{SourceId, SubjectId};
use candor_store::plan::identity;
use candor_store::{Authority, ConsentCommand, Identity, PurposeChange};
use std::collections::BTreeMap;

/// Who is asking, after authentication.
pub enum Actor {
    /// A browser (public) write key: speaks for the anonymous id it presents.
    Browser(SourceId),
    /// A server (secret) write key: speaks for anyone.
    Server(SourceId),
    /// A subject token, for this user id.
    User(Sensitive<String>),
    /// A person signed in by a link mailed to this address (lowercased): holding the
    /// mailbox is the credential.
    Email(Sensitive<String>),
}

impl Actor {
    pub fn default_channel(&self) -> Channel {
        match self {
            Actor::Browser(_) => Channel::Prompt,
            Actor::Server(_) => Channel::Api,
            Actor::User(_) | Actor::Email(_) => Channel::PreferenceCenter,
        }
    }

    /// The credential as the ledger records it (inside the signed bytes).
    pub fn recorded(&self) -> ledger::Actor {
        match self {
            Actor::Browser(s) | Actor::Server(s) => ledger::Actor::Source(s.clone()),
            Actor::User(_) => ledger::Actor::SubjectToken,
            Actor::Email(_) => ledger::Actor::EmailLink,
        }
    }

    /// The channels this credential may claim. A page (browser key or subject token)
    /// shows a prompt or a preference center; only the operator's backend (a server
    /// key) can vouch that an email confirmation happened or that a choice came
    /// through its own API. `imported` belongs to `POST /v1/consent/signals` and
    /// `candor import`, `gpc` to the signal itself; nobody claims them.
    pub fn channels(&self) -> &'static [Channel] {
        match self {
            Actor::Browser(_) | Actor::User(_) | Actor::Email(_) => {
                &[Channel::Prompt, Channel::PreferenceCenter]
            }
            Actor::Server(_) => &[
                Channel::Prompt,
                Channel::PreferenceCenter,
                Channel::EmailConfirmation,
                Channel::Api,
            ],
        }
    }
}

/// The identifiers a request names, and whom its credential speaks for.
pub struct Named {
    pub identities: Vec<Identity>,
    pub authority: Authority,
}

/// The identifiers a request names, checked against what the actor may claim: a
/// browser key names no user id, a subject token only its own. Whether the subject
/// they reach is the actor's is decided by [`resolve`] (reads) and by the store's
/// writer (changes), with `plan::identity`'s one rule.
pub fn identities(
    master: &MasterKey,
    actor: &Actor,
    user_id: Option<&str>,
    anonymous_id: Option<&str>,
) -> ApiResult<Named> {
    let check = |v: &str, what: &str| -> ApiResult<()> {
        if v.is_empty() || v.chars().count() > 512 {
            return Err(ApiError::new(
                Code::InvalidRequest,
                format!("{what} must be 1 to 512 characters"),
            ));
        }
        Ok(())
    };
    let user = match (actor, user_id) {
        (Actor::Browser(_), Some(_)) => return Err(not_yours()),
        (Actor::User(u), Some(given)) if given != u.expose() => {
            return Err(ApiError::new(
                Code::Forbidden,
                "the subject token is for a different userId",
            ))
        }
        (Actor::User(u), _) => Some(u.expose().clone()),
        (Actor::Email(_), Some(_)) => return Err(not_yours()),
        (_, u) => u.map(str::to_owned),
    };
    let mut identities = Vec::new();
    if let Actor::Email(e) = actor {
        identities.push(identity(master, IdKind::Email, e.expose()));
    }
    if let Some(u) = user {
        check(&u, "userId")?;
        identities.push(identity(master, IdKind::UserId, &u));
    }
    if let Some(a) = anonymous_id {
        check(a, "anonymousId")?;
        identities.push(identity(master, IdKind::AnonymousId, a));
    }
    if identities.is_empty() {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "anonymousId or userId is required",
        ));
    }
    let authority = match actor {
        Actor::Server(_) => Authority::Any,
        Actor::Browser(_) => Authority::Named { owner: None },
        Actor::User(_) | Actor::Email(_) => Authority::Named {
            owner: identities.first().map(|i| i.hash),
        },
    };
    Ok(Named {
        identities,
        authority,
    })
}

/// Why a browser key or a subject token may not act for a subject (the same answer
/// whether or not that subject exists or consented).
pub fn not_yours() -> ApiError {
    ApiError::new(
        Code::SubjectTokenRequired,
        "a browser write key acts only for an anonymousId that is not linked to anything else; acting for a userId, or for an anonymousId linked to one, needs a subject token for that user or a server key",
    )
}

/// The subject the request's identifiers name (the first that resolves), if the
/// credential may act for it: the read side of `plan::identity::may_act`, over the
/// in-memory identity map. `None` when none resolves.
pub fn resolve(st: &AppState, named: &Named) -> ApiResult<Option<SubjectId>> {
    let Some(subject) = named
        .identities
        .iter()
        .find_map(|i| st.store.resolve(&i.hash))
    else {
        return Ok(None);
    };
    let owner_subject = match &named.authority {
        Authority::Named { owner: Some(h) } => st.store.resolve(h),
        _ => None,
    };
    let in_request = named
        .identities
        .iter()
        .filter(|i| st.store.resolve(&i.hash) == Some(subject))
        .count();
    identity::may_act(
        &named.authority,
        subject,
        owner_subject,
        st.store.held(&subject),
        in_request,
    )
    .map_err(|_| not_yours())?;
    Ok(Some(subject))
}

/// The channel a request claims (or the actor's default), if the actor may claim it.
pub fn channel(actor: &Actor, given: Option<&str>) -> ApiResult<Channel> {
    let allowed = actor.channels();
    let Some(s) = given else {
        return Ok(actor.default_channel());
    };
    match Channel::parse(s) {
        Some(c) if allowed.contains(&c) => Ok(c),
        _ => Err(ApiError::new(
            Code::InvalidRequest,
            format!(
                "channel must be one of {} for this credential",
                allowed
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Evidence as a client supplied it, checked against the limits (`Evidence::parse`).
pub fn evidence(supplied: BTreeMap<String, String>) -> ApiResult<Evidence> {
    Evidence::parse(supplied).map_err(|e| ApiError::new(Code::InvalidRequest, e.to_string()))
}

/// A change of `p` to `action`, under the notice the catalog holds now.
pub fn change(p: &Purpose, action: Action) -> PurposeChange {
    PurposeChange {
        purpose: p.id.clone(),
        bit: p.bit,
        action,
        notice_version: p.notice.version,
        notice_hash: p.notice.hash,
    }
}

/// One consent request, checked.
pub struct Request {
    pub named: Named,
    /// Who acted, as every record the request appends says.
    pub actor: ledger::Actor,
    /// The choices, in request order, for purposes of the catalog.
    pub choices: Vec<(PurposeId, Action)>,
    pub channel: Channel,
    pub evidence: Evidence,
    /// The Global Privacy Control signal the request carried (`Sec-GPC: 1`, or
    /// `Candor-GPC: 1` from candor.js), as sent.
    pub gpc: Option<&'static str>,
    /// The language the notices were shown in (a prompt says so): the choices record
    /// the hash of the text in that language (`Purpose::localized`).
    pub notice_language: Option<Language>,
    pub time: UnixMillis,
}

/// What the Global Privacy Control signal did to a request.
pub struct GpcApplied {
    /// Grants the request asked for that the signal overrode.
    pub overridden: Vec<String>,
}

/// The commands for one request, to apply atomically: the GPC refusal of every
/// sale/sharing purpose (when the signal is present) and the choices, minus what the
/// signal forbids.
pub fn commands(catalog: &Catalog, req: Request) -> (Vec<ConsentCommand>, Option<GpcApplied>) {
    let sale = catalog.sale_or_sharing();
    let mut cmds = Vec::new();
    let mut evidence = req.evidence;
    if let Some(signal) = req.gpc {
        evidence = evidence.with("gpc", "1");
        cmds.push(ConsentCommand {
            identities: req.named.identities.clone(),
            authority: req.named.authority.clone(),
            actor: req.actor.clone(),
            create: true,
            changes: catalog
                .purposes()
                .iter()
                .filter(|p| sale.contains(p.bit))
                .map(|p| change(p, Action::Refuse))
                .collect(),
            channel: Channel::Gpc,
            evidence: Evidence::default().with("signal", signal),
            time_ms: req.time,
            list: None,
        });
    }
    // What the person read: the notice in the language they were shown.
    let shown = |p: &Purpose, action| PurposeChange {
        notice_hash: p
            .localized(catalog.language(), req.notice_language.as_ref())
            .notice
            .hash,
        ..change(p, action)
    };
    if let Some(l) = &req.notice_language {
        evidence = evidence.with("noticeLanguage", l.to_string());
    }
    let mut overridden = Vec::new();
    let mut changes = Vec::new();
    for (id, action) in req.choices {
        let Some(p) = catalog.purpose(&id) else {
            continue;
        };
        if req.gpc.is_some() && sale.contains(p.bit) {
            if action == Action::Grant {
                overridden.push(id.to_string());
            }
            continue;
        }
        changes.push(shown(p, action));
    }
    if !changes.is_empty() || cmds.is_empty() {
        cmds.push(ConsentCommand {
            identities: req.named.identities,
            authority: req.named.authority,
            actor: req.actor,
            create: true,
            changes,
            channel: req.channel,
            evidence,
            time_ms: req.time,
            list: None,
        });
    }
    (cmds, req.gpc.map(|_| GpcApplied { overridden }))
}
