//! What a person does with a list, each as one consent command carrying its list change
//! (`candor_store::email::ListChange`), so the store writes the subscription and the
//! ledger record that proves it in one transaction.
//!
//! - [`ask`]: a pending subscription and, within the re-send limit, a confirmation mail.
//!   Whether the address was known, already confirmed or limited is not told to the
//!   asker (a form must not reveal who is subscribed).
//! - [`confirm`]: the token spent by a POST, pending → confirmed, the list's purpose
//!   granted under its current notice (one command: both or neither).
//! - [`leave`]: unsubscribed at once, a ledger record, the address suppressed for the
//!   list.
//! - [`expire`]: requests nobody confirmed in time deleted, and a subject made only for
//!   one erased with it: an address someone typed into a form, perhaps not their own,
//!   is not kept for a confirmation that never came.
//!
//! Every command names the address's identifier and acts with authority `Any`: holding
//! the mailbox (the token came by mail) is what entitles the person, and a request
//! creates nothing but a pending row for the address's own subject, never a link to
//! another.

use super::{identity, tokens, Mail, Transactional};
use crate::config::email::ListSpec;
use crate::error::{ApiError, Code};
use crate::pipeline::consent::change;
use crate::state::AppState;
use candor_core::consent::{Action, Channel};
use candor_core::ledger::{Actor, Evidence};
use candor_core::{SubjectId, UnixMillis};
use candor_mail::EmailAddress;
use candor_store::email::{ListAction, ListChange, ListOutcome};
use candor_store::{Authority, ConsentCommand, StoreError};

fn list_change(st: &AppState, list: &ListSpec, action: ListAction) -> ApiResult<ListChange> {
    let p = st
        .catalog
        .purpose(&list.purpose)
        .ok_or_else(|| ApiError::new(Code::Internal, "a list's purpose is not in the catalog"))?;
    Ok(ListChange {
        list: list.name.clone(),
        notice_version: p.notice.version,
        notice_hash: p.notice.hash,
        action,
    })
}

type ApiResult<T> = Result<T, ApiError>;

/// Asks to join `list` for `address`: a pending subscription and, unless re-sends
/// are used up or the address is already confirmed, a confirmation mail.
pub async fn ask(
    st: &AppState,
    mail: &Mail,
    address: &EmailAddress,
    list: &ListSpec,
    actor: Actor,
    evidence: Evidence,
) -> ApiResult<ListOutcome> {
    let now = st.now();
    let cmd = ConsentCommand {
        identities: vec![identity(&st.master, address)],
        authority: Authority::Any,
        actor,
        create: true,
        changes: vec![],
        channel: Channel::EmailConfirmation,
        evidence,
        time_ms: now,
        list: Some(list_change(
            st,
            list,
            ListAction::Request {
                window_ms: mail.settings.resend_window.as_millis() as i64,
                max: mail.settings.resend_max,
            },
        )?),
    };
    let out = st.store.apply_consent(cmd).await?;
    let outcome = out
        .list
        .ok_or_else(|| ApiError::new(Code::Internal, "the store skipped the list change"))?;
    if outcome.send_confirmation {
        let expires = UnixMillis(now.0 + mail.settings.confirm_ttl.as_millis() as i64);
        let token = mail
            .keys
            .mint_confirmation(out.subject, &list.name, expires);
        let url = mail.url(&format!("/email/confirm?t={token}"));
        let hours = mail.settings.confirm_ttl.as_secs() / 3600;
        let text = format!(
            "Someone (we hope you) asked to receive \"{title}\" from {operator} at this address.\n\n\
             To confirm, open this link and press the button:\n{url}\n\n\
             The link works once and for {hours} hours. If you did not ask, ignore this mail: \
             nothing will be sent to you.\n",
            title = list.title,
            operator = st.settings.operator.name,
        );
        let queued = mail.outbox.try_send(Transactional {
            to: address.clone(),
            subject_line: format!("Please confirm: {}", list.title),
            text,
            kind: "confirmation",
        });
        if queued.is_err() {
            return Err(ApiError::new(
                Code::Unavailable,
                "too many mails are waiting to be sent; try again in a minute",
            ));
        }
    }
    Ok(outcome)
}

/// What one pass of [`expire`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// People whose unconfirmed requests were deleted.
    pub requests: u64,
    /// Of them, those erased: made for the request, they held nothing else.
    pub forgotten: u64,
}

