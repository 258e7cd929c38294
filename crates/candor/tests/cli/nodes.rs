//! Several Candor processes on one PostgreSQL behave as one system.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

const MASTER: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const SIGNING: &str = "2222222222222222222222222222222222222222222222222222222222222222";

pub(crate) fn node(data: &Path, db: &str) -> Server {
    start_with(
        bin()
            .args([
                "serve",
                "--demo",
                "--demo-subjects",
                "0",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            .args(["--database-url", db])
            .env("CANDOR_MASTER_KEY", MASTER)
            .env("CANDOR_SIGNING_KEY", SIGNING),
    )
}

fn send(s: &Server, anon: &str, id: &str) -> Value {
    client()
        .post(s.url("/v1/batch"))
        .basic_auth(SERVER_KEY, Some(""))
        .json(&json!({"batch": [{"type": "track", "event": "App Session", "anonymousId": anon, "messageId": id}]}))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn granted(s: &Server, anon: &str, purpose: &str) -> bool {
    let v: Value = client()
        .get(s.url(&format!("/v1/consent?anonymousId={anon}")))
        .basic_auth(BROWSER_KEY, Some(""))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["purpose"] == purpose && p["granted"] == true)
}

#[test]
fn two_nodes_share_consent_dedup_and_one_ledger() {
    let Some(db) = fresh_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), &db);
    let b = node(&dir.path().join("b"), &db);

    // A grant through A reaches B.
    consent(&a, "mn-1", json!({"analytics": "grant"}));
    let t = Instant::now();
    while !granted(&b, "mn-1", "analytics") {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "grant did not reach node B within 1 s"
        );
        std::thread::yield_now();
    }
    assert_eq!(send(&b, "mn-1", "before")["accepted"], 1);

    // A withdrawal through A stops events at B within a second (in fact at once: B's
    // ingest re-checks consent in the database).
    consent(&a, "mn-1", json!({"analytics": "withdraw"}));
    let withdrawn_at = Instant::now();
    let r = send(&b, "mn-1", "after");
    assert_eq!(r["accepted"], 0, "{r}");
    while granted(&b, "mn-1", "analytics") {
        assert!(
            withdrawn_at.elapsed() < Duration::from_secs(1),
            "withdrawal did not reach B's index within 1 s"
        );
        std::thread::yield_now();
    }

    // messageId de-duplication holds across nodes, even for simultaneous sends.
    consent(&a, "mn-2", json!({"analytics": "grant"}));
    while !granted(&b, "mn-2", "analytics") {
        std::thread::yield_now();
    }
    let (ba, bb) = (a.base.clone(), b.base.clone());
    let racers: Vec<_> = [ba, bb, a.base.clone(), b.base.clone()]
        .into_iter()
        .map(|base| {
            std::thread::spawn(move || {
                let v: Value = client()
                    .post(format!("{base}/v1/batch"))
                    .basic_auth(SERVER_KEY, Some(""))
                    .json(&json!({"batch": [{"type": "track", "event": "App Session", "anonymousId": "mn-2", "messageId": "same-everywhere"}]}))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                v["accepted"].as_u64().unwrap()
            })
        })
        .collect();
    let accepted: u64 = racers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(
        accepted, 1,
        "the same messageId was stored more than once across nodes"
    );

    // Concurrent consent changes through both nodes form one valid chain.
    let workers: Vec<_> = [a.base.clone(), b.base.clone()]
        .into_iter()
        .enumerate()
        .map(|(n, base)| {
            std::thread::spawn(move || {
                for i in 0..25 {
                    let r = client()
                        .post(format!("{base}/v1/consent"))
                        .basic_auth(BROWSER_KEY, Some(""))
                        .json(&json!({"anonymousId": format!("chain-{}", i % 5), "choices": {"loyalty": if (i + n) % 2 == 0 {"grant"} else {"refuse"}}}))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    a.stop();
    b.stop();
    let out = bin()
        .args(["ledger", "verify", "--database-url", &db, "--data-dir"])
        .arg(dir.path().join("verify"))
        .env("CANDOR_MASTER_KEY", MASTER)
        .env("CANDOR_SIGNING_KEY", SIGNING)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    // Every event stored once, and the export sees both nodes' writes.
    let lines: Vec<Value> = String::from_utf8(
        bin()
            .args(["export", "--database-url", &db, "--data-dir"])
            .arg(dir.path().join("verify"))
            .env("CANDOR_MASTER_KEY", MASTER)
            .env("CANDOR_SIGNING_KEY", SIGNING)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let ids: Vec<String> = lines
        .iter()
        .filter(|l| l["kind"] == "event")
        .map(|l| l["message"]["messageId"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len());
    assert!(unique.contains(&"same-everywhere".to_string()));
    assert!(!unique.contains(&"after".to_string()));
}

/// Segments across nodes (issue 14): a segment saved through A, a field set through A
/// and an event sent through B all reach B's membership, within seconds.
#[test]
fn segments_follow_definitions_fields_and_events_from_either_node() {
    let Some(db) = fresh_database() else { return };
    let (da, dbd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), &db);
    let b = node(dbd.path(), &db);
    let admin = |s: &Server, method: reqwest::Method, path: &str, body: Option<Value>| -> Value {
        let mut rb = client()
            .request(method, s.url(path))
            .bearer_auth("demo-admin-token");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().unwrap().json().unwrap()
    };
    let r = client()
        .post(a.url("/v1/consent"))
        .basic_auth(SERVER_KEY, Some(""))
        .json(&json!({"userId": "ann", "choices": {"personalization": "grant"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = admin(
        &a,
        reqwest::Method::PUT,
        "/v1/admin/segments/fit",
        Some(json!({"purpose": "personalization",
            "text": "field.interests has \"fitness\" or seen(track \"App Session\") within 2 days"})),
    );
    assert_eq!(v["name"], "fit", "{v}");
    let member_on_b = || {
        let v = admin(
            &b,
            reqwest::Method::GET,
            "/v1/admin/segments/fit/check?userId=ann",
            None,
        );
        v["member"].as_bool()
    };
    // B learns of the segment from the store.
    let deadline = Instant::now() + Duration::from_secs(15);
    while member_on_b().is_none() {
        assert!(Instant::now() < deadline, "B never saw the segment");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(member_on_b(), Some(false));
    // A field set through A: B reads it back when A's commit is announced.
    let r = client()
        .put(a.url("/v1/me/fields/interests?userId=ann"))
        .basic_auth(SERVER_KEY, Some(""))
        .json(&json!({"value": ["fitness"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    while member_on_b() != Some(true) {
        assert!(Instant::now() < deadline, "B never saw the field");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Removed through A: out on B.
    let r = client()
        .delete(a.url("/v1/me/fields/interests?userId=ann"))
        .basic_auth(SERVER_KEY, Some(""))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    while member_on_b() != Some(false) {
        assert!(Instant::now() < deadline, "B never saw the removal");
        std::thread::sleep(Duration::from_millis(100));
    }
    // An event through B: A counts it (the log is shared).
    let r = client()
        .post(b.url("/v1/track"))
        .basic_auth(SERVER_KEY, Some(""))
        .json(&json!({"event": "App Session", "userId": "ann"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = admin(
        &a,
        reqwest::Method::GET,
        "/v1/admin/segments/fit/check?userId=ann",
        None,
    );
    assert_eq!(v["member"], true, "{v}");
    a.stop();
    b.stop();
}
