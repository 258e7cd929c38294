//! PostgreSQL only: two stores on one database behave as two Candor nodes.

use crate::features_and_budgets::{
    advertiser, concurrent_charges_never_overspend, concurrent_charges_never_overspend_the_total,
    report, subject, EPS, IA,
};
use crate::fixtures::*;
use crate::harness::Postgres;
use candor_core::consent::Action;
use candor_core::ledger::verify_chain;
use candor_core::UnixMillis;
use candor_insights::FeatureKind;
use candor_store::{RowOutcome, Store};
use std::sync::Arc;
use std::time::Duration;

const PROPAGATION: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_changes_reach_the_other_node_within_a_second() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let a = db.open_store().await;
    let b = db.open_store().await;
    let out = a
        .apply_consent(command(&a, "nia", &[("analytics", Action::Grant)]))
        .await
        .unwrap();
    let s = out.subject;
    let analytics = bits(&a, &["analytics"]);
    assert!(
        eventually(PROPAGATION, || b.index().granted(&s) == analytics
            && b.resolve(&identity("nia").hash) == Some(s))
        .await,
        "B must learn the grant and the identity"
    );
    a.apply_consent(command(&a, "nia", &[("analytics", Action::Withdraw)]))
        .await
        .unwrap();
    // Even before B hears of it, B's writer re-checks consent in the database.
    let late = b
        .ingest(vec![row(&b, s, "after-withdrawal", &["analytics"], now())])
        .await
        .unwrap();
    assert_eq!(late, vec![RowOutcome::ConsentChanged]);
    assert!(
        eventually(PROPAGATION, || b.index().granted(&s).is_empty()).await,
        "B's index must drop the withdrawn purpose"
    );
    // B can change consent for a subject A created, and A hears of it.
    b.apply_consent(command(&b, "nia", &[("loyalty", Action::Grant)]))
        .await
        .unwrap();
    assert!(
        eventually(PROPAGATION, || a.index().granted(&s)
            == bits(&a, &["loyalty"]))
        .await
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_holds_across_nodes() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let a = Arc::new(db.open_store().await);
    let b = Arc::new(db.open_store().await);
    let s = a
        .apply_consent(command(&*a, "ola", &[("analytics", Action::Grant)]))
        .await
        .unwrap()
        .subject;
    let first = a
        .ingest(vec![row(&*a, s, "m", &["analytics"], now())])
        .await
        .unwrap();
    assert_eq!(first, vec![RowOutcome::Stored]);
    let retry = b
        .ingest(vec![row(&*b, s, "m", &["analytics"], now())])
        .await
        .unwrap();
    assert_eq!(retry, vec![RowOutcome::Duplicate]);
    // The same messages through both nodes at once: each stored exactly once.
    let batch = |st: &dyn Store| -> Vec<candor_store::IngestRow> {
        (0..50)
            .map(|i| row(st, s, &format!("both-{i}"), &["analytics"], now()))
            .collect()
    };
    let (ra, rb) = tokio::join!(a.ingest(batch(&*a)), b.ingest(batch(&*b)));
    let stored = ra
        .unwrap()
        .into_iter()
        .chain(rb.unwrap())
        .filter(|o| *o == RowOutcome::Stored)
        .count();
    assert_eq!(stored, 50);
    assert_eq!(a.stats().await.unwrap().events, 51);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_through_both_nodes_form_one_chain() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let nodes: Vec<Arc<dyn Store>> = vec![
        Arc::new(db.open_store().await),
        Arc::new(db.open_store().await),
    ];
    let mut tasks = Vec::new();
    for i in 0..60 {
        let node = nodes[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let s = &*node;
            let user = format!("n{i}");
            s.apply_consent(command(
                s,
                &user,
                &[("analytics", Action::Grant), ("loyalty", Action::Grant)],
            ))
            .await
            .unwrap();
            s.apply_consent(command(s, &user, &[("loyalty", Action::Withdraw)]))
                .await
                .unwrap();
        }));
    }
    // And the same new person through both at once: one subject, not two.
    let (x, y) = tokio::join!(
        nodes[0].apply_consent(command(&*nodes[0], "twin", &[("analytics", Action::Grant)])),
        nodes[1].apply_consent(command(&*nodes[1], "twin", &[("analytics", Action::Grant)]))
    );
    assert_eq!(x.unwrap().subject, y.unwrap().subject);
    for t in tasks {
        t.await.unwrap();
    }
    let mut records = Vec::new();
    loop {
        let page = nodes[1]
            .ledger_page(
                records
                    .last()
                    .map_or(0, |e: &candor_core::ledger::SealedEntry| e.entry.seq),
                500,
            )
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        records.extend(page);
    }
    let head = nodes[0].ledger_head().await.unwrap();
    assert_eq!(
        verify_chain(
            &records,
            head,
            &candor_core::ledger::KeyRing::single(signer().verifying_key())
        ),
        Ok(181)
    );
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_notification_is_repaired_by_the_periodic_resync() {
    let Some(mut db) = Postgres::new().await else {
        return;
    };
    db.options.resync_interval = Duration::from_millis(200);
    let a = db.open_store().await;
    let s = a
        .apply_consent(command(&a, "pia", &[("analytics", Action::Grant)]))
        .await
        .unwrap()
        .subject;
    // Change consent behind the store's back: no NOTIFY is sent.
    db.client()
        .await
        .execute(
            "UPDATE consent_state SET status = 'withdrawn' WHERE subject_id = $1",
            &[&&s.as_bytes()[..]],
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(2), || a.index().granted(&s).is_empty()).await,
        "the resync must notice the change"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listen_connection_reconnects_and_resyncs() {
    let Some(mut db) = Postgres::new().await else {
        return;
    };
    // No periodic resync within the test: only the reconnect can repair the cache.
    db.options.resync_interval = Duration::from_secs(3600);
    let a = db.open_store().await;
    let s = a
        .apply_consent(command(&a, "quinn", &[("analytics", Action::Grant)]))
        .await
        .unwrap()
        .subject;
    let c = db.client().await;
    c.execute(
        "UPDATE consent_state SET status = 'withdrawn' WHERE subject_id = $1",
        &[&&s.as_bytes()[..]],
    )
    .await
    .unwrap();
    // The LISTEN connection is opened in the background after `open` returns: wait
    // until the server shows it (a bounded poll, not a sleep), then cut it.
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let killed = loop {
        let killed: i64 = c
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'candor-listen' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if killed > 0 || std::time::Instant::now() >= end {
            break killed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(killed, 1);
    assert!(
        eventually(Duration::from_secs(3), || a.index().granted(&s).is_empty()).await,
        "reconnecting must resync the caches"
    );
    // And notifications flow again on the new connection.
    let b = db.open_store().await;
    b.apply_consent(command(&b, "quinn", &[("loyalty", Action::Grant)]))
        .await
        .unwrap();
    assert!(
        eventually(PROPAGATION, || a.index().granted(&s)
            == bits(&a, &["loyalty"]))
        .await
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_reach_the_other_node_after_refresh() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let a = db.open_store_with(Some(insights())).await;
    let b = db.open_store_with(Some(insights())).await;
    let s = subject(&a, "ria", IA).await;
    let used = |n| activity(0, FeatureKind::AppUsed, "games", n);
    a.ingest(vec![featured(&a, s, "r1", IA, vec![used(2)])])
        .await
        .unwrap();
    assert_eq!(
        features_of(&a, &s).await,
        vec![daily(0, FeatureKind::AppUsed, "games", 2)]
    );
    b.refresh_features().await.unwrap();
    assert_eq!(features_of(&b, &s).await, features_of(&a, &s).await);

    // B adds to the same feature: both end up with the stored total.
    b.ingest(vec![featured(
        &b,
        s,
        "r2",
        IA,
        vec![used(3), activity(0, FeatureKind::Browsed, "news", 1)],
    )])
    .await
    .unwrap();
    let total = vec![
        daily(0, FeatureKind::AppUsed, "games", 5),
        daily(0, FeatureKind::Browsed, "news", 1),
    ];
    assert_eq!(features_of(&b, &s).await, total);
    a.refresh_features().await.unwrap();
    assert_eq!(features_of(&a, &s).await, total);

    // A transaction that took its number before a later one, but commits after it,
    // is not missed by a refresh that ran in between.
    let mut c = db.client().await;
    let late = c.transaction().await.unwrap();
    late.batch_execute("SELECT pg_current_xact_id()")
        .await
        .unwrap();
    let day = daily(0, FeatureKind::Browsed, "late", 7).day.days() as i32;
    late.execute(
        "INSERT INTO insight_features (subject_id, day, kind, category, count, seq)
         VALUES ($1, $2, 2, 'late', 7, nextval('insight_seq'))",
        &[&&s.as_bytes()[..], &day],
    )
    .await
    .unwrap();
    a.ingest(vec![featured(&a, s, "r3", IA, vec![used(1)])])
        .await
        .unwrap();
    b.refresh_features().await.unwrap();
    let has_late = |st: &dyn Store| {
        sorted_features(st, &s)
            .iter()
            .any(|f| f.category.as_str() == "late")
    };
    assert_eq!(
        features_of(&b, &s).await[0].count,
        6,
        "the later commit is seen"
    );
    assert!(!has_late(&b), "not committed yet");
    late.commit().await.unwrap();
    b.refresh_features().await.unwrap();
    assert!(has_late(&b), "the earlier number, committed later, is read");
    b.refresh_features().await.unwrap();
    assert_eq!(features_of(&b, &s).await.len(), 3);

    // A withdrawal through A empties B's index through LISTEN, no refresh needed.
    a.apply_consent(command(&a, "ria", &[("insights", Action::Withdraw)]))
        .await
        .unwrap();
    assert!(features_of(&a, &s).await.is_empty());
    assert!(
        eventually(PROPAGATION, || b.features().features_of(&s).is_empty()).await,
        "B must drop the withdrawn subject"
    );
    b.refresh_features().await.unwrap();
    assert!(features_of(&b, &s).await.is_empty());
    a.shutdown().await;
    b.shutdown().await;
}

/// Retention on one node deletes the rows and prunes that node's index; the other node
/// prunes its own in its own pass (every node runs one), and no refresh in between
/// brings the deleted rows back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_prunes_its_own_index_in_its_retention_pass() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let a = db.open_store_with(Some(insights())).await;
    let b = db.open_store_with(Some(insights())).await;
    let s = subject(&a, "sia", IA).await;
    let t = now();
    let on = |days_ago| daily_at(t, days_ago, FeatureKind::AppUsed, "games", 1);
    a.ingest(vec![featured(
        &a,
        s,
        "s1",
        IA,
        [0, 10, 40]
            .into_iter()
            .map(|d| candor_insights::FeatureDelta::Activity(on(d)))
            .collect(),
    )])
    .await
    .unwrap();
    b.refresh_features().await.unwrap();
    let all = vec![on(40), on(10), on(0)];
    assert_eq!(features_of(&b, &s).await, all);

    let days = retention_days_with_insights(30);
    let report = a.retention(UnixMillis(t), &days).await.unwrap();
    assert_eq!(report.features_deleted, 1);
    assert_eq!(features_of(&a, &s).await, all[1..].to_vec());
    // B has not run its pass yet: it still holds the old day, and a refresh neither
    // removes it nor (the row being gone) could bring it back anywhere.
    b.refresh_features().await.unwrap();
    assert_eq!(features_of(&b, &s).await, all);
    a.refresh_features().await.unwrap();
    assert_eq!(features_of(&a, &s).await, all[1..].to_vec());
    // B's own pass finds no row left to delete and prunes its index all the same.
    let report = b.retention(UnixMillis(t), &days).await.unwrap();
    assert_eq!(report.features_deleted, 0);
    assert_eq!(features_of(&b, &s).await, all[1..].to_vec());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_charges_through_both_nodes_never_overspend() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let nodes: Vec<Arc<dyn Store>> = vec![
        Arc::new(db.open_store().await),
        Arc::new(db.open_store().await),
    ];
    nodes[0]
        .upsert_advertiser(advertiser("acme", 1))
        .await
        .unwrap();
    concurrent_charges_never_overspend(&nodes, "acme", "2026-11").await;
    concurrent_charges_never_overspend_the_total(&nodes).await;
    assert_eq!(
        nodes[1].reports(Some("acme"), 0, 100).await.unwrap().len(),
        10
    );
    for n in &nodes {
        n.shutdown().await;
    }
}

/// A withdrawal PostgreSQL picks as a deadlock victim is run again, not failed: here
/// another transaction holds the subject's feature rows (as a retention pass deleting old
/// days would) and then asks for the ledger head the withdrawal holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_aborted_by_a_deadlock_runs_again() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let a = Arc::new(db.open_store_with(Some(insights())).await);
    let s = subject(&*a, "dee", IA).await;
    let used = activity(0, FeatureKind::AppUsed, "games", 1);
    a.ingest(vec![featured(&*a, s, "d1", IA, vec![used])])
        .await
        .unwrap();
    assert_eq!(features_of(&*a, &s).await.len(), 1);

    let mut other = db.client().await;
    let t1 = other.transaction().await.unwrap();
    // A long timeout here, so that the store's transaction is the one whose deadlock
    // check (after the default 1 s) finds the cycle and is aborted.
    t1.batch_execute("SET LOCAL deadlock_timeout = '60s'")
        .await
        .unwrap();
    let key: &[u8] = &s.as_bytes()[..];
    t1.query(
        "SELECT 1 FROM insight_features WHERE subject_id = $1 FOR UPDATE",
        &[&key],
    )
    .await
    .unwrap();
    let withdrawal = {
        let a = a.clone();
        tokio::spawn(async move {
            a.apply_consent(command(&*a, "dee", &[("insights", Action::Withdraw)]))
                .await
        })
    };
    // Wait until the withdrawal (holding the ledger head) waits for those rows.
    let watch = db.client().await;
    assert!(
        waits_for_a_lock(&watch, "DELETE FROM insight_features%").await,
        "the withdrawal never reached the feature rows"
    );
    // Close the cycle. The withdrawal is aborted, this gets the head, and lets go.
    t1.query("SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE", &[])
        .await
        .unwrap();
    t1.rollback().await.unwrap();

    let out = withdrawal.await.unwrap().expect("the withdrawal ran again");
    assert_eq!(out.subject, s);
    assert!(features_of(&*a, &s).await.is_empty());
    let left: i64 = watch
        .query_one(
            "SELECT count(*) FROM insight_features WHERE subject_id = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    // Grant and withdrawal, each recorded once: the aborted attempt left nothing.
    let records = a.ledger_page(0, 100).await.unwrap();
    let head = a.ledger_head().await.unwrap();
    assert_eq!(
        verify_chain(
            &records,
            head,
            &candor_core::ledger::KeyRing::single(signer().verifying_key())
        ),
        Ok(3)
    );
}

/// Whether, within ten seconds, a session waits for a lock while running a statement
/// that matches `statement` (a LIKE pattern).
async fn waits_for_a_lock(watch: &tokio_postgres::Client, statement: &str) -> bool {
    let citus: bool = watch
        .query_one(
            "SELECT to_regclass('pg_catalog.citus_lock_waits') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // On Citus a wait for rows is on a worker, where the statement runs against a
    // shard: `citus_lock_waits` names it by the coordinator's statement. Waits for the
    // coordinator's own locks (advisory, its tables) show as on plain PostgreSQL.
    let query = if citus {
        "SELECT (SELECT count(*) FROM citus_lock_waits WHERE blocked_statement LIKE $1)
              + (SELECT count(*) FROM pg_stat_activity
                  WHERE wait_event_type = 'Lock' AND query LIKE $1)"
    } else {
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1"
    };
    // Bounded by time, not by polls: on Citus one poll asks every node. Well inside the
    // store's statement timeout, which would end the waiting statement.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let n: i64 = watch.query_one(query, &[&statement]).await.unwrap().get(0);
        if n > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// The audit log across advertisers never skips a report: one that took its id before
/// another advertiser's report committed, and commits after it, is still listed; a
/// listing waits for it rather than return a page that ends past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_never_skips_a_report_in_flight() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let a = Arc::new(db.open_store_with(Some(insights())).await);
    a.upsert_advertiser(advertiser("acme", 1)).await.unwrap();
    a.upsert_advertiser(advertiser("bolt", 2)).await.unwrap();
    // Hold acme's next report in its transaction after it has taken its id: a row with
    // that id and its first membership chunk makes its member insert wait.
    let mut raw = db.client().await;
    let t = raw.transaction().await.unwrap();
    let next: i64 = t
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
             FROM insight_reports_id_seq",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    t.execute(
        "INSERT INTO insight_report_members (advertiser_id, report_id, chunk, bits)
         VALUES ('acme', $1, 0, '\\x01')",
        &[&next],
    )
    .await
    .unwrap();
    let first = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut r = report("acme", "2026-11", EPS / 10, 0);
            r.members = vec![(0, vec![1])];
            a.record_report(r).await
        })
    };
    let watch = db.client().await;
    assert!(waits_for_a_lock(&watch, "INSERT INTO insight_report_members%").await);
    // bolt's report takes the next id and commits first.
    let second = a
        .record_report(report("bolt", "2026-11", EPS / 10, 0))
        .await
        .unwrap();
    assert_eq!(second.id, next + 1);
    let listing = {
        let a = a.clone();
        tokio::spawn(async move { a.reports(None, 0, 100).await })
    };
    assert!(
        waits_for_a_lock(&watch, "SELECT pg_advisory_xact_lock(%").await,
        "the listing did not wait for the report in flight"
    );
    t.rollback().await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().id, next);
    let ids: Vec<i64> = listing
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![next, next + 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_on_one_node_is_forgotten_by_the_other() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let a = db.open_store_with(Some(insights())).await;
    let b = db.open_store_with(Some(insights())).await;
    let s = subject(&a, "rhea", &["analytics", "insights"]).await;
    a.ingest(vec![featured(
        &a,
        s,
        "rhea-1",
        &["analytics", "insights"],
        vec![activity(0, FeatureKind::AppUsed, "games", 1)],
    )])
    .await
    .unwrap();
    // B knows everything of Rhea: her identity, consent, key and features.
    assert!(
        eventually(PROPAGATION, || b.resolve(&identity("rhea").hash) == Some(s)
            && !b.index().granted(&s).is_empty())
        .await
    );
    assert!(b.subject_key(s).await.unwrap().is_some());
    assert_eq!(features_of(&b, &s).await.len(), 1);

    a.erase(crate::erasure::erasure(s)).await.unwrap();
    assert!(
        eventually(PROPAGATION, || b.resolve(&identity("rhea").hash).is_none()
            && b.index().granted(&s).is_empty()
            && b.held(&s) == 0
            && b.features().features_of(&s).is_empty())
        .await,
        "B must forget the erased subject"
    );
    // Nor does a full resync or a feature refresh on B bring anything back.
    b.refresh_features().await.unwrap();
    assert!(b.features().features_of(&s).is_empty());
    assert!(b.subject_key(s).await.unwrap().is_none());
    // Rhea comes back through B: a new subject, nothing granted.
    let back = b
        .apply_consent(command(&b, "rhea", &[("loyalty", Action::Refuse)]))
        .await
        .unwrap();
    assert!(back.created && back.subject != s && back.granted.is_empty());
    let records = crate::conformance::whole_ledger(&a).await;
    assert!(verify_chain(
        &records,
        a.ledger_head().await.unwrap(),
        &candor_core::ledger::KeyRing::single(signer().verifying_key())
    )
    .is_ok());
    a.shutdown().await;
    b.shutdown().await;
}

