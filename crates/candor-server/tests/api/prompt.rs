//! The consent prompt's server side over real HTTP: who may call each route (denials as
//! carefully as grants), what candor.js is told to show in each language, the hash the
//! ledger records for the text shown, the anonymous counts and their statistics, the
//! variant linter and the experiment, CORS for publishers' pages, and the script's size.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PURPOSES: [&str; 5] = [
    "analytics",
    "personalization",
    "ads_insights",
    "email_marketing",
    "loyalty",
];

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

async fn admin(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = app.client.request(method, app.url(path)).bearer_auth(ADMIN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// What candor-lint.js measures for the standard prompt in a browser: three alike
/// buttons in a row, nothing ticked, every notice shown.
pub fn fair_rendering() -> Value {
    let button = |role: &str, x: f64| {
        json!({"role": role, "rect": [x, 500.0, 190.0, 44.0], "color": [255, 255, 255],
               "background": [29, 63, 143], "fontSize": 16.0, "fontWeight": 600,
               "visible": true, "inViewport": true})
    };
    json!({
        "surface": [255, 255, 255],
        "firstLayer": [button("accept", 345.0), button("reject", 544.0), button("choose", 744.0)],
        "choices": PURPOSES.iter().map(|p| json!({"purposes": [p], "checked": false, "label": p})).collect::<Vec<_>>(),
        "notices": PURPOSES.iter().map(|p| (p.to_string(), json!(format!("What {p} does.")))).collect::<serde_json::Map<_, _>>(),
    })
}

/// `GET /v1/prompt` with this query string.
async fn prompt_config(app: &TestApp, query: String) -> Value {
    let r = app.client.get(app.url(&format!("/v1/prompt{query}")));
    r.send().await.unwrap().json().await.unwrap()
}

/// A request with one credential: `("basic", key)`, `("bearer", token)` or none.
async fn call_as(
    app: &TestApp,
    method: Method,
    path: &str,
    cred: Option<(&str, &str)>,
    body: &Value,
) -> (u16, String) {
    let r = app.client.request(method, app.url(path)).json(body);
    let r = match cred {
        Some(("basic", k)) => r.basic_auth(k, Some("")),
        Some((_, t)) => r.bearer_auth(t),
        None => r,
    };
    code_of(r.send().await.unwrap()).await
}

#[tokio::test]
async fn prompt_routes_and_their_roles() {
    let app = spawn().await;
    let advertiser = {
        let (s, b) = json_of(
            admin(&app, Method::POST, "/v1/admin/advertisers", Some(json!({"id": "acme", "name": "Acme", "budget": {"epsilon": 1.0, "delta": 1e-6}}))).await,
        )
        .await;
        assert_eq!(s, 201, "{b}");
        b["apiKey"].as_str().unwrap().to_owned()
    };
    // Anyone: the script, the linter's script, the prompt's configuration.
    for path in ["/candor.js", "/candor-lint.js", "/v1/prompt"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // Counting needs a source's write key, in the body or as Basic auth.
    let event = json!({"variant": "standard", "event": "impression"});
    let keyed = |key: &str| {
        let mut e = event.clone();
        e["writeKey"] = json!(key);
        e
    };
    let events = "/v1/prompt/events";
    let denied = [
        (
            call_as(&app, Method::POST, events, None, &event).await,
            (401, "missing_write_key"),
        ),
        (
            call_as(&app, Method::POST, events, Some(("bearer", ADMIN)), &event).await,
            (401, "missing_write_key"),
        ),
        (
            call_as(&app, Method::POST, events, None, &keyed("not-a-key")).await,
            (401, "invalid_write_key"),
        ),
        // advertiser keys reach only /v1/insights
        (
            call_as(
                &app,
                Method::POST,
                events,
                Some(("bearer", &advertiser)),
                &event,
            )
            .await,
            (403, "forbidden"),
        ),
    ];
    for (got, want) in denied {
        assert_eq!(got, (want.0, want.1.to_owned()));
    }
    assert_eq!(
        call_as(&app, Method::POST, events, None, &keyed(BROWSER_KEY))
            .await
            .0,
        202
    );
    assert_eq!(
        call_as(
            &app,
            Method::POST,
            events,
            Some(("basic", SERVER_KEY)),
            &event
        )
        .await
        .0,
        202
    );
    // The admin's prompt routes: the admin token and nothing else.
    let routes = [
        (Method::POST, "/v1/admin/prompt/lint"),
        (Method::POST, "/v1/admin/prompt/preview"),
        (Method::POST, "/v1/admin/prompt/variants"),
        (Method::GET, "/v1/admin/prompt/variants"),
        (Method::PATCH, "/v1/admin/prompt/variants/standard"),
        (Method::GET, "/v1/admin/prompt/stats"),
    ];
    let empty = json!({});
    for (m, path) in &routes {
        let call = |cred| call_as(&app, m.clone(), path, cred, &empty);
        let missing = (401, "missing_credentials".to_owned());
        assert_eq!(call(None).await, missing, "{m} {path}");
        assert_eq!(
            call(Some(("basic", SERVER_KEY))).await,
            missing,
            "{m} {path}: a write key"
        );
        assert_eq!(
            call(Some(("bearer", "wrong-token-wrong-token"))).await,
            (401, "invalid_admin_token".into()),
            "{m} {path}"
        );
        assert_eq!(
            call(Some(("bearer", &advertiser))).await,
            (403, "forbidden".into()),
            "{m} {path}: an advertiser key"
        );
    }
    let (s, _) = json_of(admin(&app, Method::GET, "/v1/admin/prompt/variants", None).await).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn the_script_is_small_and_complete() {
    let app = spawn().await;
    let r = app.client.get(app.url("/candor.js")).send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["cross-origin-resource-policy"], "cross-origin");
    let js = r.text().await.unwrap();
    assert!(
        !js.contains("__CANDOR_CSS__"),
        "the stylesheet is in the served script"
    );
    assert!(js.contains(".cd::backdrop"));
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(js.as_bytes()).unwrap();
    let size = gz.finish().unwrap().len();
    // The budget the issue sets: under 15 KB gzipped with the IAB APIs included.
    assert!(size < 15 * 1024, "candor.js is {size} bytes gzipped");
}

#[tokio::test]
async fn the_prompt_speaks_the_page_language_and_the_ledger_records_that_text() {
    let app = spawn().await;
    let cfg = |q: &'static str| prompt_config(&app, q.to_owned());
    let fr = cfg("?lang=fr-CA&anonymousId=a").await;
    assert_eq!(fr["language"], "fr-ca");
    assert_eq!(fr["variant"]["texts"]["reject"], "Tout refuser");
    assert_eq!(fr["variant"]["texts"]["accept"], "Tout accepter");
    assert_eq!(fr["variant"]["id"], "standard");
    for p in fr["purposes"].as_array().unwrap() {
        assert_eq!(p["notice"]["language"], "fr", "{p}");
        assert_eq!(
            p["notice"]["sha256"],
            sha256(p["notice"]["text"].as_str().unwrap())
        );
    }
    // German texts exist for two purposes only: the others fall back to English.
    let de = cfg("?lang=de").await;
    let langs: Vec<&str> = de["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["notice"]["language"].as_str().unwrap())
        .collect();
    assert_eq!(langs, ["de", "de", "en", "en", "en"]);
    // An unknown or malformed language: the catalog's own.
    for q in ["?lang=xx", "?lang=%21%21", ""] {
        let c = cfg(q).await;
        assert_eq!(c["variant"]["texts"]["reject"], "Reject all", "{q}");
        assert_eq!(c["purposes"][0]["notice"]["language"], "en", "{q}");
    }
    let r = app
        .client
        .get(app.url("/v1/prompt?nope=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (400, "invalid_request".into()));
    // Recording in French: the ledger holds the French text's hash and the language.
    let fr_hash = fr["purposes"][0]["notice"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let en_hash = cfg("").await["purposes"][0]["notice"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(fr_hash, en_hash);
    let r = app
        .post("/v1/consent", BROWSER_KEY, json!({"anonymousId": "fr1", "choices": {"analytics": "grant"}, "noticeVersions": {"analytics": 1}, "noticeLanguage": "fr"}))
        .await;
    let (s, body) = json_of(r).await;
    assert_eq!(s, 200, "{body}");
    let rec = &body["receipts"][0]["record"];
    assert_eq!(rec["noticeHash"], fr_hash);
    assert_eq!(rec["evidence"]["noticeLanguage"], "fr");
    let body = app.consent("en1", json!({"analytics": "grant"})).await;
    assert_eq!(body["receipts"][0]["record"]["noticeHash"], en_hash);
    // Accept-all names the language and the versions shown too.
    let r = app
        .post("/v1/consent/accept-all", BROWSER_KEY, json!({"anonymousId": "fr2", "noticeLanguage": "fr", "noticeVersions": {"analytics": 1, "loyalty": 1}}))
        .await;
    let (s, body) = json_of(r).await;
    assert_eq!(s, 200, "{body}");
    let hashes: Vec<&str> = body["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"]["noticeHash"].as_str().unwrap())
        .collect();
    let expect: Vec<String> = fr["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["notice"]["sha256"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hashes, expect);
    // Bad input changes nothing.
    let before = app.stats().await["ledgerRecords"].clone();
    for (path, body, want) in [
        (
            "/v1/consent",
            json!({"anonymousId": "x", "choices": {"analytics": "grant"}, "noticeLanguage": "français"}),
            (400, "invalid_request"),
        ),
        (
            "/v1/consent/accept-all",
            json!({"anonymousId": "x", "noticeLanguage": "f"}),
            (400, "invalid_request"),
        ),
        (
            "/v1/consent/accept-all",
            json!({"anonymousId": "x", "noticeVersions": {"analytics": 2}}),
            (409, "notice_version_mismatch"),
        ),
        (
            "/v1/consent/reject-all",
            json!({"anonymousId": "x", "noticeVersions": {"nope": 1}}),
            (400, "unknown_purpose"),
        ),
    ] {
        let r = app.post(path, BROWSER_KEY, body.clone()).await;
        assert_eq!(
            code_of(r).await,
            (want.0, want.1.to_owned()),
            "{path} {body}"
        );
    }
    assert_eq!(app.stats().await["ledgerRecords"], before);
}

#[tokio::test]
async fn candor_gpc_relays_the_dom_signal_like_sec_gpc() {
    let app = spawn().await;
    let accept_all = |anon: &'static str, gpc: &'static str| {
        let r = app
            .client
            .post(app.url("/v1/consent/accept-all"))
            .basic_auth(BROWSER_KEY, Some(""))
            .header("Candor-GPC", gpc)
            .json(&json!({"anonymousId": anon}));
        async move { json_of(r.send().await.unwrap()).await }
    };
    let (s, body) = accept_all("g1", "1").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["gpc"]["applied"], true);
    assert_eq!(body["gpc"]["overridden"], json!(["ads_insights"]));
    // The ledger says which signal it was.
    let refusal = body["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["record"]["collectionMethod"] == "gpc")
        .unwrap();
    assert_eq!(refusal["record"]["evidence"]["signal"], "Candor-GPC: 1");
    let granted: Vec<&str> = body["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["granted"] == true)
        .map(|p| p["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(
        granted,
        ["analytics", "personalization", "email_marketing", "loyalty"]
    );
    // Any other value is no signal.
    let (_, body) = accept_all("g2", "0").await;
    assert!(body.get("gpc").is_none());
}

/// CORS (issue 11, part 10): the routes a browser key may call answer preflights, and
/// grant access only to the operator's configured origins (none by default); nothing
/// else answers cross-origin at all.
#[tokio::test]
async fn publisher_pages_may_call_the_browser_routes_from_configured_origins_only() {
    let preflight = |app: &TestApp, path: &str, origin: &str| {
        app.client
            .request(Method::OPTIONS, app.url(path))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type, candor-gpc",
            )
            .send()
    };
    let browser_routes = [
        "/v1/consent",
        "/v1/consent/accept-all",
        "/v1/consent/history",
        "/v1/batch",
        "/v1/track",
        "/v1/prompt",
        "/v1/prompt/events",
    ];
    // By default no origin is allowed, yet OPTIONS is answered (not 405).
    let app = spawn().await;
    for path in browser_routes {
        let r = preflight(&app, path, "https://news.example").await.unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
    let app = spawn_with("[cors]\nallowed_origins = [\"https://news.example\"]\n").await;
    for path in browser_routes {
        let r = preflight(&app, path, "https://news.example").await.unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://news.example"
        );
        assert_eq!(
            r.headers()["access-control-allow-headers"],
            "authorization, content-type, candor-gpc, candor-subject-token"
        );
        assert!(r
            .headers()
            .get("access-control-allow-credentials")
            .is_none());
        let r = preflight(&app, path, "https://evil.example").await.unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
    let r = app
        .client
        .get(app.url("/v1/purposes"))
        .header("Origin", "https://news.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://news.example"
    );
    // Nothing else answers cross-origin, even to an allowed origin.
    for path in [
        "/v1/admin/stats",
        "/v1/admin/prompt/stats",
        "/v1/consent/signals",
        "/metrics",
    ] {
        let r = preflight(&app, path, "https://news.example").await.unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
        let r = app
            .client
            .get(app.url(path))
            .bearer_auth(ADMIN)
            .header("Origin", "https://news.example")
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn prompt_counts_are_anonymous_validated_and_reported_with_intervals() {
    let app = spawn().await;
    let send = |body: Value| app.post("/v1/prompt/events", BROWSER_KEY, body);
    for _ in 0..40 {
        assert_eq!(
            send(json!({"variant": "standard", "event": "impression"}))
                .await
                .status(),
            202
        );
    }
    for i in 0..30 {
        let granted = i < 12;
        let r = send(json!({"variant": "standard", "event": "choice", "action": if granted {"choose"} else {"reject_all"},
                            "purposes": {"analytics": granted, "loyalty": false}}))
        .await;
        assert_eq!(r.status(), 202);
    }
    // Refused whole, counting nothing: an identifier, an unknown variant or purpose,
    // an impression with outcomes, an unknown action.
    for (body, want) in [
        (
            json!({"variant": "standard", "event": "impression", "anonymousId": "a1"}),
            (400, "invalid_request"),
        ),
        (
            json!({"variant": "nope", "event": "impression"}),
            (404, "not_found"),
        ),
        (
            json!({"variant": "Bad Id", "event": "impression"}),
            (400, "invalid_request"),
        ),
        (
            json!({"variant": "standard", "event": "choice", "action": "choose", "purposes": {"analytics": true, "nope": true}}),
            (400, "unknown_purpose"),
        ),
        (
            json!({"variant": "standard", "event": "impression", "purposes": {"analytics": true}}),
            (400, "invalid_request"),
        ),
        (
            json!({"variant": "standard", "event": "choice", "action": "dismiss"}),
            (400, "invalid_request"),
        ),
        (
            json!({"variant": "standard", "event": "click"}),
            (400, "invalid_request"),
        ),
    ] {
        assert_eq!(
            code_of(send(body.clone()).await).await,
            (want.0, want.1.to_owned()),
            "{body}"
        );
    }
    let (s, report) = json_of(admin(&app, Method::GET, "/v1/admin/prompt/stats", None).await).await;
    assert_eq!(s, 200, "{report}");
    let v = &report["variants"][0];
    assert_eq!(v["variant"], "standard");
    assert_eq!(v["impressions"], 40);
    assert_eq!(v["actions"]["choose"], 12);
    assert_eq!(v["actions"]["reject_all"], 18);
    let a = &v["purposes"]["analytics"];
    assert_eq!(
        (a["granted"].as_u64(), a["impressions"].as_u64()),
        (Some(12), Some(40))
    );
    assert!((a["rate"].as_f64().unwrap() - 0.3).abs() < 1e-12);
    let (lo, hi) = (
        a["interval"][0].as_f64().unwrap(),
        a["interval"][1].as_f64().unwrap(),
    );
    assert!(lo < 0.3 && 0.3 < hi && lo > 0.15 && hi < 0.47, "{lo} {hi}");
    assert_eq!(v["purposes"]["loyalty"]["granted"], 0);
    assert_eq!(v["daily"]["analytics"].as_array().unwrap().len(), 1);
    // The counts survive a restart (written at shutdown).
    let env = app.stop().await;
    let app = spawn_env(env, "").await;
    let (_, again) = json_of(admin(&app, Method::GET, "/v1/admin/prompt/stats", None).await).await;
    assert_eq!(again["variants"][0]["impressions"], 40);
    for q in [
        "?from=2026-13-01",
        "?from=2026-12-02&to=2026-12-01",
        "?from=2024-01-01&to=2026-01-01",
        "?x=1",
    ] {
        let r = admin(
            &app,
            Method::GET,
            &format!("/v1/admin/prompt/stats{q}"),
            None,
        )
        .await;
        assert_eq!(code_of(r).await, (400, "invalid_request".into()), "{q}");
    }
}

#[tokio::test]
async fn variants_are_linted_before_they_are_saved_and_then_shown() {
    let app = spawn_with("[prompt]\nforbidden_wording = [\"by continuing\"]\n").await;
    let save = |body: Value| admin(&app, Method::POST, "/v1/admin/prompt/variants", Some(body));
    // Unfair on its declaration: every rule is named with its element.
    let unfair = json!({"id": "pushy", "buttons": ["accept", "choose"], "preticked": ["analytics"],
        "closeButton": "accept", "texts": {"en": {"intro": "By continuing you agree."}}});
    let (s, body) =
        json_of(save(json!({"variant": unfair, "rendered": fair_rendering()})).await).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (422, Some("unfair_prompt")),
        "{body}"
    );
    let named: Vec<(String, String)> = body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["rule"].as_str().unwrap().to_owned(),
                v["element"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("close_counts_as_consent", "button.close"),
            ("forbidden_wording", "text intro (en)"),
            ("pre_ticked", "checkbox analytics"),
            ("reject_not_on_first_layer", "button.reject"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // Fair as declared, unfair as rendered.
    let mut faint = fair_rendering();
    faint["firstLayer"][1]["background"] = json!([255, 255, 255]);
    faint["firstLayer"][1]["color"] = json!([190, 190, 190]);
    let (s, body) =
        json_of(save(json!({"variant": {"id": "faint"}, "rendered": faint})).await).await;
    assert_eq!(s, 422, "{body}");
    assert!(body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["rule"] == "unequal_prominence" && v["element"] == "button.reject"));
    // A save needs the rendering; bad variants are invalid input.
    for (body, want) in [
        (
            json!({"variant": {"id": "compact"}}),
            (400, "invalid_request"),
        ),
        (
            json!({"variant": {"id": "x", "buttons": ["accept", "accept", "reject"]}, "rendered": fair_rendering()}),
            (400, "invalid_request"),
        ),
        (
            json!({"variant": {"id": "x", "preticked": ["nope"]}, "rendered": fair_rendering()}),
            (400, "unknown_purpose"),
        ),
        (
            json!({"variant": {"id": "x", "css": "button { background: url(https://tracker.example/x.png) }"}, "rendered": fair_rendering()}),
            (400, "invalid_request"),
        ),
        (
            json!({"variant": {"id": "x", "texts": {"en": {"footer": "hi"}}}, "rendered": fair_rendering()}),
            (400, "invalid_request"),
        ),
        (
            json!({"variant": {"id": "x", "layout": "wall"}, "rendered": fair_rendering()}),
            (400, "invalid_request"),
        ),
        (
            json!({"variant": {"id": "X Y"}, "rendered": fair_rendering()}),
            (400, "invalid_request"),
        ),
    ] {
        assert_eq!(
            code_of(save(body.clone()).await).await,
            (want.0, want.1.to_owned()),
            "{body}"
        );
    }
    let (_, list) =
        json_of(admin(&app, Method::GET, "/v1/admin/prompt/variants", None).await).await;
    assert_eq!(list["variants"], json!([]), "nothing refused was saved");
    // The dry run says the same without saving.
    let (s, body) = json_of(
        admin(
            &app,
            Method::POST,
            "/v1/admin/prompt/lint",
            Some(json!({"variant": {"id": "ok"}})),
        )
        .await,
    )
    .await;
    assert_eq!((s, &body["fair"]), (200, &json!(true)));
    // Saved and fair: visitors are assigned to it by their anonymous id, stably.
    let compact = json!({"id": "compact", "layout": "bar", "weight": 3, "texts": {"en": {"title": "Privacy, briefly"}}});
    let (s, body) =
        json_of(save(json!({"variant": compact, "rendered": fair_rendering()})).await).await;
    assert_eq!(s, 201, "{body}");
    let variant_of = |anon: String| {
        let app = &app;
        async move { prompt_config(app, format!("?anonymousId={anon}")).await["variant"].clone() }
    };
    let v = variant_of("someone".into()).await;
    assert_eq!(
        (
            v["id"].as_str(),
            v["layout"].as_str(),
            v["texts"]["title"].as_str()
        ),
        (Some("compact"), Some("bar"), Some("Privacy, briefly"))
    );
    assert_eq!(
        v["texts"]["reject"], "Reject all",
        "built-in wording under the variant's"
    );
    let (s, _) =
        json_of(save(json!({"variant": {"id": "standard"}, "rendered": fair_rendering()})).await)
            .await;
    assert_eq!(s, 201);
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..200 {
        let a = variant_of(format!("p{i}")).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(variant_of(format!("p{i}")).await["id"].as_str().unwrap(), a);
        *counts.entry(a).or_insert(0) += 1;
    }
    // weights 3:1 → 150 ± 5σ (σ ≈ 6.1)
    assert!((119..=181).contains(&counts["compact"]), "{counts:?}");
    // Retire one; the change needs no new rendering, and an unknown id is not found.
    let (s, _) = json_of(
        admin(
            &app,
            Method::PATCH,
            "/v1/admin/prompt/variants/compact",
            Some(json!({"active": false})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(variant_of("someone".into()).await["id"], "standard");
    let r = admin(
        &app,
        Method::PATCH,
        "/v1/admin/prompt/variants/nope",
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(code_of(r).await, (404, "not_found".into()));
    let r = admin(
        &app,
        Method::PATCH,
        "/v1/admin/prompt/variants/compact",
        Some(json!({"weight": 2_000_000})),
    )
    .await;
    assert_eq!(code_of(r).await, (400, "invalid_request".into()));
    // Counts for a saved variant are accepted, whether it is active or not.
    let r = app
        .post(
            "/v1/prompt/events",
            BROWSER_KEY,
            json!({"variant": "compact", "event": "impression"}),
        )
        .await;
    assert_eq!(r.status(), 202);
}
