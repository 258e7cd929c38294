//! Publisher restrictions: per purpose, a restriction type and the vendors it
//! applies to, always range-encoded.

use super::vendors::{self, VendorSet};
use crate::bits::{BitReader, BitWriter};
use crate::error::{Error, Result};

const FIELD: &str = "PublisherRestrictions";

/// How a publisher restricts a purpose for some vendors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RestrictionType {
    /// 0: the purpose is not allowed for these vendors.
    NotAllowed,
    /// 1: these vendors need consent for the purpose.
    RequireConsent,
    /// 2: these vendors need legitimate interest for the purpose.
    RequireLegitimateInterest,
    /// 3: reserved by the specification; kept so such strings round-trip.
    Undefined,
}

impl RestrictionType {
    /// The 2-bit wire value.
    pub fn code(self) -> u8 {
        match self {
            Self::NotAllowed => 0,
            Self::RequireConsent => 1,
            Self::RequireLegitimateInterest => 2,
            Self::Undefined => 3,
        }
    }

    /// From the 2-bit wire value (only the low two bits are looked at).
    pub fn from_code(code: u8) -> Self {
        match code & 3 {
            0 => Self::NotAllowed,
            1 => Self::RequireConsent,
            2 => Self::RequireLegitimateInterest,
            _ => Self::Undefined,
        }
    }
}

/// One publisher restriction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherRestriction {
    /// Purpose id (6 bits on the wire).
    pub purpose_id: u8,
    /// The restriction.
    pub restriction_type: RestrictionType,
    /// Vendors it applies to.
    pub vendors: VendorSet,
}

pub(super) fn read(r: &mut BitReader<'_>) -> Result<Vec<PublisherRestriction>> {
    let count = r.read(12, FIELD)?;
    let mut out: Vec<PublisherRestriction> = Vec::new();
    for _ in 0..count {
        let purpose_id = r.read(6, FIELD)? as u8;
        let restriction_type = RestrictionType::from_code(r.read(2, FIELD)? as u8);
        let entries = r.read(12, FIELD)?;
        let mut set = VendorSet::new();
        for _ in 0..entries {
            let (s, e) = vendors::read_range_entry(r, FIELD)?;
            set.insert_range(s, e);
        }
        // At most 64 * 4 distinct keys exist, so merging bounds memory even
        // when a string repeats one restriction thousands of times.
        match out
            .iter_mut()
            .find(|p| p.purpose_id == purpose_id && p.restriction_type == restriction_type)
        {
            Some(p) => p.vendors.extend(set.iter()),
            None => out.push(PublisherRestriction {
                purpose_id,
                restriction_type,
                vendors: set,
            }),
        }
    }
    Ok(out)
}

pub(super) fn write(w: &mut BitWriter, list: &[PublisherRestriction]) -> Result<()> {
    let mut seen = [false; 256];
    for p in list {
        if p.purpose_id > 63 {
            return Err(Error::ValueOutOfRange {
                field: "PublisherRestrictions.PurposeId",
                value: p.purpose_id.into(),
                bits: 6,
            });
        }
        let key = usize::from(p.purpose_id) << 2 | usize::from(p.restriction_type.code());
        if std::mem::replace(&mut seen[key], true) {
            return Err(Error::DuplicateRestriction {
                purpose_id: p.purpose_id,
                restriction_type: p.restriction_type.code(),
            });
        }
    }
    w.write(list.len() as u32, 12);
    for p in list {
        w.write(p.purpose_id.into(), 6);
        w.write(p.restriction_type.code().into(), 2);
        vendors::write_ranges(w, &p.vendors, FIELD)?;
    }
    Ok(())
}
