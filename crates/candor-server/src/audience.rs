//! Audience insights in the server: advertiser keys, budget periods and fixed-point
//! costs, and the one function that answers a query (`answer`): compile, scan, noise,
//! then charge-and-record in one store transaction, and only then respond.
//!
//! **Charged before answered.** The noisy answer is computed first but never leaves the
//! process unless `Store::record_report` commits the charge (atomically with the audit
//! record and the membership set). A refused charge discards it: computing a noisy value
//! and throwing it away releases nothing, and the refusal depends only on the budget,
//! never on the data. Repeating a query costs again (fresh noise); re-reading a past
//! report by id is free (it is the same released answer).
//!
//! **Exact accounting.** Costs are converted to fixed point rounding *up* (ε in 1e-9, δ in
//! 1e-18), budgets rounding *down*, and the store sums integers: no float drift can let
//! many small queries overspend.

use crate::auth;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;
use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use candor_core::{PurposeId, UnixMillis};
use candor_insights::query::{evaluate, Compiled, InsightError, InsightQuery, Permissions};
use candor_privacy::bounds::SelectionKey;
use candor_privacy::mechanism::NoiseError;
use candor_privacy::query::{prepare, release, Answer, Suppressed};
use candor_privacy::{Budget, QueryError, Receipt};
use candor_store::plan::charge::Charge;
use candor_store::{
    Advertiser, BudgetLimit, BudgetPeriod, NewReport, Spend, SpendScope, StoreError, TotalCap,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Every advertiser key starts with this, so a key pasted into the wrong place is
/// recognised (and refused with 403) instead of being tried as something else.
pub const KEY_PREFIX: &str = "cnd_adv_";

/// A fresh advertiser API key: the prefix and 32 random bytes.
pub fn new_api_key() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(b))
}

/// What the store keeps of a key: its SHA-256 (the key itself is shown once).
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Base64 of the key prefix's first six bytes: a Basic credential whose encoding does not
/// start with this cannot carry an advertiser key, so the check on every request (it runs
/// in front of ingestion) decodes nothing for write keys.
const ENCODED_PREFIX: &str = "Y25kX2Fk";

/// An advertiser key presented as a bearer token or as a Basic username.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(b) = auth::bearer(headers) {
        return b.starts_with(KEY_PREFIX).then(|| b.to_owned());
    }
    let basic = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = basic
        .strip_prefix("Basic ")
        .or_else(|| basic.strip_prefix("basic "))?;
    if !encoded.trim_start().starts_with(ENCODED_PREFIX) {
        return None;
    }
    auth::basic_username(headers)
        .ok()
        .flatten()
        .filter(|u| u.starts_with(KEY_PREFIX))
}

/// The advertiser a request speaks for. Other valid credentials get 403: the insights
/// endpoints belong to advertisers alone.
pub async fn advertiser(st: &AppState, headers: &HeaderMap) -> ApiResult<Advertiser> {
    let invalid = || {
        ApiError::new(
            Code::InvalidAdvertiserKey,
            "the advertiser key is not valid",
        )
    };
    if let Some(key) = presented_key(headers) {
        // The store looks the hash up by equality; the digest hides the key's bytes, so
        // the lookup's timing says nothing about how close a guess was.
        return match st.store.advertiser_by_key(&key_hash(&key)).await? {
            Some(a) if !a.disabled => Ok(a),
            _ => Err(invalid()),
        };
    }
    let forbidden = || {
        ApiError::new(
            Code::Forbidden,
            "the insights endpoints accept only advertiser keys",
        )
    };
    if let Some(token) = auth::bearer(headers) {
        let admin = auth::admin(st.settings.admin_token.as_ref(), headers).is_ok();
        let subject = st.subject_tokens.verify(token, st.now_ms() / 1000).is_ok();
        return Err(if admin || subject {
            forbidden()
        } else {
            invalid()
        });
    }
    if let Some(user) = auth::basic_username(headers)? {
        return Err(if st.sources.authenticate(&user).is_some() {
            forbidden()
        } else {
            invalid()
        });
    }
    Err(ApiError::new(
        Code::MissingCredentials,
        "send the advertiser key as a Bearer token",
    ))
}

