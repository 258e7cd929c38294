//! Roles: every endpoint's denials, tested as carefully as its grants.

use crate::helpers::*;
use serde_json::{json, Value};

#[tokio::test]
async fn ingestion_needs_a_valid_write_key() {
    let app = spawn().await;
    let r = app
        .client
        .post(app.url("/v1/batch"))
        .json(&json!({"batch": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (401, "missing_write_key".into()));
    let r = app
        .post("/v1/batch", "not-a-key", json!({"batch": []}))
        .await;
    assert_eq!(code_of(r).await, (401, "invalid_write_key".into()));
    let r = app
        .post(
            "/v1/track",
            "not-a-key",
            json!({"event": "x", "anonymousId": "a"}),
        )
        .await;
    assert_eq!(code_of(r).await, (401, "invalid_write_key".into()));
    // The admin token is not a write key.
    let r = app.post("/v1/batch", ADMIN, json!({"batch": []})).await;
    assert_eq!(code_of(r).await, (401, "invalid_write_key".into()));
    let r = app
        .post("/v1/batch", BROWSER_KEY, json!({"batch": []}))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn browser_key_acts_only_for_its_anonymous_id() {
    let app = spawn().await;
    let r = app
        .post(
            "/v1/consent",
            BROWSER_KEY,
            json!({"userId": "u1", "choices": {"analytics": "grant"}}),
        )
        .await;
    assert_eq!(code_of(r).await, (403, "subject_token_required".into()));
    let r = app
        .client
        .get(app.url("/v1/consent?userId=u1"))
        .basic_auth(BROWSER_KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (403, "subject_token_required".into()));
    // A server key may act for a user id.
    let r = app
        .post(
            "/v1/consent",
            SERVER_KEY,
            json!({"userId": "u1", "choices": {"analytics": "grant"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.stats().await["ledgerRecords"], 1);
}

#[tokio::test]
async fn subject_tokens_act_for_their_user_only() {
    let app = spawn().await;
    let r = app
        .client
        .post(app.url("/v1/admin/subject-tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"userId": "u7", "ttlSeconds": 600}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let send = |body: Value, tok: String| {
        let c = app.client.clone();
        let url = app.url("/v1/consent");
        async move {
            c.post(url)
                .bearer_auth(tok)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = send(json!({"choices": {"loyalty": "grant"}}), token.clone()).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["receipts"][0]["record"]["collectionMethod"],
        "preference_center"
    );
    let r = send(
        json!({"userId": "u8", "choices": {"loyalty": "grant"}}),
        token.clone(),
    )
    .await;
    assert_eq!(code_of(r).await, (403, "forbidden".into()));
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let r = send(json!({"choices": {"loyalty": "grant"}}), forged).await;
    assert_eq!(code_of(r).await, (401, "invalid_subject_token".into()));
    let r = send(json!({"choices": {"loyalty": "grant"}}), ADMIN.into()).await;
    assert_eq!(code_of(r).await, (401, "invalid_subject_token".into()));
    let r = app
        .client
        .post(app.url("/v1/consent"))
        .json(&json!({"anonymousId": "x", "choices": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (401, "missing_credentials".into()));
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let app = spawn().await;
    for path in ["/v1/admin/stats", "/v1/admin/ledger/verify", "/metrics"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            code_of(r).await,
            (401, "missing_credentials".into()),
            "{path}"
        );
        let r = app
            .client
            .get(app.url(path))
            .bearer_auth("wrong-token-wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(
            code_of(r).await,
            (401, "invalid_admin_token".into()),
            "{path}"
        );
        let r = app
            .client
            .get(app.url(path))
            .basic_auth(SERVER_KEY, Some(""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = app
            .client
            .get(app.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = app
        .client
        .post(app.url("/v1/admin/subject-tokens"))
        .basic_auth(SERVER_KEY, Some(""))
        .json(&json!({"userId": "u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
