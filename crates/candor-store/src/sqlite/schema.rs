//! Versioned schema migrations for the SQLite store, applied at open.
//!
//! The version lives in `PRAGMA user_version`. Each migration runs in its own
//! transaction together with the version bump, so a crash mid-migration leaves the
//! previous version intact. A database newer than the binary is refused rather than
//! guessed at.

use crate::StoreError;
use rusqlite::Connection;

/// Each entry upgrades from version `index` to `index + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: the foundation.
    r#"
    CREATE TABLE purposes (
        purpose_id TEXT PRIMARY KEY,
        bit        INTEGER NOT NULL UNIQUE CHECK (bit BETWEEN 0 AND 63)
    );
    -- One row per subject: its data key, wrapped by the master key. Erasure deletes it.
    CREATE TABLE subjects (
        subject_id  BLOB PRIMARY KEY,
        wrapped_key BLOB NOT NULL,
        created_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Identifiers, found by keyed hash, the value sealed under the subject's key.
    CREATE TABLE identities (
        lookup_hash  BLOB PRIMARY KEY,
        subject_id   BLOB NOT NULL,
        kind         INTEGER NOT NULL,
        sealed_value BLOB NOT NULL,
        created_ms   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX identities_subject ON identities (subject_id);
    -- Current status per subject and purpose: derived from the ledger, kept for reads.
    CREATE TABLE consent_state (
        subject_id     BLOB NOT NULL,
        purpose_id     TEXT NOT NULL,
        status         TEXT NOT NULL,
        notice_version INTEGER NOT NULL,
        seq            INTEGER NOT NULL,
        time_ms        INTEGER NOT NULL,
        PRIMARY KEY (subject_id, purpose_id)
    ) WITHOUT ROWID;
    -- The hash-chained, signed consent ledger. Pseudonymous: subject ids only.
    CREATE TABLE ledger (
        seq            INTEGER PRIMARY KEY,
        subject_id     BLOB NOT NULL,
        purpose_id     TEXT NOT NULL,
        status         TEXT NOT NULL,
        notice_version INTEGER NOT NULL,
        notice_hash    BLOB NOT NULL,
        channel        TEXT NOT NULL,
        time_ms        INTEGER NOT NULL,
        evidence       TEXT NOT NULL,
        prev_hash      BLOB NOT NULL,
        hash           BLOB NOT NULL,
        signature      BLOB NOT NULL
    );
    CREATE INDEX ledger_subject ON ledger (subject_id);
    CREATE TABLE ledger_head (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  INTEGER NOT NULL,
        hash BLOB NOT NULL
    );
    -- Consent-gated events, appended in arrival order. `purposes` is the bit set allowed
    -- to use the row. The payload is sealed under the subject's key.
    --
    -- Deliberately no index on subject_id or dedup_key: random-key B-tree inserts cost a
    -- 4 KiB page write per row and capped ingestion at a few tens of thousands of
    -- events/s. De-duplication is a 24-hour in-memory window rebuilt from `dedup_key`
    -- at start (Segment's own semantics), and withdrawals are recorded as purpose
    -- floors, applied to every read at once and swept from the rows in the background.
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        subject_id  BLOB NOT NULL,
        source_id   TEXT NOT NULL,
        dedup_key   BLOB NOT NULL,
        kind        TEXT NOT NULL,
        category    TEXT NOT NULL,
        purposes    INTEGER NOT NULL CHECK (purposes <> 0),
        event_ms    INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        day         INTEGER NOT NULL,
        sealed      BLOB NOT NULL
    );
    CREATE INDEX events_day ON events (day);
    -- A withdrawn purpose: events of the subject with id <= upto_id no longer carry it.
    -- Every read applies these; the sweeper rewrites the rows and then deletes the floor.
    CREATE TABLE purpose_floors (
        subject_id BLOB NOT NULL,
        bit        INTEGER NOT NULL,
        upto_id    INTEGER NOT NULL,
        PRIMARY KEY (subject_id, bit)
    ) WITHOUT ROWID;
    "#,
];

pub const SUPPORTED_VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SUPPORTED_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SUPPORTED_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}
