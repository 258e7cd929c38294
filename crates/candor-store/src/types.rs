//! The commands and results that cross the storage interface. Plain Rust, no wire
//! format: the server converts to and from its DTOs.

use candor_core::consent::{Action, Channel, ConsentStatus};
use candor_core::crypto::{IdKind, LookupHash};
use candor_core::event::EventKind;
use candor_core::field::{FieldName, Provenance};
use candor_core::ledger::{Actor, Evidence, SealedEntry};
use candor_core::{CategoryId, PurposeId, PurposeSet, Sensitive, SubjectId, UnixMillis};

/// An identifier as presented: its kind, its keyed hash and its value (sealed by the
/// store under the subject's key before it is written).
#[derive(Clone, Debug)]
pub struct Identity {
    pub kind: IdKind,
    pub hash: LookupHash,
    pub value: Sensitive<String>,
}

#[derive(Clone, Debug)]
pub struct PurposeChange {
    pub purpose: PurposeId,
    pub bit: u8,
    pub action: Action,
    pub notice_version: u32,
    pub notice_hash: [u8; 32],
}

/// Whom the credential behind a consent command speaks for (invariant 9), checked by
/// the writer against what the database holds when the command commits
/// ([`crate::plan::identity::may_act`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authority {
    /// A server key, the operator, an import: any subject.
    Any,
    /// A browser key or a subject token: only the identifiers the command names.
    /// `owner` is the user id a subject token was minted for; the subject it resolves
    /// to is that user's account, whatever else is linked to it. Any other subject the
    /// command reaches must hold no identifier beyond the command's own.
    Named { owner: Option<LookupHash> },
}

/// One subject's consent changes, as one atomic unit.
#[derive(Clone, Debug)]
pub struct ConsentCommand {
    /// Identifiers of the subject; the first that resolves names the subject. Unknown
    /// ones are linked to it.
    pub identities: Vec<Identity>,
    /// Whom the credential may act for; the command is refused (`NotYours`) when the
    /// subject it reaches is not among them.
    pub authority: Authority,
    /// Which credential acted, recorded in every ledger record the command appends.
    pub actor: Actor,
    /// Create the subject when no identifier resolves (consent prompts); otherwise
    /// an unknown subject is an error.
    pub create: bool,
    pub changes: Vec<PurposeChange>,
    pub channel: Channel,
    pub evidence: Evidence,
    pub time_ms: UnixMillis,
    /// A mailing-list subscription changed in the same transaction (issue 16).
    pub list: Option<crate::email::ListChange>,
}

impl ConsentCommand {
    /// The lookup hash of the email address the command names, if any: what a list
    /// change suppresses or lifts.
    pub(crate) fn email_hash(&self) -> Option<LookupHash> {
        self.identities
            .iter()
            .find(|i| i.kind == candor_core::crypto::IdKind::Email)
            .map(|i| i.hash)
    }

    /// Whether this command's credential may act for `subject`, which the transaction
    /// sees holding `held` identifiers, `named` of them the command's; `owner_subject`
    /// is where the authority's owner resolves (`plan::identity::may_act`).
    pub(crate) fn may_reach(
        &self,
        subject: SubjectId,
        owner_subject: Option<SubjectId>,
        held: i64,
        named: usize,
    ) -> Result<(), crate::StoreError> {
        let held = usize::try_from(held).unwrap_or(usize::MAX);
        crate::plan::identity::may_act(&self.authority, subject, owner_subject, held, named)
    }
}

/// Evidence as stored in the ledger's `evidence` column (sorted-key JSON).
pub(crate) fn evidence_json(e: &Evidence) -> Result<String, crate::StoreError> {
    serde_json::to_string(e.entries()).map_err(|err| crate::StoreError::Database(err.to_string()))
}

#[derive(Clone, Debug)]
pub struct ConsentOutcome {
    pub subject: SubjectId,
    pub created: bool,
    /// The ledger records appended (one per purpose whose status changed).
    pub records: Vec<SealedEntry>,
    /// Granted purposes after the change.
    pub granted: PurposeSet,
    /// What the command's list change did.
    pub list: Option<crate::email::ListOutcome>,
}

