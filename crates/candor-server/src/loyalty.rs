//! The loyalty program in the server (issue 14): earning from consented events and
//! volunteered fields, the person's wallet, leaving, expiry, and turning the store's
//! answers into the API's.
//!
//! What each transaction means is decided in two pure places: `candor_loyalty` says
//! what a configured program awards (rules, caps, tiers, expiry, wording), and
//! `candor_store::plan::loyalty` decides a transaction against the committed ledger
//! under the account's lock (idempotency, the purpose granted *now*, never below zero,
//! stock). This module only connects them.
//!
//! **Idempotency keys.** Every automatic transaction has a key derived from what caused
//! it, so running it twice (a retried batch, a crash between the event's commit and the
//! earn's, two nodes noticing one withdrawal) is one transaction: an event's earnings
//! `event:<dedup key>:<rule>`, a field bonus `field:<name>` (once per person, ever), a
//! departure `leave:<ledger seq>`, a day's expiry `expire:<day>`.

use crate::error::{ApiError, ApiResult, Code};
use crate::segment::format_time;
use crate::state::AppState;
use candor_core::{PurposeSet, SubjectId, UnixMillis};
use candor_loyalty::{Decimal, EntryKind, EventView, Program, PropValue};
use candor_store::loyalty::{LoyaltyChange, LoyaltyOp, LoyaltyOutcome, Refusal, Txn, TxnKind};
use candor_store::StoreError;
use serde_json::{json, Map, Value};

/// The program and its purpose's bit, when there is one.
pub fn program(st: &AppState) -> Option<(&Program, u8)> {
    let l = st.settings.loyalty.as_ref()?;
    let bit = st.catalog.purpose(&l.purpose)?.bit;
    Some((&l.program, bit))
}

fn purpose(st: &AppState) -> String {
    st.settings
        .loyalty
        .as_ref()
        .map(|l| l.purpose.to_string())
        .unwrap_or_default()
}

pub fn unavailable() -> ApiError {
    ApiError::new(
        Code::LoyaltyUnavailable,
        "this operator runs no loyalty program",
    )
}

/// An op for `subject` under the program's purpose.
pub fn op(
    st: &AppState,
    subject: SubjectId,
    key: String,
    what: LoyaltyChange,
    reason: &str,
    source: &str,
) -> LoyaltyOp {
    LoyaltyOp {
        subject,
        key,
        purpose: purpose(st),
        what,
        reason: reason.to_owned(),
        source: source.to_owned(),
        at: st.now(),
    }
}

/// A track message's name and properties, as earning rules read them.
pub struct TrackView {
    name: Option<String>,
    props: Map<String, Value>,
}

impl TrackView {
    pub fn new(name: Option<&str>, properties: Option<&str>) -> Self {
        Self {
            name: name.map(str::to_owned),
            props: properties
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_default(),
        }
    }
}

impl EventView for TrackView {
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn property(&self, name: &str) -> Option<PropValue> {
        match self.props.get(name)? {
            Value::String(s) => Some(PropValue::Text(s.clone())),
            Value::Bool(b) => Some(PropValue::Bool(*b)),
            // Exact decimal from the number as sent (never through a float).
            Value::Number(n) => Decimal::parse(&n.to_string()).ok().map(PropValue::Number),
            _ => None,
        }
    }
}

/// What one gated track message would earn (before its commit).
pub fn earnings(st: &AppState, view: &TrackView) -> Vec<candor_loyalty::Earning> {
    match program(st) {
        Some((p, _)) => p.earn(view),
        None => Vec::new(),
    }
}

/// Applies the earnings of a committed (or duplicate) event stored under `purposes`:
/// only when they include the program's purpose, and the store checks the purpose is
/// still granted. Refusals (caps reached, no longer a member) are normal and silent.
pub async fn earn_for_event(
    st: &AppState,
    subject: SubjectId,
    purposes: PurposeSet,
    dedup_key: &[u8; 16],
    event: &str,
    earnings: Vec<candor_loyalty::Earning>,
) -> Result<(), StoreError> {
    let Some((_, bit)) = program(st) else {
        return Ok(());
    };
    if !purposes.contains(bit) {
        return Ok(());
    }
    for e in earnings {
        let key = format!("event:{}:{}", hex::encode(dedup_key), e.rule.as_str());
        let what = LoyaltyChange::Earn {
            rule: e.rule.as_str().to_owned(),
            points: e.points,
            cap_per_day: e.cap_per_day,
            cap_total: e.cap_total,
        };
        st.store
            .loyalty(op(st, subject, key, what, event, "event"))
            .await?;
    }
    Ok(())
}

/// The bonus for volunteering `field`, once per person ever.
pub async fn field_bonus(st: &AppState, subject: SubjectId, field: &str) -> Result<(), StoreError> {
    let Some((p, _)) = program(st) else {
        return Ok(());
    };
    let Some(b) = p.field_bonus(field) else {
        return Ok(());
    };
    let what = LoyaltyChange::Earn {
        rule: format!("field_{field}"),
        points: b.points,
        cap_per_day: None,
        cap_total: Some(b.points),
    };
    st.store
        .loyalty(op(
            st,
            subject,
            format!("field:{field}"),
            what,
            &b.title,
            "person",
        ))
        .await?;
    Ok(())
}

