//! The loyalty program's API (issue 14).
//!
//! - The person (the consent API's rule for reads; redemption needs a server key or a
//!   subject token, never a browser key): `GET /v1/me/loyalty` (the wallet) and
//!   `POST /v1/me/loyalty/redeem`.
//! - The operator's backend (server key): `POST /v1/loyalty/transactions`, points earned
//!   elsewhere (a till, a partner) or a redemption made there.
//! - The operator (admin token; audited): `GET /v1/admin/loyalty` (the program's
//!   figures), `POST /v1/admin/loyalty/adjustments`, `POST /v1/admin/loyalty/reversals`,
//!   `PUT /v1/admin/loyalty/rewards/{id}/stock`.
//!
//! Every write carries an idempotency key: the same key for the same person is one
//! transaction, answered again with `duplicate: true`.

use super::consent::{actor, who, WhoQuery};
use crate::auth;
use crate::body::{parse_json, read_text};
use crate::error::{ApiError, ApiResult, Code};
use crate::loyalty::{self as program, outcome, unavailable, Figures, TxnOutcome, Wallet};
use crate::pipeline::consent::Actor;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use candor_core::crypto::IdKind;
use candor_core::SubjectId;
use candor_store::loyalty::LoyaltyChange;
use candor_store::Access;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const MAX_KEY: usize = 200;
const MAX_REASON: usize = 500;

fn check_key(key: &str) -> ApiResult<()> {
    if key.is_empty() || key.chars().count() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!("idempotencyKey must be 1 to {MAX_KEY} characters, no control characters"),
        ));
    }
    Ok(())
}

fn check_reason(reason: &str) -> ApiResult<()> {
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!("reason must be 1 to {MAX_REASON} characters"),
        ));
    }
    Ok(())
}

/// The subject a user id names (the operator's routes).
fn by_user(st: &AppState, user_id: &str) -> ApiResult<SubjectId> {
    if user_id.is_empty() || user_id.chars().count() > 512 {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "userId must be 1 to 512 characters",
        ));
    }
    st.store
        .resolve(&st.master.lookup_hash(IdKind::UserId, user_id))
        .ok_or_else(|| ApiError::new(Code::SubjectNotFound, "no one with this userId is known"))
}

/// `GET /v1/me/loyalty`: the wallet (a read of personal data, so logged for the person).
#[utoipa::path(get, path = "/v1/me/loyalty", tag = "loyalty",
    summary = "The person's loyalty wallet",
    description = "Balance, tier and progress, points expiring soon, the newest transactions, the \
rewards and the program's terms. For someone not known yet, an empty wallet (`member: false`). \
Written to the person's access log.",
    params(WhoQuery),
    responses((status = 200, description = "The wallet", body = Wallet)))]
pub async fn wallet(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<WhoQuery>, QueryRejection>,
) -> ApiResult<Json<Wallet>> {
    if program::program(&st).is_none() {
        return Err(unavailable());
    }
    let subject = who(&st, &headers, q)?;
    let w = program::wallet(&st, subject).await?;
    if let Some(s) = subject {
        st.store
            .record_access(Access {
                subject: s,
                time_ms: st.now(),
                accessor: "api".into(),
                purpose: String::new(),
                why: "your loyalty wallet was read".into(),
            })
            .await?;
    }
    Ok(Json(w))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"userId": "user-42", "reward": "coffee", "idempotencyKey": "order-1001"}))]
pub struct RedeemBody {
    /// The person (a server key); a subject token's own user when absent.
    user_id: Option<String>,
    /// The reward's id.
    #[schema(required = true, nullable = false)]
    reward: Option<String>,
    /// 1 to 200 characters, no control characters: the same key for the same person is
    /// one transaction.
    #[schema(required = true, nullable = false, max_length = 200)]
    idempotency_key: Option<String>,
}

