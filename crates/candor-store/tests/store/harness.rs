//! Backends for the conformance suite: each opens stores on its own fresh data (a
//! temporary SQLite file, or a PostgreSQL database created for the test and dropped
//! after it), and can open them again on the same data to test reopening.

use crate::fixtures::{master, purposes, signer};
use async_trait::async_trait;
use candor_core::SubjectId;
use candor_store::postgres::{PostgresOptions, PostgresStore};
use candor_store::sqlite::SqliteStore;
use candor_store::{InsightsOptions, Store};
use std::sync::Arc;

#[async_trait]
pub trait Backend: Send + Sync {
    /// A store on this backend's data (opening again reopens the same data).
    async fn open(&self) -> Arc<dyn Store> {
        self.open_with(None).await
    }
    /// The same, with insights configured (or not).
    async fn open_with(&self, insights: Option<InsightsOptions>) -> Arc<dyn Store>;
    /// Whether retention drops whole partitions here.
    fn partitions(&self) -> bool;

    // Behind the store's back: what the tables hold once `store` has derived the
    // insight features of everything it acknowledged (features are derived after
    // commit, so the tables are read after `refresh_features`).
    /// Feature rows stored for the subject.
    async fn feature_rows(&self, store: &dyn Store, s: SubjectId) -> i64 {
        store.refresh_features().await.unwrap();
        self.stored_feature_rows(s).await
    }
    /// Declared fields the subject shares, by field.
    async fn declared(&self, store: &dyn Store, s: SubjectId) -> Vec<(String, String)> {
        store.refresh_features().await.unwrap();
        self.stored_declared(s).await
    }
    /// The subject's dense number for report membership.
    async fn dense(&self, store: &dyn Store, s: SubjectId) -> Option<u32> {
        store.refresh_features().await.unwrap();
        self.stored_dense(s).await
    }
    async fn stored_feature_rows(&self, s: SubjectId) -> i64;
    /// Puts the tables back to before any feature was derived (no feature rows, the
    /// watermark at 0), as a crash right after the events committed would have left
    /// them. Only while no store is open.
    async fn forget_derived_features(&self);
    /// Puts back what a withdrawal of `bit` leaves until the sweeper has run: the floor
    /// (subject, bit, `upto`) and the bit on the subject's rows up to it that fed
    /// features (rows stored for other purposes only never had it). Only while no
    /// store is open.
    async fn unsweep(&self, subject: SubjectId, bit: u8, upto: i64);
    async fn stored_declared(&self, s: SubjectId) -> Vec<(String, String)>;
    async fn stored_dense(&self, s: SubjectId) -> Option<u32>;

    // For erasure (behind the store's back).
    /// Rows naming the subject in every table with a `subject_id` column (found in the
    /// catalog, so a table added later is covered), except the ledger, whose records
    /// are pseudonymous and stay; plus de-duplication rows holding `dedup_keys`.
    async fn subject_rows(&self, s: SubjectId, dedup_keys: &[[u8; 16]]) -> Vec<(String, i64)>;
    /// The subject's wrapped data key and sealed identifier values, as stored.
    async fn stored_secrets(&self, s: SubjectId) -> Vec<Vec<u8>>;
    /// Every byte of the database's files as they are on disk (SQLite: the main file,
    /// `-wal` and `-journal`; PostgreSQL: the test database's directory and the shared
    /// catalogs, after `VACUUM FULL` and `CHECKPOINT`, as `docs/erasure.md` tells an
    /// operator to run after erasures), by file.
    async fn raw_files(&self) -> Vec<(String, Vec<u8>)>;
    /// Every byte the backend holds that a volunteered value could be found in: the
    /// database file and its WAL on SQLite, every `volunteered_fields` row on PostgreSQL.
    async fn raw_field_bytes(&self) -> Vec<u8>;
}

