//! An erasure, decided (invariant 6): which rows go, which record the ledger gets, and
//! what the caches must forget. Both backends carry it out in one transaction of their
//! own writer; nothing here touches storage.
//!
//! **What goes.** The subject's row (its data key, wrapped by the master key: anything
//! sealed under it that survived anywhere is unreadable from then on), then every row
//! keyed by the subject in [`SUBJECT_TABLES`], its events (every partition on
//! PostgreSQL) and the de-duplication keys those events carried, and on PostgreSQL the
//! `identity_lookup` rows of its identifiers. A test checks that every table with a
//! `subject_id` column is either listed here or deliberately kept (`KEPT`).
//!
//! **What stays.** The ledger: its records of the subject are pseudonymous and the chain
//! must keep verifying, so the erasure is *appended* ([`plan`]): one format-2 record,
//! status `erased`, marker purpose `erasure`, who asked inside the signed bytes. Report
//! membership chunks keep only dense numbers, which are never reused (SQLite remembers
//! the next free number in `insight_dense_next`; PostgreSQL takes them from a sequence),
//! so a past report's membership can never come to name a new person.
//!
//! **Caches.** After commit the subject is *forgotten* (`Caches::forget`): consent
//! index, identity map, key cache and feature index drop it and it is remembered as
//! erased, so a stale snapshot or a late refresh can never bring it back (subject ids
//! are random and never reused). An erased person who comes back resolves to nothing
//! and becomes a new subject with nothing granted.

use crate::types::{ErasedCounts, Erasure};
use candor_core::ledger::{Attribution, Head, KeyId, LedgerEntry, SealedEntry};
use candor_core::receipt::ReceiptSigner;

/// Tables whose rows are keyed by the subject and deleted by `subject_id`, besides the
/// subject's own row (`subjects`) and `events` (which also yield their dedup keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectTable {
    Identities,
    ConsentState,
    PurposeFloors,
    InsightFeatures,
    InsightDeclared,
    InsightSubjects,
    AccessLog,
    VolunteeredFields,
    LoyaltyTxns,
    LoyaltyAccounts,
    EmailSubscriptions,
    EmailMessages,
}

pub const SUBJECT_TABLES: [SubjectTable; 12] = [
    SubjectTable::Identities,
    SubjectTable::ConsentState,
    SubjectTable::PurposeFloors,
    SubjectTable::InsightFeatures,
    SubjectTable::InsightDeclared,
    SubjectTable::InsightSubjects,
    SubjectTable::AccessLog,
    SubjectTable::VolunteeredFields,
    SubjectTable::LoyaltyTxns,
    SubjectTable::LoyaltyAccounts,
    SubjectTable::EmailSubscriptions,
    SubjectTable::EmailMessages,
];

/// Tables with a `subject_id` column an erasure deletes otherwise (`subjects`,
/// `events`) or keeps on purpose (`ledger`: pseudonymous, it outlives erasure;
/// `subject_requests`: the pseudonymous note that a person asked for access, an export
/// or this very erasure, and when it was answered, which the operator must be able to
/// show afterwards).
pub const KEPT_OR_SPECIAL: [&str; 4] = ["subjects", "events", "ledger", "subject_requests"];

impl SubjectTable {
    pub fn name(self) -> &'static str {
        match self {
            Self::Identities => "identities",
            Self::ConsentState => "consent_state",
            Self::PurposeFloors => "purpose_floors",
            Self::InsightFeatures => "insight_features",
            Self::InsightDeclared => "insight_declared",
            Self::InsightSubjects => "insight_subjects",
            Self::AccessLog => "access_log",
            Self::VolunteeredFields => "volunteered_fields",
            Self::LoyaltyTxns => "loyalty_txns",
            Self::LoyaltyAccounts => "loyalty_accounts",
            Self::EmailSubscriptions => "email_subscriptions",
            Self::EmailMessages => "email_messages",
        }
    }

    /// The statement deleting the subject's rows (`$1`: the subject id), both dialects.
    pub fn delete_sql(self) -> String {
        format!("DELETE FROM {} WHERE subject_id = $1", self.name())
    }

    /// Where the number of rows deleted is counted.
    pub fn count(self, c: &mut ErasedCounts) -> &mut u64 {
        match self {
            Self::Identities => &mut c.identities,
            Self::ConsentState => &mut c.consent_states,
            Self::PurposeFloors => &mut c.purpose_floors,
            Self::InsightFeatures => &mut c.insight_features,
            Self::InsightDeclared => &mut c.insight_declared,
            Self::InsightSubjects => &mut c.insight_subjects,
            Self::AccessLog => &mut c.access_log,
            Self::VolunteeredFields => &mut c.volunteered_fields,
            Self::LoyaltyTxns => &mut c.loyalty_txns,
            Self::LoyaltyAccounts => &mut c.loyalty_accounts,
            Self::EmailSubscriptions => &mut c.email_subscriptions,
            Self::EmailMessages => &mut c.email_messages,
        }
    }
}

