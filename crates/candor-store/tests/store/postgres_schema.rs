//! PostgreSQL only: the schema is distribution-ready, migrations are versioned and
//! guarded, and connection failures are clear without leaking the password.

use crate::fixtures::*;
use crate::harness::Postgres;
use candor_core::consent::Action;
use candor_store::postgres::{PostgresStore, SUPPORTED_VERSION};
use candor_store::{Store, StoreError};

/// Tables that grow with the number of subjects: each must carry `subject_id` in its
/// primary key so that Citus can distribute it by subject.
const BY_SUBJECT: &[&str] = &[
    "subjects",
    "identities",
    "consent_state",
    "purpose_floors",
    "events",
    "insight_subjects",
    "insight_features",
    "insight_declared",
    "access_log",
    "volunteered_fields",
    "loyalty_accounts",
    "loyalty_txns",
    "email_subscriptions",
];

/// Tables that grow with advertisers' reports: distributed by advertiser (co-located,
/// so a budget charge touches one shard), so `advertiser_id` is in the primary key.
const BY_ADVERTISER: &[&str] = &["insight_reports", "insight_report_members"];

async fn primary_key(c: &tokio_postgres::Client, table: &str) -> Vec<String> {
    c.query(
        "SELECT kcu.column_name::text
         FROM information_schema.table_constraints tc
         JOIN information_schema.key_column_usage kcu
           ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
          AND kcu.table_name = tc.table_name
         WHERE tc.table_schema = 'public' AND tc.table_name = $1
           AND tc.constraint_type = 'PRIMARY KEY'",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_large_table_has_subject_id_in_its_primary_key() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let store = db.open_store().await;
    let c = db.client().await;
    for (tables, column) in [(BY_SUBJECT, "subject_id"), (BY_ADVERTISER, "advertiser_id")] {
        for table in tables {
            let cols = primary_key(&c, table).await;
            assert!(
                cols.iter().any(|c| c == column),
                "{table}: primary key {cols:?} lacks {column}"
            );
        }
    }
    // Every other table is small (catalog, advertisers, the ledger and its head, the
    // features' watermark, prompt variants and daily prompt totals, bookkeeping) or keyed by something else on purpose (dedup keys, identity lookup):
    // a new table must be placed in one of the lists or this one.
    let others = [
        "purposes",
        "identity_lookup",
        "ledger",
        "ledger_head",
        "dedup_keys",
        "advertisers",
        "feature_watermark",
        "prompt_variants",
        "prompt_counts",
        "signing_keys",
        "key_checks",
        "store_meta",
        "admin_audit",
        // People's requests (pseudonymous, few, outliving erasure) and spent link
        // nonces (short-lived): on the coordinator.
        "subject_requests",
        "spent_links",
        // The rewards' stock, the operator's segment definitions and their daily
        // sizes: a few rows, no person in them.
        "loyalty_rewards",
        "segments",
        "segment_sizes",
        // Suppressed addresses (by keyed hash: they outlive erasure), campaigns and
        // the send queue (scanned by status, moved by one sender at a time).
        "email_suppressions",
        "email_campaigns",
        "email_messages",
        "schema_migrations",
    ];
    let unplaced: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|t| {
            !BY_SUBJECT.contains(&t.as_str())
                && !BY_ADVERTISER.contains(&t.as_str())
                && !others.contains(&t.as_str())
        })
        .collect();
    assert!(
        unplaced.is_empty(),
        "tables without a distribution plan: {unplaced:?}"
    );
    // The placement migrations apply on Citus (`schema::PLACEMENT`) names exactly the
    // tables there are, each keyed as this test's lists say.
    let tables: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    use candor_store::postgres::schema::{Placement, PLACEMENT};
    for t in &tables {
        assert!(
            candor_store::postgres::schema::placement(t).is_some(),
            "{t} is not in schema::PLACEMENT"
        );
    }
    for (table, placement) in PLACEMENT {
        assert!(tables.iter().any(|t| t == table), "{table} does not exist");
        match placement {
            Placement::BySubject => assert!(BY_SUBJECT.contains(table), "{table}"),
            Placement::ByAdvertiser => assert!(BY_ADVERTISER.contains(table), "{table}"),
            Placement::ByKey(column) => {
                assert!(
                    primary_key(&c, table).await.iter().any(|k| k == column),
                    "{table}"
                )
            }
            Placement::Reference | Placement::Coordinator => {
                assert!(others.contains(table), "{table}")
            }
        }
    }
    // Events (and dedup keys) are range-partitioned by day, so retention drops days.
    for (table, key) in [("events", "day"), ("dedup_keys", "day")] {
        let row = c
            .query_one(
                "SELECT p.partstrat::text, a.attname::text
                 FROM pg_partitioned_table p
                 JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
                 WHERE p.partrelid = $1::text::regclass",
                &[&table],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            ("r".into(), key.into()),
            "{table}"
        );
    }
    let version: i32 = c
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(i64::from(version), SUPPORTED_VERSION);
    let synchronous: String = c
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(synchronous, "on");
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_created_per_receive_day() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let store = db.open_store().await;
    let s: &dyn Store = &store;
    let subject = s
        .apply_consent(command(s, "pat", &[("analytics", Action::Grant)]))
        .await
        .unwrap()
        .subject;
    let day = now() / DAY_MS;
    s.ingest(vec![
        row(s, subject, "p1", &["analytics"], now()),
        row(s, subject, "p2", &["analytics"], now() - 3 * DAY_MS),
    ])
    .await
    .unwrap();
    let c = db.client().await;
    let rows = c
        .query(
            "SELECT day, count(*) FROM events GROUP BY day ORDER BY day",
            &[],
        )
        .await
        .unwrap();
    let days: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(days, vec![(day as i32 - 3, 1), (day as i32, 1)]);
    let parts: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(parts >= 2);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let store = db.open_store().await;
    store.shutdown().await;
    drop(store);
    db.client()
        .await
        .batch_execute("INSERT INTO schema_migrations (version) VALUES (999)")
        .await
        .unwrap();
    let err = PostgresStore::open(&db.url, &purposes(), master(), signer())
        .await
        .err()
        .expect("a newer schema must be refused");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, supported } if supported == SUPPORTED_VERSION),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_starting_at_once_migrate_once() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let (a, b) = tokio::join!(db.open_store(), db.open_store());
    assert_eq!(a.purpose_bits(), b.purpose_bits());
    let c = db.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, SUPPORTED_VERSION);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn unreachable_server_is_a_clear_error_without_the_password() {
    let err = PostgresStore::open(
        "postgres://candor:hunter2@127.0.0.1:1/candor",
        &purposes(),
        master(),
        signer(),
    )
    .await
    .err()
    .expect("nothing listens on port 1");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Database(_)));
    assert!(
        msg.contains("cannot connect to 127.0.0.1:1/candor as candor"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
}
