//! Audience insights behaviour every backend must have: features written only for what
//! the insights purpose allows, absolute counts, reload, withdrawal, retention, declared
//! fields, budget charges and report membership.

use crate::fixtures::*;
use crate::harness::Backend;
use candor_core::consent::Action;
use candor_core::SubjectId;
use candor_core::UnixMillis;
use candor_insights::{membership, FeatureDelta, FeatureKind};
use candor_store::{
    Advertiser, BudgetLimit, NewReport, RowOutcome, Spend, SpendScope, Store, StoreError, TotalCap,
};
use std::sync::Arc;

/// Creates `user`'s subject with `purposes` granted.
pub async fn subject(store: &dyn Store, user: &str, purposes: &[&str]) -> SubjectId {
    let changes: Vec<(&str, Action)> = purposes.iter().map(|p| (*p, Action::Grant)).collect();
    store
        .apply_consent(command(store, user, &changes))
        .await
        .unwrap()
        .subject
}

pub const IA: &[&str] = &["insights", "analytics"];

pub async fn features_are_written_only_under_the_insights_purpose(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    let fia = subject(s, "fia", IA).await;
    let gio = subject(s, "gio", &["analytics"]).await;
    let games = || vec![activity(0, FeatureKind::AppUsed, "games", 1)];
    let out = s
        .ingest(vec![
            featured(s, fia, "f1", IA, games()),
            // A retry of the same message: a duplicate adds nothing.
            featured(s, fia, "f1", IA, games()),
            // The gate did not allow this event for insights.
            featured(s, fia, "f2", &["analytics"], games()),
            // Allowed by the gate, but gio never granted insights: stored for
            // analytics only, and no features.
            featured(s, gio, "g1", IA, games()),
            featured(s, gio, "g2", &["insights"], games()),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            RowOutcome::Stored,
            RowOutcome::Duplicate,
            RowOutcome::Stored,
            RowOutcome::Stored,
            RowOutcome::ConsentChanged,
        ]
    );
    let retry = s
        .ingest(vec![featured(s, fia, "f1", IA, games())])
        .await
        .unwrap();
    assert_eq!(retry, vec![RowOutcome::Duplicate]);
    assert_eq!(
        features_of(s, &fia).await,
        vec![daily(0, FeatureKind::AppUsed, "games", 1)]
    );
    assert!(features_of(s, &gio).await.is_empty());
    let stats = index_stats(s).await;
    assert_eq!((stats.subjects, stats.daily_rows), (1, 1));
    assert_eq!(b.feature_rows(s, fia).await, 1);
    assert_eq!(b.feature_rows(s, gio).await, 0);
    assert!(
        b.dense(s, gio).await.is_none(),
        "no number without a feature"
    );
    assert!(b.dense(s, fia).await.is_some());
    store.shutdown().await;

    // Without insights configured the same rows store events and no features.
    let store = b.open().await;
    let s = &*store;
    assert_eq!(index_stats(s).await.subjects, 0, "an empty index");
    let out = s
        .ingest(vec![featured(s, fia, "f3", IA, games())])
        .await
        .unwrap();
    assert_eq!(out, vec![RowOutcome::Stored]);
    assert_eq!(b.feature_rows(s, fia).await, 1, "features are ignored");
    store.shutdown().await;
}

pub async fn feature_counts_are_absolute(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    let ann = subject(s, "ann", IA).await;
    let used = |n| activity(1, FeatureKind::AppUsed, "games", n);
    // Several rows of one batch hitting one feature, and a row with two deltas for it.
    s.ingest(vec![
        featured(s, ann, "a1", IA, vec![used(1)]),
        featured(s, ann, "a2", IA, vec![used(2), used(1)]),
        featured(
            s,
            ann,
            "a3",
            IA,
            // A zero count stores nothing.
            vec![
                activity(0, FeatureKind::Browsed, "news", 1),
                activity(2, FeatureKind::Browsed, "zero", 0),
            ],
        ),
    ])
    .await
    .unwrap();
    assert_eq!(
        features_of(s, &ann).await,
        vec![
            daily(1, FeatureKind::AppUsed, "games", 4),
            daily(0, FeatureKind::Browsed, "news", 1),
        ]
    );
    // Later batches, some at once, keep adding to the stored count; the index holds the
    // stored total, not the last delta.
    s.ingest(vec![featured(s, ann, "a4", IA, vec![used(1)])])
        .await
        .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let s = &*store;
                let rows = (0..5)
                    .map(|i| featured(s, ann, &format!("c{t}-{i}"), IA, vec![used(1)]))
                    .collect();
                s.ingest(rows).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().iter().all(|o| *o == RowOutcome::Stored));
    }
    assert_eq!(
        features_of(s, &ann).await,
        vec![
            daily(1, FeatureKind::AppUsed, "games", 25),
            daily(0, FeatureKind::Browsed, "news", 1),
        ]
    );
    assert_eq!(b.feature_rows(s, ann).await, 2);
    store.shutdown().await;
}

