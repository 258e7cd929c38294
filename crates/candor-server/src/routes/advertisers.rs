//! Audience insights over HTTP: the advertiser's endpoints (`/v1/insights/*`, advertiser
//! key only) and the operator's (`/v1/admin/advertisers*`, `/v1/admin/insights/reports`,
//! admin token only). Advertisers see aggregates with noise and their own budget and
//! reports; never a subject id, an event or a profile.

use crate::audience::{
    self, budget_json, BudgetPeriodDoc, BudgetView, EpsilonDelta, InsightAnswer, MetricDoc,
    QueryAnswer, KEY_PREFIX,
};
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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Only people with at least `minDays` days of a feature (of one category, if named) in
/// the query's date range are counted.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = InsightCondition)]
struct ConditionDto {
    #[schema(value_type = FeatureDoc)]
    feature: String,
    /// A category name (needs the `category` dimension).
    category: Option<String>,
    #[schema(minimum = 1, maximum = 400)]
    min_days: u32,
}

/// An insight query: a metric over one feature of the people who grant the insights
/// purpose, in a date range, optionally grouped and filtered. It costs `epsilon` (and
/// `delta`) of the advertiser's budget, charged only when the answer is released.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = InsightQuery, example = json!({"metric": "count", "feature": "app_usage", "epsilon": 0.1}))]
struct QueryDto {
    #[schema(value_type = MetricDoc)]
    metric: String,
    #[schema(value_type = FeatureDoc)]
    feature: String,
    /// What is summed or averaged per person: required by `sum` and `mean`, refused by
    /// the other metrics.
    #[schema(value_type = Option<MeasureDoc>)]
    measure: Option<String>,
    /// `[low, high]`: each person's measure is clamped to it (required by `sum` and
    /// `mean`, refused by the other metrics).
    #[schema(value_type = Option<Vec<f64>>, min_items = 2, max_items = 2)]
    clamp: Option<(f64, f64)>,
    /// Up to two dimensions: `category` or declared fields (`GET /v1/insights/schema`).
    #[serde(default)]
    #[schema(max_items = 2)]
    group_by: Vec<String>,
    /// The groups to answer, one value per `groupBy` dimension each (public keys: no
    /// partition selection, no δ). Without it, keys are public when every dimension has
    /// a public domain, else they come from the data.
    #[schema(min_items = 1, max_items = 10000)]
    keys: Option<Vec<Vec<String>>>,
    /// How many groups `top_k` answers (only with `top_k`).
    #[schema(minimum = 1, maximum = 1000)]
    top_k: Option<usize>,
    /// First day (UTC), default 29 days before `dateTo`.
    #[schema(format = Date, example = "2026-11-01")]
    date_from: Option<String>,
    /// Last day, inclusive (UTC), default today. At most 400 days after `dateFrom`.
    #[schema(format = Date, example = "2026-11-29")]
    date_to: Option<String>,
    /// Only these categories (needs the `category` dimension).
    #[schema(min_items = 1, max_items = 10000)]
    categories: Option<Vec<String>>,
    /// Declared field → the values to keep.
    #[serde(default)]
    declared: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    #[schema(max_items = 8)]
    conditions: Vec<ConditionDto>,
    /// Most groups one person counts in; default 4 when grouping by `category`, else 1.
    #[schema(minimum = 1)]
    max_groups_per_subject: Option<u32>,
    /// The privacy loss this query spends (its noise scales with 1/ε).
    #[schema(exclusive_minimum = 0)]
    epsilon: f64,
    /// Must be above 0 when group keys come from the data (default 1e-6 then), and 0
    /// otherwise (the default).
    #[schema(minimum = 0, exclusive_maximum = 1)]
    delta: Option<f64>,
}

/// A feature an insight query reads (documentation only: parsed as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = InsightFeature)]
enum FeatureDoc {
    AppInstalls,
    AppUsage,
    Browsing,
}

