//! What a write *means*, decided once for both backends, with no I/O.
//!
//! Each backend reads what a decision needs (a subject's consent rows, the ledger head,
//! the granted sets of a batch's subjects), asks a function here what to do, and carries
//! the answer out in its own SQL. So the rules behind invariants 2 and 3 (the consent
//! state machine, purpose floors, when insight features go, which rows a batch may
//! store, what a budget charge allows) are written once, here, and the backends cannot
//! drift apart: they differ only in how they lock, batch and talk to their database.
//!
//! - [`consent`]: one consent command → ledger records, new granted set, floors,
//!   whether the insights purpose flipped.
//! - [`ingest`]: a group of gated rows → per row: store (under which purposes), drop as
//!   a duplicate, or drop because consent changed since the gate.
//! - [`features`]: which stored rows feed insight features, and merging their deltas
//!   into the writes that apply them (off the commit path).
//! - [`floors`]: purpose floors as a mask over event ids; the sweeper's passes.
//! - [`charge`]: a budget charge.
//! - [`erase`]: an erasure: which tables lose the subject's rows, its ledger record,
//!   what the caches forget.
//! - [`identity`]: whether a credential may act for the subject a command reaches.
//! - [`keys`]: whether the keys a store is opened with are the ones its data was
//!   written with.
//! - [`retention`]: which events and features are past retention.
//! - [`loyalty`]: what a points transaction means: duplicate, clamped by caps, or
//!   refused (never below zero, never without the purpose).
//! - [`email`]: a subscription change: the row it leaves, the ledger record that proves
//!   it, the suppression it adds or lifts, whether a confirmation mail may go out.

pub mod charge;
pub mod consent;
pub mod email;
pub mod erase;
pub mod features;
pub mod floors;
pub mod identity;
pub mod ingest;
pub mod keys;
pub mod loyalty;
pub mod retention;
