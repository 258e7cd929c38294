//! TC string <-> the `expected` object of `tcf-v2.json` (camelCase fields,
//! id arrays, ISO-8601 timestamps, restrictions sorted by purpose and type).

use serde_json::{json, Value};

use super::{err, Obj};
use crate::error::Result;
use crate::tcf::{
    IdBits, LetterCode, PublisherRestriction, PublisherTc, RestrictionType, TcModel, TcString,
    Timestamp, VendorSet,
};
use crate::timestamp::MAX_DECISECONDS;

const KEYS: &[&str] = &[
    "version",
    "created",
    "lastUpdated",
    "cmpId",
    "cmpVersion",
    "consentScreen",
    "consentLanguage",
    "vendorListVersion",
    "policyVersion",
    "isServiceSpecific",
    "useNonStandardTexts",
    "specialFeatureOptins",
    "purposeConsents",
    "purposeLegitimateInterests",
    "purposeOneTreatment",
    "publisherCountryCode",
    "vendorConsents",
    "vendorLegitimateInterests",
    "publisherRestrictions",
    "vendorsDisclosed",
    "publisherConsents",
    "publisherLegitimateInterests",
    "numCustomPurposes",
    "publisherCustomConsents",
    "publisherCustomLegitimateInterests",
];

/// The decoded string in the vectors' `expected` shape (warnings are not
/// part of it; read them from [`TcString::warnings`]).
pub fn to_json(tc: &TcString) -> Value {
    model_to_json(&tc.model)
}

/// Like [`to_json`], for a bare model.
pub fn model_to_json(m: &TcModel) -> Value {
    let bits = |b: IdBits| b.iter().collect::<Vec<u8>>();
    let vendors = |v: &VendorSet| v.iter().collect::<Vec<u16>>();
    let mut restrictions: Vec<&PublisherRestriction> = m.publisher_restrictions.iter().collect();
    restrictions.sort_by_key(|r| (r.purpose_id, r.restriction_type));
    let restrictions: Vec<Value> = restrictions
        .into_iter()
        .map(|r| {
            json!({
                "purposeId": r.purpose_id,
                "restrictionType": r.restriction_type.code(),
                "vendors": vendors(&r.vendors),
            })
        })
        .collect();
    let ptc = m.publisher_tc.clone().unwrap_or_default();
    json!({
        "version": m.version,
        "created": m.created.to_iso8601(),
        "lastUpdated": m.last_updated.to_iso8601(),
        "cmpId": m.cmp_id,
        "cmpVersion": m.cmp_version,
        "consentScreen": m.consent_screen,
        "consentLanguage": m.consent_language.as_str(),
        "vendorListVersion": m.vendor_list_version,
        "policyVersion": m.policy_version,
        "isServiceSpecific": m.is_service_specific,
        "useNonStandardTexts": m.use_non_standard_texts,
        "specialFeatureOptins": bits(m.special_feature_optins),
        "purposeConsents": bits(m.purpose_consents),
        "purposeLegitimateInterests": bits(m.purpose_legitimate_interests),
        "purposeOneTreatment": m.purpose_one_treatment,
        "publisherCountryCode": m.publisher_country_code.as_str(),
        "vendorConsents": vendors(&m.vendor_consents),
        "vendorLegitimateInterests": vendors(&m.vendor_legitimate_interests),
        "publisherRestrictions": restrictions,
        "vendorsDisclosed": m.vendors_disclosed.as_ref().map(vendors).unwrap_or_default(),
        "publisherConsents": bits(ptc.consents),
        "publisherLegitimateInterests": bits(ptc.legitimate_interests),
        "numCustomPurposes": ptc.num_custom_purposes,
        "publisherCustomConsents": bits(ptc.custom_consents),
        "publisherCustomLegitimateInterests": bits(ptc.custom_legitimate_interests),
    })
}

