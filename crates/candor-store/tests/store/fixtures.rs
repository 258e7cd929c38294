//! Builders for commands and rows, so tests say what they mean.

use candor_core::consent::{Action, Channel};
use candor_core::crypto::{IdKind, MasterKey};
use candor_core::event::EventKind;
use candor_core::ledger::Evidence;
use candor_core::receipt::ReceiptSigner;
use candor_core::{CategoryId, PurposeId, PurposeSet, Sensitive, SubjectId};
use candor_insights::{
    Category, DailyFeature, Day, DeclaredField, FeatureDelta, FeatureIndex, FeatureKind, Schema,
};
use candor_store::StoredEvent;
use candor_store::{
    Authority, ConsentCommand, Identity, IngestRow, InsightsOptions, PurposeChange, Store,
};
use std::collections::HashMap;
use std::sync::Arc;

pub use candor_core::time::DAY_MS;
use candor_core::UnixMillis;
/// The real time: partitions and the de-duplication window are maintained against the
/// clock by background tasks, so tests that pass a clock start from the real one.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn purposes() -> Vec<PurposeId> {
    ["analytics", "personalization", "loyalty", "insights"]
        .iter()
        .map(|p| PurposeId::parse(p).unwrap())
        .collect()
}

pub fn master() -> MasterKey {
    MasterKey::from_bytes(&[7; 32])
}

pub fn signer() -> Arc<ReceiptSigner> {
    Arc::new(ReceiptSigner::from_bytes(&[9; 32]))
}

pub fn identity(user: &str) -> Identity {
    Identity {
        kind: IdKind::UserId,
        hash: master().lookup_hash(IdKind::UserId, user),
        value: Sensitive::new(user.to_owned()),
    }
}

pub fn change(store: &dyn Store, purpose: &str, action: Action) -> PurposeChange {
    let purpose = PurposeId::parse(purpose).unwrap();
    PurposeChange {
        bit: store.purpose_bits()[&purpose],
        purpose,
        action,
        notice_version: 1,
        notice_hash: [1; 32],
    }
}

pub fn command(store: &dyn Store, user: &str, changes: &[(&str, Action)]) -> ConsentCommand {
    ConsentCommand {
        identities: vec![identity(user)],
        authority: Authority::Any,
        actor: candor_core::ledger::Actor::Admin,
        create: true,
        changes: changes.iter().map(|(p, a)| change(store, p, *a)).collect(),
        channel: Channel::Prompt,
        evidence: Evidence::default().with("prompt", "banner"),
        time_ms: UnixMillis(now()),
        list: None,
    }
}

pub fn bits(store: &dyn Store, purposes: &[&str]) -> PurposeSet {
    let mut set = PurposeSet::EMPTY;
    for p in purposes {
        set.insert(store.purpose_bits()[&PurposeId::parse(p).unwrap()]);
    }
    set
}

pub fn row(
    store: &dyn Store,
    subject: SubjectId,
    message_id: &str,
    purposes: &[&str],
    received_ms: i64,
) -> IngestRow {
    IngestRow {
        subject,
        link: Vec::new(),
        source: "web".into(),
        dedup_key: master().dedup_key("web", message_id),
        kind: EventKind::Track,
        category: CategoryId::parse("app_usage").unwrap(),
        purposes: bits(store, purposes),
        event_ms: UnixMillis(received_ms - 5),
        received_ms: UnixMillis(received_ms),
        payload: message_id.as_bytes().to_vec().into(),
        features: Vec::new(),
    }
}

/// A row carrying feature deltas.
pub fn featured(
    store: &dyn Store,
    subject: SubjectId,
    message_id: &str,
    purposes: &[&str],
    features: Vec<FeatureDelta>,
) -> IngestRow {
    IngestRow {
        features,
        ..row(store, subject, message_id, purposes, now())
    }
}