pub async fn features_reload_after_reopen(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    let users: Vec<SubjectId> = {
        let mut v = Vec::new();
        for u in ["u0", "u1", "u2"] {
            v.push(subject(s, u, IA).await);
        }
        v
    };
    let mut rows = Vec::new();
    for (i, u) in users.iter().enumerate() {
        for d in 0..3 {
            rows.push(featured(
                s,
                *u,
                &format!("m{i}-{d}"),
                IA,
                vec![
                    activity(
                        d,
                        FeatureKind::AppUsed,
                        &format!("cat{}", (i + d as usize) % 4),
                        1,
                    ),
                    activity(d, FeatureKind::AppInstalled, "tools", 2),
                ],
            ));
        }
    }
    rows.push(featured(s, users[0], "decl", IA, vec![declare("25-34")]));
    s.ingest(rows).await.unwrap();
    s.refresh_features().await.unwrap();
    let before: Vec<_> = users.iter().map(|u| sorted_features(s, u)).collect();
    let declared_before: Vec<_> = users.iter().map(|u| s.features().declared_of(u)).collect();
    assert_eq!(
        declared_before,
        vec![
            vec![("age_band".to_owned(), "25-34".to_owned())],
            vec![],
            vec![]
        ]
    );
    let stats = index_stats(s).await;
    assert_eq!(stats.subjects, 3);
    assert_eq!(stats.daily_rows, 18);
    store.shutdown().await;
    drop(store);

    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    s.refresh_features().await.unwrap();
    let after: Vec<_> = users.iter().map(|u| sorted_features(s, u)).collect();
    assert_eq!(after, before);
    let declared_after: Vec<_> = users.iter().map(|u| s.features().declared_of(u)).collect();
    assert_eq!(declared_after, declared_before);
    assert_eq!(index_stats(s).await, stats);
    assert_eq!(b.declared(s, users[0]).await, declared_before[0]);
    store.shutdown().await;
}

pub async fn withdrawal_deletes_features(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    let ida = subject(s, "ida", IA).await;
    let jon = subject(s, "jon", IA).await;
    let kim = subject(s, "kim", IA).await;
    let games = |n| {
        vec![
            activity(0, FeatureKind::AppUsed, "games", n),
            declare("18-24"),
        ]
    };
    s.ingest(vec![
        featured(s, ida, "i1", IA, games(3)),
        featured(s, jon, "j1", IA, games(1)),
        featured(s, kim, "k1", IA, games(1)),
    ])
    .await
    .unwrap();
    let ida_dense = b.dense(s, ida).await;
    assert_eq!(index_stats(s).await.subjects, 3);

    // Withdrawing analytics changes nothing; withdrawing insights deletes.
    s.apply_consent(command(s, "ida", &[("analytics", Action::Withdraw)]))
        .await
        .unwrap();
    assert_eq!(features_of(s, &ida).await.len(), 1);
    s.apply_consent(command(s, "ida", &[("insights", Action::Withdraw)]))
        .await
        .unwrap();
    // Through the atomic batch path, and as a refusal of what was given.
    s.apply_consents_atomically(vec![command(s, "jon", &[("insights", Action::Refuse)])])
        .await
        .unwrap();
    assert_eq!(
        declared_of(s, &kim).await,
        vec![("age_band".to_owned(), "18-24".to_owned())]
    );
    for gone in [ida, jon] {
        assert!(features_of(s, &gone).await.is_empty());
        assert!(declared_of(s, &gone).await.is_empty());
        assert_eq!(b.feature_rows(s, gone).await, 0);
        assert!(b.declared(s, gone).await.is_empty());
    }
    assert_eq!(index_stats(s).await.subjects, 1);
    assert_eq!(
        b.dense(s, ida).await,
        ida_dense,
        "the number stays for past reports"
    );
    // A later event allowed for insights by a stale gate adds nothing.
    let late = s
        .ingest(vec![featured(s, ida, "i2", &["insights"], games(1))])
        .await
        .unwrap();
    assert_eq!(late, vec![RowOutcome::ConsentChanged]);
    store.shutdown().await;
    drop(store);

    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    assert!(features_of(s, &ida).await.is_empty());
    assert_eq!(features_of(s, &kim).await.len(), 1);
    assert_eq!(index_stats(s).await.subjects, 1);
    // Granting again starts from nothing, under the same number.
    s.apply_consent(command(s, "ida", &[("insights", Action::Grant)]))
        .await
        .unwrap();
    s.ingest(vec![featured(s, ida, "i3", IA, games(1))])
        .await
        .unwrap();
    assert_eq!(
        features_of(s, &ida).await,
        vec![daily(0, FeatureKind::AppUsed, "games", 1)]
    );
    assert_eq!(b.dense(s, ida).await, ida_dense);
    store.shutdown().await;
}

