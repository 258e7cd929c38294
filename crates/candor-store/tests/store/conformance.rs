//! Behaviour every backend must have, written once against `dyn Store`.

use crate::fixtures::*;
use crate::harness::Backend;
use candor_core::consent::{Action, ConsentStatus};
use candor_core::ledger::verify_chain;
use candor_core::SubjectId;
use candor_core::UnixMillis;
use candor_store::{RowOutcome, Store, StoreError};
use std::sync::Arc;

pub async fn whole_ledger(store: &dyn Store) -> Vec<candor_core::ledger::SealedEntry> {
    let mut all = Vec::new();
    loop {
        let page = store
            .ledger_page(
                all.last()
                    .map_or(0, |e: &candor_core::ledger::SealedEntry| e.entry.seq),
                100,
            )
            .await
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

async fn assert_chain(store: &dyn Store, expected: u64) {
    let records = whole_ledger(store).await;
    let head = store.ledger_head().await.unwrap();
    assert_eq!(
        verify_chain(
            &records,
            head,
            &candor_core::ledger::KeyRing::single(signer().verifying_key())
        ),
        Ok(expected),
        "the ledger must be one valid chain"
    );
}

async fn granted_subject(store: &dyn Store, user: &str, purposes: &[&str]) -> SubjectId {
    let changes: Vec<(&str, Action)> = purposes.iter().map(|p| (*p, Action::Grant)).collect();
    store
        .apply_consent(command(store, user, &changes))
        .await
        .unwrap()
        .subject
}

pub async fn consent_create_grant_refuse_withdraw(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let out = s
        .apply_consent(command(s, "ann", &[("analytics", Action::Grant)]))
        .await
        .unwrap();
    assert!(out.created);
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.granted, bits(s, &["analytics"]));
    assert_eq!(s.index().granted(&out.subject), bits(s, &["analytics"]));
    assert_eq!(s.resolve(&identity("ann").hash), Some(out.subject));
    assert!(s.subject_key(out.subject).await.unwrap().is_some());

    // Granting again under the same notice changes nothing and records nothing.
    let again = s
        .apply_consent(command(s, "ann", &[("analytics", Action::Grant)]))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.subject, out.subject);
    assert!(again.records.is_empty());

    let refused = s
        .apply_consent(command(s, "ann", &[("personalization", Action::Refuse)]))
        .await
        .unwrap();
    assert_eq!(refused.records.len(), 1);
    assert_eq!(refused.records[0].entry.status, ConsentStatus::Refused);

    let withdrawn = s
        .apply_consent(command(s, "ann", &[("analytics", Action::Withdraw)]))
        .await
        .unwrap();
    assert_eq!(withdrawn.records[0].entry.status, ConsentStatus::Withdrawn);
    assert!(withdrawn.granted.is_empty());
    assert!(s.index().granted(&out.subject).is_empty());

    let state = s.consent_state(out.subject).await.unwrap();
    let statuses: Vec<(&str, ConsentStatus)> = state
        .iter()
        .map(|r| (r.purpose.as_str(), r.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("analytics", ConsentStatus::Withdrawn),
            ("personalization", ConsentStatus::Refused)
        ]
    );
    let history = s.consent_history(out.subject).await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(history.windows(2).all(|w| w[0].entry.seq < w[1].entry.seq));

    // Refusing what was given is a withdrawal; withdrawing what is not given is refused.
    let err = s
        .apply_consent(command(s, "ann", &[("analytics", Action::Withdraw)]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotGiven { ref purpose } if purpose == "analytics"),
        "{err:?}"
    );
    let mut unknown = command(s, "nobody", &[("analytics", Action::Grant)]);
    unknown.create = false;
    assert!(matches!(
        s.apply_consent(unknown).await,
        Err(StoreError::UnknownSubject)
    ));
    assert_chain(s, 3).await;
    s.shutdown().await;
}