/// A request to erase one subject (invariant 6): everything held about it goes, in one
/// transaction, and a pseudonymous erasure record is appended to the ledger.
#[derive(Clone, Debug)]
pub struct Erasure {
    pub subject: SubjectId,
    /// Who asked, recorded inside the erasure record's signed bytes.
    pub actor: Actor,
    /// Where the request came from (the CLI uses `api`).
    pub channel: Channel,
    pub time_ms: UnixMillis,
    /// Erase only a subject nothing was ever consented to and no list or account holds
    /// ([`crate::plan::erase::ABANDONED_UNLESS`]): what is left of a request to join a
    /// list that expired unconfirmed. Otherwise refused with
    /// [`StoreError::NotAbandoned`](crate::StoreError::NotAbandoned), changing nothing.
    pub only_if_abandoned: bool,
}

/// How many rows of each kind an erasure deleted (the subject's own row, with its
/// wrapped data key, always: an erasure that finds no subject is refused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasedCounts {
    /// Identifiers (on PostgreSQL each also had an `identity_lookup` row).
    pub identities: u64,
    pub consent_states: u64,
    pub purpose_floors: u64,
    pub events: u64,
    /// De-duplication keys of those events (PostgreSQL's table; on SQLite the in-memory
    /// window's entries).
    pub dedup_keys: u64,
    pub insight_features: u64,
    pub insight_declared: u64,
    /// The subject's dense insight number (0 or 1 row); the number is never reused.
    pub insight_subjects: u64,
    /// Reads of the person's data recorded in their access log.
    pub access_log: u64,
    /// What the person told the operator (volunteered fields).
    pub volunteered_fields: u64,
    /// The person's loyalty transactions and account (balance included).
    pub loyalty_txns: u64,
    pub loyalty_accounts: u64,
    /// The person's mailing-list subscriptions and their campaign messages (the
    /// suppression list keeps only the address's keyed hash).
    pub email_subscriptions: u64,
    pub email_messages: u64,
}

/// What an erasure did.
#[derive(Clone, Debug)]
pub struct ErasureOutcome {
    pub subject: SubjectId,
    pub deleted: ErasedCounts,
    /// The erasure record appended to the ledger (`ConsentStatus::Erased`).
    pub record: SealedEntry,
}

#[derive(Clone, Debug)]
pub struct StateRow {
    pub purpose: PurposeId,
    pub status: ConsentStatus,
    pub notice_version: u32,
    pub seq: u64,
    pub time_ms: UnixMillis,
}

/// An event ready to store: gated (its purposes decided), not yet sealed. The store
/// seals the payload, the feature deltas and the identifiers to link under the
/// subject's key before anything reaches its writer (`seal`).
#[derive(Clone, Debug)]
pub struct IngestRow {
    pub subject: SubjectId,
    /// Identifiers seen on the message that are not yet linked to the subject.
    pub link: Vec<Identity>,
    pub source: String,
    pub dedup_key: [u8; 16],
    pub kind: EventKind,
    pub category: CategoryId,
    pub purposes: PurposeSet,
    pub event_ms: UnixMillis,
    pub received_ms: UnixMillis,
    /// The message as sent.
    pub payload: Sensitive<Vec<u8>>,
    /// What the event contributes to the subject's insight features. Applied only when
    /// the store has insights configured, the row is stored (not a duplicate) and the
    /// purposes it is finally stored under include the insights purpose.
    pub features: Vec<candor_insights::FeatureDelta>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOutcome {
    Stored,
    /// Same source and messageId already stored.
    Duplicate,
    /// Consent changed between the gate and the commit, leaving no purpose.
    ConsentChanged,
}

/// An event as read back: `purposes` already excludes withdrawn purposes, and events
/// left with none are never returned.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub id: i64,
    pub subject: SubjectId,
    pub source: String,
    pub kind: String,
    pub category: String,
    pub purposes: PurposeSet,
    pub event_ms: UnixMillis,
    pub received_ms: UnixMillis,
    /// The (source, messageId) de-duplication key: unique per stored event, and part of
    /// what the sealed payload is bound to (`seal::open_payload`).
    pub dedup_key: [u8; 16],
    pub sealed_payload: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub subjects: u64,
    /// Event rows physically stored (withdrawn ones awaiting the sweeper included).
    pub events: u64,
    pub ledger_records: u64,
    /// Withdrawals whose stored events are not yet rewritten (reads already honour them).
    pub pending_floors: u64,
}

