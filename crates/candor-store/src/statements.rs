//! SQL that both backends run as written: the statements whose text is the same in
//! SQLite's and PostgreSQL's dialects, so a change to a table is made in one place.
//!
//! Placeholders are PostgreSQL's `$1`, `$2`, ...: SQLite reads `$N` as a named parameter
//! and numbers parameters by first appearance, so a statement here must use each
//! placeholder for the first time in numeric order (a test checks every statement).
//! Casts are spelled `CAST(x AS t)`, which both understand.

use crate::rows::{ADVERTISER_COLS, LEDGER_COLS, REPORT_COLS, STATE_COLS};

pub(crate) const INSERT_SUBJECT: &str =
    "INSERT INTO subjects (subject_id, wrapped_key, created_ms) VALUES ($1, $2, $3)";

/// Erasure's first statement: the subject's row and wrapped key (`plan::erase`).
pub(crate) const DELETE_SUBJECT: &str = "DELETE FROM subjects WHERE subject_id = $1";

/// How many identifiers a subject holds (`plan::identity`).
pub(crate) const COUNT_IDENTITIES: &str = "SELECT count(*) FROM identities WHERE subject_id = $1";

pub(crate) const SUBJECT_KEY: &str = "SELECT wrapped_key FROM subjects WHERE subject_id = $1";

pub(crate) fn consent_state() -> String {
    format!("SELECT {STATE_COLS} FROM consent_state WHERE subject_id = $1 ORDER BY purpose_id")
}

/// A purpose's new state, from the ledger record that changed it.
pub(crate) const UPSERT_STATE: &str =
    "INSERT INTO consent_state (subject_id, purpose_id, status, notice_version, seq, time_ms)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (subject_id, purpose_id) DO UPDATE SET
       status = excluded.status, notice_version = excluded.notice_version,
       seq = excluded.seq, time_ms = excluded.time_ms";

pub(crate) const INSERT_LEDGER: &str =
    "INSERT INTO ledger (seq, subject_id, purpose_id, status, notice_version, notice_hash,
       channel, time_ms, evidence, prev_hash, hash, signature, actor, key_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// The keys a database records (`plan::keys`).
pub(crate) const MASTER_CHECK: &str = "SELECT master_check FROM key_checks WHERE id = 1";
pub(crate) const RECORD_MASTER_CHECK: &str =
    "INSERT INTO key_checks (id, master_check, created_ms) VALUES (1, $1, $2)";
pub(crate) const SIGNING_KEYS: &str =
    "SELECT public_key, from_seq, certificate FROM signing_keys ORDER BY from_seq";
pub(crate) const INSERT_SIGNING_KEY: &str =
    "INSERT INTO signing_keys (key_id, public_key, from_seq, certificate, created_ms)
     VALUES ($1, $2, $3, $4, $5)";
pub(crate) const SAMPLE_SUBJECT: &str = "SELECT subject_id, wrapped_key FROM subjects LIMIT 1";

pub(crate) const GET_META: &str = "SELECT value FROM store_meta WHERE key = $1";
/// Sets a fact once: a second writer keeps the first's (`Store::claim_meta`).
pub(crate) const CLAIM_META: &str =
    "INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

pub(crate) const INSERT_ADMIN_ACTION: &str =
    "INSERT INTO admin_audit (time_ms, action, target, outcome, detail) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const ADMIN_ACTIONS: &str =
    "SELECT id, time_ms, action, target, outcome, detail FROM admin_audit
     WHERE id > $1 ORDER BY id LIMIT $2";

/// A subject's identifiers as stored (kind, lookup hash, sealed value), oldest first.
pub(crate) const IDENTITIES_OF: &str =
    "SELECT kind, lookup_hash, sealed_value FROM identities WHERE subject_id = $1
     ORDER BY created_ms, lookup_hash";
/// A person's access log, newest first (`$2` at most).
pub(crate) const INSERT_ACCESS: &str =
    "INSERT INTO access_log (subject_id, time_ms, accessor, purpose, why) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const ACCESS_LOG: &str =
    "SELECT subject_id, time_ms, accessor, purpose, why FROM access_log
     WHERE subject_id = $1 ORDER BY time_ms DESC, id DESC LIMIT $2";