/// What `sum` and `mean` add up per person (documentation only: parsed as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = InsightMeasure)]
enum MeasureDoc {
    /// Sessions, visits or installs.
    Sessions,
    /// Days with any activity.
    DaysActive,
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

#[utoipa::path(post, path = "/v1/insights/query", tag = "insights",
    summary = "Ask an insight query",
    description = "Answers with noisy aggregates over the people who grant the insights purpose now, \
and charges the query's ε and δ to the advertiser's budget: refused before any scan when a budget \
(the period's, the advertiser's lifetime cap, or the operator's cap across advertisers) cannot cover it, \
charged only when the answer is released. Each answer is stored as a report, free to read again.",
    request_body(content = QueryDto, examples(
        ("count" = (summary = "How many people used apps in the last 30 days", value = json!({"metric": "count", "feature": "app_usage", "epsilon": 0.1}))),
        ("histogram" = (summary = "People per age band (a declared field: public keys, no δ)", value = json!({"metric": "histogram", "feature": "app_usage", "groupBy": ["age_band"], "epsilon": 0.5}))),
        ("sum" = (summary = "Sessions per app category (keys from the data: δ charged)", value = json!({"metric": "sum", "feature": "app_usage", "measure": "sessions", "clamp": [0, 10], "groupBy": ["category"], "epsilon": 0.5, "delta": 0.000001}))),
    )),
    responses((status = 200, description = "The released answer, its report id and the budget after the charge", body = QueryAnswer)))]
pub async fn query(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<QueryAnswer>> {
    let adv = audience::advertiser(&st, &headers).await?;
    let text = read_text(&headers, body, 64 * 1024, Code::InvalidQuery).await?;
    let raw: Value = parse_json(&text)?;
    let dto: QueryDto =
        serde_json::from_value(raw.clone()).map_err(|e| bad(format!("invalid query: {e}")))?;
    let q = to_query(&st, dto)?;
    let compiled = audience::compile(&st, &adv, &q)?;
    Ok(Json(audience::answer(&st, &adv, compiled, raw).await?))
}

/// What an advertiser may ask, and its budget.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightSchema {
    /// The features it may query.
    #[schema(value_type = Vec<FeatureDoc>)]
    features: Vec<String>,
    /// The dimensions it may group and filter by (`category` and declared fields).
    dimensions: Vec<String>,
    /// Each allowed declared field's values.
    declared_values: BTreeMap<String, Vec<String>>,
    #[schema(value_type = Vec<MetricDoc>)]
    metrics: [&'static str; 5],
    #[schema(value_type = Vec<MeasureDoc>)]
    measures: [&'static str; 2],
    /// Groups whose noisy count falls below it are suppressed.
    min_group_size: i64,
    /// Whether the noise comes from a cryptographically secure generator.
    secure_noise: bool,
    budget: BudgetView,
}

#[utoipa::path(get, path = "/v1/insights/schema", tag = "insights",
    summary = "What this advertiser may ask",
    responses((status = 200, description = "The features, dimensions, metrics and measures it may use, and its budget", body = InsightSchema)))]
pub async fn schema(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<InsightSchema>> {
    let adv = audience::advertiser(&st, &headers).await?;
    let schema = st.store.features().schema();
    let declared_values = schema
        .declared
        .iter()
        .filter(|f| adv.allowed_dimensions.contains(&f.name))
        .map(|f| (f.name.clone(), f.values.clone()))
        .collect();
    let budget = budget_json(&st, &adv).await?;
    Ok(Json(InsightSchema {
        features: adv.allowed_features,
        dimensions: adv.allowed_dimensions,
        declared_values,
        metrics: ["count", "sum", "mean", "histogram", "top_k"],
        measures: ["sessions", "days_active"],
        min_group_size: st.settings.insights.min_group_size,
        secure_noise: candor_privacy::RNG_IS_CRYPTOGRAPHICALLY_SECURE,
        budget,
    }))
}

#[utoipa::path(get, path = "/v1/insights/budget", tag = "insights",
    summary = "This advertiser's budget",
    responses((status = 200, description = "Budget, spent and remaining for the current period (and the lifetime cap, if any)", body = BudgetView)))]
pub async fn budget(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<BudgetView>> {
    let adv = audience::advertiser(&st, &headers).await?;
    Ok(Json(budget_json(&st, &adv).await?))
}

/// A page of reports, oldest first.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Only reports with a larger id (the last id of the previous page).
    #[serde(default)]
    after: i64,
    /// At most this many (1 to 1000, default 100).
    limit: Option<usize>,
    /// Only this advertiser's reports.
    advertiser: Option<String>,
}

/// A released answer as recorded: what was asked, what was answered and charged.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = InsightReport)]
pub struct ReportView {
    report_id: i64,
    time: String,
    /// The budget period it was charged to.
    period: String,
    /// The purpose the people counted had granted.
    purpose: String,
    charged: EpsilonDelta,
    /// The query as it was sent.
    #[schema(value_type = QueryDto)]
    query: Value,
    #[schema(value_type = InsightAnswer)]
    answer: Value,
}

