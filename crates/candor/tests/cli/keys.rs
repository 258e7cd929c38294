//! Keys that cannot silently change (issue 11, part 4) and a command line that cannot
//! do harm by accident (part 6), through the real binary on both backends.

use crate::helpers::*;
use serde_json::{json, Value};
use std::process::Stdio;

/// `candor serve --demo` on `data`, expected to refuse: its stderr.
fn refused_start(data: &Data) -> String {
    let out = bin()
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--demo-subjects",
            "0",
        ])
        .args(data.args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}: started", data.backend());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn key_file(data: &Data, name: &str) -> std::path::PathBuf {
    data.path().join("keys").join(name)
}

#[cfg(unix)]
fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_node_with_other_keys_refuses_to_start() {
    for data in both() {
        let server = start(&data, 0);
        consent(&server, "k1", json!({"analytics": "grant"}));
        server.stop();
        let master = key_file(&data, "master.key");
        let signing = key_file(&data, "receipt-signing.key");
        let (m, s) = (
            std::fs::read(&master).unwrap(),
            std::fs::read(&signing).unwrap(),
        );

        // A restore without keys/: fresh keys are generated, refused, and removed.
        std::fs::remove_dir_all(data.path().join("keys")).unwrap();
        let err = refused_start(&data);
        assert!(err.contains("another master key"), "{err}");
        assert!(
            !master.exists() && !signing.exists(),
            "fresh keys were left behind"
        );

        // Another master key.
        std::fs::create_dir_all(data.path().join("keys")).unwrap();
        #[cfg(unix)]
        chmod(&data.path().join("keys"), 0o700);
        std::fs::write(&master, "11".repeat(32)).unwrap();
        std::fs::write(&signing, &s).unwrap();
        #[cfg(unix)]
        {
            chmod(&master, 0o600);
            chmod(&signing, 0o600);
        }
        let err = refused_start(&data);
        assert!(err.contains("another master key"), "{err}");

        // Another signing key.
        std::fs::write(&master, &m).unwrap();
        std::fs::write(&signing, "22".repeat(32)).unwrap();
        let err = refused_start(&data);
        assert!(err.contains("signing key"), "{err}");

        // A key file others can read.
        std::fs::write(&signing, &s).unwrap();
        #[cfg(unix)]
        {
            chmod(&master, 0o644);
            let err = refused_start(&data);
            assert!(err.contains("chmod 600"), "{err}");
            chmod(&master, 0o600);
        }

        // The right keys: it starts, and the data is there.
        let server = start(&data, 0);
        let r: Value = client()
            .get(server.url("/v1/consent/history?anonymousId=k1"))
            .basic_auth(BROWSER_KEY, Some(""))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r["records"].as_array().unwrap().len(), 1);
        server.stop();
    }
}

#[test]
fn rotating_the_signing_key_keeps_every_record_verifiable() {
    for data in both() {
        let server = start(&data, 0);
        let before = consent(&server, "r1", json!({"analytics": "grant"}));
        server.stop();
        let out = run(&["keys", "rotate-signing"], &data);
        assert!(out.status.success(), "{}", stdout(&out));
        assert!(
            stdout(&out).contains("signs from ledger record 2"),
            "{}",
            stdout(&out)
        );
        assert!(!key_file(&data, "receipt-signing.key.next").exists());

        let server = start(&data, 0);
        let after = consent(&server, "r2", json!({"analytics": "grant"}));
        let ring = public_keys(&server);
        // The rotation is in the admin audit log.
        let log: Value = client()
            .get(server.url("/v1/admin/audit"))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            log["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["action"] == "keys.rotate_signing" && a["outcome"] == "ok"),
            "{log}"
        );
        server.stop();
        assert_eq!(ring["keys"].as_array().unwrap().len(), 2);
        let (old, new) = (&before["receipts"][0], &after["receipts"][0]);
        assert_ne!(old["keyId"], new["keyId"]);
        assert_eq!(new["record"]["signingKeyId"], new["keyId"]);
        let ok = run(&["ledger", "verify"], &data);
        assert!(
            stdout(&ok).contains("ledger OK: 2 records"),
            "{}",
            stdout(&ok)
        );

        // Both receipts verify against the published ring; the new key alone does not
        // vouch for the old record.
        let dir = tempfile::tempdir().unwrap();
        let ring_file = dir.path().join("ring.json");
        std::fs::write(&ring_file, ring.to_string()).unwrap();
        for (receipt, with, ok) in [
            (old, ring_file.to_str().unwrap().to_owned(), true),
            (new, ring_file.to_str().unwrap().to_owned(), true),
            (old, ring["publicKey"].as_str().unwrap().to_owned(), false),
        ] {
            let f = dir.path().join("r.json");
            std::fs::write(&f, receipt.to_string()).unwrap();
            let out = bin()
                .args([
                    "receipt",
                    "verify",
                    f.to_str().unwrap(),
                    "--public-key",
                    &with,
                ])
                .output()
                .unwrap();
            assert_eq!(out.status.success(), ok, "{}", stdout(&out));
        }

        // The old signing key alone no longer starts the node.
        server_refuses_old_key(&data);
    }
}

/// After a rotation, a node holding the old (rotated-away) signing key is refused.
fn server_refuses_old_key(data: &Data) {
    let signing = key_file(data, "receipt-signing.key");
    let current = std::fs::read(&signing).unwrap();
    std::fs::write(&signing, "33".repeat(32)).unwrap();
    let err = refused_start(data);
    assert!(err.contains("signing key"), "{err}");
    std::fs::write(&signing, current).unwrap();
}

/// `ledger verify`, `export` and `import` never create a data directory or keys: a
/// typo in --data-dir is an error, not "ledger OK: 0 records".
#[test]
fn commands_on_missing_or_empty_data_fail_and_create_nothing() {
    let base = tempfile::tempdir().unwrap();
    let typo = base.path().join("typo");
    let empty = base.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let file = base.path().join("in.jsonl");
    std::fs::write(&file, "").unwrap();
    for dir in [&typo, &empty] {
        for args in [
            vec!["ledger", "verify"],
            vec!["export"],
            vec!["import", "consents", file.to_str().unwrap()],
            vec!["keys", "rotate-signing"],
        ] {
            let out = bin()
                .args(&args)
                .arg("--data-dir")
                .arg(dir)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} on {}", dir.display());
            assert!(
                err.contains("no Candor data") || err.contains("is missing"),
                "{err}"
            );
        }
    }
    assert!(!typo.exists(), "the typo directory was created");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

/// `serve --demo` seeds synthetic people and serves published credentials: it
/// refuses data it did not create.
#[test]
fn the_demo_refuses_data_it_did_not_create() {
    for data in both() {
        let out = run(&["init"], &data);
        assert!(out.status.success(), "{}", stdout(&out));
        let err = refused_start(&data);
        assert!(err.contains("not created by the demo"), "{err}");
    }
    // Data the demo created it serves again.
    let data = Data::sqlite();
    start(&data, 0).stop();
    start(&data, 0).stop();
}
