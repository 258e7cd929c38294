//! The in-memory consent index: subject → purposes currently granted.
//!
//! Every ingested event asks it one question, so it must answer in well under a
//! microsecond and never block behind a writer for long. It is sharded by subject so
//! that a consent change locks one shard for a few nanoseconds; readers on other
//! shards never wait. The store rebuilds it at start and updates it right after each
//! consent change commits.
//!
//! **Invariant (fail closed):** a subject the index does not know has no purpose granted.

use crate::idhash::IdMap;
use crate::ids::SubjectId;
use crate::purpose_set::PurposeSet;
use parking_lot::RwLock;

const SHARDS: usize = 64;

pub struct ConsentIndex {
    shards: Vec<RwLock<IdMap<SubjectId, PurposeSet>>>,
}

impl Default for ConsentIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsentIndex {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(IdMap::default())).collect(),
        }
    }

    fn shard(&self, s: &SubjectId) -> &RwLock<IdMap<SubjectId, PurposeSet>> {
        // Subject ids are random, so any byte is a uniform shard key.
        &self.shards[s.as_bytes()[0] as usize % SHARDS]
    }

    /// Purposes granted by this subject; empty if unknown.
    pub fn granted(&self, s: &SubjectId) -> PurposeSet {
        self.shard(s).read().get(s).copied().unwrap_or_default()
    }

    /// Replaces the subject's granted set; an empty set removes the entry.
    pub fn set(&self, s: SubjectId, granted: PurposeSet) {
        let mut shard = self.shard(&s).write();
        if granted.is_empty() {
            shard.remove(&s);
        } else {
            shard.insert(s, granted);
        }
    }

    pub fn remove(&self, s: &SubjectId) {
        self.shard(s).write().remove(s);
    }

    /// Subjects with at least one purpose granted.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        for s in &self.shards {
            s.write().clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_denied_and_updates_apply() {
        let idx = ConsentIndex::new();
        let s = SubjectId::random();
        assert!(idx.granted(&s).is_empty());
        idx.set(s, PurposeSet::from_bits(0b101));
        assert_eq!(idx.granted(&s).bits(), 0b101);
        idx.set(s, PurposeSet::EMPTY);
        assert!(idx.is_empty());
    }
}
