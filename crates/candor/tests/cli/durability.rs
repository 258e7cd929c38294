//! An acknowledged write survives kill -9.

use crate::helpers::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn acknowledged_consents_and_events_survive_kill_9() {
    for data in both() {
        kill9(&data);
    }
}

fn kill9(data: &Data) {
    let server = start(data, 0);
    for i in 0..10 {
        consent(&server, &format!("base-{i}"), json!({"analytics": "grant"}));
    }
    let acked_events = Arc::new(Mutex::new(HashSet::new()));
    let acked_consents = Arc::new(Mutex::new(Vec::new()));
    let batches = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (url, ev, co, n) = (
            server.base.clone(),
            acked_events.clone(),
            acked_consents.clone(),
            batches.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let c = client();
            for b in 0.. {
                if w == 0 && b % 3 == 0 {
                    // Interleave consent changes with the event load.
                    let anon = format!("late-{b}");
                    let r = c
                        .post(format!("{url}/v1/consent"))
                        .basic_auth(BROWSER_KEY, Some(""))
                        .json(&json!({"anonymousId": anon, "choices": {"loyalty": "grant"}}))
                        .send();
                    match r {
                        Ok(r) if r.status() == 200 => co.lock().unwrap().push(anon),
                        _ => return,
                    }
                }
                let ids: Vec<String> = (0..50).map(|i| format!("w{w}-b{b}-{i}")).collect();
                let batch: Vec<_> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| json!({"type": "track", "event": "App Session", "anonymousId": format!("base-{}", i % 10), "messageId": id}))
                    .collect();
                match c.post(format!("{url}/v1/batch")).basic_auth(SERVER_KEY, Some("")).json(&json!({"batch": batch})).send() {
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().unwrap();
                        assert_eq!(v["accepted"], 50);
                        ev.lock().unwrap().extend(ids);
                        n.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => return, // the server died under us: stop
                }
            }
        }));
    }
    // Kill while the writers are in full flow, once enough has been acknowledged.
    while batches.load(Ordering::SeqCst) < 60 {
        std::thread::yield_now();
    }
    server.kill9();
    for w in workers {
        w.join().unwrap();
    }

    let lines = export(data);
    let stored: HashSet<String> = lines
        .iter()
        .filter(|l| l["kind"] == "event")
        .map(|l| l["message"]["messageId"].as_str().unwrap().to_owned())
        .collect();
    let acked = acked_events.lock().unwrap();
    assert!(acked.len() >= 60 * 50);
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !stored.contains(*id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{}: acknowledged events lost: {missing:?}",
        data.backend()
    );

    let verify = run(&["ledger", "verify"], data);
    assert!(verify.status.success(), "{}", stdout(&verify));

    let server = start(data, 0);
    for anon in acked_consents.lock().unwrap().iter() {
        let v: serde_json::Value = client()
            .get(server.url(&format!("/v1/consent?anonymousId={anon}")))
            .basic_auth(BROWSER_KEY, Some(""))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let loyalty = v["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["purpose"] == "loyalty")
            .unwrap()
            .clone();
        assert_eq!(
            loyalty["granted"], true,
            "acknowledged consent lost for {anon}"
        );
    }
    server.stop();
}

/// Insight features are derived from the event log after commit: a kill -9 between an
/// acknowledged batch and its derivation must neither lose nor double-count a feature.
#[test]
fn insight_features_are_derived_exactly_once_across_kill_9() {
    for data in both() {
        features_kill9(&data);
    }
}

fn features_kill9(data: &Data) {
    const PEOPLE: usize = 6;
    let server = start(data, 0);
    for p in 0..PEOPLE {
        consent(
            &server,
            &format!("feat-{p}"),
            json!({"analytics": "grant", "ads_insights": "grant"}),
        );
    }
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let batches = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..3 {
        let (url, acked, n) = (server.base.clone(), acked.clone(), batches.clone());
        workers.push(std::thread::spawn(move || {
            let c = client();
            for b in 0.. {
                let ids: Vec<String> = (0..40).map(|i| format!("f{w}-{b}-{i}")).collect();
                let batch: Vec<_> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        json!({"type": "track", "event": "App Session",
                        "anonymousId": format!("feat-{}", i % PEOPLE), "messageId": id,
                        "properties": {"app_category": "games"}})
                    })
                    .collect();
                match c
                    .post(format!("{url}/v1/batch"))
                    .basic_auth(SERVER_KEY, Some(""))
                    .json(&json!({"batch": batch}))
                    .send()
                {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().extend(ids);
                        n.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => return,
                }
            }
        }));
    }
    while batches.load(Ordering::SeqCst) < 40 {
        std::thread::yield_now();
    }
    server.kill9();
    for w in workers {
        w.join().unwrap();
    }

    // The restarted server derives what the log holds past the watermark.
    let server = start(data, 0);
    let counted: Vec<u64> = (0..PEOPLE)
        .map(|p| {
            let v: serde_json::Value = client()
                .get(server.url(&format!("/v1/consent/insights?anonymousId=feat-{p}")))
                .basic_auth(BROWSER_KEY, Some(""))
                .send()
                .unwrap()
                .json()
                .unwrap();
            v["features"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["feature"] == "app_usage" && f["category"] == "games")
                .map(|f| f["count"].as_u64().unwrap())
                .sum()
        })
        .collect();
    server.stop();

    let mut stored = vec![0u64; PEOPLE];
    let mut stored_ids = HashSet::new();
    for l in export(data).iter().filter(|l| l["kind"] == "event") {
        let m = &l["message"];
        if let Some(p) = m["anonymousId"]
            .as_str()
            .and_then(|a| a.strip_prefix("feat-"))
        {
            stored[p.parse::<usize>().unwrap()] += 1;
            stored_ids.insert(m["messageId"].as_str().unwrap().to_owned());
        }
    }
    let acked = acked.lock().unwrap();
    assert!(acked.len() >= 40 * 40);
    assert!(
        acked.iter().all(|id| stored_ids.contains(id)),
        "{}: an acknowledged event was lost",
        data.backend()
    );
    assert_eq!(
        counted,
        stored,
        "{}: each stored event counts exactly once",
        data.backend()
    );
}

#[test]
fn graceful_stop_then_restart_keeps_everything() {
    for data in both() {
        stop_and_restart(&data);
    }
}

fn stop_and_restart(data: &Data) {
    let server = start(data, 25);
    let before: serde_json::Value = client()
        .get(server.url("/v1/admin/stats"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(before["subjects"], 25);
    server.stop();
    // A second start does not seed again, and sees the same data.
    let server = start(data, 25);
    let after: serde_json::Value = client()
        .get(server.url("/v1/admin/stats"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(before, after);
    // The data directory is locked while the server runs.
    let second = run(&["serve", "--listen", "127.0.0.1:0"], data);
    assert!(!second.status.success());
    assert!(stdout(&second).contains("in use"), "{}", stdout(&second));
    server.stop();
}
