//! IAB TCF v2 (2.2/2.3) TC strings: the model, and decoding/encoding of the
//! whole dotted string.
//!
//! A TC string is base64url segments joined by `.`: the core segment first,
//! then optional segments tagged by a 3-bit type: 1 disclosed vendors,
//! 2 allowed vendors, 3 publisher TC.
//!
//! Choices made here, all to keep `encode(decode(s)) == s` for what the IAB
//! reference encoder produces:
//! - Segments are written in the order core, disclosed vendors, publisher TC,
//!   which is what `@iabtechlabtcf/core` 1.5 emits; a segment is written iff
//!   the model has it (`Some`), so a decoded string keeps its segment set.
//! - The allowed-vendors segment (type 2) was deprecated in TCF 2.2. It is
//!   decoded (so a malformed one is still an error) and then dropped; the
//!   encoder never writes it.
//! - Duplicate publisher restrictions (same purpose and type) are merged on
//!   decode, as the reference does, and refused on encode.
//!
//! Policy checks (the `policy` module, [`PolicyViolation`]) produce warnings
//! on decode and errors on encode.

mod core;
mod policy;
mod publisher;
mod restrictions;
mod vendors;

use ::core::fmt;
use ::core::str::FromStr;

pub use self::policy::{PolicyViolation, MIN_POLICY_VERSION, NO_LEGITIMATE_INTEREST_PURPOSES};
pub use self::publisher::PublisherTc;
pub use self::restrictions::{PublisherRestriction, RestrictionType};
pub use self::vendors::{Iter as VendorIter, Runs as VendorRuns, VendorSet};
pub use crate::timestamp::Timestamp;

#[cfg(feature = "json")]
pub use crate::json::tcf::{from_json, model_to_json, to_json};

use crate::base64url;
use crate::bits::{BitReader, BitWriter};
use crate::error::{Error, Result};

/// The only TC string version this crate reads and writes.
pub const VERSION: u8 = 2;

/// Segment type of the disclosed-vendors segment.
pub const SEGMENT_DISCLOSED_VENDORS: u8 = 1;
/// Segment type of the (deprecated) allowed-vendors segment.
pub const SEGMENT_ALLOWED_VENDORS: u8 = 2;
/// Segment type of the publisher TC segment.
pub const SEGMENT_PUBLISHER_TC: u8 = 3;

/// Everything a TC string carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcModel {
    /// Encoding version; always [`VERSION`] for decoded strings.
    pub version: u8,
    /// When the consent was first recorded.
    pub created: Timestamp,
    /// When the consent was last changed.
    pub last_updated: Timestamp,
    /// CMP id (12 bits).
    pub cmp_id: u16,
    /// CMP version (12 bits).
    pub cmp_version: u16,
    /// Screen number in the CMP where consent was given (6 bits).
    pub consent_screen: u8,
    /// Language of the consent UI.
    pub consent_language: LetterCode,
    /// Global Vendor List version (12 bits).
    pub vendor_list_version: u16,
    /// TCF policy version (6 bits); 4 and up is TCF 2.2.
    pub policy_version: u8,
    /// Whether the string applies only to the service that created it.
    pub is_service_specific: bool,
    /// Whether the CMP used non-standard texts (2.2 name of "non-standard stacks").
    pub use_non_standard_texts: bool,
    /// Special feature opt-ins 1..=12.
    pub special_feature_optins: IdBits,
    /// Purpose consents 1..=24.
    pub purpose_consents: IdBits,
    /// Purpose legitimate-interest transparency 1..=24.
    pub purpose_legitimate_interests: IdBits,
    /// Purpose 1 was not disclosed (publisher country rules).
    pub purpose_one_treatment: bool,
    /// Country of the publisher.
    pub publisher_country_code: LetterCode,
    /// Vendors with consent.
    pub vendor_consents: VendorSet,
    /// Vendors with legitimate interest established.
    pub vendor_legitimate_interests: VendorSet,
    /// Publisher restrictions, in string order.
    pub publisher_restrictions: Vec<PublisherRestriction>,
    /// Disclosed-vendors segment, if present.
    pub vendors_disclosed: Option<VendorSet>,
    /// Publisher TC segment, if present.
    pub publisher_tc: Option<PublisherTc>,
}