pub struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl Sqlite {
    fn peek(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.dir.path().join("candor.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }
}

#[async_trait]
impl Backend for Sqlite {
    async fn open_with(&self, insights: Option<InsightsOptions>) -> Arc<dyn Store> {
        Arc::new(
            SqliteStore::open_with_insights(
                &self.dir.path().join("candor.db"),
                &purposes(),
                master(),
                signer(),
                insights,
            )
            .unwrap(),
        )
    }

    fn partitions(&self) -> bool {
        false
    }

    async fn unsweep(&self, subject: SubjectId, bit: u8, upto: i64) {
        let c = rusqlite::Connection::open(self.dir.path().join("candor.db")).unwrap();
        let sid = &subject.as_bytes()[..];
        c.execute(
            "UPDATE events SET purposes = purposes | (1 << ?2)
             WHERE subject_id = ?1 AND id <= ?3 AND features IS NOT NULL",
            rusqlite::params![sid, bit, upto],
        )
        .unwrap();
        c.execute(
            "INSERT INTO purpose_floors (subject_id, bit, upto_id) VALUES (?1, ?2, ?3)",
            rusqlite::params![sid, bit, upto],
        )
        .unwrap();
    }

    async fn forget_derived_features(&self) {
        rusqlite::Connection::open(self.dir.path().join("candor.db"))
            .unwrap()
            .execute_batch(
                "DELETE FROM insight_features; DELETE FROM insight_declared;
                 UPDATE feature_watermark SET applied_upto = 0;",
            )
            .unwrap();
    }

    async fn stored_feature_rows(&self, s: SubjectId) -> i64 {
        self.peek()
            .query_row(
                "SELECT count(*) FROM insight_features WHERE subject_id = ?1",
                [&s.as_bytes()[..]],
                |r| r.get(0),
            )
            .unwrap()
    }

    async fn stored_declared(&self, s: SubjectId) -> Vec<(String, String)> {
        let c = self.peek();
        let mut st = c
            .prepare(
                "SELECT field, value FROM insight_declared WHERE subject_id = ?1 ORDER BY field",
            )
            .unwrap();
        st.query_map([&s.as_bytes()[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    async fn raw_field_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for name in ["candor.db", "candor.db-wal"] {
            if let Ok(b) = std::fs::read(self.dir.path().join(name)) {
                all.extend(b);
            }
        }
        all
    }

    async fn stored_dense(&self, s: SubjectId) -> Option<u32> {
        let c = self.peek();
        let mut st = c
            .prepare("SELECT dense FROM insight_subjects WHERE subject_id = ?1")
            .unwrap();
        let mut rows = st.query([&s.as_bytes()[..]]).unwrap();
        rows.next()
            .unwrap()
            .map(|r| u32::try_from(r.get::<_, i64>(0).unwrap()).unwrap())
    }
    async fn subject_rows(&self, s: SubjectId, _dedup: &[[u8; 16]]) -> Vec<(String, i64)> {
        // SQLite keeps de-duplication keys in memory only (beside `events.dedup_key`).
        let c = self.peek();
        let tables: Vec<String> = c
            .prepare(
                "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c
                 WHERE m.type = 'table' AND c.name = 'subject_id' AND m.name <> 'ledger'
                 ORDER BY m.name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        tables
            .into_iter()
            .map(|t| {
                let n = c
                    .query_row(
                        &format!("SELECT count(*) FROM {t} WHERE subject_id = ?1"),
                        [&s.as_bytes()[..]],
                        |r| r.get(0),
                    )
                    .unwrap();
                (t, n)
            })
            .collect()
    }

    async fn stored_secrets(&self, s: SubjectId) -> Vec<Vec<u8>> {
        let c = self.peek();
        let sid = &s.as_bytes()[..];
        let mut out: Vec<Vec<u8>> = c
            .prepare("SELECT wrapped_key FROM subjects WHERE subject_id = ?1")
            .unwrap()
            .query_map([sid], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.extend(
            c.prepare("SELECT sealed_value FROM identities WHERE subject_id = ?1")
                .unwrap()
                .query_map([sid], |r| r.get::<_, Vec<u8>>(0))
                .unwrap()
                .map(Result::unwrap),
        );
        out
    }

    async fn raw_files(&self) -> Vec<(String, Vec<u8>)> {
        ["candor.db", "candor.db-wal", "candor.db-journal"]
            .iter()
            .filter_map(|f| {
                std::fs::read(self.dir.path().join(f))
                    .ok()
                    .map(|b| ((*f).to_owned(), b))
            })
            .collect()
    }
}

const HOW_TO_START: &str =
    "CANDOR_TEST_DATABASE_URL is not set, so the PostgreSQL store cannot be tested.
Start a throwaway cluster and point the tests at it:
    scripts/pg-cluster start /tmp/candor-pg 25432
    export CANDOR_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:25432/postgres
(or set CANDOR_SKIP_POSTGRES=1 to skip the PostgreSQL tests on purpose)";

/// A fresh database on the test cluster, dropped when this is dropped.
pub struct Postgres {
    admin_url: String,
    name: String,
    pub url: String,
    pub options: PostgresOptions,
}

impl Postgres {
    /// `None` only when `CANDOR_SKIP_POSTGRES=1`; panics with instructions when no
    /// cluster is configured, so a missing database never passes silently.
    pub async fn new() -> Option<Self> {
        if std::env::var("CANDOR_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("skipping a PostgreSQL test: CANDOR_SKIP_POSTGRES=1");
            return None;
        }
        let admin_url =
            std::env::var("CANDOR_TEST_DATABASE_URL").unwrap_or_else(|_| panic!("{HOW_TO_START}"));
        let name = format!("t_{}", hex::encode(rand::random::<[u8; 8]>()));
        let url = candor_store::postgres::provision::create_database(&admin_url, &name)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}\n{HOW_TO_START}"));
        require_citus_if_asked(&url).await;
        Some(Self {
            admin_url,
            name,
            url,
            options: PostgresOptions {
                resync_interval: std::time::Duration::from_secs(30),
                ..PostgresOptions::default()
            },
        })
    }

    pub async fn open_store(&self) -> PostgresStore {
        self.open_store_with(None).await
    }

    pub async fn open_store_with(&self, insights: Option<InsightsOptions>) -> PostgresStore {
        PostgresStore::open_with(
            &self.url,
            &purposes(),
            master(),
            signer(),
            PostgresOptions {
                insights,
                ..self.options.clone()
            },
        )
        .await
        .unwrap()
    }

    /// A plain connection to the test database, for checks behind the store's back.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin(&self.url).await
    }
}

/// With `CANDOR_TEST_BACKEND=citus` the database must really be a Citus cluster, so a
/// run meant for Citus can never pass on plain PostgreSQL by mistake.
pub async fn require_citus_if_asked(url: &str) {
    if std::env::var("CANDOR_TEST_BACKEND").is_ok_and(|b| b == "citus") {
        let c = admin(url).await;
        let workers: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 AND isactive",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("CANDOR_TEST_BACKEND=citus but {e}"))
            .get(0);
        assert!(
            workers >= 2,
            "CANDOR_TEST_BACKEND=citus needs a coordinator with two workers"
        );
    }
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}\n{HOW_TO_START}"));
    tokio::spawn(conn);
    client
}

impl Drop for Postgres {
    fn drop(&mut self) {
        crate::databases::drop_database(self.admin_url.clone(), self.name.clone());
    }
}

#[async_trait]
impl Backend for Postgres {
    async fn open_with(&self, insights: Option<InsightsOptions>) -> Arc<dyn Store> {
        Arc::new(self.open_store_with(insights).await)
    }

    fn partitions(&self) -> bool {
        true
    }

    async fn raw_field_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for r in self
            .client()
            .await
            .query(
                "SELECT convert_to(field || provenance, 'UTF8') || sealed_value
                 FROM volunteered_fields",
                &[],
            )
            .await
            .unwrap()
        {
            all.extend(r.get::<_, Vec<u8>>(0));
        }
        all
    }

    async fn unsweep(&self, subject: SubjectId, bit: u8, upto: i64) {
        let c = self.client().await;
        let sid = &subject.as_bytes()[..];
        c.execute(
            "UPDATE events SET purposes = purposes | (1::int8 << $2::int4)
             WHERE subject_id = $1 AND id <= $3 AND features IS NOT NULL",
            &[&sid, &i32::from(bit), &upto],
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO purpose_floors (subject_id, bit, upto_id) VALUES ($1, $2, $3)",
            &[&sid, &i16::from(bit), &upto],
        )
        .await
        .unwrap();
    }

    async fn forget_derived_features(&self) {
        self.client()
            .await
            .batch_execute(
                "DELETE FROM insight_features; DELETE FROM insight_declared;
                 UPDATE feature_watermark SET applied_upto = 0;",
            )
            .await
            .unwrap();
    }

    async fn stored_feature_rows(&self, s: SubjectId) -> i64 {
        self.client()
            .await
            .query_one(
                "SELECT count(*) FROM insight_features WHERE subject_id = $1",
                &[&&s.as_bytes()[..]],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn stored_declared(&self, s: SubjectId) -> Vec<(String, String)> {
        // NULL values are tombstones: not shared.
        self.client()
            .await
            .query(
                "SELECT field, value FROM insight_declared
                 WHERE subject_id = $1 AND value IS NOT NULL ORDER BY field",
                &[&&s.as_bytes()[..]],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    async fn stored_dense(&self, s: SubjectId) -> Option<u32> {
        self.client()
            .await
            .query_opt(
                "SELECT dense FROM insight_subjects WHERE subject_id = $1",
                &[&&s.as_bytes()[..]],
            )
            .await
            .unwrap()
            .map(|r| u32::try_from(r.get::<_, i64>(0)).unwrap())
    }
    async fn subject_rows(&self, s: SubjectId, dedup: &[[u8; 16]]) -> Vec<(String, i64)> {
        let c = self.client().await;
        // Partitions are tables too: each is counted on its own.
        let tables: Vec<String> = c
            .query(
                "SELECT DISTINCT c.table_name::text FROM information_schema.columns c
                 JOIN information_schema.tables t
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                 WHERE c.table_schema = 'public' AND c.column_name = 'subject_id'
                   AND t.table_type = 'BASE TABLE' AND c.table_name <> 'ledger'
                 ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::new();
        for t in tables {
            let n: i64 = c
                .query_one(
                    &format!("SELECT count(*) FROM {t} WHERE subject_id = $1"),
                    &[&&s.as_bytes()[..]],
                )
                .await
                .unwrap()
                .get(0);
            out.push((t, n));
        }
        let keys: Vec<&[u8]> = dedup.iter().map(|k| &k[..]).collect();
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM dedup_keys WHERE dedup_key = ANY($1)",
                &[&keys],
            )
            .await
            .unwrap()
            .get(0);
        out.push(("dedup_keys".into(), n));
        out
    }

    async fn stored_secrets(&self, s: SubjectId) -> Vec<Vec<u8>> {
        let c = self.client().await;
        let sid = &s.as_bytes()[..];
        let mut out: Vec<Vec<u8>> = c
            .query(
                "SELECT wrapped_key FROM subjects WHERE subject_id = $1",
                &[&sid],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.extend(
            c.query(
                "SELECT sealed_value FROM identities WHERE subject_id = $1",
                &[&sid],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, Vec<u8>>(0)),
        );
        out
    }

    async fn raw_files(&self) -> Vec<(String, Vec<u8>)> {
        // On Citus the rows are in the workers' files: read every node's.
        let mut nodes = Vec::new();
        for url in candor_store::postgres::provision::node_urls(&self.url)
            .await
            .unwrap()
        {
            let c = admin(&url).await;
            quiet(&c).await;
            nodes.push((c, url == self.url));
        }
        let mut out = Vec::new();
        for (c, coordinator) in &nodes {
            out.extend(node_files(c, *coordinator).await);
        }
        out
    }
}

/// Waits until no other session of the connected database holds a snapshot or a
/// transaction id. VACUUM FULL keeps a deleted row that an open snapshot may still see,
/// and autovacuum's ANALYZE holds one while it samples a table (CI once kept the erased
/// subject's row that way). A snapshot taken after this returns starts after the
/// erasure committed, so it is enough that none is open now.
async fn quiet(c: &tokio_postgres::Client) {
    let mut open = i64::MAX;
    for _ in 0..1200 {
        open = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{open} transactions stayed open in the test database");
}

/// Every file of the connected database (and the cluster's shared catalogs), after
/// rewriting its tables without dead tuples.
async fn node_files(c: &tokio_postgres::Client, coordinator: bool) -> Vec<(String, Vec<u8>)> {
    // What docs/erasure.md asks of an operator after erasures: VACUUM FULL rewrites
    // each table and its indexes without the deleted tuples (plain VACUUM only marks
    // their space free), and the checkpoint writes every page to the data files.
    // Only this database's own tables: Erin's data is in no catalog. On Citus, a
    // distributed table's VACUUM goes on to its shards on every worker (a worker's own
    // whole-database VACUUM passes them over), so the coordinator's does it all and the
    // workers only checkpoint.
    if coordinator {
        let tables: String = c
            .query_one(
                "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables
                 WHERE schemaname = 'public'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        c.batch_execute(&format!("VACUUM FULL {tables}"))
            .await
            .unwrap();
    }
    c.batch_execute("CHECKPOINT").await.unwrap();
    let dir: String = c
        .query_one("SHOW data_directory", &[])
        .await
        .unwrap()
        .get(0);
    let oid: u32 = c
        .query_one(
            "SELECT oid FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut out = Vec::new();
    for sub in [format!("base/{oid}"), "global".to_owned()] {
        let path = std::path::Path::new(&dir).join(&sub);
        for e in std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        {
            let p = e.unwrap().path();
            if p.is_file() {
                if let Ok(b) = std::fs::read(&p) {
                    out.push((p.display().to_string(), b));
                }
            }
        }
    }
    out
}