pub async fn not_given_rolls_back_the_whole_command(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let subject = granted_subject(s, "bob", &["analytics"]).await;
    let head = s.ledger_head().await.unwrap();
    let err = s
        .apply_consent(command(
            s,
            "bob",
            &[
                ("personalization", Action::Grant),
                ("loyalty", Action::Withdraw),
            ],
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotGiven { .. }), "{err:?}");
    assert_eq!(
        s.ledger_head().await.unwrap(),
        head,
        "no record of the half-applied grant"
    );
    let state = s.consent_state(subject).await.unwrap();
    assert_eq!(state.len(), 1, "personalization must not have been granted");
    assert_eq!(s.index().granted(&subject), bits(s, &["analytics"]));

    // A failing command for a new person creates no subject either.
    let err = s
        .apply_consent(command(
            s,
            "carol",
            &[("analytics", Action::Grant), ("loyalty", Action::Withdraw)],
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotGiven { .. }));
    assert_eq!(s.resolve(&identity("carol").hash), None);
    assert_eq!(s.stats().await.unwrap().subjects, 1);
    assert_chain(s, 1).await;
    s.shutdown().await;
}

pub async fn atomic_batch_is_all_or_nothing(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let bad = s
        .apply_consents_atomically(vec![
            command(s, "dan", &[("analytics", Action::Grant)]),
            command(s, "eve", &[("analytics", Action::Withdraw)]),
        ])
        .await;
    assert!(matches!(bad, Err(StoreError::NotGiven { .. })), "{bad:?}");
    assert_eq!(s.resolve(&identity("dan").hash), None);
    assert_eq!(s.ledger_head().await.unwrap(), None);
    let good = s
        .apply_consents_atomically(vec![
            command(s, "dan", &[("analytics", Action::Grant)]),
            command(s, "eve", &[("loyalty", Action::Grant)]),
            command(s, "dan", &[("loyalty", Action::Grant)]),
        ])
        .await
        .unwrap();
    assert_eq!(good.len(), 3);
    assert_eq!(
        good[0].subject, good[2].subject,
        "later commands see earlier ones"
    );
    assert_eq!(
        s.index().granted(&good[0].subject),
        bits(s, &["analytics", "loyalty"])
    );
    assert_chain(s, 3).await;
    s.shutdown().await;
}

pub async fn ledger_chain_is_valid(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    assert_chain(s, 0).await;
    for i in 0..10 {
        let user = format!("u{i}");
        granted_subject(s, &user, &["analytics", "loyalty"]).await;
        if i % 3 == 0 {
            s.apply_consent(command(s, &user, &[("analytics", Action::Withdraw)]))
                .await
                .unwrap();
        }
    }
    assert_chain(s, 24).await;
    s.shutdown().await;
    // And after reopening, appends continue the same chain.
    let store = b.open().await;
    granted_subject(&*store, "late", &["analytics"]).await;
    assert_chain(&*store, 25).await;
    store.shutdown().await;
}

pub async fn concurrent_appends_keep_one_chain(b: &dyn Backend) {
    let store = b.open().await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store: Arc<dyn Store> = store.clone();
            tokio::spawn(async move {
                let s = &*store;
                let user = format!("c{i}");
                granted_subject(s, &user, &["analytics"]).await;
                s.apply_consent(command(s, &user, &[("analytics", Action::Withdraw)]))
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_chain(&*store, 80).await;
    store.shutdown().await;
}

pub async fn ingest_gates_and_deduplicates(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let subject = granted_subject(s, "fay", &["analytics"]).await;
    let out = s
        .ingest(vec![
            row(s, subject, "m1", &["analytics"], now()),
            row(s, subject, "m2", &["analytics", "loyalty"], now()),
            row(s, subject, "m1", &["analytics"], now()),
            row(s, subject, "m3", &["loyalty"], now()),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            RowOutcome::Stored,
            RowOutcome::Stored,
            RowOutcome::Duplicate,
            RowOutcome::ConsentChanged
        ]
    );
    let again = s
        .ingest(vec![row(s, subject, "m2", &["analytics"], now() + 1000)])
        .await
        .unwrap();
    assert_eq!(again, vec![RowOutcome::Duplicate]);
    let events = opened(s, s.events_page(0, 100).await.unwrap()).await;
    assert_eq!(events.len(), 2);
    // Only purposes both allowed by the gate and granted at commit are stored.
    assert!(events.iter().all(|e| e.purposes == bits(s, &["analytics"])));
    assert_eq!(events[0].sealed_payload, b"m1");
    assert_eq!(events[0].subject, subject);
    assert!(events[0].id < events[1].id);
    assert!(s.events_page(events[0].id, 100).await.unwrap().len() == 1);

    // Concurrent batches with the same message: exactly one is stored.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let s = &*store;
                s.ingest(vec![row(s, subject, "race", &["analytics"], now())])
                    .await
                    .unwrap()[0]
            })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        if t.await.unwrap() == RowOutcome::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    store.shutdown().await;
}