/// The event log is the record of every feature change: what lies past the features'
/// watermark (as a crash between an ingest's commit and the derivation leaves it) is
/// applied at open, exactly once, and only where the insights purpose still allows it.
pub async fn features_past_the_watermark_are_derived_once(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    let (ivy, joe) = (subject(s, "ivy", IA).await, subject(s, "joe", IA).await);
    let used = |n| activity(0, FeatureKind::AppUsed, "games", n);
    s.ingest(vec![
        featured(s, ivy, "v1", IA, vec![used(2), declare("25-34")]),
        featured(s, ivy, "v2", IA, vec![used(3)]),
        featured(s, joe, "j1", IA, vec![used(1), declare("18-24")]),
        // Stored for analytics only: its deltas never count.
        featured(s, joe, "j2", &["analytics"], vec![used(100)]),
    ])
    .await
    .unwrap();
    // joe withdraws insights, then grants it again: what he sent before stays out.
    let joe_upto = s
        .events_page(0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.subject == joe)
        .map(|e| e.id)
        .max()
        .unwrap();
    let bit = s.purpose_bits()[&candor_core::PurposeId::parse("insights").unwrap()];
    s.apply_consent(command(s, "joe", &[("insights", Action::Withdraw)]))
        .await
        .unwrap();
    s.apply_consent(command(s, "joe", &[("insights", Action::Grant)]))
        .await
        .unwrap();
    s.ingest(vec![featured(s, joe, "j3", IA, vec![used(4)])])
        .await
        .unwrap();
    let expect = |ivy_n, joe_n| {
        (
            vec![daily(0, FeatureKind::AppUsed, "games", ivy_n)],
            vec![daily(0, FeatureKind::AppUsed, "games", joe_n)],
        )
    };
    let seen = |s: &dyn Store| (sorted_features(s, &ivy), sorted_features(s, &joe));
    s.refresh_features().await.unwrap();
    assert_eq!(seen(s), expect(5, 4));
    store.shutdown().await;
    drop(store);

    // Everything derived is lost; the log is not. And the sweeper had not yet rewritten
    // joe's rows: only his withdrawal's floor keeps them out.
    b.forget_derived_features().await;
    b.unsweep(joe, bit, joe_upto).await;
    assert_eq!(b.stored_feature_rows(ivy).await, 0);
    for _ in 0..2 {
        let store = b.open_with(Some(insights())).await;
        let s = &*store;
        s.refresh_features().await.unwrap();
        assert_eq!(
            seen(s),
            expect(5, 4),
            "applied once, however often reopened"
        );
        assert_eq!(b.stored_feature_rows(ivy).await, 1);
        assert_eq!(
            declared_of(s, &ivy).await,
            vec![("age_band".to_owned(), "25-34".to_owned())]
        );
        assert!(
            declared_of(s, &joe).await.is_empty(),
            "declared before the withdrawal"
        );
        store.shutdown().await;
    }
}

/// Rows left from a time insights were not configured (a withdrawal then deleted
/// nothing) are neither loaded nor brought back by a new grant.
pub async fn leftovers_from_unconfigured_times_never_return(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    let lea = subject(s, "lea", IA).await;
    s.ingest(vec![featured(
        s,
        lea,
        "l1",
        IA,
        vec![activity(0, FeatureKind::Browsed, "news", 5)],
    )])
    .await
    .unwrap();
    store.shutdown().await;
    drop(store);
    let store = b.open().await;
    store
        .apply_consent(command(&*store, "lea", &[("insights", Action::Withdraw)]))
        .await
        .unwrap();
    store.shutdown().await;
    drop(store);
    assert_eq!(
        b.stored_feature_rows(lea).await,
        1,
        "nothing knew to delete them"
    );

    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    assert!(
        features_of(s, &lea).await.is_empty(),
        "not loaded: no grant"
    );
    s.apply_consent(command(s, "lea", &[("insights", Action::Grant)]))
        .await
        .unwrap();
    assert_eq!(b.feature_rows(s, lea).await, 0, "deleted by the new grant");
    s.ingest(vec![featured(
        s,
        lea,
        "l2",
        IA,
        vec![activity(0, FeatureKind::Browsed, "news", 1)],
    )])
    .await
    .unwrap();
    assert_eq!(
        features_of(s, &lea).await,
        vec![daily(0, FeatureKind::Browsed, "news", 1)]
    );
    store.shutdown().await;
}

