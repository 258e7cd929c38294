//! The person's own side over HTTP (issue 13): `GET /v1/me` and the export for each
//! credential the consent reads accept (and denials for the rest), sign-in links that
//! work once and only for their person, the session cookie that cannot be bent to
//! another person, consent changes from the page behind CSRF, receipts of one's own
//! records only, the access log and the operator's list of requests.

use crate::helpers::*;
use reqwest::header::{CONTENT_DISPOSITION, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Client, Response};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

pub fn client() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// A person with a user id, an anonymous id, an email, analytics granted and two
/// events whose payloads carry `marker`.
async fn person(app: &TestApp, user: &str, anon: &str, marker: &str) {
    let r = app
        .post(
            "/v1/consent",
            SERVER_KEY,
            json!({"userId": user, "anonymousId": anon,
                   "choices": {"analytics": "grant", "personalization": "grant"}}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let out = app
        .batch(vec![
            json!({"type": "identify", "userId": user, "messageId": format!("{user}-i"),
                   "traits": {"email": format!("{user}@example.com")}}),
            json!({"type": "track", "event": "App Session", "userId": user,
                   "messageId": format!("{user}-1"), "properties": {"note": marker}}),
            json!({"type": "track", "event": "App Session", "userId": user,
                   "messageId": format!("{user}-2"), "properties": {"note": marker}}),
        ])
        .await;
    assert_eq!(out["success"], true, "{out}");
}

/// GET as the operator's backend (server key).
async fn as_server(app: &TestApp, path: &str) -> Response {
    get(app, path, |b| b.basic_auth(SERVER_KEY, Some(""))).await
}

async fn server_json(app: &TestApp, path: &str) -> Value {
    as_server(app, path).await.json().await.unwrap()
}

/// GET a person's page with their session cookie.
async fn paged(app: &TestApp, path: &str, session: &str) -> Response {
    client()
        .get(app.url(path))
        .header("Cookie", session)
        .send()
        .await
        .unwrap()
}

async fn get(
    app: &TestApp,
    path: &str,
    auth: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Response {
    auth(app.client.get(app.url(path))).send().await.unwrap()
}

#[tokio::test]
async fn my_data_answers_each_credential_for_its_own_person_only() {
    let app = spawn().await;
    person(&app, "ann", "ann-anon", "ann-marker").await;
    person(&app, "bob", "bob-anon", "bob-marker").await;
    app.consent("lone-anon", json!({"analytics": "grant"}))
        .await;

    // A server key, for any user.
    let r = as_server(&app, "/v1/me?userId=ann").await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["schema"], "candor-my-data-v1");
    let ids: Vec<String> = me["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}={}",
                i["kind"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "userId=ann",
        "anonymousId=ann-anon",
        "email=ann@example.com",
    ] {
        assert!(ids.contains(&want.to_owned()), "{ids:?}");
    }
    let text = me.to_string();
    assert!(
        text.contains("ann-marker") && !text.contains("bob"),
        "{text}"
    );
    assert_eq!(me["events"]["itemsAre"], "newest");
    let analytics = me["consents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purpose"] == "analytics")
        .unwrap();
    assert_eq!(analytics["granted"], true);
    assert_eq!(analytics["receipts"].as_array().unwrap().len(), 1);
    assert!(analytics["notice"].as_str().unwrap().len() > 10);

    // A subject token for its own user; not for another's.
    let ann_token = mint_token(&app, "ann").await;
    let r = get(&app, "/v1/me", |b| b.bearer_auth(&ann_token)).await;
    assert_eq!(r.status(), 200);
    let r = get(&app, "/v1/me?userId=bob", |b| b.bearer_auth(&ann_token)).await;
    assert_eq!(code_of(r).await, (403, "forbidden".into()));

    // A browser key for an anonymous id linked to nothing else; not for one linked to
    // a user, and never for a user id.
    let r = get(&app, "/v1/me?anonymousId=lone-anon", |b| {
        b.basic_auth(BROWSER_KEY, Some(""))
    })
    .await;
    assert_eq!(r.status(), 200);
    let r = get(&app, "/v1/me?anonymousId=ann-anon", |b| {
        b.basic_auth(BROWSER_KEY, Some(""))
    })
    .await;
    assert_eq!(code_of(r).await, (403, "subject_token_required".into()));
    let r = get(&app, "/v1/me?userId=ann", |b| {
        b.basic_auth(BROWSER_KEY, Some(""))
    })
    .await;
    assert_eq!(code_of(r).await, (403, "subject_token_required".into()));

    // No credential, a wrong one, an advertiser's, the admin's: refused.
    let adv = create_advertiser(&app, "me-adv", 1.0).await;
    for (who, r) in [
        ("none", get(&app, "/v1/me?userId=ann", |b| b).await),
        (
            "wrong",
            get(&app, "/v1/me?userId=ann", |b| {
                b.basic_auth("nope-nope-nope-nope", Some(""))
            })
            .await,
        ),
        (
            "advertiser",
            get(&app, "/v1/me?userId=ann", |b| b.bearer_auth(&adv)).await,
        ),
        (
            "admin",
            get(&app, "/v1/me?userId=ann", |b| b.bearer_auth(ADMIN)).await,
        ),
    ] {
        assert!(
            [401, 403].contains(&r.status().as_u16()),
            "{who}: {}",
            r.status()
        );
    }
    // Nobody by that name: nothing is held, said plainly.
    let r = as_server(&app, "/v1/me?userId=nobody").await;
    assert_eq!(code_of(r).await, (404, "subject_not_found".into()));

    // The reads above are in Ann's access log (and not in Bob's).
    let again: Value = server_json(&app, "/v1/me?userId=ann").await;
    let log = again["accessLog"].as_array().unwrap();
    assert!(log.len() >= 2, "{log:?}");
    assert!(log
        .iter()
        .any(|a| a["accessor"].as_str().unwrap().contains("subject token")));
    let bob: Value = server_json(&app, "/v1/me?userId=bob").await;
    assert_eq!(bob["accessLog"].as_array().unwrap().len(), 0, "{bob}");
}

#[tokio::test]
async fn the_export_carries_every_event_opened_and_the_request_is_listed() {
    let app = spawn().await;
    person(&app, "cat", "cat-anon", "cat-marker").await;
    let r = as_server(&app, "/v1/me/export?userId=cat").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()[CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["events"]["itemsAre"], "all");
    let items = doc["events"]["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, doc["events"]["total"].as_u64().unwrap());
    assert!(items
        .iter()
        .any(|e| e["message"]["properties"]["note"] == "cat-marker"));
    // The operator sees the export (and the earlier access) with when it was answered.
    let reqs = app.get_bearer("/v1/admin/requests", ADMIN).await;
    let list = reqs["requests"].as_array().unwrap();
    let export = list.iter().find(|r| r["kind"] == "export").unwrap();
    assert_eq!(export["subject"], doc["subject"]);
    assert_eq!(export["outcome"], "ok");
    assert!(export["completedAt"].is_string());
    assert_eq!(export["answeredInTime"], true);
    assert!(export["dueBy"].as_str().unwrap() > export["requestedAt"].as_str().unwrap());
    // And on the dashboard.
    let login = crate::pages::login(&app).await;
    let html = crate::pages::dashboard(&app, &login.cookie).await;
    let section = &html[html.find("People's requests").unwrap()..];
    assert!(
        section.contains("<th scope=\"row\">export</th>") && section.contains("answered in time")
    );
    // The requests list is the admin's only.
    let r = as_server(&app, "/v1/admin/requests").await;
    assert_eq!(r.status(), 401);
}

/// The `name=value` part of a Set-Cookie for `name`.
fn cookie(r: &Response, name: &str) -> Option<String> {
    r.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.starts_with(&format!("{name}="))
            .then(|| v.split(';').next().unwrap().to_owned())
    })
}

pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 32].to_owned()
}