pub async fn dedup_survives_reopen_and_midnight(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let subject = granted_subject(s, "gus", &["analytics"]).await;
    // The end of today: the retry lands tomorrow.
    let before_midnight = (now() / DAY_MS + 1) * DAY_MS - 1_000;
    let out = s
        .ingest(vec![row(
            s,
            subject,
            "late-night",
            &["analytics"],
            before_midnight,
        )])
        .await
        .unwrap();
    assert_eq!(out, vec![RowOutcome::Stored]);
    s.shutdown().await;
    drop(store);

    let store = b.open().await;
    let s = &*store;
    // A retry two seconds later, after midnight, through a reopened store.
    let out = s
        .ingest(vec![
            row(
                s,
                subject,
                "late-night",
                &["analytics"],
                before_midnight + 2_000,
            ),
            row(s, subject, "fresh", &["analytics"], before_midnight + 2_000),
        ])
        .await
        .unwrap();
    assert_eq!(out, vec![RowOutcome::Duplicate, RowOutcome::Stored]);
    assert_eq!(s.events_page(0, 10).await.unwrap().len(), 2);
    store.shutdown().await;
}

pub async fn floors_apply_on_read_and_sweep_rewrites(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let subject = granted_subject(s, "hal", &["analytics", "personalization"]).await;
    let other = granted_subject(s, "ida", &["analytics"]).await;
    let out = s
        .ingest(vec![
            row(s, subject, "a", &["analytics"], now()),
            row(s, subject, "ap", &["analytics", "personalization"], now()),
            row(s, other, "o", &["analytics"], now()),
        ])
        .await
        .unwrap();
    assert!(out.iter().all(|o| *o == RowOutcome::Stored));
    s.apply_consent(command(s, "hal", &[("analytics", Action::Withdraw)]))
        .await
        .unwrap();

    // In force at once for reads, whether or not the sweeper has run yet.
    let expect = |events: &[candor_store::StoredEvent]| {
        let got: Vec<(Vec<u8>, u64)> = events
            .iter()
            .map(|e| (e.sealed_payload.clone(), e.purposes.bits()))
            .collect();
        assert_eq!(
            got,
            vec![
                (b"ap".to_vec(), bits(s, &["personalization"]).bits()),
                (b"o".to_vec(), bits(s, &["analytics"]).bits()),
            ]
        );
    };
    expect(&opened(s, s.events_page(0, 10).await.unwrap()).await);
    // Paging with a small limit skips hidden rows without losing visible ones.
    let first = opened(s, s.events_page(0, 1).await.unwrap()).await;
    assert_eq!(first[0].sealed_payload, b"ap");
    assert_eq!(
        opened(s, s.events_page(first[0].id, 1).await.unwrap()).await[0].sealed_payload,
        b"o"
    );
    // And for new events: the store re-checks consent at commit.
    let late = s
        .ingest(vec![row(s, subject, "late", &["analytics"], now())])
        .await
        .unwrap();
    assert_eq!(late, vec![RowOutcome::ConsentChanged]);

    s.sweep().await.unwrap();
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.pending_floors, 0);
    assert_eq!(stats.events, 2, "the analytics-only row is physically gone");
    expect(&opened(s, s.events_page(0, 10).await.unwrap()).await);
    store.shutdown().await;
}

pub async fn retention_keeps_the_longest_purpose(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let subject = granted_subject(s, "jon", &["analytics", "loyalty"]).await;
    let now = now();
    let at = |days: i64| now - days * DAY_MS;
    let out = s
        .ingest(vec![
            row(s, subject, "a400", &["analytics"], at(400)),
            row(s, subject, "al400", &["analytics", "loyalty"], at(400)),
            row(s, subject, "a100", &["analytics"], at(100)),
            row(s, subject, "al100", &["analytics", "loyalty"], at(100)),
            row(s, subject, "a10", &["analytics"], at(10)),
        ])
        .await
        .unwrap();
    assert!(out.iter().all(|o| *o == RowOutcome::Stored), "{out:?}");
    let report = s
        .retention(UnixMillis(now), &retention_days())
        .await
        .unwrap();
    let left: Vec<Vec<u8>> = opened(s, s.events_page(0, 10).await.unwrap())
        .await
        .into_iter()
        .map(|e| e.sealed_payload)
        .collect();
    assert_eq!(left, vec![b"al100".to_vec(), b"a10".to_vec()]);
    if b.partitions() {
        assert!(
            report.partitions_dropped >= 1,
            "the day 400 days ago goes whole"
        );
        assert_eq!(report.events_deleted, 1);
    } else {
        assert_eq!(report.events_deleted, 3);
    }
    // Nothing more to do at the same instant; a year later everything goes.
    let again = s
        .retention(UnixMillis(now), &retention_days())
        .await
        .unwrap();
    assert_eq!(again.events_deleted, 0);
    s.retention(UnixMillis(now + 366 * DAY_MS), &retention_days())
        .await
        .unwrap();
    assert!(s.events_page(0, 10).await.unwrap().is_empty());
    assert_eq!(s.stats().await.unwrap().events, 0);
    store.shutdown().await;
}

