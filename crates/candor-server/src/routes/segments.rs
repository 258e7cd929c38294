//! The operator's segments (issue 14): `GET/PUT/DELETE /v1/admin/segments[/{name}]`,
//! each segment's members (paged, pseudonymous) and a check for one person with the
//! reasons the rule holds, and `POST /v1/admin/segments/validate` for editors.
//!
//! A segment belongs to one purpose and may name only data that purpose may use: the
//! rule is checked (`candor_segments::check`) before it is saved, and a refusal names
//! the field, trait or events and the purpose (`segment_not_allowed`). Rules are
//! accepted in either form, JSON (`rule`) or text (`text`), and answered in both.

use crate::audiences::{parse_saved, Saved};
use crate::auth;
use crate::body::{parse_json, read_text};
use crate::error::{ApiError, ApiResult, Code};
use crate::segment::format_time;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use candor_core::crypto::IdKind;
use candor_core::{PurposeId, SubjectId};
use candor_segments::{CheckError, Reason, Rule};
use candor_store::loyalty::SegmentRecord;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentBody {
    purpose: String,
    /// The rule's JSON form...
    rule: Option<Value>,
    /// ...or its text form (exactly one of the two).
    text: Option<String>,
    #[serde(default)]
    description: String,
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::InvalidSegment, e.to_string())
}

fn valid_name(name: &str) -> ApiResult<()> {
    // The same slug rule as every other id (purposes, fields).
    if PurposeId::parse(name).is_ok() {
        Ok(())
    } else {
        Err(bad(
            "a segment name is 1 to 64 characters of a-z, 0-9 and '_', starting with a letter",
        ))
    }
}

/// The rule a body gives, parsed and checked against its purpose.
fn checked(st: &AppState, b: &SegmentBody, name: Option<&str>) -> ApiResult<(Rule, PurposeId)> {
    let rule = match (&b.rule, &b.text) {
        (Some(v), None) => candor_segments::from_json(v).map_err(bad)?,
        (None, Some(t)) => candor_segments::parse_text(t).map_err(bad)?,
        _ => {
            return Err(bad(
                "give the rule as either `rule` (JSON) or `text`, not both",
            ))
        }
    };
    if b.description.chars().count() > 500 {
        return Err(bad("description: at most 500 characters"));
    }
    let purpose = PurposeId::parse(&b.purpose)
        .map_err(|_| ApiError::new(Code::UnknownPurpose, "no such purpose"))?;
    let lookup = |n: &str| -> Option<PurposeId> {
        // A segment may not reference itself (a cycle is never true).
        if Some(n) == name {
            return None;
        }
        st.audiences
            .purpose_of(n)
            .and_then(|p| PurposeId::parse(&p).ok())
    };
    candor_segments::check(&rule, &purpose, &st.catalog, &st.settings.fields, &lookup).map_err(
        |e| {
            let code = match e {
                CheckError::UnknownPurpose { .. } => Code::UnknownPurpose,
                CheckError::UnknownField { .. } | CheckError::BadTest { .. } => {
                    Code::InvalidSegment
                }
                CheckError::UnknownSegment { .. } => Code::UnknownSegment,
                _ => Code::SegmentNotAllowed,
            };
            ApiError::new(code, e.to_string())
        },
    )?;
    Ok((rule, purpose))
}

fn dto(st: &AppState, s: &Saved) -> Value {
    json!({
        "name": s.record.name,
        "purpose": s.record.purpose,
        "description": s.record.description,
        "rule": candor_segments::to_json(&s.rule),
        "text": s.rule.to_string(),
        "size": st.audiences.count(st, &s.record.name),
        "createdAt": format_time(candor_core::UnixMillis(s.record.created_ms)),
        "updatedAt": format_time(candor_core::UnixMillis(s.record.updated_ms)),
    })
}

fn segment(st: &AppState, name: Result<Path<String>, PathRejection>) -> ApiResult<Saved> {
    let Path(name) = name.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    st.audiences.segment(&name).ok_or_else(|| {
        ApiError::new(
            Code::UnknownSegment,
            format!("no segment {:?}", name.chars().take(64).collect::<String>()),
        )
    })
}

/// `GET /v1/admin/segments`
pub async fn list(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    st.audiences.catch_up(&st).await?;
    let items: Vec<Value> = st
        .audiences
        .segments()
        .iter()
        .map(|s| dto(&st, s))
        .collect();
    Ok(Json(json!({ "segments": items })))
}

/// `GET /v1/admin/segments/{name}`: the segment, its size now and its daily sizes.
pub async fn get(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let s = segment(&st, name)?;
    st.audiences.catch_up(&st).await?;
    let from = i32::try_from(st.now().day() - 90).unwrap_or(0);
    let sizes: Vec<Value> = st
        .store
        .segment_sizes(from)
        .await?
        .into_iter()
        .filter(|z| z.name == s.record.name)
        .map(|z| json!({"day": format_time(candor_core::UnixMillis::day_start(i64::from(z.day))), "size": z.size}))
        .collect();
    let mut v = dto(&st, &s);
    v["sizes"] = Value::Array(sizes);
    Ok(Json(v))
}

