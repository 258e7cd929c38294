//! Tests of the real `candor` binary as a process: crash durability (kill -9), the
//! ledger verifier against direct database tampering, import/export, receipts, the
//! data-directory lock, configuration errors, real Segment/RudderStack SDKs, and
//! several nodes sharing one PostgreSQL.
#![allow(clippy::unwrap_used)]

mod helpers;
#[path = "../../../../tests/support/smtp_sink.rs"]
mod smtp_sink;

mod compat;
mod durability;
mod email;
mod erase;
mod keys;
mod loyalty;
mod nodes;
mod ops;
mod tamper;