/// A subject's shared declared fields in the table and in the index.
async fn table_and_index(
    b: &dyn Backend,
    s: &dyn Store,
    who: SubjectId,
) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let index = declared_of(s, &who).await;
    (b.declared(s, who).await, index)
}

/// Subjects and daily rows in the index.
async fn counts(s: &dyn Store) -> (usize, usize) {
    let st = index_stats(s).await;
    (st.subjects, st.daily_rows)
}

pub async fn declared_fields_set_and_clear(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    let max = subject(s, "max", IA).await;
    let age = |v: &str| vec![("age_band".to_owned(), v.to_owned())];
    // The table and the index hold the same shared fields.
    s.ingest(vec![featured(s, max, "d1", IA, vec![declare("25-34")])])
        .await
        .unwrap();
    assert_eq!(
        table_and_index(b, s, max).await,
        (age("25-34"), age("25-34"))
    );
    assert_eq!(
        index_stats(s).await.subjects,
        1,
        "a declared field is enough"
    );
    s.ingest(vec![featured(s, max, "d2", IA, vec![undeclare()])])
        .await
        .unwrap();
    assert_eq!(table_and_index(b, s, max).await, (vec![], vec![]));
    // Within one batch the last word counts.
    s.ingest(vec![
        featured(s, max, "d3", IA, vec![declare("18-24")]),
        featured(s, max, "d4", IA, vec![undeclare()]),
        featured(s, max, "d5", IA, vec![declare("25-34")]),
    ])
    .await
    .unwrap();
    assert_eq!(
        table_and_index(b, s, max).await,
        (age("25-34"), age("25-34"))
    );
    s.ingest(vec![
        featured(s, max, "d6", IA, vec![declare("18-24")]),
        featured(s, max, "d7", IA, vec![undeclare()]),
    ])
    .await
    .unwrap();
    assert_eq!(table_and_index(b, s, max).await, (vec![], vec![]));
    // Un-sharing what was never shared writes nothing.
    let ned = subject(s, "ned", IA).await;
    s.ingest(vec![featured(s, ned, "n1", IA, vec![undeclare()])])
        .await
        .unwrap();
    assert_eq!(table_and_index(b, s, ned).await, (vec![], vec![]));
    s.ingest(vec![featured(s, max, "d8", IA, vec![declare("18-24")])])
        .await
        .unwrap();
    assert_eq!(
        table_and_index(b, s, max).await,
        (age("18-24"), age("18-24"))
    );
    store.shutdown().await;
    drop(store);
    // Reloaded from the tables, the index holds the last word, and nothing for ned.
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    assert_eq!(
        table_and_index(b, s, max).await,
        (age("18-24"), age("18-24"))
    );
    assert_eq!(table_and_index(b, s, ned).await, (vec![], vec![]));
    store.shutdown().await;
}

