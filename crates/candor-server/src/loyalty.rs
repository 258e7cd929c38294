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
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

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

/// One loyalty transaction.
#[derive(Serialize, Clone, Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TxnDto {
    id: i64,
    #[serde(rename = "type")]
    #[schema(value_type = TxnKindDoc)]
    kind: &'static str,
    /// Signed: positive adds to the balance.
    points: i64,
    /// The earning rule (earn), if any.
    rule: Option<String>,
    /// The reward (redeem, reverse), if any.
    reward: Option<String>,
    /// The redemption a reversal undoes.
    reverses: Option<i64>,
    /// What it was for, in words.
    reason: String,
    /// What made it: `event`, `person`, `admin`, `system`, `api:<source>`...
    source: String,
    idempotency_key: String,
    at: String,
}

/// A loyalty transaction's type (documentation only: `candor_store::loyalty::TxnKind`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = LoyaltyTxnType)]
enum TxnKindDoc {
    Earn,
    Redeem,
    Reverse,
    Expire,
    Adjust,
    Forfeit,
}

pub fn txn_dto(t: &Txn) -> TxnDto {
    TxnDto {
        id: t.id,
        kind: t.kind.as_str(),
        points: t.points,
        rule: t.rule.clone(),
        reward: t.reward.clone(),
        reverses: t.reverses,
        reason: t.reason.clone(),
        source: t.source.clone(),
        idempotency_key: t.key.clone(),
        at: format_time(t.at),
    }
}

/// A transaction applied now, or the one its idempotency key applied before.
#[derive(Serialize, ToSchema)]
pub struct TxnOutcome {
    transaction: TxnDto,
    /// The balance after it.
    balance: i64,
    /// True when the idempotency key was used before: nothing new was written, and
    /// this is the original transaction.
    duplicate: bool,
}

/// The answer to an applied or repeated transaction; a refusal as its error.
pub fn outcome(o: LoyaltyOutcome) -> ApiResult<TxnOutcome> {
    match o {
        LoyaltyOutcome::Applied { txn, balance } => Ok(TxnOutcome {
            transaction: txn_dto(&txn),
            balance,
            duplicate: false,
        }),
        LoyaltyOutcome::Duplicate { txn, balance } => Ok(TxnOutcome {
            transaction: txn_dto(&txn),
            balance,
            duplicate: true,
        }),
        LoyaltyOutcome::Refused(r) => Err(refusal(&r)),
    }
}

/// The person's loyalty wallet.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Wallet {
    /// The program's purpose: the person is a member while they grant it.
    purpose: Option<String>,
    member: bool,
    /// Points now.
    balance: i64,
    currency: String,
    /// What the balance is worth, in `currency`, with two decimals.
    value: String,
    tier: WalletTier,
    /// Points that expire within 30 days, by when.
    expiring_soon: Vec<Expiring>,
    /// The newest 100 transactions, newest first.
    history: Vec<TxnDto>,
    rewards: Vec<WalletReward>,
    terms: Terms,
    /// The server's time of the answer.
    now: String,
}

/// The person's tier and how far the next one is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletTier {
    id: String,
    title: String,
    /// Points earned in the tier window (what tiers count).
    earned_in_window: i64,
    window_days: u16,
    /// The next tier, `null` at the top.
    next: Option<NextTier>,
    /// Progress to the next tier, in thousandths.
    progress_permille: u16,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NextTier {
    id: String,
    title: String,
    points_needed: i64,
}

/// Points that expire at one instant.
#[derive(Serialize, ToSchema)]
pub struct Expiring {
    at: String,
    points: i64,
    /// The same in words.
    text: String,
}

/// A reward, and whether the person can have it now.
#[derive(Serialize, ToSchema)]
pub struct WalletReward {
    id: String,
    title: String,
    /// Its cost in points.
    cost: i64,
    /// How many are left (`null`: unlimited).
    stock: Option<i64>,
    available: bool,
    /// Available, and the person is a member with enough points.
    affordable: bool,
}