fn released(r: &ReportRecord) -> ReportView {
    let answer: Value = serde_json::from_str(&r.answer_json).unwrap_or(Value::Null);
    let query: Value = serde_json::from_str(&r.query_json).unwrap_or(Value::Null);
    ReportView {
        report_id: r.id,
        time: crate::segment::format_time(r.time_ms),
        period: r.period.clone(),
        purpose: r.purpose.clone(),
        charged: audience::spend_json(r.cost),
        query,
        answer,
    }
}

/// An advertiser's reports.
#[derive(Serialize, ToSchema)]
#[schema(as = InsightReports)]
pub struct ReportList {
    reports: Vec<ReportView>,
}

#[utoipa::path(get, path = "/v1/insights/reports", tag = "insights",
    summary = "This advertiser's past answers",
    description = "Re-reading a report is free: it is the answer already released.",
    params(
        ("after" = Option<i64>, Query, description = "Only reports with a larger id (the last id of the previous page)"),
        ("limit" = Option<usize>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses((status = 200, description = "Reports, oldest first", body = ReportList)))]
pub async fn reports(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<ReportList>> {
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
    Ok(Json(ReportList {
        reports: rows.iter().map(released).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/insights/reports/{id}", tag = "insights",
    summary = "One past answer",
    params(("id" = String, Path, description = "The report id (`reportId` of the answer); another advertiser's is not found")),
    responses((status = 200, description = "The report", body = ReportView)))]
pub async fn report(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ReportView>> {
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

/// A privacy budget per period.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AdvertiserBudget)]
struct BudgetDto {
    #[schema(exclusive_minimum = 0, maximum = 1000)]
    epsilon: f64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 0.001)]
    delta: f64,
}

/// A lifetime cap: the most an advertiser may ever be charged, over every period
/// (documentation only: read as an `AdvertiserBudget`, checked against these bounds).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AdvertiserLifetime)]
#[allow(dead_code)]
struct LifetimeDoc {
    #[schema(exclusive_minimum = 0, maximum = 1000000)]
    epsilon: f64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 0.1)]
    delta: f64,
}

/// Changes to an advertiser: every field given is changed, the others are left as they
/// are.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = AdvertiserChange, example = json!({"budget": {"epsilon": 2.0, "delta": 0.00001}, "period": "week"}))]
struct AdvertiserDto {
    /// The id cannot change: if given, it must be the path's.
    id: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    budget: Option<BudgetDto>,
    #[schema(value_type = Option<BudgetPeriodDoc>)]
    period: Option<String>,
    /// The features it may query (replaces the list).
    #[schema(value_type = Option<Vec<FeatureDoc>>)]
    features: Option<Vec<String>>,
    /// The dimensions it may group and filter by: `category` and declared fields
    /// (replaces the list).
    dimensions: Option<Vec<String>>,
    /// A disabled advertiser's key is refused as invalid.
    disabled: Option<bool>,
    /// A lifetime cap; `null` removes it, absent leaves it as it is.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<LifetimeDoc>)]
    lifetime: Option<Option<BudgetDto>>,
}

/// A new advertiser (documentation only: read as an `AdvertiserChange`, with `id`,
/// `name` and `budget` required). Without `features` or `dimensions` it may use every
/// feature and every dimension.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewAdvertiser, example = json!({"id": "acme", "name": "Acme Ads", "budget": {"epsilon": 1.0}, "period": "month"}))]
#[allow(dead_code)]
struct NewAdvertiserDoc {
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    id: String,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    budget: BudgetDto,
    /// Default `month`.
    #[schema(value_type = Option<BudgetPeriodDoc>)]
    period: Option<String>,
    #[schema(value_type = Option<Vec<FeatureDoc>>)]
    features: Option<Vec<String>>,
    dimensions: Option<Vec<String>>,
    disabled: Option<bool>,
    #[schema(value_type = Option<LifetimeDoc>)]
    lifetime: Option<BudgetDto>,
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

/// An advertiser as the operator sees it (never its key, which only its creation and
/// rotation answer with).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Advertiser)]
pub struct AdvertiserView {
    id: String,
    name: String,
    #[schema(value_type = BudgetPeriodDoc)]
    period: &'static str,
    #[schema(value_type = Vec<FeatureDoc>)]
    features: Vec<String>,
    dimensions: Vec<String>,
    disabled: bool,
    created: String,
    budget: BudgetView,
}

async fn advertiser_view(st: &AppState, a: &Advertiser) -> ApiResult<AdvertiserView> {
    Ok(AdvertiserView {
        id: a.id.clone(),
        name: a.name.clone(),
        period: a.period.as_str(),
        features: a.allowed_features.clone(),
        dimensions: a.allowed_dimensions.clone(),
        disabled: a.disabled,
        created: crate::segment::format_time(a.created_ms),
        budget: budget_json(st, a).await?,
    })
}

/// A new advertiser, with its API key (shown here only: the store keeps its hash).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedAdvertiser {
    #[serde(flatten)]
    advertiser: AdvertiserView,
    /// The advertiser's key (`cnd_adv_…`), sent as a Bearer token.
    api_key: String,
}

#[utoipa::path(post, path = "/v1/admin/advertisers", tag = "admin",
    summary = "Create an advertiser",
    description = "The answer carries the advertiser's API key, shown this once (the store keeps its hash). \
Creating an id that exists is refused with `already_exists`.",
    request_body = NewAdvertiserDoc,
    responses((status = 201, description = "The advertiser and its API key", body = CreatedAdvertiser)))]