/// Features expire with the insights purpose's retention, in the tables and the index
/// alike; declared fields (current state, not history) do not.
pub async fn features_expire_with_retention(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    // One clock for the whole test: the features' days are counted from it, so the date
    // changing while the test runs cannot move them across the cutoff.
    let t = now();
    let on = |days_ago, category: &str| daily_at(t, days_ago, FeatureKind::AppUsed, category, 1);
    let rows = |feats: &[(i64, &str)]| -> Vec<FeatureDelta> {
        feats
            .iter()
            .map(|(d, c)| FeatureDelta::Activity(on(*d, c)))
            .collect()
    };
    let ann = subject(s, "ann", IA).await;
    let bob = subject(s, "bob", IA).await;
    let cid = subject(s, "cid", IA).await;
    let mut bob_rows = rows(&[(31, "games"), (60, "news")]);
    bob_rows.push(declare("18-24"));
    s.ingest(vec![
        // Day 30 is the oldest a 30-day retention keeps; day 31 the newest it drops.
        featured(
            s,
            ann,
            "a1",
            IA,
            rows(&[
                (0, "games"),
                (29, "games"),
                (30, "news"),
                (31, "news"),
                (45, "games"),
            ]),
        ),
        featured(s, bob, "b1", IA, bob_rows),
        featured(s, cid, "c1", IA, rows(&[(90, "games")])),
    ])
    .await
    .unwrap();
    assert_eq!(index_stats(s).await.daily_rows, 8);
    let events = s.stats().await.unwrap().events;

    let report = s
        .retention(UnixMillis(t), &retention_days_with_insights(30))
        .await
        .unwrap();
    assert_eq!(report.features_deleted, 5, "{report:?}");
    assert_eq!(report.events_deleted, 0, "the events are recent");
    assert_eq!(s.stats().await.unwrap().events, events);
    let ann_kept = vec![on(30, "news"), on(29, "games"), on(0, "games")];
    assert_eq!(features_of(s, &ann).await, ann_kept);
    assert_eq!(b.feature_rows(s, ann).await, 3);
    // bob keeps only his declared field; cid, with nothing left, leaves the index.
    assert!(features_of(s, &bob).await.is_empty());
    assert_eq!(b.feature_rows(s, bob).await, 0);
    let bob_declared = vec![("age_band".to_owned(), "18-24".to_owned())];
    assert_eq!(declared_of(s, &bob).await, bob_declared);
    assert_eq!(b.declared(s, bob).await, bob_declared);
    assert_eq!(b.feature_rows(s, cid).await, 0);
    // Subjects and rows, not categories: interned names stay (there are few, and a name
    // says nothing about anyone).
    assert_eq!(counts(s).await, (2, 3));
    // Nothing more at the same instant, nor anywhere in its day.
    let again = s
        .retention(
            UnixMillis(t - t.rem_euclid(DAY_MS)),
            &retention_days_with_insights(30),
        )
        .await
        .unwrap();
    assert_eq!(again.features_deleted, 0);
    assert_eq!(counts(s).await, (2, 3));
    store.shutdown().await;
    drop(store);

    // Reloaded from the pruned tables, the index is what it was.
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    assert_eq!(features_of(s, &ann).await, ann_kept);
    assert!(features_of(s, &cid).await.is_empty());
    assert_eq!(declared_of(s, &bob).await, bob_declared);
    assert_eq!(counts(s).await, (2, 3));

    // A day later, day 30 has become day 31.
    let report = s
        .retention(UnixMillis(t + DAY_MS), &retention_days_with_insights(30))
        .await
        .unwrap();
    assert_eq!(report.features_deleted, 1);
    assert_eq!(features_of(s, &ann).await, ann_kept[1..].to_vec());
    assert_eq!(b.feature_rows(s, ann).await, 2);

    // New features keep coming in, and a purpose without a retention period keeps none.
    s.ingest(vec![featured(s, ann, "a2", IA, rows(&[(0, "tools")]))])
        .await
        .unwrap();
    assert_eq!(features_of(s, &ann).await.len(), 3);
    let report = s
        .retention(UnixMillis(t + DAY_MS), &retention_days())
        .await
        .unwrap();
    assert_eq!(report.features_deleted, 3);
    assert!(features_of(s, &ann).await.is_empty());
    assert_eq!(b.feature_rows(s, ann).await, 0);
    assert_eq!(counts(s).await, (1, 0), "bob, for his declared field");
    store.shutdown().await;
    drop(store);

    let store = b.open_with(Some(insights())).await;
    assert_eq!(counts(&*store).await, (1, 0));
    assert_eq!(declared_of(&*store, &bob).await, bob_declared);
    store.shutdown().await;

    // Without insights configured, retention leaves feature rows alone (a new grant is
    // what deletes leftovers).
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    s.ingest(vec![featured(s, ann, "a3", IA, rows(&[(40, "games")]))])
        .await
        .unwrap();
    store.shutdown().await;
    drop(store);
    let store = b.open().await;
    let report = store
        .retention(UnixMillis(t), &retention_days_with_insights(30))
        .await
        .unwrap();
    assert_eq!(report.features_deleted, 0);
    assert_eq!(b.feature_rows(&*store, ann).await, 1);
    store.shutdown().await;
}

pub const EPS: i64 = 1_000_000_000; // ε = 1 in nano units
pub const DELTA: i64 = 1_000_000_000_000; // δ = 1e-6 in atto units

pub fn advertiser(id: &str, key: u8) -> Advertiser {
    Advertiser {
        id: id.into(),
        name: format!("{id} Inc."),
        key_hash: [key; 32],
        budget: Spend {
            epsilon_nano: EPS,
            delta_atto: DELTA,
        },
        period: candor_store::BudgetPeriod::Month,
        allowed_features: vec!["app_usage".into(), "browsing".into()],
        allowed_dimensions: vec!["category".into()],
        disabled: false,
        created_ms: UnixMillis(1_000),
        updated_ms: UnixMillis(2_000),
        lifetime: None,
    }
}

pub fn report(advertiser: &str, period: &str, epsilon_nano: i64, delta_atto: i64) -> NewReport {
    NewReport {
        advertiser: advertiser.into(),
        period: period.into(),
        time_ms: UnixMillis(now()),
        cost: Spend {
            epsilon_nano,
            delta_atto,
        },
        purpose: "insights".into(),
        query_json: r#"{"metric":"count"}"#.into(),
        answer_json: r#"{"rows":[]}"#.into(),
        members: membership::encode(vec![1, 2, 3]),
        total: None,
    }
}

pub fn in_period(advertiser: &str, period: &str) -> SpendScope {
    SpendScope::Period {
        advertiser: advertiser.into(),
        period: period.into(),
    }
}