/// Insights on the "insights" purpose, with a fresh index and one declared field.
pub fn insights() -> InsightsOptions {
    InsightsOptions {
        purpose: PurposeId::parse("insights").unwrap(),
        index: Arc::new(
            FeatureIndex::new(Schema {
                declared: vec![DeclaredField {
                    name: "age_band".into(),
                    values: vec!["18-24".into(), "25-34".into()],
                }],
                // The built-in categories and the made-up names these tests write.
                categories: candor_insights::features::sorted_categories(
                    candor_insights::features::default_categories()
                        .into_iter()
                        .chain(
                            ["late", "zero", "cat0", "cat1", "cat2", "cat3"]
                                .iter()
                                .filter_map(|c| candor_insights::Category::parse(c)),
                        ),
                ),
            })
            .unwrap(),
        ),
    }
}

/// A daily feature `days_ago` days before today.
pub fn daily(days_ago: i64, kind: FeatureKind, category: &str, count: u32) -> DailyFeature {
    daily_at(now(), days_ago, kind, category, count)
}

/// A daily feature `days_ago` days before the day of `clock_ms` (for tests that must not
/// see the date change under them).
pub fn daily_at(
    clock_ms: i64,
    days_ago: i64,
    kind: FeatureKind,
    category: &str,
    count: u32,
) -> DailyFeature {
    DailyFeature {
        day: Day::from_ms(clock_ms - days_ago * DAY_MS).unwrap(),
        kind,
        category: Category::parse(category).unwrap(),
        count,
    }
}

pub fn activity(days_ago: i64, kind: FeatureKind, category: &str, count: u32) -> FeatureDelta {
    FeatureDelta::Activity(daily(days_ago, kind, category, count))
}

pub fn declare(value: &str) -> FeatureDelta {
    FeatureDelta::Declare {
        field: "age_band".into(),
        value: value.into(),
    }
}

pub fn undeclare() -> FeatureDelta {
    FeatureDelta::Undeclare {
        field: "age_band".into(),
    }
}

/// A subject's features from the index, in an order that does not depend on the order
/// categories were interned in.
/// Events with their payloads opened (the store seals what it is given).
pub async fn opened(store: &dyn Store, events: Vec<StoredEvent>) -> Vec<StoredEvent> {
    let mut out = Vec::with_capacity(events.len());
    for mut e in events {
        let key = store.subject_key(e.subject).await.unwrap().unwrap();
        e.sealed_payload =
            candor_store::seal::open_payload(&key, &e).expect("a payload sealed for its subject");
        out.push(e);
    }
    out
}

/// The subject's features in the store's index once it has derived everything it
/// acknowledged, sorted.
pub async fn features_of(store: &dyn Store, s: &SubjectId) -> Vec<DailyFeature> {
    store.refresh_features().await.unwrap();
    sorted_features(store, s)
}

/// The subject's features in the store's index as they are now, sorted.
pub fn sorted_features(store: &dyn Store, s: &SubjectId) -> Vec<DailyFeature> {
    let mut v = store.features().features_of(s);
    v.sort_by(|a, b| {
        (a.day, a.kind, &a.category, a.count).cmp(&(b.day, b.kind, &b.category, b.count))
    });
    v
}

/// The subject's shared declared fields in the index, as `features_of` reads features.
pub async fn declared_of(store: &dyn Store, s: &SubjectId) -> Vec<(String, String)> {
    store.refresh_features().await.unwrap();
    store.features().declared_of(s)
}

/// The index's counts, as `features_of` reads features.
pub async fn index_stats(store: &dyn Store) -> candor_insights::IndexStats {
    store.refresh_features().await.unwrap();
    store.features().stats()
}

pub fn retention_days() -> HashMap<PurposeId, u32> {
    HashMap::from([
        (PurposeId::parse("analytics").unwrap(), 30),
        (PurposeId::parse("personalization").unwrap(), 30),
        (PurposeId::parse("loyalty").unwrap(), 365),
    ])
}

/// [`retention_days`] with a period for the insights purpose too.
pub fn retention_days_with_insights(insights_days: u32) -> HashMap<PurposeId, u32> {
    let mut days = retention_days();
    days.insert(PurposeId::parse("insights").unwrap(), insights_days);
    days
}

/// Polls `f` until it holds or `deadline` passes; no fixed sleeps.
pub async fn eventually(deadline: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
