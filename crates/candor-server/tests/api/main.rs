//! Black-box tests of the HTTP API: each test starts the real application on port 0
//! with its own data directory (a real SQLite file) and talks HTTP to it.
//! One test binary for the crate keeps link time down.
#![allow(clippy::unwrap_used)]

#[path = "../../../../tests/support/databases.rs"]
mod databases;
mod helpers;
#[path = "../../../../tests/support/smtp_sink.rs"]
mod smtp_sink;

mod audience;
mod audit;
mod auth;
mod bad_input;
mod client;
mod consent;
mod email;
mod fields;
mod iab;
mod ingest;
mod limits;
mod loyalty;
mod me;
mod meta;
mod pages;
mod personalize;
mod prompt;
mod segments;
mod takeover;
mod withdrawal;