pub(crate) const OPEN_REQUEST: &str =
    "INSERT INTO subject_requests (subject_id, kind, channel, requested_ms, outcome)
     VALUES ($1, $2, $3, $4, 'pending') RETURNING id";
pub(crate) const CLOSE_REQUEST: &str =
    "UPDATE subject_requests SET completed_ms = $1, outcome = $2 WHERE id = $3";
pub(crate) const REQUESTS: &str =
    "SELECT id, subject_id, kind, channel, requested_ms, completed_ms, outcome
     FROM subject_requests WHERE id > $1 ORDER BY id LIMIT $2";
/// A single-use link's nonce, spent once: the insert finds the key taken the second time.
pub(crate) const SPEND_LINK: &str =
    "INSERT INTO spent_links (nonce, expires_ms) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING";
pub(crate) const FORGET_LINKS: &str = "DELETE FROM spent_links WHERE expires_ms < $1";

/// One subject's events in id order after `$2`, `$3` at most (purposes as stored).
pub(crate) fn subject_events_after() -> String {
    format!(
        "SELECT {} FROM events WHERE subject_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        crate::rows::EVENT_COLS
    )
}

pub(crate) fn last_record() -> String {
    format!("SELECT {LEDGER_COLS} FROM ledger ORDER BY seq DESC LIMIT 1")
}

pub(crate) fn history() -> String {
    format!("SELECT {LEDGER_COLS} FROM ledger WHERE subject_id = $1 ORDER BY seq")
}

pub(crate) fn ledger_page() -> String {
    format!("SELECT {LEDGER_COLS} FROM ledger WHERE seq > $1 ORDER BY seq LIMIT $2")
}

pub(crate) const DELETE_FEATURES: &str = "DELETE FROM insight_features WHERE subject_id = $1";
pub(crate) const DELETE_DECLARED: &str = "DELETE FROM insight_declared WHERE subject_id = $1";

pub(crate) fn advertiser_by_id() -> String {
    format!("SELECT {ADVERTISER_COLS} FROM advertisers WHERE advertiser_id = $1")
}

pub(crate) fn advertiser_by_key() -> String {
    format!("SELECT {ADVERTISER_COLS} FROM advertisers WHERE key_hash = $1")
}

pub(crate) fn all_advertisers() -> String {
    format!("SELECT {ADVERTISER_COLS} FROM advertisers ORDER BY advertiser_id")
}

/// The budget of an advertiser that may be charged (and whether it is disabled).
pub(crate) const BUDGET: &str = "SELECT budget_epsilon_nano, budget_delta_atto, disabled,
       lifetime_epsilon_nano, lifetime_delta_atto
     FROM advertisers WHERE advertiser_id = $1";

/// The costs of every report of an advertiser (its lifetime spend).
pub(crate) const LIFETIME_COSTS: &str =
    "SELECT cost_epsilon_nano, cost_delta_atto FROM insight_reports WHERE advertiser_id = $1";

/// The costs of every report from a time on (the spend across advertisers).
pub(crate) const COSTS_SINCE: &str =
    "SELECT cost_epsilon_nano, cost_delta_atto FROM insight_reports WHERE time_ms >= $1";

/// What an advertiser has spent in a period: the running total its latest report of
/// the period recorded (charges of one advertiser are serialized, so the latest is the
/// sum of all). One index probe, however many reports the period has: summing every
/// report made each charge slower than the last.
pub(crate) const PERIOD_COSTS: &str =
    "SELECT spent_epsilon_nano, spent_delta_atto FROM insight_reports
     WHERE advertiser_id = $1 AND period = $2 ORDER BY id DESC LIMIT 1";

pub(crate) const INSERT_REPORT: &str =
    "INSERT INTO insight_reports (advertiser_id, period, time_ms, cost_epsilon_nano,
       cost_delta_atto, purpose, query_json, answer_json, spent_epsilon_nano,
       spent_delta_atto, budget_epsilon_nano, budget_delta_atto)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id";

/// Reports of one advertiser (`$1`) or all (`$1` null) with ids above `$2`, `$3` at most.
pub(crate) fn reports_page() -> String {
    format!(
        "SELECT {REPORT_COLS} FROM insight_reports r
         WHERE (CAST($1 AS TEXT) IS NULL OR r.advertiser_id = $1) AND r.id > $2
         ORDER BY r.id LIMIT $3"
    )
}