/// `PUT /v1/admin/segments/{name}`: creates or replaces a segment.
pub async fn put(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let Path(name) = name.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    valid_name(&name)?;
    let text = read_text(&headers, body, 64 * 1024, Code::InvalidRequest).await?;
    let b: SegmentBody = parse_json(&text)?;
    let (rule, purpose) = checked(&st, &b, Some(&name))?;
    let now = st.now_ms();
    let created = st
        .audiences
        .segment(&name)
        .map_or(now, |s| s.record.created_ms);
    let record = SegmentRecord {
        name: name.clone(),
        purpose: purpose.to_string(),
        rule: candor_segments::to_json(&rule).to_string(),
        description: b.description,
        created_ms: created,
        updated_ms: now,
    };
    let saved = parse_saved(&st, record).map_err(bad)?;
    st.audiences.save(&st, saved).await?;
    st.audiences.record_sizes(&st).await?;
    let s = segment(&st, Ok(Path(name)))?;
    Ok(Json(dto(&st, &s)))
}

/// `DELETE /v1/admin/segments/{name}`
pub async fn delete(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let s = segment(&st, name)?;
    st.audiences.delete(&st, &s.record.name).await?;
    Ok(Json(json!({"deleted": s.record.name})))
}

/// `POST /v1/admin/segments/validate`: a rule checked against a purpose, in both forms.
pub async fn validate(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let text = read_text(&headers, body, 64 * 1024, Code::InvalidRequest).await?;
    let b: SegmentBody = parse_json(&text)?;
    let (rule, purpose) = checked(&st, &b, None)?;
    Ok(Json(json!({
        "purpose": purpose.to_string(),
        "rule": candor_segments::to_json(&rule),
        "text": rule.to_string(),
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MembersQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/admin/segments/{name}/members`: pseudonymous subject ids, in id order.
pub async fn members(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<MembersQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let s = segment(&st, name)?;
    let Query(q) = q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(Code::InvalidRequest, "limit is 1 to 1000"));
    }
    let after = q
        .after
        .as_deref()
        .map(SubjectId::parse)
        .transpose()
        .map_err(|_| ApiError::new(Code::InvalidRequest, "after is a subject id"))?;
    st.audiences.catch_up(&st).await?;
    let page = st
        .audiences
        .members(&st, &s.record.name, after, limit)
        .unwrap_or_default();
    let next = (page.len() == limit)
        .then(|| page.last().map(|s| s.to_string()))
        .flatten();
    Ok(Json(json!({
        "segment": s.record.name,
        "members": page.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "next": next,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckQuery {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    subject: Option<String>,
}

/// One reason in the API: the sentence and the data it rests on (`field`, `trait` or
/// `events`, with its name), so a client can show the person exactly what was used.
pub fn reason_json(r: &Reason) -> Value {
    let (kind, name) = match r {
        Reason::Field { field, .. } | Reason::FieldHas { field, .. } => {
            ("field", field.to_string())
        }
        Reason::Trait { name, .. } => ("trait", name.clone()),
        Reason::Usage { events, .. }
        | Reason::Seen { events, .. }
        | Reason::NotSeen { events, .. } => ("events", events.clone()),
        Reason::Negated { rule } => ("rule", rule.clone()),
    };
    json!({ "text": r.sentence(), "uses": { "kind": kind, "name": name } })
}

/// `GET /v1/admin/segments/{name}/check?userId=…`: whether one person is a member now,
/// and why (the data the rule used), or why not (the purpose not granted).
pub async fn check_one(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<CheckQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let s = segment(&st, name)?;
    let Query(q) = q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let subject = match (q.user_id, q.anonymous_id, q.subject) {
        (Some(u), None, None) => st.store.resolve(&st.master.lookup_hash(IdKind::UserId, &u)),
        (None, Some(a), None) => st
            .store
            .resolve(&st.master.lookup_hash(IdKind::AnonymousId, &a)),
        (None, None, Some(s)) => Some(
            SubjectId::parse(&s)
                .map_err(|_| ApiError::new(Code::InvalidRequest, "subject is a subject id"))?,
        ),
        _ => {
            return Err(ApiError::new(
                Code::InvalidRequest,
                "name the person by exactly one of userId, anonymousId or subject",
            ))
        }
    }
    .ok_or_else(|| ApiError::new(Code::SubjectNotFound, "no one is known by this identifier"))?;
    st.audiences.catch_up(&st).await?;
    let granted = st.store.index().granted(&subject).contains(s.bit);
    let member = st.audiences.is_member(&st, &s.record.name, &subject) == Some(true);
    let reasons = if granted {
        st.audiences
            .engine()
            .explain(&s.rule, s.bit, &subject, &st.settings.fields)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Json(json!({
        "segment": s.record.name,
        "subject": subject.to_string(),
        "member": member,
        "purposeGranted": granted,
        "reasons": reasons.iter().map(reason_json).collect::<Vec<_>>(),
    })))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Api;
