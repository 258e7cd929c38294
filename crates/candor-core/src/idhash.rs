//! A hasher for maps keyed by ids that are already uniformly random: subject ids (128
//! random bits), lookup hashes (HMAC outputs) and de-duplication keys. Hashing them
//! again with SipHash is wasted work on the hottest path; their first eight bytes are a
//! perfectly good hash. Safe against hash flooding because no client chooses these
//! bytes: they are server-generated or keyed with a secret the client does not know.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Fold in up to eight bytes; a length prefix (written as usize) is mixed too.
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
    }
}

pub type IdBuild = BuildHasherDefault<IdHasher>;
pub type IdMap<K, V> = HashMap<K, V, IdBuild>;
pub type IdSet<K> = HashSet<K, IdBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SubjectId;

    #[test]
    fn works_as_a_map_hasher() {
        let mut m: IdMap<SubjectId, u32> = IdMap::default();
        let ids: Vec<SubjectId> = (0..1000).map(|_| SubjectId::random()).collect();
        for (i, s) in ids.iter().enumerate() {
            m.insert(*s, i as u32);
        }
        for (i, s) in ids.iter().enumerate() {
            assert_eq!(m[s], i as u32);
        }
    }
}
