//! Audience insights (issue 5): the features advertisers' questions are answered from, and
//! the evaluation of a question into the bounded, pre-noise aggregate that
//! `candor-privacy` turns into a differentially private answer. Pure: no I/O, no HTTP.
//!
//! ```text
//! event (allowed for the insights purpose) ──► extract ──► FeatureDelta ──► store (durable)
//!                                                                      └──► FeatureIndex (in memory)
//! advertiser query ──► query::compile (schema, permissions) ──► query::evaluate (scan, filter,
//!   bound k groups per subject, clamp) ──► exact aggregate + members ──► candor_privacy::release
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod extract;
pub mod features;
pub mod membership;
pub mod query;

pub use features::{
    Category, DailyFeature, Day, DeclaredField, FeatureDelta, FeatureIndex, FeatureKind,
    IndexStats, Schema, SchemaError,
};
