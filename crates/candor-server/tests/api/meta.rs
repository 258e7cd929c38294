//! Health, metrics, GPC declaration, OpenAPI, unknown routes.

use crate::helpers::*;
use serde_json::{json, Value};

#[tokio::test]
async fn health_gpc_purposes() {
    let app = spawn().await;
    let v: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let v: Value = app
        .client
        .get(app.url("/.well-known/gpc.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["gpc"], true);
    let v: Value = app
        .client
        .get(app.url("/v1/purposes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ads = v["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "ads_insights")
        .unwrap()
        .clone();
    assert_eq!(ads["saleOrSharing"], true);
    assert_eq!(ads["notice"]["sha256"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn().await;
    let r = app.client.get(app.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(code_of(r).await, (404, "not_found".into()));
    let r = app
        .client
        .delete(app.url("/v1/batch"))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (405, "method_not_allowed".into()));
}

#[tokio::test]
async fn metrics_count_accepted_dropped_and_consent_changes() {
    let app = spawn().await;
    app.consent("m1", json!({"analytics": "grant"})).await;
    app.batch(vec![track("m1", "x1"), track("nobody", "x2")])
        .await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "candor_events_accepted_total",
        "candor_events_dropped_total{reason=\"no_consent\"}",
        "candor_consent_changes_total",
        "candor_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // No identifiers in metrics.
    assert!(!text.contains("nobody") && !text.contains("m1\""));
}

#[tokio::test]
async fn openapi_documents_every_route_and_every_error_code() {
    let app = spawn().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20);
    // Every documented operation exists on the server (no 404/405 from the router).
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.client.request(m, app.url(path)).send().await.unwrap();
            let (_, code) = code_of(r).await;
            assert!(
                code != "not_found" && code != "method_not_allowed",
                "{method} {path}"
            );
        }
    }
    // The documented error codes are exactly the table's.
    let mut documented: Vec<String> = doc["components"]["schemas"]["Error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let mut table: Vec<String> = candor_server::error::TABLE
        .iter()
        .map(|r| r.1.to_owned())
        .collect();
    documented.sort();
    table.sort();
    assert_eq!(documented, table);
}