/// The budget period `now_ms` falls in: `2026-11-29` (day), `2026-W48` (ISO week) or
/// `2026-11` (month), all UTC.
pub fn period_key(period: BudgetPeriod, now_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let d = t.date();
    match period {
        BudgetPeriod::Day => {
            format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
        }
        BudgetPeriod::Week => {
            let (y, w, _) = d.to_iso_week_date();
            format!("{y:04}-W{w:02}")
        }
        BudgetPeriod::Month => format!("{:04}-{:02}", d.year(), u8::from(d.month())),
    }
}

const EPS_UNIT: f64 = 1e9;
const DELTA_UNIT: f64 = 1e18;

fn fixed(v: f64, unit: f64, up: bool) -> i64 {
    let x = v * unit;
    let r = if up { x.ceil() } else { x.floor() };
    let mut n = r.clamp(0.0, 9.0e18) as i64;
    // guard the multiplication's rounding: the fixed-point cost must not be below v
    if up && (n as f64) / unit < v {
        n = n.saturating_add(1);
    }
    n
}

/// A query's cost, rounded up.
pub fn cost(b: Budget) -> Spend {
    Spend {
        epsilon_nano: fixed(b.epsilon, EPS_UNIT, true),
        delta_atto: fixed(b.delta, DELTA_UNIT, true),
    }
}

/// A budget, rounded down.
pub fn budget(epsilon: f64, delta: f64) -> Spend {
    Spend {
        epsilon_nano: fixed(epsilon, EPS_UNIT, false),
        delta_atto: fixed(delta, DELTA_UNIT, false),
    }
}

/// An amount of privacy loss: ε, and δ (`0` when the queries used none).
#[derive(Serialize, Clone, Copy, Debug, ToSchema)]
pub struct EpsilonDelta {
    pub epsilon: f64,
    pub delta: f64,
}

/// A fixed-point amount as ε and δ.
pub fn spend_json(s: Spend) -> EpsilonDelta {
    EpsilonDelta {
        epsilon: s.epsilon_nano as f64 / EPS_UNIT,
        delta: s.delta_atto as f64 / DELTA_UNIT,
    }
}

/// An advertiser's privacy budget for the current period: what it gets, has spent and
/// has left.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = InsightBudget)]
pub struct BudgetView {
    /// The period charged now: `2026-11-29` (day), `2026-W48` (ISO week) or `2026-11`
    /// (month), UTC.
    pub period: String,
    #[schema(value_type = BudgetPeriodDoc)]
    pub period_kind: &'static str,
    pub total: EpsilonDelta,
    pub spent: EpsilonDelta,
    pub remaining: EpsilonDelta,
    /// The advertiser's lifetime cap, when it has one (it never renews).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<LifetimeView>,
}

/// A lifetime cap across every period.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[schema(as = LifetimeBudget)]
pub struct LifetimeView {
    pub total: EpsilonDelta,
    pub spent: EpsilonDelta,
    pub remaining: EpsilonDelta,
}

/// A budget period (documentation only: periods are read and written as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = BudgetPeriodName)]
pub(crate) enum BudgetPeriodDoc {
    Day,
    Week,
    Month,
}

/// Budget, spent and remaining for the advertiser's current period (and its lifetime
/// cap, if it has one).
pub async fn budget_json(st: &AppState, a: &Advertiser) -> ApiResult<BudgetView> {
    let period = period_key(a.period, st.now_ms());
    let (spent, lifetime) = advertiser_spend(st, a, &period).await?;
    let mut view = budget_view(a, &period, spent);
    view.lifetime = lifetime.map(|(cap, used)| LifetimeView {
        total: spend_json(cap),
        spent: spend_json(used),
        remaining: spend_json(left(cap, used)),
    });
    Ok(view)
}

fn left(budget: Spend, spent: Spend) -> Spend {
    Spend {
        epsilon_nano: (budget.epsilon_nano - spent.epsilon_nano).max(0),
        delta_atto: (budget.delta_atto - spent.delta_atto).max(0),
    }
}

pub fn budget_view(a: &Advertiser, period: &str, spent: Spend) -> BudgetView {
    BudgetView {
        period: period.to_owned(),
        period_kind: a.period.as_str(),
        total: spend_json(a.budget),
        spent: spend_json(spent),
        remaining: spend_json(left(a.budget, spent)),
        lifetime: None,
    }
}

