//! GPP string <-> `{ "sectionIds": [...], "sections": { name: { Field: value } } }`,
//! where each section object has exactly the shape of the vectors'
//! `expected` entries (the IAB library's field names and value forms).

use serde_json::{json, Map, Value};

use super::{err, Obj};
use crate::error::Result;
use crate::gpp::{section, GppString, Section, UsSection};
use crate::tcf::{
    IdBits, LetterCode, PublisherRestriction, PublisherTc, RestrictionType, TcModel, Timestamp,
    VendorSet,
};
use crate::timestamp::MAX_DECISECONDS;
use crate::usp::{UsPrivacy, UspFlag};

/// `{"sectionIds": [..], "sections": {name: fields}}`. Sections this crate
/// does not decode appear under their id as `{"encoded": "..."}`.
pub fn to_json(g: &GppString) -> Value {
    let mut sections = Map::new();
    for s in &g.sections {
        let (key, value) = match s {
            Section::TcfEuV2(m) => ("tcfeuv2".to_owned(), tcf_to_json(m)),
            Section::UspV1(u) => ("uspv1".to_owned(), usp_to_json(u)),
            Section::Us(u) => (u.name().to_owned(), us_to_json(u)),
            Section::Unsupported { id, encoded } => (id.to_string(), json!({ "encoded": encoded })),
        };
        sections.insert(key, value);
    }
    json!({ "sectionIds": g.section_ids(), "sections": sections })
}

/// The inverse of [`to_json`]. `"expected"` is accepted in place of
/// `"sections"` so a vector entry can be fed in as is; `sectionIds`, if
/// present, must match the sections given.
///
/// For a US section with a GPC subsection the JSON cannot tell "subsection
/// absent" from "present with Gpc false"; `GpcSegmentIncluded` (optional)
/// says which, and defaults to including it only when `Gpc` is true.
pub fn from_json(v: &Value) -> Result<GppString> {
    let o = Obj::new(v, "")?;
    o.deny_unknown(&["sectionIds", "sections", "expected", "gppString"])?;
    let key = if o.get("sections").is_some() {
        "sections"
    } else {
        "expected"
    };
    let sections_obj = Obj::new(o.req(key)?, key)?;
    let mut sections = Vec::new();
    for (name, value) in sections_obj.map {
        let path = sections_obj.at(name);
        let section = match name.as_str() {
            "tcfeuv2" => Section::TcfEuV2(tcf_from_json(&Obj::new(value, &path)?)?),
            "uspv1" => Section::UspV1(usp_from_json(&Obj::new(value, &path)?)?),
            _ => match section::us_section_spec_by_name(name) {
                Some(spec) => Section::Us(us_from_json(spec, &Obj::new(value, &path)?)?),
                None => {
                    let id: u16 = name
                        .parse()
                        .map_err(|_| err(&path, "unknown section name"))?;
                    let s = Obj::new(value, &path)?;
                    s.deny_unknown(&["encoded"])?;
                    Section::Unsupported {
                        id,
                        encoded: s.string("encoded")?.to_owned(),
                    }
                }
            },
        };
        sections.push(section);
    }
    sections.sort_by_key(Section::id);
    if o.get("sectionIds").is_some() {
        let listed = o.ids("sectionIds", u64::from(u16::MAX))?;
        let have: Vec<u64> = sections.iter().map(|s| u64::from(s.id())).collect();
        if listed != have {
            return Err(err(
                "sectionIds",
                format!("lists {listed:?} but the sections are {have:?}"),
            ));
        }
    }
    let warnings = sections
        .iter()
        .filter_map(|s| match s {
            Section::TcfEuV2(m) => Some(m.policy_violations()),
            _ => None,
        })
        .flatten()
        .collect();
    Ok(GppString { sections, warnings })
}

fn usp_to_json(u: &UsPrivacy) -> Value {
    json!({
        "Version": u.version,
        "Notice": u.notice.as_char().to_string(),
        "OptOutSale": u.opt_out_sale.as_char().to_string(),
        "LspaCovered": u.lspa_covered.as_char().to_string(),
    })
}

fn usp_from_json(o: &Obj<'_>) -> Result<UsPrivacy> {
    o.deny_unknown(&["Version", "Notice", "OptOutSale", "LspaCovered"])?;
    o.uint("Version", 1)?;
    let flag = |key: &str| -> Result<UspFlag> {
        let s = o.string(key)?;
        let mut chars = s.chars();
        match (chars.next().and_then(UspFlag::from_char), chars.next()) {
            (Some(f), None) => Ok(f),
            _ => Err(err(o.at(key), "expected \"Y\", \"N\" or \"-\"")),
        }
    };
    Ok(UsPrivacy {
        version: crate::usp::VERSION,
        notice: flag("Notice")?,
        opt_out_sale: flag("OptOutSale")?,
        lspa_covered: flag("LspaCovered")?,
    })
}