pub async fn stats_count_what_is_stored(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let stats = s.stats().await.unwrap();
    assert_eq!(
        (
            stats.subjects,
            stats.events,
            stats.ledger_records,
            stats.pending_floors
        ),
        (0, 0, 0, 0)
    );
    let a = granted_subject(s, "kim", &["analytics", "loyalty"]).await;
    granted_subject(s, "lee", &["analytics"]).await;
    s.ingest(vec![
        row(s, a, "k1", &["analytics"], now()),
        row(s, a, "k2", &["loyalty"], now()),
    ])
    .await
    .unwrap();
    let stats = s.stats().await.unwrap();
    assert_eq!(
        (stats.subjects, stats.events, stats.ledger_records),
        (2, 2, 3)
    );
    store.shutdown().await;
}

/// Invariant 9 in the writer: a command from a credential that speaks only for the
/// identifiers it names (a browser key, a subject token) is refused whole when the
/// subject it reaches holds any other identifier, unless it reaches it through the
/// token's own user id. Checked against what the transaction sees, so a link committed
/// after the server's in-memory check still counts.
pub async fn named_authority_reaches_only_its_own_subjects(b: &dyn Backend) {
    use candor_core::crypto::IdKind;
    use candor_store::Authority;
    let store = b.open().await;
    let s = &*store;
    let anon = |v: &str| candor_store::Identity {
        kind: IdKind::AnonymousId,
        hash: master().lookup_hash(IdKind::AnonymousId, v),
        value: candor_core::Sensitive::new(v.to_owned()),
    };
    // An anonymous subject, and the same kind of subject then linked to a user id.
    let mut lone = command(s, "x", &[("analytics", Action::Grant)]);
    lone.identities = vec![anon("lone")];
    lone.authority = Authority::Named { owner: None };
    let lone_subject = s.apply_consent(lone.clone()).await.unwrap().subject;
    let mut linked = command(s, "victim", &[("analytics", Action::Grant)]);
    linked.identities = vec![identity("victim"), anon("victim-anon")];
    let victim = s.apply_consent(linked).await.unwrap().subject;
    let records = whole_ledger(s).await.len();

    // The lone anonymous id is the browser's to change.
    lone.changes = vec![change(s, "analytics", Action::Withdraw)];
    assert_eq!(s.apply_consent(lone).await.unwrap().subject, lone_subject);
    // The linked one is not: refused, nothing written.
    let mut through_anon = command(s, "x", &[("analytics", Action::Withdraw)]);
    through_anon.identities = vec![anon("victim-anon")];
    through_anon.authority = Authority::Named { owner: None };
    assert!(matches!(
        s.apply_consent(through_anon.clone()).await,
        Err(StoreError::NotYours)
    ));
    // A token for another user cannot merge it into its account either...
    let mut merge = through_anon.clone();
    merge.identities = vec![identity("mallory"), anon("victim-anon")];
    merge.authority = Authority::Named {
        owner: Some(identity("mallory").hash),
    };
    assert!(matches!(
        s.apply_consent(merge).await,
        Err(StoreError::NotYours)
    ));
    assert_eq!(s.resolve(&identity("mallory").hash), None);
    // ...while the victim's own token reaches the account, whatever is linked to it.
    let mut own = through_anon;
    own.identities = vec![identity("victim"), anon("victim-anon")];
    own.authority = Authority::Named {
        owner: Some(identity("victim").hash),
    };
    assert_eq!(s.apply_consent(own).await.unwrap().subject, victim);
    assert_eq!(whole_ledger(s).await.len(), records + 2);
    assert_eq!(s.held(&victim), 2);
    assert_eq!(s.held(&lone_subject), 1);
    store.shutdown().await;
}
