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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// A segment's definition: its purpose and its rule, in either form.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"purpose": "personalization",
    "text": "days(track \"App Session\") in last 30 days >= 3",
    "description": "Opened the app on at least 3 days of the last 30"}))]
pub struct SegmentBody {
    /// The purpose the segment belongs to: its rule may use only data that purpose
    /// may use, and people are members only while they grant it.
    purpose: String,
    /// The rule's JSON form (one object per node: `{"and": [...]}`, `{"or": [...]}`,
    /// `{"not": {...}}`, `{"field": ..., "op": ..., "value": ...}`, `{"trait": ...}`,
    /// `{"usage": {...}, "measure": ..., "window_days": ..., "op": ..., "value": ...}`,
    /// `{"seen": {...}, "within_days": ...}`, `{"segment": ...}`; docs/segments.md)...
    #[schema(value_type = Option<Object>)]
    rule: Option<Value>,
    /// ...or its text form (exactly one of the two).
    text: Option<String>,
    /// For people (at most 500 characters).
    #[serde(default)]
    #[schema(max_length = 500)]
    description: String,
}

/// A segment: its definition in both forms, and its size now.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentDto {
    name: String,
    purpose: String,
    description: String,
    /// The rule's JSON form.
    #[schema(value_type = Object)]
    rule: Value,
    /// The rule's text form.
    text: String,
    /// Members now (people who match and grant the purpose); `null` while not yet
    /// computed.
    size: Option<u64>,
    created_at: String,
    updated_at: String,
    /// `GET /v1/admin/segments/{name}` only: the size recorded each day of the last
    /// 90 days.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sizes: Option<Vec<DailySize>>,
}

/// A segment's size on one day.
#[derive(Serialize, ToSchema)]
pub struct DailySize {
    /// The day's start (UTC).
    day: String,
    size: i64,
}

/// Every segment.
#[derive(Serialize, ToSchema)]
pub struct SegmentList {
    segments: Vec<SegmentDto>,
}

/// A deleted segment.
#[derive(Serialize, ToSchema)]
pub struct SegmentDeleted {
    /// The deleted segment's name.
    deleted: String,
}

/// A rule that passed the checks, in both forms.
#[derive(Serialize, ToSchema)]
pub struct ValidatedRule {
    purpose: String,
    /// The rule's JSON form.
    #[schema(value_type = Object)]
    rule: Value,
    /// The rule's text form.
    text: String,
}

/// A page of a segment's members.
#[derive(Serialize, ToSchema)]
pub struct MembersPage {
    segment: String,
    /// The members' pseudonymous subject ids, in id order.
    members: Vec<String>,
    /// The `after` of the next page; `null` on the last page.
    next: Option<String>,
}

/// Whether one person is a member now, and why.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberCheck {
    segment: String,
    /// The person's pseudonym.
    subject: String,
    member: bool,
    /// Whether the person grants the segment's purpose (never a member otherwise).
    purpose_granted: bool,
    /// What the rule found in the person's data (empty when the purpose is not granted).
    reasons: Vec<ReasonDto>,
}

/// One reason a rule holds for a person: the sentence, and the data it rests on.
#[derive(Serialize, Clone, ToSchema)]
pub struct ReasonDto {
    /// The reason in plain words.
    text: String,
    uses: ReasonUses,
}

/// The data a reason rests on.
#[derive(Serialize, Clone, ToSchema)]
pub struct ReasonUses {
    /// `field` (a volunteered field), `trait` (an identify trait), `events` (events of
    /// a kind), `rule` (a negated part of the rule).
    #[schema(value_type = ReasonKindDoc)]
    kind: &'static str,
    /// The field's or trait's name, the events' description, or the negated rule.
    name: String,
}

/// What kind of data a reason rests on (documentation only).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ReasonKind)]
enum ReasonKindDoc {
    Field,
    Trait,
    Events,
    Rule,
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

fn dto(st: &AppState, s: &Saved) -> SegmentDto {
    SegmentDto {
        name: s.record.name.clone(),
        purpose: s.record.purpose.clone(),
        description: s.record.description.clone(),
        rule: candor_segments::to_json(&s.rule),
        text: s.rule.to_string(),
        size: st.audiences.count(st, &s.record.name),
        created_at: format_time(candor_core::UnixMillis(s.record.created_ms)),
        updated_at: format_time(candor_core::UnixMillis(s.record.updated_ms)),
        sizes: None,
    }
}

/// The segment's name in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct NamePath {
    /// The segment's name.
    name: String,
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
#[utoipa::path(get, path = "/v1/admin/segments", tag = "personalization",
    summary = "Every segment",
    description = "The operator's segments, each with its rule in both forms and its size now. Admin token.",
    responses((status = 200, description = "The segments", body = SegmentList)))]
pub async fn list(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<SegmentList>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    st.audiences.catch_up(&st).await?;
    let segments = st
        .audiences
        .segments()
        .iter()
        .map(|s| dto(&st, s))
        .collect();
    Ok(Json(SegmentList { segments }))
}