impl Default for TcModel {
    fn default() -> Self {
        Self {
            version: VERSION,
            created: Timestamp::default(),
            last_updated: Timestamp::default(),
            cmp_id: 0,
            cmp_version: 0,
            consent_screen: 0,
            consent_language: LetterCode::EN,
            vendor_list_version: 0,
            policy_version: MIN_POLICY_VERSION,
            is_service_specific: false,
            use_non_standard_texts: false,
            special_feature_optins: IdBits::default(),
            purpose_consents: IdBits::default(),
            purpose_legitimate_interests: IdBits::default(),
            purpose_one_treatment: false,
            publisher_country_code: LetterCode::AA,
            vendor_consents: VendorSet::default(),
            vendor_legitimate_interests: VendorSet::default(),
            publisher_restrictions: Vec::new(),
            vendors_disclosed: None,
            publisher_tc: None,
        }
    }
}

impl TcModel {
    /// Encodes with policy enforcement; see [`encode`].
    pub fn encode(&self) -> Result<String> {
        encode(self)
    }

    /// TCF v2.2 policy problems with this model (empty when compliant).
    pub fn policy_violations(&self) -> Vec<PolicyViolation> {
        policy::check(self)
    }
}

/// A decoded TC string: the model plus any policy warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcString {
    /// The decoded fields.
    pub model: TcModel,
    /// TCF v2.2 policy problems found; decoding still succeeded.
    pub warnings: Vec<PolicyViolation>,
}

impl TcString {
    /// Same as [`decode`].
    pub fn parse(s: &str) -> Result<Self> {
        decode(s)
    }

    /// Re-encodes the model (policy enforced).
    pub fn encode(&self) -> Result<String> {
        encode(&self.model)
    }
}

impl FromStr for TcString {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        decode(s)
    }
}

/// Decodes a TC string. Policy problems become [`TcString::warnings`].
pub fn decode(s: &str) -> Result<TcString> {
    let model = decode_model(s)?;
    let warnings = policy::check(&model);
    Ok(TcString { model, warnings })
}

/// Encodes `model`, refusing it if it breaks the TCF v2.2 policy.
pub fn encode(model: &TcModel) -> Result<String> {
    if let Some(v) = policy::check(model).into_iter().next() {
        return Err(Error::Policy(v));
    }
    encode_unchecked(model)
}

/// Encodes `model` without the policy check (field widths are still checked);
/// for reproducing pre-2.2 strings in tests and tools.
pub fn encode_unchecked(model: &TcModel) -> Result<String> {
    let mut out = String::new();
    encode_into(model, &mut out)?;
    Ok(out)
}

/// Decodes the dotted TC string into a model (shared with GPP's `tcfeuv2`).
pub(crate) fn decode_model(s: &str) -> Result<TcModel> {
    crate::check_input(s)?;
    let mut buf = Vec::new();
    let mut model = None;
    let mut seen = [false; 4];
    for (i, seg) in s.split('.').enumerate() {
        if seg.is_empty() {
            return Err(Error::EmptySegment { segment: i });
        }
        let bits = base64url::decode_into(seg, &mut buf, i)?;
        let mut r = BitReader::new(&buf, bits);
        let Some(m) = model.as_mut() else {
            model = Some(self::core::read(&mut r)?);
            continue;
        };
        let segment_type = r.read(3, "SegmentType")? as u8;
        if let Some(flag) = seen.get_mut(usize::from(segment_type)) {
            if *flag {
                return Err(Error::DuplicateSegment {
                    segment: i,
                    segment_type,
                });
            }
            *flag = true;
        }
        match segment_type {
            SEGMENT_DISCLOSED_VENDORS => {
                m.vendors_disclosed = Some(vendors::read_vector(&mut r, "DisclosedVendors")?);
            }
            SEGMENT_ALLOWED_VENDORS => {
                vendors::read_vector(&mut r, "AllowedVendors")?;
            }
            SEGMENT_PUBLISHER_TC => m.publisher_tc = Some(publisher::read(&mut r)?),
            _ => {
                return Err(Error::UnknownSegmentType {
                    segment: i,
                    segment_type,
                })
            }
        }
    }
    model.ok_or(Error::Empty)
}

/// Appends the encoded string to `out` (shared with GPP's `tcfeuv2`).
pub(crate) fn encode_into(m: &TcModel, out: &mut String) -> Result<()> {
    // A core segment with a full 65535-vendor bitfield is ~16 KiB.
    let mut w = BitWriter::with_capacity(256);
    self::core::write(&mut w, m)?;
    base64url::encode_into(&w.finish(24), out);
    if let Some(dv) = &m.vendors_disclosed {
        let mut w = BitWriter::with_capacity(64);
        w.write(u32::from(SEGMENT_DISCLOSED_VENDORS), 3);
        vendors::write_vector(&mut w, dv, "DisclosedVendors")?;
        out.push('.');
        base64url::encode_into(&w.finish(24), out);
    }
    if let Some(p) = &m.publisher_tc {
        let mut w = BitWriter::with_capacity(16);
        w.write(u32::from(SEGMENT_PUBLISHER_TC), 3);
        publisher::write(&mut w, p)?;
        out.push('.');
        base64url::encode_into(&w.finish(24), out);
    }
    Ok(())
}

