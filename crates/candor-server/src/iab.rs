//! Candor consent ↔ the IAB's consent strings.
//!
//! Outward: a subject's current consent becomes a TCF v2.2 TC string, a GPP string
//! (`tcfeuv2` + `usnat`) and a US Privacy string, so ad-tech vendors on the operator's
//! pages and apps read exactly what the person chose. Candor is opt-in only, so the
//! strings carry consents and never legitimate interests.
//!
//! Inward: an incoming TC, GPP or US Privacy string (from another CMP) is evidence that
//! can only *narrow* what a person granted here, unless it comes from a CMP the operator
//! declares shows notices equivalent to Candor's (`[iab] trusted_cmp_ids`): only then can
//! an affirmative TCF consent grant a purpose. Opt-out signals (usnat, US Privacy) can
//! never grant.

use crate::error::{ApiError, Code};
use candor_codec::gpp::{self, GppString, Section, UsSection};
use candor_codec::tcf::{self, IdBits, LetterCode, TcModel, VendorSet};
use candor_codec::timestamp::Timestamp;
use candor_codec::usp::{UsPrivacy, UspFlag};
use candor_core::consent::Action;
use candor_core::purpose::{Catalog, Purpose};
use candor_core::PurposeSet;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The `usnat` opt-out fields a purpose may map to.
pub const USNAT_OPT_OUTS: &[&str] = &["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"];

pub const DEMO_GVL: &str = include_str!("demo-gvl.json");

