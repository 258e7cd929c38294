//! IAB consent strings: emitted for a subject's consent, and imported as evidence.

use crate::helpers::*;
use candor_codec::gpp::{GppString, Section};
use candor_codec::tcf::{self, TcModel};
use candor_codec::usp::UspFlag;
use serde_json::{json, Value};

async fn state(app: &TestApp, anon: &str) -> Value {
    app.get_as_browser(&format!("/v1/consent?anonymousId={anon}"))
        .await
}

fn ids(bits: candor_codec::tcf::IdBits) -> Vec<u8> {
    bits.iter().collect()
}

#[tokio::test]
async fn consent_is_emitted_as_tc_gpp_and_us_privacy_strings() {
    let app = spawn().await;
    let nobody = state(&app, "nobody").await;
    assert_eq!(nobody["signals"]["usPrivacy"], "1YYN");
    let tc = tcf::decode(nobody["signals"]["tcString"].as_str().unwrap()).unwrap();
    assert!(tc.model.purpose_consents.is_empty() && tc.model.vendor_consents.is_empty());

    let r = app
        .consent("s1", json!({"analytics": "grant", "ads_insights": "grant"}))
        .await;
    // Receipts carry the strings too.
    assert_eq!(r["receipts"][0]["signals"], r["signals"]);
    let s = state(&app, "s1").await;
    let tc = tcf::decode(s["signals"]["tcString"].as_str().unwrap()).unwrap();
    assert!(tc.warnings.is_empty(), "{:?}", tc.warnings);
    // analytics → 1, 8, 9, 10; ads_insights → 1, 7, 9. No legitimate interests, ever.
    assert_eq!(ids(tc.model.purpose_consents), vec![1, 7, 8, 9, 10]);
    assert!(tc.model.purpose_legitimate_interests.is_empty());
    // Demo vendors whose every declared purpose (and special feature) was consented.
    assert_eq!(
        tc.model.vendor_consents.iter().collect::<Vec<_>>(),
        vec![8, 21, 77]
    );
    assert!(tc.model.vendor_legitimate_interests.is_empty());
    assert_eq!(tc.model.vendor_list_version, 120);
    assert_eq!(s["signals"]["usPrivacy"], "1YNN");
    let g = candor_codec::gpp::decode(s["signals"]["gppString"].as_str().unwrap()).unwrap();
    assert_eq!(g.section_ids(), vec![2, 6, 7]);
    assert_eq!(
        g.tcf_eu_v2().unwrap().purpose_consents,
        tc.model.purpose_consents
    );
    let usnat = g.us_section("usnat").unwrap();
    assert_eq!(usnat.get_int("SaleOptOut"), Some(2));
    assert_eq!(usnat.get_int("SharingOptOut"), Some(2));
    assert_eq!(usnat.get_int("TargetedAdvertisingOptOut"), Some(0));

    app.consent("s1", json!({"ads_insights": "withdraw"})).await;
    let s = state(&app, "s1").await;
    assert_eq!(s["signals"]["usPrivacy"], "1YYN");
    let g = candor_codec::gpp::decode(s["signals"]["gppString"].as_str().unwrap()).unwrap();
    assert_eq!(
        g.us_section("usnat").unwrap().get_int("SaleOptOut"),
        Some(1)
    );
    assert_eq!(g.usp_v1().unwrap().opt_out_sale, UspFlag::Yes);
}

fn tc_string(cmp_id: u16, purposes: &[u8]) -> String {
    let mut m = TcModel {
        cmp_id,
        cmp_version: 3,
        vendor_list_version: 120,
        policy_version: 5,
        ..TcModel::default()
    };
    for p in purposes {
        m.purpose_consents.insert(*p);
    }
    tcf::encode(&m).unwrap()
}

