//! Audience insights over HTTP: the advertiser's endpoints (`/v1/insights/*`, advertiser
//! key only) and the operator's (`/v1/admin/advertisers*`, `/v1/admin/insights/reports`,
//! admin token only). Advertisers see aggregates with noise and their own budget and
//! reports; never a subject id, an event or a profile.

use crate::audience::{self, budget_json, KEY_PREFIX};
use crate::auth;
use crate::body::{parse_json, read_text};
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use candor_core::time::UnixMillis;
use candor_insights::query::{Condition, InsightQuery, Measure, Metric, CATEGORY};
use candor_insights::{Day, FeatureKind};
use candor_store::{Advertiser, BudgetPeriod, ReportRecord, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConditionDto {
    feature: String,
    category: Option<String>,
    min_days: u32,
}

/// The wire form of a query (see the OpenAPI document).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QueryDto {
    metric: String,
    feature: String,
    measure: Option<String>,
    clamp: Option<(f64, f64)>,
    #[serde(default)]
    group_by: Vec<String>,
    keys: Option<Vec<Vec<String>>>,
    top_k: Option<usize>,
    date_from: Option<String>,
    date_to: Option<String>,
    categories: Option<Vec<String>>,
    #[serde(default)]
    declared: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    conditions: Vec<ConditionDto>,
    max_groups_per_subject: Option<u32>,
    epsilon: f64,
    delta: Option<f64>,
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(Code::InvalidQuery, m)
}

fn day(s: &str, what: &str) -> ApiResult<Day> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt)
        .map_err(|_| bad(format!("{what} must be a date like 2026-11-29")))?;
    let ms = d.midnight().assume_utc().unix_timestamp() * 1000;
    Day::from_ms(ms).ok_or_else(|| bad(format!("{what} is out of range")))
}

fn feature(s: &str) -> ApiResult<FeatureKind> {
    FeatureKind::parse(s).ok_or_else(|| {
        bad(format!(
            "feature must be app_installs, app_usage or browsing, not {s:?}"
        ))
    })
}

/// Parses the body into a query.
fn to_query(st: &AppState, d: QueryDto) -> ApiResult<InsightQuery> {
    let metric = match (d.metric.as_str(), d.top_k) {
        ("count", None) => Metric::Count,
        ("sum", None) => Metric::Sum,
        ("mean", None) => Metric::Mean,
        ("histogram", None) => Metric::Histogram,
        ("top_k", Some(k)) if (1..=1000).contains(&k) => Metric::TopK(k),
        ("top_k", _) => return Err(bad("top_k needs topK between 1 and 1000")),
        (_, Some(_)) => return Err(bad("topK is only for metric top_k")),
        (m, None) => {
            return Err(bad(format!(
                "metric must be count, sum, mean, histogram or top_k, not {m:?}"
            )))
        }
    };
    let measure = d
        .measure
        .as_deref()
        .map(|m| {
            Measure::parse(m).ok_or_else(|| {
                bad(format!(
                    "measure must be sessions or days_active, not {m:?}"
                ))
            })
        })
        .transpose()?;
    let today = Day::from_ms(st.now_ms()).ok_or_else(|| bad("the server clock is out of range"))?;
    let to = match &d.date_to {
        Some(s) => day(s, "dateTo")?,
        None => today,
    };
    let from = match &d.date_from {
        Some(s) => day(s, "dateFrom")?,
        None => Day::from_ms(UnixMillis(to.start_ms()).minus_days(29).0).unwrap_or(to),
    };
    let conditions = d
        .conditions
        .into_iter()
        .map(|c| {
            Ok(Condition {
                kind: feature(&c.feature)?,
                category: c.category,
                min_days: c.min_days,
            })
        })
        .collect::<ApiResult<_>>()?;
    let by_category = d.group_by.iter().any(|g| g == CATEGORY);
    Ok(InsightQuery {
        metric,
        feature: feature(&d.feature)?,
        measure,
        clamp: d.clamp,
        group_by: d.group_by,
        keys: d.keys,
        from,
        to,
        categories: d.categories,
        declared: d.declared,
        conditions,
        max_groups_per_subject: d
            .max_groups_per_subject
            .unwrap_or(if by_category { 4 } else { 1 }),
        epsilon: d.epsilon,
        delta: d.delta,
    })
}

