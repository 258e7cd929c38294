//! The store conformance suite: one integration-test binary (one link, fast) that runs
//! the same behavioural tests against both backends, plus PostgreSQL-only tests of the
//! schema and of several nodes sharing one database.
//!
//! The PostgreSQL half needs a server: set `CANDOR_TEST_DATABASE_URL` to a superuser URL
//! such as `postgres://postgres@127.0.0.1:55432/postgres` (start a throwaway cluster with
//! `scripts/pg-cluster start /tmp/candor-pg 55432`). Each test creates its own database
//! and drops it afterwards. Without the variable the PostgreSQL tests fail, saying so;
//! set `CANDOR_SKIP_POSTGRES=1` to skip them deliberately.
#![allow(clippy::unwrap_used)]

mod conformance;
mod fixtures;
mod harness;
mod postgres_nodes;
mod postgres_schema;

/// Generates one test per backend for each conformance test.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = crate::harness::Sqlite::new();
                    crate::conformance::$name(&backend).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = crate::harness::Postgres::new().await else { return };
                    crate::conformance::$name(&backend).await;
                }
            )*
        }
    };
}

both_backends!(
    consent_create_grant_refuse_withdraw,
    not_given_rolls_back_the_whole_command,
    atomic_batch_is_all_or_nothing,
    ledger_chain_is_valid,
    concurrent_appends_keep_one_chain,
    ingest_gates_and_deduplicates,
    dedup_survives_reopen_and_midnight,
    floors_apply_on_read_and_sweep_rewrites,
    retention_keeps_the_longest_purpose,
    stats_count_what_is_stored,
);