pub(crate) fn report_by_id() -> String {
    format!("SELECT {REPORT_COLS} FROM insight_reports r WHERE r.id = $1")
}

/// Events in id order after `$1`, `$2` at most (purposes as stored).
pub(crate) fn events_after() -> String {
    format!(
        "SELECT {} FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        crate::rows::EVENT_COLS
    )
}

pub(crate) const DENSE_OF: &str = "SELECT dense FROM insight_subjects WHERE subject_id = $1";

/// Sets a subject's volunteered field (the writer has checked, in the same transaction,
/// that the subject exists).
pub(crate) const UPSERT_FIELD: &str =
    "INSERT INTO volunteered_fields (subject_id, field, sealed_value, provenance, updated_ms)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (subject_id, field) DO UPDATE SET
       sealed_value = excluded.sealed_value, provenance = excluded.provenance,
       updated_ms = excluded.updated_ms";

pub(crate) const DELETE_FIELD: &str =
    "DELETE FROM volunteered_fields WHERE subject_id = $1 AND field = $2";

/// A subject's volunteered fields, sealed, by name.
pub(crate) const FIELDS: &str = "SELECT field, sealed_value, provenance, updated_ms
     FROM volunteered_fields WHERE subject_id = $1 ORDER BY field";

/// Every subject's fields after (`$1`, `$2`) in (subject, field) order (the segments'
/// rebuild at start).
pub(crate) const FIELDS_AFTER: &str =
    "SELECT subject_id, field, sealed_value, provenance, updated_ms FROM volunteered_fields
     WHERE subject_id > $1 OR (subject_id = $1 AND field > $2)
     ORDER BY subject_id, field LIMIT $3";

/// The loyalty program's statements (`plan::loyalty`, each backend's `loyalty.rs`).
pub(crate) const TXN_COLS: &str =
    "id, subject_id, idem_key, kind, points, rule, reward, reverses, reason, source, time_ms";
pub(crate) fn txn_by_key() -> String {
    format!("SELECT {TXN_COLS} FROM loyalty_txns WHERE subject_id = $1 AND idem_key = $2")
}
pub(crate) fn txn_by_id() -> String {
    format!("SELECT {TXN_COLS} FROM loyalty_txns WHERE subject_id = $1 AND id = $2")
}
/// A subject's transactions, newest first, before id `$2` (paging back in time).
pub(crate) fn txns_before() -> String {
    format!(
        "SELECT {TXN_COLS} FROM loyalty_txns WHERE subject_id = $1 AND id < $2
         ORDER BY id DESC LIMIT $3"
    )
}
pub(crate) const REVERSED: &str =
    "SELECT 1 FROM loyalty_txns WHERE subject_id = $1 AND reverses = $2";
pub(crate) const ACCOUNT: &str =
    "SELECT balance, member, joined_ms FROM loyalty_accounts WHERE subject_id = $1";
/// Points a rule (`$3`) gave a subject (`$2`) on one UTC day (`$1`), and in all.
pub(crate) const RULE_USE: &str =
    "SELECT CAST(COALESCE(SUM(CASE WHEN day = $1 THEN points ELSE 0 END), 0) AS BIGINT),
       CAST(COALESCE(SUM(points), 0) AS BIGINT)
     FROM loyalty_txns WHERE subject_id = $2 AND rule = $3 AND kind = 'earn'";
/// Whether a purpose is granted now (a `given` consent state row).
pub(crate) const GRANTED: &str =
    "SELECT 1 FROM consent_state WHERE subject_id = $1 AND purpose_id = $2 AND status = 'given'";
pub(crate) const REWARD_STOCK: &str = "SELECT stock FROM loyalty_rewards WHERE reward_id = $1";
pub(crate) const INSERT_TXN: &str =
    "INSERT INTO loyalty_txns (subject_id, idem_key, kind, points, rule, reward, reverses,
       reason, source, day, time_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";
pub(crate) const UPSERT_ACCOUNT: &str =
    "INSERT INTO loyalty_accounts (subject_id, balance, member, joined_ms, updated_ms)
     VALUES ($1, $2, $3, $4, $4)
     ON CONFLICT (subject_id) DO UPDATE SET balance = excluded.balance,
       member = excluded.member, updated_ms = excluded.updated_ms";
