//! Versioned schema migrations for the PostgreSQL store, and how each table is
//! distributed on Citus ([`PLACEMENT`], applied when the database has the extension).
//!
//! Migrations are recorded in `schema_migrations`. All pending ones run in a single
//! transaction that first takes `pg_advisory_xact_lock`, so two nodes starting at once
//! never race: the second waits, then finds nothing left to do. PostgreSQL's DDL is
//! transactional, so a crash mid-migration leaves the previous version intact. A
//! database newer than this binary is refused rather than guessed at.
//!
//! ## Distribution (Citus)
//!
//! Every table that grows with the number of subjects carries `subject_id` in its
//! primary key, so it can be distributed by `subject_id` and co-located: one subject's
//! consent, identities, floors and events live on one worker, and a consent change
//! touches one shard (plus the ledger).
//!
//! | table | distribution column | why |
//! |---|---|---|
//! | `subjects` | `subject_id` | one row per subject; the anchor the others co-locate with |
//! | `identities` | `subject_id` | PK `(subject_id, lookup_hash)`: a subject's sealed identifiers live beside it (export, erasure) |
//! | `identity_lookup` | `lookup_hash` | lookup hash → subject, the one thing found by hash; PK `lookup_hash` also makes "one identifier, one subject" a constraint across nodes. Small rows (48 B), in a co-location group of their own |
//! | `consent_state` | `subject_id` | PK `(subject_id, purpose_id)` |
//! | `purpose_floors` | `subject_id` | PK `(subject_id, bit)`; few rows, short-lived |
//! | `events` | `subject_id` | PK `(id, day, subject_id)`; range-partitioned by receive `day` (retention drops partitions), distributed by subject within each |
//! | `dedup_keys` | `dedup_key` | PK `(day, dedup_key)`; keyed by `(source, messageId)`, not by subject; range-partitioned by day and dropped after two days |
//! | `ledger`, `ledger_head` | none (on the coordinator) | one global hash chain: each record commits to the previous one, so appends are ordered by a single lock; splitting it by subject would make many chains and lose the global order a verifier checks |
//! | `purposes` | none (reference table) | the catalog's bit assignments; tiny, read by every node, joined with everything |
//! | `insight_subjects` | `subject_id` | PK `subject_id`; the subject's dense number for report membership (unique by the sequence that assigns it, not by a constraint, which Citus could not enforce off the distribution column) |
//! | `insight_features` | `subject_id` | PK `(subject_id, day, kind, category)`; a subject's daily features live beside its consent, so a withdrawal deletes them on one shard |
//! | `insight_declared` | `subject_id` | PK `(subject_id, field)` |
//! | `volunteered_fields` | `subject_id` | PK `(subject_id, field)`; a person's volunteered values, sealed, beside the subject (export, erasure) |
//! | `advertisers` | none (on the coordinator) | a handful of rows, read on every advertiser request; `key_hash` unique; locked `FOR UPDATE` by each charge, which on a reference table would lock its one shard and serialize every charge in the cluster |
//! | `insight_reports` | `advertiser_id` | PK `(advertiser_id, id)`; a charge locks the advertiser row and sums that advertiser's reports of the period, all on one shard |
//! | `insight_report_members` | `advertiser_id` | PK `(advertiser_id, report_id, chunk)`, co-located with its report; a person's lookup (by chunk) fans out to every shard, which is rare and small |
//! | `feature_watermark` | none (on the coordinator) | one row: how far the event log has been derived into features; read and moved under the deriver's lock |
//! | `store_meta`, `admin_audit` | none (on the coordinator) | deployment facts (who created the data) and the admin audit log: a few rows, no subject (issue 11) |
//! | `signing_keys`, `key_checks` | none (on the coordinator) | the receipt-signing key ring and the master key's check value: a few rows, read at open and by verifiers (issue 11) |
//! | `access_log` | `subject_id` | PK `(subject_id, id)`: reads of a person's data, beside the rest of it (my data, erasure) |
//! | `subject_requests`, `spent_links` | none (on the coordinator) | people's access, export and erasure requests (pseudonymous, outliving erasure) and spent single-use link nonces: few rows (issue 13) |
//! | `loyalty_accounts`, `loyalty_txns` | `subject_id` | PK `subject_id` / `(subject_id, id)`: a person's points and every transaction, locked and summed on one shard; idempotency keys unique per subject |
//! | `loyalty_rewards`, `segments`, `segment_sizes` | none (on the coordinator) | the rewards' stock (locked `FOR UPDATE` by a redemption: on the coordinator that locks one row, not every redemption), the operator's segment definitions and their daily sizes: few rows, no person in them (issue 14) |
//! | `email_subscriptions` | `subject_id` | PK `(subject_id, list)`: a person's subscriptions, changed in their consent transaction, erased with them (issue 16) |
//! | `email_suppressions` | `addr_hash` | PK `(addr_hash, list)`: suppressed addresses as keyed hashes, in a co-location group of their own; looked up by hash before each send |
//! | `email_campaigns`, `email_messages` | none (on the coordinator) | campaigns (a handful) and the send queue, scanned by status across campaigns and moved by one sender at a time |
//! | `schema_migrations` | none (local to the coordinator) | bookkeeping |