fn us_to_json(u: &UsSection) -> Value {
    let mut m = Map::new();
    m.insert("Version".into(), u.version().into());
    for (f, values) in u.fields() {
        let v = match f.kind {
            section::FieldKind::Int { .. } => Value::from(values[0]),
            section::FieldKind::List { .. } => Value::from(values.to_vec()),
        };
        m.insert(f.name.into(), v);
    }
    if u.spec().has_gpc {
        m.insert("GpcSegmentType".into(), 1.into());
        m.insert("Gpc".into(), u.gpc.unwrap_or(false).into());
    }
    Value::Object(m)
}

fn us_from_json(spec: &'static section::UsSectionSpec, o: &Obj<'_>) -> Result<UsSection> {
    let mut u = UsSection::new(spec);
    let version = o.uint("Version", 63)? as u8;
    u.reset_to_version(version)?;
    let layout = spec.layout(version).map_or(&[][..], |l| l.fields);
    for key in o.map.keys() {
        let known = matches!(
            key.as_str(),
            "Version" | "GpcSegmentType" | "Gpc" | "GpcSegmentIncluded"
        ) || layout.iter().any(|f| f.name == key);
        if !known {
            return Err(err(o.at(key), "unknown field"));
        }
    }
    for f in layout {
        let path = o.at(f.name);
        let max = (1u64
            << match f.kind {
                section::FieldKind::Int { bits } | section::FieldKind::List { bits, .. } => bits,
            })
            - 1;
        let values: Vec<u16> = match f.kind {
            section::FieldKind::Int { .. } => vec![o.uint(f.name, max)? as u16],
            section::FieldKind::List { len, .. } => {
                let arr = o
                    .req(f.name)?
                    .as_array()
                    .ok_or_else(|| err(&path, "expected an array"))?;
                if arr.len() != usize::from(len) {
                    return Err(err(&path, format!("expected {len} items")));
                }
                arr.iter()
                    .enumerate()
                    .map(|(i, x)| super::uint(x, max, &format!("{path}[{i}]")).map(|n| n as u16))
                    .collect::<Result<_>>()?
            }
        };
        u.set(f.name, &values)?;
    }
    if spec.has_gpc {
        let gpc = match o.get("Gpc") {
            Some(_) => o.boolean("Gpc")?,
            None => false,
        };
        let included = match o.get("GpcSegmentIncluded") {
            Some(_) => o.boolean("GpcSegmentIncluded")?,
            None => gpc,
        };
        u.gpc = included.then_some(gpc);
    }
    Ok(u)
}

fn bools(b: IdBits, width: u32) -> Vec<bool> {
    (1..=width).map(|id| b.contains(id as u8)).collect()
}

fn tcf_to_json(m: &TcModel) -> Value {
    let vendors = |v: &VendorSet| v.iter().collect::<Vec<u16>>();
    let ptc = m.publisher_tc.clone().unwrap_or_default();
    let restrictions: Vec<Value> = m
        .publisher_restrictions
        .iter()
        .map(|r| {
            json!({
                "key": r.purpose_id,
                "type": r.restriction_type.code(),
                "ids": vendors(&r.vendors),
            })
        })
        .collect();
    json!({
        "Version": m.version,
        "Created": m.created.to_iso8601(),
        "LastUpdated": m.last_updated.to_iso8601(),
        "CmpId": m.cmp_id,
        "CmpVersion": m.cmp_version,
        "ConsentScreen": m.consent_screen,
        "ConsentLanguage": m.consent_language.as_str(),
        "VendorListVersion": m.vendor_list_version,
        "PolicyVersion": m.policy_version,
        "IsServiceSpecific": m.is_service_specific,
        "UseNonStandardStacks": m.use_non_standard_texts,
        "SpecialFeatureOptins": bools(m.special_feature_optins, 12),
        "PurposeConsents": bools(m.purpose_consents, 24),
        "PurposeLegitimateInterests": bools(m.purpose_legitimate_interests, 24),
        "PurposeOneTreatment": m.purpose_one_treatment,
        "PublisherCountryCode": m.publisher_country_code.as_str(),
        "VendorConsents": vendors(&m.vendor_consents),
        "VendorLegitimateInterests": vendors(&m.vendor_legitimate_interests),
        "PublisherRestrictions": restrictions,
        "PublisherPurposesSegmentType": 3,
        "PublisherConsents": bools(ptc.consents, 24),
        "PublisherLegitimateInterests": bools(ptc.legitimate_interests, 24),
        "NumCustomPurposes": ptc.num_custom_purposes,
        "PublisherCustomConsents": bools(ptc.custom_consents, ptc.num_custom_purposes.into()),
        "PublisherCustomLegitimateInterests":
            bools(ptc.custom_legitimate_interests, ptc.num_custom_purposes.into()),
        "VendorsAllowedSegmentType": 2,
        "VendorsAllowed": [],
        "VendorsDisclosedSegmentType": 1,
        "VendorsDisclosed": m.vendors_disclosed.as_ref().map(vendors).unwrap_or_default(),
    })
}