/// What a retention run removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Rows deleted one by one (rows inside dropped partitions are not counted: the
    /// point of dropping a partition is not to visit its rows).
    pub events_deleted: u64,
    /// Whole day partitions of events dropped (PostgreSQL only).
    pub partitions_dropped: u64,
    /// Insight feature rows deleted (0 when insights are not configured). This node's
    /// feature index is pruned to the same cutoff; other PostgreSQL nodes prune theirs in
    /// their own retention pass.
    pub features_deleted: u64,
}

/// Privacy loss in fixed point so accounting is exact integer arithmetic (no float drift):
/// epsilon in units of 1e-9, delta in units of 1e-18. Costs are rounded up and budgets
/// down by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Spend {
    pub epsilon_nano: i64,
    pub delta_atto: i64,
}

impl Spend {
    /// Component-wise sum, `None` on overflow.
    pub fn checked_add(self, other: Spend) -> Option<Spend> {
        Some(Spend {
            epsilon_nano: self.epsilon_nano.checked_add(other.epsilon_nano)?,
            delta_atto: self.delta_atto.checked_add(other.delta_atto)?,
        })
    }

    /// Component-wise sum, saturating at `i64::MAX`.
    pub fn saturating_add(self, other: Spend) -> Spend {
        Spend {
            epsilon_nano: self.epsilon_nano.saturating_add(other.epsilon_nano),
            delta_atto: self.delta_atto.saturating_add(other.delta_atto),
        }
    }

    /// Whether either component is above the budget's.
    pub fn exceeds(self, budget: Spend) -> bool {
        self.epsilon_nano > budget.epsilon_nano || self.delta_atto > budget.delta_atto
    }
}

/// The calendar unit (UTC) an advertiser's privacy budget renews by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BudgetPeriod {
    Day,
    /// An ISO week.
    Week,
    Month,
}

impl BudgetPeriod {
    pub const ALL: [BudgetPeriod; 3] = [Self::Day, Self::Week, Self::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// An advertiser allowed to ask for insight reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertiser {
    /// Unique.
    pub id: String,
    pub name: String,
    /// Hash of the advertiser's API key (unique).
    pub key_hash: [u8; 32],
    /// Privacy budget per period.
    pub budget: Spend,
    pub period: BudgetPeriod,
    pub allowed_features: Vec<String>,
    pub allowed_dimensions: Vec<String>,
    /// A disabled advertiser is refused as unknown.
    pub disabled: bool,
    pub created_ms: UnixMillis,
    pub updated_ms: UnixMillis,
    /// Most this advertiser may ever be charged, over all periods (none: no cap).
    pub lifetime: Option<Spend>,
}

/// Which of the budgets a report is charged against would be exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetLimit {
    /// The advertiser's budget for the current period.
    Period,
    /// The advertiser's lifetime cap (never renews).
    Lifetime,
    /// The operator's cap across all advertisers for the current period.
    Total,
}

impl BudgetLimit {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Period => "privacy budget for this period",
            Self::Lifetime => "advertiser's lifetime privacy budget",
            Self::Total => "privacy budget across all advertisers for this period",
        }
    }
}

/// The operator's cap across all advertisers (`[insights] total_budget`): every report
/// charged since `since` (the start of the cap's current period) counts against `limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotalCap {
    pub limit: Spend,
    pub since: UnixMillis,
}

/// The reports a spend sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpendScope {
    /// One advertiser's reports charged to one period (e.g. "2026-11").
    Period { advertiser: String, period: String },
    /// Every report of one advertiser.
    Lifetime { advertiser: String },
    /// Every report of every advertiser from this time on.
    AllSince(UnixMillis),
}

/// A report to charge and record.
#[derive(Clone, Debug)]
pub struct NewReport {
    pub advertiser: String,
    /// The budget period it is charged to, e.g. "2026-11".
    pub period: String,
    pub time_ms: UnixMillis,
    pub cost: Spend,
    pub purpose: String,
    pub query_json: String,
    pub answer_json: String,
    /// The subjects the answer was computed from: `candor_insights::membership::encode`
    /// output, one `(chunk, bytes)` per chunk.
    pub members: Vec<(u32, Vec<u8>)>,
    /// The operator's cap across advertisers the charge must also fit, if any (the
    /// advertiser's own lifetime cap is read from its row, like its budget).
    pub total: Option<TotalCap>,
}