/// `GET /v1/admin/segments/{name}`: the segment, its size now and its daily sizes.
#[utoipa::path(get, path = "/v1/admin/segments/{name}", tag = "personalization",
    summary = "One segment, with its daily sizes",
    description = "The segment, its size now and its size each day of the last 90 days. Admin token.",
    params(NamePath),
    responses((status = 200, description = "The segment", body = SegmentDto)))]
pub async fn get(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<SegmentDto>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let s = segment(&st, name)?;
    st.audiences.catch_up(&st).await?;
    let from = i32::try_from(st.now().day() - 90).unwrap_or(0);
    let sizes = st
        .store
        .segment_sizes(from)
        .await?
        .into_iter()
        .filter(|z| z.name == s.record.name)
        .map(|z| DailySize {
            day: format_time(candor_core::UnixMillis::day_start(i64::from(z.day))),
            size: z.size,
        })
        .collect();
    let mut v = dto(&st, &s);
    v.sizes = Some(sizes);
    Ok(Json(v))
}

/// `PUT /v1/admin/segments/{name}`: creates or replaces a segment.
#[utoipa::path(put, path = "/v1/admin/segments/{name}", tag = "personalization",
    summary = "Create or replace a segment",
    description = "Saves a segment after checking its rule against its purpose: a rule that names data \
the purpose may not use is refused (`segment_not_allowed`, naming the field, trait or events). \
Admin token; audited.",
    params(("name" = String, Path, description = "The segment's name: 1 to 64 characters of a-z, 0-9 and `_`, starting with a letter")),
    request_body = SegmentBody,
    responses((status = 200, description = "The segment as saved", body = SegmentDto)))]
pub async fn put(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult<Json<SegmentDto>> {
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
#[utoipa::path(delete, path = "/v1/admin/segments/{name}", tag = "personalization",
    summary = "Delete a segment",
    description = "Deletes the segment (its members leave it). Admin token; audited.",
    params(NamePath),
    responses((status = 200, description = "The deleted segment's name", body = SegmentDeleted)))]
pub async fn delete(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<SegmentDeleted>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let s = segment(&st, name)?;
    st.audiences.delete(&st, &s.record.name).await?;
    Ok(Json(SegmentDeleted {
        deleted: s.record.name,
    }))
}

/// `POST /v1/admin/segments/validate`: a rule checked against a purpose, in both forms.
#[utoipa::path(post, path = "/v1/admin/segments/validate", tag = "personalization",
    summary = "Check a segment rule",
    description = "Checks a rule against a purpose as saving would, and answers it in both forms; \
nothing is saved. For editors. Admin token.",
    request_body = SegmentBody,
    responses((status = 200, description = "The rule, checked", body = ValidatedRule)))]
pub async fn validate(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ValidatedRule>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let text = read_text(&headers, body, 64 * 1024, Code::InvalidRequest).await?;
    let b: SegmentBody = parse_json(&text)?;
    let (rule, purpose) = checked(&st, &b, None)?;
    Ok(Json(ValidatedRule {
        purpose: purpose.to_string(),
        rule: candor_segments::to_json(&rule),
        text: rule.to_string(),
    }))
}

/// A page of members.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// Members after this subject id (the previous page's `next`).
    after: Option<String>,
    /// At most this many (1 to 1000, default 100).
    limit: Option<usize>,
}

/// `GET /v1/admin/segments/{name}/members`: pseudonymous subject ids, in id order.
#[utoipa::path(get, path = "/v1/admin/segments/{name}/members", tag = "personalization",
    summary = "A segment's members",
    description = "The members' pseudonymous subject ids, in id order, a page at a time. Admin token.",
    params(NamePath, MembersQuery),
    responses((status = 200, description = "A page of members", body = MembersPage)))]
pub async fn members(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<MembersQuery>, QueryRejection>,
) -> ApiResult<Json<MembersPage>> {
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
    Ok(Json(MembersPage {
        segment: s.record.name,
        members: page.iter().map(|s| s.to_string()).collect(),
        next,
    }))
}

/// The person to check: exactly one of the three.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    /// The person's pseudonymous subject id.
    subject: Option<String>,
}

/// One reason in the API: the sentence and the data it rests on (`field`, `trait` or
/// `events`, with its name), so a client can show the person exactly what was used.
pub fn reason_dto(r: &Reason) -> ReasonDto {
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
    ReasonDto {
        text: r.sentence(),
        uses: ReasonUses { kind, name },
    }
}

/// `GET /v1/admin/segments/{name}/check?userId=…`: whether one person is a member now,
/// and why (the data the rule used), or why not (the purpose not granted).
#[utoipa::path(get, path = "/v1/admin/segments/{name}/check", tag = "personalization",
    summary = "Whether one person is a member, and why",
    description = "Whether the person is a member now and the data the rule used, or that the purpose \
is not granted. Admin token.",
    params(NamePath, CheckQuery),
    responses((status = 200, description = "The person's membership", body = MemberCheck)))]
pub async fn check_one(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<CheckQuery>, QueryRejection>,
) -> ApiResult<Json<MemberCheck>> {
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
    Ok(Json(MemberCheck {
        segment: s.record.name,
        subject: subject.to_string(),
        member,
        purpose_granted: granted,
        reasons: reasons.iter().map(reason_dto).collect(),
    }))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, validate, get, put, delete, members, check_one))]
pub(crate) struct Api;