use super::locks;
use crate::StoreError;
use candor_core::PurposeId;
use deadpool_postgres::Object;
use deadpool_postgres::Transaction;
use std::collections::HashMap;

/// Each entry upgrades from version `index` to `index + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: the foundation.
    r#"
    -- Catalog: stable bit per purpose (a reference table on Citus).
    CREATE TABLE purposes (
        purpose_id TEXT PRIMARY KEY,
        bit        SMALLINT NOT NULL UNIQUE CHECK (bit BETWEEN 0 AND 63)
    );
    -- One row per subject: its data key, wrapped by the master key. Erasure deletes it.
    CREATE TABLE subjects (
        subject_id  BYTEA PRIMARY KEY,
        wrapped_key BYTEA NOT NULL,
        created_ms  BIGINT NOT NULL
    );
    -- Identifiers of a subject, the value sealed under the subject's key.
    CREATE TABLE identities (
        subject_id   BYTEA NOT NULL,
        lookup_hash  BYTEA NOT NULL,
        kind         SMALLINT NOT NULL,
        sealed_value BYTEA NOT NULL,
        created_ms   BIGINT NOT NULL,
        PRIMARY KEY (subject_id, lookup_hash)
    );
    -- Which subject an identifier's keyed hash resolves to. Its primary key makes one
    -- identifier belong to one subject even when two nodes link it at once.
    CREATE TABLE identity_lookup (
        lookup_hash BYTEA PRIMARY KEY,
        subject_id  BYTEA NOT NULL
    );
    -- Current status per subject and purpose: derived from the ledger, kept for reads
    -- and for the consent re-check at ingestion.
    CREATE TABLE consent_state (
        subject_id     BYTEA NOT NULL,
        purpose_id     TEXT NOT NULL,
        status         TEXT NOT NULL,
        notice_version BIGINT NOT NULL,
        seq            BIGINT NOT NULL,
        time_ms        BIGINT NOT NULL,
        PRIMARY KEY (subject_id, purpose_id)
    );
    -- The hash-chained, signed consent ledger: one global chain. Pseudonymous.
    CREATE TABLE ledger (
        seq            BIGINT PRIMARY KEY,
        subject_id     BYTEA NOT NULL,
        purpose_id     TEXT NOT NULL,
        status         TEXT NOT NULL,
        notice_version BIGINT NOT NULL,
        notice_hash    BYTEA NOT NULL,
        channel        TEXT NOT NULL,
        time_ms        BIGINT NOT NULL,
        evidence       TEXT NOT NULL,
        prev_hash      BYTEA NOT NULL,
        hash           BYTEA NOT NULL,
        signature      BYTEA NOT NULL
    );
    CREATE INDEX ledger_subject ON ledger (subject_id);
    -- The head, one row that always exists: every consent transaction locks it
    -- (FOR UPDATE) before appending, which is what keeps the chain single.
    CREATE TABLE ledger_head (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  BIGINT NOT NULL,
        hash BYTEA NOT NULL
    );
    INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
    -- Event ids: arrival order, and the `upto_id` of purpose floors. CACHE 1 (the
    -- default) on purpose: a floor reads `last_value` as "every id handed out so far",
    -- which per-session caching of ids would break.
    CREATE SEQUENCE events_id_seq CACHE 1;
    -- Consent-gated events, range-partitioned by the day they were received, so that
    -- retention drops whole partitions. Partitions are created on demand.
    CREATE TABLE events (
        id          BIGINT NOT NULL DEFAULT nextval('events_id_seq'),
        day         INTEGER NOT NULL,
        subject_id  BYTEA NOT NULL,
        source_id   TEXT NOT NULL,
        dedup_key   BYTEA NOT NULL,
        kind        TEXT NOT NULL,
        category    TEXT NOT NULL,
        purposes    BIGINT NOT NULL CHECK (purposes <> 0),
        event_ms    BIGINT NOT NULL,
        received_ms BIGINT NOT NULL,
        sealed      BYTEA NOT NULL,
        -- id first: inserts append to the right edge of the index and pages read in id
        -- order; day because partitioned tables need it; subject_id for distribution.
        PRIMARY KEY (id, day, subject_id)
    ) PARTITION BY RANGE (day);
    ALTER SEQUENCE events_id_seq OWNED BY events.id;
    -- A withdrawn purpose: events of the subject with id <= upto_id no longer carry it.
    CREATE TABLE purpose_floors (
        subject_id BYTEA NOT NULL,
        bit        SMALLINT NOT NULL,
        upto_id    BIGINT NOT NULL,
        PRIMARY KEY (subject_id, bit)
    );
    -- De-duplication keys: a key received on day D is stored under D and D + 1, so a
    -- retry on the same or the next day conflicts with one of them (see `ingest`).
    CREATE TABLE dedup_keys (
        day       INTEGER NOT NULL,
        dedup_key BYTEA NOT NULL,
        PRIMARY KEY (day, dedup_key)
    ) PARTITION BY RANGE (day);
    "#,
    // 2: audience insights (issue 5).
    r#"
    -- Dense subject numbers for report membership; never reused (a sequence).
    CREATE SEQUENCE insight_dense_seq MINVALUE 0 START 0 MAXVALUE 4294967295;
    CREATE TABLE insight_subjects (
        subject_id BYTEA PRIMARY KEY,
        dense      BIGINT NOT NULL
    );
    -- Every insert or update of a feature or declared row takes a fresh number, so a
    -- node can read what others wrote since it last looked (see `features`). CACHE 1
    -- (the default) on purpose: numbers must be handed out in time order across
    -- sessions.
    CREATE SEQUENCE insight_seq CACHE 1;
    CREATE TABLE insight_features (
        subject_id BYTEA NOT NULL,
        day        INTEGER NOT NULL,
        kind       SMALLINT NOT NULL,
        category   TEXT NOT NULL,
        count      BIGINT NOT NULL,
        seq        BIGINT NOT NULL,
        PRIMARY KEY (subject_id, day, kind, category)
    );
    CREATE INDEX insight_features_seq ON insight_features (seq);
    -- A NULL value is a tombstone: the field was shared and no longer is (a deleted row
    -- could not tell other nodes so).
    CREATE TABLE insight_declared (
        subject_id BYTEA NOT NULL,
        field      TEXT NOT NULL,
        value      TEXT,
        seq        BIGINT NOT NULL,
        PRIMARY KEY (subject_id, field)
    );
    CREATE INDEX insight_declared_seq ON insight_declared (seq);
    -- Advertisers; the permission lists are JSON arrays of names.
    CREATE TABLE advertisers (
        advertiser_id       TEXT PRIMARY KEY,
        name                TEXT NOT NULL,
        key_hash            BYTEA NOT NULL UNIQUE,
        budget_epsilon_nano BIGINT NOT NULL,
        budget_delta_atto   BIGINT NOT NULL,
        period              TEXT NOT NULL,
        allowed_features    TEXT NOT NULL,
        allowed_dimensions  TEXT NOT NULL,
        disabled            BOOLEAN NOT NULL,
        created_ms          BIGINT NOT NULL,
        updated_ms          BIGINT NOT NULL
    );
    -- Reports as charged: a period's spend is the sum of its reports' costs.
    CREATE SEQUENCE insight_reports_id_seq;
    CREATE TABLE insight_reports (
        advertiser_id       TEXT NOT NULL,
        id                  BIGINT NOT NULL DEFAULT nextval('insight_reports_id_seq'),
        period              TEXT NOT NULL,
        time_ms             BIGINT NOT NULL,
        cost_epsilon_nano   BIGINT NOT NULL,
        cost_delta_atto     BIGINT NOT NULL,
        purpose             TEXT NOT NULL,
        query_json          TEXT NOT NULL,
        answer_json         TEXT NOT NULL,
        spent_epsilon_nano  BIGINT NOT NULL,
        spent_delta_atto    BIGINT NOT NULL,
        budget_epsilon_nano BIGINT NOT NULL,
        budget_delta_atto   BIGINT NOT NULL,
        PRIMARY KEY (advertiser_id, id)
    );
    ALTER SEQUENCE insight_reports_id_seq OWNED BY insight_reports.id;
    CREATE INDEX insight_reports_period ON insight_reports (advertiser_id, period);
    CREATE INDEX insight_reports_id ON insight_reports (id);
    -- Membership, one row per chunk of 65,536 dense numbers (candor_insights::membership).
    CREATE TABLE insight_report_members (
        advertiser_id TEXT NOT NULL,
        report_id     BIGINT NOT NULL,
        chunk         INTEGER NOT NULL,
        bits          BYTEA NOT NULL,
        PRIMARY KEY (advertiser_id, report_id, chunk)
    );
    CREATE INDEX insight_report_members_chunk ON insight_report_members (chunk);
    "#,
    // 3: features derived from the event log after commit (`derive`): an event's sealed
    // deltas, and how far the log has been applied (from the last id handed out: older
    // rows had their features written with them).
    r#"
    ALTER TABLE events ADD COLUMN features BYTEA;
    CREATE TABLE feature_watermark (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        applied_upto BIGINT NOT NULL
    );
    INSERT INTO feature_watermark (id, applied_upto)
        SELECT 1, CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq;
    "#,
    // 4: the consent prompt (issue 12): saved variants and anonymous daily counts,
    // both small (a reference table and a few rows per day and variant).
    r#"
    CREATE TABLE prompt_variants (
        id         TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        active     BOOLEAN NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE prompt_counts (
        day     INTEGER NOT NULL,
        variant TEXT NOT NULL,
        purpose TEXT NOT NULL,
        metric  TEXT NOT NULL,
        count   BIGINT NOT NULL,
        PRIMARY KEY (day, variant, purpose, metric)
    );
    "#,
    // 5: hardening (issue 11): who acted and which key signed each ledger record
    // (format 2; NULL on format-1 records), the receipt-signing keys' ring, and a check
    // value of the master key the database was first opened with. Both are a few rows
    // (coordinator tables on Citus).
    r#"
    ALTER TABLE ledger ADD COLUMN actor TEXT;
    ALTER TABLE ledger ADD COLUMN key_id BYTEA;
    CREATE TABLE signing_keys (
        key_id      BYTEA PRIMARY KEY,
        public_key  BYTEA NOT NULL,
        from_seq    BIGINT NOT NULL UNIQUE,
        certificate BYTEA,
        created_ms  BIGINT NOT NULL
    );
    CREATE TABLE key_checks (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        master_check BYTEA NOT NULL,
        created_ms   BIGINT NOT NULL
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
        id BIGSERIAL PRIMARY KEY,
        time_ms BIGINT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail  TEXT NOT NULL
    );
    "#,
    // 6: budget caps (issue 11): an advertiser's optional lifetime cap (both columns
    // or neither), and reports found by time for the operator's cap across advertisers.
    r#"
    ALTER TABLE advertisers ADD COLUMN lifetime_epsilon_nano BIGINT;
    ALTER TABLE advertisers ADD COLUMN lifetime_delta_atto BIGINT;
    CREATE INDEX insight_reports_time ON insight_reports (time_ms);
    -- The period's spend is its latest report's running total (`PERIOD_COSTS`).
    CREATE INDEX insight_reports_period_id ON insight_reports (advertiser_id, period, id);
    "#,
    // 7: erasure (invariant 6). Every node's full cache resync reads the erasure records
    // to forget their subjects (a missed notification must not leave an erased subject
    // in a cache): a partial index keeps that read as small as the number of erasures.
    r#"
    CREATE INDEX ledger_erased ON ledger (seq) WHERE status = 'erased';
    "#,
    // 8: the person's own side (issue 13): the access log (reads of a person's data,
    // erased with them), the requests people made (pseudonymous: an erasure's request
    // outlives it, so the operator can show it was answered in time), and the nonces
    // of single-use sign-in links already spent (kept until they expire).
    r#"
    CREATE TABLE access_log (
        subject_id  BYTEA NOT NULL,
        id          BIGSERIAL,
        time_ms     BIGINT NOT NULL,
        accessor    TEXT NOT NULL,
        purpose     TEXT NOT NULL,
        why         TEXT NOT NULL,
        PRIMARY KEY (subject_id, id)
    );
    CREATE INDEX access_log_subject ON access_log (subject_id, time_ms);
    CREATE TABLE subject_requests (
        id           BIGSERIAL PRIMARY KEY,
        subject_id   BYTEA NOT NULL,
        kind         TEXT NOT NULL,
        channel      TEXT NOT NULL,
        requested_ms BIGINT NOT NULL,
        completed_ms BIGINT,
        outcome      TEXT NOT NULL
    );
    CREATE TABLE spent_links (
        nonce      BYTEA PRIMARY KEY,
        expires_ms BIGINT NOT NULL
    );
    "#,
    // 9: volunteered (zero-party) fields (issue 13): one value per subject and field,
    // sealed under the subject's key and bound to (subject, field) by associated data.
    r#"
    CREATE TABLE volunteered_fields (
        subject_id   BYTEA NOT NULL,
        field        TEXT NOT NULL,
        sealed_value BYTEA NOT NULL,
        provenance   TEXT NOT NULL CHECK (provenance IN ('volunteered', 'observed', 'inferred')),
        updated_ms   BIGINT NOT NULL,
        PRIMARY KEY (subject_id, field)
    );
    "#,
    // 10: the loyalty program's points ledger and the operator's segments (issue 14).
    r#"
    CREATE TABLE loyalty_accounts (
        subject_id BYTEA PRIMARY KEY,
        balance    BIGINT NOT NULL CHECK (balance >= 0),
        member     BOOLEAN NOT NULL,
        joined_ms  BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE loyalty_txns (
        subject_id BYTEA NOT NULL,
        id         BIGINT GENERATED ALWAYS AS IDENTITY,
        idem_key   TEXT NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('earn', 'redeem', 'reverse', 'expire', 'adjust', 'forfeit')),
        points     BIGINT NOT NULL,
        rule       TEXT,
        reward     TEXT,
        reverses   BIGINT,
        reason     TEXT NOT NULL,
        source     TEXT NOT NULL,
        day        BIGINT NOT NULL,
        time_ms    BIGINT NOT NULL,
        PRIMARY KEY (subject_id, id),
        UNIQUE (subject_id, idem_key)
    );
    CREATE UNIQUE INDEX loyalty_txns_reversal ON loyalty_txns (subject_id, reverses)
        WHERE reverses IS NOT NULL;
    CREATE TABLE loyalty_rewards (
        reward_id  TEXT PRIMARY KEY,
        stock      BIGINT NOT NULL CHECK (stock >= 0),
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE segments (
        name        TEXT PRIMARY KEY,
        purpose_id  TEXT NOT NULL,
        rule        TEXT NOT NULL,
        description TEXT NOT NULL,
        created_ms  BIGINT NOT NULL,
        updated_ms  BIGINT NOT NULL
    );
    CREATE TABLE segment_sizes (
        name TEXT NOT NULL,
        day  BIGINT NOT NULL,
        size BIGINT NOT NULL,
        PRIMARY KEY (name, day)
    );
    "#, // 11: email on consent (issue 16): subscriptions beside their subject, the
    // suppression list by address hash (it outlives erasure), campaigns and the send
    // queue on the coordinator (one row per campaign and subscriber; moved to
    // `committing` before the message's final SMTP dot).
    r#"
    CREATE TABLE email_subscriptions (
        subject_id   BYTEA NOT NULL,
        list         TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed')),
        created_ms   BIGINT NOT NULL,
        updated_ms   BIGINT NOT NULL,
        confirmed_ms BIGINT,
        sends        BIGINT NOT NULL,
        window_ms    BIGINT NOT NULL,
        origin       BYTEA,
        PRIMARY KEY (subject_id, list)
    );
    CREATE INDEX email_subscriptions_members ON email_subscriptions (list, status, subject_id);
    CREATE TABLE email_suppressions (
        addr_hash  BYTEA NOT NULL,
        list       TEXT NOT NULL,
        reason     TEXT NOT NULL CHECK (reason IN ('unsubscribe', 'bounce', 'complaint')),
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (addr_hash, list)
    );
    CREATE TABLE email_campaigns (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name         TEXT NOT NULL,
        list         TEXT NOT NULL,
        segment      TEXT,
        subject_line TEXT NOT NULL,
        text_body    TEXT NOT NULL,
        html_body    TEXT,
        status       TEXT NOT NULL CHECK (status IN ('draft', 'sending', 'sent', 'cancelled')),
        created_ms   BIGINT NOT NULL,
        started_ms   BIGINT,
        finished_ms  BIGINT
    );
    CREATE TABLE email_messages (
        campaign_id BIGINT NOT NULL,
        subject_id  BYTEA NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('queued', 'committing', 'sent', 'bounced', 'failed', 'skipped')),
        attempts    BIGINT NOT NULL,
        next_ms     BIGINT NOT NULL,
        updated_ms  BIGINT NOT NULL,
        detail      TEXT,
        PRIMARY KEY (campaign_id, subject_id)
    );
    CREATE INDEX email_messages_due ON email_messages (status, next_ms);
    "#,
    // 12: when a recipient left the list through this campaign's unsubscribe link.
    r#"
    ALTER TABLE email_messages ADD COLUMN left_ms BIGINT;
    "#,
];

