//! Property tests: encode/decode are inverse on valid models, and no input,
//! however mangled, makes a decoder panic.

#![allow(clippy::unwrap_used)]

use candor_codec::gpp::{self, GppString, Section, UsSection};
use candor_codec::tcf::{
    self, IdBits, LetterCode, PublisherRestriction, PublisherTc, RestrictionType, TcModel,
    Timestamp, VendorSet, NO_LEGITIMATE_INTEREST_PURPOSES,
};
use candor_codec::timestamp::MAX_DECISECONDS;
use candor_codec::usp::{self, UsPrivacy, UspFlag};
use proptest::prelude::*;

/// Sets of every shape the range/bitfield choice cares about: sparse ids,
/// long runs, dense random bitfields, and the empty set.
fn vendor_set() -> impl Strategy<Value = VendorSet> {
    prop_oneof![
        Just(VendorSet::new()),
        prop::collection::vec(1..=3000u16, 0..40).prop_map(|v| v.into_iter().collect()),
        prop::collection::vec((1..3000u16, 0..300u16), 0..8).prop_map(|runs| {
            let mut s = VendorSet::new();
            for (start, len) in runs {
                s.insert_range(start, start.saturating_add(len));
            }
            s
        }),
        (prop::collection::vec(any::<bool>(), 0..400), 0..2000u16).prop_map(|(bits, offset)| {
            bits.iter()
                .enumerate()
                .filter(|(_, b)| **b)
                .map(|(i, _)| offset + i as u16 + 1)
                .collect()
        }),
        (1..=u16::MAX).prop_map(|id| [id].into_iter().collect()),
    ]
}

fn letters() -> impl Strategy<Value = LetterCode> {
    (b'A'..=b'Z', b'A'..=b'Z')
        .prop_map(|(a, b)| LetterCode::new(std::str::from_utf8(&[a, b]).unwrap()).unwrap())
}

/// Mask of the purposes that may carry legitimate interest.
fn li_allowed() -> u64 {
    NO_LEGITIMATE_INTEREST_PURPOSES
        .iter()
        .fold((1 << 24) - 1, |m, p| m & !(1u64 << (p - 1)))
}

fn restrictions() -> impl Strategy<Value = Vec<PublisherRestriction>> {
    prop::collection::btree_map((0..64u8, 0..4u8), vendor_set(), 0..5).prop_map(|m| {
        m.into_iter()
            .map(|((purpose_id, t), vendors)| PublisherRestriction {
                purpose_id,
                restriction_type: RestrictionType::from_code(t),
                vendors,
            })
            // Keep within policy: no "require LI" for consent-only purposes.
            .filter(|r| {
                !(r.restriction_type == RestrictionType::RequireLegitimateInterest
                    && NO_LEGITIMATE_INTEREST_PURPOSES.contains(&r.purpose_id))
            })
            .collect()
    })
}

fn publisher_tc() -> impl Strategy<Value = PublisherTc> {
    (
        0..1u64 << 24,
        0..1u64 << 24,
        0..64u8,
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(c, li, n, cc, cli)| {
            let mask = if n == 0 { 0 } else { u64::MAX >> (64 - n) };
            PublisherTc {
                consents: IdBits(c),
                legitimate_interests: IdBits(li & li_allowed()),
                num_custom_purposes: n,
                custom_consents: IdBits(cc & mask),
                custom_legitimate_interests: IdBits(cli & mask),
            }
        })
}

prop_compose! {
    fn header()(
        created in 0..=MAX_DECISECONDS,
        updated in 0..=MAX_DECISECONDS,
        cmp_id in 0..4096u16,
        cmp_version in 0..4096u16,
        screen in 0..64u8,
        lang in letters(),
        vlv in 0..4096u16,
        policy in 4..64u8,
        flags in any::<[bool; 3]>(),
        sf in 0..1u64 << 12,
        pc in 0..1u64 << 24,
        pli in 0..1u64 << 24,
        cc in letters(),
    ) -> TcModel {
        TcModel {
            version: 2,
            created: Timestamp::from_deciseconds(created),
            last_updated: Timestamp::from_deciseconds(updated),
            cmp_id,
            cmp_version,
            consent_screen: screen,
            consent_language: lang,
            vendor_list_version: vlv,
            policy_version: policy,
            is_service_specific: flags[0],
            use_non_standard_texts: flags[1],
            special_feature_optins: IdBits(sf),
            purpose_consents: IdBits(pc),
            purpose_legitimate_interests: IdBits(pli & li_allowed()),
            purpose_one_treatment: flags[2],
            publisher_country_code: cc,
            ..TcModel::default()
        }
    }
}

