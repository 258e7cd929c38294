//! The loyalty program over real HTTP (issue 14): earning from consented events and
//! volunteered fields (once), redemption never below zero or out of stock, reversal
//! once, leaving and erasure stopping earning at once, the operator's figures, and many
//! concurrent earns and redemptions with repeated idempotency keys leaving every
//! balance equal to the sum of its transactions (both backends).

use crate::helpers::*;
use crate::segments::{admin, grant, set_field};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;

fn order(user: &str, id: &str, revenue: Value) -> Value {
    json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": id,
           "properties": {"revenue": revenue, "currency": "EUR"}})
}

async fn wallet(app: &TestApp, user: &str) -> Value {
    let r = app
        .client
        .get(app.url(&format!("/v1/me/loyalty?userId={user}")))
        .basic_auth(SERVER_KEY, Some(""))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

async fn txn(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.post("/v1/loyalty/transactions", SERVER_KEY, body).await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn redeem(app: &TestApp, user: &str, reward: &str, key: &str) -> (u16, Value) {
    txn(
        app,
        json!({"userId": user, "type": "redeem", "reward": reward, "idempotencyKey": key}),
    )
    .await
}

async fn earn(app: &TestApp, user: &str, points: i64, key: &str) -> (u16, Value) {
    txn(
        app,
        json!({"userId": user, "type": "earn", "points": points, "idempotencyKey": key,
               "reason": "Till purchase"}),
    )
    .await
}

fn kinds(w: &Value) -> Vec<(String, i64)> {
    w["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|t| {
            (
                t["type"].as_str().unwrap().to_owned(),
                t["points"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn points_from_consented_events_and_fields_once_each() {
    let app = spawn().await;
    // Not in the program: the event is kept for analytics, no points.
    grant(
        &app,
        "ann",
        json!({"analytics": "grant", "personalization": "grant"}),
    )
    .await;
    app.batch(vec![order("ann", "o1", json!(20))]).await;
    let w = wallet(&app, "ann").await;
    assert_eq!(
        (w["member"].as_bool(), w["balance"].as_i64()),
        (Some(false), Some(0))
    );
    assert_eq!(
        code_of(
            app.post(
                "/v1/loyalty/transactions",
                SERVER_KEY,
                json!({"userId": "ann", "type": "earn", "points": 5, "idempotencyKey": "k"})
            )
            .await
        )
        .await,
        (403, "loyalty_not_granted".to_owned())
    );

    // Joined: 1 point per EUR, floored; the same message again earns nothing more.
    grant(&app, "ann", json!({"loyalty": "grant"})).await;
    app.batch(vec![
        order("ann", "o2", json!(42.5)),
        order("ann", "o2", json!(42.5)),
    ])
    .await;
    app.batch(vec![order("ann", "o2", json!(42.5))]).await;
    app.batch(vec![order("ann", "o3", json!("not a number"))])
        .await;
    // Telling the shoe size: the bonus, once however often it is told.
    set_field(&app, "ann", "shoe_size", json!(41)).await;
    set_field(&app, "ann", "shoe_size", json!(42)).await;
    let w = wallet(&app, "ann").await;
    assert_eq!(kinds(&w), [("earn".into(), 42), ("earn".into(), 50)]);
    assert_eq!(w["balance"], 92);
    assert_eq!(w["tier"]["id"], "member");
    assert_eq!(w["tier"]["next"]["pointsNeeded"], 500 - 92);
    assert!(w["terms"]["financialIncentive"]
        .as_str()
        .unwrap()
        .contains("financial incentive"));
    assert!(w["terms"]["valueExchange"].as_array().unwrap().len() >= 3);
    app.stop().await;
}

#[tokio::test]
async fn redemption_reversal_stock_and_bad_input() {
    let app = spawn().await;
    grant(&app, "bob", json!({"loyalty": "grant"})).await;
    assert_eq!(earn(&app, "bob", 500, "till-1").await.0, 200);
    // The tote bag has a stock of 200; take it down to 1 to watch it run out.
    let (s, v) = admin(
        &app,
        Method::PUT,
        "/v1/admin/loyalty/rewards/tote_bag/stock",
        Some(json!({"stock": 1})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, first) = redeem(&app, "bob", "tote_bag", "r1").await;
    assert_eq!((s, &first["balance"]), (200, &json!(100)), "{first}");
    // The same key again: the same transaction, not a second bag.
    let (s, again) = redeem(&app, "bob", "tote_bag", "r1").await;
    assert_eq!(
        (s, &again["duplicate"], &again["transaction"]),
        (200, &json!(true), &first["transaction"])
    );
    assert_eq!(
        code_of(app.post("/v1/loyalty/transactions", SERVER_KEY,
            json!({"userId": "bob", "type": "redeem", "reward": "coffee", "idempotencyKey": "r1"})).await).await,
        (409, "idempotency_key_conflict".to_owned())
    );
    earn(&app, "bob", 1000, "till-2").await;
    let (s, v) = redeem(&app, "bob", "tote_bag", "r2").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("loyalty_out_of_stock")),
        "{v}"
    );
    let (s, v) = redeem(&app, "bob", "voucher_10", "r3").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = redeem(&app, "bob", "voucher_10", "r4").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("loyalty_insufficient_points")),
        "{v}"
    );

    // The operator reverses the bag: points and stock back, once.
    let id = first["transaction"]["id"].as_i64().unwrap();
    let body = json!({"userId": "bob", "transactionId": id, "reason": "Damaged in post",
                      "idempotencyKey": "rev-1"});
    let (s, v) = admin(
        &app,
        Method::POST,
        "/v1/admin/loyalty/reversals",
        Some(body.clone()),
    )
    .await;
    assert_eq!((s, &v["transaction"]["points"]), (200, &json!(400)), "{v}");
    let mut again = body.clone();
    again["idempotencyKey"] = json!("rev-2");
    let (s, v) = admin(
        &app,
        Method::POST,
        "/v1/admin/loyalty/reversals",
        Some(again),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("loyalty_already_reversed"))
    );
    let (s, v) = redeem(&app, "bob", "tote_bag", "r5").await;
    assert_eq!(s, 200, "the reversed bag is back in stock: {v}");

    // An audited correction, never below zero.
    let adj = |points: i64, key: &str| json!({"userId": "bob", "points": points, "reason": "Correction", "idempotencyKey": key});
    let (s, v) = admin(
        &app,
        Method::POST,
        "/v1/admin/loyalty/adjustments",
        Some(adj(-100_000, "a1")),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("loyalty_insufficient_points"))
    );
    let (s, _) = admin(
        &app,
        Method::POST,
        "/v1/admin/loyalty/adjustments",
        Some(adj(25, "a2")),
    )
    .await;
    assert_eq!(s, 200);
    let (_, audit) = admin(&app, Method::GET, "/v1/admin/audit", None).await;
    assert!(
        audit.to_string().contains("/v1/admin/loyalty/adjustments"),
        "{audit}"
    );

    // Bad input: a stable code, nothing written.
    let before = wallet(&app, "bob").await;
    for (body, status, code) in [
        (
            json!({"userId": "bob", "type": "earn", "points": 0, "idempotencyKey": "x"}),
            400,
            "invalid_request",
        ),
        (
            json!({"userId": "bob", "type": "earn", "points": 5}),
            400,
            "invalid_request",
        ),
        (
            json!({"userId": "bob", "type": "earn", "points": 5, "idempotencyKey": ""}),
            400,
            "invalid_request",
        ),
        (
            json!({"userId": "bob", "type": "gift", "points": 5, "idempotencyKey": "y"}),
            400,
            "invalid_request",
        ),
        (
            json!({"userId": "bob", "type": "redeem", "reward": "yacht", "idempotencyKey": "z"}),
            404,
            "unknown_reward",
        ),
        (
            json!({"userId": "nobody", "type": "earn", "points": 5, "idempotencyKey": "w"}),
            404,
            "subject_not_found",
        ),
    ] {
        let r = app
            .post("/v1/loyalty/transactions", SERVER_KEY, body.clone())
            .await;
        assert_eq!(code_of(r).await, (status, code.to_owned()), "{body}");
    }
    assert_eq!(wallet(&app, "bob").await["history"], before["history"]);

    let (s, f) = admin(&app, Method::GET, "/v1/admin/loyalty", None).await;
    assert_eq!(s, 200, "{f}");
    assert_eq!(
        (f["members"].as_u64(), f["outstanding"].as_i64()),
        (Some(1), before["balance"].as_i64())
    );
    app.stop().await;
}

#[tokio::test]
async fn leaving_and_erasure_stop_earning_at_once() {
    let app = spawn().await;
    grant(
        &app,
        "cyd",
        json!({"loyalty": "grant", "analytics": "grant"}),
    )
    .await;
    earn(&app, "cyd", 300, "t1").await;
    grant(&app, "cyd", json!({"loyalty": "withdraw"})).await;
    // Earning stops at once, on every path.
    assert_eq!(
        earn(&app, "cyd", 10, "t2").await.1["code"],
        "loyalty_not_granted"
    );
    app.batch(vec![order("cyd", "o1", json!(99))]).await;
    // The program's notice says points are forfeited on leaving.
    let w = wallet(&app, "cyd").await;
    assert_eq!(
        (w["member"].as_bool(), w["balance"].as_i64()),
        (Some(false), Some(0)),
        "{w}"
    );
    assert_eq!(kinds(&w), [("earn".into(), 300), ("forfeit".into(), -300)]);

    grant(&app, "dee", json!({"loyalty": "grant"})).await;
    earn(&app, "dee", 50, "d1").await;
    let r = app
        .post("/v1/me/erase", SERVER_KEY, json!({"userId": "dee"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        earn(&app, "dee", 10, "d2").await.1["code"],
        "subject_not_found"
    );
    let (_, f) = admin(&app, Method::GET, "/v1/admin/loyalty", None).await;
    assert_eq!(f["accounts"], 1, "the erased account is gone: {f}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_earns_and_redemptions_over_http_stay_consistent() {
    let app = spawn().await;
    let people = ["p1", "p2", "p3"];
    for p in people {
        grant(&app, p, json!({"loyalty": "grant"})).await;
    }
    admin(
        &app,
        Method::PUT,
        "/v1/admin/loyalty/rewards/tote_bag/stock",
        Some(json!({"stock": 5})),
    )
    .await;
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..300usize {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            // Each key is sent by two requests racing each other.
            let n = i / 2;
            let user = people[(n / 2) % 3];
            let (s, v) = if n % 4 == 3 {
                redeem(&app, user, "tote_bag", &format!("bag-{n}")).await
            } else if n % 4 == 2 {
                redeem(&app, user, "coffee", &format!("coffee-{n}")).await
            } else {
                earn(&app, user, 90, &format!("earn-{n}")).await
            };
            assert!(
                s == 200 || (s == 409 && v["code"].as_str().unwrap().starts_with("loyalty_")),
                "{s} {v}"
            );
            (user, s, v)
        }));
    }
    let mut applied = HashSet::new();
    for t in tasks {
        let (user, s, v) = t.await.unwrap();
        if s == 200 && v["duplicate"] == false {
            let key = v["transaction"]["idempotencyKey"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(applied.insert((user, key.clone())), "{key} applied twice");
        }
    }
    let mut bags = 0;
    for p in people {
        let w = wallet(&app, p).await;
        let mut running = 0;
        let mut keys = HashSet::new();
        for t in w["history"].as_array().unwrap().iter().rev() {
            running += t["points"].as_i64().unwrap();
            assert!(running >= 0, "{p}'s balance went below zero");
            assert!(keys.insert(t["idempotencyKey"].as_str().unwrap().to_owned()));
            if t["reward"] == "tote_bag" {
                bags += 1;
            }
        }
        assert_eq!(w["balance"].as_i64(), Some(running), "{p}");
    }
    let (_, f) = admin(&app, Method::GET, "/v1/admin/loyalty", None).await;
    let left = f["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "tote_bag")
        .unwrap()["stock"]
        .as_i64()
        .unwrap();
    assert!(left >= 0);
    assert_eq!(left + bags, 5, "stock and redemptions disagree: {f}");
    assert!(
        applied.len() > 50,
        "too little applied to mean anything: {}",
        applied.len()
    );
    match std::sync::Arc::try_unwrap(app) {
        Ok(app) => {
            app.stop().await;
        }
        Err(_) => panic!("app still shared"),
    }
}

#[tokio::test]
async fn points_expire_by_the_program_and_tiers_follow_the_window() {
    let start = 1_790_000_000_000;
    let (clock, c) = manual_clock(start);
    let app = spawn_clocked(fresh_env().await, "", c).await;
    grant(&app, "eve", json!({"loyalty": "grant"})).await;
    earn(&app, "eve", 600, "t1").await;
    let w = wallet(&app, "eve").await;
    assert_eq!(
        (w["tier"]["id"].as_str(), w["balance"].as_i64()),
        (Some("silver"), Some(600))
    );
    // Spend some; the rest expires 365 days after the day it was earned, oldest first.
    assert_eq!(redeem(&app, "eve", "tote_bag", "r1").await.0, 200);
    let day = 86_400_000;
    clock.store(start + 200 * day, std::sync::atomic::Ordering::SeqCst);
    earn(&app, "eve", 100, "t2").await;
    let w = wallet(&app, "eve").await;
    assert_eq!(
        w["expiringSoon"],
        json!([]),
        "nothing expires within 30 days yet"
    );
    clock.store(start + 350 * day, std::sync::atomic::Ordering::SeqCst);
    let w = wallet(&app, "eve").await;
    assert_eq!(w["expiringSoon"][0]["points"], 200, "{w}");
    candor_server::loyalty::expire_all(&app.state)
        .await
        .unwrap();
    assert_eq!(
        wallet(&app, "eve").await["balance"],
        300,
        "nothing expired before its day"
    );
    clock.store(start + 366 * day, std::sync::atomic::Ordering::SeqCst);
    candor_server::loyalty::expire_all(&app.state)
        .await
        .unwrap();
    // Twice in a day is once.
    candor_server::loyalty::expire_all(&app.state)
        .await
        .unwrap();
    let w = wallet(&app, "eve").await;
    assert_eq!(w["balance"], 100, "{w}");
    assert_eq!(kinds(&w).last(), Some(&("expire".to_owned(), -200)), "{w}");
    // The tier counts what was earned in the last 365 days: the 100 only.
    assert_eq!(w["tier"]["id"], "member");
    app.stop().await;
}
