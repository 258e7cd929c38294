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

/// The served document, parsed.
async fn served_document(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Every (METHOD, path) the document has an operation for.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

#[tokio::test]
async fn the_document_has_exactly_the_routes_the_router_serves() {
    let app = spawn().await;
    let doc = served_document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    // The router's own list, from the same registration that builds it (demo routes
    // included: `serve --demo` serves them).
    let mut served: Vec<(String, String)> = candor_server::routes::table::route_list(true)
        .into_iter()
        .map(|(m, p)| (m.as_str().to_owned(), p.to_owned()))
        .collect();
    documented.sort();
    served.sort();
    let undocumented: Vec<_> = served.iter().filter(|r| !documented.contains(r)).collect();
    let unserved: Vec<_> = documented.iter().filter(|r| !served.contains(r)).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented operations nobody serves: {unserved:?}"
    );

    let mut ids = std::collections::BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(ids.insert(id.to_owned()), "{what}: operationId {id} twice");
        let role = op["x-candor-role"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no role"));
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no security"));
        let open = ["anyone", "person_entry", "login_form"].contains(&role);
        assert_eq!(
            security.is_empty(),
            open,
            "{what}: role {role}, security {security:?}"
        );
        for scheme in security.iter().flat_map(|s| s.as_object().unwrap().keys()) {
            assert!(
                doc["components"]["securitySchemes"].get(scheme).is_some(),
                "{what}: undeclared scheme {scheme}"
            );
        }
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3')),
            "{what}: no success response"
        );
        for (status, r) in responses {
            assert!(
                !r["description"].as_str().unwrap_or("").is_empty(),
                "{what} {status}: no description"
            );
        }
    }
}

#[test]
fn no_two_types_share_a_schema_name() {
    assert_eq!(
        candor_server::openapi::schema_name_clashes(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn every_documented_operation_exists_and_every_error_code_is_documented() {
    let app = spawn().await;
    let doc = served_document(&app).await;
    // Every documented operation exists on the server (no 404/405 from the router).
    for (method, path, _) in operations(&doc) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app.client.request(m, app.url(&path)).send().await.unwrap();
        let (_, code) = code_of(r).await;
        // A path with a parameter reaches its handler with `{x}` as the value, which it
        // may not know (`not_found` from the handler, not the router).
        let templated = path.contains('{');
        assert!(
            code != "method_not_allowed" && (templated || code != "not_found"),
            "{method} {path}"
        );
    }
    // The Error schema's codes are exactly the table's.
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
    // And each is an answer of some operation, at the table's status: a code no route
    // lists would be one the document hides (the router's own 404/405 excepted).
    for (_, code, _, status) in candor_server::error::TABLE {
        if ["not_found", "method_not_allowed"].contains(code) {
            continue;
        }
        let listed = operations(&doc).iter().any(|(_, _, op)| {
            op["responses"][status.to_string()]["x-candor-codes"]
                .as_array()
                .is_some_and(|codes| codes.iter().any(|c| c == code))
        });
        assert!(listed, "no operation lists {code} (status {status})");
    }
}

#[tokio::test]
async fn the_served_document_is_valid_openapi() {
    let app = spawn().await;
    let doc = served_document(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    // openapi-spec-validator (PyPI), installed by scripts/test-all.
    let out = std::process::Command::new(crate::smtp_sink::python())
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator rejects the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
