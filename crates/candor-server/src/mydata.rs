//! Everything Candor holds about one person, gathered in one place (issue 13): what
//! `GET /v1/me` answers, what the export downloads and what the person's own pages
//! show. One gathering for all three, so the page cannot show less than the export
//! holds, nor the export less than the API.
//!
//! Identifiers and event payloads are opened here, under the subject's key, and only
//! for the person (or the operator's backend acting for them); every such read is
//! written to the person's access log by the caller ([`record`]).

use crate::config::OperatorInfo;
use crate::error::ApiResult;
use crate::receipts::{self, Receipt};
use crate::routes::consent::{state_of, PurposeStateDto};
use crate::routes::fields::{FieldDto, FieldPurposeDto};
use crate::segment::format_time;
use crate::state::AppState;
use candor_core::crypto::IdKind;
use candor_core::ledger::KeyRing;
use candor_core::purpose::Catalog;
use candor_core::{SubjectId, UnixMillis};
use candor_store::{seal, Access, RequestKind, Store, StoredEvent};
use serde::Serialize;
use std::collections::BTreeMap;

/// The export's schema name: bumped whenever a field changes meaning
/// (`docs/export.md` documents it).
pub const SCHEMA: &str = "candor-my-data-v1";
/// Events shown on the my-data page and in `GET /v1/me`: the newest few.
pub const NEWEST_EVENTS: usize = 5;
/// Most events an export carries (a person with more is told how many were left out).
pub const MAX_EXPORT_EVENTS: usize = 100_000;
/// Access log entries shown.
pub const ACCESS_LOG_LIMIT: usize = 200;

#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct MyData {
    pub schema: &'static str,
    pub generated_at: String,
    /// The person's pseudonym in Candor (what the ledger records).
    pub subject: String,
    pub identifiers: Vec<IdentifierDto>,
    pub consents: Vec<ConsentDto>,
    /// Every field the operator asks about (`GET /v1/me/fields`' shape), with the
    /// person's value, its provenance and the purposes that may use it; then any value
    /// held under a field the operator no longer defines.
    pub fields: Vec<HeldFieldDto>,
    pub events: EventsDto,
    pub insights: InsightsDto,
    pub access_log: Vec<AccessDto>,
}

/// A field in the person's data: one the operator asks about, or a value held under
/// a field the operator no longer defines.
#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(untagged)]
pub enum HeldFieldDto {
    Asked(FieldDto),
    NoLongerAsked(FormerFieldDto),
}