/// The person left the program (`key` names what ended their grant: `leave:<seq>` for
/// the ledger record): the balance goes or stays as the program's notice says.
pub async fn left(st: &AppState, subject: SubjectId, key: String) -> Result<(), StoreError> {
    let Some((p, _)) = program(st) else {
        return Ok(());
    };
    if st
        .store
        .loyalty_account(subject)
        .await?
        .is_none_or(|a| !a.member)
    {
        return Ok(());
    }
    let forfeit = p.config().on_leave == candor_loyalty::OnLeave::Forfeit;
    st.store
        .loyalty(op(
            st,
            subject,
            key,
            LoyaltyChange::Leave { forfeit },
            "You left the program",
            "system",
        ))
        .await?;
    Ok(())
}

/// Every transaction of a subject, oldest first.
pub async fn history(st: &AppState, subject: SubjectId) -> Result<Vec<Txn>, StoreError> {
    let mut out = Vec::new();
    let mut before = i64::MAX;
    loop {
        let page = st.store.loyalty_history(subject, before, 1000).await?;
        let Some(last) = page.last() else { break };
        before = last.id;
        out.extend(page);
    }
    out.reverse();
    Ok(out)
}

fn entry(t: &Txn) -> candor_loyalty::Entry {
    candor_loyalty::Entry {
        at: t.at,
        points: t.points,
        kind: match t.kind {
            TxnKind::Earn => EntryKind::Earn,
            TxnKind::Redeem => EntryKind::Redeem,
            TxnKind::Reverse => EntryKind::Reverse,
            TxnKind::Expire => EntryKind::Expire,
            TxnKind::Adjust => EntryKind::Adjust,
            TxnKind::Forfeit => EntryKind::Forfeit,
        },
    }
}

