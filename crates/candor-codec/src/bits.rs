//! Big-endian bit reader and writer over byte buffers.
//!
//! Consent strings are MSB-first bit streams. Both the IAB libraries build them
//! as strings of '0'/'1' characters; we read whole machine words instead, which
//! is where most of the speed over the reference implementations comes from.

use crate::error::{Error, Result};

/// Reads MSB-first fields from a byte slice with a bit cursor.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    len: usize,
}

impl<'a> BitReader<'a> {
    /// A reader over the first `len_bits` bits of `data`.
    ///
    /// `len_bits` may be shorter than `data` (base64 gives 6 bits per
    /// character, so the last byte is often partial); it is clamped to the
    /// slice so a wrong caller can never read out of bounds.
    pub fn new(data: &'a [u8], len_bits: usize) -> Self {
        let len = len_bits.min(data.len().saturating_mul(8));
        Self { data, pos: 0, len }
    }

    /// Current bit offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bits left to read.
    pub fn remaining(&self) -> usize {
        self.len - self.pos
    }

    /// Fails with [`Error::Truncated`] unless `n` more bits are available.
    ///
    /// Callers use this before allocating for a length read from the input,
    /// so a claimed-but-absent bitfield never costs memory.
    pub fn ensure(&self, n: usize, field: &'static str) -> Result<()> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        Ok(())
    }

    /// Reads an `n`-bit unsigned integer, `n <= 32`.
    #[inline]
    pub fn read(&mut self, n: u32, field: &'static str) -> Result<u32> {
        debug_assert!(n <= 32);
        self.ensure(n as usize, field)?;
        let v = self.peek_unchecked(n);
        self.pos += n as usize;
        Ok(v)
    }

    /// Reads one bit as a boolean.
    #[inline]
    pub fn read_bool(&mut self, field: &'static str) -> Result<bool> {
        Ok(self.read(1, field)? == 1)
    }

    /// Reads `n <= 64` bits into the low bits of a `u64`.
    pub fn read_u64(&mut self, n: u32, field: &'static str) -> Result<u64> {
        debug_assert!(n <= 64);
        if n > 32 {
            let hi = u64::from(self.read(n - 32, field)?);
            let lo = u64::from(self.read(32, field)?);
            Ok((hi << 32) | lo)
        } else {
            Ok(u64::from(self.read(n, field)?))
        }
    }

    /// The next `n <= 32` bits; the caller has checked they exist.
    #[inline]
    fn peek_unchecked(&self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let byte = self.pos / 8;
        let shift = (self.pos % 8) as u32;
        // Fast path: one unaligned 8-byte load covers any 32-bit field.
        let word = if let Some(chunk) = self.data.get(byte..byte + 8) {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(chunk);
            u64::from_be_bytes(buf)
        } else {
            let mut buf = [0u8; 8];
            let tail = self.data.get(byte..).unwrap_or(&[]);
            let k = tail.len().min(8);
            buf[..k].copy_from_slice(&tail[..k]);
            u64::from_be_bytes(buf)
        };
        ((word << shift) >> (64 - n)) as u32
    }
}

/// Accumulates MSB-first fields into bytes.
#[derive(Debug, Default, Clone)]
pub struct BitWriter {
    buf: Vec<u8>,
    acc: u64,
    nacc: u32,
}

impl BitWriter {
    /// An empty writer with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            acc: 0,
            nacc: 0,
        }
    }

    /// Number of bits written so far.
    #[cfg(test)]
    pub fn bit_len(&self) -> usize {
        self.buf.len() * 8 + self.nacc as usize
    }

    /// Appends the low `n <= 32` bits of `value`; higher bits must be zero.
    #[inline]
    pub fn write(&mut self, value: u32, n: u32) {
        debug_assert!(n <= 32);
        debug_assert!(n == 32 || value >> n == 0);
        if n == 0 {
            return;
        }
        // At most 7 bits are pending, so 7 + 32 always fits in the u64.
        self.acc = (self.acc << n) | u64::from(value);
        self.nacc += n;
        while self.nacc >= 8 {
            self.nacc -= 8;
            self.buf.push((self.acc >> self.nacc) as u8);
        }
        self.acc &= (1u64 << self.nacc) - 1;
    }

    /// Appends one bit.
    #[inline]
    pub fn write_bool(&mut self, b: bool) {
        self.write(u32::from(b), 1);
    }

    /// Appends the low `n <= 64` bits of `value`.
    pub fn write_u64(&mut self, value: u64, n: u32) {
        if n > 32 {
            self.write((value >> 32) as u32, n - 32);
            self.write(value as u32, 32);
        } else {
            self.write(value as u32, n);
        }
    }

    /// Zero-pads to a multiple of `multiple` bits and returns the bytes.
    ///
    /// `multiple` must be a multiple of 8 (TCF uses 24; GPP's "compressed"
    /// sections pad to whole bytes and let base64 add the last partial sextet).
    pub fn finish(mut self, multiple: usize) -> Vec<u8> {
        debug_assert!(multiple % 8 == 0 && multiple > 0);
        if self.nacc > 0 {
            let pad = 8 - self.nacc;
            self.write(0, pad);
        }
        let bytes = multiple / 8;
        while self.buf.len() % bytes != 0 {
            self.buf.push(0);
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let mut w = BitWriter::default();
        w.write(0b101, 3);
        w.write(0xABCDE, 20);
        w.write_bool(true);
        w.write_u64(0x1_2345_6789, 36);
        w.write(u32::MAX, 32);
        let bits = w.bit_len();
        assert_eq!(bits, 3 + 20 + 1 + 36 + 32);
        let bytes = w.finish(24);
        assert_eq!(bytes.len() % 3, 0);
        let mut r = BitReader::new(&bytes, bits);
        assert_eq!(r.read(3, "a").unwrap(), 0b101);
        assert_eq!(r.read(20, "b").unwrap(), 0xABCDE);
        assert!(r.read_bool("c").unwrap());
        assert_eq!(r.read_u64(36, "d").unwrap(), 0x1_2345_6789);
        assert_eq!(r.read(32, "e").unwrap(), u32::MAX);
        assert!(matches!(
            r.read(1, "f"),
            Err(Error::Truncated { field: "f", .. })
        ));
    }

    #[test]
    fn reader_clamps_length_to_data() {
        let r = BitReader::new(&[0xFF], 100);
        assert_eq!(r.remaining(), 8);
    }
}
