//! The TC string's core segment: fixed-width header fields, the two vendor
//! vectors and the publisher restrictions.

use super::restrictions;
use super::vendors;
use super::{IdBits, LetterCode, TcModel, Timestamp, VERSION};
use crate::bits::{BitReader, BitWriter};
use crate::error::{Error, Result};
use crate::timestamp::MAX_DECISECONDS;

/// Reads the core segment (the reader is at its first bit).
pub(super) fn read(r: &mut BitReader<'_>) -> Result<TcModel> {
    let version = r.read(6, "Version")? as u8;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    Ok(TcModel {
        version,
        created: Timestamp::from_deciseconds(r.read_u64(36, "Created")?),
        last_updated: Timestamp::from_deciseconds(r.read_u64(36, "LastUpdated")?),
        cmp_id: r.read(12, "CmpId")? as u16,
        cmp_version: r.read(12, "CmpVersion")? as u16,
        consent_screen: r.read(6, "ConsentScreen")? as u8,
        consent_language: LetterCode::read(r, "ConsentLanguage")?,
        vendor_list_version: r.read(12, "VendorListVersion")? as u16,
        policy_version: r.read(6, "TcfPolicyVersion")? as u8,
        is_service_specific: r.read_bool("IsServiceSpecific")?,
        use_non_standard_texts: r.read_bool("UseNonStandardTexts")?,
        special_feature_optins: IdBits::read(r, 12, "SpecialFeatureOptIns")?,
        purpose_consents: IdBits::read(r, 24, "PurposesConsent")?,
        purpose_legitimate_interests: IdBits::read(r, 24, "PurposesLITransparency")?,
        purpose_one_treatment: r.read_bool("PurposeOneTreatment")?,
        publisher_country_code: LetterCode::read(r, "PublisherCC")?,
        vendor_consents: vendors::read_vector(r, "VendorConsents")?,
        vendor_legitimate_interests: vendors::read_vector(r, "VendorLegitimateInterests")?,
        publisher_restrictions: restrictions::read(r)?,
        vendors_disclosed: None,
        publisher_tc: None,
    })
}

/// Writes the core segment.
pub(super) fn write(w: &mut BitWriter, m: &TcModel) -> Result<()> {
    if m.version != VERSION {
        return Err(Error::UnsupportedVersion(m.version));
    }
    w.write(u32::from(VERSION), 6);
    write_time(w, m.created, "Created")?;
    write_time(w, m.last_updated, "LastUpdated")?;
    write_int(w, m.cmp_id.into(), 12, "CmpId")?;
    write_int(w, m.cmp_version.into(), 12, "CmpVersion")?;
    write_int(w, m.consent_screen.into(), 6, "ConsentScreen")?;
    m.consent_language.write(w);
    write_int(w, m.vendor_list_version.into(), 12, "VendorListVersion")?;
    write_int(w, m.policy_version.into(), 6, "TcfPolicyVersion")?;
    w.write_bool(m.is_service_specific);
    w.write_bool(m.use_non_standard_texts);
    m.special_feature_optins
        .write(w, 12, "SpecialFeatureOptIns")?;
    m.purpose_consents.write(w, 24, "PurposesConsent")?;
    m.purpose_legitimate_interests
        .write(w, 24, "PurposesLITransparency")?;
    w.write_bool(m.purpose_one_treatment);
    m.publisher_country_code.write(w);
    vendors::write_vector(w, &m.vendor_consents, "VendorConsents")?;
    vendors::write_vector(
        w,
        &m.vendor_legitimate_interests,
        "VendorLegitimateInterests",
    )?;
    restrictions::write(w, &m.publisher_restrictions)
}

/// Writes `value` in `bits` bits, refusing values that would be truncated.
pub(super) fn write_int(
    w: &mut BitWriter,
    value: u32,
    bits: u32,
    field: &'static str,
) -> Result<()> {
    if bits < 32 && value >> bits != 0 {
        return Err(Error::ValueOutOfRange {
            field,
            value: value.into(),
            bits,
        });
    }
    w.write(value, bits);
    Ok(())
}

fn write_time(w: &mut BitWriter, t: Timestamp, field: &'static str) -> Result<()> {
    let ds = t.deciseconds();
    if ds > MAX_DECISECONDS {
        return Err(Error::ValueOutOfRange {
            field,
            value: ds,
            bits: 36,
        });
    }
    w.write_u64(ds, 36);
    Ok(())
}
