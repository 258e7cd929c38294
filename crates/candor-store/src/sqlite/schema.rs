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
    // 2: audience insights (issue 5).
    r#"
    -- A small stable number per subject that ever had a feature: reports record their
    -- membership as sets of these. Kept when features are deleted (withdrawal), so a
    -- past report's membership still resolves; numbers are never reused.
    CREATE TABLE insight_subjects (
        subject_id BLOB PRIMARY KEY,
        dense      INTEGER NOT NULL UNIQUE CHECK (dense BETWEEN 0 AND 4294967295)
    ) WITHOUT ROWID;
    -- Daily usage features, only while the subject grants the insights purpose.
    -- `count` is the absolute stored value the in-memory index mirrors.
    CREATE TABLE insight_features (
        subject_id BLOB NOT NULL,
        day        INTEGER NOT NULL,
        kind       INTEGER NOT NULL,
        category   TEXT NOT NULL,
        count      INTEGER NOT NULL,
        PRIMARY KEY (subject_id, day, kind, category)
    ) WITHOUT ROWID;
    -- Declared fields the subject shares in aggregate (a row per shared field).
    CREATE TABLE insight_declared (
        subject_id BLOB NOT NULL,
        field      TEXT NOT NULL,
        value      TEXT NOT NULL,
        PRIMARY KEY (subject_id, field)
    ) WITHOUT ROWID;
    -- Advertisers; the permission lists are JSON arrays of names.
    CREATE TABLE advertisers (
        advertiser_id       TEXT PRIMARY KEY,
        name                TEXT NOT NULL,
        key_hash            BLOB NOT NULL UNIQUE,
        budget_epsilon_nano INTEGER NOT NULL,
        budget_delta_atto   INTEGER NOT NULL,
        period              TEXT NOT NULL,
        allowed_features    TEXT NOT NULL,
        allowed_dimensions  TEXT NOT NULL,
        disabled            INTEGER NOT NULL,
        created_ms          INTEGER NOT NULL,
        updated_ms          INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Reports as charged: the budget spent by a period is the sum of its reports'
    -- costs. AUTOINCREMENT: an id is never handed out twice.
    CREATE TABLE insight_reports (
        id                  INTEGER PRIMARY KEY AUTOINCREMENT,
        advertiser_id       TEXT NOT NULL,
        period              TEXT NOT NULL,
        time_ms             INTEGER NOT NULL,
        cost_epsilon_nano   INTEGER NOT NULL,
        cost_delta_atto     INTEGER NOT NULL,
        purpose             TEXT NOT NULL,
        query_json          TEXT NOT NULL,
        answer_json         TEXT NOT NULL,
        spent_epsilon_nano  INTEGER NOT NULL,
        spent_delta_atto    INTEGER NOT NULL,
        budget_epsilon_nano INTEGER NOT NULL,
        budget_delta_atto   INTEGER NOT NULL
    );
    CREATE INDEX insight_reports_period ON insight_reports (advertiser_id, period);
    -- Report membership, one row per chunk of 65,536 dense numbers
    -- (candor_insights::membership). Keyed by chunk first: a person's lookup reads
    -- the rows of their one chunk.
    CREATE TABLE insight_report_members (
        chunk     INTEGER NOT NULL,
        report_id INTEGER NOT NULL,
        bits      BLOB NOT NULL,
        PRIMARY KEY (chunk, report_id)
    ) WITHOUT ROWID;
    "#,
    // 3: insight features derived from the event log after commit. A featured row keeps
    // its deltas (sealed under the subject's key) in `features`; the feature tables
    // include every logged row up to `applied_upto`. Rows stored before this version had
    // their features written with them, so the watermark starts at the newest event.
    r#"
    ALTER TABLE events ADD COLUMN features BLOB;
    CREATE TABLE feature_watermark (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        applied_upto INTEGER NOT NULL
    );
    INSERT INTO feature_watermark (id, applied_upto)
        SELECT 1, coalesce(max(id), 0) FROM events;
    "#,
    // 4: the consent prompt (issue 12): saved variants and anonymous daily counts.
    r#"
    CREATE TABLE prompt_variants (
        id         TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        active     INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    -- Totals only: no row names or links to a person.
    CREATE TABLE prompt_counts (
        day     INTEGER NOT NULL,
        variant TEXT NOT NULL,
        purpose TEXT NOT NULL,
        metric  TEXT NOT NULL,
        count   INTEGER NOT NULL,
        PRIMARY KEY (day, variant, purpose, metric)
    ) WITHOUT ROWID;
    "#,
    // 5: hardening (issue 11). Who acted and which key signed each ledger record
    // (format 2; NULL on format-1 records), every receipt-signing key with the first
    // record it signs and its predecessor's certificate, and a check value of the
    // master key the database was first opened with.
    r#"
    ALTER TABLE ledger ADD COLUMN actor TEXT;
    ALTER TABLE ledger ADD COLUMN key_id BLOB;
    CREATE TABLE signing_keys (
        key_id      BLOB PRIMARY KEY,
        public_key  BLOB NOT NULL,
        from_seq    INTEGER NOT NULL UNIQUE,
        certificate BLOB,
        created_ms  INTEGER NOT NULL
    );
    CREATE TABLE key_checks (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        master_check BLOB NOT NULL,
        created_ms   INTEGER NOT NULL
    );
    -- Facts about the deployment itself, e.g. who created it (`serve --demo` or not).
    CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- Every admin action, with its outcome (issue 11): who did what to which advertiser,
    -- variant or key, when, and whether it worked. No personal data: a subject token's
    -- user id is never written here.
    CREATE TABLE admin_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms INTEGER NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail  TEXT NOT NULL
    );
    "#,
    // 6: budget caps (issue 11): an advertiser's optional lifetime cap (both columns
    // or neither), and reports found by time for the operator's cap across advertisers.
    r#"
    ALTER TABLE advertisers ADD COLUMN lifetime_epsilon_nano INTEGER;
    ALTER TABLE advertisers ADD COLUMN lifetime_delta_atto INTEGER;
    CREATE INDEX insight_reports_time ON insight_reports (time_ms);
    "#,
    // 7: erasure (invariant 6). Erasing a subject deletes its `insight_subjects` row, and
    // with it possibly the highest dense number: the next free number is remembered here
    // so a number a past report's membership holds is never handed to anyone else.
    r#"
    CREATE TABLE insight_dense_next (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        next INTEGER NOT NULL
    );
    "#,
    // 8: the person's own side (issue 13): the access log (reads of a person's data,
    // erased with them), the requests people made (pseudonymous: an erasure's request
    // outlives it, so the operator can show it was answered in time), and the nonces
    // of single-use sign-in links already spent (kept until they expire).
    r#"
    CREATE TABLE access_log (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        subject_id  BLOB NOT NULL,
        time_ms     INTEGER NOT NULL,
        accessor    TEXT NOT NULL,
        purpose     TEXT NOT NULL,
        why         TEXT NOT NULL
    );
    CREATE INDEX access_log_subject ON access_log (subject_id, time_ms);
    CREATE TABLE subject_requests (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        subject_id   BLOB NOT NULL,
        kind         TEXT NOT NULL,
        channel      TEXT NOT NULL,
        requested_ms INTEGER NOT NULL,
        completed_ms INTEGER,
        outcome      TEXT NOT NULL
    );
    CREATE TABLE spent_links (
        nonce      BLOB PRIMARY KEY,
        expires_ms INTEGER NOT NULL
    );
    "#,
    // 9: volunteered (zero-party) fields (issue 13): one value per subject and field,
    // sealed under the subject's key and bound to (subject, field) by associated data.
    r#"
    CREATE TABLE volunteered_fields (
        subject_id   BLOB NOT NULL,
        field        TEXT NOT NULL,
        sealed_value BLOB NOT NULL,
        provenance   TEXT NOT NULL CHECK (provenance IN ('volunteered', 'observed', 'inferred')),
        updated_ms   INTEGER NOT NULL,
        PRIMARY KEY (subject_id, field)
    ) WITHOUT ROWID;
    "#,
    // 10: the loyalty program's points ledger and the operator's segments (issue 14).
    // Transactions are appended, never updated; the account row holds the running
    // balance the database itself keeps at or above zero, and a redemption can be
    // reversed once (the partial unique index). Rewards without a stock row are
    // unlimited.
    r#"
    CREATE TABLE loyalty_accounts (
        subject_id BLOB PRIMARY KEY,
        balance    INTEGER NOT NULL CHECK (balance >= 0),
        member     INTEGER NOT NULL,
        joined_ms  INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE loyalty_txns (
        id         INTEGER PRIMARY KEY,
        subject_id BLOB NOT NULL,
        idem_key   TEXT NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('earn', 'redeem', 'reverse', 'expire', 'adjust', 'forfeit')),
        points     INTEGER NOT NULL,
        rule       TEXT,
        reward     TEXT,
        reverses   INTEGER,
        reason     TEXT NOT NULL,
        source     TEXT NOT NULL,
        day        INTEGER NOT NULL,
        time_ms    INTEGER NOT NULL,
        UNIQUE (subject_id, idem_key)
    );
    CREATE UNIQUE INDEX loyalty_txns_reversal ON loyalty_txns (subject_id, reverses)
        WHERE reverses IS NOT NULL;
    CREATE TABLE loyalty_rewards (
        reward_id  TEXT PRIMARY KEY,
        stock      INTEGER NOT NULL CHECK (stock >= 0),
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE segments (
        name        TEXT PRIMARY KEY,
        purpose_id  TEXT NOT NULL,
        rule        TEXT NOT NULL,
        description TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL
    );
    CREATE TABLE segment_sizes (
        name TEXT NOT NULL,
        day  INTEGER NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (name, day)
    ) WITHOUT ROWID;
    "#, // 11: email on consent (issue 16). A person's subscriptions (erased with them; the
    // IP address and user agent of a confirmation sealed under their key), the
    // suppression list (an address only as its keyed lookup hash: it outlives erasure),
    // campaigns, and the send queue: one row per campaign and subscriber, so nobody is
    // queued twice, and a row is moved to `committing` before its message's final SMTP
    // dot, so nothing is sent twice.
    r#"
    CREATE TABLE email_subscriptions (
        subject_id   BLOB NOT NULL,
        list         TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed')),
        created_ms   INTEGER NOT NULL,
        updated_ms   INTEGER NOT NULL,
        confirmed_ms INTEGER,
        sends        INTEGER NOT NULL,
        window_ms    INTEGER NOT NULL,
        origin       BLOB,
        PRIMARY KEY (subject_id, list)
    ) WITHOUT ROWID;
    CREATE INDEX email_subscriptions_members ON email_subscriptions (list, status, subject_id);
    CREATE TABLE email_suppressions (
        addr_hash  BLOB NOT NULL,
        list       TEXT NOT NULL,
        reason     TEXT NOT NULL CHECK (reason IN ('unsubscribe', 'bounce', 'complaint')),
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (addr_hash, list)
    ) WITHOUT ROWID;
    CREATE TABLE email_campaigns (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL,
        list         TEXT NOT NULL,
        segment      TEXT,
        subject_line TEXT NOT NULL,
        text_body    TEXT NOT NULL,
        html_body    TEXT,
        status       TEXT NOT NULL CHECK (status IN ('draft', 'sending', 'sent', 'cancelled')),
        created_ms   INTEGER NOT NULL,
        started_ms   INTEGER,
        finished_ms  INTEGER
    );
    CREATE TABLE email_messages (
        campaign_id INTEGER NOT NULL,
        subject_id  BLOB NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('queued', 'committing', 'sent', 'bounced', 'failed', 'skipped')),
        attempts    INTEGER NOT NULL,
        next_ms     INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL,
        detail      TEXT,
        PRIMARY KEY (campaign_id, subject_id)
    ) WITHOUT ROWID;
    CREATE INDEX email_messages_due ON email_messages (status, next_ms);
    "#,
    // 12: when a recipient left the list through this campaign's unsubscribe link, so
    // that a campaign's unsubscribes are its own, not every departure since it started.
    r#"
    ALTER TABLE email_messages ADD COLUMN left_ms INTEGER;
    "#,
];

pub const SUPPORTED_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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

/// A database with every migration applied, for tests that prepare statements.
#[cfg(test)]
pub(crate) fn migrate_for_tests(conn: &Connection) {
    for sql in MIGRATIONS {
        conn.execute_batch(sql).unwrap();
    }
}

#[cfg(test)]
mod tests {
    /// Every table with a `subject_id` column is one an erasure deletes from, or one it
    /// keeps on purpose (`plan::erase`): a new table keyed by subject must say which.
    #[test]
    fn erasure_covers_every_table_keyed_by_subject() {
        use crate::plan::erase::{KEPT_OR_SPECIAL, SUBJECT_TABLES};
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        super::migrate_for_tests(&conn);
        let mut st = conn
            .prepare(
                "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c
                 WHERE m.type = 'table' AND c.name = 'subject_id' ORDER BY m.name",
            )
            .unwrap();
        let tables: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(tables.len() >= 9, "{tables:?}");
        for t in tables {
            assert!(
                SUBJECT_TABLES.iter().any(|s| s.name() == t) || KEPT_OR_SPECIAL.contains(&&*t),
                "table {t} is keyed by subject_id: erasure must delete its rows (plan::erase)"
            );
        }
    }
}
