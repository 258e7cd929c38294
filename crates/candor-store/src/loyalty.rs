//! The loyalty program's points ledger and the program's segment definitions, as they
//! cross the storage interface (issue 14).
//!
//! **Points ledger.** Every change to a person's points is one appended transaction
//! with an idempotency key, a reason and its source; nothing is ever updated or deleted
//! except by erasure. Each subject has an account row holding the running balance, so
//! a transaction is decided under one lock (the account row on PostgreSQL, the single
//! writer on SQLite) from a handful of reads: the key seen before, the balance, the
//! earning rule's use today and in all, the reward's stock. What a transaction *means*
//! given those reads is decided once, in `plan::loyalty`, for both backends.
//!
//! **Segments.** The operator's segment definitions (a name, the purpose it belongs
//! to, the rule in its canonical JSON, opaque here) and a daily history of each
//! segment's size for the dashboard's chart. Small tables written outside the writer.

use candor_core::{SubjectId, UnixMillis};

/// What kind of change a transaction is. Stored as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnKind {
    /// Points earned by a rule (an event, a volunteered field) or granted by the
    /// operator's backend.
    Earn,
    /// Points spent on a reward.
    Redeem,
    /// A redemption undone: its points back, its stock back.
    Reverse,
    /// Points past their expiry, written off.
    Expire,
    /// An operator's correction, up or down (audited).
    Adjust,
    /// The balance given up on leaving the program (when the program says so).
    Forfeit,
}

impl TxnKind {
    pub const ALL: [TxnKind; 6] = [
        TxnKind::Earn,
        TxnKind::Redeem,
        TxnKind::Reverse,
        TxnKind::Expire,
        TxnKind::Adjust,
        TxnKind::Forfeit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TxnKind::Earn => "earn",
            TxnKind::Redeem => "redeem",
            TxnKind::Reverse => "reverse",
            TxnKind::Expire => "expire",
            TxnKind::Adjust => "adjust",
            TxnKind::Forfeit => "forfeit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One transaction to apply. The key makes it idempotent: the same key for the same
/// subject is one transaction however often it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoyaltyOp {
    pub subject: SubjectId,
    pub key: String,
    /// The program's purpose: earning and redeeming need it granted now.
    pub purpose: String,
    pub what: LoyaltyChange,
    /// Why, in words the person is shown in their wallet ("Order Completed", "Shoe
    /// size told", "Correction: missing order").
    pub reason: String,
    /// Where it came from: `event:<source>`, `api:<source>`, `person`, `admin`,
    /// `system`.
    pub source: String,
    pub at: UnixMillis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoyaltyChange {
    /// Earn up to `points` under `rule`, clamped by the rule's caps (per UTC day of
    /// `at`, and in all); needs the program's purpose granted now.
    Earn {
        rule: String,
        points: i64,
        cap_per_day: Option<i64>,
        cap_total: Option<i64>,
    },
    /// Spend `cost` on one of `reward`; needs the purpose granted, enough points and,
    /// for a reward with stock, one left.
    Redeem { reward: String, cost: i64 },
    /// Undo the redemption `txn` of the same subject: its points and its stock back.
    Reverse { txn: i64 },
    /// An operator's correction (never below zero).
    Adjust { points: i64 },
    /// Write `points` off as expired (never more than the balance).
    Expire { points: i64 },
    /// Leave the program: with `forfeit`, the balance is given up.
    Leave { forfeit: bool },
}

impl LoyaltyChange {
    pub fn kind(&self) -> TxnKind {
        match self {
            LoyaltyChange::Earn { .. } => TxnKind::Earn,
            LoyaltyChange::Redeem { .. } => TxnKind::Redeem,
            LoyaltyChange::Reverse { .. } => TxnKind::Reverse,
            LoyaltyChange::Adjust { .. } => TxnKind::Adjust,
            LoyaltyChange::Expire { .. } => TxnKind::Expire,
            LoyaltyChange::Leave { .. } => TxnKind::Forfeit,
        }
    }
}

/// A stored transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    pub id: i64,
    pub subject: SubjectId,
    pub key: String,
    pub kind: TxnKind,
    /// Signed: positive adds to the balance.
    pub points: i64,
    /// The earning rule (earn) or the reward (redeem, reverse).
    pub rule: Option<String>,
    pub reward: Option<String>,
    /// The redemption a reversal undoes.
    pub reverses: Option<i64>,
    pub reason: String,
    pub source: String,
    pub at: UnixMillis,
}

/// What became of an op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoyaltyOutcome {
    /// Appended now; the balance after it.
    Applied { txn: Txn, balance: i64 },
    /// The key was applied before: the original transaction, nothing new written.
    Duplicate { txn: Txn, balance: i64 },
    /// Nothing written, for this reason.
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The program's purpose is not granted now (a person outside the program).
    NotGranted,
    /// An earning rule's caps leave nothing to earn today (or ever).
    Capped,
    /// The balance does not cover it.
    InsufficientPoints { balance: i64, needed: i64 },
    /// The reward has no stock left.
    OutOfStock,
    /// No such redemption of this subject.
    NoSuchRedemption,
    /// The redemption was reversed already.
    AlreadyReversed,
    /// The key was used before for a different kind of transaction.
    KeyConflict,
    /// The subject is unknown (never seen, or erased).
    UnknownSubject,
}

impl Refusal {
    /// A stable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotGranted => "loyalty_not_granted",
            Refusal::Capped => "loyalty_capped",
            Refusal::InsufficientPoints { .. } => "loyalty_insufficient_points",
            Refusal::OutOfStock => "loyalty_out_of_stock",
            Refusal::NoSuchRedemption => "loyalty_no_such_redemption",
            Refusal::AlreadyReversed => "loyalty_already_reversed",
            Refusal::KeyConflict => "idempotency_key_conflict",
            Refusal::UnknownSubject => "unknown_subject",
        }
    }
}

/// A subject's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub subject: SubjectId,
    pub balance: i64,
    /// Still in the program (false once they left; earning again rejoins).
    pub member: bool,
    pub joined: UnixMillis,
}

/// The program's totals, for the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramTotals {
    /// Accounts in the program now.
    pub members: u64,
    /// Accounts that ever had a transaction (erased ones are gone).
    pub accounts: u64,
    /// Sum of points per transaction kind (signed as stored).
    pub by_kind: Vec<(TxnKind, i64)>,
    /// Sum of every balance.
    pub outstanding: i64,
}

/// A reward's remaining stock (rewards without a row have unlimited stock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewardStock {
    pub reward: String,
    pub stock: i64,
}

/// A saved segment definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRecord {
    pub name: String,
    pub purpose: String,
    /// The rule in the server's canonical JSON (opaque here).
    pub rule: String,
    pub description: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A segment's size on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSize {
    pub name: String,
    pub day: i32,
    pub size: i64,
}
