//! Base64url (RFC 4648 §5 "websafe" alphabet) without padding characters.
//!
//! Consent strings never carry `=`; some CMPs nevertheless append it, so the
//! decoder accepts and ignores trailing `=` but nothing else outside the
//! alphabet. Input length need not be a multiple of 4: each character is just
//! six more bits.

use crate::error::{Error, Result};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const INVALID: u8 = 0xFF;

/// Reverse lookup, built at compile time so decoding is one load per character.
const DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Decodes `s` into `out` (cleared first) and returns the number of meaningful
/// bits, i.e. six per character; the last byte may be partially used.
///
/// `segment` only labels errors.
pub fn decode_into(s: &str, out: &mut Vec<u8>, segment: usize) -> Result<usize> {
    let trimmed = s.trim_end_matches('=');
    // More than two '=' is not padding any encoder produces.
    if s.len() - trimmed.len() > 2 {
        return Err(Error::InvalidCharacter {
            segment,
            position: trimmed.len() + 2,
            ch: '=',
        });
    }
    let input = trimmed.as_bytes();
    out.clear();
    out.reserve(input.len() * 3 / 4 + 1);
    let sextet = |i: usize| -> Result<u32> {
        let c = input[i];
        let v = DECODE[c as usize];
        if v == INVALID {
            return Err(invalid_char(trimmed, i, segment));
        }
        Ok(u32::from(v))
    };
    let full = input.len() / 4 * 4;
    let mut i = 0;
    while i < full {
        let n =
            (sextet(i)? << 18) | (sextet(i + 1)? << 12) | (sextet(i + 2)? << 6) | sextet(i + 3)?;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        i += 4;
    }
    let rest = input.len() - full;
    if rest > 0 {
        let mut n = 0u32;
        for k in 0..rest {
            n |= sextet(full + k)? << (18 - 6 * k as u32);
        }
        // 1..3 leftover characters carry 6..18 bits: 1..3 partial bytes.
        let bytes = (rest * 6).div_ceil(8);
        for k in 0..bytes {
            out.push((n >> (16 - 8 * k as u32)) as u8);
        }
    }
    Ok(input.len() * 6)
}

fn invalid_char(s: &str, byte_index: usize, segment: usize) -> Error {
    // Report the character (not the byte) so multi-byte UTF-8 reads sensibly.
    let ch = s
        .get(byte_index..)
        .and_then(|t| t.chars().next())
        .unwrap_or('\u{FFFD}');
    let position = s
        .get(..byte_index)
        .map_or(byte_index, |p| p.chars().count());
    Error::InvalidCharacter {
        segment,
        position,
        ch,
    }
}

/// Appends the unpadded base64url encoding of `bytes` to `out`.
///
/// With a byte count that is a multiple of 3 this is exactly the TCF
/// 24-bit-padded form; otherwise the final sextet is zero-filled, which is
/// GPP's "compressed" padding (whole bytes, then whole sextets).
pub fn encode_into(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut n = 0u32;
        for (k, b) in rest.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * k as u32);
        }
        let chars = (rest.len() * 8).div_ceil(6);
        for k in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * k as u32)) & 63) as usize] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_all_lengths() {
        for len in 0..10usize {
            let bytes: Vec<u8> = (0..len as u8)
                .map(|b| b.wrapping_mul(97).wrapping_add(13))
                .collect();
            let mut s = String::new();
            encode_into(&bytes, &mut s);
            let mut out = Vec::new();
            let bits = decode_into(&s, &mut out, 0).unwrap();
            assert_eq!(bits, s.len() * 6);
            assert_eq!(&out[..len], &bytes[..]);
            assert!(out[len..].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn known_values() {
        let mut s = String::new();
        encode_into(&[0xFB, 0xFF], &mut s);
        assert_eq!(s, "-_8");
        let mut out = Vec::new();
        decode_into("-_8", &mut out, 0).unwrap();
        assert_eq!(out, vec![0xFB, 0xFF, 0x00]);
    }

    #[test]
    fn padding_tolerated_but_not_elsewhere() {
        let mut out = Vec::new();
        assert_eq!(decode_into("QQ==", &mut out, 0).unwrap(), 12);
        assert!(matches!(
            decode_into("Q=Q", &mut out, 3),
            Err(Error::InvalidCharacter {
                segment: 3,
                position: 1,
                ch: '='
            })
        ));
        assert!(decode_into("QQ===", &mut out, 0).is_err());
    }

    #[test]
    fn rejects_standard_alphabet_and_unicode() {
        let mut out = Vec::new();
        assert!(matches!(
            decode_into("AB+C", &mut out, 0),
            Err(Error::InvalidCharacter {
                position: 2,
                ch: '+',
                ..
            })
        ));
        assert!(matches!(
            decode_into("Aé", &mut out, 0),
            Err(Error::InvalidCharacter {
                position: 1,
                ch: 'é',
                ..
            })
        ));
    }
}
