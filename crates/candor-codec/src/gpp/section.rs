//! Table-driven codec for the US GPP sections (id 7 `usnat` and the state
//! sections 8 and up), and their registry.
//!
//! All of these sections are the same shape: a core segment holding a 6-bit
//! version and then fixed-width integers and fixed-length integer lists, and
//! optionally a GPC subsection. So a section is described by data, a
//! [`UsSectionSpec`], and one generic codec reads and writes them all. Adding
//! a state means one small file with its field table plus one line in
//! [`US_SECTIONS`].

use crate::base64url;
use crate::bits::{BitReader, BitWriter};
use crate::error::{Error, Result};

/// Width and arity of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// One unsigned integer of `bits` bits (at most 16).
    Int {
        /// Width in bits.
        bits: u8,
    },
    /// `len` integers of `bits` bits each.
    List {
        /// Width of each item in bits.
        bits: u8,
        /// Number of items.
        len: u8,
    },
}

impl FieldKind {
    fn bits(self) -> u8 {
        match self {
            Self::Int { bits } | Self::List { bits, .. } => bits,
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Int { .. } => 1,
            Self::List { len, .. } => usize::from(len),
        }
    }
}

/// One field of a section's core segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// The IAB field name (`SaleOptOut`, …), also its JSON key.
    pub name: &'static str,
    /// Width and arity.
    pub kind: FieldKind,
}

/// Shorthand for table files: a 2-bit field (the usual "0 n/a, 1 yes, 2 no").
pub const fn int2(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::Int { bits: 2 },
    }
}

/// Shorthand for table files: a list of `len` 2-bit values.
pub const fn list2(name: &'static str, len: u8) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::List { bits: 2, len },
    }
}

/// The core-segment fields of one version of a section (after `Version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionLayout {
    /// The 6-bit version this layout applies to.
    pub version: u8,
    /// Fields in wire order.
    pub fields: &'static [FieldSpec],
}

/// Everything the generic codec needs to know about a US section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsSectionSpec {
    /// GPP section id.
    pub id: u16,
    /// GPP API prefix / JSON key (`usnat`).
    pub name: &'static str,
    /// Known versions; the last one is what new sections are created with.
    pub layouts: &'static [VersionLayout],
    /// Whether the section may carry a GPC subsection.
    pub has_gpc: bool,
}

impl UsSectionSpec {
    /// The layout for `version`, if known.
    pub fn layout(&self, version: u8) -> Option<&'static VersionLayout> {
        self.layouts.iter().find(|l| l.version == version)
    }
}

/// Every table-driven section this crate knows, by id.
pub static US_SECTIONS: &[&UsSectionSpec] = &[&super::usnat::USNAT];

/// Looks a table-driven section up by GPP id.
pub fn us_section_spec(id: u16) -> Option<&'static UsSectionSpec> {
    US_SECTIONS.iter().copied().find(|s| s.id == id)
}

/// Looks a table-driven section up by name.
pub fn us_section_spec_by_name(name: &str) -> Option<&'static UsSectionSpec> {
    US_SECTIONS.iter().copied().find(|s| s.name == name)
}

/// Subsection type of the GPC subsection.
const GPC_SUBSECTION_TYPE: u32 = 1;

/// A decoded US section: values in field-table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsSection {
    spec: &'static UsSectionSpec,
    version: u8,
    /// Flattened field values; lists take `len` slots.
    values: Vec<u16>,
    /// The GPC flag when the GPC subsection is present; `None` when absent.
    pub gpc: Option<bool>,
}

impl UsSection {
    /// A section of the newest known version with every field 0 and no GPC
    /// subsection.
    pub fn new(spec: &'static UsSectionSpec) -> Self {
        let layout = spec.layouts.last().copied().unwrap_or(VersionLayout {
            version: 1,
            fields: &[],
        });
        Self {
            spec,
            version: layout.version,
            values: vec![0; layout.fields.iter().map(|f| f.kind.len()).sum()],
            gpc: None,
        }
    }

