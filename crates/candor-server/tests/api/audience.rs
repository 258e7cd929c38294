//! Audience insights over real HTTP: roles (advertiser keys reach only /v1/insights, no
//! other credential reaches it), answers with noise and intervals, the budget under truly
//! concurrent queries, consent (a withdrawal leaves the next pre-noise aggregate), the
//! audit log and the subject's transparency view.

use crate::helpers::*;
use candor_core::time::DAY_MS;
use candor_insights::query::{evaluate, InsightQuery, Metric, Permissions};
use candor_insights::{Day, FeatureKind};
use candor_privacy::bounds::SelectionKey;
use candor_privacy::query::prepare;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const CONFIG: &str = "[insights]\nmin_group_size = 0\nallow_insecure_rng = true\n";

/// `GET /v1/insights/budget` with `key`.
async fn get_budget(app: &TestApp, key: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/insights/budget"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// Status and error code of `GET /v1/insights/budget` with `key`.
async fn budget_with(app: &TestApp, key: &str) -> (u16, String) {
    code_of(get_budget(app, key).await).await
}

async fn ask(app: &TestApp, key: &str, q: Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url("/v1/insights/query"))
        .bearer_auth(key)
        .json(&q)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A subject with `ads_insights` granted (or not) and app sessions on a few days.
async fn person(app: &TestApp, anon: &str, insights: bool, band: &str) {
    app.consent(
        anon,
        json!({"analytics": "grant", "ads_insights": if insights { "grant" } else { "refuse" }}),
    )
    .await;
    let today = app.state.now_ms();
    let mut msgs = vec![json!({"type": "identify", "anonymousId": anon,
        "messageId": format!("{anon}-id"), "traits": {"age_band": band},
        "context": {"candor": {"share_in_aggregate": ["age_band"]}}})];
    for d in 0..3 {
        msgs.push(
            json!({"type": "track", "event": "App Session", "anonymousId": anon,
            "messageId": format!("{anon}-{d}"),
            "properties": {"app": "FitTrack", "app_category": "health_fitness"},
            "timestamp": candor_server::segment::format_time(today - d * DAY_MS)}),
        );
    }
    app.batch(msgs).await;
}

fn histogram_by_band(epsilon: f64) -> Value {
    json!({"metric": "histogram", "feature": "app_usage", "groupBy": ["age_band"], "epsilon": epsilon})
}

#[tokio::test]
async fn advertiser_keys_reach_only_the_insights_routes() {
    let app = spawn_with(CONFIG).await;
    let key = create_advertiser(&app, "acme", 5.0).await;
    let routes: &[(&str, &str)] = &[
        ("POST", "/v1/batch"),
        ("POST", "/v1/import"),
        ("POST", "/v1/identify"),
        ("POST", "/v1/track"),
        ("POST", "/v1/page"),
        ("POST", "/v1/screen"),
        ("POST", "/v1/group"),
        ("POST", "/v1/alias"),
        ("POST", "/v1/consent"),
        ("GET", "/v1/consent?anonymousId=a"),
        ("POST", "/v1/consent/accept-all"),
        ("POST", "/v1/consent/reject-all"),
        ("GET", "/v1/consent/history?anonymousId=a"),
        ("POST", "/v1/consent/signals"),
        ("GET", "/v1/consent/insights?anonymousId=a"),
        ("GET", "/v1/purposes"),
        ("GET", "/v1/receipts/public-key"),
        ("POST", "/v1/admin/subject-tokens"),
        ("GET", "/v1/admin/ledger/verify"),
        ("GET", "/v1/admin/stats"),
        ("GET", "/v1/admin/advertisers"),
        ("POST", "/v1/admin/advertisers"),
        ("PATCH", "/v1/admin/advertisers/acme"),
        ("POST", "/v1/admin/advertisers/acme/rotate-key"),
        ("GET", "/v1/admin/insights/reports"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/.well-known/gpc.json"),
        ("GET", "/v1/no-such-route"),
    ];
    for (method, path) in routes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app
            .client
            .request(m.clone(), app.url(path))
            .bearer_auth(&key)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            code_of(r).await,
            (403, "forbidden".into()),
            "{method} {path}"
        );
        // as a Basic username (how a write key is sent) too
        let r = app
            .client
            .request(m, app.url(path))
            .basic_auth(&key, Some(""))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            code_of(r).await,
            (403, "forbidden".into()),
            "{method} {path} (basic)"
        );
    }
    // creating the same id again is a conflict and leaves the first key working
    let r = app
        .client
        .post(app.url("/v1/admin/advertisers"))
        .bearer_auth(ADMIN)
        .json(&json!({"id": "acme", "name": "Impostor", "budget": {"epsilon": 100.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (409, "already_exists".into()));
    // the grant: its own routes answer
    for path in [
        "/v1/insights/schema",
        "/v1/insights/budget",
        "/v1/insights/reports",
    ] {
        let r = app
            .client
            .get(app.url(path))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn no_other_credential_reaches_the_insights_routes() {
    let app = spawn_with(CONFIG).await;
    let key = create_advertiser(&app, "acme", 5.0).await;
    let token: Value = app
        .client
        .post(app.url("/v1/admin/subject-tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"userId": "u1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let subject_token = token["token"].as_str().unwrap().to_owned();
    let paths = [
        ("POST", "/v1/insights/query"),
        ("GET", "/v1/insights/schema"),
        ("GET", "/v1/insights/budget"),
        ("GET", "/v1/insights/reports"),
        ("GET", "/v1/insights/reports/1"),
    ];
    for (method, path) in paths {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = || {
            app.client
                .request(m.clone(), app.url(path))
                .json(&histogram_by_band(0.1))
        };
        for (who, r) in [
            ("server key", req().basic_auth(SERVER_KEY, Some(""))),
            ("browser key", req().basic_auth(BROWSER_KEY, Some(""))),
            ("subject token", req().bearer_auth(&subject_token)),
            ("admin token", req().bearer_auth(ADMIN)),
        ] {
            let r = r.send().await.unwrap();
            assert_eq!(code_of(r).await, (403, "forbidden".into()), "{who} {path}");
        }
        let r = req().send().await.unwrap();
        assert_eq!(
            code_of(r).await,
            (401, "missing_credentials".into()),
            "{path}"
        );
        let r = req()
            .bearer_auth("cnd_adv_not-a-real-key")
            .send()
            .await
            .unwrap();
        assert_eq!(
            code_of(r).await,
            (401, "invalid_advertiser_key".into()),
            "{path}"
        );
    }
    // disabling and rotating take effect at once
    let r = app
        .client
        .post(app.url("/v1/admin/advertisers/acme/rotate-key"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let new_key = r.json::<Value>().await.unwrap()["apiKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        budget_with(&app, &key).await,
        (401, "invalid_advertiser_key".into())
    );
    assert_eq!(budget_with(&app, &new_key).await.0, 200);
    let r = app
        .client
        .patch(app.url("/v1/admin/advertisers/acme"))
        .bearer_auth(ADMIN)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        budget_with(&app, &new_key).await,
        (401, "invalid_advertiser_key".into())
    );
}

#[tokio::test]
async fn answers_carry_noise_intervals_and_charges_and_are_audited() {
    let app = spawn_with(CONFIG).await;
    let key = create_advertiser(&app, "acme", 2.0).await;
    let other = create_advertiser(&app, "other", 2.0).await;
    for i in 0..30 {
        person(
            &app,
            &format!("p{i}"),
            i % 3 != 0,
            if i % 2 == 0 { "25-34" } else { "35-44" },
        )
        .await;
    }
    let (status, a) = ask(&app, &key, histogram_by_band(0.5)).await;
    assert_eq!(status, 200, "{a}");
    let groups = a["groups"].as_array().unwrap();
    // public keys (the schema's age bands): every band is either answered or named as
    // suppressed (its noisy count fell below the minimum, here 0)
    let hidden = a["suppressed"]["keys"].as_array().unwrap().len();
    assert_eq!(groups.len() + hidden, 6, "{a}");
    for g in groups {
        let (v, lo, hi) = (
            g["value"].as_f64().unwrap(),
            g["ci95"][0].as_f64().unwrap(),
            g["ci95"][1].as_f64().unwrap(),
        );
        assert!(
            lo <= v && v <= hi && g["noiseScale"].as_f64().unwrap() > 0.0,
            "{g}"
        );
    }
    assert_eq!(a["privacy"]["epsilon"], 0.5);
    assert_eq!(a["privacy"]["partitionSelection"], false);
    assert_eq!(a["budget"]["spent"]["epsilon"], 0.5);
    assert_eq!(a["budget"]["remaining"]["epsilon"], 1.5);
    // no row, no identifier anywhere in the answer
    let text = a.to_string();
    assert!(!text.contains("p1") && !text.contains("subject"), "{text}");
    // private keys (categories from the data): partition selection, δ charged
    let (status, b) = ask(
        &app,
        &key,
        json!({"metric": "sum", "feature": "app_usage", "measure": "sessions", "clamp": [0, 10],
               "groupBy": ["category"], "epsilon": 0.5, "delta": 1e-6}),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["suppressed"]["undisclosed"], true);
    assert_eq!(b["privacy"]["partitionSelection"], true);
    // re-reading a report is free; another advertiser cannot see it
    let id = a["reportId"].as_i64().unwrap();
    let r = app
        .client
        .get(app.url(&format!("/v1/insights/reports/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["answer"]["groups"], a["groups"]);
    let r = app
        .client
        .get(app.url(&format!("/v1/insights/reports/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (404, "not_found".into()));
    let budget: Value = app.get_bearer("/v1/insights/budget", &key).await;
    assert_eq!(budget["spent"]["epsilon"], 1.0);
    // the operator's audit log: every query, its cost and who asked
    let log: Value = app.get_bearer("/v1/admin/insights/reports", ADMIN).await;
    let reports = log["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r["advertiser"] == "acme"));
    assert_eq!(reports[0]["charged"]["epsilon"], 0.5);
    assert_eq!(reports[0]["query"]["metric"], "histogram");
}

#[tokio::test]
async fn bad_or_forbidden_queries_are_refused_and_charge_nothing() {
    let app = spawn_with(CONFIG).await;
    let key = create_advertiser(&app, "acme", 1.0).await;
    let r = app
        .client
        .patch(app.url("/v1/admin/advertisers/acme"))
        .bearer_auth(ADMIN)
        .json(&json!({"dimensions": ["age_band"], "features": ["app_usage"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cases = [
        (
            json!({"metric": "histogram", "feature": "app_usage", "groupBy": ["category"], "epsilon": 0.1}),
            403,
            "query_not_allowed",
        ),
        (
            json!({"metric": "count", "feature": "browsing", "epsilon": 0.1}),
            403,
            "query_not_allowed",
        ),
        (
            json!({"metric": "median", "feature": "app_usage", "epsilon": 0.1}),
            400,
            "invalid_query",
        ),
        (
            json!({"metric": "count", "feature": "app_usage", "epsilon": -1}),
            400,
            "invalid_query",
        ),
        // found by the property test below: noise for ε = 0 cannot be calibrated, which is
        // the query's fault (it was answered with 500)
        (
            json!({"metric": "histogram", "feature": "app_usage", "groupBy": ["age_band"], "epsilon": 0}),
            400,
            "invalid_query",
        ),
        (
            json!({"metric": "count", "feature": "app_usage", "epsilon": 0.1, "extra": 1}),
            400,
            "invalid_query",
        ),
        (
            json!({"metric": "sum", "feature": "app_usage", "epsilon": 0.1}),
            400,
            "invalid_query",
        ),
        (
            json!({"metric": "count", "feature": "app_usage", "groupBy": ["age_band", "age_band"], "epsilon": 0.1}),
            400,
            "invalid_query",
        ),
        (
            json!({"metric": "count", "feature": "app_usage", "declared": {"age_band": ["7-9"]}, "epsilon": 0.1}),
            400,
            "invalid_query",
        ),
        (
            json!({"metric": "count", "feature": "app_usage", "dateFrom": "2026-13-01", "epsilon": 0.1}),
            400,
            "invalid_query",
        ),
        (
            json!({"metric": "count", "feature": "app_usage", "epsilon": 5.0}),
            429,
            "budget_exceeded",
        ),
    ];
    for (q, status, code) in cases {
        let (s, body) = ask(&app, &key, q.clone()).await;
        assert_eq!(
            (s, body["code"].as_str().unwrap_or("")),
            (status, code),
            "{q} → {body}"
        );
    }
    let r = app
        .client
        .post(app.url("/v1/insights/query"))
        .bearer_auth(&key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await.0, 400);
    let budget: Value = app.get_bearer("/v1/insights/budget", &key).await;
    assert_eq!(budget["spent"]["epsilon"], 0.0);
    let log: Value = app.get_bearer("/v1/admin/insights/reports", ADMIN).await;
    assert_eq!(log["reports"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_queries_never_overspend() {
    let app = spawn_with(CONFIG).await;
    let key = create_advertiser(&app, "acme", 1.0).await;
    person(&app, "p0", true, "25-34").await;
    // 40 queries of ε = 0.1 against ε = 1.0, all in flight at once
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/v1/insights/query"),
            key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&histogram_by_band(0.1))
                .send()
                .await
                .unwrap();
            code_of(r).await
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (429, c) if c == "budget_exceeded" => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, refused), (10, 30));
    let budget: Value = app.get_bearer("/v1/insights/budget", &key).await;
    assert_eq!(budget["spent"]["epsilon"], 1.0);
    assert_eq!(budget["remaining"]["epsilon"], 0.0);
}

/// The pre-noise aggregate the next answer would be computed from (the test build's view
/// into the engine: the same `evaluate` the server calls, after the same refresh).
async fn exact_counts(app: &TestApp) -> BTreeMap<String, i64> {
    let st = &app.state;
    st.store.refresh_features().await.unwrap();
    let today = Day::from_ms(st.now_ms()).unwrap();
    let q = InsightQuery {
        metric: Metric::Histogram,
        feature: FeatureKind::AppUsed,
        measure: None,
        clamp: None,
        group_by: vec!["age_band".into()],
        keys: None,
        from: Day::from_days(today.days() - 29).unwrap(),
        to: today,
        categories: None,
        declared: BTreeMap::new(),
        conditions: vec![],
        max_groups_per_subject: 1,
        epsilon: 1.0,
        delta: Some(0.0),
    };
    let perm = Permissions {
        features: vec!["app_usage".into()],
        dimensions: vec!["age_band".into()],
        min_group_size: 0,
    };
    let features = st.store.features();
    let c = q.compile(features, &perm).unwrap();
    let plan = prepare(&c.query).unwrap();
    let bit = st.insights_bit.unwrap();
    let index = st.store.index();
    let ev = evaluate(
        features,
        &c,
        &plan,
        &|s| index.granted(s).contains(bit),
        &SelectionKey::from_bytes([1; 32]),
    );
    ev.exact
        .into_iter()
        .map(|(k, v)| (k.parts()[0].clone(), v.0))
        .collect()
}

/// The feature index's counts once features are derived from everything acknowledged.
async fn feature_stats(app: &TestApp) -> candor_insights::IndexStats {
    app.state.store.refresh_features().await.unwrap();
    app.state.store.features().stats()
}

#[tokio::test]
async fn withdrawing_ads_insights_leaves_the_next_answer_and_transparency_shows_it() {
    let app = spawn_with(CONFIG).await;
    let key = create_advertiser(&app, "acme", 5.0).await;
    for i in 0..5 {
        person(&app, &format!("in{i}"), true, "25-34").await;
    }
    person(&app, "never", false, "25-34").await;
    // only events allowed for ads_insights became features
    assert_eq!(exact_counts(&app).await["25-34"], 5);
    assert_eq!(feature_stats(&app).await.subjects, 5);

    let (s, first) = ask(&app, &key, histogram_by_band(0.5)).await;
    assert_eq!(s, 200, "{first}");
    // in0 withdraws: the very next pre-noise aggregate no longer counts it
    let r = app
        .post(
            "/v1/consent",
            BROWSER_KEY,
            json!({"anonymousId": "in0", "choices": {"ads_insights": "withdraw"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(exact_counts(&app).await["25-34"], 4);
    let (s, second) = ask(&app, &key, histogram_by_band(0.5)).await;
    assert_eq!(s, 200, "{second}");

    // transparency: in0 was eligible for the first report only; in1 for both; "never" for none
    let view = |anon: &'static str| {
        let app = &app;
        async move {
            app.get_as_browser(&format!("/v1/consent/insights?anonymousId={anon}"))
                .await
        }
    };
    let ids = |v: &Value| -> Vec<i64> {
        v["reports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["reportId"].as_i64().unwrap())
            .collect()
    };
    let (r1, r2) = (
        first["reportId"].as_i64().unwrap(),
        second["reportId"].as_i64().unwrap(),
    );
    let v0 = view("in0").await;
    assert_eq!(ids(&v0), vec![r1], "{v0}");
    assert_eq!(v0["reports"][0]["advertiser"]["id"], "acme");
    assert_eq!(v0["reports"][0]["epsilon"], 0.5);
    assert_eq!(v0["reports"][0]["purpose"], "ads_insights");
    assert_eq!(v0["features"].as_array().unwrap().len(), 0, "{v0}");
    let v1 = view("in1").await;
    assert_eq!(ids(&v1), vec![r2, r1]);
    assert_eq!(v1["features"][0]["category"], "health_fitness");
    assert!(ids(&view("never").await).is_empty());
}

/// Category names come from the operator's list: a made-up name is counted as "other",
/// so a script sending endless new names neither grows the set of categories nor puts a
/// name of its own in front of an advertiser.
#[tokio::test]
async fn made_up_categories_count_as_other() {
    let app = spawn_with(CONFIG).await;
    app.consent(
        "inv",
        json!({"analytics": "grant", "ads_insights": "grant"}),
    )
    .await;
    let before = feature_stats(&app).await.categories;
    let msgs: Vec<Value> = (0..50)
        .map(|i| {
            json!({"type": "track", "event": "App Session", "anonymousId": "inv",
                   "messageId": format!("inv-{i}"),
                   "properties": {"app_category": format!("Made-Up-{i}")}})
        })
        .chain([
            json!({"type": "track", "event": "App Session", "anonymousId": "inv",
                       "messageId": "inv-games", "properties": {"app_category": "games"}}),
        ])
        .collect();
    let r = app.batch(msgs).await;
    assert_eq!(r["accepted"], 51, "{r}");
    let stats = feature_stats(&app).await;
    assert_eq!(stats.categories, before);
    assert_eq!(stats.daily_rows, 2, "one day of games, one of other");
    let v = app
        .get_as_browser("/v1/consent/insights?anonymousId=inv")
        .await;
    let mut seen: Vec<(String, i64)> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["category"].as_str().unwrap().to_owned(),
                f["count"].as_i64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec![("games".into(), 1), ("other".into(), 50)], "{v}");
}

#[tokio::test]
async fn events_dated_outside_the_retention_window_make_no_features() {
    let app = spawn_with(CONFIG).await;
    app.consent(
        "old",
        json!({"analytics": "grant", "ads_insights": "grant"}),
    )
    .await;
    let now = app.state.now_ms();
    let at = |ms: i64, id: &str| {
        json!({"type": "track", "event": "App Session", "anonymousId": "old", "messageId": id,
               "properties": {"app_category": "games"},
               "timestamp": candor_server::segment::format_time(ms)})
    };
    // ads_insights keeps 180 days: 400 days ago and 3 days ahead are stored but not features
    let r = app
        .batch(vec![at(now - 400 * DAY_MS, "a"), at(now + 3 * DAY_MS, "b")])
        .await;
    assert_eq!(r["accepted"], 2, "{r}");
    assert_eq!(feature_stats(&app).await.daily_rows, 0);
    app.batch(vec![at(now - DAY_MS, "c")]).await;
    assert_eq!(feature_stats(&app).await.daily_rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_to_an_advertiser_are_never_lost() {
    let app = spawn_with(CONFIG).await;
    let mut old_keys = vec![create_advertiser(&app, "acme", 1.0).await];
    let send = |method: &'static str, path: &'static str, body: Value| {
        let (client, url) = (app.client.clone(), app.url(path));
        tokio::spawn(async move {
            let req = match method {
                "PATCH" => client.patch(url).json(&body),
                _ => client.post(url),
            };
            let r = req.bearer_auth(ADMIN).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    for round in 0..6u32 {
        // A key rotation (a leaked key being revoked) racing PATCHes of other fields, all
        // in flight at once: every change must land, and no PATCH may write back a key.
        let period = ["day", "week", "month"][round as usize % 3];
        let epsilon = f64::from(round) + 2.0;
        let tasks = vec![
            send("POST", "/v1/admin/advertisers/acme/rotate-key", Value::Null),
            send(
                "PATCH",
                "/v1/admin/advertisers/acme",
                json!({"name": format!("Name {round}")}),
            ),
            send(
                "PATCH",
                "/v1/admin/advertisers/acme",
                json!({"period": period}),
            ),
            send(
                "PATCH",
                "/v1/admin/advertisers/acme",
                json!({"budget": {"epsilon": epsilon, "delta": 1e-4}}),
            ),
        ];
        let mut new_key = None;
        for (i, t) in tasks.into_iter().enumerate() {
            let (status, body) = t.await.unwrap();
            assert_eq!(status, 200, "{body}");
            if i == 0 {
                new_key = body["apiKey"].as_str().map(str::to_owned);
            }
        }
        let list: Value = app.get_bearer("/v1/admin/advertisers", ADMIN).await;
        let acme = &list["advertisers"][0];
        assert_eq!(acme["name"], format!("Name {round}"), "{acme}");
        assert_eq!(acme["period"], period, "{acme}");
        assert_eq!(acme["budget"]["total"]["epsilon"], epsilon, "{acme}");
        let new_key = new_key.expect("a rotated key");
        assert_eq!(budget_with(&app, &new_key).await.0, 200);
        for k in &old_keys {
            assert_eq!(
                budget_with(&app, k).await.0,
                401,
                "a revoked key works again"
            );
        }
        old_keys.push(new_key);
    }
}

/// Query fields drawn from names the compiler knows, names it does not, and values at
/// and past every edge (zero, negative, huge, wrong type, impossible dates).
fn arb_query() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let word = || {
        prop_oneof![
            prop::sample::select(vec![
                "histogram",
                "count",
                "sum",
                "mean",
                "app_usage",
                "app_installs",
                "browsing",
                "category",
                "age_band",
                "country",
                "days",
                "sessions",
                "health_fitness",
                "25-34",
                "",
            ])
            .prop_map(|s| json!(s)),
            "[a-zA-Z_0-9-]{1,12}".prop_map(|s| json!(s)),
            Just(json!(7)),
            Just(Value::Null),
        ]
    };
    let num = || {
        prop_oneof![
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(1e308)),
            Just(json!(1e-300)),
            Just(json!(4_294_967_296u64)),
            (-5.0..20.0f64).prop_map(|x| json!(x)),
            (0.01..2.0f64).prop_map(|x| json!(x)),
            Just(json!("1")),
        ]
    };
    let date = prop_oneof![
        Just(json!("2026-11-01")),
        Just(json!("2026-11-29")),
        Just(json!("2026-13-01")),
        Just(json!("0000-01-01")),
        Just(json!("9999-12-31")),
        Just(json!("yesterday")),
        Just(json!(20261101)),
    ];
    let words = move |n: usize| prop::collection::vec(word(), 0..n).prop_map(Value::Array);
    let shape = (
        prop::option::weighted(0.12, word()),
        prop::option::weighted(0.12, word()),
        prop::option::weighted(0.12, word()),
        prop::option::weighted(0.12, (num(), num()).prop_map(|(a, b)| json!([a, b]))),
        prop::option::weighted(0.12, words(4)),
        prop::option::weighted(
            0.25,
            prop::collection::vec(words(3), 0..3).prop_map(Value::Array),
        ),
        prop::option::weighted(0.12, num()),
    );
    let rest = (
        prop::option::weighted(0.12, date.clone()),
        prop::option::weighted(0.12, date),
        prop::option::weighted(0.12, words(3)),
        prop::option::weighted(
            0.25,
            prop::collection::btree_map("[a-z_]{1,10}", words(3), 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ),
        prop::option::weighted(
            0.25,
            prop::collection::vec(
                (word(), prop::option::weighted(0.12, word()), num())
                    .prop_map(|(f, c, d)| json!({"feature": f, "category": c, "minDays": d})),
                0..3,
            )
            .prop_map(Value::Array),
        ),
        prop::option::weighted(0.12, num()),
        prop::option::weighted(0.12, num()),
        prop::option::weighted(0.12, num()),
        prop::option::weighted(0.05, ("[a-z]{1,8}", word())),
    );
    // A valid query with some fields replaced or added: wholly random objects almost
    // never get past the first check, and the release path must be exercised too.
    (shape, rest).prop_map(|(s, r)| {
        let mut q = serde_json::Map::new();
        q.insert("metric".into(), json!("histogram"));
        q.insert("feature".into(), json!("app_usage"));
        q.insert("groupBy".into(), json!(["age_band"]));
        q.insert("epsilon".into(), json!(0.1));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                q.insert(k.to_owned(), v);
            }
        };
        put("metric", s.0);
        put("feature", s.1);
        put("measure", s.2);
        put("clamp", s.3);
        put("groupBy", s.4);
        put("keys", s.5);
        put("topK", s.6);
        put("dateFrom", r.0);
        put("dateTo", r.1);
        put("categories", r.2);
        put("declared", r.3);
        put("conditions", r.4);
        put("maxGroupsPerSubject", r.5);
        put("epsilon", r.6);
        put("delta", r.7);
        if let Some((k, v)) = r.8 {
            q.insert(k, v);
        }
        Value::Object(q)
    })
}

/// Whatever an advertiser sends, the answer is a release or a stable 4xx code, never a
/// server error, and only a release charges the budget (by the query's own ε).
#[test]
fn arbitrary_queries_get_an_answer_or_a_stable_code_and_only_answers_charge() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (app, key) = rt.block_on(async {
        let app = spawn_with(CONFIG).await;
        let key = create_advertiser(&app, "acme", 1000.0).await;
        for (i, band) in ["25-34", "35-44", "25-34"].iter().enumerate() {
            person(&app, &format!("q{i}"), true, band).await;
        }
        (app, key)
    });
    let codes: Vec<&str> = candor_server::error::TABLE.iter().map(|r| r.1).collect();
    let spent = |app: &TestApp, key: &str| -> f64 {
        rt.block_on(async {
            let budget: Value = get_budget(app, key).await.json().await.unwrap();
            budget["spent"]["epsilon"].as_f64().unwrap()
        })
    };
    let answered = std::sync::atomic::AtomicU32::new(0);
    let mut runner = runner(1000);
    runner
        .run(&arb_query(), |q| {
            let before = spent(&app, &key);
            let (status, body) = rt.block_on(ask(&app, &key, q.clone()));
            let after = spent(&app, &key);
            prop_assert!(
                status == 200 || [400, 403, 429].contains(&status),
                "status {} for {} -> {}",
                status,
                q,
                body
            );
            if status == 200 {
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // ε is charged in whole nano-ε, rounded up.
                let eps = q["epsilon"].as_f64().unwrap_or(f64::NAN);
                prop_assert!(
                    after > before && after - before <= (eps * 1e9).ceil() / 1e9 + 1e-12,
                    "charged {} for ε = {} ({})",
                    after - before,
                    eps,
                    q
                );
            } else {
                let code = body["code"].as_str().unwrap_or_default().to_owned();
                prop_assert!(codes.contains(&code.as_str()), "unknown code {}", code);
                prop_assert!(after == before, "a refused query charged: {}", q);
            }
            Ok(())
        })
        .unwrap();
    // The generator must reach the release path, or the test checks only refusals.
    let answered = answered.into_inner();
    assert!(answered > 0, "no generated query was answered");
    eprintln!("{answered} of 1000 generated queries were answered");
}

#[derive(Debug, Clone)]
enum FeatureStep {
    /// (person, purpose: 0 = ads_insights, 1 = analytics, action)
    Choose(usize, usize, &'static str),
    /// (person, app category)
    Session(usize, &'static str),
}

/// Random interleavings of consent changes and app sessions for two people, checked after
/// every step through the person's own transparency view against a model: a session adds
/// to its category's count only while `ads_insights` is granted, and every time that
/// purpose is granted or taken away the features held about the person start from
/// nothing (deleted with the change, never rebuilt from older events).
#[test]
fn features_held_follow_the_insights_purpose_over_any_sequence() {
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_with(CONFIG));
    let step = prop_oneof![
        2 => (0..2usize, 0..2usize, prop::sample::select(vec!["grant", "refuse", "withdraw"]))
            .prop_map(|(s, p, a)| FeatureStep::Choose(s, p, a)),
        3 => (0..2usize, prop::sample::select(vec!["health_fitness", "games"]))
            .prop_map(|(s, c)| FeatureStep::Session(s, c)),
    ];
    let mut runner = runner(24);
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&prop::collection::vec(step, 1..30), |steps| {
            let c = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let who = |s: usize| format!("feat-{c}-{s}");
            let mut granted = [[false; 2]; 2];
            let mut held: [BTreeMap<&str, u64>; 2] = Default::default();
            for (i, st) in steps.iter().enumerate() {
                let s = match st {
                    FeatureStep::Choose(s, p, a) => {
                        let purpose = ["ads_insights", "analytics"][*p];
                        let body = json!({"anonymousId": who(*s), "choices": {purpose: a}});
                        let status = rt
                            .block_on(async {
                                app.post("/v1/consent", BROWSER_KEY, body).await.status()
                            })
                            .as_u16();
                        let was = granted[*s][*p];
                        let now = match *a {
                            "grant" => true,
                            "refuse" => false,
                            _ if was => false,
                            _ => {
                                prop_assert_eq!(status, 409);
                                continue;
                            }
                        };
                        prop_assert_eq!(status, 200);
                        granted[*s][*p] = now;
                        if *p == 0 && was != now {
                            held[*s].clear();
                        }
                        *s
                    }
                    FeatureStep::Session(s, category) => {
                        let msg = json!({"type": "track", "event": "App Session",
                            "anonymousId": who(*s), "messageId": format!("feat-{c}-m{i}"),
                            "properties": {"app": "Some App", "app_category": category}});
                        rt.block_on(app.batch(vec![msg]));
                        if granted[*s][0] {
                            *held[*s].entry(category).or_default() += 1;
                        }
                        *s
                    }
                };
                let view: Value = rt.block_on(
                    app.get_as_browser(&format!("/v1/consent/insights?anonymousId={}", who(s))),
                );
                let shown: BTreeMap<String, u64> = view["features"]
                    .as_array()
                    .map(|fs| {
                        fs.iter()
                            .map(|f| {
                                (
                                    format!(
                                        "{}/{}",
                                        f["feature"].as_str().unwrap_or(""),
                                        f["category"].as_str().unwrap_or("")
                                    ),
                                    f["count"].as_u64().unwrap_or(0),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let want: BTreeMap<String, u64> = held[s]
                    .iter()
                    .map(|(cat, n)| (format!("app_usage/{cat}"), *n))
                    .collect();
                prop_assert_eq!(&shown, &want, "after {:?}", &steps[..=i]);
            }
            Ok(())
        })
        .unwrap();
}

/// Insights cannot be probed (issue 11, part 7): a query the budget cannot cover is
/// refused before any scan, so an advertiser with no budget left costs nothing; and an
/// advertiser's queries run one at a time (the rest wait their turn), so it cannot
/// queue scans ahead of the others.
#[tokio::test]
async fn no_budget_costs_no_scan_and_each_advertiser_queries_one_at_a_time() {
    use std::sync::atomic::Ordering;
    let app = spawn_with(CONFIG).await;
    let poor = create_advertiser(&app, "poor", 0.1).await;
    let (status, body) = ask(&app, &poor, histogram_by_band(0.1)).await;
    assert_eq!(status, 200, "{body}");
    let scans = app.state.insight_scans_run.load(Ordering::SeqCst);
    for _ in 0..3 {
        let (status, body) = ask(&app, &poor, histogram_by_band(0.1)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("budget_exceeded"))
        );
    }
    assert_eq!(app.state.insight_scans_run.load(Ordering::SeqCst), scans);

    let busy = create_advertiser(&app, "busy", 5.0).await;
    let other = create_advertiser(&app, "other", 5.0).await;
    // While one of busy's queries holds its slot, its next waits (no scan)...
    let slot = candor_server::audience::AdvertiserSlot::take(&app.state, "busy").await;
    let waiting = {
        let (client, url) = (app.client.clone(), app.url("/v1/insights/query"));
        tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(busy)
                .json(&histogram_by_band(0.1))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        })
    };
    // ...and another advertiser is not held up by it.
    let (status, body) = ask(&app, &other, histogram_by_band(0.1)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!waiting.is_finished());
    drop(slot);
    assert_eq!(waiting.await.unwrap(), 200);
}

/// `PATCH /v1/admin/advertisers/{id}` as the admin; the status and body.
async fn patch_advertiser(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .patch(app.url(&format!("/v1/admin/advertisers/{id}")))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// An advertiser's lifetime cap holds across periods' budgets: once spent, the next
/// query is refused with `lifetime_budget_exceeded` (403: waiting does not help) before
/// any scan and charges nothing; the cap shows in the budget and can be lifted.
#[tokio::test]
async fn a_lifetime_cap_refuses_before_any_scan_and_can_be_lifted() {
    use std::sync::atomic::Ordering;
    let app = spawn_with(CONFIG).await;
    let key = create_advertiser(&app, "acme", 5.0).await;
    for bad in [
        json!({"lifetime": {"epsilon": -1.0}}),
        json!({"lifetime": {"epsilon": 1.0, "delta": 0.5}}),
        json!({"lifetime": {"epsilon": 1.0, "extra": 1}}),
        json!({"lifetime": 3}),
    ] {
        let (status, body) = patch_advertiser(&app, "acme", bad.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {body}"
        );
    }
    let (status, body) = patch_advertiser(
        &app,
        "acme",
        json!({"lifetime": {"epsilon": 0.25, "delta": 1e-5}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["budget"]["lifetime"]["total"]["epsilon"], 0.25);
    for _ in 0..2 {
        let (status, body) = ask(&app, &key, histogram_by_band(0.1)).await;
        assert_eq!(status, 200, "{body}");
    }
    let scans = app.state.insight_scans_run.load(Ordering::SeqCst);
    let reports = app
        .state
        .store
        .reports(Some("acme"), 0, 100)
        .await
        .unwrap()
        .len();
    let (status, body) = ask(&app, &key, histogram_by_band(0.1)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("lifetime_budget_exceeded")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("lifetime"),
        "{body}"
    );
    assert_eq!(app.state.insight_scans_run.load(Ordering::SeqCst), scans);
    assert_eq!(
        app.state
            .store
            .reports(Some("acme"), 0, 100)
            .await
            .unwrap()
            .len(),
        reports
    );
    let budget: Value = get_budget(&app, &key).await.json().await.unwrap();
    let left = budget["lifetime"]["remaining"]["epsilon"].as_f64().unwrap();
    assert!((left - 0.05).abs() < 1e-9, "{budget}");
    // A smaller query still fits; then lifting the cap lets the period's budget decide.
    let (status, body) = ask(&app, &key, histogram_by_band(0.05)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = patch_advertiser(&app, "acme", json!({"lifetime": null})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["budget"].get("lifetime").is_none(), "{body}");
    let (status, body) = ask(&app, &key, histogram_by_band(0.1)).await;
    assert_eq!(status, 200, "{body}");
}

/// The operator's cap across advertisers: what one advertiser spends, another cannot;
/// the refusal (`total_budget_exceeded`, 429) comes before any scan and does not say
/// how much the others spent.
#[tokio::test]
async fn the_operators_cap_across_advertisers_holds() {
    use std::sync::atomic::Ordering;
    let config =
        format!("{CONFIG}total_budget = {{ epsilon = 0.3, delta = 1e-4, period = \"week\" }}\n");
    let app = spawn_with(&config).await;
    let first = create_advertiser(&app, "first", 5.0).await;
    let second = create_advertiser(&app, "second", 5.0).await;
    for _ in 0..3 {
        let (status, body) = ask(&app, &first, histogram_by_band(0.1)).await;
        assert_eq!(status, 200, "{body}");
    }
    let scans = app.state.insight_scans_run.load(Ordering::SeqCst);
    for key in [&first, &second] {
        let (status, body) = ask(&app, key, histogram_by_band(0.1)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("total_budget_exceeded")),
            "{body}"
        );
        assert!(
            !body["message"].as_str().unwrap().contains("left"),
            "{body}"
        );
    }
    assert_eq!(app.state.insight_scans_run.load(Ordering::SeqCst), scans);
    // Each advertiser's own budget is untouched by the refusals.
    let budget: Value = get_budget(&app, &second).await.json().await.unwrap();
    assert_eq!(budget["spent"]["epsilon"], 0.0, "{budget}");
}
