//! Erasure (invariant 6), on both backends: everything held about a subject goes in one
//! transaction, the caches forget it, the ledger proves it, nothing of it is left in the
//! database files, and a person who comes back is a stranger.

use crate::conformance::whole_ledger;
use crate::fixtures::*;
use crate::harness::Backend;
use candor_core::consent::{Action, Channel, ConsentStatus};
use candor_core::crypto::{IdKind, LookupHash};
use candor_core::ledger::{verify_chain, Actor, KeyRing};
use candor_core::{Sensitive, SubjectId, UnixMillis};
use candor_insights::FeatureKind;
use candor_store::{Erasure, Identity, RowOutcome, Store, StoreError};

const USER: &str = "erin-user-4711";
const ANON: &str = "anon-erin-0b7f9c";
const EMAIL: &str = "erin.erasure@example.com";
const PAYLOAD: &str = "PAYLOAD-erin-loves-rare-orchids";

fn ident(kind: IdKind, value: &str) -> Identity {
    Identity {
        kind,
        hash: master().lookup_hash(kind, value),
        value: Sensitive::new(value.to_owned()),
    }
}

fn erin() -> Vec<Identity> {
    vec![
        ident(IdKind::UserId, USER),
        ident(IdKind::AnonymousId, ANON),
        ident(IdKind::Email, EMAIL),
    ]
}

fn hashes() -> Vec<LookupHash> {
    erin().iter().map(|i| i.hash).collect()
}

pub fn erasure(subject: SubjectId) -> Erasure {
    Erasure {
        subject,
        actor: Actor::Admin,
        channel: Channel::Api,
        time_ms: UnixMillis(now()),
        only_if_abandoned: false,
    }
}

fn found(files: &[(String, Vec<u8>)], needle: &[u8]) -> Vec<String> {
    files
        .iter()
        .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle))
        .map(|(f, _)| f.clone())
        .collect()
}

async fn assert_chain_ends_with_erasure(store: &dyn Store, s: SubjectId) {
    let records = whole_ledger(store).await;
    let head = store.ledger_head().await.unwrap();
    assert_eq!(
        verify_chain(&records, head, &KeyRing::single(signer().verifying_key())),
        Ok(records.len() as u64),
        "the ledger must still verify"
    );
    let last = records.last().unwrap();
    assert!(last.entry.is_erasure() && last.entry.subject == s);
}