pub async fn create_advertiser(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<CreatedAdvertiser>)> {
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
    let advertiser = advertiser_view(&st, &a).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedAdvertiser {
            advertiser,
            api_key: key,
        }),
    ))
}

async fn existing(st: &AppState, id: &str) -> ApiResult<Advertiser> {
    st.store
        .advertiser(id)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, "no such advertiser"))
}

/// Every advertiser.
#[derive(Serialize, ToSchema)]
pub struct Advertisers {
    advertisers: Vec<AdvertiserView>,
}

#[utoipa::path(get, path = "/v1/admin/advertisers", tag = "admin",
    summary = "List the advertisers",
    responses((status = 200, description = "Every advertiser with its budget for the current period", body = Advertisers)))]
pub async fn list_advertisers(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Advertisers>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let mut advertisers = Vec::new();
    for a in st.store.advertisers().await? {
        advertisers.push(advertiser_view(&st, &a).await?);
    }
    Ok(Json(Advertisers { advertisers }))
}

#[utoipa::path(patch, path = "/v1/admin/advertisers/{id}", tag = "admin",
    summary = "Change an advertiser",
    description = "Budget, period, lifetime cap, allowed features and dimensions, name, disabled. \
Applied with compare-and-set, so a concurrent key rotation is never undone; `conflict` when the \
advertiser kept changing meanwhile (nothing was written).",
    params(("id" = String, Path, description = "The advertiser's id")),
    request_body = AdvertiserDto,
    responses((status = 200, description = "The advertiser after the change", body = AdvertiserView)))]
pub async fn update_advertiser(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Json<AdvertiserView>> {
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

/// An advertiser's new key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedKey {
    id: String,
    /// The new key (`cnd_adv_…`), shown this once.
    api_key: String,
}

#[utoipa::path(post, path = "/v1/admin/advertisers/{id}/rotate-key", tag = "admin",
    summary = "Rotate an advertiser's key",
    description = "A new key, shown this once; the old one stops working at once.",
    params(("id" = String, Path, description = "The advertiser's id")),
    responses((status = 200, description = "The new key", body = RotatedKey)))]
pub async fn rotate_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<RotatedKey>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let key = audience::new_api_key();
    debug_assert!(key.starts_with(KEY_PREFIX));
    let hash = audience::key_hash(&key);
    modify(&st, &id, |a| {
        a.key_hash = hash;
        Ok(())
    })
    .await?;
    Ok(Json(RotatedKey { id, api_key: key }))
}

/// A report in the operator's audit log: who asked, and the budget it was charged to.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditedReport {
    #[serde(flatten)]
    report: ReportView,
    /// The advertiser's id.
    advertiser: String,
    /// What the period had spent with this report.
    spent_after: EpsilonDelta,
    /// The advertiser's budget for the period when it was charged.
    budget: EpsilonDelta,
}

/// The audit log of insight reports.
#[derive(Serialize, ToSchema)]
pub struct AuditedReports {
    reports: Vec<AuditedReport>,
}

#[utoipa::path(get, path = "/v1/admin/insights/reports", tag = "admin",
    summary = "The audit log of insight reports",
    description = "Every answered query, its cost and who asked.",
    params(PageQuery),
    responses((status = 200, description = "Reports, oldest first", body = AuditedReports)))]
pub async fn audit(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditedReports>> {
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
    let reports = rows
        .iter()
        .map(|r| AuditedReport {
            report: released(r),
            advertiser: r.advertiser.clone(),
            spent_after: audience::spend_json(r.spent_after),
            budget: audience::spend_json(r.budget),
        })
        .collect();
    Ok(Json(AuditedReports { reports }))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    query,
    schema,
    budget,
    reports,
    report,
    create_advertiser,
    list_advertisers,
    update_advertiser,
    rotate_key,
    audit
))]
pub(crate) struct Api;
