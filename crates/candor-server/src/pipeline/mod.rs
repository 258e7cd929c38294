//! Ingestion and consent as stages, in the shape of Vector's sources → transforms →
//! sinks. A *source* turns its input into messages or consent requests (the HTTP routes
//! in `routes`, the demo seeder in `demo`, bulk import in `ops`); the [`gate`] decides
//! which purposes may use each message; the store's *sealing* stage encrypts what the
//! gate let through under each subject's key (`candor_store::seal`); the store writes it
//! durably. Every source goes through the same stages, so synthetic and imported data
//! pass the very same rules as the API's.
//!
//! - [`ingest`]: a batch of raw messages from one source: validate all, gate each, hand
//!   the allowed ones to the store, report per message.
//! - [`gate`]: the consent gate for one message.
//! - [`fields`]: volunteered fields: values checked against the operator's fields, and
//!   an identify's traits turned into field writes once the store kept the message.
//! - [`consent`]: who may act for whom, and a consent request turned into commands,
//!   the Global Privacy Control rule included.

pub mod consent;
pub mod fields;
pub mod gate;
pub mod ingest;

use candor_core::crypto::{IdKind, MasterKey};
use candor_store::Identity;

/// An identifier as the store takes it: its kind, keyed hash and (sensitive) value.
/// An email address is taken in its canonical (lowercased) form, as the email side
/// takes it (`email::identity`), so that `Ann@Example.com` from an identify call and
/// `ann@example.com` from a sign-up form are one person; one that does not parse as an
/// address is lowercased whole.
pub fn identity(master: &MasterKey, kind: IdKind, value: &str) -> Identity {
    if kind == IdKind::Email {
        let canonical = candor_mail::EmailAddress::parse(value)
            .map(|a| a.canonical())
            .unwrap_or_else(|_| value.to_lowercase());
        return Identity {
            kind,
            hash: master.lookup_hash(kind, &canonical),
            value: canonical.into(),
        };
    }
    Identity {
        kind,
        hash: master.lookup_hash(kind, value),
        value: value.to_owned().into(),
    }
}