/// `POST /v1/me/loyalty/redeem`
#[utoipa::path(post, path = "/v1/me/loyalty/redeem", tag = "loyalty",
    summary = "Redeem a reward",
    description = "Spends the person's points on a reward (and one of its stock). A server key for \
anyone, a subject token for its own user; never a browser key. Repeating an idempotency key \
answers the original transaction with `duplicate: true`.",
    request_body = RedeemBody,
    responses((status = 200, description = "The redemption and the balance after it", body = TxnOutcome)))]
pub async fn redeem(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<TxnOutcome>> {
    let actor = actor(&st, &headers)?;
    if matches!(actor, Actor::Browser(_)) {
        return Err(ApiError::new(
            Code::Forbidden,
            "redeeming needs a server write key or a subject token",
        ));
    }
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: RedeemBody = parse_json(&text)?;
    let named =
        crate::pipeline::consent::identities(&st.master, &actor, b.user_id.as_deref(), None)?;
    let subject = crate::pipeline::consent::resolve(&st, &named)?
        .ok_or_else(|| ApiError::new(Code::SubjectNotFound, "no such person"))?;
    let (Some(reward), Some(key)) = (b.reward, b.idempotency_key) else {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "give reward and idempotencyKey",
        ));
    };
    check_key(&key)?;
    let source = match &actor {
        Actor::User(_) | Actor::Email(_) => "person",
        _ => "api",
    };
    redeem_for(&st, subject, &reward, key, source).await
}

/// Redeems `reward` for `subject` (the API and the person's page).
pub async fn redeem_for(
    st: &AppState,
    subject: SubjectId,
    reward: &str,
    key: String,
    source: &str,
) -> ApiResult<Json<TxnOutcome>> {
    let (p, _) = program::program(st).ok_or_else(unavailable)?;
    let r = p.reward(reward).ok_or_else(|| {
        ApiError::new(
            Code::UnknownReward,
            format!(
                "no reward {:?}",
                reward.chars().take(64).collect::<String>()
            ),
        )
    })?;
    let what = LoyaltyChange::Redeem {
        reward: r.id.clone(),
        cost: r.cost,
    };
    let o = st
        .store
        .loyalty(program::op(st, subject, key, what, &r.title, source))
        .await?;
    Ok(Json(outcome(o)?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"userId": "user-42", "type": "earn", "points": 120, "rule": "till",
    "reason": "Purchase in store", "idempotencyKey": "till-7-receipt-88"}))]
pub struct TxnBody {
    /// The person's user id (someone already known).
    user_id: String,
    /// `earn` (with `points`) or `redeem` (with `reward`).
    #[serde(rename = "type")]
    #[schema(value_type = TxnBodyKindDoc)]
    kind: String,
    /// 1 to 200 characters, no control characters: the same key for the same person is
    /// one transaction.
    #[schema(max_length = 200)]
    idempotency_key: String,
    /// earn: how many points (1 to the program's most per event).
    #[schema(minimum = 1)]
    points: Option<i64>,
    /// earn: the rule the points are given under (default `api`); a configured rule's
    /// caps apply.
    rule: Option<String>,
    /// redeem: which reward.
    reward: Option<String>,
    /// earn: what for, in words (1 to 500 characters; default `Points`).
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// The type of a transaction the operator's backend sends (documentation only).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = LoyaltyTransactionType)]
enum TxnBodyKindDoc {
    Earn,
    Redeem,
}

/// `POST /v1/loyalty/transactions` (server key).
#[utoipa::path(post, path = "/v1/loyalty/transactions", tag = "loyalty",
    summary = "Record points earned or a redemption made elsewhere",
    description = "For the operator's backend (server key): points earned elsewhere (a till, a partner), \
under a rule whose caps apply, or a redemption made there. Only for members (the program's purpose \
granted). Repeating an idempotency key answers the original transaction with `duplicate: true`.",
    request_body = TxnBody,
    responses((status = 200, description = "The transaction and the balance after it", body = TxnOutcome)))]