/// The insights purpose and its bit, or 503 when insights are not configured.
pub fn purpose(st: &AppState) -> ApiResult<(PurposeId, u8)> {
    st.settings
        .insights
        .purpose
        .as_ref()
        .and_then(|p| st.catalog.purpose(p).map(|q| (p.clone(), q.bit)))
        .ok_or_else(|| {
            ApiError::new(
                Code::InsightsUnavailable,
                "insights are not configured on this server (no insights purpose)",
            )
        })
}

fn insight_error(e: InsightError) -> ApiError {
    match e {
        InsightError::FeatureNotAllowed(_) | InsightError::DimensionNotAllowed(_) => {
            ApiError::new(Code::QueryNotAllowed, e.to_string())
        }
        // Only a failing random number generator is ours; noise that cannot be
        // calibrated (ε = 0, a clamp range whose sensitivity overflows) is the query's.
        InsightError::Query(QueryError::Noise(n @ NoiseError::Rng(_))) => {
            tracing::error!(error = %n, "noise generation failed");
            ApiError::new(Code::Internal, "noise generation failed")
        }
        other => ApiError::new(Code::InvalidQuery, other.to_string()),
    }
}

/// Checks a query against the schema and the advertiser's permissions.
pub fn compile(st: &AppState, a: &Advertiser, q: &InsightQuery) -> ApiResult<Compiled> {
    let perm = Permissions {
        features: a.allowed_features.clone(),
        dimensions: a.allowed_dimensions.clone(),
        min_group_size: st.settings.insights.min_group_size,
    };
    q.compile(st.store.features(), &perm).map_err(insight_error)
}

/// The stable code of a refusal by `limit`.
pub fn overspend_code(limit: BudgetLimit) -> Code {
    match limit {
        BudgetLimit::Period => Code::BudgetExceeded,
        BudgetLimit::Lifetime => Code::LifetimeBudgetExceeded,
        BudgetLimit::Total => Code::TotalBudgetExceeded,
    }
}

/// The refusal of a query by `limit`, saying what the query costs and what is left.
/// What is left of the operator's cap across advertisers is not said: it would tell one
/// advertiser how much the others asked.
fn overspent(
    compiled: &Compiled,
    period: &str,
    limit: BudgetLimit,
    budget: Spend,
    spent: Spend,
) -> ApiError {
    let cost = format!(
        "this query costs ε={} δ={}",
        compiled.query.budget.epsilon, compiled.query.budget.delta
    );
    let left = |what: &str| {
        format!(
            "{cost}; {what} has ε={} δ={} left; nothing was charged",
            (budget.epsilon_nano - spent.epsilon_nano).max(0) as f64 / EPS_UNIT,
            (budget.delta_atto - spent.delta_atto).max(0) as f64 / DELTA_UNIT,
        )
    };
    let message = match limit {
        BudgetLimit::Period => left(&format!("the budget for {period}")),
        BudgetLimit::Lifetime => left("the lifetime budget (it does not renew)"),
        BudgetLimit::Total => format!(
            "{cost}; the operator's privacy budget across all advertisers is used up for this period; nothing was charged"
        ),
    };
    ApiError::new(overspend_code(limit), message)
}

/// The operator's cap across advertisers for the period `now_ms` falls in, if set.
pub fn total_cap(st: &AppState, now_ms: i64) -> Option<TotalCap> {
    st.settings.insights.total_budget.map(|t| TotalCap {
        limit: budget(t.epsilon, t.delta),
        since: UnixMillis(period_start(t.period, now_ms)),
    })
}

/// The first millisecond of the period `now_ms` falls in (UTC; weeks start on Monday).
pub fn period_start(period: BudgetPeriod, now_ms: i64) -> i64 {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let d = t.date();
    let first = match period {
        BudgetPeriod::Day => d,
        BudgetPeriod::Week => {
            d - time::Duration::days(i64::from(d.weekday().number_days_from_monday()))
        }
        BudgetPeriod::Month => d.replace_day(1).unwrap_or(d),
    };
    first.midnight().assume_utc().unix_timestamp() * 1000
}

/// What `a` has spent of its budget for `period`, and its lifetime cap with what it has
/// spent of it (if it has one).
async fn advertiser_spend(
    st: &AppState,
    a: &Advertiser,
    period: &str,
) -> ApiResult<(Spend, Option<(Spend, Spend)>)> {
    let period_spent = st
        .store
        .spent(SpendScope::Period {
            advertiser: a.id.clone(),
            period: period.to_owned(),
        })
        .await?;
    let lifetime = match a.lifetime {
        Some(l) => Some((
            l,
            st.store
                .spent(SpendScope::Lifetime {
                    advertiser: a.id.clone(),
                })
                .await?,
        )),
        None => None,
    };
    Ok((period_spent, lifetime))
}

