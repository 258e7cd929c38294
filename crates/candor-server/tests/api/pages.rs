//! The server-rendered pages over real HTTP: the dashboard only behind a session that
//! the admin token buys, a CSRF token on every form, cookie attributes, a strict CSP
//! with a fresh nonce on every page and `default-src 'none'` on everything else, and
//! the demo page only for the demo operator.

use crate::helpers::*;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Client, Response};
use serde_json::json;

fn client() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// The `name=value` part of a Set-Cookie for `name`, and the whole header.
fn set_cookie(r: &Response, name: &str) -> Option<(String, String)> {
    r.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.starts_with(&format!("{name}="))
            .then(|| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
    })
}

/// The hidden CSRF field of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 32].to_owned()
}

/// The dashboard's HTML for a session that must be valid.
pub(crate) async fn dashboard(app: &TestApp, session: &str) -> String {
    let page = client()
        .get(app.url("/admin/"))
        .header("Cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

/// The saved prompt variants, through the admin API.
async fn saved_variants(app: &TestApp) -> Vec<serde_json::Value> {
    let r = app
        .client
        .get(app.url("/v1/admin/prompt/variants"))
        .bearer_auth(ADMIN);
    let body: serde_json::Value = r.send().await.unwrap().json().await.unwrap();
    body["variants"].as_array().unwrap().clone()
}

pub(crate) struct Login {
    pub cookie: String,
    pub csrf: String,
}

pub(crate) async fn login(app: &TestApp) -> Login {
    let c = client();
    let r = c.get(app.url("/admin/login")).send().await.unwrap();
    let (pair, _) = set_cookie(&r, "candor_login").unwrap();
    let token = csrf_of(&r.text().await.unwrap());
    let r = c
        .post(app.url("/admin/login"))
        .header("Cookie", &pair)
        .form(&[("token", ADMIN), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (session, _) = set_cookie(&r, "candor_admin").unwrap();
    let html = dashboard(app, &session).await;
    Login {
        csrf: csrf_of(&html),
        cookie: session,
    }
}

#[tokio::test]
async fn the_dashboard_needs_a_session_bought_with_the_admin_token() {
    let app = spawn().await;
    let c = client();
    // No session: to the login form.
    let r = c.get(app.url("/admin/")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()[LOCATION].to_str().unwrap()),
        (303, "/admin/login")
    );
    // The bearer token is not a session; nor is a forged cookie.
    let r = c
        .get(app.url("/admin/"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = c
        .get(app.url("/admin/"))
        .header("Cookie", "candor_admin=v1.99999999999.00.00")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // The login form sets its double-submit cookie.
    let r = c.get(app.url("/admin/login")).send().await.unwrap();
    let (pair, full) = set_cookie(&r, "candor_login").unwrap();
    assert!(
        full.contains("HttpOnly") && full.contains("Secure") && full.contains("SameSite=Strict"),
        "{full}"
    );
    let token = csrf_of(&r.text().await.unwrap());
    let post = |cookie: Option<&str>, form: Vec<(&'static str, String)>| {
        let mut req = c.post(app.url("/admin/login")).form(&form);
        if let Some(k) = cookie {
            req = req.header("Cookie", k.to_owned());
        }
        async move { req.send().await.unwrap() }
    };
    // A wrong or missing CSRF token: refused before the token is even looked at.
    let r = post(None, vec![("token", ADMIN.into()), ("csrf", token.clone())]).await;
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, "candor_admin").is_none());
    let r = post(
        Some(&pair),
        vec![("token", ADMIN.into()), ("csrf", "0".repeat(32))],
    )
    .await;
    assert_eq!(r.status(), 403);
    // A wrong token.
    let r = post(
        Some(&pair),
        vec![
            ("token", "not-the-admin-token".into()),
            ("csrf", token.clone()),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(set_cookie(&r, "candor_admin").is_none());
    let r = post(Some(&pair), vec![("csrf", token.clone())]).await;
    assert_eq!(r.status(), 400, "incomplete form");
    // The right one: a session cookie with every protective attribute.
    let r = post(
        Some(&pair),
        vec![("token", ADMIN.into()), ("csrf", token.clone())],
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), r.headers()[LOCATION].to_str().unwrap()),
        (303, "/admin/")
    );
    let (session, full) = set_cookie(&r, "candor_admin").unwrap();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=28800",
    ] {
        assert!(full.contains(attr), "{attr} in {full}");
    }
    assert!(dashboard(&app, &session).await.contains("consent prompt"));
    // An edited session is no session.
    let mut forged = session.clone();
    forged.pop();
    forged.push(if session.ends_with('0') { '1' } else { '0' });
    let r = c
        .get(app.url("/admin/"))
        .header("Cookie", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn every_dashboard_form_needs_its_csrf_token() {
    let app = spawn().await;
    let rendered = crate::prompt::fair_rendering();
    let r = app
        .client
        .post(app.url("/v1/admin/prompt/variants"))
        .bearer_auth(ADMIN)
        .json(&json!({"variant": {"id": "compact", "layout": "bar"}, "rendered": rendered}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s = login(&app).await;
    let other = login(&app).await;
    assert_ne!(s.csrf, other.csrf, "tokens are per session");
    let c = client();
    let toggle = |cookie: String, csrf: String| {
        let req = c
            .post(app.url("/admin/variants/compact"))
            .header("Cookie", cookie)
            .form(&[("csrf", csrf), ("active", "false".into())]);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let active = || async { saved_variants(&app).await[0]["active"].clone() };
    // Another session's token, or none: refused, nothing changed.
    assert_eq!(toggle(s.cookie.clone(), other.csrf.clone()).await, 403);
    assert_eq!(toggle(s.cookie.clone(), String::new()).await, 403);
    assert_eq!(
        toggle("candor_admin=x".into(), s.csrf.clone()).await,
        303,
        "no session: to the login form"
    );
    assert_eq!(active().await, true);
    assert_eq!(toggle(s.cookie.clone(), s.csrf.clone()).await, 303);
    assert_eq!(active().await, false);
    // Signing out needs the token too, and clears the cookie.
    let out = c
        .post(app.url("/admin/logout"))
        .header("Cookie", &s.cookie)
        .form(&[("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 403);
    let out = c
        .post(app.url("/admin/logout"))
        .header("Cookie", &s.cookie)
        .form(&[("csrf", &s.csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let (cleared, _) = set_cookie(&out, "candor_admin").unwrap();
    assert_eq!(cleared, "candor_admin=");
}

#[tokio::test]
async fn pages_have_a_strict_policy_with_a_fresh_nonce_and_everything_else_none() {
    let app = spawn().await;
    let s = login(&app).await;
    let c = client();
    let mut nonces = Vec::new();
    for (path, cookie) in [
        ("/admin/login", None),
        ("/admin/", Some(&s.cookie)),
        ("/admin/", Some(&s.cookie)),
        ("/demo/", None),
    ] {
        let mut req = c.get(app.url(path));
        if let Some(k) = cookie {
            req = req.header("Cookie", k.clone());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        for part in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains('*'),
            "{path}: {csp}"
        );
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap()
            .to_owned();
        let html = r.text().await.unwrap();
        // Every inline <style>/<script> carries the nonce; no inline handler, no style attribute.
        assert_eq!(
            html.matches("<style").count(),
            html.matches(&format!("<style nonce=\"{nonce}\"")).count(),
            "{path}"
        );
        for bad in [
            " onclick=",
            " onload=",
            " style=\"",
            "src=\"http",
            "href=\"http",
        ] {
            assert!(!html.contains(bad), "{path} has {bad}");
        }
        nonces.push(nonce);
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 4, "a fresh nonce per response");
    // Every other response: nothing may load or frame.
    for path in [
        "/healthz",
        "/v1/purposes",
        "/candor.js",
        "/openapi.json",
        "/nope",
    ] {
        let r = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            r.headers()[CONTENT_SECURITY_POLICY],
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
            "{path}"
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    // The demo page loads candor.js and its tagged scripts from Candor itself.
    let demo = c
        .get(app.url("/demo/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(demo.contains("<script src=\"/candor.js\" data-write-key=\"demo-browser-write-key\""));
    for s in ["analytics.js", "recommendations.js", "ads.js"] {
        let r = c.get(app.url(&format!("/demo/{s}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{s}");
        assert!(
            demo.contains(&format!("src=\"/demo/{s}\"")),
            "{s} is tagged on the page"
        );
    }
    let r = c.get(app.url("/demo/other.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_demo_page_is_only_for_the_demo_operator() {
    let env = fresh_env().await;
    let mut s = candor_server::Settings::parse("", "test", &|_| None).unwrap();
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.data_dir = env.dir.path().to_owned();
    s.database = env
        .database_url
        .clone()
        .map(candor_server::config::DatabaseSettings::new);
    let app = candor_server::Application::build(s).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    for path in ["/demo/", "/demo/analytics.js"] {
        let r = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(code_of(r).await, (404, "not_found".into()), "{path}");
    }
    // Without an admin token configured, no session can be had.
    let r = client()
        .get(format!("{base}/admin/login"))
        .send()
        .await
        .unwrap();
    let (pair, _) = set_cookie(&r, "candor_login").unwrap();
    let token = csrf_of(&r.text().await.unwrap());
    let r = client()
        .post(format!("{base}/admin/login"))
        .header("Cookie", pair)
        .form(&[("token", "anything-at-all-here"), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_variant_editor_saves_only_fair_measured_variants_behind_csrf() {
    let app = spawn().await;
    let s = login(&app).await;
    let c = client();
    let editor = c
        .get(app.url("/admin/variants/new"))
        .header("Cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(editor.status(), 200);
    let csp = editor.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'nonce-") && csp.contains("'self'"),
        "{csp}"
    );
    let csrf = csrf_of(&editor.text().await.unwrap());
    let rendered = crate::prompt::fair_rendering().to_string();
    let save = |csrf: String, variant: &str, rendered: &str| {
        let req = c
            .post(app.url("/admin/variants"))
            .header("Cookie", &s.cookie)
            .form(&[
                ("csrf", csrf),
                ("variant", variant.to_owned()),
                ("rendered", rendered.to_owned()),
            ]);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let saved = || async { saved_variants(&app).await.len() };
    // Without the token, or without the browser's measurements: not saved.
    assert_eq!(save("x".into(), r#"{"id":"a"}"#, &rendered).await.0, 403);
    let (status, page) = save(csrf.clone(), r#"{"id":"a"}"#, "").await;
    assert_eq!(status, 400);
    assert!(page.contains("not measured"), "{page}");
    let (status, _) = save(csrf.clone(), "{not json", &rendered).await;
    assert_eq!(status, 400);
    // Unfair: the editor again, naming each rule and element, keeping the definition.
    let (status, page) = save(
        csrf.clone(),
        r#"{"id":"pushy","preticked":["analytics"],"closeButton":"accept"}"#,
        &rendered,
    )
    .await;
    assert_eq!(status, 422);
    for named in [
        "pre_ticked",
        "checkbox analytics",
        "close_counts_as_consent",
        "button.close",
        "&quot;pushy&quot;",
    ] {
        assert!(page.contains(named), "{named} in the page");
    }
    assert_eq!(saved().await, 0);
    // Fair: saved and shown.
    let (status, _) = save(csrf.clone(), r#"{"id":"calm","layout":"bar"}"#, &rendered).await;
    assert_eq!(status, 303);
    assert_eq!(saved().await, 1);
    // The preview the editor draws needs the session and the token as a header.
    let preview = |token: &str| {
        let req = c
            .post(app.url("/admin/variants/preview"))
            .header("Cookie", &s.cookie)
            .header("X-CSRF-Token", token)
            .json(&json!({"variant": {"id": "p", "layout": "bar"}}));
        async move { req.send().await.unwrap() }
    };
    assert_eq!(
        code_of(preview("wrong").await).await,
        (403, "forbidden".into())
    );
    let r = preview(&s.csrf).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["variant"]["layout"],
        "bar"
    );
    let r = c
        .post(app.url("/admin/variants/preview"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (401, "missing_credentials".into()));
}