/// Deletes the requests last asked for longer than the confirmation window's
/// `pending_ttl` ago, then erases each of their subjects that holds nothing else
/// (`Erasure::only_if_abandoned`, decided in the erasure's own transaction, so a
/// person who confirms another list meanwhile stays). The erasure record names
/// [`Actor::Retention`]. Runs hourly (`app`).
pub async fn expire(st: &AppState, mail: &Mail) -> Result<Expired, StoreError> {
    let before = st.now_ms() - mail.settings.pending_ttl.as_millis() as i64;
    let subjects = st.store.email().expire_pending(before).await?;
    let mut out = Expired {
        requests: subjects.len() as u64,
        forgotten: 0,
    };
    for subject in subjects {
        let r = st
            .store
            .erase(candor_store::Erasure {
                subject,
                actor: Actor::Retention,
                channel: Channel::EmailConfirmation,
                time_ms: st.now(),
                only_if_abandoned: true,
            })
            .await;
        match r {
            Ok(_) => out.forgotten += 1,
            Err(StoreError::NotAbandoned | StoreError::UnknownSubject) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Why a confirmation or unsubscribe link did nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkRefused {
    /// Malformed, not ours, or for a list no longer configured.
    Invalid,
    Expired,
    /// Already followed once.
    Used,
    /// The request was left or expired since the mail was sent.
    NotPending,
    /// The person (or their address) no longer exists here.
    Gone,
}

/// Follows a confirmation link: spends the token, confirms the subscription and
/// grants the list's purpose (one command). `origin` is the IP address and user
/// agent, kept (sealed) only when the operator's config asks for them.
pub async fn confirm(
    st: &AppState,
    mail: &Mail,
    token: &str,
    origin: Option<String>,
) -> Result<(SubjectId, ListSpec), LinkRefused> {
    let now = st.now();
    let c = mail
        .keys
        .check_confirmation(token, now)
        .map_err(|e| match e {
            tokens::TokenError::Expired => LinkRefused::Expired,
            tokens::TokenError::Forged => LinkRefused::Invalid,
        })?;
    let list = mail
        .settings
        .list(&c.list)
        .cloned()
        .ok_or(LinkRefused::Invalid)?;
    let Ok(Some((_, ident))) = super::address_of(st, c.subject).await else {
        return Err(LinkRefused::Gone);
    };
    let fresh = st
        .store
        .spend_link(c.nonce, c.expires, now)
        .await
        .map_err(|_| LinkRefused::Invalid)?;
    if !fresh {
        return Err(LinkRefused::Used);
    }
    let purpose = st
        .catalog
        .purpose(&list.purpose)
        .ok_or(LinkRefused::Invalid)?;
    let change = list_change(
        st,
        &list,
        ListAction::Confirm {
            confirmation: c.id(),
            origin: origin
                .filter(|_| mail.settings.keep_origin)
                .map(String::into_bytes),
        },
    )
    .map_err(|_| LinkRefused::Invalid)?;
    let cmd = ConsentCommand {
        identities: vec![ident],
        authority: Authority::Any,
        actor: Actor::EmailLink,
        create: false,
        changes: vec![self::change(purpose, Action::Grant)],
        channel: Channel::EmailConfirmation,
        evidence: Evidence::default(),
        time_ms: now,
        list: Some(change),
    };
    match st.store.apply_consent(cmd).await {
        Ok(_) => Ok((c.subject, list)),
        Err(StoreError::NotPending { .. }) => Err(LinkRefused::NotPending),
        Err(StoreError::UnknownSubject) => Err(LinkRefused::Gone),
        Err(e) => {
            tracing::error!(error = %e, "confirmation failed");
            Err(LinkRefused::Invalid)
        }
    }
}

/// Leaves `list` for `subject` (an unsubscribe link, the preference center).
pub async fn leave(
    st: &AppState,
    mail: &Mail,
    subject: SubjectId,
    list: &str,
    actor: Actor,
    channel: Channel,
    campaign: Option<i64>,
) -> Result<ListSpec, LinkRefused> {
    let list = mail
        .settings
        .list(list)
        .cloned()
        .ok_or(LinkRefused::Invalid)?;
    let Ok(Some((_, ident))) = super::address_of(st, subject).await else {
        return Err(LinkRefused::Gone);
    };
    let change =
        list_change(st, &list, ListAction::Leave { campaign }).map_err(|_| LinkRefused::Invalid)?;
    let cmd = ConsentCommand {
        identities: vec![ident],
        authority: Authority::Any,
        actor,
        create: false,
        changes: vec![],
        channel,
        evidence: Evidence::default(),
        time_ms: st.now(),
        list: Some(change),
    };
    match st.store.apply_consent(cmd).await {
        Ok(_) => Ok(list),
        Err(StoreError::UnknownSubject) => Err(LinkRefused::Gone),
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe failed");
            Err(LinkRefused::Invalid)
        }
    }
}
