//! Which subjects a report's answer was computed from, kept so each person can later see
//! the reports their data was eligible for (issue 5, "transparency to people").
//!
//! A report can cover millions of subjects, so membership is a set of the store's small
//! subject numbers (`dense`), cut into chunks of 65,536 numbers: a chunk holds a sorted
//! list of 16-bit offsets while it is sparse and an 8 KiB bitset once that is smaller
//! (the two container kinds of Roaring bitmaps, Chambi et al. 2016). The store keeps one
//! row per (report, chunk), so a person's lookup reads one small chunk per report instead
//! of the whole set.

/// Container tag bytes.
const LIST: u8 = 0;
const BITS: u8 = 1;
/// Above this many members a bitset (8 KiB) is smaller than a list (2 bytes each).
const LIST_MAX: usize = 4096;

/// The chunk a dense number falls in, and its offset inside.
pub fn split(dense: u32) -> (u32, u16) {
    (dense >> 16, (dense & 0xFFFF) as u16)
}

/// Encodes a set of dense numbers (any order, duplicates allowed) as `(chunk, bytes)`,
/// chunks ascending.
pub fn encode(mut members: Vec<u32>) -> Vec<(u32, Vec<u8>)> {
    members.sort_unstable();
    members.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < members.len() {
        let chunk = members[i] >> 16;
        let start = i;
        while i < members.len() && members[i] >> 16 == chunk {
            i += 1;
        }
        let lows = members[start..i].iter().map(|m| (m & 0xFFFF) as u16);
        let bytes = if i - start <= LIST_MAX {
            let mut b = Vec::with_capacity(1 + 2 * (i - start));
            b.push(LIST);
            for l in lows {
                b.extend_from_slice(&l.to_le_bytes());
            }
            b
        } else {
            let mut b = vec![0u8; 1 + 8192];
            b[0] = BITS;
            for l in lows {
                b[1 + usize::from(l >> 3)] |= 1 << (l & 7);
            }
            b
        };
        out.push((chunk, bytes));
    }
    out
}

/// Whether an encoded chunk contains `low`. Malformed bytes contain nothing.
pub fn contains(bytes: &[u8], low: u16) -> bool {
    match bytes.split_first() {
        Some((&LIST, rest)) if rest.len() % 2 == 0 => rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>()
            .binary_search(&low)
            .is_ok(),
        Some((&BITS, rest)) if rest.len() == 8192 => {
            rest[usize::from(low >> 3)] & (1 << (low & 7)) != 0
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many members an encoded chunk holds.
    fn len(bytes: &[u8]) -> usize {
        match bytes.split_first() {
            Some((&LIST, rest)) => rest.len() / 2,
            Some((&BITS, rest)) => rest.iter().map(|b| b.count_ones() as usize).sum(),
            _ => 0,
        }
    }

    #[test]
    fn round_trips_sparse_and_dense_chunks() {
        let mut members: Vec<u32> = (0..10_000).map(|i| i * 3).collect(); // chunk 0: dense
        members.extend([70_000, 70_001, 200_000, 70_000]); // sparse chunks, a duplicate
        let enc = encode(members.clone());
        assert_eq!(enc.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(enc[0].1[0], BITS);
        assert_eq!(enc[1].1[0], LIST);
        assert_eq!(enc.iter().map(|c| len(&c.1)).sum::<usize>(), 10_003);
        let find = |d: u32| {
            let (c, l) = split(d);
            enc.iter().any(|(cc, b)| *cc == c && contains(b, l))
        };
        for m in &members {
            assert!(find(*m), "{m}");
        }
        for absent in [1, 2, 29_999, 70_002, 199_999, 1 << 30] {
            assert!(!find(absent), "{absent}");
        }
        assert!(!contains(&[], 0));
        assert!(!contains(&[LIST, 1], 0));
        assert!(!contains(&[BITS, 0xFF], 0));
    }
}
