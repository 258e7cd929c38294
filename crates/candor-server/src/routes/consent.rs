//! The consent API: record choices (per purpose, or accept/reject all), read the current
//! state, read the history. Every change returns a signed receipt. The HTTP source of
//! consent requests: it authenticates, parses and answers; who may act for whom and
//! what a request does (the GPC rule included) are `pipeline::consent`'s.

use crate::auth;
use crate::body::{parse_json, read_text};
use crate::error::{ApiError, ApiResult, Code};
use crate::iab::{self, Signals};
use crate::pipeline::consent::{self, Actor};
use crate::receipts::{self, Receipt};
use crate::segment::format_time;
use crate::state::AppState;
use crate::telemetry::ConsentChanged;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use candor_core::consent::{Action, Channel};
use candor_core::lang::Language;
use candor_core::ledger::Evidence;
use candor_core::purpose::Catalog;
use candor_core::{PurposeId, PurposeSet, SubjectId};
use candor_store::{ConsentCommand, ConsentOutcome, StateRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

const MAX_BODY: usize = 16 * 1024;

/// Who is asking.
pub(crate) fn actor(st: &AppState, headers: &HeaderMap) -> ApiResult<Actor> {
    if let Some(token) = auth::bearer(headers) {
        let now = st.now_ms() / 1000;
        return Ok(Actor::User(st.subject_tokens.verify(token, now)?));
    }
    let key = auth::basic_username(headers)?.ok_or_else(|| {
        ApiError::new(
            Code::MissingCredentials,
            "send a write key (Basic auth) or a subject token (Bearer)",
        )
    })?;
    let src = auth::source(&st.sources, Some(&key), None)?;
    Ok(if auth::is_browser(src) {
        Actor::Browser(src.id.clone())
    } else {
        Actor::Server(src.id.clone())
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"anonymousId": "a1b2c3", "choices": {"analytics": "grant", "ads": "refuse"}, "noticeVersions": {"analytics": 1, "ads": 1}}))]
struct ChoicesBody {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    /// purpose id → "grant" | "refuse" | "withdraw"
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, ChoiceDoc>)]
    choices: BTreeMap<String, String>,
    /// purpose id → the notice version the person was shown.
    #[serde(default)]
    notice_versions: BTreeMap<String, u32>,
    channel: Option<String>,
    #[serde(default)]
    evidence: BTreeMap<String, String>,
    /// The language the notices were shown in: the ledger records that text's hash.
    notice_language: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AllBody {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    channel: Option<String>,
    #[serde(default)]
    evidence: BTreeMap<String, String>,
    #[serde(default)]
    notice_versions: BTreeMap<String, u32>,
    notice_language: Option<String>,
}

#[derive(Serialize, Clone, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurposeStateDto {
    purpose: String,
    title: String,
    /// `given`, `refused`, `withdrawn` or `expired` (never decided counts as `refused`).
    status: &'static str,
    granted: bool,
    /// False when the person has never decided (which counts as refused).
    recorded: bool,
    notice_version: u32,
    current_notice_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    sale_or_sharing: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentResponse {
    subject: String,
    purposes: Vec<PurposeStateDto>,
    signals: Signals,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    receipts: Vec<Receipt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpc: Option<GpcDto>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpcDto {
    applied: bool,
    /// Grants this request asked for that the GPC signal overrode.
    overridden: Vec<String>,
}

async fn respond(
    st: &AppState,
    outcomes: Vec<ConsentOutcome>,
    gpc: Option<GpcDto>,
) -> ApiResult<Json<ConsentResponse>> {
    let subject = outcomes
        .last()
        .map(|o| o.subject)
        .ok_or_else(|| ApiError::new(Code::Internal, "no outcome"))?;
    let (purposes, signals) = state_and_signals(st, Some(subject), gpc.is_some()).await?;
    let mut receipts = Vec::new();
    for o in &outcomes {
        for r in &o.records {
            ConsentChanged {
                purpose: r.entry.purpose.as_str(),
                status: r.entry.status.as_str(),
                channel: r.entry.channel.as_str(),
            }
            .emit();
            let key = st.signing_key_for(r.entry.seq);
            let mut receipt = receipts::build(r, &st.settings.operator, &key);
            receipt.signals = Some(signals.clone());
            receipts.push(receipt);
        }
    }
    Ok(Json(ConsentResponse {
        subject: subject.to_string(),
        purposes,
        signals,
        receipts,
        gpc,
    }))
}

/// The state per purpose, and the same as IAB strings.
async fn state_and_signals(
    st: &AppState,
    subject: Option<SubjectId>,
    gpc: bool,
) -> ApiResult<(Vec<PurposeStateDto>, Signals)> {
    let rows = match subject {
        Some(s) => st.store.consent_state(s).await?,
        None => Vec::new(),
    };
    let granted = subject
        .map(|s| st.store.index().granted(&s))
        .unwrap_or_default();
    let updated = rows
        .iter()
        .map(|r| r.time_ms)
        .max()
        .unwrap_or_else(|| st.now())
        .0;
    let signals = iab::signals(&st.iab, &st.catalog, granted, updated, gpc)?;
    Ok((state_of(&st.catalog, &rows, granted), signals))
}

/// Every configured purpose with the subject's status; undecided ones are refused.
pub(crate) fn state_of(
    catalog: &Catalog,
    rows: &[StateRow],
    granted: PurposeSet,
) -> Vec<PurposeStateDto> {
    catalog
        .purposes()
        .iter()
        .map(|p| {
            let row = rows.iter().find(|r| r.purpose == p.id);
            PurposeStateDto {
                purpose: p.id.to_string(),
                title: p.title.clone(),
                status: row.map_or("refused", |r| r.status.as_str()),
                granted: granted.contains(p.bit),
                recorded: row.is_some(),
                notice_version: row.map_or(p.notice.version, |r| r.notice_version),
                current_notice_version: p.notice.version,
                since: row.map(|r| format_time(r.time_ms)),
                sale_or_sharing: p.sale_or_sharing,
            }
        })
        .collect()
}

#[utoipa::path(post, path = "/v1/consent", tag = "consent",
    summary = "Record choices per purpose",
    description = "Applies every choice atomically and answers with the state and a signed receipt per change. \
`Sec-GPC: 1` (or `Candor-GPC: 1`) turns grants of sale or sharing purposes into refusals.",
    request_body = ChoicesBody,
    responses((status = 200, description = "The state after the change, with a receipt per ledger record", body = ConsentResponse)))]
