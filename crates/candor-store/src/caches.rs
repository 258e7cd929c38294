//! The in-memory state a store keeps beside its tables, and the one way it changes.
//!
//! The consent index, the identity map (lookup hash → subject), unwrapped subject keys
//! and the insight feature index must match what is committed. Both backends stage
//! their changes while a transaction runs ([`Staged`]) and publish them only after it
//! has committed, so nobody can observe state that might still be rolled back.
//!
//! Each subject's index entry carries a *version*: the ledger `seq` of the latest
//! consent change it reflects. Ledger numbers are global and only grow (the head is
//! locked or owned by one writer), so an update older than the one published is stale
//! and dropped. On PostgreSQL, where caches are also refreshed from other nodes' changes,
//! that is what keeps a resync that read its snapshot before a local commit, and
//! published after it, from undoing that commit's grant; on SQLite versions only grow.
//!
//! An erased subject is *forgotten* ([`Caches::forget`]) and remembered as erased: every
//! later publication naming it (a stale resync snapshot, a feature refresh read before
//! the erasure, a key loaded just before it) is dropped, under the same lock, so nothing
//! can bring it back. Subject ids are random and never reused, so the set is only ever
//! added to (16 bytes per erasure since this process started; at start the database
//! holds nothing of earlier erasures to bring back).

use crate::features::{IndexOp, Insights};
use crate::StoreError;
use candor_core::consent::ConsentStatus;
use candor_core::crypto::{LookupHash, MasterKey, SubjectKey};
use candor_core::idhash::{IdMap, IdSet};
use candor_core::index::ConsentIndex;
use candor_core::receipt::ReceiptSigner;
use candor_core::{PurposeId, PurposeSet, SubjectId};
use candor_insights::FeatureIndex;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;

/// The identity map: lookup hash → subject, and how many identifiers each subject
/// holds (what lets the server tell an anonymous id nobody has linked from one linked
/// to a user id without asking the database; see `plan::identity`). Identifiers are
/// only ever added, so counting insertions keeps the counts exact.
#[derive(Default)]
pub struct IdentityMap {
    subject_of: IdMap<LookupHash, SubjectId>,
    /// Identifiers per subject, saturating at 255 (the rule only asks "more than the
    /// request names", a handful at most).
    held: IdMap<SubjectId, u8>,
}

impl IdentityMap {
    pub fn get(&self, h: &LookupHash) -> Option<&SubjectId> {
        self.subject_of.get(h)
    }

    pub fn insert(&mut self, h: LookupHash, s: SubjectId) {
        match self.subject_of.insert(h, s) {
            Some(old) if old == s => return,
            // Never happens (one identifier, one subject), but keep the counts true.
            Some(old) => {
                if let Some(n) = self.held.get_mut(&old) {
                    *n = n.saturating_sub(1);
                }
            }
            None => {}
        }
        let n = self.held.entry(s).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// How many identifiers resolve to `s` (saturating at 255).
    pub fn held(&self, s: &SubjectId) -> usize {
        self.held.get(s).map_or(0, |n| usize::from(*n))
    }

    /// Drops every identifier of `s` (erasure). A scan of the map: erasures are rare,
    /// and the map is keyed by hash, so a subject's entries cannot be found otherwise
    /// on a node that did not erase it.
    pub fn remove_subject(&mut self, s: &SubjectId) {
        if self.held.remove(s).is_some() {
            self.subject_of.retain(|_, v| v != s);
        }
    }
}

impl Extend<(LookupHash, SubjectId)> for IdentityMap {
    fn extend<I: IntoIterator<Item = (LookupHash, SubjectId)>>(&mut self, iter: I) {
        for (h, s) in iter {
            self.insert(h, s);
        }
    }
}

pub struct Caches {
    pub index: ConsentIndex,
    /// Each subject's consent version, and the subjects erased (taken together, under one
    /// lock, by every publication: see the module documentation).
    versions: Mutex<Versions>,
    pub ids: RwLock<IdentityMap>,
    pub keys: RwLock<IdMap<SubjectId, SubjectKey>>,
    /// Stable bit numbers of the configured purposes.
    pub bits: HashMap<PurposeId, u8>,
    pub master: MasterKey,
    pub signer: Arc<ReceiptSigner>,
    /// The insights purpose, when insights are configured.
    pub insights: Option<Insights>,
    pub features: Arc<FeatureIndex>,
    /// Announces committed field changes (`Store::fields_changed`).
    pub fields_changed: tokio::sync::broadcast::Sender<crate::FieldsChanged>,
}

impl Caches {
    pub fn new(
        bits: HashMap<PurposeId, u8>,
        master: MasterKey,
        signer: Arc<ReceiptSigner>,
        insights: Option<Insights>,
        features: Arc<FeatureIndex>,
    ) -> Self {
        Self {
            index: ConsentIndex::new(),
            versions: Mutex::new(Versions::default()),
            ids: RwLock::new(IdentityMap::default()),
            keys: RwLock::new(IdMap::default()),
            bits,
            master,
            signer,
            insights,
            features,
            fields_changed: tokio::sync::broadcast::channel(4096).0,
        }
    }