/// Every budget a query by `a` now is charged against, with what each has spent: the
/// same [`Charge`] the store checks at the charge, read here before any scan.
async fn charge_now(st: &AppState, a: &Advertiser, period: &str, now_ms: i64) -> ApiResult<Charge> {
    let (period_spent, lifetime) = advertiser_spend(st, a, period).await?;
    let total = match total_cap(st, now_ms) {
        Some(t) => Some((
            t.limit,
            st.store.spent(SpendScope::AllSince(t.since)).await?,
        )),
        None => None,
    };
    Ok(Charge {
        period: (a.budget, period_spent),
        lifetime,
        total,
    })
}

/// An advertiser's one query in flight on this node: its others wait here, not in the
/// queue for scans, so the scan queue holds at most one query per advertiser and none
/// can starve the others; and the budget check holds until its charge.
pub struct AdvertiserSlot {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl AdvertiserSlot {
    pub async fn take(st: &AppState, id: &str) -> Self {
        let lock = st
            .insight_busy
            .lock()
            .entry(id.to_owned())
            .or_default()
            .clone();
        Self {
            _guard: lock.lock_owned().await,
        }
    }
}

pub async fn answer(
    st: &AppState,
    a: &Advertiser,
    compiled: Compiled,
    query_json: Value,
) -> ApiResult<QueryAnswer> {
    let (purpose, bit) = purpose(st)?;
    if !candor_privacy::RNG_IS_CRYPTOGRAPHICALLY_SECURE && !st.settings.insights.allow_insecure_rng
    {
        return Err(ApiError::new(
            Code::InsightsUnavailable,
            "this build's noise is not cryptographically secure (built without the secure-rng feature)",
        ));
    }
    // One query at a time per advertiser (issue 11): an advertiser cannot queue scans
    // ahead of the others, and the budget check below holds until its charge.
    let _slot = AdvertiserSlot::take(st, &a.id).await;
    let now = st.now_ms();
    let period = period_key(a.period, now);
    let charged = cost(compiled.query.budget);
    // Refused before any scan: an advertiser with no budget left costs nothing.
    if let Err(StoreError::Overspend {
        limit,
        budget,
        spent,
    }) = charge_now(st, a, &period, now).await?.check(charged)
    {
        return Err(overspent(&compiled, &period, limit, budget, spent));
    }
    let scan = st
        .insight_scans
        .acquire()
        .await
        .map_err(|_| ApiError::new(Code::Unavailable, "the server is shutting down"))?;
    st.insight_scans_run
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    st.store.refresh_features().await?;
    let store = st.store.clone();
    let c = compiled.clone();
    let (released, members) = tokio::task::spawn_blocking(move || {
        let plan = prepare(&c.query)?;
        let key = SelectionKey::random().map_err(QueryError::from)?;
        let index = store.index();
        let eligible = |s: &candor_core::SubjectId| index.granted(s).contains(bit);
        let ev = evaluate(store.features(), &c, &plan, &eligible, &key);
        // the real receipt is the store's; this one only satisfies the type
        let pending = Receipt {
            sequence: 0,
            charged: c.query.budget,
            spent_after: c.query.budget,
            total: c.query.budget,
        };
        let answer = release(&c.query, &plan, ev.exact, pending)?;
        Ok::<_, QueryError>((answer, ev.members))
    })
    .await
    .map_err(|_| ApiError::new(Code::Internal, "the query worker failed"))?
    .map_err(|e| insight_error(InsightError::Query(e)))?;
    // Charges run concurrently (the store makes them atomic); only scans queue.
    drop(scan);

    let body = render(&compiled, &released, charged);
    let record = st
        .store
        .record_report(NewReport {
            advertiser: a.id.clone(),
            period: period.clone(),
            time_ms: UnixMillis(now),
            cost: charged,
            purpose: purpose.to_string(),
            query_json: query_json.to_string(),
            answer_json: serde_json::to_string(&body).unwrap_or_default(),
            members: candor_insights::membership::encode(members),
            total: total_cap(st, now),
        })
        .await
        .map_err(|e| match e {
            StoreError::Overspend {
                limit,
                budget,
                spent,
            } => overspent(&compiled, &period, limit, budget, spent),
            StoreError::UnknownAdvertiser => ApiError::new(
                Code::InvalidAdvertiserKey,
                "the advertiser key is not valid",
            ),
            other => other.into(),
        })?;
    crate::telemetry::InsightAnswered {
        metric: metric_name(&compiled),
    }
    .emit();
    Ok(with_report(body, record.id, a, &period, record.spent_after))
}

/// A stored answer with its report id and the budget after it.
pub fn with_report(
    answer: InsightAnswer,
    id: i64,
    a: &Advertiser,
    period: &str,
    spent: Spend,
) -> QueryAnswer {
    QueryAnswer {
        answer,
        report_id: id,
        budget: budget_view(a, period, spent),
    }
}

fn metric_name(c: &Compiled) -> &'static str {
    use candor_insights::query::Metric;
    match c.metric() {
        Metric::Count => "count",
        Metric::Sum => "sum",
        Metric::Mean => "mean",
        Metric::Histogram => "histogram",
        Metric::TopK(_) => "top_k",
    }
}