/// 64 charges of ε = 0.1 at once, spread over four advertisers that each have ε = 1 for
/// the period, against an operator's cap of ε = 1 across them: exactly ten succeed, and
/// the others are refused by the cap across advertisers.
pub async fn concurrent_charges_never_overspend_the_total(stores: &[Arc<dyn Store>]) {
    let names = ["ta", "tb", "tc", "td"];
    for (i, n) in names.iter().enumerate() {
        stores[0]
            .upsert_advertiser(advertiser(n, 40 + i as u8))
            .await
            .unwrap();
    }
    let since = UnixMillis(now() - 60_000);
    // What earlier reports in this database spent counts too: the cap leaves room for
    // exactly ε = 1 more.
    let before = stores[0].spent(SpendScope::AllSince(since)).await.unwrap();
    let cap = TotalCap {
        limit: Spend {
            epsilon_nano: before.epsilon_nano + EPS,
            delta_atto: DELTA,
        },
        since,
    };
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let mut r = report(names[i % names.len()], "2026-11", EPS / 10, 0);
            r.total = Some(cap.clone());
            tokio::spawn(async move { store.record_report(r).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Overspend {
                limit: BudgetLimit::Total,
                spent,
                ..
            }) => assert_eq!(spent.epsilon_nano, before.epsilon_nano + EPS),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 10);
    let all = stores[0].spent(SpendScope::AllSince(since)).await.unwrap();
    assert_eq!(all.epsilon_nano, before.epsilon_nano + EPS);
    // Reports before the cap's period do not count against it.
    let later = UnixMillis(now() + 60_000);
    assert_eq!(
        stores[0].spent(SpendScope::AllSince(later)).await.unwrap(),
        Spend::default()
    );
}

/// An advertiser's lifetime cap holds across periods, is refused as `Lifetime` (nothing
/// charged), and can be lifted; and the operator's cap is checked per report.
pub async fn lifetime_and_total_caps_hold(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let mut a = advertiser("life", 9);
    a.lifetime = Some(Spend {
        epsilon_nano: EPS * 3 / 10,
        delta_atto: DELTA,
    });
    s.upsert_advertiser(a.clone()).await.unwrap();
    assert_eq!(
        s.advertiser("life").await.unwrap().unwrap().lifetime,
        a.lifetime
    );
    for period in ["2026-10", "2026-11", "2026-12"] {
        s.record_report(report("life", period, EPS / 10, 0))
            .await
            .unwrap();
    }
    let before = s.reports(Some("life"), 0, 100).await.unwrap();
    let err = s
        .record_report(report("life", "2027-01", EPS / 10, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Overspend { limit: BudgetLimit::Lifetime, spent, .. }
            if spent.epsilon_nano == EPS * 3 / 10),
        "{err:?}"
    );
    assert_eq!(s.reports(Some("life"), 0, 100).await.unwrap(), before);
    assert_eq!(
        s.spent(SpendScope::Lifetime {
            advertiser: "life".into()
        })
        .await
        .unwrap()
        .epsilon_nano,
        EPS * 3 / 10
    );
    // Lifted: the same charge fits.
    a.lifetime = None;
    s.upsert_advertiser(a).await.unwrap();
    s.record_report(report("life", "2027-01", EPS / 10, 0))
        .await
        .unwrap();

    // A report carrying the operator's cap is refused when the cap is spent, whoever
    // spent it; one without it is not.
    let mut r = report("acme2", "2026-11", EPS / 10, 0);
    s.upsert_advertiser(advertiser("acme2", 10)).await.unwrap();
    r.total = Some(TotalCap {
        limit: Spend {
            epsilon_nano: EPS * 4 / 10,
            delta_atto: DELTA,
        },
        since: UnixMillis(now() - 60_000),
    });
    let err = s.record_report(r.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Overspend {
                limit: BudgetLimit::Total,
                ..
            }
        ),
        "{err:?}"
    );
    r.total = None;
    s.record_report(r).await.unwrap();

    let nodes: Vec<Arc<dyn Store>> = vec![store.clone()];
    concurrent_charges_never_overspend_the_total(&nodes).await;
}

/// 64 charges of ε = 0.1 at once against ε = 1: exactly ten succeed.
pub async fn concurrent_charges_never_overspend(
    stores: &[Arc<dyn Store>],
    advertiser: &str,
    period: &str,
) {
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let (a, p) = (advertiser.to_owned(), period.to_owned());
            tokio::spawn(async move { store.record_report(report(&a, &p, EPS / 10, 0)).await })
        })
        .collect();
    let mut ok = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => ok.push(r),
            Err(StoreError::Overspend {
                limit: BudgetLimit::Period,
                budget,
                spent,
            }) => {
                assert_eq!(budget.epsilon_nano, EPS);
                // Refused only once the next charge would not fit: everything is spent.
                assert_eq!(spent.epsilon_nano, EPS);
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok.len(), 10);
    let mut after: Vec<i64> = ok.iter().map(|r| r.spent_after.epsilon_nano).collect();
    after.sort_unstable();
    assert_eq!(after, (1..=10).map(|i| i * EPS / 10).collect::<Vec<_>>());
    assert_eq!(
        stores[0]
            .spent(in_period(advertiser, period))
            .await
            .unwrap(),
        Spend {
            epsilon_nano: EPS,
            delta_atto: 0
        }
    );
}