/// A small set of ids 1..=64 stored as a bit mask (purposes, special
/// features, custom purposes).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct IdBits(pub u64);

impl IdBits {
    /// Whether `id` is set.
    pub fn contains(self, id: u8) -> bool {
        (1..=64).contains(&id) && self.0 >> (id - 1) & 1 == 1
    }

    /// Sets `id`; ids outside 1..=64 are refused (returns `false`).
    pub fn insert(&mut self, id: u8) -> bool {
        if !(1..=64).contains(&id) {
            return false;
        }
        self.0 |= 1 << (id - 1);
        true
    }

    /// Clears `id`.
    pub fn remove(&mut self, id: u8) {
        if (1..=64).contains(&id) {
            self.0 &= !(1 << (id - 1));
        }
    }

    /// Whether no id is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Set ids, ascending.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        let mut bits = self.0;
        ::core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let tz = bits.trailing_zeros();
            bits &= bits - 1;
            Some(tz as u8 + 1)
        })
    }

    /// Reads a `width`-bit field whose first bit is id 1.
    pub(crate) fn read(r: &mut BitReader<'_>, width: u32, field: &'static str) -> Result<Self> {
        if width == 0 {
            return Ok(Self(0));
        }
        let v = r.read_u64(width, field)?;
        Ok(Self((v << (64 - width)).reverse_bits()))
    }

    /// Writes as a `width`-bit field; ids above `width` are an error.
    pub(crate) fn write(self, w: &mut BitWriter, width: u32, field: &'static str) -> Result<()> {
        if width < 64 && self.0 >> width != 0 {
            return Err(Error::IdOutOfRange {
                field,
                offset: 0,
                id: 64 - self.0.leading_zeros(),
                max: width,
            });
        }
        if width > 0 {
            w.write_u64(self.0.reverse_bits() >> (64 - width), width);
        }
        Ok(())
    }
}

impl fmt::Debug for IdBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<u8> for IdBits {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
        let mut b = Self::default();
        for id in iter {
            b.insert(id);
        }
        b
    }
}

/// Two upper-case ASCII letters (ISO 639-1 language or ISO 3166 country),
/// stored on the wire as two 6-bit offsets from `A`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LetterCode([u8; 2]);

impl LetterCode {
    /// English, the reference encoder's default language.
    pub const EN: Self = Self(*b"EN");
    /// The reference encoder's default publisher country.
    pub const AA: Self = Self(*b"AA");

    /// Accepts exactly two ASCII letters; lower case is upper-cased.
    pub fn new(s: &str) -> Option<Self> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The two letters.
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII letters.
        ::core::str::from_utf8(&self.0).unwrap_or("??")
    }

    pub(crate) fn read(r: &mut BitReader<'_>, field: &'static str) -> Result<Self> {
        let mut out = [0u8; 2];
        for c in &mut out {
            let offset = r.position();
            let v = r.read(6, field)?;
            if v > 25 {
                return Err(Error::InvalidLetter {
                    field,
                    offset,
                    value: v,
                });
            }
            *c = b'A' + v as u8;
        }
        Ok(Self(out))
    }

    pub(crate) fn write(self, w: &mut BitWriter) {
        for c in self.0 {
            w.write(u32::from(c - b'A'), 6);
        }
    }
}

impl fmt::Debug for LetterCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for LetterCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_bits_roundtrip() {
        let b: IdBits = [1u8, 2, 24].into_iter().collect();
        let mut w = BitWriter::default();
        b.write(&mut w, 24, "t").unwrap();
        let bytes = w.finish(24);
        assert_eq!(bytes, vec![0b1100_0000, 0, 1]);
        let back = IdBits::read(&mut BitReader::new(&bytes, 24), 24, "t").unwrap();
        assert_eq!(back, b);
        assert!(b.write(&mut BitWriter::default(), 12, "t").is_err());
    }

    #[test]
    fn letter_codes() {
        assert_eq!(
            LetterCode::new("fr").map(|l| l.to_string()),
            Some("FR".into())
        );
        assert_eq!(LetterCode::new("F1"), None);
        assert_eq!(LetterCode::new("FRA"), None);
    }
}