impl NewReport {
    /// The record of this report once stored as `id` (both backends answer with it).
    pub(crate) fn recorded(&self, id: i64, spent_after: Spend, budget: Spend) -> ReportRecord {
        ReportRecord {
            id,
            advertiser: self.advertiser.clone(),
            period: self.period.clone(),
            time_ms: self.time_ms,
            cost: self.cost,
            purpose: self.purpose.clone(),
            query_json: self.query_json.clone(),
            answer_json: self.answer_json.clone(),
            spent_after,
            budget,
        }
    }
}

/// A recorded report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRecord {
    pub id: i64,
    pub advertiser: String,
    pub period: String,
    pub time_ms: UnixMillis,
    pub cost: Spend,
    pub purpose: String,
    pub query_json: String,
    pub answer_json: String,
    /// The period's total spend including this report.
    pub spent_after: Spend,
    /// The advertiser's budget when it was charged.
    pub budget: Spend,
}

/// One admin action as the audit log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminAction {
    pub time_ms: UnixMillis,
    /// What was done, e.g. `advertiser.create`, `subject_token.mint`, `import.consents`.
    pub action: String,
    /// What it was done to (an advertiser or variant id; empty when none).
    pub target: String,
    /// `ok`, or the stable error code it failed with.
    pub outcome: String,
    /// A few non-personal facts (counts, fields changed).
    pub detail: String,
}

/// A recorded admin action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminActionRecord {
    pub id: i64,
    pub action: AdminAction,
}

/// One read of a person's data, for their access log (issue 13): who or what read it,
/// for which purpose, and why. Recorded for reads only (my-data views, exports,
/// personalization), never per event written, so ingestion does not pay for it.
/// Insight scans are not written here one subject at a time: a report's membership
/// already records who it counted, and the access log shows those reports beside
/// these rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub subject: SubjectId,
    pub time_ms: UnixMillis,
    /// The part of Candor or the credential that read, e.g. `my_data_page`, `export`,
    /// `api:server-key:web`.
    pub accessor: String,
    /// The purpose the read served, if one (`personalization`), else empty.
    pub purpose: String,
    /// Why, in a few plain words.
    pub why: String,
}

/// What a person asked of the operator (issue 13): to see their data, to take a copy,
/// to be erased. Kept with the subject's pseudonym only, so an erasure's own request
/// outlives it and the operator can show each was answered in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Access,
    Export,
    Erasure,
}

impl RequestKind {
    pub const ALL: [RequestKind; 3] = [Self::Access, Self::Export, Self::Erasure];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Export => "export",
            Self::Erasure => "erasure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A person's request as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub id: i64,
    pub subject: SubjectId,
    pub kind: RequestKind,
    /// Through what it came: `page`, `api`, `cli`.
    pub channel: String,
    pub requested_ms: UnixMillis,
    /// When it was answered; `None` while open (or if it failed).
    pub completed_ms: Option<UnixMillis>,
    /// `ok`, `pending`, or the stable code it failed with.
    pub outcome: String,
}

/// A volunteered (zero-party) field's new value for one subject: already parsed against
/// its field (`FieldSpec::parse_value`) and given in its stored form
/// (`FieldValue::canonical`). The store seals it under the subject's key.
#[derive(Clone, Debug)]
pub struct FieldWrite {
    pub subject: SubjectId,
    pub field: FieldName,
    pub value: Sensitive<String>,
    pub provenance: Provenance,
    pub time_ms: UnixMillis,
}

/// A change to volunteered fields, as a store announces it after commit (this node's
/// writes, and on PostgreSQL other nodes' through `NOTIFY`): the subject whose fields
/// changed, or `All` when changes may have been missed (a lost connection), so a
/// listener reloads everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldsChanged {
    Subject(SubjectId),
    All,
}

/// A field's value as stored for a subject, opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredField {
    pub field: FieldName,
    pub value: Sensitive<String>,
    pub provenance: Provenance,
    pub updated_ms: UnixMillis,
}
