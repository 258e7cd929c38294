//! Vendor id sets and the TCF "vendor vector" wire form (bitfield or ranges).
//!
//! [`VendorSet`] is a bitset sized by the highest id actually present (at most
//! 8 KiB for id 65535), so memory follows the data, never a claimed length.
//! The encoder has to pick bitfield or range exactly as the IAB reference
//! does, or re-encoding a decoded string would not reproduce it.

use core::fmt;

use crate::bits::{BitReader, BitWriter};
use crate::error::{Error, Result};

/// A set of vendor ids (1..=65535).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct VendorSet {
    /// Bit `id - 1`; no trailing zero words, so equal sets compare equal.
    words: Vec<u64>,
}

impl VendorSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id`; returns whether it was newly added. Id 0 is not a vendor
    /// id and is refused (returns `false`).
    pub fn insert(&mut self, id: u16) -> bool {
        if id == 0 {
            return false;
        }
        let bit = usize::from(id - 1);
        self.grow(bit / 64 + 1);
        let mask = 1u64 << (bit % 64);
        let was = self.words[bit / 64] & mask != 0;
        self.words[bit / 64] |= mask;
        !was
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: u16) -> bool {
        if !self.contains(id) {
            return false;
        }
        let bit = usize::from(id - 1);
        self.words[bit / 64] &= !(1u64 << (bit % 64));
        self.trim();
        true
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u16) -> bool {
        if id == 0 {
            return false;
        }
        let bit = usize::from(id - 1);
        self.words
            .get(bit / 64)
            .is_some_and(|w| w >> (bit % 64) & 1 == 1)
    }

    /// Adds every id in `start..=end` (ids below 1 are skipped).
    pub fn insert_range(&mut self, start: u16, end: u16) {
        let start = start.max(1);
        if end < start {
            return;
        }
        let (s, e) = (usize::from(start - 1), usize::from(end - 1));
        self.grow(e / 64 + 1);
        for wi in s / 64..=e / 64 {
            let lo = if wi == s / 64 { s % 64 } else { 0 };
            let hi = if wi == e / 64 { e % 64 } else { 63 };
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            self.words[wi] |= mask;
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Number of ids in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The largest id, or 0 for the empty set (the wire form's MaxVendorId).
    pub fn max_id(&self) -> u16 {
        match self.words.last() {
            None => 0,
            Some(w) => ((self.words.len() - 1) * 64 + 64 - w.leading_zeros() as usize) as u16,
        }
    }

    /// Ids in ascending order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            words: &self.words,
            index: 0,
            current: self.words.first().copied().unwrap_or(0),
        }
    }

    /// Maximal runs of consecutive ids as `(first, last)`, ascending.
    pub fn runs(&self) -> Runs<'_> {
        Runs { set: self, bit: 0 }
    }

    fn grow(&mut self, words: usize) {
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }

    fn trim(&mut self) {
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }

    /// First set bit at or after `from`.
    fn next_set(&self, from: usize) -> Option<usize> {
        let mut wi = from / 64;
        let mut w = *self.words.get(wi)? & (u64::MAX << (from % 64));
        loop {
            if w != 0 {
                return Some(wi * 64 + w.trailing_zeros() as usize);
            }
            wi += 1;
            w = *self.words.get(wi)?;
        }
    }

    /// First clear bit at or after `from` (past the end counts as clear).
    fn next_clear(&self, from: usize) -> usize {
        let mut wi = from / 64;
        let Some(first) = self.words.get(wi) else {
            return from;
        };
        let mut w = !first & (u64::MAX << (from % 64));
        loop {
            if w != 0 {
                return wi * 64 + w.trailing_zeros() as usize;
            }
            wi += 1;
            match self.words.get(wi) {
                Some(next) => w = !next,
                None => return wi * 64,
            }
        }
    }
}

impl fmt::Debug for VendorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<u16> for VendorSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut s = Self::new();
        s.extend(iter);
        s
    }
}

impl Extend<u16> for VendorSet {
    fn extend<I: IntoIterator<Item = u16>>(&mut self, iter: I) {
        for id in iter {
            self.insert(id);
        }
    }
}

impl<'a> IntoIterator for &'a VendorSet {
    type Item = u16;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over a [`VendorSet`]'s ids.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    words: &'a [u64],
    index: usize,
    current: u64,
}

impl Iterator for Iter<'_> {
    type Item = u16;
    fn next(&mut self) -> Option<u16> {
        while self.current == 0 {
            self.index += 1;
            self.current = *self.words.get(self.index)?;
        }
        let tz = self.current.trailing_zeros() as usize;
        self.current &= self.current - 1;
        Some((self.index * 64 + tz + 1) as u16)
    }
}

/// Iterator over a [`VendorSet`]'s runs.
#[derive(Debug, Clone)]
pub struct Runs<'a> {
    set: &'a VendorSet,
    bit: usize,
}

impl Iterator for Runs<'_> {
    type Item = (u16, u16);
    fn next(&mut self) -> Option<(u16, u16)> {
        let start = self.set.next_set(self.bit)?;
        let end = self.set.next_clear(start);
        self.bit = end;
        Some(((start + 1) as u16, end as u16))
    }
}

/// Range entries are counted in 12 bits; a set with more runs can only be a bitfield.
const MAX_RANGE_ENTRIES: usize = 4095;

/// Whether the vector for `set` is written as ranges.
///
/// Reproduces `@iabtechlabtcf/core`'s `VendorVectorEncoder` exactly, quirks
/// included, since that is what makes `encode(decode(s)) == s`: it walks ids
/// 1..=max and re-checks "range so far < bitfield" *before* adding each id,
/// so the last id's bits never count; an id that ends a run adds only its
/// 16-bit id (a lone id thus skips its 1-bit flag); a longer run adds 17 at
/// its start and 16 at its end; below 46 ids it never tries ranges. A tie
/// goes to the bitfield. The GPP vectors (`@iabgpp/cmpapi` 3.2.0) follow
/// the same rule, not the "range if not longer" rule in that library's
/// `OptimizedFixedRangeEncoder`, so one rule serves both.
fn prefers_range(set: &VendorSet) -> bool {
    let max = usize::from(set.max_id());
    if max <= 45 {
        return false;
    }
    let bitfield = 17 + max;
    let mut len = 29;
    let mut runs = set.runs().peekable();
    let mut count = 0;
    while let Some((s, e)) = runs.next() {
        count += 1;
        len += match (runs.peek().is_none(), s == e) {
            (true, true) => 0,
            (true, false) => 17,
            (false, true) => 16,
            (false, false) => 33,
        };
        // The length only grows, so the first failure is final.
        if len >= bitfield || count > MAX_RANGE_ENTRIES {
            return false;
        }
    }
    true
}

/// Reads a vendor vector (MaxVendorId, IsRangeEncoding, then bitfield or ranges).
pub(crate) fn read_vector(r: &mut BitReader<'_>, field: &'static str) -> Result<VendorSet> {
    let max_id = r.read(16, field)? as u16;
    let mut set = VendorSet::new();
    if r.read_bool(field)? {
        let entries = r.read(12, field)?;
        for _ in 0..entries {
            let at = r.position();
            let (start, end) = read_range_entry(r, field)?;
            if end > max_id {
                return Err(Error::IdOutOfRange {
                    field,
                    offset: at,
                    id: u32::from(end),
                    max: u32::from(max_id),
                });
            }
            set.insert_range(start, end);
        }
    } else {
        let n = usize::from(max_id);
        // Check before allocating: a claimed 65535-bit field must be present.
        r.ensure(n, field)?;
        set.words.reserve_exact(n.div_ceil(64));
        let mut left = n;
        while left > 0 {
            let take = left.min(64) as u32;
            let v = r.read_u64(take, field)?;
            set.words.push((v << (64 - take)).reverse_bits());
            left -= take as usize;
        }
        set.trim();
    }
    Ok(set)
}

/// Reads one range entry (IsARange, StartOrOnlyVendorId, [EndVendorId]).
pub(crate) fn read_range_entry(r: &mut BitReader<'_>, field: &'static str) -> Result<(u16, u16)> {
    let at = r.position();
    let is_range = r.read_bool(field)?;
    let start = r.read(16, field)? as u16;
    let end = if is_range {
        r.read(16, field)? as u16
    } else {
        start
    };
    if start == 0 {
        return Err(Error::IdOutOfRange {
            field,
            offset: at,
            id: 0,
            max: u32::from(u16::MAX),
        });
    }
    if end < start {
        return Err(Error::RangeReversed {
            field,
            offset: at,
            start,
            end,
        });
    }
    Ok((start, end))
}

/// Writes the range entries of `set` (count first).
pub(crate) fn write_ranges(w: &mut BitWriter, set: &VendorSet, field: &'static str) -> Result<()> {
    let count = set.runs().count();
    if count > MAX_RANGE_ENTRIES {
        return Err(Error::ValueOutOfRange {
            field,
            value: count as u64,
            bits: 12,
        });
    }
    w.write(count as u32, 12);
    for (s, e) in set.runs() {
        w.write_bool(s != e);
        w.write(u32::from(s), 16);
        if s != e {
            w.write(u32::from(e), 16);
        }
    }
    Ok(())
}

/// Writes a vendor vector, choosing the encoding as the reference does.
pub(crate) fn write_vector(w: &mut BitWriter, set: &VendorSet, field: &'static str) -> Result<()> {
    let max = set.max_id();
    w.write(u32::from(max), 16);
    if prefers_range(set) {
        w.write_bool(true);
        write_ranges(w, set, field)?;
    } else {
        w.write_bool(false);
        let n = usize::from(max);
        for (i, word) in set.words.iter().enumerate() {
            let take = (n - i * 64).min(64) as u32;
            w.write_u64(word.reverse_bits() >> (64 - take), take);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(set: &VendorSet) -> (VendorSet, bool) {
        let mut w = BitWriter::default();
        write_vector(&mut w, set, "v").unwrap();
        let n = w.bit_len();
        let bytes = w.finish(8);
        let mut r = BitReader::new(&bytes, n);
        let back = read_vector(&mut r, "v").unwrap();
        assert_eq!(r.remaining(), 0);
        (back, bytes[2] & 0x80 != 0)
    }

    #[test]
    fn set_basics() {
        let mut s: VendorSet = [5u16, 1, 64, 65, 128, 129, 130].into_iter().collect();
        assert_eq!(s.len(), 7);
        assert_eq!(s.max_id(), 130);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![1, 5, 64, 65, 128, 129, 130]
        );
        assert_eq!(
            s.runs().collect::<Vec<_>>(),
            vec![(1, 1), (5, 5), (64, 65), (128, 130)]
        );
        assert!(!s.insert(0));
        assert!(s.remove(130) && s.remove(129) && s.remove(128));
        assert_eq!(s.max_id(), 65);
        s.insert_range(60, 200);
        assert_eq!(s.len(), 2 + 141);
        assert_eq!(s.runs().last(), Some((60, 200)));
        let full: VendorSet = {
            let mut f = VendorSet::new();
            f.insert_range(1, u16::MAX);
            f
        };
        assert_eq!(full.len(), 65535);
        assert_eq!(full.runs().collect::<Vec<_>>(), vec![(1, u16::MAX)]);
    }

    #[test]
    fn vectors_roundtrip() {
        let sparse: VendorSet = [3u16, 700, 2900].into_iter().collect();
        let dense: VendorSet = (1..300u16).filter(|i| i % 3 != 0).collect();
        let (back, range) = roundtrip(&sparse);
        assert_eq!(back, sparse);
        assert!(range);
        let (back, range) = roundtrip(&dense);
        assert_eq!(back, dense);
        assert!(!range);
        assert_eq!(roundtrip(&VendorSet::new()).0, VendorSet::new());
    }

    #[test]
    fn range_choice_quirks() {
        // Never ranges up to id 45, even for a single vendor.
        let s: VendorSet = [45u16].into_iter().collect();
        assert!(!prefers_range(&s));
        let s: VendorSet = [46u16].into_iter().collect();
        assert!(prefers_range(&s));
        // Two lone ids: counted 29 + 16 (the last id is never counted)
        // = 45 against a bitfield of 17 + 47 = 64.
        let s: VendorSet = [1u16, 47].into_iter().collect();
        assert!(prefers_range(&s));
        // A tie goes to the bitfield: {1, 3, 5, 60} counts 29 + 3 * 16 = 77
        // against 17 + 60 = 77.
        let mut s: VendorSet = [1u16, 3, 5, 60].into_iter().collect();
        assert!(!prefers_range(&s));
        s.remove(60);
        s.insert(61);
        assert!(prefers_range(&s));
    }

    #[test]
    fn bad_ranges_are_errors() {
        let mut w = BitWriter::default();
        w.write(10, 16); // MaxVendorId
        w.write_bool(true);
        w.write(1, 12);
        w.write_bool(true);
        w.write(8, 16);
        w.write(4, 16);
        let n = w.bit_len();
        let bytes = w.finish(8);
        assert!(matches!(
            read_vector(&mut BitReader::new(&bytes, n), "v"),
            Err(Error::RangeReversed {
                start: 8,
                end: 4,
                ..
            })
        ));

        let mut w = BitWriter::default();
        w.write(10, 16);
        w.write_bool(true);
        w.write(1, 12);
        w.write_bool(false);
        w.write(11, 16);
        let n = w.bit_len();
        let bytes = w.finish(8);
        assert!(matches!(
            read_vector(&mut BitReader::new(&bytes, n), "v"),
            Err(Error::IdOutOfRange {
                id: 11,
                max: 10,
                ..
            })
        ));
    }

    #[test]
    fn claimed_bitfield_must_be_present() {
        let mut w = BitWriter::default();
        w.write(65535, 16);
        w.write_bool(false);
        let n = w.bit_len();
        let bytes = w.finish(8);
        assert!(matches!(
            read_vector(&mut BitReader::new(&bytes, n), "v"),
            Err(Error::Truncated { needed: 65535, .. })
        ));
    }
}
