//! The admin audit log (issue 11, part 9) and the ledger checkpoint served to anyone
//! (part 5).

use crate::helpers::*;
use serde_json::{json, Value};

async fn audit_log(app: &TestApp) -> Vec<Value> {
    app.get_bearer("/v1/admin/audit?limit=1000", ADMIN).await["actions"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn every_admin_action_is_recorded_with_its_outcome() {
    let app = spawn().await;
    create_advertiser(&app, "acme", 1.0).await;
    let patch = |id: &'static str| {
        app.client
            .patch(app.url(&format!("/v1/admin/advertisers/{id}")))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "Acme Ads"}))
            .send()
    };
    assert_eq!(patch("acme").await.unwrap().status(), 200);
    assert_eq!(patch("nobody").await.unwrap().status(), 404);
    let r = app
        .client
        .post(app.url("/v1/admin/advertisers/acme/rotate-key"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    mint_token(&app, "person-who-must-not-appear").await;
    // Attempts without the admin token are not actions (and cannot fill the log).
    for _ in 0..3 {
        let r = app
            .client
            .post(app.url("/v1/admin/advertisers"))
            .bearer_auth("wrong-token-wrong-token")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Reads are not actions either.
    app.stats().await;

    let log = audit_log(&app).await;
    let got: Vec<(String, String, String)> = log
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_owned(),
                a["target"].as_str().unwrap().to_owned(),
                a["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |a: &str, t: &str, o: &str| (a.to_owned(), t.to_owned(), o.to_owned());
    assert_eq!(
        got,
        vec![
            expect("POST /v1/admin/advertisers", "", "ok"),
            expect("PATCH /v1/admin/advertisers/{id}", "acme", "ok"),
            expect("PATCH /v1/admin/advertisers/{id}", "nobody", "not_found"),
            expect("POST /v1/admin/advertisers/{id}/rotate-key", "acme", "ok"),
            expect("POST /v1/admin/subject-tokens", "", "ok"),
        ]
    );
    assert!(log.iter().all(|a| a["time"].as_str().is_some()));
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("person-who-must-not-appear"));
    assert!(!text.contains("cnd_adv_"), "an API key reached the log");
    // Paging.
    let first = log[0]["id"].as_i64().unwrap();
    let page = app
        .get_bearer(&format!("/v1/admin/audit?after={first}&limit=2"), ADMIN)
        .await;
    assert_eq!(page["actions"].as_array().unwrap().len(), 2);
    assert_eq!(page["actions"][0]["id"], log[1]["id"]);
}

#[tokio::test]
async fn anyone_gets_a_signed_checkpoint_of_the_ledger_head() {
    let app = spawn().await;
    app.consent("cp1", json!({"analytics": "grant", "loyalty": "refuse"}))
        .await;
    let cp = app.get_json("/v1/ledger/checkpoint").await;
    assert_eq!(cp["seq"], 2);
    let ring = app.get_json("/v1/receipts/public-key").await;
    let ring = candor_server::receipts::parse_ring(&ring.to_string()).unwrap();
    let signed = candor_server::ledger::parse_checkpoint(&cp.to_string()).unwrap();
    assert_eq!(signed.verify(&ring), Ok(()));
    let head = app.state.store.ledger_head().await.unwrap().unwrap();
    assert_eq!(signed.checkpoint.head, head.hash);
    // Altered, it no longer verifies.
    let mut bad = cp.clone();
    bad["seq"] = json!(1);
    let bad = candor_server::ledger::parse_checkpoint(&bad.to_string()).unwrap();
    assert!(bad.verify(&ring).is_err());
}
