//! Citus only (`CANDOR_TEST_BACKEND=citus`, run by `scripts/test-all` on a coordinator
//! with two workers): every table is placed as `schema::PLACEMENT` says, one subject's
//! rows live on one worker, and a query for one subject touches one shard, so adding
//! workers adds capacity. On plain PostgreSQL these say so and return; under
//! `CANDOR_TEST_BACKEND=citus` the harness refuses a database that is not Citus.

use crate::fixtures::*;
use crate::harness::Postgres;
use crate::loyalty::{earn, member, op};
use candor_core::consent::Action;
use candor_core::field::{FieldName, Provenance};
use candor_core::{Sensitive, SubjectId, UnixMillis};
use candor_insights::FeatureKind;
use candor_store::postgres::provision;
use candor_store::postgres::schema::{Placement, PLACEMENT};
use candor_store::{FieldWrite, Store};

/// The test database, if it is a Citus cluster.
async fn citus() -> Option<Postgres> {
    let db = Postgres::new().await?;
    let citus = matches!(
        provision::server(&db.url).await.unwrap(),
        provision::Server::Citus { .. }
    );
    if citus {
        Some(db)
    } else {
        eprintln!("not a Citus cluster: this test runs under CANDOR_TEST_BACKEND=citus");
        None
    }
}

