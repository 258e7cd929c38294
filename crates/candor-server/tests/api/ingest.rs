//! Segment-compatible ingestion behind the consent gate.

use crate::helpers::*;
use flate2::write::GzEncoder;
use serde_json::{json, Value};
use std::io::Write;

#[tokio::test]
async fn events_without_consent_are_dropped_and_with_consent_stored() {
    let app = spawn().await;
    let r = app.batch(vec![track("a1", "m1")]).await;
    assert_eq!(r["accepted"], 0);
    assert_eq!(r["results"][0]["reason"], "no_consent");
    app.consent("a1", json!({"analytics": "grant"})).await;
    let r = app
        .batch(vec![track("a1", "m2"), track("stranger", "m3")])
        .await;
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(r["results"][0]["index"], 1);
    assert_eq!(r["results"][0]["reason"], "no_consent");
    let stored = app.stored().await;
    assert_eq!(stored.len(), 1);
    // Stored events carry exactly the purposes that allow them.
    assert_eq!(stored[0].0, vec!["analytics"]);
    assert_eq!(stored[0].1["messageId"], "m2");
    assert!(stored[0].1["_receivedMs"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(stored[0].1.get("writeKey").is_none());
}

#[tokio::test]
async fn payloads_are_encrypted_at_rest() {
    let app = spawn().await;
    app.consent("anon-secret-xyz", json!({"analytics": "grant"}))
        .await;
    let mut m = track("anon-secret-xyz", "m1");
    m["properties"]["email"] = json!("alice@example.com");
    app.batch(vec![m]).await;
    let env = app.stop().await;
    if let Some(url) = &env.database_url {
        // Every row of every table, as text.
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let tables = c
            .query(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .unwrap();
        for t in tables {
            let name: String = t.get(0);
            for row in c
                .query(&format!("SELECT t::text FROM {name} t"), &[])
                .await
                .unwrap()
            {
                let text: String = row.get(0);
                for needle in ["alice@example.com", "anon-secret-xyz"] {
                    assert!(!text.contains(needle), "{name} holds plaintext");
                }
            }
        }
    }
    for f in std::fs::read_dir(env.dir.path()).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            for needle in [&b"alice@example.com"[..], b"anon-secret-xyz"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds plaintext",
                    p.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn write_key_in_body_and_gzip_and_per_type_endpoints() {
    let app = spawn().await;
    app.consent(
        "a1",
        json!({"analytics": "grant", "personalization": "grant"}),
    )
    .await;
    let body = json!({"writeKey": SERVER_KEY, "batch": [track("a1", "g1")]}).to_string();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let r = app
        .client
        .post(app.url("/v1/batch"))
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 1);
    for (path, msg) in [
        (
            "/v1/track",
            json!({"event": "App Session", "anonymousId": "a1"}),
        ),
        ("/v1/page", json!({"name": "sports", "anonymousId": "a1"})),
        ("/v1/screen", json!({"name": "Home", "anonymousId": "a1"})),
        (
            "/v1/identify",
            json!({"anonymousId": "a1", "userId": "u1", "traits": {"shoe": 42}}),
        ),
        ("/v1/group", json!({"anonymousId": "a1", "groupId": "g1"})),
    ] {
        let r = app.post(path, SERVER_KEY, msg).await;
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["accepted"], 1, "{path}: {v}");
    }
    // identify linked u1 to the subject: events by userId alone now resolve.
    let r = app
        .post(
            "/v1/track",
            SERVER_KEY,
            json!({"event": "App Session", "userId": "u1"}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 1);
    // alias maps to `contact`, which no granted purpose covers: dropped.
    let r = app
        .post(
            "/v1/alias",
            SERVER_KEY,
            json!({"previousId": "a1", "userId": "u2"}),
        )
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["results"][0]["reason"],
        "no_consent"
    );
}

#[tokio::test]
async fn message_id_deduplicates() {
    let app = spawn().await;
    app.consent("a1", json!({"analytics": "grant"})).await;
    let r = app
        .batch(vec![track("a1", "same"), track("a1", "same")])
        .await;
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    let r = app.batch(vec![track("a1", "same")]).await;
    assert_eq!(r["duplicates"], 1);
    assert_eq!(app.events().await, 1);
}

#[tokio::test]
async fn deduplication_survives_a_restart() {
    let app = spawn().await;
    app.consent("a1", json!({"analytics": "grant"})).await;
    app.batch(vec![track("a1", "before-restart")]).await;
    let env = app.stop().await;
    let app = spawn_env(env, "").await;
    let r = app
        .batch(vec![track("a1", "before-restart"), track("a1", "new")])
        .await;
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(app.events().await, 2);
}

#[tokio::test]
async fn client_consent_only_narrows() {
    let app = spawn().await;
    app.consent("a1", json!({"analytics": "grant"})).await;
    // Claims a purpose it never granted: does not widen.
    let mut m = track("a1", "m1");
    m["context"] =
        json!({"consent": {"categoryPreferences": {"ads_insights": true, "analytics": true}}});
    app.batch(vec![m]).await;
    assert_eq!(app.stored().await[0].0, vec!["analytics"]);
    // Refuses the only granted purpose: dropped.
    let mut m = track("a1", "m2");
    m["context"] = json!({"consent": {"categoryPreferences": {"analytics": false, "OtherCmpCategory": false}}});
    let r = app.batch(vec![m]).await;
    assert_eq!(r["results"][0]["reason"], "client_consent");
    assert_eq!(app.events().await, 1);
}

#[tokio::test]
async fn gpc_header_narrows_ingestion() {
    let app = spawn().await;
    app.consent("a1", json!({"analytics": "grant", "ads_insights": "grant"}))
        .await;
    let r = app
        .client
        .post(app.url("/v1/batch"))
        .basic_auth(SERVER_KEY, Some(""))
        .header("sec-gpc", "1")
        .json(&json!({"batch": [track("a1", "m1")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(app.stored().await[0].0, vec!["analytics"]);
}

#[tokio::test]
async fn unmapped_events_are_dropped() {
    let app = spawn().await;
    app.consent("a1", json!({"analytics": "grant"})).await;
    // identify maps to declared_profile, which analytics does not cover.
    let r = app
        .batch(vec![
            json!({"type": "identify", "anonymousId": "a1", "traits": {}}),
        ])
        .await;
    assert_eq!(r["results"][0]["reason"], "no_consent");
}

#[tokio::test]
async fn timestamps_follow_segment_rules() {
    let app = spawn().await;
    app.consent("a1", json!({"analytics": "grant"})).await;
    let mut m = track("a1", "t1");
    m["timestamp"] = json!("2026-01-02T03:04:05.678Z");
    app.batch(vec![m]).await;
    let stored = app.stored().await;
    assert_eq!(
        stored[0].1["_eventMs"].as_i64(),
        candor_server::segment::parse_time("2026-01-02T03:04:05.678Z")
    );
    // The payload is the message as sent.
    assert_eq!(stored[0].1["timestamp"], "2026-01-02T03:04:05.678Z");
}

#[derive(Debug, Clone)]
enum Send {
    /// Message ids (from a small pool) in one `/v1/batch`.
    Batch(Vec<usize>),
    /// One message through `/v1/track`.
    Single(usize),
    /// A graceful restart on the same data.
    Restart,
}

/// Random sends of message ids from a small pool, in batches (repeats inside one batch
/// too) and singly, with restarts in between: each id is stored the first time and
/// answered as a duplicate every later time, whatever the route and across restarts
/// (the de-duplication window outlives the process).
#[test]
fn every_message_id_is_stored_once_across_routes_and_restarts() {
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let send = prop_oneof![
        4 => prop::collection::vec(0..12usize, 1..6).prop_map(Send::Batch),
        3 => (0..12usize).prop_map(Send::Single),
        1 => Just(Send::Restart),
    ];
    let mut runner = runner(10);
    runner
        .run(&prop::collection::vec(send, 1..16), |sends| {
            let mut app = Some(rt.block_on(async {
                let app = spawn().await;
                app.consent("d1", json!({"analytics": "grant"})).await;
                app
            }));
            let mut seen: BTreeSet<usize> = BTreeSet::new();
            for s in &sends {
                let current = app.take().expect("an app");
                let (next, accepted, duplicates, want_accepted, want_duplicates) = match s {
                    Send::Restart => {
                        let env = rt.block_on(current.stop());
                        app = Some(rt.block_on(spawn_env(env, "")));
                        continue;
                    }
                    Send::Batch(ids) => {
                        let msgs = ids.iter().map(|i| track("d1", &format!("m{i}"))).collect();
                        let r = rt.block_on(current.batch(msgs));
                        let fresh = ids.iter().filter(|i| seen.insert(**i)).count();
                        (
                            current,
                            r["accepted"].as_u64(),
                            r["duplicates"].as_u64(),
                            fresh,
                            ids.len() - fresh,
                        )
                    }
                    Send::Single(i) => {
                        let r: Value = rt.block_on(async {
                            current
                                .post("/v1/track", SERVER_KEY, track("d1", &format!("m{i}")))
                                .await
                                .json()
                                .await
                                .unwrap()
                        });
                        let fresh = usize::from(seen.insert(*i));
                        (
                            current,
                            r["accepted"].as_u64(),
                            r["duplicates"].as_u64(),
                            fresh,
                            1 - fresh,
                        )
                    }
                };
                app = Some(next);
                prop_assert_eq!(
                    (accepted, duplicates),
                    (Some(want_accepted as u64), Some(want_duplicates as u64)),
                    "{:?} in {:?}",
                    s,
                    sends
                );
            }
            let app = app.take().expect("an app");
            let stored = rt.block_on(app.events());
            prop_assert_eq!(stored, seen.len() as u64);
            rt.block_on(app.stop());
            Ok(())
        })
        .unwrap();
}