pub async fn transaction(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<TxnOutcome>> {
    let source = match actor(&st, &headers)? {
        Actor::Server(s) => s,
        _ => {
            return Err(ApiError::new(
                Code::Forbidden,
                "loyalty transactions need a server write key",
            ))
        }
    };
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: TxnBody = parse_json(&text)?;
    check_key(&b.idempotency_key)?;
    let (p, _) = program::program(&st).ok_or_else(unavailable)?;
    let subject = by_user(&st, &b.user_id)?;
    match (b.kind.as_str(), b.points, b.reward.as_deref()) {
        ("earn", Some(points), None) => {
            if !(1..=candor_loyalty::MAX_POINTS_PER_EVENT).contains(&points) {
                return Err(ApiError::new(
                    Code::InvalidRequest,
                    format!(
                        "points must be 1 to {}",
                        candor_loyalty::MAX_POINTS_PER_EVENT
                    ),
                ));
            }
            let rule = b.rule.unwrap_or_else(|| "api".into());
            // A configured rule's caps apply to points given under its name.
            let (cap_per_day, cap_total) = p
                .rule(&rule)
                .map_or((None, None), |r| (r.cap_per_day, r.cap_total));
            let reason = b.reason.unwrap_or_else(|| "Points".into());
            check_reason(&reason)?;
            let what = LoyaltyChange::Earn {
                rule,
                points,
                cap_per_day,
                cap_total,
            };
            let o = st
                .store
                .loyalty(program::op(
                    &st,
                    subject,
                    b.idempotency_key,
                    what,
                    &reason,
                    &format!("api:{source}"),
                ))
                .await?;
            Ok(Json(outcome(o)?))
        }
        ("redeem", None, Some(reward)) => {
            redeem_for(
                &st,
                subject,
                reward,
                b.idempotency_key,
                &format!("api:{source}"),
            )
            .await
        }
        _ => Err(ApiError::new(
            Code::InvalidRequest,
            "type is \"earn\" (with points) or \"redeem\" (with reward)",
        )),
    }
}

/// `GET /v1/admin/loyalty`: the program's figures.
#[utoipa::path(get, path = "/v1/admin/loyalty", tag = "loyalty",
    summary = "The program's figures",
    description = "Members, points issued, redeemed, expired and forfeited, the points outstanding and \
their value (the liability), and the rewards' stock. Admin token.",
    responses((status = 200, description = "The figures", body = Figures)))]
pub async fn figures(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Figures>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    Ok(Json(program::figures(&st).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"userId": "user-42", "points": -50, "reason": "Duplicate till entry",
    "idempotencyKey": "fix-2026-11-29-1"}))]
pub struct AdjustBody {
    /// The person's user id (someone already known).
    user_id: String,
    /// Non-zero, within the program's most per event either way; the balance may not go
    /// below zero.
    points: i64,
    /// What for, in words (1 to 500 characters).
    #[schema(max_length = 500)]
    reason: String,
    /// 1 to 200 characters, no control characters.
    #[schema(max_length = 200)]
    idempotency_key: String,
}

/// `POST /v1/admin/loyalty/adjustments`: an operator's correction, never below zero.
#[utoipa::path(post, path = "/v1/admin/loyalty/adjustments", tag = "loyalty",
    summary = "Correct a person's balance",
    description = "Adds or removes points (never below zero), with the reason. Admin token; audited. \
Repeating an idempotency key answers the original transaction with `duplicate: true`.",
    request_body = AdjustBody,
    responses((status = 200, description = "The adjustment and the balance after it", body = TxnOutcome)))]
