//! Published IAB example strings, with values taken from the IAB reference
//! libraries' own test suites (`iabgpp-es`) or, where those give none,
//! cross-checked against an independent bit-by-bit decoding.

#![allow(clippy::unwrap_used)]

use candor_codec::gpp::{self, Section, UsSection};
use candor_codec::tcf::{self, PolicyViolation, PublisherTc, TcModel, Timestamp};
use candor_codec::usp::{self, UspFlag};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_iso8601(s).unwrap()
}

/// iabgpp-es `TcfEuV2.test.ts`, "encode with service specific" / "decode
/// service specific".
#[test]
fn tcf_service_specific_example() {
    let s = "CPSG_8APSG_8AAAAAAENAACgAAAAAAAAAAAAAAAAAAAA.YAAAAAAAAAAA";
    let tc = tcf::decode(s).unwrap();
    let m = &tc.model;
    assert_eq!(m.created, ts("2022-01-01T00:00:00Z"));
    assert_eq!(m.last_updated, ts("2022-01-01T00:00:00Z"));
    assert_eq!((m.cmp_id, m.cmp_version, m.consent_screen), (0, 0, 0));
    assert_eq!(m.consent_language.as_str(), "EN");
    assert_eq!(m.publisher_country_code.as_str(), "AA");
    assert_eq!(m.policy_version, 2);
    assert!(m.is_service_specific);
    assert!(m.vendor_consents.is_empty() && m.vendor_legitimate_interests.is_empty());
    assert_eq!(m.publisher_tc, Some(PublisherTc::default()));
    assert_eq!(m.vendors_disclosed, None);
    // A pre-2.2 string: decodes with a warning, and is refused by the
    // policy-enforcing encoder but reproduced by the unchecked one.
    assert_eq!(
        tc.warnings,
        vec![PolicyViolation::PolicyVersionTooLow { found: 2 }]
    );
    assert!(matches!(
        tcf::encode(m),
        Err(candor_codec::Error::Policy(_))
    ));
    assert_eq!(tcf::encode_unchecked(m).unwrap(), s);

    // And built from scratch as the IAB test does.
    let built = TcModel {
        created: ts("2022-01-01T00:00:00Z"),
        last_updated: ts("2022-01-01T00:00:00Z"),
        policy_version: 2,
        is_service_specific: true,
        publisher_tc: Some(PublisherTc::default()),
        ..TcModel::default()
    };
    assert_eq!(tcf::encode_unchecked(&built).unwrap(), s);
}

/// iabgpp-es "decode defaults": carries a (deprecated) allowed-vendors
/// segment, which is decoded, dropped, and not re-emitted.
#[test]
fn tcf_defaults_with_allowed_vendors_segment() {
    let s = "CAAAAAAAAAAAAAAAAAENAACAAAAAAAAAAAAAAAAAAAAA.QAAA.IAAA";
    let tc = tcf::decode(s).unwrap();
    assert_eq!(tc.model.created, Timestamp::default());
    assert_eq!(tc.model.vendors_disclosed, Some(Default::default()));
    assert_eq!(tc.model.publisher_tc, None);
    assert_eq!(
        tcf::encode_unchecked(&tc.model).unwrap(),
        "CAAAAAAAAAAAAAAAAAENAACAAAAAAAAAAAAAAAAAAAAA.IAAA"
    );
}

