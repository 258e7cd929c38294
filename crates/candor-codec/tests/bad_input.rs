//! Hostile and broken input: every case must be a typed error, never a
//! panic, and must not cost memory in proportion to a claimed length.

#![allow(clippy::unwrap_used)]

use candor_codec::{gpp, tcf, usp, Error, MAX_INPUT_LEN};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url of a '0'/'1' string, zero-padded to 24 bits like TCF.
fn b64(bits: &str) -> String {
    let mut b = bits.to_owned();
    while b.len() % 24 != 0 {
        b.push('0');
    }
    b.as_bytes()
        .chunks(6)
        .map(|c| {
            let v = c
                .iter()
                .fold(0usize, |acc, bit| acc * 2 + usize::from(*bit == b'1'));
            ALPHABET[v] as char
        })
        .collect()
}

fn num(v: u64, width: usize) -> String {
    format!("{v:0width$b}")
}

/// A core segment whose vendor-consent section is `vendor_bits`.
fn core_with_vendor_section(vendor_bits: &str) -> String {
    let mut s = String::new();
    s += &num(2, 6); // Version
    s += &num(16_000_000_000, 36); // Created
    s += &num(16_000_000_000, 36); // LastUpdated
    s += &(num(7, 12) + &num(1, 12) + &num(0, 6)); // CmpId, CmpVersion, ConsentScreen
    s += &(num(4, 6) + &num(13, 6)); // "EN"
    s += &(num(100, 12) + &num(4, 6)); // VendorListVersion, TcfPolicyVersion
    s += "00"; // IsServiceSpecific, UseNonStandardTexts
    s += &"0".repeat(12 + 24 + 24 + 1);
    s += &(num(3, 6) + &num(4, 6)); // "DE"
    s += vendor_bits;
    s += &"0".repeat(17); // empty vendor LI
    s += &"0".repeat(12); // no restrictions
    s
}