/// Builds a model from the vectors' `expected` shape.
///
/// The JSON does not say which optional segments the string had, so this
/// follows the reference encoder (TCF 2.2): the disclosed-vendors segment is
/// always written; the publisher TC segment when the string is service
/// specific or any publisher field is set. Array fields and
/// `numCustomPurposes` may be omitted (empty / derived); scalars may not.
pub fn from_json(v: &Value) -> Result<TcModel> {
    let o = Obj::new(v, "")?;
    o.deny_unknown(KEYS)?;
    let version = o.uint_or("version", 63, 2)? as u8;
    let num_custom = match o.get("numCustomPurposes") {
        Some(_) => o.uint("numCustomPurposes", 63)?,
        None => o
            .ids("publisherCustomConsents", 63)?
            .into_iter()
            .chain(o.ids("publisherCustomLegitimateInterests", 63)?)
            .max()
            .unwrap_or(0),
    };
    let ptc = PublisherTc {
        consents: id_bits(&o, "publisherConsents", 24)?,
        legitimate_interests: id_bits(&o, "publisherLegitimateInterests", 24)?,
        num_custom_purposes: num_custom as u8,
        custom_consents: id_bits(&o, "publisherCustomConsents", num_custom)?,
        custom_legitimate_interests: id_bits(&o, "publisherCustomLegitimateInterests", num_custom)?,
    };
    let is_service_specific = o.boolean("isServiceSpecific")?;
    let has_ptc = is_service_specific || ptc != PublisherTc::default();
    Ok(TcModel {
        version,
        created: timestamp(&o, "created")?,
        last_updated: timestamp(&o, "lastUpdated")?,
        cmp_id: o.uint("cmpId", 4095)? as u16,
        cmp_version: o.uint("cmpVersion", 4095)? as u16,
        consent_screen: o.uint("consentScreen", 63)? as u8,
        consent_language: letters(&o, "consentLanguage")?,
        vendor_list_version: o.uint("vendorListVersion", 4095)? as u16,
        policy_version: o.uint("policyVersion", 63)? as u8,
        is_service_specific,
        use_non_standard_texts: o.boolean("useNonStandardTexts")?,
        special_feature_optins: id_bits(&o, "specialFeatureOptins", 12)?,
        purpose_consents: id_bits(&o, "purposeConsents", 24)?,
        purpose_legitimate_interests: id_bits(&o, "purposeLegitimateInterests", 24)?,
        purpose_one_treatment: o.boolean("purposeOneTreatment")?,
        publisher_country_code: letters(&o, "publisherCountryCode")?,
        vendor_consents: vendor_set(&o, "vendorConsents")?,
        vendor_legitimate_interests: vendor_set(&o, "vendorLegitimateInterests")?,
        publisher_restrictions: restrictions(&o)?,
        vendors_disclosed: Some(vendor_set(&o, "vendorsDisclosed")?),
        publisher_tc: has_ptc.then_some(ptc),
    })
}

fn timestamp(o: &Obj<'_>, key: &str) -> Result<Timestamp> {
    let s = o.string(key)?;
    let t = Timestamp::parse_iso8601(s).ok_or_else(|| {
        err(
            o.at(key),
            "expected an ISO-8601 UTC timestamp like 2025-08-05T00:00:00.000Z",
        )
    })?;
    if t.deciseconds() > MAX_DECISECONDS {
        return Err(err(
            o.at(key),
            "after the last date a TC string can hold (2187)",
        ));
    }
    Ok(t)
}

fn letters(o: &Obj<'_>, key: &str) -> Result<LetterCode> {
    LetterCode::new(o.string(key)?).ok_or_else(|| err(o.at(key), "expected two letters"))
}

fn id_bits(o: &Obj<'_>, key: &str, max: u64) -> Result<IdBits> {
    Ok(o.ids(key, max)?.into_iter().map(|id| id as u8).collect())
}

pub(super) fn vendor_set(o: &Obj<'_>, key: &str) -> Result<VendorSet> {
    Ok(o.ids(key, u64::from(u16::MAX))?
        .into_iter()
        .map(|id| id as u16)
        .collect())
}

fn restrictions(o: &Obj<'_>) -> Result<Vec<PublisherRestriction>> {
    let Some(v) = o.get("publisherRestrictions") else {
        return Ok(Vec::new());
    };
    let path = o.at("publisherRestrictions");
    let arr = v
        .as_array()
        .ok_or_else(|| err(&path, "expected an array"))?;
    arr.iter()
        .enumerate()
        .map(|(i, item)| {
            let r = Obj::new(item, &format!("{path}[{i}]"))?;
            r.deny_unknown(&["purposeId", "restrictionType", "vendors"])?;
            Ok(PublisherRestriction {
                purpose_id: r.uint("purposeId", 63)? as u8,
                restriction_type: RestrictionType::from_code(r.uint("restrictionType", 3)? as u8),
                vendors: vendor_set(&r, "vendors")?,
            })
        })
        .collect()
}
