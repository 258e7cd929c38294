//! Audience segments and personalization, with no I/O: the part of Candor that decides
//! who is in a segment and which offer a person sees, kept pure so it can be tested
//! against a naive model.
//!
//! - [`rule`]: the rule AST ([`Rule`], [`Cond`], ...) and the limits every rule obeys.
//! - [`text`]: the readable text form (`field.age_band = "25-34" and ...`), which
//!   round-trips through [`Rule`]'s `Display`.
//! - [`json`]: the JSON form the API speaks, which round-trips too.
//! - [`check`]: a segment belongs to one purpose and may only name data that purpose may
//!   use; this is where that is decided, before a rule is ever evaluated.
//! - [`engine`]: incremental membership over per-purpose facts, sharded by subject.
//! - [`explain`]: the [`Reason`]s a rule held for a person, in plain words.
//! - [`personalize`]: offers per placement, chosen by rule, with their reasons.
//!
//! **Architecture invariant:** this crate does no I/O; consent is applied at read time
//! (`granted` is passed in by the caller), so a withdrawal takes effect at once.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod check;
pub mod engine;
pub mod explain;
pub mod json;
pub mod personalize;
pub mod rule;
#[cfg(test)]
mod testgen;
pub mod text;

pub use check::{check, CheckError};
pub use engine::{Defined, Engine, EventView, SegmentDef};
pub use explain::Reason;
pub use json::{from_json, to_json};
pub use personalize::{CatalogError, Chosen, Decision, Offer, OfferCatalog};
pub use rule::{At, Cmp, Cond, EventMatch, Limit, Measure, Rule, RuleError, Scalar, Test};
pub use text::parse_text;