pub(crate) const MOVE_STOCK: &str = "UPDATE loyalty_rewards SET stock = stock + $1, updated_ms = $2
     WHERE reward_id = $3 AND stock + $1 >= 0";
pub(crate) const SET_STOCK: &str =
    "INSERT INTO loyalty_rewards (reward_id, stock, updated_ms) VALUES ($1, $2, $3)
     ON CONFLICT (reward_id) DO UPDATE SET stock = excluded.stock, updated_ms = excluded.updated_ms";
pub(crate) const REMOVE_STOCK: &str = "DELETE FROM loyalty_rewards WHERE reward_id = $1";
pub(crate) const STOCKS: &str = "SELECT reward_id, stock FROM loyalty_rewards ORDER BY reward_id";
/// Accounts with points, after subject `$1` (the expiry pass pages through them).
pub(crate) const ACCOUNTS_WITH_POINTS: &str =
    "SELECT subject_id FROM loyalty_accounts WHERE balance > 0 AND subject_id > $1
     ORDER BY subject_id LIMIT $2";
pub(crate) const PROGRAM_ACCOUNTS: &str =
    "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN member THEN 1 ELSE 0 END), 0) AS BIGINT),
       CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM loyalty_accounts";
pub(crate) const PROGRAM_BY_KIND: &str =
    "SELECT kind, CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM loyalty_txns
     GROUP BY kind ORDER BY kind";

/// Segment definitions and their daily sizes.
pub(crate) const SEGMENTS: &str =
    "SELECT name, purpose_id, rule, description, created_ms, updated_ms FROM segments ORDER BY name";
pub(crate) const PUT_SEGMENT: &str =
    "INSERT INTO segments (name, purpose_id, rule, description, created_ms, updated_ms)
     VALUES ($1, $2, $3, $4, $5, $5)
     ON CONFLICT (name) DO UPDATE SET purpose_id = excluded.purpose_id, rule = excluded.rule,
       description = excluded.description, updated_ms = excluded.updated_ms";
pub(crate) const DELETE_SEGMENT: &str = "DELETE FROM segments WHERE name = $1";
pub(crate) const DELETE_SEGMENT_SIZES: &str = "DELETE FROM segment_sizes WHERE name = $1";
pub(crate) const PUT_SEGMENT_SIZE: &str =
    "INSERT INTO segment_sizes (name, day, size) VALUES ($1, $2, $3)
     ON CONFLICT (name, day) DO UPDATE SET size = excluded.size";
pub(crate) const SEGMENT_SIZES: &str =
    "SELECT name, day, size FROM segment_sizes WHERE day >= $1 ORDER BY name, day";

// Email on consent (issue 16).
const SUBSCRIPTION_COLS: &str =
    "subject_id, list, status, created_ms, updated_ms, confirmed_ms, sends, window_ms, origin";
pub(crate) fn subscription() -> String {
    format!(
        "SELECT {SUBSCRIPTION_COLS} FROM email_subscriptions WHERE subject_id = $1 AND list = $2"
    )
}
pub(crate) fn subscriptions() -> String {
    format!(
        "SELECT {SUBSCRIPTION_COLS} FROM email_subscriptions WHERE subject_id = $1 ORDER BY list"
    )
}
pub(crate) const PUT_SUBSCRIPTION: &str = "INSERT INTO email_subscriptions
       (subject_id, list, status, created_ms, updated_ms, confirmed_ms, sends, window_ms, origin)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (subject_id, list) DO UPDATE SET status = excluded.status,
       created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
       confirmed_ms = excluded.confirmed_ms, sends = excluded.sends,
       window_ms = excluded.window_ms, origin = excluded.origin";
pub(crate) const LIST_COUNTS: &str = "SELECT list, status, count(*), count(confirmed_ms)
     FROM email_subscriptions GROUP BY list, status ORDER BY list, status";
/// Confirmations per list and UTC day since `$1` (two plain grouped scans rather than a
/// `UNION`, which Citus would have to plan on the coordinator).
pub(crate) const LIST_CONFIRMATIONS_BY_DAY: &str =
    "SELECT list, confirmed_ms / 86400000, count(*) FROM email_subscriptions
     WHERE confirmed_ms >= $1 GROUP BY list, confirmed_ms / 86400000";
