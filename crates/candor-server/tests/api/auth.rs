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

/// Every kind of credential the matrix tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cred {
    None,
    WrongBearer,
    WrongBasic,
    Browser,
    Server,
    /// A subject token for the user the request names.
    TokenOwn,
    /// A subject token for someone else.
    TokenOther,
    Advertiser,
    Admin,
}

const CREDS: [Cred; 9] = [
    Cred::None,
    Cred::WrongBearer,
    Cred::WrongBasic,
    Cred::Browser,
    Cred::Server,
    Cred::TokenOwn,
    Cred::TokenOther,
    Cred::Advertiser,
    Cred::Admin,
];

/// Whether `role` lets `cred` through. A consent request in the matrix names a user
/// id, which a browser key never may.
fn allowed(role: Role, cred: Cred) -> bool {
    match role {
        Role::Anyone | Role::LoginForm => cred != Cred::Advertiser,
        Role::WriteKey => matches!(cred, Cred::Browser | Cred::Server),
        Role::ConsentActor => matches!(cred, Cred::Server | Cred::TokenOwn),
        Role::ServerKey => cred == Cred::Server,
        Role::Admin => cred == Cred::Admin,
        Role::AdminSession => false,
        Role::Advertiser => cred == Cred::Advertiser,
        Role::PersonSession => false,
        Role::ServerOrSubject => matches!(cred, Cred::Server | Cred::TokenOwn),
        Role::PersonEntry => cred != Cred::Advertiser,
    }
}

use candor_server::routes::table::{role_of, route_list, Role};

/// The authorization matrix: the router's own route list (the registration the router
/// is built from) × every kind of credential. A route without a declared role fails;
/// every denial must be 401/403 (or the dashboard's redirect to sign in), every grant
/// must get past authentication.
#[tokio::test]
async fn authorization_matrix_over_every_route_and_credential() {
    let app = spawn().await;
    let advertiser = create_advertiser(&app, "matrix", 1.0).await;
    let own = mint_token(&app, "matrix-user").await;
    let other = mint_token(&app, "other-user").await;
    let routes = route_list(true);
    assert!(routes.len() >= 50, "{}", routes.len());
    let mut undeclared = Vec::new();
    for (method, template) in &routes {
        let Some(role) = role_of(method, template) else {
            undeclared.push(format!("{method} {template}"));
            continue;
        };
        let path = template
            .replace("{id}", "matrix-id")
            .replace("{script}", "x.js")
            .replace("{name}", "shoe_size");
        for cred in CREDS {
            let consent_route = matches!(role, Role::ConsentActor | Role::ServerOrSubject);
            // The consent reads and the volunteered-field routes name their subject in
            // the query.
            let in_query = *method == reqwest::Method::GET || template.starts_with("/v1/me/");
            let url = if consent_route && in_query {
                app.url(&format!("{path}?userId=matrix-user"))
            } else {
                app.url(&path)
            };
            let mut rb = app.client.request(method.clone(), url);
            if *method != reqwest::Method::GET {
                // A well-formed body where the credential may be in it (write keys).
                rb = rb.json(&match *template {
                    _ if consent_route => json!({"userId": "matrix-user"}),
                    "/v1/batch" | "/v1/import" => json!({"batch": []}),
                    "/v1/prompt/events" => json!({"variant": "standard", "event": "impression"}),
                    _ if role == Role::WriteKey => json!({"event": "x", "anonymousId": "a"}),
                    _ => json!({}),
                });
            }
            rb = match cred {
                Cred::None => rb,
                Cred::WrongBearer => rb.bearer_auth("wrong-token-wrong-token"),
                Cred::WrongBasic => rb.basic_auth("not-a-write-key-at-all", Some("")),
                Cred::Browser => rb.basic_auth(BROWSER_KEY, Some("")),
                Cred::Server => rb.basic_auth(SERVER_KEY, Some("")),
                Cred::TokenOwn => rb.bearer_auth(&own),
                Cred::TokenOther => rb.bearer_auth(&other),
                Cred::Advertiser => rb.bearer_auth(&advertiser),
                Cred::Admin => rb.bearer_auth(ADMIN),
            };
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let r = client.execute(rb.build().unwrap()).await.unwrap();
            let status = r.status().as_u16();
            let to_login = r
                .headers()
                .get("location")
                .is_some_and(|l| l == "/admin/login");
            let body = r.text().await.unwrap_or_default();
            let what = format!("{method} {template} as {cred:?} ({role:?}): {status} {body}");
            assert_ne!(status, 405, "{what}");
            if matches!(role, Role::LoginForm | Role::PersonEntry) && cred != Cred::Advertiser {
                continue; // the form checks the token it carries
            }
            if allowed(role, cred) {
                assert!(
                    ![401, 403].contains(&status) && !to_login,
                    "granted, but {what}"
                );
            } else {
                assert!(
                    [401, 403].contains(&status) || (status == 303 && to_login),
                    "denied, but {what}"
                );
            }
        }
    }
    assert!(
        undeclared.is_empty(),
        "routes without a declared role: {undeclared:?}"
    );
}