    /// Announces that fields changed (a send with no listener is fine).
    pub fn announce_fields(&self, change: crate::FieldsChanged) {
        let _ = self.fields_changed.send(change);
    }

    /// The bit of the insights purpose, when insights are on.
    pub fn insights_bit(&self) -> Option<u8> {
        self.insights.as_ref().map(|i| i.bit)
    }

    /// Publishes a subject's granted set as of `version`, unless a newer one is already
    /// published. A newer set without the insights purpose also drops the subject from
    /// the feature index (its rows were deleted in the same transaction), whichever node
    /// took the withdrawal.
    pub fn publish_granted(&self, s: SubjectId, granted: PurposeSet, version: u64) {
        let mut versions = self.versions.lock();
        if versions.erased.contains(&s) {
            return;
        }
        let known = versions.of.entry(s).or_insert(0);
        if version >= *known {
            let newer = version > *known;
            *known = version;
            self.index.set(s, granted);
            if let Some(ins) = &self.insights {
                if newer && !granted.contains(ins.bit) {
                    self.features.remove_subject(&s);
                }
            }
        }
    }

    /// Publishes a full snapshot. Subjects absent from it have no consent rows at all,
    /// so their entries (all newer than the snapshot) are kept.
    pub fn publish_all_granted(&self, all: IdMap<SubjectId, (PurposeSet, u64)>) {
        for (s, (g, v)) in all {
            self.publish_granted(s, g, v);
        }
    }

    /// Applies feature index updates, each read together with its subject's consent
    /// version; an update older than the consent change this node has published is not
    /// applied (the change may be a withdrawal that already removed the subject) and the
    /// subject goes to `retry`, to be re-read whole. Under the same lock as
    /// [`Caches::publish_granted`], so the two cannot interleave.
    pub fn publish_features(
        &self,
        ops: impl IntoIterator<Item = (IndexOp, u64)>,
        retry: &mut IdSet<SubjectId>,
    ) {
        let versions = self.versions.lock();
        for (op, read) in ops {
            let s = op.subject();
            if versions.erased.contains(&s) {
                continue;
            }
            if versions.of.get(&s).copied().unwrap_or(0) <= read {
                op.apply(&self.features, false);
            } else {
                retry.insert(s);
            }
        }
    }

    /// Publishes the granted sets and versions folded from `consent_state` rows of
    /// (subject, purpose, status, seq): a subject's version is its highest `seq`.
    pub fn publish_state_rows(
        &self,
        rows: impl IntoIterator<Item = Result<(SubjectId, String, String, i64), StoreError>>,
    ) -> Result<(), StoreError> {
        let mut all: IdMap<SubjectId, (PurposeSet, u64)> = IdMap::default();
        for r in rows {
            let (s, purpose, status, seq) = r?;
            let e = all.entry(s).or_insert((PurposeSet::EMPTY, 0));
            if status == ConsentStatus::Given.as_str() {
                e.0 = e.0.union(self.granted_of([purpose.as_str()]));
            }
            e.1 = e.1.max(u64::try_from(seq).unwrap_or(0));
        }
        self.publish_all_granted(all);
        Ok(())
    }

