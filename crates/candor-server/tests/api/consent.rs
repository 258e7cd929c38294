//! The consent API: off by default, per-purpose choices, accept/reject all, GPC,
//! history, receipts; and a model-based test of the state machine over HTTP.

use crate::helpers::*;
use serde_json::{json, Value};

fn status_of<'a>(body: &'a Value, purpose: &str) -> &'a Value {
    body["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == purpose)
        .unwrap()
}

#[tokio::test]
async fn everything_starts_refused() {
    let app = spawn().await;
    let r: Value = app
        .get_as_browser("/v1/consent?anonymousId=new-person")
        .await;
    let ps = r["purposes"].as_array().unwrap();
    assert_eq!(ps.len(), 5);
    for p in ps {
        assert_eq!(p["status"], "refused");
        assert_eq!(p["granted"], false);
        assert_eq!(p["recorded"], false);
    }
}

#[tokio::test]
async fn choices_accept_all_reject_all_and_history() {
    let app = spawn().await;
    let r = app
        .consent("a1", json!({"analytics": "grant", "loyalty": "refuse"}))
        .await;
    assert_eq!(status_of(&r, "analytics")["status"], "given");
    assert_eq!(status_of(&r, "loyalty")["status"], "refused");
    assert_eq!(status_of(&r, "personalization")["recorded"], false);
    assert_eq!(r["receipts"].as_array().unwrap().len(), 2);

    let r: Value = app
        .post(
            "/v1/consent/accept-all",
            BROWSER_KEY,
            json!({"anonymousId": "a1"}),
        )
        .await
        .json()
        .await
        .unwrap();
    for p in r["purposes"].as_array().unwrap() {
        assert_eq!(p["granted"], true, "{p}");
    }
    // analytics was already given under the same notice: no new record for it.
    assert_eq!(r["receipts"].as_array().unwrap().len(), 4);

    let r: Value = app
        .post(
            "/v1/consent/reject-all",
            BROWSER_KEY,
            json!({"anonymousId": "a1"}),
        )
        .await
        .json()
        .await
        .unwrap();
    for p in r["purposes"].as_array().unwrap() {
        assert_eq!(p["status"], "withdrawn", "{p}");
    }
    let h: Value = app
        .get_as_browser("/v1/consent/history?anonymousId=a1")
        .await;
    let recs = h["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2 + 4 + 5);
    let seqs: Vec<u64> = recs
        .iter()
        .map(|r| r["record"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(recs
        .iter()
        .all(|r| r["record"]["collectionMethod"] == "prompt"));
}

#[tokio::test]
async fn receipts_verify_and_detect_tampering() {
    let app = spawn().await;
    let r = app.consent("a1", json!({"ads_insights": "grant"})).await;
    let receipt = r["receipts"][0].clone();
    use candor_server::receipts::{parse_ring, verify, Trust};
    let ring = candor_core::ledger::KeyRing::single(app.state.signer.verifying_key());
    assert!(verify(&receipt.to_string(), Trust::Ring(&ring)).is_ok());
    // The record says who acted and which key signed it, inside the signed bytes.
    assert_eq!(receipt["record"]["actor"], "source:demo_web");
    assert_eq!(receipt["record"]["signingKeyId"], receipt["keyId"]);
    let published: Value = app
        .client
        .get(app.url("/v1/receipts/public-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(published["publicKey"], receipt["publicKey"]);
    // The published ring verifies it too; changing who acted is an alteration.
    let published_ring = parse_ring(&published.to_string()).unwrap();
    assert!(verify(&receipt.to_string(), Trust::Ring(&published_ring)).is_ok());
    let mut bad = receipt.clone();
    bad["record"]["actor"] = json!("admin");
    assert!(verify(&bad.to_string(), Trust::Ring(&ring)).is_err());
    let mut bad = receipt.clone();
    bad["record"]["status"] = json!("refused");
    assert!(verify(&bad.to_string(), Trust::Ring(&ring))
        .unwrap_err()
        .contains("altered"));
    let mut bad = receipt.clone();
    bad["record"]["noticeVersion"] = json!(7);
    assert!(verify(&bad.to_string(), Trust::Embedded).is_err());
}

#[tokio::test]
async fn gpc_refuses_sale_purposes_and_cannot_grant_them() {
    let app = spawn().await;
    let r: Value = app
        .client
        .post(app.url("/v1/consent/accept-all"))
        .basic_auth(BROWSER_KEY, Some(""))
        .header("sec-gpc", "1")
        .json(&json!({"anonymousId": "g1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status_of(&r, "ads_insights")["status"], "refused");
    assert_eq!(status_of(&r, "analytics")["status"], "given");
    assert_eq!(r["gpc"]["overridden"], json!(["ads_insights"]));
    let gpc_receipt = r["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["record"]["purpose"] == "ads_insights")
        .unwrap();
    assert_eq!(gpc_receipt["record"]["collectionMethod"], "gpc");
    assert_eq!(gpc_receipt["record"]["evidence"]["signal"], "Sec-GPC: 1");
    // An explicit grant with GPC on is overridden too.
    let r: Value = app
        .client
        .post(app.url("/v1/consent"))
        .basic_auth(BROWSER_KEY, Some(""))
        .header("sec-gpc", "1")
        .json(&json!({"anonymousId": "g1", "choices": {"ads_insights": "grant"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status_of(&r, "ads_insights")["granted"], false);
}

#[tokio::test]
async fn notice_version_and_withdraw_rules_change_nothing() {
    let app = spawn().await;
    let r = app
        .post("/v1/consent", BROWSER_KEY, json!({"anonymousId": "a1", "choices": {"analytics": "grant"}, "noticeVersions": {"analytics": 9}}))
        .await;
    assert_eq!(code_of(r).await, (409, "notice_version_mismatch".into()));
    let r = app
        .post(
            "/v1/consent",
            BROWSER_KEY,
            json!({"anonymousId": "a1", "choices": {"analytics": "grant", "loyalty": "withdraw"}}),
        )
        .await;
    assert_eq!(code_of(r).await, (409, "consent_not_given".into()));
    // Neither request left anything behind: no subject, no ledger record.
    let s = app.stats().await;
    assert_eq!(
        (s["subjects"].as_u64(), s["ledgerRecords"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    let r = app
        .post("/v1/consent", BROWSER_KEY, json!({"anonymousId": "a1", "choices": {"analytics": "grant"}, "noticeVersions": {"analytics": 1}}))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn ledger_verifies_through_admin_api() {
    let app = spawn().await;
    for i in 0..20 {
        app.consent(
            &format!("p{i}"),
            json!({"analytics": "grant", "loyalty": "refuse"}),
        )
        .await;
    }
    let v: Value = app.get_bearer("/v1/admin/ledger/verify", ADMIN).await;
    assert_eq!(v, json!({"ok": true, "records": 40}));
}

#[tokio::test]
async fn concurrent_consents_keep_one_valid_chain() {
    let app = spawn().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let c = app.client.clone();
        let url = app.url("/v1/consent");
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .basic_auth(BROWSER_KEY, Some(""))
                .json(&json!({"anonymousId": format!("c{}", i % 10), "choices": {"analytics": if i % 2 == 0 {"grant"} else {"refuse"}}}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let key = app.state.signer.verifying_key();
    let report = candor_server::ledger::verify(app.state.store.as_ref(), &key, &[])
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(app.stats().await["subjects"], 10);
}

/// One step of the model-based test below.
#[derive(Debug, Clone)]
enum Op {
    Choices(usize, Vec<(usize, &'static str)>),
    AcceptAll(usize),
    RejectAll(usize),
}

const PURPOSES: [&str; 5] = [
    "analytics",
    "personalization",
    "ads_insights",
    "email_marketing",
    "loyalty",
];

/// The consent state machine (`candor_core::consent::transition`) as a table: the
/// status after `action` from `now` (None = never recorded), or None for "no change",
/// or Err for a refusal of the whole request.
fn model(now: Option<&'static str>, action: &str) -> Result<Option<&'static str>, ()> {
    Ok(match (action, now) {
        ("grant", Some("given")) => None,
        ("grant", _) => Some("given"),
        ("refuse", Some("given")) => Some("withdrawn"),
        ("refuse", Some(_)) => None,
        ("refuse", None) => Some("refused"),
        ("withdraw", Some("given")) => Some("withdrawn"),
        _ => return Err(()),
    })
}

/// Random sequences of choices, accept-all and reject-all for three people, checked after
/// every step against the model: the state each purpose shows, whether a request was
/// refused whole (a withdrawal of something not given), and one ledger record per
/// change; the ledger verifies at the end.
#[test]
fn consent_follows_the_state_machine_over_any_sequence() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn());
    let action = prop::sample::select(vec!["grant", "refuse", "withdraw"]);
    let op = prop_oneof![
        4 => (0..3usize, prop::collection::vec((0..5usize, action), 1..4))
            .prop_map(|(s, c)| Op::Choices(s, c)),
        1 => (0..3usize).prop_map(Op::AcceptAll),
        1 => (0..3usize).prop_map(Op::RejectAll),
    ];
    let mut runner = runner(24);
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&prop::collection::vec(op, 1..40), |ops| {
            let c = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let who = |s: usize| format!("model-{c}-{s}");
            let mut state: Vec<[Option<&'static str>; 5]> = vec![[None; 5]; 3];
            let mut changes = [0usize; 3];
            for op in &ops {
                let (s, path, body, wanted): (usize, &str, Value, Vec<(usize, &str)>) = match op {
                    Op::Choices(s, cs) => {
                        let mut choices = serde_json::Map::new();
                        // the last choice for a purpose is the one sent (a JSON object)
                        let mut last: Vec<(usize, &str)> = Vec::new();
                        for (p, a) in cs {
                            choices.insert(PURPOSES[*p].into(), json!(a));
                            last.retain(|(q, _)| q != p);
                            last.push((*p, a));
                        }
                        (
                            *s,
                            "/v1/consent",
                            json!({"anonymousId": who(*s), "choices": choices}),
                            last,
                        )
                    }
                    Op::AcceptAll(s) => (
                        *s,
                        "/v1/consent/accept-all",
                        json!({"anonymousId": who(*s)}),
                        (0..5).map(|p| (p, "grant")).collect(),
                    ),
                    Op::RejectAll(s) => (
                        *s,
                        "/v1/consent/reject-all",
                        json!({"anonymousId": who(*s)}),
                        (0..5).map(|p| (p, "refuse")).collect(),
                    ),
                };
                let outcome: Result<Vec<(usize, Option<&'static str>)>, ()> = wanted
                    .iter()
                    .map(|(p, a)| model(state[s][*p], a).map(|n| (*p, n)))
                    .collect();
                let status =
                    rt.block_on(async { app.post(path, BROWSER_KEY, body).await.status() });
                match outcome {
                    Ok(next) => {
                        prop_assert_eq!(status.as_u16(), 200, "{:?}", op);
                        for (p, n) in next {
                            if let Some(n) = n {
                                state[s][p] = Some(n);
                                changes[s] += 1;
                            }
                        }
                    }
                    Err(()) => prop_assert_eq!(status.as_u16(), 409, "{:?}", op),
                }
                let shown: Value =
                    rt.block_on(app.get_as_browser(&format!("/v1/consent?anonymousId={}", who(s))));
                for (p, name) in PURPOSES.iter().enumerate() {
                    let row = status_of(&shown, name);
                    prop_assert_eq!(
                        row["status"].as_str(),
                        Some(state[s][p].unwrap_or("refused")),
                        "{} after {:?}",
                        name,
                        ops
                    );
                    prop_assert_eq!(row["recorded"].as_bool(), Some(state[s][p].is_some()));
                    prop_assert_eq!(row["granted"].as_bool(), Some(state[s][p] == Some("given")));
                }
            }
            for (s, n) in changes.iter().enumerate() {
                let h: Value = rt.block_on(
                    app.get_as_browser(&format!("/v1/consent/history?anonymousId={}", who(s))),
                );
                let got = h["records"].as_array().map_or(0, Vec::len);
                prop_assert_eq!(got, *n, "ledger records for {}", who(s));
            }
            Ok(())
        })
        .unwrap();
    let v: Value = rt.block_on(app.get_bearer("/v1/admin/ledger/verify", ADMIN));
    assert_eq!(v["ok"], true, "{v}");
}

/// Who acted is in every record, inside the signed bytes; each credential claims only
/// the channels it can vouch for; evidence is an allow-list of short tokens (issue 11,
/// part 2). Refusals change nothing.
#[tokio::test]
async fn records_name_the_actor_channels_follow_it_and_evidence_is_allow_listed() {
    let app = spawn().await;
    let token = app
        .client
        .post(app.url("/v1/admin/subject-tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"userId": "actor-user"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_token = |body: Value| {
        app.client
            .post(app.url("/v1/consent"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let grant = json!({"analytics": "grant"});
    // Channels a credential cannot vouch for are refused, nothing written.
    for (key, channel) in [
        (BROWSER_KEY, "email_confirmation"),
        (BROWSER_KEY, "api"),
        (BROWSER_KEY, "imported"),
        (BROWSER_KEY, "gpc"),
        (SERVER_KEY, "imported"),
    ] {
        let r = app
            .post(
                "/v1/consent",
                key,
                json!({"anonymousId": "ch", "choices": grant, "channel": channel}),
            )
            .await;
        assert_eq!(
            code_of(r).await,
            (400, "invalid_request".into()),
            "{channel}"
        );
    }
    let r = as_token(json!({"choices": grant, "channel": "email_confirmation"}))
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (400, "invalid_request".into()));
    // Evidence outside the allow-list, or that could hold personal data.
    for evidence in [
        json!({"email": "ann"}),
        json!({"form": "ann@example.com"}),
        json!({"campaign": "Ann Smith"}),
        json!({"prompt": "x".repeat(65)}),
    ] {
        let r = app
            .post(
                "/v1/consent",
                BROWSER_KEY,
                json!({"anonymousId": "ev", "choices": grant, "evidence": evidence}),
            )
            .await;
        assert_eq!(
            code_of(r).await,
            (400, "invalid_request".into()),
            "{evidence}"
        );
    }
    assert_eq!(app.stats().await["ledgerRecords"], 0);

    // Each credential is named in its records.
    let r = app
        .post(
            "/v1/consent",
            SERVER_KEY,
            json!({"userId": "srv", "choices": grant, "channel": "email_confirmation",
                   "evidence": {"confirmation": "msg-42"}}),
        )
        .await;
    let server: Value = r.json().await.unwrap();
    let browser = app.consent("who", json!({"analytics": "grant"})).await;
    let user: Value = as_token(json!({"choices": grant}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (body, actor, channel) in [
        (&server, "source:demo_backend", "email_confirmation"),
        (&browser, "source:demo_web", "prompt"),
        (&user, "subject-token", "preference_center"),
    ] {
        let rec = &body["receipts"][0]["record"];
        assert_eq!(rec["actor"], actor, "{body}");
        assert_eq!(rec["collectionMethod"], channel, "{body}");
        assert_eq!(rec["signingKeyId"], body["receipts"][0]["keyId"]);
    }
    assert_eq!(
        server["receipts"][0]["record"]["evidence"]["confirmation"],
        "msg-42"
    );
}