#[test]
fn valid_helper_string_decodes() {
    let s = b64(&core_with_vendor_section(&(num(3, 16) + "0" + "101")));
    let m = tcf::decode(&s).unwrap().model;
    assert_eq!(m.vendor_consents.iter().collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(m.publisher_country_code.as_str(), "DE");
}

#[test]
fn empty_and_huge_inputs() {
    assert_eq!(tcf::decode("").unwrap_err(), Error::Empty);
    assert_eq!(gpp::decode("").unwrap_err(), Error::Empty);
    let huge = "A".repeat(1 << 20);
    for e in [
        tcf::decode(&huge).unwrap_err(),
        gpp::decode(&huge).unwrap_err(),
    ] {
        assert_eq!(
            e,
            Error::InputTooLong {
                len: 1 << 20,
                max: MAX_INPUT_LEN
            }
        );
    }
    let huge_usp = "1YNN".to_owned() + &huge;
    assert!(matches!(
        usp::decode(&huge_usp),
        Err(Error::UsPrivacy { position: 4, .. })
    ));
}

#[test]
fn truncated_strings() {
    let s = b64(&core_with_vendor_section(&(num(3, 16) + "0" + "101")));
    for cut in [1, 5, 20, 35, s.len() - 4] {
        let e = tcf::decode(&s[..cut]).unwrap_err();
        assert!(matches!(e, Error::Truncated { .. }), "cut {cut}: {e:?}");
    }
}

#[test]
fn wrong_version() {
    // A TCF v1 consent string.
    assert_eq!(
        tcf::decode("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA").unwrap_err(),
        Error::UnsupportedVersion(1)
    );
    assert_eq!(
        tcf::decode("AAAA").unwrap_err(),
        Error::UnsupportedVersion(0)
    );
}

#[test]
fn invalid_characters() {
    let e = tcf::decode("CPXxRfAPXxRf+AfKABENB").unwrap_err();
    assert_eq!(
        e,
        Error::InvalidCharacter {
            segment: 0,
            position: 12,
            ch: '+'
        }
    );
    let e = tcf::decode("CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA.IA/A").unwrap_err();
    assert!(matches!(
        e,
        Error::InvalidCharacter {
            segment: 1,
            position: 2,
            ch: '/'
        }
    ));
    assert!(matches!(
        gpp::decode("DBABMA~CP\u{0}"),
        Err(Error::InvalidCharacter { .. })
    ));
}

#[test]
fn unknown_duplicate_and_empty_segments() {
    let core = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA";
    // 'o' = 101000: segment type 5.
    assert_eq!(
        tcf::decode(&format!("{core}.oAAA")).unwrap_err(),
        Error::UnknownSegmentType {
            segment: 1,
            segment_type: 5
        }
    );
    assert_eq!(
        tcf::decode(&format!("{core}.IAAA.IAAA")).unwrap_err(),
        Error::DuplicateSegment {
            segment: 2,
            segment_type: 1
        }
    );
    assert_eq!(
        tcf::decode(&format!("{core}.")).unwrap_err(),
        Error::EmptySegment { segment: 1 }
    );
    // A second core segment (type 0) is not an optional segment.
    assert!(matches!(
        tcf::decode(&format!("{core}.{core}")),
        Err(Error::UnknownSegmentType {
            segment_type: 0,
            ..
        })
    ));
}

#[test]
fn claimed_but_absent_bitfield() {
    // MaxVendorId 65535, bitfield encoding, and no bits behind it.
    let s = b64(&(core_with_vendor_section("")[..213].to_owned() + &num(65535, 16) + "0"));
    let e = tcf::decode(&s).unwrap_err();
    assert!(matches!(e, Error::Truncated { needed: 65535, .. }), "{e:?}");
}

#[test]
fn range_entries_beyond_max_vendor_id() {
    // MaxVendorId 10, one range entry 5-700.
    let vendor = num(10, 16) + "1" + &num(1, 12) + "1" + &num(5, 16) + &num(700, 16);
    let e = tcf::decode(&b64(&core_with_vendor_section(&vendor))).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IdOutOfRange {
                id: 700,
                max: 10,
                ..
            }
        ),
        "{e:?}"
    );
    // MaxVendorId 65535 and a range up to it is legitimate (and compact).
    let vendor = num(65535, 16) + "1" + &num(1, 12) + "1" + &num(1, 16) + &num(65535, 16);
    let m = tcf::decode(&b64(&core_with_vendor_section(&vendor)))
        .unwrap()
        .model;
    assert_eq!(m.vendor_consents.len(), 65535);
    assert_eq!(tcf::encode(&m).map(|s| s.len() < 100), Ok(true));
}

#[test]
fn reversed_and_zero_ranges() {
    let vendor = num(100, 16) + "1" + &num(1, 12) + "1" + &num(50, 16) + &num(20, 16);
    let e = tcf::decode(&b64(&core_with_vendor_section(&vendor))).unwrap_err();
    assert!(
        matches!(
            e,
            Error::RangeReversed {
                start: 50,
                end: 20,
                ..
            }
        ),
        "{e:?}"
    );
    let vendor = num(100, 16) + "1" + &num(1, 12) + "0" + &num(0, 16);
    let e = tcf::decode(&b64(&core_with_vendor_section(&vendor))).unwrap_err();
    assert!(matches!(e, Error::IdOutOfRange { id: 0, .. }), "{e:?}");
}

#[test]
fn many_claimed_range_entries() {
    // 4095 entries claimed, none present (only segment padding follows,
    // which reads as an entry for vendor 0).
    let vendor = num(100, 16) + "1" + &num(4095, 12);
    let bits = core_with_vendor_section("")[..213].to_owned() + &vendor;
    let e = tcf::decode(&b64(&bits)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Truncated { .. } | Error::IdOutOfRange { id: 0, .. }
        ),
        "{e:?}"
    );
}