async fn import(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.post("/v1/consent/signals", SERVER_KEY, body).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn an_untrusted_string_only_narrows() {
    let app = spawn().await;
    app.consent(
        "n1",
        json!({"analytics": "grant", "personalization": "grant"}),
    )
    .await;
    // Purposes 1, 5, 6 consented (personalization's), not 8/9/10 (analytics').
    let (status, r) = import(
        &app,
        json!({"anonymousId": "n1", "tcString": tc_string(999, &[1, 5, 6, 7, 9])}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let by = |p: &str| {
        r["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["purpose"] == p)
            .unwrap()
            .clone()
    };
    assert_eq!(by("analytics")["status"], "withdrawn");
    assert_eq!(by("personalization")["status"], "given");
    // ads_insights (1, 7, 9) is fully consented in the string, but the CMP is not
    // trusted: nothing is granted.
    assert_eq!(by("ads_insights")["granted"], false);
    let rec = &r["receipts"][0]["record"];
    assert_eq!(rec["collectionMethod"], "imported");
    assert_eq!(rec["evidence"]["signal"], "tcf");
    assert_eq!(rec["evidence"]["cmpId"], "999");
}

#[tokio::test]
async fn a_trusted_cmp_can_grant() {
    let app = spawn_with("[iab]\ntrusted_cmp_ids = [777]\n").await;
    let (status, r) = import(
        &app,
        json!({"anonymousId": "t1", "tcString": tc_string(777, &[1, 7, 9])}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let ads = r["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["purpose"] == "ads_insights")
        .unwrap()
        .clone();
    assert_eq!(ads["granted"], true);
}

#[tokio::test]
async fn gpp_and_us_privacy_opt_outs_refuse_sale_purposes() {
    let app = spawn().await;
    app.consent("g1", json!({"ads_insights": "grant", "analytics": "grant"}))
        .await;
    // A GPP string with only a US Privacy section saying "opted out of sale".
    let usp = candor_codec::usp::decode("1YYN").unwrap();
    let gpp = candor_codec::gpp::encode(&GppString {
        sections: vec![Section::UspV1(usp)],
        warnings: vec![],
    })
    .unwrap();
    let (status, r) = import(&app, json!({"anonymousId": "g1", "gppString": gpp})).await;
    assert_eq!(status, 200, "{r}");
    let granted: Vec<&str> = r["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["granted"] == true)
        .map(|p| p["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(granted, vec!["analytics"]);
    // A bare US Privacy string that does not opt out changes nothing.
    let (status, r) = import(&app, json!({"anonymousId": "g1", "usPrivacy": "1YNN"})).await;
    assert_eq!(status, 200);
    assert!(r.get("receipts").is_none(), "{r}");
}

#[tokio::test]
async fn bad_strings_are_refused_and_change_nothing() {
    let app = spawn().await;
    for (body, code) in [
        (
            json!({"anonymousId": "b1", "tcString": "not a tc string!"}),
            "invalid_consent_string",
        ),
        (
            json!({"anonymousId": "b1", "gppString": "DBAB~"}),
            "invalid_consent_string",
        ),
        (
            json!({"anonymousId": "b1", "usPrivacy": "2YNN"}),
            "invalid_consent_string",
        ),
        (
            json!({"anonymousId": "b1", "tcString": "x".repeat(200_000)}),
            "invalid_consent_string",
        ),
        (
            json!({"anonymousId": "b1", "tcString": tc_string(1, &[1]), "usPrivacy": "1YNN"}),
            "invalid_request",
        ),
        (json!({"anonymousId": "b1"}), "invalid_request"),
    ] {
        let (status, r) = import(&app, body).await;
        assert_eq!((status, r["code"].as_str().unwrap()), (400, code), "{r}");
    }
    let s = app.stats().await;
    assert_eq!(
        (s["subjects"].as_u64(), s["ledgerRecords"].as_u64()),
        (Some(0), Some(0))
    );
    // A browser key may not import at all: the `imported` channel is the operator's
    // backend's to claim (issue 11).
    for body in [
        json!({"userId": "u", "usPrivacy": "1YYN"}),
        json!({"anonymousId": "a", "usPrivacy": "1YYN"}),
    ] {
        let r = app.post("/v1/consent/signals", BROWSER_KEY, body).await;
        assert_eq!(code_of(r).await, (403, "forbidden".into()));
    }
}