pub const SUPPORTED_VERSION: i64 = MIGRATIONS.len() as i64;

/// Where a table lives on Citus (the table above, as code). Migrations apply it when
/// the database has the `citus` extension; without it nothing changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Hash-distributed by `subject_id`, co-located with `subjects`: one subject's rows
    /// of every such table live in shards of the same range, on one worker.
    BySubject,
    /// Hash-distributed by `advertiser_id`, co-located with `insight_reports`.
    ByAdvertiser,
    /// Hash-distributed by this column, in a co-location group of its own (the column
    /// is a hash of something other than a subject).
    ByKey(&'static str),
    /// Copied to every node: tiny, read everywhere, joined with distributed tables, never
    /// locked (a row lock on a reference table is a lock on its one shard, cluster-wide).
    Reference,
    /// An ordinary table on the coordinator: few rows, no subject, or (the ledger) one
    /// global order that a single lock keeps.
    Coordinator,
}

/// Every table of the schema and its [`Placement`]. A migration that creates a table
/// not listed here fails on Citus (and a test fails on plain PostgreSQL), so a new
/// table cannot go undistributed by accident.
pub const PLACEMENT: &[(&str, Placement)] = &[
    ("subjects", Placement::BySubject),
    ("identities", Placement::BySubject),
    ("consent_state", Placement::BySubject),
    ("purpose_floors", Placement::BySubject),
    ("events", Placement::BySubject),
    ("insight_subjects", Placement::BySubject),
    ("insight_features", Placement::BySubject),
    ("insight_declared", Placement::BySubject),
    ("access_log", Placement::BySubject),
    ("volunteered_fields", Placement::BySubject),
    ("loyalty_accounts", Placement::BySubject),
    ("loyalty_txns", Placement::BySubject),
    ("email_subscriptions", Placement::BySubject),
    ("insight_reports", Placement::ByAdvertiser),
    ("insight_report_members", Placement::ByAdvertiser),
    ("identity_lookup", Placement::ByKey("lookup_hash")),
    ("dedup_keys", Placement::ByKey("dedup_key")),
    ("email_suppressions", Placement::ByKey("addr_hash")),
    ("purposes", Placement::Reference),
    // Locked FOR UPDATE by charges and redemptions: as reference tables, Citus would
    // take that lock on the table's one shard, so every charge (every redemption) in
    // the cluster would wait for every other; on the coordinator they lock rows.
    ("advertisers", Placement::Coordinator),
    ("loyalty_rewards", Placement::Coordinator),
    ("ledger", Placement::Coordinator),
    ("ledger_head", Placement::Coordinator),
    ("feature_watermark", Placement::Coordinator),
    ("prompt_variants", Placement::Coordinator),
    ("prompt_counts", Placement::Coordinator),
    ("signing_keys", Placement::Coordinator),
    ("key_checks", Placement::Coordinator),
    ("store_meta", Placement::Coordinator),
    ("admin_audit", Placement::Coordinator),
    ("subject_requests", Placement::Coordinator),
    ("spent_links", Placement::Coordinator),
    ("segments", Placement::Coordinator),
    ("segment_sizes", Placement::Coordinator),
    // The send queue is scanned by status across campaigns and moved row by row by one
    // sender at a time; campaigns are a handful of rows.
    ("email_campaigns", Placement::Coordinator),
    ("email_messages", Placement::Coordinator),
    ("schema_migrations", Placement::Coordinator),
];

