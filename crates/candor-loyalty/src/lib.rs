//! The rules of Candor's opt-in loyalty program (purpose `loyalty`), as pure functions.
//!
//! The store keeps each subject's points ledger (append-only, idempotent) and enforces
//! concurrency (balances never negative, caps, stock); the server shows the wallet and the
//! notice. Both ask this crate *what* things mean, so each rule is written once:
//!
//! - [`program`]: the operator's configuration ([`ProgramConfig`]) checked once into a
//!   [`Program`]; ids, [`ProgramError`] with stable codes.
//! - [`earn`]: what an event earns ([`Program::earn`] over the [`EventView`] trait), and
//!   [`clamp`], the cap arithmetic the store applies atomically.
//! - [`ledger`]: reading a ledger: [`balance`], [`earned_in_window`] (for tiers), and
//!   expiry by first-in-first-out lots ([`expired`], [`expiring_soon`]).
//! - [`tier`]: [`Program::tier`], from points earned in the rolling window.
//! - [`redeem`]: [`Program::check_redeem`], whether a reward may be redeemed now.
//! - [`mod@figures`]: the operator's figures (issued, redeemed, expired, outstanding, liability).
//! - [`wording`]: the sentences a person reads (rules, value exchange, expiry, leaving).
//! - [`decimal`]: an exact decimal for amounts and rates, so points are never off by one.
//!
//! **Architecture invariant:** this crate does no I/O and knows nothing of HTTP, JSON or
//! SQL; no input makes it panic; its errors name rules, tiers and rewards, never a
//! person's data.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod decimal;
pub mod earn;
pub mod figures;
pub mod ledger;
pub mod program;
pub mod redeem;
pub mod tier;
pub mod wording;

pub use decimal::{Decimal, DecimalError};
pub use earn::{clamp, points_for_amount, Earning, EventView, PropValue};
pub use figures::{figures, Figures, KindTotals};
pub use ledger::{balance, earned_in_window, expired, expiring_soon, Entry, EntryKind};
pub use program::{
    Award, Condition, EarnRule, Expiry, FieldBonus, OnLeave, Op, Program, ProgramConfig,
    ProgramError, Reward, RuleId, Tier, Value, MAX_POINTS_PER_EVENT,
};
pub use redeem::RedeemError;
pub use tier::TierStatus;
pub use wording::{date, expiring_line};
