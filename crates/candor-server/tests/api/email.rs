//! Email on consent over HTTP with a real SMTP server on loopback (issue 16): the
//! double opt-in mail and its link, proof in the ledger, single-use and expiring
//! tokens, campaigns that reach exactly the confirmed, consenting, unsuppressed
//! members, RFC 8058 headers and one-click unsubscribe in both encodings, temporary
//! and permanent SMTP failures, a withdrawal just before a message goes out, erasure.

use crate::helpers::*;
use candor_core::consent::{Action, Channel, ConsentStatus};
use candor_core::ledger::{Actor, Evidence, LIST_PURPOSE};
use candor_core::{PurposeId, SubjectId, UnixMillis};
use candor_mail::EmailAddress;
use candor_store::email::{ListAction, ListChange};
use candor_store::{Authority, ConsentCommand, PurposeChange};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use std::time::Duration;

fn subject_of(app: &TestApp, addr: &str) -> Option<SubjectId> {
    let a = EmailAddress::parse(addr).unwrap();
    app.state
        .store
        .resolve(&candor_server::email::hash_of(&app.state.master, &a))
}

async fn admin_get(app: &TestApp, path: &str) -> Value {
    app.get_bearer(path, ADMIN).await
}

async fn admin_post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn list_counts(app: &TestApp, list: &str) -> (i64, i64, i64) {
    let v = admin_get(app, "/v1/admin/email/lists").await;
    let l = v["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == list)
        .unwrap()
        .clone();
    (
        l["pending"].as_i64().unwrap(),
        l["confirmed"].as_i64().unwrap(),
        l["unsubscribed"].as_i64().unwrap(),
    )
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

async fn form_post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = no_redirects()
        .post(app.url(path))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Subscribes `addr` to `news` through the API and follows the mailed link.
async fn join_by_mail(app: &TestApp, sink: &SmtpSink, addr: &str) -> SubjectId {
    let before = sink.accepted().iter().filter(|(t, _)| t == addr).count();
    let r = app
        .post(
            "/v1/email/subscriptions",
            SERVER_KEY,
            json!({"email": addr, "list": "news"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let mails = sink.wait_to(addr, before + 1).await;
    let raw = mails
        .last()
        .filter(|_| mails.len() > before)
        .unwrap_or_else(|| panic!("no confirmation mail to {addr}"));
    let path = link(raw, "/email/confirm?t=");
    let t = path.split_once("t=").unwrap().1.to_owned();
    let (status, body) = form_post(app, "/email/confirm", &[("t", &t)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("You are subscribed"));
    subject_of(app, addr).unwrap()
}

/// Subscribes `addr` without a confirmation mail (its address makes the sink refuse
/// mail) and confirms with a token minted as the mail would carry it.
async fn join_quietly(app: &TestApp, addr: &str) -> SubjectId {
    let mail = app.state.mail.clone().unwrap();
    let a = EmailAddress::parse(addr).unwrap();
    let p = app
        .state
        .catalog
        .purpose(&PurposeId::parse("email_marketing").unwrap())
        .unwrap();
    let cmd = ConsentCommand {
        identities: vec![candor_server::email::identity(&app.state.master, &a)],
        authority: Authority::Any,
        actor: Actor::EmailLink,
        create: true,
        changes: vec![],
        channel: Channel::EmailConfirmation,
        evidence: Evidence::default(),
        time_ms: UnixMillis(app.state.now_ms()),
        list: Some(ListChange {
            list: "news".into(),
            notice_version: p.notice.version,
            notice_hash: p.notice.hash,
            action: ListAction::Request {
                window_ms: 1000,
                max: 1,
            },
        }),
    };
    let s = app.state.store.apply_consent(cmd).await.unwrap().subject;
    let t = mail
        .keys
        .mint_confirmation(s, "news", UnixMillis(app.state.now_ms() + 60_000));
    let (status, body) = form_post(app, "/email/confirm", &[("t", &t)]).await;
    assert_eq!(status, 200, "{body}");
    s
}

async fn withdraw_marketing(app: &TestApp, addr: &str) {
    let a = EmailAddress::parse(addr).unwrap();
    let p = app
        .state
        .catalog
        .purpose(&PurposeId::parse("email_marketing").unwrap())
        .unwrap();
    app.state
        .store
        .apply_consent(ConsentCommand {
            identities: vec![candor_server::email::identity(&app.state.master, &a)],
            authority: Authority::Any,
            actor: Actor::Admin,
            create: false,
            changes: vec![PurposeChange {
                purpose: p.id.clone(),
                bit: p.bit,
                action: Action::Withdraw,
                notice_version: p.notice.version,
                notice_hash: p.notice.hash,
            }],
            channel: Channel::Api,
            evidence: Evidence::default(),
            time_ms: UnixMillis(app.state.now_ms()),
            list: None,
        })
        .await
        .unwrap();
}

async fn campaign(app: &TestApp, name: &str) -> i64 {
    let (status, c) = admin_post(
        app,
        "/v1/admin/email/campaigns",
        json!({
            "name": name,
            "list": "news",
            "subject": "{{ list.title }}: hello",
            "text": "Hello.\nTo leave: {{ unsubscribe_url }}\n",
            "html": "<p>Hello from {{ list.title }}.</p>",
        }),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    c["id"].as_i64().unwrap()
}

/// Waits (bounded) until the campaign has no queued message left.
async fn finished(app: &TestApp, id: i64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let c = admin_get(app, &format!("/v1/admin/email/campaigns/{id}")).await;
        if c["status"] == "sent" || std::time::Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of_campaign(mails: &[(String, String)], id: i64) -> Vec<(String, String)> {
    let tag = format!("X-Candor-Campaign: {id}\r\n");
    mails
        .iter()
        .filter(|(_, raw)| raw.contains(&tag))
        .cloned()
        .collect()
}

fn header(raw: &str, name: &str) -> String {
    let head = raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
    head.split("\r\n")
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l.split_once(':').unwrap().1.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_opt_in_by_mail_is_proven_and_single_use() {
    let sink = SmtpSink::start(0);
    let app = spawn_with(&sink.config()).await;
    let r = app
        .post(
            "/v1/email/subscriptions",
            SERVER_KEY,
            json!({"email": "Ann@Example.org", "list": "news"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let answer: Value = r.json().await.unwrap();
    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].0, "Ann@example.org");
    let path = link(&mails[0].1, "/email/confirm?t=");
    // Opening the link shows a button and changes nothing (mail scanners fetch links).
    let page = no_redirects().get(app.url(&path)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("Yes, subscribe me"));
    assert_eq!(list_counts(&app, "news").await, (1, 0, 0));
    // The button confirms: the list, the purpose, and the proof in the ledger.
    let t = path.split_once("t=").unwrap().1.to_owned();
    let (status, body) = form_post(&app, "/email/confirm", &[("t", &t)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(list_counts(&app, "news").await, (0, 1, 0));
    let s = subject_of(&app, "ann@example.org").unwrap();
    let history = app.state.store.consent_history(s).await.unwrap();
    let marker = history
        .iter()
        .find(|r| r.entry.purpose.as_str() == LIST_PURPOSE)
        .expect("a list record");
    assert_eq!(marker.entry.status, ConsentStatus::Given);
    assert_eq!(marker.entry.channel, Channel::EmailConfirmation);
    let ev = marker.entry.evidence.entries();
    assert_eq!(ev["list"], "news");
    assert_eq!(ev["confirmation"].len(), 16);
    assert_eq!(ev["origin"].len(), 32, "the origin's keyed digest only");
    assert!(history
        .iter()
        .any(|r| r.entry.purpose.as_str() == "email_marketing"
            && r.entry.status == ConsentStatus::Given));
    let bit = app
        .state
        .catalog
        .purpose(&PurposeId::parse("email_marketing").unwrap())
        .unwrap()
        .bit;
    assert!(app.state.store.index().granted(&s).contains(bit));
    // Used once: a second POST is refused with a page that says so, and records nothing.
    let seq = app.state.store.ledger_head().await.unwrap().unwrap().seq;
    let (status, body) = form_post(&app, "/email/confirm", &[("t", &t)]).await;
    assert_eq!(status, 410);
    assert!(body.contains("already used"), "{body}");
    assert_eq!(
        app.state.store.ledger_head().await.unwrap().unwrap().seq,
        seq
    );
    // A forged token is refused, as is a missing one.
    let (status, _) = form_post(&app, "/email/confirm", &[("t", "abc.def")]).await;
    assert_eq!(status, 400);
    let (status, _) = form_post(&app, "/email/confirm", &[]).await;
    assert_eq!(status, 400);
    // Asking again for a confirmed address, and for a new one: the same answer.
    for addr in ["ann@example.org", "new@example.org"] {
        let r = app
            .post(
                "/v1/email/subscriptions",
                SERVER_KEY,
                json!({"email": addr, "list": "news"}),
            )
            .await;
        assert_eq!(r.status().as_u16(), 202);
        assert_eq!(r.json::<Value>().await.unwrap(), answer);
    }
    // Bad input: a clear code, nothing changed.
    let r = app
        .post(
            "/v1/email/subscriptions",
            SERVER_KEY,
            json!({"email": "not an address", "list": "news"}),
        )
        .await;
    assert_eq!(code_of(r).await, (400, "invalid_email".into()));
    let r = app
        .post(
            "/v1/email/subscriptions",
            SERVER_KEY,
            json!({"email": "x@example.org", "list": "nope"}),
        )
        .await;
    assert_eq!(code_of(r).await, (404, "unknown_list".into()));
    let r = app
        .post(
            "/v1/email/subscriptions",
            "wrong-key-wrong-key",
            json!({"email": "x@example.org", "list": "news"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(subject_of(&app, "x@example.org").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_links_are_refused_with_a_clear_page() {
    let sink = SmtpSink::start(0);
    let (now, clock) = manual_clock(1_800_000_000_000);
    let app = spawn_clocked(fresh_env().await, &sink.config(), clock).await;
    let r = app
        .post(
            "/v1/email/subscriptions",
            SERVER_KEY,
            json!({"email": "late@example.org", "list": "news"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let mails = sink.wait_for(1).await;
    let path = link(&mails[0].1, "/email/confirm?t=");
    now.fetch_add(49 * 3600 * 1000, std::sync::atomic::Ordering::SeqCst);
    let page = no_redirects().get(app.url(&path)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 410);
    assert!(page.text().await.unwrap().contains("expired"));
    let t = path.split_once("t=").unwrap().1.to_owned();
    let (status, body) = form_post(&app, "/email/confirm", &[("t", &t)]).await;
    assert_eq!(status, 410);
    assert!(body.contains("expired"));
    assert_eq!(list_counts(&app, "news").await, (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_request_expires_and_its_address_is_forgotten() {
    let sink = SmtpSink::start(0);
    let (now, clock) = manual_clock(1_800_000_000_000);
    let app = spawn_clocked(fresh_env().await, &sink.config(), clock).await;
    let ask = |addr: &'static str, list: &'static str| {
        let app = &app;
        async move {
            let r = app
                .post(
                    "/v1/email/subscriptions",
                    SERVER_KEY,
                    json!({"email": addr, "list": list}),
                )
                .await;
            assert_eq!(r.status().as_u16(), 202);
        }
    };
    // Someone typed an address into the form and nobody confirmed.
    ask("typed@example.org", "news").await;
    let typed = subject_of(&app, "typed@example.org").unwrap();
    // A subscriber asked for a second list and did not confirm that one.
    let member = join_by_mail(&app, &sink, "member@example.org").await;
    ask("member@example.org", "offers").await;
    assert_eq!(sink.wait_to("member@example.org", 2).await.len(), 2);
    assert_eq!(list_counts(&app, "offers").await, (1, 0, 0));
    let mail = app.state.mail.clone().unwrap();
    let head = app.state.store.ledger_head().await.unwrap().unwrap().seq;

    // Not yet: the default window is seven days.
    now.fetch_add(6 * 24 * 3600 * 1000, std::sync::atomic::Ordering::SeqCst);
    let n = candor_server::email::flows::expire(&app.state, &mail)
        .await
        .unwrap();
    assert_eq!((n.requests, n.forgotten), (0, 0));
    now.fetch_add(2 * 24 * 3600 * 1000, std::sync::atomic::Ordering::SeqCst);
    let n = candor_server::email::flows::expire(&app.state, &mail)
        .await
        .unwrap();
    assert_eq!((n.requests, n.forgotten), (2, 1));

    // The typed address is gone with the subject made for it; the ledger says who.
    assert_eq!(subject_of(&app, "typed@example.org"), None);
    assert!(app.state.store.subject_key(typed).await.unwrap().is_none());
    let history = app.state.store.consent_history(typed).await.unwrap();
    assert_eq!(history.len(), 1);
    let rec = &history[0].entry;
    assert!(rec.is_erasure());
    assert_eq!(rec.seq, head + 1);
    assert_eq!(rec.attribution.as_ref().unwrap().actor, Actor::Retention);
    // The subscriber stays, on the list they confirmed.
    assert_eq!(subject_of(&app, "member@example.org"), Some(member));
    assert_eq!(list_counts(&app, "news").await, (0, 1, 0));
    assert_eq!(list_counts(&app, "offers").await, (0, 0, 0));
    assert_eq!(
        app.state.store.ledger_head().await.unwrap().unwrap().seq,
        head + 1
    );
    // The address may ask again: a new person, a new confirmation mail.
    ask("typed@example.org", "news").await;
    assert_eq!(sink.wait_to("typed@example.org", 2).await.len(), 2);
    assert_ne!(subject_of(&app, "typed@example.org"), Some(typed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_reaches_exactly_the_confirmed_consenting_unsuppressed() {
    let sink = SmtpSink::start(0);
    let app = spawn_with(&sink.config()).await;
    let a = join_by_mail(&app, &sink, "a@example.org").await;
    // Asked, never confirmed.
    app.post(
        "/v1/email/subscriptions",
        SERVER_KEY,
        json!({"email": "pending@example.org", "list": "news"}),
    )
    .await;
    assert_eq!(sink.wait_to("pending@example.org", 1).await.len(), 1);
    // Confirmed, then withdrew email marketing.
    join_by_mail(&app, &sink, "withdrawn@example.org").await;
    withdraw_marketing(&app, "withdrawn@example.org").await;
    // Confirmed, then left the list.
    let left = join_quietly(&app, "left@example.org").await;
    let u = app
        .state
        .mail
        .as_ref()
        .unwrap()
        .keys
        .mint_unsubscribe(left, "news", None);
    let (status, _) = form_post(
        &app,
        &format!("/email/unsubscribe?t={u}"),
        &[("List-Unsubscribe", "One-Click")],
    )
    .await;
    assert_eq!(status, 200);
    // Its server refuses it for good; its server refuses once, then takes it.
    join_quietly(&app, "bounce-e@example.org").await;
    let f = join_quietly(&app, "tempfail-1-f@example.org").await;
    let before = sink.accepted().len();

    let id = campaign(&app, "First").await;
    let (status, started) = admin_post(
        &app,
        &format!("/v1/admin/email/campaigns/{id}/start"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["queued"], 3, "a, bounce-e, tempfail-1-f");
    let c = finished(&app, id).await;
    assert_eq!(c["status"], "sent", "{c}");
    assert_eq!(c["messages"]["sent"], 2, "{c}");
    assert_eq!(c["messages"]["bounced"], 1, "{c}");
    let mails = of_campaign(&sink.accepted()[before..], id);
    let mut to: Vec<&str> = mails.iter().map(|(t, _)| t.as_str()).collect();
    to.sort();
    assert_eq!(to, ["a@example.org", "tempfail-1-f@example.org"]);
    // RFC 8058 headers, a deterministic Message-ID, the rendered template.
    let (_, raw) = mails.iter().find(|(t, _)| t == "a@example.org").unwrap();
    let lu = header(raw, "List-Unsubscribe");
    assert!(
        lu.starts_with("<http://127.0.0.1/email/unsubscribe?t="),
        "{lu}"
    );
    assert!(
        lu.contains("<mailto:leave@example.com?subject=unsubscribe>"),
        "{lu}"
    );
    assert_eq!(
        header(raw, "List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );
    assert_eq!(
        header(raw, "Message-ID"),
        format!("<c{id}.{a}@example.com>")
    );
    assert_eq!(header(raw, "Subject"), "Monthly news: hello");
    // The bounce suppressed the address for every list.
    let lists = admin_get(&app, "/v1/admin/email/lists").await;
    assert_eq!(lists["suppressions"]["bounce"], 1, "{lists}");
    assert_eq!(lists["suppressions"]["unsubscribe"], 1, "{lists}");

    // One-click from the mail: a GET only shows a page; a POST (either encoding)
    // leaves at once, without a redirect.
    let url = lu[1..lu.find('>').unwrap()].replace("http://127.0.0.1", "");
    let page = no_redirects().get(app.url(&url)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("Unsubscribe"));
    assert_eq!(
        list_counts(&app, "news").await.2,
        1,
        "the GET changed nothing"
    );
    let (status, body) = form_post(&app, &url, &[("List-Unsubscribe", "One-Click")]).await;
    assert_eq!(status, 200);
    assert!(body.contains("You are unsubscribed"));
    let f_url = format!(
        "/email/unsubscribe?t={}",
        app.state
            .mail
            .as_ref()
            .unwrap()
            .keys
            .mint_unsubscribe(f, "news", None)
    );
    let boundary = "candor-boundary-42";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--{boundary}--\r\n"
    );
    let r = no_redirects()
        .post(app.url(&f_url))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(multipart)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(list_counts(&app, "news").await, (1, 2, 3));
    let history = app.state.store.consent_history(a).await.unwrap();
    let last = &history.last().unwrap().entry;
    assert_eq!(
        (last.purpose.as_str(), last.status, last.channel),
        (LIST_PURPOSE, ConsentStatus::Withdrawn, Channel::Unsubscribe)
    );
    // The mail's link named its campaign: the record says so and the campaign counts
    // it; f's link (minted without one, as before campaigns were named) counts for none.
    assert_eq!(
        last.evidence.entries().get("campaign"),
        Some(&id.to_string())
    );
    let c = admin_get(&app, &format!("/v1/admin/email/campaigns/{id}")).await;
    assert_eq!(c["unsubscribed"], 1, "{c}");

    // A second campaign: nobody left but the bounced address, which is suppressed.
    let before = sink.accepted().len();
    let id2 = campaign(&app, "Second").await;
    let (_, started) = admin_post(
        &app,
        &format!("/v1/admin/email/campaigns/{id2}/start"),
        json!({}),
    )
    .await;
    assert_eq!(started["queued"], 1);
    let c = finished(&app, id2).await;
    assert_eq!(c["messages"]["skipped"], 1, "{c}");
    assert!(of_campaign(&sink.accepted()[before..], id2).is_empty());
    // Per-message status for the operator, by pseudonym only.
    let m = admin_get(&app, &format!("/v1/admin/email/campaigns/{id}/messages")).await;
    assert_eq!(m["messages"].as_array().unwrap().len(), 3);
    assert!(!m.to_string().contains("example.org"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_a_moment_before_stops_that_message() {
    let sink = SmtpSink::start(0);
    let app = spawn_with(&sink.config()).await;
    let x = join_quietly(&app, "x@example.org").await;
    let y = join_quietly(&app, "y@example.org").await;
    let id = campaign(&app, "Timely").await;
    // Both are queued, then y withdraws before their turn comes.
    app.state
        .store
        .email()
        .enqueue(id, vec![x, y], UnixMillis(app.state.now_ms()))
        .await
        .unwrap();
    withdraw_marketing(&app, "y@example.org").await;
    let before = sink.accepted().len();
    let (status, _) = admin_post(
        &app,
        &format!("/v1/admin/email/campaigns/{id}/start"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let c = finished(&app, id).await;
    assert_eq!(
        (
            c["messages"]["sent"].as_i64(),
            c["messages"]["skipped"].as_i64()
        ),
        (Some(1), Some(1)),
        "{c}"
    );
    let to: Vec<String> = of_campaign(&sink.accepted()[before..], id)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(to, ["x@example.org"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_takes_the_address_off_every_list_and_keeps_only_a_hash() {
    let sink = SmtpSink::start(0);
    let app = spawn_with(&sink.config()).await;
    let z = join_by_mail(&app, &sink, "zoe@example.org").await;
    let u = app
        .state
        .mail
        .as_ref()
        .unwrap()
        .keys
        .mint_unsubscribe(z, "news", None);
    form_post(&app, &format!("/email/unsubscribe?t={u}"), &[]).await;
    join_quietly(&app, "stay@example.org").await;
    let r = app
        .post(
            "/v1/me/erase",
            SERVER_KEY,
            json!({"email": "Zoe@example.org"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(list_counts(&app, "news").await, (0, 1, 0));
    assert!(subject_of(&app, "zoe@example.org").is_none());
    assert!(app.state.store.identities(z).await.unwrap().is_empty());
    let a = EmailAddress::parse("zoe@example.org").unwrap();
    let kept = app
        .state
        .store
        .email()
        .suppressions_of(candor_server::email::hash_of(&app.state.master, &a))
        .await
        .unwrap();
    assert_eq!(
        kept.len(),
        1,
        "the suppression outlives the person, as a hash"
    );
    // Their unsubscribe link now says there is nothing left.
    let (status, body) = form_post(&app, &format!("/email/unsubscribe?t={u}"), &[]).await;
    assert_eq!(status, 410, "{body}");
}

fn without_nonces(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(at) = rest.find("nonce=\"") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 7..];
        rest = &after[after.find('"').map_or(after.len(), |i| i + 1)..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_by_email_answers_alike_and_opens_the_preference_center() {
    let sink = SmtpSink::start(0);
    let app = spawn_with(&sink.config()).await;
    join_by_mail(&app, &sink, "ann@example.org").await;
    join_quietly(&app, "carol@example.org").await;
    let page = no_redirects()
        .get(app.url("/me/signin"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Email me a sign-in link"));
    // Known and unknown addresses get the same page.
    let (s1, known) = form_post(&app, "/me/signin", &[("email", "Ann@example.org")]).await;
    let (s2, unknown) = form_post(&app, "/me/signin", &[("email", "nobody@example.org")]).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(without_nonces(&known), without_nonces(&unknown));
    // Only the known address gets a link: the outbox is first in, first out, so once
    // a later mail (to carol) has arrived, one to nobody would have come before it.
    form_post(&app, "/me/signin", &[("email", "carol@example.org")]).await;
    let carol = sink.wait_to("carol@example.org", 1).await;
    assert_eq!(carol.len(), 1);
    assert!(sink
        .accepted()
        .iter()
        .all(|(t, _)| t != "nobody@example.org"));
    let mails = sink.wait_to("ann@example.org", 2).await;
    assert_eq!(mails.len(), 2, "the confirmation and the sign-in link");
    let path = link(&mails[1], "/me/enter?t=");
    // The link opens the person's page, with their lists.
    let session = crate::me::session_for(&app, &path).await;
    let r = crate::me::my_page(&app, &session).await;
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("Mailing lists"), "{html}");
    assert!(html.contains("Subscribed"));
    let csrf = crate::me::csrf_of(&html);
    let r = crate::me::client()
        .post(app.url("/me/email/news/leave"))
        .header("Cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(list_counts(&app, "news").await, (0, 1, 1));
    let s = subject_of(&app, "ann@example.org").unwrap();
    let history = app.state.store.consent_history(s).await.unwrap();
    let last = &history.last().unwrap().entry;
    assert_eq!(
        (
            last.purpose.as_str(),
            last.status,
            last.channel,
            &last.attribution.as_ref().unwrap().actor
        ),
        (
            LIST_PURPOSE,
            ConsentStatus::Withdrawn,
            Channel::PreferenceCenter,
            &Actor::EmailLink
        )
    );
    // Without the CSRF token nothing changes.
    let r = crate::me::client()
        .post(app.url("/me/email/news/join"))
        .header("Cookie", &session)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Joining again from the page mails a new confirmation.
    let r = crate::me::client()
        .post(app.url("/me/email/news/join"))
        .header("Cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(sink.wait_to("ann@example.org", 3).await.len(), 3);
    assert_eq!(list_counts(&app, "news").await, (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_sign_up_form_answers_alike_and_is_limited() {
    let sink = SmtpSink::start(0);
    let config = format!("{}\n[limits]\nnew_subjects_per_minute = 1\n", sink.config());
    let app = spawn_with(&config).await;
    let (status, body) = form_post(
        &app,
        "/email/subscribe",
        &[("email", "form@example.org"), ("list", "news")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Check your inbox"));
    assert_eq!(sink.wait_to("form@example.org", 1).await.len(), 1);
    // The same address again: the same page (no new subject needed).
    let (status, again) = form_post(
        &app,
        "/email/subscribe",
        &[("email", "form@example.org"), ("list", "news")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(without_nonces(&body), without_nonces(&again));
    // A second new address within the minute: the form's allowance is spent.
    let (status, _) = form_post(
        &app,
        "/email/subscribe",
        &[("email", "other@example.org"), ("list", "news")],
    )
    .await;
    assert_eq!(status, 429);
    assert!(subject_of(&app, "other@example.org").is_none());
    // Bad input: a page that says so, nothing created.
    for form in [
        vec![("email", "nope"), ("list", "news")],
        vec![("email", "x@example.org"), ("list", "nope")],
        vec![("list", "news")],
    ] {
        let (status, _) = form_post(&app, "/email/subscribe", &form).await;
        assert_eq!(status, 400, "{form:?}");
    }
    assert!(subject_of(&app, "x@example.org").is_none());
    assert_eq!(list_counts(&app, "news").await, (1, 0, 0));
}

/// A feedback-loop report (RFC 5965) about `original` (a message as the sink received
/// it), with the recipient redacted as providers do.
fn arf(original: &str, feedback_type: &str) -> String {
    let head = original
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("to:") {
                "To: redacted@mailbox.example"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    format!(
        "From: <fbl@mailbox.example>\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nA complaint about a message.\r\n\
         --b1\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: {feedback_type}\r\nUser-Agent: test-fbl/1.0\r\nVersion: 1\r\n\r\n\
         --b1\r\nContent-Type: text/rfc822-headers\r\n\r\n{head}\r\n\r\n--b1--\r\n"
    )
}

async fn feedback(app: &TestApp, content_type: &str, body: String) -> (u16, Value) {
    let r = app
        .client
        .post(app.url("/v1/admin/email/feedback"))
        .bearer_auth(ADMIN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn suppressions(app: &TestApp, addr: &str) -> Vec<(String, String)> {
    let a = EmailAddress::parse(addr).unwrap();
    let hash = candor_server::email::hash_of(&app.state.master, &a);
    app.state
        .store
        .email()
        .suppressions_of(hash)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.list, s.reason.as_str().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complaints_and_late_bounces_suppress_every_list() {
    let sink = SmtpSink::start(0);
    let app = spawn_with(&sink.config()).await;
    join_by_mail(&app, &sink, "grumpy@example.org").await;
    join_by_mail(&app, &sink, "moved@example.org").await;
    join_by_mail(&app, &sink, "happy@example.org").await;
    let first = campaign(&app, "First").await;
    let (status, _) = admin_post(
        &app,
        &format!("/v1/admin/email/campaigns/{first}/start"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(finished(&app, first).await["messages"]["sent"], 3);
    let sent = of_campaign(&sink.accepted(), first);
    let to_grumpy = &sent
        .iter()
        .find(|(t, _)| t == "grumpy@example.org")
        .unwrap()
        .1;

    // A report whose token was tampered with names nobody: refused, nothing changed.
    let forged = arf(to_grumpy, "abuse").replace("unsubscribe?t=", "unsubscribe?t=x");
    let (status, v) = feedback(&app, "multipart/report", forged).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (422, Some("unrecognized_report"))
    );
    // A not-spam report is no complaint.
    let (status, v) = feedback(&app, "multipart/report", arf(to_grumpy, "not-spam")).await;
    assert_eq!(
        (status, v["result"].as_str()),
        (200, Some("not_a_complaint"))
    );
    assert!(suppressions(&app, "grumpy@example.org").await.is_empty());
    // The complaint: matched by the message's own unsubscribe link, the address
    // redacted; suppressed for every list, once.
    let (status, v) = feedback(&app, "multipart/report", arf(to_grumpy, "abuse")).await;
    assert_eq!(
        (status, v["result"].as_str()),
        (200, Some("suppressed")),
        "{v}"
    );
    let (_, v) = feedback(&app, "message/rfc822", arf(to_grumpy, "abuse")).await;
    assert_eq!(v["result"], "already_suppressed");
    assert_eq!(
        suppressions(&app, "grumpy@example.org").await,
        [("*".to_owned(), "complaint".to_owned())]
    );
    // A bounce after the relay accepted the message, by address (a webhook).
    let (status, v) = feedback(
        &app,
        "application/json",
        json!({"email": "Moved@Example.org", "type": "bounce"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, v["result"].as_str()),
        (200, Some("suppressed")),
        "{v}"
    );
    assert_eq!(
        suppressions(&app, "moved@example.org").await,
        [("*".to_owned(), "bounce".to_owned())]
    );
    // Bad input changes nothing.
    for (ct, body, code) in [
        (
            "application/json",
            r#"{"email":"a@b.example","type":"spam"}"#,
            "invalid_request",
        ),
        (
            "application/json",
            r#"{"email":"not an address","type":"bounce"}"#,
            "invalid_email",
        ),
        ("application/json", "{", "invalid_json"),
        ("text/html", "<p>", "unsupported_media_type"),
        ("multipart/report", "no report here", "unrecognized_report"),
    ] {
        let (_, v) = feedback(&app, ct, body.to_owned()).await;
        assert_eq!(v["code"], code, "{ct} {body}");
    }
    let v = admin_get(&app, "/v1/admin/email/lists").await;
    assert_eq!(v["suppressions"], json!({"bounce": 1, "complaint": 1}));

    // The next campaign reaches only the one who did neither.
    let second = campaign(&app, "Second").await;
    let (status, _) = admin_post(
        &app,
        &format!("/v1/admin/email/campaigns/{second}/start"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let c = finished(&app, second).await;
    assert_eq!(c["messages"]["sent"], 1, "{c}");
    let to: Vec<String> = of_campaign(&sink.accepted(), second)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(to, ["happy@example.org"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_from_an_identify_call_and_from_a_form_is_one_person() {
    let sink = SmtpSink::start(0);
    let app = spawn_with(&sink.config()).await;
    let r = app
        .post(
            "/v1/consent",
            SERVER_KEY,
            json!({"userId": "u-case", "choices": {"analytics": "grant", "personalization": "grant"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let out = app
        .batch(vec![
            json!({"type": "identify", "userId": "u-case", "messageId": "case-1",
                           "traits": {"email": "Mixed.Case@Example.COM"}}),
        ])
        .await;
    assert_eq!(out["success"], true, "{out}");
    let linked =
        subject_of(&app, "mixed.case@example.com").unwrap_or_else(|| panic!("not linked: {out}"));
    // The sign-up form's address, in another case, finds the same subject.
    join_by_mail(&app, &sink, "MIXED.case@example.com").await;
    assert_eq!(subject_of(&app, "mixed.case@example.com"), Some(linked));
    let subs = app.state.store.email().subscriptions(linked).await.unwrap();
    assert_eq!(subs.len(), 1);
}

/// The row of `table_text` whose header cell starts with `head`, up to its `</tr>`.
fn row<'a>(html: &'a str, head: &str) -> &'a str {
    let at = html
        .find(&format!("<th scope=\"row\">{head}"))
        .unwrap_or_else(|| panic!("no row {head}: {html}"));
    let rest = &html[at..];
    &rest[..rest.find("</tr>").unwrap()]
}

fn figure(row: &str, attr: &str, key: &str) -> String {
    let tag = format!("data-{attr}=\"{key}\">");
    let at = row
        .find(&tag)
        .unwrap_or_else(|| panic!("no {tag} in {row}"))
        + tag.len();
    let rest = &row[at..];
    rest[..rest.find('<').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_email_dashboard_shows_lists_growth_campaigns_and_suppressions() {
    let sink = SmtpSink::start(0);
    let app = spawn_with(&sink.config()).await;
    let client = no_redirects();
    // Only an admin session sees it: not anyone, not the bearer token, not a forged cookie.
    for req in [
        client.get(app.url("/admin/email")),
        client.get(app.url("/admin/email")).bearer_auth(ADMIN),
        client
            .get(app.url("/admin/email"))
            .header("Cookie", "candor_admin=v1.99999999999.00.00"),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303);
        assert_eq!(r.headers()["location"], "/admin/login");
        assert!(!r.text().await.unwrap().contains("Monthly news"));
    }

    // a and b confirm; c confirms and leaves; p asks and waits; bounce-d confirms.
    let leave = |s, campaign| {
        let u = app
            .state
            .mail
            .as_ref()
            .unwrap()
            .keys
            .mint_unsubscribe(s, "news", campaign);
        let url = app.url(&format!("/email/unsubscribe?t={u}"));
        let c = client.clone();
        async move {
            let r = c
                .post(url)
                .form(&[("List-Unsubscribe", "One-Click")])
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    join_quietly(&app, "a@example.org").await;
    let b = join_quietly(&app, "b@example.org").await;
    let c = join_quietly(&app, "c@example.org").await;
    assert_eq!(leave(c, None).await, 200);
    app.post(
        "/v1/email/subscriptions",
        SERVER_KEY,
        json!({"email": "p@example.org", "list": "news"}),
    )
    .await;
    join_quietly(&app, "bounce-d@example.org").await;
    // A campaign to a, b and bounce-d: two sent, one bounced; then b leaves.
    let id = campaign(&app, "Spring <news>").await;
    let (status, started) = admin_post(
        &app,
        &format!("/v1/admin/email/campaigns/{id}/start"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(finished(&app, id).await["status"], "sent");
    // b leaves through the campaign's link, a through the preference center's way
    // (no campaign named): only b counts for it.
    assert_eq!(leave(b, Some(id)).await, 200);
    // A draft: no messages, nothing started.
    let draft = campaign(&app, "Later").await;

    let login = crate::pages::login(&app).await;
    let r = client
        .get(app.url("/admin/email"))
        .header("Cookie", &login.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    // The dashboard links to it.
    assert!(crate::pages::dashboard(&app, &login.cookie)
        .await
        .contains("href=\"/admin/email\""));

    // Lists: news has a and bounce-d confirmed, p waiting, b and c gone; four of the
    // five on record confirmed at some time.
    let news = row(&html, "Monthly news");
    let f = |k| figure(news, "figure", k);
    assert_eq!(
        (f("confirmed"), f("pending"), f("unsubscribed")),
        ("2".into(), "1".into(), "2".into())
    );
    assert_eq!(f("rate"), "80.0%");
    assert!(news.contains("4 of 5"), "{news}");
    assert_eq!((f("joined"), f("left")), ("4".into(), "2".into()));
    let offers = row(&html, "Offers");
    assert_eq!(figure(offers, "figure", "confirmed"), "0");
    assert_eq!(figure(offers, "figure", "rate"), "–");
    // Growth: a chart per list, named by its heading, and today's numbers in a table.
    for list in ["news", "offers"] {
        assert!(
            html.contains(&format!("<h2 id=\"growth-{list}\">")),
            "{list}"
        );
        assert!(html.contains(&format!("aria-labelledby=\"growth-{list}\"")));
    }
    assert!(html.contains("4 confirmed, 2 left"));
    let today = &candor_server::routes::format_time(app.state.now())[..10];
    let day = row(&html, today);
    assert!(
        day.contains("<td class=\"num\">4</td><td class=\"num\">2</td>"),
        "{day}"
    );

    // Campaigns: the chart, and the table with the operator's name escaped.
    assert!(html.contains("aria-labelledby=\"campaigns-h\""));
    let camp = row(&html, &format!("#{id} Spring &lt;news&gt;"));
    let m = |k| figure(camp, "status", k);
    assert_eq!(
        (
            m("sent"),
            m("bounced"),
            m("failed"),
            m("skipped"),
            m("queued")
        ),
        ("2".into(), "1".into(), "0".into(), "0".into(), "0".into())
    );
    assert_eq!(m("left"), "1", "b left through its link; c before it");
    let later = row(&html, &format!("#{draft} Later"));
    assert_eq!(figure(later, "status", "left"), "–");
    assert!(later.contains("<td>draft</td>"));
    // Suppressions by reason.
    let sup = |r| figure(row(&html, r), "reason", r);
    assert_eq!(
        (sup("bounce"), sup("unsubscribe")),
        ("1".into(), "2".into())
    );
    // No address anywhere on the page.
    assert!(!html.contains("@example.org"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_up_form_offers_every_list() {
    let sink = SmtpSink::start(0);
    let app = spawn_with(&sink.config()).await;
    let page = |q: &'static str| {
        let c = no_redirects();
        let url = app.url(&format!("/email/subscribe{q}"));
        async move {
            let r = c.get(url).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.text().await.unwrap()
        }
    };
    let html = page("?list=offers").await;
    assert!(
        html.contains("value=\"news\" required>")
            || html.contains("value=\"news\" required aria-describedby"),
        "{html}"
    );
    assert!(html.contains("value=\"offers\" required checked"), "{html}");
    assert!(html.contains("What is new, once a month."));
    assert!(
        !page("").await.contains("checked"),
        "two lists: none chosen"
    );
    assert!(!page("?list=nope").await.contains("checked"));
    // Without [email], the page says so.
    let bare = spawn().await;
    let r = no_redirects()
        .get(bare.url("/email/subscribe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
