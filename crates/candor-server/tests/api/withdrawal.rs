//! Withdrawal takes effect at once for new events and strips stored data.

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
