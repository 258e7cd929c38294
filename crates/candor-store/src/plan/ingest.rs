//! A group of gated rows, decided: which are stored (under which purposes), which are
//! duplicates, and which lost their consent between the gate and the commit.
//!
//! The gate decided each row's purposes against a cache that may lag a withdrawal by
//! moments (the writer's queue on SQLite, another node's change on PostgreSQL), so both
//! backends re-check each row here, inside their ordered path, against the granted set
//! as committed: an event gated before a withdrawal but committed after it keeps only
//! the purposes still granted, and is dropped when none is left. A `messageId` seen
//! before (in the store, or earlier in the same group) is a duplicate.

use crate::types::RowOutcome;
use candor_core::idhash::IdSet;
use candor_core::PurposeSet;

/// The decision for one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Store it, tagged with these purposes (never empty).
    Store(PurposeSet),
    Duplicate,
    ConsentChanged,
}

impl Verdict {
    /// What the caller is told.
    pub fn outcome(self) -> RowOutcome {
        match self {
            Verdict::Store(_) => RowOutcome::Stored,
            Verdict::Duplicate => RowOutcome::Duplicate,
            Verdict::ConsentChanged => RowOutcome::ConsentChanged,
        }
    }
}

/// Decides the rows of one group in order.
#[derive(Default)]
pub struct GroupGate {
    seen: IdSet<[u8; 16]>,
}

impl GroupGate {
    /// `purposes`: what the gate allowed the row for; `granted`: its subject's purposes
    /// as committed now; `stored_before`: whether the store already holds this
    /// `dedup_key` (backends that only learn that when they write, PostgreSQL's unique
    /// key, pass false and turn the verdict into `Duplicate` afterwards). Consent is
    /// checked first: a row no purpose may use is not a duplicate of anything, because
    /// it is not stored.
    pub fn decide(
        &mut self,
        purposes: PurposeSet,
        dedup_key: [u8; 16],
        granted: PurposeSet,
        stored_before: bool,
    ) -> Verdict {
        let allowed = purposes.intersect(granted);
        if allowed.is_empty() {
            Verdict::ConsentChanged
        } else if stored_before || !self.seen.insert(dedup_key) {
            Verdict::Duplicate
        } else {
            Verdict::Store(allowed)
        }
    }
}
