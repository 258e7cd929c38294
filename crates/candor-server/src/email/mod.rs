//! Email on consent (issue 16): lists with double opt-in, campaigns to segments, the
//! send queue, one-click unsubscribe, and the sign-in mail of the preference center.
//!
//! - [`tokens`]: the confirmation and unsubscribe tokens in mails.
//! - [`flows`]: what a person does (ask to join, confirm, leave), each one consent
//!   command with its list change, so the store records it with its proof.
//! - [`render`]: campaign templates, with only the fields the list's purpose may use.
//! - [`sender`]: the durable send queue (campaign messages) and the transactional
//!   outbox (confirmations, sign-in links) over SMTP (`candor-mail`).
//! - [`campaigns`]: fanning a campaign out to the list ∩ segment ∩ consent.
//! - [`feedback`]: complaints (feedback-loop reports) and late bounces, matched to a
//!   person by the unsubscribe token in the message, fed to the suppression list.
//!
//! A person's address is an identifier like any other (`IdKind::Email`): sealed under
//! their key, found by its keyed lookup hash of the lowercased address, erased with them.

pub mod campaigns;
pub mod feedback;
pub mod flows;
pub mod render;
pub mod sender;
pub mod tokens;

use crate::config::email::EmailSettings;
use crate::state::AppState;
use candor_core::crypto::{IdKind, LookupHash, MasterKey};
use candor_core::{Sensitive, SubjectId};
use candor_mail::EmailAddress;
use candor_store::{Identity, StoreError};
use std::sync::atomic::AtomicU64;
use tokio::sync::{mpsc, Notify};

/// A mail that is not part of a campaign: a confirmation request or a sign-in link.
/// Not queued durably: lost in a crash, it is asked for again (re-sends are limited).
#[derive(Debug)]
pub struct Transactional {
    pub to: EmailAddress,
    pub subject_line: String,
    pub text: String,
    /// What kind of mail, for metrics and logs (never the address).
    pub kind: &'static str,
}

/// What the email routes and the sender share.
pub struct Mail {
    pub settings: EmailSettings,
    pub keys: tokens::MailKeys,
    /// Rung when campaign messages were queued.
    pub wake: Notify,
    pub outbox: mpsc::Sender<Transactional>,
    /// Transactional mails handed to the SMTP server, and those given up on.
    pub transactional_sent: AtomicU64,
    pub transactional_failed: AtomicU64,
    /// Sign-in mails sent per address hash (times, ms): a few per quarter hour, so the
    /// form cannot be used to flood someone's mailbox.
    pub signins: parking_lot::Mutex<std::collections::HashMap<LookupHash, Vec<i64>>>,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail").finish_non_exhaustive()
    }
}

impl Mail {
    pub fn new(
        settings: EmailSettings,
        master: &MasterKey,
    ) -> (Self, mpsc::Receiver<Transactional>) {
        let (tx, rx) = mpsc::channel(1024);
        (
            Self {
                settings,
                keys: tokens::MailKeys::new(master),
                wake: Notify::new(),
                outbox: tx,
                transactional_sent: AtomicU64::new(0),
                transactional_failed: AtomicU64::new(0),
                signins: Default::default(),
            },
            rx,
        )
    }

    /// Whether another sign-in mail may go to this address now (at most three per
    /// fifteen minutes on this node); counts it if so.
    pub fn may_send_signin(&self, address: LookupHash, now_ms: i64) -> bool {
        const WINDOW: i64 = 15 * 60 * 1000;
        let mut m = self.signins.lock();
        if m.len() > 100_000 {
            m.retain(|_, v| v.iter().any(|t| now_ms - t < WINDOW));
        }
        let sent = m.entry(address).or_default();
        sent.retain(|t| now_ms - t < WINDOW);
        if sent.len() >= 3 {
            return false;
        }
        sent.push(now_ms);
        true
    }

    /// An absolute URL on Candor for a mail.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.settings.base_url)
    }
}

/// The identifier of an address: the keyed hash of its lowercased form.
pub fn identity(master: &MasterKey, address: &EmailAddress) -> Identity {
    let canonical = address.canonical();
    Identity {
        kind: IdKind::Email,
        hash: master.lookup_hash(IdKind::Email, &canonical),
        value: Sensitive::new(canonical),
    }
}

/// The address a subject holds (its first email identifier), opened.
pub async fn address_of(
    st: &AppState,
    subject: SubjectId,
) -> Result<Option<(EmailAddress, Identity)>, StoreError> {
    let ids = st.store.identities(subject).await?;
    Ok(ids
        .into_iter()
        .filter(|i| i.kind == IdKind::Email)
        .find_map(|i| EmailAddress::parse(i.value.expose()).ok().map(|a| (a, i))))
}

/// The lookup hash of an address.
pub fn hash_of(master: &MasterKey, address: &EmailAddress) -> LookupHash {
    master.lookup_hash(IdKind::Email, &address.canonical())
}
