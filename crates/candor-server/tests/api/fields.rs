//! Volunteered (zero-party) fields over real HTTP: who may read and change them, set,
//! edit and remove one at a time, bad values refused with a stable code and nothing
//! changed, `identify` setting observed fields only when the message is stored, and the
//! aggregate fields still feeding insights only while shared and consented.

use crate::helpers::*;
use candor_core::SubjectId;
use reqwest::Method;
use serde_json::{json, Value};

const CONFIG: &str = "[insights]\nmin_group_size = 0\nallow_insecure_rng = true\n";

/// How a request names its subject and proves it may.
enum As<'a> {
    Browser(&'a str),
    Server(&'a str),
    Token(&'a str),
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    who: &As<'_>,
    body: Option<Value>,
) -> (u16, Value) {
    let query = match who {
        As::Browser(anon) => format!("anonymousId={anon}"),
        As::Server(user) => format!("userId={user}"),
        As::Token(_) => String::new(),
    };
    let rb = app
        .client
        .request(method, app.url(&format!("{path}?{query}")));
    let mut rb = match who {
        As::Token(token) => rb.bearer_auth(token),
        As::Browser(_) => rb.basic_auth(BROWSER_KEY, Some("")),
        As::Server(_) => rb.basic_auth(SERVER_KEY, Some("")),
    };
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn list(app: &TestApp, who: &As<'_>) -> Value {
    let (status, body) = call(app, Method::GET, "/v1/me/fields", who, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn put(app: &TestApp, who: &As<'_>, name: &str, body: Value) -> (u16, Value) {
    call(
        app,
        Method::PUT,
        &format!("/v1/me/fields/{name}"),
        who,
        Some(body),
    )
    .await
}

async fn delete(app: &TestApp, who: &As<'_>, name: &str) -> (u16, Value) {
    call(
        app,
        Method::DELETE,
        &format!("/v1/me/fields/{name}"),
        who,
        None,
    )
    .await
}

/// (value, provenance) of one field in a listing.
fn value_of(listing: &Value, name: &str) -> (Value, Value) {
    let f = listing["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {listing}"));
    (f["value"].clone(), f["provenance"].clone())
}

async fn server_consent(app: &TestApp, user: &str, choices: Value) {
    let r = app
        .post(
            "/v1/consent",
            SERVER_KEY,
            json!({"userId": user, "choices": choices}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn fields_follow_the_consent_reads_rule() {
    let app = spawn().await;
    app.consent("anon-own", json!({"personalization": "grant"}))
        .await;
    server_consent(&app, "user-1", json!({"personalization": "grant"})).await;
    // An anonymous id linked to a user: a browser key no longer speaks for it.
    let out = app
        .batch(vec![json!({"type": "identify", "userId": "user-1",
            "anonymousId": "anon-linked", "messageId": "link-1", "traits": {}})])
        .await;
    assert_eq!(out["accepted"], 1, "{out}");
    let token = mint_token(&app, "user-1").await;
    let other = mint_token(&app, "user-2").await;
    let advertiser = create_advertiser(&app, "acme", 1.0).await;

    // Allowed: a browser key for its own anonymous id, a server key, a token for its user.
    let (s, b) = put(
        &app,
        &As::Browser("anon-own"),
        "shoe_size",
        json!({"value": 42}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"], 42);
    let (s, b) = put(
        &app,
        &As::Server("user-1"),
        "shoe_size",
        json!({"value": 40}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        value_of(&list(&app, &As::Token(&token)).await, "shoe_size").0,
        40
    );

    // Denied, and nothing changed.
    let r = app
        .client
        .put(app.url("/v1/me/fields/shoe_size?anonymousId=anon-own"))
        .json(&json!({"value": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (401, "missing_credentials".into()));
    let r = app
        .client
        .put(app.url("/v1/me/fields/shoe_size?userId=user-1"))
        .basic_auth(BROWSER_KEY, Some(""))
        .json(&json!({"value": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (403, "subject_token_required".into()));
    let (s, b) = put(
        &app,
        &As::Browser("anon-linked"),
        "shoe_size",
        json!({"value": 30}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (403, Some("subject_token_required")),
        "{b}"
    );
    let (s, b) = call(
        &app,
        Method::GET,
        "/v1/me/fields",
        &As::Browser("anon-linked"),
        None,
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let r = app
        .client
        .put(app.url("/v1/me/fields/shoe_size?userId=user-1"))
        .bearer_auth(&other)
        .json(&json!({"value": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (403, "forbidden".into()));
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let r = app
            .client
            .request(
                method.clone(),
                app.url("/v1/me/fields/shoe_size?userId=user-1"),
            )
            .bearer_auth(&advertiser)
            .json(&json!({"value": 30}))
            .send()
            .await
            .unwrap();
        assert_eq!(code_of(r).await, (403, "forbidden".into()), "{method}");
    }
    let (s, _) = delete(&app, &As::Browser("anon-linked"), "shoe_size").await;
    assert_eq!(s, 403);
    assert_eq!(
        value_of(&list(&app, &As::Server("user-1")).await, "shoe_size").0,
        40
    );
    assert_eq!(
        value_of(&list(&app, &As::Browser("anon-own")).await, "shoe_size").0,
        42
    );
}

#[tokio::test]
async fn fields_are_set_edited_and_removed_one_by_one() {
    let app = spawn().await;
    app.consent("ann", json!({"personalization": "grant"}))
        .await;
    let ann = As::Browser("ann");

    // Before anything: every configured field, with what it may hold and who uses it.
    let l = list(&app, &ann).await;
    let names: Vec<&str> = l["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "age_band",
            "country",
            "shoe_size",
            "interests",
            "birthday_month",
            "contact_channels",
            "contact_frequency"
        ]
    );
    let interests = &l["fields"][3];
    assert_eq!(interests["kind"], "many_of");
    assert!(interests["values"]
        .as_array()
        .unwrap()
        .contains(&json!("travel")));
    assert_eq!(interests["purposes"][0]["id"], "personalization");
    assert_eq!(interests["purposes"][0]["granted"], true);
    assert_eq!(interests["purposes"][1]["id"], "email_marketing");
    assert_eq!(interests["purposes"][1]["granted"], false);
    assert!(interests["purposes"][0]["title"].as_str().is_some());
    assert_eq!(l["fields"][0]["aggregate"], true);
    assert_eq!(l["fields"][2]["min"], 16);
    assert_eq!(value_of(&l, "shoe_size"), (Value::Null, Value::Null));

    let (s, b) = put(&app, &ann, "shoe_size", json!({"value": 42})).await;
    assert_eq!(
        (s, &b["value"], &b["provenance"]),
        (200, &json!(42), &json!("volunteered"))
    );
    let (s, b) = put(
        &app,
        &ann,
        "interests",
        json!({"value": ["travel", "music"]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["value"],
        json!(["music", "travel"]),
        "in the listed order"
    );
    let (s, _) = put(&app, &ann, "birthday_month", json!({"value": 7})).await;
    assert_eq!(s, 200);

    // Edit one: the others stay.
    let (s, _) = put(&app, &ann, "shoe_size", json!({"value": "43"})).await;
    assert_eq!(s, 200);
    let l = list(&app, &ann).await;
    assert_eq!(value_of(&l, "shoe_size").0, 43);
    assert_eq!(value_of(&l, "interests").0, json!(["music", "travel"]));
    assert_eq!(value_of(&l, "birthday_month").0, 7);
    assert!(l["fields"][2]["updatedAt"].as_str().is_some());

    // Remove one: the others stay.
    let (s, b) = delete(&app, &ann, "interests").await;
    assert_eq!((s, &b["value"]), (200, &Value::Null));
    let l = list(&app, &ann).await;
    assert_eq!(value_of(&l, "interests"), (Value::Null, Value::Null));
    assert_eq!(value_of(&l, "shoe_size").0, 43);
    let (s, _) = delete(&app, &ann, "interests").await;
    assert_eq!(s, 200, "removing what is not there is fine");

    // Someone unknown has nothing, and cannot set anything before a consent choice.
    let l = list(&app, &As::Browser("nobody")).await;
    assert!(l.get("subject").is_none());
    assert_eq!(value_of(&l, "shoe_size").0, Value::Null);
    let (s, b) = put(
        &app,
        &As::Browser("nobody"),
        "shoe_size",
        json!({"value": 40}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (404, Some("subject_not_found")));
}

#[tokio::test]
async fn bad_names_and_values_get_a_code_and_change_nothing() {
    let app = spawn().await;
    app.consent("bea", json!({"personalization": "grant"}))
        .await;
    let bea = As::Browser("bea");
    put(&app, &bea, "shoe_size", json!({"value": 41})).await;
    put(&app, &bea, "interests", json!({"value": ["books"]})).await;
    let before = list(&app, &bea).await;
    for (name, body, code) in [
        ("favourite_colour", json!({"value": "red"}), "unknown_field"),
        ("Shoe_Size", json!({"value": 40}), "unknown_field"),
        ("shoe_size", json!({"value": 99}), "invalid_field_value"),
        (
            "shoe_size",
            json!({"value": "forty"}),
            "invalid_field_value",
        ),
        ("shoe_size", json!({"value": 40.5}), "invalid_field_value"),
        ("shoe_size", json!({"value": null}), "invalid_field_value"),
        (
            "interests",
            json!({"value": ["books", "chess"]}),
            "invalid_field_value",
        ),
        (
            "interests",
            json!({"value": ["books", "books"]}),
            "invalid_field_value",
        ),
        (
            "interests",
            json!({"value": "books"}),
            "invalid_field_value",
        ),
        (
            "birthday_month",
            json!({"value": 13}),
            "invalid_field_value",
        ),
        ("age_band", json!({"value": "17-"}), "invalid_field_value"),
        (
            "shoe_size",
            json!({"value": 40, "shareInAggregate": true}),
            "invalid_request",
        ),
        ("shoe_size", json!({"size": 40}), "invalid_request"),
        ("shoe_size", json!([40]), "invalid_request"),
    ] {
        let (s, b) = put(&app, &bea, name, body.clone()).await;
        assert_eq!(b["code"].as_str(), Some(code), "{name} {body}: {b}");
        assert!((400..500).contains(&s), "{name} {body}: {s}");
        assert!(
            !b["message"].as_str().unwrap().contains("chess"),
            "the value is not echoed: {b}"
        );
    }
    let (s, b) = delete(&app, &bea, "favourite_colour").await;
    assert_eq!((s, b["code"].as_str()), (404, Some("unknown_field")));
    assert_eq!(list(&app, &bea).await, before);
}

#[tokio::test]
async fn identify_sets_observed_fields_only_when_the_message_is_stored() {
    let app = spawn().await;
    // Consented to nothing; consented to analytics only (which does not cover an
    // identify's declared_profile); consented to personalization.
    server_consent(&app, "u-none", json!({"personalization": "refuse"})).await;
    server_consent(&app, "u-analytics", json!({"analytics": "grant"})).await;
    server_consent(&app, "u-yes", json!({"personalization": "grant"})).await;
    let identify = |user: &str, id: &str, traits: Value, context: Value| {
        json!({"type": "identify", "userId": user, "messageId": id, "traits": traits,
               "context": context})
    };
    let traits = json!({"shoe_size": 41, "interests": ["travel"], "birthday_month": 13,
        "age_band": "25-34", "country": null, "email": "someone@example.com", "plan": "gold"});
    let out = app
        .batch(vec![
            identify("u-none", "i-1", traits.clone(), json!({})),
            identify("u-analytics", "i-2", traits.clone(), json!({})),
            identify("u-yes", "i-3", traits.clone(), json!({})),
        ])
        .await;
    assert_eq!(out["accepted"], 1, "{out}");
    for user in ["u-none", "u-analytics"] {
        let l = list(&app, &As::Server(user)).await;
        for f in l["fields"].as_array().unwrap() {
            assert_eq!(f["value"], Value::Null, "{user}: {f}");
        }
    }
    let l = list(&app, &As::Server("u-yes")).await;
    let observed = json!("observed");
    assert_eq!(value_of(&l, "shoe_size"), (json!(41), observed.clone()));
    assert_eq!(
        value_of(&l, "interests"),
        (json!(["travel"]), observed.clone())
    );
    assert_eq!(value_of(&l, "age_band"), (json!("25-34"), observed.clone()));
    // A bad value is ignored for its field alone; null sets nothing.
    assert_eq!(value_of(&l, "birthday_month").0, Value::Null);
    assert_eq!(value_of(&l, "country").0, Value::Null);

    // The same message again is a duplicate: nothing is applied twice. A message that
    // says the person volunteered the value records that provenance.
    let out = app
        .batch(vec![
            identify("u-yes", "i-3", json!({"shoe_size": 30}), json!({})),
            identify(
                "u-yes",
                "i-4",
                json!({"birthday_month": 2}),
                json!({"candor": {"provenance": "volunteered"}}),
            ),
        ])
        .await;
    assert_eq!(out["accepted"], 1, "{out}");
    let l = list(&app, &As::Server("u-yes")).await;
    assert_eq!(value_of(&l, "shoe_size").0, 41);
    assert_eq!(
        value_of(&l, "birthday_month"),
        (json!(2), json!("volunteered"))
    );
}

/// The subject a browser listing names.
async fn subject_of(app: &TestApp, anon: &str) -> SubjectId {
    let l = list(app, &As::Browser(anon)).await;
    SubjectId::parse(l["subject"].as_str().unwrap()).unwrap()
}

async fn declared(app: &TestApp, s: &SubjectId) -> Vec<(String, String)> {
    app.state.store.refresh_features().await.unwrap();
    app.state.store.features().declared_of(s)
}

#[tokio::test]
async fn aggregate_fields_feed_insights_only_while_shared_and_consented() {
    let app = spawn_with(CONFIG).await;
    app.consent("cat", json!({"ads_insights": "grant"})).await;
    app.consent(
        "dan",
        json!({"personalization": "grant", "ads_insights": "refuse"}),
    )
    .await;
    let cat = As::Browser("cat");
    let cs = subject_of(&app, "cat").await;
    let pair = |v: &str| vec![("age_band".to_owned(), v.to_owned())];

    // Set without sharing: stored, not counted.
    let (s, b) = put(&app, &cat, "age_band", json!({"value": "25-34"})).await;
    assert_eq!((s, &b["sharedInAggregate"]), (200, &json!(false)), "{b}");
    assert!(declared(&app, &cs).await.is_empty());
    // Shared: counted.
    let (s, b) = put(
        &app,
        &cat,
        "age_band",
        json!({"value": "25-34", "shareInAggregate": true}),
    )
    .await;
    assert_eq!((s, &b["sharedInAggregate"]), (200, &json!(true)), "{b}");
    assert_eq!(declared(&app, &cs).await, pair("25-34"));
    // Edited without saying: still shared, with the new value.
    let (s, b) = put(&app, &cat, "age_band", json!({"value": "35-44"})).await;
    assert_eq!((s, &b["sharedInAggregate"]), (200, &json!(true)), "{b}");
    assert_eq!(declared(&app, &cs).await, pair("35-44"));
    // Sharing stopped: the value stays, the count goes.
    let (_, b) = put(
        &app,
        &cat,
        "age_band",
        json!({"value": "35-44", "shareInAggregate": false}),
    )
    .await;
    assert_eq!(
        (&b["value"], &b["sharedInAggregate"]),
        (&json!("35-44"), &json!(false))
    );
    assert!(declared(&app, &cs).await.is_empty());
    // Removed while shared: both go.
    put(
        &app,
        &cat,
        "age_band",
        json!({"value": "18-24", "shareInAggregate": true}),
    )
    .await;
    assert_eq!(declared(&app, &cs).await, pair("18-24"));
    let (s, b) = delete(&app, &cat, "age_band").await;
    assert_eq!(
        (s, &b["value"], &b["sharedInAggregate"]),
        (200, &Value::Null, &json!(false))
    );
    assert!(declared(&app, &cs).await.is_empty());

    // Without the insights purpose, sharing counts nothing (the value is still stored).
    let dan = As::Browser("dan");
    let ds = subject_of(&app, "dan").await;
    let (s, b) = put(
        &app,
        &dan,
        "age_band",
        json!({"value": "25-34", "shareInAggregate": true}),
    )
    .await;
    assert_eq!(
        (s, &b["value"], &b["sharedInAggregate"]),
        (200, &json!("25-34"), &json!(false))
    );
    assert!(declared(&app, &ds).await.is_empty());

    // identify with share_in_aggregate works as before, and sets the field too.
    app.batch(vec![
        json!({"type": "identify", "anonymousId": "cat", "messageId": "c-1",
        "traits": {"age_band": "45-54"},
        "context": {"candor": {"share_in_aggregate": ["age_band"]}}}),
    ])
    .await;
    assert_eq!(declared(&app, &cs).await, pair("45-54"));
    let l = list(&app, &cat).await;
    assert_eq!(
        value_of(&l, "age_band"),
        (json!("45-54"), json!("observed"))
    );
    assert_eq!(l["fields"][0]["sharedInAggregate"], true);
}

/// A publisher's page (an allowed origin) may call the field routes with a browser key,
/// PUT and DELETE included; another origin gets no CORS grant.
#[tokio::test]
async fn field_routes_answer_allowed_origins() {
    let app = spawn_with("[cors]\nallowed_origins = [\"https://news.example\"]\n").await;
    for path in ["/v1/me/fields", "/v1/me/fields/shoe_size"] {
        let r = app
            .client
            .request(Method::OPTIONS, app.url(path))
            .header("origin", "https://news.example")
            .header("access-control-request-method", "PUT")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://news.example"
        );
        let methods = r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap();
        assert!(
            methods.contains("PUT") && methods.contains("DELETE"),
            "{methods}"
        );
        let r = app
            .client
            .request(Method::OPTIONS, app.url(path))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
}