/// (partition method, distribution column, co-location group, replication model) of
/// `table` in Citus' metadata, or `None` for a table Citus does not manage.
async fn metadata(
    c: &tokio_postgres::Client,
    table: &str,
) -> Option<(String, Option<String>, i32, String)> {
    c.query_opt(
        "SELECT partmethod::text,
                CASE WHEN partkey IS NULL THEN NULL
                     ELSE column_to_column_name(logicalrelid, partkey) END,
                colocationid, repmodel::text
           FROM pg_dist_partition WHERE logicalrelid = $1::text::regclass",
        &[&table],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_is_placed_as_the_schema_says() {
    let Some(db) = citus().await else { return };
    let store = db.open_store().await;
    let c = db.client().await;
    let group_of = |m: &Option<(String, Option<String>, i32, String)>| m.as_ref().unwrap().2;
    let subjects = group_of(&metadata(&c, "subjects").await);
    let reports = group_of(&metadata(&c, "insight_reports").await);
    assert_ne!(subjects, reports);
    for (table, placement) in PLACEMENT {
        let m = metadata(&c, table).await;
        match placement {
            Placement::BySubject | Placement::ByAdvertiser | Placement::ByKey(_) => {
                let (method, column, group, _) =
                    m.unwrap_or_else(|| panic!("{table} is not distributed"));
                assert_eq!(method, "h", "{table} is hash-distributed");
                let (want_column, want_group) = match placement {
                    Placement::BySubject => ("subject_id", Some(subjects)),
                    Placement::ByAdvertiser => ("advertiser_id", Some(reports)),
                    Placement::ByKey(column) => (*column, None),
                    _ => unreachable!(),
                };
                assert_eq!(column.as_deref(), Some(want_column), "{table}");
                if let Some(g) = want_group {
                    assert_eq!(group, g, "{table} is co-located with its anchor");
                } else {
                    assert!(group != subjects && group != reports, "{table}");
                }
            }
            Placement::Reference => {
                let (method, _, _, model) = m.unwrap_or_else(|| panic!("{table}"));
                assert_eq!((method.as_str(), model.as_str()), ("n", "t"), "{table}");
            }
            Placement::Coordinator => assert!(m.is_none(), "{table} stays on the coordinator"),
        }
    }
    // Day partitions made on demand are distributed like their parent.
    let s = store
        .apply_consent(command(&store, "pia", &[("analytics", Action::Grant)]))
        .await
        .unwrap()
        .subject;
    store
        .ingest(vec![row(&store, s, "p1", &["analytics"], now())])
        .await
        .unwrap();
    let partitions: Vec<String> = c
        .query(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!partitions.is_empty());
    for p in &partitions {
        let (_, column, group, _) = metadata(&c, p).await.unwrap();
        assert_eq!(
            (column.as_deref(), group),
            (Some("subject_id"), subjects),
            "{p}"
        );
    }
    store.shutdown().await;
}

/// The worker (host:port) holding `subject`'s shard of `table`, and the shard's name.
async fn shard_of(
    c: &tokio_postgres::Client,
    table: &str,
    subject: &SubjectId,
) -> (String, String) {
    let key = hex::encode(subject.as_bytes());
    let r = c
        .query_one(
            &format!(
                "SELECT s.nodename || ':' || s.nodeport, s.shard_name::text
                   FROM citus_shards s
                  WHERE s.shardid = get_shard_id_for_distribution_column(
                          '{table}', decode('{key}', 'hex'))"
            ),
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subjects_rows_live_on_one_worker_and_its_queries_touch_one_shard() {
    let Some(db) = citus().await else { return };
    let store = db.open_store_with(Some(insights())).await;
    // Someone with a bit of everything: consent, an identifier, events with features,
    // a volunteered field, loyalty points.
    let mut people = Vec::new();
    for name in ["ada", "bo", "cy", "di", "ed", "flo"] {
        let s = member(&store, name).await;
        store
            .apply_consent(command(
                &store,
                name,
                &[
                    ("analytics", Action::Grant),
                    ("insights", Action::Grant),
                    ("personalization", Action::Grant),
                ],
            ))
            .await
            .unwrap();
        let used = activity(0, FeatureKind::AppUsed, "games", 2);
        store
            .ingest(vec![featured(
                &store,
                s,
                &format!("{name}-1"),
                &["analytics", "insights"],
                vec![used],
            )])
            .await
            .unwrap();
        store
            .set_field(FieldWrite {
                subject: s,
                field: FieldName::parse("shoe_size").unwrap(),
                value: Sensitive::new("42".to_owned()),
                provenance: Provenance::Volunteered,
                time_ms: UnixMillis(now()),
            })
            .await
            .unwrap();
        store
            .loyalty(op(s, &format!("{name}-order"), earn(10)))
            .await
            .unwrap();
        people.push(s);
    }
    store.refresh_features().await.unwrap();
    let c = db.client().await;
    let nodes = provision::node_urls(&db.url).await.unwrap();
    let workers: Vec<tokio_postgres::Client> = {
        let mut v = Vec::new();
        for url in &nodes[1..] {
            let (w, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            // Shards are hidden from ordinary sessions on a worker.
            w.batch_execute("SET citus.show_shards_for_app_name_prefixes = '*'")
                .await
                .unwrap();
            v.push(w);
        }
        v
    };
    let by_subject: Vec<&str> = PLACEMENT
        .iter()
        .filter(|(_, p)| *p == Placement::BySubject)
        .map(|(t, _)| *t)
        .collect();
    // Tables the activity above must have written for every person.
    let written = [
        "subjects",
        "identities",
        "consent_state",
        "events",
        "insight_features",
        "volunteered_fields",
        "loyalty_accounts",
        "loyalty_txns",
    ];
    let mut seen_workers = std::collections::HashSet::new();
    for s in &people {
        let (home, _) = shard_of(&c, "subjects", s).await;
        seen_workers.insert(home.clone());
        let key: &[u8] = &s.as_bytes()[..];
        for table in &by_subject {
            let (node, shard) = shard_of(&c, table, s).await;
            assert_eq!(
                node, home,
                "{table} of one subject is on its subjects' worker"
            );
            // And the rows really are there, in that shard on that worker, and on no
            // other worker.
            let mut found = Vec::new();
            let shards = c
                .query(
                    "SELECT shard_name::text, nodename || ':' || nodeport FROM citus_shards
                      WHERE table_name = $1::text::regclass",
                    &[table],
                )
                .await
                .unwrap();
            for r in shards {
                let (sh, at): (String, String) = (r.get(0), r.get(1));
                let w = nodes[1..]
                    .iter()
                    .position(|url| url.contains(&format!("@{at}/")))
                    .map(|i| &workers[i])
                    .unwrap_or_else(|| panic!("{sh} on {at}, not a worker"));
                let n: i64 = w
                    .query_one(
                        &format!("SELECT count(*) FROM {sh} WHERE subject_id = $1"),
                        &[&key],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if n > 0 {
                    found.push((at == node, sh));
                }
            }
            if written.contains(table) {
                assert_eq!(found.len(), 1, "{table}: {found:?}");
                assert_eq!(found[0], (true, shard.clone()), "{table}");
            } else {
                assert!(found.iter().all(|(here, _)| *here), "{table}: {found:?}");
            }
        }
    }
    // Six people hashed over two workers land on both (1 in 32 they would not).
    assert_eq!(seen_workers.len(), 2, "people are spread over both workers");

    // A query for one subject is routed to one shard; one across subjects goes to all.
    let key = hex::encode(people[0].as_bytes());
    let tasks = |sql: String| {
        let c = &c;
        async move {
            let plan: Vec<String> = c
                .query(&format!("EXPLAIN {sql}"), &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let line = plan
                .iter()
                .find(|l| l.contains("Task Count:"))
                .unwrap_or_else(|| panic!("no Citus task count in {plan:?}"))
                .clone();
            line.rsplit(':')
                .next()
                .unwrap()
                .trim()
                .parse::<u32>()
                .unwrap()
        }
    };
    let one = format!("decode('{key}', 'hex')");
    for sql in [
        format!("SELECT purpose_id, status FROM consent_state WHERE subject_id = {one}"),
        format!("SELECT id, sealed FROM events WHERE subject_id = {one} ORDER BY id"),
        format!("SELECT day, count FROM insight_features WHERE subject_id = {one}"),
        format!("SELECT balance FROM loyalty_accounts WHERE subject_id = {one}"),
        format!("SELECT field FROM volunteered_fields WHERE subject_id = {one}"),
        format!("DELETE FROM insight_features WHERE subject_id = {one}"),
    ] {
        assert_eq!(tasks(sql.clone()).await, 1, "{sql}");
    }
    let shards: i64 = c
        .query_one(
            "SELECT count(*) FROM citus_shards WHERE table_name = 'consent_state'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(shards >= 2);
    assert_eq!(
        i64::from(tasks("SELECT count(*) FROM consent_state".into()).await),
        shards
    );
    store.shutdown().await;
}
