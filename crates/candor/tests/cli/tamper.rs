//! `candor ledger verify` names each kind of direct tampering with the ledger table.

use crate::helpers::*;
use rusqlite::Connection;
use serde_json::json;
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    // Keep the owner-only permissions the server insists on for keys/.
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else if e.file_name() != "candor.lock" {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Applies `sql` to a copy of the data and returns what `candor ledger verify` said
/// (which must be a fault).
fn tampered(data: &Data, sql: &str) -> String {
    let (code, out) = tampered_with(data, sql, &[]);
    assert_eq!(code, Some(2), "{}: {out}", data.backend());
    out
}

/// Applies `sql` to a copy of the data and runs `candor ledger verify` with `extra`
/// arguments (e.g. `--checkpoint FILE`): its exit code and output.
fn tampered_with(data: &Data, sql: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["ledger", "verify"];
    args.extend(extra);
    let out = tampered_run(data, sql, &args);
    (out.status.code(), stdout(&out))
}

/// Applies `sql` to a copy of the data and runs `candor ARGS` on the copy.
fn tampered_run(data: &Data, sql: &str, args: &[&str]) -> std::process::Output {
    let out = match &data.db {
        None => {
            let copy = tempfile::tempdir().unwrap();
            copy_dir(data.path(), copy.path());
            Connection::open(copy.path().join("candor.db"))
                .unwrap()
                .execute_batch(sql)
                .unwrap();
            run(
                args,
                &Data {
                    dir: copy,
                    db: None,
                },
            )
        }
        Some(url) => {
            // A copy of the database (nobody is connected: the server has stopped),
            // verified with the same keys.
            let (base, name) = url.rsplit_once('/').unwrap();
            let copy = format!("{name}_t{}", candor_core::SubjectId::random());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (c, conn) =
                    tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                c.batch_execute(&format!("CREATE DATABASE {copy} TEMPLATE {name}"))
                    .await
                    .unwrap();
                let (c, conn) =
                    tokio_postgres::connect(&format!("{base}/{copy}"), tokio_postgres::NoTls)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                c.batch_execute(sql).await.unwrap();
            });
            bin()
                .args(args)
                .args(["--database-url", &format!("{base}/{copy}"), "--data-dir"])
                .arg(data.path())
                .output()
                .unwrap()
        }
    };
    out
}

#[test]
fn verify_names_edits_drops_inserts_and_reorders() {
    for data in both() {
        tamper_cases(&data);
    }
}

fn tamper_cases(data: &Data) {
    let server = start(data, 0);
    for i in 0..10 {
        // Records alternate: odd seq = analytics given, even seq = loyalty refused.
        consent(
            &server,
            &format!("t{i}"),
            json!({"analytics": "grant", "loyalty": "refuse"}),
        );
    }
    server.stop();
    let ok = run(&["ledger", "verify"], data);
    assert!(ok.status.success());
    assert!(stdout(&ok).contains("20 records"), "{}", stdout(&ok));

    let edited = tampered(data, "UPDATE ledger SET status = 'given' WHERE seq = 6");
    assert!(edited.contains("record 6 was edited"), "{edited}");

    let dropped = tampered(data, "DELETE FROM ledger WHERE seq = 5");
    assert!(dropped.contains("dropped before record 6"), "{dropped}");

    let truncated = tampered(data, "DELETE FROM ledger WHERE seq = 20");
    assert!(
        truncated.contains("records after 19 were dropped"),
        "{truncated}"
    );

    let inserted = tampered(
        data,
        "UPDATE ledger SET seq = seq + 1000 WHERE seq >= 5;
         UPDATE ledger SET seq = seq - 999 WHERE seq >= 1000;
         INSERT INTO ledger SELECT 5, subject_id, purpose_id, 'given', notice_version, notice_hash, channel,
             time_ms, evidence, prev_hash, hash, signature, actor, key_id FROM ledger WHERE seq = 4;",
    );
    assert!(inserted.contains("record 5 was inserted"), "{inserted}");

    let reordered = tampered(
        data,
        "UPDATE ledger SET seq = -1 WHERE seq = 5; UPDATE ledger SET seq = 5 WHERE seq = 6; UPDATE ledger SET seq = 6 WHERE seq = -1;",
    );
    assert!(
        reordered.contains("record 5 is out of order"),
        "{reordered}"
    );

    let appended = tampered(
        data,
        "INSERT INTO ledger SELECT 21, subject_id, purpose_id, 'given', notice_version, notice_hash, channel,
             time_ms, evidence, hash, hash, signature, actor, key_id FROM ledger WHERE seq = 20;",
    );
    assert!(appended.contains("record 21 was inserted"), "{appended}");
}