/// A value held under a field the operator no longer defines (shown as stored, so the
/// person still sees everything held about them).
#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FormerFieldDto {
    pub name: String,
    /// The field's name (there is no label any more).
    pub label: String,
    /// The value as stored.
    pub value: String,
    #[schema(value_type = crate::routes::fields::ProvenanceDoc)]
    pub provenance: &'static str,
    pub updated_at: String,
    /// Always empty: no purpose uses it any more.
    pub purposes: Vec<FieldPurposeDto>,
    /// Always `true`.
    pub no_longer_asked: bool,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct IdentifierDto {
    /// `user_id`, `anonymous_id`, `email`, `device_id`...
    pub kind: &'static str,
    pub value: String,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ConsentDto {
    #[serde(flatten)]
    pub state: PurposeStateDto,
    /// The notice text in force (what the person agrees to when they grant it).
    pub notice: String,
    /// Every ledger record of this purpose for the person, oldest first, as signed
    /// receipts anyone can verify with the operator's public key.
    pub receipts: Vec<Receipt>,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct EventsDto {
    /// Events stored for the person that some purpose may still use.
    pub total: u64,
    pub by_category: Vec<EventCountDto>,
    /// `newest` (the few most recent) or `all` (an export).
    pub items_are: &'static str,
    /// Left out of an export past [`MAX_EXPORT_EVENTS`].
    pub omitted: u64,
    pub items: Vec<EventDto>,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct EventCountDto {
    pub category: String,
    pub kind: String,
    /// The purposes these events may be used for.
    pub purposes: Vec<String>,
    pub count: u64,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct EventDto {
    pub id: i64,
    pub kind: String,
    pub category: String,
    pub purposes: Vec<String>,
    pub event_time: String,
    pub received_at: String,
    /// The message as sent, opened (`null` if it cannot be opened).
    #[schema(value_type = Option<Object>)]
    pub message: serde_json::Value,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct InsightsDto {
    /// The advertiser reports the person was counted in.
    pub reports: Vec<ReportDto>,
    /// What the insights engine holds now, per feature and category.
    pub features: Vec<FeatureDto>,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ReportDto {
    pub report_id: i64,
    pub advertiser: AdvertiserDto,
    pub time: String,
    pub purpose: String,
    pub epsilon: f64,
    pub delta: f64,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
pub struct AdvertiserDto {
    pub id: String,
    pub name: Option<String>,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FeatureDto {
    pub feature: &'static str,
    pub category: String,
    pub days: u32,
    pub count: u64,
}

#[derive(utoipa::ToSchema, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AccessDto {
    pub time: String,
    /// Which part of Candor or which credential read the data.
    pub accessor: String,
    pub purpose: String,
    pub why: String,
}

/// How much of the event log to carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// The newest few (the page and `GET /v1/me`).
    Summary,
    /// Every event (the export).
    Export,
}

fn kind_name(k: IdKind) -> &'static str {
    k.as_str()
}

/// What gathering needs: the server's state, or what the CLI opened.
pub struct Holder<'a> {
    pub store: &'a dyn Store,
    pub catalog: &'a Catalog,
    pub fields: &'a candor_core::field::FieldCatalog,
    pub operator: &'a OperatorInfo,
    /// Every receipt-signing key, and the current one (for records past the ring).
    pub keys: &'a KeyRing,
    pub current: ed25519_dalek::VerifyingKey,
    pub now: UnixMillis,
}

impl<'a> Holder<'a> {
    pub fn of(st: &'a AppState) -> Self {
        Self {
            store: st.store.as_ref(),
            catalog: &st.catalog,
            fields: &st.settings.fields,
            operator: &st.settings.operator,
            keys: &st.keys,
            current: st.signer.verifying_key(),
            now: st.now(),
        }
    }

    fn key_for(&self, seq: u64) -> ed25519_dalek::VerifyingKey {
        self.keys.key_for(seq).copied().unwrap_or(self.current)
    }
}

/// Gathers everything held about `subject`.
pub async fn gather(st: &AppState, subject: SubjectId, depth: Depth) -> ApiResult<MyData> {
    gather_from(&Holder::of(st), subject, depth).await
}

/// [`gather`] for any holder (the CLI's `candor export --subject`).
pub async fn gather_from(st: &Holder<'_>, subject: SubjectId, depth: Depth) -> ApiResult<MyData> {
    let identifiers = st
        .store
        .identities(subject)
        .await?
        .into_iter()
        .map(|i| IdentifierDto {
            kind: kind_name(i.kind),
            value: i.value.expose().clone(),
        })
        .collect();
    let insights = insights(st, subject).await?;
    let mut access_log: Vec<(i64, AccessDto)> = st
        .store
        .access_log(subject, ACCESS_LOG_LIMIT)
        .await?
        .into_iter()
        .map(|a| (a.time_ms.0, access_dto(&a)))
        .collect();
    // Insight scans that counted the person are in their reports' membership; shown
    // here as reads by the advertiser, beside the reads Candor logged itself.
    for r in &insights.reports {
        access_log.push((
            crate::segment::parse_time(&r.time).unwrap_or(0),
            AccessDto {
                time: r.time.clone(),
                accessor: format!(
                    "insight report {} for advertiser {}",
                    r.report_id, r.advertiser.id
                ),
                purpose: r.purpose.clone(),
                why: "counted, with noise added, in an aggregate the advertiser asked for".into(),
            },
        ));
    }
    access_log.sort_by_key(|a| std::cmp::Reverse(a.0));
    Ok(MyData {
        schema: SCHEMA,
        generated_at: format_time(st.now),
        subject: subject.to_string(),
        identifiers,
        consents: consents(st, subject).await?,
        fields: fields(st, subject).await?,
        events: events(st, subject, depth).await?,
        insights,
        access_log: access_log.into_iter().map(|(_, a)| a).collect(),
    })
}

fn access_dto(a: &Access) -> AccessDto {
    AccessDto {
        time: format_time(a.time_ms),
        accessor: a.accessor.clone(),
        purpose: a.purpose.clone(),
        why: a.why.clone(),
    }
}

async fn consents(st: &Holder<'_>, subject: SubjectId) -> ApiResult<Vec<ConsentDto>> {
    let rows = st.store.consent_state(subject).await?;
    let history = st.store.consent_history(subject).await?;
    let granted = st.store.index().granted(&subject);
    Ok(state_of(st.catalog, &rows, granted)
        .into_iter()
        .zip(st.catalog.purposes())
        .map(|(state, p)| ConsentDto {
            state,
            notice: p.notice.text.clone(),
            receipts: history
                .iter()
                .filter(|r| r.entry.purpose == p.id)
                .map(|r| receipts::build(r, st.operator, &st.key_for(r.entry.seq)))
                .collect(),
        })
        .collect())
}

async fn fields(st: &Holder<'_>, subject: SubjectId) -> ApiResult<Vec<HeldFieldDto>> {
    let held = st.store.fields(subject).await?;
    let granted = st.store.index().granted(&subject);
    let shared: Vec<String> = st
        .store
        .features()
        .declared_of(&subject)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    let mut out: Vec<HeldFieldDto> = st
        .fields
        .iter()
        .map(|spec| {
            let value = held.iter().find(|h| h.field == spec.name);
            let sharing = shared.contains(&spec.name.to_string());
            HeldFieldDto::Asked(crate::routes::fields::describe(
                st.catalog, granted, spec, value, sharing,
            ))
        })
        .collect();
    for h in held
        .iter()
        .filter(|h| st.fields.get(h.field.as_str()).is_none())
    {
        out.push(HeldFieldDto::NoLongerAsked(FormerFieldDto {
            name: h.field.as_str().to_owned(),
            label: h.field.as_str().to_owned(),
            value: h.value.expose().clone(),
            provenance: h.provenance.as_str(),
            updated_at: format_time(h.updated_ms),
            purposes: Vec::new(),
            no_longer_asked: true,
        }));
    }
    Ok(out)
}

async fn events(st: &Holder<'_>, subject: SubjectId, depth: Depth) -> ApiResult<EventsDto> {
    let key = st.store.subject_key(subject).await?;
    let mut counts: BTreeMap<(String, String, Vec<String>), u64> = BTreeMap::new();
    let mut kept: Vec<StoredEvent> = Vec::new();
    let (mut total, mut omitted) = (0u64, 0u64);
    let mut after = 0;
    loop {
        let page = st.store.subject_events_page(subject, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in page {
            total += 1;
            let purposes = purpose_names(st, &e);
            *counts
                .entry((e.category.clone(), e.kind.clone(), purposes))
                .or_default() += 1;
            match depth {
                Depth::Summary => {
                    kept.push(e);
                    if kept.len() > NEWEST_EVENTS {
                        kept.remove(0);
                    }
                }
                Depth::Export if kept.len() < MAX_EXPORT_EVENTS => kept.push(e),
                Depth::Export => omitted += 1,
            }
        }
    }
    if depth == Depth::Summary {
        kept.reverse();
    }
    let items = kept
        .iter()
        .map(|e| EventDto {
            id: e.id,
            kind: e.kind.clone(),
            category: e.category.clone(),
            purposes: purpose_names(st, e),
            event_time: format_time(e.event_ms),
            received_at: format_time(e.received_ms),
            message: key
                .as_ref()
                .and_then(|k| seal::open_payload(k, e).ok())
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(serde_json::Value::Null),
        })
        .collect();
    Ok(EventsDto {
        total,
        by_category: counts
            .into_iter()
            .map(|((category, kind, purposes), count)| EventCountDto {
                category,
                kind,
                purposes,
                count,
            })
            .collect(),
        items_are: match depth {
            Depth::Summary => "newest",
            Depth::Export => "all",
        },
        omitted,
        items,
    })
}

fn purpose_names(st: &Holder<'_>, e: &StoredEvent) -> Vec<String> {
    st.catalog
        .names(e.purposes)
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

/// The reports the person was counted in and the features held about them now.
pub async fn insights(st: &Holder<'_>, subject: SubjectId) -> ApiResult<InsightsDto> {
    let mut names = std::collections::HashMap::new();
    for a in st.store.advertisers().await? {
        names.insert(a.id.clone(), a.name.clone());
    }
    let reports = st
        .store
        .subject_reports(subject)
        .await?
        .into_iter()
        .map(|r| ReportDto {
            report_id: r.id,
            advertiser: AdvertiserDto {
                name: names.get(&r.advertiser).cloned(),
                id: r.advertiser,
            },
            time: format_time(r.time_ms),
            purpose: r.purpose,
            epsilon: r.cost.epsilon_nano as f64 / 1e9,
            delta: r.cost.delta_atto as f64 / 1e18,
        })
        .collect();
    // Features are derived after commit: bring them up to date with everything
    // acknowledged first, then fold them per kind and category.
    st.store.refresh_features().await?;
    let mut held: BTreeMap<(&'static str, String), (u32, u64)> = BTreeMap::new();
    for f in st.store.features().features_of(&subject) {
        let e = held
            .entry((f.kind.as_str(), f.category.as_str().to_owned()))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(f.count);
    }
    let features = held
        .into_iter()
        .map(|((feature, category), (days, count))| FeatureDto {
            feature,
            category,
            days,
            count,
        })
        .collect();
    Ok(InsightsDto { reports, features })
}

/// Writes one read of the person's data to their access log and records the request
/// it answered, opened and closed at once (an answer given in the same request).
pub async fn record(
    st: &AppState,
    subject: SubjectId,
    kind: RequestKind,
    channel: &str,
    accessor: &str,
    why: &str,
) -> ApiResult<()> {
    let now = st.now();
    st.store
        .record_access(Access {
            subject,
            time_ms: now,
            accessor: accessor.to_owned(),
            purpose: String::new(),
            why: why.to_owned(),
        })
        .await?;
    let id = st.store.open_request(subject, kind, channel, now).await?;
    st.store.close_request(id, st.now(), "ok").await?;
    Ok(())
}

/// Erases a person (invariant 6; `Store::erase`) as a request the operator can account
/// for: recorded before it starts, answered when the erasure has committed (or with the
/// code it failed with). The request keeps only the pseudonym.
pub async fn erase(
    st: &AppState,
    subject: SubjectId,
    actor: candor_core::ledger::Actor,
    channel: candor_core::consent::Channel,
    how: &str,
) -> ApiResult<candor_store::ErasureOutcome> {
    let id = st
        .store
        .open_request(subject, RequestKind::Erasure, how, st.now())
        .await?;
    let result = st
        .store
        .erase(candor_store::Erasure {
            subject,
            actor,
            channel,
            time_ms: st.now(),
            only_if_abandoned: false,
        })
        .await
        .map_err(crate::error::ApiError::from);
    let outcome = result.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok");
    st.store.close_request(id, st.now(), outcome).await?;
    result
}
