//! Real clients we did not write: Segment's and RudderStack's Python SDKs, unchanged,
//! sending to the real server. `scripts/test-all` installs them in a virtualenv and
//! points `CANDOR_PYTHON` at it.

use crate::helpers::*;
use serde_json::json;
use std::collections::HashSet;
use std::process::Command;

fn python() -> String {
    std::env::var("CANDOR_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run_sdk(sdk: &str, base: &str, prefix: &str, anons: &[&str]) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/compat/sdk_client.py"
    );
    let out = Command::new(python())
        .arg(script)
        .args([sdk, base, SERVER_KEY, prefix])
        .args(anons)
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "{sdk} SDK failed (run scripts/test-all, which installs segment-analytics-python and rudder-sdk-python): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn segment_and_rudderstack_python_sdks_work_unchanged() {
    let data = Data::sqlite();
    let server = start(&data, 0);
    consent(
        &server,
        "sdk-yes",
        json!({"analytics": "grant", "personalization": "grant"}),
    );
    consent(&server, "sdk-analytics-only", json!({"analytics": "grant"}));
    run_sdk(
        "segment",
        &server.base,
        "seg",
        &["sdk-yes", "sdk-analytics-only", "sdk-no"],
    );
    run_sdk(
        "rudder",
        &server.base,
        "rud",
        &["sdk-yes", "sdk-analytics-only", "sdk-no"],
    );
    server.stop();

    let stored: HashSet<String> = export(&data)
        .iter()
        .filter(|l| l["kind"] == "event")
        .map(|l| l["message"]["messageId"].as_str().unwrap().to_owned())
        .collect();
    for prefix in ["seg", "rud"] {
        for n in 0..3 {
            assert!(
                stored.contains(&format!("{prefix}-sdk-yes-{n}")),
                "{prefix} track missing"
            );
            assert!(stored.contains(&format!("{prefix}-sdk-analytics-only-{n}")));
            assert!(
                !stored.contains(&format!("{prefix}-sdk-no-{n}")),
                "{prefix}: unconsented event stored"
            );
        }
        assert!(stored.contains(&format!("{prefix}-sdk-yes-page")));
        // identify is declared_profile: personalization covers it, analytics does not.
        assert!(stored.contains(&format!("{prefix}-sdk-yes-identify")));
        assert!(!stored.contains(&format!("{prefix}-sdk-analytics-only-identify")));
        assert!(!stored.contains(&format!("{prefix}-sdk-no-page")));
    }
    assert_eq!(stored.len(), 2 * (5 + 4));
}