/// What an insight query asks for (documentation only: the query is parsed as text, to
/// name the field in its error).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = InsightMetric)]
pub(crate) enum MetricDoc {
    /// The noisy number of people (one group, or per group).
    Count,
    /// The noisy sum of a measure, clamped per person.
    Sum,
    /// The noisy mean of a measure, clamped per person.
    Mean,
    /// The noisy number of people per group (needs `groupBy`).
    Histogram,
    /// The `topK` largest groups by noisy count (needs `groupBy`).
    TopK,
}

/// The released answer to a query, as the audit log keeps it: only noisy values, their
/// noise scales and intervals, and what was suppressed.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightAnswer {
    #[schema(value_type = MetricDoc)]
    pub metric: &'static str,
    /// The query's group-by dimensions, in order: the keys of each group's `key`.
    pub group_by: Vec<String>,
    pub groups: Vec<InsightGroup>,
    pub suppressed: InsightSuppressed,
    pub privacy: InsightPrivacy,
}

/// One released group.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightGroup {
    /// Dimension → value (empty for the single total of an ungrouped query).
    pub key: BTreeMap<String, String>,
    /// The noisy statistic.
    pub value: f64,
    /// Scale of the discrete Laplace noise on the group's main statistic.
    pub noise_scale: f64,
    /// A 95% interval for the pre-noise value: `[low, high]`.
    #[schema(min_items = 2, max_items = 2)]
    pub ci95: [f64; 2],
    /// Sums and means: the group's noisy number of people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<f64>,
}

/// The groups not shown: named, when the keys are public; not even counted, when they
/// came from the data.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[serde(untagged)]
pub enum InsightSuppressed {
    Keys(SuppressedKeys),
    Undisclosed(SuppressedUndisclosed),
}

/// Public keys whose noisy count fell below the minimum group size.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[schema(as = InsightSuppressedKeys)]
pub struct SuppressedKeys {
    /// Each suppressed group's key (dimension → value).
    pub keys: Vec<BTreeMap<String, String>>,
}

/// Private keys: groups below the selection threshold are not shown, nor counted.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[schema(as = InsightSuppressedUndisclosed)]
pub struct SuppressedUndisclosed {
    /// Always `true`.
    pub undisclosed: bool,
    pub threshold: i64,
    pub why: &'static str,
}

/// What the answer cost and how it was noised.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightPrivacy {
    pub epsilon: f64,
    pub delta: f64,
    /// What the budget was charged (rounded up to whole nano-ε and atto-δ).
    pub charged: EpsilonDelta,
    pub mechanism: &'static str,
    /// Whether group keys came from the data (partition selection, δ > 0).
    pub partition_selection: bool,
    pub max_groups_per_subject: u32,
    pub min_group_size: i64,
}

/// The answer to `POST /v1/insights/query`: the released answer, its report id (free to
/// read again) and the budget after the charge.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = InsightQueryAnswer)]
pub struct QueryAnswer {
    #[serde(flatten)]
    pub answer: InsightAnswer,
    pub report_id: i64,
    pub budget: BudgetView,
}

