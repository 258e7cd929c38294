//! A client generated from the served OpenAPI document (openapi-python-client, from
//! PyPI), unedited, drives the real server: it records consent, sends a batch, reads
//! the consent state and history, creates an advertiser and asks an insight query
//! (`tests/compat/openapi_client.py`). If the document misdescribes a route the
//! generator fails, the client cannot send the body, or it cannot read the answer.

use crate::helpers::*;
use serde_json::Value;

const CONFIG: &str = "[insights]\nmin_group_size = 0\nallow_insecure_rng = true\n";

#[tokio::test]
async fn a_client_generated_from_the_document_works_unedited() {
    let app = spawn_with(CONFIG).await;
    let work = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/compat/openapi_client.py"
    );
    let (base, dir) = (app.url(""), work.path().to_owned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(crate::smtp_sink::python())
            .arg(script)
            .args([base.as_str(), SERVER_KEY, ADMIN])
            .arg(dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the generated client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();

    // Each of the three consent calls came back with its signed receipts (two choices).
    assert_eq!(seen["receipts"], serde_json::json!([2, 2, 2]));
    // The state and history it read are the server's.
    assert_eq!(seen["state"]["analytics"], "given");
    assert_eq!(seen["state"]["ads_insights"], "given");
    assert_eq!(seen["history"], serde_json::json!(["given", "given"]));
    let state = app
        .get_as_browser("/v1/consent?anonymousId=gen-client-3")
        .await;
    let refused = state["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "analytics")
        .unwrap();
    assert_eq!(refused["status"], "refused");
    // The batch was taken: the two consenting people's events are stored, the third's
    // dropped for want of consent.
    assert_eq!(seen["batch"]["accepted"], 6, "{}", seen["batch"]);
    assert_eq!(app.events().await, 6);
    // The insight query was answered for the advertiser the client created.
    assert!(seen["insight"]["reportId"].is_u64(), "{}", seen["insight"]);
    let advertisers = app.state.store.advertisers().await.unwrap();
    assert_eq!(advertisers.len(), 1);
    assert_eq!(advertisers[0].id, "gen-client-adv");
}