    /// The section's description.
    pub fn spec(&self) -> &'static UsSectionSpec {
        self.spec
    }

    /// GPP section id.
    pub fn id(&self) -> u16 {
        self.spec.id
    }

    /// Section name.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// The section's version.
    pub fn version(&self) -> u8 {
        self.version
    }

    fn layout(&self) -> &'static [FieldSpec] {
        self.spec.layout(self.version).map_or(&[], |l| l.fields)
    }

    /// Fields with their values (one value for `Int`), in wire order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static FieldSpec, &[u16])> + '_ {
        let mut at = 0;
        self.layout().iter().map(move |f| {
            let n = f.kind.len();
            let v = &self.values[at..at + n];
            at += n;
            (f, v)
        })
    }

    /// The value(s) of field `name`.
    pub fn get(&self, name: &str) -> Option<&[u16]> {
        self.fields().find(|(f, _)| f.name == name).map(|(_, v)| v)
    }

    /// The value of integer field `name`.
    pub fn get_int(&self, name: &str) -> Option<u16> {
        self.get(name).and_then(|v| v.first().copied())
    }

    /// Sets field `name`; `values` must have the field's arity and width.
    pub fn set(&mut self, name: &str, values: &[u16]) -> Result<()> {
        let mut at = 0;
        for f in self.layout() {
            let n = f.kind.len();
            if f.name == name {
                if values.len() != n {
                    return Err(Error::WrongArity {
                        field: f.name,
                        expected: n,
                        found: values.len(),
                    });
                }
                let bits = f.kind.bits();
                if let Some(v) = values.iter().find(|v| u32::from(**v) >> bits != 0) {
                    return Err(Error::ValueOutOfRange {
                        field: f.name,
                        value: u64::from(*v),
                        bits: bits.into(),
                    });
                }
                self.values[at..at + n].copy_from_slice(values);
                return Ok(());
            }
            at += n;
        }
        Err(Error::UnknownField {
            section: self.spec.name,
            field: name.to_owned(),
        })
    }

    /// Switches to another known version, resetting all fields to 0.
    pub fn reset_to_version(&mut self, version: u8) -> Result<()> {
        let layout = self
            .spec
            .layout(version)
            .ok_or(Error::UnsupportedSectionVersion {
                section: self.spec.name,
                version,
            })?;
        self.version = version;
        self.values = vec![0; layout.fields.iter().map(|f| f.kind.len()).sum()];
        Ok(())
    }
}

/// Decodes a section string (core segment, optional GPC subsection).
pub(crate) fn decode(
    spec: &'static UsSectionSpec,
    s: &str,
    buf: &mut Vec<u8>,
) -> Result<UsSection> {
    let mut segments = s.split('.');
    let core = segments.next().unwrap_or_default();
    if core.is_empty() {
        return Err(Error::EmptySegment { segment: 0 });
    }
    let bits = base64url::decode_into(core, buf, 0)?;
    let mut r = BitReader::new(buf, bits);
    let version = r.read(6, "Version")? as u8;
    let layout = spec
        .layout(version)
        .ok_or(Error::UnsupportedSectionVersion {
            section: spec.name,
            version,
        })?;
    let mut values = Vec::with_capacity(layout.fields.iter().map(|f| f.kind.len()).sum());
    for f in layout.fields {
        for _ in 0..f.kind.len() {
            values.push(r.read(f.kind.bits().into(), f.name)? as u16);
        }
    }
    let mut gpc = None;
    for (i, seg) in segments.enumerate() {
        let segment = i + 1;
        if !spec.has_gpc || segment > 1 {
            return Err(Error::UnexpectedSegment {
                section: spec.name,
                segment,
                reason: "no such subsection",
            });
        }
        if seg.is_empty() {
            return Err(Error::EmptySegment { segment });
        }
        let bits = base64url::decode_into(seg, buf, segment)?;
        let mut r = BitReader::new(buf, bits);
        if r.read(2, "SubsectionType")? != GPC_SUBSECTION_TYPE {
            return Err(Error::UnexpectedSegment {
                section: spec.name,
                segment,
                reason: "subsection type is not GPC (1)",
            });
        }
        gpc = Some(r.read_bool("Gpc")?);
    }
    Ok(UsSection {
        spec,
        version,
        values,
        gpc,
    })
}

/// Appends the encoded section to `out`.
pub(crate) fn encode_into(sec: &UsSection, out: &mut String) -> Result<()> {
    let mut w = BitWriter::with_capacity(16);
    w.write(u32::from(sec.version), 6);
    for (f, values) in sec.fields() {
        for v in values {
            w.write(u32::from(*v), f.kind.bits().into());
        }
    }
    // GPP's "compressed" padding: whole bytes, then whole sextets.
    base64url::encode_into(&w.finish(8), out);
    if let Some(gpc) = sec.gpc {
        if !sec.spec.has_gpc {
            return Err(Error::UnexpectedSegment {
                section: sec.spec.name,
                segment: 1,
                reason: "section has no GPC subsection",
            });
        }
        let mut w = BitWriter::with_capacity(1);
        w.write(GPC_SUBSECTION_TYPE, 2);
        w.write_bool(gpc);
        out.push('.');
        base64url::encode_into(&w.finish(8), out);
    }
    Ok(())
}
