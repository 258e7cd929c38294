//! Candor's domain, with no I/O: the rules every store and every endpoint share.
//!
//! - [`ids`]: parse-don't-validate newtypes (`PurposeId`, `CategoryId`, `SubjectId`, ...).
//! - [`purpose`]: purposes, notices and the catalog that maps data categories to the
//!   purposes allowed to use them ([`purpose::Catalog`]).
//! - [`lang`]: language tags and the fallback from `fr-ca` to `fr` to the default.
//! - [`optin`]: opt-in rates with Wilson intervals, and the two-proportion z-test.
//! - [`prompt`]: consent prompt variants, their stable assignment, and the linter that
//!   refuses dark patterns in what a variant declares and in what a browser rendered.
//! - [`purpose_set`]: a compact bit set of purposes, the currency of consent decisions.
//! - [`consent`]: consent statuses, actions, channels and the state machine between them.
//! - [`index`]: the in-memory consent index (subject → granted purposes) consulted on
//!   every ingested event.
//! - [`ledger`]: canonical bytes and hash chaining of consent records, and the verifier
//!   that names the first tampered record.
//! - [`receipt`]: signed consent receipts (Ed25519) and their verification.
//! - [`crypto`]: per-subject data keys, AEAD sealing and keyed lookup hashes, which make
//!   erasure real (destroy the key, nothing readable remains).
//! - [`event`]: Segment message kinds and the event → data category mapping.
//! - [`field`]: volunteered (zero-party) fields: the operator's catalog, typed values
//!   parsed at the edge, and where each value came from ([`field::Provenance`]).
//! - [`idhash`]: a cheap hasher for maps keyed by already-random ids.
//! - [`time`]: milliseconds since the epoch and UTC day arithmetic, in one place.
//! - [`sensitive`]: a wrapper whose `Debug`/`Display` redact, for secrets and personal data.
//!
//! **Architecture invariant:** this crate does no I/O and knows nothing of HTTP, JSON or
//! SQL; it is the part of Candor that can be tested exhaustively in isolation.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod consent;
pub mod crypto;
pub mod event;
pub mod field;
pub mod idhash;
pub mod ids;
pub mod index;
pub mod lang;
pub mod ledger;
pub mod optin;
pub mod prompt;
pub mod purpose;
pub mod purpose_set;
pub mod receipt;
pub mod sensitive;
pub mod time;

pub use consent::{Action, Channel, ConsentStatus};
pub use ids::{CategoryId, IdError, PurposeId, SourceId, SubjectId, VariantId};
pub use purpose_set::PurposeSet;
pub use sensitive::Sensitive;
pub use time::UnixMillis;
