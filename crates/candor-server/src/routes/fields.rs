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
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

const MAX_BODY: usize = 16 * 1024;

/// The source recorded on the `identify` a sharing change is passed on as.
const SOURCE: &str = "preference_center";

type Q = Result<Query<WhoQuery>, QueryRejection>;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"value": "42", "shareInAggregate": true}))]
struct PutBody {
    /// The value, checked against the field: a text (text and one-of fields; a number
    /// given as text is read as one), a whole number (integer and month fields) or a
    /// list of texts (many-of fields).
    #[schema(value_type = FieldValueDoc)]
    value: Value,
    /// Aggregate fields only: share the value in aggregate insights (absent: keep
    /// sharing as it is).
    share_in_aggregate: Option<bool>,
}

/// One volunteered field as the person sees it: what it may hold, the purposes that
/// may use it (and whether the person grants them), and the person's value.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldDto {
    name: String,
    /// What the person is shown.
    label: String,
    #[schema(value_type = FieldKindDoc)]
    kind: &'static str,
    /// The purposes that may use the value (each only while the person grants it).
    purposes: Vec<FieldPurposeDto>,
    /// Whether the field may count in aggregate insights (while shared and granted).
    aggregate: bool,
    /// The person's value (`null`: none held). A value the field no longer admits (its
    /// definition changed) is shown as stored, as text.
    #[schema(value_type = Option<FieldValueDoc>)]
    value: Value,
    /// Where the value came from (`null`: none held).
    #[schema(value_type = Option<ProvenanceDoc>)]
    provenance: Option<&'static str>,
    /// When the value was last set (`null`: none held).
    updated_at: Option<String>,
    /// One-of and many-of fields: the listed values.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    values: Option<Vec<String>>,
    /// Integer fields (and months, 1): the smallest value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    min: Option<i64>,
    /// Integer fields (and months, 12): the largest value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    max: Option<i64>,
    /// Text fields: the most characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    max_length: Option<usize>,
    /// Aggregate fields: whether the person shares the value in aggregate insights.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    shared_in_aggregate: Option<bool>,
}

/// A purpose that may use a field, and whether the person grants it.
#[derive(Serialize, Clone, Debug, ToSchema)]
pub struct FieldPurposeDto {
    id: String,
    title: String,
    granted: bool,
}

/// Every field the operator asks about (in the configured order), with the person's
/// values.
#[derive(Serialize, ToSchema)]
pub struct FieldsResponse {
    /// The person's pseudonym; absent when no one is known by the identifiers yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    subject: Option<String>,
    fields: Vec<FieldDto>,
}

/// A field's kind (documentation only: `FieldKind::name`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FieldKind)]
enum FieldKindDoc {
    Text,
    OneOf,
    ManyOf,
    Integer,
    Month,
}

/// A field value (documentation only): a text, a whole number or a list of texts.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = FieldValue)]
#[allow(dead_code)]
pub(crate) enum FieldValueDoc {
    Text(String),
    Number(i64),
    List(Vec<String>),
}

/// Where a value came from (documentation only: `candor_core::field::Provenance`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Provenance)]
pub(crate) enum ProvenanceDoc {
    Observed,
    Volunteered,
    Inferred,
}

#[utoipa::path(get, path = "/v1/me/fields", tag = "my data",
    summary = "The volunteered fields and the person's values",
    description = "Every field the operator asks about: what it may hold, the purposes that may use it \
and whether the person grants them, and the person's value with its provenance. For someone not \
known yet, the fields without values.",
    params(WhoQuery),
    responses((status = 200, description = "The fields, in the configured order", body = FieldsResponse)))]
pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Q,
) -> ApiResult<Json<FieldsResponse>> {
    let (_, subject) = who_named(&st, &headers, q)?;
    let (held, shared) = match subject {
        Some(s) => (st.store.fields(s).await?, shared(&st, s).await?),
        None => (Vec::new(), Vec::new()),
    };
    let fields = st
        .settings
        .fields
        .iter()
        .map(|f| {
            let value = held.iter().find(|h| h.field == f.name);
            entry(&st, subject, f, value, shared.contains(&f.name.to_string()))
        })
        .collect();
    Ok(Json(FieldsResponse {
        subject: subject.map(|s| s.to_string()),
        fields,
    }))
}

#[utoipa::path(put, path = "/v1/me/fields/{name}", tag = "my data",
    summary = "Set one volunteered field",
    description = "Sets (or changes) the person's value of one field, with provenance `volunteered`, \
and, for an aggregate field, whether it is shared in aggregate insights. The person must be known \
(a consent choice recorded first). May earn the loyalty program's bonus for telling.",
    params(("name" = String, Path, description = "The field's name (`GET /v1/me/fields` lists them)"), WhoQuery),
    request_body = PutBody,
    responses((status = 200, description = "The field as it is now", body = FieldDto)))]
pub async fn put(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    q: Q,
    body: Body,
) -> ApiResult<Json<FieldDto>> {
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

#[utoipa::path(delete, path = "/v1/me/fields/{name}", tag = "my data",
    summary = "Remove one volunteered field",
    description = "Deletes the person's value of one field (and stops sharing it in aggregate insights). \
Removing a value no one holds is not an error.",
    params(("name" = String, Path, description = "The field's name"), WhoQuery),
    responses((status = 200, description = "The field as it is now, without a value", body = FieldDto)))]
pub async fn remove(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    q: Q,
) -> ApiResult<Json<FieldDto>> {
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

async fn answer(st: &AppState, subject: SubjectId, spec: &FieldSpec) -> ApiResult<Json<FieldDto>> {
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
) -> FieldDto {
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
) -> FieldDto {
    let purposes = spec
        .purposes
        .iter()
        .filter_map(|p| catalog.purpose(p))
        .map(|p| FieldPurposeDto {
            id: p.id.as_str().to_owned(),
            title: p.title.clone(),
            granted: granted.contains(p.bit),
        })
        .collect();
    let mut e = FieldDto {
        name: spec.name.as_str().to_owned(),
        label: spec.label.clone(),
        kind: spec.kind.name(),
        purposes,
        aggregate: spec.aggregate,
        value: Value::Null,
        provenance: None,
        updated_at: None,
        values: None,
        min: None,
        max: None,
        max_length: None,
        shared_in_aggregate: None,
    };
    match &spec.kind {
        FieldKind::OneOf { values } | FieldKind::ManyOf { values } => {
            e.values = Some(values.clone())
        }
        FieldKind::Integer { min, max } => {
            e.min = Some(*min);
            e.max = Some(*max);
        }
        FieldKind::Text { max_len } => e.max_length = Some(*max_len),
        FieldKind::Month => {
            e.min = Some(1);
            e.max = Some(12);
        }
    }
    if spec.aggregate {
        e.shared_in_aggregate = Some(shared);
    }
    if let Some(h) = held {
        // A value the operator's field no longer admits (its definition changed) is
        // shown as stored, so the person still sees everything held about them.
        e.value = match spec.parse_stored(h.value.expose()) {
            Ok(v) => fields::to_json(&v),
            Err(_) => json!(h.value.expose()),
        };
        e.provenance = Some(h.provenance.as_str());
        e.updated_at = Some(crate::segment::format_time(h.updated_ms));
    }
    e
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, put, remove))]
pub(crate) struct Api;