/// Departures (subscriptions unsubscribed now, on the day they left) since `$1`.
pub(crate) const LIST_DEPARTURES_BY_DAY: &str =
    "SELECT list, updated_ms / 86400000, count(*) FROM email_subscriptions
     WHERE status = 'unsubscribed' AND updated_ms >= $1 GROUP BY list, updated_ms / 86400000";
pub(crate) const LIST_MEMBERS: &str = "SELECT subject_id FROM email_subscriptions
     WHERE list = $1 AND status = 'confirmed' AND subject_id > $2
     ORDER BY subject_id LIMIT $3";
pub(crate) const EXPIRE_PENDING: &str =
    "DELETE FROM email_subscriptions WHERE status = 'pending' AND updated_ms < $1
     RETURNING subject_id";
pub(crate) const SUPPRESS: &str =
    "INSERT INTO email_suppressions (addr_hash, list, reason, created_ms) VALUES ($1, $2, $3, $4)
     ON CONFLICT (addr_hash, list) DO NOTHING";
pub(crate) const LIFT_UNSUBSCRIBE: &str =
    "DELETE FROM email_suppressions WHERE addr_hash = $1 AND list = $2 AND reason = 'unsubscribe'";
pub(crate) const SUPPRESSIONS_OF: &str =
    "SELECT addr_hash, list, reason, created_ms FROM email_suppressions WHERE addr_hash = $1 ORDER BY list";
pub(crate) const SUPPRESSION_COUNTS: &str =
    "SELECT reason, count(*) FROM email_suppressions GROUP BY reason ORDER BY reason";
const CAMPAIGN_COLS: &str = "id, name, list, segment, subject_line, text_body, html_body, status, \
     created_ms, started_ms, finished_ms";
pub(crate) const INSERT_CAMPAIGN: &str = "INSERT INTO email_campaigns
       (name, list, segment, subject_line, text_body, html_body, status, created_ms)
     VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7) RETURNING id";
pub(crate) fn campaigns() -> String {
    format!("SELECT {CAMPAIGN_COLS} FROM email_campaigns ORDER BY id DESC")
}
pub(crate) fn campaign() -> String {
    format!("SELECT {CAMPAIGN_COLS} FROM email_campaigns WHERE id = $1")
}
/// Moves campaign `$3` to `$1` at `$2` from the status it is expected to be in (`$4`).
/// (SQLite numbers `$N` parameters in order of first use: they appear here in order.)
pub(crate) const SET_CAMPAIGN_STATUS: &str = "UPDATE email_campaigns SET status = $1,
       started_ms = CASE WHEN $1 = 'sending' THEN $2 ELSE started_ms END,
       finished_ms = CASE WHEN $1 IN ('sent', 'cancelled') THEN $2 ELSE finished_ms END
     WHERE id = $3 AND status = $4";
pub(crate) const ENQUEUE: &str =
    "INSERT INTO email_messages (campaign_id, subject_id, status, attempts, next_ms, updated_ms)
     VALUES ($1, $2, 'queued', 0, $3, $3)
     ON CONFLICT (campaign_id, subject_id) DO NOTHING";
const MESSAGE_COLS: &str = "campaign_id, subject_id, status, attempts, next_ms, updated_ms, detail";
pub(crate) fn due_messages() -> String {
    format!(
        "SELECT {MESSAGE_COLS} FROM email_messages WHERE status = 'queued' AND next_ms <= $1
           AND campaign_id IN (SELECT id FROM email_campaigns WHERE status IN ('sending', 'cancelled'))
         ORDER BY next_ms, campaign_id, subject_id LIMIT $2"
    )
}
pub(crate) fn campaign_messages() -> String {
    format!(
        "SELECT {MESSAGE_COLS} FROM email_messages WHERE campaign_id = $1 AND subject_id > $2
         ORDER BY subject_id LIMIT $3"
    )
}
/// `$6`/`$7`'s message to `$1` if it is still in `$8`.
pub(crate) const UPDATE_MESSAGE: &str =
    "UPDATE email_messages SET status = $1, attempts = $2, next_ms = $3, detail = $4, updated_ms = $5
     WHERE campaign_id = $6 AND subject_id = $7 AND status = $8";