/// `POST /v1/insights/query`
pub async fn query(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let adv = audience::advertiser(&st, &headers).await?;
    let text = read_text(&headers, body, 64 * 1024, Code::InvalidQuery).await?;
    let raw: Value = parse_json(&text)?;
    let dto: QueryDto =
        serde_json::from_value(raw.clone()).map_err(|e| bad(format!("invalid query: {e}")))?;
    let q = to_query(&st, dto)?;
    let compiled = audience::compile(&st, &adv, &q)?;
    Ok(Json(audience::answer(&st, &adv, compiled, raw).await?))
}

/// `GET /v1/insights/schema`: what this advertiser may ask.
pub async fn schema(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let adv = audience::advertiser(&st, &headers).await?;
    let schema = st.store.features().schema();
    let declared: serde_json::Map<String, Value> = schema
        .declared
        .iter()
        .filter(|f| adv.allowed_dimensions.contains(&f.name))
        .map(|f| (f.name.clone(), json!(f.values)))
        .collect();
    Ok(Json(json!({
        "features": adv.allowed_features,
        "dimensions": adv.allowed_dimensions,
        "declaredValues": declared,
        "metrics": ["count", "sum", "mean", "histogram", "top_k"],
        "measures": ["sessions", "days_active"],
        "minGroupSize": st.settings.insights.min_group_size,
        "secureNoise": candor_privacy::RNG_IS_CRYPTOGRAPHICALLY_SECURE,
        "budget": budget_json(&st, &adv).await?,
    })))
}

