//! `candor ledger verify` names each kind of direct tampering with the ledger table.

use crate::helpers::*;
use rusqlite::Connection;
use serde_json::json;
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
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

fn tampered(base: &Path, sql: &str) -> String {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(base, copy.path());
    Connection::open(copy.path().join("candor.db"))
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    let out = run(&["ledger", "verify"], copy.path());
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    stdout(&out)
}

#[test]
fn verify_names_edits_drops_inserts_and_reorders() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 0);
    for i in 0..10 {
        // Records alternate: odd seq = analytics given, even seq = loyalty refused.
        consent(
            &server,
            &format!("t{i}"),
            json!({"analytics": "grant", "loyalty": "refuse"}),
        );
    }
    server.stop();
    let ok = run(&["ledger", "verify"], dir.path());
    assert!(ok.status.success());
    assert!(stdout(&ok).contains("20 records"), "{}", stdout(&ok));

    let edited = tampered(
        dir.path(),
        "UPDATE ledger SET status = 'given' WHERE seq = 6",
    );
    assert!(edited.contains("record 6 was edited"), "{edited}");

    let dropped = tampered(dir.path(), "DELETE FROM ledger WHERE seq = 5");
    assert!(dropped.contains("dropped before record 6"), "{dropped}");

    let truncated = tampered(dir.path(), "DELETE FROM ledger WHERE seq = 20");
    assert!(
        truncated.contains("records after 19 were dropped"),
        "{truncated}"
    );

    let inserted = tampered(
        dir.path(),
        "UPDATE ledger SET seq = seq + 1000 WHERE seq >= 5;
         UPDATE ledger SET seq = seq - 999 WHERE seq >= 1000;
         INSERT INTO ledger SELECT 5, subject_id, purpose_id, 'given', notice_version, notice_hash, channel,
             time_ms, evidence, prev_hash, hash, signature FROM ledger WHERE seq = 4;",
    );
    assert!(inserted.contains("record 5 was inserted"), "{inserted}");

    let reordered = tampered(
        dir.path(),
        "UPDATE ledger SET seq = -1 WHERE seq = 5; UPDATE ledger SET seq = 5 WHERE seq = 6; UPDATE ledger SET seq = 6 WHERE seq = -1;",
    );
    assert!(
        reordered.contains("record 5 is out of order"),
        "{reordered}"
    );

    let appended = tampered(
        dir.path(),
        "INSERT INTO ledger SELECT 21, subject_id, purpose_id, 'given', notice_version, notice_hash, channel,
             time_ms, evidence, hash, hash, signature FROM ledger WHERE seq = 20;",
    );
    assert!(appended.contains("record 21 was inserted"), "{appended}");
}
