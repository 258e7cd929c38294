//! The store conformance suite: one integration-test binary (one link, fast) that runs
//! the same behavioural tests against both backends, plus PostgreSQL-only tests of the
//! schema and of several nodes sharing one database.
//!
//! The PostgreSQL half needs a server: set `CANDOR_TEST_DATABASE_URL` to a superuser URL
//! such as `postgres://postgres@127.0.0.1:25432/postgres` (start a throwaway cluster with
//! `scripts/pg-cluster start /tmp/candor-pg 25432`). Each test creates its own database
//! and drops it afterwards. Without the variable the PostgreSQL tests fail, saying so;
//! set `CANDOR_SKIP_POSTGRES=1` to skip them deliberately.
#![allow(clippy::unwrap_used)]

mod citus;
mod conformance;
#[path = "../../../../tests/support/databases.rs"]
mod databases;
mod email;
mod erasure;
mod features_and_budgets;
mod fields;
mod fixtures;
mod harness;
mod loyalty;
mod postgres_nodes;
mod postgres_schema;
mod prompt;

/// Generates one test per backend for each conformance test (`module::test`).
macro_rules! both_backends {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = crate::harness::Sqlite::new();
                    crate::$module::$name(&backend).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = crate::harness::Postgres::new().await else { return };
                    crate::$module::$name(&backend).await;
                }
            )*
        }
    };
}

both_backends!(
    conformance::consent_create_grant_refuse_withdraw,
    conformance::not_given_rolls_back_the_whole_command,
    conformance::atomic_batch_is_all_or_nothing,
    conformance::ledger_chain_is_valid,
    conformance::concurrent_appends_keep_one_chain,
    conformance::ingest_gates_and_deduplicates,
    conformance::dedup_survives_reopen_and_midnight,
    conformance::floors_apply_on_read_and_sweep_rewrites,
    conformance::retention_keeps_the_longest_purpose,
    conformance::stats_count_what_is_stored,
    conformance::named_authority_reaches_only_its_own_subjects,
    features_and_budgets::features_are_written_only_under_the_insights_purpose,
    features_and_budgets::feature_counts_are_absolute,
    features_and_budgets::features_reload_after_reopen,
    features_and_budgets::features_past_the_watermark_are_derived_once,
    features_and_budgets::withdrawal_deletes_features,
    features_and_budgets::leftovers_from_unconfigured_times_never_return,
    features_and_budgets::declared_fields_set_and_clear,
    features_and_budgets::features_expire_with_retention,
    features_and_budgets::budget_charges_are_atomic,
    features_and_budgets::lifetime_and_total_caps_hold,
    features_and_budgets::creating_an_advertiser_never_overwrites_one,
    features_and_budgets::replacing_an_advertiser_is_compare_and_set,
    features_and_budgets::advertisers_round_trip,
    features_and_budgets::subject_reports_find_members,
    erasure::erasure_is_complete_and_real,
    erasure::writes_around_an_erasure_leave_nothing,
    fields::fields_set_edit_remove_one_by_one,
    fields::field_values_are_sealed,
    fields::fields_of_an_unknown_subject_are_refused,
    fields::every_subjects_fields_page_in_order,
    prompt::prompt_counts_add_up,
    prompt::prompt_variants_round_trip,
    loyalty::ledger_earns_redeems_and_reverses_idempotently,
    loyalty::earning_needs_the_purpose_and_respects_caps,
    loyalty::concurrent_earns_and_redemptions_stay_consistent,
    loyalty::erasure_takes_the_points_ledger,
    loyalty::segments_and_sizes_round_trip,
    email::double_opt_in_is_recorded_once_and_only_when_pending,
    email::leaving_one_list_leaves_only_that_one,
    email::the_queue_holds_each_subscriber_once,
    email::erasure_takes_subscriptions_and_messages,
    email::an_expired_request_forgets_only_an_abandoned_subject,
    email::list_activity_counts_confirmations_and_departures_by_day,
);