/// A node that has not heard of an erasure yet (its notification is not in) must not
/// act on the subject its stale cache still resolves to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_stale_cache_does_not_revive_an_erased_subject() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let a = db.open_store().await;
    let b = db.open_store().await;
    let s = subject(&a, "ivo", &["analytics"]).await;
    assert!(eventually(PROPAGATION, || b.resolve(&identity("ivo").hash) == Some(s)).await);
    // Behind the store's back, as if A's erasure had committed and B not yet heard:
    // the rows go without a notification.
    let c = db.client().await;
    let sid = &s.as_bytes()[..];
    for t in ["subjects", "identities", "consent_state"] {
        c.execute(&format!("DELETE FROM {t} WHERE subject_id = $1"), &[&sid])
            .await
            .unwrap();
    }
    c.execute("DELETE FROM identity_lookup WHERE subject_id = $1", &[&sid])
        .await
        .unwrap();
    assert_eq!(b.resolve(&identity("ivo").hash), Some(s), "B is stale");
    let back = b
        .apply_consent(command(&b, "ivo", &[("analytics", Action::Grant)]))
        .await
        .unwrap();
    assert!(back.created && back.subject != s);
    assert_eq!(b.resolve(&identity("ivo").hash), Some(back.subject));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loyalty_through_both_nodes_stays_consistent() {
    let Some(db) = Postgres::new().await else {
        return;
    };
    let nodes: Vec<Arc<dyn Store>> = vec![
        Arc::new(db.open_store().await),
        Arc::new(db.open_store().await),
    ];
    crate::loyalty::hammer(&nodes).await;
    for n in &nodes {
        n.shutdown().await;
    }
}
