//! Bad input gets its stable error code and changes nothing; generated requests to every
//! endpoint never get a server error.

use crate::helpers::*;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use reqwest::Response;
use serde_json::{json, Value};
use std::io::Write;

async fn raw(app: &TestApp, path: &str, body: Vec<u8>, gzip: bool) -> Response {
    let mut req = app
        .client
        .post(app.url(path))
        .basic_auth(SERVER_KEY, Some(""))
        .header("content-type", "application/json");
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    req.body(body).send().await.unwrap()
}

#[tokio::test]
async fn each_bad_input_has_its_code_and_stores_nothing() {
    let app = spawn().await;
    app.consent("a1", json!({"analytics": "grant"})).await;
    let before = app.stats().await;
    let big_prop = "x".repeat(33 * 1024);
    let huge_batch: Vec<Value> = (0..20)
        .map(|i| json!({"type": "track", "event": "e", "anonymousId": "a1", "properties": {"p": "y".repeat(30 * 1024)}, "messageId": i.to_string()}))
        .collect();
    let cases: Vec<(&str, Vec<u8>, bool, u16, &str)> = vec![
        ("/v1/batch", b"{not json".to_vec(), false, 400, "invalid_json"),
        ("/v1/batch", b"".to_vec(), false, 400, "invalid_json"),
        ("/v1/batch", br#"{"batch": 5}"#.to_vec(), false, 400, "invalid_request"),
        ("/v1/batch", br#"{"batch":[{"type":"track","event":"e","anonymousId":"a1"},{"type":"track","anonymousId":"a1"}]}"#.to_vec(), false, 400, "invalid_message"),
        ("/v1/batch", br#"{"batch":[{"type":"track","event":"e","anonymousId":"a1","properties":"no"}]}"#.to_vec(), false, 400, "invalid_message"),
        ("/v1/batch", br#"{"batch":[{"type":"track","event":"e","anonymousId":"a1","timestamp":12}]}"#.to_vec(), false, 400, "invalid_message"),
        ("/v1/batch", json!({"batch": huge_batch}).to_string().into_bytes(), false, 413, "batch_too_large"),
        ("/v1/batch", b"\x1f\x8b\x08garbage".to_vec(), true, 400, "invalid_gzip"),
        ("/v1/batch", b"{\"batch\":[{\"type\":\"track\",\"event\":\"\xff\xfe\",\"anonymousId\":\"a1\"}]}".to_vec(), false, 400, "invalid_utf8"),
        ("/v1/track", json!({"event": "e", "anonymousId": "a1", "properties": {"p": big_prop}}).to_string().into_bytes(), false, 413, "event_too_large"),
        ("/v1/track", br#"{"anonymousId":"a1"}"#.to_vec(), false, 400, "invalid_message"),
        ("/v1/track", br#"{"type":"page","event":"e","anonymousId":"a1"}"#.to_vec(), false, 400, "invalid_message"),
        ("/v1/track", br#"[1,2]"#.to_vec(), false, 400, "invalid_request"),
        ("/v1/consent", br#"{"anonymousId":"a1","choices":{"telepathy":"grant"}}"#.to_vec(), false, 400, "unknown_purpose"),
        ("/v1/consent", br#"{"anonymousId":"a1","choices":{"analytics":"maybe"}}"#.to_vec(), false, 400, "invalid_request"),
        ("/v1/consent", br#"{"anonymousId":"a1","choices":{"analytics":"grant"},"surprise":1}"#.to_vec(), false, 400, "invalid_request"),
        ("/v1/consent", br#"{"anonymousId":"a1","choices":{"analytics":"grant"},"channel":"gpc"}"#.to_vec(), false, 400, "invalid_request"),
        ("/v1/consent", br#"{"choices":{"analytics":"grant"}}"#.to_vec(), false, 400, "invalid_request"),
        ("/v1/consent", br#"{"anonymousId":"a1","choices":{}}"#.to_vec(), false, 400, "invalid_request"),
    ];
    for (path, body, gzip, status, code) in cases {
        let r = raw(&app, path, body, gzip).await;
        let (s, c) = code_of(r).await;
        assert_eq!((s, c.as_str()), (status, code), "{path} expected {code}");
    }
    // A batch error lists each bad message with its index.
    let r = raw(&app, "/v1/batch", br#"{"batch":[{"type":"track","event":"e","anonymousId":"a1"},{"type":"track","anonymousId":"a1"}]}"#.to_vec(), false).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["index"], 1);
    assert_eq!(v["errors"].as_array().unwrap().len(), 1);
    let r = app
        .client
        .post(app.url("/v1/batch"))
        .basic_auth(SERVER_KEY, Some(""))
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (415, "unsupported_encoding".into()));
    assert_eq!(app.stats().await, before, "bad input changed the store");
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_at_the_limit() {
    let app = spawn().await;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(br#"{"batch":["#).unwrap();
    gz.write_all(&vec![b' '; 50 * 1024 * 1024]).unwrap();
    let r = raw(&app, "/v1/batch", gz.finish().unwrap(), true).await;
    assert_eq!(code_of(r).await, (413, "batch_too_large".into()));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9 _-]{0,12}".prop_map(Value::String),
        Just(json!("track")),
        Just(json!("a1")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("event".to_string()),
                    Just("anonymousId".to_string()),
                    Just("userId".to_string()),
                    Just("properties".to_string()),
                    Just("context".to_string()),
                    Just("timestamp".to_string()),
                    Just("batch".to_string()),
                    "[a-z]{1,6}".prop_map(String::from)
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn arbitrary_payloads_never_break_the_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn());
    let codes: Vec<&str> = candor_server::error::TABLE.iter().map(|r| r.1).collect();
    let mut runner = runner(300);
    let strategy = (
        arb_json(),
        prop::sample::select(vec![
            "/v1/batch",
            "/v1/track",
            "/v1/identify",
            "/v1/consent",
            "/v1/alias",
        ]),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(v, path, as_batch)| {
            let body = if as_batch && path == "/v1/batch" {
                json!({"batch": [v]})
            } else {
                v
            };
            let (status, code) =
                rt.block_on(async { code_of(app.post(path, SERVER_KEY, body).await).await });
            prop_assert!(
                status == 200 || (400..500).contains(&status),
                "status {}",
                status
            );
            if status != 200 {
                prop_assert!(codes.contains(&code.as_str()), "unknown code {}", code);
            }
            Ok(())
        })
        .unwrap();
    // Nothing was ever granted, so nothing may have been stored.
    let stats = rt.block_on(app.stats());
    assert_eq!(stats["events"], 0);
}

/// A request the generator builds: method, path (with a query string for reads), who
/// sends it, and the body.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    who: &'static str,
    body: Value,
}

/// Requests to every endpoint the ingestion test above does not cover: consent signals,
/// accept/reject-all, subject tokens, advertisers, the prompt's counts, variants, lint
/// and preview, and the paged reads with generated query strings. Bodies are random JSON or a valid body with a field replaced.
fn arb_request() -> impl Strategy<Value = Req> {
    let text = prop_oneof![
        "[a-zA-Z0-9_-]{0,40}".prop_map(|s| json!(s)),
        Just(json!("CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA")),
        Just(json!("DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA")),
        Just(json!("1YNN")),
        Just(json!("")),
        any::<i64>().prop_map(|n| json!(n)),
        Just(Value::Null),
    ];
    let valid_bodies = vec![
        (
            "POST",
            "/v1/consent/signals",
            "server",
            json!({"anonymousId": "p1", "tcString": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"}),
        ),
        (
            "POST",
            "/v1/consent/accept-all",
            "server",
            json!({"anonymousId": "p1"}),
        ),
        (
            "POST",
            "/v1/consent/reject-all",
            "server",
            json!({"anonymousId": "p1"}),
        ),
        (
            "POST",
            "/v1/admin/subject-tokens",
            "admin",
            json!({"userId": "u1", "ttlSeconds": 60}),
        ),
        (
            "POST",
            "/v1/admin/advertisers",
            "admin",
            json!({"id": "acme", "name": "Acme", "budget": {"epsilon": 1.0, "delta": 1e-6}, "period": "month", "features": ["app_usage"], "dimensions": ["category"]}),
        ),
        (
            "PATCH",
            "/v1/admin/advertisers/acme",
            "admin",
            json!({"name": "Acme 2", "budget": {"epsilon": 2.0}, "disabled": false}),
        ),
        (
            "POST",
            "/v1/consent/accept-all",
            "server",
            json!({"anonymousId": "p2", "noticeLanguage": "fr", "noticeVersions": {"analytics": 1}}),
        ),
        (
            "POST",
            "/v1/prompt/events",
            "server",
            json!({"variant": "standard", "event": "choice", "action": "choose", "purposes": {"analytics": true}}),
        ),
        (
            "POST",
            "/v1/admin/prompt/variants",
            "admin",
            json!({"variant": {"id": "v1", "layout": "bar", "buttons": ["reject", "accept", "choose"]}, "rendered": crate::prompt::fair_rendering(), "active": true}),
        ),
        (
            "POST",
            "/v1/admin/prompt/lint",
            "admin",
            json!({"variant": {"id": "v2", "preticked": ["analytics"], "texts": {"fr": {"title": "t"}}}, "rendered": crate::prompt::fair_rendering()}),
        ),
        (
            "POST",
            "/v1/admin/prompt/preview",
            "admin",
            json!({"variant": {"id": "v3", "css": ".bt { gap: 1rem }"}, "lang": "de"}),
        ),
        (
            "PATCH",
            "/v1/admin/prompt/variants/v1",
            "admin",
            json!({"active": false, "weight": 2}),
        ),
        (
            "POST",
            "/v1/admin/subject-links",
            "admin",
            json!({"userId": "u1", "ttlSeconds": 60}),
        ),
        // Issue 14: segments, personalization, loyalty.
        (
            "PUT",
            "/v1/admin/segments/gen",
            "admin",
            json!({"purpose": "personalization", "text": "field.shoe_size > 40 and seen(track \"App Session\") within 7 days", "description": "d"}),
        ),
        (
            "POST",
            "/v1/admin/segments/validate",
            "admin",
            json!({"purpose": "personalization", "rule": {"and": [{"field": "age_band", "op": "eq", "value": "25-34"}, {"not": {"usage": {"type": "track", "event": "App Session"}, "measure": "days", "window_days": 30, "op": "ge", "value": 3}}]}}),
        ),
        (
            "POST",
            "/v1/personalize",
            "server",
            json!({"userId": "u1", "placement": "home", "limit": 3}),
        ),
        (
            "POST",
            "/v1/loyalty/transactions",
            "server",
            json!({"userId": "u1", "type": "earn", "points": 10, "idempotencyKey": "k1", "reason": "r"}),
        ),
        (
            "POST",
            "/v1/me/loyalty/redeem",
            "server",
            json!({"userId": "u1", "reward": "coffee", "idempotencyKey": "k2"}),
        ),
        (
            "POST",
            "/v1/admin/loyalty/adjustments",
            "admin",
            json!({"userId": "u1", "points": -5, "reason": "r", "idempotencyKey": "k3"}),
        ),
        (
            "POST",
            "/v1/admin/loyalty/reversals",
            "admin",
            json!({"userId": "u1", "transactionId": 1, "reason": "r", "idempotencyKey": "k4"}),
        ),
        (
            "PUT",
            "/v1/admin/loyalty/rewards/tote_bag/stock",
            "admin",
            json!({"stock": 3}),
        ),
    ];
    let field = prop_oneof![
        Just("anonymousId"),
        Just("userId"),
        Just("tcString"),
        Just("gppString"),
        Just("usPrivacy"),
        Just("channel"),
        Just("ttlSeconds"),
        Just("id"),
        Just("name"),
        Just("budget"),
        Just("period"),
        Just("features"),
        Just("dimensions"),
        Just("disabled"),
        Just("noticeLanguage"),
        Just("noticeVersions"),
        Just("variant"),
        Just("rendered"),
        Just("event"),
        Just("action"),
        Just("purposes"),
        Just("lang"),
        Just("active"),
        Just("weight"),
        Just("purpose"),
        Just("rule"),
        Just("text"),
        Just("placement"),
        Just("limit"),
        Just("type"),
        Just("points"),
        Just("reward"),
        Just("idempotencyKey"),
        Just("transactionId"),
        Just("stock"),
        "[a-z]{1,8}".prop_map(|s| Box::leak(s.into_boxed_str()) as &'static str),
    ];
    let body = (
        prop::sample::select(valid_bodies),
        prop::option::weighted(0.6, (field, prop_oneof![text.clone(), arb_json()])),
        prop::option::weighted(0.15, arb_json()),
    )
        .prop_map(|((method, path, who, base), replace, random)| {
            let body = match (random, replace) {
                (Some(r), _) => r,
                (None, Some((k, v))) => {
                    let mut b = base;
                    b[k] = v;
                    b
                }
                (None, None) => base,
            };
            Req {
                method,
                path: path.into(),
                who,
                body,
            }
        });
    let param = prop_oneof![
        Just(String::new()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999999".to_string()),
        "[a-zA-Z0-9%&=]{0,12}",
    ];
    let read = (
        prop::sample::select(vec![
            ("/v1/admin/insights/reports", "admin"),
            ("/v1/consent", "server"),
            ("/v1/consent/history", "server"),
            ("/v1/consent/insights", "server"),
            ("/v1/prompt", "server"),
            ("/v1/admin/prompt/stats", "admin"),
            ("/v1/me", "server"),
            ("/v1/me/export", "server"),
            ("/v1/admin/requests", "admin"),
            ("/v1/admin/segments", "admin"),
            ("/v1/admin/segments/gen/members", "admin"),
            ("/v1/admin/segments/gen/check", "admin"),
            ("/v1/me/loyalty", "server"),
            ("/v1/admin/loyalty", "admin"),
        ]),
        prop::sample::select(vec![
            "after",
            "limit",
            "advertiser",
            "anonymousId",
            "userId",
            "lang",
            "from",
            "to",
            "x",
        ]),
        param.clone(),
        prop::sample::select(vec!["after", "limit", "anonymousId", "to"]),
        param,
    )
        .prop_map(|((path, who), k1, v1, k2, v2)| Req {
            method: "GET",
            path: format!("{path}?{k1}={v1}&{k2}={v2}"),
            who,
            body: Value::Null,
        });
    prop_oneof![3 => body, 1 => read]
}

#[test]
fn arbitrary_requests_to_every_other_endpoint_never_break_the_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_with(
        "[insights]\nmin_group_size = 0\nallow_insecure_rng = true\n",
    ));
    let codes: Vec<&str> = candor_server::error::TABLE.iter().map(|r| r.1).collect();
    let mut runner = runner(800);
    runner
        .run(&arb_request(), |r| {
            let (status, code) = rt.block_on(async {
                let url = app.url(&r.path);
                let req = match r.method {
                    "GET" => app.client.get(url),
                    "PATCH" => app.client.patch(url).json(&r.body),
                    "PUT" => app.client.put(url).json(&r.body),
                    _ => app.client.post(url).json(&r.body),
                };
                let req = match r.who {
                    "admin" => req.bearer_auth(ADMIN),
                    _ => req.basic_auth(SERVER_KEY, Some("")),
                };
                code_of(req.send().await.unwrap()).await
            });
            prop_assert!(status < 500, "{} for {:?} ({})", status, r, code);
            if status >= 400 {
                prop_assert!(codes.contains(&code.as_str()), "unknown code {}", code);
            }
            Ok(())
        })
        .unwrap();
}