prop_compose! {
    fn model()(
        base in header(),
        vc in vendor_set(),
        vli in vendor_set(),
        restrictions in restrictions(),
        dv in prop::option::of(vendor_set()),
        ptc in prop::option::of(publisher_tc()),
    ) -> TcModel {
        TcModel {
            vendor_consents: vc,
            vendor_legitimate_interests: vli,
            publisher_restrictions: restrictions,
            vendors_disclosed: dv,
            publisher_tc: ptc,
            ..base
        }
    }
}

fn flag() -> impl Strategy<Value = UspFlag> {
    prop_oneof![
        Just(UspFlag::Yes),
        Just(UspFlag::No),
        Just(UspFlag::NotApplicable)
    ]
}

fn us_privacy() -> impl Strategy<Value = UsPrivacy> {
    (flag(), flag(), flag()).prop_map(|(notice, opt_out_sale, lspa_covered)| UsPrivacy {
        version: 1,
        notice,
        opt_out_sale,
        lspa_covered,
    })
}

fn usnat() -> impl Strategy<Value = UsSection> {
    (
        1..=2u8,
        prop::collection::vec(0..4u16, 32),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(version, values, gpc)| {
            let spec = gpp::us_section_spec(7).unwrap();
            let mut u = UsSection::new(spec);
            u.reset_to_version(version).unwrap();
            let mut it = values.into_iter();
            let fields: Vec<_> = u.fields().map(|(f, v)| (f.name, v.len())).collect();
            for (name, len) in fields {
                let v: Vec<u16> = it.by_ref().take(len).collect();
                u.set(name, &v).unwrap();
            }
            u.gpc = gpc;
            u
        })
}

fn gpp_string() -> impl Strategy<Value = GppString> {
    (
        prop::option::of(model()),
        prop::option::of(us_privacy()),
        prop::option::of(usnat()),
    )
        .prop_filter("at least one section", |(a, b, c)| {
            a.is_some() || b.is_some() || c.is_some()
        })
        .prop_map(|(t, u, n)| {
            let mut sections = Vec::new();
            if let Some(t) = t {
                sections.push(Section::TcfEuV2(t));
            }
            if let Some(u) = u {
                sections.push(Section::UspV1(u));
            }
            if let Some(n) = n {
                sections.push(Section::Us(n));
            }
            GppString {
                sections,
                warnings: Vec::new(),
            }
        })
}

/// Strings from the consent-string alphabets plus separators, the shapes
/// most likely to get deep into a decoder.
fn consentish() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.~=-]{0,300}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tcf_decode_inverts_encode(m in model()) {
        let s = tcf::encode(&m).unwrap();
        let back = tcf::decode(&s).unwrap();
        prop_assert!(back.warnings.is_empty());
        prop_assert_eq!(&back.model, &m);
        prop_assert_eq!(tcf::encode(&back.model).unwrap(), s);
    }

    #[test]
    fn gpp_decode_inverts_encode(g in gpp_string()) {
        let s = gpp::encode(&g).unwrap();
        let back = gpp::decode(&s).unwrap();
        prop_assert_eq!(&back, &g);
        prop_assert_eq!(gpp::encode(&back).unwrap(), s);
    }

    #[test]
    fn usp_decode_inverts_encode(u in us_privacy()) {
        prop_assert_eq!(usp::decode(&usp::encode(&u)).unwrap(), u);
    }

    #[test]
    fn decoders_never_panic_on_text(s in consentish()) {
        let _ = tcf::decode(&s);
        let _ = gpp::decode(&s);
        let _ = usp::decode(&s);
    }

    #[test]
    fn decoders_never_panic_on_bytes(b in prop::collection::vec(any::<u8>(), 0..400)) {
        let s = String::from_utf8_lossy(&b);
        let _ = tcf::decode(&s);
        let _ = gpp::decode(&s);
        let _ = usp::decode(&s);
    }

    /// Valid strings, then damaged: truncated, a character replaced, or a
    /// separator inserted. Whatever decodes must re-encode without panicking.
    #[test]
    fn damaged_valid_strings_never_panic(
        g in gpp_string(),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        ch in prop::sample::select(b"A_-9z.~=+/".to_vec()),
    ) {
        let s = gpp::encode(&g).unwrap();
        let mut damaged = s.clone().into_bytes();
        let i = at.index(damaged.len());
        damaged[i] = ch;
        let damaged = String::from_utf8(damaged).unwrap();
        let truncated = &s[..cut.index(s.len())];
        for candidate in [damaged.as_str(), truncated] {
            if let Ok(g) = gpp::decode(candidate) {
                let _ = gpp::encode(&g);
            }
            let tcf_part = candidate.split('~').nth(1).unwrap_or(candidate);
            if let Ok(t) = tcf::decode(tcf_part) {
                let _ = tcf::encode_unchecked(&t.model);
            }
        }
    }
}