/// `GET /v1/insights/budget`
pub async fn budget(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let adv = audience::advertiser(&st, &headers).await?;
    Ok(Json(budget_json(&st, &adv).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    after: i64,
    limit: Option<usize>,
    advertiser: Option<String>,
}

fn released(r: &ReportRecord) -> Value {
    let answer: Value = serde_json::from_str(&r.answer_json).unwrap_or(Value::Null);
    let query: Value = serde_json::from_str(&r.query_json).unwrap_or(Value::Null);
    json!({
        "reportId": r.id,
        "time": crate::segment::format_time(r.time_ms),
        "period": r.period,
        "purpose": r.purpose,
        "charged": audience::spend_json(r.cost),
        "query": query,
        "answer": answer,
    })
}

/// `GET /v1/insights/reports`: the advertiser's own past answers (free to re-read).
pub async fn reports(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let adv = audience::advertiser(&st, &headers).await?;
    let Query(q) = q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    if q.advertiser.is_some() {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "advertiser is an operator filter",
        ));
    }
    let rows = st
        .store
        .reports(
            Some(&adv.id),
            q.after,
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    Ok(Json(
        json!({"reports": rows.iter().map(released).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/insights/reports/{id}`
pub async fn report(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let adv = audience::advertiser(&st, &headers).await?;
    let not_found = || ApiError::new(Code::NotFound, "no such report");
    let id: i64 = id.parse().map_err(|_| not_found())?;
    match st.store.report(id).await? {
        // another advertiser's report is "not found", not "forbidden": ids say nothing
        Some(r) if r.advertiser == adv.id => Ok(Json(released(&r))),
        _ => Err(not_found()),
    }
}

// ---- operator endpoints ----

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetDto {
    epsilon: f64,
    #[serde(default)]
    delta: f64,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AdvertiserDto {
    id: Option<String>,
    name: Option<String>,
    budget: Option<BudgetDto>,
    period: Option<String>,
    features: Option<Vec<String>>,
    dimensions: Option<Vec<String>>,
    disabled: Option<bool>,
    /// A lifetime cap; `null` removes it, absent leaves it as it is.
    #[serde(default, deserialize_with = "present")]
    lifetime: Option<Option<BudgetDto>>,
}

/// Tells a field given as `null` (`Some(None)`) from one not given (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(Code::InvalidRequest, m)
}

/// Applies the DTO's fields to `a`, validating each.
fn apply(st: &AppState, a: &mut Advertiser, d: AdvertiserDto) -> ApiResult<()> {
    if let Some(n) = d.name {
        if n.trim().is_empty() || n.len() > 200 {
            return Err(invalid("name must be 1 to 200 characters"));
        }
        a.name = n;
    }
    if let Some(b) = d.budget {
        if !(b.epsilon.is_finite() && b.epsilon > 0.0 && b.epsilon <= 1000.0) {
            return Err(invalid("budget.epsilon must be in (0, 1000]"));
        }
        if !(b.delta.is_finite() && (0.0..=1e-3).contains(&b.delta)) {
            return Err(invalid("budget.delta must be in [0, 0.001]"));
        }
        a.budget = audience::budget(b.epsilon, b.delta);
    }
    if let Some(p) = d.period {
        a.period =
            BudgetPeriod::parse(&p).ok_or_else(|| invalid("period must be day, week or month"))?;
    }
    if let Some(f) = d.features {
        if let Some(bad) = f.iter().find(|f| FeatureKind::parse(f).is_none()) {
            return Err(invalid(format!(
                "unknown feature {bad:?} (app_installs, app_usage, browsing)"
            )));
        }
        a.allowed_features = dedup(f);
    }
    if let Some(ds) = d.dimensions {
        let schema = st.store.features().schema();
        if let Some(bad) = ds
            .iter()
            .find(|d| d.as_str() != CATEGORY && schema.field(d).is_none())
        {
            return Err(invalid(format!("unknown dimension {bad:?}")));
        }
        a.allowed_dimensions = dedup(ds);
    }
    if let Some(x) = d.disabled {
        a.disabled = x;
    }
    match d.lifetime {
        None => {}
        Some(None) => a.lifetime = None,
        Some(Some(b)) => {
            if !(b.epsilon.is_finite() && b.epsilon > 0.0 && b.epsilon <= 1_000_000.0) {
                return Err(invalid("lifetime.epsilon must be in (0, 1000000]"));
            }
            if !(b.delta.is_finite() && (0.0..=0.1).contains(&b.delta)) {
                return Err(invalid("lifetime.delta must be in [0, 0.1]"));
            }
            a.lifetime = Some(audience::budget(b.epsilon, b.delta));
        }
    }
    Ok(())
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

async fn advertiser_view(st: &AppState, a: &Advertiser) -> ApiResult<Value> {
    Ok(json!({
        "id": a.id,
        "name": a.name,
        "period": a.period.as_str(),
        "features": a.allowed_features,
        "dimensions": a.allowed_dimensions,
        "disabled": a.disabled,
        "created": crate::segment::format_time(a.created_ms),
        "budget": budget_json(st, a).await?,
    }))
}

/// `POST /v1/admin/advertisers`: creates an advertiser; the API key is in this response
/// only (the store keeps its hash).
pub async fn create_advertiser(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let text = read_text(&headers, body, 16 * 1024, Code::InvalidRequest).await?;
    let d: AdvertiserDto = parse_json(&text)?;
    let id = d.id.clone().unwrap_or_default();
    let id_ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !id_ok {
        return Err(invalid(
            "id must be 1 to 64 characters of a-z, 0-9, _ and -",
        ));
    }
    if d.name.is_none() || d.budget.is_none() {
        return Err(invalid("name and budget are required"));
    }
    let key = audience::new_api_key();
    let now = st.now_ms();
    let mut a = Advertiser {
        id,
        name: String::new(),
        key_hash: audience::key_hash(&key),
        budget: audience::budget(0.0, 0.0),
        period: BudgetPeriod::Month,
        allowed_features: FeatureKind::ALL
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        allowed_dimensions: std::iter::once(CATEGORY.to_owned())
            .chain(
                st.store
                    .features()
                    .schema()
                    .declared
                    .iter()
                    .map(|f| f.name.clone()),
            )
            .collect(),
        disabled: false,
        created_ms: UnixMillis(now),
        updated_ms: UnixMillis(now),
        lifetime: None,
    };
    apply(&st, &mut a, AdvertiserDto { id: None, ..d })?;
    // Insert-only: a concurrent create of the same id gets 409, never a silent overwrite.
    st.store.create_advertiser(a.clone()).await?;
    let mut view = advertiser_view(&st, &a).await?;
    view["apiKey"] = json!(key);
    Ok((StatusCode::CREATED, Json(view)))
}

async fn existing(st: &AppState, id: &str) -> ApiResult<Advertiser> {
    st.store
        .advertiser(id)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, "no such advertiser"))
}

/// `GET /v1/admin/advertisers`
pub async fn list_advertisers(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mut out = Vec::new();
    for a in st.store.advertisers().await? {
        out.push(advertiser_view(&st, &a).await?);
    }
    Ok(Json(json!({"advertisers": out})))
}

/// `PATCH /v1/admin/advertisers/{id}`: budget, period, permissions, name, disabled.
pub async fn update_advertiser(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let text = read_text(&headers, body, 16 * 1024, Code::InvalidRequest).await?;
    let d: AdvertiserDto = parse_json(&text)?;
    if d.id.as_ref().is_some_and(|x| *x != id) {
        return Err(invalid("the id cannot be changed"));
    }
    let a = modify(&st, &id, |a| apply(&st, a, d.clone())).await?;
    Ok(Json(advertiser_view(&st, &a).await?))
}

/// Attempts of a read-modify-write before giving up with `conflict`.
const MODIFY_ATTEMPTS: usize = 8;

/// Reads the advertiser, changes it with `f` and writes it back only if nothing else
/// changed it meanwhile (compare-and-set on `updated_ms`, which every change raises
/// strictly), re-reading and re-applying `f` otherwise. Without this, a PATCH that read
/// the advertiser before a concurrent key rotation would write the old key back, and a
/// leaked key the operator had just revoked would work again.
async fn modify(
    st: &AppState,
    id: &str,
    mut f: impl FnMut(&mut Advertiser) -> ApiResult<()>,
) -> ApiResult<Advertiser> {
    for _ in 0..MODIFY_ATTEMPTS {
        let mut a = existing(st, id).await?;
        let expected = a.updated_ms;
        f(&mut a)?;
        a.updated_ms = st.now().max(expected.plus_ms(1));
        match st.store.replace_advertiser(a.clone(), expected).await {
            Ok(()) => return Ok(a),
            Err(StoreError::AdvertiserChanged) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::AdvertiserChanged.into())
}

/// `POST /v1/admin/advertisers/{id}/rotate-key`: a new key; the old one stops working.
pub async fn rotate_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let key = audience::new_api_key();
    debug_assert!(key.starts_with(KEY_PREFIX));
    let hash = audience::key_hash(&key);
    modify(&st, &id, |a| {
        a.key_hash = hash;
        Ok(())
    })
    .await?;
    Ok(Json(json!({"id": id, "apiKey": key})))
}

/// `GET /v1/admin/insights/reports`: the audit log of every answered query, its cost and
/// who asked.
pub async fn audit(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let Query(q) = q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let rows = st
        .store
        .reports(
            q.advertiser.as_deref(),
            q.after,
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = released(r);
            v["advertiser"] = json!(r.advertiser);
            v["spentAfter"] = audience::spend_json(r.spent_after);
            v["budget"] = audience::spend_json(r.budget);
            v
        })
        .collect();
    Ok(Json(json!({"reports": out})))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths())]
pub(crate) struct Api;
