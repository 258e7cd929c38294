//! Tests of the real `candor` binary as a process: crash durability (kill -9), the
//! ledger verifier against direct database tampering, import/export, receipts, the
//! data-directory lock, configuration errors, and real Segment/RudderStack SDKs.
#![allow(clippy::unwrap_used)]

mod helpers;

mod compat;
mod durability;
mod ops;
mod tamper;