pub async fn record(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ConsentResponse>> {
    let actor = actor(&st, &headers)?;
    let text = read_text(&headers, body, MAX_BODY, Code::InvalidRequest).await?;
    let b: ChoicesBody = parse_json(&text)?;
    let named = consent::identities(
        &st.master,
        &actor,
        b.user_id.as_deref(),
        b.anonymous_id.as_deref(),
    )?;
    let channel = consent::channel(&actor, b.channel.as_deref())?;
    let evidence = consent::evidence(b.evidence)?;
    let recorded = actor.recorded();
    if b.choices.is_empty() {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "choices is empty: name at least one purpose",
        ));
    }
    let mut choices = Vec::new();
    for (name, action) in &b.choices {
        let p = super::known_purpose(&st.catalog, name)?;
        let action = Action::parse(action).ok_or_else(|| {
            ApiError::new(
                Code::InvalidRequest,
                format!("choice for {} must be grant, refuse or withdraw", p.id),
            )
        })?;
        choices.push((p.id.clone(), action));
    }
    for name in b.notice_versions.keys() {
        if !b.choices.contains_key(name) {
            return Err(ApiError::new(
                Code::InvalidRequest,
                format!("noticeVersions names {name:?}, which has no choice"),
            ));
        }
    }
    let shown = Shown {
        versions: &b.notice_versions,
        language: b.notice_language.as_deref(),
    };
    new_subject_allowance(&st, &actor, &named)?;
    let how = How {
        actor: recorded,
        channel,
        evidence,
    };
    apply(&st, &headers, named, choices, how, shown).await
}

/// Who acted, through which channel, with what evidence.
struct How {
    actor: candor_core::ledger::Actor,
    channel: Channel,
    evidence: Evidence,
}

/// What a prompt says it showed: the notice versions and their language.
struct Shown<'a> {
    versions: &'a BTreeMap<String, u32>,
    language: Option<&'a str>,
}

/// The notice versions a prompt says it showed must be the current ones: otherwise
/// the person agreed to a text that is no longer the one in force.
fn check_notice_versions(st: &AppState, shown: &BTreeMap<String, u32>) -> ApiResult<()> {
    for (name, v) in shown {
        let p = super::known_purpose(&st.catalog, name)?;
        if *v != p.notice.version {
            return Err(ApiError::new(
                Code::NoticeVersionMismatch,
                format!("the notice for {} is at version {}, not {v}: show the current notice and ask again", p.id, p.notice.version),
            ));
        }
    }
    Ok(())
}

/// Checks what was shown, applies a checked request atomically and answers with the
/// state and receipts.
async fn apply(
    st: &AppState,
    headers: &HeaderMap,
    named: consent::Named,
    choices: Vec<(PurposeId, Action)>,
    how: How,
    shown: Shown<'_>,
) -> ApiResult<Json<ConsentResponse>> {
    check_notice_versions(st, shown.versions)?;
    let notice_language = shown
        .language
        .map(|l| Language::parse(l).map_err(|e| ApiError::new(Code::InvalidRequest, e.to_string())))
        .transpose()?;
    let (cmds, gpc) = consent::commands(
        &st.catalog,
        consent::Request {
            named,
            actor: how.actor,
            choices,
            channel: how.channel,
            evidence: how.evidence,
            gpc: super::gpc_signal(headers),
            notice_language,
            time: st.now(),
        },
    );
    let outcomes = st.store.apply_consents_atomically(cmds).await?;
    let gpc = gpc.map(|g| GpcDto {
        applied: true,
        overridden: g.overridden,
    });
    respond(st, outcomes, gpc).await
}