/// What makes a subject *not* abandoned, for an erasure `only_if_abandoned`: one
/// statement per table (`$1`: the subject id), each finding a row if the subject holds
/// something of its own there. A subject made for a request to join a list holds only
/// its email address and the pending row, which expiry has deleted before; anything
/// else (any ledger record, hence any consent given or refused; a subscription; an
/// identifier other than an email address, e.g. a user id; an account, fields or a
/// request of the person's) keeps it. Events and features need no statement: none is
/// stored without consent, which leaves a ledger record. Each statement reads one
/// table, so that on Citus each is routed to one shard (or the coordinator).
pub const ABANDONED_UNLESS: [&str; 6] = [
    "SELECT 1 FROM ledger WHERE subject_id = $1 LIMIT 1",
    "SELECT 1 FROM email_subscriptions WHERE subject_id = $1 LIMIT 1",
    "SELECT 1 FROM identities WHERE subject_id = $1 AND kind <> 3 LIMIT 1",
    "SELECT 1 FROM loyalty_accounts WHERE subject_id = $1 LIMIT 1",
    "SELECT 1 FROM volunteered_fields WHERE subject_id = $1 LIMIT 1",
    "SELECT 1 FROM subject_requests WHERE subject_id = $1 LIMIT 1",
];

/// The ledger side of an erasure.
#[derive(Clone, Debug)]
pub struct ErasurePlan {
    /// The erasure record, chained after the head the transaction locked.
    pub record: SealedEntry,
    /// The head after it; also the version the caches remember the subject erased at.
    pub head: Head,
}

/// Decides the erasure record for `req` with the ledger at `head`.
pub fn plan(req: &Erasure, head: Head, signer: &ReceiptSigner) -> ErasurePlan {
    let record = LedgerEntry::erasure(
        head.seq + 1,
        head.hash,
        req.subject,
        req.channel,
        req.time_ms,
        Attribution {
            actor: req.actor.clone(),
            key_id: KeyId::of(&signer.verifying_key()),
        },
    )
    .seal(signer.signing_key());
    let head = Head {
        seq: record.entry.seq,
        hash: record.hash,
    };
    ErasurePlan { record, head }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::consent::{Channel, ConsentStatus};
    use candor_core::ledger::{verify_chain, Actor, KeyRing, GENESIS};
    use candor_core::{SubjectId, UnixMillis};

    #[test]
    fn the_record_is_a_signed_pseudonymous_erasure_chained_after_the_head() {
        let signer = ReceiptSigner::from_bytes(&[3; 32]);
        let req = Erasure {
            subject: SubjectId::random(),
            actor: Actor::Admin,
            channel: Channel::Api,
            time_ms: UnixMillis(1_700_000_000_000),
            only_if_abandoned: false,
        };
        let p = plan(
            &req,
            Head {
                seq: 0,
                hash: GENESIS,
            },
            &signer,
        );
        let e = &p.record.entry;
        assert_eq!((e.seq, e.status), (1, ConsentStatus::Erased));
        assert_eq!(e.subject, req.subject);
        assert!(e.evidence.entries().is_empty());
        assert_eq!(p.head.seq, 1);
        let ring = KeyRing::single(signer.verifying_key());
        assert_eq!(
            verify_chain(std::slice::from_ref(&p.record), Some(p.head), &ring),
            Ok(1)
        );
    }

    #[test]
    fn statements_use_one_placeholder() {
        for t in SUBJECT_TABLES {
            assert!(t.delete_sql().ends_with("WHERE subject_id = $1"));
        }
        for s in ABANDONED_UNLESS {
            assert!(s.contains("WHERE subject_id = $1") && !s.contains("$2"));
        }
        // The identities statement spares exactly the email kind.
        assert!(ABANDONED_UNLESS[2].contains(&format!(
            "kind <> {}",
            candor_core::crypto::IdKind::Email.code()
        )));
    }
}
