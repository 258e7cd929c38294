//! A person's volunteered (zero-party) fields, one at a time: `GET /v1/me/fields` (every
//! field the operator defined, what it may hold, which purposes may use it and whether
//! the person grants them, and the person's value with its provenance),
//! `PUT /v1/me/fields/{name}` (set or edit one value: provenance `volunteered`) and
//! `DELETE /v1/me/fields/{name}`.
//!
//! Who: exactly as the consent reads (`routes::consent::who_named`): a server key naming
//! `userId`/`anonymousId` in the query, a subject token for its own user, a browser key
//! for its own anonymous id only. A bad name or value is refused with a stable code
//! before anything is written.
//!
//! An `aggregate` field (the insights' declared fields, e.g. `age_band`) counts in
//! aggregate insights only while the person shares it (`shareInAggregate`) and grants
//! the insights purpose. That rule lives where it always has, in the insight feature
//! rules over `identify` messages; so a change here that concerns sharing is passed on
//! as an `identify` through the ingestion pipeline (the consent gate included), which
//! is how the same page or a backend has always shared such a field.

use super::consent::{who_named, WhoQuery};
use crate::body::{parse_json, read_text};
use crate::error::{ApiError, ApiResult, Code};
use crate::pipeline::consent::Named;
use crate::pipeline::fields;
use crate::pipeline::gate::Credential;
use crate::pipeline::ingest;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use candor_core::crypto::IdKind;
use candor_core::event::EventKind;
use candor_core::field::{FieldKind, FieldSpec, Provenance};
use candor_core::{Sensitive, SubjectId};
use candor_store::{FieldWrite, StoredField};
use serde::Deserialize;
use serde_json::{json, Map, Value};

const MAX_BODY: usize = 16 * 1024;

/// The source recorded on the `identify` a sharing change is passed on as.
const SOURCE: &str = "preference_center";

type Q = Result<Query<WhoQuery>, QueryRejection>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutBody {
    value: Value,
    /// Aggregate fields only: share the value in aggregate insights (`None`: keep
    /// sharing as it is).
    share_in_aggregate: Option<bool>,
}

pub async fn list(State(st): State<AppState>, headers: HeaderMap, q: Q) -> ApiResult<Json<Value>> {
    let (_, subject) = who_named(&st, &headers, q)?;
    let (held, shared) = match subject {
        Some(s) => (st.store.fields(s).await?, shared(&st, s).await?),
        None => (Vec::new(), Vec::new()),
    };
    let entries: Vec<Value> = st
        .settings
        .fields
        .iter()
        .map(|f| {
            let value = held.iter().find(|h| h.field == f.name);
            entry(&st, subject, f, value, shared.contains(&f.name.to_string()))
        })
        .collect();
    let mut out = json!({"fields": entries});
    if let Some(s) = subject {
        out["subject"] = json!(s.to_string());
    }
    Ok(Json(out))
}

pub async fn put(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    q: Q,
    body: Body,
) -> ApiResult<Json<Value>> {
    // Who first: a credential that may not act learns nothing about fields or values.
    let (named, subject) = who_named(&st, &headers, q)?;
    let spec = field(&st, name)?;
    let text = read_text(&headers, body, MAX_BODY, Code::InvalidRequest).await?;
    let b: PutBody = parse_json(&text)?;
    if b.share_in_aggregate.is_some() && !spec.aggregate {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!(
                "{} does not count in aggregate insights: shareInAggregate does not apply",
                spec.name
            ),
        ));
    }
    let subject = subject.ok_or_else(no_subject)?;
    set(&st, &named, subject, spec, &b.value, b.share_in_aggregate).await?;
    answer(&st, subject, spec).await
}

/// Sets one field for a person the caller may act for (provenance `volunteered`), and
/// passes a sharing change of an aggregate field on (see the module's note): the API's
/// `PUT` and the person's page.
pub(crate) async fn set(
    st: &AppState,
    named: &Named,
    subject: SubjectId,
    spec: &FieldSpec,
    value: &Value,
    share_in_aggregate: Option<bool>,
) -> ApiResult<()> {
    let value = fields::parse(spec, value)
        .map_err(|e| ApiError::new(Code::InvalidFieldValue, format!("{}: {e}", spec.name)))?;
    st.store
        .set_field(FieldWrite {
            subject,
            field: spec.name.clone(),
            value: Sensitive::new(value.canonical()),
            provenance: Provenance::Volunteered,
            time_ms: st.now(),
        })
        .await?;
    // The program's bonus for telling (once per person and field; the store refuses it
    // to someone outside the program).
    crate::loyalty::field_bonus(st, subject, spec.name.as_str()).await?;
    if spec.aggregate {
        let was = shared(st, subject).await?.contains(&spec.name.to_string());
        let share = share_in_aggregate.unwrap_or(was);
        if share || was {
            pass_on(st, named, subject, spec, fields::to_json(&value), share).await?;
        }
    }
    Ok(())
}

pub async fn remove(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    q: Q,
) -> ApiResult<Json<Value>> {
    let (named, subject) = who_named(&st, &headers, q)?;
    let spec = field(&st, name)?;
    let Some(subject) = subject else {
        return Ok(Json(entry(&st, None, spec, None, false)));
    };
    unset(&st, &named, subject, spec).await?;
    answer(&st, subject, spec).await
}

/// Removes one field for a person the caller may act for (and stops sharing it): the
/// API's `DELETE` and the person's page.
pub(crate) async fn unset(
    st: &AppState,
    named: &Named,
    subject: SubjectId,
    spec: &FieldSpec,
) -> ApiResult<()> {
    st.store.remove_field(subject, &spec.name).await?;
    if spec.aggregate && shared(st, subject).await?.contains(&spec.name.to_string()) {
        // The trait sent as null clears the shared value (the insight rules' "sent
        // without the mark").
        pass_on(st, named, subject, spec, Value::Null, false).await?;
    }
    Ok(())
}

