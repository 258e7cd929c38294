//! Import, export, receipts and configuration errors through the CLI.

use crate::helpers::*;
use serde_json::json;

#[test]
fn import_is_all_or_nothing_and_export_roundtrips() {
    for data in both() {
        import_export(&data);
    }
}

fn import_export(data: &Data) {
    // Import works on existing data only: create it (as the demo, which the test
    // starts below) first.
    start(data, 0).stop();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(
        &good,
        [
            r#"{"subjectId":"crm-1","purpose":"analytics","status":"given","time":"2025-03-01T10:00:00Z","noticeVersion":1,"evidence":{"cmp":"OldCMP"}}"#,
            r#"{"subjectId":"crm-1","purpose":"loyalty","status":"refused","time":"2025-03-01T10:00:00Z","noticeVersion":1}"#,
            r#"{"subjectId":"crm-2","idType":"anonymousId","purpose":"email_marketing","status":"given","time":"2025-03-02T10:00:00Z","noticeVersion":1}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        [
            r#"{"subjectId":"crm-9","purpose":"analytics","status":"given","time":"2025-03-01T10:00:00Z","noticeVersion":1}"#,
            r#"{"subjectId":"crm-9","purpose":"analytics","status":"given","time":"2025-03-01T10:00:00Z","noticeVersion":1}"#,
            r#"{"subjectId":"crm-9","purpose":"mind_reading","status":"given","time":"2025-03-01T10:00:00Z","noticeVersion":1}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let out = run(&["import", "consents", bad.to_str().unwrap()], data);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("line 3") && stdout(&out).contains("mind_reading"),
        "{}",
        stdout(&out)
    );
    let old_grant = dir.path().join("old.jsonl");
    std::fs::write(&old_grant, r#"{"subjectId":"x","purpose":"analytics","status":"given","time":"2025-03-01T10:00:00Z","noticeVersion":0}"#).unwrap();
    assert!(
        !run(&["import", "consents", old_grant.to_str().unwrap()], data)
            .status
            .success()
    );
    assert!(
        export(data).is_empty(),
        "a failed import left records behind"
    );

    let out = run(&["import", "consents", good.to_str().unwrap()], data);
    assert!(out.status.success(), "{}", stdout(&out));
    let lines = export(data);
    let ledger: Vec<_> = lines.iter().filter(|l| l["kind"] == "ledger").collect();
    assert_eq!(ledger.len(), 3);
    assert!(ledger.iter().all(|l| l["collectionMethod"] == "imported"));
    assert!(ledger.iter().all(|l| l["actor"] == "import"));
    assert_eq!(ledger[0]["consentTimestamp"], "2025-03-01T10:00:00.000Z");
    assert_eq!(ledger[0]["evidence"]["cmp"], "OldCMP");
    assert!(run(&["ledger", "verify"], data).status.success());

    // Imported consent is live: the imported anonymous id's events are accepted.
    let server = start(data, 0);
    let r: serde_json::Value = client()
        .post(server.url("/v1/identify"))
        .basic_auth(SERVER_KEY, Some(""))
        .json(&json!({"anonymousId": "crm-2", "traits": {"email": "c2@example.com"}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["accepted"], 1, "{r}");
    server.stop();
    let events: Vec<_> = export(data)
        .into_iter()
        .filter(|l| l["kind"] == "event")
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["message"]["traits"]["email"], "c2@example.com");
    assert_eq!(events[0]["purposes"], json!(["email_marketing"]));
}

#[test]
fn receipt_verify_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = Data::sqlite();
    let server = start(&data, 0);
    let r = consent(&server, "rcpt", json!({"personalization": "grant"}));
    let key = public_keys(&server);
    server.stop();
    let receipt = &r["receipts"][0];
    let file = dir.path().join("r.json");
    std::fs::write(&file, receipt.to_string()).unwrap();
    let pk = key["publicKey"].as_str().unwrap();
    let ok = bin()
        .args([
            "receipt",
            "verify",
            file.to_str().unwrap(),
            "--public-key",
            pk,
        ])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stdout(&ok));
    // The published key ring, as a file, works as well as the bare key.
    let ring = dir.path().join("keys.json");
    std::fs::write(&ring, key.to_string()).unwrap();
    let with_ring = |file: &std::path::Path| {
        bin()
            .args(["receipt", "verify", file.to_str().unwrap(), "--public-key"])
            .arg(&ring)
            .output()
            .unwrap()
    };
    let ok = with_ring(&file);
    assert!(ok.status.success(), "{}", stdout(&ok));
    let mut bad = receipt.clone();
    bad["record"]["consentTimestampMs"] = json!(1);
    std::fs::write(&file, bad.to_string()).unwrap();
    let out = with_ring(&file);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("INVALID"));
    // Without the operator's key the command refuses, unless told to trust the key the
    // receipt carries (which proves integrity only).
    std::fs::write(&file, receipt.to_string()).unwrap();
    let out = bin()
        .args(["receipt", "verify", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-key"));
    let out = bin()
        .args([
            "receipt",
            "verify",
            file.to_str().unwrap(),
            "--trust-embedded-key",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    std::fs::write(&file, receipt.to_string()).unwrap();
    let other = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let out = bin()
        .args([
            "receipt",
            "verify",
            file.to_str().unwrap(),
            "--public-key",
            other,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
}

#[test]
fn config_errors_name_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("candor.toml");
    std::fs::write(&cfg, "[operator]\nname = \"Acme\"\n\n[[sources]]\nid = \"web\"\nkind = \"browser\"\nwrite_key = \"abcdefgh12\"\nwrite_kee = \"x\"\n").unwrap();
    let out = bin()
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("write_kee") && text.contains("line 8"),
        "{text}"
    );
}

#[test]
fn tcf_and_gpp_cli_round_trip_the_conformance_vectors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors");
    let tcf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/tcf-v2.json")).expect("shared/vectors is missing"),
    )
    .unwrap();
    for v in tcf.as_array().unwrap().iter().take(25) {
        let s = v["tcString"].as_str().unwrap();
        let out = bin().args(["tcf", "decode", s]).output().unwrap();
        assert!(out.status.success(), "{}", stdout(&out));
        let decoded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (k, expected) in v["expected"].as_object().unwrap() {
            assert_eq!(&decoded[k], expected, "{k} of {s}");
        }
        let mut child = bin()
            .args(["tcf", "encode"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let enc = child.wait_with_output().unwrap();
        assert!(enc.status.success());
        // The JSON does not carry the order of publisher restrictions, so the string may
        // differ in that order; what it encodes must not.
        let again = bin()
            .args([
                "tcf",
                "decode",
                String::from_utf8(enc.stdout).unwrap().trim(),
            ])
            .output()
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&again.stdout).unwrap(),
            decoded
        );
    }
    let gpp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/gpp.json")).unwrap()).unwrap();
    for v in gpp.as_array().unwrap().iter().take(25) {
        let out = bin()
            .args(["gpp", "decode", v["gppString"].as_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stdout(&out));
        let decoded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(decoded["sectionIds"], v["sectionIds"]);
        assert_eq!(decoded["sections"], v["expected"]);
    }
    for bad in [
        vec!["tcf", "decode", "CO!!"],
        vec!["gpp", "decode", "DBAB~"],
        vec!["tcf", "decode", ""],
    ] {
        let out = bin().args(&bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error"),
            "{bad:?}"
        );
    }
}

/// `candor export --subject` / `--user-id`: one person's own export, the same document
/// the API and the page give them, recorded as an export request.
#[test]
fn one_persons_export_through_the_cli() {
    for data in both() {
        let server = start(&data, 0);
        let r = client()
            .post(server.url("/v1/consent"))
            .basic_auth(SERVER_KEY, Some(""))
            .json(&json!({"userId": "cli-person", "choices": {"analytics": "grant"}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let subject = r.json::<serde_json::Value>().unwrap()["subject"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = client()
            .post(server.url("/v1/track"))
            .basic_auth(SERVER_KEY, Some(""))
            .json(&json!({"userId": "cli-person", "event": "App Session",
                          "properties": {"note": "cli-export-marker"}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        server.stop();
        for by in [["--subject", subject.as_str()], ["--user-id", "cli-person"]] {
            let out = run(&["export", by[0], by[1]], &data);
            assert!(out.status.success(), "{}", stdout(&out));
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(doc["schema"], "candor-my-data-v1");
            assert_eq!(doc["subject"], subject.as_str());
            assert_eq!(doc["events"]["total"], 1);
            assert_eq!(
                doc["events"]["items"][0]["message"]["properties"]["note"],
                "cli-export-marker"
            );
        }
        for bad in [["--subject", "not-a-subject"], ["--user-id", "nobody-here"]] {
            let out = run(&["export", bad[0], bad[1]], &data);
            assert!(!out.status.success(), "{bad:?}");
        }
        // Both exports are in the operator's list of requests.
        let server = start(&data, 0);
        let reqs: serde_json::Value = client()
            .get(server.url("/v1/admin/requests"))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let cli: Vec<_> = reqs["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["channel"] == "cli" && r["kind"] == "export")
            .collect();
        assert_eq!(cli.len(), 2, "{reqs}");
        server.stop();
    }
}