pub async fn adjust(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<TxnOutcome>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: AdjustBody = parse_json(&text)?;
    check_key(&b.idempotency_key)?;
    check_reason(&b.reason)?;
    program::program(&st).ok_or_else(unavailable)?;
    let max = candor_loyalty::MAX_POINTS_PER_EVENT;
    if b.points == 0 || !(-max..=max).contains(&b.points) {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!("points must be non-zero, from -{max} to {max}"),
        ));
    }
    let subject = by_user(&st, &b.user_id)?;
    let what = LoyaltyChange::Adjust { points: b.points };
    let o = st
        .store
        .loyalty(program::op(
            &st,
            subject,
            b.idempotency_key,
            what,
            &b.reason,
            "admin",
        ))
        .await?;
    Ok(Json(outcome(o)?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"userId": "user-42", "transactionId": 17, "reason": "Order cancelled",
    "idempotencyKey": "reverse-17"}))]
pub struct ReverseBody {
    /// The person's user id (someone already known).
    user_id: String,
    /// The redemption to undo (its transaction id).
    transaction_id: i64,
    /// What for, in words (1 to 500 characters).
    #[schema(max_length = 500)]
    reason: String,
    /// 1 to 200 characters, no control characters.
    #[schema(max_length = 200)]
    idempotency_key: String,
}

/// `POST /v1/admin/loyalty/reversals`: undoes a redemption (points and stock back).
#[utoipa::path(post, path = "/v1/admin/loyalty/reversals", tag = "loyalty",
    summary = "Undo a redemption",
    description = "Gives a redemption's points and stock back. Admin token; audited. Repeating an \
idempotency key answers the original transaction with `duplicate: true`.",
    request_body = ReverseBody,
    responses((status = 200, description = "The reversal and the balance after it", body = TxnOutcome)))]
pub async fn reverse(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<TxnOutcome>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: ReverseBody = parse_json(&text)?;
    check_key(&b.idempotency_key)?;
    check_reason(&b.reason)?;
    program::program(&st).ok_or_else(unavailable)?;
    let subject = by_user(&st, &b.user_id)?;
    let what = LoyaltyChange::Reverse {
        txn: b.transaction_id,
    };
    let o = st
        .store
        .loyalty(program::op(
            &st,
            subject,
            b.idempotency_key,
            what,
            &b.reason,
            "admin",
        ))
        .await?;
    Ok(Json(outcome(o)?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"stock": 25}))]
pub struct StockBody {
    /// 0 to 1000000000; `null` (or absent): unlimited.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    stock: Option<i64>,
}

/// A reward's stock as set.
#[derive(Serialize, ToSchema)]
pub struct StockResponse {
    /// The reward's id.
    reward: String,
    /// `null`: unlimited.
    stock: Option<i64>,
}

/// `PUT /v1/admin/loyalty/rewards/{id}/stock`
#[utoipa::path(put, path = "/v1/admin/loyalty/rewards/{id}/stock", tag = "loyalty",
    summary = "Set a reward's stock",
    description = "How many of a reward are left, or unlimited. Admin token; audited.",
    params(("id" = String, Path, description = "The reward's id")),
    request_body = StockBody,
    responses((status = 200, description = "The stock as set", body = StockResponse)))]
pub async fn stock(
    State(st): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult<Json<StockResponse>> {
    auth::admin(st.settings.admin_token.as_ref(), &headers)?;
    let Path(id) = id.map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let (p, _) = program::program(&st).ok_or_else(unavailable)?;
    let r = p
        .reward(&id)
        .ok_or_else(|| ApiError::new(Code::UnknownReward, "no such reward"))?;
    let text = read_text(&headers, body, 1024, Code::InvalidRequest).await?;
    let b: StockBody = parse_json(&text)?;
    if b.stock.is_some_and(|n| !(0..=1_000_000_000).contains(&n)) {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "stock is 0 to 1000000000, or null for unlimited",
        ));
    }
    st.store.set_reward_stock(&r.id, b.stock, false).await?;
    Ok(Json(StockResponse {
        reward: r.id.clone(),
        stock: b.stock,
    }))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(wallet, redeem, transaction, figures, adjust, reverse, stock))]
pub(crate) struct Api;