pub(crate) const CAMPAIGN_COUNTS: &str =
    "SELECT campaign_id, status, count(*) FROM email_messages GROUP BY campaign_id, status
     ORDER BY campaign_id, status";
pub(crate) const CAMPAIGN_UNSUBSCRIBED: &str =
    "SELECT campaign_id, count(*) FROM email_messages WHERE left_ms IS NOT NULL
     GROUP BY campaign_id ORDER BY campaign_id";
pub(crate) const MARK_LEFT: &str = "UPDATE email_messages SET left_ms = $1
     WHERE campaign_id = $2 AND subject_id = $3 AND left_ms IS NULL";
pub(crate) const OPEN_MESSAGES: &str =
    "SELECT count(*) FROM email_messages WHERE campaign_id = $1 AND status = 'queued'";

/// Every shared statement, for the placeholder check.
#[cfg(test)]
pub(crate) fn all() -> Vec<String> {
    let mut v: Vec<String> = [
        IDENTITIES_OF,
        INSERT_ACCESS,
        ACCESS_LOG,
        OPEN_REQUEST,
        CLOSE_REQUEST,
        REQUESTS,
        SPEND_LINK,
        FORGET_LINKS,
        INSERT_SUBJECT,
        SUBJECT_KEY,
        UPSERT_STATE,
        INSERT_LEDGER,
        DELETE_FEATURES,
        DELETE_DECLARED,
        BUDGET,
        PERIOD_COSTS,
        LIFETIME_COSTS,
        COSTS_SINCE,
        INSERT_REPORT,
        DENSE_OF,
        UPSERT_FIELD,
        DELETE_FIELD,
        FIELDS,
        FIELDS_AFTER,
        REVERSED,
        ACCOUNT,
        RULE_USE,
        GRANTED,
        REWARD_STOCK,
        INSERT_TXN,
        UPSERT_ACCOUNT,
        MOVE_STOCK,
        SET_STOCK,
        REMOVE_STOCK,
        STOCKS,
        ACCOUNTS_WITH_POINTS,
        PROGRAM_ACCOUNTS,
        PROGRAM_BY_KIND,
        SEGMENTS,
        PUT_SEGMENT,
        DELETE_SEGMENT,
        DELETE_SEGMENT_SIZES,
        PUT_SEGMENT_SIZE,
        SEGMENT_SIZES,
        PUT_SUBSCRIPTION,
        LIST_COUNTS,
        LIST_CONFIRMATIONS_BY_DAY,
        LIST_DEPARTURES_BY_DAY,
        LIST_MEMBERS,
        EXPIRE_PENDING,
        SUPPRESS,
        LIFT_UNSUBSCRIBE,
        SUPPRESSIONS_OF,
        SUPPRESSION_COUNTS,
        INSERT_CAMPAIGN,
        SET_CAMPAIGN_STATUS,
        ENQUEUE,
        UPDATE_MESSAGE,
        CAMPAIGN_COUNTS,
        CAMPAIGN_UNSUBSCRIBED,
        MARK_LEFT,
        OPEN_MESSAGES,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend([
        consent_state(),
        history(),
        ledger_page(),
        advertiser_by_id(),
        advertiser_by_key(),
        all_advertisers(),
        reports_page(),
        report_by_id(),
        events_after(),
        subject_events_after(),
        txn_by_key(),
        txn_by_id(),
        txns_before(),
        subscription(),
        subscriptions(),
        campaigns(),
        campaign(),
        due_messages(),
        campaign_messages(),
    ]);
    for mode in [
        crate::advertisers::PutMode::Create,
        crate::advertisers::PutMode::Upsert,
        crate::advertisers::PutMode::Replace(0),
    ] {
        v.push(crate::advertisers::write_sql(mode).to_owned());
    }
    v
}

#[cfg(test)]
mod tests {
    /// SQLite numbers `$N` parameters by first appearance: each statement must name them
    /// first in numeric order for positional binding to match PostgreSQL's.
    #[test]
    fn sqlite_binds_every_shared_statement_positionally() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::sqlite::schema::migrate_for_tests(&conn);
        for sql in super::all() {
            let st = conn.prepare(&sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
            for i in 1..=st.parameter_count() {
                assert_eq!(
                    st.parameter_index(&format!("${i}")).unwrap(),
                    Some(i),
                    "parameter ${i} of {sql}"
                );
            }
        }
    }
}
