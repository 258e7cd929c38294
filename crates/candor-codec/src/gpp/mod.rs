//! IAB Global Privacy Platform strings: `HEADER~SECTION~SECTION…`.
//!
//! The header lists the section ids in the order the sections follow. Known
//! sections are decoded (`tcfeuv2`, `uspv1`, and the table-driven US sections
//! in [`section`]); any other id is kept verbatim as
//! [`Section::Unsupported`], so one unknown section does not make a whole
//! string unreadable and re-encoding preserves it.
//!
//! The encoder writes sections in ascending id order (the header's Fibonacci
//! range can only list ascending ids), which is also what the reference does.

mod header;
pub mod section;
mod tcfeuv2;
pub mod usnat;
mod uspv1;

use core::str::FromStr;

pub use self::header::{GPP_VERSION, HEADER_TYPE};
pub use self::section::{
    us_section_spec, us_section_spec_by_name, FieldKind, FieldSpec, UsSection, UsSectionSpec,
    VersionLayout, US_SECTIONS,
};
pub use self::tcfeuv2::{ID as TCFEUV2_ID, NAME as TCFEUV2_NAME};
pub use self::uspv1::{ID as USPV1_ID, NAME as USPV1_NAME};

#[cfg(feature = "json")]
pub use crate::json::gpp::{from_json, to_json};

use crate::error::{Error, Result};
use crate::tcf::{PolicyViolation, TcModel};
use crate::usp::UsPrivacy;

/// One section of a GPP string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    /// Id 2: TCF EU v2.
    TcfEuV2(TcModel),
    /// Id 6: US Privacy.
    UspV1(UsPrivacy),
    /// A table-driven US section (id 7 `usnat`, and state sections).
    Us(UsSection),
    /// A section this crate does not decode, kept as found.
    Unsupported {
        /// Section id.
        id: u16,
        /// The section's encoded text.
        encoded: String,
    },
}

impl Section {
    /// The GPP section id.
    pub fn id(&self) -> u16 {
        match self {
            Self::TcfEuV2(_) => tcfeuv2::ID,
            Self::UspV1(_) => uspv1::ID,
            Self::Us(s) => s.id(),
            Self::Unsupported { id, .. } => *id,
        }
    }

    /// The section's API name, when this crate knows it.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Self::TcfEuV2(_) => Some(tcfeuv2::NAME),
            Self::UspV1(_) => Some(uspv1::NAME),
            Self::Us(s) => Some(s.name()),
            Self::Unsupported { .. } => None,
        }
    }
}

/// A GPP string's sections, plus policy warnings from its TCF section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GppString {
    /// Sections in string order (ascending id after decoding).
    pub sections: Vec<Section>,
    /// TCF v2.2 policy problems in the `tcfeuv2` section; ignored by the encoder,
    /// which re-checks and refuses instead.
    pub warnings: Vec<PolicyViolation>,
}

impl GppString {
    /// Same as [`decode`].
    pub fn parse(s: &str) -> Result<Self> {
        decode(s)
    }

    /// Section ids in order.
    pub fn section_ids(&self) -> Vec<u16> {
        self.sections.iter().map(Section::id).collect()
    }

    /// The section with `id`.
    pub fn section(&self, id: u16) -> Option<&Section> {
        self.sections.iter().find(|s| s.id() == id)
    }

    /// The `tcfeuv2` section's model.
    pub fn tcf_eu_v2(&self) -> Option<&TcModel> {
        self.sections.iter().find_map(|s| match s {
            Section::TcfEuV2(m) => Some(m),
            _ => None,
        })
    }

    /// The `uspv1` section.
    pub fn usp_v1(&self) -> Option<&UsPrivacy> {
        self.sections.iter().find_map(|s| match s {
            Section::UspV1(u) => Some(u),
            _ => None,
        })
    }

    /// The table-driven US section named `name` (e.g. `"usnat"`).
    pub fn us_section(&self, name: &str) -> Option<&UsSection> {
        self.sections.iter().find_map(|s| match s {
            Section::Us(u) if u.name() == name => Some(u),
            _ => None,
        })
    }

    /// Encodes; see [`encode`].
    pub fn encode(&self) -> Result<String> {
        encode(self)
    }
}

impl FromStr for GppString {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        decode(s)
    }
}

/// Decodes a GPP string.
pub fn decode(s: &str) -> Result<GppString> {
    crate::check_input(s)?;
    let mut split = s.split('~');
    let head = split.next().unwrap_or_default();
    let parts: Vec<&str> = split.collect();
    let mut buf = Vec::new();
    let ids = header::decode(head, parts.len(), &mut buf)?;
    if ids.len() != parts.len() {
        return Err(Error::SectionCountMismatch {
            listed: ids.len(),
            found: parts.len(),
        });
    }
    let mut sections = Vec::with_capacity(ids.len());
    let mut warnings = Vec::new();
    for (i, (&id, &part)) in ids.iter().zip(&parts).enumerate() {
        if part.is_empty() {
            return Err(Error::EmptySegment { segment: i + 1 });
        }
        let section = match id {
            tcfeuv2::ID => {
                let m = tcfeuv2::decode(part)?;
                warnings.extend(m.policy_violations());
                Section::TcfEuV2(m)
            }
            uspv1::ID => Section::UspV1(uspv1::decode(part)?),
            _ => match section::us_section_spec(id) {
                Some(spec) => Section::Us(section::decode(spec, part, &mut buf)?),
                None => Section::Unsupported {
                    id,
                    encoded: part.to_owned(),
                },
            },
        };
        sections.push(section);
    }
    Ok(GppString { sections, warnings })
}

/// Encodes a GPP string, sections sorted by id. A `tcfeuv2` section that
/// breaks the TCF v2.2 policy is refused ([`Error::Policy`]).
pub fn encode(g: &GppString) -> Result<String> {
    let mut order: Vec<&Section> = g.sections.iter().collect();
    order.sort_by_key(|s| s.id());
    let ids: Vec<u16> = order.iter().map(|s| s.id()).collect();
    for pair in ids.windows(2) {
        if pair[0] == pair[1] {
            return Err(Error::InvalidSectionId(pair[0].into()));
        }
    }
    if ids.first() == Some(&0) {
        return Err(Error::InvalidSectionId(0));
    }
    let mut out = String::with_capacity(64);
    header::encode_into(&ids, &mut out);
    for (i, s) in order.iter().enumerate() {
        out.push('~');
        match s {
            Section::TcfEuV2(m) => tcfeuv2::encode_into(m, &mut out)?,
            Section::UspV1(u) => uspv1::encode_into(u, &mut out),
            Section::Us(u) => section::encode_into(u, &mut out)?,
            Section::Unsupported { encoded, .. } => {
                if encoded.is_empty() {
                    return Err(Error::EmptySegment { segment: i + 1 });
                }
                if let Some(position) = encoded.find('~') {
                    return Err(Error::InvalidCharacter {
                        segment: i + 1,
                        position,
                        ch: '~',
                    });
                }
                out.push_str(encoded);
            }
        }
    }
    Ok(out)
}