/// The vendors of a Global Vendor List, as far as consent strings need them.
#[derive(Clone, Debug, Default)]
pub struct Gvl {
    pub version: u16,
    pub policy_version: u8,
    /// (vendor id, consent purposes, special features)
    pub vendors: Vec<(u16, IdBits, IdBits)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawGvl {
    vendor_list_version: u16,
    tcf_policy_version: u8,
    vendors: BTreeMap<String, RawVendor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVendor {
    id: u16,
    #[serde(default)]
    purposes: Vec<u8>,
    #[serde(default)]
    special_features: Vec<u8>,
    /// Vendors that left the list keep an entry with a deletion date.
    deleted_date: Option<String>,
}

fn bits(ids: &[u8]) -> IdBits {
    let mut b = IdBits::default();
    for i in ids {
        b.insert(*i);
    }
    b
}

impl Gvl {
    /// Parses the IAB's GVL JSON (v2 or v3 format).
    pub fn parse(json: &str) -> Result<Self, String> {
        let raw: RawGvl =
            serde_json::from_str(json).map_err(|e| format!("not a Global Vendor List: {e}"))?;
        let vendors = raw
            .vendors
            .values()
            .filter(|v| v.deleted_date.is_none() && v.id > 0)
            .map(|v| (v.id, bits(&v.purposes), bits(&v.special_features)))
            .collect();
        Ok(Self {
            version: raw.vendor_list_version,
            policy_version: raw.tcf_policy_version,
            vendors,
        })
    }
}

/// What the operator configured under `[iab]`, with the vendor list loaded.
#[derive(Clone, Debug)]
pub struct IabContext {
    pub cmp_id: u16,
    pub cmp_version: u16,
    pub consent_language: String,
    pub publisher_country_code: String,
    pub gvl: Gvl,
    pub trusted_cmp_ids: Vec<u16>,
}

/// The three strings for one subject's current consent.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signals {
    pub tc_string: String,
    pub gpp_string: String,
    pub us_privacy: String,
}

fn all_in(needed: &[u8], have: IdBits) -> bool {
    needed.iter().all(|p| have.contains(*p))
}

/// The TCF model for a set of granted purposes.
pub fn tc_model(
    ctx: &IabContext,
    catalog: &Catalog,
    granted: PurposeSet,
    updated_ms: i64,
) -> TcModel {
    let mut purposes = IdBits::default();
    let mut features = IdBits::default();
    for p in catalog
        .purposes()
        .iter()
        .filter(|p| granted.contains(p.bit))
    {
        for t in &p.tcf_purposes {
            purposes.insert(*t);
        }
        for f in &p.tcf_special_features {
            features.insert(*f);
        }
    }
    // A vendor gets consent only when every purpose and special feature it declares
    // was consented to: a vendor cannot use half a consent.
    let mut vendors = VendorSet::default();
    for (id, vp, vf) in &ctx.gvl.vendors {
        if !vp.is_empty() && vp.0 & !purposes.0 == 0 && vf.0 & !features.0 == 0 {
            vendors.insert(*id);
        }
    }
    // TC strings record days, not instants (the IAB's own CMPs round to the day).
    let day = candor_core::UnixMillis(updated_ms.max(0)).start_of_day().0 as u64;
    TcModel {
        created: Timestamp::from_unix_millis(day),
        last_updated: Timestamp::from_unix_millis(day),
        cmp_id: ctx.cmp_id,
        cmp_version: ctx.cmp_version,
        consent_screen: 1,
        consent_language: LetterCode::new(&ctx.consent_language).unwrap_or(LetterCode::EN),
        vendor_list_version: ctx.gvl.version,
        policy_version: ctx.gvl.policy_version.max(4),
        is_service_specific: true,
        use_non_standard_texts: false,
        special_feature_optins: features,
        purpose_consents: purposes,
        publisher_country_code: LetterCode::new(&ctx.publisher_country_code)
            .unwrap_or(LetterCode::AA),
        vendor_consents: vendors,
        ..TcModel::default()
    }
}

fn usnat(
    catalog: &Catalog,
    granted: PurposeSet,
    gpc: bool,
) -> Result<UsSection, candor_codec::Error> {
    let spec = gpp::us_section_spec_by_name("usnat").ok_or(candor_codec::Error::Empty)?;
    let mut s = UsSection::new(spec);
    for field in USNAT_OPT_OUTS {
        let mapped: Vec<&Purpose> = catalog
            .purposes()
            .iter()
            .filter(|p| p.usnat_opt_outs.iter().any(|f| f == field))
            .collect();
        // 0: not applicable, 1: opted out, 2: did not opt out.
        let (value, notice) = if mapped.is_empty() {
            (0, 0)
        } else if mapped.iter().all(|p| granted.contains(p.bit)) {
            (2, 1)
        } else {
            (1, 1)
        };
        s.set(field, &[value])?;
        s.set(&format!("{}Notice", field), &[notice])?;
    }
    s.set("SharingNotice", &[1])?;
    // Not a covered transaction under the MSPA (Candor is not an MSPA signatory).
    s.set("MspaCoveredTransaction", &[2])?;
    s.gpc = Some(gpc);
    Ok(s)
}

/// The subject's current consent as IAB strings.
pub fn signals(
    ctx: &IabContext,
    catalog: &Catalog,
    granted: PurposeSet,
    updated_ms: i64,
    gpc: bool,
) -> Result<Signals, ApiError> {
    let internal = |e: candor_codec::Error| {
        ApiError::new(
            Code::Internal,
            format!("consent string encoding failed: {e}"),
        )
    };
    let model = tc_model(ctx, catalog, granted, updated_ms);
    let tc_string = tcf::encode(&model).map_err(internal)?;
    let sale = catalog.sale_or_sharing();
    let opted_out = !sale.is_empty() && !sale.intersect(granted).eq(&sale);
    let usp = UsPrivacy {
        version: 1,
        notice: UspFlag::Yes,
        opt_out_sale: if sale.is_empty() {
            UspFlag::NotApplicable
        } else if opted_out {
            UspFlag::Yes
        } else {
            UspFlag::No
        },
        lspa_covered: UspFlag::No,
    };
    let g = GppString {
        sections: vec![
            Section::TcfEuV2(model),
            Section::UspV1(usp),
            Section::Us(usnat(catalog, granted, gpc).map_err(internal)?),
        ],
        warnings: Vec::new(),
    };
    Ok(Signals {
        tc_string,
        gpp_string: gpp::encode(&g).map_err(internal)?,
        us_privacy: candor_codec::usp::encode(&usp),
    })
}

/// An incoming string, decoded.
pub enum Incoming {
    Tcf(TcModel),
    Gpp(GppString),
    Usp(UsPrivacy),
}

fn bad(what: &str, e: candor_codec::Error) -> ApiError {
    ApiError::new(
        Code::InvalidConsentString,
        format!("the {what} string is not valid: {e}"),
    )
}

pub fn decode_incoming(
    tc: Option<&str>,
    gpp_s: Option<&str>,
    usp: Option<&str>,
) -> Result<Incoming, ApiError> {
    match (tc, gpp_s, usp) {
        (Some(s), None, None) => Ok(Incoming::Tcf(
            tcf::decode(s.trim()).map_err(|e| bad("TC", e))?.model,
        )),
        (None, Some(s), None) => Ok(Incoming::Gpp(
            gpp::decode(s.trim()).map_err(|e| bad("GPP", e))?,
        )),
        (None, None, Some(s)) => Ok(Incoming::Usp(
            candor_codec::usp::decode(s.trim()).map_err(|e| bad("US Privacy", e))?,
        )),
        _ => Err(ApiError::new(
            Code::InvalidRequest,
            "send exactly one of tcString, gppString or usPrivacy",
        )),
    }
}

/// What an incoming string says about each Candor purpose: refusals always; grants only
/// from a trusted CMP's TCF consent covering every mapped purpose and special feature.
pub fn actions(ctx: &IabContext, catalog: &Catalog, incoming: &Incoming) -> Vec<(Purpose, Action)> {
    let mut out: BTreeMap<String, (Purpose, Action)> = BTreeMap::new();
    let mut put = |p: &Purpose, a: Action| {
        // A refusal from any part of the string wins over a grant from another part.
        let e = out.entry(p.id.to_string()).or_insert((p.clone(), a));
        if a == Action::Refuse {
            e.1 = Action::Refuse;
        }
    };
    let from_tc = |m: &TcModel, put: &mut dyn FnMut(&Purpose, Action)| {
        let trusted = ctx.trusted_cmp_ids.contains(&m.cmp_id);
        for p in catalog
            .purposes()
            .iter()
            .filter(|p| !p.tcf_purposes.is_empty())
        {
            let consented = all_in(&p.tcf_purposes, m.purpose_consents)
                && all_in(&p.tcf_special_features, m.special_feature_optins);
            if !consented {
                put(p, Action::Refuse);
            } else if trusted {
                put(p, Action::Grant);
            }
        }
    };
    let from_usp = |u: &UsPrivacy, put: &mut dyn FnMut(&Purpose, Action)| {
        if u.opt_out_sale == UspFlag::Yes {
            for p in catalog.purposes().iter().filter(|p| p.sale_or_sharing) {
                put(p, Action::Refuse);
            }
        }
    };
    match incoming {
        Incoming::Tcf(m) => from_tc(m, &mut put),
        Incoming::Usp(u) => from_usp(u, &mut put),
        Incoming::Gpp(g) => {
            if let Some(m) = g.tcf_eu_v2() {
                from_tc(m, &mut put);
            }
            if let Some(u) = g.usp_v1() {
                from_usp(u, &mut put);
            }
            if let Some(s) = g.us_section("usnat") {
                for p in catalog.purposes() {
                    if p.usnat_opt_outs.iter().any(|f| s.get_int(f) == Some(1))
                        || (p.sale_or_sharing && s.gpc == Some(true))
                    {
                        put(p, Action::Refuse);
                    }
                }
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_gvl_parses() {
        let g = Gvl::parse(DEMO_GVL).unwrap();
        assert_eq!(g.version, 120);
        assert_eq!(g.vendors.len(), 6);
        assert!(Gvl::parse("{}").is_err());
    }
}
