//! Candor's HTTP server and application wiring.
//!
//! - [`app`]: `Application::build(settings)`, shared by `main` and the tests; the router.
//! - [`config`]: the operator's TOML configuration with built-in defaults.
//! - [`routes`]: the HTTP sources, one module per resource (ingest, consent,
//!   advertisers, admin, meta); a route only translates HTTP.
//! - [`pipeline`]: ingestion and consent as stages (source → gate → sealing → store),
//!   called by the routes, the demo seeder and import alike.
//! - [`segment`]: the Segment message format, validated at the edge.
//! - [`body`]: body limits, gzip, UTF-8.
//! - [`auth`]: write keys, admin token, subject tokens (constant-time comparisons).
//! - [`error`]: the one table from error to stable code and HTTP status.
//! - [`audience`]: advertiser keys, budget periods, fixed-point costs, answering an
//!   insight query (compile, scan, noise, charge, then respond).
//! - [`iab`]: consent ↔ IAB TC, GPP and US Privacy strings; the vendor list.
//! - [`prompt`]: what candor.js shows (wording, localized notices, the variant a person
//!   is assigned), saved variants and the linter's edge, anonymous prompt counts.
//! - [`cors`]: cross-origin access for the routes a publisher's page calls.
//! - [`pages`]: what every HTML page gets (templates, a CSP nonce, security headers) and
//!   the admin's signed session cookie and CSRF tokens; [`charts`]: the dashboard's
//!   opt-in charts (plotters, SVG); [`demo_prompt`]: the demo's variants and a month of
//!   prompt counts.
//! - [`receipts`]: consent receipts as JSON, and their offline verification.
//! - [`telemetry`]: typed internal events and Prometheus metrics.
//! - [`datadir`]: keys and the lock in the data directory.
//! - [`demo`]: deterministic synthetic operator data.
//! - [`ops`]: bulk import and export (JSON Lines), used by the CLI.
//! - [`email`]: email on consent: lists with double opt-in, campaigns, the send queue,
//!   one-click unsubscribe.
//!
//! **Architecture invariant:** only this crate knows HTTP and JSON DTOs; it converts
//! them to the plain types of `candor-core` and `candor-store` at the edge.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod app;
pub mod audience;
pub mod audiences;
pub mod audit;
pub mod auth;
pub mod body;
pub mod charts;
pub mod config;
pub mod cors;
pub mod datadir;
pub mod demo;
pub mod demo_prompt;
pub mod docs;
pub mod email;
pub mod erasure;
pub mod error;
pub mod iab;
pub mod ledger;
pub mod limits;
pub mod loyalty;
pub mod mydata;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod person;
pub mod pipeline;
pub mod prompt;
pub mod receipts;
pub mod response_log;
pub mod routes;
pub mod segment;
pub mod serve;
pub mod state;
pub mod telemetry;

pub use app::{Application, BuildError};
pub use config::Settings;