const TCF_KEYS: &[&str] = &[
    "Version",
    "Created",
    "LastUpdated",
    "CmpId",
    "CmpVersion",
    "ConsentScreen",
    "ConsentLanguage",
    "VendorListVersion",
    "PolicyVersion",
    "IsServiceSpecific",
    "UseNonStandardStacks",
    "SpecialFeatureOptins",
    "PurposeConsents",
    "PurposeLegitimateInterests",
    "PurposeOneTreatment",
    "PublisherCountryCode",
    "VendorConsents",
    "VendorLegitimateInterests",
    "PublisherRestrictions",
    "PublisherPurposesSegmentType",
    "PublisherConsents",
    "PublisherLegitimateInterests",
    "NumCustomPurposes",
    "PublisherCustomConsents",
    "PublisherCustomLegitimateInterests",
    "VendorsAllowedSegmentType",
    "VendorsAllowed",
    "VendorsDisclosedSegmentType",
    "VendorsDisclosed",
];

/// A boolean array (index 0 is id 1) of at most `width` items.
fn bool_bits(o: &Obj<'_>, key: &str, width: usize) -> Result<IdBits> {
    let Some(v) = o.get(key) else {
        return Ok(IdBits::default());
    };
    let path = o.at(key);
    let arr = v
        .as_array()
        .ok_or_else(|| err(&path, "expected an array of booleans"))?;
    if arr.len() > width {
        return Err(err(&path, format!("more than {width} items")));
    }
    let mut b = IdBits::default();
    for (i, x) in arr.iter().enumerate() {
        if x.as_bool()
            .ok_or_else(|| err(format!("{path}[{i}]"), "expected a boolean"))?
        {
            b.insert(i as u8 + 1);
        }
    }
    Ok(b)
}

fn tcf_from_json(o: &Obj<'_>) -> Result<TcModel> {
    o.deny_unknown(TCF_KEYS)?;
    let time = |key: &str| -> Result<Timestamp> {
        Timestamp::parse_iso8601(o.string(key)?)
            .filter(|t| t.deciseconds() <= MAX_DECISECONDS)
            .ok_or_else(|| err(o.at(key), "expected an ISO-8601 UTC timestamp"))
    };
    let letters = |key: &str| -> Result<LetterCode> {
        LetterCode::new(o.string(key)?).ok_or_else(|| err(o.at(key), "expected two letters"))
    };
    let n = o.uint_or("NumCustomPurposes", 63, 0)?;
    let ptc = PublisherTc {
        consents: bool_bits(o, "PublisherConsents", 24)?,
        legitimate_interests: bool_bits(o, "PublisherLegitimateInterests", 24)?,
        num_custom_purposes: n as u8,
        custom_consents: bool_bits(o, "PublisherCustomConsents", n as usize)?,
        custom_legitimate_interests: bool_bits(
            o,
            "PublisherCustomLegitimateInterests",
            n as usize,
        )?,
    };
    let is_service_specific = o.boolean("IsServiceSpecific")?;
    let mut restrictions = Vec::new();
    if let Some(v) = o.get("PublisherRestrictions") {
        let path = o.at("PublisherRestrictions");
        let arr = v
            .as_array()
            .ok_or_else(|| err(&path, "expected an array"))?;
        for (i, item) in arr.iter().enumerate() {
            let r = Obj::new(item, &format!("{path}[{i}]"))?;
            r.deny_unknown(&["key", "type", "ids"])?;
            restrictions.push(PublisherRestriction {
                purpose_id: r.uint("key", 63)? as u8,
                restriction_type: RestrictionType::from_code(r.uint("type", 3)? as u8),
                vendors: super::tcf::vendor_set(&r, "ids")?,
            });
        }
    }
    let has_ptc = is_service_specific || ptc != PublisherTc::default();
    Ok(TcModel {
        version: o.uint_or("Version", 63, 2)? as u8,
        created: time("Created")?,
        last_updated: time("LastUpdated")?,
        cmp_id: o.uint("CmpId", 4095)? as u16,
        cmp_version: o.uint("CmpVersion", 4095)? as u16,
        consent_screen: o.uint("ConsentScreen", 63)? as u8,
        consent_language: letters("ConsentLanguage")?,
        vendor_list_version: o.uint("VendorListVersion", 4095)? as u16,
        policy_version: o.uint("PolicyVersion", 63)? as u8,
        is_service_specific,
        use_non_standard_texts: o.boolean("UseNonStandardStacks")?,
        special_feature_optins: bool_bits(o, "SpecialFeatureOptins", 12)?,
        purpose_consents: bool_bits(o, "PurposeConsents", 24)?,
        purpose_legitimate_interests: bool_bits(o, "PurposeLegitimateInterests", 24)?,
        purpose_one_treatment: o.boolean("PurposeOneTreatment")?,
        publisher_country_code: letters("PublisherCountryCode")?,
        vendor_consents: super::tcf::vendor_set(o, "VendorConsents")?,
        vendor_legitimate_interests: super::tcf::vendor_set(o, "VendorLegitimateInterests")?,
        publisher_restrictions: restrictions,
        vendors_disclosed: Some(super::tcf::vendor_set(o, "VendorsDisclosed")?),
        publisher_tc: has_ptc.then_some(ptc),
    })
}
