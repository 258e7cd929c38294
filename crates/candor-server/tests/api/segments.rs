//! Segments over real HTTP (issue 14): rules saved only when their purpose may use the
//! data they name; membership against hand-computed expectations at window edges and
//! across a day's rollover; a withdrawal removing a person at once; membership exact
//! after a restart; and a model-based test of random interleavings of events, field
//! changes and consent changes (on both backends: `CANDOR_TEST_BACKEND=postgres`).

use crate::helpers::*;
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;

pub async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = app.client.request(method, app.url(path)).bearer_auth(ADMIN);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

pub async fn define(app: &TestApp, name: &str, purpose: &str, text: &str) -> Value {
    let (status, body) = admin(
        app,
        Method::PUT,
        &format!("/v1/admin/segments/{name}"),
        Some(json!({"purpose": purpose, "text": text, "description": "test"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// (member, reasons' sentences) of `user` in `name`.
pub async fn check(app: &TestApp, name: &str, user: &str) -> (bool, Vec<String>) {
    let (status, body) = admin(
        app,
        Method::GET,
        &format!("/v1/admin/segments/{name}/check?userId={user}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reasons = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_owned())
        .collect();
    (body["member"].as_bool().unwrap(), reasons)
}

pub async fn size(app: &TestApp, name: &str) -> u64 {
    let (status, body) = admin(
        app,
        Method::GET,
        &format!("/v1/admin/segments/{name}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["size"].as_u64().unwrap()
}

pub async fn grant(app: &TestApp, user: &str, choices: Value) {
    let r = app
        .post(
            "/v1/consent",
            SERVER_KEY,
            json!({"userId": user, "choices": choices}),
        )
        .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
}

/// A fitness app session of `user` dated `at` (ms).
pub fn session(user: &str, id: &str, category: &str, at: i64) -> Value {
    json!({"type": "track", "event": "App Session", "userId": user, "messageId": id,
           "timestamp": candor_server::segment::format_time(candor_core::UnixMillis(at)),
           "properties": {"app": "FitTrack", "app_category": category}})
}

pub async fn set_field(app: &TestApp, user: &str, field: &str, value: Value) {
    let r = app
        .client
        .put(app.url(&format!("/v1/me/fields/{field}?userId={user}")))
        .basic_auth(SERVER_KEY, Some(""))
        .json(&json!({ "value": value }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

pub async fn remove_field(app: &TestApp, user: &str, field: &str) {
    let r = app
        .client
        .delete(app.url(&format!("/v1/me/fields/{field}?userId={user}")))
        .basic_auth(SERVER_KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

const ACTIVE: &str =
    r#"days(track "App Session" where app_category = "health_fitness") in last 30 days >= 3"#;

#[tokio::test]
async fn rules_are_checked_against_their_purpose_when_saved() {
    let app = spawn().await;
    define(&app, "active", "personalization", ACTIVE).await;
    let refused = [
        // contact_channels is for email marketing and loyalty only.
        (
            "email_fans",
            "personalization",
            r#"field.contact_channels has "email""#,
            422,
            "segment_not_allowed",
            "contact_channels",
        ),
        // Page views (browsing categories) are not loyalty's.
        (
            "browsers",
            "loyalty",
            r#"seen(page where category = "travel") within 7 days"#,
            422,
            "segment_not_allowed",
            "loyalty",
        ),
        (
            "typo",
            "personalization",
            "field.age_band = ",
            400,
            "invalid_segment",
            "",
        ),
        (
            "nosuch",
            "personalization",
            r#"field.favourite_colour = "red""#,
            400,
            "invalid_segment",
            "favourite_colour",
        ),
        (
            "wrongvalue",
            "personalization",
            r#"field.age_band = "twelve""#,
            400,
            "invalid_segment",
            "age_band",
        ),
        (
            "ghost",
            "nonesuch",
            "field.shoe_size > 40",
            400,
            "unknown_purpose",
            "",
        ),
        (
            "crossref",
            "loyalty",
            r#"segment "active""#,
            422,
            "segment_not_allowed",
            "active",
        ),
        (
            "BadName",
            "personalization",
            "field.shoe_size > 40",
            400,
            "invalid_segment",
            "",
        ),
    ];
    for (name, purpose, text, status, code, names) in refused {
        let (s, body) = admin(
            &app,
            Method::PUT,
            &format!("/v1/admin/segments/{name}"),
            Some(json!({"purpose": purpose, "text": text})),
        )
        .await;
        assert_eq!(
            (s, body["code"].as_str().unwrap_or_default()),
            (status, code),
            "{name}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(names),
            "{name}: {body}"
        );
    }
    // Nothing of the refused ones was saved.
    let (_, list) = admin(&app, Method::GET, "/v1/admin/segments", None).await;
    let names: Vec<&str> = list["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["active"]);
    // Both forms, the same rule: the JSON answer round-trips to the same text.
    let (s, v) = admin(
        &app,
        Method::POST,
        "/v1/admin/segments/validate",
        Some(json!({"purpose": "personalization", "text": ACTIVE})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, w) = admin(
        &app,
        Method::POST,
        "/v1/admin/segments/validate",
        Some(json!({"purpose": "personalization", "rule": v["rule"]})),
    )
    .await;
    assert_eq!((s, &w["text"]), (200, &v["text"]), "{w}");
    app.stop().await;
}

#[tokio::test]
async fn membership_follows_windows_days_and_withdrawals() {
    // Noon, so "days ago" is unambiguous.
    let start = (1_790_000_000_000 / DAY) * DAY + DAY / 2;
    let (clock, c) = manual_clock(start);
    let app = spawn_clocked(fresh_env().await, "", c).await;
    define(&app, "active", "personalization", ACTIVE).await;
    define(
        &app,
        "recent",
        "personalization",
        r#"seen(track "App Session") within 3 days"#,
    )
    .await;
    for u in ["ann", "bob", "cyd"] {
        grant(
            &app,
            u,
            json!({"personalization": "grant", "analytics": "grant"}),
        )
        .await;
    }
    // Ann: sessions 0, 10 and 29 days ago (three distinct days inside the 30): in.
    // Bob: 0, 10 and 30 days ago (30 is outside), and two on one day: out.
    // Cyd: three days, but another category: out.
    let mut msgs = Vec::new();
    for (u, ago, cat) in [
        ("ann", 0, "health_fitness"),
        ("ann", 10, "health_fitness"),
        ("ann", 29, "health_fitness"),
        ("bob", 0, "health_fitness"),
        ("bob", 10, "health_fitness"),
        ("bob", 10, "health_fitness"),
        ("bob", 30, "health_fitness"),
        ("cyd", 1, "games"),
        ("cyd", 2, "games"),
        ("cyd", 3, "games"),
    ] {
        let id = format!("{u}-{ago}-{}", msgs.len());
        msgs.push(session(u, &id, cat, start - ago * DAY));
    }
    app.batch(msgs).await;
    let (ann, why) = check(&app, "active", "ann").await;
    assert!(ann);
    assert_eq!(
        why,
        ["you used App Session (app_category health_fitness) on 3 days in the last 30 days"]
    );
    assert!(!check(&app, "active", "bob").await.0);
    assert!(!check(&app, "active", "cyd").await.0);
    assert_eq!(size(&app, "active").await, 1);
    assert_eq!(size(&app, "recent").await, 3);

    // A day later Ann's oldest session is 30 days ago: out. Cyd's newest is 2 days ago,
    // still inside the 3 days ending today; a day later it is not.
    clock.fetch_add(DAY, std::sync::atomic::Ordering::SeqCst);
    assert!(!check(&app, "active", "ann").await.0);
    assert!(check(&app, "recent", "cyd").await.0);
    clock.fetch_add(DAY, std::sync::atomic::Ordering::SeqCst);
    assert!(!check(&app, "recent", "cyd").await.0);
    // Back in with a session today.
    app.batch(vec![session(
        "ann",
        "ann-new",
        "health_fitness",
        start + 2 * DAY,
    )])
    .await;
    assert!(check(&app, "active", "ann").await.0);

    // A withdrawal takes her out at once, and what she sent before does not come back
    // with a later grant.
    grant(&app, "ann", json!({"personalization": "withdraw"})).await;
    assert!(!check(&app, "active", "ann").await.0);
    assert_eq!(size(&app, "active").await, 0);
    grant(&app, "ann", json!({"personalization": "grant"})).await;
    assert!(!check(&app, "active", "ann").await.0);
    let (_, members) = admin(&app, Method::GET, "/v1/admin/segments/recent/members", None).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 1, "{members}");
    app.stop().await;
}

#[tokio::test]
async fn membership_is_exact_after_a_restart() {
    let app = spawn().await;
    define(&app, "active", "personalization", ACTIVE).await;
    define(
        &app,
        "runners",
        "personalization",
        r#"field.interests has "fitness" and not field.shoe_size < 40"#,
    )
    .await;
    let now = app.state.now_ms();
    for u in ["ann", "bob", "cyd", "dan"] {
        grant(&app, u, json!({"personalization": "grant"})).await;
    }
    let mut msgs = Vec::new();
    for (i, u) in ["ann", "bob"].iter().enumerate() {
        for d in 0..(3 - i as i64) {
            msgs.push(session(
                u,
                &format!("{u}{d}"),
                "health_fitness",
                now - d * DAY,
            ));
        }
    }
    app.batch(msgs).await;
    set_field(&app, "cyd", "interests", json!(["fitness", "music"])).await;
    set_field(&app, "dan", "interests", json!(["fitness"])).await;
    set_field(&app, "dan", "shoe_size", json!(38)).await;
    grant(&app, "bob", json!({"personalization": "withdraw"})).await;
    let before: Vec<(bool, bool)> = {
        let mut v = Vec::new();
        for u in ["ann", "bob", "cyd", "dan"] {
            v.push((
                check(&app, "active", u).await.0,
                check(&app, "runners", u).await.0,
            ));
        }
        v
    };
    assert_eq!(
        before,
        [(true, false), (false, false), (false, true), (false, false)]
    );
    let env = app.stop().await;
    let app = spawn_env(env, "").await;
    for (u, expected) in ["ann", "bob", "cyd", "dan"].iter().zip(&before) {
        let got = (
            check(&app, "active", u).await.0,
            check(&app, "runners", u).await.0,
        );
        assert_eq!(&got, expected, "{u} after restart");
    }
    assert_eq!(
        (size(&app, "active").await, size(&app, "runners").await),
        (1, 1)
    );
    app.stop().await;
}

#[derive(Clone, Debug)]
enum Step {
    /// A session of person `p` `ago` days back, in fitness (or not).
    Session {
        p: usize,
        ago: i64,
        fitness: bool,
    },
    /// Set or remove person `p`'s interests (with fitness or not).
    Interests {
        p: usize,
        value: Option<bool>,
    },
    Grant {
        p: usize,
    },
    Withdraw {
        p: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..10i64, any::<bool>()).prop_map(|(p, ago, fitness)| Step::Session { p, ago, fitness }),
        2 => (0..3usize, proptest::option::of(any::<bool>())).prop_map(|(p, value)| Step::Interests { p, value }),
        2 => (0..3usize).prop_map(|p| Step::Grant { p }),
        2 => (0..3usize).prop_map(|p| Step::Withdraw { p }),
    ]
}

/// The model: what each person sent that personalization may still use, their field,
/// and whether they grant personalization now.
#[derive(Default, Clone)]
struct Person {
    granted: bool,
    /// Days (ago) of fitness sessions stored while granted, since the last withdrawal.
    days: Vec<i64>,
    fitness_interest: Option<bool>,
}

/// The rule under test, by hand: 2 or more distinct days with a fitness session in the
/// last 7, or fitness among the interests; and the purpose granted.
fn model_member(p: &Person) -> bool {
    let mut d: Vec<i64> = p.days.iter().copied().filter(|a| *a < 7).collect();
    d.sort_unstable();
    d.dedup();
    p.granted && (d.len() >= 2 || p.fitness_interest == Some(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_matches_a_model_after_every_step() {
    let mut runner = runner(24);
    let cases = std::sync::Mutex::new(Vec::new());
    runner
        .run(&proptest::collection::vec(step(), 1..40), |steps| {
            cases.lock().unwrap().push(steps);
            Ok(())
        })
        .unwrap();
    // One case written out: what a withdrawal must make the engine forget.
    cases.lock().unwrap().push(vec![
        Step::Session {
            p: 0,
            ago: 1,
            fitness: true,
        },
        Step::Session {
            p: 0,
            ago: 2,
            fitness: true,
        },
        Step::Withdraw { p: 0 },
        Step::Grant { p: 0 },
        Step::Session {
            p: 0,
            ago: 0,
            fitness: true,
        },
    ]);
    let app = spawn().await;
    let rule = r#"days(track "App Session" where app_category = "health_fitness") in last 7 days >= 2 or field.interests has "fitness""#;
    define(&app, "fit", "personalization", rule).await;
    let now = app.state.now_ms();
    for (case, steps) in cases.into_inner().unwrap().into_iter().enumerate() {
        let users: Vec<String> = (0..3).map(|i| format!("m{case}-{i}")).collect();
        // Every person exists and grants personalization to begin with.
        let mut people = vec![
            Person {
                granted: true,
                ..Person::default()
            };
            3
        ];
        for u in &users {
            grant(
                &app,
                u,
                json!({"personalization": "grant", "analytics": "grant"}),
            )
            .await;
        }
        for (i, s) in steps.iter().enumerate() {
            match s.clone() {
                Step::Session { p, ago, fitness } => {
                    let cat = if fitness { "health_fitness" } else { "games" };
                    let id = format!("c{case}-s{i}");
                    app.batch(vec![session(&users[p], &id, cat, now - ago * DAY)])
                        .await;
                    if fitness && people[p].granted {
                        people[p].days.push(ago);
                    }
                }
                Step::Interests { p, value } => {
                    match value {
                        Some(f) => {
                            let v = if f {
                                json!(["fitness"])
                            } else {
                                json!(["music"])
                            };
                            set_field(&app, &users[p], "interests", v).await;
                        }
                        None => remove_field(&app, &users[p], "interests").await,
                    }
                    people[p].fitness_interest = value;
                }
                Step::Grant { p } => {
                    grant(&app, &users[p], json!({"personalization": "grant"})).await;
                    people[p].granted = true;
                }
                Step::Withdraw { p } => {
                    if people[p].granted {
                        grant(&app, &users[p], json!({"personalization": "withdraw"})).await;
                        people[p].granted = false;
                        people[p].days.clear();
                    }
                }
            }
            for (p, u) in users.iter().enumerate() {
                let (member, _) = check(&app, "fit", u).await;
                assert_eq!(
                    member,
                    model_member(&people[p]),
                    "case {case} step {i} ({s:?}): person {p} {:?}",
                    steps
                );
            }
        }
    }
    app.stop().await;
}