/// A checkpoint kept outside the database anchors the ledger (issue 11, part 5): a
/// truncated tail with its recorded head moved back verifies as a chain, but not against
/// the checkpoint; nor does a history that went another way after a restored backup.
#[test]
fn checkpoints_find_truncation_and_rewrite() {
    for data in both() {
        let server = start(&data, 0);
        for i in 0..5 {
            consent(&server, &format!("c{i}"), json!({"analytics": "grant"}));
        }
        // The served checkpoint and the exported one agree on the head.
        let served: serde_json::Value = client()
            .get(server.url("/v1/ledger/checkpoint"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        server.stop();
        assert_eq!(served["seq"], 5);
        let dir = tempfile::tempdir().unwrap();
        let cp = dir.path().join("cp.json");
        let out = run(
            &["ledger", "checkpoint", "--out", cp.to_str().unwrap()],
            &data,
        );
        assert!(out.status.success(), "{}", stdout(&out));
        let exported: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
        assert_eq!(exported["headHash"], served["headHash"]);
        let cp_arg = cp.to_str().unwrap();
        let ok = run(&["ledger", "verify", "--checkpoint", cp_arg], &data);
        assert!(ok.status.success(), "{}", stdout(&ok));

        let truncate = "DELETE FROM ledger WHERE seq > 3;
             UPDATE ledger_head SET seq = 3, hash = (SELECT hash FROM ledger WHERE seq = 3) WHERE id = 1;";
        // Without the checkpoint the shorter chain is whole...
        let (code, out) = tampered_with(&data, truncate, &[]);
        assert_eq!(code, Some(0), "{out}");
        // ...with it, the truncation is named.
        let (code, out) = tampered_with(&data, truncate, &["--checkpoint", cp_arg]);
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains("truncated") && out.contains("says 5"), "{out}");
    }
    rewrite_after_restore();
}

/// A backup restored and written to again: every record is validly signed, the chain is
/// whole, but record 5 is no longer the one the checkpoint covers.
fn rewrite_after_restore() {
    let data = Data::sqlite();
    let server = start(&data, 0);
    for i in 0..3 {
        consent(&server, &format!("r{i}"), json!({"analytics": "grant"}));
    }
    server.stop();
    let backup = tempfile::tempdir().unwrap();
    copy_dir(data.path(), backup.path());
    let server = start(&data, 0);
    for i in 3..5 {
        consent(&server, &format!("r{i}"), json!({"analytics": "grant"}));
    }
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp.json");
    assert!(run(
        &["ledger", "checkpoint", "--out", cp.to_str().unwrap()],
        &data
    )
    .status
    .success());
    // The restore, and two other choices on top.
    let restored = Data {
        dir: backup,
        db: None,
    };
    let server = start(&restored, 0);
    for i in 0..2 {
        consent(&server, &format!("other{i}"), json!({"analytics": "grant"}));
    }
    server.stop();
    assert!(run(&["ledger", "verify"], &restored).status.success());
    let out = run(
        &["ledger", "verify", "--checkpoint", cp.to_str().unwrap()],
        &restored,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("record 5 is not the one"),
        "{}",
        stdout(&out)
    );
}

/// Sealed rows are bound to their place (issue 11, part 8): a payload copied into
/// another row, or a row relabelled (its kind, category or time changed), no longer
/// opens, and the export names the event instead of handing out a misplaced payload.
#[test]
fn swapped_or_relabelled_sealed_rows_are_detected() {
    for data in both() {
        let server = start(&data, 0);
        consent(&server, "sw", json!({"analytics": "grant"}));
        let r: serde_json::Value = client()
            .post(server.url("/v1/batch"))
            .basic_auth(SERVER_KEY, Some(""))
            .json(&json!({"batch": [
                {"type": "track", "event": "App Session", "anonymousId": "sw", "properties": {"n": 1}},
                {"type": "track", "event": "App Session", "anonymousId": "sw", "properties": {"n": 2}},
            ]}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r["accepted"], 2, "{r}");
        server.stop();
        assert!(run(&["export"], &data).status.success());
        for sql in [
            "UPDATE events SET sealed = (SELECT sealed FROM events ORDER BY id DESC LIMIT 1)
             WHERE id = (SELECT min(id) FROM events)",
            "UPDATE events SET kind = 'page' WHERE id = (SELECT min(id) FROM events)",
            "UPDATE events SET event_ms = event_ms + 1 WHERE id = (SELECT min(id) FROM events)",
        ] {
            let out = tampered_run(&data, sql, &["export"]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{}: {sql}", data.backend());
            assert!(err.contains("moved, swapped or relabelled"), "{err}");
        }
    }
}
