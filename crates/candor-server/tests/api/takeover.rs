//! Identity through the browser key (issue 11, part 1): the public browser key speaks
//! only for the anonymous id it presents. It can never read, change or link to a
//! subject that has a user id (or any identifier other than that anonymous id); a link
//! to a user id needs a server key or a subject token for that user id; and what it is
//! told about messages never depends on another subject's consent.

use crate::helpers::*;
use serde_json::{json, Value};

const VICTIM: &str = "victim-1";
const VICTIM_ANON: &str = "victim-anon-1";
const EVIL_ANON: &str = "evil-anon-1";

/// A known person: user id and anonymous id linked by the operator's backend, with
/// every purpose granted and one event stored.
async fn victim(app: &TestApp) {
    let r = app
        .post(
            "/v1/consent/accept-all",
            SERVER_KEY,
            json!({"userId": VICTIM, "anonymousId": VICTIM_ANON}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

async fn history(app: &TestApp, key: &str, query: &str) -> (u16, Value) {
    let r = app
        .client
        .get(app.url(&format!("/v1/consent/history?{query}")))
        .basic_auth(key, Some(""))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn victim_records(app: &TestApp) -> usize {
    let (status, h) = history(app, SERVER_KEY, &format!("userId={VICTIM}")).await;
    assert_eq!(status, 200);
    h["records"].as_array().unwrap().len()
}

/// `POST /v1/track` with the browser key and a subject token beside it.
async fn track_with_token(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/track"))
        .basic_auth(BROWSER_KEY, Some(""))
        .header("Candor-Subject-Token", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The attack of issue 11, step by step: the browser key sends an event naming the
/// victim's user id with a fresh anonymous id, then uses that anonymous id to read and
/// change the victim's consent. None of it may reach the victim's subject.
#[tokio::test]
async fn the_browser_key_cannot_take_over_a_known_person() {
    let app = spawn().await;
    victim(&app).await;
    let before = victim_records(&app).await;
    let r = app
        .post(
            "/v1/track",
            BROWSER_KEY,
            json!({"event": "App Session", "userId": VICTIM, "anonymousId": EVIL_ANON,
                   "properties": {"app": "FitTrack"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 0, "{body}");
    assert_eq!(body["results"][0]["reason"], "unproven_identity", "{body}");

    // The new anonymous id reaches nobody.
    let (status, h) = history(&app, BROWSER_KEY, &format!("anonymousId={EVIL_ANON}")).await;
    assert_eq!(status, 200);
    assert!(h["records"].as_array().unwrap().is_empty(), "{h}");
    assert!(h.get("subject").is_none(), "{h}");
    let r = app
        .client
        .get(app.url(&format!("/v1/consent/insights?anonymousId={EVIL_ANON}")))
        .basic_auth(BROWSER_KEY, Some(""))
        .send()
        .await
        .unwrap();
    let ins: Value = r.json().await.unwrap();
    assert!(ins.get("subject").is_none(), "{ins}");

    // accept-all in the new anonymous id's name makes a new subject, not the victim's.
    let r = app
        .post(
            "/v1/consent/reject-all",
            BROWSER_KEY,
            json!({"anonymousId": EVIL_ANON}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let attacker: Value = r.json().await.unwrap();
    let (_, v) = history(&app, SERVER_KEY, &format!("userId={VICTIM}")).await;
    assert_ne!(attacker["subject"], v["subject"]);
    assert_eq!(victim_records(&app).await, before);
}

/// Every way a message can carry identifiers: none links the browser's anonymous id to
/// the victim, none stores anything in the victim's name, and the answers are the same
/// as for a user id nobody has.
#[tokio::test]
async fn no_message_kind_links_or_reveals_through_the_browser_key() {
    let app = spawn().await;
    victim(&app).await;
    let before = app.events().await;
    let variants = |user: &str, anon: &str| {
        vec![
            (
                "/v1/identify",
                json!({"userId": user, "anonymousId": anon, "traits": {"email": "v@example.com"}}),
            ),
            (
                "/v1/track",
                json!({"event": "App Session", "userId": user, "anonymousId": anon}),
            ),
            (
                "/v1/page",
                json!({"name": "Home", "userId": user, "anonymousId": anon}),
            ),
            (
                "/v1/screen",
                json!({"name": "Home", "userId": user, "anonymousId": anon}),
            ),
            (
                "/v1/group",
                json!({"groupId": "g1", "userId": user, "anonymousId": anon}),
            ),
            ("/v1/alias", json!({"previousId": anon, "userId": user})),
            (
                "/v1/alias",
                json!({"previousId": user, "userId": "new-user", "anonymousId": anon}),
            ),
            ("/v1/track", json!({"event": "App Session", "userId": user})),
        ]
    };
    let mut answers = Vec::new();
    for user in [VICTIM, "nobody-at-all"] {
        let mut seen = Vec::new();
        for (path, msg) in variants(user, EVIL_ANON) {
            let r = app.post(path, BROWSER_KEY, msg.clone()).await;
            assert_eq!(r.status(), 200, "{path} {msg}");
            let mut body: Value = r.json().await.unwrap();
            body["results"][0]
                .as_object_mut()
                .map(|o| o.remove("messageId"));
            seen.push(body);
        }
        // The same messages in one batch.
        let batch: Vec<Value> = variants(user, EVIL_ANON)
            .into_iter()
            .map(|(path, mut m)| {
                m["type"] = json!(path.trim_start_matches("/v1/"));
                m
            })
            .collect();
        let r = app
            .post("/v1/batch", BROWSER_KEY, json!({"batch": batch}))
            .await;
        assert_eq!(r.status(), 200);
        let mut body: Value = r.json().await.unwrap();
        for item in body["results"].as_array_mut().unwrap() {
            item.as_object_mut().unwrap().remove("messageId");
        }
        assert_eq!(body["accepted"], 0, "{body}");
        seen.push(body);
        answers.push(seen);
    }
    // A consented victim and a user id nobody has get the very same answers.
    assert_eq!(answers[0], answers[1]);
    assert_eq!(app.events().await, before);
    let (_, h) = history(&app, BROWSER_KEY, &format!("anonymousId={EVIL_ANON}")).await;
    assert!(h.get("subject").is_none(), "{h}");
    // The victim's own anonymous id, now linked to a user id, is no longer the browser
    // key's to use either: reading, changing and sending events all need proof.
    let (status, h) = history(&app, BROWSER_KEY, &format!("anonymousId={VICTIM_ANON}")).await;
    assert_eq!(
        (status, h["code"].as_str()),
        (403, Some("subject_token_required"))
    );
    let r = app
        .post(
            "/v1/consent/accept-all",
            BROWSER_KEY,
            json!({"anonymousId": VICTIM_ANON}),
        )
        .await;
    assert_eq!(code_of(r).await, (403, "subject_token_required".into()));
    let r = app
        .post(
            "/v1/track",
            BROWSER_KEY,
            json!({"event": "App Session", "anonymousId": VICTIM_ANON}),
        )
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"][0]["reason"], "unproven_identity", "{body}");
    assert_eq!(app.events().await, before);
}

/// Consent requests and imported signals in the victim's name are refused, and one
/// that names the victim's linked anonymous id through a token for someone else too.
#[tokio::test]
async fn consent_routes_refuse_other_identifiers() {
    let app = spawn().await;
    victim(&app).await;
    let before = victim_records(&app).await;
    for (path, body) in [
        (
            "/v1/consent",
            json!({"userId": VICTIM, "choices": {"analytics": "withdraw"}}),
        ),
        ("/v1/consent/accept-all", json!({"userId": VICTIM})),
        (
            "/v1/consent/signals",
            json!({"userId": VICTIM, "usPrivacy": "1YYN"}),
        ),
        (
            "/v1/consent/signals",
            json!({"anonymousId": VICTIM_ANON, "usPrivacy": "1YYN"}),
        ),
    ] {
        let r = app.post(path, BROWSER_KEY, body.clone()).await;
        // (Importing signals is refused to browser keys altogether: `forbidden`.)
        let (status, code) = code_of(r).await;
        assert_eq!(status, 403, "{path} {body}");
        assert!(
            ["subject_token_required", "forbidden"].contains(&code.as_str()),
            "{code}"
        );
    }
    // A subject token for another user cannot merge the victim's anonymous id into its
    // own account, nor act through it.
    let token = mint_token(&app, "mallory").await;
    let r = app
        .client
        .post(app.url("/v1/consent/accept-all"))
        .bearer_auth(&token)
        .json(&json!({"anonymousId": VICTIM_ANON}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (403, "subject_token_required".into()));
    let r = app
        .client
        .get(app.url(&format!("/v1/consent/history?anonymousId={VICTIM_ANON}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (403, "subject_token_required".into()));
    assert_eq!(victim_records(&app).await, before);
}

/// The proof that works: a subject token for the user id, sent beside the browser key
/// (`Candor-Subject-Token`), links the browser's anonymous id to that user; then that
/// anonymous id alone no longer reaches the account, the token does.
#[tokio::test]
async fn a_subject_token_links_the_anonymous_id_to_its_own_user() {
    let app = spawn().await;
    // The person consented anonymously first.
    app.consent("login-anon", json!({"analytics": "grant"}))
        .await;
    let token = mint_token(&app, "login-user").await;
    let r = track_with_token(
        &app,
        &token,
        json!({"event": "App Session", "userId": "login-user", "anonymousId": "login-anon"}),
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 1, "{body}");
    // The user id now resolves to the anonymous subject.
    let (_, h) = history(&app, SERVER_KEY, "userId=login-user").await;
    assert_eq!(h["records"].as_array().unwrap().len(), 1, "{h}");
    // The token for someone else, or a user id other than the token's, proves nothing.
    let other = mint_token(&app, "someone-else").await;
    let r = track_with_token(
        &app,
        &other,
        json!({"event": "App Session", "userId": "login-user", "anonymousId": "x-anon"}),
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["results"][0]["reason"], "unproven_identity", "{body}");
    // A bad token is refused whole.
    let r = track_with_token(
        &app,
        "v1.bad.token",
        json!({"event": "App Session", "anonymousId": "x-anon"}),
    )
    .await;
    assert_eq!(code_of(r).await, (401, "invalid_subject_token".into()));
    // The anonymous id alone is no longer enough.
    let (status, _) = history(&app, BROWSER_KEY, "anonymousId=login-anon").await;
    assert_eq!(status, 403);
    let r = app
        .client
        .get(app.url("/v1/consent/history?anonymousId=login-anon"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