/// The placement of `table`, if it is one of ours.
pub fn placement(table: &str) -> Option<Placement> {
    PLACEMENT.iter().find(|(t, _)| *t == table).map(|(_, p)| *p)
}

/// Splits a migration into its statements at the semicolons outside quotes, dropping
/// `--` comments. The migrations use no dollar quoting, which this does not handle.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                current.push(c);
            }
            '-' if !quoted && chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            ';' if !quoted => {
                let s = current.trim();
                if !s.is_empty() {
                    out.push(s.to_owned());
                }
                current.clear();
            }
            c => current.push(c),
        }
    }
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_owned());
    }
    out
}

/// Whether this database is a Citus cluster (the extension is installed in it).
pub async fn is_citus(tx: &impl deadpool_postgres::GenericClient) -> Result<bool, StoreError> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )
        .await?
        .get(0))
}

/// Distributes (or replicates) every table of the schema that Citus does not manage
/// yet, per [`PLACEMENT`]. Run inside a migration's transaction, right after its DDL,
/// so a table is never visible undistributed; the anchors (`subjects`,
/// `insight_reports`) come first so the others can be co-located with them.
async fn distribute_new_tables(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let new: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND NOT EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = c.oid)",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut ordered: Vec<(&str, Placement)> = Vec::new();
    for table in &new {
        let p = placement(table).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "table {table} has no Citus placement (add it to schema::PLACEMENT)"
            ))
        })?;
        ordered.push((table.as_str(), p));
    }
    ordered.sort_by_key(|(t, _)| !matches!(*t, "subjects" | "insight_reports"));
    for (table, p) in ordered {
        let sql = match p {
            Placement::BySubject if table == "subjects" => {
                "SELECT create_distributed_table($1::text::regclass, 'subject_id', colocate_with => 'none')"
            }
            Placement::BySubject => {
                "SELECT create_distributed_table($1::text::regclass, 'subject_id', colocate_with => 'subjects')"
            }
            Placement::ByAdvertiser if table == "insight_reports" => {
                "SELECT create_distributed_table($1::text::regclass, 'advertiser_id', colocate_with => 'none')"
            }
            Placement::ByAdvertiser => {
                "SELECT create_distributed_table($1::text::regclass, 'advertiser_id', colocate_with => 'insight_reports')"
            }
            Placement::ByKey(column) => {
                tx.execute(
                    "SELECT create_distributed_table($1::text::regclass, $2, colocate_with => 'none')",
                    &[&table, &column],
                )
                .await?;
                tracing::info!(table, column, "distributed table on Citus");
                continue;
            }
            Placement::Reference => "SELECT create_reference_table($1::text::regclass)",
            Placement::Coordinator => continue,
        };
        tx.execute(sql, &[&table]).await?;
        tracing::info!(table, placement = ?p, "placed table on Citus");
    }
    Ok(())
}