async fn mint_link(app: &TestApp, user: &str, ttl: i64) -> Response {
    app.client
        .post(app.url("/v1/admin/subject-links"))
        .bearer_auth(ADMIN)
        .json(&json!({"userId": user, "ttlSeconds": ttl}))
        .send()
        .await
        .unwrap()
}

async fn link(app: &TestApp, user: &str) -> String {
    let r = mint_link(app, user, 600).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["path"].as_str().unwrap().to_owned()
}

/// Opens a sign-in path and presses Continue; the response to the POST.
pub async fn enter(app: &TestApp, path: &str) -> Response {
    let form = client().get(app.url(path)).send().await.unwrap();
    assert_eq!(form.status(), 200, "{path}");
    let enter_cookie = cookie(&form, "candor_enter").unwrap();
    let html = form.text().await.unwrap();
    let mut fields = vec![("csrf".to_owned(), csrf_of(&html))];
    for name in ["t", "k", "a"] {
        let pat = format!("name=\"{name}\" value=\"");
        if let Some(at) = html.find(&pat) {
            let rest = &html[at + pat.len()..];
            fields.push((
                name.to_owned(),
                html_unescape(&rest[..rest.find('"').unwrap()]),
            ));
        }
    }
    client()
        .post(app.url("/me/enter"))
        .header("Cookie", enter_cookie)
        .form(&fields)
        .send()
        .await
        .unwrap()
}