pub async fn creating_an_advertiser_never_overwrites_one(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    s.create_advertiser(advertiser("acme", 1)).await.unwrap();
    // the same id again (say, a second operator racing the first): refused, nothing written
    let err = s
        .create_advertiser(advertiser("acme", 9))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AdvertiserExists), "{err:?}");
    assert_eq!(
        s.advertiser("acme").await.unwrap().unwrap().key_hash,
        [1; 32]
    );
    assert!(s.advertiser_by_key(&[9; 32]).await.unwrap().is_none());
    // an update replaces, as before
    s.upsert_advertiser(advertiser("acme", 9)).await.unwrap();
    assert_eq!(
        s.advertiser("acme").await.unwrap().unwrap().key_hash,
        [9; 32]
    );
}

pub async fn replacing_an_advertiser_is_compare_and_set(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    s.create_advertiser(advertiser("acme", 1)).await.unwrap();
    // Based on what is stored (updated_ms 2000): written.
    let mut rotated = advertiser("acme", 2);
    rotated.updated_ms = UnixMillis(3_000);
    s.replace_advertiser(rotated, UnixMillis(2_000))
        .await
        .unwrap();
    // Based on the state before that rotation: refused, and the rotated key stays.
    let mut stale = advertiser("acme", 1);
    stale.name = "renamed".into();
    stale.updated_ms = UnixMillis(3_001);
    let err = s
        .replace_advertiser(stale, UnixMillis(2_000))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AdvertiserChanged), "{err:?}");
    let now = s.advertiser("acme").await.unwrap().unwrap();
    assert_eq!((now.key_hash, now.updated_ms), ([2; 32], UnixMillis(3_000)));
    assert_eq!(now.name, "acme Inc.");
    assert!(s.advertiser_by_key(&[1; 32]).await.unwrap().is_none());
    // An id that does not exist is not created by a replace.
    let err = s
        .replace_advertiser(advertiser("ghost", 7), UnixMillis(2_000))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AdvertiserChanged), "{err:?}");
    assert!(s.advertiser("ghost").await.unwrap().is_none());
}