pub async fn erasure_is_complete_and_real(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let st = &*store;
    // Erin: three identifiers, consents (one withdrawn: a purpose floor), events with a
    // distinctive payload, insight features and a declared field.
    let mut cmd = command(
        st,
        USER,
        &[
            ("analytics", Action::Grant),
            ("insights", Action::Grant),
            ("personalization", Action::Grant),
        ],
    );
    cmd.identities = erin();
    let s = st.apply_consent(cmd).await.unwrap().subject;
    let mut rows = Vec::new();
    for i in 0..20 {
        let mut r = featured(
            st,
            s,
            &format!("erin-msg-{i}"),
            &["analytics", "insights", "personalization"],
            vec![
                activity(0, FeatureKind::AppUsed, "games", 1),
                declare("25-34"),
            ],
        );
        r.payload = format!("{PAYLOAD}-{i}").into_bytes().into();
        rows.push(r);
    }
    assert!(st
        .ingest(rows)
        .await
        .unwrap()
        .iter()
        .all(|o| *o == RowOutcome::Stored));
    let mut withdraw = command(st, USER, &[("personalization", Action::Withdraw)]);
    withdraw.identities = erin();
    st.apply_consent(withdraw).await.unwrap();
    // Someone else, who must be untouched.
    let other = crate::features_and_budgets::subject(st, "otto", &["analytics", "insights"]).await;
    st.ingest(vec![featured(
        st,
        other,
        "otto-msg",
        &["analytics", "insights"],
        vec![activity(0, FeatureKind::AppUsed, "games", 1)],
    )])
    .await
    .unwrap();
    assert!(!features_of(st, &s).await.is_empty());
    assert_eq!(declared_of(st, &s).await.len(), 1);
    let dense = b.dense(st, s).await.expect("Erin has an insight number");

    // What of Erin is in the files in the clear before: not her identifiers or payloads
    // (sealed), but their lookup hashes, her wrapped key and sealed values, the sealed
    // payloads and the events' dedup keys. These are the probes: found now, so the
    // search below can fail.
    let events: Vec<_> = st
        .events_page(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.subject == s)
        .collect();
    assert_eq!(events.len(), 20);
    let dedup: Vec<[u8; 16]> = events.iter().map(|e| e.dedup_key).collect();
    let mut probes: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, h) in hashes().iter().enumerate() {
        probes.push((format!("lookup hash {i}"), h.0.to_vec()));
    }
    for (i, v) in b.stored_secrets(s).await.into_iter().enumerate() {
        probes.push((format!("wrapped key or sealed identifier {i}"), v));
    }
    assert_eq!(
        probes.len(),
        7,
        "three hashes, the wrapped key, three sealed values"
    );
    for e in &events {
        probes.push((
            format!("sealed payload of event {}", e.id),
            e.sealed_payload.clone(),
        ));
        probes.push((format!("dedup key of event {}", e.id), e.dedup_key.to_vec()));
    }
    let plain: Vec<&str> = vec![USER, ANON, EMAIL, PAYLOAD];
    let before = b.raw_files().await;
    for (what, p) in &probes {
        assert!(
            !found(&before, p).is_empty(),
            "{what} must be in the files before erasure"
        );
    }
    for p in &plain {
        assert!(
            found(&before, p.as_bytes()).is_empty(),
            "{p} is sealed, never in the clear"
        );
    }
    let rows_before = b.subject_rows(s, &dedup).await;
    for t in [
        "subjects",
        "identities",
        "consent_state",
        "insight_features",
        "insight_subjects",
    ] {
        assert!(
            rows_before.iter().any(|(n, c)| n == t && *c > 0),
            "{t} holds Erin before: {rows_before:?}"
        );
    }

    let head = st.ledger_head().await.unwrap().unwrap();
    let out = st.erase(erasure(s)).await.unwrap();
    assert_eq!(out.subject, s);
    assert_eq!(out.deleted.identities, 3);
    assert_eq!(out.deleted.events, 20);
    assert!(out.deleted.consent_states >= 3);
    assert_eq!(out.deleted.insight_subjects, 1);
    assert!(out.deleted.insight_features >= 1 && out.deleted.insight_declared >= 1);
    let rec = &out.record.entry;
    assert_eq!((rec.seq, rec.status), (head.seq + 1, ConsentStatus::Erased));
    assert_eq!(rec.subject, s);
    assert_eq!(rec.attribution.as_ref().unwrap().actor, Actor::Admin);

    // Every table is empty of Erin (the ledger aside).
    let rows_after = b.subject_rows(s, &dedup).await;
    assert!(rows_after.iter().all(|(_, c)| *c == 0), "{rows_after:?}");
    // The caches forgot her.
    for h in hashes() {
        assert_eq!(st.resolve(&h), None);
    }
    assert_eq!(st.held(&s), 0);
    assert!(st.index().granted(&s).is_empty());
    assert!(st.subject_key(s).await.unwrap().is_none());
    assert!(features_of(st, &s).await.is_empty());
    assert!(declared_of(st, &s).await.is_empty());
    assert!(st.consent_state(s).await.unwrap().is_empty());
    // The ledger verifies, ends with the erasure, and keeps her earlier (pseudonymous)
    // records.
    assert_chain_ends_with_erasure(st, s).await;
    let history = st.consent_history(s).await.unwrap();
    assert!(history.len() >= 5 && history.last().unwrap().entry.is_erasure());

    // Nothing of Erin is left in the files. On PostgreSQL, VACUUM FULL keeps a deleted
    // row that some snapshot of the database might still see, and CI has twice found
    // one kept although no session showed a snapshot when it began: as
    // docs/erasure.md tells operators, it is run again. Rows the erasure did not delete
    // would survive every pass, so this still fails for them.
    let mut after = b.raw_files().await;
    for _ in 0..5 {
        if probes.iter().all(|(_, p)| found(&after, p).is_empty()) {
            break;
        }
        after = b.raw_files().await;
    }
    for (what, p) in &probes {
        assert_eq!(
            found(&after, p),
            Vec::<String>::new(),
            "{what} survived the erasure"
        );
    }
    for p in &plain {
        assert!(
            found(&after, p.as_bytes()).is_empty(),
            "{p} in the clear after erasure"
        );
    }

    // Erasing again is refused, and changes nothing.
    let head = st.ledger_head().await.unwrap();
    assert!(matches!(
        st.erase(erasure(s)).await,
        Err(StoreError::UnknownSubject)
    ));
    assert!(matches!(
        st.erase(erasure(SubjectId::random())).await,
        Err(StoreError::UnknownSubject)
    ));
    assert_eq!(st.ledger_head().await.unwrap(), head);

    // Otto is untouched.
    assert_eq!(
        st.index().granted(&other),
        bits(st, &["analytics", "insights"])
    );
    assert_eq!(features_of(st, &other).await.len(), 1);
    assert_eq!(
        st.events_page(0, 1000)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.subject == other)
            .count(),
        1
    );
    assert_eq!(st.resolve(&identity("otto").hash), Some(other));

    // Erin comes back with the same identifiers: a stranger, nothing granted, no history.
    let mut back = command(st, USER, &[("loyalty", Action::Refuse)]);
    back.identities = erin();
    let again = st.apply_consent(back).await.unwrap();
    assert!(again.created && again.subject != s);
    assert!(again.granted.is_empty());
    assert_eq!(st.consent_history(again.subject).await.unwrap().len(), 1);
    for h in hashes() {
        assert_eq!(st.resolve(&h), Some(again.subject));
    }
    // A message she sent before, sent again, is new (its dedup key went with her), and
    // refused: nothing is granted.
    let replay = row(st, again.subject, "erin-msg-0", &["analytics"], now());
    assert_eq!(
        st.ingest(vec![replay]).await.unwrap(),
        vec![RowOutcome::ConsentChanged]
    );
    st.shutdown().await;

    // After a restart: still gone, and her insight number is never handed out again.
    let store = b.open_with(Some(insights())).await;
    let st = &*store;
    assert_eq!(st.resolve(&hashes()[0]), Some(again.subject));
    assert!(st.subject_key(s).await.unwrap().is_none());
    let mut grant = command(st, USER, &[("insights", Action::Grant)]);
    grant.identities = erin();
    st.apply_consent(grant).await.unwrap();
    st.ingest(vec![featured(
        st,
        again.subject,
        "erin-new",
        &["insights"],
        vec![activity(0, FeatureKind::AppUsed, "games", 1)],
    )])
    .await
    .unwrap();
    let new_dense = b.dense(st, again.subject).await.unwrap();
    assert!(
        new_dense > dense,
        "dense numbers are never reused ({new_dense} after {dense})"
    );
    assert_chain_ends_with_erasure_or_later(st).await;
    st.shutdown().await;
}