/// Migrates and assigns purpose bits, in one transaction under the migration lock.
pub async fn migrate(
    client: &mut Object,
    purposes: &[PurposeId],
) -> Result<HashMap<PurposeId, u8>, StoreError> {
    let tx = client.transaction().await?;
    locks::take(&tx, locks::MIGRATE, locks::Hold::Exclusive).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let current = i64::from(current);
    if current > SUPPORTED_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SUPPORTED_VERSION,
        });
    }
    let citus = is_citus(&tx).await?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = (i + 1) as i32;
        // One statement at a time: Citus forwards a DDL statement on a distributed table
        // to the workers as the text it arrived in, and a multi-statement text cannot
        // run there.
        for statement in statements(sql) {
            tx.batch_execute(&statement).await?;
        }
        if citus {
            distribute_new_tables(&tx).await?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "applied schema migration");
    }
    let mut taken: HashMap<String, u8> = HashMap::new();
    for r in tx
        .query("SELECT purpose_id, bit FROM purposes", &[])
        .await?
    {
        let bit: i16 = r.get(1);
        taken.insert(r.get(0), bit as u8);
    }
    let mut out = HashMap::new();
    for p in purposes {
        let bit = match taken.get(p.as_str()) {
            Some(b) => *b,
            None => {
                let free = (0..64u8)
                    .find(|b| !taken.values().any(|t| t == b))
                    .ok_or_else(|| StoreError::Corrupt("all 64 purpose bits are in use".into()))?;
                tx.execute(
                    "INSERT INTO purposes (purpose_id, bit) VALUES ($1, $2)",
                    &[&p.as_str(), &i16::from(free)],
                )
                .await?;
                taken.insert(p.as_str().to_owned(), free);
                free
            }
        };
        out.insert(p.clone(), bit);
    }
    tx.commit().await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_statements() {
        let split = statements(
            "CREATE TABLE a (x TEXT DEFAULT ';'); -- a; comment\nINSERT INTO a VALUES ('--');\n",
        );
        assert_eq!(
            split,
            vec![
                "CREATE TABLE a (x TEXT DEFAULT ';')",
                "INSERT INTO a VALUES ('--')"
            ]
        );
        // Every migration splits into statements that each end where the next begins.
        for m in MIGRATIONS {
            let joined: String = statements(m).join(";");
            assert!(!joined.contains("--"), "{joined}");
        }
    }

    #[test]
    fn every_placement_is_named_once() {
        let mut names: Vec<&str> = PLACEMENT.iter().map(|(t, _)| *t).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