async fn all(
    st: AppState,
    headers: HeaderMap,
    body: Body,
    action: Action,
) -> ApiResult<Json<ConsentResponse>> {
    let actor = actor(&st, &headers)?;
    let text = read_text(&headers, body, MAX_BODY, Code::InvalidRequest).await?;
    let b: AllBody = parse_json(&text)?;
    let named = consent::identities(
        &st.master,
        &actor,
        b.user_id.as_deref(),
        b.anonymous_id.as_deref(),
    )?;
    let how = How {
        actor: actor.recorded(),
        channel: consent::channel(&actor, b.channel.as_deref())?,
        evidence: consent::evidence(b.evidence)?,
    };
    let choices = st
        .catalog
        .purposes()
        .iter()
        .map(|p| (p.id.clone(), action))
        .collect();
    let shown = Shown {
        versions: &b.notice_versions,
        language: b.notice_language.as_deref(),
    };
    new_subject_allowance(&st, &actor, &named)?;
    apply(&st, &headers, named, choices, how, shown).await
}

/// A browser source creates a subject with each new anonymous id that records a
/// choice: at most `[limits] new_subjects_per_minute` of them (issue 11), so a script
/// cannot grow the ledger and the caches without bound.
fn new_subject_allowance(st: &AppState, actor: &Actor, named: &consent::Named) -> ApiResult<()> {
    match actor {
        Actor::Browser(source) if consent::resolve(st, named)?.is_none() => {
            st.limits.new_subject(source, st.now_ms())
        }
        _ => Ok(()),
    }
}

#[utoipa::path(post, path = "/v1/consent/accept-all", tag = "consent",
    summary = "Grant every purpose",
    request_body = AllBody,
    responses((status = 200, description = "The state after the change, with a receipt per ledger record", body = ConsentResponse)))]
pub async fn accept_all(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ConsentResponse>> {
    all(st, headers, body, Action::Grant).await
}

#[utoipa::path(post, path = "/v1/consent/reject-all", tag = "consent",
    summary = "Refuse every purpose",
    request_body = AllBody,
    responses((status = 200, description = "The state after the change, with a receipt per ledger record", body = ConsentResponse)))]
pub async fn reject_all(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ConsentResponse>> {
    all(st, headers, body, Action::Refuse).await
}

/// Whose consent: a browser key names its anonymous id; a subject token needs neither.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WhoQuery {
    user_id: Option<String>,
    anonymous_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    purposes: Vec<PurposeStateDto>,
    /// The same consent as IAB TC, GPP and US Privacy strings, for vendors that read them.
    signals: Signals,
}

/// The subject a consent read names (`userId` / `anonymousId` in the query), if the
/// credential may read it: the same parsing and rule for every read route.
pub(crate) fn who(
    st: &AppState,
    headers: &HeaderMap,
    q: Result<Query<WhoQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Option<SubjectId>> {
    who_named(st, headers, q).map(|(_, subject)| subject)
}

/// [`who`], with the identifiers the request named (the volunteered-field routes, which
/// follow the same rule, pass them on to the ingestion pipeline).
pub(crate) fn who_named(
    st: &AppState,
    headers: &HeaderMap,
    q: Result<Query<WhoQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<(consent::Named, Option<SubjectId>)> {
    let actor = actor(st, headers)?;
    let Query(q) = q.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let named = consent::identities(
        &st.master,
        &actor,
        q.user_id.as_deref(),
        q.anonymous_id.as_deref(),
    )?;
    let subject = consent::resolve(st, &named)?;
    Ok((named, subject))
}

#[utoipa::path(get, path = "/v1/consent", tag = "consent",
    summary = "The current consent state",
    params(WhoQuery),
    responses((status = 200, description = "Every purpose with the subject's status (undecided counts as refused), and the same as IAB strings", body = StateResponse)))]
