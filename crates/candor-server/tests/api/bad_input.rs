//! Bad input gets its stable error code and changes nothing.

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
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
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