/// Writes off expired points of every account with a balance (hourly; idempotent per
/// day). Members who left while this node was down are settled here too.
pub async fn expire_all(st: &AppState) -> Result<(), StoreError> {
    let Some((p, bit)) = program(st) else {
        return Ok(());
    };
    let now = st.now();
    let mut after = None;
    loop {
        let page = st.store.accounts_with_points(after, 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(*last);
        for subject in page {
            let entries: Vec<_> = history(st, subject).await?.iter().map(entry).collect();
            let due = candor_loyalty::expired(&entries, now, &p.config().expiry);
            if due > 0 {
                st.store
                    .loyalty(op(
                        st,
                        subject,
                        format!("expire:{}", now.day()),
                        LoyaltyChange::Expire { points: due },
                        "Points expired",
                        "system",
                    ))
                    .await?;
            }
            if !st.store.index().granted(&subject).contains(bit) {
                if let Some(a) = st.store.loyalty_account(subject).await? {
                    if a.member {
                        left(st, subject, format!("leave-found:{}", now.day())).await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The store's refusal as the API's error.
pub fn refusal(r: &Refusal) -> ApiError {
    let (code, msg) = match r {
        Refusal::NotGranted => (
            Code::LoyaltyNotGranted,
            "this person is not in the loyalty program (its purpose is not granted)".to_owned(),
        ),
        Refusal::Capped => (
            Code::LoyaltyCapped,
            "the earning rule's caps leave nothing to earn".to_owned(),
        ),
        Refusal::InsufficientPoints { balance, needed } => (
            Code::LoyaltyInsufficientPoints,
            format!("needs {needed} points; the balance is {balance}"),
        ),
        Refusal::OutOfStock => (
            Code::LoyaltyOutOfStock,
            "this reward is out of stock".into(),
        ),
        Refusal::NoSuchRedemption => (
            Code::LoyaltyNoSuchRedemption,
            "no such redemption of this person".into(),
        ),
        Refusal::AlreadyReversed => (
            Code::LoyaltyAlreadyReversed,
            "this redemption was reversed already".into(),
        ),
        Refusal::KeyConflict => (
            Code::IdempotencyKeyConflict,
            "this idempotency key was used for a different kind of transaction".into(),
        ),
        Refusal::UnknownSubject => (Code::SubjectNotFound, "no such person".into()),
    };
    ApiError::new(code, msg)
}

pub fn txn_json(t: &Txn) -> Value {
    json!({
        "id": t.id,
        "type": t.kind.as_str(),
        "points": t.points,
        "rule": t.rule,
        "reward": t.reward,
        "reverses": t.reverses,
        "reason": t.reason,
        "source": t.source,
        "idempotencyKey": t.key,
        "at": format_time(t.at),
    })
}

/// The answer to an applied or repeated transaction; a refusal as its error.
pub fn outcome_json(o: LoyaltyOutcome) -> ApiResult<Value> {
    match o {
        LoyaltyOutcome::Applied { txn, balance } => Ok(json!({
            "transaction": txn_json(&txn), "balance": balance, "duplicate": false,
        })),
        LoyaltyOutcome::Duplicate { txn, balance } => Ok(json!({
            "transaction": txn_json(&txn), "balance": balance, "duplicate": true,
        })),
        LoyaltyOutcome::Refused(r) => Err(refusal(&r)),
    }
}

/// The person's wallet: balance, tier and progress, what expires soon, history, the
/// rewards, and the program's terms in plain words (the value exchange, the notice,
/// the financial-incentive notice where the operator's config gives one, and what
/// happens to the points on leaving).
pub async fn wallet(st: &AppState, subject: Option<SubjectId>) -> ApiResult<Value> {
    let Some((p, bit)) = program(st) else {
        return Err(unavailable());
    };
    let c = p.config();
    // Departures are applied by the segments' feed (`audiences::feed`): bring it up to
    // date so the wallet shows what leaving did.
    st.audiences.catch_up(st).await?;
    let now = st.now();
    let (account, txns) = match subject {
        Some(s) => (st.store.loyalty_account(s).await?, history(st, s).await?),
        None => (None, Vec::new()),
    };
    let member = subject.is_some_and(|s| st.store.index().granted(&s).contains(bit));
    let entries: Vec<_> = txns.iter().map(entry).collect();
    let earned = candor_loyalty::earned_in_window(&entries, now, c.tier_window_days);
    let tier = p.tier(earned);
    let balance = account.as_ref().map_or(0, |a| a.balance);
    let stocks = st.store.reward_stocks().await?;
    let expiring: Vec<Value> = candor_loyalty::expiring_soon(&entries, now, &c.expiry, 30)
        .into_iter()
        .map(|(at, n)| {
            json!({"at": format_time(at), "points": n,
                       "text": candor_loyalty::expiring_line(at, n)})
        })
        .collect();
    let rewards: Vec<Value> = c
        .rewards
        .iter()
        .map(|r| {
            let stock = stocks.iter().find(|s| s.reward == r.id).map(|s| s.stock);
            json!({
                "id": r.id, "title": r.title, "cost": r.cost,
                "stock": stock.or(r.initial_stock),
                "available": stock.is_none_or(|n| n > 0),
                "affordable": member && balance >= r.cost && stock.is_none_or(|n| n > 0),
            })
        })
        .collect();
    Ok(json!({
        "purpose": st.settings.loyalty.as_ref().map(|l| l.purpose.to_string()),
        "member": member,
        "balance": balance,
        "currency": c.currency,
        "value": format!("{:.2}", balance as f64 * c.point_value_millis as f64 / 1000.0),
        "tier": {
            "id": tier.current.id, "title": tier.current.title,
            "earnedInWindow": earned, "windowDays": c.tier_window_days,
            "next": tier.next.map(|(t, needed)| json!({"id": t.id, "title": t.title, "pointsNeeded": needed})),
            "progressPermille": tier.progress_permille,
        },
        "expiringSoon": expiring,
        "history": txns.iter().rev().take(100).map(txn_json).collect::<Vec<_>>(),
        "rewards": rewards,
        "terms": {
            "notice": c.notice,
            "valueExchange": p.value_exchange(),
            "financialIncentive": c.financial_incentive,
            "onLeave": c.on_leave.describe(),
            "expiry": c.expiry.describe(),
        },
        "now": format_time(UnixMillis(now.0)),
    }))
}

/// The program's figures for the dashboard and the admin API.
pub async fn figures(st: &AppState) -> ApiResult<Value> {
    let Some((p, _)) = program(st) else {
        return Err(unavailable());
    };
    st.audiences.catch_up(st).await?;
    let t = st.store.loyalty_totals().await?;
    let mut k = candor_loyalty::KindTotals::default();
    for (kind, sum) in &t.by_kind {
        match kind {
            TxnKind::Earn => k.earn = *sum,
            TxnKind::Redeem => k.redeem = *sum,
            TxnKind::Reverse => k.reverse = *sum,
            TxnKind::Expire => k.expire = *sum,
            TxnKind::Adjust => k.adjust = *sum,
            TxnKind::Forfeit => k.forfeit = *sum,
        }
    }
    let f = p.figures(t.members, &k);
    let c = p.config();
    Ok(json!({
        "members": f.members,
        "accounts": t.accounts,
        "pointsIssued": f.points_issued,
        "pointsRedeemed": f.points_redeemed,
        "pointsExpired": f.points_expired,
        "pointsForfeited": f.points_forfeited,
        "outstanding": t.outstanding,
        "liability": format!("{:.2}", f.liability_millis as f64 / 1000.0),
        "currency": c.currency,
        "rewards": st.store.reward_stocks().await?.iter()
            .map(|s| json!({"id": s.reward, "stock": s.stock})).collect::<Vec<_>>(),
    }))
}
