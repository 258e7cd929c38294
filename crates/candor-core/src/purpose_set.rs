//! A set of purposes as a 64-bit mask. Each purpose gets a stable bit number (assigned
//! once by the store and never reused), so a consent decision is one AND of two words.

/// Up to 64 purposes, which is far beyond what any notice can honestly present.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct PurposeSet(u64);

pub const MAX_PURPOSES: u8 = 64;

impl PurposeSet {
    pub const EMPTY: PurposeSet = PurposeSet(0);

    pub fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn single(bit: u8) -> Self {
        debug_assert!(bit < MAX_PURPOSES);
        Self(1u64 << (bit & 63))
    }

    pub fn contains(self, bit: u8) -> bool {
        bit < MAX_PURPOSES && self.0 & (1u64 << bit) != 0
    }

    pub fn insert(&mut self, bit: u8) {
        self.0 |= Self::single(bit).0;
    }

    pub fn remove(&mut self, bit: u8) {
        self.0 &= !Self::single(bit).0;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersect(self, other: PurposeSet) -> PurposeSet {
        PurposeSet(self.0 & other.0)
    }

    pub fn union(self, other: PurposeSet) -> PurposeSet {
        PurposeSet(self.0 | other.0)
    }

    pub fn minus(self, other: PurposeSet) -> PurposeSet {
        PurposeSet(self.0 & !other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..MAX_PURPOSES).filter(move |b| self.contains(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_ops() {
        let mut s = PurposeSet::EMPTY;
        s.insert(0);
        s.insert(63);
        assert!(s.contains(63) && s.contains(0) && !s.contains(1));
        assert!(!s.contains(64));
        s.remove(0);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![63]);
        assert_eq!(s.intersect(PurposeSet::single(63)), s);
        assert!(s.minus(s).is_empty());
    }
}