/// The released answer: only noisy values, their noise scales and intervals, and what
/// was suppressed.
fn render(c: &Compiled, a: &Answer, charged: Spend) -> InsightAnswer {
    let dims = &c.query.dimensions;
    let key_of = |parts: &[String]| -> BTreeMap<String, String> {
        dims.iter().cloned().zip(parts.iter().cloned()).collect()
    };
    let groups = a
        .groups
        .iter()
        .map(|g| InsightGroup {
            key: key_of(g.key.parts()),
            value: g.value,
            noise_scale: g.noise_scale,
            ci95: [g.ci95.0, g.ci95.1],
            // sums and means: the noisy group size they paid for anyway
            count: g.count,
        })
        .collect();
    let suppressed = match &a.suppressed {
        Suppressed::Keys(keys) => InsightSuppressed::Keys(SuppressedKeys {
            keys: keys.iter().map(|k| key_of(k.parts())).collect(),
        }),
        Suppressed::Undisclosed { threshold } => {
            InsightSuppressed::Undisclosed(SuppressedUndisclosed {
                undisclosed: true,
                threshold: *threshold,
                why: "group keys come from the data; groups whose noisy count fell below the threshold are not shown, and how many there were is not said",
            })
        }
    };
    InsightAnswer {
        metric: metric_name(c),
        group_by: dims.clone(),
        groups,
        suppressed,
        privacy: InsightPrivacy {
            epsilon: c.query.budget.epsilon,
            delta: c.query.budget.delta,
            charged: spend_json(charged),
            mechanism: "discrete Laplace (OpenDP, exact sampler)",
            partition_selection: c.private_keys(),
            max_groups_per_subject: c.query.max_groups_per_subject,
            min_group_size: c.query.min_noisy_count,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_rounds_costs_up_and_budgets_down() {
        let c = cost(Budget::new(0.1, 1e-6).unwrap_or(Budget::ZERO));
        assert!(c.epsilon_nano as f64 / EPS_UNIT >= 0.1);
        assert_eq!(c.epsilon_nano, 100_000_000);
        assert!(c.delta_atto as f64 / DELTA_UNIT >= 1e-6);
        let b = budget(1.0, 1e-5);
        assert_eq!(b.epsilon_nano, 1_000_000_000);
        // ten charges of 0.1 fit in 1.0 exactly, an eleventh does not
        assert_eq!(c.epsilon_nano * 10, b.epsilon_nano);
        assert_eq!(
            cost(Budget::new(1e-12, 0.0).unwrap_or(Budget::ZERO)).epsilon_nano,
            1
        );
    }

    #[test]
    fn periods_are_utc_calendar_units() {
        let t = 1_796_083_200_000; // 2026-12-01T00:00:00Z
        assert_eq!(period_key(BudgetPeriod::Day, t), "2026-12-01");
        assert_eq!(period_key(BudgetPeriod::Month, t), "2026-12");
        assert_eq!(period_key(BudgetPeriod::Month, t - 1), "2026-11");
        assert_eq!(period_key(BudgetPeriod::Week, t), "2026-W49");
        // Each period starts where its key changes.
        for at in [t, t + 3 * 86_400_000 + 5 * 3_600_000, t - 1] {
            for p in BudgetPeriod::ALL {
                let start = period_start(p, at);
                assert!(start <= at);
                assert_eq!(period_key(p, start), period_key(p, at));
                assert_ne!(period_key(p, start - 1), period_key(p, at));
            }
        }
        // 2026-12-01 is a Tuesday: its ISO week began on Monday 2026-11-30.
        assert_eq!(period_start(BudgetPeriod::Week, t), t - 86_400_000);
        assert_eq!(period_start(BudgetPeriod::Month, t + 86_400_000), t);
    }

    #[test]
    fn the_encoded_prefix_is_the_key_prefix_in_base64() {
        use base64::engine::general_purpose::STANDARD;
        assert_eq!(STANDARD.encode(&KEY_PREFIX.as_bytes()[..6]), ENCODED_PREFIX);
        // any key, any suffix: its Basic encoding starts with the constant
        assert!(STANDARD
            .encode(format!("{}:", new_api_key()))
            .starts_with(ENCODED_PREFIX));
    }

    #[test]
    fn keys_are_prefixed_and_random() {
        let a = new_api_key();
        assert!(a.starts_with(KEY_PREFIX) && a.len() > 40);
        assert_ne!(a, new_api_key());
        assert_ne!(key_hash(&a), key_hash(&new_api_key()));
    }
}
