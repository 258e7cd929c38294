//! Withdrawal takes effect at once for new events and strips stored data; a model-based
//! test checks the gate and withdrawal over random interleavings.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn withdrawing_strips_purpose_and_deletes_orphans() {
    let app = spawn().await;
    app.consent("a1", json!({"analytics": "grant", "ads_insights": "grant"}))
        .await;
    app.consent("a2", json!({"analytics": "grant"})).await;
    // app_usage is covered by analytics, personalization and ads_insights.
    app.batch((0..5).map(|i| track("a1", &format!("a1-{i}"))).collect())
        .await;
    app.batch((0..3).map(|i| track("a2", &format!("a2-{i}"))).collect())
        .await;
    assert_eq!(app.events().await, 8);

    app.consent("a1", json!({"analytics": "withdraw"})).await;
    // In force at once, before any sweep.
    let stored = app.stored().await;
    assert_eq!(stored.len(), 8);
    for (purposes, msg) in &stored {
        if msg["anonymousId"] == "a1" {
            assert_eq!(purposes, &vec!["ads_insights".to_string()]);
        } else {
            assert_eq!(purposes, &vec!["analytics".to_string()]);
        }
    }
    // New a1 events carry only what is still granted.
    app.batch(vec![track("a1", "after")]).await;
    let after = app.stored().await;
    let last = after
        .iter()
        .find(|(_, m)| m["messageId"] == "after")
        .unwrap();
    assert_eq!(last.0, vec!["ads_insights".to_string()]);

    // Refusing the last purpose hides a1's events at once; a2 is untouched.
    app.consent("a1", json!({"ads_insights": "refuse"})).await;
    let left = app.stored().await;
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|(_, m)| m["anonymousId"] == "a2"));
    // The sweeper then deletes the rows themselves.
    app.state.store.sweep().await.unwrap();
    let s = app.stats().await;
    assert_eq!(
        (s["events"].as_u64(), s["pendingWithdrawalSweeps"].as_u64()),
        (Some(3), Some(0)),
        "{s}"
    );
    let r = app.batch(vec![track("a1", "later")]).await;
    assert_eq!(r["results"][0]["reason"], "no_consent");
}

#[tokio::test]
async fn withdrawal_racing_ingestion_never_leaves_withdrawn_data() {
    // Many batches in flight while the purpose is withdrawn: whatever order they
    // commit in, afterwards no stored event may carry the withdrawn purpose.
    let app = spawn().await;
    app.consent("r1", json!({"analytics": "grant"})).await;
    let mut tasks = Vec::new();
    for b in 0..20 {
        let c = app.client.clone();
        let url = app.url("/v1/batch");
        tasks.push(tokio::spawn(async move {
            let batch: Vec<_> = (0..50)
                .map(|i| track("r1", &format!("r-{b}-{i}")))
                .collect();
            c.post(url)
                .basic_auth(SERVER_KEY, Some(""))
                .json(&json!({"batch": batch}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    app.consent("r1", json!({"analytics": "withdraw"})).await;
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert!(app.stored().await.is_empty());
    app.state.store.sweep().await.unwrap();
    assert_eq!(app.events().await, 0);
}

/// Purposes of the model-based test below; the first three cover `app_usage` (the
/// category of an `App Session`), `loyalty` does not.
const GATED: [&str; 4] = ["analytics", "personalization", "ads_insights", "loyalty"];
const COVERS_APP_USAGE: [bool; 4] = [true, true, true, false];

#[derive(Debug, Clone)]
enum Step {
    Choose(usize, usize, &'static str),
    Send(usize),
}

/// Random interleavings of consent changes and events for two people, checked after
/// every step against a model of the gate: an event is stored only under the purposes
/// that cover its category and were granted when it arrived; a later withdrawal (or a
/// refusal of something given) takes that purpose off every earlier event at once, a
/// re-grant never puts it back, and an event left with no purpose is gone.
#[test]
fn stored_events_always_carry_exactly_the_purposes_the_model_allows() {
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn());
    let step = prop_oneof![
        3 => (0..2usize, 0..4usize, prop::sample::select(vec!["grant", "refuse", "withdraw"]))
            .prop_map(|(s, p, a)| Step::Choose(s, p, a)),
        2 => (0..2usize).prop_map(Step::Send),
    ];
    let mut runner = runner(24);
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&prop::collection::vec(step, 1..40), |steps| {
            let c = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let who = |s: usize| format!("gate-{c}-{s}");
            let mut granted = [[false; 4]; 2];
            // message id -> (subject, purposes it still carries)
            let mut model: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
            for (i, st) in steps.iter().enumerate() {
                match st {
                    Step::Choose(s, p, a) => {
                        let body = json!({"anonymousId": who(*s), "choices": {GATED[*p]: a}});
                        let status = rt
                            .block_on(async {
                                app.post("/v1/consent", BROWSER_KEY, body).await.status()
                            })
                            .as_u16();
                        let was = granted[*s][*p];
                        match *a {
                            "grant" => granted[*s][*p] = true,
                            "refuse" => granted[*s][*p] = false,
                            _ if was => granted[*s][*p] = false,
                            _ => {
                                prop_assert_eq!(status, 409, "{:?}", st);
                                continue;
                            }
                        }
                        prop_assert_eq!(status, 200, "{:?}", st);
                        if was && !granted[*s][*p] {
                            for (owner, ps) in model.values_mut() {
                                if *owner == *s {
                                    ps.retain(|q| q != p);
                                }
                            }
                        }
                    }
                    Step::Send(s) => {
                        let id = format!("gate-{c}-m{i}");
                        rt.block_on(app.batch(vec![track(&who(*s), &id)]));
                        let allowed: Vec<usize> = (0..4)
                            .filter(|p| granted[*s][*p] && COVERS_APP_USAGE[*p])
                            .collect();
                        if !allowed.is_empty() {
                            model.insert(id, (*s, allowed));
                        }
                    }
                }
                let prefix = format!("gate-{c}-");
                let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (mut purposes, msg) in rt.block_on(app.stored()) {
                    let id = msg["messageId"].as_str().unwrap_or_default().to_owned();
                    if id.starts_with(&prefix) {
                        purposes.sort();
                        seen.insert(id, purposes);
                    }
                }
                let want: BTreeMap<String, Vec<String>> = model
                    .iter()
                    .filter(|(_, (_, ps))| !ps.is_empty())
                    .map(|(id, (_, ps))| {
                        let mut names: Vec<String> =
                            ps.iter().map(|p| GATED[*p].to_owned()).collect();
                        names.sort();
                        (id.clone(), names)
                    })
                    .collect();
                prop_assert_eq!(&seen, &want, "after {:?}", &steps[..=i]);
            }
            Ok(())
        })
        .unwrap();
}