pub async fn current(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<WhoQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<StateResponse>> {
    let subject = who(&st, &headers, q)?;
    let (purposes, signals) = state_and_signals(&st, subject, super::sec_gpc(&headers)).await?;
    Ok(Json(StateResponse {
        subject: subject.map(|s| s.to_string()),
        purposes,
        signals,
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    records: Vec<Receipt>,
}

#[utoipa::path(get, path = "/v1/consent/history", tag = "consent",
    summary = "Every consent record, as signed receipts",
    params(WhoQuery),
    responses((status = 200, description = "The subject's ledger records, oldest first", body = HistoryResponse)))]
pub async fn history(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<WhoQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<HistoryResponse>> {
    let subject = who(&st, &headers, q)?;
    let records = match subject {
        Some(s) => st.store.consent_history(s).await?,
        None => Vec::new(),
    };
    Ok(Json(HistoryResponse {
        subject: subject.map(|s| s.to_string()),
        records: records
            .iter()
            .map(|r| receipts::build(r, &st.settings.operator, &st.signing_key_for(r.entry.seq)))
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignalBody {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    tc_string: Option<String>,
    gpp_string: Option<String>,
    us_privacy: Option<String>,
}

#[utoipa::path(post, path = "/v1/consent/signals", tag = "consent",
    summary = "Import another consent manager's IAB string",
    request_body = SignalBody,
    responses((status = 200, description = "The state after the import", body = ConsentResponse)))]
/// `POST /v1/consent/signals`: an IAB string from another CMP, recorded as consent
/// evidence (channel `imported`). It narrows; it grants only from a trusted CMP.
pub async fn import_signal(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ConsentResponse>> {
    let actor = actor(&st, &headers)?;
    if !matches!(actor, Actor::Server(_)) {
        // The `imported` channel vouches that another consent manager collected the
        // choice: only the operator's backend can say so (issue 11).
        return Err(ApiError::new(
            Code::Forbidden,
            "importing another consent manager's signal needs a server write key",
        ));
    }
    let text = read_text(&headers, body, 256 * 1024, Code::InvalidRequest).await?;
    let b: SignalBody = parse_json(&text)?;
    let named = consent::identities(
        &st.master,
        &actor,
        b.user_id.as_deref(),
        b.anonymous_id.as_deref(),
    )?;
    let incoming = iab::decode_incoming(
        b.tc_string.as_deref(),
        b.gpp_string.as_deref(),
        b.us_privacy.as_deref(),
    )?;
    let raw = b
        .tc_string
        .or(b.gpp_string)
        .or(b.us_privacy)
        .unwrap_or_default();
    let (kind, cmp) = match &incoming {
        iab::Incoming::Tcf(m) => ("tcf", Some(m.cmp_id)),
        iab::Incoming::Gpp(g) => ("gpp", g.tcf_eu_v2().map(|m| m.cmp_id)),
        iab::Incoming::Usp(_) => ("usp", None),
    };
    let mut evidence = Evidence::default()
        .with("signal", kind)
        .with("sha256", hex::encode(Sha256::digest(raw.trim().as_bytes())));
    if let Some(c) = cmp {
        evidence = evidence.with("cmpId", c.to_string());
    }
    let changes = iab::actions(&st.iab, &st.catalog, &incoming)
        .into_iter()
        .map(|(p, action)| consent::change(&p, action))
        .collect();
    let cmd = ConsentCommand {
        identities: named.identities,
        authority: named.authority,
        actor: actor.recorded(),
        create: true,
        changes,
        channel: Channel::Imported,
        evidence,
        time_ms: st.now(),
        list: None,
    };
    let outcomes = st.store.apply_consents_atomically(vec![cmd]).await?;
    respond(&st, outcomes, None).await
}

#[utoipa::path(get, path = "/v1/consent/insights", tag = "consent",
    summary = "The insight reports my data was eligible for",
    params(WhoQuery),
    responses((status = 200, description = "Reports and the features held now", body = ConsentInsights)))]
/// `GET /v1/consent/insights`: the advertiser reports this subject's data was eligible
/// for (report id, advertiser, date, purpose, privacy loss), and the features the
/// insights engine holds about them now. Same authentication as `GET /v1/consent`.
pub async fn insight_reports(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<WhoQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<ConsentInsights>> {
    let Some(subject) = who(&st, &headers, q)? else {
        return Ok(Json(ConsentInsights::default()));
    };
    let i = crate::mydata::insights(&crate::mydata::Holder::of(&st), subject).await?;
    Ok(Json(ConsentInsights {
        subject: Some(subject.to_string()),
        reports: i.reports,
        features: i.features,
    }))
}

/// The insight reports a subject's data was eligible for, and the features held now.
#[derive(Serialize, Default, ToSchema)]
pub struct ConsentInsights {
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    reports: Vec<crate::mydata::ReportDto>,
    features: Vec<crate::mydata::FeatureDto>,
}

/// A choice for one purpose (documentation only: the route parses the text itself,
/// to name the purpose in its error).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Choice)]
enum ChoiceDoc {
    Grant,
    Refuse,
    Withdraw,
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    record,
    current,
    accept_all,
    reject_all,
    history,
    import_signal,
    insight_reports
))]
pub(crate) struct Api;