/// iabgpp-es "decode 2".
#[test]
fn tcf_real_world_example() {
    let s = "CPi8wgAPi8wgAAOACBENCuCoAP_AAEfAACiQJHNd_H__bX9n-f7_6ft0eY1f9_r37uQzDhfNk-8F3L_W_LwX_2E7NF36tq4KmR4ku1LBIUNtHMnUDUmxaokVrzHsak2cpzNKJ_BkknsZe2dYGF9vm5tj-QKZ7_5_d3f52T_9_9v-39z33913v3d93-_13LjdV5_9H_v9fR_b8_Kf9_5-_4v8_____3_e______8AEEggCTDVuIAuxLHAm0DCKBECMKwkKoFABBQDC0QGADg4KdlYBPrCBAAgFAEYEQIcAUYEAgAAAgCQiACQIsEAAAIgEAAIAEQiEABAwCCgAsDAIAAQDQMUQoABAkIMiAiKUwICIEggJbKhBKC6Q0wgCrLACgkRsFAAiAAAUgACAsHAMESAlYsECTFG-QAjBCgFEqFaAGGgAwABBI4RABgACCRwqADAAEEjgA";
    let tc = tcf::decode(s).unwrap();
    let m = &tc.model;
    assert_eq!((m.cmp_id, m.cmp_version, m.consent_screen), (14, 2, 1));
    assert_eq!(m.vendor_list_version, 174);
    assert_eq!(m.policy_version, 2);
    assert!(m.is_service_specific && !m.use_non_standard_texts && !m.purpose_one_treatment);
    assert_eq!(m.special_feature_optins.iter().collect::<Vec<_>>(), vec![1]);
    assert_eq!(
        m.purpose_consents.iter().collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        m.purpose_legitimate_interests.iter().collect::<Vec<_>>(),
        vec![2, 6, 7, 8, 9, 10]
    );
    assert_eq!(m.publisher_country_code.as_str(), "US");
    assert_eq!(m.vendor_consents.len(), 772);
    assert_eq!(m.vendor_legitimate_interests.len(), 280);
    assert_eq!(
        tc.warnings,
        vec![
            PolicyViolation::PolicyVersionTooLow { found: 2 },
            PolicyViolation::PurposeLegitimateInterest { purpose: 6 },
        ]
    );
}

/// iabgpp-es "decode": disclosed vendors as a range.
#[test]
fn tcf_disclosed_vendors_example() {
    let s = "CPcqBNJPcqBNJNwAAAENAwCAAAAAAAAAAAAAAAAAAAAA.YAAAAAAAAAA.QGLtV_T9fb2vj-_Z99_tkeYwf95y3p-wzhheMs-8NyZeH_B4Wv2MyvBX4JiQKGRgksjLBAQdtHGlcTQgBwIlViTLMYk2MjzNKJrJEilsbO2dYGD9Pn8HT3ZCY70-vv__7v3ff_3g.IGLtV_T9fb2vj-_Z99_tkeYwf95y3p-wzhheMs-8NyZeH_B4Wv2MyvBX4JiQKGRgksjLBAQdtHGlcTQgBwIlViTLMYk2MjzNKJrJEilsbO2dYGD9Pn8HT3ZCY70-vv__7v3ff_3g";
    let m = tcf::decode(s).unwrap().model;
    assert_eq!((m.cmp_id, m.vendor_list_version), (880, 48));
    let dv: Vec<u16> = m.vendors_disclosed.unwrap().iter().collect();
    assert_eq!(dv.len(), 434);
    assert_eq!(dv[..10], [1, 2, 4, 6, 8, 10, 11, 12, 13, 14]);
    assert_eq!(
        dv[dv.len() - 9..],
        [782, 783, 784, 785, 786, 788, 789, 790, 791]
    );
}

/// The GPP specification's examples. The TC string inside is the one every
/// GPP implementation tests with; its fields were cross-checked by an
/// independent decoding.
#[test]
fn gpp_spec_examples() {
    let tcf_part = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA";
    for s in [
        format!("DBABMA~{tcf_part}"),
        format!("DBACNY~{tcf_part}~1YNN"),
        format!("DBACNYA~{tcf_part}~1YNN"),
    ] {
        let g = gpp::decode(&s).unwrap();
        let m = g.tcf_eu_v2().unwrap();
        assert_eq!(m.created, ts("2022-04-20T22:00:00Z"));
        assert_eq!((m.cmp_id, m.cmp_version, m.consent_screen), (31, 640, 1));
        assert_eq!((m.vendor_list_version, m.policy_version), (126, 2));
        assert!(m.is_service_specific);
        assert_eq!(m.publisher_country_code.as_str(), "DE");
        assert!(m.purpose_consents.is_empty() && m.vendor_consents.is_empty());
        assert_eq!(
            g.warnings,
            vec![PolicyViolation::PolicyVersionTooLow { found: 2 }]
        );
        if s.contains("1YNN") {
            assert_eq!(g.section_ids(), vec![2, 6]);
            let u = g.usp_v1().unwrap();
            assert_eq!(
                (u.notice, u.opt_out_sale, u.lspa_covered),
                (UspFlag::Yes, UspFlag::No, UspFlag::No)
            );
        }
    }
}