pub(crate) fn field_named<'a>(st: &'a AppState, name: &str) -> ApiResult<&'a FieldSpec> {
    st.settings.fields.get(name).ok_or_else(|| unknown(name))
}

fn unknown(name: &str) -> ApiError {
    ApiError::new(
        Code::UnknownField,
        format!(
            "no field {:?}; GET /v1/me/fields lists them",
            name.chars().take(64).collect::<String>()
        ),
    )
}

fn field(st: &AppState, name: Result<Path<String>, PathRejection>) -> ApiResult<&FieldSpec> {
    let Path(name) = name.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    field_named(st, &name)
}

fn no_subject() -> ApiError {
    ApiError::new(
        Code::SubjectNotFound,
        "no one is known by these identifiers yet: record a consent choice first",
    )
}

/// The aggregate fields the subject shares now (the insight features, brought up to
/// date with everything acknowledged).
pub(crate) async fn shared(st: &AppState, subject: SubjectId) -> ApiResult<Vec<String>> {
    if st.insights_bit.is_none() || !st.settings.fields.aggregate().any(|_| true) {
        return Ok(Vec::new());
    }
    st.store.refresh_features().await?;
    Ok(st
        .store
        .features()
        .declared_of(&subject)
        .into_iter()
        .map(|(f, _)| f)
        .collect())
}

/// Passes a sharing change on as an `identify` (see the module's note), naming only the
/// identifiers that already resolve to the subject, so it links nothing new.
async fn pass_on(
    st: &AppState,
    named: &Named,
    subject: SubjectId,
    spec: &FieldSpec,
    value: Value,
    share: bool,
) -> ApiResult<()> {
    let mut traits = Map::new();
    traits.insert(spec.name.to_string(), value);
    let mut msg = json!({
        "type": "identify",
        "messageId": uuid::Uuid::new_v4().to_string(),
        "traits": traits,
        "context": {"candor": {
            "share_in_aggregate": if share { vec![spec.name.to_string()] } else { Vec::new() },
            "provenance": Provenance::Volunteered.as_str(),
        }},
    });
    for i in &named.identities {
        if st.store.resolve(&i.hash) != Some(subject) {
            continue;
        }
        let key = match i.kind {
            IdKind::UserId => "userId",
            IdKind::AnonymousId => "anonymousId",
            _ => continue,
        };
        msg[key] = json!(i.value.expose());
    }
    let raw = msg.to_string();
    ingest::run(
        st,
        ingest::Request {
            source: SOURCE,
            // The route has already checked that the credential may act for them.
            credential: Credential::Server,
            raws: &[raw.as_str()],
            implied: Some(EventKind::Identify),
            sent_at: None,
            gpc: false,
        },
    )
    .await?;
    Ok(())
}

async fn answer(st: &AppState, subject: SubjectId, spec: &FieldSpec) -> ApiResult<Json<Value>> {
    let held = st.store.fields(subject).await?;
    let value = held.iter().find(|h| h.field == spec.name);
    let shared = shared(st, subject).await?.contains(&spec.name.to_string());
    Ok(Json(entry(st, Some(subject), spec, value, shared)))
}

/// One field as the person sees it.
fn entry(
    st: &AppState,
    subject: Option<SubjectId>,
    spec: &FieldSpec,
    held: Option<&StoredField>,
    shared: bool,
) -> Value {
    let granted = subject
        .map(|s| st.store.index().granted(&s))
        .unwrap_or_default();
    describe(&st.catalog, granted, spec, held, shared)
}

/// One field as the person sees it, from the catalog and what they grant (the API, the
/// person's page and their export).
pub(crate) fn describe(
    catalog: &candor_core::purpose::Catalog,
    granted: candor_core::PurposeSet,
    spec: &FieldSpec,
    held: Option<&StoredField>,
    shared: bool,
) -> Value {
    let purposes: Vec<Value> = spec
        .purposes
        .iter()
        .filter_map(|p| catalog.purpose(p))
        .map(|p| json!({"id": p.id.as_str(), "title": p.title, "granted": granted.contains(p.bit)}))
        .collect();
    let mut e = json!({
        "name": spec.name.as_str(),
        "label": spec.label,
        "kind": spec.kind.name(),
        "purposes": purposes,
        "aggregate": spec.aggregate,
        "value": Value::Null,
        "provenance": Value::Null,
        "updatedAt": Value::Null,
    });
    match &spec.kind {
        FieldKind::OneOf { values } | FieldKind::ManyOf { values } => e["values"] = json!(values),
        FieldKind::Integer { min, max } => {
            e["min"] = json!(min);
            e["max"] = json!(max);
        }
        FieldKind::Text { max_len } => e["maxLength"] = json!(max_len),
        FieldKind::Month => {
            e["min"] = json!(1);
            e["max"] = json!(12);
        }
    }
    if spec.aggregate {
        e["sharedInAggregate"] = json!(shared);
    }
    if let Some(h) = held {
        // A value the operator's field no longer admits (its definition changed) is
        // shown as stored, so the person still sees everything held about them.
        e["value"] = match spec.parse_stored(h.value.expose()) {
            Ok(v) => fields::to_json(&v),
            Err(_) => json!(h.value.expose()),
        };
        e["provenance"] = json!(h.provenance.as_str());
        e["updatedAt"] = json!(crate::segment::format_time(h.updated_ms));
    }
    e
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Api;