#[test]
fn bad_letters() {
    let mut bits = core_with_vendor_section(&(num(0, 16) + "0"));
    // ConsentLanguage first letter := 63.
    bits.replace_range(108..114, "111111");
    let e = tcf::decode(&b64(&bits)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidLetter {
                value: 63,
                offset: 108,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn gpp_header_problems() {
    assert_eq!(
        gpp::decode("BBABMA~x").unwrap_err(),
        Error::GppHeaderType(1)
    );
    assert_eq!(gpp::decode("DCABMA~x").unwrap_err(), Error::GppVersion(2));
    // Header lists 2 and 6 but one section follows.
    assert!(matches!(
        gpp::decode("DBACNYA~1YNN"),
        Err(Error::SectionCountMismatch { .. })
    ));
    // Header lists one section, two follow.
    assert!(matches!(
        gpp::decode("DBABTA~1YNN~1YNN"),
        Err(Error::SectionCountMismatch {
            listed: 1,
            found: 2
        })
    ));
    assert_eq!(
        gpp::decode("DBABTA~").unwrap_err(),
        Error::EmptySegment { segment: 1 }
    );
    assert!(matches!(
        gpp::decode("DBABTA~1YN"),
        Err(Error::UsPrivacy { .. })
    ));
}

#[test]
fn gpp_header_claiming_huge_range() {
    // One group, a range from id 1 spanning 60000 ids (Fibonacci deltas 1
    // and 59999), with a single section behind it: refused by count, without
    // building a 60000-entry list.
    let mut bits = num(3, 6) + &num(1, 6) + &num(1, 12) + "1" + "11";
    let mut rest = 59_999u32;
    let fib = {
        let mut f = vec![1u32, 2];
        while f.len() < 30 {
            let n = f[f.len() - 1] + f[f.len() - 2];
            f.push(n);
        }
        f
    };
    let mut code = [false; 30];
    for i in (0..30).rev() {
        if fib[i] <= rest {
            rest -= fib[i];
            code[i] = true;
        }
    }
    let top = code.iter().rposition(|b| *b).unwrap();
    for b in &code[..=top] {
        bits.push(if *b { '1' } else { '0' });
    }
    bits.push('1');
    let header = b64(&bits);
    let e = gpp::decode(&format!("{header}~1YNN")).unwrap_err();
    assert!(
        matches!(e, Error::SectionCountMismatch { found: 1, .. }),
        "{e:?}"
    );
}

#[test]
fn usnat_problems() {
    // Version 3 is unknown.
    assert!(matches!(
        gpp::decode("DBABLA~DVVqAAEABCA"),
        Err(Error::UnsupportedSectionVersion {
            section: "usnat",
            version: 3
        })
    ));
    // GPC subsection of the wrong type, and a third segment.
    assert!(matches!(
        gpp::decode("DBABLA~BVVqAAEABCA.gA"),
        Err(Error::UnexpectedSegment { .. })
    ));
    assert!(matches!(
        gpp::decode("DBABLA~BVVqAAEABCA.QA.QA"),
        Err(Error::UnexpectedSegment { segment: 2, .. })
    ));
    assert!(matches!(
        gpp::decode("DBABLA~BVVq"),
        Err(Error::Truncated { .. })
    ));
}

#[test]
fn encoder_refuses_out_of_range_models() {
    let mut m = tcf::decode("CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA")
        .unwrap()
        .model;
    m.policy_version = 4;
    assert!(tcf::encode(&m).is_ok());
    let mut bad = m.clone();
    bad.cmp_id = 5000;
    assert!(matches!(
        tcf::encode(&bad),
        Err(Error::ValueOutOfRange { field: "CmpId", .. })
    ));
    let mut bad = m.clone();
    bad.purpose_consents = tcf::IdBits(1 << 30);
    assert!(matches!(tcf::encode(&bad), Err(Error::IdOutOfRange { .. })));
    let mut bad = m.clone();
    bad.purpose_legitimate_interests.insert(3);
    assert_eq!(
        tcf::encode(&bad),
        Err(Error::Policy(
            tcf::PolicyViolation::PurposeLegitimateInterest { purpose: 3 }
        ))
    );
    let mut bad = m.clone();
    let r = tcf::PublisherRestriction {
        purpose_id: 2,
        restriction_type: tcf::RestrictionType::RequireConsent,
        vendors: [1u16].into_iter().collect(),
    };
    bad.publisher_restrictions = vec![r.clone(), r];
    assert!(matches!(
        tcf::encode(&bad),
        Err(Error::DuplicateRestriction { .. })
    ));
    let mut bad = m;
    bad.version = 1;
    assert_eq!(tcf::encode(&bad), Err(Error::UnsupportedVersion(1)));
}