fn html_unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
}

pub async fn session_for(app: &TestApp, path: &str) -> String {
    let r = enter(app, path).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(r.headers()[LOCATION], "/me");
    cookie(&r, "candor_me").unwrap()
}

pub async fn my_page(app: &TestApp, session: &str) -> Response {
    client()
        .get(app.url("/me"))
        .header("Cookie", session)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_link_signs_its_person_in_once_and_the_session_sees_only_them() {
    let (now, clock) = manual_clock(1_800_000_000_000);
    let app = spawn_clocked(fresh_env().await, "", clock).await;
    person(&app, "dan", "dan-anon", "dan-marker").await;
    person(&app, "eve", "eve-anon", "eve-marker").await;
    // Links are for known people only.
    let r = mint_link(&app, "nobody", 600).await;
    assert_eq!(code_of(r).await, (404, "subject_not_found".into()));
    let r = mint_link(&app, "dan", 0).await;
    assert_eq!(code_of(r).await, (400, "invalid_request".into()));

    let path = link(&app, "dan").await;
    assert!(
        !path.contains("dan"),
        "a link never carries the user id: {path}"
    );
    let session = session_for(&app, &path).await;
    let page = my_page(&app, &session).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("dan@example.com") && html.contains("dan-anon"));
    for other in ["eve-anon", "eve@example.com", "eve-marker"] {
        assert!(!html.contains(other), "another person's data on the page");
    }

    // The link works once.
    let r = enter(&app, &path).await;
    assert_eq!(r.status(), 401);
    assert!(cookie(&r, "candor_me").is_none());
    // A tampered link does not work, nor one past its time.
    let tampered = path.replace("t=", "t=A");
    let r = client().get(app.url(&tampered)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let late = link(&app, "eve").await;
    now.fetch_add(601_000, Ordering::SeqCst);
    let r = client().get(app.url(&late)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    now.fetch_sub(601_000, Ordering::SeqCst);
    // Without the form's own cookie, the form is refused (login CSRF).
    let fresh = link(&app, "eve").await;
    let t = fresh.trim_start_matches("/me/enter?t=");
    let r = client()
        .post(app.url("/me/enter"))
        .form(&[("csrf", "0".repeat(32).as_str()), ("t", t)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A session cookie bent to another subject, or re-signed by nobody, is refused.
    let value = session.trim_start_matches("candor_me=");
    let parts: Vec<&str> = value.split('.').collect();
    let eve_me: Value = server_json(&app, "/v1/me?userId=eve").await;
    let eve_subject = eve_me["subject"].as_str().unwrap().replace('-', "");
    let mut bent = parts.clone();
    bent[1] = &eve_subject;
    for forged in [
        bent.join("."),
        format!("{value}0"),
        "m1.x.l.9999999999.00.00".to_owned(),
    ] {
        let r = my_page(&app, &format!("candor_me={forged}")).await;
        assert_eq!(r.status(), 401, "{forged}");
    }
    // Sessions end.
    now.fetch_add(31 * 60 * 1000, Ordering::SeqCst);
    assert_eq!(my_page(&app, &session).await.status(), 401);
}

#[tokio::test]
async fn the_page_changes_consent_behind_csrf_and_hands_out_own_receipts_only() {
    let app = spawn().await;
    person(&app, "fay", "fay-anon", "fay-marker").await;
    person(&app, "gus", "gus-anon", "gus-marker").await;
    let session = session_for(&app, &link(&app, "fay").await).await;
    let html = my_page(&app, &session).await.text().await.unwrap();
    let csrf = csrf_of(&html);
    let change = |csrf: String| {
        let session = session.clone();
        let url = app.url("/me/consent");
        async move {
            client()
                .post(url)
                .header("Cookie", session)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("purpose", "analytics"),
                    ("action", "withdraw"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // Without the session's CSRF token nothing changes.
    assert_eq!(change("0".repeat(32)).await.status(), 403);
    let before: Value = server_json(&app, "/v1/consent?userId=fay").await;
    let granted = |v: &Value| {
        v["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["purpose"] == "analytics")
            .unwrap()["granted"]
            .as_bool()
            .unwrap()
    };
    assert!(granted(&before));
    let r = change(csrf).await;
    assert_eq!(r.status(), 303);
    let after: Value = server_json(&app, "/v1/consent?userId=fay").await;
    assert!(!granted(&after));
    // Recorded through the preference center, by the person's own credential.
    let history: Value = server_json(&app, "/v1/consent/history?userId=fay").await;
    let last = history["records"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["record"]["collectionMethod"], "preference_center");
    assert_eq!(last["record"]["actor"], "subject-token");
    // Own receipts download; another person's sequence number finds nothing.
    let seq = last["record"]["seq"].as_u64().unwrap();
    let r = paged(&app, &format!("/me/receipts/{seq}"), &session).await;
    assert_eq!(r.status(), 200);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(receipt["record"]["seq"], seq);
    let gus: Value = server_json(&app, "/v1/consent/history?userId=gus").await;
    let gus_seq = gus["records"][0]["record"]["seq"].as_u64().unwrap();
    let r = paged(&app, &format!("/me/receipts/{gus_seq}"), &session).await;
    assert_eq!(r.status(), 404);
    // The export from the page is the person's.
    let r = paged(&app, "/me/export", &session).await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc.to_string().contains("fay-marker") && !doc.to_string().contains("gus-"));
    // Every person page refuses without a session.
    for (m, p) in [
        ("GET", "/me"),
        ("GET", "/me/export"),
        ("GET", "/me/receipts/1"),
        ("POST", "/me/consent"),
        ("POST", "/me/logout"),
    ] {
        let r = client()
            .request(m.parse().unwrap(), app.url(p))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{m} {p}");
    }
}

#[tokio::test]
async fn candor_js_anonymous_visitors_reach_their_own_page_only() {
    let app = spawn().await;
    app.consent("visitor-1", json!({"analytics": "grant"}))
        .await;
    person(&app, "hal", "hal-anon", "hal-marker").await;
    let session = session_for(&app, &format!("/me/enter?k={BROWSER_KEY}&a=visitor-1")).await;
    let html = my_page(&app, &session).await.text().await.unwrap();
    assert!(html.contains("visitor-1"));
    // An anonymous id linked to an account is the account's: sign in through a link.
    let r = enter(&app, &format!("/me/enter?k={BROWSER_KEY}&a=hal-anon")).await;
    assert_eq!(r.status(), 403);
    assert!(cookie(&r, "candor_me").is_none());
    // A server key is not a browser key here, and a made-up key is nothing.
    for k in [SERVER_KEY, "made-up-key-made-up-key"] {
        let r = enter(&app, &format!("/me/enter?k={k}&a=visitor-1")).await;
        assert_eq!(r.status(), 401, "{k}");
    }
    // Once the anonymous id is linked to an account, the anonymous session ends.
    let r = app
        .post(
            "/v1/consent",
            SERVER_KEY,
            json!({"userId": "ivy", "anonymousId": "visitor-1", "choices": {"analytics": "grant"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(my_page(&app, &session).await.status(), 401);
}

async fn erase(
    app: &TestApp,
    body: Value,
    auth: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> Response {
    auth(app.client.post(app.url("/v1/me/erase")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn erasure_through_the_api_leaves_nothing_and_a_return_starts_afresh() {
    let app = spawn().await;
    person(&app, "ida", "ida-anon", "ida-marker").await;
    person(&app, "jon", "jon-anon", "jon-marker").await;
    app.consent("kim-anon", json!({"analytics": "grant"})).await;
    let before: Value = server_json(&app, "/v1/me?userId=ida").await;
    let subject = before["subject"].as_str().unwrap().to_owned();
    // Who may not: a browser key (even for its own anonymous id), someone else's
    // subject token, nobody.
    let r = erase(&app, json!({"anonymousId": "kim-anon"}), |b| {
        b.basic_auth(BROWSER_KEY, Some(""))
    })
    .await;
    assert_eq!(code_of(r).await, (403, "forbidden".into()));
    let jon_token = mint_token(&app, "jon").await;
    let r = erase(&app, json!({"userId": "ida"}), |b| {
        b.bearer_auth(&jon_token)
    })
    .await;
    assert_eq!(code_of(r).await, (403, "forbidden".into()));
    let r = erase(&app, json!({"userId": "ida"}), |b| b).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        get(&app, "/v1/me?userId=ida", |b| b
            .basic_auth(SERVER_KEY, Some("")))
        .await
        .status(),
        200
    );

    // Her own subject token may.
    let ida_token = mint_token(&app, "ida").await;
    let r = erase(&app, json!({}), |b| b.bearer_auth(&ida_token)).await;
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["subject"], subject.as_str());
    assert_eq!(out["deleted"]["identifiers"], 3);
    assert_eq!(out["deleted"]["events"], 3);
    assert_eq!(out["receipt"]["record"]["status"], "erased");
    assert_eq!(out["receipt"]["record"]["subject"], subject.as_str());

    // Nothing is found for her any more, by any identifier; a second erasure finds no one.
    for q in ["userId=ida", "anonymousId=ida-anon"] {
        let r = as_server(&app, &format!("/v1/me?{q}")).await;
        assert_eq!(code_of(r).await, (404, "subject_not_found".into()), "{q}");
    }
    let r = erase(&app, json!({"userId": "ida"}), |b| {
        b.basic_auth(SERVER_KEY, Some(""))
    })
    .await;
    assert_eq!(code_of(r).await, (404, "subject_not_found".into()));
    let stored = app.stored().await;
    assert!(
        stored.iter().all(|(_, m)| !m.to_string().contains("ida")),
        "{stored:?}"
    );
    assert_eq!(
        stored
            .iter()
            .filter(|(_, m)| m.to_string().contains("jon-marker"))
            .count(),
        2
    );

    // She comes back: a new, unknown person, with nothing allowed but what she chooses now.
    let r = app
        .post(
            "/v1/consent",
            SERVER_KEY,
            json!({"userId": "ida", "choices": {"loyalty": "grant"}}),
        )
        .await;
    let again: Value = r.json().await.unwrap();
    assert_ne!(again["subject"], subject.as_str());
    let granted: Vec<&str> = again["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["granted"] == true)
        .map(|p| p["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(granted, ["loyalty"]);
    let history: Value = server_json(&app, "/v1/consent/history?userId=ida").await;
    assert_eq!(history["records"].as_array().unwrap().len(), 1);

    // The ledger still verifies, and the operator can show the erasure was answered.
    let v = app.get_bearer("/v1/admin/ledger/verify", ADMIN).await;
    assert_eq!(v["ok"], true, "{v}");
    let reqs = app.get_bearer("/v1/admin/requests", ADMIN).await;
    let erasures: Vec<&Value> = reqs["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "erasure")
        .collect();
    // (The second asked for no one Candor knows: nothing to record it under.)
    assert_eq!(erasures.len(), 1, "{reqs}");
    assert_eq!(erasures[0]["subject"], subject.as_str());
    assert_eq!(erasures[0]["outcome"], "ok");
    assert!(erasures[0]["completedAt"].is_string());
}

#[tokio::test]
async fn erasure_from_the_page_asks_first_then_ends_the_session_and_the_links() {
    let app = spawn().await;
    person(&app, "lea", "lea-anon", "lea-marker").await;
    let spare = link(&app, "lea").await;
    let session = session_for(&app, &link(&app, "lea").await).await;
    let form = paged(&app, "/me/erase", &session).await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    assert!(html.contains("cannot be undone"));
    let csrf = csrf_of(&html);
    let post = |csrf: String| {
        client()
            .post(app.url("/me/erase"))
            .header("Cookie", session.clone())
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(post("0".repeat(32)).await.unwrap().status(), 403);
    assert_eq!(
        get(&app, "/v1/me?userId=lea", |b| b
            .basic_auth(SERVER_KEY, Some("")))
        .await
        .status(),
        200
    );
    let r = post(csrf).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("has been erased"));
    // Gone: the session, any link minted before, and new links (nobody to mint for).
    assert_eq!(my_page(&app, &session).await.status(), 401);
    let r = client().get(app.url(&spare)).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "the form shows: the link itself is genuine"
    );
    assert_eq!(enter(&app, &spare).await.status(), 401);
    let r = mint_link(&app, "lea", 600).await;
    assert_eq!(code_of(r).await, (404, "subject_not_found".into()));
    let r = as_server(&app, "/v1/me?userId=lea").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_page_sets_and_removes_volunteered_answers_one_by_one() {
    let app = spawn().await;
    person(&app, "max", "max-anon", "max-marker").await;
    let session = session_for(&app, &link(&app, "max").await).await;
    let html = my_page(&app, &session).await.text().await.unwrap();
    assert!(html.contains("What you told us") && html.contains("Shoe size"));
    // Nothing answered is pre-selected: an unanswered choice starts at "Choose…".
    assert!(html.contains("<option value=\"\" selected disabled>Choose…</option>"));
    let csrf = csrf_of(&html);
    let post = |path: &str, form: Vec<(&str, &str)>| {
        client()
            .post(app.url(path))
            .header("Cookie", session.clone())
            .form(&form)
            .send()
    };
    let fields = |app: &TestApp| {
        let url = app.url("/v1/me/fields?userId=max");
        let c = app.client.clone();
        async move {
            let v: Value = c
                .get(url)
                .basic_auth(SERVER_KEY, Some(""))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["fields"].as_array().unwrap().clone()
        }
    };
    let value_of =
        |fs: &[Value], name: &str| fs.iter().find(|f| f["name"] == name).unwrap()["value"].clone();
    // Without the CSRF token nothing is set.
    let r = post("/me/fields/shoe_size", vec![("csrf", "0"), ("value", "44")])
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(value_of(&fields(&app).await, "shoe_size"), Value::Null);
    // A number, a set of interests; each one by one.
    let r = post(
        "/me/fields/shoe_size",
        vec![("csrf", &csrf), ("value", "44")],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let interests = fields(&app).await;
    let spec = interests.iter().find(|f| f["name"] == "interests").unwrap();
    let options: Vec<String> = spec["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let r = post(
        "/me/fields/interests",
        vec![
            ("csrf", &csrf),
            ("values", &options[0]),
            ("values", &options[1]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let now = fields(&app).await;
    assert_eq!(value_of(&now, "shoe_size"), json!(44));
    assert_eq!(value_of(&now, "interests"), json!([options[0], options[1]]));
    let shoe = now.iter().find(|f| f["name"] == "shoe_size").unwrap();
    assert_eq!(shoe["provenance"], "volunteered");
    // A value that does not fit is refused and changes nothing.
    let r = post(
        "/me/fields/shoe_size",
        vec![("csrf", &csrf), ("value", "9999")],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(value_of(&fields(&app).await, "shoe_size"), json!(44));
    // The page shows them, and the export carries them.
    let html = my_page(&app, &session).await.text().await.unwrap();
    assert!(html.contains("Your answer: <strong>44</strong>"));
    let export: Value = paged(&app, "/me/export", &session)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        value_of(export["fields"].as_array().unwrap(), "shoe_size"),
        json!(44)
    );
    // Removed one by one.
    let r = post("/me/fields/shoe_size/remove", vec![("csrf", &csrf)])
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let now = fields(&app).await;
    assert_eq!(value_of(&now, "shoe_size"), Value::Null);
    assert_eq!(value_of(&now, "interests"), json!([options[0], options[1]]));
    // Erasure takes the rest with it.
    let token = mint_token(&app, "max").await;
    let r = erase(&app, json!({}), |b| b.bearer_auth(&token)).await;
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["deleted"]["volunteeredFields"], 1, "{out}");
}
