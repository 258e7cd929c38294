//! The publisher TC segment (segment type 3): the publisher's own purpose
//! consents and legitimate interests, plus up to 63 custom purposes.

use super::IdBits;
use crate::bits::{BitReader, BitWriter};
use crate::error::{Error, Result};

/// Contents of the publisher TC segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherTc {
    /// Publisher purpose consents 1..=24.
    pub consents: IdBits,
    /// Publisher purpose legitimate interests 1..=24.
    pub legitimate_interests: IdBits,
    /// Number of custom purposes (6 bits, 0..=63).
    pub num_custom_purposes: u8,
    /// Custom purpose consents 1..=`num_custom_purposes`.
    pub custom_consents: IdBits,
    /// Custom purpose legitimate interests 1..=`num_custom_purposes`.
    pub custom_legitimate_interests: IdBits,
}

/// Reads the segment body (after the 3-bit segment type).
pub(super) fn read(r: &mut BitReader<'_>) -> Result<PublisherTc> {
    let consents = IdBits::read(r, 24, "PubPurposesConsent")?;
    let legitimate_interests = IdBits::read(r, 24, "PubPurposesLITransparency")?;
    let n = r.read(6, "NumCustomPurposes")?;
    Ok(PublisherTc {
        consents,
        legitimate_interests,
        num_custom_purposes: n as u8,
        custom_consents: IdBits::read(r, n, "CustomPurposesConsent")?,
        custom_legitimate_interests: IdBits::read(r, n, "CustomPurposesLITransparency")?,
    })
}

/// Writes the segment body (after the 3-bit segment type).
pub(super) fn write(w: &mut BitWriter, p: &PublisherTc) -> Result<()> {
    p.consents.write(w, 24, "PubPurposesConsent")?;
    p.legitimate_interests
        .write(w, 24, "PubPurposesLITransparency")?;
    let n = p.num_custom_purposes;
    if n > 63 {
        return Err(Error::ValueOutOfRange {
            field: "NumCustomPurposes",
            value: n.into(),
            bits: 6,
        });
    }
    w.write(n.into(), 6);
    p.custom_consents
        .write(w, n.into(), "CustomPurposesConsent")?;
    p.custom_legitimate_interests
        .write(w, n.into(), "CustomPurposesLITransparency")
}