async fn assert_chain_ends_with_erasure_or_later(store: &dyn Store) {
    let records = whole_ledger(store).await;
    let head = store.ledger_head().await.unwrap();
    assert_eq!(
        verify_chain(&records, head, &KeyRing::single(signer().verifying_key())),
        Ok(records.len() as u64)
    );
    assert_eq!(records.iter().filter(|r| r.entry.is_erasure()).count(), 1);
}

/// An erasure queued behind writes for the subject, and writes queued behind it: the
/// ones before are erased with it, the ones after find nobody to store for.
pub async fn writes_around_an_erasure_leave_nothing(b: &dyn Backend) {
    let store = b.open_with(Some(insights())).await;
    let st = &*store;
    let s = crate::features_and_budgets::subject(st, "nell", &["analytics", "insights"]).await;
    let (a, e, z) = tokio::join!(
        st.ingest(vec![row(st, s, "before", &["analytics"], now())]),
        st.erase(erasure(s)),
        st.ingest(vec![featured(
            st,
            s,
            "after",
            &["analytics", "insights"],
            vec![activity(0, FeatureKind::AppUsed, "games", 1)],
        )]),
    );
    e.unwrap();
    // Each ingest either committed before the erasure (then erased with it), or after
    // it, when nothing was granted; or it could not even be sealed (the key is gone).
    for r in [a, z] {
        match r {
            Ok(o) => {
                assert!(o == vec![RowOutcome::Stored] || o == vec![RowOutcome::ConsentChanged])
            }
            Err(err) => assert!(matches!(err, StoreError::Corrupt(_)), "{err}"),
        }
    }
    assert!(b.subject_rows(s, &[]).await.iter().all(|(_, c)| *c == 0));
    assert!(features_of(st, &s).await.is_empty());
    assert!(st
        .events_page(0, 100)
        .await
        .unwrap()
        .iter()
        .all(|ev| ev.subject != s));
    assert_eq!(st.resolve(&identity("nell").hash), None);
    st.shutdown().await;
}