/// The program's terms in plain words.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Terms {
    notice: String,
    /// What earns points and what they buy, one line each.
    value_exchange: Vec<String>,
    /// The financial-incentive notice, where the operator gives one.
    financial_incentive: Option<String>,
    /// What happens to the points on leaving the program.
    on_leave: String,
    /// When points expire.
    expiry: String,
}

/// The person's wallet: balance, tier and progress, what expires soon, history, the
/// rewards, and the program's terms in plain words (the value exchange, the notice,
/// the financial-incentive notice where the operator's config gives one, and what
/// happens to the points on leaving).
pub async fn wallet(st: &AppState, subject: Option<SubjectId>) -> ApiResult<Wallet> {
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
    let expiring_soon = candor_loyalty::expiring_soon(&entries, now, &c.expiry, 30)
        .into_iter()
        .map(|(at, n)| Expiring {
            at: format_time(at),
            points: n,
            text: candor_loyalty::expiring_line(at, n),
        })
        .collect();
    let rewards = c
        .rewards
        .iter()
        .map(|r| {
            let stock = stocks.iter().find(|s| s.reward == r.id).map(|s| s.stock);
            WalletReward {
                id: r.id.clone(),
                title: r.title.clone(),
                cost: r.cost,
                stock: stock.or(r.initial_stock),
                available: stock.is_none_or(|n| n > 0),
                affordable: member && balance >= r.cost && stock.is_none_or(|n| n > 0),
            }
        })
        .collect();
    Ok(Wallet {
        purpose: st.settings.loyalty.as_ref().map(|l| l.purpose.to_string()),
        member,
        balance,
        currency: c.currency.clone(),
        value: format!(
            "{:.2}",
            balance as f64 * c.point_value_millis as f64 / 1000.0
        ),
        tier: WalletTier {
            id: tier.current.id.clone(),
            title: tier.current.title.clone(),
            earned_in_window: earned,
            window_days: c.tier_window_days,
            next: tier.next.map(|(t, needed)| NextTier {
                id: t.id.clone(),
                title: t.title.clone(),
                points_needed: needed,
            }),
            progress_permille: tier.progress_permille,
        },
        expiring_soon,
        history: txns.iter().rev().take(100).map(txn_dto).collect(),
        rewards,
        terms: Terms {
            notice: c.notice.clone(),
            value_exchange: p.value_exchange(),
            financial_incentive: c.financial_incentive.clone(),
            on_leave: c.on_leave.describe().to_owned(),
            expiry: c.expiry.describe(),
        },
        now: format_time(UnixMillis(now.0)),
    })
}

/// The loyalty program's figures.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// People in the program now.
    members: u64,
    /// Accounts that ever had a transaction (erased ones are gone).
    accounts: u64,
    points_issued: i64,
    points_redeemed: i64,
    points_expired: i64,
    points_forfeited: i64,
    /// Points held now, all balances together.
    outstanding: i64,
    /// What the outstanding points are worth, in `currency`, with two decimals.
    liability: String,
    currency: String,
    /// Rewards with a limited stock, and what is left.
    rewards: Vec<RewardStockDto>,
}

/// A reward's stock.
#[derive(Serialize, ToSchema)]
pub struct RewardStockDto {
    id: String,
    stock: i64,
}

/// The program's figures for the dashboard and the admin API.
pub async fn figures(st: &AppState) -> ApiResult<Figures> {
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
    Ok(Figures {
        members: f.members,
        accounts: t.accounts,
        points_issued: f.points_issued,
        points_redeemed: f.points_redeemed,
        points_expired: f.points_expired,
        points_forfeited: f.points_forfeited,
        outstanding: t.outstanding,
        liability: format!("{:.2}", f.liability_millis as f64 / 1000.0),
        currency: c.currency.clone(),
        rewards: st
            .store
            .reward_stocks()
            .await?
            .into_iter()
            .map(|s| RewardStockDto {
                id: s.reward,
                stock: s.stock,
            })
            .collect(),
    })
}
