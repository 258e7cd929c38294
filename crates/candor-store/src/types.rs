//! The commands and results that cross the storage interface. Plain Rust, no wire
//! format: the server converts to and from its DTOs.

use candor_core::consent::{Action, Channel, ConsentStatus};
use candor_core::crypto::{IdKind, LookupHash};
use candor_core::event::EventKind;
use candor_core::ledger::{Evidence, Head, LedgerEntry, SealedEntry};
use candor_core::{CategoryId, PurposeId, PurposeSet, Sensitive, SubjectId};

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

/// One subject's consent changes, as one atomic unit.
#[derive(Clone, Debug)]
pub struct ConsentCommand {
    /// Identifiers of the subject; the first that resolves names the subject. Unknown
    /// ones are linked to it.
    pub identities: Vec<Identity>,
    /// Create the subject when no identifier resolves (consent prompts); otherwise
    /// an unknown subject is an error.
    pub create: bool,
    pub changes: Vec<PurposeChange>,
    pub channel: Channel,
    pub evidence: Evidence,
    pub time_ms: i64,
}

impl ConsentCommand {
    /// The ledger entry recording `status` for one change of this command, chained
    /// after `head`. Both stores append through this, so they cannot drift apart.
    pub(crate) fn entry(
        &self,
        head: Head,
        subject: SubjectId,
        change: &PurposeChange,
        status: ConsentStatus,
    ) -> LedgerEntry {
        LedgerEntry {
            seq: head.seq + 1,
            subject,
            purpose: change.purpose.clone(),
            status,
            notice_version: change.notice_version,
            notice_hash: change.notice_hash,
            channel: self.channel,
            time_ms: self.time_ms,
            evidence: self.evidence.clone(),
            prev_hash: head.hash,
        }
    }
}

/// Evidence as stored in the ledger's `evidence` column (sorted-key JSON).
pub(crate) fn evidence_json(e: &Evidence) -> Result<String, crate::StoreError> {
    serde_json::to_string(e).map_err(|err| crate::StoreError::Database(err.to_string()))
}

#[derive(Clone, Debug)]
pub struct ConsentOutcome {
    pub subject: SubjectId,
    pub created: bool,
    /// The ledger records appended (one per purpose whose status changed).
    pub records: Vec<SealedEntry>,
    /// Granted purposes after the change.
    pub granted: PurposeSet,
}

#[derive(Clone, Debug)]
pub struct StateRow {
    pub purpose: PurposeId,
    pub status: ConsentStatus,
    pub notice_version: u32,
    pub seq: u64,
    pub time_ms: i64,
}

/// An event ready to store: gated, with its payload already sealed under the
/// subject's key.
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
    pub event_ms: i64,
    pub received_ms: i64,
    pub sealed_payload: Vec<u8>,
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
    pub event_ms: i64,
    pub received_ms: i64,
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
}