    /// The granted set from a subject's `given` purposes (unconfigured ones grant
    /// nothing: fail closed).
    pub fn granted_of<'a>(&self, given: impl IntoIterator<Item = &'a str>) -> PurposeSet {
        crate::plan::consent::granted_of(given, &self.bits)
    }

    /// The subject an identifier resolves to, as committed.
    pub fn resolve(&self, h: &LookupHash) -> Option<SubjectId> {
        self.ids.read().get(h).copied()
    }

    /// How many identifiers resolve to `s`, as committed.
    pub fn held(&self, s: &SubjectId) -> usize {
        self.ids.read().held(s)
    }

    pub fn key(&self, s: &SubjectId) -> Option<SubjectKey> {
        self.keys.read().get(s).cloned()
    }

    /// Publishes identifier links, except those of erased subjects.
    pub fn publish_ids(&self, ids: impl IntoIterator<Item = (LookupHash, SubjectId)>) {
        let versions = self.versions.lock();
        self.ids.write().extend(
            ids.into_iter()
                .filter(|(_, s)| !versions.erased.contains(s)),
        );
    }

    /// Caches subjects' data keys, except those of erased subjects.
    pub fn publish_keys(&self, keys: impl IntoIterator<Item = (SubjectId, SubjectKey)>) {
        let versions = self.versions.lock();
        self.keys.write().extend(
            keys.into_iter()
                .filter(|(s, _)| !versions.erased.contains(s)),
        );
    }

    /// Forgets an erased subject (after its erasure committed, on any node): drops it
    /// from the consent index, the identity map, the key cache and the feature index, and
    /// refuses every later publication naming it. Returns false when it was already
    /// forgotten.
    pub fn forget(&self, s: SubjectId) -> bool {
        let mut versions = self.versions.lock();
        if !versions.erased.insert(s) {
            return false;
        }
        versions.of.remove(&s);
        self.index.remove(&s);
        self.ids.write().remove_subject(&s);
        self.keys.write().remove(&s);
        self.features.remove_subject(&s);
        true
    }

    /// Whether `s` was erased (as far as this node has heard).
    pub fn is_erased(&self, s: &SubjectId) -> bool {
        self.versions.lock().erased.contains(s)
    }
}

/// Consent versions and erased subjects, guarded together.
#[derive(Default)]
struct Versions {
    of: IdMap<SubjectId, u64>,
    erased: IdSet<SubjectId>,
}

/// Cache changes a transaction makes, published after it commits ([`Staged::publish`]).
/// A job's own changes are staged apart and absorbed into its group's only when the job
/// succeeds, so a job rolled back to its savepoint leaves nothing behind.
#[derive(Default)]
pub(crate) struct Staged {
    pub ids: IdMap<LookupHash, SubjectId>,
    pub keys: IdMap<SubjectId, SubjectKey>,
    /// Granted set and its version per subject.
    pub granted: IdMap<SubjectId, (PurposeSet, u64)>,
    /// Subjects other nodes must reload (PostgreSQL's notifications).
    pub changed: IdSet<SubjectId>,
    /// A withdrawal set a floor: the sweeper has work.
    pub floored: bool,
}

impl Staged {
    pub fn absorb(&mut self, other: Staged) {
        self.ids.extend(other.ids);
        self.keys.extend(other.keys);
        self.granted.extend(other.granted);
        self.changed.extend(other.changed);
        self.floored |= other.floored;
    }

    /// The subject an identifier resolves to in what this transaction staged.
    pub fn resolve(&self, h: &LookupHash) -> Option<SubjectId> {
        self.ids.get(h).copied()
    }

    /// Publishes identities, keys and granted sets. Call only after COMMIT returned.
    pub fn publish(&mut self, caches: &Caches) {
        caches.publish_ids(self.ids.drain());
        caches.publish_keys(self.keys.drain());
        for (s, (g, v)) in self.granted.drain() {
            caches.publish_granted(s, g, v);
        }
    }
}