pub async fn budget_charges_are_atomic(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    s.upsert_advertiser(advertiser("acme", 1)).await.unwrap();
    s.upsert_advertiser(advertiser("bolt", 2)).await.unwrap();
    concurrent_charges_never_overspend(std::slice::from_ref(&store), "acme", "2026-11").await;

    // A refused charge records nothing.
    let before = s.reports(Some("acme"), 0, 100).await.unwrap();
    let err = s
        .record_report(report("acme", "2026-11", 1, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Overspend { spent, .. } if spent.epsilon_nano == EPS),
        "{err:?}"
    );
    assert_eq!(s.reports(Some("acme"), 0, 100).await.unwrap(), before);
    assert_eq!(
        s.spent(in_period("acme", "2026-11"))
            .await
            .unwrap()
            .epsilon_nano,
        EPS
    );

    // δ is a budget of its own; periods and advertisers are separate.
    let err = s
        .record_report(report("bolt", "2026-11", 0, DELTA + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Overspend { .. }), "{err:?}");
    let exact = s
        .record_report(report("bolt", "2026-11", EPS, DELTA))
        .await
        .unwrap();
    assert_eq!(
        exact.spent_after, exact.budget,
        "the whole budget may be used"
    );
    let december = s
        .record_report(report("acme", "2026-12", EPS / 2, 7))
        .await
        .unwrap();
    assert_eq!(
        december.spent_after,
        Spend {
            epsilon_nano: EPS / 2,
            delta_atto: 7
        }
    );
    assert!(matches!(
        s.record_report(report("acme", "2026-12", i64::MAX, 0))
            .await,
        Err(StoreError::Overspend { .. })
    ));
    assert!(s
        .record_report(report("acme", "2026-12", -1, 0))
        .await
        .is_err());

    // Unknown and disabled advertisers are refused alike.
    assert!(matches!(
        s.record_report(report("nobody", "2026-11", 1, 0)).await,
        Err(StoreError::UnknownAdvertiser)
    ));
    let mut off = advertiser("bolt", 2);
    off.disabled = true;
    s.upsert_advertiser(off).await.unwrap();
    assert!(matches!(
        s.record_report(report("bolt", "2026-12", 1, 0)).await,
        Err(StoreError::UnknownAdvertiser)
    ));

    // Reads.
    let acme = s.reports(Some("acme"), 0, 100).await.unwrap();
    assert_eq!(acme.len(), 11);
    assert!(acme.windows(2).all(|w| w[0].id < w[1].id));
    assert!(acme.iter().all(|r| r.advertiser == "acme"));
    let all = s.reports(None, 0, 100).await.unwrap();
    assert_eq!(all.len(), 12);
    let page = s.reports(None, all[4].id, 3).await.unwrap();
    assert_eq!(page, all[5..8].to_vec());
    let one = s.report(december.id).await.unwrap().unwrap();
    assert_eq!(one, december);
    assert_eq!(one.query_json, r#"{"metric":"count"}"#);
    assert_eq!(s.report(-5).await.unwrap(), None);
    assert_eq!(
        s.spent(in_period("bolt", "2026-11")).await.unwrap(),
        exact.spent_after
    );
    assert_eq!(
        s.spent(in_period("acme", "1999-01")).await.unwrap(),
        Spend::default()
    );
    store.shutdown().await;
}

pub async fn advertisers_round_trip(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    assert!(s.advertisers().await.unwrap().is_empty());
    s.upsert_advertiser(advertiser("zed", 3)).await.unwrap();
    s.upsert_advertiser(advertiser("acme", 1)).await.unwrap();
    let mut changed = advertiser("acme", 4);
    changed.name = "Acme Corp".into();
    changed.allowed_features = vec![];
    changed.budget.epsilon_nano = 5;
    changed.updated_ms = UnixMillis(9_000);
    s.upsert_advertiser(changed.clone()).await.unwrap();
    assert_eq!(s.advertiser("acme").await.unwrap(), Some(changed.clone()));
    assert_eq!(s.advertiser_by_key(&[4; 32]).await.unwrap(), Some(changed));
    assert_eq!(
        s.advertiser_by_key(&[1; 32]).await.unwrap(),
        None,
        "key rotated"
    );
    assert_eq!(s.advertiser("nobody").await.unwrap(), None);
    let ids: Vec<String> = s
        .advertisers()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, vec!["acme", "zed"]);
    // A key belongs to one advertiser.
    assert!(s.upsert_advertiser(advertiser("copy", 3)).await.is_err());
    store.shutdown().await;
}

pub async fn subject_reports_find_members(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let s = &*store;
    s.upsert_advertiser(advertiser("acme", 1)).await.unwrap();
    let oda = subject(s, "oda", IA).await;
    let pim = subject(s, "pim", IA).await;
    let quy = subject(s, "quy", IA).await;
    s.ingest(vec![
        featured(s, oda, "o", IA, vec![declare("18-24")]),
        featured(s, pim, "p", IA, vec![declare("18-24")]),
    ])
    .await
    .unwrap();
    let (o, p) = (
        b.dense(s, oda).await.unwrap(),
        b.dense(s, pim).await.unwrap(),
    );
    assert_ne!(o, p);
    assert!(b.dense(s, quy).await.is_none());
    let record = |members: Vec<u32>| {
        let mut r = report("acme", "2026-11", 1, 0);
        r.members = membership::encode(members);
        r
    };
    // Several chunks; oda in the first, pim not.
    let r1 = s
        .record_report(record(vec![o, 70_000, 140_001, 200_000]))
        .await
        .unwrap();
    // A dense first chunk (a bitset) holding pim and not oda.
    let crowd: Vec<u32> = (0..6_000u32)
        .map(|i| i * 10)
        .chain([p, 65_540])
        .filter(|d| *d != o)
        .collect();
    assert_eq!(
        membership::encode(crowd.clone())[0].1[0],
        1,
        "a bitset chunk"
    );
    let r2 = s.record_report(record(crowd)).await.unwrap();
    let r3 = s.record_report(record(vec![o, p])).await.unwrap();
    let ids = |v: Vec<candor_store::ReportRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.subject_reports(oda).await.unwrap()),
        vec![r3.id, r1.id]
    );
    assert_eq!(
        ids(s.subject_reports(pim).await.unwrap()),
        vec![r3.id, r2.id]
    );
    assert!(s.subject_reports(quy).await.unwrap().is_empty());
    assert_eq!(s.subject_reports(oda).await.unwrap()[1], r1);
    // Membership outlives the features (withdrawal keeps the number).
    s.apply_consent(command(s, "oda", &[("insights", Action::Withdraw)]))
        .await
        .unwrap();
    assert_eq!(
        ids(s.subject_reports(oda).await.unwrap()),
        vec![r3.id, r1.id]
    );
    store.shutdown().await;
}
