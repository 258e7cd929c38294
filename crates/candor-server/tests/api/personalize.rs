//! `POST /v1/personalize` over real HTTP (issue 14): defaults without the purpose,
//! ranked offers with reasons that name only data personalization may use, the access
//! log, a withdrawal taking effect at once, and offers refused at start when they name
//! data the purpose may not use.

use crate::helpers::*;
use crate::segments::{grant, session, set_field};
use candor_server::app::Application;
use candor_server::config::Settings;
use serde_json::{json, Value};

async fn personalize(app: &TestApp, user: &str, placement: &str) -> (u16, Value) {
    let r = app
        .post(
            "/v1/personalize",
            SERVER_KEY,
            json!({"userId": user, "placement": placement}),
        )
        .await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn ids(v: &Value) -> Vec<&str> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn offers_are_personal_only_with_the_purpose_and_say_why() {
    let app = spawn().await;
    // Unknown, then known without personalization: the defaults, and the answer says so.
    let (s, v) = personalize(&app, "ann", "home").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["personalized"].as_bool(), ids(&v)),
        (Some(false), vec!["whats_new"])
    );
    assert!(v["note"].as_str().unwrap().contains("not granted"), "{v}");
    grant(
        &app,
        "ann",
        json!({"analytics": "grant", "personalization": "refuse"}),
    )
    .await;
    set_field(&app, "ann", "interests", json!(["fitness", "travel"])).await;
    let (_, v) = personalize(&app, "ann", "home").await;
    assert_eq!(ids(&v), vec!["whats_new"]);

    // With personalization: ranked by priority, each with its reasons.
    grant(&app, "ann", json!({"personalization": "grant"})).await;
    let now = app.state.now_ms();
    app.batch(vec![
        session("ann", "f1", "finance", now),
        session("ann", "f2", "finance", now - 86_400_000),
    ])
    .await;
    let (_, v) = personalize(&app, "ann", "home").await;
    assert_eq!(v["personalized"], true, "{v}");
    assert_eq!(ids(&v), vec!["trail_shoes", "city_breaks", "budget_tools"]);
    let items = v["items"].as_array().unwrap();
    assert_eq!(
        items[0]["because"],
        json!(["you told us your interests include fitness"])
    );
    assert_eq!(
        items[2]["because"],
        json!(["you used App Session (app_category finance) on 2 days in the last 30 days"])
    );
    // Every reason names data the personalization purpose may use.
    let personalization = candor_core::PurposeId::parse("personalization").unwrap();
    for item in items {
        for r in item["reasons"].as_array().unwrap() {
            let name = r["uses"]["name"].as_str().unwrap();
            match r["uses"]["kind"].as_str().unwrap() {
                "field" => assert!(
                    app.state
                        .settings
                        .fields
                        .get(name)
                        .unwrap()
                        .used_by(&personalization),
                    "{r}"
                ),
                "events" => assert!(name.starts_with("App Session"), "{r}"),
                other => panic!("unexpected reason kind {other}: {r}"),
            }
        }
    }
    // The decision is in the person's access log, for personalization.
    let me: Value = app
        .client
        .get(app.url("/v1/me?userId=ann"))
        .basic_auth(SERVER_KEY, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let log = me["accessLog"].as_array().unwrap();
    assert!(
        log.iter().any(|a| a["purpose"] == "personalization"
            && a["why"].as_str().unwrap().contains("trail_shoes")),
        "{log:?}"
    );
    // A withdrawal: the defaults at once.
    grant(&app, "ann", json!({"personalization": "withdraw"})).await;
    let (_, v) = personalize(&app, "ann", "home").await;
    assert_eq!(
        (v["personalized"].as_bool(), ids(&v)),
        (Some(false), vec!["whats_new"])
    );

    // Bad requests change nothing and say why.
    for (body, status, code) in [
        (
            json!({"userId": "ann", "placement": "nowhere"}),
            404,
            "unknown_placement",
        ),
        (json!({"userId": "ann"}), 400, "invalid_request"),
        (
            json!({"userId": "ann", "placement": "home", "limit": 0}),
            400,
            "invalid_request",
        ),
        (
            json!({"userId": "ann", "placement": "home", "extra": 1}),
            400,
            "invalid_request",
        ),
    ] {
        let r = app.post("/v1/personalize", SERVER_KEY, body.clone()).await;
        assert_eq!(code_of(r).await, (status, code.to_owned()), "{body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn offers_naming_data_personalization_may_not_use_are_refused_at_start() {
    let config = r#"
[[offers]]
id = "mailer"
placement = "home"
title = "Mail"
when = 'field.contact_channels has "email"'

[[offers]]
id = "default"
placement = "home"
title = "Hello"
"#;
    let env = fresh_env().await;
    let mut s = Settings::parse(config, "test", &|_| None)
        .unwrap()
        .with_demo_credentials();
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.data_dir = env.dir.path().to_owned();
    s.database = env
        .database_url
        .clone()
        .map(candor_server::config::DatabaseSettings::new);
    let err = Application::build(s)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("offers.mailer")
            && err.contains("contact_channels")
            && err.contains("personalization"),
        "{err}"
    );
}
