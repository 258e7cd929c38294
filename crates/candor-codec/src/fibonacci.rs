//! Fibonacci (Zeckendorf) integer codes and the GPP "Fibonacci integer range".
//!
//! GPP uses them in the header's section-id list. A code lists which Fibonacci
//! numbers (1, 2, 3, 5, 8, …) sum to the value, smallest first, and ends with
//! an extra `1`, so every code ends in `11` and no other `11` occurs in it.

use crate::bits::{BitReader, BitWriter};
use crate::error::{Error, Result};

/// Fibonacci numbers F(2).. as used by the code (1, 2, 3, 5, …), enough for u32.
const FIB: [u32; 46] = {
    let mut f = [0u32; 46];
    f[0] = 1;
    f[1] = 2;
    let mut i = 2;
    while i < 46 {
        f[i] = f[i - 1] + f[i - 2];
        i += 1;
    }
    f
};

/// Longest code we accept: 24 value bits reach 121392, more than any u16 id.
/// Bounding it keeps a run of zeros from being read as a giant number.
const MAX_CODE_BITS: usize = 25;

/// Writes `value >= 1` as a Fibonacci code.
pub fn write(w: &mut BitWriter, value: u32) {
    debug_assert!(value >= 1);
    // Greedy from the top gives the Zeckendorf representation.
    let mut top = 0;
    while top + 1 < FIB.len() && FIB[top + 1] <= value {
        top += 1;
    }
    let mut bits = 0u64;
    let mut rest = value;
    let mut i = top + 1;
    while i > 0 {
        i -= 1;
        if FIB[i] <= rest {
            rest -= FIB[i];
            bits |= 1 << i;
        }
    }
    for i in 0..=top {
        w.write_bool(bits >> i & 1 == 1);
    }
    w.write_bool(true);
}

/// Reads one Fibonacci code.
pub fn read(r: &mut BitReader<'_>, field: &'static str) -> Result<u32> {
    let offset = r.position();
    let mut value = 0u32;
    let mut prev = false;
    for fib in FIB.iter().take(MAX_CODE_BITS) {
        let bit = r.read_bool(field)?;
        if bit && prev {
            return Ok(value);
        }
        if bit {
            value += fib;
        }
        prev = bit;
    }
    Err(Error::Fibonacci { field, offset })
}

/// Reads a GPP Fibonacci integer range: a 12-bit group count, then groups that
/// are either one id or a start/end pair, every number a Fibonacci-coded
/// delta from the previous one.
///
/// `limit` caps how many ids the range may expand to, so a short header cannot
/// claim millions of ids.
pub fn read_range(
    r: &mut BitReader<'_>,
    field: &'static str,
    limit: usize,
    out: &mut Vec<u16>,
) -> Result<()> {
    let groups = r.read(12, field)?;
    let mut offset = 0u32;
    for _ in 0..groups {
        let at = r.position();
        let is_range = r.read_bool(field)?;
        let start = offset + read(r, field)?;
        let end = if is_range {
            start + read(r, field)?
        } else {
            start
        };
        offset = end;
        if end > u32::from(u16::MAX) {
            return Err(Error::IdOutOfRange {
                field,
                offset: at,
                id: end,
                max: u32::from(u16::MAX),
            });
        }
        let count = (end - start + 1) as usize;
        if out.len() + count > limit {
            return Err(Error::SectionCountMismatch {
                listed: out.len() + count,
                found: limit,
            });
        }
        out.extend((start..=end).map(|id| id as u16));
    }
    Ok(())
}

/// Writes strictly ascending ids as a Fibonacci integer range.
pub fn write_range(w: &mut BitWriter, ids: &[u16]) {
    let mut groups: Vec<(u16, u16)> = Vec::new();
    for &id in ids {
        match groups.last_mut() {
            Some((_, end)) if u32::from(*end) + 1 == u32::from(id) => *end = id,
            _ => groups.push((id, id)),
        }
    }
    w.write(groups.len() as u32, 12);
    let mut offset = 0u32;
    for (start, end) in groups {
        let (start, end) = (u32::from(start), u32::from(end));
        w.write_bool(start != end);
        write(w, start - offset);
        if start != end {
            write(w, end - start);
        }
        offset = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits_of(value: u32) -> String {
        let mut w = BitWriter::default();
        write(&mut w, value);
        let n = w.bit_len();
        let bytes = w.finish(8);
        let mut r = BitReader::new(&bytes, n);
        (0..n)
            .map(|_| if r.read_bool("t").unwrap() { '1' } else { '0' })
            .collect()
    }

    #[test]
    fn known_codes() {
        // From the GPP spec's table of Fibonacci codes.
        assert_eq!(bits_of(1), "11");
        assert_eq!(bits_of(2), "011");
        assert_eq!(bits_of(3), "0011");
        assert_eq!(bits_of(4), "1011");
        assert_eq!(bits_of(5), "00011");
        assert_eq!(bits_of(6), "10011");
        assert_eq!(bits_of(7), "01011");
        assert_eq!(bits_of(12), "101011");
    }

    #[test]
    fn roundtrip_values() {
        for v in (1..2000).chain([65535, 75024]) {
            let mut w = BitWriter::default();
            write(&mut w, v);
            let n = w.bit_len();
            let bytes = w.finish(8);
            let mut r = BitReader::new(&bytes, n);
            assert_eq!(read(&mut r, "t").unwrap(), v);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn endless_code_is_an_error() {
        let bytes = [0u8; 8];
        let mut r = BitReader::new(&bytes, 64);
        assert!(matches!(read(&mut r, "t"), Err(Error::Fibonacci { .. })));
    }

    #[test]
    fn range_roundtrip_and_limit() {
        let ids = [2u16, 6, 7, 8, 12];
        let mut w = BitWriter::default();
        write_range(&mut w, &ids);
        let n = w.bit_len();
        let bytes = w.finish(8);
        let mut out = Vec::new();
        read_range(&mut BitReader::new(&bytes, n), "t", 10, &mut out).unwrap();
        assert_eq!(out, ids);
        let mut out = Vec::new();
        assert!(read_range(&mut BitReader::new(&bytes, n), "t", 3, &mut out).is_err());
    }
}