/// GPP spec example with a usnat version-1 section and an unsupported
/// section (5, tcfcav1) that must survive re-encoding untouched.
#[test]
fn gpp_usnat_v1_and_unsupported_sections() {
    let s = "DBABzw~1YNN~BVVqAAEABCA.QA";
    let g = gpp::decode(s).unwrap();
    let u = g.us_section("usnat").unwrap();
    assert_eq!(u.version(), 1);
    assert_eq!(u.get("SharingNotice"), Some(&[1][..]));
    assert_eq!(u.get_int("SaleOptOut"), Some(2));
    assert_eq!(u.get_int("TargetedAdvertisingOptOut"), Some(2));
    assert_eq!(
        u.get("SensitiveDataProcessing"),
        Some(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0][..])
    );
    assert_eq!(u.get("KnownChildSensitiveDataConsents"), Some(&[0, 0][..]));
    assert_eq!(u.get_int("PersonalDataConsents"), Some(1));
    assert_eq!(u.get_int("MspaServiceProviderMode"), Some(2));
    assert_eq!(u.gpc, Some(false));
    assert_eq!(gpp::encode(&g).unwrap(), s);

    let s = "DBABjw~BPXuQIAPXuQIAAfKABENB-CgAAAAAAAAAAAAAAAA.YAAAAAAAAAA~1YNN";
    let g = gpp::decode(s).unwrap();
    assert_eq!(g.section_ids(), vec![5, 6]);
    assert!(matches!(&g.sections[0], Section::Unsupported { id: 5, .. }));
    assert_eq!(gpp::encode(&g).unwrap(), s);
}

/// iabgpp-es `UsNatV1.test.ts` encodings, rebuilt field by field.
#[test]
fn usnat_v1_library_examples() {
    let spec = gpp::us_section_spec(7).unwrap();
    let build = |ints: [u16; 13], sdp: [u16; 12], kcsdc: [u16; 2], gpc: bool| {
        let mut u = UsSection::new(spec);
        u.reset_to_version(1).unwrap();
        let names = [
            "SharingNotice",
            "SaleOptOutNotice",
            "SharingOptOutNotice",
            "TargetedAdvertisingOptOutNotice",
            "SensitiveDataProcessingOptOutNotice",
            "SensitiveDataLimitUseNotice",
            "SaleOptOut",
            "SharingOptOut",
            "TargetedAdvertisingOptOut",
            "PersonalDataConsents",
            "MspaCoveredTransaction",
            "MspaOptOutOptionMode",
            "MspaServiceProviderMode",
        ];
        for (n, v) in names.iter().zip(ints) {
            u.set(n, &[v]).unwrap();
        }
        u.set("SensitiveDataProcessing", &sdp).unwrap();
        u.set("KnownChildSensitiveDataConsents", &kcsdc).unwrap();
        u.gpc = Some(gpc);
        let g = gpp::GppString {
            sections: vec![Section::Us(u)],
            warnings: vec![],
        };
        let out = gpp::encode(&g).unwrap();
        out.split_once('~').unwrap().1.to_owned()
    };
    assert_eq!(
        build(
            [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 1, 2, 3],
            [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3],
            [0, 1],
            true
        ),
        "BbbbGxsbFbA.YA"
    );
    assert_eq!(
        build(
            [1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0],
            [0; 12],
            [0, 0],
            true
        ),
        "BVQVAAAAAUA.YA"
    );
}

#[test]
fn us_privacy_examples() {
    for s in ["1YNN", "1YYY", "1NNN", "1---", "1YN-"] {
        assert_eq!(usp::encode(&usp::decode(s).unwrap()), s);
    }
}
